// A Router over a Runtime built by hand: one upstream "chat" of three servers
// s1..s3 (round_robin), its routing tables and a local table, for the router
// tests that look at one decision at a time.
#pragma once

#include <algorithm>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "tether/affinity/router.hpp"

namespace tether::affinity_test {

using affinity::LocalTable;
using affinity::RouteDecision;
using affinity::RouteInput;
using affinity::Router;
using upstream::Backend;

/// The backends of `u`'s servers; one named in `reuse` is shared (as a reload does).
inline std::vector<std::shared_ptr<Backend>> backends_of(
    const config::Upstream& u, const std::vector<std::shared_ptr<Backend>>& reuse) {
    std::vector<std::shared_ptr<Backend>> out;
    for (const auto& s : u.servers) {
        std::shared_ptr<Backend> b;
        for (const auto& old : reuse)
            if (old->name() == s.name) b = old;
        if (!b) b = std::make_shared<Backend>(s, std::vector<boost::asio::ip::tcp::endpoint>{});
        out.push_back(std::move(b));
    }
    return out;
}

/// `shared`: a Redis table stands behind the local one (decisions carry writes).
/// `other_table`: the table to route with (as another worker's router, or
/// another upstream's, of the same process), else the fixture's own.
struct Fixture {
    explicit Fixture(config::Affinity mode, bool shared = true, LocalTable* other_table = nullptr,
                     std::string name = "chat")
        : table(other_table ? *other_table : own_table), router(table, shared) {
        auto c = std::make_shared<config::Config>();
        config::Upstream u;
        u.name = name;
        u.affinity = mode;
        u.balance = config::Balance::round_robin;
        u.cookie.secret = "secret";
        for (int i = 1; i <= 3; ++i) {
            config::Server s;
            s.name = "s" + std::to_string(i);
            s.address = {"10.0.0." + std::to_string(i), 3000};
            u.servers.push_back(s);
        }
        build(u, {});
    }
    /// A reload: the same upstream with its servers in reverse order (the same
    /// Backends, other indexes) and new routing tables.
    void reload_reversed() {
        auto u = cfg->upstreams.begin()->second;
        std::reverse(u.servers.begin(), u.servers.end());
        build(u, rt.upstreams[0].backends);
    }
    RouteDecision route(std::string_view target, std::string_view ip = "192.0.2.7",
                        bool fetched = false) {
        RouteInput in{target, {}, ip, fetched};
        return router.route(rt, 0, *tables, picker, in, {});
    }
    /// A request of a connection whose memo is `memo` (affinity sid).
    RouteDecision route(std::string_view target, affinity::SidMemo& memo,
                        std::span<const Backend* const> exclude = {}) {
        RouteInput in{target, {}, "192.0.2.7"};
        in.memo = &memo;
        return router.route(rt, 0, *tables, picker, in, exclude);
    }
    Backend& backend(std::string_view name) {
        for (auto& b : rt.upstreams[0].backends)
            if (b->name() == name) return *b;
        throw std::runtime_error("none");
    }

    std::shared_ptr<const config::Config> cfg;
    upstream::Runtime rt;
    std::shared_ptr<const affinity::RoutingTables> tables;
    LocalTable own_table{1000};
    LocalTable& table;
    Router router;
    balance::Picker picker{config::Balance::round_robin, 1};

private:
    void build(const config::Upstream& u, const std::vector<std::shared_ptr<Backend>>& reuse) {
        auto c = std::make_shared<config::Config>();
        c->upstreams.emplace(u.name, u);
        upstream::Upstream up;
        up.config = &c->upstreams.at(u.name);
        up.backends = backends_of(*up.config, reuse);
        cfg = c;
        rt = upstream::Runtime{};
        rt.config = c;
        rt.upstreams.push_back(std::move(up));
        rt.listener_upstream = {0};
        tables = affinity::build_routing(rt, "p");
    }
};

}  // namespace tether::affinity_test
