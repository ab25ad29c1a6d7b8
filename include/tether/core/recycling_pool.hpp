// A per-thread cache of small memory blocks in size classes, in front of the
// global operator new, for what the request path makes and frees once per
// request: Beast's header field nodes and its method/target/reason strings
// (through RecyclingAllocator, basic_fields' allocator), the Exchange of a
// request. glibc's own per-thread cache holds 7 blocks per size; with tens of
// sessions interleaving, a size's frees outrun its next allocations and go to
// the slower bins (callgrind: ~130 instructions per free, ~300 per malloc on
// tether's keep-alive path). Here a block is pushed on its class's list and
// popped again, bounded to kMaxCachedBytes per class and thread.
// Threading: each thread has its own lists (thread_local); a block freed on
// another thread than the one that made it joins that thread's lists, which
// is harmless (the memory is the global operator new's either way). A
// thread's blocks are given back to operator delete when it exits: the
// lists are a trivially destructible, constant-initialized thread_local (no
// guard on access, usable until the thread's storage is gone), and a second
// thread_local (Reaper), made when the thread caches its first block, frees
// them in its destructor and closes them; a block freed after that (from a
// thread_local destroyed later) goes straight to operator delete.
#pragma once

#include <cstddef>
#include <new>

// Under AddressSanitizer a cached block is poisoned, so a use after it was
// given back is still reported (use-after-poison) although it is not freed.
#if defined(__SANITIZE_ADDRESS__)
#define TETHER_POOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TETHER_POOL_ASAN 1
#endif
#endif
#ifdef TETHER_POOL_ASAN
#include <sanitizer/asan_interface.h>
#define TETHER_POOL_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define TETHER_POOL_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define TETHER_POOL_POISON(p, n) ((void)(p), (void)(n))
#define TETHER_POOL_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace tether {

class RecyclingPool {
public:
    static constexpr std::size_t kGranule = 32;        ///< class sizes: multiples of this
    static constexpr std::size_t kMaxBlock = 1024;     ///< larger: operator new directly
    static constexpr std::size_t kMaxCachedBytes = 64 * 1024;  ///< per class and thread
    static constexpr std::size_t kClasses = kMaxBlock / kGranule;

    /// `bytes` of memory aligned for any fundamental type.
    static void* allocate(std::size_t bytes) {
        if (bytes > kMaxBlock) return ::operator new(bytes);
        List& l = state().of[index(bytes)];
        if (Node* n = l.head) {
            TETHER_POOL_UNPOISON(n, class_bytes(bytes));
            l.head = n->next;
            --l.count;
            return n;
        }
        return ::operator new(class_bytes(bytes));
    }

    /// Gives back what allocate(bytes) returned, with the same `bytes`.
    static void deallocate(void* p, std::size_t bytes) noexcept {
        if (bytes > kMaxBlock) {
            ::operator delete(p, bytes);
            return;
        }
        List& l = state().of[index(bytes)];
        if (l.count * class_bytes(bytes) >= kMaxCachedBytes) {  // full, or kClosed
            deallocate_uncached(p, bytes);
            return;
        }
        l.head = ::new (p) Node{l.head};
        ++l.count;
        TETHER_POOL_POISON(p, class_bytes(bytes));
    }

    /// Blocks cached on this thread in the class of `bytes` (tests, gauges).
    static std::size_t cached(std::size_t bytes) {
        if (bytes > kMaxBlock) return 0;
        const std::size_t n = state().of[index(bytes)].count;
        return n == kClosed ? 0 : n;
    }

    /// The size handed out for a request of `bytes` (<= kMaxBlock).
    static constexpr std::size_t class_bytes(std::size_t bytes) {
        return (index(bytes) + 1) * kGranule;
    }

private:
    // A list's count while the thread's lists are closed (not opened yet, or
    // gone): past every class's bound, so deallocate takes its slow path.
    static constexpr std::size_t kClosed = kMaxCachedBytes;
    struct Node {
        Node* next;
    };
    struct List {
        Node* head = nullptr;
        std::size_t count = kClosed;
    };
    enum class Phase : unsigned char { kUnopened, kOpen, kGone };
    struct State {  // trivially destructible: no destructor ends it before the thread does
        List of[kClasses];
        Phase phase = Phase::kUnopened;
    };
    // Made (thread_local) when its thread opens the lists, so destroyed before
    // every thread_local made earlier (the reverse order of construction):
    // gives the cached blocks back and closes the lists for good.
    struct Reaper {
        Reaper() noexcept {}  // user-provided: made when control first passes it
        Reaper(const Reaper&) = delete;
        Reaper& operator=(const Reaper&) = delete;
        ~Reaper() {
            State& s = state();
            for (std::size_t i = 0; i < kClasses; ++i) {
                while (Node* n = s.of[i].head) {
                    TETHER_POOL_UNPOISON(n, (i + 1) * kGranule);
                    s.of[i].head = n->next;
                    ::operator delete(n, (i + 1) * kGranule);
                }
                s.of[i].count = kClosed;
            }
            s.phase = Phase::kGone;
        }
    };

    static constexpr std::size_t index(std::size_t bytes) {
        return bytes == 0 ? 0 : (bytes - 1) / kGranule;
    }
    static State& state() {
        constinit thread_local State s;
        return s;
    }
    // A block its list does not take: the list is full, or the lists are
    // closed (opened here on the thread's first free, or gone).
    [[gnu::cold, gnu::noinline]] static void deallocate_uncached(void* p,
                                                                 std::size_t bytes) noexcept {
        State& s = state();
        if (s.phase == Phase::kUnopened) {
            s.phase = Phase::kOpen;
            for (List& l : s.of) l.count = 0;
            [[maybe_unused]] thread_local Reaper reaper;  // its destructor registered now
            deallocate(p, bytes);
            return;
        }
        ::operator delete(p, class_bytes(bytes));
    }
};

/// A standard allocator over RecyclingPool (stateless: every instance is equal).
template <class T>
class RecyclingAllocator {
public:
    using value_type = T;  // void too: Asio rebinds it to what it allocates

    RecyclingAllocator() noexcept = default;
    template <class U>
    RecyclingAllocator(const RecyclingAllocator<U>&) noexcept {}

    T* allocate(std::size_t n) {
        static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
        return static_cast<T*>(RecyclingPool::allocate(n * sizeof(T)));
    }
    void deallocate(T* p, std::size_t n) noexcept { RecyclingPool::deallocate(p, n * sizeof(T)); }

    template <class U>
    bool operator==(const RecyclingAllocator<U>&) const noexcept {
        return true;
    }
};

}  // namespace tether
