// Engine.IO sid extraction; see engineio.hpp.
#include "tether/balance/engineio.hpp"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>

#include "tether/core/bytes.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

// The first byte in [p, end) equal to `a` or `b`, or end; a and b are not
// '\0'. `floor` <= p is the lowest address that may be read: a last step of
// fewer bytes than a whole one reads the whole step that ends at `end` and
// drops the bytes before p, so no byte outside [floor, end) is read and no
// step goes byte by byte once end - floor is at least a step.
// Sixteen bytes per step with SSE2 (every x86-64 has it): compare, or,
// movemask. Elsewhere (or for a string of 8..15 bytes) eight bytes per step on
// little-endian machines: a byte equal to c is a zero byte of w ^ c*ones, and
// (x - ones) & ~x & highs marks the lowest zero byte of x exactly (a mark
// above it may be a borrow's; only the lowest is used), as in Sean Anderson's
// "Bit Twiddling Hacks" (haszero); the last short step shifts out the bytes
// before p (zero bytes come in at the top, above every byte looked at, and
// match neither a nor b).
[[gnu::always_inline]] inline const char* find_either(const char* p, const char* end, char a,
                                                      char b, const char* floor) {
#if defined(__SSE2__)
    if (end - floor >= 16) {
        const __m128i va = _mm_set1_epi8(a);
        const __m128i vb = _mm_set1_epi8(b);
        const auto hits = [&](const char* at) {
            const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(at));
            return static_cast<unsigned>(
                _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, va), _mm_cmpeq_epi8(v, vb))));
        };
        for (; end - p >= 16; p += 16)
            if (const unsigned h = hits(p)) return p + std::countr_zero(h);
        if (p == end) return end;
        const unsigned h = hits(end - 16) >> (16 - (end - p));  // 1..15 bytes before p out
        return h ? p + std::countr_zero(h) : end;
    }
#endif
    if constexpr (std::endian::native == std::endian::little) {
        constexpr std::uint64_t ones = 0x0101010101010101ull;
        constexpr std::uint64_t highs = 0x8080808080808080ull;
        const std::uint64_t wa = ones * static_cast<unsigned char>(a);
        const std::uint64_t wb = ones * static_cast<unsigned char>(b);
        const auto first_hit = [&](std::uint64_t w) {
            const std::uint64_t xa = w ^ wa;
            const std::uint64_t xb = w ^ wb;
            return ((xa - ones) & ~xa & highs) | ((xb - ones) & ~xb & highs);
        };
        for (; end - p >= 8; p += 8) {
            std::uint64_t w;
            std::memcpy(&w, p, 8);
            if (const std::uint64_t hit = first_hit(w)) return p + std::countr_zero(hit) / 8;
        }
        if (p == end) return end;
        if (end - floor >= 8) {
            std::uint64_t w;
            std::memcpy(&w, end - 8, 8);
            w >>= 8 * (8 - (end - p));  // 1..7 bytes before p out
            const std::uint64_t hit = first_hit(w);
            return hit ? p + std::countr_zero(hit) / 8 : end;
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
    return find_either(raw.data(), end, '%', '+', raw.data()) != end;
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

namespace {

// If the pair [at, end) is named `name` ("name=value" or "name"), sets `value`
// to its raw value (value_if_named) and returns true. The name is compared
// byte by byte after its first byte (names are a few bytes, fewer than a
// library call's own work), or by memcmp of a size known at compile time,
// which the compiler writes as a few wide compares.
template <std::size_t N = 0>
[[gnu::always_inline]] inline bool take_named(const char* at, const char* end, std::string_view name,
                                              std::optional<std::string_view>& value) {
    // The caller's at is before the target's end, so its first byte may be
    // read even when the pair is empty ("&&"); it tells most pairs apart
    // before their length does.
    if (!name.empty() && at[0] != name.front()) return false;
    const std::size_t len = static_cast<std::size_t>(end - at);
    if constexpr (N > 0) {
        if (len < N || std::memcmp(at, name.data(), N) != 0) return false;
    } else {
        if (len < name.size()) return false;
        for (std::size_t i = 1; i < name.size(); ++i)
            if (at[i] != name[i]) return false;
    }
    if (len == name.size()) {
        value = std::string_view();
        return true;
    }
    if (at[name.size()] != '=') return false;
    value = std::string_view(at + name.size() + 1, len - name.size() - 1);
    return true;
}

}  // namespace

// One pass over the target, the same reading as path_under, query_of and
// value_if_named above, written for the request path (affinity sid reads it
// on every request). The path is compared with sid_path first, so a target
// outside it is not scanned at all; then the first '?' (the path's end) is
// found, and from it each pair's end ('&', or '#' where the query ends),
// sixteen bytes per step (find_either), names compared in place, until both
// names were found. (Marking the whole query's '&' and '#' once, in 64- or
// 16-byte blocks, and walking the marks cost more instructions per request
// than these short straight scans: a pair is one or two steps.)
EioQuery eio_query(std::string_view target, std::string_view sid_path,
                   std::string_view sid_param) {
    EioQuery out;
    const char* const t = target.data();
    const char* const e = t + target.size();
    const std::size_t n = target.size();
    const std::size_t pl = sid_path.size();
    // The path, [0, first '?'), starts with sid_path, or is sid_path without
    // its last '/'. Either way the target starts with sid_path's first pl - 1
    // bytes; which of the two holds is told by where the first '?' is.
    bool whole = false;
    if (n >= pl && core::same_bytes(t, sid_path.data(), pl))
        whole = true;
    else if (pl == 0 || sid_path.back() != '/' || n < pl - 1 ||
             !core::same_bytes(t, sid_path.data(), pl - 1))
        return out;
    const char* const mark = find_either(t, e, '?', '?', t);
    const std::size_t at_mark = static_cast<std::size_t>(mark - t);
    // A '?' inside the matched prefix ends the path before it: not under.
    out.under_path = whole ? at_mark >= pl : at_mark == pl - 1;
    if (!out.under_path || mark == e) return out;
    constexpr std::string_view kTransport = "transport";
    // Each pair (none is empty and last, as in for_each_pair).
    for (const char* at = mark + 1; at < e && *at != '#';) {
        const char* const end = find_either(at, e, '&', '#', t);
        if (!out.sid) take_named(at, end, sid_param, out.sid);
        if (!out.transport) take_named<kTransport.size()>(at, end, kTransport, out.transport);
        if ((out.sid && out.transport) || end == e || *end == '#') break;
        at = end + 1;
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
