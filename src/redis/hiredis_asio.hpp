// The glue between hiredis' async API and Asio, used by client.cpp: attach()
// makes an io_context drive a redisAsyncContext's socket (hiredis' read and
// write interest become async_wait on its descriptor), convert() copies a
// hiredis reply into a Reply.
// Threading: the thread running that io_context (the Redis thread), which is
// the only one that touches the context.
#pragma once

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <boost/asio/io_context.hpp>

#include "tether/redis/client.hpp"

namespace tether::redis {

/// A copy of `r` (a nil Reply for null), arrays element by element.
Reply convert(const redisReply* r);

/// Makes `io` serve `ac`'s socket until hiredis frees the context (its
/// cleanup hook ends the watcher).
void attach(boost::asio::io_context& io, redisAsyncContext* ac);

}  // namespace tether::redis
