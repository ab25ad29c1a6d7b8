// Context setup steps shared by server and upstream contexts; see context_setup.hpp.
#include "tether/tls/context_setup.hpp"

#include <openssl/err.h>

#include <algorithm>
#include <stdexcept>

namespace tether::tls {

namespace {

int protocol_version(const std::string& name) {
    return name == "TLSv1.3" ? TLS1_3_VERSION : TLS1_2_VERSION;
}

}  // namespace

std::string openssl_reason() {
    std::string out;
    while (unsigned long e = ERR_get_error()) {
        if (!out.empty()) out += "; ";
        const char* r = ERR_reason_error_string(e);
        out += r ? r : ("error " + std::to_string(e));
    }
    return out.empty() ? "unknown error" : out;
}

void set_protocol_range(SSL_CTX* ctx, const std::vector<std::string>& protocols) {
    int lo = TLS1_2_VERSION, hi = TLS1_3_VERSION;
    if (!protocols.empty()) {
        lo = TLS1_3_VERSION, hi = TLS1_2_VERSION;
        for (const auto& p : protocols) {
            lo = std::min(lo, protocol_version(p));
            hi = std::max(hi, protocol_version(p));
        }
    }
    SSL_CTX_set_min_proto_version(ctx, lo);
    SSL_CTX_set_max_proto_version(ctx, hi);
}

void set_ciphers(SSL_CTX* ctx, const std::string& ciphers) {
    if (!ciphers.empty() && SSL_CTX_set_cipher_list(ctx, ciphers.c_str()) != 1)
        throw std::runtime_error("ciphers '" + ciphers + "': " + openssl_reason());
}

void use_certificate_and_key(SSL_CTX* ctx, const std::string& certificate,
                             const std::string& private_key) {
    if (SSL_CTX_use_certificate_chain_file(ctx, certificate.c_str()) != 1)
        throw std::runtime_error("certificate " + certificate + ": " + openssl_reason());
    if (SSL_CTX_use_PrivateKey_file(ctx, private_key.c_str(), SSL_FILETYPE_PEM) != 1) {
        const std::string why = openssl_reason();
        if (why.find("mismatch") != std::string::npos)
            throw std::runtime_error("private key " + private_key + " does not match certificate " +
                                     certificate + " (" + why + ")");
        throw std::runtime_error("private key " + private_key + ": " + why);
    }
    if (SSL_CTX_check_private_key(ctx) != 1)
        throw std::runtime_error("private key " + private_key + " does not match certificate " +
                                 certificate + ": " + openssl_reason());
}

}  // namespace tether::tls
