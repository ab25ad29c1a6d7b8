// Engine.IO sid extraction; see engineio.hpp.
#include "tether/balance/engineio.hpp"

#include <bit>
#include <cstdint>
#include <cstring>

namespace tether::balance {

namespace {

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::string percent_decode(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 &&
            hex_value(s[i + 2]) >= 0) {
            out.push_back(static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2])));
            i += 2;
        } else if (s[i] == '+') {
            out.push_back(' ');
        } else {
            out.push_back(s[i]);
        }
    }
    return out;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// The first byte in [p, end) equal to `a` or `b`, or end. Eight bytes per step
// on little-endian machines: a byte equal to c is a zero byte of w ^ c*ones,
// and (x - ones) & ~x & highs marks the lowest zero byte of x exactly (a mark
// above it may be a borrow's; only the lowest is used), as in Sean Anderson's
// "Bit Twiddling Hacks" (haszero). For decode_param's test of a sid: about
// half the instructions of a byte loop on a 20-byte sid. (Tried for the pair
// scan of eio_query too: more instructions than glibc's memchr there, whose
// vector loop finds a byte in a short pair in ~25.)
const char* find_either(const char* p, const char* end, char a, char b) {
    if constexpr (std::endian::native == std::endian::little) {
        constexpr std::uint64_t ones = 0x0101010101010101ull;
        constexpr std::uint64_t highs = 0x8080808080808080ull;
        const std::uint64_t wa = ones * static_cast<unsigned char>(a);
        const std::uint64_t wb = ones * static_cast<unsigned char>(b);
        for (; end - p >= 8; p += 8) {
            std::uint64_t w;
            std::memcpy(&w, p, 8);
            const std::uint64_t xa = w ^ wa;
            const std::uint64_t xb = w ^ wb;
            const std::uint64_t hit = ((xa - ones) & ~xa & highs) | ((xb - ones) & ~xb & highs);
            if (hit) return p + std::countr_zero(hit) / 8;
        }
    }
    while (p < end && *p != a && *p != b) ++p;
    return p;
}

}  // namespace

namespace {

// The query of `target` (after '?', before any '#'); nullopt without '?'.
// (memchr for the two long scans; the per-pair work below is plain loops:
// a library call per pair costs more than the few bytes it compares.)
std::optional<std::string_view> query_of(std::string_view target) {
    const auto q = target.find('?');
    if (q == std::string_view::npos) return std::nullopt;
    std::string_view query = target.substr(q + 1);
    return query.substr(0, query.find('#'));
}

// If the pair at the front of `query` is named `name` ("name=value", "name"
// or "name&..."), its raw value.
std::optional<std::string_view> value_if_named(std::string_view query, std::string_view name) {
    if (query.size() < name.size()) return std::nullopt;
    for (std::size_t i = 0; i < name.size(); ++i)
        if (query[i] != name[i]) return std::nullopt;
    query.remove_prefix(name.size());
    if (query.empty() || query.front() == '&') return std::string_view();
    if (query.front() != '=') return std::nullopt;
    query.remove_prefix(1);
    return query.substr(0, query.find('&'));
}

// Calls fn(rest) with `query` from the start of each pair until fn returns true.
template <class Fn>
void for_each_pair(std::string_view query, Fn&& fn) {
    while (!query.empty()) {
        if (fn(query)) return;
        const auto amp = query.find('&');
        if (amp == std::string_view::npos) return;
        query.remove_prefix(amp + 1);
    }
}

bool needs_decoding(std::string_view raw) {
    const char* end = raw.data() + raw.size();
    return find_either(raw.data(), end, '%', '+') != end;
}

}  // namespace

std::optional<std::string_view> query_param_raw(std::string_view target, std::string_view name) {
    const auto query = query_of(target);
    if (!query) return std::nullopt;
    std::optional<std::string_view> out;
    for_each_pair(*query, [&](std::string_view rest) {
        out = value_if_named(rest, name);
        return out.has_value();
    });
    return out;
}

std::string_view decode_param(std::string_view raw, std::string& scratch) {
    if (!needs_decoding(raw)) return raw;
    scratch = percent_decode(raw);
    return scratch;
}

std::optional<std::string> query_param(std::string_view target, std::string_view name) {
    const auto raw = query_param_raw(target, name);
    if (!raw) return std::nullopt;
    return percent_decode(*raw);
}

// One pass over the target, the same reading as path_under, query_of and
// value_if_named above, written for the request path (affinity sid reads it
// on every request): one memchr for '?', one for '#', one per pair for '&'
// (only while a wanted name is still missing), names compared in place.
EioQuery eio_query(std::string_view target, std::string_view sid_path,
                   std::string_view sid_param) {
    EioQuery out;
    const char* const begin = target.data();
    const char* const end = begin + target.size();
    const auto find = [](const char* from, const char* to, char c) {
        return from == to ? nullptr
                          : static_cast<const char*>(
                                std::memchr(from, c, static_cast<std::size_t>(to - from)));
    };
    const char* mark = find(begin, end, '?');
    const std::string_view path(begin, static_cast<std::size_t>((mark ? mark : end) - begin));
    out.under_path = path.starts_with(sid_path) ||
                     (!sid_path.empty() && sid_path.back() == '/' &&
                      path == sid_path.substr(0, sid_path.size() - 1));
    if (!out.under_path || !mark) return out;
    const char* p = mark + 1;
    const char* qend = end;
    if (const char* h = find(p, end, '#')) qend = h;
    constexpr std::string_view kTransport = "transport";
    // The raw value of the pair at p named `name`, else nullopt (value_if_named).
    const auto named = [&](std::string_view name,
                           const char* pair_end) -> std::optional<std::string_view> {
        const auto len = static_cast<std::size_t>(pair_end - p);
        if (len < name.size()) return std::nullopt;
        if (!name.empty() && (*p != name.front() || std::memcmp(p, name.data(), name.size()) != 0))
            return std::nullopt;
        if (len == name.size()) return std::string_view();
        if (p[name.size()] != '=') return std::nullopt;
        return std::string_view(p + name.size() + 1, len - name.size() - 1);
    };
    while (p < qend) {
        const char* amp = find(p, qend, '&');
        const char* pair_end = amp ? amp : qend;
        if (!out.sid) out.sid = named(sid_param, pair_end);
        if (!out.transport) out.transport = named(kTransport, pair_end);
        if ((out.sid && out.transport) || !amp) break;
        p = amp + 1;
    }
    return out;
}

bool param_equals(std::string_view raw, std::string_view text) {
    if (!needs_decoding(raw)) return raw == text;
    return percent_decode(raw) == text;
}

bool path_under(std::string_view target, std::string_view prefix) {
    std::string_view path = target.substr(0, target.find('?'));
    if (path.starts_with(prefix)) return true;
    return !prefix.empty() && prefix.back() == '/' && path == prefix.substr(0, prefix.size() - 1);
}

OpenPacketParser::State OpenPacketParser::feed(std::string_view bytes) {
    if (state_ != State::need_more) return state_;
    const std::size_t room = kMaxOpenPacket - buf_.size();
    buf_.append(bytes.substr(0, room));
    state_ = parse();
    if (state_ == State::need_more && buf_.size() >= kMaxOpenPacket) state_ = State::not_open;
    if (state_ != State::need_more) std::string().swap(buf_);
    return state_;
}

// Skips the EIO=3 payload framing, checks the packet is an open packet
// ('0' then a JSON object) and reads the "sid" string member.
OpenPacketParser::State OpenPacketParser::parse() {
    std::string_view s = buf_;
    std::size_t i = 0;
    if (!s.empty() && (s[0] == '\x00' || s[0] == '\x01')) {  // EIO=3 binary payload framing
        i = 1;
        while (i < s.size() && static_cast<unsigned char>(s[i]) <= 9) ++i;
        if (i == s.size()) return State::need_more;
        if (static_cast<unsigned char>(s[i]) != 0xff) return State::not_open;
        ++i;
    } else if (!s.empty() && is_digit(s[0]) && s[0] != '0') {  // EIO=3 text: "96:0{..."
        while (i < s.size() && is_digit(s[i])) ++i;
        if (i == s.size()) return State::need_more;
        if (s[i] != ':') return State::not_open;
        ++i;
    } else if (s.size() >= 2 && s[0] == '0' && is_digit(s[1])) {
        return State::not_open;
    }
    if (i + 2 > s.size()) return State::need_more;
    if (s[i] != '0' || s[i + 1] != '{') return State::not_open;
    const auto key = s.find("\"sid\"", i);
    if (key == std::string_view::npos) return State::need_more;
    std::size_t j = key + 5;
    while (j < s.size() && (s[j] == ' ' || s[j] == ':' || s[j] == '\t')) ++j;
    if (j >= s.size()) return State::need_more;
    if (s[j] != '"') return State::not_open;
    std::string sid;
    for (++j; j < s.size(); ++j) {
        if (s[j] == '"') {
            if (sid.empty()) return State::not_open;
            sid_ = std::move(sid);
            return State::found;
        }
        if (s[j] == '\\') {
            if (++j >= s.size()) return State::need_more;
        }
        sid.push_back(s[j]);
    }
    return State::need_more;
}

}  // namespace tether::balance
