--
-- osflow/util.lua: helpers every analyser of dissectors/osflow.lua uses (text
-- shortening, field values).  A module: it only defines functions and returns
-- them, so Wireshark running this file on its own registers and prints nothing.
--

local util = {}

-- At most n bytes (plus "…"), never cutting a UTF-8 sequence in two.
function util.trunc(s, n)
    if #s <= n then return s end
    local cut = n - 1
    while cut > 0 do
        local b = s:byte(cut + 1)
        if not b or b < 0x80 or b >= 0xC0 then break end
        cut = cut - 1
    end
    return s:sub(1, cut) .. "…"
end

function util.short_id(s)
    if type(s) ~= "string" then return "?" end
    if #s > 8 then return s:sub(1, 8) .. "…" end
    return s
end

function util.tbl(v) if type(v) == "table" then return v end return nil end

-- Names from the wire may hold any byte: no control character reaches a field.
function util.printable(s)
    if type(s) ~= "string" then return s end
    return (s:gsub("%c", "?"))
end

-- A field value as a Lua value: a ByteArray (newer http.file_data) as its
-- bytes, a UInt64 as its digits, anything else as it is.
local function lua_value(v)
    if type(v) == "userdata" then
        local ok, raw = pcall(function() return v:raw() end)
        if ok and type(raw) == "string" then return raw end
        return tostring(v)
    end
    return v
end

-- All values of a field (a Field extractor, or nil) in this frame.
function util.values(f)
    if not f then return {} end
    local out = {}
    for i, fi in ipairs({ f() }) do out[i] = lua_value(fi.value) end
    return out
end

-- The first value of a field in this frame, or nil.
function util.first(f)
    if not f then return nil end
    local fi = f()
    if not fi then return nil end
    return lua_value(fi.value)
end

-- Pieces of a frame's operation joined with "; ", a repeated piece once with "×n".
function util.join_pieces(pieces)
    local out, last, count = {}, nil, 0
    local function flush()
        if last then out[#out + 1] = (count > 1) and (last .. " ×" .. count) or last end
    end
    for _, piece in ipairs(pieces) do
        if piece == last then
            count = count + 1
        else
            flush()
            last, count = piece, 1
        end
    end
    flush()
    return table.concat(out, "; ")
end

return util
