// ResponseParser; see response_parser.hpp. The head tether's parser takes
// (anything else goes to Beast's parser whole, which then decides):
//   status-line = "HTTP/1." ("0" / "1") SP 3DIGIT SP reason CRLF,
//     reason = *( HTAB / SP / VCHAR / obs-text )
//   field-line  = 1*tchar ":" OWS value OWS CRLF, the value's characters those
//     of the reason, the next line not starting with SP or HTAB (no obs-fold)
//   the empty line, within header_limit bytes of the first buffer put;
// and of the fields Beast's parser reads for the framing (by Beast's field
// enum, as Beast matches the name):
//   Connection, Proxy-Connection: one token (sets close, keep-alive or
//     upgrade as Beast's does for those words);
//   Content-Length: 1 to 18 digits, the first one, no Transfer-Encoding before;
//   Transfer-Encoding: "chunked" (any case), the first one, no
//     Content-Length before;
//   Upgrade: anything.
// Each of these is read by Beast's basic_parser to the same result: its
// status line, field and framing rules (boost/beast/http/impl/basic_parser.ipp,
// detail/basic_parser.ipp, Boost 1.81) accept all of it and derive the same
// flags, and the body states below are its parse_body and
// parse_body_to_eof with buffer_body's reader.
#include "tether/http/response_parser.hpp"

#include <algorithm>
#include <array>
#include <cstring>

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>

namespace tether::http {

namespace {

using boost::beast::iequals;
using error = bhttp::error;

constexpr std::array<bool, 256> kTokenChar = [] {
    std::array<bool, 256> t{};
    for (int c = '0'; c <= '9'; ++c) t[c] = true;
    for (int c = 'a'; c <= 'z'; ++c) t[c] = t[c - 'a' + 'A'] = true;
    for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
    return t;
}();

// A reason's or a field value's characters (Beast's parse_token_to_eol):
// HTAB, SP to '~', and obs-text.
constexpr std::array<bool, 256> kTextChar = [] {
    std::array<bool, 256> t{};
    t['\t'] = true;
    for (int c = 0x20; c < 0x7f; ++c) t[c] = true;
    for (int c = 0x80; c < 0x100; ++c) t[c] = true;
    return t;
}();

inline bool is_ws(char c) { return c == ' ' || c == '\t'; }
inline bool is_digit(char c) { return c >= '0' && c <= '9'; }

// The CR of the CRLF ending the text that starts at p, or null when a
// character other than text comes first or the line does not end before `end`.
inline const char* text_to_crlf(const char* p, const char* end) {
    while (p < end && kTextChar[static_cast<unsigned char>(*p)]) ++p;
    if (end - p < 2 || p[0] != '\r' || p[1] != '\n') return nullptr;
    return p;
}

// Beast's field enum of a name, through a small cache per thread of the
// names seen in the case they came in (a backend sends the same few names
// every time); string_to_field hashes the name and compares it with its
// table's entry, ~100 instructions a field (callgrind), this ~40 when cached.
// The enum is a function of the name's bytes, so a cached one is the one
// string_to_field gives.
bhttp::field field_of(std::string_view name) {
    constexpr std::size_t kCachedSize = 30;
    struct Slot {
        std::uint8_t size = 0;
        bhttp::field f = bhttp::field::unknown;
        char text[kCachedSize] = {};
    };
    thread_local std::array<Slot, 64> cache;
    if (name.size() > kCachedSize || name.empty()) return bhttp::string_to_field(name);
    const auto at = [&](std::size_t i) { return static_cast<unsigned char>(name[i]); };
    const std::size_t n = name.size();
    Slot& s = cache[(n * 7 + at(0) * 31 + at(n / 2) * 3 + at(n - 1)) & 63];
    if (s.size == n && std::memcmp(s.text, name.data(), n) == 0) return s.f;
    s.f = bhttp::string_to_field(name);
    s.size = static_cast<std::uint8_t>(n);
    std::memcpy(s.text, name.data(), n);
    return s.f;
}

bool one_token(std::string_view v) {
    if (v.empty()) return false;
    for (char c : v)
        if (!kTokenChar[static_cast<unsigned char>(c)]) return false;
    return true;
}

}  // namespace

// One of the fields Beast's parser reads for the framing, if it is one tether's
// parser takes: its flags set as Beast's do_field sets them. False: leave the
// head to Beast.
bool ResponseParser::framing_field(bhttp::field f, std::string_view value) {
    switch (f) {
        case bhttp::field::connection:
        case bhttp::field::proxy_connection:
            if (!one_token(value)) return false;
            if (iequals(value, "close")) f_ |= kConnClose;
            else if (iequals(value, "keep-alive")) f_ |= kConnKeepAlive;
            else if (iequals(value, "upgrade")) f_ |= kConnUpgrade;
            return true;
        case bhttp::field::content_length: {
            if ((f_ & (kContentLength | kChunked)) || value.empty() || value.size() > 18)
                return false;
            std::uint64_t n = 0;
            for (char c : value) {
                if (!is_digit(c)) return false;
                n = n * 10 + static_cast<unsigned>(c - '0');
            }
            f_ |= kContentLength;
            len_ = content_length_ = n;
            return true;
        }
        case bhttp::field::transfer_encoding:
            if ((f_ & (kContentLength | kChunked)) || !iequals(value, "chunked")) return false;
            f_ |= kChunked;
            return true;
        case bhttp::field::upgrade:
            f_ |= kUpgrade;
            return true;
        default:
            return true;
    }
}

// The head at p if tether's parser takes it (see the top of this file): its
// size, with the status line, fields and framing kept. 0: not taken, nothing
// kept.
std::size_t ResponseParser::scan_head(const char* const begin, std::size_t n) {
    const char* const end = begin + n;
    const char* p = begin;
    FlatFields& fields = msg_.fields_;
    const auto refuse = [&] {
        fields.clear();
        msg_.status_ = msg_.version_ = 0;
        f_ = 0;
        len_ = content_length_ = 0;
        return std::size_t{0};
    };
    // "HTTP/1.x 200 " at least, then the reason and CRLF.
    if (n < 15 || std::memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') ||
        p[8] != ' ' || !is_digit(p[9]) || !is_digit(p[10]) || !is_digit(p[11]) || p[12] != ' ')
        return 0;
    const char* cr = text_to_crlf(p + 13, end);
    if (!cr) return 0;
    msg_.version_ = p[7] == '1' ? 11 : 10;
    msg_.status_ = static_cast<unsigned>((p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0'));
    if (msg_.version_ == 11) f_ |= kHttp11;
    fields.set_reason_at(13, static_cast<std::uint32_t>(cr - (p + 13)));
    p = cr + 2;
    for (;;) {
        if (end - p < 2) return refuse();
        if (p[0] == '\r') {
            if (p[1] != '\n') return refuse();
            p += 2;
            break;
        }
        const char* name = p;
        while (p < end && kTokenChar[static_cast<unsigned char>(*p)]) ++p;
        if (p == name || p == end || *p != ':') return refuse();
        const std::string_view name_sv(name, static_cast<std::size_t>(p - name));
        ++p;
        while (p < end && is_ws(*p)) ++p;
        const char* value = p;
        cr = text_to_crlf(p, end);
        if (!cr) return refuse();
        const char* value_end = cr;
        while (value_end > value && is_ws(value_end[-1])) --value_end;
        p = cr + 2;
        if (p == end || is_ws(*p)) return refuse();  // obs-fold, or no empty line yet
        const std::string_view value_sv(value, static_cast<std::size_t>(value_end - value));
        const bhttp::field f = field_of(name_sv);
        if (!framing_field(f, value_sv)) return refuse();
        fields.add_at(f, static_cast<std::uint32_t>(name - begin),
                      static_cast<std::uint32_t>(name_sv.size()),
                      static_cast<std::uint32_t>(value - begin),
                      static_cast<std::uint32_t>(value_sv.size()));
    }
    if (!finish_head()) return refuse();
    const std::size_t size = static_cast<std::size_t>(p - begin);
    fields.set_text(std::string_view(begin, size));  // where add_at's offsets are
    return size;
}

// Beast's finish_header for a response: the body's framing. False: a head
// Beast's parser answers with an error (a Content-Length over body_limit).
bool ResponseParser::finish_head() {
    const unsigned status = msg_.status_;
    if (skip_ || status / 100 == 1 || status == 204 || status == 304) {
        state_ = State::complete;
    } else if (f_ & kContentLength) {
        if (len_ > 0 && body_limit_ && len_ > *body_limit_) return false;
        state_ = len_ > 0 ? State::length : State::complete;
    } else if (f_ & kChunked) {
        // Beast's parser at the first chunk of this body, as after the real
        // head: its state there depends on the chunked framing and
        // body_limit only (the status, version and Connection flags it keeps
        // are not read again; keep_alive() and the like are answered here).
        static constexpr std::string_view kHead = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        beast_.emplace(nullptr);
        beast_->body_limit(body_limit_);
        boost::beast::error_code ec;
        beast_->put(boost::asio::buffer(kHead.data(), kHead.size()), ec);
        if (ec || !beast_->chunked() || beast_->is_done()) {  // not expected
            beast_.reset();
            return false;
        }
        beast_->send_to(&msg_);  // the trailer's fields, as Beast's parser adds them
        state_ = State::chunked;
    } else {
        f_ |= kNeedEof;
        state_ = State::to_eof;
    }
    return true;
}

// buffer_body's reader: into the buffer lent by get().body(), need_buffer
// when it is full (or none).
std::size_t ResponseParser::take_body(const char* p, std::size_t n, boost::beast::error_code& ec) {
    auto& body = msg_.body_;
    if (!body.data) {
        ec = error::need_buffer;
        return 0;
    }
    const std::size_t took = std::min(n, body.size);
    if (took > 0) std::memcpy(body.data, p, took);
    body.data = static_cast<char*>(body.data) + took;
    body.size -= took;
    if (took == n) ec = {};
    else ec = error::need_buffer;
    return took;
}

std::size_t ResponseParser::beast_put(boost::asio::const_buffer buffer,
                                      boost::beast::error_code& ec) {
    beast_->get().body() = msg_.body_;
    const std::size_t used = beast_->put(buffer, ec);
    msg_.body_ = beast_->get().body();
    return used;
}

std::size_t ResponseParser::put(boost::asio::const_buffer buffer, boost::beast::error_code& ec) {
    const char* p = static_cast<const char*>(buffer.data());
    const std::size_t n = buffer.size();
    switch (state_) {
        case State::nothing_yet: {
            if (n == 0) {
                ec = error::need_more;
                return 0;
            }
            if (const std::size_t head = scan_head(p, std::min<std::size_t>(n, header_limit_))) {
                ec = {};
                return head;
            }
            beast_.emplace(&msg_);
            beast_->header_limit(header_limit_);
            beast_->body_limit(body_limit_);
            beast_->skip(skip_);
            state_ = State::beast;
            return beast_put(buffer, ec);
        }
        case State::length: {
            const std::size_t took = take_body(p, static_cast<std::size_t>(std::min<std::uint64_t>(len_, n)), ec);
            len_ -= took;
            if (!ec && len_ == 0) state_ = State::complete;
            return took;
        }
        case State::to_eof:
            if (body_limit_) {
                if (n > *body_limit_) {
                    ec = error::body_limit;
                    return 0;
                }
                *body_limit_ -= n;
            }
            return take_body(p, n, ec);
        case State::complete:
            ec = error::stale_parser;
            return 0;
        case State::chunked:
        case State::beast:
            return beast_put(buffer, ec);
    }
    return 0;
}

void ResponseParser::put_eof(boost::beast::error_code& ec) {
    switch (state_) {
        case State::chunked:
        case State::beast:
            beast_->put_eof(ec);
            return;
        case State::length:
            ec = error::partial_message;
            return;
        default:  // complete, until the end, or (never asked) nothing yet
            ec = {};
            state_ = State::complete;
            return;
    }
}

bool ResponseParser::keep_alive() const {
    if (by_beast()) return beast_->keep_alive();
    if (f_ & kHttp11) {
        if (f_ & kConnClose) return false;
    } else if (!(f_ & kConnKeepAlive)) {
        return false;
    }
    return (f_ & kNeedEof) == 0;
}

boost::optional<std::uint64_t> ResponseParser::content_length() const {
    if (by_beast()) return beast_->content_length();
    if (!(f_ & kContentLength)) return boost::none;
    return content_length_;
}

boost::optional<std::uint64_t> ResponseParser::content_length_remaining() const {
    if (by_beast()) return beast_->content_length_remaining();
    if (!(f_ & kContentLength)) return boost::none;
    return len_;
}

}  // namespace tether::http
