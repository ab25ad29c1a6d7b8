// Placement algorithms; see picker.hpp.
#include "tether/balance/picker.hpp"

#include <algorithm>

namespace tether::balance {

Picker::Picker(config::Balance method, std::uint64_t seed) : method_(method), rng_(seed) {}

void Picker::collect_eligible(const BackendList& backends,
                              std::span<const Backend* const> exclude) {
    auto excluded = [&](const Backend* b) {
        return std::find(exclude.begin(), exclude.end(), b) != exclude.end();
    };
    eligible_.clear();
    for (std::size_t i = 0; i < backends.size(); ++i) {
        const Backend& b = *backends[i];
        if (!b.server().backup && b.accepts_new() && !excluded(&b)) eligible_.push_back(i);
    }
    if (!eligible_.empty()) return;
    for (std::size_t i = 0; i < backends.size(); ++i) {
        const Backend& b = *backends[i];
        if (b.server().backup && b.accepts_new() && !excluded(&b)) eligible_.push_back(i);
    }
}

const std::shared_ptr<Backend>* Picker::pick(const BackendList& backends,
                                             std::span<const Backend* const> exclude) {
    collect_eligible(backends, exclude);
    if (eligible_.empty()) return nullptr;
    if (eligible_.size() == 1) return &backends[eligible_[0]];
    std::size_t idx = 0;
    switch (method_) {
        case config::Balance::round_robin: idx = pick_round_robin(backends); break;
        case config::Balance::least_conn: idx = pick_least_conn(backends); break;
        case config::Balance::random_two: idx = pick_random_two(backends); break;
    }
    return &backends[idx];
}

// Smooth weighted round robin (nginx ngx_http_upstream_get_peer): every pick
// adds each weight to its current weight, takes the largest, and subtracts the
// total from the winner. Weights 5,1,1 give a a b a c a a, never a burst.
std::size_t Picker::pick_round_robin(const BackendList& backends) {
    if (current_weight_.size() != backends.size()) current_weight_.assign(backends.size(), 0);
    std::int64_t total = 0;
    std::size_t best = eligible_[0];
    for (std::size_t i : eligible_) {
        const int w = backends[i]->server().weight;
        current_weight_[i] += w;
        total += w;
        if (current_weight_[i] > current_weight_[best]) best = i;
    }
    current_weight_[best] -= total;
    return best;
}

// Fewest active per unit of weight (a/wa < b/wb  <=>  a*wb < b*wa). The scan
// starts at a rotating offset so that equal servers share sequential clients.
std::size_t Picker::pick_least_conn(const BackendList& backends) {
    const std::size_t n = eligible_.size();
    const std::size_t start = cursor_++ % n;
    std::size_t best = eligible_[start];
    for (std::size_t k = 1; k < n; ++k) {
        const std::size_t i = eligible_[(start + k) % n];
        const auto& a = *backends[i];
        const auto& b = *backends[best];
        if (static_cast<std::int64_t>(a.active()) * b.server().weight <
            static_cast<std::int64_t>(b.active()) * a.server().weight)
            best = i;
    }
    return best;
}

std::size_t Picker::weighted_random(const BackendList& backends, int total_weight) {
    auto r = static_cast<int>(rng_.below(static_cast<std::uint64_t>(total_weight)));
    for (std::size_t i : eligible_) {
        r -= backends[i]->server().weight;
        if (r < 0) return i;
    }
    return eligible_.back();
}

std::size_t Picker::pick_random_two(const BackendList& backends) {
    int total = 0;
    for (std::size_t i : eligible_) total += backends[i]->server().weight;
    const std::size_t a = weighted_random(backends, total);
    std::size_t b = weighted_random(backends, total);
    for (int tries = 0; b == a && tries < 4; ++tries) b = weighted_random(backends, total);
    const auto& ba = *backends[a];
    const auto& bb = *backends[b];
    return static_cast<std::int64_t>(bb.active()) * ba.server().weight <
                   static_cast<std::int64_t>(ba.active()) * bb.server().weight
               ? b
               : a;
}

}  // namespace tether::balance
