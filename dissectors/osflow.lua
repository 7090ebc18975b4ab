--
-- osflow.lua: what each packet of an OpenStack controller capture means.
--
-- A post-dissector: it runs after Wireshark's own HTTP, MySQL and memcache
-- dissectors, reads their fields and adds an "osflow" tree to every frame of
-- a connection on a port of the map (handshake, ACKs, FIN and RST included) with
--
--   osflow.service    service key of the server end (keystone, placement, mysql...)
--   osflow.client     service key of the client end, as far as the packets show
--   osflow.server     service key of the server end
--   osflow.flow       "OpenStackClient -> keystone" (labels, arrow shows the direction)
--   osflow.db         MySQL schema of the connection
--
-- and, on the frames that carry an application message, also
--
--   osflow.direction  request | response
--   osflow.op         one-line meaning ("keystone: validate token")
--   osflow.token      token fingerprint: first 8 hex digits of SHA-256(token), never the token
--   osflow.cache      hit | miss (memcached replies)
--   osflow.request_in frame of the request a response answers (an RPC reply: its call)
--   osflow.request_id x-openstack-request-id of an HTTP response, _context_request_id of RPC
--   osflow.rpc        one subtree per oslo.messaging message of an AMQP frame, with
--                     osflow.rpc.kind (call, cast, fanout, reply, notify), .topic, .method,
--                     .target (service consuming the topic), .msg_id, .failure (exception class)
--
-- RPC over RabbitMQ (5672): every AMQP frame of a TCP frame is read (method,
-- content header, body; a body in several body frames is joined per channel and
-- direction) and gets one piece of osflow.op; several pieces are joined with
-- "; " (a repeated piece once, with "×n"):
--   rpc call scheduler.select_destinations          a publish (osflow.direction request)
--   rpc deliver cast conductor.schedule_and_build_instances    a deliver (response)
--   rpc fanout scheduler.update_instance_info       exchange <topic>_fanout
--   rpc reply result (scheduler.select_destinations), rpc reply failure NoValidHost (...)
--   amqp heartbeat, amqp ack, amqp compressed body (application/x-gzip), amqp queue.declare q
-- The topic is the routing key (a fanout: the exchange without "_fanout"); the
-- broker is the server end, the direction is the packet's (publish: request,
-- deliver: response), as for every other protocol.  _context_auth_token gives
-- osflow.token (the same fingerprint as in HTTP headers), never the token; the
-- broker password of Connection.Start-Ok is never read into a field.
--
-- The service port map below is the same as postproc/osflow/portmap.py
-- (tests/test_portmap_lua.py fails when they differ) and is a preference; the
-- token headers, MySQL command names, User-Agent rules and RPC topics are the same as in
-- postproc/osflow/openstack.py (tests/test_shared_truth.py).
--
-- Load it for one run:  tshark -X lua_script:osflow.lua -r capture.pcapng -Y osflow.op
-- Install it:           osflow profile install
--
-- Wireshark 4.0 or later (Lua 5.2; bitwise operations use bit32, or BitOp's "bit").
-- Nothing here prints: tshark output (PDML) stays clean.
--

local osflow = Proto.new("osflow", "OpenStack flow (osflow)")

---------------------------------------------------------------------------
-- Port map.  Keep in sync with postproc/osflow/portmap.py (SERVICES).
---------------------------------------------------------------------------
-- BEGIN PORTMAP
local SERVICES = {
    { key = "keystone",        label = "keystone",        ports = { 5000, 35357 }, protocol = "http", database = "keystone" },
    { key = "placement",       label = "placement",       ports = { 8778 },        protocol = "http", database = "placement" },
    { key = "glance",          label = "glance",          ports = { 9292 },        protocol = "http", database = "glance" },
    { key = "nova-api",        label = "nova-api",        ports = { 8774 },        protocol = "http", database = "nova_api" },
    { key = "nova-metadata",   label = "nova-metadata",   ports = { 8775 },        protocol = "http" },
    { key = "nova-novncproxy", label = "nova-novncproxy", ports = { 6080 },        protocol = "http" },
    { key = "neutron-server",  label = "neutron-server",  ports = { 9696 },        protocol = "http", database = "neutron" },
    { key = "cinder-api",      label = "cinder-api",      ports = { 8776 },        protocol = "http", database = "cinder" },
    { key = "heat-api",        label = "heat-api",        ports = { 8004 },        protocol = "http", database = "heat" },
    { key = "heat-api-cfn",    label = "heat-api-cfn",    ports = { 8000 },        protocol = "http", database = "heat" },
    { key = "swift-proxy",     label = "swift-proxy",     ports = { 8080 },        protocol = "http" },
    { key = "barbican",        label = "barbican",        ports = { 9311 },        protocol = "http", database = "barbican" },
    { key = "octavia",         label = "octavia",         ports = { 9876 },        protocol = "http", database = "octavia" },
    { key = "designate",       label = "designate",       ports = { 9001 },        protocol = "http", database = "designate" },
    { key = "manila",          label = "manila",          ports = { 8786 },        protocol = "http", database = "manila" },
    { key = "ironic",          label = "ironic",          ports = { 6385 },        protocol = "http", database = "ironic" },
    { key = "gnocchi",         label = "gnocchi",         ports = { 8041 },        protocol = "http", database = "gnocchi" },
    { key = "aodh",            label = "aodh",            ports = { 8042 },        protocol = "http", database = "aodh" },
    { key = "memcached",       label = "memcached",       ports = { 11211 },       protocol = "memcache" },
    { key = "mysql",           label = "MySQL",           ports = { 3306 },        protocol = "mysql" },
    { key = "rabbitmq",        label = "RabbitMQ",        ports = { 5672 },        protocol = "amqp" },
    { key = "redis",           label = "Redis",           ports = { 6379 },        protocol = "redis" },
    { key = "openstackclient", label = "OpenStackClient", ports = { },             protocol = "http" },
}
-- END PORTMAP

local BY_KEY = {}
for _, s in ipairs(SERVICES) do BY_KEY[s.key] = s end

---------------------------------------------------------------------------
-- What osflow-post knows too.  Keep in sync with postproc/osflow/openstack.py
-- (TOKEN_HEADERS, MYSQL_COMMANDS, USER_AGENT_PRODUCTS, USER_AGENT_CLIENT_WORDS):
-- tests/test_shared_truth.py reads these blocks and the plugin's output.
---------------------------------------------------------------------------
-- HTTP headers that carry a keystone token (Swift's X-Storage-Token too).
-- BEGIN TOKEN_HEADERS
local TOKEN_HEADERS = {
    "X-Auth-Token",
    "X-Subject-Token",
    "X-Service-Token",
    "X-Storage-Token",
}
-- END TOKEN_HEADERS

-- COM_* codes (mysql.command) -> command names (the COM_ name in lower case).
-- BEGIN MYSQL_COMMANDS
local MYSQL_COMMANDS = {
    [0] = "sleep",
    [1] = "quit",
    [2] = "init_db",
    [3] = "query",
    [4] = "field_list",
    [5] = "create_db",
    [6] = "drop_db",
    [7] = "refresh",
    [8] = "shutdown",
    [9] = "statistics",
    [10] = "process_info",
    [12] = "process_kill",
    [13] = "debug",
    [14] = "ping",
    [17] = "change_user",
    [22] = "stmt_prepare",
    [23] = "stmt_execute",
    [24] = "stmt_send_long_data",
    [25] = "stmt_close",
    [26] = "stmt_reset",
    [27] = "set_option",
    [28] = "stmt_fetch",
    [31] = "reset_connection",
}
-- END MYSQL_COMMANDS

-- User-Agent -> service key, as osflow.openstack.service_of_user_agent: the
-- product (lower case, before the first "/") in USER_AGENT_PRODUCTS first, then
-- any of USER_AGENT_CLIENT_WORDS anywhere (lower case): the OpenStack client.
-- BEGIN USER_AGENTS
local USER_AGENT_PRODUCTS = {
    { "placement", "placement" },
    { "keystone", "keystone" },
    { "nova", "nova-api" },
    { "nova-api", "nova-api" },
    { "neutron", "neutron-server" },
    { "neutron-server", "neutron-server" },
    { "cinder", "cinder-api" },
    { "cinder-api", "cinder-api" },
    { "glance", "glance" },
    { "glance-api", "glance" },
    { "heat", "heat-api" },
    { "nova-compute", "nova-compute" },
    { "nova-conductor", "nova-conductor" },
    { "nova-scheduler", "nova-scheduler" },
}
local USER_AGENT_CLIENT_WORDS = {
    "python-openstackclient",
    "openstacksdk/",
    "osc-lib",
}
-- END USER_AGENTS

-- oslo.messaging topic -> the service consuming it, as osflow.openstack.service_of_topic:
-- a routing key (a fanout exchange without its "_fanout") names the service of the
-- longest topic it equals or starts with followed by "." or "-" (compute.controller).
-- BEGIN RPC_TOPICS
local RPC_TOPICS = {
    { "conductor", "nova-conductor" },
    { "scheduler", "nova-scheduler" },
    { "compute", "nova-compute" },
    { "consoleauth", "nova-consoleauth" },
    { "q-plugin", "neutron-server" },
    { "q-reports-plugin", "neutron-server" },
    { "q-l3-plugin", "neutron-server" },
    { "q-server-resource-versions", "neutron-server" },
    { "neutron-vo", "neutron-agent" },
    { "q-agent-notifier", "neutron-agent" },
    { "dhcp_agent", "neutron-dhcp-agent" },
    { "l3_agent", "neutron-l3-agent" },
    { "cinder-volume", "cinder-volume" },
    { "cinder-scheduler", "cinder-scheduler" },
    { "cinder-backup", "cinder-backup" },
    { "engine", "heat-engine" },
}
-- END RPC_TOPICS

local TOKEN_HEADER_NAMES = {}   -- lower-case name -> name as listed
for _, h in ipairs(TOKEN_HEADERS) do TOKEN_HEADER_NAMES[h:lower()] = h end
local PRODUCT_SERVICES = {}     -- product -> service key
for _, p in ipairs(USER_AGENT_PRODUCTS) do PRODUCT_SERVICES[p[1]] = p[2] end
local TOPICS_LONGEST_FIRST = {} -- { topic, service, index }, longest topic first
for i, t in ipairs(RPC_TOPICS) do TOPICS_LONGEST_FIRST[i] = { t[1], t[2], i } end
table.sort(TOPICS_LONGEST_FIRST, function(a, b)
    if #a[1] ~= #b[1] then return #a[1] > #b[1] end
    return a[3] < b[3]
end)

-- "keystone=5000,35357;placement=8778;..." (the preference's format)
local function portmap_to_string(services)
    local parts = {}
    for _, s in ipairs(services) do
        if #s.ports > 0 then
            local ports = {}
            for i, p in ipairs(s.ports) do ports[i] = tostring(p) end
            parts[#parts + 1] = s.key .. "=" .. table.concat(ports, ",")
        end
    end
    return table.concat(parts, ";")
end

---------------------------------------------------------------------------
-- Preferences (one table of defaults, as in Wireshark's dissectFPM.lua)
---------------------------------------------------------------------------
local default_settings = {
    services    = portmap_to_string(SERVICES),
    http_decode = true,   -- decode the HTTP ports of the map as HTTP
    info_prefix = true,   -- prefix the Info column with "[service] "
    max_body    = 65536,  -- largest JSON body parsed (bytes)
}

osflow.prefs.services = Pref.string("Service port map", default_settings.services,
    "service=port,port;service=port;...  A key not in osflow's list is an HTTP service "
    .. "unless written key/protocol (protocol: http, mysql, memcache, amqp, other)")
osflow.prefs.http_decode = Pref.bool("Decode HTTP service ports as HTTP", default_settings.http_decode,
    "Register the HTTP ports of the map in the tcp.port table (Wireshark gives 5000 to another dissector)")
osflow.prefs.info_prefix = Pref.bool("Prefix Info with [service]", default_settings.info_prefix,
    "Write the server's service key in front of the Info column")
osflow.prefs.max_body = Pref.uint("Largest JSON body parsed", default_settings.max_body,
    "Bodies longer than this many bytes are not parsed (keystone auth requests are about 250)")

---------------------------------------------------------------------------
-- Fields and expert infos
---------------------------------------------------------------------------
local pf = {
    service    = ProtoField.string("osflow.service", "Service", base.ASCII, "Service key of the server end"),
    client     = ProtoField.string("osflow.client", "Client", base.ASCII, "Service key of the client end"),
    server     = ProtoField.string("osflow.server", "Server", base.ASCII, "Service key of the server end"),
    flow       = ProtoField.string("osflow.flow", "Flow", base.ASCII, "client -> server (labels)"),
    direction  = ProtoField.string("osflow.direction", "Direction", base.ASCII, "request or response"),
    op         = ProtoField.string("osflow.op", "Operation", base.UNICODE, "What this message means for OpenStack"),
    token      = ProtoField.string("osflow.token", "Token", base.ASCII,
                                   "First 8 hex digits of the SHA-256 of the token (never the token)"),
    token_hdr  = ProtoField.string("osflow.token.source", "Token source", base.ASCII,
                                   "Header, body member or cache key the token came from"),
    cache      = ProtoField.string("osflow.cache", "Cache", base.ASCII, "memcached reply: hit or miss"),
    db         = ProtoField.string("osflow.db", "Database", base.ASCII, "MySQL schema of this connection"),
    request_in = ProtoField.framenum("osflow.request_in", "Request in frame", base.NONE, frametype.REQUEST),
    request_id = ProtoField.string("osflow.request_id", "Request ID", base.ASCII,
                                   "x-openstack-request-id (HTTP), _context_request_id (RPC)"),
    rpc        = ProtoField.string("osflow.rpc", "RPC message", base.UNICODE, "One oslo.messaging message"),
    rpc_kind   = ProtoField.string("osflow.rpc.kind", "RPC kind", base.ASCII,
                                   "call, cast, fanout, reply or notify"),
    rpc_topic  = ProtoField.string("osflow.rpc.topic", "RPC topic", base.ASCII,
                                   "Routing key (a fanout: the exchange without _fanout)"),
    rpc_method = ProtoField.string("osflow.rpc.method", "RPC method", base.ASCII, "Method called or cast"),
    rpc_target = ProtoField.string("osflow.rpc.target", "RPC target", base.ASCII,
                                   "Service consuming the topic (osflow.openstack.RPC_TOPICS)"),
    rpc_msg_id = ProtoField.string("osflow.rpc.msg_id", "RPC message ID", base.ASCII,
                                   "_msg_id: ties a call to its reply"),
    rpc_failure = ProtoField.string("osflow.rpc.failure", "RPC failure", base.ASCII,
                                    "Exception class of a failed call's reply"),
}
osflow.fields = pf

local ef = {
    error     = ProtoExpert.new("osflow.error", "OpenStack service answered with an error",
                                expert.group.RESPONSE_CODE, expert.severity.NOTE),
    malformed = ProtoExpert.new("osflow.malformed", "osflow could not read this message",
                                expert.group.MALFORMED, expert.severity.WARN),
    token     = ProtoExpert.new("osflow.token_problem", "Token header or cache key is not as expected",
                                expert.group.PROTOCOL, expert.severity.WARN),
    prefs     = ProtoExpert.new("osflow.bad_pref", "osflow service port map preference has invalid entries",
                                expert.group.PROTOCOL, expert.severity.WARN),
    internal  = ProtoExpert.new("osflow.internal_error", "osflow plugin error (please report)",
                                expert.group.MALFORMED, expert.severity.ERROR),
}
osflow.experts = { ef.error, ef.malformed, ef.token, ef.prefs, ef.internal }

---------------------------------------------------------------------------
-- Field extractors (load time).  A field missing from this Wireshark
-- version gives nil instead of stopping the plugin.
---------------------------------------------------------------------------
local function field(name)
    local ok, f = pcall(Field.new, name)
    if ok then return f end
    return nil
end

local f_frame        = field("frame")      -- absent when this pass builds no protocol tree
local f_tcp_stream   = field("tcp.stream")
local f_http         = field("http")       -- protocol fields: one cheap call says
local f_memcache     = field("memcache")   -- whether the frame holds a message
local f_mysql        = field("mysql")
local f_amqp         = field("amqp")
local f_http_method  = field("http.request.method")
local f_http_uri     = field("http.request.uri")
local f_http_reqline = field("http.request.line")
local f_http_code    = field("http.response.code")
local f_http_desc    = field("http.response.code.desc")
local f_http_resline = field("http.response.line")
local f_http_req_in  = field("http.request_in")
local f_http_body    = field("http.file_data")
local f_mc_command   = field("memcache.command")
local f_mc_key       = field("memcache.key")
local f_mc_response  = field("memcache.response")
local f_mc_value     = field("memcache.value")
local f_my_command   = field("mysql.command")
local f_my_query     = field("mysql.query")
local f_my_user      = field("mysql.user")
local f_my_schema    = field("mysql.schema")
local f_my_fielddb   = field("mysql.field.db")
local f_my_respcode  = field("mysql.response_code")
local f_my_errcode   = field("mysql.error_code") or field("mysql.error.code")
local f_my_errmsg    = field("mysql.error.message")
local f_my_numfields = field("mysql.num_fields")
local f_my_version   = field("mysql.version")

-- All values of a field in this frame, as Lua values (strings, numbers).
local function values(f)
    if not f then return {} end
    local out = {}
    for i, fi in ipairs({ f() }) do
        local v = fi.value
        if type(v) == "userdata" then
            -- ByteArray (newer http.file_data) or UInt64
            local ok, raw = pcall(function() return v:raw() end)
            if ok and type(raw) == "string" then v = raw else v = tostring(v) end
        end
        out[i] = v
    end
    return out
end

local function first(f)
    if not f then return nil end
    local fi = f()
    if not fi then return nil end
    local v = fi.value
    if type(v) == "userdata" then
        local ok, raw = pcall(function() return v:raw() end)
        if ok and type(raw) == "string" then v = raw else v = tostring(v) end
    end
    return v
end

---------------------------------------------------------------------------
-- SHA-256 (pure Lua; Wireshark 4.0's Lua API has no hash function)
---------------------------------------------------------------------------
local bitlib = bit32 or bit
local band, bxor, bnot, rshift = bitlib.band, bitlib.bxor, bitlib.bnot, bitlib.rshift
local ror = bitlib.rrotate or bitlib.ror

local K256 = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}

local TWO32 = 4294967296

local function u32(x) return band(x, 0xffffffff) % TWO32 end

local function sha256_hex(msg)
    local ml = #msg
    local bitlen = ml * 8
    local tail = {}
    for i = 7, 0, -1 do
        tail[#tail + 1] = string.char(math.floor(bitlen / 2 ^ (8 * i)) % 256)
    end
    msg = msg .. "\128" .. string.rep("\0", (55 - ml) % 64) .. table.concat(tail)

    local h0, h1, h2, h3 = 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a
    local h4, h5, h6, h7 = 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19
    local w = {}
    for chunk = 1, #msg, 64 do
        for i = 0, 15 do
            local b1, b2, b3, b4 = msg:byte(chunk + 4 * i, chunk + 4 * i + 3)
            w[i] = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
        end
        for i = 16, 63 do
            local x, y = w[i - 15], w[i - 2]
            local s0 = bxor(ror(x, 7), ror(x, 18), rshift(x, 3))
            local s1 = bxor(ror(y, 17), ror(y, 19), rshift(y, 10))
            w[i] = u32(w[i - 16] + s0 + w[i - 7] + s1)
        end
        local a, b, c, d, e, f, g, h = h0, h1, h2, h3, h4, h5, h6, h7
        for i = 0, 63 do
            local S1 = bxor(ror(e, 6), ror(e, 11), ror(e, 25))
            local ch = bxor(band(e, f), band(bnot(e), g))
            local t1 = u32(h + S1 + ch + K256[i + 1] + w[i])
            local S0 = bxor(ror(a, 2), ror(a, 13), ror(a, 22))
            local maj = bxor(band(a, b), band(a, c), band(b, c))
            local t2 = u32(S0 + maj)
            h, g, f, e, d, c, b, a = g, f, e, u32(d + t1), c, b, a, u32(t1 + t2)
        end
        h0, h1, h2, h3 = u32(h0 + a), u32(h1 + b), u32(h2 + c), u32(h3 + d)
        h4, h5, h6, h7 = u32(h4 + e), u32(h5 + f), u32(h6 + g), u32(h7 + h)
    end
    return string.format("%08x%08x%08x%08x%08x%08x%08x%08x",
        u32(h0), u32(h1), u32(h2), u32(h3), u32(h4), u32(h5), u32(h6), u32(h7))
end

local fingerprint_cache = {}
local fingerprint_cache_size = 0

-- Token fingerprint: first 8 hex digits of SHA-256 (as osflow-post shows it).
local function fingerprint(token)
    local fp = fingerprint_cache[token]
    if fp then return fp end
    fp = sha256_hex(token):sub(1, 8)
    if fingerprint_cache_size > 10000 then
        fingerprint_cache, fingerprint_cache_size = {}, 0
    end
    fingerprint_cache[token] = fp
    fingerprint_cache_size = fingerprint_cache_size + 1
    return fp
end

---------------------------------------------------------------------------
-- A small JSON reader (errors are raised; callers use pcall)
---------------------------------------------------------------------------
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

---------------------------------------------------------------------------
-- Helpers
---------------------------------------------------------------------------
-- At most n bytes (plus "…"), never cutting a UTF-8 sequence in two.
local function trunc(s, n)
    if #s <= n then return s end
    local cut = n - 1
    while cut > 0 do
        local b = s:byte(cut + 1)
        if not b or b < 0x80 or b >= 0xC0 then break end
        cut = cut - 1
    end
    return s:sub(1, cut) .. "…"
end

local function short_id(s)
    if type(s) ~= "string" then return "?" end
    if #s > 8 then return s:sub(1, 8) .. "…" end
    return s
end

local function tbl(v) if type(v) == "table" then return v end return nil end

-- "nova" (a MySQL user or keystone user name) -> "nova-api"
local function service_for_name(name, by_key)
    if type(name) ~= "string" or name == "" then return nil end
    name = name:lower()
    if by_key[name] then return name end
    for _, s in ipairs(SERVICES) do
        if s.database == name then return s.key end
    end
    for _, s in ipairs(SERVICES) do
        if s.key:sub(1, #name + 1) == name .. "-" then return s.key end
    end
    return nil
end

local function service_for_database(db)
    if type(db) ~= "string" then return nil end
    for _, s in ipairs(SERVICES) do
        if s.database == db then return s.key end
    end
    return nil
end

---------------------------------------------------------------------------
-- Live port map (rebuilt when the preference changes)
---------------------------------------------------------------------------
local by_port = {}          -- port -> service table
local by_key = BY_KEY       -- key -> service table (map entries plus preference-only keys)
local pref_errors = nil     -- text describing ignored preference entries
local http_ports = {}       -- ports registered in tcp.port
local tcp_port_table = DissectorTable.get("tcp.port")
-- "http-over-tcp" is the handle HTTP itself puts in tcp.port (Wireshark 3.x and
-- later); adding plain "http" there makes Wireshark print a warning.
local function get_dissector(name)
    local ok, d = pcall(Dissector.get, name)
    if ok then return d end
    return nil
end
local http_dissector = get_dissector("http-over-tcp") or get_dissector("http")

local function parse_portmap(text)
    local ports, keys, bad = {}, {}, {}
    for k, s in pairs(BY_KEY) do keys[k] = s end
    for entry in tostring(text):gmatch("[^;]+") do
        local key, proto, list = entry:match("^%s*([%w_%.%-]+)%s*/?%s*([%a]*)%s*=%s*([%d,%s]*)$")
        if not key or list:match("^%s*$") then
            bad[#bad + 1] = entry
        else
            key = key:lower()
            local svc = keys[key]
            if not svc then
                svc = { key = key, label = key, ports = {}, protocol = (proto ~= "" and proto:lower()) or "http" }
                keys[key] = svc
            end
            for p in list:gmatch("%d+") do
                local n = tonumber(p)
                if n and n > 0 and n < 65536 then
                    ports[n] = svc
                else
                    bad[#bad + 1] = entry
                end
            end
        end
    end
    return ports, keys, (#bad > 0) and table.concat(bad, "; ") or nil
end

local function apply_prefs()
    by_port, by_key, pref_errors = parse_portmap(osflow.prefs.services)
    for _, svc in pairs(by_key) do svc.prefix = "[" .. svc.key .. "] " end
    for port in pairs(http_ports) do
        tcp_port_table:remove(port, http_dissector)
    end
    http_ports = {}
    if osflow.prefs.http_decode and http_dissector then
        for port, svc in pairs(by_port) do
            if svc.protocol == "http" then
                tcp_port_table:add(port, http_dissector)
                http_ports[port] = true
            end
        end
    end
end

---------------------------------------------------------------------------
-- Capture state (reset by init)
---------------------------------------------------------------------------
local frames        -- frame number -> record (computed on the first pass)
local streams       -- tcp.stream -> { client=, db=, last_op=, last_frame=, amqp= }
local awaiting      -- token fingerprint -> service whose middleware will validate it
local rpc_calls     -- RPC _msg_id -> { frame=, what=, target=, caller= } of the call

local function reset_state()
    frames, streams, awaiting, rpc_calls = {}, {}, {}, {}
end
reset_state()

function osflow.init()
    reset_state()
end

---------------------------------------------------------------------------
-- Operations
---------------------------------------------------------------------------
-- Header lines ("Name: value\r\n") -> list of { lname, name, value }
local function parse_headers(lines)
    local out = {}
    for _, line in ipairs(lines) do
        if type(line) == "string" then
            local name, value = line:match("^([^:]+):[ \t]*(.-)[ \t\r\n]*$")
            if name then out[#out + 1] = { name:lower(), name, value } end
        end
    end
    return out
end

local function header(headers, lname)
    for _, h in ipairs(headers) do
        if h[1] == lname then return h[3] end
    end
    return nil
end

local function microversion(headers, svc)
    local v = header(headers, "openstack-api-version")
    if v then
        local mv = v:match("^%s*[%w_%-]+%s+([%w%.]+)") or v:match("^%s*([%d%.]+)%s*$")
        if mv then return mv end
    end
    for _, h in ipairs(headers) do
        local mv = h[1]:match("^x%-openstack%-[%w%-]+%-api%-version$") and h[3]:match("([%d%.]+)")
        if mv then return mv end
    end
    return nil
end

-- "(password, user admin, project admin)" from a keystone auth request body
local function describe_auth(auth, tokens)
    local identity = tbl(auth.identity) or {}
    local parts = {}
    local methods = tbl(identity.methods) or {}
    local names = {}
    for _, m in ipairs(methods) do
        if type(m) == "string" then names[#names + 1] = m end
    end
    parts[#parts + 1] = (#names > 0) and table.concat(names, "+") or "no method"
    local user
    local pw = tbl(identity.password)
    if pw then user = tbl(pw.user) end
    if user then
        local who = (type(user.name) == "string" and user.name) or ("id " .. short_id(user.id))
        local dom = tbl(user.domain)
        local dname = dom and (dom.name or dom.id)
        if type(dname) == "string" and dname:lower() ~= "default" then who = who .. "@" .. dname end
        parts[#parts + 1] = "user " .. who
    end
    local tok = tbl(identity.token)
    if tok and type(tok.id) == "string" then
        tokens[#tokens + 1] = { fingerprint(tok.id), "body auth.identity.token.id" }
    end
    local ac = tbl(identity.application_credential)
    if ac then
        parts[#parts + 1] = "application credential " ..
            ((type(ac.name) == "string" and ac.name) or short_id(ac.id))
    end
    local scope = auth.scope
    if type(scope) == "string" and scope == "unscoped" then
        parts[#parts + 1] = "unscoped"
    elseif tbl(scope) then
        local project = tbl(scope.project)
        local domain = tbl(scope.domain)
        if project then
            local p = (type(project.name) == "string" and project.name) or ("id " .. short_id(project.id))
            parts[#parts + 1] = "project " .. p
        elseif domain then
            parts[#parts + 1] = "domain " .. tostring((type(domain.name) == "string" and domain.name) or short_id(domain.id))
        elseif scope.system then
            parts[#parts + 1] = "system"
        elseif scope["OS-TRUST:trust"] then
            parts[#parts + 1] = "trust"
        end
    else
        parts[#parts + 1] = "unscoped"
    end
    return "(" .. table.concat(parts, ", ") .. ")"
end

local KEYSTONE_TOKEN_OPS = { GET = "validate token", HEAD = "check token", DELETE = "revoke token" }

-- The service a User-Agent names (the rules of the USER_AGENTS block).
local function user_agent_service(ua)
    if type(ua) ~= "string" then return nil end
    local l = ua:lower()
    local product = l:match("^%s*([%w_%.%-]+)[/ ]")  -- a product, with its /version or without
    local key = product and PRODUCT_SERVICES[product]
    if key then return key end
    for _, word in ipairs(USER_AGENT_CLIENT_WORDS) do
        if l:find(word, 1, true) then return "openstackclient" end
    end
    return nil
end

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

local MEMCACHE_REPLIES = {
    STORED = "stored", NOT_STORED = "not stored", EXISTS = "exists", NOT_FOUND = "not found",
    DELETED = "deleted", TOUCHED = "touched", OK = "ok", ERROR = "error",
    CLIENT_ERROR = "error", SERVER_ERROR = "error",
}

---------------------------------------------------------------------------
-- Per-protocol analysis.  Each returns a record:
--   { dir=, op=, tokens={ {fp, source}, ... }, cache=, db=, client=,
--     request_in=, request_id=, error=, malformed=, token_problem= }
-- or nil when the frame carries no message of that protocol.
---------------------------------------------------------------------------
local function analyse_http(svc, st)
    local methods = values(f_http_method)
    local codes = (#methods == 0) and values(f_http_code) or {}
    if #methods == 0 and #codes == 0 then return nil end
    local rec = { tokens = {} }
    local lines = values((#methods > 0) and f_http_reqline or f_http_resline)
    local headers = parse_headers(lines)
    for _, h in ipairs(headers) do
        local canonical = TOKEN_HEADER_NAMES[h[1]]
        if canonical then
            if h[3] == "" then
                rec.token_problem = canonical .. " header is empty"
            else
                rec.tokens[#rec.tokens + 1] = { fingerprint(h[3]), canonical }
            end
        end
    end
    local more = ""
    if #methods > 1 then more = string.format(" (+%d more)", #methods - 1)
    elseif #codes > 1 then more = string.format(" (+%d more)", #codes - 1) end

    if #methods > 0 then
        rec.dir = "request"
        local method = tostring(methods[1])
        local uri = tostring(first(f_http_uri) or "?")
        local path = uri:match("^[^?#]*") or uri
        local text
        if svc.key == "keystone" and path:match("^/v3/auth/tokens/?$") and method == "POST" then
            text = "issue token"
            local body = first(f_http_body)
            if type(body) == "string" and #body <= osflow.prefs.max_body then
                local ok, obj = pcall(json_decode, body)
                if ok and tbl(obj) and tbl(obj.auth) then
                    text = text .. " " .. describe_auth(obj.auth, rec.tokens)
                else
                    rec.malformed = "keystone auth request body is not the expected JSON"
                end
            elseif body == nil then
                rec.malformed = "keystone auth request without a body"
            end
        elseif svc.key == "keystone" and path:match("^/v3/auth/tokens/?$") and KEYSTONE_TOKEN_OPS[method] then
            text = KEYSTONE_TOKEN_OPS[method]
        elseif svc.key == "keystone" and path:match("^/v2%.0/tokens/?$") and method == "POST" then
            text = "issue token (v2.0)"
        else
            text = method .. " " .. trunc(uri, 100)
            local mv = microversion(headers, svc)
            if mv then text = text .. " (microversion " .. mv .. ")" end
        end
        rec.op = svc.key .. ": " .. text .. more
        rec.client = user_agent_service(header(headers, "user-agent"))

        -- Who is this request from?  keystonemiddleware of the service
        -- that received this token earlier validates it.
        for _, t in ipairs(rec.tokens) do
            if t[2] == "X-Subject-Token" and awaiting[t[1]] then
                rec.client = rec.client or awaiting[t[1]]
            end
        end
        if svc.key ~= "keystone" then
            for _, t in ipairs(rec.tokens) do
                if t[2] == "X-Auth-Token" then awaiting[t[1]] = svc.key end
            end
        end
        if not rec.client and text:match("^issue token") then
            local user = text:match("user ([%w_%-%.]+)")
            local s = service_for_name(user, by_key)
            if s and s ~= "openstackclient" then rec.client = s end
        end
    else
        rec.dir = "response"
        local code = tonumber(codes[1]) or 0
        local desc = first(f_http_desc)
        local status = tostring(code) .. ((type(desc) == "string" and desc ~= "") and (" " .. desc) or "")
        local req = tonumber(first(f_http_req_in))
        rec.request_in = req
        local req_rec = req and frames[req]
        if req_rec and req_rec.op then
            rec.op = req_rec.op .. " → " .. status .. more
        else
            rec.op = svc.key .. ": response " .. status .. more
        end
        rec.request_id = header(headers, "x-openstack-request-id")
        if code >= 400 then
            rec.error = svc.key .. " answered " .. status
        end
    end
    return rec
end

local function analyse_memcache(svc, st)
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
            if awaiting[t[1]] then rec.client = awaiting[t[1]] end
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

local function analyse_mysql(svc, st)
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
        rec.client = service_for_name(tostring(user), by_key)
    elseif #commands > 0 then
        rec.dir = "request"
        local cmd = tonumber(commands[1]) or -1
        -- the command's name, then its argument: "init_db placement",
        -- "stmt_prepare SELECT … FROM traits"; a query is its SQL alone
        local text = MYSQL_COMMANDS[cmd] or ("command " .. tostring(cmd))
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
    if rec.db and not rec.client then rec.client = service_for_database(rec.db) end
    return rec
end

---------------------------------------------------------------------------
-- AMQP 0-9-1 (RabbitMQ) and the oslo.messaging RPC it carries.  Each AMQP
-- frame Wireshark dissected (one "amqp" tree each, several per TCP frame) is
-- read from its own bytes, so a field always belongs to its frame.  A message
-- is a method (Basic.Publish, Basic.Deliver...), a content header (body size,
-- headers) and body frames: joined per connection, direction and channel.
---------------------------------------------------------------------------
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

local function service_of_topic(topic)
    if type(topic) ~= "string" then return nil end
    if topic:sub(-7) == "_fanout" then topic = topic:sub(1, -8) end
    for _, t in ipairs(TOPICS_LONGEST_FIRST) do
        local p = t[1]
        if topic == p then return t[2] end
        if topic:sub(1, #p) == p then
            local c = topic:sub(#p + 1, #p + 1)
            if c == "." or c == "-" then return t[2] end
        end
    end
    return nil
end

local function printable(s)
    if type(s) ~= "string" then return s end
    return (s:gsub("%c", "?"))
end

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
        local ok, obj = pcall(json_decode, f)
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
    local ok, outer = pcall(json_decode, body)
    if not ok or not tbl(outer) then
        if body:match("^%s*{") then rec.malformed = "AMQP message body is not valid JSON" end
        return string.format("amqp %s %s (%d bytes, not JSON)", how, trunc(dest, 60), #body)
    end
    local m = outer
    if outer["oslo.message"] ~= nil then
        local ok2, inner = false, nil
        if type(outer["oslo.message"]) == "string" then ok2, inner = pcall(json_decode, outer["oslo.message"]) end
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
        info.target = service_of_topic(info.topic)
        local what = info.topic .. "." .. method
        info.text = info.kind .. " " .. what .. object_detail(method, m.args)
        if info.kind == "call" then
            local call = rpc_calls[info.msg_id]
            if not call then
                call = { what = what, target = info.target }
                rpc_calls[info.msg_id] = call
            end
            if not msg.deliver then
                call.frame = call.frame or number
                call.caller = call.caller or st.client
            end
        end
        if msg.deliver then client = info.target end   -- the topic's consumer
    elseif info.msg_id then
        info.kind = "reply"
        local call = rpc_calls[info.msg_id]
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
            msg.rkey, p = shortstr(payload, p)
        elseif method == 60 then                           -- deliver
            local _
            _, p = shortstr(payload, p)                    -- consumer tag
            p = p + 9                                      -- delivery tag, redelivered
            msg.exchange, p = shortstr(payload, p)
            msg.rkey, p = shortstr(payload, p)
        elseif method == 71 then                           -- get-ok
            p = p + 9
            msg.exchange, p = shortstr(payload, p)
            msg.rkey, p = shortstr(payload, p)
        else                                               -- return
            local code, text
            code, p = rd16(payload, p)
            text, p = shortstr(payload, p)
            msg.returned = tostring(code) .. " " .. trunc(text, 40)
            msg.exchange, p = shortstr(payload, p)
            msg.rkey, p = shortstr(payload, p)
        end
        local old = pending[key]
        if old then rec.malformed = "AMQP message ended before its body was complete (channel " .. key:sub(2) .. ")" end
        msg.touched = number
        pending[key] = msg
        return nil                                         -- said when its body is complete
    end
    local text = "amqp " .. name
    if class == 10 and method == 11 then                   -- start-ok: never the response
        local props, mechanism, response
        props, p = longstr(payload, p)
        mechanism, p = shortstr(payload, p)
        response, p = longstr(payload, p)
        local cname = table_string(props, "connection_name")
        if cname then
            text = text .. " " .. trunc(cname, 80)
            local program = cname:match("^([^:]+):")
            if program then
                rec.client = rec.client or service_for_name(program, by_key) or trunc(program, 40)
            end
        end
        local user = (mechanism == "PLAIN") and response:match("^[^\0]*\0([^\0]*)\0") or nil
        if user and user ~= "" then text = text .. " (user " .. trunc(user, 40) .. ")" end
    elseif (class == 10 and method == 50) or (class == 20 and method == 40) then   -- close
        local code, reason
        code, p = rd16(payload, p)
        reason, p = shortstr(payload, p)
        text = text .. " " .. tostring(code) .. ((reason ~= "") and (" " .. trunc(reason, 80)) or "")
        if code ~= 200 then rec.error = "RabbitMQ: " .. name .. " " .. tostring(code) .. " " .. trunc(reason, 80) end
    elseif (class == 50 and (method == 10 or method == 20 or method == 40)) or (class == 60 and method == 20) then
        local queue                                        -- queue.declare/bind/delete, basic.consume
        queue, p = shortstr(payload, p + 2)
        if queue ~= "" then text = text .. " " .. trunc(queue, 60) end
    elseif class == 40 and (method == 10 or method == 20) then  -- exchange.declare/delete
        local exchange
        exchange, p = shortstr(payload, p + 2)
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
    msg.too_big = msg.size > osflow.prefs.max_body
    if flags >= 0x8000 then _, p = shortstr(payload, p) end          -- content-type
    if flags % 0x8000 >= 0x4000 then _, p = shortstr(payload, p) end -- content-encoding
    if flags % 0x4000 >= 0x2000 then                                  -- headers
        local headers
        headers, p = longstr(payload, p)
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

local function analyse_amqp(svc, st, to_server, number)
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
    -- names from the wire may hold any byte: no control character reaches a field
    rec.op = printable((#out > 0) and table.concat(out, "; ") or "amqp")
    rec.client, rec.error, rec.malformed = printable(rec.client), printable(rec.error), printable(rec.malformed)
    for _, info in ipairs(rec.rpc) do
        for k, v in pairs(info) do info[k] = printable(v) end
    end
    rec.stream_state = nil
    if #rec.rpc == 0 then rec.rpc = nil end
    return rec
end

local SYSTEM_SCHEMAS = { information_schema = true, mysql = true, performance_schema = true, sys = true }

-- A message of another protocol (AMQP...): service, ends and direction only.
local function analyse_other(svc, st, to_server)
    return { tokens = {}, dir = to_server and "request" or "response" }
end

-- protocol -> { field saying the frame holds a message of it, analyser }
local ANALYSERS = {
    http     = { f_http, analyse_http },
    memcache = { f_memcache, analyse_memcache },
    mysql    = { f_mysql, analyse_mysql },
    amqp     = { f_amqp, analyse_amqp },
}

---------------------------------------------------------------------------
-- The dissector
---------------------------------------------------------------------------
local function label(key)
    local s = by_key[key]
    return s and s.label or key
end

-- The state of this frame's TCP connection (a fresh table for a frame without
-- one), or nil when this pass builds no protocol tree, so has no field to read:
-- tshark -2's first pass without -Y or -R.
local function connection()
    local fi = f_tcp_stream()
    if not fi then
        if f_frame and not f_frame() then return nil end
        return {}
    end
    local stream = fi.value
    local st = streams[stream]
    if not st then
        st = {}
        streams[stream] = st
    end
    return st
end

-- First pass: everything that depends on earlier frames goes into the record.
local function analyse(pinfo, svc, server_is_dst, st)
    local client_svc = by_port[server_is_dst and pinfo.src_port or pinfo.dst_port]
    local analyser = ANALYSERS[svc.protocol]
    if not analyser then return false end
    -- a message the analyser does not understand still has ends and a direction
    local rec = analyser[2](svc, st, server_is_dst, pinfo.number) or analyse_other(svc, st, server_is_dst)
    rec.stream = st

    if client_svc and client_svc ~= svc then
        rec.client = client_svc.key
    elseif st.client then
        rec.client = st.client
    end
    if rec.client and not st.client then st.client = rec.client end
    -- The connection's schema: from the login (or "use"), else from the
    -- first result set naming a schema of its own (pooled connections).
    if rec.db and (rec.db_certain or (not st.db and not SYSTEM_SCHEMAS[rec.db])) then
        st.db = rec.db
    end
    rec.db = st.db or rec.db
    if rec.dir == "request" then
        st.last_op, st.last_dir, st.last_frame = rec.op, "request", pinfo.number
    elseif rec.dir == "response" then
        st.last_dir = "response"
    end
    return rec
end

-- A frame without a message (SYN, ACK, FIN, RST, a segment of a longer message):
-- the connection's ends only.  One shared record per connection and direction;
-- its client and schema are read from the connection when the frame is shown,
-- so a second pass shows what later frames of the connection told.
local function bare_record(pinfo, svc, server_is_dst, st)
    local slot = server_is_dst and "bare_to_server" or "bare_to_client"
    local rec = st[slot]
    if not rec then
        local client_svc = by_port[server_is_dst and pinfo.src_port or pinfo.dst_port]
        rec = { tokens = {}, stream = st, to_client = not server_is_dst }
        if client_svc and client_svc ~= svc then rec.client = client_svc.key end
        st[slot] = rec
    end
    return rec
end

local function add_tree(tree, svc, rec)
    -- On a second pass (Wireshark GUI, tshark -2) later frames may have named them.
    local client = rec.client or rec.stream.client
    local db = rec.db or rec.stream.db
    local flow, summary = rec.flow, rec.summary
    if not flow or rec.flow_client ~= client or rec.flow_db ~= db then
        local server_label = svc.label
        if svc.protocol == "mysql" and db then server_label = db .. " DB" end
        local arrow = (rec.dir == "response" or rec.to_client) and " ← " or " → "
        flow = (client and label(client) or "?") .. arrow .. server_label
        summary = "OpenStack flow: " .. flow
        if rec.op then summary = summary .. ", " .. rec.op end
        rec.flow, rec.summary, rec.flow_client, rec.flow_db = flow, summary, client, db
    end

    local t = tree:add(osflow, summary)
    t:add(pf.service, svc.key):set_generated()
    if client then t:add(pf.client, client):set_generated() end
    t:add(pf.server, svc.key):set_generated()
    t:add(pf.flow, flow):set_generated()
    if rec.dir then t:add(pf.direction, rec.dir):set_generated() end
    if rec.op then t:add(pf.op, rec.op):set_generated() end
    for _, tok in ipairs(rec.tokens) do
        local ti = t:add(pf.token, tok[1])
        ti:set_generated()
        ti:append_text(" (" .. tok[2] .. ")")
        ti:add(pf.token_hdr, tok[2]):set_generated()
    end
    if rec.cache then t:add(pf.cache, rec.cache):set_generated() end
    if db then t:add(pf.db, db):set_generated() end
    if rec.request_in then t:add(pf.request_in, rec.request_in):set_generated() end
    if rec.request_id then t:add(pf.request_id, rec.request_id):set_generated() end
    if rec.rpc then
        for _, m in ipairs(rec.rpc) do
            local r = t:add(pf.rpc, m.text)
            r:set_generated()
            if m.kind then r:add(pf.rpc_kind, m.kind):set_generated() end
            if m.topic then r:add(pf.rpc_topic, m.topic):set_generated() end
            if m.method then r:add(pf.rpc_method, m.method):set_generated() end
            if m.target then r:add(pf.rpc_target, m.target):set_generated() end
            if m.msg_id then r:add(pf.rpc_msg_id, m.msg_id):set_generated() end
            if m.failure then r:add(pf.rpc_failure, m.failure):set_generated() end
            if m.request_id then r:add(pf.request_id, m.request_id):set_generated() end
        end
    end
    if rec.error then t:add_proto_expert_info(ef.error, rec.error) end
    if rec.malformed then t:add_proto_expert_info(ef.malformed, rec.malformed) end
    if rec.token_problem then t:add_proto_expert_info(ef.token, rec.token_problem) end
    return t
end

local records_for_window = nil   -- frame number -> record, for Tools -> OpenStack (GUI only)
if gui_enabled() then records_for_window = {} end

-- Has this frame a message of the service's protocol?  (one field lookup)
local function has_message(svc)
    local a = ANALYSERS[svc.protocol]
    local f = a and a[1]
    return f and f() ~= nil
end

local function dissect(tvb, pinfo, tree)
    local dst_port, src_port = pinfo.dst_port, pinfo.src_port
    local dst, src = by_port[dst_port], by_port[src_port]
    if not dst and not src then return end
    local svc, server_is_dst
    if dst then svc, server_is_dst = dst, true else svc, server_is_dst = src, false end
    if dst and src and dst ~= src and src_port < dst_port then
        svc, server_is_dst = src, false   -- both ends in the map: the lower port serves
    end
    if osflow.prefs.info_prefix then
        pinfo.cols.info:prepend(svc.prefix)
    end

    -- Every frame of the connection gets its service and ends; only frames
    -- that carry a message get a direction, an operation and the rest.
    local number = pinfo.number
    local rec = frames[number]
    if rec == nil or not pinfo.visited then
        local st = connection()
        if not st then return end   -- the second pass analyses it (single-pass results)
        rec = (has_message(svc) and analyse(pinfo, svc, server_is_dst, st))
            or bare_record(pinfo, svc, server_is_dst, st)
        frames[number] = rec
    end

    local t = add_tree(tree, svc, rec)
    if records_for_window and rec.op then
        rec.svc, rec.time = svc, tonumber(tostring(pinfo.rel_ts)) or 0
        records_for_window[number] = rec
    end
    if pref_errors and number == 1 then
        t:add_proto_expert_info(ef.prefs, "ignored: " .. pref_errors)
    end
end

function osflow.dissector(tvb, pinfo, tree)
    local ok, err = pcall(dissect, tvb, pinfo, tree)
    if not ok then
        local t = tree:add(osflow)
        t:add_proto_expert_info(ef.internal, "osflow plugin error: " .. tostring(err))
    end
end

function osflow.prefs_changed()
    apply_prefs()
end

apply_prefs()
register_postdissector(osflow)

---------------------------------------------------------------------------
-- Tools -> OpenStack: the flow, one line per request/response
---------------------------------------------------------------------------
if gui_enabled() then
    local function open_flow_window()
        local tw = TextWindow.new("OpenStack flow (osflow)")
        local tap = Listener.new(nil, "osflow.op")
        local lines = {}
        function tap.reset() lines = {} end
        function tap.packet(pinfo)
            local rec = records_for_window[pinfo.number]
            if not rec then return end
            local client = rec.client or rec.stream.client
            local db = rec.db or rec.stream.db
            local server = (rec.svc.protocol == "mysql" and db) and (db .. " DB") or rec.svc.label
            lines[#lines + 1] = string.format("%6d %10.6f  %-40s %s%s", pinfo.number, rec.time,
                (client and label(client) or "?") .. ((rec.dir == "response") and " ← " or " → ") .. server,
                rec.op, (#rec.tokens > 0) and ("  [token " .. rec.tokens[1][1] .. "]") or "")
        end
        function tap.draw()
            local header = string.format("%6s %10s  %-40s %s\n", "Frame", "Time", "Client → Server", "Operation")
            tw:set(header .. table.concat(lines, "\n") .. "\n")
        end
        tw:set_atclose(function() tap:remove() end)
        tw:add_button("Refresh", function() retap_packets() end)
        retap_packets()
    end
    register_menu("OpenStack", open_flow_window, MENU_TOOLS_UNSORTED)
end
