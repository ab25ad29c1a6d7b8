// The values of the YAML configuration as the Loader (loader_pass.hpp) reads
// them: key paths for messages, host:port, redis:// URLs, CIDRs, status ranges,
// cookie names; the bounds and hints of its messages; the names of enumerated
// values (Choice tables). Functions and constants without state of their own
// (unreadable_reason and env_or_empty look at the file system and the
// environment). Threading: any thread.
#pragma once

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "tether/config/config.hpp"
#include "tether/config/loader.hpp"

namespace tether::config::detail {

using Node = YAML::Node;
using Path = std::string;

inline constexpr std::string_view kDurationHint =
    "(use a number with ms, s, m, h or d, e.g. 500ms, 30s)";
inline constexpr std::string_view kSizeHint =
    "(use a number of bytes with an optional k, m or g suffix, e.g. 16k, 1m)";
inline constexpr std::string_view kAddressHint =
    "(use host:port or [ipv6]:port, e.g. 0.0.0.0:8080)";
inline constexpr Duration kMaxDuration{3650LL * 86'400'000};
inline constexpr std::uint64_t kMaxBufferSize = 1ULL << 30;
inline constexpr long long kMaxWorkers = 1024;
inline constexpr Duration kSocketIoHeartbeat{
    45'000};  ///< default pingInterval 25s + pingTimeout 20s

template <class T>
struct Choice {
    std::string_view name;
    T value;
};

inline constexpr Choice<Affinity> kAffinities[] = {{"none", Affinity::none},
                                                   {"ip_hash", Affinity::ip_hash},
                                                   {"cookie", Affinity::cookie},
                                                   {"sid", Affinity::sid}};
inline constexpr Choice<Balance> kBalances[] = {{"least_conn", Balance::least_conn},
                                                {"round_robin", Balance::round_robin},
                                                {"random_two", Balance::random_two}};
inline constexpr Choice<SameSite> kSameSites[] = {
    {"lax", SameSite::lax}, {"strict", SameSite::strict}, {"none", SameSite::none}};
inline constexpr Choice<LogFormat> kLogFormats[] = {{"combined", LogFormat::combined},
                                                    {"json", LogFormat::json}};
inline constexpr Choice<bool> kInitialStates[] = {{"up", true}, {"down", false}};
inline constexpr Choice<std::string_view> kHashes[] = {{"maglev", "maglev"}};
inline constexpr Choice<std::string_view> kTlsProtocols[] = {{"TLSv1.2", "TLSv1.2"},
                                                             {"TLSv1.3", "TLSv1.3"}};
inline constexpr Choice<SendProxy> kSendProxy[] = {
    {"off", SendProxy::off}, {"v1", SendProxy::v1}, {"v2", SendProxy::v2}};
std::string quote(std::string_view s);

/// Quotes text from the file, cut short: a key can swallow the lines after it.
std::string quote_short(std::string_view s);
std::string child(const Path& path, std::string_view key);
std::string item(const Path& path, std::size_t index);

/// What a node is, for "expected X, got Y" messages.
std::string describe(const Node& node);

template <class E, std::size_t N>
std::string names(const Choice<E> (&choices)[N]) {
    std::string out;
    for (const auto& choice : choices) out += (out.empty() ? "" : ", ") + std::string(choice.name);
    return out;
}

/// 30000ms -> "30s": the largest unit that divides the value.
std::string format_duration(Duration d);
std::optional<long long> parse_integer(std::string_view s);

/// YAML 1.1 booleans as yaml-cpp knows them: true/false, yes/no, on/off, any case.
std::optional<bool> parse_bool(std::string_view s);
bool valid_ip(const std::string& s, int family);
bool valid_hostname(const std::string& host);

/// "0.0.0.0:8080", "[::]:8080", "localhost:3001"; on failure `why` says what is wrong.
std::optional<HostPort> parse_host_port(std::string_view text, std::string& why);

/// The parts of a redis:// URL beyond host:port.
struct RedisUrl {
    std::optional<std::string> password;
    std::optional<int> db;
};

/// "redis://[:password@]host:port[/db]".
std::optional<HostPort> parse_redis_url(std::string_view text, RedisUrl& url, std::string& why);

/// "redis://:secret@host:1/0" -> "redis://:***@host:1/0", so messages do not leak it.
std::string mask_password(const std::string& address);

/// "10.0.0.0/8" stays; a bare address gets its full prefix ("10.1.2.3/32").
std::optional<std::string> normalize_cidr(std::string_view text);

/// "200" or "200-399", within 100..599.
std::optional<StatusRange> parse_status_range(std::string_view s);

template <class Pred>
bool all_chars(std::string_view s, Pred pred) {
    return !s.empty() && std::all_of(s.begin(), s.end(),
                                     [&](char c) { return pred(static_cast<unsigned char>(c)); });
}

bool valid_cookie_name(std::string_view name);  // RFC 6265 token

/// "" when `file` can be opened for reading, else the reason.
std::string unreadable_reason(const std::string& file);
std::string env_or_empty(const char* name);

}  // namespace tether::config::detail
