--
-- osflow/amqp.lua: the AMQP 0-9-1 (RabbitMQ) analyser of dissectors/osflow.lua
-- and the oslo.messaging RPC it carries.  Each AMQP frame Wireshark dissected
-- (one "amqp" tree each, several per TCP frame) is read from its own bytes, so a
-- field always belongs to its frame.  A message is a method (Basic.Publish,
-- Basic.Deliver...), a content header (body size, headers) and body frames:
-- joined per connection, direction and channel.
--
-- A module: it defines functions and returns them; nothing happens until
-- osflow.lua calls new(ctx, f_amqp) (Wireshark running this file on its own, as
-- it runs every .lua under the plugins folder, registers and prints nothing).
-- new returns analyse(svc, st, to_server, number): the frame's record or nil.
-- It is the analyser of the amqp protocol only: no other frame reaches it.
--

local AMQP_METHODS = {   -- class id -> { class name, method id -> name }
    [10] = { "connection", { [10] = "start", [11] = "start-ok", [20] = "secure", [21] = "secure-ok",
        [30] = "tune", [31] = "tune-ok", [40] = "open", [41] = "open-ok", [50] = "close",
        [51] = "close-ok", [60] = "blocked", [61] = "unblocked", [70] = "update-secret",
        [71] = "update-secret-ok" } },
    [20] = { "channel", { [10] = "open", [11] = "open-ok", [20] = "flow", [21] = "flow-ok",
        [40] = "close", [41] = "close-ok" } },
    [40] = { "exchange", { [10] = "declare", [11] = "declare-ok", [20] = "delete", [21] = "delete-ok",
        [30] = "bind", [31] = "bind-ok", [40] = "unbind", [51] = "unbind-ok" } },
    [50] = { "queue", { [10] = "declare", [11] = "declare-ok", [20] = "bind", [21] = "bind-ok",
        [30] = "purge", [31] = "purge-ok", [40] = "delete", [41] = "delete-ok", [50] = "unbind",
        [51] = "unbind-ok" } },
    [60] = { "basic", { [10] = "qos", [11] = "qos-ok", [20] = "consume", [21] = "consume-ok",
        [30] = "cancel", [31] = "cancel-ok", [40] = "publish", [50] = "return", [60] = "deliver",
        [70] = "get", [71] = "get-ok", [72] = "get-empty", [80] = "ack", [90] = "reject",
        [100] = "recover-async", [110] = "recover", [111] = "recover-ok", [120] = "nack" } },
    [85] = { "confirm", { [10] = "select", [11] = "select-ok" } },
    [90] = { "tx", { [10] = "select", [11] = "select-ok", [20] = "commit", [21] = "commit-ok",
        [30] = "rollback", [31] = "rollback-ok" } },
}
local AMQP_NOISE = { [80] = "amqp ack", [120] = "amqp nack", [90] = "amqp reject" }  -- basic.*

-- First bytes of a body kombu compressed (its "compression" header names it too).
local COMPRESSED_MAGIC = {
    { "\31\139", "gzip" }, { "BZh", "bzip2" }, { "\253\55\122\88\90\0", "xz" },
    { "\40\181\47\253", "zstd" }, { "\120\1", "zlib" }, { "\120\94", "zlib" },
    { "\120\156", "zlib" }, { "\120\218", "zlib" },
}

-- Readers over a Lua string: value and the position after it; a short string
-- raises (level 0: the message alone), caught per AMQP frame.
local function rd8(s, p)
    local b = s:byte(p)
    if not b then error("AMQP frame shorter than its fields", 0) end
    return b, p + 1
end
local function rd16(s, p)
    local a, b = s:byte(p, p + 1)
    if not b then error("AMQP frame shorter than its fields", 0) end
    return a * 256 + b, p + 2
end
local function rd32(s, p)
    local a, b, c, d = s:byte(p, p + 3)
    if not d then error("AMQP frame shorter than its fields", 0) end
    return ((a * 256 + b) * 256 + c) * 256 + d, p + 4
end
local function rdstr(s, p, n)
    if p + n - 1 > #s then error("AMQP frame shorter than its fields", 0) end
    return s:sub(p, p + n - 1), p + n
end
local function shortstr(s, p)
    local n
    n, p = rd8(s, p)
    return rdstr(s, p, n)
end
local function longstr(s, p)
    local n
    n, p = rd32(s, p)
    return rdstr(s, p, n)
end

-- The string value of key in an AMQP field table's bytes (a search for the
-- encoded key and type "S", not a full table parser), or nil.
local function table_string(t, key)
    local pat = string.char(#key) .. key .. "S"
    local i = t:find(pat, 1, true)
    if not i then return nil end
    local ok, v = pcall(longstr, t, i + #pat)
    if ok then return v end
    return nil
end

local M = {}

function M.new(ctx, f_amqp)
    local trunc, tbl, printable = ctx.util.trunc, ctx.util.tbl, ctx.util.printable
    local json, fingerprint, state = ctx.json, ctx.fingerprint, ctx.state

    local function str(v, n)   -- a string member of a message, shortened; nil otherwise
        if type(v) == "string" and v ~= "" then return trunc(v, n or 80) end
        return nil
    end

    local function destination(msg)
        local x, k = msg.exchange or "", msg.rkey or ""
        if x == "" then return k end
        if k == "" then return x end
        return x .. "/" .. k
    end

    -- " (Instance.save)" for nova's conductor object calls
    local function object_detail(method, args)
        args = tbl(args)
        if not args then return "" end
        local objmethod = str(args.objmethod, 40)
        if not objmethod then return "" end
        local objname = str(args.objname, 40)
        if not objname and tbl(args.objinst) then objname = str(args.objinst["nova_object.name"], 40) end
        if method:match("^object_") and objname then return " (" .. objname .. "." .. objmethod .. ")" end
        return ""
    end

    -- The exception class of a reply's failure (a JSON string: class, module, message, tb).
    local function failure_class(failure)
        local f = failure
        if type(f) == "string" then
            local ok, obj = pcall(json.decode, f)
            f = ok and tbl(obj) or nil
        end
        if not tbl(f) then return "?", nil end
        return str(f.class, 60) or "?", str(f.module, 60)
    end

    -- A whole message (method, header, body): its piece of osflow.op; its RPC
    -- facts go to rec.rpc, its token to rec.tokens.
    local function amqp_message(msg, rec, st, number)
        local dest = destination(msg)
        local how = msg.deliver and "deliver" or "publish"
        if msg.returned then how = "return (" .. msg.returned .. ")" end
        local body = table.concat(msg.body)
        local magic
        for _, m in ipairs(COMPRESSED_MAGIC) do
            if body:sub(1, #m[1]) == m[1] then magic = m[2] break end
        end
        if msg.compression or magic then
            return "amqp compressed body (" .. trunc(msg.compression or magic, 40) .. ", " .. how .. " "
                .. trunc(dest, 60) .. ")"
        end
        if msg.too_big then
            return string.format("amqp %s %s (%s bytes body: over the largest body parsed)", how,
                trunc(dest, 60), tostring(msg.size))
        end
        local ok, outer = pcall(json.decode, body)
        if not ok or not tbl(outer) then
            if body:match("^%s*{") then rec.malformed = "AMQP message body is not valid JSON" end
            return string.format("amqp %s %s (%d bytes, not JSON)", how, trunc(dest, 60), #body)
        end
        local m = outer
        if outer["oslo.message"] ~= nil then
            local ok2, inner = false, nil
            if type(outer["oslo.message"]) == "string" then ok2, inner = pcall(json.decode, outer["oslo.message"]) end
            if not ok2 or not tbl(inner) then
                rec.malformed = "oslo.message is not a JSON object in a string"
                return "rpc " .. (msg.deliver and "deliver " or "") .. "message (oslo.message unreadable)"
            end
            m = inner
        end
        local info = { request_id = str(m._context_request_id), msg_id = str(m._msg_id) }
        local token = m._context_auth_token
        if type(token) == "string" and token ~= "" then
            rec.tokens[#rec.tokens + 1] = { fingerprint(token), "_context_auth_token" }
        end
        local client   -- the end of this connection, when the message says who it is
        local method = str(m.method, 60)
        if method then
            local x, k = msg.exchange or "", msg.rkey or ""
            if x:sub(-7) == "_fanout" then
                info.kind, info.topic = "fanout", x:sub(1, -8)
            else
                info.kind = info.msg_id and "call" or "cast"
                info.topic = (k ~= "") and k or x
            end
            info.topic = trunc(info.topic, 60)
            info.method = method
            info.target = ctx.service_of_topic(info.topic)
            local what = info.topic .. "." .. method
            info.text = info.kind .. " " .. what .. object_detail(method, m.args)
            if info.kind == "call" then
                local call = state.rpc_calls[info.msg_id]
                if not call then
                    call = { what = what, target = info.target }
                    state.rpc_calls[info.msg_id] = call
                end
                if not msg.deliver then
                    call.frame = call.frame or number
                    call.caller = call.caller or st.client
                end
            end
            if msg.deliver then client = info.target end   -- the topic's consumer
        elseif info.msg_id then
            info.kind = "reply"
            local call = state.rpc_calls[info.msg_id]
            local text
            if m.failure ~= nil then
                local class, module = failure_class(m.failure)
                info.failure = class
                text = "reply failure " .. class
                rec.error = "RPC call failed: " .. class .. (module and (" (" .. module .. ")") or "")
            else
                text = "reply result"
            end
            if call then
                text = text .. " (" .. call.what .. ")"
                rec.request_in = rec.request_in or call.frame
                if msg.deliver then client = call.caller else client = call.target end
                info.target = msg.deliver and call.caller or nil
            end
            info.text = text
        elseif str(m.event_type) then
            info.kind = "notify"
            info.topic = trunc(msg.rkey or "", 60)
            info.text = "notify " .. str(m.event_type, 80)
        else
            return string.format("amqp %s %s (JSON, not RPC)", how, trunc(dest, 60))
        end
        if client and not rec.client then rec.client = client end
        local prefix = "rpc "
        if msg.returned then prefix = "rpc returned (" .. msg.returned .. ") "
        elseif msg.deliver then prefix = "rpc deliver " end
        info.text = prefix .. info.text
        rec.rpc[#rec.rpc + 1] = info
        return info.text
    end

    local function amqp_method(payload, key, pending, rec, number)
        local class, p = rd16(payload, 1)
        local method
        method, p = rd16(payload, p)
        local names = AMQP_METHODS[class]
        local name = names and names[2][method] and (names[1] .. "." .. names[2][method])
            or string.format("method %d.%d", class, method)
        if class == 60 and AMQP_NOISE[method] then return AMQP_NOISE[method] end
        if class == 60 and (method == 40 or method == 60 or method == 71 or method == 50) then
            local msg = { deliver = (method ~= 40), body = {}, got = 0, frame = number }
            if method == 40 then                               -- publish
                p = p + 2
                msg.exchange, p = shortstr(payload, p)
                msg.rkey = shortstr(payload, p)
            elseif method == 60 then                           -- deliver
                local _
                _, p = shortstr(payload, p)                    -- consumer tag
                p = p + 9                                      -- delivery tag, redelivered
                msg.exchange, p = shortstr(payload, p)
                msg.rkey = shortstr(payload, p)
            elseif method == 71 then                           -- get-ok
                p = p + 9
                msg.exchange, p = shortstr(payload, p)
                msg.rkey = shortstr(payload, p)
            else                                               -- return
                local code, text
                code, p = rd16(payload, p)
                text, p = shortstr(payload, p)
                msg.returned = tostring(code) .. " " .. trunc(text, 40)
                msg.exchange, p = shortstr(payload, p)
                msg.rkey = shortstr(payload, p)
            end
            local old = pending[key]
            if old then
                rec.malformed = "AMQP message ended before its body was complete (channel " .. key:sub(2) .. ")"
            end
            msg.touched = number
            pending[key] = msg
            return nil                                         -- said when its body is complete
        end
        local text = "amqp " .. name
        if class == 10 and method == 11 then                   -- start-ok: never the response
            local props, mechanism, response
            props, p = longstr(payload, p)
            mechanism, p = shortstr(payload, p)
            response = longstr(payload, p)
            local cname = table_string(props, "connection_name")
            if cname then
                text = text .. " " .. trunc(cname, 80)
                local program = cname:match("^([^:]+):")
                if program then
                    rec.client = rec.client or ctx.service_for_name(program) or trunc(program, 40)
                end
            end
            local user = (mechanism == "PLAIN") and response:match("^[^\0]*\0([^\0]*)\0") or nil
            if user and user ~= "" then text = text .. " (user " .. trunc(user, 40) .. ")" end
        elseif (class == 10 and method == 50) or (class == 20 and method == 40) then   -- close
            local code, reason
            code, p = rd16(payload, p)
            reason = shortstr(payload, p)
            text = text .. " " .. tostring(code) .. ((reason ~= "") and (" " .. trunc(reason, 80)) or "")
            if code ~= 200 then
                rec.error = "RabbitMQ: " .. name .. " " .. tostring(code) .. " " .. trunc(reason, 80)
            end
        elseif (class == 50 and (method == 10 or method == 20 or method == 40)) or (class == 60 and method == 20) then
            local queue = shortstr(payload, p + 2)             -- queue.declare/bind/delete, basic.consume
            if queue ~= "" then text = text .. " " .. trunc(queue, 60) end
        elseif class == 40 and (method == 10 or method == 20) then  -- exchange.declare/delete
            local exchange = shortstr(payload, p + 2)
            if exchange ~= "" then text = text .. " " .. trunc(exchange, 60) end
        end
        return text
    end

    local function amqp_header(payload, key, pending, rec, number)
        local msg = pending[key]
        local p = 5                                            -- class id, weight
        local hi, lo, flags, _
        hi, p = rd32(payload, p)
        lo, p = rd32(payload, p)
        flags, p = rd16(payload, p)
        if not msg or msg.size then return "amqp content header without its method" end
        msg.size = hi * 4294967296 + lo
        msg.too_big = msg.size > ctx.prefs.max_body
        if flags >= 0x8000 then _, p = shortstr(payload, p) end          -- content-type
        if flags % 0x8000 >= 0x4000 then _, p = shortstr(payload, p) end -- content-encoding
        if flags % 0x4000 >= 0x2000 then                                  -- headers
            local headers = longstr(payload, p)
            msg.compression = table_string(headers, "compression")
        end
        if msg.size == 0 then
            pending[key] = nil
            return amqp_message(msg, rec, rec.stream_state, number)
        end
        msg.touched = number
        return nil
    end

    local function amqp_body(payload, key, pending, rec, number)
        local msg = pending[key]
        if not msg or not msg.size then return "amqp body without its header" end
        if not msg.too_big then msg.body[#msg.body + 1] = payload end
        msg.got = msg.got + #payload
        if msg.got < msg.size then
            msg.touched = number
            return nil
        end
        pending[key] = nil
        return amqp_message(msg, rec, rec.stream_state, number)
    end

    -- One AMQP frame (its bytes): its piece of osflow.op, or nil.
    local function amqp_frame(raw, key_prefix, pending, rec, number)
        if raw:sub(1, 4) == "AMQP" then return "amqp protocol header" end
        local ftype, p = rd8(raw, 1)
        local channel, size
        channel, p = rd16(raw, p)
        size, p = rd32(raw, p)
        local payload = raw:sub(p, p + size - 1)
        if #payload < size then error("AMQP frame shorter than its size", 0) end
        local key = key_prefix .. channel
        if ftype == 1 then return amqp_method(payload, key, pending, rec, number)
        elseif ftype == 2 then return amqp_header(payload, key, pending, rec, number)
        elseif ftype == 3 then return amqp_body(payload, key, pending, rec, number)
        elseif ftype == 8 then return "amqp heartbeat"
        end
        return "amqp frame type " .. tostring(ftype)
    end

    local function analyse(_svc, st, to_server, number)
        local items = { f_amqp() }
        if #items == 0 then return nil end
        local rec = { tokens = {}, rpc = {}, dir = to_server and "request" or "response", stream_state = st }
        local pending = st.amqp
        if not pending then
            pending = {}
            st.amqp = pending
        end
        local prefix = to_server and ">" or "<"
        local pieces = {}
        for _, fi in ipairs(items) do
            local ok, raw = pcall(function() return fi.range:raw() end)
            if ok and type(raw) == "string" then
                local ok2, piece = pcall(amqp_frame, raw, prefix, pending, rec, number)
                if not ok2 then
                    rec.malformed = tostring(piece)
                    piece = "amqp frame unreadable"
                end
                if piece then pieces[#pieces + 1] = piece end
            end
        end
        -- messages this frame began or continued that wait for more frames
        local waiting = {}
        for key, msg in pairs(pending) do
            if msg.touched == number and key:sub(1, 1) == prefix then waiting[#waiting + 1] = key end
        end
        table.sort(waiting)
        for _, key in ipairs(waiting) do
            local msg = pending[key]
            local more = msg.size and string.format("body %s of %s bytes", tostring(msg.got), tostring(msg.size))
                or "header follows"
            pieces[#pieces + 1] = string.format("amqp %s %s (%s)", msg.deliver and "deliver" or "publish",
                trunc(destination(msg), 60), more)
        end
        -- names from the wire may hold any byte: no control character reaches a field
        rec.op = printable((#pieces > 0) and ctx.util.join_pieces(pieces) or "amqp")
        rec.client, rec.error, rec.malformed = printable(rec.client), printable(rec.error), printable(rec.malformed)
        for _, info in ipairs(rec.rpc) do
            for k, v in pairs(info) do info[k] = printable(v) end
        end
        rec.stream_state = nil
        if #rec.rpc == 0 then rec.rpc = nil end
        return rec
    end

    return analyse
end

return M
