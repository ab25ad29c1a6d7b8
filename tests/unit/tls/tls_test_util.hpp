// Helpers of the tls unit tests: owning pointers for OpenSSL objects, a fresh
// EC key, a self-signed certificate, and a handshake between a client and a
// server SSL over an in-memory BIO pair (no sockets).
// Threading: single-threaded tests.
#pragma once

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

namespace tether::tls::test {

struct CtxFree {
    void operator()(SSL_CTX* p) const { SSL_CTX_free(p); }
};
struct SslFree {
    void operator()(SSL* p) const { SSL_free(p); }
};
struct PkeyFree {
    void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509Free {
    void operator()(X509* p) const { X509_free(p); }
};
struct SessionFree {
    void operator()(SSL_SESSION* p) const { SSL_SESSION_free(p); }
};
using CtxPtr = std::unique_ptr<SSL_CTX, CtxFree>;
using SslPtr = std::unique_ptr<SSL, SslFree>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using SessionPtr = std::unique_ptr<SSL_SESSION, SessionFree>;

/// A fresh P-256 key.
inline PkeyPtr make_key() { return PkeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")); }

/// A certificate for `cn` signed by its own `key`, valid for an hour.
inline X509Ptr self_signed(EVP_PKEY* key, const std::string& cn) {
    X509Ptr x(X509_new());
    X509_set_version(x.get(), 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x.get()), 1);
    X509_gmtime_adj(X509_getm_notBefore(x.get()), 0);
    X509_gmtime_adj(X509_getm_notAfter(x.get()), 3600);
    X509_set_pubkey(x.get(), key);
    X509_NAME* name = X509_get_subject_name(x.get());
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
    X509_set_issuer_name(x.get(), name);
    X509_sign(x.get(), key, EVP_sha256());
    return x;
}

/// What a handshake gave the client.
struct Outcome {
    bool done = false;     ///< both sides finished the handshake
    bool resumed = false;  ///< the client's session was resumed
    SessionPtr session;    ///< the client's session afterwards (with its ticket)
};

/// Runs a handshake of a new client SSL of `client` (offering `offer`, if
/// any) against a new server SSL of `server`, over a memory BIO pair, then
/// lets the client read what the server sent after it (TLS 1.3 tickets).
inline Outcome handshake(SSL_CTX* server, SSL_CTX* client, SSL_SESSION* offer) {
    SslPtr s(SSL_new(server)), c(SSL_new(client));
    BIO *cb = nullptr, *sb = nullptr;
    BIO_new_bio_pair(&cb, 0, &sb, 0);
    SSL_set_bio(c.get(), cb, cb);
    SSL_set_bio(s.get(), sb, sb);
    SSL_set_connect_state(c.get());
    SSL_set_accept_state(s.get());
    if (offer) SSL_set_session(c.get(), offer);
    Outcome out;
    for (int round = 0; round < 20 && !out.done; ++round) {
        const int rc = SSL_do_handshake(c.get());
        const int rs = SSL_do_handshake(s.get());
        out.done = rc == 1 && rs == 1;
        if (rc != 1) {
            EXPECT_EQ(SSL_get_error(c.get(), rc), SSL_ERROR_WANT_READ);
        }
        if (rs != 1) {
            EXPECT_EQ(SSL_get_error(s.get(), rs), SSL_ERROR_WANT_READ);
        }
    }
    unsigned char byte = 0;
    for (int round = 0; round < 3; ++round) {  // tickets sent after the handshake
        EXPECT_LE(SSL_read(c.get(), &byte, 1), 0);
        SSL_read(s.get(), &byte, 1);
    }
    out.resumed = SSL_session_reused(c.get()) == 1;
    out.session.reset(SSL_get1_session(c.get()));
    // Ended as after a close_notify exchange: OpenSSL makes the session of a connection freed
    // without one not resumable.
    SSL_set_shutdown(c.get(), SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_set_shutdown(s.get(), SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    return out;
}

}  // namespace tether::tls::test
