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
// Shared table (Redis): the Router itself never waits. A key the local table
// lacks is answered with SharedWrite::Op::fetch when the caller allows it
// (RouteInput::may_fetch): the session fetches it from Redis into the local
// table and routes again, saying so in RouteInput::fetched (a local hit, the
// steady state, costs nothing more than without Redis). The Router decides
// on local state and returns, in RouteDecision::write, what the shared table
// must learn: a new binding to claim (SET NX; a binding another replica made first
// is adopted), a dead binding to replace or remove, or a TTL refresh (at most
// once per ttl/10 per key). The session performs it before the request goes
// on, so a binding is in Redis before the answer reaches the client.
//
// Threading: one Router per worker (it uses that worker's Pickers); the
// LocalTable it writes is shared and thread-safe. RoutingTables is an
// immutable snapshot built with the Runtime.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tether/affinity/local_table.hpp"
#include "tether/balance/engineio.hpp"
#include "tether/balance/maglev.hpp"
#include "tether/balance/picker.hpp"
#include "tether/core/bytes.hpp"
#include "tether/core/hash.hpp"
#include "tether/core/errors.hpp"
#include "tether/upstream/backend.hpp"

namespace tether::affinity {

struct UpstreamRouting {
    std::string name;
    std::uint64_t generation = 0;  ///< unique per build_routing and upstream (> 0)
    std::string sid_prefix;        ///< "{name}:sid:", the table keys of affinity sid
    std::string ip_hash_prefix;    ///< "{name}:ip_hash:"
    std::unique_ptr<balance::MaglevTable> maglev;  ///< over primary servers
    std::vector<std::size_t> maglev_backend;       ///< maglev member -> backend index
    std::unordered_map<std::uint64_t, std::size_t> cookie_ids;  ///< token id -> backend index
    ServerIndex by_name;                    ///< server name -> backend index
    std::vector<std::string> cookie_token;  ///< by backend index: its signed token
    std::vector<std::string> set_cookie;    ///< by backend index: "Set-Cookie: ...\r\n"
    std::string secret;                   ///< effective cookie secret
};

struct RoutingTables {
    std::uint64_t generation = 0;            ///< unique per build_routing (> 0)
    std::vector<UpstreamRouting> upstreams;  ///< same order as Runtime::upstreams
};

/// Builds the tables for `rt`. `process_secret` stands in for an empty
/// cookie.secret (random per process, so only this replica understands it).
std::shared_ptr<const RoutingTables> build_routing(const upstream::Runtime& rt,
                                                   const std::string& process_secret);

/// A connection's memo of the binding its last sid was routed by (affinity
/// sid). A polling client asks with the same sid again and again, mostly on
/// one kept-alive connection; with the memo the router finds the binding's
/// table entry again (LocalTable::refind) without decoding the sid, writing
/// the table key, hashing it or looking it up. It is only a way to the entry:
/// what the entry says now is what routes (a rebind by another worker, by
/// Redis or by a fallback is seen), its expiry and the Redis TTL refresh are
/// kept as by a lookup, and it holds only while the upstream's routing
/// snapshot is the one it was made with and no entry of the entry's shard was
/// erased (an erased binding, expired, evicted, removed with a dead server:
/// the lookup by key decides). Sids longer than kMaxSid are not memoised.
/// Threading: the connection's worker only (the table does its own locking).
struct SidMemo {
    static constexpr std::size_t kMaxSid = 48;
    std::uint64_t generation = 0;  ///< UpstreamRouting::generation of `entry`; 0: empty
    LocalTable::Handle entry;
    std::uint8_t sid_size = 0;
    std::array<char, kMaxSid> sid{};  ///< the sid as written in the query (not decoded)

    /// True if the memo is of `raw_sid` in the upstream routing of `generation`.
    bool holds(std::uint64_t gen, std::string_view raw_sid) const {
        return gen == generation && raw_sid.size() == sid_size &&
               core::same_bytes(raw_sid.data(), sid.data(), sid_size);
    }
};

struct RouteInput {
    std::string_view target;
    std::string_view cookie_header;
    std::string_view client_ip;
    bool fetched = false;  ///< the table key's binding was just fetched from Redis
    /// balance::eio_query(target, sid.path, sid.param) when the caller read
    /// it already (affinity sid); null: the router reads the target itself.
    const balance::EioQuery* eio = nullptr;
    /// With a shared table: a local miss of the table key returns
    /// SharedWrite::Op::fetch (ask Redis, then route again) instead of a placement.
    bool may_fetch = false;
    /// The connection's memo (affinity sid; null: none): read and updated.
    SidMemo* memo = nullptr;
};

/// What the shared (Redis) table must learn from a decision.
struct SharedWrite {
    /// fetch is no write: the local table lacks `key`; fetch it from the
    /// shared table into the local one, then route again (RouteInput::fetched).
    enum class Op { none, claim, replace, remove, refresh, fetch };
    Op op = Op::none;
    std::string key;       ///< table key, "{upstream}:{mode}:{key}"
    std::string server;    ///< claim, replace, refresh: the bound server
    std::string previous;  ///< replace, remove: the binding being dropped
    std::chrono::milliseconds ttl{0};
};

struct RouteDecision {
    std::shared_ptr<upstream::Backend> backend;
    errc error = errc::ok;       ///< no_server when nothing can take it
    bool unknown_sid = false;   ///< answer Engine.IO 400 "Session ID unknown"
    bool learn_sid = false;     ///< handshake: bind the sid found in the answer
    std::string_view set_cookie;  ///< header line(s) to add to the answer
    SharedWrite write;            ///< for the shared table, when there is one
};

struct RouterStats {
    std::uint64_t local_hits = 0;
    std::uint64_t redis_hits = 0;
    std::uint64_t redis_failures = 0;  ///< Redis slow or down: routed on local state
    std::uint64_t misses = 0;
    std::uint64_t rebinds = 0;
    std::uint64_t bad_cookies = 0;
    std::uint64_t unknown_sids = 0;
    std::uint64_t sids_learnt = 0;
};

class Router {
public:
    /// `shared`: a Redis table stands behind `table` (decisions carry writes).
    explicit Router(LocalTable& table, bool shared = false) : table_(table), shared_(shared) {}

    /// Decides for a request to upstream `u` (index `ui`) of `rt`; servers in
    /// `exclude` were already tried for this request.
    RouteDecision route(const upstream::Runtime& rt, std::size_t ui, const RoutingTables& tables,
                        balance::Picker& picker, const RouteInput& in,
                        std::span<const upstream::Backend* const> exclude);

    /// Binds a sid learnt from a handshake answer to `server`; returns the
    /// write that makes it shared.
    SharedWrite bind_sid(const upstream::Upstream& u, std::string_view sid,
                         std::string_view server);
    /// The backend named `server` if a client bound to it may stay there
    /// (up, not excluded); null otherwise.
    std::shared_ptr<upstream::Backend> bound_backend(
        const upstream::Upstream& u, const UpstreamRouting& r, std::string_view server,
        std::span<const upstream::Backend* const> exclude) const;
    /// Counts a Redis command that failed or timed out (routed on local state).
    void count_redis_failure(std::string_view upstream);

    /// Counters by upstream name.
    const std::map<std::string, RouterStats, std::less<>>& stats() const { return stats_; }
    const RouterStats& stats(std::string_view upstream) { return counters(upstream); }
    LocalTable& table() { return table_; }

private:
    RouteDecision route_ip_hash(const upstream::Upstream& u, const UpstreamRouting& r,
                                balance::Picker& picker, const RouteInput& in,
                                std::span<const upstream::Backend* const> exclude);
    RouteDecision route_cookie(const upstream::Upstream& u, const UpstreamRouting& r,
                               balance::Picker& picker, std::string_view cookie_header,
                               std::span<const upstream::Backend* const> exclude);
    RouteDecision route_sid(const upstream::Upstream& u, const UpstreamRouting& r,
                            balance::Picker& picker, const RouteInput& in,
                            std::span<const upstream::Backend* const> exclude);
    /// route_sid past its memo: `raw_sid` (not empty) looked up by key.
    [[gnu::noinline]] RouteDecision route_sid_key(const upstream::Upstream& u,
                                                  const UpstreamRouting& r,
                                                  balance::Picker& picker, const RouteInput& in,
                                                  std::span<const upstream::Backend* const> exclude,
                                                  std::string_view raw_sid, SidMemo* memo);
    /// Op::fetch of key_: the caller asks the shared table, then routes again.
    RouteDecision fetch_first() const;
    RouteDecision place(const upstream::Upstream& u, balance::Picker& picker,
                        std::span<const upstream::Backend* const> exclude);
    int maglev_place(const upstream::Upstream& u, const UpstreamRouting& r, std::uint64_t hash,
                     std::span<const upstream::Backend* const> exclude);

    RouterStats& counters(std::string_view upstream);
    /// counters() of upstream `ui` of `tables`, without a lookup by name
    /// while the tables stay the same.
    RouterStats& counters(const RoutingTables& tables, std::size_t ui);

    /// key_ = prefix + rest, written in place.
    void set_key(std::string_view prefix, std::string_view rest);
    /// The binding of key_ in the local table (see LocalTable::find); a TTL
    /// refresh of the shared table is due at most once per ttl/10.
    LocalTable::Found find_bound(const UpstreamRouting& r, Clock::time_point now,
                                 std::chrono::milliseconds ttl, const RouteInput& in,
                                 LocalTable::Handle* where = nullptr);
    /// The shared table's TTL refresh interval for find_bound (max: none).
    Clock::duration sync_every(std::chrono::milliseconds ttl, const RouteInput& in) const;

    LocalTable& table_;
    bool shared_;
    std::map<std::string, RouterStats, std::less<>> stats_;
    RouterStats* current_ = nullptr;  // counters of the upstream being routed
    std::uint64_t counted_generation_ = 0;     // RoutingTables of counted_
    std::vector<RouterStats*> counted_;        // by upstream index
    std::string key_;          // scratch for table keys
    std::string sid_scratch_;  // scratch for a percent-decoded sid
};

/// "10.1.2.3" masked to `bits` (IPv4) or "2001:db8::1" to `bits6` (IPv6),
/// as text; the input unchanged when it is not an address.
std::string masked_ip(std::string_view ip, int bits4, int bits6);

}  // namespace tether::affinity
