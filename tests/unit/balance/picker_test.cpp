// Placement without affinity: distribution, weights, eligibility, backups.
#include <gtest/gtest.h>

#include <map>

#include "tether/balance/picker.hpp"

namespace {

using namespace tether;
using balance::Picker;
using upstream::Backend;

std::vector<std::shared_ptr<Backend>> make_backends(std::vector<int> weights,
                                                    std::vector<bool> backup = {}) {
    std::vector<std::shared_ptr<Backend>> out;
    for (std::size_t i = 0; i < weights.size(); ++i) {
        config::Server s;
        s.name = "s" + std::to_string(i + 1);
        s.weight = weights[i];
        s.backup = i < backup.size() && backup[i];
        out.push_back(std::make_shared<Backend>(s, std::vector<boost::asio::ip::tcp::endpoint>{}));
    }
    return out;
}

std::map<std::string, int> spread(Picker& p, const balance::BackendList& b, int n,
                                  bool hold = false) {
    std::map<std::string, int> count;
    for (int i = 0; i < n; ++i) {
        auto* pick = p.pick(b);
        EXPECT_NE(pick, nullptr);
        if (!pick) break;
        ++count[(*pick)->name()];
        if (hold) (*pick)->add_active(1);
    }
    return count;
}

TEST(Picker, RoundRobinIsSmoothAndWeighted) {
    auto b = make_backends({5, 1, 1});
    Picker p(config::Balance::round_robin, 1);
    std::string seq;
    for (int i = 0; i < 7; ++i) seq += (*p.pick(b))->name().substr(1);
    EXPECT_EQ(seq, "1121311");  // nginx's smooth WRR: a a b a c a a
    auto c = spread(p, b, 7000);
    EXPECT_EQ(c["s1"], 5000);
    EXPECT_EQ(c["s2"], 1000);
}

TEST(Picker, LeastConnSpreadsEqualServersEvenly) {
    auto b = make_backends({1, 1, 1});
    Picker p(config::Balance::least_conn, 1);
    auto c = spread(p, b, 3000);  // nothing held: ties rotate
    EXPECT_EQ(c["s1"], 1000);
    EXPECT_EQ(c["s2"], 1000);
    EXPECT_EQ(c["s3"], 1000);
}

TEST(Picker, LeastConnFollowsActiveConnectionsPerWeight) {
    auto b = make_backends({2, 1});
    Picker p(config::Balance::least_conn, 1);
    auto c = spread(p, b, 300, /*hold=*/true);
    EXPECT_EQ(c["s1"], 200);
    EXPECT_EQ(c["s2"], 100);
    b[1]->add_active(1000);
    EXPECT_EQ((*p.pick(b))->name(), "s1");
}

TEST(Picker, RandomTwoStaysWithinOnePercentForEqualWeights) {
    auto b = make_backends({1, 1, 1, 1});
    Picker p(config::Balance::random_two, 42);
    const int n = 100000;
    auto c = spread(p, b, n, /*hold=*/true);
    for (auto& [name, k] : c) EXPECT_NEAR(k, n / 4, n / 100) << name;
}

TEST(Picker, RandomTwoIsProportionalToWeight) {
    auto b = make_backends({3, 1});
    Picker p(config::Balance::random_two, 7);
    const int n = 40000;
    auto c = spread(p, b, n);  // no load: pure weighted choice of the first draw
    EXPECT_NEAR(c["s1"], 30000, 800);
}

TEST(Picker, SkipsDownDrainingFullAndExcluded) {
    auto b = make_backends({1, 1, 1, 1});
    b[0]->set_up(false);
    b[1]->set_draining(true);
    config::Server full;
    Picker p(config::Balance::round_robin, 1);
    const Backend* exclude[] = {b[3].get()};
    for (int i = 0; i < 10; ++i) EXPECT_EQ((*p.pick(b, exclude))->name(), "s3");
    b[2]->set_up(false);
    EXPECT_EQ(p.pick(b, exclude), nullptr);
}

TEST(Picker, MaxConnsRespected) {
    config::Server s;
    s.name = "capped";
    s.max_conns = 2;
    balance::BackendList b{std::make_shared<Backend>(s, std::vector<boost::asio::ip::tcp::endpoint>{})};
    Picker p(config::Balance::least_conn, 1);
    b[0]->add_active(2);
    EXPECT_EQ(p.pick(b), nullptr);
    b[0]->add_active(-1);
    EXPECT_NE(p.pick(b), nullptr);
}

TEST(Picker, BackupOnlyWhenNoPrimaryIsUp) {
    auto b = make_backends({1, 1, 1}, {false, false, true});
    Picker p(config::Balance::round_robin, 1);
    auto c = spread(p, b, 100);
    EXPECT_EQ(c.count("s3"), 0u);
    b[0]->set_up(false);
    b[1]->set_up(false);
    EXPECT_EQ((*p.pick(b))->name(), "s3");
    b[1]->set_up(true);
    EXPECT_EQ((*p.pick(b))->name(), "s2");
}

TEST(Picker, BackupTakesNewClientsWhenEveryPrimaryIsDrainedOrFull) {
    auto b = make_backends({1, 1, 1}, {false, false, true});
    config::Server capped;
    capped.name = "full";
    capped.max_conns = 1;
    b[1] = std::make_shared<Backend>(capped, std::vector<boost::asio::ip::tcp::endpoint>{});
    Picker p(config::Balance::least_conn, 1);
    b[0]->set_draining(true);  // up but draining
    EXPECT_EQ((*p.pick(b))->name(), "full");
    b[1]->add_active(1);  // up but at max_conns: no primary can take a new client
    for (int i = 0; i < 5; ++i) EXPECT_EQ((*p.pick(b))->name(), "s3");
    b[1]->add_active(-1);  // room again: the primary, not the backup
    EXPECT_EQ((*p.pick(b))->name(), "full");
    const Backend* tried[] = {b[1].get()};  // every primary left was tried: backups
    EXPECT_EQ((*p.pick(b, tried))->name(), "s3");
}

TEST(Picker, BackupTakesOverWhenPrimariesArePassivelyOut) {
    auto b = make_backends({1, 1, 1}, {false, false, true});
    Picker p(config::Balance::least_conn, 1);
    const auto now = Clock::now();
    for (int i = 0; i < 2; ++i)
        for (int k = 0; k < b[i]->server().max_fails; ++k) b[i]->record_failure(now);
    ASSERT_FALSE(b[0]->up());
    for (int i = 0; i < 10; ++i) EXPECT_EQ((*p.pick(b))->name(), "s3");
    b[1]->state().passive.clear();  // a primary is back: backups take no new client
    for (int i = 0; i < 10; ++i) EXPECT_EQ((*p.pick(b))->name(), "s2");
}

TEST(Picker, BackupRespectsMaxConnsAndExclusions) {
    auto b = make_backends({1, 1}, {false, true});
    config::Server capped;
    capped.name = "b2";
    capped.backup = true;
    capped.max_conns = 1;
    b.push_back(std::make_shared<Backend>(capped, std::vector<boost::asio::ip::tcp::endpoint>{}));
    b[0]->set_up(false);
    Picker p(config::Balance::least_conn, 1);
    b[2]->add_active(1);  // b2 is full
    for (int i = 0; i < 5; ++i) EXPECT_EQ((*p.pick(b))->name(), "s2");
    const Backend* tried[] = {b[1].get()};
    EXPECT_EQ(p.pick(b, tried), nullptr);  // the only backup with room was tried
    b[2]->add_active(-1);
    EXPECT_EQ((*p.pick(b, tried))->name(), "b2");
}

}  // namespace
