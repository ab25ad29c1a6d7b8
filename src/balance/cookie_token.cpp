// Cookie token codec with OpenSSL HMAC-SHA256; see cookie_token.hpp.
#include "tether/balance/cookie_token.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <cstdint>
#include <cstring>

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

// Each byte's base64url digit, or -1 outside the alphabet.
constexpr std::array<std::int8_t, 256> kDigit = [] {
    std::array<std::int8_t, 256> t{};
    t.fill(-1);
    for (int i = 0; i < 64; ++i)
        t[static_cast<unsigned char>(kAlphabet[i])] = static_cast<std::int8_t>(i);
    return t;
}();

constexpr std::size_t kTokenChars = (kRawBytes * 8 + 5) / 6;  // 34
constexpr std::size_t kHeadChars = (1 + kIdBytes) * 8 / 6;  // 12: version and id, no tag bits

// Decodes base64url `text` into out[0 .. text.size() * 6 / 8): four
// characters (three bytes) per step, then the 2 or 3 characters of a tail.
// False on a character outside the alphabet or padding bits that are not
// zero: only the canonical encoding is accepted, so a token has exactly one
// spelling and a changed character is always rejected.
bool decode_digits(std::string_view text, unsigned char* out) {
    int bad = 0;  // negative once a character is outside the alphabet
    const auto digit = [&](std::size_t k) {
        const int v = kDigit[static_cast<unsigned char>(text[k])];
        bad |= v;
        return static_cast<std::uint32_t>(v) & 63;
    };
    std::size_t i = 0;
    for (; i + 4 <= text.size(); i += 4, out += 3) {
        const std::uint32_t v =
            digit(i) << 18 | digit(i + 1) << 12 | digit(i + 2) << 6 | digit(i + 3);
        out[0] = static_cast<unsigned char>(v >> 16);
        out[1] = static_cast<unsigned char>(v >> 8);
        out[2] = static_cast<unsigned char>(v);
    }
    std::uint32_t v = 0;
    int bits = 0;
    for (; i < text.size(); ++i, bits += 6) v = v << 6 | digit(i);
    for (; bits >= 8; bits -= 8) *out++ = static_cast<unsigned char>(v >> (bits - 8));
    return bad >= 0 && (v & ((1u << bits) - 1)) == 0;
}

std::optional<Raw> unbase64url(std::string_view text) {
    Raw raw{};
    if (text.size() != kTokenChars || !decode_digits(text, raw.data()))
        return std::nullopt;
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

// Only the first 12 characters (72 bits: the version and the id) are decoded:
// the caller compares the whole token with the issued one, which rejects
// anything else in the tag's characters.
std::optional<std::uint64_t> cookie_token_claimed_id(std::string_view token) {
    std::array<unsigned char, 1 + kIdBytes> head{};
    if (token.size() != kTokenChars ||
        !decode_digits(token.substr(0, kHeadChars), head.data()) ||
        head[0] != kCookieTokenVersion)
        return std::nullopt;
    std::uint64_t id = 0;
    for (std::size_t i = 0; i < kIdBytes; ++i) id = (id << 8) | head[1 + i];
    return id;
}

// Eight bytes per step, every byte read whatever the earlier ones were (as
// CRYPTO_memcmp, which compares one byte per step); the empty asm keeps the
// compiler from ending the loop at the first difference.
bool cookie_token_matches(std::string_view token, std::string_view issued) {
    if (token.size() != issued.size()) return false;
    const std::size_t n = token.size();
    std::uint64_t diff = 0;
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        std::uint64_t a;
        std::uint64_t b;
        std::memcpy(&a, token.data() + i, 8);
        std::memcpy(&b, issued.data() + i, 8);
        diff |= a ^ b;
        asm volatile("" : "+r"(diff));
    }
    for (; i < n; ++i) {
        diff |= static_cast<unsigned char>(token[i] ^ issued[i]);
        asm volatile("" : "+r"(diff));
    }
    return diff == 0;
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
