// libFuzzer target: the YAML config loader on arbitrary text (in memory; the
// base directory is empty, so relative paths name nothing). It returns either a
// config or diagnostics, never crashes, throws or runs away (yaml_guard.hpp
// bounds what yaml-cpp is given; libFuzzer's -rss_limit_mb and -timeout catch a
// run-away), and every diagnostic's line lies within the text. Single-threaded.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tether/config/loader.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > 16384) return 0;
    std::string_view yaml(reinterpret_cast<const char*>(data), size);
    const auto r = tether::config::load_config_text(yaml, "fuzz.yaml", "/nonexistent-fuzz-dir");
    if (r.config.has_value() == !r.errors.empty()) __builtin_trap();
    const auto lines = 1 + std::count(yaml.begin(), yaml.end(), '\n');
    for (const auto* list : {&r.errors, &r.warnings})
        for (const auto& d : *list) {
            if (d.line < 0 || d.line > lines + 1 || d.column < 0) __builtin_trap();
            if (d.text().empty()) __builtin_trap();
        }
    return 0;
}
