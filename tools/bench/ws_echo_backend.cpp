// tether-ws-echo: the minimal WebSocket echo backend of the WebSocket benchmarks
// (tools/bench/compare.py scenario b, ws_echo_ab.py, tunnel_cost.py), the same behind every
// proxy and direct, so that the backend costs as little CPU per message as it can.
//
//   tether-ws-echo [--listen 127.0.0.1:0] [--name NAME]   prints "listening ADDR:PORT"
//
// HTTP/1.1: a GET with "Upgrade: websocket" and a Sec-WebSocket-Key gets 101 with
// Sec-WebSocket-Accept (SHA-1 + base64 of key + RFC 6455 GUID, OpenSSL); any other request
// gets 200 "hello from NAME" (keep-alive), which the proxies' readiness probes use.
// WebSocket: every frame is parsed (masked or not), unmasked and sent back as an unmasked
// frame with the same FIN bit and opcode (text, binary, continuation: fragments echo as
// fragments); ping gets a pong with its payload, pong is dropped, close is answered with a
// close frame carrying the same status and the connection ends once it is sent. RSV bits or
// an opcode it does not know get close 1002; a frame over 16 MiB gets close 1009.
//
// Threading: one thread, one level-triggered epoll. Per readiness event one read() of up to
// 64 KiB (level-triggered: whatever is left is reported again, so no read ends in EAGAIN),
// then one write() of everything the read produced; a short write keeps the rest and waits
// for EPOLLOUT.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

namespace {

constexpr std::size_t kReadSize = 64 * 1024;
constexpr std::uint64_t kMaxFrame = 16u << 20;
constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

struct Conn {
    int fd = -1;
    bool upgraded = false;
    bool closing = false;  // close frame queued: end the connection once `out` is written
    bool want_out = false;  // EPOLLOUT registered
    std::string in;         // bytes not yet parsed
    std::string out;        // bytes not yet written
};

std::string accept_key(std::string_view key) {
    std::string s(key);
    s += kGuid;
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<const unsigned char*>(s.data()), s.size(), digest);
    unsigned char b64[4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1];
    const int n = EVP_EncodeBlock(b64, digest, SHA_DIGEST_LENGTH);
    return std::string(reinterpret_cast<char*>(b64), static_cast<std::size_t>(n));
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

bool icontains(std::string_view hay, std::string_view needle) {
    if (needle.size() > hay.size()) return false;
    for (std::size_t i = 0; i + needle.size() <= hay.size(); ++i)
        if (iequals(hay.substr(i, needle.size()), needle)) return true;
    return false;
}

std::string_view trim(std::string_view v) {
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t' || v.back() == '\r')) v.remove_suffix(1);
    return v;
}

void frame_head(std::string& out, unsigned char b0, std::uint64_t n) {
    out.push_back(static_cast<char>(b0));
    if (n < 126) {
        out.push_back(static_cast<char>(n));
    } else if (n < 65536) {
        out.push_back(static_cast<char>(126));
        out.push_back(static_cast<char>(n >> 8));
        out.push_back(static_cast<char>(n & 0xff));
    } else {
        out.push_back(static_cast<char>(127));
        for (int s = 56; s >= 0; s -= 8) out.push_back(static_cast<char>((n >> s) & 0xff));
    }
}

void close_frame(Conn& c, std::uint16_t code) {
    frame_head(c.out, 0x88, 2);
    c.out.push_back(static_cast<char>(code >> 8));
    c.out.push_back(static_cast<char>(code & 0xff));
    c.closing = true;
}

// One HTTP request from c.in, if complete: 101 for an upgrade, 200 otherwise. False when the
// head is incomplete.
bool handle_request(Conn& c, const std::string& name) {
    const auto end = c.in.find("\r\n\r\n");
    if (end == std::string::npos) {
        if (c.in.size() > 16384) c.closing = true;  // no head that large here
        return false;
    }
    const std::string_view head(c.in.data(), end + 2);
    std::string_view key;
    bool upgrade = false;
    for (std::size_t pos = head.find("\r\n") + 2; pos < head.size();) {
        const auto eol = head.find("\r\n", pos);
        const auto line = head.substr(pos, eol - pos);
        pos = eol + 2;
        const auto colon = line.find(':');
        if (colon == std::string_view::npos) continue;
        const auto field = line.substr(0, colon);
        const auto value = trim(line.substr(colon + 1));
        if (iequals(field, "upgrade") && icontains(value, "websocket")) upgrade = true;
        else if (iequals(field, "sec-websocket-key")) key = value;
    }
    if (upgrade && !key.empty()) {
        c.out += "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Accept: ";
        c.out += accept_key(key);
        c.out += "\r\n\r\n";
        c.upgraded = true;
    } else {
        const std::string body = "hello from " + name + "\n";
        c.out += "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                 std::to_string(body.size()) + "\r\n\r\n" + body;
    }
    c.in.erase(0, end + 4);  // requests here carry no body
    return true;
}

// Parses every complete frame in c.in and queues its echo in c.out. False when incomplete.
bool handle_frame(Conn& c) {
    const auto* p = reinterpret_cast<const unsigned char*>(c.in.data());
    const std::size_t have = c.in.size();
    if (have < 2) return false;
    const unsigned char b0 = p[0], opcode = b0 & 0x0f;
    const bool masked = p[1] & 0x80;
    std::uint64_t n = p[1] & 0x7f;
    std::size_t off = 2;
    if (n == 126) {
        if (have < 4) return false;
        n = (std::uint64_t(p[2]) << 8) | p[3];
        off = 4;
    } else if (n == 127) {
        if (have < 10) return false;
        n = 0;
        for (int i = 0; i < 8; ++i) n = (n << 8) | p[2 + i];
        off = 10;
    }
    if ((b0 & 0x70) != 0 || (opcode > 2 && opcode < 8) || opcode > 10) {
        close_frame(c, 1002);
        return false;
    }
    if (n > kMaxFrame) {
        close_frame(c, 1009);
        return false;
    }
    unsigned char key[4] = {0, 0, 0, 0};
    if (masked) {
        if (have < off + 4) return false;
        std::memcpy(key, p + off, 4);
        off += 4;
    }
    if (have < off + n) return false;
    const bool echo = opcode < 3 || opcode == 9 || opcode == 8;  // data, ping, close
    if (echo) {
        const unsigned char out_b0 = opcode == 9 ? 0x8a : opcode == 8 ? 0x88 : b0;
        const std::uint64_t out_n = opcode == 8 ? std::min<std::uint64_t>(n, 2) : n;
        frame_head(c.out, out_b0, out_n);
        const std::size_t at = c.out.size();
        c.out.append(c.in, off, out_n);
        if (masked) {
            auto* q = reinterpret_cast<unsigned char*>(c.out.data() + at);
            std::uint64_t k8;  // the mask repeated: eight bytes a step
            unsigned char rep[8];
            for (int i = 0; i < 8; ++i) rep[i] = key[i % 4];
            std::memcpy(&k8, rep, 8);
            std::size_t i = 0;
            for (; i + 8 <= out_n; i += 8) {
                std::uint64_t w;
                std::memcpy(&w, q + i, 8);
                w ^= k8;
                std::memcpy(q + i, &w, 8);
            }
            for (; i < out_n; ++i) q[i] ^= key[i % 4];
        }
        if (opcode == 8) c.closing = true;
    }
    c.in.erase(0, off + n);
    return !c.closing;
}

class Server {
public:
    Server(int listen_fd, std::string name) : lfd_(listen_fd), name_(std::move(name)) {}

    int run() {
        ep_ = ::epoll_create1(EPOLL_CLOEXEC);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = lfd_;
        ::epoll_ctl(ep_, EPOLL_CTL_ADD, lfd_, &ev);
        buf_ = std::make_unique<char[]>(kReadSize);
        epoll_event evs[256];
        for (;;) {
            const int n = ::epoll_wait(ep_, evs, 256, -1);
            if (n < 0 && errno != EINTR) return 1;
            for (int i = 0; i < n; ++i) {
                if (evs[i].data.fd == lfd_) accept_one();
                else on_event(evs[i].data.fd, evs[i].events);
            }
        }
    }

private:
    void accept_one() {
        const int fd = ::accept4(lfd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLRDHUP;
        ev.data.fd = fd;
        ::epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
        conns_[fd].fd = fd;
    }

    void drop(int fd) {
        ::epoll_ctl(ep_, EPOLL_CTL_DEL, fd, nullptr);
        ::close(fd);
        conns_.erase(fd);
    }

    void on_event(int fd, std::uint32_t events) {
        auto it = conns_.find(fd);
        if (it == conns_.end()) return;
        Conn& c = it->second;
        if (events & EPOLLOUT) {
            if (!flush(c)) return drop(fd);
            if (c.closing && c.out.empty()) return drop(fd);
        }
        if (!(events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) || c.closing) return;
        const ssize_t r = ::read(fd, buf_.get(), kReadSize);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (r <= 0) return drop(fd);
        c.in.append(buf_.get(), static_cast<std::size_t>(r));
        if (!c.upgraded)
            while (!c.upgraded && !c.closing && handle_request(c, name_)) {}
        if (c.upgraded)
            while (!c.closing && handle_frame(c)) {}
        if (!flush(c) || (c.closing && c.out.empty())) return drop(fd);
    }

    // Writes what is queued; registers EPOLLOUT for a remainder. False on a write error.
    bool flush(Conn& c) {
        if (!c.out.empty()) {
            const ssize_t w = ::write(c.fd, c.out.data(), c.out.size());
            if (w < 0 && errno != EAGAIN && errno != EINTR) return false;
            if (w > 0) c.out.erase(0, static_cast<std::size_t>(w));
        }
        const bool want = !c.out.empty();
        if (want != c.want_out) {
            epoll_event ev{};
            ev.events = EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0u);
            ev.data.fd = c.fd;
            ::epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
            c.want_out = want;
        }
        return true;
    }

    int lfd_, ep_ = -1;
    std::string name_;
    std::unique_ptr<char[]> buf_;
    std::unordered_map<int, Conn> conns_;
};

int listen_on(const std::string& addr) {
    const auto colon = addr.rfind(':');
    if (colon == std::string::npos) return -1;
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(std::stoi(addr.substr(colon + 1))));
    if (::inet_pton(AF_INET, addr.substr(0, colon).c_str(), &sa.sin_addr) != 1) return -1;
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(fd, 4096) != 0) {
        ::close(fd);
        return -1;
    }
    socklen_t len = sizeof sa;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
    char ip[INET_ADDRSTRLEN];
    ::inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
    std::printf("listening %s:%u\n", ip, ntohs(sa.sin_port));
    std::fflush(stdout);
    return fd;
}

}  // namespace

int main(int argc, char** argv) {
    std::string listen = "127.0.0.1:0", name = "ws-echo";
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string_view k = argv[i];
        if (k == "--listen") listen = argv[i + 1];
        else if (k == "--name") name = argv[i + 1];
        else {
            std::fprintf(stderr, "usage: tether-ws-echo [--listen ADDR:PORT] [--name NAME]\n");
            return 2;
        }
    }
    std::signal(SIGPIPE, SIG_IGN);
    const int fd = listen_on(listen);
    if (fd < 0) {
        std::fprintf(stderr, "tether-ws-echo: cannot listen on %s\n", listen.c_str());
        return 1;
    }
    return Server(fd, name).run();
}
