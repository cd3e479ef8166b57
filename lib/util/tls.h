/* tls.h - OpenSSL contexts and connection facts for smtpd (server side,
 * STARTTLS and wrapper mode) and remote (client side), used with libevent's
 * OpenSSL bufferevents (bufferevent_openssl_filter_new / _socket_new).
 */
#ifndef POSTERN_TLS_H
#define POSTERN_TLS_H

#include <stddef.h>
#include <openssl/ssl.h>

/* protocols: Postfix syntax, e.g. ">=TLSv1.2" or "!SSLv2, !SSLv3, !TLSv1";
 * ciphers: an OpenSSL cipher list, or Postfix's grade words
 * ("medium", "high") mapped to lists. NULL + err on failure.
 * Caller owns the context (SSL_CTX_free). */
SSL_CTX *tls_server_ctx(const char *cert_file, const char *key_file, const char *protocols,
                        const char *ciphers, char *err, size_t errlen);
/* Session resumption on a server context (Postfix's
 * smtpd_tls_session_cache_timeout): TLS 1.3 and RFC 5077 session tickets
 * valid for lifetime seconds; lifetime <= 0 leaves resumption off
 * (tls_server_ctx's default). With a secret (the processes of one service
 * share it: service_secret), the ticket keys are derived from it and the
 * number of the lifetime-long period since the epoch, so a ticket one
 * process sealed resumes in any other, and all change keys together;
 * without one they are random and this process's alone, replaced once
 * lifetime has passed since they were made. Tickets sealed with old keys
 * get a full handshake. One server context per process: call
 * tls_server_ticket_key_check before each new session. */
void tls_server_resumption(SSL_CTX *ctx, long lifetime, const unsigned char *secret,
                           size_t secret_len);
void tls_server_ticket_key_check(SSL_CTX *ctx);
/* CAfile may be NULL/"" (no verification possible). */
SSL_CTX *tls_client_ctx(const char *ca_file, const char *protocols, const char *ciphers,
                        char *err, size_t errlen);
/* "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)", as Postfix
 * writes in Received: headers and logs. */
void tls_describe(const SSL *ssl, char *out, size_t outlen);
/* After the handshake: 1 when the peer certificate chains to the CA file and
 * matches hostname; otherwise 0 with a reason in why. */
int tls_peer_verified(SSL *ssl, const char *hostname, char *why, size_t whylen);
/* A Postfix protocol list as OpenSSL's version range plus the SSL_OP_NO_*
 * options of the holes in it (for per-connection settings). 0, or -1 with
 * err set. */
struct tls_protocol_range {
    int min, max;
    unsigned long no_options;
};
int tls_protocol_range(const char *spec, struct tls_protocol_range *range, char *err,
                       size_t errlen);
/* The OpenSSL cipher list of a Postfix grade ("medium", "high", "null";
 * anything else is taken as an OpenSSL list). */
const char *tls_cipher_list(const char *grade);
/* The last OpenSSL error as text (for logs). */
void tls_error_text(char *out, size_t outlen);

#endif
