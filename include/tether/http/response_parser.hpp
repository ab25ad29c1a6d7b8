// A backend's response, parsed: tether's own parser for the usual heads, with
// Beast's parser (detail::BeastResponseParser) for everything else. The
// interface is the part of Beast's response_parser<buffer_body> the session
// and the relays use (put, put_eof, the framing queries, get().body()), with
// the same results: a head is taken by tether's parser only when it is all in
// the first buffer put, within header_limit, and made only of what it knows
// to be read the same way by Beast (a status line "HTTP/1.0" or "HTTP/1.1",
// fields without obs-fold, one Content-Length of plain digits, one
// Transfer-Encoding "chunked" without Content-Length, a Connection of one
// token, ...; response_parser.cpp has the list). Any other head, including a
// head that is malformed, ambiguous or over the limit, or one that comes in
// pieces, goes to Beast's parser from its first byte, which then answers
// everything for that response exactly as it did before: Beast's checks stay
// the smuggling defence for those. A body by Content-Length or until the
// close is relayed by this parser as Beast's buffer_body reader would; a
// chunked body by Beast's parser, started past a short head of its own
// ("Transfer-Encoding: chunked") so that it parses the chunks and trailers as
// it would after the real head. tools/fuzz/fuzz_response_head.cpp compares the
// two parsers' verdicts, framing, fields and body bytes on any input.
// The fields go to a FlatFields (names and values copied, in the order they
// came) instead of Beast's basic_fields. One parser per response, on the
// session's worker.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/optional/optional.hpp>

#include "tether/http/flat_fields.hpp"
#include "tether/http/headers.hpp"

namespace tether::http {

namespace detail {
class BeastResponseParser;
}

/// What ResponseParser::get() shows: the status line, the fields, and the
/// body buffer a relay lends (Beast's buffer_body value).
class ResponseMessage {
public:
    unsigned result_int() const { return status_; }
    unsigned version() const { return version_; }
    /// As Beast's header::reason(): the standard one when the backend sent none.
    std::string_view reason() const {
        const std::string_view r = fields_.reason();
        if (!r.empty()) return r;
        const auto s = bhttp::obsolete_reason(static_cast<bhttp::status>(status_));
        return {s.data(), s.size()};
    }
    StatusLine status_line() const { return {status_, fields_.reason()}; }
    const FlatFields& fields() const { return fields_; }
    bhttp::buffer_body::value_type& body() { return body_; }

private:
    friend class ResponseParser;
    friend class detail::BeastResponseParser;
    unsigned status_ = 0;
    unsigned version_ = 0;
    FlatFields fields_;
    bhttp::buffer_body::value_type body_;
};

namespace detail {

/// Beast's response parser, its status line and fields into a ResponseMessage
/// (none while `to` is null). ResponseParser's fallback; by itself, what the
/// session used before tether's own parser.
class BeastResponseParser : public bhttp::response_parser<bhttp::buffer_body, FieldsAllocator> {
public:
    explicit BeastResponseParser(ResponseMessage* to) : to_(to) {}
    void send_to(ResponseMessage* to) { to_ = to; }

private:
    void on_response_impl(int code, boost::beast::string_view reason, int version,
                          boost::beast::error_code& ec) override {
        ec = {};
        if (!to_) return;
        to_->status_ = static_cast<unsigned>(code);
        to_->version_ = static_cast<unsigned>(version);
        to_->fields_.set_reason(std::string_view(reason.data(), reason.size()));
    }
    void on_field_impl(bhttp::field f, boost::beast::string_view name,
                       boost::beast::string_view value, boost::beast::error_code&) override {
        if (to_)
            to_->fields_.add(f, std::string_view(name.data(), name.size()),
                             std::string_view(value.data(), value.size()));
    }

    ResponseMessage* to_;
};

}  // namespace detail

class ResponseParser {
public:
    ResponseParser() = default;
    ResponseParser(const ResponseParser&) = delete;
    ResponseParser& operator=(const ResponseParser&) = delete;

    // Settings, before the first put (Beast's defaults).
    void header_limit(std::uint32_t v) { header_limit_ = v; }
    void body_limit(boost::optional<std::uint64_t> v) { body_limit_ = v; }
    void skip(bool v) { skip_ = v; }  ///< no body whatever the head says (a HEAD request's)

    /// Beast's basic_parser::put: parses from `buffer`, returns the bytes used.
    std::size_t put(boost::asio::const_buffer buffer, boost::beast::error_code& ec);
    /// Beast's basic_parser::put_eof: the connection ended.
    void put_eof(boost::beast::error_code& ec);

    bool got_some() const { return state_ != State::nothing_yet; }
    bool is_header_done() const {
        return state_ == State::beast ? beast_->is_header_done() : state_ != State::nothing_yet;
    }
    bool is_done() const {
        if (state_ == State::beast || state_ == State::chunked) return beast_->is_done();
        return state_ == State::complete;
    }
    // The framing (undefined before the head is done, as Beast's).
    bool keep_alive() const;
    bool need_eof() const { return by_beast() ? beast_->need_eof() : (f_ & kNeedEof) != 0; }
    bool chunked() const { return by_beast() ? beast_->chunked() : (f_ & kChunked) != 0; }
    bool upgrade() const { return by_beast() ? beast_->upgrade() : (f_ & kConnUpgrade) != 0; }
    boost::optional<std::uint64_t> content_length() const;
    boost::optional<std::uint64_t> content_length_remaining() const;

    ResponseMessage& get() { return msg_; }
    const ResponseMessage& get() const { return msg_; }
    /// The head's fields, in the order they came.
    const FlatFields& fields() const { return msg_.fields_; }
    /// True when Beast's parser read this head (not one of the usual ones).
    bool parsed_by_beast() const { return by_beast(); }

private:
    enum class State : std::uint8_t {
        nothing_yet,
        length,    ///< a body by Content-Length, len_ bytes to come
        to_eof,    ///< a body until the connection ends
        complete,
        chunked,   ///< a chunked body, parsed by beast_ past its own head
        beast,     ///< all of it by beast_
    };
    static constexpr unsigned kHttp11 = 1, kConnClose = 2, kConnKeepAlive = 4, kConnUpgrade = 8,
                              kContentLength = 16, kChunked = 32, kUpgrade = 64, kNeedEof = 128;

    bool by_beast() const { return state_ == State::beast; }
    std::size_t scan_head(const char* p, std::size_t n);
    bool framing_field(bhttp::field f, std::string_view value);
    bool finish_head();
    std::size_t take_body(const char* p, std::size_t n, boost::beast::error_code& ec);
    std::size_t beast_put(boost::asio::const_buffer buffer, boost::beast::error_code& ec);

    State state_ = State::nothing_yet;
    bool skip_ = false;
    unsigned f_ = 0;
    std::uint32_t header_limit_ = 8192;
    boost::optional<std::uint64_t> body_limit_ = std::uint64_t{8} * 1024 * 1024;
    std::uint64_t len_ = 0;  ///< the Content-Length, then what is left of it
    std::uint64_t content_length_ = 0;
    ResponseMessage msg_;
    std::optional<detail::BeastResponseParser> beast_;
};

/// write_response_head for what ResponseParser parsed.
inline void write_response_head(const ResponseMessage& res, const FlatFields& fields,
                                unsigned client_version, const ResponseRewrite& rw,
                                std::string& out) {
    write_response_head(res.status_line(), fields, client_version, rw, out);
}

}  // namespace tether::http
