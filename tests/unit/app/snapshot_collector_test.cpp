// SnapshotCollector with real workers (their own threads, acceptors and
// counters): a worker whose event loop does not answer within the deadline is
// shown with its last copy, so a counter summed over the workers never goes
// down between two scrapes, and /metrics and /status say which one is stale.
#include <gtest/gtest.h>

#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "tether/app/admin_views.hpp"
#include "tether/affinity/router.hpp"
#include "tether/app/snapshot_collector.hpp"
#include "tether/config/loader.hpp"
#include "tether/http/access_log.hpp"
#include "tether/limits/rate_limiter.hpp"

namespace {

using namespace tether;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using app::CollectedSnapshots;
using app::SnapshotCollector;

constexpr std::chrono::milliseconds kDeadline{200};

// Two workers on 127.0.0.1 (port 0 each), one upstream, access log off.
class TwoWorkers : public ::testing::Test {
protected:
    void SetUp() override {
        auto loaded = config::load_config_text(R"(
workers: 2
access_log: {path: "off"}
listen:
  - address: 127.0.0.1:18080
    upstream: app
upstreams:
  app:
    servers:
      - address: 127.0.0.1:3001
)",
                                               "test.yaml", ".");
        ASSERT_TRUE(loaded.config) << (loaded.errors.empty() ? "" : loaded.errors[0].text());
        auto cfg = std::make_shared<const config::Config>(std::move(*loaded.config));
        runtime_ = upstream::build_runtime(cfg, nullptr, 1);
        routing_ = affinity::build_routing(*runtime_, "secret");
        log_ = std::make_unique<http::AccessLogWriter>(cfg->access_log);
        counters_.rate = &rate_;
        counters_.max_connections = cfg->limits.max_connections;
        const std::vector<tcp::endpoint> eps{{asio::ip::make_address("127.0.0.1"), 0}};
        for (std::size_t i = 0; i < 2; ++i)
            workers_.push_back(std::make_unique<net::Worker>(i, runtime_, routing_, eps,
                                                             log_.get(), table_, counters_));
    }

    void TearDown() override { workers_.clear(); }

    static std::uint64_t accepted(const CollectedSnapshots& c) {
        std::uint64_t n = 0;
        for (const auto& s : c.workers)
            for (auto v : s->stats.connections_total) n += v;
        return n;
    }

    // One client connection to each started worker; waits (bounded) until a
    // collect sees both accepted.
    void connect_to_each(SnapshotCollector& collector) {
        for (auto& w : workers_) {
            clients_.emplace_back(io_);
            clients_.back().connect({asio::ip::make_address("127.0.0.1"), w->ports().at(0)});
        }
        for (int i = 0; i < 100 && accepted(collector.collect(workers_)) < 2; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }

    std::string metrics(const CollectedSnapshots& c) {
        return app::render_metrics(
            app::AdminView{*runtime_, c.workers, c.states, table_, false, nullptr});
    }
    std::string status(const CollectedSnapshots& c) {
        return app::render_status(
            app::AdminView{*runtime_, c.workers, c.states, table_, false, nullptr});
    }

    std::shared_ptr<const upstream::Runtime> runtime_;
    std::shared_ptr<const affinity::RoutingTables> routing_;
    std::unique_ptr<http::AccessLogWriter> log_;
    affinity::LocalTable table_{1000};
    limits::RateLimiter rate_{1000, nullptr, ""};
    net::ProcessCounters counters_;
    std::vector<std::unique_ptr<net::Worker>> workers_;
    asio::io_context io_;
    std::vector<tcp::socket> clients_;
};

TEST_F(TwoWorkers, AStuckWorkerKeepsItsLastCountsAndIsMarkedStale) {
    SnapshotCollector collector(kDeadline);
    for (auto& w : workers_) w->start();
    connect_to_each(collector);
    const auto before = collector.collect(workers_);
    ASSERT_EQ(accepted(before), 2u);
    ASSERT_EQ(before.workers.size(), 2u);
    EXPECT_FALSE(before.states[1].stale);
    EXPECT_NE(metrics(before).find("tether_connections_total{listener=\"127.0.0.1:18080\"} 2\n"),
              std::string::npos);

    workers_[1]->halt();  // its event loop no longer runs anything posted to it
    for (std::uint64_t scrape = 1; scrape <= 2; ++scrape) {
        const auto after = collector.collect(workers_);
        EXPECT_EQ(accepted(after), 2u) << "a counter went down between two scrapes";
        ASSERT_EQ(after.workers.size(), 2u);
        EXPECT_EQ(after.workers[1]->worker, 1u);
        EXPECT_FALSE(after.states[0].stale);
        EXPECT_EQ(after.states[0].misses, 0u);
        EXPECT_TRUE(after.states[1].stale);
        EXPECT_EQ(after.states[1].misses, scrape);
        const auto text = metrics(after);
        EXPECT_NE(text.find("tether_connections_total{listener=\"127.0.0.1:18080\"} 2\n"),
                  std::string::npos) << text;
        EXPECT_NE(text.find("tether_worker_snapshot_stale{worker=\"0\"} 0\n"), std::string::npos);
        EXPECT_NE(text.find("tether_worker_snapshot_stale{worker=\"1\"} 1\n"), std::string::npos);
        EXPECT_NE(text.find("tether_worker_snapshot_misses_total{worker=\"1\"} " +
                            std::to_string(scrape) + "\n"),
                  std::string::npos) << text;
        EXPECT_NE(status(after).find(R"("workers":2,"stale_workers":[1])"), std::string::npos)
            << status(after);
    }
}

TEST_F(TwoWorkers, AWorkerThatNeverAnsweredIsCountedByItsIndex) {
    SnapshotCollector collector(kDeadline);
    workers_[1]->start();  // worker 0's loop never runs
    const auto c = collector.collect(workers_);
    ASSERT_EQ(c.workers.size(), 1u);
    EXPECT_EQ(c.workers[0]->worker, 1u);
    ASSERT_EQ(c.states.size(), 2u);
    EXPECT_TRUE(c.states[0].stale);
    EXPECT_FALSE(c.states[1].stale);
    const auto text = metrics(c);
    EXPECT_NE(text.find("tether_event_loop_lag_seconds{worker=\"1\"}"), std::string::npos);
    EXPECT_EQ(text.find("tether_event_loop_lag_seconds{worker=\"0\"}"), std::string::npos);
    EXPECT_NE(text.find("tether_worker_snapshot_stale{worker=\"0\"} 1\n"), std::string::npos);
    EXPECT_NE(status(c).find(R"("workers":2,"stale_workers":[0])"), std::string::npos);
}

}  // namespace
