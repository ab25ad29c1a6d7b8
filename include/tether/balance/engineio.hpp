// Engine.IO knowledge tether needs for `affinity: sid`: the session id in a
// request's query, and the session id in the server's open packet.
//
// Open packet shapes (see shared/testdata/engineio):
//   EIO=4 polling      0{"sid":"sXIjZz9g-LylGIquAAAA","upgrades":[...],...}
//   EIO=3 polling      96:0{"sid":"15qBoNSj43zkSEAzAAAA",...}2:40    (length-prefixed)
//   EIO=3 binary XHR   \x00 \x09 \x06 \xff 0{"sid":...}              (digit bytes, 0xff)
//   websocket          first text frame: 0{"sid":...}
// The parser accepts bytes in pieces (split anywhere) and needs at most
// kMaxOpenPacket bytes. Pure; one parser per exchange.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace tether::balance {

/// The percent-decoded value of query parameter `name` in `target`, or nullopt.
std::optional<std::string> query_param(std::string_view target, std::string_view name);

/// The value of query parameter `name` in `target` as it is written (not
/// decoded; see decode_param), or nullopt. The first occurrence wins; a name
/// without '=' has the value "". No allocation: a view into `target`.
std::optional<std::string_view> query_param_raw(std::string_view target, std::string_view name);

/// `raw` percent-decoded ('+' is a space): `raw` itself when it has no '%' or
/// '+' (no copy), else the decoded text, written into `scratch`.
std::string_view decode_param(std::string_view raw, std::string& scratch);

/// What a request says to `affinity: sid`, read once: whether its path is
/// under sid.path, and (only then) the raw values of the sid parameter and
/// of "transport" in its query (nullopt: absent), from one pass over it.
struct EioQuery {
    bool under_path = false;
    std::optional<std::string_view> sid;
    std::optional<std::string_view> transport;
};
EioQuery eio_query(std::string_view target, std::string_view sid_path,
                   std::string_view sid_param);

/// True if the raw parameter value `raw` decodes to `text`.
bool param_equals(std::string_view raw, std::string_view text);

/// True if the path of `target` starts with `prefix` ("/socket.io/"); a
/// prefix ending in '/' also matches the path without it ("/socket.io").
bool path_under(std::string_view target, std::string_view prefix);

class OpenPacketParser {
public:
    static constexpr std::size_t kMaxOpenPacket = 4096;
    enum class State { need_more, found, not_open };

    /// Feeds the next bytes of a polling body or of a WebSocket message payload.
    State feed(std::string_view bytes);
    State state() const { return state_; }
    /// The session id, once state() == found.
    const std::string& sid() const { return sid_; }

private:
    State parse();

    std::string buf_;
    std::string sid_;
    State state_ = State::need_more;
};

}  // namespace tether::balance
