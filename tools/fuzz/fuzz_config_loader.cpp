// libFuzzer target: the YAML config loader on arbitrary text (in memory; the
// base directory is empty, so relative paths name nothing). It returns either a
// config or diagnostics, never crashes or throws. Single-threaded.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tether/config/loader.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > 16384) return 0;
    std::string_view yaml(reinterpret_cast<const char*>(data), size);
    const auto r = tether::config::load_config_text(yaml, "fuzz.yaml", "/nonexistent-fuzz-dir");
    if (r.config.has_value() == !r.errors.empty()) __builtin_trap();
    for (const auto& e : r.errors) (void)e.text();
    return 0;
}
