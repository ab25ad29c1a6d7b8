// Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable
// Software Network Load Balancer", NSDI 2016, section 3.4), with weights and
// bounded load.
//
// Each backend's preference list is a permutation of the M table slots,
// derived from its configured NAME with the fixed-seed stable_hash (offset =
// h1(name) mod M, skip = h2(name) mod (M-1) + 1). Backends are visited in
// name order and claim their next preferred free slot, `weight` slots per
// turn, until the table is full. The table therefore depends only on the
// set of (name, weight) pairs: two replicas agree whatever the order of the
// server list, and adding one server to N moves about 1/(N+1) of the keys.
//
// Lookup walks the table from slot hash(key) mod M: the first backend that
// is eligible (up, not draining, not excluded) and under its bounded-load
// cap wins. The walk order is deterministic per key, so keys of a dead
// server spread over the others, and the rest do not move.
//
// Immutable after construction: built off the hot path (Runtime snapshot),
// read concurrently by every worker.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace tether::balance {

class MaglevTable {
public:
    static constexpr std::uint32_t kDefaultSize = 65537;  // prime, >> 100 x backends

    struct Member {
        std::string name;
        int weight = 1;
    };

    /// `members` in any order; `size` must be prime.
    explicit MaglevTable(std::span<const Member> members, std::uint32_t size = kDefaultSize);

    /// Index into `members` (as passed to the constructor) owning `slot`.
    std::uint16_t at(std::uint32_t slot) const { return table_[slot]; }
    std::uint32_t size() const { return static_cast<std::uint32_t>(table_.size()); }
    bool empty() const { return table_.empty(); }
    /// First slot of the walk for `key_hash`.
    std::uint32_t start(std::uint64_t key_hash) const {
        return static_cast<std::uint32_t>(key_hash % table_.size());
    }

    /// Walks from `key_hash`; returns the first member index for which
    /// `accept(index)` is true, or -1 after `max_probe` slots without one.
    template <class Accept>
    int lookup(std::uint64_t key_hash, Accept&& accept, std::uint32_t max_probe = 0) const {
        if (table_.empty()) return -1;
        const std::uint32_t n = table_.size();
        if (max_probe == 0 || max_probe > n) max_probe = n;
        std::uint32_t slot = start(key_hash);
        int last_rejected = -1;
        for (std::uint32_t i = 0; i < max_probe; ++i) {
            const int m = table_[slot];
            if (m != last_rejected) {  // runs of one member are common: test it once
                if (accept(m)) return m;
                last_rejected = m;
            }
            if (++slot == n) slot = 0;
        }
        return -1;
    }

private:
    std::vector<std::uint16_t> table_;
};

}  // namespace tether::balance
