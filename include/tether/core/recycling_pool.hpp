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
// thread's blocks are given back to operator delete when it exits.
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
        List& l = lists().of[index(bytes)];
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
        List& l = lists().of[index(bytes)];
        if (l.count * class_bytes(bytes) >= kMaxCachedBytes) {
            ::operator delete(p, class_bytes(bytes));
            return;
        }
        l.head = ::new (p) Node{l.head};
        ++l.count;
        TETHER_POOL_POISON(p, class_bytes(bytes));
    }

    /// Blocks cached on this thread in the class of `bytes` (tests, gauges).
    static std::size_t cached(std::size_t bytes) {
        return bytes > kMaxBlock ? 0 : lists().of[index(bytes)].count;
    }

    /// The size handed out for a request of `bytes` (<= kMaxBlock).
    static constexpr std::size_t class_bytes(std::size_t bytes) {
        return (index(bytes) + 1) * kGranule;
    }

private:
    struct Node {
        Node* next;
    };
    struct List {
        Node* head = nullptr;
        std::size_t count = 0;
    };
    struct Lists {
        List of[kClasses];
        Lists() = default;
        Lists(const Lists&) = delete;
        Lists& operator=(const Lists&) = delete;
        ~Lists() {
            for (std::size_t i = 0; i < kClasses; ++i) {
                while (Node* n = of[i].head) {
                    TETHER_POOL_UNPOISON(n, (i + 1) * kGranule);
                    of[i].head = n->next;
                    ::operator delete(n, (i + 1) * kGranule);
                }
                of[i].count = kMaxCachedBytes;  // full: a block freed later on this
            }                                   // thread's exit goes to operator delete
        }
    };
    static constexpr std::size_t index(std::size_t bytes) {
        return bytes == 0 ? 0 : (bytes - 1) / kGranule;
    }
    static Lists& lists() {
        thread_local Lists l;
        return l;
    }
};

/// A standard allocator over RecyclingPool (stateless: every instance is equal).
template <class T>
class RecyclingAllocator {
public:
    using value_type = T;
    static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);

    RecyclingAllocator() noexcept = default;
    template <class U>
    RecyclingAllocator(const RecyclingAllocator<U>&) noexcept {}

    T* allocate(std::size_t n) { return static_cast<T*>(RecyclingPool::allocate(n * sizeof(T))); }
    void deallocate(T* p, std::size_t n) noexcept { RecyclingPool::deallocate(p, n * sizeof(T)); }

    template <class U>
    bool operator==(const RecyclingAllocator<U>&) const noexcept {
        return true;
    }
};

}  // namespace tether
