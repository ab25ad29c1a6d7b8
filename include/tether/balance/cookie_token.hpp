// The tether affinity cookie's value: opaque, signed, versioned.
//
//   token = base64url( version (1 byte) | server id (8 bytes) | tag (16 bytes) )
//   server id = stable_hash(upstream + "\0" + server name)   (reveals no address)
//   tag = first 16 bytes of HMAC-SHA256(secret, version | upstream | server id)
//
// Any replica with the same secret computes the same token for a server and
// accepts the same tokens. A token with another version, a bad tag or bad
// base64 is rejected; a valid one naming a server that no longer exists is
// "stale" (the id maps to nothing) and the client is placed again.
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tether::balance {

inline constexpr std::uint8_t kCookieTokenVersion = 1;

/// The id a server's token carries.
std::uint64_t cookie_server_id(std::string_view upstream, std::string_view server);

/// The cookie value for `server_id` (34 characters of base64url: 25 bytes, canonical padding bits only).
std::string encode_cookie_token(std::string_view secret, std::string_view upstream,
                                std::uint64_t server_id);

/// The server id of a genuine token, or nullopt (forged, other version, garbage).
std::optional<std::uint64_t> decode_cookie_token(std::string_view secret,
                                                 std::string_view upstream,
                                                 std::string_view token);

/// The server id a token of a token's length claims in its first 12
/// characters (version and id; the tag's characters are not read), NOT
/// verified. A token is genuine exactly when it equals
/// encode_cookie_token(secret, upstream, id) for that id (one spelling per
/// token), so a router that signed its servers' tokens once checks a
/// request's token with cookie_token_matches instead of an HMAC per request.
std::optional<std::uint64_t> cookie_token_claimed_id(std::string_view token);

/// Constant-time equality of a request's token and an issued one.
bool cookie_token_matches(std::string_view token, std::string_view issued);

/// The value of cookie `name` in a Cookie request header ("a=1; b=2"), or "".
std::string_view find_cookie(std::string_view cookie_header, std::string_view name);

}  // namespace tether::balance
