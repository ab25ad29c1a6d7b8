// OCSP stapling from a response file (`ocsp_response` beside a certificate),
// as nginx's ssl_stapling_file or HAProxy's .ocsp file: the DER response is
// read when the context is built (start, reload, `tether -t`) and handed to
// every client that asks for a status (status_request) while this
// certificate serves it. Nothing is fetched from a responder.
// Threading: loaded on the main thread; the callback only reads the bytes.
#pragma once

#include <openssl/ssl.h>

#include <string>

namespace tether::tls {

/// Reads and checks the DER OCSP response `path` for the certificate `leaf`
/// of `ctx` (the issuer looked up in the context's chain). Throws
/// std::runtime_error naming the file when it cannot be read, is not an OCSP
/// response, is not "successful" or has no status for this certificate. Logs
/// a warning when it is past its nextUpdate (stapled anyway, as nginx does)
/// or says the certificate is revoked.
std::string load_ocsp_response(const std::string& path, SSL_CTX* ctx, X509* leaf,
                               const std::string& certificate);

/// Staples `*der` on the connections of `ctx` that ask for it; `der` must
/// outlive the context.
void staple_ocsp(SSL_CTX* ctx, const std::string* der);

}  // namespace tether::tls
