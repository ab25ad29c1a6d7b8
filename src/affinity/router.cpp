// Affinity routing; see router.hpp.
#include "tether/affinity/router.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include <boost/asio/ip/address.hpp>

#include "tether/balance/cookie_token.hpp"
#include "tether/balance/engineio.hpp"
#include "tether/core/coarse_clock.hpp"
#include "tether/core/hash.hpp"

namespace tether::affinity {

namespace {

using upstream::Backend;
using Exclude = std::span<const Backend* const>;

RouteDecision to_backend(const std::shared_ptr<Backend>& b) {
    RouteDecision d;
    d.backend = b;
    return d;
}

/// A binding's hit: its server `b`, with the shared table's TTL refresh of
/// `key` when it is due. Returned as is by the router (one named result here,
/// so the decision is built in the caller's place: a RouteDecision moved is a
/// shared_ptr and three strings moved, and as many destroyed, on every hit).
[[gnu::always_inline]] inline RouteDecision bound_to(const std::shared_ptr<Backend>& b,
                                                     bool refresh_due, const std::string& key,
                                                     std::chrono::milliseconds ttl) {
    RouteDecision d;
    d.backend = b;
    if (refresh_due) d.write = {SharedWrite::Op::refresh, key, b->name(), {}, ttl};
    return d;
}

bool excluded(Exclude ex, const Backend* b) { return std::find(ex.begin(), ex.end(), b) != ex.end(); }

/// A bound client may stay on a server that is up, even when draining or full.
[[gnu::always_inline]] inline bool keeps_bound(const Backend& b, Exclude ex) {
    return b.up() && (ex.empty() || !excluded(ex, &b));
}

std::string make_set_cookie(const config::CookieConfig& c, const std::string& token) {
    std::string line = "Set-Cookie: " + c.name + "=" + token + "; Path=/";
    if (c.max_age.count() > 0)
        line += "; Max-Age=" + std::to_string(c.max_age.count() / 1000);
    if (c.http_only) line += "; HttpOnly";
    if (c.secure || c.same_site == config::SameSite::none) line += "; Secure";
    switch (c.same_site) {
        case config::SameSite::lax: line += "; SameSite=Lax"; break;
        case config::SameSite::strict: line += "; SameSite=Strict"; break;
        case config::SameSite::none: line += "; SameSite=None"; break;
    }
    return line + "\r\n";
}

/// The backend index of a genuine token naming a current server, else nullopt
/// (forged, garbage, or a server that is gone). The tokens of the current
/// servers were signed when the tables were built, and a token has one
/// spelling, so a constant-time comparison with the issued token is the HMAC
/// check without an HMAC per request.
std::optional<std::size_t> cookie_backend(const UpstreamRouting& r, std::string_view token) {
    const auto id = balance::cookie_token_claimed_id(token);
    const auto it = id ? r.cookie_ids.find(*id) : r.cookie_ids.end();
    if (it == r.cookie_ids.end() || !balance::cookie_token_matches(token, r.cookie_token[it->second]))
        return std::nullopt;
    return it->second;
}

// A dotted-quad IPv4 address in the canonical form inet_pton accepts (four
// decimal octets, no leading zeros), or nullopt: the fast path of masked_ip,
// run on every ip_hash request; anything else takes Asio's parser.
std::optional<std::uint32_t> parse_v4(std::string_view s) {
    std::uint32_t addr = 0;
    std::size_t i = 0;
    for (int octet = 0; octet < 4; ++octet) {
        if (octet > 0 && (i >= s.size() || s[i++] != '.')) return std::nullopt;
        const std::size_t start = i;
        unsigned v = 0;
        while (i < s.size() && i - start < 3 && s[i] >= '0' && s[i] <= '9')
            v = v * 10 + static_cast<unsigned>(s[i++] - '0');
        if (i == start || v > 255 || (s[start] == '0' && i - start > 1)) return std::nullopt;
        addr = addr << 8 | v;
    }
    if (i != s.size()) return std::nullopt;
    return addr;
}

std::string format_v4(std::uint32_t addr) {
    std::string out;
    for (int shift = 24; shift >= 0; shift -= 8) {
        const unsigned v = (addr >> shift) & 0xff;
        if (shift != 24) out.push_back('.');
        if (v >= 100) out.push_back(static_cast<char>('0' + v / 100));
        if (v >= 10) out.push_back(static_cast<char>('0' + v / 10 % 10));
        out.push_back(static_cast<char>('0' + v % 10));
    }
    return out;
}

std::uint32_t mask_v4(int bits4) { return bits4 <= 0 ? 0 : bits4 >= 32 ? ~0u : ~0u << (32 - bits4); }

std::uint64_t next_generation() {
    static std::atomic<std::uint64_t> last{0};
    return ++last;
}

}  // namespace

std::string masked_ip(std::string_view ip, int bits4, int bits6) {
    if (const auto v4 = parse_v4(ip)) return format_v4(*v4 & mask_v4(bits4));
    boost::system::error_code ec;
    auto addr = boost::asio::ip::make_address(ip, ec);
    if (ec) return std::string(ip);
    if (addr.is_v6() && addr.to_v6().is_v4_mapped())
        addr = boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, addr.to_v6());
    if (addr.is_v4()) {
        return boost::asio::ip::address_v4(addr.to_v4().to_uint() & mask_v4(bits4)).to_string();
    }
    auto bytes = addr.to_v6().to_bytes();
    for (int i = 0; i < 16; ++i) {
        const int keep = std::clamp(bits6 - i * 8, 0, 8);
        bytes[static_cast<std::size_t>(i)] &= static_cast<unsigned char>(0xff00 >> keep);
    }
    return boost::asio::ip::address_v6(bytes).to_string();
}

std::shared_ptr<const RoutingTables> build_routing(const upstream::Runtime& rt,
                                                   const std::string& process_secret) {
    auto tables = std::make_shared<RoutingTables>();
    tables->generation = next_generation();
    for (const auto& u : rt.upstreams) {
        UpstreamRouting r;
        const auto& cfg = *u.config;
        r.name = cfg.name;
        r.generation = next_generation();
        r.sid_prefix = cfg.name + ":sid:";
        r.ip_hash_prefix = cfg.name + ":ip_hash:";
        r.secret = cfg.cookie.secret.empty() ? process_secret : cfg.cookie.secret;
        std::vector<balance::MaglevTable::Member> members;
        for (std::size_t i = 0; i < u.backends.size(); ++i) {
            const auto& s = u.backends[i]->server();
            r.by_name.emplace(s.name, i);
            const auto id = balance::cookie_server_id(cfg.name, s.name);
            r.cookie_ids.emplace(id, i);
            r.cookie_token.push_back(balance::encode_cookie_token(r.secret, cfg.name, id));
            r.set_cookie.push_back(make_set_cookie(cfg.cookie, r.cookie_token.back()));
            if (s.backup) continue;
            members.push_back({s.name, s.weight});
            r.maglev_backend.push_back(i);
        }
        if (cfg.affinity == config::Affinity::ip_hash && !members.empty())
            r.maglev = std::make_unique<balance::MaglevTable>(members);
        tables->upstreams.push_back(std::move(r));
    }
    return tables;
}

std::shared_ptr<Backend> Router::bound_backend(const upstream::Upstream& u,
                                               const UpstreamRouting& r, std::string_view server,
                                               Exclude exclude) const {
    auto it = r.by_name.find(server);
    if (it == r.by_name.end() || !keeps_bound(*u.backends[it->second], exclude)) return nullptr;
    return u.backends[it->second];
}

void Router::count_redis_failure(std::string_view upstream) { ++counters(upstream).redis_failures; }

void Router::set_key(std::string_view prefix, std::string_view rest) {
    key_.resize(prefix.size() + rest.size());  // as long as the last key, mostly: no change
    std::memcpy(key_.data(), prefix.data(), prefix.size());
    std::memcpy(key_.data() + prefix.size(), rest.data(), rest.size());
}

Clock::duration Router::sync_every(std::chrono::milliseconds ttl, const RouteInput& in) const {
    return !shared_ || in.fetched ? Clock::duration::max() : Clock::duration(ttl / 10);
}

LocalTable::Found Router::find_bound(const UpstreamRouting& r, Clock::time_point now,
                                     std::chrono::milliseconds ttl, const RouteInput& in,
                                     LocalTable::Handle* where) {
    return table_.find(key_, now, ttl, sync_every(ttl, in), {&r.by_name, r.generation}, where);
}

RouterStats& Router::counters(std::string_view upstream) {
    auto it = stats_.find(upstream);
    if (it == stats_.end()) it = stats_.emplace(std::string(upstream), RouterStats{}).first;
    return it->second;
}

RouterStats& Router::counters(const RoutingTables& tables, std::size_t ui) {
    if (tables.generation == 0) return counters(tables.upstreams[ui].name);  // built by hand
    if (counted_generation_ != tables.generation) {
        counted_.clear();
        for (const auto& r : tables.upstreams) counted_.push_back(&counters(r.name));
        counted_generation_ = tables.generation;
    }
    return *counted_[ui];
}

RouteDecision Router::route(const upstream::Runtime& rt, std::size_t ui,
                            const RoutingTables& tables, balance::Picker& picker,
                            const RouteInput& in, Exclude exclude) {
    const auto& u = rt.upstreams[ui];
    const auto& r = tables.upstreams[ui];
    current_ = &counters(tables, ui);
    switch (u.config->affinity) {
        case config::Affinity::none: return place(u, picker, exclude);
        case config::Affinity::ip_hash: return route_ip_hash(u, r, picker, in, exclude);
        case config::Affinity::cookie: return route_cookie(u, r, picker, in.cookie_header, exclude);
        case config::Affinity::sid: return route_sid(u, r, picker, in, exclude);
    }
    return place(u, picker, exclude);
}

RouteDecision Router::fetch_first() const {
    RouteDecision d;
    d.write.op = SharedWrite::Op::fetch;
    d.write.key = key_;
    return d;
}

RouteDecision Router::place(const upstream::Upstream& u, balance::Picker& picker, Exclude exclude) {
    RouteDecision d;
    const auto* pick = picker.pick(u.backends, exclude);
    if (pick) d.backend = *pick;
    else d.error = errc::no_server;
    return d;
}

// Walks the Maglev table from the key's slot to the first server that takes
// new clients and is under its bounded-load cap: ceil(factor% x (total+1) x
// weight / total weight), the "consistent hashing with bounded loads" of
// Mirrokni, Thorup and Zadimoghaddam (2018). Falls back to the first
// eligible server ignoring the cap, so a key is placed whenever one can be.
int Router::maglev_place(const upstream::Upstream& u, const UpstreamRouting& r,
                         std::uint64_t hash, Exclude exclude) {
    long total_active = 0;
    long total_weight = 0;
    for (std::size_t bi : r.maglev_backend) {
        const Backend& b = *u.backends[bi];
        if (!b.accepts_new() || excluded(exclude, &b)) continue;
        total_active += b.active();
        total_weight += b.server().weight;
    }
    if (total_weight == 0) return -1;
    const int factor = u.config->ip_hash.balance_factor;
    auto eligible = [&](int m) {
        const Backend& b = *u.backends[r.maglev_backend[static_cast<std::size_t>(m)]];
        return b.accepts_new() && !excluded(exclude, &b);
    };
    auto under_cap = [&](int m) {
        if (!eligible(m)) return false;
        if (factor <= 0) return true;
        const Backend& b = *u.backends[r.maglev_backend[static_cast<std::size_t>(m)]];
        const double cap = std::ceil(factor / 100.0 * static_cast<double>(total_active + 1) *
                                     b.server().weight / static_cast<double>(total_weight));
        return b.active() < cap;
    };
    int m = r.maglev->lookup(hash, under_cap);
    if (m < 0) m = r.maglev->lookup(hash, eligible);
    return m < 0 ? -1 : static_cast<int>(r.maglev_backend[static_cast<std::size_t>(m)]);
}

RouteDecision Router::route_ip_hash(const upstream::Upstream& u, const UpstreamRouting& r,
                                    balance::Picker& picker, const RouteInput& in,
                                    Exclude exclude) {
    const auto& cfg = u.config->ip_hash;
    const std::string masked = masked_ip(in.client_ip, cfg.prefix_v4, cfg.prefix_v6);
    set_key(r.ip_hash_prefix, masked);
    const auto now = core::coarse_now();  // one clock read per completion (coarse_clock.hpp)
    const auto ttl = u.config->affinity_ttl;
    const auto found = find_bound(r, now, ttl, in);
    if (found.bound) {
        if (found.index != LocalTable::kNoIndex) {
            const auto& b = u.backends[found.index];
            if (keeps_bound(*b, exclude)) {
                ++(in.fetched ? current_->redis_hits : current_->local_hits);
                return bound_to(b, found.sync_due, key_, ttl);
            }
        }
        ++current_->rebinds;
    } else if (shared_ && in.may_fetch && !in.fetched) {
        return fetch_first();
    } else {
        ++current_->misses;
    }
    if (!r.maglev) return place(u, picker, exclude);
    const int bi = maglev_place(u, r, stable_hash(masked, 0x69706861736800ull), exclude);
    if (bi < 0) return place(u, picker, exclude);  // no primary: backups by balance
    const auto& chosen = u.backends[static_cast<std::size_t>(bi)];
    if (found.bound) {
        table_.put(key_, chosen->name(), now, ttl);
        RouteDecision d = to_backend(chosen);
        // A server this replica does not know may be one another replica
        // already has (a reload rolling out): its binding is left alone.
        if (shared_ && found.index != LocalTable::kNoIndex)
            d.write = {SharedWrite::Op::replace, key_, chosen->name(),
                       u.backends[found.index]->name(), ttl};
        return d;
    }
    const std::string holder = table_.put_if_absent(key_, chosen->name(), now, ttl);
    if (holder != chosen->name())  // another worker of this replica placed it first
        if (auto it = r.by_name.find(holder); it != r.by_name.end())
            if (keeps_bound(*u.backends[it->second], exclude)) return to_backend(u.backends[it->second]);
    RouteDecision d = to_backend(chosen);
    if (shared_) d.write = {SharedWrite::Op::claim, key_, chosen->name(), {}, ttl};
    return d;
}

RouteDecision Router::route_cookie(const upstream::Upstream& u, const UpstreamRouting& r,
                                   balance::Picker& picker, std::string_view cookie_header,
                                   Exclude exclude) {
    const std::string_view token = balance::find_cookie(cookie_header, u.config->cookie.name);
    if (!token.empty()) {
        const auto bi = cookie_backend(r, token);
        if (bi && keeps_bound(*u.backends[*bi], exclude)) {
            ++current_->local_hits;
            return to_backend(u.backends[*bi]);
        }
        if (!bi) ++current_->bad_cookies;
        else ++current_->rebinds;
    } else {
        ++current_->misses;
    }
    RouteDecision d = place(u, picker, exclude);
    if (d.backend) d.set_cookie = r.set_cookie[r.by_name.at(d.backend->name())];
    return d;
}

RouteDecision Router::route_sid(const upstream::Upstream& u, const UpstreamRouting& r,
                                balance::Picker& picker, const RouteInput& in, Exclude exclude) {
    const auto& sc = u.config->sid;
    balance::EioQuery scanned;
    const balance::EioQuery& q =
        in.eio ? *in.eio : (scanned = balance::eio_query(in.target, sc.path, sc.param));
    if (!q.under_path) return place(u, picker, exclude);
    const auto& raw_sid = q.sid;
    if (!raw_sid || raw_sid->empty()) {  // a handshake (a sid decodes to "" only when written so)
        RouteDecision d = place(u, picker, exclude);
        d.learn_sid = d.backend != nullptr;
        if (d.backend && sc.fallback_cookie)
            d.set_cookie = r.set_cookie[r.by_name.at(d.backend->name())];
        return d;
    }
    // The connection's last sid again: its entry without the key (SidMemo).
    // Here, in a function of its own with the decision of a hit, the path of
    // a polling client's every request; the rest is route_sid_key.
    SidMemo* const memo = in.fetched || r.generation == 0 || raw_sid->size() > SidMemo::kMaxSid
                              ? nullptr
                              : in.memo;
    if (memo && memo->holds(r.generation, *raw_sid)) {
        const auto now = core::coarse_now();  // one clock read per completion (coarse_clock.hpp)
        const auto ttl = u.config->affinity_ttl;
        const auto found =
            table_.refind(memo->entry, now, ttl, sync_every(ttl, in), {&r.by_name, r.generation});
        if (found.bound && found.index != LocalTable::kNoIndex &&
            keeps_bound(*u.backends[found.index], exclude)) {
            ++current_->local_hits;
            if (found.sync_due) set_key(r.sid_prefix, balance::decode_param(*raw_sid, sid_scratch_));
            return bound_to(u.backends[found.index], found.sync_due, key_, ttl);
        }  // else the lookup by key decides, as without the memo
    }
    return route_sid_key(u, r, picker, in, exclude, *raw_sid, memo);
}

RouteDecision Router::route_sid_key(const upstream::Upstream& u, const UpstreamRouting& r,
                                    balance::Picker& picker, const RouteInput& in, Exclude exclude,
                                    std::string_view raw_sid, SidMemo* memo) {
    const auto& sc = u.config->sid;
    const auto now = core::coarse_now();
    const auto ttl = u.config->affinity_ttl;
    set_key(r.sid_prefix, balance::decode_param(raw_sid, sid_scratch_));
    LocalTable::Handle where;
    if (const auto found = find_bound(r, now, ttl, in, memo ? &where : nullptr); found.bound) {
        const bool known = found.index != LocalTable::kNoIndex;
        if (known && keeps_bound(*u.backends[found.index], exclude)) {
            ++(in.fetched ? current_->redis_hits : current_->local_hits);
            if (memo) {
                memo->generation = r.generation;
                memo->entry = where;
                memo->sid_size = static_cast<std::uint8_t>(raw_sid.size());
                std::memcpy(memo->sid.data(), raw_sid.data(), raw_sid.size());
            }
            return bound_to(u.backends[found.index], found.sync_due, key_, ttl);
        }
        // Bound to a dead or removed server: the session is gone with it.
        table_.erase(key_);
        ++current_->rebinds;
        ++current_->unknown_sids;
        RouteDecision d;
        d.unknown_sid = true;
        if (shared_ && known)  // see route_ip_hash on unknown servers
            d.write = {SharedWrite::Op::remove, key_, {}, u.backends[found.index]->name(), ttl};
        return d;
    }
    if (shared_ && in.may_fetch && !in.fetched) return fetch_first();
    ++current_->misses;
    if (sc.fallback_cookie) {
        const std::string_view token = balance::find_cookie(in.cookie_header, u.config->cookie.name);
        if (const auto bi = token.empty() ? std::nullopt : cookie_backend(r, token)) {
            const auto& b = u.backends[*bi];
            if (keeps_bound(*b, exclude)) {
                table_.put(key_, b->name(), now, ttl);
                RouteDecision d = to_backend(b);
                if (shared_) d.write = {SharedWrite::Op::claim, key_, b->name(), {}, ttl};
                return d;
            }
        } else if (!token.empty()) {
            ++current_->bad_cookies;
        }
    }
    return place(u, picker, exclude);
}

SharedWrite Router::bind_sid(const upstream::Upstream& u, std::string_view sid,
                             std::string_view server) {
    key_.assign(u.config->name).append(":sid:").append(sid);
    table_.put(key_, server, core::coarse_now(), u.config->affinity_ttl);
    ++counters(u.config->name).sids_learnt;
    if (!shared_) return {};
    return {SharedWrite::Op::claim, key_, std::string(server), {}, u.config->affinity_ttl};
}

}  // namespace tether::affinity
