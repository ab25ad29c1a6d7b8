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
// '\0'. Eight bytes per step on little-endian machines: a byte equal to c is a
// zero byte of w ^ c*ones, and (x - ones) & ~x & highs marks the lowest zero
// byte of x exactly (a mark above it may be a borrow's; only the lowest is
// used), as in Sean Anderson's "Bit Twiddling Hacks" (haszero). `floor` <= p
// is the lowest address that may be read: the last step, of fewer than eight
// bytes, reads the eight that end at `end` and shifts out those before p
// (zero bytes come in at the top, above every byte looked at, and match
// neither a nor b), so no step goes byte by byte once end - floor >= 8.
const char* find_either(const char* p, const char* end, char a, char b, const char* floor) {
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

// Which bytes of [p, p + n), n <= 64, are '?' (question) and '&' or '#'
// (stops): bit i for byte i. Sixteen bytes per step (SSE2, which every
// x86-64 has; elsewhere byte by byte). `floor` <= p is the lowest address
// that may be read: a last piece of fewer than sixteen bytes is read as the
// sixteen that end at p + n, its marks shifted down (or, without sixteen
// bytes from floor, copied into zeros, which are no mark).
struct Marks {
    std::uint64_t question = 0;
    std::uint64_t stops = 0;
};

[[gnu::always_inline]] inline Marks marks_of(const char* p, std::size_t n, const char* floor) {
    Marks m;
#if defined(__SSE2__)
    const __m128i question = _mm_set1_epi8('?');
    const __m128i amp = _mm_set1_epi8('&');
    const __m128i hash = _mm_set1_epi8('#');
    const auto add = [&](__m128i v, unsigned drop, std::size_t at) {
        const auto mask = [&](__m128i eq) {
            return std::uint64_t{static_cast<unsigned>(_mm_movemask_epi8(eq)) >> drop} << at;
        };
        m.question |= mask(_mm_cmpeq_epi8(v, question));
        m.stops |= mask(_mm_or_si128(_mm_cmpeq_epi8(v, amp), _mm_cmpeq_epi8(v, hash)));
    };
    std::size_t i = 0;
    for (; i + 16 <= n; i += 16)
        add(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i)), 0, i);
    if (i < n) {
        const std::size_t rest = n - i;
        if (p + n - floor >= 16) {
            add(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + n - 16)),
                static_cast<unsigned>(16 - rest), i);
        } else {
            alignas(16) char piece[16] = {};
            std::memcpy(piece, p + i, rest);
            add(_mm_load_si128(reinterpret_cast<const __m128i*>(piece)), 0, i);
        }
    }
#else
    for (std::size_t i = 0; i < n; ++i) {
        m.question |= std::uint64_t{p[i] == '?'} << i;
        m.stops |= std::uint64_t{p[i] == '&' || p[i] == '#'} << i;
    }
#endif
    return m;
}

// If the pair [at, end) of `t` is named `name` ("name=value" or "name"), sets
// `value` to its raw value (value_if_named) and returns true. The name is
// compared byte by byte after its first byte (names are a few bytes, fewer
// than a library call's own work), or by memcmp of a size known at compile
// time, which the compiler writes as a few wide compares.
template <std::size_t N = 0>
bool take_named(const char* t, std::size_t at, std::size_t end, std::string_view name,
                std::optional<std::string_view>& value) {
    const std::size_t len = end - at;
    if constexpr (N > 0) {
        if (len < N || std::memcmp(t + at, name.data(), N) != 0) return false;
    } else {
        if (len < name.size() || (!name.empty() && t[at] != name.front())) return false;
        for (std::size_t i = 1; i < name.size(); ++i)
            if (t[at + i] != name[i]) return false;
    }
    if (len == name.size()) {
        value = std::string_view();
        return true;
    }
    if (t[at + name.size()] != '=') return false;
    value = std::string_view(t + at + name.size() + 1, len - name.size() - 1);
    return true;
}

}  // namespace

// One pass over the target, the same reading as path_under, query_of and
// value_if_named above, written for the request path (affinity sid reads it
// on every request): the target's '?', '&' and '#' marked sixteen bytes per
// step (64 bytes at a time, more only for longer targets), then from the
// first '?' pair by pair (each ends at the next '&', or at a '#', where the
// query ends), names compared in place, until both names were found.
EioQuery eio_query(std::string_view target, std::string_view sid_path,
                   std::string_view sid_param) {
    EioQuery out;
    const char* const t = target.data();
    const std::size_t n = target.size();
    std::size_t base = 0;  // of the 64 bytes marked in m
    Marks m = marks_of(t, std::min<std::size_t>(n, 64), t);
    const auto next_block = [&] {
        base += 64;
        m = marks_of(t + base, std::min<std::size_t>(n - base, 64), t);
    };
    while (m.question == 0 && n - base > 64) next_block();
    const std::size_t mark = m.question ? base + static_cast<std::size_t>(std::countr_zero(m.question)) : n;
    // The path, [0, mark), starts with sid_path, or is sid_path without its last '/'.
    const std::size_t pl = sid_path.size();
    out.under_path = (mark >= pl && core::same_bytes(t, sid_path.data(), pl)) ||
                     (pl > 0 && mark == pl - 1 && sid_path.back() == '/' &&
                      core::same_bytes(t, sid_path.data(), pl - 1));
    if (!out.under_path || mark == n) return out;
    // The stops after the '?' (mark - base < 64; a shift by 64 would be undefined).
    std::uint64_t stops = m.stops & (~std::uint64_t{1} << (mark - base));
    constexpr std::string_view kTransport = "transport";
    // Each pair (none is empty and last, as in for_each_pair).
    for (std::size_t at = mark + 1; at < n && t[at] != '#';) {
        while (stops == 0 && n - base > 64) {
            next_block();
            stops = m.stops;
        }
        const std::size_t end = stops ? base + static_cast<std::size_t>(std::countr_zero(stops)) : n;
        stops &= stops - 1;
        if (!out.sid) take_named(t, at, end, sid_param, out.sid);
        if (!out.transport) take_named<kTransport.size()>(t, at, end, kTransport, out.transport);
        if ((out.sid && out.transport) || end == n || t[end] == '#') break;
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
