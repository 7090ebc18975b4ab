--
-- osflow/json.lua: a small JSON reader.  decode(s) returns the value (null is
-- nil) or raises an error; callers use pcall.  Objects and arrays nest at most
-- 64 deep; \u escapes give UTF-8 (surrogate pairs are not joined).
--
-- A module of dissectors/osflow.lua: it only defines a function and returns it,
-- so Wireshark running this file on its own registers and prints nothing.
--

local json_decode
do
    local escapes = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

    local function utf8char(cp)
        if cp < 0x80 then return string.char(cp) end
        if cp < 0x800 then
            return string.char(0xC0 + math.floor(cp / 64), 0x80 + cp % 64)
        end
        return string.char(0xE0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
    end

    json_decode = function(s)
        local pos = 1
        local depth = 0
        local value

        local function skip()
            pos = s:find("[^ \t\r\n]", pos) or (#s + 1)
        end

        local function str()
            local buf = {}
            local i = pos + 1
            while true do
                local j = s:find('["\\]', i)
                if not j then error("unterminated string") end
                buf[#buf + 1] = s:sub(i, j - 1)
                if s:sub(j, j) == '"' then
                    pos = j + 1
                    return table.concat(buf)
                end
                local c = s:sub(j + 1, j + 1)
                if c == "u" then
                    local hex = s:sub(j + 2, j + 5)
                    if not hex:match("^%x%x%x%x$") then error("bad \\u escape") end
                    buf[#buf + 1] = utf8char(tonumber(hex, 16))
                    i = j + 6
                elseif escapes[c] then
                    buf[#buf + 1] = escapes[c]
                    i = j + 2
                else
                    error("bad escape")
                end
            end
        end

        value = function()
            skip()
            local c = s:sub(pos, pos)
            if c == "{" or c == "[" then
                depth = depth + 1
                if depth > 64 then error("too deep") end
                local out = {}
                pos = pos + 1
                skip()
                local close = (c == "{") and "}" or "]"
                if s:sub(pos, pos) == close then
                    pos = pos + 1
                    depth = depth - 1
                    return out
                end
                while true do
                    if c == "{" then
                        skip()
                        if s:sub(pos, pos) ~= '"' then error("object key expected") end
                        local k = str()
                        skip()
                        if s:sub(pos, pos) ~= ":" then error("':' expected") end
                        pos = pos + 1
                        out[k] = value()
                    else
                        out[#out + 1] = value()
                    end
                    skip()
                    local d = s:sub(pos, pos)
                    pos = pos + 1
                    if d == close then break end
                    if d ~= "," then error("',' expected") end
                end
                depth = depth - 1
                return out
            elseif c == '"' then
                return str()
            elseif s:find("^true", pos) then
                pos = pos + 4
                return true
            elseif s:find("^false", pos) then
                pos = pos + 5
                return false
            elseif s:find("^null", pos) then
                pos = pos + 4
                return nil
            end
            local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
            if not num or num == "" then error("value expected") end
            pos = pos + #num
            return tonumber(num) or 0
        end

        local v = value()
        skip()
        if pos <= #s then error("trailing data") end
        return v
    end
end

return { decode = json_decode }
