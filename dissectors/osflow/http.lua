--
-- osflow/http.lua: the HTTP analyser of dissectors/osflow.lua (keystone token
-- operations, microversions, token headers as fingerprints, who a request is
-- from).  A module: it defines functions and returns them; nothing happens
-- until osflow.lua calls new(ctx) (Wireshark running this file on its own, as
-- it runs every .lua under the plugins folder, registers and prints nothing).
--
-- new(ctx) reads, at load time, Wireshark's HTTP fields and returns
-- analyse(svc, st): the frame's record (see osflow.lua) or nil.
--

local M = {}

function M.new(ctx)
    local util, json = ctx.util, ctx.json
    local trunc, short_id, tbl, values, first = util.trunc, util.short_id, util.tbl, util.values, util.first
    local fingerprint, state = ctx.fingerprint, ctx.state

    local f_http_method  = ctx.field("http.request.method")
    local f_http_uri     = ctx.field("http.request.uri")
    local f_http_reqline = ctx.field("http.request.line")
    local f_http_code    = ctx.field("http.response.code")
    local f_http_desc    = ctx.field("http.response.code.desc")
    local f_http_resline = ctx.field("http.response.line")
    local f_http_req_in  = ctx.field("http.request_in")
    local f_http_body    = ctx.field("http.file_data")

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

    local function microversion(headers)
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
                local d = (type(domain.name) == "string" and domain.name) or short_id(domain.id)
                parts[#parts + 1] = "domain " .. tostring(d)
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
    local function analyse(svc, _st)
        local methods = values(f_http_method)
        local codes = (#methods == 0) and values(f_http_code) or {}
        if #methods == 0 and #codes == 0 then return nil end
        local rec = { tokens = {} }
        local lines = values((#methods > 0) and f_http_reqline or f_http_resline)
        local headers = parse_headers(lines)
        for _, h in ipairs(headers) do
            local canonical = ctx.token_header_names[h[1]]
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
                if type(body) == "string" and #body <= ctx.prefs.max_body then
                    local ok, obj = pcall(json.decode, body)
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
                local mv = microversion(headers)
                if mv then text = text .. " (microversion " .. mv .. ")" end
            end
            rec.op = svc.key .. ": " .. text .. more
            rec.client = ctx.user_agent_service(header(headers, "user-agent"))

            -- Who is this request from?  keystonemiddleware of the service
            -- that received this token earlier validates it.
            for _, t in ipairs(rec.tokens) do
                if t[2] == "X-Subject-Token" and state.awaiting[t[1]] then
                    rec.client = rec.client or state.awaiting[t[1]]
                end
            end
            if svc.key ~= "keystone" then
                for _, t in ipairs(rec.tokens) do
                    if t[2] == "X-Auth-Token" then state.awaiting[t[1]] = svc.key end
                end
            end
            if not rec.client and text:match("^issue token") then
                local user = text:match("user ([%w_%-%.]+)")
                local s = ctx.service_for_name(user)
                if s and s ~= "openstackclient" then rec.client = s end
            end
        else
            rec.dir = "response"
            local code = tonumber(codes[1]) or 0
            local desc = first(f_http_desc)
            local status = tostring(code) .. ((type(desc) == "string" and desc ~= "") and (" " .. desc) or "")
            local req = tonumber(first(f_http_req_in))
            rec.request_in = req
            local req_rec = req and state.frames[req]
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

    return analyse
end

return M
