/* tls_client.h - the client half of TLS for an SMTP client, beyond the
 * context tls.h makes: trust anchors from a CA file and a hashed CA
 * directory, a client certificate, per-connection protocols, ciphers and
 * exclusions, the names a certificate must match, DANE TLSA records
 * (OpenSSL's RFC 6698/7671 verifier), SNI, resumption of TLS sessions
 * across connections, and the trust verdict with Postfix's words.
 *
 * Callers drive the handshake themselves (libevent's OpenSSL
 * bufferevents); nothing here does I/O.
 */
#ifndef POSTERN_TLS_CLIENT_H
#define POSTERN_TLS_CLIENT_H

#include <stddef.h>
#include <openssl/ssl.h>

struct tls_client_config {
    const char *ca_file, *ca_path;      /* "" or NULL: none */
    const char *cert_file, *key_file;   /* client certificate ("" none) */
    const char *fingerprint_digest;     /* digest of TLS_CLIENT_FINGERPRINT ("" none) */
};

/* The private TLSA matching type under which a certificate or public key
 * fingerprint (of the context's fingerprint_digest) is a DANE-EE(3)
 * record: tls_client_dane_add(ssl, 3, selector, TLS_CLIENT_FINGERPRINT,
 * digest, len) pins the peer's certificate (selector 0) or key (1). */
#define TLS_CLIENT_FINGERPRINT 255

/* One client context for every connection. NULL with err set on failure.
 * Sessions are cached in this process only (tls_client_resume). */
SSL_CTX *tls_client_context(const struct tls_client_config *c, char *err, size_t errlen);

/* Per-connection settings, before the handshake. protocols: Postfix
 * syntax; grade: "medium", "high" or an OpenSSL list; exclude: cipher
 * names to leave out (':', ',' or space separated). 0 or -1 with err. */
int tls_client_settings(SSL *ssl, const char *protocols, const char *grade, const char *exclude,
                        char *err, size_t errlen);
/* The names the peer certificate must match (verification then fails
 * with OpenSSL's "hostname mismatch" when none does). A name starting
 * with '.' matches any subdomain; an IP address literal is matched as an
 * address when ip_literal is 1. 0 or -1. */
int tls_client_match_names(SSL *ssl, const char *const *names, size_t n, int ip_literal);
/* Server Name Indication. */
int tls_client_sni(SSL *ssl, const char *name);

/* DANE: enable it for base_domain (the TLSA owner's host; names the
 * certificate may match for DANE-TA(2)), then add each usable record.
 * tls_client_dane_add returns 1 when the record was taken, 0 when it is
 * unusable (unknown usage, selector or matching type, bad length), -1 on
 * an internal error. */
int tls_client_dane_enable(SSL *ssl, const char *base_domain);
int tls_client_dane_add(SSL *ssl, unsigned usage, unsigned selector, unsigned mtype,
                        const unsigned char *data, size_t len);
/* Trust anchors from PEM files (names separated by spaces or commas):
 * each certificate or public key becomes a DANE-TA(2) record with full
 * matching, so the peer chain must lead to one of them and CAfile/CApath
 * are not asked; names are still matched (tls_client_match_names).
 * Call after tls_client_dane_enable(ssl, NULL). Returns the number of
 * anchors taken, or -1 with err (a file that cannot be read, or holds
 * none). */
int tls_client_trust_anchors(SSL *ssl, const char *files, char *err, size_t errlen);
/* The same files read without a connection: how many anchors they hold,
 * or -1 with err ("error opening trust anchor file: F: reason"). */
int tls_client_trust_anchors_check(const char *files, char *err, size_t errlen);
/* Make this connection's certificate verification fail ("unspecified
 * certificate verification error") whatever the peer sends: for a policy
 * left with nothing usable to verify against. */
void tls_client_never_verified(SSL *ssl);

/* Resume a session cached under key, if one is; after the handshake the
 * new session (TLS 1.2) or the tickets that come later (TLS 1.3) are kept
 * under the same key. Returns 1 when a cached session was offered. */
int tls_client_resume(SSL *ssl, const char *key);
int tls_client_resumed(const SSL *ssl);

enum tls_trust {
    TLS_TRUST_UNTRUSTED,   /* no certificate, or it does not chain (or match) */
    TLS_TRUST_TRUSTED,     /* chains to a trust anchor; no name was asked */
    TLS_TRUST_VERIFIED,    /* chains and matches a name, or a TLSA record */
};
/* The verdict after the handshake; why is the reason it is not better,
 * logged as Postfix does: "untrusted issuer /CN=...", "self-signed
 * certificate", "certificate has expired", or "num=62:hostname mismatch"
 * (server_prefix then 1: "server certificate verification failed for"). */
enum tls_trust tls_client_trust(SSL *ssl, int *server_prefix, char *why, size_t whylen);
/* "TLSv1.3 with cipher X (256/256 bits) key-exchange X25519
 * server-signature RSA-PSS (2048 bits) server-digest SHA256", Postfix's
 * summary of a client connection. */
void tls_client_describe(SSL *ssl, char *out, size_t outlen);

#endif
