// tether-ws-bench echo: the closed-loop WebSocket echo load of the benchmarks, kept as lean per
// message as it can be so that the load client does not dominate the machine's CPU: plain
// sockets, one level-triggered epoll, per readiness event one read() (never a read that ends in
// EAGAIN: what is left is reported again) and per echoed message one write() of a frame masked
// once at start. Each connection keeps exactly one message in flight.
//
// Connections are opened one by one with blocking sockets (deadline --timeout-ms for each
// step): connect, the upgrade request (fixed Sec-WebSocket-Key; the 101 must carry the
// matching Sec-WebSocket-Accept), then non-blocking for the timed part. The clock starts once
// every connection is open and stops --seconds later; a message whose echo is still out then
// is awaited (and not counted), at most 10 s (then "timed_out"). Each connection ends with a
// close handshake (close 1000 out, a close frame back). Every echo is compared byte for byte.
//
// Threading: single-threaded, nothing shared.
#include "ws_bench_echo.h"

#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace tether::bench {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kGrace = std::chrono::seconds(10);
// RFC 6455 section 1.3's sample key and its accept value.
constexpr std::string_view kKey = "dGhlIHNhbXBsZSBub25jZQ==";
constexpr std::string_view kAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

struct Conn {
    int fd = -1;
    bool in_flight = false;
    std::size_t have = 0;
    Clock::time_point sent;
    std::vector<unsigned char> buf;
};

std::string frame_head(unsigned char b0, std::size_t n, bool masked) {
    std::string h(1, static_cast<char>(b0));
    const unsigned char m = masked ? 0x80 : 0;
    if (n < 126) {
        h.push_back(static_cast<char>(m | n));
    } else if (n < 65536) {
        h.push_back(static_cast<char>(m | 126));
        h.push_back(static_cast<char>(n >> 8));
        h.push_back(static_cast<char>(n & 0xff));
    } else {
        h.push_back(static_cast<char>(m | 127));
        for (int s = 56; s >= 0; s -= 8) h.push_back(static_cast<char>((std::uint64_t(n) >> s) & 0xff));
    }
    return h;
}

std::string masked_frame(unsigned char b0, std::string_view payload) {
    static constexpr unsigned char key[4] = {0x37, 0xfa, 0x21, 0x3d};
    std::string f = frame_head(b0, payload.size(), true);
    f.append(reinterpret_cast<const char*>(key), 4);
    for (std::size_t i = 0; i < payload.size(); ++i)
        f.push_back(static_cast<char>(payload[i] ^ key[i % 4]));
    return f;
}

bool write_all(int fd, std::string_view data, int timeout_ms) {
    while (!data.empty()) {
        const ssize_t w = ::write(fd, data.data(), data.size());
        if (w > 0) {
            data.remove_prefix(static_cast<std::size_t>(w));
        } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            pollfd p{fd, POLLOUT, 0};
            if (::poll(&p, 1, timeout_ms) <= 0) return false;
        } else {
            return false;
        }
    }
    return true;
}

void set_timeouts(int fd, std::chrono::milliseconds t) {
    timeval tv{static_cast<time_t>(t.count() / 1000), static_cast<suseconds_t>(t.count() % 1000 * 1000)};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

// Connect and upgrade, blocking; returns the fd or -1 with `stage` set.
int open_ws(const EchoOptions& o, std::string& stage) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return stage = "socket", -1;
    set_timeouts(fd, o.timeout);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&o.endpoint), sizeof o.endpoint) != 0)
        return ::close(fd), stage = "connect", -1;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const std::string req = "GET " + o.path + " HTTP/1.1\r\nHost: " + o.host_header +
                            "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " +
                            std::string(kKey) + "\r\nSec-WebSocket-Version: 13\r\n\r\n";
    if (!write_all(fd, req, int(o.timeout.count()))) return ::close(fd), stage = "handshake write", -1;
    std::string head;
    char c;
    while (head.size() < 16384 && head.find("\r\n\r\n") == std::string::npos) {
        if (::read(fd, &c, 1) != 1) return ::close(fd), stage = "handshake read", -1;
        head.push_back(c);  // byte by byte: nothing after the head may be consumed here
    }
    if (head.rfind("HTTP/1.1 101", 0) != 0 || head.find(kAccept) == std::string::npos)
        return ::close(fd), stage = "handshake: no 101 with the right Sec-WebSocket-Accept", -1;
    return fd;
}

// Close 1000 out, blocking, and a close frame back.
bool close_ws(int fd, const EchoOptions& o) {
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    if (!write_all(fd, masked_frame(0x88, std::string_view("\x03\xe8", 2)), int(o.timeout.count())))
        return false;
    unsigned char h[4];
    std::size_t got = 0;
    while (got < 4) {
        const ssize_t r = ::read(fd, h + got, 4 - got);
        if (r <= 0) return false;
        got += static_cast<std::size_t>(r);
    }
    return (h[0] & 0x0f) == 8;
}

double pct_us(const std::vector<std::uint64_t>& sorted, double p) {
    if (sorted.empty()) return 0;
    const auto i = std::min(sorted.size() - 1, static_cast<std::size_t>(p * sorted.size()));
    return double(sorted[i]) / 1000.0;
}

}  // namespace

int run_raw_echo(const EchoOptions& opt) {
    std::map<std::string, std::size_t> tally;
    std::vector<Conn> conns;
    conns.reserve(opt.conns);
    const int ep = ::epoll_create1(EPOLL_CLOEXEC);
    std::string payload(opt.size, '\0');
    for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>('a' + i % 26);
    const std::string frame = masked_frame(0x82, payload);
    const std::string reply_head = frame_head(0x82, payload.size(), false);
    const std::size_t reply_len = reply_head.size() + payload.size();
    std::size_t failed = 0, errors = 0;
    for (std::size_t i = 0; i < opt.conns; ++i) {
        std::string stage;
        const int fd = open_ws(opt, stage);
        if (fd < 0) {
            ++failed;
            ++tally[stage + ": " + std::strerror(errno)];
            continue;
        }
        ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
        Conn c;
        c.fd = fd;
        c.buf.resize(reply_len + 64);
        conns.push_back(std::move(c));
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = conns.size() - 1;
        ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }

    std::vector<std::uint64_t> samples;
    samples.reserve(1 << 20);
    const auto start = Clock::now();
    const auto end = start + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(opt.seconds));
    auto last_done = start;
    std::size_t in_flight = 0;
    auto fail = [&](Conn& c, const char* what) {
        ++errors;
        ++tally[std::string(what) + ": " + (errno ? std::strerror(errno) : "connection closed")];
        if (c.in_flight) --in_flight;
        c.in_flight = false;
        ::epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
        ::close(c.fd);
        c.fd = -1;
    };
    auto send = [&](Conn& c) {
        c.sent = Clock::now();
        if (!write_all(c.fd, frame, int(opt.timeout.count()))) return fail(c, "write");
        c.in_flight = true;
        ++in_flight;
    };
    for (auto& c : conns) send(c);
    bool timed_out = false;
    std::vector<epoll_event> evs(std::max<std::size_t>(1, conns.size()));
    while (in_flight > 0) {
        const auto now = Clock::now();
        if (now > end + kGrace) {
            timed_out = true;
            break;
        }
        const int n = ::epoll_wait(ep, evs.data(), int(evs.size()), 100);
        for (int i = 0; i < n; ++i) {
            Conn& c = conns[evs[i].data.u64];
            if (c.fd < 0) continue;
            errno = 0;
            const ssize_t r = ::read(c.fd, c.buf.data() + c.have, c.buf.size() - c.have);
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            if (r <= 0 || !c.in_flight) {
                fail(c, r <= 0 ? "read" : "unexpected data");
                continue;
            }
            c.have += static_cast<std::size_t>(r);
            if (c.have < reply_len) continue;
            const auto after = Clock::now();
            const bool same = c.have == reply_len &&
                              std::memcmp(c.buf.data(), reply_head.data(), reply_head.size()) == 0 &&
                              std::memcmp(c.buf.data() + reply_head.size(), payload.data(), payload.size()) == 0;
            if (!same) {
                errno = EBADMSG;
                fail(c, "echo");
                continue;
            }
            c.have = 0;
            c.in_flight = false;
            --in_flight;
            if (after <= end) {
                samples.push_back(std::uint64_t(std::chrono::nanoseconds(after - c.sent).count()));
                last_done = std::max(last_done, after);
                send(c);
            } else {
                last_done = end;
            }
        }
    }
    std::size_t close_failed = 0;
    for (auto& c : conns) {
        if (c.fd < 0) continue;
        if (!timed_out && !close_ws(c.fd, opt)) ++close_failed;
        ::close(c.fd);
    }
    ::close(ep);
    if (close_failed) tally["close: no close frame back"] += close_failed;
    for (const auto& [what, n] : tally) std::cerr << "tether-ws-bench: " << n << " x " << what << '\n';

    std::sort(samples.begin(), samples.end());
    const double secs = std::max(1e-9, std::chrono::duration<double>(last_done - start).count());
    std::printf(
        "{\"messages\":%zu,\"msgs_per_s\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
        "\"p999_us\":%.1f,\"max_us\":%.1f,\"conns\":%zu,\"size\":%zu,\"seconds\":%.3f,"
        "\"failed\":%zu,\"errors\":%zu,\"timed_out\":%s}\n",
        samples.size(), double(samples.size()) / secs, pct_us(samples, 0.50), pct_us(samples, 0.99),
        pct_us(samples, 0.999), pct_us(samples, 1.0), opt.conns, opt.size, secs, failed, errors,
        timed_out ? "true" : "false");
    std::fflush(stdout);
    return failed == opt.conns ? 1 : 0;
}

}  // namespace tether::bench
