// Cookie token codec with OpenSSL HMAC-SHA256; see cookie_token.hpp.
#include "tether/balance/cookie_token.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>

#include "tether/core/hash.hpp"

namespace tether::balance {

namespace {

constexpr std::size_t kIdBytes = 8;
constexpr std::size_t kTagBytes = 16;
constexpr std::size_t kRawBytes = 1 + kIdBytes + kTagBytes;
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

using Raw = std::array<unsigned char, kRawBytes>;

std::array<unsigned char, kTagBytes> tag(std::string_view secret, std::string_view upstream,
                                         const unsigned char* version_and_id) {
    std::string msg(reinterpret_cast<const char*>(version_and_id), 1 + kIdBytes);
    msg.append(upstream);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
         reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), mac, &len);
    std::array<unsigned char, kTagBytes> out{};
    std::copy(mac, mac + kTagBytes, out.begin());
    return out;
}

std::string base64url(const Raw& raw) {
    std::string out;
    std::uint32_t acc = 0;
    int bits = 0;
    for (unsigned char c : raw) {
        acc = (acc << 8) | c;
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out.push_back(kAlphabet[(acc >> bits) & 63]);
        }
    }
    if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 63]);
    return out;
}

std::optional<Raw> unbase64url(std::string_view text) {
    if (text.size() != (kRawBytes * 8 + 5) / 6) return std::nullopt;
    Raw raw{};
    std::size_t n = 0;
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : text) {
        int v = -1;
        if (c >= 'A' && c <= 'Z') v = c - 'A';
        else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
        else if (c >= '0' && c <= '9') v = c - '0' + 52;
        else if (c == '-') v = 62;
        else if (c == '_') v = 63;
        if (v < 0) return std::nullopt;
        acc = (acc << 6) | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n < raw.size()) raw[n++] = static_cast<unsigned char>((acc >> bits) & 0xff);
        }
    }
    // The last character carries 2 data bits and 4 padding bits; only the
    // canonical encoding (padding bits zero) is accepted, so a token has
    // exactly one spelling and a changed character is always rejected.
    if (n != raw.size() || (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
    return raw;
}

}  // namespace

std::uint64_t cookie_server_id(std::string_view upstream, std::string_view server) {
    std::string key(upstream);
    key.push_back('\0');
    key.append(server);
    return stable_hash(key, 0x636f6f6b6965ull);  // "cookie"
}

std::string encode_cookie_token(std::string_view secret, std::string_view upstream,
                                std::uint64_t server_id) {
    Raw raw{};
    raw[0] = kCookieTokenVersion;
    for (std::size_t i = 0; i < kIdBytes; ++i)
        raw[1 + i] = static_cast<unsigned char>(server_id >> (8 * (kIdBytes - 1 - i)));
    const auto t = tag(secret, upstream, raw.data());
    std::copy(t.begin(), t.end(), raw.begin() + 1 + kIdBytes);
    return base64url(raw);
}

std::optional<std::uint64_t> decode_cookie_token(std::string_view secret,
                                                 std::string_view upstream,
                                                 std::string_view token) {
    const auto raw = unbase64url(token);
    if (!raw || (*raw)[0] != kCookieTokenVersion) return std::nullopt;
    const auto t = tag(secret, upstream, raw->data());
    if (CRYPTO_memcmp(t.data(), raw->data() + 1 + kIdBytes, kTagBytes) != 0) return std::nullopt;
    std::uint64_t id = 0;
    for (std::size_t i = 0; i < kIdBytes; ++i) id = (id << 8) | (*raw)[1 + i];
    return id;
}

std::optional<std::uint64_t> cookie_token_claimed_id(std::string_view token) {
    const auto raw = unbase64url(token);
    if (!raw || (*raw)[0] != kCookieTokenVersion) return std::nullopt;
    std::uint64_t id = 0;
    for (std::size_t i = 0; i < kIdBytes; ++i) id = (id << 8) | (*raw)[1 + i];
    return id;
}

bool cookie_token_matches(std::string_view token, std::string_view issued) {
    return token.size() == issued.size() &&
           CRYPTO_memcmp(token.data(), issued.data(), token.size()) == 0;
}

std::string_view find_cookie(std::string_view header, std::string_view name) {
    while (!header.empty()) {
        const auto semi = header.find(';');
        std::string_view pair = header.substr(0, semi);
        while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
        const auto eq = pair.find('=');
        if (eq != std::string_view::npos && pair.substr(0, eq) == name) {
            std::string_view value = pair.substr(eq + 1);
            while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
            if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
                value = value.substr(1, value.size() - 2);
            return value;
        }
        if (semi == std::string_view::npos) break;
        header.remove_prefix(semi + 1);
    }
    return {};
}

}  // namespace tether::balance
