// libFuzzer target: the Engine.IO open-packet parser (EIO=3/4 polling bodies,
// binary XHR framing, WebSocket payloads) fed whole and in pieces of an
// input-chosen size; both must agree. Single-threaded.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tether/balance/engineio.hpp"

using tether::balance::OpenPacketParser;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::size_t step = data[0] == 0 ? 1 : data[0];
    std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
    OpenPacketParser whole;
    whole.feed(bytes);
    OpenPacketParser pieces;
    for (std::size_t i = 0; i < bytes.size() && pieces.state() == OpenPacketParser::State::need_more;
         i += step)
        pieces.feed(bytes.substr(i, step));
    if (whole.state() != pieces.state()) __builtin_trap();
    if (whole.state() == OpenPacketParser::State::found) {
        if (whole.sid().empty() || whole.sid() != pieces.sid()) __builtin_trap();
    }
    // The query side of affinity: any target, any name.
    const auto cut = bytes.find('\n');
    (void)tether::balance::query_param(bytes.substr(0, cut), "sid");
    (void)tether::balance::path_under(bytes, "/socket.io/");
    return 0;
}
