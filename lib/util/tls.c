/* tls.c - OpenSSL contexts for both ends of SMTP (tls.h): the server half
 * (smtpd: STARTTLS and wrapper mode) and the client half (remote), plus the
 * facts about an established connection that go into logs and Received:.
 *
 * Callers drive the connections with libevent's OpenSSL bufferevents; this
 * file only builds SSL_CTX objects and reads connection state, so it never
 * does I/O. Protocol and cipher settings use Postfix's syntax so main.cf
 * values carry over unchanged.
 */
#include "tls.h"

#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <strings.h>

/* Protocol names in Postfix's spelling, oldest first, with OpenSSL versions. */
static const struct {
    const char *name;
    int version;
} protocols_known[] = {
    {"SSLv2", 0x0200}, {"SSLv3", SSL3_VERSION},     {"TLSv1", TLS1_VERSION},
    {"TLSv1.1", TLS1_1_VERSION}, {"TLSv1.2", TLS1_2_VERSION}, {"TLSv1.3", TLS1_3_VERSION},
};
#define NPROTOCOLS (sizeof(protocols_known) / sizeof(protocols_known[0]))

static int protocol_index(const char *name, size_t len)
{
    for (size_t i = 0; i < NPROTOCOLS; i++)
        if (strlen(protocols_known[i].name) == len &&
            strncasecmp(protocols_known[i].name, name, len) == 0)
            return (int)i;
    return -1;
}

/* Parse a Postfix protocol list into enabled[]: names enable (when any name
 * is given, only the named ones are on), "!name" disables, ">=name" and
 * "<=name" bound the range. Returns 0 or -1 with err set. */
static int parse_protocols(const char *spec, int enabled[NPROTOCOLS], char *err, size_t errlen)
{
    int positive = 0, named[NPROTOCOLS] = {0};
    int lo = 0, hi = (int)NPROTOCOLS - 1;
    for (size_t i = 0; i < NPROTOCOLS; i++)
        enabled[i] = 1;
    const char *p = spec ? spec : "";
    while (*p) {
        while (*p == ',' || *p == ':' || *p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        const char *start = p;
        while (*p && *p != ',' && *p != ':' && *p != ' ' && *p != '\t')
            p++;
        size_t len = (size_t)(p - start);
        int op = 0;   /* '!' exclude, '>' at least, '<' at most, 0 include */
        if (len > 0 && start[0] == '!')
            op = '!', start++, len--;
        else if (len > 1 && (start[0] == '>' || start[0] == '<') && start[1] == '=')
            op = start[0], start += 2, len -= 2;
        int idx = protocol_index(start, len);
        if (idx < 0) {
            snprintf(err, errlen, "unknown TLS protocol \"%.*s\"", (int)(p - start), start);
            return -1;
        }
        if (op == '!')
            enabled[idx] = 0;
        else if (op == '>')
            lo = idx > lo ? idx : lo;
        else if (op == '<')
            hi = idx < hi ? idx : hi;
        else
            named[idx] = 1, positive = 1;
    }
    for (int i = 0; i < (int)NPROTOCOLS; i++) {
        if (i < lo || i > hi || (positive && !named[i]))
            enabled[i] = 0;
    }
    /* SSLv2 and SSLv3 are never offered, whatever main.cf says. */
    enabled[0] = enabled[1] = 0;
    return 0;
}

int tls_protocol_range(const char *spec, struct tls_protocol_range *range, char *err,
                       size_t errlen)
{
    int enabled[NPROTOCOLS];
    static const long no_option[NPROTOCOLS] = {0, 0, SSL_OP_NO_TLSv1, SSL_OP_NO_TLSv1_1,
                                               SSL_OP_NO_TLSv1_2, SSL_OP_NO_TLSv1_3};

    if (parse_protocols(spec, enabled, err, errlen) < 0)
        return -1;
    int lo = -1, hi = -1;
    for (int i = 0; i < (int)NPROTOCOLS; i++)
        if (enabled[i]) {
            if (lo < 0)
                lo = i;
            hi = i;
        }
    if (lo < 0) {
        snprintf(err, errlen, "TLS protocol list \"%s\" enables no protocol", spec);
        return -1;
    }
    range->min = protocols_known[lo].version;
    range->max = protocols_known[hi].version;
    range->no_options = 0;
    for (int i = lo; i <= hi; i++)
        if (!enabled[i])
            range->no_options |= (unsigned long)no_option[i];
    return 0;
}

/* The version range of spec plus "no" options for holes inside it. */
static int apply_protocols(SSL_CTX *ctx, const char *spec, char *err, size_t errlen)
{
    struct tls_protocol_range range;
    if (tls_protocol_range(spec, &range, err, errlen) < 0)
        return -1;
    if (range.no_options)
        SSL_CTX_set_options(ctx, range.no_options);
    if (!SSL_CTX_set_min_proto_version(ctx, range.min) ||
        !SSL_CTX_set_max_proto_version(ctx, range.max)) {
        snprintf(err, errlen, "cannot set TLS protocol range for \"%s\"", spec);
        return -1;
    }
    return 0;
}

/* Postfix's cipher grades as OpenSSL lists; anything else is passed to
 * OpenSSL as is. "low" and "export" mean "medium", as in Postfix 3.6+. */
const char *tls_cipher_list(const char *ciphers)
{
    if (!ciphers || !*ciphers || strcasecmp(ciphers, "medium") == 0 ||
        strcasecmp(ciphers, "low") == 0 || strcasecmp(ciphers, "export") == 0)
        return "HIGH:MEDIUM:!aNULL:!eNULL:!RC4:!3DES:@STRENGTH";
    if (strcasecmp(ciphers, "high") == 0)
        return "HIGH:!aNULL:!eNULL:@STRENGTH";
    if (strcasecmp(ciphers, "null") == 0)
        return "eNULL:!aNULL";
    return ciphers;
}

static int apply_ciphers(SSL_CTX *ctx, const char *ciphers, char *err, size_t errlen)
{
    const char *list = tls_cipher_list(ciphers);
    /* The TLSv1.3 suites are configured apart and stay at OpenSSL's
     * defaults, which are all strong. */
    if (!SSL_CTX_set_cipher_list(ctx, list)) {
        snprintf(err, errlen, "bad cipher list \"%s\"", list);
        return -1;
    }
    return 0;
}

static void error_with_openssl(char *err, size_t errlen, const char *what, const char *arg)
{
    char ossl[256];
    tls_error_text(ossl, sizeof(ossl));
    snprintf(err, errlen, "%s %s: %s", what, arg, ossl);
}

/* Options both halves share: no compression, no renegotiation by the peer,
 * fresh (EC)DHE keys. */
static void common_options(SSL_CTX *ctx)
{
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_SINGLE_DH_USE | SSL_OP_SINGLE_ECDH_USE);
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
}

SSL_CTX *tls_server_ctx(const char *cert_file, const char *key_file, const char *protocols,
                        const char *ciphers, char *err, size_t errlen)
{
    if (!cert_file || !*cert_file) {
        snprintf(err, errlen, "no server certificate file configured");
        return NULL;
    }
    if (!key_file || !*key_file)
        key_file = cert_file;   /* Postfix: the key may live in the cert file */
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        error_with_openssl(err, errlen, "cannot create", "server context");
        return NULL;
    }
    common_options(ctx);
    /* No server-side session cache (it would only grow memory): sessions
     * resume by tickets, if tls_server_resumption turns them on. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        error_with_openssl(err, errlen, "cannot load certificate", cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        error_with_openssl(err, errlen, "cannot load private key", key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        error_with_openssl(err, errlen, "private key does not match certificate", cert_file);
        goto fail;
    }
    if (apply_protocols(ctx, protocols, err, errlen) < 0 ||
        apply_ciphers(ctx, ciphers, err, errlen) < 0)
        goto fail;
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* The server's ticket keys: made at ticket_key_born (0: resumption off),
 * random, or derived from a secret the processes of a service share. */
static time_t ticket_key_born;
static unsigned char ticket_secret[32];
static size_t ticket_secret_len;
static long long ticket_epoch = -1;

/* OpenSSL's 80-byte layout (name, HMAC secret, AES key) filled from the
 * shared secret and the period number: every process that holds the
 * secret seals and opens the same tickets, and all change key together. */
static int derive_ticket_keys(unsigned char *keys, size_t len, long long epoch)
{
    unsigned char block[32];
    unsigned int blen;
    for (size_t off = 0, i = 0; off < len; off += sizeof(block), i++) {
        char label[64];
        int n = snprintf(label, sizeof(label), "postern tls ticket keys %lld %zu", epoch, i);
        if (!HMAC(EVP_sha256(), ticket_secret, (int)ticket_secret_len,
                  (const unsigned char *)label, (size_t)n, block, &blen) || blen != sizeof(block)) {
            OPENSSL_cleanse(block, sizeof(block));
            return -1;
        }
        memcpy(keys + off, block, len - off < sizeof(block) ? len - off : sizeof(block));
    }
    OPENSSL_cleanse(block, sizeof(block));
    return 0;
}

/* New keys for sealing tickets: 0, or -1 when OpenSSL has none. */
static int new_ticket_key(SSL_CTX *ctx)
{
    unsigned char keys[80];
    time_t now = time(NULL);
    long long epoch = (long long)now / SSL_CTX_get_timeout(ctx);
    int ok = ticket_secret_len ? derive_ticket_keys(keys, sizeof(keys), epoch) == 0
                               : RAND_bytes(keys, sizeof(keys)) == 1;
    ok = ok && SSL_CTX_set_tlsext_ticket_keys(ctx, keys, sizeof(keys)) == 1;
    OPENSSL_cleanse(keys, sizeof(keys));
    if (!ok)
        return -1;
    ticket_key_born = now;
    ticket_epoch = epoch;
    return 0;
}

void tls_server_resumption(SSL_CTX *ctx, long lifetime, const unsigned char *secret,
                           size_t secret_len)
{
    if (lifetime <= 0)
        return;
    ticket_secret_len = 0;
    if (secret && secret_len > 0) {
        ticket_secret_len = secret_len < sizeof(ticket_secret) ? secret_len : sizeof(ticket_secret);
        memcpy(ticket_secret, secret, ticket_secret_len);
    }
    SSL_CTX_set_timeout(ctx, lifetime);
    if (new_ticket_key(ctx) < 0)
        return;
    /* One ticket per handshake: a client resumes once per connection, and
     * each ticket costs an encryption and a write. */
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
}

void tls_server_ticket_key_check(SSL_CTX *ctx)
{
    if (!ticket_key_born)
        return;
    time_t now = time(NULL);
    long lifetime = SSL_CTX_get_timeout(ctx);
    int due = ticket_secret_len ? (long long)now / lifetime != ticket_epoch
                                : now - ticket_key_born >= lifetime;
    if (due)
        new_ticket_key(ctx);   /* on failure the old key stays: still secret */
}

SSL_CTX *tls_client_ctx(const char *ca_file, const char *protocols, const char *ciphers,
                        char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        error_with_openssl(err, errlen, "cannot create", "client context");
        return NULL;
    }
    common_options(ctx);
    /* Opportunistic TLS: the handshake never fails on the certificate; the
     * caller asks tls_peer_verified afterwards and decides. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    if (ca_file && *ca_file && SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        error_with_openssl(err, errlen, "cannot load CA file", ca_file);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (apply_protocols(ctx, protocols, err, errlen) < 0 ||
        apply_ciphers(ctx, ciphers, err, errlen) < 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

void tls_describe(const SSL *ssl, char *out, size_t outlen)
{
    const SSL_CIPHER *cipher = SSL_get_current_cipher(ssl);
    if (!cipher) {
        snprintf(out, outlen, "%s", SSL_get_version(ssl));
        return;
    }
    int alg_bits = 0;
    int bits = SSL_CIPHER_get_bits(cipher, &alg_bits);
    snprintf(out, outlen, "%s with cipher %s (%d/%d bits)", SSL_get_version(ssl),
             SSL_CIPHER_get_name(cipher), bits, alg_bits);
}

/* An IP-literal nexthop ("127.0.0.1", "[::1]", "[IPv6:::1]") is matched
 * against the certificate's IP address subjectAltNames, as Postfix does;
 * any other name against its DNS names. */
static int name_matches(X509 *cert, const char *hostname)
{
    char ip[64];
    const char *start = hostname;
    size_t len = strlen(hostname);
    if (len >= 2 && hostname[0] == '[' && hostname[len - 1] == ']') {
        start++;
        len -= 2;
    }
    if (len > 5 && strncasecmp(start, "IPv6:", 5) == 0) {
        start += 5;
        len -= 5;
    }
    unsigned char bin[16];
    if (len < sizeof(ip)) {
        memcpy(ip, start, len);
        ip[len] = 0;
        if (inet_pton(AF_INET, ip, bin) == 1 || inet_pton(AF_INET6, ip, bin) == 1)
            return X509_check_ip_asc(cert, ip, 0) == 1;
    }
    return X509_check_host(cert, hostname, 0, 0, NULL) == 1;
}

int tls_peer_verified(SSL *ssl, const char *hostname, char *why, size_t whylen)
{
    X509 *cert = SSL_get1_peer_certificate(ssl);
    if (!cert) {
        snprintf(why, whylen, "no peer certificate");
        return 0;
    }
    int ok = 0;
    long result = SSL_get_verify_result(ssl);
    SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);
    X509_STORE *store = ctx ? SSL_CTX_get_cert_store(ctx) : NULL;
    if (!store || !X509_STORE_get0_objects(store) ||
        sk_X509_OBJECT_num(X509_STORE_get0_objects(store)) == 0) {
        snprintf(why, whylen, "no CA file to verify against");
    } else if (result != X509_V_OK) {
        snprintf(why, whylen, "certificate verification failed: %s",
                 X509_verify_cert_error_string(result));
    } else if (!hostname || !*hostname) {
        snprintf(why, whylen, "no name to match the certificate against");
    } else if (!name_matches(cert, hostname)) {
        snprintf(why, whylen, "certificate does not match name %s", hostname);
    } else {
        ok = 1;
        if (whylen)
            why[0] = 0;
    }
    X509_free(cert);
    return ok;
}

void tls_error_text(char *out, size_t outlen)
{
    unsigned long e = ERR_get_error();
    unsigned long next;
    /* The first error queued is the root cause; drop the rest so they do
     * not show up against a later, unrelated failure. */
    while ((next = ERR_get_error()) != 0)
        ;
    if (!e) {
        snprintf(out, outlen, "unknown TLS error");
        return;
    }
    ERR_error_string_n(e, out, outlen);
}
