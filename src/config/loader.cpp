// Loads the YAML configuration (SPEC.md "Configuration (YAML)") into config::Config.
//
// A Loader walks the yaml-cpp tree once. Each reader gets the node and its key path
// ("upstreams.io_nodes.servers[0].weight"), reports a problem as a Diagnostic at the node
// (1-based line and column from yaml-cpp's Mark) and carries on, so one run lists every
// error of the file. Fields start at their in-class defaults (config.hpp); only keys present
// in the file overwrite them. References (listen -> upstream) and warnings are checked after
// the walk. Runs on the loading thread only; the only outside state read is the environment.
//
// Conventions chosen here:
// - A key written without a value (`timeouts:`) is the same as an absent key; for an optional
//   section (redis, tls, health_check, limits.rate) that means the section is off.
// - An unreadable file is reported as "FILE: cannot read file: REASON" (no position).
// - Explicit redis keys win over the parts of a redis:// URL; env REDIS_PASSWORD and
//   TETHER_COOKIE_SECRET fill only values that are still empty.
// - Upstream names are [A-Za-z0-9_.-]+ (they appear in Redis keys, metric labels and admin
//   URLs). A bare address in trusted_proxies becomes a /32 or /128 CIDR.
// - Durations other than tunnel, max_age, close_spread and shutdown must be > 0 (SPEC: a
//   bare 0 only where the key says what zero means); all are capped at 3650d so deadline
//   arithmetic in nanoseconds cannot overflow. Sizes must be > 0.
#include "tether/config/loader.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <optional>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <system_error>
#include <tuple>

#include "tether/core/units.hpp"
#include "yaml_guard.hpp"

namespace tether::config {
namespace {

namespace fs = std::filesystem;
using Node = YAML::Node;
using Path = std::string;

constexpr std::string_view kDurationHint = "(use a number with ms, s, m, h or d, e.g. 500ms, 30s)";
constexpr std::string_view kSizeHint =
    "(use a number of bytes with an optional k, m or g suffix, e.g. 16k, 1m)";
constexpr std::string_view kAddressHint = "(use host:port or [ipv6]:port, e.g. 0.0.0.0:8080)";
constexpr Duration kMaxDuration{3650LL * 86'400'000};
constexpr std::uint64_t kMaxBufferSize = 1ULL << 30;
constexpr long long kMaxWorkers = 1024;
constexpr Duration kSocketIoHeartbeat{45'000};  ///< default pingInterval 25s + pingTimeout 20s

template <class T>
struct Choice {
    std::string_view name;
    T value;
};

constexpr Choice<Affinity> kAffinities[] = {{"none", Affinity::none},
                                            {"ip_hash", Affinity::ip_hash},
                                            {"cookie", Affinity::cookie},
                                            {"sid", Affinity::sid}};
constexpr Choice<Balance> kBalances[] = {{"least_conn", Balance::least_conn},
                                         {"round_robin", Balance::round_robin},
                                         {"random_two", Balance::random_two}};
constexpr Choice<SameSite> kSameSites[] = {
    {"lax", SameSite::lax}, {"strict", SameSite::strict}, {"none", SameSite::none}};
constexpr Choice<LogFormat> kLogFormats[] = {{"combined", LogFormat::combined},
                                             {"json", LogFormat::json}};
constexpr Choice<bool> kInitialStates[] = {{"up", true}, {"down", false}};
constexpr Choice<std::string_view> kHashes[] = {{"maglev", "maglev"}};
constexpr Choice<std::string_view> kTlsProtocols[] = {{"TLSv1.2", "TLSv1.2"},
                                                      {"TLSv1.3", "TLSv1.3"}};
constexpr Choice<SendProxy> kSendProxy[] = {
    {"off", SendProxy::off}, {"v1", SendProxy::v1}, {"v2", SendProxy::v2}};

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

/// What a node is, for "expected X, got Y" messages.
std::string describe(const Node& node) {
    if (node.IsMap()) return "a map";
    if (node.IsSequence()) return "a list";
    return node.IsScalar() ? quote_short(node.Scalar()) : "nothing";
}

template <class E, std::size_t N>
std::string names(const Choice<E> (&choices)[N]) {
    std::string out;
    for (const auto& choice : choices) out += (out.empty() ? "" : ", ") + std::string(choice.name);
    return out;
}

/// 30000ms -> "30s": the largest unit that divides the value.
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

/// YAML 1.1 booleans as yaml-cpp knows them: true/false, yes/no, on/off, any case.
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

/// "0.0.0.0:8080", "[::]:8080", "localhost:3001"; on failure `why` says what is wrong.
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

/// The parts of a redis:// URL beyond host:port.
struct RedisUrl {
    std::optional<std::string> password;
    std::optional<int> db;
};

/// "redis://[:password@]host:port[/db]".
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

/// "redis://:secret@host:1/0" -> "redis://:***@host:1/0", so messages do not leak it.
std::string mask_password(const std::string& address) {
    auto at = address.rfind('@');
    if (!address.starts_with("redis://") || at == std::string::npos) return address;
    return "redis://:***" + address.substr(at);
}

/// "10.0.0.0/8" stays; a bare address gets its full prefix ("10.1.2.3/32").
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

/// "200" or "200-399", within 100..599.
std::optional<StatusRange> parse_status_range(std::string_view s) {
    auto dash = s.find('-');
    auto lo = parse_integer(s.substr(0, dash));
    auto hi = dash == std::string_view::npos ? lo : parse_integer(s.substr(dash + 1));
    if (!lo || !hi || *lo < 100 || *hi > 599 || *lo > *hi) return std::nullopt;
    return StatusRange{static_cast<int>(*lo), static_cast<int>(*hi)};
}

template <class Pred>
bool all_chars(std::string_view s, Pred pred) {
    return !s.empty() && std::all_of(s.begin(), s.end(),
                                     [&](char c) { return pred(static_cast<unsigned char>(c)); });
}

bool valid_cookie_name(std::string_view name) {  // RFC 6265 token
    constexpr std::string_view kExtra = "!#$%&'*+-.^_`|~";
    return all_chars(name, [&](unsigned char c) {
        return std::isalnum(c) || kExtra.find(static_cast<char>(c)) != std::string_view::npos;
    });
}

/// "" when `file` can be opened for reading, else the reason.
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

/// One pass over one document. Readers named read_* take (node, path, field, rules...) and
/// return whether the field was set; the *_into helpers bind them into a walk() table.
class Loader {
public:
    Loader(std::string file, std::string base_dir, LoadResult& result)
        : file_(std::move(file)), base_dir_(std::move(base_dir)), result_(result) {
        config_.source_path = file_;
    }

    void error_at(const YAML::Mark& mark, std::string message) {
        result_.errors.push_back(diagnostic(mark, std::move(message)));
    }

    /// Walks the document root; every problem lands in the result.
    void load(const Node& root) {
        if (!root.IsMap() && !root.IsNull())
            return error_at(root.Mark(), "expected a map of top-level keys, got " + describe(root));
        Seen seen = walk(root, "",
                         {{"workers", into(&Loader::read_workers, config_.workers)},
                          {"listen", into(&Loader::read_listen, config_.listen)},
                          {"admin", into(&Loader::read_admin, config_.admin)},
                          {"redis", into(&Loader::read_redis, config_.redis)},
                          {"trusted_proxies", into(&Loader::read_cidrs, config_.trusted_proxies)},
                          {"upstreams", into(&Loader::read_upstreams, config_.upstreams)},
                          {"timeouts", into(&Loader::read_timeouts, config_.timeouts)},
                          {"limits", into(&Loader::read_limits, config_.limits)},
                          {"headers", into(&Loader::read_headers, config_.headers)},
                          {"access_log", into(&Loader::read_access_log, config_.access_log)}});
        YAML::Mark start = root.Mark().is_null() ? YAML::Mark() : root.Mark();  // empty: 1:1
        for (std::string_view key : {"listen", "upstreams"})
            if (!seen.contains(key)) error_at(start, "missing required key " + quote(key));
        check_references();
        check_warnings();
    }

    /// Sorts the diagnostics by position and publishes the config if there is no error.
    void finish() {
        auto by_position = [](const Diagnostic& a, const Diagnostic& b) {
            return std::tie(a.line, a.column) < std::tie(b.line, b.column);
        };
        std::stable_sort(result_.errors.begin(), result_.errors.end(), by_position);
        std::stable_sort(result_.warnings.begin(), result_.warnings.end(), by_position);
        if (result_.errors.empty()) result_.config = std::move(config_);
    }

private:
    using Reader = std::function<void(const Node&, const Path&)>;
    struct Key {
        std::string_view name;
        Reader read;
    };
    using Seen = std::set<std::string, std::less<>>;
    struct UpstreamMarks {
        std::optional<YAML::Mark> affinity, secret;
    };
    struct UpstreamRef {
        std::string name;
        YAML::Mark mark;
        Path path;
    };

    // ---- diagnostics --------------------------------------------------------------------

    Diagnostic diagnostic(const YAML::Mark& mark, std::string message) const {
        if (mark.is_null()) return Diagnostic{file_, 0, 0, std::move(message)};
        return Diagnostic{file_, mark.line + 1, mark.column + 1, std::move(message)};
    }
    /// "'PATH': what" at the node.
    bool fail(const Node& node, const Path& path, std::string_view what) {
        error_at(node.Mark(), (path.empty() ? "" : quote(path) + ": ") + std::string(what));
        return false;
    }
    void warn_at(const YAML::Mark& mark, std::string message) {
        result_.warnings.push_back(diagnostic(mark, std::move(message)));
    }
    std::string resolve(const std::string& path) const {
        fs::path p(path);
        return (p.is_absolute() ? p : fs::path(base_dir_) / p).lexically_normal().string();
    }

    // ---- structure ----------------------------------------------------------------------

    /// Dispatches each key of a map to its reader; reports unknown and repeated keys. A null
    /// node is an empty map. Returns the keys seen.
    Seen walk(const Node& node, const Path& path, const std::vector<Key>& keys) {
        Seen seen;
        if (!node.IsMap() && !node.IsNull())
            fail(node, path, "expected a map, got " + describe(node));
        if (!node.IsMap()) return seen;
        for (auto it = node.begin(); it != node.end(); ++it) {
            const std::string name =
                it->first.IsScalar() ? it->first.Scalar() : describe(it->first);
            auto found = std::find_if(keys.begin(), keys.end(),
                                      [&](const Key& k) { return k.name == name; });
            if (found == keys.end()) {
                std::string valid;
                for (const Key& k : keys)
                    valid += (valid.empty() ? "" : ", ") + std::string(k.name);
                error_at(it->first.Mark(), "unknown key " + quote_short(name) +
                                               (path.empty() ? "" : " in " + quote(path)) +
                                               " (valid: " + valid + ")");
            } else if (!seen.insert(name).second) {
                fail(it->first, child(path, name), "duplicate key");
            } else {
                found->read(it->second, child(path, name));
            }
        }
        return seen;
    }

    void require(const Node& node, const Path& path, const Seen& seen,
                 std::initializer_list<std::string_view> keys) {
        if (!node.IsMap() && !node.IsNull()) return;  // the type error is already reported
        for (std::string_view key : keys)
            if (!seen.contains(key)) fail(node, path, "missing required key " + quote(key));
    }

    /// Calls `each(item_node, item_path)` for every entry of a list (null = empty list);
    /// `required` names what at least one entry is of, if the list must not be empty.
    template <class Each>
    void for_each_item(const Node& node, const Path& path, std::string_view required, Each each) {
        if (!node.IsSequence() && !node.IsNull())
            return void(fail(node, path, "expected a list, got " + describe(node)));
        if (node.size() == 0 && !required.empty())
            fail(node, path, "at least one " + std::string(required) + " is required");
        for (std::size_t i = 0; i < node.size(); ++i) each(node[i], item(path, i));
    }

    const std::string* scalar(const Node& node, const Path& path, std::string_view what) {
        if (node.IsScalar()) return &node.Scalar();
        fail(node, path, "expected " + std::string(what) + ", got " + describe(node));
        return nullptr;
    }

    template <class M, class T, class... Rules>
    Reader into(M method, T& field, Rules... rules) {
        return [=, this, &field](const Node& n, const Path& p) {
            (this->*method)(n, p, field, rules...);
        };
    }
    Reader text_into(std::string& f) { return into(&Loader::read_string, f); }
    Reader flag_into(bool& f) { return into(&Loader::read_bool, f); }
    Reader int_into(int& f, long long lo, long long hi = INT_MAX) {
        return into(&Loader::read_int, f, lo, hi);
    }
    Reader duration_into(Duration& f, bool zero_ok = false) {
        return into(&Loader::read_duration, f, zero_ok);
    }
    Reader size_into(std::size_t& f) { return into(&Loader::read_size, f); }
    template <class T, class E, std::size_t N>
    Reader enum_into(T& f, const Choice<E> (&choices)[N]) {
        return [this, &f, &choices](const Node& n, const Path& p) { read_enum(n, p, f, choices); };
    }

    // ---- scalars ------------------------------------------------------------------------

    bool read_string(const Node& n, const Path& p, std::string& out) {
        const std::string* s = scalar(n, p, "a string");
        if (s) out = *s;
        return s != nullptr;
    }

    bool read_bool(const Node& n, const Path& p, bool& out) {
        const std::string* s = scalar(n, p, "a boolean (true or false)");
        if (!s) return false;
        auto value = parse_bool(*s);
        if (!value) return fail(n, p, "expected a boolean (true or false), got " + quote(*s));
        out = *value;
        return true;
    }

    bool read_int(const Node& n, const Path& p, int& out, long long lo, long long hi) {
        const std::string* s = scalar(n, p, "an integer");
        if (!s) return false;
        auto value = parse_integer(*s);
        if (!value) return fail(n, p, "expected an integer, got " + quote(*s));
        if (*value < lo || *value > hi) {
            std::string valid =
                std::to_string(lo) + (hi >= INT_MAX ? " or more" : ".." + std::to_string(hi));
            return fail(n, p, *s + " is out of range (valid: " + valid + ")");
        }
        out = static_cast<int>(*value);
        return true;
    }

    /// A positive number (rates).
    bool read_number(const Node& n, const Path& p, double& out) {
        const std::string* s = scalar(n, p, "a number");
        if (!s) return false;
        double value = 0;
        auto [ptr, ec] = std::from_chars(s->data(), s->data() + s->size(), value);
        if (s->empty() || ec != std::errc{} || ptr != s->data() + s->size() ||
            !std::isfinite(value))
            return fail(n, p, "expected a number, got " + quote(*s));
        if (value <= 0) return fail(n, p, "must be greater than 0");
        out = value;
        return true;
    }

    bool read_duration(const Node& n, const Path& p, Duration& out, bool zero_ok) {
        const std::string* s = scalar(n, p, "a duration");
        if (!s) return false;
        auto value = parse_duration(*s);
        if (!value)
            return fail(n, p, "invalid duration " + quote(*s) + " " + std::string(kDurationHint));
        if (!zero_ok && value->count() == 0) return fail(n, p, "must be greater than 0");
        if (*value > kMaxDuration)
            return fail(n, p, *s + " is too long (at most " + format_duration(kMaxDuration) + ")");
        out = *value;
        return true;
    }

    bool read_size(const Node& n, const Path& p, std::size_t& out) {
        const std::string* s = scalar(n, p, "a size");
        if (!s) return false;
        auto value = parse_size(*s);
        if (!value) return fail(n, p, "invalid size " + quote(*s) + " " + std::string(kSizeHint));
        if (*value == 0) return fail(n, p, "must be greater than 0");
        if (*value > kMaxBufferSize) return fail(n, p, *s + " is too large (at most 1g)");
        out = static_cast<std::size_t>(*value);
        return true;
    }

    template <class T, class E, std::size_t N>
    bool read_enum(const Node& n, const Path& p, T& out, const Choice<E> (&choices)[N]) {
        const std::string* s = scalar(n, p, "a string");
        if (!s) return false;
        auto found = std::find_if(std::begin(choices), std::end(choices),
                                  [&](const Choice<E>& c) { return c.name == *s; });
        if (found == std::end(choices))
            return fail(n, p, "invalid value " + quote(*s) + " (valid: " + names(choices) + ")");
        out = found->value;
        return true;
    }

    bool read_address(const Node& n, const Path& p, HostPort& out) {
        const std::string* s = scalar(n, p, "a string (host:port)");
        if (!s) return false;
        std::string why;
        auto parsed = parse_host_port(*s, why);
        if (!parsed)
            return fail(
                n, p,
                "invalid address " + quote(*s) + ": " + why + " " + std::string(kAddressHint));
        out = *parsed;
        return true;
    }

    /// A file the process must read (TLS material): resolved, and checked to open.
    bool read_file_path(const Node& n, const Path& p, std::string& out) {
        std::string text;
        if (!read_string(n, p, text)) return false;
        if (text.empty()) return fail(n, p, "must not be empty");
        std::string file = resolve(text);
        if (std::string why = unreadable_reason(file); !why.empty())
            return fail(n, p, "cannot read " + quote(file) + ": " + why);
        out = file;
        return true;
    }

    bool read_http_path(const Node& n, const Path& p, std::string& out) {
        if (!read_string(n, p, out)) return false;
        return out.starts_with('/') ||
               fail(n, p, "invalid path " + quote(out) + " (must start with '/')");
    }

    // ---- top-level sections -------------------------------------------------------------

    void read_workers(const Node& n, const Path& p, int& out) {
        const std::string* s = scalar(n, p, "auto or an integer");
        auto value = s && *s != "auto" ? parse_integer(*s) : std::optional<long long>(0);
        if (s && value && (*s == "auto" || (*value >= 1 && *value <= kMaxWorkers)))
            out = static_cast<int>(*value);
        else if (s)
            fail(n, p,
                 "invalid value " + quote(*s) + " (valid: auto or 1.." +
                     std::to_string(kMaxWorkers) + ")");
    }

    void read_listen(const Node& node, const Path& path, std::vector<Listener>& out) {
        for_each_item(node, path, "listen entry", [&](const Node& n, const Path& p) {
            read_listener(n, p, out.emplace_back());
        });
    }

    void read_listener(const Node& node, const Path& path, Listener& out) {
        auto address = [&](const Node& n, const Path& p) {
            if (read_address(n, p, out.address) &&
                !listen_addresses_.emplace(out.address.text(), n.Mark()).second)
                fail(n, p, "duplicate listen address " + quote(out.address.text()));
        };
        auto upstream = [&](const Node& n, const Path& p) {
            if (read_string(n, p, out.upstream)) refs_.push_back({out.upstream, n.Mark(), p});
        };
        Seen seen = walk(node, path,
                         {{"address", address},
                          {"upstream", upstream},
                          {"proxy_protocol", flag_into(out.proxy_protocol)},
                          {"tls", into(&Loader::read_tls, out.tls)}});
        require(node, path, seen, {"address", "upstream"});
    }

    /// certificate + private_key (+ ocsp_response), or certificates: [{certificate,
    /// private_key, ocsp_response}, ...].
    void read_tls(const Node& node, const Path& path, std::optional<TlsConfig>& out) {
        if (node.IsNull()) return;
        TlsConfig tls;
        CertKey single;
        auto pairs = [&](const Node& list, const Path& list_path) {
            for_each_item(list, list_path, "certificate", [&](const Node& n, const Path& p) {
                read_cert_key(n, p, tls.certificates.emplace_back());
            });
        };
        auto protocols = [&](const Node& list, const Path& list_path) {
            tls.protocols.clear();
            for_each_item(list, list_path, "protocol", [&](const Node& n, const Path& p) {
                read_enum(n, p, tls.protocols.emplace_back(), kTlsProtocols);
            });
        };
        Seen seen = walk(node, path,
                         {{"certificate", into(&Loader::read_file_path, single.certificate)},
                          {"private_key", into(&Loader::read_file_path, single.private_key)},
                          {"ocsp_response", into(&Loader::read_file_path, single.ocsp_response)},
                          {"certificates", pairs},
                          {"protocols", protocols},
                          {"ciphers", text_into(tls.ciphers)}});
        if (!node.IsMap()) return;
        bool one = seen.contains("certificate") || seen.contains("private_key") ||
                   seen.contains("ocsp_response");
        if (one && seen.contains("certificates"))
            fail(node, path, "use either 'certificate' and 'private_key', or 'certificates'");
        else if (!one && !seen.contains("certificates"))
            fail(node, path,
                 "missing required key 'certificate' (with 'private_key') or 'certificates'");
        if (one) {
            require(node, path, seen, {"certificate", "private_key"});
            tls.certificates.insert(tls.certificates.begin(), single);  // the default comes first
        }
        out = std::move(tls);
    }

    void read_cert_key(const Node& node, const Path& path, CertKey& out) {
        Seen seen = walk(node, path,
                         {{"certificate", into(&Loader::read_file_path, out.certificate)},
                          {"private_key", into(&Loader::read_file_path, out.private_key)},
                          {"ocsp_response", into(&Loader::read_file_path, out.ocsp_response)}});
        require(node, path, seen, {"certificate", "private_key"});
    }

    /// A map with `address`, or off (YAML false) to disable the admin listener.
    void read_admin(const Node& node, const Path& path, Admin& out) {
        if (node.IsScalar()) {
            auto enabled = parse_bool(node.Scalar());
            if (enabled)
                out.enabled = *enabled;
            else
                fail(node, path, "expected a map with 'address', or off, got " + describe(node));
            return;
        }
        walk(node, path, {{"address", [&](const Node& n, const Path& p) {
                               if (read_address(n, p, out.address)) admin_mark_ = n.Mark();
                           }}});
    }

    void read_redis(const Node& node, const Path& path, std::optional<Redis>& out) {
        if (node.IsNull()) return;
        Redis redis;
        RedisUrl url;
        auto address = [&](const Node& n, const Path& p) {
            read_redis_address(n, p, redis.address, url);
        };
        Seen seen = walk(node, path,
                         {{"address", address},
                          {"password", text_into(redis.password)},
                          {"db", int_into(redis.db, 0)},
                          {"key_prefix", text_into(redis.key_prefix)},
                          {"timeout", duration_into(redis.timeout)}});
        if (!node.IsMap()) return;
        if (redis.password.empty() && url.password) redis.password = *url.password;
        if (!seen.contains("db") && url.db) redis.db = *url.db;
        if (redis.password.empty()) redis.password = env_or_empty("REDIS_PASSWORD");
        out = std::move(redis);
    }

    void read_redis_address(const Node& n, const Path& p, HostPort& out, RedisUrl& url) {
        const std::string* s = scalar(n, p, "a string (host:port)");
        if (!s) return;
        std::string why;
        auto parsed =
            s->starts_with("redis://") ? parse_redis_url(*s, url, why) : parse_host_port(*s, why);
        if (parsed)
            out = *parsed;
        else
            fail(n, p,
                 "invalid address " + quote(mask_password(*s)) + ": " + why +
                     " (use host:port or redis://[:password@]host:port[/db])");
    }

    void read_cidrs(const Node& node, const Path& path, std::vector<std::string>& out) {
        for_each_item(node, path, "", [&](const Node& n, const Path& p) {
            const std::string* s = scalar(n, p, "a string (CIDR)");
            auto cidr = s ? normalize_cidr(*s) : std::nullopt;
            if (cidr)
                out.push_back(*cidr);
            else if (s)
                fail(n, p,
                     "invalid CIDR " + quote(*s) +
                         " (use address/prefix, e.g. 10.0.0.0/8, fd00::/8)");
        });
    }

    void read_timeouts(const Node& node, const Path& path, Timeouts& t) {
        auto marked = [this](Duration& field, bool zero_ok, std::optional<YAML::Mark>& mark) {
            return [this, &field, zero_ok, &mark](const Node& n, const Path& p) {
                if (read_duration(n, p, field, zero_ok)) mark = n.Mark();
            };
        };
        walk(node, path,
             {{"connect", duration_into(t.connect)},
              {"client_header", duration_into(t.client_header)},
              {"idle", duration_into(t.idle)},
              {"upstream_response", marked(t.upstream_response, false, response_mark_)},
              {"tunnel", marked(t.tunnel, true, tunnel_mark_)},
              {"shutdown", duration_into(t.shutdown, true)}});
    }

    void read_limits(const Node& node, const Path& path, Limits& l) {
        walk(node, path,
             {{"max_connections", int_into(l.max_connections, 1)},
              {"max_connections_per_ip", int_into(l.max_connections_per_ip, 0)},
              {"max_header_size", size_into(l.max_header_size)},
              {"max_body_size", size_into(l.max_body_size)},
              {"buffer_size", size_into(l.buffer_size)},
              {"affinity_entries", size_into(l.affinity_entries)},
              {"rate", into(&Loader::read_rate, l.rate)}});
    }

    void read_rate(const Node& node, const Path& path, std::optional<RateLimit>& out) {
        if (node.IsNull()) return;
        RateLimit rate;
        auto burst = [&](const Node& n, const Path& p) {
            if (read_number(n, p, rate.burst) && rate.burst < 1) fail(n, p, "must be at least 1");
        };
        walk(node, path,
             {{"requests_per_second", into(&Loader::read_number, rate.requests_per_second)},
              {"burst", burst},
              {"shared", flag_into(rate.shared)}});
        if (node.IsMap()) out = rate;
    }

    void read_headers(const Node& node, const Path& path, Headers& out) {
        walk(node, path,
             {{"forwarded", flag_into(out.forwarded)}, {"request_id", flag_into(out.request_id)}});
    }

    void read_access_log(const Node& node, const Path& path, AccessLog& out) {
        walk(node, path,
             {{"path", into(&Loader::read_log_path, out.path)},
              {"format", enum_into(out.format, kLogFormats)}});
    }

    /// stdout | stderr | off (quoted or not; YAML 1.1 may hand it over as false) | a file
    /// whose directory exists.
    void read_log_path(const Node& n, const Path& p, std::string& out) {
        const std::string* s = scalar(n, p, "a string (stdout, stderr, off or a file)");
        if (!s) return;
        if (*s == "off" || *s == "false" || *s == "stdout" || *s == "stderr")
            return void(out = *s == "false" ? "off" : *s);
        if (s->empty())
            return void(fail(n, p, "must not be empty (use stdout, stderr, off or a file)"));
        std::string file = resolve(*s);
        std::string dir = fs::path(file).parent_path().string();
        std::error_code ec;
        if (!fs::is_directory(dir, ec))
            return void(fail(n, p, "directory " + quote(dir) + " does not exist"));
        out = file;
    }

    // ---- upstreams ----------------------------------------------------------------------

    void read_upstreams(const Node& node, const Path& path, std::map<std::string, Upstream>& out) {
        if (!node.IsMap())
            return void(fail(node, path, "expected a map of upstreams, got " + describe(node)));
        if (node.size() == 0) fail(node, path, "at least one upstream is required");
        for (auto it = node.begin(); it != node.end(); ++it) {
            const std::string name =
                it->first.IsScalar() ? it->first.Scalar() : describe(it->first);
            bool valid = it->first.IsScalar() && all_chars(name, [](unsigned char c) {
                             return std::isalnum(c) || c == '_' || c == '-' || c == '.';
                         });
            if (!valid) {
                fail(it->first, path,
                     "invalid upstream name " + quote_short(name) +
                         " (use letters, digits, '_', '-', '.')");
            } else if (out.contains(name)) {
                fail(it->first, child(path, name), "duplicate upstream");
            } else {
                Upstream& upstream = out[name];
                upstream.name = name;
                read_upstream(it->second, child(path, name), upstream);
            }
        }
    }

    void read_upstream(const Node& node, const Path& path, Upstream& out) {
        UpstreamMarks& marks = upstream_marks_[out.name];
        auto affinity = [&](const Node& n, const Path& p) {
            if (read_enum(n, p, out.affinity, kAffinities)) marks.affinity = n.Mark();
        };
        auto cookie = [&](const Node& n, const Path& p) { read_cookie(n, p, out.cookie, marks); };
        auto drain = [&](const Node& n, const Path& p) {
            walk(n, p,
                 {{"close_spread", duration_into(out.drain.close_spread, true)},
                  {"close_removed", flag_into(out.drain.close_removed)}});
        };
        Seen seen = walk(node, path,
                         {{"affinity", affinity},
                          {"balance", enum_into(out.balance, kBalances)},
                          {"affinity_ttl", duration_into(out.affinity_ttl)},
                          {"cookie", cookie},
                          {"sid", into(&Loader::read_sid, out.sid)},
                          {"ip_hash", into(&Loader::read_ip_hash, out.ip_hash)},
                          {"drain", drain},
                          {"keepalive", int_into(out.keepalive, 0)},
                          {"retries", int_into(out.retries, 0)},
                          {"fail_on_status",
                           into(&Loader::read_fail_on_status, out.fail_on_status)},
                          {"servers", into(&Loader::read_servers, out.servers)},
                          {"health_check", into(&Loader::read_health_check, out.health_check)},
                          {"tls", into(&Loader::read_upstream_tls, out.tls)},
                          {"send_proxy_protocol", into(&Loader::read_send_proxy, out.send_proxy_protocol)}});
        require(node, path, seen, {"servers"});
        if (out.cookie.secret.empty()) out.cookie.secret = env_or_empty("TETHER_COOKIE_SECRET");
    }

    /// TLS to the servers: a map, or a YAML boolean (true = every default, false = plain).
    void read_upstream_tls(const Node& node, const Path& path, std::optional<UpstreamTls>& out) {
        if (node.IsNull()) return;
        if (node.IsScalar()) {
            const auto on = parse_bool(node.Scalar());
            if (!on)
                return void(fail(node, path, "expected a map, true or false, got " + describe(node)));
            if (*on) out.emplace();
            else out.reset();
            return;
        }
        UpstreamTls tls;
        auto protocols = [&](const Node& list, const Path& list_path) {
            tls.protocols.clear();
            for_each_item(list, list_path, "protocol", [&](const Node& n, const Path& p) {
                read_enum(n, p, tls.protocols.emplace_back(), kTlsProtocols);
            });
        };
        auto server_name = [&](const Node& n, const Path& p) {
            if (!read_string(n, p, tls.server_name)) return;
            const bool ok = !tls.server_name.empty() && tls.server_name.size() <= 253 &&
                            all_chars(tls.server_name, [](unsigned char c) {
                                return std::isalnum(c) || c == '-' || c == '.' || c == ':';
                            });
            if (!ok)
                fail(n, p, "invalid server name " + quote_short(tls.server_name) +
                               " (a DNS name or an IP address)");
        };
        Seen seen = walk(node, path,
                         {{"verify", flag_into(tls.verify)},
                          {"ca", into(&Loader::read_file_path, tls.ca)},
                          {"server_name", server_name},
                          {"certificate", into(&Loader::read_file_path, tls.certificate)},
                          {"private_key", into(&Loader::read_file_path, tls.private_key)},
                          {"protocols", protocols},
                          {"ciphers", text_into(tls.ciphers)}});
        if (!node.IsMap()) return;
        if (seen.contains("certificate") != seen.contains("private_key"))
            fail(node, path,
                 seen.contains("certificate") ? "missing required key 'private_key' (with 'certificate')"
                                              : "missing required key 'certificate' (with 'private_key')");
        out = std::move(tls);
    }

    /// off (or false), v1 or v2.
    void read_send_proxy(const Node& node, const Path& path, SendProxy& out) {
        if (node.IsScalar() && parse_bool(node.Scalar()) == false) {
            out = SendProxy::off;
            return;
        }
        read_enum(node, path, out, kSendProxy);
    }

    void read_cookie(const Node& node, const Path& path, CookieConfig& out, UpstreamMarks& marks) {
        auto name = [&](const Node& n, const Path& p) {
            if (read_string(n, p, out.name) && !valid_cookie_name(out.name))
                fail(n, p,
                     "invalid cookie name " + quote(out.name) +
                         " (use letters, digits and !#$%&'*+-.^_`|~)");
        };
        auto secret = [&](const Node& n, const Path& p) {
            if (read_string(n, p, out.secret)) marks.secret = n.Mark();
        };
        walk(node, path,
             {{"name", name},
              {"secret", secret},
              {"max_age", duration_into(out.max_age, true)},
              {"secure", flag_into(out.secure)},
              {"http_only", flag_into(out.http_only)},
              {"same_site", enum_into(out.same_site, kSameSites)}});
    }

    void read_sid(const Node& node, const Path& path, SidConfig& out) {
        auto param = [&](const Node& n, const Path& p) {
            if (read_string(n, p, out.param) && out.param.empty()) fail(n, p, "must not be empty");
        };
        walk(node, path,
             {{"path", into(&Loader::read_http_path, out.path)},
              {"param", param},
              {"fallback_cookie", flag_into(out.fallback_cookie)}});
    }

    void read_ip_hash(const Node& node, const Path& path, IpHashConfig& out) {
        auto factor = [&](const Node& n, const Path& p) {  // below 100 no server could fit
            if (read_int(n, p, out.balance_factor, 0, 65535) && out.balance_factor > 0 &&
                out.balance_factor < 100)
                fail(n, p, n.Scalar() + " is out of range (valid: 0 = off, or 100..65535)");
        };
        walk(node, path,
             {{"hash", enum_into(out.hash, kHashes)},
              {"balance_factor", factor},
              {"prefix_v4", int_into(out.prefix_v4, 0, 32)},
              {"prefix_v6", int_into(out.prefix_v6, 0, 128)}});
    }

    void read_servers(const Node& node, const Path& path, std::vector<Server>& out) {
        std::set<std::string> names;
        for_each_item(node, path, "server", [&](const Node& n, const Path& p) {
            YAML::Mark name_mark = n.Mark();
            Server& server = out.emplace_back();
            read_server(n, p, server, name_mark);
            if (!server.name.empty() && !names.insert(server.name).second)
                error_at(name_mark, quote(p + ".name") + ": duplicate server name " +
                                        quote(server.name) + " in " + quote(path));
        });
    }

    /// `name_mark` ends at the name, or at the address the name defaults to.
    void read_server(const Node& node, const Path& path, Server& out, YAML::Mark& name_mark) {
        bool named = false;
        auto name = [&](const Node& n, const Path& p) {
            if (!read_string(n, p, out.name)) return;
            named = true;
            name_mark = n.Mark();
            if (!all_chars(out.name, [](unsigned char c) { return !std::isspace(c) && c != '/'; }))
                fail(n, p, "invalid server name " + quote(out.name) + " (no spaces or '/')");
        };
        auto address = [&](const Node& n, const Path& p) {
            if (read_address(n, p, out.address) && !named) name_mark = n.Mark();
        };
        Seen seen = walk(node, path,
                         {{"name", name},
                          {"address", address},
                          {"weight", int_into(out.weight, 1, 1000)},
                          {"max_conns", int_into(out.max_conns, 0)},
                          {"max_fails", int_into(out.max_fails, 0)},
                          {"fail_timeout", duration_into(out.fail_timeout)},
                          {"backup", flag_into(out.backup)}});
        require(node, path, seen, {"address"});
        if (!seen.contains("name") && out.address.port != 0) out.name = out.address.text();
    }

    void read_health_check(const Node& node, const Path& path, std::optional<HealthCheck>& out) {
        if (node.IsNull()) return;
        HealthCheck check;
        walk(node, path,
             {{"initial", enum_into(check.initial_up, kInitialStates)},
              {"path", into(&Loader::read_http_path, check.path)},
              {"interval", duration_into(check.interval)},
              {"timeout", duration_into(check.timeout)},
              {"rise", int_into(check.rise, 1, 1000)},
              {"fall", int_into(check.fall, 1, 1000)},
              {"expect_status", into(&Loader::read_expect_status, check.expect_status)}});
        if (node.IsMap()) out = std::move(check);
    }

    /// "200-399", "200", 200, or a list of those.
    void read_expect_status(const Node& node, const Path& path, std::vector<StatusRange>& out) {
        read_status_ranges(node, path, out, 100, "200 or 200-399");
    }

    /// "500-599", "502", 502, or a list of those: answers that count as
    /// passive failures (error answers only: 400..599).
    void read_fail_on_status(const Node& node, const Path& path, std::vector<StatusRange>& out) {
        read_status_ranges(node, path, out, 400, "502 or 500-599");
    }

    void read_status_ranges(const Node& node, const Path& path, std::vector<StatusRange>& out,
                            int lowest, std::string_view example) {
        out.clear();
        auto one = [&](const Node& n, const Path& p) {
            const std::string* s = scalar(n, p, "a status code or range");
            auto range = s ? parse_status_range(*s) : std::nullopt;
            if (range && range->lo >= lowest)
                out.push_back(*range);
            else if (s)
                fail(n, p,
                     "invalid status range " + quote(*s) +
                         " (use a code or an inclusive range within " + std::to_string(lowest) +
                         "..599, e.g. " + std::string(example) + ")");
        };
        if (node.IsSequence())
            for_each_item(node, path, "status range", one);
        else
            one(node, path);
    }

    // ---- after the walk -----------------------------------------------------------------

    void check_references() {
        for (const UpstreamRef& ref : refs_)
            if (!config_.upstreams.empty() && !config_.upstreams.contains(ref.name))
                error_at(ref.mark, quote(ref.path) + ": unknown upstream " + quote(ref.name));
        std::string admin = config_.admin.address.text();
        auto clash = listen_addresses_.find(admin);
        if (config_.admin.enabled && clash != listen_addresses_.end())
            error_at(admin_mark_.value_or(clash->second),
                     "'admin.address': " + quote(admin) + " is also a listen address");
    }

    void check_warnings() {
        for (const auto& [name, upstream] : config_.upstreams) {
            if (upstream.affinity != Affinity::cookie && upstream.affinity != Affinity::sid)
                continue;
            const UpstreamMarks& marks = upstream_marks_[name];
            YAML::Mark affinity = marks.affinity.value_or(YAML::Mark());
            if (upstream.cookie.secret.empty())
                warn_at(marks.secret.value_or(affinity),
                        quote("upstreams." + name + ".cookie.secret") +
                            ": empty and TETHER_COOKIE_SECRET is not set; each process signs "
                            "cookies with its own random key, so replicas will not understand "
                            "each other's cookies");
            if (upstream.affinity == Affinity::sid) check_heartbeat(name, affinity);
        }
    }

    void check_heartbeat(const std::string& upstream, const YAML::Mark& fallback) {
        auto warn_short = [&](std::string_view key, Duration value,
                              const std::optional<YAML::Mark>& mark) {
            warn_at(mark.value_or(fallback),
                    quote("timeouts." + std::string(key)) + ": " + format_duration(value) +
                        " is shorter than the Socket.IO heartbeat (pingInterval 25s + "
                        "pingTimeout 20s = 45s) used by upstream " +
                        quote(upstream) + " (affinity: sid); idle clients would be cut off");
        };
        const Timeouts& t = config_.timeouts;
        if (t.tunnel.count() != 0 && t.tunnel < kSocketIoHeartbeat)
            warn_short("tunnel", t.tunnel, tunnel_mark_);
        if (t.upstream_response < kSocketIoHeartbeat)
            warn_short("upstream_response", t.upstream_response, response_mark_);
    }

    std::string file_;
    std::string base_dir_;
    LoadResult& result_;
    Config config_;
    std::vector<UpstreamRef> refs_;                       ///< listen[i].upstream, checked last
    std::map<std::string, YAML::Mark> listen_addresses_;  ///< address text -> where written
    std::optional<YAML::Mark> admin_mark_, tunnel_mark_, response_mark_;
    std::map<std::string, UpstreamMarks> upstream_marks_;
};

}  // namespace

std::string HostPort::text() const {
    std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    return h + ":" + std::to_string(port);
}

std::string Diagnostic::text(bool warning) const {
    std::string out = file;
    if (line > 0) out += ":" + std::to_string(line) + ":" + std::to_string(column);
    out += warning ? ": warning: " : ": ";
    return out + message;
}

LoadResult load_config_text(std::string_view yaml, const std::string& file,
                            const std::string& base_dir) {
    std::error_code ec;
    fs::path base = base_dir.empty() ? fs::current_path(ec) : fs::absolute(base_dir, ec);
    LoadResult result;
    Loader loader(file, base.lexically_normal().string(), result);
    if (auto problem = check_yaml(yaml)) {  // bounds what yaml-cpp is given (yaml_guard.hpp)
        loader.error_at(problem->mark, std::move(problem->message));
        loader.finish();
        return result;
    }
    try {
        loader.load(YAML::Load(std::string(yaml)));  // one document: check_yaml saw to it
    } catch (const YAML::Exception& e) {  // syntax errors carry their position
        loader.error_at(e.mark, "invalid YAML: " + e.msg);
    } catch (const std::exception& e) {
        loader.error_at(YAML::Mark::null_mark(), std::string("cannot load: ") + e.what());
    }
    loader.finish();
    return result;
}

LoadResult load_config(const std::string& path) {
    std::error_code ec;
    std::ifstream in(path, std::ios::binary);
    if (!in || fs::is_directory(path, ec)) {
        std::string why =
            in ? "is a directory" : std::error_code(errno, std::generic_category()).message();
        LoadResult result;
        result.errors.push_back(Diagnostic{path, 0, 0, "cannot read file: " + why});
        return result;
    }
    // At most one byte past the limit is read: a huge file or /dev/zero is not slurped.
    const std::size_t limit = YamlLimits{}.max_bytes;
    std::string text(limit + 1, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<std::size_t>(in.gcount()));
    if (in.bad() || text.size() > limit) {
        const auto size = fs::is_regular_file(path, ec) ? fs::file_size(path, ec) : 0;
        LoadResult result;
        result.errors.push_back(Diagnostic{
            path, 0, 0,
            in.bad() ? "cannot read file: read error"
                     : "config file larger than " + std::to_string(limit >> 20) + " MiB" +
                           (size > limit ? " (" + std::to_string(size) + " bytes)" : "")});
        return result;
    }
    fs::path absolute = fs::absolute(path, ec);
    LoadResult result = load_config_text(text, path, absolute.parent_path().string());
    if (result.config) result.config->source_path = path;
    return result;
}

}  // namespace tether::config
