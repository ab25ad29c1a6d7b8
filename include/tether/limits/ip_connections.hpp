// Client connections per IP (`limits.max_connections_per_ip`): a process-wide
// count per address, taken when a connection is accepted and given back when
// it ends. Sharded, one mutex held for one map operation; an address with no
// connection left is removed, so the map holds only live addresses.
// Threading: safe from any thread.
#pragma once

#include <array>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "tether/core/hash.hpp"

namespace tether::limits {

class IpConnections {
public:
    static constexpr std::size_t kShards = 32;

    /// Counts one more connection of `ip` unless it already has `max` (> 0).
    bool try_add(std::string_view ip, int max);
    void remove(std::string_view ip);
    int count(std::string_view ip) const;

private:
    struct Shard {
        mutable std::mutex mutex;
        std::unordered_map<std::string, int, StringViewHash, std::equal_to<>> map;
    };
    Shard& shard_for(std::string_view ip);
    std::array<Shard, kShards> shards_;
};

}  // namespace tether::limits
