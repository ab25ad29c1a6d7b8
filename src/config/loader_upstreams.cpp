// The upstreams section of the configuration (servers, affinity, cookie, sid,
// ip_hash, tls, PROXY protocol, health checks): readers of the Loader
// (loader_pass.hpp). Threading: the loading thread only.
#include <string>
#include <utility>

#include "loader_pass.hpp"

namespace tether::config::detail {

void Loader::read_upstreams(const Node& node, const Path& path,
                            std::map<std::string, Upstream>& out) {
    if (!node.IsMap())
        return void(fail(node, path, "expected a map of upstreams, got " + describe(node)));
    if (node.size() == 0) fail(node, path, "at least one upstream is required");
    for (auto it = node.begin(); it != node.end(); ++it) {
        const std::string name = it->first.IsScalar() ? it->first.Scalar() : describe(it->first);
        bool valid = it->first.IsScalar() && all_chars(name, [](unsigned char c) {
                         return std::isalnum(c) || c == '_' || c == '-' || c == '.';
                     });
        if (!valid) {
            fail(it->first, path,
                 "invalid upstream name " + quote_short(name) +
                     " (use letters, digits, '_', '-', '.')");
        } else if (out.contains(name)) {
            fail(it->first, child(path, name), "duplicate upstream");
        } else {
            Upstream& upstream = out[name];
            upstream.name = name;
            read_upstream(it->second, child(path, name), upstream);
        }
    }
}

void Loader::read_upstream(const Node& node, const Path& path, Upstream& out) {
    UpstreamMarks& marks = upstream_marks_[out.name];
    auto affinity = [&](const Node& n, const Path& p) {
        if (read_enum(n, p, out.affinity, kAffinities)) marks.affinity = n.Mark();
    };
    auto cookie = [&](const Node& n, const Path& p) { read_cookie(n, p, out.cookie, marks); };
    auto drain = [&](const Node& n, const Path& p) {
        walk(n, p,
             {{"close_spread", duration_into(out.drain.close_spread, true)},
              {"close_removed", flag_into(out.drain.close_removed)}});
    };
    Seen seen =
        walk(node, path,
             {{"affinity", affinity},
              {"balance", enum_into(out.balance, kBalances)},
              {"affinity_ttl", duration_into(out.affinity_ttl)},
              {"cookie", cookie},
              {"sid", into(&Loader::read_sid, out.sid)},
              {"ip_hash", into(&Loader::read_ip_hash, out.ip_hash)},
              {"drain", drain},
              {"keepalive", int_into(out.keepalive, 0)},
              {"retries", int_into(out.retries, 0)},
              {"fail_on_status", into(&Loader::read_fail_on_status, out.fail_on_status)},
              {"servers", into(&Loader::read_servers, out.servers)},
              {"health_check", into(&Loader::read_health_check, out.health_check)},
              {"tls", into(&Loader::read_upstream_tls, out.tls)},
              {"send_proxy_protocol", into(&Loader::read_send_proxy, out.send_proxy_protocol)}});
    require(node, path, seen, {"servers"});
    if (out.cookie.secret.empty()) out.cookie.secret = env_or_empty("TETHER_COOKIE_SECRET");
}

void Loader::read_upstream_tls(const Node& node, const Path& path,
                               std::optional<UpstreamTls>& out) {
    if (node.IsNull()) return;
    if (node.IsScalar()) {
        const auto on = parse_bool(node.Scalar());
        if (!on)
            return void(fail(node, path, "expected a map, true or false, got " + describe(node)));
        if (*on)
            out.emplace();
        else
            out.reset();
        return;
    }
    UpstreamTls tls;
    auto protocols = [&](const Node& list, const Path& list_path) {
        tls.protocols.clear();
        for_each_item(list, list_path, "protocol", [&](const Node& n, const Path& p) {
            read_enum(n, p, tls.protocols.emplace_back(), kTlsProtocols);
        });
    };
    auto server_name = [&](const Node& n, const Path& p) {
        if (!read_string(n, p, tls.server_name)) return;
        const bool ok = !tls.server_name.empty() && tls.server_name.size() <= 253 &&
                        all_chars(tls.server_name, [](unsigned char c) {
                            return std::isalnum(c) || c == '-' || c == '.' || c == ':';
                        });
        if (!ok)
            fail(n, p,
                 "invalid server name " + quote_short(tls.server_name) +
                     " (a DNS name or an IP address)");
    };
    Seen seen = walk(node, path,
                     {{"verify", flag_into(tls.verify)},
                      {"ca", into(&Loader::read_file_path, tls.ca)},
                      {"server_name", server_name},
                      {"certificate", into(&Loader::read_file_path, tls.certificate)},
                      {"private_key", into(&Loader::read_file_path, tls.private_key)},
                      {"protocols", protocols},
                      {"ciphers", text_into(tls.ciphers)}});
    if (!node.IsMap()) return;
    if (seen.contains("certificate") != seen.contains("private_key"))
        fail(node, path,
             seen.contains("certificate")
                 ? "missing required key 'private_key' (with 'certificate')"
                 : "missing required key 'certificate' (with 'private_key')");
    out = std::move(tls);
}

void Loader::read_send_proxy(const Node& node, const Path& path, SendProxy& out) {
    if (node.IsScalar() && parse_bool(node.Scalar()) == false) {
        out = SendProxy::off;
        return;
    }
    read_enum(node, path, out, kSendProxy);
}

void Loader::read_cookie(const Node& node, const Path& path, CookieConfig& out,
                         UpstreamMarks& marks) {
    auto name = [&](const Node& n, const Path& p) {
        if (read_string(n, p, out.name) && !valid_cookie_name(out.name))
            fail(n, p,
                 "invalid cookie name " + quote(out.name) +
                     " (use letters, digits and !#$%&'*+-.^_`|~)");
    };
    auto secret = [&](const Node& n, const Path& p) {
        if (read_string(n, p, out.secret)) marks.secret = n.Mark();
    };
    walk(node, path,
         {{"name", name},
          {"secret", secret},
          {"max_age", duration_into(out.max_age, true)},
          {"secure", flag_into(out.secure)},
          {"http_only", flag_into(out.http_only)},
          {"same_site", enum_into(out.same_site, kSameSites)}});
}

void Loader::read_sid(const Node& node, const Path& path, SidConfig& out) {
    auto param = [&](const Node& n, const Path& p) {
        if (read_string(n, p, out.param) && out.param.empty()) fail(n, p, "must not be empty");
    };
    walk(node, path,
         {{"path", into(&Loader::read_http_path, out.path)},
          {"param", param},
          {"fallback_cookie", flag_into(out.fallback_cookie)}});
}

void Loader::read_ip_hash(const Node& node, const Path& path, IpHashConfig& out) {
    auto factor = [&](const Node& n, const Path& p) {  // below 100 no server could fit
        if (read_int(n, p, out.balance_factor, 0, 65535) && out.balance_factor > 0 &&
            out.balance_factor < 100)
            fail(n, p, n.Scalar() + " is out of range (valid: 0 = off, or 100..65535)");
    };
    walk(node, path,
         {{"hash", enum_into(out.hash, kHashes)},
          {"balance_factor", factor},
          {"prefix_v4", int_into(out.prefix_v4, 0, 32)},
          {"prefix_v6", int_into(out.prefix_v6, 0, 128)}});
}

void Loader::read_servers(const Node& node, const Path& path, std::vector<Server>& out) {
    std::set<std::string> names;
    for_each_item(node, path, "server", [&](const Node& n, const Path& p) {
        YAML::Mark name_mark = n.Mark();
        Server& server = out.emplace_back();
        read_server(n, p, server, name_mark);
        if (!server.name.empty() && !names.insert(server.name).second)
            error_at(name_mark, quote(p + ".name") + ": duplicate server name " +
                                    quote(server.name) + " in " + quote(path));
    });
}

void Loader::read_server(const Node& node, const Path& path, Server& out, YAML::Mark& name_mark) {
    bool named = false;
    auto name = [&](const Node& n, const Path& p) {
        if (!read_string(n, p, out.name)) return;
        named = true;
        name_mark = n.Mark();
        if (!all_chars(out.name, [](unsigned char c) { return !std::isspace(c) && c != '/'; }))
            fail(n, p, "invalid server name " + quote(out.name) + " (no spaces or '/')");
    };
    auto address = [&](const Node& n, const Path& p) {
        if (read_address(n, p, out.address) && !named) name_mark = n.Mark();
    };
    Seen seen = walk(node, path,
                     {{"name", name},
                      {"address", address},
                      {"weight", int_into(out.weight, 1, 1000)},
                      {"max_conns", int_into(out.max_conns, 0)},
                      {"max_fails", int_into(out.max_fails, 0)},
                      {"fail_timeout", duration_into(out.fail_timeout)},
                      {"backup", flag_into(out.backup)}});
    require(node, path, seen, {"address"});
    if (!seen.contains("name") && out.address.port != 0) out.name = out.address.text();
}

void Loader::read_health_check(const Node& node, const Path& path,
                               std::optional<HealthCheck>& out) {
    if (node.IsNull()) return;
    HealthCheck check;
    walk(node, path,
         {{"initial", enum_into(check.initial_up, kInitialStates)},
          {"path", into(&Loader::read_http_path, check.path)},
          {"interval", duration_into(check.interval)},
          {"timeout", duration_into(check.timeout)},
          {"rise", int_into(check.rise, 1, 1000)},
          {"fall", int_into(check.fall, 1, 1000)},
          {"expect_status", into(&Loader::read_expect_status, check.expect_status)}});
    if (node.IsMap()) out = std::move(check);
}

void Loader::read_expect_status(const Node& node, const Path& path, std::vector<StatusRange>& out) {
    read_status_ranges(node, path, out, 100, "200 or 200-399");
}

void Loader::read_fail_on_status(const Node& node, const Path& path,
                                 std::vector<StatusRange>& out) {
    read_status_ranges(node, path, out, 400, "502 or 500-599");
}

void Loader::read_status_ranges(const Node& node, const Path& path, std::vector<StatusRange>& out,
                                int lowest, std::string_view example) {
    out.clear();
    auto one = [&](const Node& n, const Path& p) {
        const std::string* s = scalar(n, p, "a status code or range");
        auto range = s ? parse_status_range(*s) : std::nullopt;
        if (range && range->lo >= lowest)
            out.push_back(*range);
        else if (s)
            fail(n, p,
                 "invalid status range " + quote(*s) +
                     " (use a code or an inclusive range within " + std::to_string(lowest) +
                     "..599, e.g. " + std::string(example) + ")");
    };
    if (node.IsSequence())
        for_each_item(node, path, "status range", one);
    else
        one(node, path);
}

}  // namespace tether::config::detail
