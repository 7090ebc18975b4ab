--
-- osflow/memcache.lua: the memcached analyser of dissectors/osflow.lua (keystone's
-- token cache keys as fingerprints, hit or miss, a reply paired with the request
-- before it).  A module: it defines functions and returns them; nothing happens
-- until osflow.lua calls new(ctx) (Wireshark running this file on its own
-- registers and prints nothing).
--
-- new(ctx) reads, at load time, Wireshark's memcache fields and returns
-- analyse(svc, st): the frame's record (see osflow.lua) or nil.
--

local M = {}

function M.new(ctx)
    local trunc, values = ctx.util.trunc, ctx.util.values
    local state = ctx.state

    local f_mc_command   = ctx.field("memcache.command")
    local f_mc_key       = ctx.field("memcache.key")
    local f_mc_response  = ctx.field("memcache.response")
    local f_mc_value     = ctx.field("memcache.value")

    local MEMCACHE_REPLIES = {
        STORED = "stored", NOT_STORED = "not stored", EXISTS = "exists", NOT_FOUND = "not found",
        DELETED = "deleted", TOUCHED = "touched", OK = "ok", ERROR = "error",
        CLIENT_ERROR = "error", SERVER_ERROR = "error",
    }


    local function analyse(svc, st)
        local commands = values(f_mc_command)
        local keys = values(f_mc_key)
        local replies = (#commands == 0) and values(f_mc_response) or {}
        if #commands == 0 and #keys == 0 and #replies == 0 then return nil end
        local rec = { tokens = {} }
        for _, k in ipairs(keys) do
            if type(k) == "string" and k:sub(1, 7) == "tokens/" then
                local hex = k:sub(8)
                if hex:match("^%x+$") and #hex == 64 then
                    rec.tokens[#rec.tokens + 1] = { hex:sub(1, 8):lower(), "memcache.key" }
                else
                    rec.token_problem = "token cache key is not tokens/<sha256 hex>"
                end
            end
        end
        local function what(k)
            if type(k) ~= "string" then return "?" end
            if k:sub(1, 7) == "tokens/" then return "token cache" end
            return trunc(k, 40)
        end
        if #commands > 0 then
            rec.dir = "request"
            local cmd = tostring(commands[1]):lower()
            local text
            if #keys > 1 then
                text = cmd .. " " .. #keys .. " keys"
            elseif #keys == 1 then
                text = cmd .. " " .. what(keys[1])
            else
                text = cmd
            end
            if #commands > 1 then text = text .. string.format(" (+%d more)", #commands - 1) end
            rec.op = svc.key .. ": " .. text
            for _, t in ipairs(rec.tokens) do
                if state.awaiting[t[1]] then rec.client = state.awaiting[t[1]] end
            end
        else
            rec.dir = "response"
            local result
            if #keys > 0 and #values(f_mc_value) > 0 then
                result = "hit"
                rec.cache = "hit"
            elseif replies[1] == "END" then
                result = "miss"
                rec.cache = "miss"
            elseif replies[1] then
                local r = tostring(replies[1])
                result = MEMCACHE_REPLIES[r:match("^[%u_]+") or ""] or trunc(r:lower(), 30)
                if result == "error" then rec.error = "memcached answered " .. trunc(r, 60) end
            else
                result = "reply"
            end
            if st.last_op and st.last_dir == "request" then
                rec.op = st.last_op .. " → " .. result
                rec.request_in = st.last_frame
            else
                rec.op = svc.key .. ": " .. result
            end
        end
        return rec
    end

    return analyse
end

return M
