// The batched-send io_uring; see send_ring.hpp.
#include "tether/core/send_ring.hpp"

#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <utility>

// The kernel reads a queued send's bytes during io_uring_enter, where no
// sanitizer looks (they intercept send(), not a system call made through
// syscall()): sanitizer builds check each send's bytes themselves right
// before the submission, as their send() interceptor would. ASan: reported
// if any byte is poisoned (freed, out of bounds, or back in a pool); TSan: a
// read of the range by this thread.
#if defined(__SANITIZE_ADDRESS__)
#define TETHER_SEND_RING_ASAN 1
#elif defined(__SANITIZE_THREAD__)
#define TETHER_SEND_RING_TSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TETHER_SEND_RING_ASAN 1
#elif __has_feature(thread_sanitizer)
#define TETHER_SEND_RING_TSAN 1
#endif
#endif
#ifdef TETHER_SEND_RING_ASAN
#include <sanitizer/asan_interface.h>
#endif
#ifdef TETHER_SEND_RING_TSAN
extern "C" void __tsan_read_range(void* addr, unsigned long size);  // the runtime's, exported
#endif

namespace tether::core {

namespace {

#if defined(TETHER_SEND_RING_ASAN) || defined(TETHER_SEND_RING_TSAN)
[[gnu::noinline]] void check_range(void* p, std::size_t len) {
#ifdef TETHER_SEND_RING_ASAN
    if (void* bad = __asan_region_is_poisoned(p, len))
        __asan_report_error(__builtin_return_address(0), __builtin_frame_address(0),
                            __builtin_frame_address(0), bad, 0, len);
#else
    __tsan_read_range(p, len);
#endif
}

void check_send_bytes(const io_uring_sqe& e) {
    void* p = reinterpret_cast<void*>(static_cast<std::uintptr_t>(e.addr));
    if (e.opcode != IORING_OP_SENDMSG) return check_range(p, e.len);
    const auto* m = static_cast<const msghdr*>(p);
    check_range(p, sizeof *m);
    check_range(m->msg_iov, m->msg_iovlen * sizeof(iovec));
    for (std::size_t i = 0; i < m->msg_iovlen; ++i) check_range(m->msg_iov[i].iov_base, m->msg_iov[i].iov_len);
}
#endif

int sys_setup(unsigned entries, io_uring_params* p) {
    return static_cast<int>(::syscall(__NR_io_uring_setup, entries, p));
}

int sys_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags) {
    return static_cast<int>(::syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, nullptr, 0));
}

unsigned load_acquire(const unsigned* p) { return std::atomic_ref<const unsigned>(*p).load(std::memory_order_acquire); }
void store_release(unsigned* p, unsigned v) { std::atomic_ref<unsigned>(*p).store(v, std::memory_order_release); }

template <class T>
T* at(void* base, unsigned off) {
    return reinterpret_cast<T*>(static_cast<char*>(base) + off);
}

}  // namespace

std::unique_ptr<SendRing> SendRing::open(unsigned entries) {
    io_uring_params p{};
    // One issuer, completions only when asked for: the cheapest ring a single
    // thread can have (kernel 6.1); older kernels refuse the flags, then none.
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL;
    int fd = sys_setup(entries, &p);
    if (fd < 0 && errno == EINVAL) {
        p = io_uring_params{};
        fd = sys_setup(entries, &p);
    }
    if (fd < 0) return nullptr;
    std::unique_ptr<SendRing> r(new SendRing);
    r->fd_ = fd;
    r->entries_ = p.sq_entries;
    r->sq_map_len_ = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    r->cq_map_len_ = p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe);
    const bool single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
    if (single) r->sq_map_len_ = r->cq_map_len_ = std::max(r->sq_map_len_, r->cq_map_len_);
    r->sq_map_ = ::mmap(nullptr, r->sq_map_len_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                        IORING_OFF_SQ_RING);
    if (r->sq_map_ == MAP_FAILED) {
        r->sq_map_ = nullptr;
        return nullptr;
    }
    if (single) {
        r->cq_map_ = r->sq_map_;
    } else {
        r->cq_map_ = ::mmap(nullptr, r->cq_map_len_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                            IORING_OFF_CQ_RING);
        if (r->cq_map_ == MAP_FAILED) {
            r->cq_map_ = nullptr;
            return nullptr;
        }
    }
    r->sqes_len_ = p.sq_entries * sizeof(io_uring_sqe);
    void* sqes = ::mmap(nullptr, r->sqes_len_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                        IORING_OFF_SQES);
    if (sqes == MAP_FAILED) return nullptr;
    r->sqes_ = static_cast<io_uring_sqe*>(sqes);
    r->sq_head_ = at<unsigned>(r->sq_map_, p.sq_off.head);
    r->sq_tail_ = at<unsigned>(r->sq_map_, p.sq_off.tail);
    r->sq_mask_ = *at<unsigned>(r->sq_map_, p.sq_off.ring_mask);
    r->sq_array_ = at<unsigned>(r->sq_map_, p.sq_off.array);
    r->sq_local_tail_ = *r->sq_tail_;
    r->cq_head_ = at<unsigned>(r->cq_map_, p.cq_off.head);
    r->cq_tail_ = at<unsigned>(r->cq_map_, p.cq_off.tail);
    r->cq_mask_ = *at<unsigned>(r->cq_map_, p.cq_off.ring_mask);
    r->cqes_ = at<io_uring_cqe>(r->cq_map_, p.cq_off.cqes);
    return r;
}

SendRing::~SendRing() {
    if (sqes_) ::munmap(sqes_, sqes_len_);
    if (cq_map_ && cq_map_ != sq_map_) ::munmap(cq_map_, cq_map_len_);
    if (sq_map_) ::munmap(sq_map_, sq_map_len_);
    if (fd_ >= 0) ::close(fd_);
}

void SendRing::push(int fd, const void* p, std::size_t n, std::uint64_t tag) {
    push_entry(IORING_OP_SEND, fd, p, static_cast<std::uint32_t>(n), tag);
}

// A sendmsg entry's `len` is its one msghdr.
void SendRing::push_msg(int fd, const msghdr* m, std::uint64_t tag) {
    push_entry(IORING_OP_SENDMSG, fd, m, 1, tag);
}

void SendRing::push_entry(std::uint8_t opcode, int fd, const void* addr, std::uint32_t len,
                          std::uint64_t tag) {
    const unsigned i = sq_local_tail_ & sq_mask_;
    io_uring_sqe& e = sqes_[i];
    std::memset(&e, 0, sizeof e);
    e.opcode = opcode;
    e.fd = fd;
    e.addr = reinterpret_cast<std::uintptr_t>(addr);
    e.len = len;
    e.msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL;
    e.user_data = tag;
    sq_array_[i] = i;
    ++sq_local_tail_;
    ++queued_;
    ++unsubmitted_;
}

void SendRing::submit() {
    if (unsubmitted_ == 0) return;
#if defined(TETHER_SEND_RING_ASAN) || defined(TETHER_SEND_RING_TSAN)
    for (unsigned k = sq_local_tail_ - unsubmitted_; k != sq_local_tail_; ++k)
        check_send_bytes(sqes_[k & sq_mask_]);
#endif
    store_release(sq_tail_, sq_local_tail_);
    // Every send runs inline and completes during the call; waiting for all
    // of them (min_complete) only covers a kernel that would complete one
    // later (it still does not wait on a socket: MSG_DONTWAIT).
    for (;;) {
        const unsigned ready = load_acquire(cq_tail_) - *cq_head_;
        if (unsubmitted_ == 0 && ready >= queued_) return;
        int n;
        if (inject_errno_ != 0) {
            errno = std::exchange(inject_errno_, 0);
            n = -1;
        } else {
            n = sys_enter(fd_, unsubmitted_, queued_, IORING_ENTER_GETEVENTS);
            ++enters_;
        }
        if (n >= 0) {
            unsubmitted_ -= std::min(static_cast<unsigned>(n), unsubmitted_);
            continue;
        }
        if (errno == EINTR) continue;
        // The kernel took none of the rest: take them back and send them
        // here; each result is kept in its entry (`off`, unused by a send).
        failed_next_ = load_acquire(sq_head_);
        failed_end_ = sq_local_tail_;
        sq_local_tail_ = failed_next_;
        store_release(sq_tail_, sq_local_tail_);
        unsubmitted_ = 0;
        for (unsigned i = failed_next_; i != failed_end_; ++i) {
            io_uring_sqe& e = sqes_[i & sq_mask_];
            const void* p = reinterpret_cast<const void*>(static_cast<std::uintptr_t>(e.addr));
            const int flags = static_cast<int>(e.msg_flags);
            ssize_t r;
            do r = e.opcode == IORING_OP_SENDMSG ? ::sendmsg(e.fd, static_cast<const msghdr*>(p), flags)
                                                 : ::send(e.fd, p, e.len, flags);
            while (r < 0 && errno == EINTR);
            e.off = static_cast<std::uint64_t>(static_cast<std::int64_t>(r < 0 ? -errno : r));
        }
        return;
    }
}

bool SendRing::next_result(std::uint64_t& tag, int& res) {
    if (queued_ == 0) return false;
    const unsigned head = *cq_head_;
    if (head != load_acquire(cq_tail_)) {
        const io_uring_cqe& c = cqes_[head & cq_mask_];
        tag = c.user_data;
        res = c.res;
        store_release(cq_head_, head + 1);
        --queued_;
        return true;
    }
    if (failed_next_ == failed_end_) return false;
    const io_uring_sqe& e = sqes_[failed_next_ & sq_mask_];  // still there: nothing pushed since
    tag = e.user_data;
    res = static_cast<int>(static_cast<std::int64_t>(e.off));
    ++failed_next_;
    --queued_;
    return true;
}

}  // namespace tether::core
