// libFuzzer target: the signed affinity cookie. Any Cookie header and token is
// decoded without crashing and is never accepted unless it is the genuine
// encoding; a genuine token round-trips. Single-threaded.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "tether/balance/cookie_token.hpp"

namespace tb = tether::balance;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    constexpr std::string_view kSecret = "fuzz-secret-0123456789";
    constexpr std::string_view kUpstream = "app";
    std::string_view in(reinterpret_cast<const char*>(data), size);
    const std::string_view token = tb::find_cookie(in, "tether");
    if (auto id = tb::decode_cookie_token(kSecret, kUpstream, token)) {
        // Accepted: it must be exactly what tether would have issued.
        if (tb::encode_cookie_token(kSecret, kUpstream, *id) != token) __builtin_trap();
    }
    (void)tb::decode_cookie_token(kSecret, kUpstream, in);
    if (size >= 8) {
        std::uint64_t id = 0;
        std::memcpy(&id, data, sizeof id);
        const auto good = tb::encode_cookie_token(kSecret, kUpstream, id);
        auto back = tb::decode_cookie_token(kSecret, kUpstream, good);
        if (!back || *back != id) __builtin_trap();
        if (tb::decode_cookie_token("other-secret", kUpstream, good)) __builtin_trap();
    }
    return 0;
}
