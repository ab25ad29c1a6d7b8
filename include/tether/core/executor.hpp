// The executor of the request path, and the Asio types made on it: the
// worker io_context's own executor type instead of Asio's default, the
// type-erased boost::asio::any_io_executor. Each copy, move, destruction,
// comparison, work guard and dispatch of an any_io_executor is a call
// through a function table, and a coroutine's socket operation carries
// several (the handler's executor, the socket's, their work guards): on a
// proxied keep-alive request that was ~90 such calls not inlined, and the
// post of a completion went through any_executor's execute. With the
// concrete type they are an io_context pointer copied, and Asio's
// io_context fast paths are taken. Used by everything a client session
// touches (sockets, timers, coroutines, the Redis lookups and the rate limit
// it awaits); what runs off that path (health checks, admin, the Redis
// client's own thread) keeps any_io_executor.
// Threading: aliases only.
#pragma once

#include <chrono>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/basic_waitable_timer.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace tether {

/// A worker's executor (its io_context's).
using Executor = boost::asio::io_context::executor_type;
/// A coroutine on a worker's executor.
template <class T = void>
using Awaitable = boost::asio::awaitable<T, Executor>;
using TcpSocket = boost::asio::basic_stream_socket<boost::asio::ip::tcp, Executor>;
using SteadyTimer =
    boost::asio::basic_waitable_timer<std::chrono::steady_clock,
                                      boost::asio::wait_traits<std::chrono::steady_clock>, Executor>;

/// Completion tokens of those coroutines: the result, or (use_tuple) the
/// error code and results as a tuple, never an exception.
inline constexpr boost::asio::use_awaitable_t<Executor> use_awaitable{};
inline constexpr auto use_tuple = boost::asio::as_tuple(use_awaitable);
/// use_tuple for an operation co_awaited where it is made (`auto [ec, n] =
/// co_await s.async_read_some(b, await_tuple)`): Asio (1.26 on) starts such
/// an operation from the awaiting coroutine itself (awaitable_async_op),
/// where use_awaitable makes, starts and frees a coroutine frame of its own
/// for every operation (async_result's `initiate`). Not for an operation
/// kept as an awaitable (awaitable operators, a returned Awaitable<>).
inline constexpr auto await_tuple = boost::asio::as_tuple(boost::asio::deferred);

}  // namespace tether
