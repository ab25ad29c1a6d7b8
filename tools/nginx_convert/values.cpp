// nginx value syntax (times, sizes, addresses) turned into tether's; see model.hpp.
#include <algorithm>
#include <cctype>
#include <charconv>

#include "model.hpp"

namespace tether::nginx {
namespace {

bool all_digits(std::string_view s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
}

std::optional<std::int64_t> to_int(std::string_view s) {
    std::int64_t v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc{} || ptr != s.data() + s.size() || v < 0) return std::nullopt;
    return v;
}

}  // namespace

std::optional<std::int64_t> parse_time(const std::string& text) {
    // ngx_parse_time(): a sequence of NUMBER[UNIT] parts, spaces allowed between them;
    // a number without a unit is seconds.
    std::int64_t total = 0;
    std::size_t i = 0;
    bool any = false;
    while (i < text.size()) {
        if (text[i] == ' ') {
            ++i;
            continue;
        }
        std::size_t start = i;
        while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
        auto n = to_int(std::string_view(text).substr(start, i - start));
        if (!n || *n > 100'000'000'000LL) return std::nullopt;
        std::int64_t scale = 1000;
        if (text.compare(i, 2, "ms") == 0) {
            scale = 1, i += 2;
        } else if (i < text.size() && text[i] != ' ') {
            switch (text[i]) {
                case 's':
                    scale = 1000;
                    break;
                case 'm':
                    scale = 60'000;
                    break;
                case 'h':
                    scale = 3'600'000;
                    break;
                case 'd':
                    scale = 86'400'000;
                    break;
                case 'w':
                    scale = 7 * 86'400'000LL;
                    break;
                case 'M':
                    scale = 30 * 86'400'000LL;
                    break;
                case 'y':
                    scale = 365 * 86'400'000LL;
                    break;
                default:
                    return std::nullopt;
            }
            ++i;
        }
        total += *n * scale;
        any = true;
    }
    if (!any) return std::nullopt;
    return total;
}

std::optional<std::uint64_t> parse_bytes(const std::string& text) {
    std::string_view s(text);
    std::uint64_t scale = 1;
    if (!s.empty() && std::isalpha(static_cast<unsigned char>(s.back()))) {
        switch (std::tolower(static_cast<unsigned char>(s.back()))) {
            case 'k':
                scale = 1024;
                break;
            case 'm':
                scale = 1024 * 1024;
                break;
            case 'g':
                scale = 1024ULL * 1024 * 1024;
                break;
            default:
                return std::nullopt;
        }
        s.remove_suffix(1);
    }
    auto n = to_int(s);
    if (!n || static_cast<std::uint64_t>(*n) > (1ULL << 50) / scale) return std::nullopt;
    return static_cast<std::uint64_t>(*n) * scale;
}

std::string format_ms(std::int64_t ms) {
    constexpr std::pair<std::int64_t, const char*> kUnits[] = {
        {86'400'000, "d"}, {3'600'000, "h"}, {60'000, "m"}, {1000, "s"}};
    if (ms == 0) return "0";
    for (auto [scale, unit] : kUnits)
        if (ms % scale == 0) return std::to_string(ms / scale) + unit;
    return std::to_string(ms) + "ms";
}

std::string format_bytes(std::uint64_t bytes) {
    constexpr std::pair<std::uint64_t, const char*> kUnits[] = {
        {1024ULL * 1024 * 1024, "g"}, {1024 * 1024, "m"}, {1024, "k"}};
    for (auto [scale, unit] : kUnits)
        if (bytes != 0 && bytes % scale == 0) return std::to_string(bytes / scale) + unit;
    return std::to_string(bytes);
}

std::optional<std::string> parse_address(const std::string& text, int default_port,
                                         const std::string& any_host) {
    if (text.empty() || text.starts_with("unix:")) return std::nullopt;
    std::string host, port;
    if (all_digits(text)) {
        host = any_host, port = text;
    } else if (text.front() == '[') {
        auto close = text.find(']');
        if (close == std::string::npos) return std::nullopt;
        host = text.substr(0, close + 1);
        if (close + 1 < text.size()) {
            if (text[close + 1] != ':') return std::nullopt;
            port = text.substr(close + 2);
        }
    } else {
        auto colon = text.rfind(':');
        if (colon != std::string::npos && text.find(':') != colon) return std::nullopt;
        host = text.substr(0, colon);
        if (colon != std::string::npos) port = text.substr(colon + 1);
    }
    if (host == "*") host = any_host;
    if (port.empty()) port = std::to_string(default_port);
    auto n = to_int(port);
    if (host.empty() || !n || *n < 1 || *n > 65535) return std::nullopt;
    return host + ":" + std::to_string(*n);
}

std::string sanitize_name(const std::string& text) {
    std::string out;
    for (unsigned char c : text)
        out += (std::isalnum(c) || c == '_' || c == '-' || c == '.') ? static_cast<char>(c) : '_';
    return out.empty() ? "upstream" : out;
}

}  // namespace tether::nginx
