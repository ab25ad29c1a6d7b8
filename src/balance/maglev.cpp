// Maglev table population; see maglev.hpp.
#include "tether/balance/maglev.hpp"

#include <algorithm>
#include <limits>
#include <numeric>

#include "tether/core/hash.hpp"

namespace tether::balance {

namespace {
constexpr std::uint64_t kOffsetSeed = 0x6d61676c65763031ull;  // "maglev01"
constexpr std::uint64_t kSkipSeed = 0x6d61676c65763032ull;    // "maglev02"
constexpr std::uint16_t kEmpty = std::numeric_limits<std::uint16_t>::max();
}  // namespace

MaglevTable::MaglevTable(std::span<const Member> members, std::uint32_t size) {
    if (members.empty()) return;
    table_.assign(size, kEmpty);
    std::vector<std::size_t> order(members.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(),
              [&](std::size_t a, std::size_t b) { return members[a].name < members[b].name; });
    std::vector<std::uint64_t> offset(members.size()), skip(members.size()), next(members.size(), 0);
    for (std::size_t i = 0; i < members.size(); ++i) {
        offset[i] = stable_hash(members[i].name, kOffsetSeed) % size;
        skip[i] = stable_hash(members[i].name, kSkipSeed) % (size - 1) + 1;
    }
    std::uint32_t filled = 0;
    while (filled < size) {
        for (std::size_t i : order) {
            for (int w = 0; w < std::max(1, members[i].weight) && filled < size; ++w) {
                std::uint64_t slot;
                do {
                    slot = (offset[i] + next[i] * skip[i]) % size;
                    ++next[i];
                } while (table_[slot] != kEmpty);
                table_[slot] = static_cast<std::uint16_t>(i);
                ++filled;
            }
            if (filled == size) break;
        }
    }
}

}  // namespace tether::balance
