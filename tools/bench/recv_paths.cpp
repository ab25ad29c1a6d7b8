// tether-recv-paths: what a proxy worker's receive path costs per message, eight ways, on
// this kernel; the measurement behind "why plain tunnels still read with epoll + recv"
// (docs/benchmarks.md).
//
//   tether-recv-paths [--rounds 8] [--seconds 2] [--conns 64] [--size 256]
//
// A "server" thread echoes what it receives on --conns loopback TCP connections; a client
// thread in the same process keeps one --size message in flight on each (closed loop). What
// changes is how the server learns of and receives the bytes (and, in the +rs modes, sends
// the echo; otherwise each echo is one sendto()):
//   epoll      edge-triggered epoll (EPOLLIN|EPOLLOUT|EPOLLRDHUP, as the tunnel reactor),
//              one recvfrom() per ready socket (what plain tunnels do)
//   batch      the same epoll, then every receive of the batch as IORING_OP_RECV
//              (MSG_DONTWAIT) in one io_uring_enter
//   multishot  one multishot IORING_OP_RECV per socket armed once, bytes in a provided
//              buffer ring (idle sockets hold no buffer), the thread waits in io_uring_enter
//   ms-evfd    the same ring, but the thread waits in epoll_wait on an eventfd registered
//              with the ring and then runs the ring's work (io_uring_enter GETEVENTS): how
//              a ring nested in an Asio worker (which waits in its own epoll_wait) would run
//   epoll+rs   epoll as above, the echoes of a batch as IORING_OP_SEND in one io_uring_enter:
//              what plain tunnels do today (tunnel_reactor + send_ring)
//   ms-evfd+rs ms-evfd, the echoes sent from the provided buffers as IORING_OP_SEND; each
//              wake-up is one epoll_wait and one io_uring_enter that submits the sends and
//              runs the ring's work (the buffer goes back when its send completed)
//   multishot+rs  the same with the thread waiting in io_uring_enter: a worker whose loop is
//              the ring itself (not possible inside Asio's epoll loop; the bound of the idea)
//   epoll+rsf  epoll+rs with the sockets registered in the ring (IORING_REGISTER_FILES2,
//              sparse, slot = descriptor) and the sends IOSQE_FIXED_FILE: no fget/fput per send
// Rings: SINGLE_ISSUER | DEFER_TASKRUN, raw system calls (no liburing). Each round runs the
// modes in turn (interleaved, a different one first each round), each on fresh
// connections, after one discarded warm-up run; prints per round the server
// thread's CPU time (CLOCK_THREAD_CPUTIME_ID) per echoed message, then the medians and each
// mode's median over epoll's. Exit status 1 if io_uring is not available.
// Threading: two threads per run (server = main, pinned to CPU 0; client, CPU 1); nothing
// shared but the sockets and two atomics.
#include <arpa/inet.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr std::uint64_t kSendTag = std::uint64_t{1} << 63;

struct Options {
    int rounds = 8;
    double seconds = 2;
    int conns = 64;
    int size = 256;
};

double thread_cpu_ns() {
    timespec t{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) * 1e9 + static_cast<double>(t.tv_nsec);
}

double now_s() {
    timespec t{};
    ::clock_gettime(CLOCK_MONOTONIC, &t);
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

long sys_recv(int fd, void* p, std::size_t n) {
    return ::syscall(SYS_recvfrom, fd, p, n, 0, nullptr, nullptr);
}
long sys_send(int fd, const void* p, std::size_t n) {
    return ::syscall(SYS_sendto, fd, p, n, MSG_NOSIGNAL, nullptr, 0);
}

template <class T>
T* at(void* base, unsigned off) {
    return reinterpret_cast<T*>(static_cast<char*>(base) + off);
}

// The smallest io_uring this needs: submit, wait, read completions; a provided buffer ring.
class Ring {
public:
    bool open(unsigned entries) {
        io_uring_params p{};
        p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
        fd_ = static_cast<int>(::syscall(__NR_io_uring_setup, entries, &p));
        if (fd_ < 0) return false;
        const std::size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
        const std::size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe);
        const std::size_t len = std::max(sq_len, cq_len);  // IORING_FEAT_SINGLE_MMAP (5.4+)
        void* sq = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_,
                          IORING_OFF_SQ_RING);
        void* sqes = ::mmap(nullptr, p.sq_entries * sizeof(io_uring_sqe), PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_POPULATE, fd_, IORING_OFF_SQES);
        if (sq == MAP_FAILED || sqes == MAP_FAILED) return false;
        sqes_ = static_cast<io_uring_sqe*>(sqes);
        sq_tail_ = at<unsigned>(sq, p.sq_off.tail);
        sq_mask_ = *at<unsigned>(sq, p.sq_off.ring_mask);
        sq_array_ = at<unsigned>(sq, p.sq_off.array);
        local_tail_ = *sq_tail_;
        cq_head_ = at<unsigned>(sq, p.cq_off.head);
        cq_tail_ = at<unsigned>(sq, p.cq_off.tail);
        cq_mask_ = *at<unsigned>(sq, p.cq_off.ring_mask);
        cqes_ = at<io_uring_cqe>(sq, p.cq_off.cqes);
        return true;
    }
    ~Ring() {
        if (fd_ >= 0) ::close(fd_);
    }

    io_uring_sqe& sqe(std::uint8_t op, int fd, void* addr, unsigned len, std::uint64_t tag) {
        const unsigned i = local_tail_++ & sq_mask_;
        io_uring_sqe& e = sqes_[i];
        std::memset(&e, 0, sizeof e);
        e.opcode = op;
        e.fd = fd;
        e.addr = reinterpret_cast<std::uintptr_t>(addr);
        e.len = len;
        e.user_data = tag;
        sq_array_[i] = i;
        ++pending_;
        return e;
    }
    // Submits what is queued; waits for `wait` completions (0: runs the ring's work only).
    void enter(unsigned wait) {
        std::atomic_ref<unsigned>(*sq_tail_).store(local_tail_, std::memory_order_release);
        const long n =
            ::syscall(__NR_io_uring_enter, fd_, pending_, wait, IORING_ENTER_GETEVENTS, nullptr, 0);
        if (n > 0) pending_ -= std::min<unsigned>(pending_, static_cast<unsigned>(n));
    }
    unsigned pending() const { return pending_; }
    template <class F>
    void each_completion(F f) {
        unsigned head = *cq_head_;
        const unsigned tail = std::atomic_ref<unsigned>(*cq_tail_).load(std::memory_order_acquire);
        for (; head != tail; ++head) f(cqes_[head & cq_mask_]);
        std::atomic_ref<unsigned>(*cq_head_).store(head, std::memory_order_release);
    }

    // A provided buffer ring (group 0) of n buffers of `size` bytes, all given to the kernel.
    bool provide(unsigned n, unsigned size) {
        bufs_ = std::vector<char>(static_cast<std::size_t>(n) * size);
        buf_size_ = size;
        br_len_ = n * sizeof(io_uring_buf);
        void* m =
            ::mmap(nullptr, br_len_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
        if (m == MAP_FAILED) return false;
        br_ = static_cast<io_uring_buf*>(m);
        br_mask_ = n - 1;
        io_uring_buf_reg reg{};
        reg.ring_addr = reinterpret_cast<std::uintptr_t>(br_);
        reg.ring_entries = n;
        reg.bgid = 0;
        if (::syscall(__NR_io_uring_register, fd_, IORING_REGISTER_PBUF_RING, &reg, 1) != 0)
            return false;
        for (unsigned i = 0; i < n; ++i) give_back(static_cast<std::uint16_t>(i));
        return true;
    }
    char* buffer(std::uint16_t id) {
        return bufs_.data() + static_cast<std::size_t>(id) * buf_size_;
    }
    void give_back(std::uint16_t id) {
        io_uring_buf& b = br_[br_tail_ & br_mask_];
        b.addr = reinterpret_cast<std::uintptr_t>(buffer(id));
        b.len = buf_size_;
        b.bid = id;
        ++br_tail_;
        std::atomic_ref<std::uint16_t>(br_[0].resv).store(br_tail_, std::memory_order_release);
    }
    // A sparse table of registered files; each socket then in the slot of its descriptor.
    bool register_files(const std::vector<int>& fds) {
        io_uring_rsrc_register reg{};
        reg.nr = static_cast<unsigned>(*std::max_element(fds.begin(), fds.end())) + 1;
        reg.flags = IORING_RSRC_REGISTER_SPARSE;
        if (::syscall(__NR_io_uring_register, fd_, IORING_REGISTER_FILES2, &reg, sizeof reg) != 0)
            return false;
        for (int fd : fds) {
            io_uring_rsrc_update2 up{};
            up.offset = static_cast<unsigned>(fd);
            up.data = reinterpret_cast<std::uintptr_t>(&fd);
            up.nr = 1;
            if (::syscall(__NR_io_uring_register, fd_, IORING_REGISTER_FILES_UPDATE2, &up,
                          sizeof up) != 1)
                return false;
        }
        return true;
    }
    bool register_eventfd(int efd) {
        return ::syscall(__NR_io_uring_register, fd_, IORING_REGISTER_EVENTFD, &efd, 1) == 0;
    }

private:
    int fd_ = -1;
    io_uring_sqe* sqes_ = nullptr;
    unsigned* sq_tail_ = nullptr;
    unsigned* sq_array_ = nullptr;
    unsigned sq_mask_ = 0;
    unsigned local_tail_ = 0;
    unsigned pending_ = 0;
    unsigned* cq_head_ = nullptr;
    unsigned* cq_tail_ = nullptr;
    unsigned cq_mask_ = 0;
    io_uring_cqe* cqes_ = nullptr;
    std::vector<char> bufs_;
    unsigned buf_size_ = 0;
    // The ring's entries; its tail is the first entry's resv field (io_uring_buf_ring, whose
    // C flexible-array declaration a C++ compiler may lay out differently: not used).
    io_uring_buf* br_ = nullptr;
    std::size_t br_len_ = 0;
    unsigned br_mask_ = 0;
    std::uint16_t br_tail_ = 0;
};

struct Conns {
    std::vector<int> client;
    std::vector<int> server;  // non-blocking
    ~Conns() {
        for (int fd : client) ::close(fd);
        for (int fd : server) ::close(fd);
    }
};

void connect_all(Conns& c, int n) {
    const int l = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(l, n) != 0 ||
        ::getsockname(l, reinterpret_cast<sockaddr*>(&a), &al) != 0) {
        std::perror("listen");
        std::exit(2);
    }
    const int on = 1;
    for (int i = 0; i < n; ++i) {
        const int s = ::socket(AF_INET, SOCK_STREAM, 0);
        if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) std::exit(2);
        const int t = ::accept4(l, nullptr, nullptr, SOCK_NONBLOCK);
        ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
        ::setsockopt(t, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
        c.client.push_back(s);
        c.server.push_back(t);
    }
    ::close(l);
}

// Pins the calling thread to `cpu` (when the machine has it): server and client on two
// CPUs, as a proxy and its peers mostly are, whatever the scheduler would pick per run.
void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (cpu < static_cast<int>(std::thread::hardware_concurrency()))
        ::sched_setaffinity(0, sizeof set, &set);
}

// Keeps one message in flight per connection until `stop`.
void client_loop(const std::vector<int>& fds, int size, const std::atomic<bool>& stop) {
    pin(1);
    const int ep = ::epoll_create1(0);
    for (std::size_t i = 0; i < fds.size(); ++i) {
        epoll_event e{};
        e.events = EPOLLIN;
        e.data.u64 = i;
        ::epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &e);
    }
    std::vector<char> msg(static_cast<std::size_t>(size), 'm');
    std::vector<char> buf(65536);
    std::vector<int> got(fds.size(), 0);
    for (int fd : fds) sys_send(fd, msg.data(), msg.size());
    epoll_event ev[128];
    while (!stop.load(std::memory_order_relaxed)) {
        const int n = ::epoll_wait(ep, ev, 128, 50);
        for (int k = 0; k < n; ++k) {
            const auto i = ev[k].data.u64;
            const long r = ::recv(fds[i], buf.data(), buf.size(), MSG_DONTWAIT);
            if (r <= 0) continue;
            got[i] += static_cast<int>(r);
            for (; got[i] >= size; got[i] -= size) sys_send(fds[i], msg.data(), msg.size());
        }
    }
    ::close(ep);
}

// Runs `mode` for `seconds`; server CPU ns per message echoed, or -1 if a ring call failed.
double run(const std::string& mode, const Options& o) {
    Conns c;
    connect_all(c, o.conns);
    std::atomic<bool> stop{false};
    std::thread client(client_loop, std::cref(c.client), o.size, std::cref(stop));
    const int n = o.conns;
    std::vector<std::vector<char>> bufs(static_cast<std::size_t>(n), std::vector<char>(16384));
    long bytes = 0;
    const double t0 = now_s();
    const double cpu0 = thread_cpu_ns();
    Ring ring;
    const bool fixed = mode.ends_with("+rsf");
    const bool ring_sends = mode.ends_with("+rs") || fixed;
    unsigned sends = 0;  // queued in the ring, not yet submitted
    const auto echo = [&](int i, char* p, long len, std::uint64_t tag) {
        bytes += len;
        if (!ring_sends) {
            sys_send(c.server[i], p, static_cast<std::size_t>(len));
            return;
        }
        io_uring_sqe& e =
            ring.sqe(IORING_OP_SEND, c.server[i], p, static_cast<unsigned>(len), kSendTag | tag);
        e.msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL;
        if (fixed) e.flags |= IOSQE_FIXED_FILE;  // the slot is the descriptor's number
        ++sends;
    };
    bool ok = true;
    if (mode.starts_with("epoll") || mode == "batch") {
        if ((mode == "batch" || ring_sends) && !ring.open(512)) ok = false;
        if (ok && fixed && !ring.register_files(c.server)) ok = false;
        const int ep = ::epoll_create1(0);
        for (int i = 0; i < n; ++i) {
            epoll_event e{};
            e.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
            e.data.u64 = static_cast<unsigned>(i);
            ::epoll_ctl(ep, EPOLL_CTL_ADD, c.server[i], &e);
        }
        epoll_event ev[128];
        while (ok && now_s() - t0 < o.seconds) {
            const int k = ::epoll_wait(ep, ev, 128, 50);
            unsigned queued = 0;
            for (int j = 0; j < k; ++j) {
                if (!(ev[j].events & EPOLLIN)) continue;
                const int i = static_cast<int>(ev[j].data.u64);
                if (mode != "batch") {
                    const long r = sys_recv(c.server[i], bufs[i].data(), bufs[i].size());
                    if (r > 0) echo(i, bufs[i].data(), r, 0);
                } else {
                    io_uring_sqe& e =
                        ring.sqe(IORING_OP_RECV, c.server[i], bufs[i].data(), 16384, i);
                    e.msg_flags = MSG_DONTWAIT;
                    ++queued;
                }
            }
            if (sends > 0) {  // epoll+rs: the batch's sends in one enter (as the tunnel reactor)
                ring.enter(sends);
                sends = 0;
                ring.each_completion([](const io_uring_cqe&) {});
            }
            if (queued == 0) continue;
            ring.enter(queued);
            ring.each_completion([&](const io_uring_cqe& q) {
                if (q.res > 0)
                    echo(static_cast<int>(q.user_data), bufs[q.user_data].data(), q.res, 0);
            });
        }
        ::close(ep);
    } else {
        const bool evfd = mode.starts_with("ms-evfd");
        ok = ring.open(512) && ring.provide(128, 4096);
        int efd = -1;
        int ep = -1;
        if (ok && evfd) {
            efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
            ep = ::epoll_create1(0);
            epoll_event e{};
            e.events = EPOLLIN | EPOLLET;  // each signal is a new edge: never read
            ::epoll_ctl(ep, EPOLL_CTL_ADD, efd, &e);
            ok = ring.register_eventfd(efd);
        }
        const auto arm = [&](int i) {
            io_uring_sqe& e =
                ring.sqe(IORING_OP_RECV, c.server[i], nullptr, 0, static_cast<unsigned>(i));
            e.ioprio = IORING_RECV_MULTISHOT;
            e.flags = IOSQE_BUFFER_SELECT;
            e.buf_group = 0;
        };
        for (int i = 0; ok && i < n; ++i) arm(i);
        while (ok && now_s() - t0 < o.seconds) {
            if (ring_sends &&
                evfd) {  // one enter: the sends and re-arms queued, then the ring's work
                epoll_event ev[4];
                if (ring.pending() == 0) ::epoll_wait(ep, ev, 4, 50);
                ring.enter(0);
                sends = 0;
            } else if (ring_sends) {  // one enter: submits, and waits only when nothing was queued
                ring.enter(ring.pending() == 0 ? 1 : 0);
                sends = 0;
            } else if (evfd) {
                epoll_event ev[4];
                if (ring.pending() > 0) ring.enter(0);  // submits the re-arms
                ::epoll_wait(ep, ev, 4, 50);
                ring.enter(0);  // runs the ring's work: posts the completions
            } else {
                ring.enter(1);
            }
            ring.each_completion([&](const io_uring_cqe& q) {
                if (q.user_data & kSendTag) {  // the buffer's bytes went out: back to the kernel
                    ring.give_back(static_cast<std::uint16_t>(q.user_data));
                    return;
                }
                const int i = static_cast<int>(q.user_data);
                if (q.res > 0 && (q.flags & IORING_CQE_F_BUFFER)) {
                    const auto id = static_cast<std::uint16_t>(q.flags >> IORING_CQE_BUFFER_SHIFT);
                    echo(i, ring.buffer(id), q.res, id);
                    if (!ring_sends) ring.give_back(id);
                }
                if (!(q.flags & IORING_CQE_F_MORE)) arm(i);  // ended (no buffer left): again
            });
        }
        if (efd >= 0) ::close(efd);
        if (ep >= 0) ::close(ep);
    }
    const double cpu = thread_cpu_ns() - cpu0;
    stop = true;
    client.join();
    const long msgs = bytes / o.size;
    if (!ok || msgs == 0) return -1;
    return cpu / static_cast<double>(msgs);
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t m = v.size() / 2;
    return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    pin(0);
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i];
        const char* v = argv[i + 1];
        if (k == "--rounds")
            o.rounds = std::atoi(v);
        else if (k == "--seconds")
            o.seconds = std::atof(v);
        else if (k == "--conns")
            o.conns = std::clamp(std::atoi(v), 1, 128);
        else if (k == "--size")
            o.size = std::clamp(std::atoi(v), 1, 4096);
        else {
            std::fprintf(stderr,
                         "usage: %s [--rounds N] [--seconds S] [--conns N] [--size BYTES]\n",
                         argv[0]);
            return 2;
        }
    }
    const std::vector<std::string> modes{"epoll",    "batch",      "multishot",    "ms-evfd",
                                         "epoll+rs", "ms-evfd+rs", "multishot+rs", "epoll+rsf"};
    std::vector<std::vector<double>> ns(modes.size());
    if (run("epoll", Options{1, 0.5, o.conns, o.size}) < 0) return 1;  // warm-up, discarded
    for (int r = 0; r < o.rounds; ++r) {
        std::printf("round %d:", r + 1);
        for (std::size_t k = 0; k < modes.size(); ++k) {
            const std::size_t m =
                (k + static_cast<std::size_t>(r)) % modes.size();  // no mode always first
            const double v = run(modes[m], o);
            if (v < 0) {
                std::fprintf(stderr, "\n%s: io_uring not available (or a ring call failed)\n",
                             modes[m].c_str());
                return 1;
            }
            ns[m].push_back(v);
            std::printf("  %s %.0f", modes[m].c_str(), v);
        }
        std::printf("  (server CPU ns per message)\n");
        std::fflush(stdout);
    }
    const double base = median(ns[0]);
    for (std::size_t m = 0; m < modes.size(); ++m)
        std::printf("%-13s median %6.0f ns per message, %.3f x epoll\n", modes[m].c_str(),
                    median(ns[m]), median(ns[m]) / base);
    return 0;
}
