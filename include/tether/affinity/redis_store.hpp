// The shared affinity table in Redis (SPEC "Affinity table in Redis"):
// keys "{key_prefix}{upstream}:{mode}:{key}" -> server name, PX = affinity_ttl.
// It stands behind the process's LocalTable, which stays the first place a
// lookup goes: Redis is asked only on a local miss, written when a binding is
// made or replaced, and refreshed at most once per ttl/10 per key.
//
// Every operation has redis.timeout as deadline; a failed or late one leaves
// routing to local state (the caller counts it) and never fails a request.
// Writes are atomic in Redis (one SET NX, or a small Lua script), so two
// replicas that place the same key at once agree on the first one's server.
// Events on "{key_prefix}events" (one line per field, first the sender's id):
//   del <key>                     drop a local binding
//   set <key> <server> <ttl_ms>   a binding was replaced: take the new one
//   drain <upstream> <server> 0|1 a server was drained or enabled
// When the connection comes (back), every live local binding is written
// again with SET NX (bindings made during an outage, or a Redis restarted
// empty), and the drained servers are read from "{key_prefix}drains".
//
// Threading: fetch/claim/replace run on a worker's coroutine and resume on
// it; refresh/remove/publish_drain only post to the Redis thread; on_event,
// on_ready and the drain handler run on the Redis thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "tether/affinity/local_table.hpp"
#include "tether/core/executor.hpp"
#include "tether/redis/client.hpp"

namespace tether::affinity {

class RedisStore {
public:
    /// Applies a drain (true) or an enable (false) heard from Redis.
    using DrainHandler = std::function<void(std::string_view upstream, std::string_view server,
                                            bool drain)>;

    RedisStore(LocalTable& local, std::string key_prefix);

    /// Connects the store to its client (made with on_event/on_ready as handlers).
    void attach(redis::Client& client) { client_ = &client; }
    void set_drain_handler(DrainHandler h) { on_drain_ = std::move(h); }

    /// The events channel name.
    std::string channel() const { return prefix_ + "events"; }

    struct Fetched {
        std::optional<std::string> server;
        bool failed = false;  ///< Redis did not answer in time (or is down)
    };
    /// GET of one table key.
    Awaitable<Fetched> fetch(const std::string& key);
    /// Binds `key` to `server` unless Redis has a binding; returns the
    /// server bound afterwards (ours or the earlier one), nullopt on failure.
    Awaitable<std::optional<std::string>> claim(const std::string& key,
                                                const std::string& server,
                                                std::chrono::milliseconds ttl);
    /// Replaces `previous` (or nothing) by `server`; returns the holder
    /// afterwards (a live binding another replica made wins), nullopt on failure.
    Awaitable<std::optional<std::string>> replace(const std::string& key,
                                                  const std::string& previous,
                                                  const std::string& server,
                                                  std::chrono::milliseconds ttl);
    /// Extends the binding's TTL (re-creating it if Redis lost it). No wait.
    void refresh(const std::string& key, const std::string& server, std::chrono::milliseconds ttl);
    /// Deletes the binding if it still names `previous`, and tells the others. No wait.
    void remove(const std::string& key, const std::string& previous);
    /// Records a drain or enable in Redis and tells the other replicas. No wait.
    void publish_drain(std::string_view upstream, std::string_view server, bool drain);

    /// Redis thread: a message of the events channel.
    void on_event(std::string_view payload);
    /// Redis thread: the connection is (again) ready, or Redis answers in
    /// time again: writes back the local bindings (they may be missing).
    void on_ready(bool first);

    const std::string& replica_id() const { return replica_; }

private:
    void write_back(std::size_t shard, std::uint64_t generation);
    void publish(std::string message);

    LocalTable& local_;
    const std::string prefix_;
    std::string replica_;
    redis::Client* client_ = nullptr;
    DrainHandler on_drain_;
    std::size_t written_back_ = 0;        // Redis thread only
    std::uint64_t write_back_gen_ = 0;    // Redis thread only: a newer write-back stops an older one
};

}  // namespace tether::affinity
