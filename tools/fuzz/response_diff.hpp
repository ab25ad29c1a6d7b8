// The differential drive of fuzz_response_head.cpp, shared with the unit
// tests (tests/unit/http/response_parser_rules_test.cpp): a response fed to a
// parser as the session feeds it, in pieces (each put with all that is
// buffered; need_more: the next piece; need_buffer: a fresh body buffer of
// the chosen size; put_eof at the end), with what it did at every step, the
// head, the framing read when the head is done, the body and the fields at
// the end, so that ResponseParser's Trace can be compared with Beast's own
// parser's (Reference). Single-threaded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>

#include "tether/http/response_parser.hpp"

namespace tether::http::diff {

namespace bhttp = boost::beast::http;

using FieldList = std::vector<std::tuple<int, std::string, std::string>>;

/// Beast's parser as it is, with the fields it hands over recorded in order.
class Reference : public bhttp::response_parser<bhttp::buffer_body> {
public:
    FieldList fields;

private:
    void on_field_impl(bhttp::field f, boost::beast::string_view name,
                       boost::beast::string_view value, boost::beast::error_code&) override {
        fields.emplace_back(static_cast<int>(f), std::string(name), std::string(value));
    }
};

inline FieldList fields_of(const ResponseParser& p) {
    FieldList out;
    for (const auto& f : p.fields())
        out.emplace_back(static_cast<int>(f.name()), std::string(f.name_string()),
                         std::string(f.value()));
    return out;
}
inline const FieldList& fields_of(const Reference& p) { return p.fields; }

inline std::tuple<unsigned, unsigned, std::string> status_of(const ResponseParser& p) {
    return {p.get().result_int(), p.get().version(), std::string(p.get().reason())};
}
inline std::tuple<unsigned, unsigned, std::string> status_of(const Reference& p) {
    return {p.get().result_int(), p.get().version(), std::string(p.get().reason())};
}

struct Trace {
    std::vector<std::tuple<std::size_t, int, bool, bool>> steps;  // used, error, head, done
    std::tuple<unsigned, unsigned, std::string> status;
    FieldList head_fields, all_fields;
    std::vector<std::uint64_t> framing;  // as read when the head is done
    std::string body;
    bool head_ok = false;  // the head parsed without an error
    bool operator==(const Trace&) const = default;
    /// The last step's error (0: none), e.g. Beast's verdict on a bad head.
    int error() const { return steps.empty() ? 0 : std::get<1>(steps.back()); }
};

struct Settings {
    bool skip = false;
    std::uint32_t header_limit = 8192;
    std::optional<boost::optional<std::uint64_t>> body_limit;  // unset: Beast's default
    std::size_t body_buffer = 4096;
};

template <class Parser>
std::vector<std::uint64_t> framing_of(const Parser& p) {
    const auto opt = [](boost::optional<std::uint64_t> v) { return v ? *v + 1 : 0; };
    return {p.keep_alive(), p.need_eof(), p.chunked(), p.upgrade(), opt(p.content_length()),
            opt(p.content_length_remaining())};
}

// Feeds `pieces` to p as the session would (see the top of this file).
template <class Parser>
Trace drive(Parser& p, const std::vector<std::string_view>& pieces, const Settings& s) {
    if (s.skip) p.skip(true);
    p.header_limit(s.header_limit);
    if (s.body_limit) p.body_limit(*s.body_limit);
    Trace t;
    std::string buf;
    std::size_t next = 0;
    std::vector<char> room(s.body_buffer);
    bool head_seen = false;
    const auto step = [&](std::size_t used, const boost::beast::error_code& ec) {
        t.steps.emplace_back(used, ec.value(), p.is_header_done(), p.is_done());
        if (!head_seen && p.is_header_done()) {
            head_seen = true;
            t.head_ok = !ec || ec == bhttp::error::need_buffer;
            t.status = status_of(p);
            t.head_fields = fields_of(p);
            t.framing = framing_of(p);
        }
    };
    for (int guard = 0; guard < 100000 && !p.is_done(); ++guard) {
        if (p.is_header_done()) {
            p.get().body().data = room.data();
            p.get().body().size = room.size();
        }
        boost::beast::error_code ec;
        if (buf.empty()) {
            if (next < pieces.size()) {
                buf.append(pieces[next++]);
                continue;
            }
            if (!p.got_some()) break;  // end_of_stream, as http_read.hpp
            p.put_eof(ec);
            step(0, ec);
            break;
        }
        const std::size_t used = p.put(boost::asio::buffer(buf.data(), buf.size()), ec);
        if (p.is_header_done() && p.get().body().data)
            t.body.append(room.data(), room.size() - p.get().body().size);
        step(used, ec);
        buf.erase(0, used);
        if (ec == bhttp::error::need_more) {
            if (next < pieces.size()) {
                buf.append(pieces[next++]);
                continue;
            }
            ec = {};
            p.put_eof(ec);
            step(0, ec);
            break;
        }
        if (ec && ec != bhttp::error::need_buffer) break;
    }
    if (p.is_header_done()) t.all_fields = fields_of(p);
    return t;
}

/// Both parsers' traces for one input.
inline std::pair<Trace, Trace> both(const std::vector<std::string_view>& pieces,
                                    const Settings& s) {
    ResponseParser mine;
    Reference beast;
    return {drive(mine, pieces, s), drive(beast, pieces, s)};
}

}  // namespace tether::http::diff
