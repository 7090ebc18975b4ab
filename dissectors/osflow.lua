--
-- osflow.lua: what each packet of an OpenStack controller capture means.
--
-- A post-dissector: it runs after Wireshark's own HTTP, MySQL, memcache, AMQP and
-- RESP (Redis) dissectors, reads their fields and adds an "osflow" tree to every frame of
-- a connection on a port of the map (handshake, ACKs, FIN and RST included) with
--
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
-- Redis (6379, RESP): every command of a frame (a pipeline holds several) is one
-- piece of osflow.op, "redis: SET osprofiler:…; GET k"; each reply is paired with
-- the oldest command of its connection still unanswered ("redis: GET k → 21 bytes",
-- "→ nil", "→ error NOAUTH"); a message pushed to a subscriber answers nothing.
-- Only a command's name and its first argument are shown (never a value), and
-- AUTH's password never: "AUTH ***", "AUTH osprofiler ***".
--
-- This file registers (the protocol, its preferences and fields, the post-dissector,
-- Tools -> OpenStack) and holds what osflow-post knows too; each protocol's
-- analyser is a module in the folder beside it, osflow/ (http.lua, mysql.lua,
-- memcache.lua, amqp.lua, resp.lua for Redis; json.lua, sha256.lua, util.lua),
-- loaded from this file's own folder.  Wireshark also runs every .lua under its
-- plugins folder on its own, those modules too: a module only defines functions
-- and returns them, so that registers and prints nothing.
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

---------------------------------------------------------------------------
-- Modules: dissectors/osflow/*.lua, read from the folder this file is in (so
-- -X lua_script:path/osflow.lua, the personal plugins folder and a copy
-- anywhere each use their own), never from package.path: another plugin's
-- module of the same name cannot stand in for one of these.
---------------------------------------------------------------------------
local HERE = debug.getinfo(1, "S").source:match("^@(.*)[/\\][^/\\]*$") or "."
local function need(name)
    local path = HERE .. "/osflow/" .. name .. ".lua"
    -- Wireshark's loadfile raises when the file is missing (standard Lua's returns nil, error)
    local ok, chunk, err = pcall(loadfile, path)
    if not ok then chunk, err = nil, chunk end
    if not chunk then
        error("osflow.lua: its module osflow/" .. name .. ".lua is missing or unreadable (" .. tostring(err)
            .. "): the folder osflow/ must be installed beside osflow.lua (osflow profile install does both)", 0)
    end
    return chunk("osflow." .. name)
end
local util = need("util")
local json = need("json")
local sha256 = need("sha256")
local analyser_modules = {   -- protocol -> module; each gives its analyser from new(ctx, ...) below
    http = need("http"), memcache = need("memcache"), mysql = need("mysql"), amqp = need("amqp"),
    redis = need("resp"),
}

-- Registered once every module is read: a missing one leaves nothing half-registered.
local osflow = Proto.new("osflow", "OpenStack flow (osflow)")

---------------------------------------------------------------------------
-- Port map.  Keep in sync with postproc/osflow/portmap.py (SERVICES).
---------------------------------------------------------------------------
-- luacheck: push no max line length (a table aligned in columns reads best)
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
-- luacheck: pop

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
    { "python-novaclient", "openstackclient" },
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

-- URL path prefix -> the service one web server serves under it, as
-- osflow.openstack.ENDPOINT_PREFIXES: devstack's one Apache on port 80 proxies
-- /identity, /compute, ... each to a uwsgi process of its own.  Matched as
-- openstack.service_of_path does: the longest prefix, at a segment's end.
-- BEGIN ENDPOINT_PREFIXES
local ENDPOINT_PREFIXES = {
    { "/identity", "keystone" },
    { "/compute", "nova-api" },
    { "/placement", "placement" },
    { "/image", "glance" },
    { "/volume", "cinder-api" },
    { "/networking", "neutron-server" },
}
-- END ENDPOINT_PREFIXES

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
    .. "unless written key/protocol (protocol: http, mysql, memcache, amqp, redis, other)")
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
-- version gives nil instead of stopping the plugin.  Here: the protocols (one
-- cheap call says whether the frame holds a message); each analyser module
-- reads its own protocol's fields.
---------------------------------------------------------------------------
local function field(name)
    local ok, f = pcall(Field.new, name)
    if ok then return f end
    return nil
end

local f_frame        = field("frame")      -- absent when this pass builds no protocol tree
local f_tcp_stream   = field("tcp.stream")
local f_http         = field("http")
local f_memcache     = field("memcache")
local f_mysql        = field("mysql")
local f_amqp         = field("amqp")
local f_resp         = field("resp")       -- Redis
local f_http_uri     = field("http.request.uri")
local f_http_req_in  = field("http.request_in")

local fingerprint_cache = {}
local fingerprint_cache_size = 0

-- Token fingerprint: first 8 hex digits of SHA-256 (as osflow-post shows it).
local function fingerprint(token)
    local fp = fingerprint_cache[token]
    if fp then return fp end
    fp = sha256.hex(token):sub(1, 8)
    if fingerprint_cache_size > 10000 then
        fingerprint_cache, fingerprint_cache_size = {}, 0
    end
    fingerprint_cache[token] = fp
    fingerprint_cache_size = fingerprint_cache_size + 1
    return fp
end

---------------------------------------------------------------------------
-- What the shared tables say (the analysers ask through ctx, below)
---------------------------------------------------------------------------
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


-- The service a User-Agent names (the rules of the USER_AGENTS block).
local function user_agent_service(ua)
    if type(ua) ~= "string" then return nil end
    local l = ua:lower()
    -- a product, with its /version or without, or alone ("python-novaclient")
    local product = l:match("^%s*([%w_%.%-]+)[/ ]") or l:match("^%s*([%w_%.%-]+)$")
    local key = product and PRODUCT_SERVICES[product]
    if key then return key end
    for _, word in ipairs(USER_AGENT_CLIENT_WORDS) do
        if l:find(word, 1, true) then return "openstackclient" end
    end
    return nil
end

-- The service a URL path's prefix names (the rules of the ENDPOINT_PREFIXES block).
local function service_of_path(path)
    if type(path) ~= "string" then return nil end
    local best, best_len = nil, -1
    for _, e in ipairs(ENDPOINT_PREFIXES) do
        local p = e[1]
        local c = path:sub(#p + 1, #p + 1)
        if path:sub(1, #p) == p and (c == "" or c == "/" or c == "?") and #p > best_len then
            best, best_len = e[2], #p
        end
    end
    return best
end

-- The service consuming an oslo.messaging topic (the rules of the RPC_TOPICS block).
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
---------------------------------------------------------------------------
-- Capture state (reset by init); the analysers read it through ctx.state, so
-- they always see the current tables.
---------------------------------------------------------------------------
local state = {
    -- frames     frame number -> record (computed on the first pass)
    -- streams    tcp.stream -> { client=, db=, last_op=, last_frame=, amqp=, redis= }
    -- awaiting   token fingerprint -> service whose middleware will validate it
    -- rpc_calls  RPC _msg_id -> { frame=, what=, target=, caller= } of the call
    -- prefixed   frame number -> { service, server is dst } or false: a port of no
    --            service, named by its HTTP request's path (prefixed_service)
    -- prefixed_streams  tcp.stream -> { service, server port } of its last such request
}

local function reset_state()
    state.frames, state.streams, state.awaiting, state.rpc_calls = {}, {}, {}, {}
    state.prefixed, state.prefixed_streams = {}, {}
end
reset_state()

function osflow.init()
    reset_state()
end

---------------------------------------------------------------------------
-- Per-protocol analysers (dissectors/osflow/<protocol>.lua).  Each returns a record:
--   { dir=, op=, tokens={ {fp, source}, ... }, cache=, db=, client=,
--     request_in=, request_id=, error=, malformed=, token_problem= }
-- or nil when the frame carries no message of that protocol.
---------------------------------------------------------------------------
local ctx = {
    util = util,
    json = json,
    field = field,
    prefs = osflow.prefs,
    state = state,
    fingerprint = fingerprint,
    token_header_names = TOKEN_HEADER_NAMES,
    mysql_commands = MYSQL_COMMANDS,
    user_agent_service = user_agent_service,
    service_of_topic = service_of_topic,
    service_for_name = function(name) return service_for_name(name, by_key) end,
    service_for_database = service_for_database,
}

local analyse_http = analyser_modules.http.new(ctx)
local analyse_memcache = analyser_modules.memcache.new(ctx)
local analyse_mysql = analyser_modules.mysql.new(ctx)
local analyse_redis = analyser_modules.redis.new(ctx, f_resp)

-- AMQP: its frames' bytes are read by this analyser only, of the amqp protocol only.
local amqp_analyser = analyser_modules.amqp.new(ctx, f_amqp)
local function analyse_amqp(svc, st, to_server, number)
    return amqp_analyser(svc, st, to_server, number)
end

local SYSTEM_SCHEMAS = { information_schema = true, mysql = true, performance_schema = true, sys = true }

-- A message an analyser does not understand: service, ends and direction only.
local function analyse_other(_svc, _st, to_server)
    return { tokens = {}, dir = to_server and "request" or "response" }
end

-- protocol -> { field saying the frame holds a message of it, analyser }
local ANALYSERS = {
    http     = { f_http, analyse_http },
    memcache = { f_memcache, analyse_memcache },
    mysql    = { f_mysql, analyse_mysql },
    amqp     = { f_amqp, analyse_amqp },
    redis    = { f_resp, analyse_redis },
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
    local st = state.streams[stream]
    if not st then
        st = {}
        state.streams[stream] = st
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

-- A frame to or from a port of no service: the service the path of its HTTP
-- request names (ENDPOINT_PREFIXES), as (service, nil) for a request and
-- (nil, service) for its response; the connection's other frames, the service
-- of its last such request.  Nothing for a path no prefix names.
local function prefixed_service(pinfo)
    local number = pinfo.number
    local known = state.prefixed[number]
    if known == nil then
        known = false
        local uri = f_http_uri and f_http_uri()
        local req_in = f_http_req_in and f_http_req_in()
        local fi = f_tcp_stream()
        local stream = fi and fi.value
        if uri then
            local key = service_of_path(tostring(uri.value))
            if key and by_key[key] then
                known = { by_key[key], true }
                if stream then state.prefixed_streams[stream] = { by_key[key], pinfo.dst_port } end
            end
        elseif req_in and state.prefixed[req_in.value] then
            known = { state.prefixed[req_in.value][1], false }
        elseif stream and state.prefixed_streams[stream] then
            local last = state.prefixed_streams[stream]
            known = { last[1], pinfo.dst_port == last[2] }
        end
        state.prefixed[number] = known
    end
    if not known then return nil, nil end
    if known[2] then return known[1], nil end
    return nil, known[1]
end

local function dissect(_tvb, pinfo, tree)
    local dst_port, src_port = pinfo.dst_port, pinfo.src_port
    local dst, src = by_port[dst_port], by_port[src_port]
    if not dst and not src then
        -- a web server on a port of no service (devstack's Apache on :80): the path names it
        dst, src = prefixed_service(pinfo)
        if not dst and not src then return end
    end
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
    local rec = state.frames[number]
    if rec == nil or not pinfo.visited then
        local st = connection()
        if not st then return end   -- the second pass analyses it (single-pass results)
        rec = (has_message(svc) and analyse(pinfo, svc, server_is_dst, st))
            or bare_record(pinfo, svc, server_is_dst, st)
        state.frames[number] = rec
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
