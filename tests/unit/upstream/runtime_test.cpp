// Snapshots across reloads: what a server keeps (health, drain, connection
// count) when it is kept, re-weighted, re-addressed or removed.
#include <gtest/gtest.h>

#include "tether/upstream/backend.hpp"

namespace {

using namespace tether;

config::Server server(std::string name, std::uint16_t port, int weight = 1) {
    config::Server s;
    s.name = std::move(name);
    s.address = {"127.0.0.1", port};
    s.weight = weight;
    return s;
}

std::shared_ptr<const config::Config> make_config(std::vector<config::Server> servers,
                                                  bool checks = false) {
    auto c = std::make_shared<config::Config>();
    config::Upstream u;
    u.name = "u";
    u.servers = std::move(servers);
    if (checks) {
        u.health_check.emplace();
        u.health_check->initial_up = false;
    }
    c->upstreams.emplace("u", std::move(u));
    return c;
}

TEST(Runtime, UnchangedServerKeepsItsBackend) {
    auto a = upstream::build_runtime(make_config({server("s1", 3001)}), nullptr, 1);
    auto b = upstream::build_runtime(make_config({server("s1", 3001)}), a.get(), 2);
    EXPECT_EQ(a->upstreams[0].backends[0], b->upstreams[0].backends[0]);
}

TEST(Runtime, ReweightedServerSharesStateDrainAndConnections) {
    auto a = upstream::build_runtime(make_config({server("s1", 3001), server("s2", 3002)}), nullptr, 1);
    auto& old = *a->upstreams[0].backends[0];
    upstream::ActiveGuard held(a->upstreams[0].backends[0]);
    ASSERT_TRUE(upstream::set_drain(*a, "u", "s1", true));
    const auto now = Clock::now();
    for (int i = 0; i < old.server().max_fails; ++i) old.record_failure(now);
    ASSERT_FALSE(old.up());
    auto b = upstream::build_runtime(make_config({server("s1", 3001, 5), server("s2", 3002)}),
                                     a.get(), 2);
    const auto& next = *b->upstreams[0].backends[0];
    EXPECT_NE(&old, &next);
    EXPECT_EQ(next.server().weight, 5);
    EXPECT_TRUE(next.draining());
    EXPECT_FALSE(next.up());  // still out on passive failures
    EXPECT_EQ(next.active(), 1);  // the connection held through the old snapshot
    held.reset();
    EXPECT_EQ(next.active(), 0);
    EXPECT_FALSE(b->upstreams[0].backends[1]->draining());
}

TEST(Runtime, DrainSurvivesANewAddressButHealthDoesNot) {
    auto a = upstream::build_runtime(make_config({server("s1", 3001)}), nullptr, 1);
    a->upstreams[0].backends[0]->set_up(false);
    a->upstreams[0].backends[0]->set_draining(true);
    auto b = upstream::build_runtime(make_config({server("s1", 3009)}, true), a.get(), 2);
    const auto& next = *b->upstreams[0].backends[0];
    EXPECT_TRUE(next.draining());
    EXPECT_NE(&next.state(), &a->upstreams[0].backends[0]->state());
    EXPECT_FALSE(next.up());  // a new server under `initial: down`
}

TEST(Runtime, InitialDownOnlyForNewServers) {
    auto a = upstream::build_runtime(make_config({server("s1", 3001)}, true), nullptr, 1);
    EXPECT_FALSE(a->upstreams[0].backends[0]->up());
    a->upstreams[0].backends[0]->set_up(true);  // checks found it healthy
    auto b = upstream::build_runtime(make_config({server("s1", 3001), server("s2", 3002)}, true),
                                     a.get(), 2);
    EXPECT_TRUE(b->upstreams[0].backends[0]->up());
    EXPECT_FALSE(b->upstreams[0].backends[1]->up());
}

TEST(Runtime, RemovingHealthChecksMakesServersUp) {
    auto a = upstream::build_runtime(make_config({server("s1", 3001)}, true), nullptr, 1);
    ASSERT_FALSE(a->upstreams[0].backends[0]->up());
    auto b = upstream::build_runtime(make_config({server("s1", 3001)}, false), a.get(), 2);
    EXPECT_TRUE(b->upstreams[0].backends[0]->up());
}

TEST(Runtime, SetDrainUnknownServerOrUpstream) {
    auto a = upstream::build_runtime(make_config({server("s1", 3001)}), nullptr, 1);
    EXPECT_FALSE(upstream::set_drain(*a, "u", "nope", true));
    EXPECT_FALSE(upstream::set_drain(*a, "nope", "s1", true));
    EXPECT_TRUE(upstream::set_drain(*a, "u", "s1", true));
    EXPECT_TRUE(a->upstreams[0].backends[0]->draining());
    EXPECT_TRUE(upstream::set_drain(*a, "u", "s1", false));
    EXPECT_FALSE(a->upstreams[0].backends[0]->draining());
}

}  // namespace
