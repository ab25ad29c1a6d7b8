// Setup steps shared by the server contexts (server_context.cpp) and the
// upstream client contexts (upstream_context.cpp): OpenSSL's error text, the
// protocol range from a `protocols` list, the TLS 1.2 cipher list, and a
// certificate chain with its private key. Each throws std::runtime_error
// naming the file or setting and OpenSSL's reason.
// Threading: called on the main thread while a context is built.
#pragma once

#include <openssl/ssl.h>

#include <string>
#include <vector>

namespace tether::tls {

/// OpenSSL's reason for the last failure ("unknown error" when the queue is
/// empty), and the queue cleared.
std::string openssl_reason();

/// The lowest and highest of `protocols` ("TLSv1.2", "TLSv1.3") as the
/// context's min and max version; an empty list is TLS 1.2 to 1.3.
void set_protocol_range(SSL_CTX* ctx, const std::vector<std::string>& protocols);

/// The TLS 1.2 cipher list `ciphers` (OpenSSL syntax); "" keeps OpenSSL's.
void set_ciphers(SSL_CTX* ctx, const std::string& ciphers);

/// Loads the PEM chain `certificate` and its key `private_key` into `ctx` and
/// checks that they match ("private key K does not match certificate C").
void use_certificate_and_key(SSL_CTX* ctx, const std::string& certificate,
                             const std::string& private_key);

}  // namespace tether::tls
