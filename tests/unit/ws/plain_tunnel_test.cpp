// The reactor-driven plain tunnel over real TCP sockets on 127.0.0.1: the
// worker's loop runs on a thread of its own, the test plays client and server
// with blocking sockets (every read bounded by SO_RCVTIMEO, so a failure
// cannot hang the test).
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "tether/ws/frame_tracker.hpp"
#include "tether/ws/plain_tunnel.hpp"
#include "tether/core/send_ring.hpp"

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace tether;
using Bytes = std::string;

Bytes frame(unsigned opcode, std::size_t len, bool masked, char fill = 'x') {
    Bytes f(1, static_cast<char>(0x80 | opcode));
    const unsigned char m = masked ? 0x80 : 0;
    if (len < 126) {
        f.push_back(static_cast<char>(m | len));
    } else if (len < 65536) {
        f.push_back(static_cast<char>(m | 126));
        f.push_back(static_cast<char>(len >> 8));
        f.push_back(static_cast<char>(len));
    } else {
        f.push_back(static_cast<char>(m | 127));
        for (int i = 7; i >= 0; --i) f.push_back(static_cast<char>(len >> (8 * i)));
    }
    if (masked) f.append("\x01\x02\x03\x04", 4);
    f.append(len, fill);
    return f;
}

// A connected pair of sockets: `app` (blocking, the test's end) and `fd` (the tunnel's).
struct Pair {
    tcp::socket app;
    int fd = -1;
};

Pair connect_pair(asio::io_context& io) {
    tcp::acceptor acc(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    tcp::socket app(io);
    app.connect(acc.local_endpoint());
    tcp::socket peer = acc.accept();
    timeval tv{10, 0};  // no read waits longer
    ::setsockopt(app.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return Pair{std::move(app), peer.release()};
}

void send_all(tcp::socket& s, const Bytes& b) { asio::write(s, asio::buffer(b)); }

Bytes read_exact(tcp::socket& s, std::size_t n) {
    Bytes b(n, '\0');
    boost::system::error_code ec;
    const std::size_t got = asio::read(s, asio::buffer(b), ec);
    b.resize(got);
    return b;
}

// True when the peer closed (EOF or reset) within the receive timeout, with nothing before it.
bool sees_end(tcp::socket& s) {
    char c;
    boost::system::error_code ec;
    const std::size_t n = s.read_some(asio::buffer(&c, 1), ec);
    return n == 0 && (ec == asio::error::eof || ec == asio::error::connection_reset);
}

struct Result {
    std::promise<ws::TunnelStats> done;
};

class Owner final : public ws::TunnelOwner {
public:
    explicit Owner(Result& r) : r_(r) {}
    void finished(const ws::TunnelStats& st) override { r_.done.set_value(st); }

private:
    Result& r_;
};

class Inspector final : public StreamInspector {
public:
    Awaitable<bool> inspect(std::string_view bytes) override {
        seen.assign(bytes);
        co_return true;
    }
    std::string seen;  // written on the loop thread, read after the tunnel ended
};

class PlainTunnelTest : public ::testing::Test {
protected:
    PlainTunnelTest()
        : work_(asio::make_work_guard(io_)), buffers_(16 * 1024, 8),
          client_(connect_pair(io_)), server_(connect_pair(io_)) {}

    ~PlainTunnelTest() override {
        run([this] { reactor_.reset(); });
        work_.reset();
        loop_.join();
    }

    template <class F>
    void run(F f) {  // on the loop thread, waited for
        std::promise<void> p;
        asio::post(io_, [&] {
            f();
            p.set_value();
        });
        p.get_future().get();
    }

    // `rounds` frames each way, one at a time: each arrives whole at the far end.
    void echo_rounds(int rounds, std::size_t up_size, std::size_t down_size) {
        for (int i = 0; i < rounds; ++i) {
            const Bytes up = frame(2, up_size, true, static_cast<char>('a' + i));
            send_all(client_.app, up);
            EXPECT_EQ(read_exact(server_.app, up.size()), up);
            const Bytes down = frame(2, down_size, false, static_cast<char>('A' + i));
            send_all(server_.app, down);
            EXPECT_EQ(read_exact(client_.app, down.size()), down);
        }
    }

    void start(ws::TunnelContext ctx, Bytes to_server = {}, Bytes to_client = {},
               StreamInspector* inspector = nullptr) {
        run([&] {
            reactor_.emplace(io_.get_executor(), batch_sends_);
            ws::PlainTunnelSetup s;
            s.client_fd = client_.fd;
            s.server_fd = server_.fd;
            s.to_server = std::move(to_server);
            s.to_client = std::move(to_client);
            s.first_frame_inspector = inspector;
            ws::start_plain_tunnel(*reactor_, std::move(s), ctx, std::make_unique<Owner>(result_));
        });
    }

    ws::TunnelContext ctx(std::chrono::milliseconds idle = std::chrono::milliseconds(0)) {
        return ws::TunnelContext{buffers_, registry_, idle, std::chrono::milliseconds(5000)};
    }

    void tick(Clock::time_point now) {
        run([&] { registry_.for_each([&](TrackedConnection& c) { c.tick(now); }); });
    }

    ws::TunnelStats finished() {
        auto f = result_.done.get_future();
        EXPECT_EQ(f.wait_for(std::chrono::seconds(10)), std::future_status::ready);
        return f.get();
    }

    std::size_t live() {
        std::size_t n = 0;
        run([&] { n = registry_.size(); });
        return n;
    }

    bool batch_sends_ = true;
    asio::io_context io_;
    asio::executor_work_guard<asio::io_context::executor_type> work_;
    BufferPool buffers_;
    ConnectionRegistry registry_;
    std::optional<ws::TunnelReactor> reactor_;
    Result result_;
    Pair client_;
    Pair server_;
    std::thread loop_{[this] { io_.run(); }};
};

TEST_F(PlainTunnelTest, RelaysBothWaysCountsFramesAndHalfCloses) {
    const Bytes early = frame(1, 5, true);  // read by the HTTP layer with the upgrade request
    start(ctx(), early);
    EXPECT_EQ(read_exact(server_.app, early.size()), early);
    const Bytes up = frame(2, 300, true) + frame(9, 0, true);
    send_all(client_.app, up);
    EXPECT_EQ(read_exact(server_.app, up.size()), up);
    const Bytes down = frame(1, 70000, false, 'd');
    send_all(server_.app, down);
    EXPECT_EQ(read_exact(client_.app, down.size()), down);

    client_.app.shutdown(tcp::socket::shutdown_send);  // the client's FIN reaches the server
    EXPECT_TRUE(sees_end(server_.app));
    const Bytes last = frame(1, 3, false);  // the other way still works
    send_all(server_.app, last);
    EXPECT_EQ(read_exact(client_.app, last.size()), last);
    server_.app.shutdown(tcp::socket::shutdown_send);
    EXPECT_TRUE(sees_end(client_.app));

    const ws::TunnelStats st = finished();
    EXPECT_EQ(st.frames_to_server, 3u);
    EXPECT_EQ(st.frames_to_client, 2u);
    EXPECT_EQ(st.bytes_to_server, early.size() + up.size());
    EXPECT_EQ(st.bytes_to_client, down.size() + last.size());
    EXPECT_FALSE(st.closed_by_tether);
}

// 8 MiB one way while the reader waits: the tunnel stops reading when the
// destination is full (backpressure) and delivers every byte in order.
TEST_F(PlainTunnelTest, BackpressureLosesNothing) {
    start(ctx());
    Bytes big;
    for (int i = 0; i < 8; ++i) big += frame(2, (1 << 20) - 14, true, static_cast<char>('a' + i));
    std::thread writer([&] { send_all(client_.app, big); });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let buffers fill
    EXPECT_EQ(read_exact(server_.app, big.size()), big);
    writer.join();
    client_.app.close();
    server_.app.close();
    EXPECT_EQ(finished().frames_to_server, 8u);
}

// Reads the destination takes whole go through the pool's scratch buffer: the
// tunnel borrows no buffer (with one borrowed per read, the first would be back
// in the pool's free list afterwards).
TEST_F(PlainTunnelTest, WholeSendsBorrowNoBuffer) {
    start(ctx());
    echo_rounds(20, 256, 256);
    std::size_t free_buffers = 99;
    run([&] { free_buffers = buffers_.free_count(); });
    EXPECT_EQ(free_buffers, 0u);
    client_.app.close();
    server_.app.close();
    EXPECT_EQ(finished().frames_to_server, 20u);
}

// A stop: each side gets a 1001 close frame once the frame in flight is whole.
TEST_F(PlainTunnelTest, StopSendsCloseFramesAtAFrameBoundary) {
    start(ctx());
    const Bytes f = frame(2, 1000, true);
    send_all(client_.app, f.substr(0, 100));  // a frame half-way through
    EXPECT_EQ(read_exact(server_.app, 100), f.substr(0, 100));
    run([&] { registry_.for_each([](TrackedConnection& c) { c.begin_stop(Clock::now()); }); });
    tick(Clock::now() + std::chrono::milliseconds(1));
    const Bytes to_client(reinterpret_cast<const char*>(ws::kCloseGoingAwayToClient),
                          sizeof ws::kCloseGoingAwayToClient);
    EXPECT_EQ(read_exact(client_.app, to_client.size()), to_client);  // nothing in flight there
    send_all(client_.app, f.substr(100));  // the frame ends, then the close goes out
    const Bytes to_server(reinterpret_cast<const char*>(ws::kCloseGoingAwayToServer),
                          sizeof ws::kCloseGoingAwayToServer);
    EXPECT_EQ(read_exact(server_.app, f.size() - 100 + to_server.size()),
              f.substr(100) + to_server);
    send_all(client_.app, frame(8, 2, true));  // the client's reply ends its side
    send_all(server_.app, frame(8, 2, false));  // dropped: the client had tether's close
    server_.app.shutdown(tcp::socket::shutdown_send);
    EXPECT_TRUE(sees_end(client_.app));
    EXPECT_TRUE(finished().closed_by_tether);
}

TEST_F(PlainTunnelTest, IdleLimitClosesBothSockets) {
    start(ctx(std::chrono::milliseconds(50)));
    tick(Clock::now());  // not idle yet
    EXPECT_EQ(live(), 1u);
    tick(Clock::now() + std::chrono::seconds(1));
    EXPECT_TRUE(sees_end(client_.app));
    EXPECT_TRUE(sees_end(server_.app));
    finished();
    for (int i = 0; i < 100 && live() != 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_EQ(live(), 0u);  // destroyed, out of the registry
}

TEST_F(PlainTunnelTest, InspectorSeesTheServersFirstFrameBeforeItGoesOn) {
    Inspector inspector;
    const Bytes open = frame(1, 0, false);
    const Bytes payload = R"(0{"sid":"abc","upgrades":[]})";
    Bytes first = "\x81";
    first.push_back(static_cast<char>(payload.size()));
    first += payload;
    start(ctx(), {}, first.substr(0, 3), &inspector);  // part of it came with the 101
    send_all(server_.app, first.substr(3) + open);
    EXPECT_EQ(read_exact(client_.app, first.size() + open.size()), first + open);
    client_.app.close();
    server_.app.close();
    finished();
    EXPECT_EQ(inspector.seen, payload);
}

// The sends of one batch of events go out in one io_uring submission: eight
// tunnels whose clients each sent a frame while the worker was busy are
// relayed by 8 sends queued in the batch and one io_uring_enter (one send()
// per step would be 8 system calls).
TEST_F(PlainTunnelTest, SendsOfOneBatchGoOutInOneSubmission) {
    if (!core::SendRing::open(8)) GTEST_SKIP() << "io_uring not available here";
    constexpr int kTunnels = 8;
    start(ctx());
    std::vector<Pair> clients;
    std::vector<Pair> servers;
    std::vector<Result> results(kTunnels - 1);
    for (int i = 1; i < kTunnels; ++i) {
        clients.push_back(connect_pair(io_));
        servers.push_back(connect_pair(io_));
    }
    run([&] {
        for (int i = 0; i < kTunnels - 1; ++i) {
            ws::PlainTunnelSetup s;
            s.client_fd = clients[i].fd;
            s.server_fd = servers[i].fd;
            ws::start_plain_tunnel(*reactor_, std::move(s), ctx(), std::make_unique<Owner>(results[i]));
        }
    });
    clients.insert(clients.begin(), std::move(client_));
    servers.insert(servers.begin(), std::move(server_));
    // Warm up every tunnel once (each has its first events, the ring is made).
    for (int i = 0; i < kTunnels; ++i) {
        const Bytes f = frame(2, 16, true, static_cast<char>('a' + i));
        send_all(clients[i].app, f);
        EXPECT_EQ(read_exact(servers[i].app, f.size()), f);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // late events handled
    std::uint64_t batched = 0, submissions = 0;
    run([&] {
        batched = reactor_->sends_batched();
        submissions = reactor_->send_submissions();
    });
    EXPECT_EQ(batched, static_cast<std::uint64_t>(kTunnels));

    std::promise<void> release;
    asio::post(io_, [f = release.get_future().share()] { f.wait(); });  // the worker is busy
    std::vector<Bytes> sent;
    for (int i = 0; i < kTunnels; ++i) {
        sent.push_back(frame(2, 256, true, static_cast<char>('A' + i)));
        send_all(clients[i].app, sent.back());
    }
    release.set_value();
    for (int i = 0; i < kTunnels; ++i) EXPECT_EQ(read_exact(servers[i].app, sent[i].size()), sent[i]);
    run([&] {
        batched = reactor_->sends_batched() - batched;
        submissions = reactor_->send_submissions() - submissions;
    });
    EXPECT_EQ(batched, static_cast<std::uint64_t>(kTunnels));
    EXPECT_EQ(submissions, 1u);
    for (Pair& p : clients) p.app.close();
    for (Pair& p : servers) p.app.close();
    EXPECT_EQ(finished().frames_to_server, 2u);
    for (Result& r : results) {
        auto f = r.done.get_future();
        ASSERT_EQ(f.wait_for(std::chrono::seconds(10)), std::future_status::ready);
        EXPECT_EQ(f.get().frames_to_server, 2u);
    }
}

// Without batched sends (no io_uring, or turned off) every step sends at once:
// the same relay, no submission.
TEST_F(PlainTunnelTest, WithoutBatchedSendsEachStepSendsAtOnce) {
    batch_sends_ = false;
    start(ctx());
    echo_rounds(5, 256, 70000);
    std::uint64_t batched = 1, submissions = 1;
    run([&] {
        batched = reactor_->sends_batched();
        submissions = reactor_->send_submissions();
    });
    EXPECT_EQ(batched, 0u);
    EXPECT_EQ(submissions, 0u);
    client_.app.close();
    server_.app.close();
    const ws::TunnelStats st = finished();
    EXPECT_EQ(st.frames_to_server, 5u);
    EXPECT_EQ(st.frames_to_client, 5u);
}

}  // namespace
