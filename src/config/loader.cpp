// Loads the YAML configuration (SPEC.md "Configuration (YAML)") into config::Config.
//
// A Loader (loader_pass.hpp) walks the yaml-cpp tree once. Each reader gets the node and
// its key path ("upstreams.io_nodes.servers[0].weight"), reports a problem as a Diagnostic
// at the node (1-based line and column from yaml-cpp's Mark) and carries on, so one run
// lists every error of the file. Fields start at their in-class defaults (config.hpp); only keys present
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
// This file: the walk, the scalar readers, the checks after the walk, and
// the entry points; the sections are read in loader_sections.cpp and
// loader_upstreams.cpp, the values parsed in yaml_values.cpp.
#include "tether/config/loader.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <system_error>
#include <tuple>

#include "loader_pass.hpp"
#include "tether/core/units.hpp"
#include "yaml_guard.hpp"

namespace tether::config {
namespace detail {

namespace fs = std::filesystem;

void Loader::load(const Node& root) {
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

void Loader::finish() {
    auto by_position = [](const Diagnostic& a, const Diagnostic& b) {
        return std::tie(a.line, a.column) < std::tie(b.line, b.column);
    };
    std::stable_sort(result_.errors.begin(), result_.errors.end(), by_position);
    std::stable_sort(result_.warnings.begin(), result_.warnings.end(), by_position);
    if (result_.errors.empty()) result_.config = std::move(config_);
}

Diagnostic Loader::diagnostic(const YAML::Mark& mark, std::string message) const {
    if (mark.is_null()) return Diagnostic{file_, 0, 0, std::move(message)};
    return Diagnostic{file_, mark.line + 1, mark.column + 1, std::move(message)};
}

bool Loader::fail(const Node& node, const Path& path, std::string_view what) {
    error_at(node.Mark(), (path.empty() ? "" : quote(path) + ": ") + std::string(what));
    return false;
}

void Loader::warn_at(const YAML::Mark& mark, std::string message) {
    result_.warnings.push_back(diagnostic(mark, std::move(message)));
}

std::string Loader::resolve(const std::string& path) const {
    fs::path p(path);
    return (p.is_absolute() ? p : fs::path(base_dir_) / p).lexically_normal().string();
}

Loader::Seen Loader::walk(const Node& node, const Path& path, const std::vector<Key>& keys) {
    Seen seen;
    if (!node.IsMap() && !node.IsNull()) fail(node, path, "expected a map, got " + describe(node));
    if (!node.IsMap()) return seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
        const std::string name = it->first.IsScalar() ? it->first.Scalar() : describe(it->first);
        auto found =
            std::find_if(keys.begin(), keys.end(), [&](const Key& k) { return k.name == name; });
        if (found == keys.end()) {
            std::string valid;
            for (const Key& k : keys) valid += (valid.empty() ? "" : ", ") + std::string(k.name);
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

void Loader::require(const Node& node, const Path& path, const Seen& seen,
                     std::initializer_list<std::string_view> keys) {
    if (!node.IsMap() && !node.IsNull()) return;  // the type error is already reported
    for (std::string_view key : keys)
        if (!seen.contains(key)) fail(node, path, "missing required key " + quote(key));
}

const std::string* Loader::scalar(const Node& node, const Path& path, std::string_view what) {
    if (node.IsScalar()) return &node.Scalar();
    fail(node, path, "expected " + std::string(what) + ", got " + describe(node));
    return nullptr;
}

bool Loader::read_string(const Node& n, const Path& p, std::string& out) {
    const std::string* s = scalar(n, p, "a string");
    if (s) out = *s;
    return s != nullptr;
}

bool Loader::read_bool(const Node& n, const Path& p, bool& out) {
    const std::string* s = scalar(n, p, "a boolean (true or false)");
    if (!s) return false;
    auto value = parse_bool(*s);
    if (!value) return fail(n, p, "expected a boolean (true or false), got " + quote(*s));
    out = *value;
    return true;
}

bool Loader::read_int(const Node& n, const Path& p, int& out, long long lo, long long hi) {
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

bool Loader::read_number(const Node& n, const Path& p, double& out) {
    const std::string* s = scalar(n, p, "a number");
    if (!s) return false;
    double value = 0;
    auto [ptr, ec] = std::from_chars(s->data(), s->data() + s->size(), value);
    if (s->empty() || ec != std::errc{} || ptr != s->data() + s->size() || !std::isfinite(value))
        return fail(n, p, "expected a number, got " + quote(*s));
    if (value <= 0) return fail(n, p, "must be greater than 0");
    out = value;
    return true;
}

bool Loader::read_duration(const Node& n, const Path& p, Duration& out, bool zero_ok) {
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

bool Loader::read_size(const Node& n, const Path& p, std::size_t& out) {
    const std::string* s = scalar(n, p, "a size");
    if (!s) return false;
    auto value = parse_size(*s);
    if (!value) return fail(n, p, "invalid size " + quote(*s) + " " + std::string(kSizeHint));
    if (*value == 0) return fail(n, p, "must be greater than 0");
    if (*value > kMaxBufferSize) return fail(n, p, *s + " is too large (at most 1g)");
    out = static_cast<std::size_t>(*value);
    return true;
}

bool Loader::read_address(const Node& n, const Path& p, HostPort& out) {
    const std::string* s = scalar(n, p, "a string (host:port)");
    if (!s) return false;
    std::string why;
    auto parsed = parse_host_port(*s, why);
    if (!parsed)
        return fail(n, p,
                    "invalid address " + quote(*s) + ": " + why + " " + std::string(kAddressHint));
    out = *parsed;
    return true;
}

bool Loader::read_file_path(const Node& n, const Path& p, std::string& out) {
    std::string text;
    if (!read_string(n, p, text)) return false;
    if (text.empty()) return fail(n, p, "must not be empty");
    std::string file = resolve(text);
    if (std::string why = unreadable_reason(file); !why.empty())
        return fail(n, p, "cannot read " + quote(file) + ": " + why);
    out = file;
    return true;
}

bool Loader::read_http_path(const Node& n, const Path& p, std::string& out) {
    if (!read_string(n, p, out)) return false;
    return out.starts_with('/') ||
           fail(n, p, "invalid path " + quote(out) + " (must start with '/')");
}

void Loader::check_references() {
    for (const UpstreamRef& ref : refs_)
        if (!config_.upstreams.empty() && !config_.upstreams.contains(ref.name))
            error_at(ref.mark, quote(ref.path) + ": unknown upstream " + quote(ref.name));
    std::string admin = config_.admin.address.text();
    auto clash = listen_addresses_.find(admin);
    if (config_.admin.enabled && clash != listen_addresses_.end())
        error_at(admin_mark_.value_or(clash->second),
                 "'admin.address': " + quote(admin) + " is also a listen address");
}

void Loader::check_warnings() {
    for (const auto& [name, upstream] : config_.upstreams) {
        if (upstream.affinity != Affinity::cookie && upstream.affinity != Affinity::sid) continue;
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

void Loader::check_heartbeat(const std::string& upstream, const YAML::Mark& fallback) {
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

}  // namespace detail

namespace fs = std::filesystem;
using detail::Loader;

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
