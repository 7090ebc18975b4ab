--
-- osflow/resp.lua: the Redis analyser of dissectors/osflow.lua.  Redis speaks
-- RESP (REdis Serialization Protocol, RESP2 and RESP3); OpenStack uses it for
-- OSProfiler traces and tooz coordination.  Wireshark's own "resp" dissector
-- says which bytes of a frame are RESP; this module reads those bytes itself,
-- so a pipeline (several commands in one segment) and nested replies keep
-- their structure.
--
--   request  (to the server)  "redis: SET osprofiler:…; GET osprofiler:…" (every
--            command of the frame: its name, for CONFIG, CLIENT, SCRIPT... with
--            its subcommand, and its first argument; never a value)
--   response (to the client)  "redis: GET k → 21 bytes", "→ nil", "→ OK",
--            "→ error NOAUTH" (and osflow.error): each reply answers the oldest
--            command of the connection still unanswered (osflow.request_in: the
--            frame of the first command the frame's replies answer); a message
--            pushed to a subscriber answers nothing: "message on <channel>"
--
-- AUTH's password is never shown: "AUTH ***", "AUTH <user> ***", "HELLO 3 AUTH
-- <user> ***"; the passwords MIGRATE, CONFIG SET requirepass and ACL SETUSER
-- carry are arguments after the first, never shown either.
--
-- A module: it defines functions and returns them; nothing happens until
-- osflow.lua calls new(ctx, f_resp) (Wireshark running this file on its own, as
-- it runs every .lua under the plugins folder, registers and prints nothing).
-- new returns analyse(svc, st, to_server, number): the frame's record or nil.
--

-- Commands whose second word names what they do (CONFIG SET, SCRIPT LOAD...).
local CONTAINERS = {
    ACL = true, CLIENT = true, CLUSTER = true, COMMAND = true, CONFIG = true, DEBUG = true,
    FUNCTION = true, LATENCY = true, MEMORY = true, MODULE = true, OBJECT = true, PUBSUB = true,
    SCRIPT = true, SLOWLOG = true, XGROUP = true, XINFO = true,
}
-- Commands a subscriber's connection then receives messages after.
local SUBSCRIBES = { SUBSCRIBE = true, PSUBSCRIBE = true, SSUBSCRIBE = true }
-- Kinds of a message pushed to a subscriber (RESP2: an array starting with the kind).
local PUSHED = { message = true, pmessage = true, smessage = true }

-- Commands whose first argument is a script (shown by its size, not its text).
local SCRIPTS = { EVAL = true, EVAL_RO = true, ["SCRIPT LOAD"] = true, ["FUNCTION LOAD"] = true }

local INCOMPLETE = "incomplete"   -- the error a value cut short raises

local function bytes(n) return n .. ((n == 1) and " byte" or " bytes") end

-- One line (without its CRLF) from position p, and the position after it.
local function line(s, p)
    local e = s:find("\r\n", p, true)
    if not e then error(INCOMPLETE, 0) end
    return s:sub(p, e - 1), e + 2
end

local function count(text)
    local n = tonumber(text)
    if not n or n ~= math.floor(n) or n < -1 then error("bad length " .. text:sub(1, 20), 0) end
    return n
end

-- One RESP value from position p: { t = type, v = value }, and the position
-- after it.  Types: simple, error, int, bulk, nil, array, map, push, other.
local function value(s, p, depth)
    if depth > 32 then error("nested too deep", 0) end
    local kind = s:sub(p, p)
    if kind == "" then error(INCOMPLETE, 0) end
    local text
    text, p = line(s, p + 1)
    if kind == "+" then return { t = "simple", v = text }, p end
    if kind == "-" then return { t = "error", v = text }, p end
    if kind == ":" or kind == "(" or kind == "," or kind == "#" then return { t = "int", v = text }, p end
    if kind == "_" then return { t = "nil" }, p end
    if kind == "$" or kind == "!" or kind == "=" then
        local n = count(text)
        if n == -1 then return { t = "nil" }, p end
        if #s < p + n + 1 then error(INCOMPLETE, 0) end
        local v = s:sub(p, p + n - 1)
        if s:sub(p + n, p + n + 1) ~= "\r\n" then error("bulk string without its CRLF", 0) end
        if kind == "!" then return { t = "error", v = v }, p + n + 2 end
        return { t = "bulk", v = v }, p + n + 2
    end
    if kind == "*" or kind == "~" or kind == ">" or kind == "%" or kind == "|" then
        local n = count(text)
        if n == -1 then return { t = "nil" }, p end
        local items = {}
        local total = (kind == "%" or kind == "|") and 2 * n or n
        for i = 1, total do
            items[i], p = value(s, p, depth + 1)
        end
        if kind == "|" then   -- attributes, then the value they describe
            return value(s, p, depth + 1)
        end
        local t = (kind == "%") and "map" or (kind == ">") and "push" or "array"
        return { t = t, v = items, n = n }, p
    end
    error("not RESP (type byte " .. string.format("%q", kind) .. ")", 0)
end

-- Every value of s: a list, and the error that stopped the reading (or nil).
-- A line that starts with no type byte is an inline command ("PING\r\n").
local function values_of(s, to_server)
    local out, p = {}, 1
    while p <= #s do
        local ok, v, after = pcall(function()
            if to_server and not s:sub(p, p):match("[%*%$]") then
                local text, q = line(s, p)
                local args = {}
                for word in text:gmatch("%S+") do args[#args + 1] = { t = "bulk", v = word } end
                return { t = "array", v = args, n = #args }, q
            end
            return value(s, p, 0)
        end)
        if not ok then return out, v end
        out[#out + 1] = v
        p = after
    end
    return out, nil
end

local M = {}

function M.new(ctx, f_resp)
    local util = ctx.util
    local trunc, printable = util.trunc, util.printable

    local function word(item, n)   -- a bulk string argument, shortened and printable
        if not item or item.t ~= "bulk" then return nil end
        return printable(trunc(item.v, n or 60))
    end

    -- A command (an array of bulk strings): its text, and how many replies it gets.
    local function command(args)
        local name = word(args[1], 40)
        if not name or name == "" then return "command (not an array of strings)", 1, nil end
        name = name:upper()
        local first = 2
        if CONTAINERS[name] and word(args[2], 40) then
            name = name .. " " .. word(args[2], 40):upper()
            first = 3
        end
        local text = name
        if name == "AUTH" then
            -- AUTH password | AUTH username password
            if #args >= 3 then text = text .. " " .. (word(args[2], 40) or "?") end
            return text .. " ***", 1, name
        end
        local arg = word(args[first])
        if SCRIPTS[name] and args[first] and args[first].t == "bulk" then
            arg = "(" .. #args[first].v .. "-byte script)"   -- a script's text is not one line
        end
        if arg then text = text .. " " .. arg end
        if name == "HELLO" then
            for i = 2, #args - 2 do
                local a = word(args[i], 10)
                if a and a:upper() == "AUTH" then
                    text = text .. " AUTH " .. (word(args[i + 1], 40) or "?") .. " ***"
                    break
                end
            end
        end
        local replies = 1
        if SUBSCRIBES[name] then replies = math.max(#args - 1, 1) end
        return text, replies, name
    end

    local function result(v)
        if v.t == "simple" then return trunc(printable(v.v), 30) end
        if v.t == "error" then return "error " .. printable(trunc(v.v:match("^%S*"), 30)) end
        if v.t == "int" then return trunc(v.v, 30) end
        if v.t == "nil" then return "nil" end
        if v.t == "bulk" then return bytes(#v.v) end
        if v.t == "map" then return v.n .. ((v.n == 1) and " pair" or " pairs") end
        if v.t == "array" or v.t == "push" then return #v.v .. ((#v.v == 1) and " item" or " items") end
        return "reply"
    end

    local function pushed(v, conn)
        if v.t == "push" then return true end
        if v.t ~= "array" or not conn.subscriber then return false end
        local kind = v.v[1]
        return kind and kind.t == "bulk" and PUSHED[kind.v:lower()] or false
    end

    local function analyse(svc, st, to_server, number)
        local items = { f_resp() }
        if #items == 0 then return nil end
        local conn = st.redis
        if not conn then
            conn = { queue = {}, head = 1, tail = 0 }   -- commands awaiting replies
            st.redis = conn
        end
        local rec = { tokens = {}, dir = to_server and "request" or "response" }
        local pieces, partial = {}, false
        for _, fi in ipairs(items) do
            local ok, raw = pcall(function() return fi.range:raw() end)
            if ok and type(raw) == "string" then
                local vals, err = values_of(raw, to_server)
                for _, v in ipairs(vals) do
                    if to_server then
                        local text, replies, name
                        if v.t == "array" then
                            text, replies, name = command(v.v)
                        else
                            text, replies = "command (" .. v.t .. ", not an array)", 1
                        end
                        if SUBSCRIBES[name or ""] then conn.subscriber = true end
                        conn.tail = conn.tail + 1
                        conn.queue[conn.tail] = { frame = number, text = text, replies = replies }
                        pieces[#pieces + 1] = text
                    elseif pushed(v, conn) then
                        local channel = (v.v[1] and v.v[1].t == "bulk" and v.v[1].v:lower() == "pmessage")
                            and word(v.v[3]) or word(v.v[2])
                        pieces[#pieces + 1] = "message on " .. (channel or "?")
                    else
                        local res = result(v)
                        if v.t == "error" then
                            rec.error = rec.error or ("Redis answered " .. printable(trunc(v.v, 80)))
                        end
                        local req = conn.queue[conn.head]
                        if req then
                            req.replies = req.replies - 1
                            if req.replies <= 0 then
                                conn.queue[conn.head] = nil
                                conn.head = conn.head + 1
                            end
                            rec.request_in = rec.request_in or req.frame
                            pieces[#pieces + 1] = req.text .. " → " .. res
                        else
                            pieces[#pieces + 1] = res
                        end
                    end
                end
                if err == INCOMPLETE then
                    partial = true
                elseif err then
                    rec.malformed = "Redis message is not RESP: " .. printable(err)
                    pieces[#pieces + 1] = "unreadable RESP"
                end
            end
        end
        if partial then
            -- Wireshark's resp dissector gives the whole value to the segment that ends it:
            -- a segment holding only its beginning is a segment of a longer message (ends only)
            if #pieces == 0 then return { tokens = {} } end
            pieces[#pieces + 1] = "(a RESP value continues in the next segment)"
        end
        rec.op = svc.key .. ": " .. ((#pieces > 0) and util.join_pieces(pieces) or "RESP")
        return rec
    end

    return analyse
end

return M
