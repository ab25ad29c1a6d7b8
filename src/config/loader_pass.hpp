// Loader: one pass of load_config over one YAML document (loader.cpp: the
// walk, scalars and the checks after it; loader_sections.cpp: the top-level
// sections; loader_upstreams.cpp: upstreams). Internal to src/config.
// Threading: the loading thread only.
#pragma once

#include <yaml-cpp/yaml.h>

#include <climits>
#include <cstddef>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "tether/config/config.hpp"
#include "tether/config/loader.hpp"
#include "yaml_values.hpp"

namespace tether::config::detail {

/// One pass over one document. Readers named read_* take (node, path, field, rules...) and
/// return whether the field was set; the *_into helpers bind them into a walk() table.
class Loader {
public:
    Loader(std::string file, std::string base_dir, LoadResult& result)
        : file_(std::move(file)), base_dir_(std::move(base_dir)), result_(result) {
        config_.source_path = file_;
    }

    void error_at(const YAML::Mark& mark, std::string message) {
        result_.errors.push_back(diagnostic(mark, std::move(message)));
    }

    /// Walks the document root; every problem lands in the result.
    void load(const Node& root);

    /// Sorts the diagnostics by position and publishes the config if there is no error.
    void finish();

private:
    using Reader = std::function<void(const Node&, const Path&)>;
    struct Key {
        std::string_view name;
        Reader read;
    };
    using Seen = std::set<std::string, std::less<>>;
    struct UpstreamMarks {
        std::optional<YAML::Mark> affinity, secret;
    };
    struct UpstreamRef {
        std::string name;
        YAML::Mark mark;
        Path path;
    };

    // ---- diagnostics --------------------------------------------------------------------

    Diagnostic diagnostic(const YAML::Mark& mark, std::string message) const;
    /// "'PATH': what" at the node.
    bool fail(const Node& node, const Path& path, std::string_view what);
    void warn_at(const YAML::Mark& mark, std::string message);
    std::string resolve(const std::string& path) const;

    // ---- structure ----------------------------------------------------------------------

    /// Dispatches each key of a map to its reader; reports unknown and repeated keys. A null
    /// node is an empty map. Returns the keys seen.
    Seen walk(const Node& node, const Path& path, const std::vector<Key>& keys);
    void require(const Node& node, const Path& path, const Seen& seen,
                 std::initializer_list<std::string_view> keys);

    /// Calls `each(item_node, item_path)` for every entry of a list (null = empty list);
    /// `required` names what at least one entry is of, if the list must not be empty.
    template <class Each>
    void for_each_item(const Node& node, const Path& path, std::string_view required, Each each) {
        if (!node.IsSequence() && !node.IsNull())
            return void(fail(node, path, "expected a list, got " + describe(node)));
        if (node.size() == 0 && !required.empty())
            fail(node, path, "at least one " + std::string(required) + " is required");
        for (std::size_t i = 0; i < node.size(); ++i) each(node[i], item(path, i));
    }

    const std::string* scalar(const Node& node, const Path& path, std::string_view what);

    template <class M, class T, class... Rules>
    Reader into(M method, T& field, Rules... rules) {
        return [=, this, &field](const Node& n, const Path& p) {
            (this->*method)(n, p, field, rules...);
        };
    }
    Reader text_into(std::string& f) { return into(&Loader::read_string, f); }
    Reader flag_into(bool& f) { return into(&Loader::read_bool, f); }
    Reader int_into(int& f, long long lo, long long hi = INT_MAX) {
        return into(&Loader::read_int, f, lo, hi);
    }
    Reader duration_into(Duration& f, bool zero_ok = false) {
        return into(&Loader::read_duration, f, zero_ok);
    }
    Reader size_into(std::size_t& f) { return into(&Loader::read_size, f); }
    template <class T, class E, std::size_t N>
    Reader enum_into(T& f, const Choice<E> (&choices)[N]) {
        return [this, &f, &choices](const Node& n, const Path& p) { read_enum(n, p, f, choices); };
    }

    // ---- scalars ------------------------------------------------------------------------

    bool read_string(const Node& n, const Path& p, std::string& out);
    bool read_bool(const Node& n, const Path& p, bool& out);
    bool read_int(const Node& n, const Path& p, int& out, long long lo, long long hi);

    /// A positive number (rates).
    bool read_number(const Node& n, const Path& p, double& out);
    bool read_duration(const Node& n, const Path& p, Duration& out, bool zero_ok);
    bool read_size(const Node& n, const Path& p, std::size_t& out);

    template <class T, class E, std::size_t N>
    bool read_enum(const Node& n, const Path& p, T& out, const Choice<E> (&choices)[N]) {
        const std::string* s = scalar(n, p, "a string");
        if (!s) return false;
        auto found = std::find_if(std::begin(choices), std::end(choices),
                                  [&](const Choice<E>& c) { return c.name == *s; });
        if (found == std::end(choices))
            return fail(n, p, "invalid value " + quote(*s) + " (valid: " + names(choices) + ")");
        out = found->value;
        return true;
    }

    bool read_address(const Node& n, const Path& p, HostPort& out);

    /// A file the process must read (TLS material): resolved, and checked to open.
    bool read_file_path(const Node& n, const Path& p, std::string& out);
    bool read_http_path(const Node& n, const Path& p, std::string& out);

    // ---- top-level sections -------------------------------------------------------------

    void read_workers(const Node& n, const Path& p, int& out);
    void read_listen(const Node& node, const Path& path, std::vector<Listener>& out);
    void read_listener(const Node& node, const Path& path, Listener& out);

    /// certificate + private_key (+ ocsp_response), or certificates: [{certificate,
    /// private_key, ocsp_response}, ...].
    void read_tls(const Node& node, const Path& path, std::optional<TlsConfig>& out);
    void read_cert_key(const Node& node, const Path& path, CertKey& out);

    /// A map with `address`, or off (YAML false) to disable the admin listener.
    void read_admin(const Node& node, const Path& path, Admin& out);
    void read_redis(const Node& node, const Path& path, std::optional<Redis>& out);
    void read_redis_address(const Node& n, const Path& p, HostPort& out, RedisUrl& url);
    void read_cidrs(const Node& node, const Path& path, std::vector<std::string>& out);
    void read_timeouts(const Node& node, const Path& path, Timeouts& t);
    void read_limits(const Node& node, const Path& path, Limits& l);
    void read_rate(const Node& node, const Path& path, std::optional<RateLimit>& out);
    void read_headers(const Node& node, const Path& path, Headers& out);
    void read_access_log(const Node& node, const Path& path, AccessLog& out);

    /// stdout | stderr | off (quoted or not; YAML 1.1 may hand it over as false) | a file
    /// whose directory exists.
    void read_log_path(const Node& n, const Path& p, std::string& out);

    // ---- upstreams ----------------------------------------------------------------------

    void read_upstreams(const Node& node, const Path& path, std::map<std::string, Upstream>& out);
    void read_upstream(const Node& node, const Path& path, Upstream& out);

    /// TLS to the servers: a map, or a YAML boolean (true = every default, false = plain).
    void read_upstream_tls(const Node& node, const Path& path, std::optional<UpstreamTls>& out);

    /// off (or false), v1 or v2.
    void read_send_proxy(const Node& node, const Path& path, SendProxy& out);
    void read_cookie(const Node& node, const Path& path, CookieConfig& out, UpstreamMarks& marks);
    void read_sid(const Node& node, const Path& path, SidConfig& out);
    void read_ip_hash(const Node& node, const Path& path, IpHashConfig& out);
    void read_servers(const Node& node, const Path& path, std::vector<Server>& out);

    /// `name_mark` ends at the name, or at the address the name defaults to.
    void read_server(const Node& node, const Path& path, Server& out, YAML::Mark& name_mark);
    void read_health_check(const Node& node, const Path& path, std::optional<HealthCheck>& out);

    /// "200-399", "200", 200, or a list of those.
    void read_expect_status(const Node& node, const Path& path, std::vector<StatusRange>& out);

    /// "500-599", "502", 502, or a list of those: answers that count as
    /// passive failures (error answers only: 400..599).
    void read_fail_on_status(const Node& node, const Path& path, std::vector<StatusRange>& out);
    void read_status_ranges(const Node& node, const Path& path, std::vector<StatusRange>& out,
                            int lowest, std::string_view example);

    // ---- after the walk -----------------------------------------------------------------

    void check_references();
    void check_warnings();
    void check_heartbeat(const std::string& upstream, const YAML::Mark& fallback);

    std::string file_;
    std::string base_dir_;
    LoadResult& result_;
    Config config_;
    std::vector<UpstreamRef> refs_;                       ///< listen[i].upstream, checked last
    std::map<std::string, YAML::Mark> listen_addresses_;  ///< address text -> where written
    std::optional<YAML::Mark> admin_mark_, tunnel_mark_, response_mark_;
    std::map<std::string, UpstreamMarks> upstream_marks_;
};

}  // namespace tether::config::detail
