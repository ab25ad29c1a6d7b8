// The top-level sections of the configuration (workers, listen, tls, admin,
// redis, trusted_proxies, timeouts, limits, headers, access_log): readers of
// the Loader (loader_pass.hpp). Threading: the loading thread only.
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>

#include "loader_pass.hpp"

namespace tether::config::detail {

namespace fs = std::filesystem;

void Loader::read_workers(const Node& n, const Path& p, int& out) {
    const std::string* s = scalar(n, p, "auto or an integer");
    auto value = s && *s != "auto" ? parse_integer(*s) : std::optional<long long>(0);
    if (s && value && (*s == "auto" || (*value >= 1 && *value <= kMaxWorkers)))
        out = static_cast<int>(*value);
    else if (s)
        fail(n, p,
             "invalid value " + quote(*s) + " (valid: auto or 1.." + std::to_string(kMaxWorkers) +
                 ")");
}

void Loader::read_listen(const Node& node, const Path& path, std::vector<Listener>& out) {
    for_each_item(node, path, "listen entry",
                  [&](const Node& n, const Path& p) { read_listener(n, p, out.emplace_back()); });
}

void Loader::read_listener(const Node& node, const Path& path, Listener& out) {
    auto address = [&](const Node& n, const Path& p) {
        if (read_address(n, p, out.address) &&
            !listen_addresses_.emplace(out.address.text(), n.Mark()).second)
            fail(n, p, "duplicate listen address " + quote(out.address.text()));
    };
    auto upstream = [&](const Node& n, const Path& p) {
        if (read_string(n, p, out.upstream)) refs_.push_back({out.upstream, n.Mark(), p});
    };
    Seen seen = walk(node, path,
                     {{"address", address},
                      {"upstream", upstream},
                      {"proxy_protocol", flag_into(out.proxy_protocol)},
                      {"tls", into(&Loader::read_tls, out.tls)}});
    require(node, path, seen, {"address", "upstream"});
}

void Loader::read_tls(const Node& node, const Path& path, std::optional<TlsConfig>& out) {
    if (node.IsNull()) return;
    TlsConfig tls;
    CertKey single;
    auto pairs = [&](const Node& list, const Path& list_path) {
        for_each_item(list, list_path, "certificate", [&](const Node& n, const Path& p) {
            read_cert_key(n, p, tls.certificates.emplace_back());
        });
    };
    auto protocols = [&](const Node& list, const Path& list_path) {
        tls.protocols.clear();
        for_each_item(list, list_path, "protocol", [&](const Node& n, const Path& p) {
            read_enum(n, p, tls.protocols.emplace_back(), kTlsProtocols);
        });
    };
    Seen seen = walk(node, path,
                     {{"certificate", into(&Loader::read_file_path, single.certificate)},
                      {"private_key", into(&Loader::read_file_path, single.private_key)},
                      {"ocsp_response", into(&Loader::read_file_path, single.ocsp_response)},
                      {"certificates", pairs},
                      {"protocols", protocols},
                      {"ciphers", text_into(tls.ciphers)}});
    if (!node.IsMap()) return;
    bool one = seen.contains("certificate") || seen.contains("private_key") ||
               seen.contains("ocsp_response");
    if (one && seen.contains("certificates"))
        fail(node, path, "use either 'certificate' and 'private_key', or 'certificates'");
    else if (!one && !seen.contains("certificates"))
        fail(node, path,
             "missing required key 'certificate' (with 'private_key') or 'certificates'");
    if (one) {
        require(node, path, seen, {"certificate", "private_key"});
        tls.certificates.insert(tls.certificates.begin(), single);  // the default comes first
    }
    out = std::move(tls);
}

void Loader::read_cert_key(const Node& node, const Path& path, CertKey& out) {
    Seen seen = walk(node, path,
                     {{"certificate", into(&Loader::read_file_path, out.certificate)},
                      {"private_key", into(&Loader::read_file_path, out.private_key)},
                      {"ocsp_response", into(&Loader::read_file_path, out.ocsp_response)}});
    require(node, path, seen, {"certificate", "private_key"});
}

void Loader::read_admin(const Node& node, const Path& path, Admin& out) {
    if (node.IsScalar()) {
        auto enabled = parse_bool(node.Scalar());
        if (enabled)
            out.enabled = *enabled;
        else
            fail(node, path, "expected a map with 'address', or off, got " + describe(node));
        return;
    }
    walk(node, path, {{"address", [&](const Node& n, const Path& p) {
                           if (read_address(n, p, out.address)) admin_mark_ = n.Mark();
                       }}});
}

void Loader::read_redis(const Node& node, const Path& path, std::optional<Redis>& out) {
    if (node.IsNull()) return;
    Redis redis;
    RedisUrl url;
    auto address = [&](const Node& n, const Path& p) {
        read_redis_address(n, p, redis.address, url);
    };
    Seen seen = walk(node, path,
                     {{"address", address},
                      {"password", text_into(redis.password)},
                      {"db", int_into(redis.db, 0)},
                      {"key_prefix", text_into(redis.key_prefix)},
                      {"timeout", duration_into(redis.timeout)}});
    if (!node.IsMap()) return;
    if (redis.password.empty() && url.password) redis.password = *url.password;
    if (!seen.contains("db") && url.db) redis.db = *url.db;
    if (redis.password.empty()) redis.password = env_or_empty("REDIS_PASSWORD");
    out = std::move(redis);
}

void Loader::read_redis_address(const Node& n, const Path& p, HostPort& out, RedisUrl& url) {
    const std::string* s = scalar(n, p, "a string (host:port)");
    if (!s) return;
    std::string why;
    auto parsed =
        s->starts_with("redis://") ? parse_redis_url(*s, url, why) : parse_host_port(*s, why);
    if (parsed)
        out = *parsed;
    else
        fail(n, p,
             "invalid address " + quote(mask_password(*s)) + ": " + why +
                 " (use host:port or redis://[:password@]host:port[/db])");
}

void Loader::read_cidrs(const Node& node, const Path& path, std::vector<std::string>& out) {
    for_each_item(node, path, "", [&](const Node& n, const Path& p) {
        const std::string* s = scalar(n, p, "a string (CIDR)");
        auto cidr = s ? normalize_cidr(*s) : std::nullopt;
        if (cidr)
            out.push_back(*cidr);
        else if (s)
            fail(n, p,
                 "invalid CIDR " + quote(*s) + " (use address/prefix, e.g. 10.0.0.0/8, fd00::/8)");
    });
}

void Loader::read_timeouts(const Node& node, const Path& path, Timeouts& t) {
    auto marked = [this](Duration& field, bool zero_ok, std::optional<YAML::Mark>& mark) {
        return [this, &field, zero_ok, &mark](const Node& n, const Path& p) {
            if (read_duration(n, p, field, zero_ok)) mark = n.Mark();
        };
    };
    walk(node, path,
         {{"connect", duration_into(t.connect)},
          {"client_header", duration_into(t.client_header)},
          {"idle", duration_into(t.idle)},
          {"upstream_response", marked(t.upstream_response, false, response_mark_)},
          {"tunnel", marked(t.tunnel, true, tunnel_mark_)},
          {"shutdown", duration_into(t.shutdown, true)}});
}

void Loader::read_limits(const Node& node, const Path& path, Limits& l) {
    walk(node, path,
         {{"max_connections", int_into(l.max_connections, 1)},
          {"max_connections_per_ip", int_into(l.max_connections_per_ip, 0)},
          {"max_header_size", size_into(l.max_header_size)},
          {"max_body_size", size_into(l.max_body_size)},
          {"buffer_size", size_into(l.buffer_size)},
          {"affinity_entries", size_into(l.affinity_entries)},
          {"rate", into(&Loader::read_rate, l.rate)}});
}

void Loader::read_rate(const Node& node, const Path& path, std::optional<RateLimit>& out) {
    if (node.IsNull()) return;
    RateLimit rate;
    auto burst = [&](const Node& n, const Path& p) {
        if (read_number(n, p, rate.burst) && rate.burst < 1) fail(n, p, "must be at least 1");
    };
    walk(node, path,
         {{"requests_per_second", into(&Loader::read_number, rate.requests_per_second)},
          {"burst", burst},
          {"shared", flag_into(rate.shared)}});
    if (node.IsMap()) out = rate;
}

void Loader::read_headers(const Node& node, const Path& path, Headers& out) {
    walk(node, path,
         {{"forwarded", flag_into(out.forwarded)}, {"request_id", flag_into(out.request_id)}});
}

void Loader::read_access_log(const Node& node, const Path& path, AccessLog& out) {
    walk(node, path,
         {{"path", into(&Loader::read_log_path, out.path)},
          {"format", enum_into(out.format, kLogFormats)}});
}

void Loader::read_log_path(const Node& n, const Path& p, std::string& out) {
    const std::string* s = scalar(n, p, "a string (stdout, stderr, off or a file)");
    if (!s) return;
    if (*s == "off" || *s == "false" || *s == "stdout" || *s == "stderr")
        return void(out = *s == "false" ? "off" : *s);
    if (s->empty())
        return void(fail(n, p, "must not be empty (use stdout, stderr, off or a file)"));
    std::string file = resolve(*s);
    std::string dir = fs::path(file).parent_path().string();
    std::error_code ec;
    if (!fs::is_directory(dir, ec))
        return void(fail(n, p, "directory " + quote(dir) + " does not exist"));
    out = file;
}

}  // namespace tether::config::detail
