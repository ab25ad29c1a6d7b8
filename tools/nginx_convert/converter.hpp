// The converter's state while it walks one nginx configuration: the output being built, the
// findings, the upstreams by nginx name and the server blocks gathered with their scopes.
// Contexts are walked in contexts.cpp; listeners, TLS, headers, timeouts and the Socket.IO
// suggestion are settled in settle.cpp; limit_req / limit_conn in limits.cpp. Private to
// tools/nginx_convert; single-threaded.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "model.hpp"

namespace tether::nginx {

/// What a block inherits from the blocks around it (nginx's inheritance: a level that has
/// its own proxy_set_header lines replaces the inherited ones entirely).
struct Scope {
    std::vector<const Directive*> headers;
    bool own_headers = false;
    std::vector<const Directive*> certificates, keys;
    const Directive* protocols = nullptr;
    bool ssl_on = false;
    const Directive* stapling_file = nullptr;  ///< ssl_stapling_file
    bool stapling_on = false;                  ///< ssl_stapling on
    const Directive* next_upstream = nullptr;  ///< proxy_next_upstream with http_* statuses
    std::map<std::string, const Directive*> proxy_ssl;  ///< proxy_ssl_* by name
};

/// A location with proxy_pass.
struct ProxyLocation {
    std::string path;
    std::string upstream;  ///< tether name
    const Directive* block = nullptr;
    std::vector<const Directive*> headers;  ///< effective proxy_set_header lines
    const Directive* next_upstream = nullptr;  ///< effective proxy_next_upstream with statuses
};

struct ServerInfo {
    const Directive* block = nullptr;
    std::vector<const Directive*> listens;
    std::vector<ProxyLocation> proxies;
    Scope scope;
};

class Converter {
public:
    explicit Converter(std::string conf_dir) : conf_dir_(std::move(conf_dir)) {}

    Conversion run(const std::vector<Directive>& top, const std::string& source);

private:
    // contexts.cpp
    void collect_upstreams(const std::vector<Directive>& list);
    std::optional<std::string> proxy_target(const Directive& d, const std::string& path);
    void main_directive(const Directive& d, Scope& scope);
    void http_directive(const Directive& d, Scope& scope);
    void server_block(const Directive& block, const Scope& parent);
    void location_block(const Directive& block, const Scope& parent, ServerInfo& server);
    void common(const Directive& d, Scope& scope);

    // upstream_tls.cpp
    void upstream_scheme(const Directive& pass, const Scope& scope, const std::string& name);
    std::string path_of(const Directive& d) const;
    void untranslated_proxy_ssl(const Scope& scope, const OutUpstreamTls& t, bool sends_sni);
    void unused_proxy_ssl();
    void next_upstream(const Directive& d, Scope& scope);

    // limits.cpp
    void collect_zone(const Directive& d);
    bool rate_limits(const Directive& d);

    // settle.cpp
    bool timeouts_and_limits(const Directive& d);
    void access_log(const Directive& d);
    void set_value(std::map<std::string, OutValue>& values, const std::string& key,
                   const std::string& text, std::int64_t number, const Directive& d);
    void build_listeners();
    void add_listener(const ServerInfo& server, const Directive& listen,
                      const std::string& upstream);
    bool tls_material(const ServerInfo& server, const Directive& listen, OutListener& l);
    void unused_stapling_files();
    void check_headers();
    void fail_statuses();
    void suggest_sid();
    OutUpstream* upstream(const std::string& name);

    std::string conf_dir_;
    Findings f_;
    Output out_;
    std::map<std::string, std::size_t> upstream_index_;  ///< nginx name -> out_.upstreams
    std::vector<ServerInfo> servers_;
    std::set<const Directive*> reported_;  ///< lines already judged (headers, stapling, proxy_ssl_*)
    std::vector<const Directive*> next_upstreams_;  ///< proxy_next_upstream with statuses
    std::vector<const Directive*> proxy_ssl_seen_;  ///< every proxy_ssl_* line taken
    std::set<const Directive*> proxy_ssl_used_;     ///< those a proxy_pass https:// used
    std::vector<const Directive*> stapling_seen_;   ///< every ssl_stapling_file line

    /// A limit_req_zone / limit_conn_zone: its key and (limit_req) rate.
    struct Zone {
        std::string key;
        double per_second = 0;
    };
    std::map<std::string, Zone> req_zones_, conn_zones_;  ///< by zone name
};

}  // namespace tether::nginx
