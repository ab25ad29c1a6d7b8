// Asio's coroutine frames (every awaitable<> coroutine, and the frame
// use_awaitable makes per asynchronous operation) from tether's
// RecyclingPool (core/recycling_pool.hpp) instead of Asio's per-thread cache.
// That cache holds BOOST_ASIO_RECYCLING_ALLOCATOR_CACHE_SIZE blocks of any
// size, first fit, and on a miss frees one of them: with tens of sessions
// each holding 5-7 frames of different sizes, ~6.5 frames per keep-alive
// request missed it (an aligned_alloc and a free each, in glibc's slow bins).
// The pool keeps blocks per 32-byte size class instead. Frames from glibc
// directly (BOOST_ASIO_DISABLE_AWAITABLE_FRAME_RECYCLING) were measured and
// cost more (docs/benchmarks.md, "Recycled memory").
//
// An explicit specialization of Asio's allocation hook for awaitable frames
// must be seen by every translation unit that makes a frame (one definition
// for the whole program): CMakeLists.txt force-includes this header
// (-include) into every target that links tether_asio, as it would define a
// configuration macro. Threading: per thread, as RecyclingPool.
#pragma once

#include <cstddef>

#include <boost/asio/detail/thread_info_base.hpp>

#include "tether/core/recycling_pool.hpp"

namespace boost::asio::detail {

template <>
inline void* thread_info_base::allocate<thread_info_base::awaitable_frame_tag>(
    thread_info_base::awaitable_frame_tag, thread_info_base*, std::size_t size, std::size_t) {
    // Frames ask for BOOST_ASIO_DEFAULT_ALIGN, which the pool's blocks have.
    static_assert(BOOST_ASIO_DEFAULT_ALIGN <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
    return tether::RecyclingPool::allocate(size);
}

template <>
inline void thread_info_base::deallocate<thread_info_base::awaitable_frame_tag>(
    thread_info_base::awaitable_frame_tag, thread_info_base*, void* pointer, std::size_t size) {
    tether::RecyclingPool::deallocate(pointer, size);
}

}  // namespace boost::asio::detail
