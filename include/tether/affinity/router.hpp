// Routing decisions with affinity (SPEC "Routing rules"): which backend a
// request goes to, and what to emit with the answer (a Set-Cookie, a sid to
// learn). Modes:
//   none     the upstream's balance picks.
//   ip_hash  key = client IP masked to prefix_v4/prefix_v6; a live binding
//            wins; else Maglev with bounded load places it and the binding is
//            written (NX: a concurrent winner is adopted).
//   cookie   a genuine tether cookie naming a live server wins; else balance
//            places the client and the answer sets the cookie.
//   sid      under sid.path: a sid bound to a live server wins; bound to a
//            dead or unknown one -> Engine.IO "Session ID unknown" at once;
//            unbound -> the fallback cookie, else balance. No sid = a
//            handshake: balance places it and the sid is learnt from the
//            answer (see SidLearner in the http module).
// "Live" for a binding means up: a draining server keeps its bound clients.
//
// Threading: one Router per worker (it uses that worker's Pickers); the
// LocalTable it writes is shared and thread-safe. RoutingTables is an
// immutable snapshot built with the Runtime.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tether/affinity/local_table.hpp"
#include "tether/balance/maglev.hpp"
#include "tether/balance/picker.hpp"
#include "tether/core/errors.hpp"
#include "tether/upstream/backend.hpp"

namespace tether::affinity {

struct UpstreamRouting {
    std::string name;
    std::unique_ptr<balance::MaglevTable> maglev;  ///< over primary servers
    std::vector<std::size_t> maglev_backend;       ///< maglev member -> backend index
    std::unordered_map<std::uint64_t, std::size_t> cookie_ids;  ///< token id -> backend index
    std::unordered_map<std::string, std::size_t> by_name;       ///< server name -> backend index
    std::vector<std::string> set_cookie;  ///< by backend index: "Set-Cookie: ...\r\n"
    std::string secret;                   ///< effective cookie secret
};

struct RoutingTables {
    std::vector<UpstreamRouting> upstreams;  ///< same order as Runtime::upstreams
};

/// Builds the tables for `rt`. `process_secret` stands in for an empty
/// cookie.secret (random per process, so only this replica understands it).
std::shared_ptr<const RoutingTables> build_routing(const upstream::Runtime& rt,
                                                   const std::string& process_secret);

struct RouteInput {
    std::string_view target;
    std::string_view cookie_header;
    std::string_view client_ip;
};

struct RouteDecision {
    std::shared_ptr<upstream::Backend> backend;
    errc error = errc::ok;       ///< no_server when nothing can take it
    bool unknown_sid = false;   ///< answer Engine.IO 400 "Session ID unknown"
    bool learn_sid = false;     ///< handshake: bind the sid found in the answer
    std::string_view set_cookie;  ///< header line(s) to add to the answer
};

struct RouterStats {
    std::uint64_t local_hits = 0;
    std::uint64_t misses = 0;
    std::uint64_t rebinds = 0;
    std::uint64_t bad_cookies = 0;
    std::uint64_t unknown_sids = 0;
    std::uint64_t sids_learnt = 0;
};

class Router {
public:
    explicit Router(LocalTable& table) : table_(table) {}

    /// Decides for a request to upstream `u` (index `ui`) of `rt`; servers in
    /// `exclude` were already tried for this request.
    RouteDecision route(const upstream::Runtime& rt, std::size_t ui, const RoutingTables& tables,
                        balance::Picker& picker, const RouteInput& in,
                        std::span<const upstream::Backend* const> exclude);

    /// Binds a sid learnt from a handshake answer to `server`.
    void bind_sid(const upstream::Upstream& u, std::string_view sid, std::string_view server);

    /// Counters by upstream name.
    const std::map<std::string, RouterStats, std::less<>>& stats() const { return stats_; }
    const RouterStats& stats(std::string_view upstream) { return counters(upstream); }
    LocalTable& table() { return table_; }

private:
    RouteDecision route_ip_hash(const upstream::Upstream& u, const UpstreamRouting& r,
                                balance::Picker& picker, std::string_view client_ip,
                                std::span<const upstream::Backend* const> exclude);
    RouteDecision route_cookie(const upstream::Upstream& u, const UpstreamRouting& r,
                               balance::Picker& picker, std::string_view cookie_header,
                               std::span<const upstream::Backend* const> exclude);
    RouteDecision route_sid(const upstream::Upstream& u, const UpstreamRouting& r,
                            balance::Picker& picker, const RouteInput& in,
                            std::span<const upstream::Backend* const> exclude);
    RouteDecision place(const upstream::Upstream& u, balance::Picker& picker,
                        std::span<const upstream::Backend* const> exclude);
    int maglev_place(const upstream::Upstream& u, const UpstreamRouting& r, std::uint64_t hash,
                     std::span<const upstream::Backend* const> exclude);

    RouterStats& counters(std::string_view upstream);

    LocalTable& table_;
    std::map<std::string, RouterStats, std::less<>> stats_;
    RouterStats* current_ = nullptr;  // counters of the upstream being routed
    std::string key_;  // scratch for table keys
};

/// "10.1.2.3" masked to `bits` (IPv4) or "2001:db8::1" to `bits6` (IPv6),
/// as text; the input unchanged when it is not an address.
std::string masked_ip(std::string_view ip, int bits4, int bits6);

}  // namespace tether::affinity
