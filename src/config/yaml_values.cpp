// The values of the YAML configuration (yaml_values.hpp).
// Threading: any thread.
#include "yaml_values.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <system_error>
#include <utility>

namespace tether::config::detail {

namespace fs = std::filesystem;

std::string quote(std::string_view s) { return "'" + std::string(s) + "'"; }

/// Quotes text from the file, cut short: a key can swallow the lines after it.
std::string quote_short(std::string_view s) {
    return s.size() <= 60 ? quote(s) : quote(s.substr(0, 57)) + "...";
}

std::string child(const Path& path, std::string_view key) {
    return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string item(const Path& path, std::size_t index) {
    return path + "[" + std::to_string(index) + "]";
}

std::string describe(const Node& node) {
    if (node.IsMap()) return "a map";
    if (node.IsSequence()) return "a list";
    return node.IsScalar() ? quote_short(node.Scalar()) : "nothing";
}

std::string format_duration(Duration d) {
    constexpr std::pair<long long, const char*> kUnits[] = {
        {86'400'000, "d"}, {3'600'000, "h"}, {60'000, "m"}, {1000, "s"}};
    for (auto [scale, unit] : kUnits)
        if (d.count() % scale == 0 && d.count() != 0)
            return std::to_string(d.count() / scale) + unit;
    return std::to_string(d.count()) + "ms";
}

std::optional<long long> parse_integer(std::string_view s) {
    long long value = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (s.empty() || ec != std::errc{} || ptr != s.data() + s.size()) return std::nullopt;
    return value;
}

std::optional<bool> parse_bool(std::string_view s) {
    std::string t(s);
    std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
    if (t == "true" || t == "yes" || t == "on") return true;
    if (t == "false" || t == "no" || t == "off") return false;
    return std::nullopt;
}

bool valid_ip(const std::string& s, int family) {
    in6_addr addr{};
    return inet_pton(family, s.c_str(), &addr) == 1;
}

bool valid_hostname(const std::string& host) {
    if (host.empty() || host.size() > 253) return false;
    bool numeric = true;
    for (unsigned char c : host) {
        if (!std::isalnum(c) && c != '.' && c != '-' && c != '_') return false;
        numeric = numeric && (std::isdigit(c) || c == '.');
    }
    return !numeric || valid_ip(host, AF_INET);  // "999.1.1.1" is not a host name
}

std::optional<HostPort> parse_host_port(std::string_view text, std::string& why) {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return why = "expected host:port", std::nullopt;
    std::string_view host = text.substr(0, colon);
    std::string_view port = text.substr(colon + 1);
    HostPort out;
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        out.host = std::string(host.substr(1, host.size() - 2));
        if (!valid_ip(out.host, AF_INET6)) why = "invalid IPv6 address " + quote(out.host);
    } else if (host.find(':') != std::string_view::npos) {
        why = "an IPv6 address must be written in brackets";
    } else {
        out.host = std::string(host);
        if (!valid_hostname(out.host)) why = "invalid host " + quote(host);
    }
    auto number = parse_integer(port);
    if (why.empty() && (!number || *number < 1 || *number > 65535))
        why = "invalid port " + quote(port) + " (valid: 1..65535)";
    if (!why.empty()) return std::nullopt;
    out.port = static_cast<std::uint16_t>(*number);
    return out;
}

std::optional<HostPort> parse_redis_url(std::string_view text, RedisUrl& url, std::string& why) {
    text.remove_prefix(std::string_view("redis://").size());
    if (auto at = text.rfind('@'); at != std::string_view::npos) {
        std::string_view user = text.substr(0, at);
        if (user.starts_with(':')) user.remove_prefix(1);
        if (user.find(':') != std::string_view::npos)
            return why = "user names are not supported", std::nullopt;
        url.password = std::string(user);
        text = text.substr(at + 1);
    }
    if (auto slash = text.find('/'); slash != std::string_view::npos) {
        auto db = parse_integer(text.substr(slash + 1));
        if (!db || *db < 0 || *db > INT_MAX)
            return why = "invalid database " + quote(text.substr(slash + 1)), std::nullopt;
        url.db = static_cast<int>(*db);
        text = text.substr(0, slash);
    }
    return parse_host_port(text, why);
}

std::string mask_password(const std::string& address) {
    auto at = address.rfind('@');
    if (!address.starts_with("redis://") || at == std::string::npos) return address;
    return "redis://:***" + address.substr(at);
}

std::optional<std::string> normalize_cidr(std::string_view text) {
    auto slash = text.find('/');
    std::string ip(text.substr(0, slash));
    bool v6 = ip.find(':') != std::string::npos;
    if (!valid_ip(ip, v6 ? AF_INET6 : AF_INET)) return std::nullopt;
    int max = v6 ? 128 : 32;
    if (slash == std::string_view::npos) return ip + "/" + std::to_string(max);
    auto prefix = parse_integer(text.substr(slash + 1));
    if (!prefix || *prefix < 0 || *prefix > max) return std::nullopt;
    return std::string(text);
}

std::optional<StatusRange> parse_status_range(std::string_view s) {
    auto dash = s.find('-');
    auto lo = parse_integer(s.substr(0, dash));
    auto hi = dash == std::string_view::npos ? lo : parse_integer(s.substr(dash + 1));
    if (!lo || !hi || *lo < 100 || *hi > 599 || *lo > *hi) return std::nullopt;
    return StatusRange{static_cast<int>(*lo), static_cast<int>(*hi)};
}

bool valid_cookie_name(std::string_view name) {  // RFC 6265 token
    constexpr std::string_view kExtra = "!#$%&'*+-.^_`|~";
    return all_chars(name, [&](unsigned char c) {
        return std::isalnum(c) || kExtra.find(static_cast<char>(c)) != std::string_view::npos;
    });
}

std::string unreadable_reason(const std::string& file) {
    std::error_code ec;
    if (fs::is_directory(file, ec)) return "is a directory";
    int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::error_code(errno, std::generic_category()).message();
    ::close(fd);
    return {};
}

std::string env_or_empty(const char* name) {
    const char* value = std::getenv(name);
    return value ? value : "";
}

}  // namespace tether::config::detail
