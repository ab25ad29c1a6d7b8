// tether-frame-bench: Google Benchmark microbenchmarks of the WebSocket frame
// tracker (ws::FrameTracker), the per-read cost every tunnel direction pays to
// count frames and to find boundaries. Cases follow what a tunnel sees: one
// whole small frame per read (echo traffic, masked client frames and unmasked
// server frames), many frames per 16 KiB read, one large frame in 16 KiB
// reads, headers split across reads (byte by byte, the worst case), and the
// stop-at-boundary mode used while closing.
//
//   ./build/tools/bench/tether-frame-bench [--benchmark_filter=REGEX]
//
// Threading: single-threaded. Inputs are fixed, so runs compare.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "tether/ws/frame_tracker.hpp"

namespace {

using tether::ws::FrameTracker;
using Bytes = std::vector<unsigned char>;

/// One frame: FIN + opcode, the shortest length encoding, a mask key when masked.
Bytes frame(std::size_t payload, bool masked, unsigned char opcode = 0x2) {
    Bytes b{static_cast<unsigned char>(0x80 | opcode)};
    const unsigned char m = masked ? 0x80 : 0x00;
    if (payload < 126) {
        b.push_back(static_cast<unsigned char>(m | payload));
    } else if (payload <= 0xffff) {
        b.push_back(m | 126);
        b.push_back(static_cast<unsigned char>(payload >> 8));
        b.push_back(static_cast<unsigned char>(payload));
    } else {
        b.push_back(m | 127);
        for (int i = 7; i >= 0; --i) b.push_back(static_cast<unsigned char>(payload >> (8 * i)));
    }
    if (masked) b.insert(b.end(), {0x12, 0x34, 0x56, 0x78});
    b.insert(b.end(), payload, 0x5a);
    return b;
}

/// Frames of `payload` bytes back to back until `total` bytes (whole frames only).
Bytes frames(std::size_t payload, bool masked, std::size_t total, std::size_t& count) {
    const Bytes one = frame(payload, masked);
    Bytes b;
    count = 0;
    while (b.size() + one.size() <= total) {
        b.insert(b.end(), one.begin(), one.end());
        ++count;
    }
    return b;
}

void check(benchmark::State& state, const FrameTracker& t, std::uint64_t want) {
    if (t.frames() != want || !t.at_boundary()) state.SkipWithError("frame count mismatch");
    state.counters["frames"] =
        benchmark::Counter(static_cast<double>(t.frames()), benchmark::Counter::kIsRate);
}

// One whole frame per read: the echo benchmark's 256-byte messages.
void BM_OneFramePerRead(benchmark::State& state) {
    const bool masked = state.range(1) != 0;
    const Bytes b = frame(static_cast<std::size_t>(state.range(0)), masked);
    FrameTracker t;
    for (auto _ : state) benchmark::DoNotOptimize(t.feed(b.data(), b.size()));
    check(state, t, static_cast<std::uint64_t>(state.iterations()));
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * b.size()));
}
BENCHMARK(BM_OneFramePerRead)
    ->ArgNames({"payload", "masked"})
    ->Args({16, 1})
    ->Args({256, 1})
    ->Args({256, 0})
    ->Args({4096, 0});

// Many frames per 16 KiB read (a busy tunnel coalescing small messages).
void BM_ManyFramesPerRead(benchmark::State& state) {
    std::size_t count = 0;
    const Bytes b = frames(static_cast<std::size_t>(state.range(0)), state.range(1) != 0,
                           16 * 1024, count);
    FrameTracker t;
    for (auto _ : state) benchmark::DoNotOptimize(t.feed(b.data(), b.size()));
    check(state, t, static_cast<std::uint64_t>(state.iterations()) * count);
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * b.size()));
}
BENCHMARK(BM_ManyFramesPerRead)
    ->ArgNames({"payload", "masked"})
    ->Args({16, 1})
    ->Args({256, 1})
    ->Args({256, 0});

// One 1 MiB frame in 16 KiB reads: payload skipping only.
void BM_LargeFrameIn16KiBReads(benchmark::State& state) {
    const Bytes b = frame(1 << 20, true);
    FrameTracker t;
    for (auto _ : state) {
        for (std::size_t off = 0; off < b.size(); off += 16 * 1024)
            benchmark::DoNotOptimize(
                t.feed(b.data() + off, std::min<std::size_t>(16 * 1024, b.size() - off)));
    }
    check(state, t, static_cast<std::uint64_t>(state.iterations()));
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * b.size()));
}
BENCHMARK(BM_LargeFrameIn16KiBReads);

// The worst case: every byte its own read (headers split at every position).
void BM_ByteByByte(benchmark::State& state) {
    std::size_t count = 0;
    const Bytes b = frames(256, true, 4096, count);
    FrameTracker t;
    for (auto _ : state)
        for (std::size_t i = 0; i < b.size(); ++i) benchmark::DoNotOptimize(t.feed(&b[i], 1));
    check(state, t, static_cast<std::uint64_t>(state.iterations()) * count);
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * b.size()));
}
BENCHMARK(BM_ByteByByte);

// Closing: feed(stop_at_boundary) returns at each frame's end; the caller feeds the rest.
void BM_StopAtBoundary(benchmark::State& state) {
    std::size_t count = 0;
    const Bytes b = frames(256, true, 16 * 1024, count);
    FrameTracker t;
    for (auto _ : state) {
        for (std::size_t off = 0; off < b.size();) off += t.feed(b.data() + off, b.size() - off, true);
    }
    check(state, t, static_cast<std::uint64_t>(state.iterations()) * count);
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * b.size()));
}
BENCHMARK(BM_StopAtBoundary);

}  // namespace
