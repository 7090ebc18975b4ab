--
-- osflow/mysql.lua: the MySQL analyser of dissectors/osflow.lua (logins, commands
-- by name, SQL summarised as "SELECT … FROM table", results and errors paired
-- with the command before them, the connection's schema).  A module: it defines
-- functions and returns them; nothing happens until osflow.lua calls new(ctx)
-- (Wireshark running this file on its own registers and prints nothing).
--
-- new(ctx) reads, at load time, Wireshark's mysql fields and returns
-- analyse(svc, st): the frame's record (see osflow.lua) or nil.
--

local M = {}

function M.new(ctx)
    local trunc, values, first = ctx.util.trunc, ctx.util.values, ctx.util.first
    local MYSQL_COMMAND_NAMES = ctx.mysql_commands   -- osflow.lua's MYSQL_COMMANDS block

    local f_my_command   = ctx.field("mysql.command")
    local f_my_query     = ctx.field("mysql.query")
    local f_my_user      = ctx.field("mysql.user")
    local f_my_schema    = ctx.field("mysql.schema")
    local f_my_fielddb   = ctx.field("mysql.field.db")
    local f_my_respcode  = ctx.field("mysql.response_code")
    local f_my_errcode   = ctx.field("mysql.error_code") or ctx.field("mysql.error.code")
    local f_my_errmsg    = ctx.field("mysql.error.message")
    local f_my_numfields = ctx.field("mysql.num_fields")
    local f_my_version   = ctx.field("mysql.version")

    -- SQL statement -> "SELECT … FROM resource_classes"
    local function summarize_sql(q)
        q = q:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
        local verb = q:match("^(%a+)")
        if not verb then return trunc(q, 60) end
        local V = verb:upper()
        local flat = q:gsub("%b()", "()")
        local lower = flat:lower()
        local function after(pattern)
            local _, e = lower:find(pattern)
            if not e then return nil end
            local name = flat:match("^[%w_`%.\"]+", e + 1)
            if not name then return nil end
            return (name:gsub("[`\"]", ""))
        end
        if V == "SELECT" then
            local t = after("%f[%w]from%s+") or after("%f[%w]join%s+")
            if t then return "SELECT … FROM " .. t end
        elseif V == "INSERT" or V == "REPLACE" then
            local t = after("%f[%w]into%s+")
            if t then return V .. " INTO " .. t end
        elseif V == "UPDATE" then
            local t = after("^update%s+")
            if t then return "UPDATE " .. t end
        elseif V == "DELETE" then
            local t = after("%f[%w]from%s+")
            if t then return "DELETE FROM " .. t end
        end
        return trunc(q, 60)
    end

    local function analyse(_svc, st)
        local commands = values(f_my_command)
        local user = (#commands == 0) and first(f_my_user) or nil
        local respcodes, errcode, numfields, version = {}, nil, nil, nil
        if #commands == 0 and not user then
            respcodes = values(f_my_respcode)
            errcode = first(f_my_errcode)
            numfields = first(f_my_numfields)
            version = (#respcodes == 0) and first(f_my_version) or nil
        end
        -- result set columns name their schema: only needed to learn it
        local dbs = (numfields and not st.db) and values(f_my_fielddb) or {}
        if #commands == 0 and not user and #respcodes == 0 and not errcode and not numfields
            and not version and #dbs == 0 then
            return nil
        end
        local rec = { tokens = {} }
        for _, d in ipairs(dbs) do
            if type(d) == "string" and d ~= "" then rec.db = d break end
        end
        if user then
            rec.dir = "request"
            local schema = first(f_my_schema)
            local text = "login " .. tostring(user)
            if type(schema) == "string" and schema ~= "" then
                text = text .. "@" .. schema
                rec.db, rec.db_certain = schema, true
            end
            rec.op = "mysql: " .. text
            rec.client = ctx.service_for_name(tostring(user))
        elseif #commands > 0 then
            rec.dir = "request"
            local cmd = tonumber(commands[1]) or -1
            -- the command's name, then its argument: "init_db placement",
            -- "stmt_prepare SELECT … FROM traits"; a query is its SQL alone
            local text = MYSQL_COMMAND_NAMES[cmd] or ("command " .. tostring(cmd))
            if cmd == 3 or cmd == 22 then   -- COM_QUERY, COM_STMT_PREPARE
                local q = first(f_my_query)
                if type(q) == "string" and q ~= "" then
                    q = summarize_sql(q)
                    text = (cmd == 3) and q or (text .. " " .. q)
                end
            elseif cmd == 2 then            -- COM_INIT_DB
                local schema = first(f_my_schema)
                if type(schema) == "string" and schema ~= "" then
                    text = text .. " " .. schema
                    rec.db, rec.db_certain = schema, true
                end
            end
            if #commands > 1 then text = text .. string.format(" (+%d more)", #commands - 1) end
            rec.op = "mysql: " .. text
        elseif version and #respcodes == 0 then
            rec.dir = "response"
            rec.op = "mysql: server greeting (" .. trunc(tostring(version), 40) .. ")"
        else
            rec.dir = "response"
            local result
            if errcode then
                local msg = first(f_my_errmsg)
                result = "error " .. tostring(errcode)
                if type(msg) == "string" and msg ~= "" then result = result .. " " .. trunc(msg, 60) end
                rec.error = "MySQL " .. result
            elseif numfields then
                result = "result set"
            else
                result = "OK"
            end
            if st.last_op and st.last_dir == "request" then
                rec.op = st.last_op .. " → " .. result
                rec.request_in = st.last_frame
            else
                rec.op = "mysql: " .. result
            end
        end
        if rec.db and not rec.client then rec.client = ctx.service_for_database(rec.db) end
        return rec
    end


    return analyse
end

return M
