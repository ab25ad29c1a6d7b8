// WorkerStats::server through a caller's memo of its last answer (a
// connection's), and the Engine.IO gauge on the counters it returns.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "tether/http/engineio_gauge.hpp"
#include "tether/http/proxy_context.hpp"

namespace tether::http {
namespace {

std::shared_ptr<upstream::Backend> make_backend(const char* name) {
    config::Server s;
    s.name = name;
    s.address = {"127.0.0.1", 1};
    return std::make_shared<upstream::Backend>(s, std::vector<boost::asio::ip::tcp::endpoint>{});
}

TEST(ServerCountersMemo, AnswersAsTheLookupForEachServerInTurn) {
    WorkerStats stats;
    const auto a = make_backend("a");
    const auto b = make_backend("b");
    ServerCounters* last = nullptr;
    ServerCounters& first = stats.server(a, "up", last);
    EXPECT_EQ(&first, &stats.server(a, "up"));
    EXPECT_EQ(last, &first);
    EXPECT_EQ(&stats.server(a, "up", last), &first);  // the memo's
    // Another server: its own counters, not the memo's (the memo's server is checked).
    ServerCounters& second = stats.server(b, "up", last);
    EXPECT_NE(&second, &first);
    EXPECT_EQ(second.backend, b);
    EXPECT_EQ(&second, &stats.server(b, "up"));
    EXPECT_EQ(&stats.server(a, "up", last), &first);  // and back
    EXPECT_EQ(stats.servers.size(), 2u);
}

TEST(ServerCountersMemo, TheGaugeCountsOnTheCountersItIsGiven) {
    WorkerStats stats;
    const auto a = make_backend("a");
    ServerCounters* last = nullptr;
    {
        EioSessionGauge polling(&stats.server(a, "up", last), EioTransport::polling);
        EioSessionGauge websocket(stats, a, "up", EioTransport::websocket);
        EioSessionGauge none(&stats.server(a, "up", last), EioTransport::none);
        EioSessionGauge no_server(nullptr, EioTransport::polling);
        EXPECT_EQ(stats.server(a, "up").eio_polling, 1);
        EXPECT_EQ(stats.server(a, "up").eio_websocket, 1);
    }
    EXPECT_EQ(stats.server(a, "up").eio_polling, 0);
    EXPECT_EQ(stats.server(a, "up").eio_websocket, 0);
}

}  // namespace
}  // namespace tether::http
