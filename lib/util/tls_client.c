/* tls_client.c - the client half of TLS for SMTP (tls_client.h): one
 * context with trust anchors, client certificate and DANE support; per
 * connection the protocols, ciphers, names, TLSA records and a cached
 * session; afterwards the trust verdict and the summary, worded as
 * Postfix's smtp(8) logs them.
 *
 * Names and TLSA records are handed to OpenSSL's own verifier, so a name
 * mismatch or a TLSA mismatch is a verification failure like any other
 * ("num=62:hostname mismatch"). Pinned fingerprints and trust-anchor
 * files go the same way, as DANE-EE(3) and DANE-TA(2) records (as Postfix
 * does), so their failures read "num=65:no matching DANE TLSA records".
 * The handshake itself never fails on the
 * certificate (SSL_VERIFY_NONE): the caller reads the verdict and decides
 * by its policy.
 *
 * The session cache is a small table in the process, keyed by what the
 * caller says makes two connections equivalent (server, port and the
 * policy that judged the certificate); entries expire after an hour.
 */
#include "tls_client.h"

#include "tls.h"

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SESSIONS_MAX 128          /* cached sessions, all servers */
#define SESSION_KEY_MAX 512
#define SESSION_LIFETIME 3600     /* seconds, as smtp_tls_session_cache_timeout */
#define CIPHERS_MAX 2048          /* the cipher list with its exclusions */

struct cached_session {
    char key[SESSION_KEY_MAX];
    SSL_SESSION *sess;
    time_t stored;
};

static struct cached_session sessions[SESSIONS_MAX];
static int key_index = -1;

/* --- the session cache ------------------------------------------------- */

static void key_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    free(ptr);
}

static struct cached_session *session_slot(const char *key, int for_store)
{
    struct cached_session *oldest = &sessions[0];
    time_t now = time(NULL);

    for (size_t i = 0; i < SESSIONS_MAX; i++) {
        struct cached_session *c = &sessions[i];
        if (c->sess != NULL && now - c->stored > SESSION_LIFETIME) {
            SSL_SESSION_free(c->sess);
            c->sess = NULL;
        }
        if (c->sess != NULL && strcmp(c->key, key) == 0)
            return c;
        if (c->sess == NULL || (oldest->sess != NULL && c->stored < oldest->stored))
            oldest = c;
    }
    return for_store ? oldest : NULL;
}

/* A copy is kept: OpenSSL marks the connection's own session unusable
 * when the connection ends without a close_notify. */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    const char *key = key_index >= 0 ? SSL_get_ex_data(ssl, key_index) : NULL;
    struct cached_session *c;
    SSL_SESSION *copy;

    if (key == NULL || !SSL_SESSION_is_resumable(sess) || (copy = SSL_SESSION_dup(sess)) == NULL)
        return 0;
    c = session_slot(key, 1);
    if (c->sess != NULL)
        SSL_SESSION_free(c->sess);
    snprintf(c->key, sizeof(c->key), "%s", key);
    c->sess = copy;
    c->stored = time(NULL);
    return 0;
}

int tls_client_resume(SSL *ssl, const char *key)
{
    struct cached_session *c;
    char *copy;
    int offered = 0;

    if (key_index < 0 || strlen(key) >= SESSION_KEY_MAX || (copy = strdup(key)) == NULL)
        return 0;
    if (!SSL_set_ex_data(ssl, key_index, copy)) {
        free(copy);
        return 0;
    }
    if ((c = session_slot(key, 0)) != NULL) {
        SSL_SESSION *sess = SSL_SESSION_dup(c->sess);
        offered = sess != NULL && SSL_set_session(ssl, sess) == 1;
        SSL_SESSION_free(sess);
        /* A TLS 1.3 ticket is for one use; fresh ones come with the
         * connection. */
        if (SSL_SESSION_get_protocol_version(c->sess) >= TLS1_3_VERSION) {
            SSL_SESSION_free(c->sess);
            c->sess = NULL;
        }
    }
    return offered;
}

int tls_client_resumed(const SSL *ssl)
{
    return SSL_session_reused(ssl);
}

/* --- the context -------------------------------------------------------- */

static int failed(char *err, size_t errlen, const char *what, const char *arg)
{
    char ossl[256];

    tls_error_text(ossl, sizeof(ossl));
    snprintf(err, errlen, "%s %s: %s", what, arg, ossl);
    return -1;
}

static int load_trust(SSL_CTX *ctx, const struct tls_client_config *c, char *err, size_t errlen)
{
    const char *file = c->ca_file != NULL && *c->ca_file ? c->ca_file : NULL;
    const char *path = c->ca_path != NULL && *c->ca_path ? c->ca_path : NULL;

    if ((file != NULL || path != NULL) && SSL_CTX_load_verify_locations(ctx, file, path) != 1)
        return failed(err, errlen, "cannot load CA file or directory", file ? file : path);
    return 0;
}

static int load_client_cert(SSL_CTX *ctx, const struct tls_client_config *c, char *err,
                            size_t errlen)
{
    const char *key;

    if (c->cert_file == NULL || *c->cert_file == 0)
        return 0;
    key = c->key_file != NULL && *c->key_file ? c->key_file : c->cert_file;
    if (SSL_CTX_use_certificate_chain_file(ctx, c->cert_file) != 1)
        return failed(err, errlen, "cannot load client certificate", c->cert_file);
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        return failed(err, errlen, "cannot load client key", key);
    if (SSL_CTX_check_private_key(ctx) != 1)
        return failed(err, errlen, "client key does not match certificate", c->cert_file);
    return 0;
}

/* The fingerprint digest as the private matching type TLS_CLIENT_FINGERPRINT. */
static int register_fingerprint_digest(SSL_CTX *ctx, const char *name, char *err, size_t errlen)
{
    const EVP_MD *md;

    if (name == NULL || *name == 0)
        return 0;
    if ((md = EVP_get_digestbyname(name)) == NULL) {
        snprintf(err, errlen, "unsupported fingerprint digest \"%.64s\"", name);
        return -1;
    }
    if (SSL_CTX_dane_mtype_set(ctx, md, TLS_CLIENT_FINGERPRINT, 0) <= 0)
        return failed(err, errlen, "cannot use fingerprint digest", name);
    return 0;
}

SSL_CTX *tls_client_context(const struct tls_client_config *c, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (ctx == NULL) {
        failed(err, errlen, "cannot create", "client context");
        return NULL;
    }
    if (key_index < 0)
        key_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, key_free);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
    if (load_trust(ctx, c, err, errlen) < 0 || load_client_cert(ctx, c, err, errlen) < 0
        || (SSL_CTX_dane_enable(ctx) <= 0 && failed(err, errlen, "cannot enable", "DANE") < 0)
        || register_fingerprint_digest(ctx, c->fingerprint_digest, err, errlen) < 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* --- one connection ------------------------------------------------------- */

static int is_list_separator(char c)
{
    return c == ':' || c == ',' || c == ' ' || c == '\t';
}

/* "list" + ":!name" for each excluded name. */
static int cipher_list_excluding(const char *list, const char *exclude, char *out, size_t outlen)
{
    size_t n = (size_t)snprintf(out, outlen, "%s", list);
    const char *p = exclude != NULL ? exclude : "";

    while (n < outlen && *p) {
        while (*p && is_list_separator(*p))
            p++;
        const char *start = p;
        while (*p && !is_list_separator(*p))
            p++;
        if (p > start)
            n += (size_t)snprintf(out + n, outlen - n, ":!%.*s", (int)(p - start), start);
    }
    return n < outlen ? 0 : -1;
}

int tls_client_settings(SSL *ssl, const char *protocols, const char *grade, const char *exclude,
                        char *err, size_t errlen)
{
    struct tls_protocol_range range;
    char list[CIPHERS_MAX];

    if (tls_protocol_range(protocols, &range, err, errlen) < 0)
        return -1;
    SSL_set_options(ssl, range.no_options);
    if (!SSL_set_min_proto_version(ssl, range.min) || !SSL_set_max_proto_version(ssl, range.max)) {
        snprintf(err, errlen, "cannot set TLS protocol range for \"%s\"", protocols);
        return -1;
    }
    if (cipher_list_excluding(tls_cipher_list(grade), exclude, list, sizeof(list)) < 0) {
        snprintf(err, errlen, "cipher exclusion list too long");
        return -1;
    }
    if (!SSL_set_cipher_list(ssl, list)) {
        ERR_clear_error();
        snprintf(err, errlen, "bad cipher list \"%.200s\"", list);
        return -1;
    }
    return 0;
}

int tls_client_match_names(SSL *ssl, const char *const *names, size_t n, int ip_literal)
{
    X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);

    X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (ip_literal && n > 0)
        return X509_VERIFY_PARAM_set1_ip_asc(vp, names[0]) == 1 ? 0 : -1;
    for (size_t i = 0; i < n; i++)
        if ((i == 0 ? SSL_set1_host(ssl, names[i]) : SSL_add1_host(ssl, names[i])) != 1)
            return -1;
    return 0;
}

int tls_client_sni(SSL *ssl, const char *name)
{
    return SSL_set_tlsext_host_name(ssl, name) == 1 ? 0 : -1;
}

int tls_client_dane_enable(SSL *ssl, const char *base_domain)
{
    if (SSL_dane_enable(ssl, base_domain) <= 0)
        return -1;
    /* RFC 7672 3.1.1: a DANE-EE(3) match says nothing about names. */
    SSL_dane_set_flags(ssl, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
    return 0;
}

int tls_client_dane_add(SSL *ssl, unsigned usage, unsigned selector, unsigned mtype,
                        const unsigned char *data, size_t len)
{
    int rc;

    if (usage > 255 || selector > 255 || mtype > 255)
        return 0;
    rc = SSL_dane_tlsa_add(ssl, (uint8_t)usage, (uint8_t)selector, (uint8_t)mtype, data, len);
    ERR_clear_error();
    return rc > 0 ? 1 : rc == 0 ? 0 : -1;
}

/* Each certificate or public key of one PEM file as a DANE-TA(2) record
 * of ssl, or only counted when ssl is NULL. */
static int anchors_from_file(SSL *ssl, const char *file, char *err, size_t errlen)
{
    BIO *bio = BIO_new_file(file, "r");
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    long len;
    int taken = 0;

    if (bio == NULL) {
        /* Postfix's words, for the log scanners that know them. */
        snprintf(err, errlen, "error opening trust anchor file: %.200s: %s", file,
                 strerror(errno));
        ERR_clear_error();
        return -1;
    }
    while (PEM_read_bio(bio, &name, &header, &data, &len) == 1) {
        int selector = strcmp(name, "CERTIFICATE") == 0  ? 0
                       : strcmp(name, "PUBLIC KEY") == 0 ? 1
                                                         : -1;
        if (selector >= 0
            && (ssl == NULL
                || tls_client_dane_add(ssl, 2, (unsigned)selector, 0, data, (size_t)len) > 0))
            taken++;
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(data);
    }
    ERR_clear_error();  /* the end of the file reads as a PEM error */
    BIO_free(bio);
    if (taken == 0) {
        snprintf(err, errlen, "no trust anchor certificate or public key in %.200s", file);
        return -1;
    }
    return taken;
}

/* anchors_from_file for each file of the list. */
static int anchors_from_files(SSL *ssl, const char *files, char *err, size_t errlen)
{
    char file[4096];
    int total = 0;

    for (const char *p = files; *p;) {
        while (*p && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        size_t len = strcspn(p, " \t,");
        if (len == 0)
            break;
        if (len >= sizeof(file)) {
            snprintf(err, errlen, "trust anchor file name too long");
            return -1;
        }
        memcpy(file, p, len);
        file[len] = 0;
        p += len;
        int rc = anchors_from_file(ssl, file, err, errlen);
        if (rc < 0)
            return -1;
        total += rc;
    }
    return total;
}

int tls_client_trust_anchors(SSL *ssl, const char *files, char *err, size_t errlen)
{
    return anchors_from_files(ssl, files, err, errlen);
}

int tls_client_trust_anchors_check(const char *files, char *err, size_t errlen)
{
    return anchors_from_files(NULL, files, err, errlen);
}

/* Verification runs (SSL_VERIFY_NONE only keeps the handshake going) and
 * every step of it is marked failed. */
static int fail_every_step(int ok, X509_STORE_CTX *ctx)
{
    (void)ok;
    X509_STORE_CTX_set_error(ctx, X509_V_ERR_UNSPECIFIED);
    return 1;
}

void tls_client_never_verified(SSL *ssl)
{
    SSL_set_verify(ssl, SSL_VERIFY_NONE, fail_every_step);
}

/* --- the verdict -------------------------------------------------------------- */

static int names_asked(SSL *ssl)
{
    X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
    char *ip = X509_VERIFY_PARAM_get1_ip_asc(vp);
    int asked = X509_VERIFY_PARAM_get0_host(vp, 0) != NULL || ip != NULL;

    OPENSSL_free(ip);
    return asked;
}

static void failure_text(long result, X509 *cert, int *server_prefix, char *why, size_t whylen)
{
    char issuer[256];

    *server_prefix = 0;
    switch (result) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        X509_NAME_oneline(X509_get_issuer_name(cert), issuer, sizeof(issuer));
        snprintf(why, whylen, "untrusted issuer %s", issuer);
        return;
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        snprintf(why, whylen, "self-signed certificate");
        return;
    case X509_V_ERR_CERT_HAS_EXPIRED:
        snprintf(why, whylen, "certificate has expired");
        return;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        snprintf(why, whylen, "certificate not yet valid");
        return;
    default:
        *server_prefix = 1;
        snprintf(why, whylen, "num=%ld:%s", result, X509_verify_cert_error_string(result));
    }
}

enum tls_trust tls_client_trust(SSL *ssl, int *server_prefix, char *why, size_t whylen)
{
    X509 *cert = SSL_get0_peer_certificate(ssl);
    long result = SSL_get_verify_result(ssl);

    *server_prefix = 0;
    if (whylen > 0)
        why[0] = 0;
    if (cert == NULL) {
        snprintf(why, whylen, "no peer certificate");
        return TLS_TRUST_UNTRUSTED;
    }
    if (result != X509_V_OK) {
        failure_text(result, cert, server_prefix, why, whylen);
        return TLS_TRUST_UNTRUSTED;
    }
    if (SSL_get0_dane_authority(ssl, NULL, NULL) >= 0 || names_asked(ssl))
        return TLS_TRUST_VERIFIED;
    return TLS_TRUST_TRUSTED;
}

/* --- the summary ----------------------------------------------------------- */

static void key_exchange(SSL *ssl, char *out, size_t outlen)
{
    EVP_PKEY *tmp = NULL;
    char group[64] = "";

    out[0] = 0;
    if (!SSL_get_peer_tmp_key(ssl, &tmp) || tmp == NULL)
        return;
    if (EVP_PKEY_get_base_id(tmp) == EVP_PKEY_EC) {
        size_t len = 0;
        EVP_PKEY_get_utf8_string_param(tmp, "group", group, sizeof(group), &len);
    } else if (EVP_PKEY_get_base_id(tmp) == EVP_PKEY_DH) {
        snprintf(group, sizeof(group), "DHE (%d bits)", EVP_PKEY_get_bits(tmp));
    } else {
        snprintf(group, sizeof(group), "%s", OBJ_nid2sn(EVP_PKEY_get_base_id(tmp)));
    }
    snprintf(out, outlen, " key-exchange %s", group);
    EVP_PKEY_free(tmp);
}

static void server_signature(SSL *ssl, char *out, size_t outlen)
{
    X509 *cert = SSL_get0_peer_certificate(ssl);
    EVP_PKEY *pkey = cert != NULL ? X509_get0_pubkey(cert) : NULL;
    int type_nid = 0, digest_nid = 0, id;
    size_t n = 0;

    out[0] = 0;
    if (pkey == NULL)
        return;
    id = EVP_PKEY_get_base_id(pkey);
    SSL_get_peer_signature_type_nid(ssl, &type_nid);
    if (id == EVP_PKEY_RSA)
        n = (size_t)snprintf(out, outlen, " server-signature %s (%d bits)",
                             type_nid == EVP_PKEY_RSA_PSS ? "RSA-PSS" : "RSA",
                             EVP_PKEY_get_bits(pkey));
    else if (id == EVP_PKEY_EC) {
        char group[64] = "";
        size_t len = 0;
        EVP_PKEY_get_utf8_string_param(pkey, "group", group, sizeof(group), &len);
        int nid = OBJ_sn2nid(group);
        const char *nist = nid != NID_undef ? EC_curve_nid2nist(nid) : NULL;
        n = (size_t)snprintf(out, outlen, " server-signature ECDSA (%s)", nist ? nist : group);
    } else
        n = (size_t)snprintf(out, outlen, " server-signature %s", OBJ_nid2sn(id));
    if (n < outlen && SSL_get_peer_signature_nid(ssl, &digest_nid) && digest_nid != NID_undef)
        snprintf(out + n, outlen - n, " server-digest %s", OBJ_nid2sn(digest_nid));
}

void tls_client_describe(SSL *ssl, char *out, size_t outlen)
{
    char base[160], kex[96], sig[160];

    tls_describe(ssl, base, sizeof(base));
    key_exchange(ssl, kex, sizeof(kex));
    server_signature(ssl, sig, sizeof(sig));
    snprintf(out, outlen, "%s%s%s", base, kex, sig);
}
