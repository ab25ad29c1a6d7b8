// TLS server contexts; see server_context.hpp.
#include "tether/tls/server_context.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <stdexcept>

#include "ocsp_staple.hpp"
#include "tether/core/log.hpp"
#include "tether/tls/context_setup.hpp"

namespace tether::tls {

namespace ssl = boost::asio::ssl;

namespace {

constexpr long kSessionCacheSize = 20'000;  // per listener, shared by the workers

// ALPN: http/1.1 when the client offers it; otherwise no ALPN at all (a
// client offering only h2 then speaks HTTP/1.1 or leaves, as with nginx
// without http2).
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void*) {
    static constexpr unsigned char kHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    unsigned char* selected = nullptr;
    if (SSL_select_next_proto(&selected, outlen, kHttp11, sizeof kHttp11, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
}

int on_servername(SSL* s, int*, void* arg) {
    const char* name = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
    if (!name) return SSL_TLSEXT_ERR_OK;
    if (SSL_CTX* ctx = static_cast<const ServerContext*>(arg)->pick(name))
        SSL_set_SSL_CTX(s, ctx);
    return SSL_TLSEXT_ERR_OK;
}

/// The session id context of a listener's sessions: a digest of its address,
/// the same for all its certificates (a session made under one SNI name is
/// found under the others) and different between listeners (a ticket of one
/// does not resume on another although the ticket keys are shared).
std::array<unsigned char, SSL_MAX_SID_CTX_LENGTH> session_id_context(std::string_view listener) {
    std::array<unsigned char, SSL_MAX_SID_CTX_LENGTH> out{};
    static_assert(SSL_MAX_SID_CTX_LENGTH == 32, "a SHA-256 digest fills it");
    const std::string text = "tether listener " + std::string(listener);
    if (EVP_Digest(text.data(), text.size(), out.data(), nullptr, EVP_sha256(), nullptr) != 1)
        throw std::runtime_error("session id context: " + openssl_reason());
    return out;
}

}  // namespace

/// A context holding one certificate chain and its key (and OCSP response).
ServerContext::Loaded ServerContext::load(const config::CertKey& ck) {
    Loaded out;
    out.ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
    SSL_CTX* raw = out.ctx->native_handle();
    ERR_clear_error();
    use_certificate_and_key(raw, ck.certificate, ck.private_key);
    X509* leaf = SSL_CTX_get0_certificate(raw);
    if (leaf && X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0)
        log::warn("certificate " + ck.certificate + " has expired: clients will refuse it");
    else if (leaf && X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0)
        log::warn("certificate " + ck.certificate + " is not valid yet");
    out.leaf = leaf;
    if (!ck.ocsp_response.empty()) {
        out.ocsp = std::make_unique<std::string>(
            load_ocsp_response(ck.ocsp_response, raw, leaf, ck.certificate));
        staple_ocsp(raw, out.ocsp.get());
    }
    SSL_CTX_set_session_id_context(raw, sid_ctx_.data(), sid_ctx_.size());
    ticket_keys_->install(raw);
    return out;
}

ServerContext::ServerContext(const config::TlsConfig& cfg, std::string_view listener,
                             std::shared_ptr<TicketKeys> ticket_keys)
    : ticket_keys_(std::move(ticket_keys)), sid_ctx_(session_id_context(listener)) {
    if (cfg.certificates.empty()) throw std::runtime_error("no certificate");
    main_ = load(cfg.certificates.front());
    for (std::size_t i = 1; i < cfg.certificates.size(); ++i)
        alternates_.push_back(load(cfg.certificates[i]));
    SSL_CTX* raw = main_.ctx->native_handle();
    set_protocol_range(raw, cfg.protocols);
    SSL_CTX_set_options(raw, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    // OpenSSL's read and write buffers are freed while a connection is idle
    // (a quiet wss tunnel keeps none).
    SSL_CTX_set_mode(raw, SSL_MODE_RELEASE_BUFFERS);
    set_ciphers(raw, cfg.ciphers);
    SSL_CTX_set_alpn_select_cb(raw, select_alpn, nullptr);
    SSL_CTX_set_session_cache_mode(raw, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(raw, kSessionCacheSize);
    if (!alternates_.empty()) {
        SSL_CTX_set_tlsext_servername_callback(raw, on_servername);
        SSL_CTX_set_tlsext_servername_arg(raw, this);
    }
}

SSL_CTX* ServerContext::pick(const char* servername) const {
    if (main_.leaf && X509_check_host(main_.leaf, servername, 0, 0, nullptr) == 1) return nullptr;
    for (const auto& a : alternates_)
        if (a.leaf && X509_check_host(a.leaf, servername, 0, 0, nullptr) == 1)
            return a.ctx->native_handle();
    return nullptr;
}

std::shared_ptr<const ServerContexts> build_server_contexts(const config::Config& cfg,
                                                            std::shared_ptr<TicketKeys> keys) {
    auto out = std::make_shared<ServerContexts>();
    for (std::size_t i = 0; i < cfg.listen.size(); ++i) {
        const auto& l = cfg.listen[i];
        if (!l.tls) continue;
        try {
            out->by_address[l.address.text()] =
                std::make_shared<ServerContext>(*l.tls, l.address.text(), keys);
        } catch (const std::exception& e) {
            throw std::runtime_error("listen[" + std::to_string(i) + "] " + l.address.text() +
                                     " tls: " + e.what());
        }
    }
    return out;
}

}  // namespace tether::tls
