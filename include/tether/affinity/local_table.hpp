// The in-process affinity table: key -> server name, shared by all workers.
//
// Sharded (kShards buckets, each a mutex held for one map operation, so no
// global lock and little contention; a core::SmallMutex, two atomic
// instructions a lock and unlock while uncontended); bounded (at most max_entries, the
// least recently used entry of a full shard is evicted); entries expire
// `ttl` after their last use (refreshed on every hit). Keys follow the Redis
// layout without the prefix: "{upstream}:{mode}:{key}".
// Threading: safe from any thread.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <list>
#include <mutex>  // std::lock_guard
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tether/core/connection_registry.hpp"
#include "tether/core/hash.hpp"
#include "tether/core/small_mutex.hpp"

namespace tether::affinity {

/// Server name -> index in a routing snapshot's server list (an upstream's
/// UpstreamRouting::by_name).
using ServerIndex = std::unordered_map<std::string, std::size_t, StringViewHash, std::equal_to<>>;

class LocalTable {
public:
    static constexpr std::size_t kShards = 64;
    static constexpr std::size_t kNoIndex = static_cast<std::size_t>(-1);

    explicit LocalTable(std::size_t max_entries);

    /// The server bound to `key`, refreshing its expiry to now + ttl.
    std::optional<std::string> get(std::string_view key, Clock::time_point now,
                                   std::chrono::milliseconds ttl);
    /// get() that also says whether the binding was last written to or
    /// refreshed in the shared store `sync_every` ago or more; if so the
    /// caller refreshes it there and the entry counts as synced from now.
    std::optional<std::string> get(std::string_view key, Clock::time_point now,
                                   std::chrono::milliseconds ttl, Clock::duration sync_every,
                                   bool& sync_due);
    /// An upstream's ServerIndex with the snapshot generation it belongs to
    /// (unique per index: an entry remembers which one resolved its server).
    struct Names {
        const ServerIndex* index = nullptr;
        std::uint64_t generation = 0;  ///< > 0
    };
    /// What find() found.
    struct Found {
        bool bound = false;               ///< a live binding (its expiry is now + ttl)
        bool sync_due = false;            ///< as get()'s sync_due
        std::size_t index = kNoIndex;     ///< the bound server in `names`; kNoIndex: not there
    };
    /// Where find() found a live binding: refind() finds it again without its
    /// key while no entry of its shard was erased since (the shard's version;
    /// an erased entry's memory is freed, a rebound one stays where it is).
    struct Handle {
        const void* entry = nullptr;  ///< null: nothing found
        std::uint64_t version = 0;    ///< of the shard, when found
        std::size_t shard = 0;
    };
    /// get() for the request path: the bound server as its index in `names`,
    /// resolved once per entry and snapshot (the entry remembers it until its
    /// server or the snapshot changes), so a hit neither copies the name nor
    /// looks it up. Names with generation 0 are looked up every time. On a
    /// live binding, `where` (if given) says where it is, for refind().
    Found find(std::string_view key, Clock::time_point now, std::chrono::milliseconds ttl,
               Clock::duration sync_every, const Names& names, Handle* where = nullptr);
    /// find() of the binding at `where` (from find() of the same table), all
    /// it does but the key's hash and lookup: the binding as it is now (a
    /// rebind is seen), its expiry refreshed, its LRU place, the sync. Not
    /// bound: an entry of the shard was erased since, or the binding expired;
    /// find() by key then says what the table holds.
    Found refind(const Handle& where, Clock::time_point now, std::chrono::milliseconds ttl,
                 Clock::duration sync_every, const Names& names);
    /// True if `key` has a live binding (its expiry is left as it is).
    bool contains(std::string_view key, Clock::time_point now) const;
    /// A live binding of shard `shard`: key, server and the time it has left.
    struct Binding {
        std::string key;
        std::string server;
        std::chrono::milliseconds left;
    };
    /// Copies the live bindings of one shard (for writing them back to Redis).
    std::vector<Binding> bindings(std::size_t shard, Clock::time_point now) const;
    /// Binds `key` to `server` unless a live binding exists; returns the
    /// server bound afterwards (ours, or the one that was there).
    std::string put_if_absent(std::string_view key, std::string_view server,
                              Clock::time_point now, std::chrono::milliseconds ttl);
    /// Binds `key` to `server`, replacing any binding.
    void put(std::string_view key, std::string_view server, Clock::time_point now,
             std::chrono::milliseconds ttl);
    void erase(std::string_view key);
    /// Removes every binding whose key starts with `prefix` and value is `server`.
    std::size_t erase_server(std::string_view prefix, std::string_view server);
    std::size_t size() const;
    /// Bindings under `prefix` ("{upstream}:"), including expired ones not yet looked up.
    std::size_t count_prefix(std::string_view prefix) const;

private:
    struct Entry;
    using Lru = std::list<std::string>;  // keys, most recently used at the front
    struct Entry {
        std::string server;
        Clock::time_point expires;
        Clock::time_point synced;  // last written to or refreshed in the shared store
        Lru::iterator lru;
        std::uint64_t names_generation = 0;  // Names that resolved `server` (0: none yet)
        std::size_t names_index = kNoIndex;  // its answer
    };
    // A key with its hash, computed once per operation for both the shard
    // and the map (heterogeneous lookup: no std::string is made to look up).
    struct Hashed {
        std::string_view text;
        std::size_t hash;
    };
    struct KeyHash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
        std::size_t operator()(const Hashed& k) const { return k.hash; }
    };
    struct KeyEq {
        using is_transparent = void;
        bool operator()(std::string_view a, std::string_view b) const { return a == b; }
        bool operator()(const Hashed& a, std::string_view b) const { return a.text == b; }
        bool operator()(std::string_view a, const Hashed& b) const { return a == b.text; }
    };
    using Map = std::unordered_map<std::string, Entry, KeyHash, KeyEq>;
    struct Shard {
        mutable core::SmallMutex mutex;
        Map map;
        Lru lru;
        std::uint64_t version = 0;  // +1 whenever an entry is erased (Handle)
    };

    static Hashed hashed(std::string_view key) { return {key, KeyHash{}(key)}; }
    Shard& shard_for(const Hashed& key) { return shards_[mix64(key.hash) % kShards]; }
    const Shard& shard_for(const Hashed& key) const { return shards_[mix64(key.hash) % kShards]; }
    void insert_locked(Shard& s, std::string_view key, std::string_view server,
                       Clock::time_point now, Clock::time_point expires);
    /// Erases `it` of shard `s` (its LRU node too) and counts the shard's version.
    static Map::iterator erase_locked(Shard& s, Map::iterator it);
    /// find()'s work on the live entry `e` of `s` (expiry, sync, LRU, index).
    static Found hit_locked(Shard& s, Entry& e, Clock::time_point now,
                            std::chrono::milliseconds ttl, Clock::duration sync_every,
                            const Names& names);

    std::size_t per_shard_max_;
    std::array<Shard, kShards> shards_;
};

}  // namespace tether::affinity
