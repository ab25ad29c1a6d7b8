// Beast's request parser with the refusals Beast does not make itself, found
// while the head is parsed (used by the client session on its I/O thread, one
// parser per request, no sharing):
//   - obs-fold (a field line continued on the next line starting with SP or
//     HTAB): Beast joins it silently; RFC 9112 5.2 lets a server refuse it and
//     tether does, so no folded Transfer-Encoding or Host is ever reinterpreted;
//   - Content_Length / Transfer_Encoding, which some backends (CGI-style
//     servers) read as the real framing fields;
//   - chunk extensions longer than kMaxChunkExtension bytes per chunk (Beast
//     accepts any length that fits the buffer).
// Each fails the parse with a Beast error, answered 400 like any bad head.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include <boost/beast/http/parser.hpp>

#include "tether/http/headers.hpp"

namespace tether::http {

inline constexpr std::size_t kMaxChunkExtension = 1024;

/// True when `value` (as handed to on_field_impl) does not follow `name`'s
/// colon and optional whitespace on the same line: Beast unfolded it.
bool folded_field(std::string_view name, std::string_view value);

/// Content_Length or Transfer_Encoding (any case).
bool framing_lookalike(std::string_view name);

template <class Body>
class StrictRequestParser : public boost::beast::http::request_parser<Body, FieldsAllocator> {
    using base = boost::beast::http::request_parser<Body, FieldsAllocator>;

public:
    StrictRequestParser() = default;

private:
    void on_field_impl(boost::beast::http::field f, boost::beast::string_view name,
                       boost::beast::string_view value, boost::beast::error_code& ec) override {
        const std::string_view n(name.data(), name.size());
        const std::string_view v(value.data(), value.size());
        if (folded_field(n, v) || framing_lookalike(n)) {
            ec = boost::beast::http::error::bad_value;
            return;
        }
        this->get().insert(f, name, value);
    }

    void on_chunk_header_impl(std::uint64_t, boost::beast::string_view extensions,
                              boost::beast::error_code& ec) override {
        if (extensions.size() > kMaxChunkExtension)
            ec = boost::beast::http::error::bad_chunk_extension;
    }
};

}  // namespace tether::http
