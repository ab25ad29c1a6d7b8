// Beast's response parser (buffer_body: the body goes into the relay's
// borrowed buffer) with the head's fields kept in a FlatFields instead of
// the message's basic_fields: status, version and reason stay in get(), the
// fields are in fields() (get() holds none). Beast's framing state
// (content_length(), chunked(), keep_alive(), need_eof(), upgrade) is the
// parser's own and is unchanged. One parser per response, on the session's
// worker.
#pragma once

#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>

#include "tether/http/flat_fields.hpp"
#include "tether/http/headers.hpp"

namespace tether::http {

class ResponseParser : public bhttp::response_parser<bhttp::buffer_body, FieldsAllocator> {
public:
    ResponseParser() = default;

    /// The head's fields, in the order they came.
    const FlatFields& fields() const { return fields_; }

private:
    void on_field_impl(bhttp::field f, boost::beast::string_view name,
                       boost::beast::string_view value, boost::beast::error_code&) override {
        fields_.add(f, std::string_view(name.data(), name.size()),
                    std::string_view(value.data(), value.size()));
    }

    FlatFields fields_;
};

}  // namespace tether::http
