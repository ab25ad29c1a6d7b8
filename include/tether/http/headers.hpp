// Request and response heads as tether forwards them: hop-by-hop fields
// removed (RFC 9110 section 7.6.1: Connection, the fields it names,
// Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade),
// tether's own framing and forwarding fields added. Heads are written
// straight into a reusable string, not rebuilt as Beast messages.
// Pure functions, no I/O. The heads' fields take their memory from the
// thread's RecyclingPool (core/recycling_pool.hpp): a node per field and the
// method, target and reason strings, made and freed once per request.
#pragma once

#include <string>
#include <string_view>

#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>

#include "tether/core/recycling_pool.hpp"
#include "tether/http/flat_fields.hpp"

namespace tether::http {

namespace bhttp = boost::beast::http;
using FieldsAllocator = RecyclingAllocator<char>;
using Fields = bhttp::basic_fields<FieldsAllocator>;
using RequestHead = bhttp::request_header<Fields>;
using ResponseHead = bhttp::response_header<Fields>;

enum class Framing { none, length, chunked, until_close };

struct RequestRewrite {
    std::string_view client_ip;   ///< X-Real-IP (and the X-Forwarded-For hop without peer_ip)
    std::string_view proto;       ///< X-Forwarded-Proto: "http" | "https"
    std::string_view request_id;  ///< X-Request-Id to send ("" = none)
    bool forwarded = true;        ///< headers.forwarded
    bool upgrade = false;         ///< keep "Upgrade" and send "Connection: upgrade"
    Framing body = Framing::none; ///< none | length (Content-Length kept) | chunked
    std::string_view peer_ip;     ///< the hop appended to X-Forwarded-For ("" = client_ip)
};

/// True if `name` is hop-by-hop, or listed in the request's Connection field
/// (`connection_value` is that field's value, comma separated).
bool is_hop_by_hop(std::string_view name, std::string_view connection_value);

/// Appends the head sent to the backend: always HTTP/1.1, keep-alive.
void write_request_head(const RequestHead& req, const RequestRewrite& rw, std::string& out);

struct ResponseRewrite {
    Framing body = Framing::none;   ///< framing towards the client
    bool close = false;             ///< "Connection: close" and close after
    bool keep_alive_header = false; ///< "Connection: keep-alive" (HTTP/1.0 client)
    bool upgrade = false;           ///< a 101: keep Upgrade, "Connection: upgrade"
    std::string_view extra;         ///< raw extra header lines, each ending CRLF
};

/// Appends the head sent to the client, in the client's HTTP version.
void write_response_head(const ResponseHead& res, unsigned client_version,
                         const ResponseRewrite& rw, std::string& out);

/// A response's status code and reason phrase, as parsed.
struct StatusLine {
    unsigned status = 0;
    std::string_view reason;
};

/// The same from a status line and the fields of `fields` (ResponseParser's).
void write_response_head(const StatusLine& line, const FlatFields& fields,
                         unsigned client_version, const ResponseRewrite& rw, std::string& out);

/// Appends one chunk header ("1a2b\r\n") for a chunk of `size` bytes.
void write_chunk_header(std::size_t size, std::string& out);

}  // namespace tether::http
