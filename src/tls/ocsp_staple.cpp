// OCSP response files; see ocsp_staple.hpp.
#include "ocsp_staple.hpp"

#include <openssl/err.h>
#include <openssl/ocsp.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <stdexcept>

#include "tether/core/log.hpp"

namespace tether::tls {

namespace {

constexpr std::size_t kMaxResponse = 1 << 20;  // real responses are a few kB
constexpr long kClockSkew = 300;               // seconds allowed around thisUpdate/nextUpdate

struct Free {
    void operator()(OCSP_RESPONSE* r) const { OCSP_RESPONSE_free(r); }
    void operator()(OCSP_BASICRESP* b) const { OCSP_BASICRESP_free(b); }
    void operator()(OCSP_CERTID* c) const { OCSP_CERTID_free(c); }
};

// Called during the handshake when the client sent status_request, on the
// context serving the connection (after SNI): the response of its certificate.
int on_status_request(SSL* s, void* arg) {
    const auto* der = static_cast<const std::string*>(arg);
    if (!der || der->empty()) return SSL_TLSEXT_ERR_NOACK;
    auto* copy = static_cast<unsigned char*>(OPENSSL_malloc(der->size()));
    if (!copy) return SSL_TLSEXT_ERR_NOACK;
    std::memcpy(copy, der->data(), der->size());
    if (SSL_set_tlsext_status_ocsp_resp(s, copy, static_cast<long>(der->size())) != 1) {
        OPENSSL_free(copy);
        return SSL_TLSEXT_ERR_NOACK;
    }
    return SSL_TLSEXT_ERR_OK;  // OpenSSL owns the copy now
}

X509* issuer_in_chain(SSL_CTX* ctx, X509* leaf) {
    STACK_OF(X509)* chain = nullptr;
    if (SSL_CTX_get0_chain_certs(ctx, &chain) != 1 || !chain) return nullptr;
    for (int i = 0; i < sk_X509_num(chain); ++i)
        if (X509* c = sk_X509_value(chain, i); X509_check_issued(c, leaf) == X509_V_OK) return c;
    return nullptr;
}

}  // namespace

std::string load_ocsp_response(const std::string& path, SSL_CTX* ctx, X509* leaf,
                               const std::string& certificate) {
    const std::string what = "OCSP response " + path;
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(what + ": cannot open: " + std::strerror(errno));
    std::string der((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) throw std::runtime_error(what + ": read error");
    if (der.empty()) throw std::runtime_error(what + ": empty file");
    if (der.size() > kMaxResponse) throw std::runtime_error(what + ": larger than 1 MiB");
    ERR_clear_error();
    const auto* p = reinterpret_cast<const unsigned char*>(der.data());
    std::unique_ptr<OCSP_RESPONSE, Free> resp(
        d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(der.size())));
    if (!resp) {
        ERR_clear_error();
        throw std::runtime_error(what + ": not a DER OCSP response");
    }
    if (const int st = OCSP_response_status(resp.get()); st != OCSP_RESPONSE_STATUS_SUCCESSFUL)
        throw std::runtime_error(what + ": the responder answered '" +
                                 OCSP_response_status_str(st) + "', not 'successful'");
    std::unique_ptr<OCSP_BASICRESP, Free> basic(OCSP_response_get1_basic(resp.get()));
    if (!basic) throw std::runtime_error(what + ": no basic response in it");
    if (!leaf) return der;
    X509* issuer = issuer_in_chain(ctx, leaf);
    if (!issuer) {
        log::warn(what + ": the issuer of " + certificate +
                  " is not in its chain file; cannot check that the response is for it");
        return der;
    }
    std::unique_ptr<OCSP_CERTID, Free> id(OCSP_cert_to_id(nullptr, leaf, issuer));
    int status = 0, reason = 0;
    ASN1_GENERALIZEDTIME *revoked = nullptr, *this_update = nullptr, *next_update = nullptr;
    if (!id || OCSP_resp_find_status(basic.get(), id.get(), &status, &reason, &revoked,
                                     &this_update, &next_update) != 1) {
        ERR_clear_error();
        throw std::runtime_error(what + ": has no status for certificate " + certificate);
    }
    if (status == V_OCSP_CERTSTATUS_REVOKED)
        log::warn(what + ": says certificate " + certificate + " is REVOKED (stapled as it is)");
    if (OCSP_check_validity(this_update, next_update, kClockSkew, -1) != 1) {
        ERR_clear_error();
        log::warn(what +
                  ": outside its validity period (thisUpdate/nextUpdate); stapled "
                  "anyway: renew the file and reload");
    }
    return der;
}

void staple_ocsp(SSL_CTX* ctx, const std::string* der) {
    SSL_CTX_set_tlsext_status_cb(ctx, on_status_request);
    SSL_CTX_set_tlsext_status_arg(ctx, const_cast<std::string*>(der));
}

}  // namespace tether::tls
