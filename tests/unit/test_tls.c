/* test_tls.c - unit tests for lib/tls.c: Postfix-syntax protocol lists
 * turned into OpenSSL version ranges, cipher grades, refused
 * configurations (no certificate, a key that does not match, unknown
 * protocols, an empty range), and a real handshake between the server and
 * client contexts over a memory BIO pair: tls_describe's text, protocol
 * limits enforced, and tls_peer_verified with and without a CA file and
 * against the right and a wrong host name. The certificates are made here
 * (self-signed EC) in a mkdtemp directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tls.h"

struct fixture {
    char dir[64];
    char cert[128], key[128], other_key[128];
};

static void write_key(EVP_PKEY *pkey, const char *path)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(PEM_write_PrivateKey(fp, pkey, NULL, NULL, 0, NULL, NULL), 1);
    fclose(fp);
}

/* A self-signed certificate for CN=mx.test.example and its key, plus an
 * unrelated key. */
static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_tls.XXXXXX");
    if (!f || !mkdtemp(f->dir))
        return -1;
    snprintf(f->cert, sizeof(f->cert), "%s/cert.pem", f->dir);
    snprintf(f->key, sizeof(f->key), "%s/key.pem", f->dir);
    snprintf(f->other_key, sizeof(f->other_key), "%s/other.pem", f->dir);
    EVP_PKEY *pkey = EVP_EC_gen("P-256"), *other = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, pkey);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"mx.test.example",
                               -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509_sign(x, pkey, EVP_sha256());
    FILE *fp = fopen(f->cert, "w");
    PEM_write_X509(fp, x);
    fclose(fp);
    write_key(pkey, f->key);
    write_key(other, f->other_key);
    X509_free(x);
    EVP_PKEY_free(pkey);
    EVP_PKEY_free(other);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    unlink(f->cert);
    unlink(f->key);
    unlink(f->other_key);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void test_protocol_ranges(void **state)
{
    struct fixture *f = *state;
    char err[256];
    static const struct {
        const char *spec;
        int min, max;
    } cases[] = {
        {">=TLSv1.2", TLS1_2_VERSION, TLS1_3_VERSION},
        {"!SSLv2, !SSLv3, !TLSv1, !TLSv1.1", TLS1_2_VERSION, TLS1_3_VERSION},
        {"TLSv1.3", TLS1_3_VERSION, TLS1_3_VERSION},
        {"<=TLSv1.2 >=TLSv1.2", TLS1_2_VERSION, TLS1_2_VERSION},
        {"", TLS1_VERSION, TLS1_3_VERSION},
        {"SSLv3:TLSv1.2", TLS1_2_VERSION, TLS1_2_VERSION},   /* SSLv3 never comes back */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        SSL_CTX *ctx = tls_server_ctx(f->cert, f->key, cases[i].spec, "medium", err, sizeof(err));
        assert_non_null(ctx);
        assert_int_equal(SSL_CTX_get_min_proto_version(ctx), cases[i].min);
        assert_int_equal(SSL_CTX_get_max_proto_version(ctx), cases[i].max);
        SSL_CTX_free(ctx);
    }
    /* A hole inside the range is closed with an option. */
    SSL_CTX *ctx = tls_client_ctx(NULL, "TLSv1.1, TLSv1.3", "high", err, sizeof(err));
    assert_non_null(ctx);
    assert_true(SSL_CTX_get_options(ctx) & SSL_OP_NO_TLSv1_2);
    SSL_CTX_free(ctx);
}

static void test_refused_configurations(void **state)
{
    struct fixture *f = *state;
    char err[256];
    assert_null(tls_server_ctx(f->cert, f->key, "TLSv9", "medium", err, sizeof(err)));
    assert_non_null(strstr(err, "TLSv9"));
    assert_null(tls_server_ctx(f->cert, f->key, ">=TLSv1.3, <=TLSv1.2", "medium", err,
                               sizeof(err)));
    assert_null(tls_server_ctx(f->cert, f->key, ">=TLSv1.2", "NOSUCHCIPHER", err, sizeof(err)));
    assert_null(tls_server_ctx("", f->key, ">=TLSv1.2", "medium", err, sizeof(err)));
    assert_null(tls_server_ctx("/nonexistent/cert.pem", f->key, "", "", err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/cert.pem"));
    assert_null(tls_server_ctx(f->cert, f->other_key, "", "", err, sizeof(err)));
    assert_null(tls_client_ctx("/nonexistent/ca.pem", "", "", err, sizeof(err)));
    char text[256];
    tls_error_text(text, sizeof(text));
    assert_true(strlen(text) > 0);
}

/* Drive both ends over a BIO pair; 1 when both finished the handshake. */
static int handshake(SSL *client, SSL *server)
{
    BIO *a, *b;
    BIO_new_bio_pair(&a, 0, &b, 0);
    SSL_set_bio(client, a, a);
    SSL_set_bio(server, b, b);
    SSL_set_connect_state(client);
    SSL_set_accept_state(server);
    int cdone = 0, sdone = 0;
    for (int i = 0; i < 100 && !(cdone && sdone); i++) {
        if (!cdone) {
            int r = SSL_do_handshake(client);
            if (r == 1)
                cdone = 1;
            else if (SSL_get_error(client, r) != SSL_ERROR_WANT_READ)
                return 0;
        }
        if (!sdone) {
            int r = SSL_do_handshake(server);
            if (r == 1)
                sdone = 1;
            else if (SSL_get_error(server, r) != SSL_ERROR_WANT_READ)
                return 0;
        }
    }
    return cdone && sdone;
}

static void test_handshake_and_verification(void **state)
{
    struct fixture *f = *state;
    char err[256], text[256], why[256];
    SSL_CTX *sctx = tls_server_ctx(f->cert, f->key, ">=TLSv1.2", "medium", err, sizeof(err));
    SSL_CTX *cctx = tls_client_ctx(f->cert, ">=TLSv1.2", "medium", err, sizeof(err));
    SSL_CTX *nocactx = tls_client_ctx("", ">=TLSv1.2", "medium", err, sizeof(err));
    assert_non_null(sctx);
    assert_non_null(cctx);
    assert_non_null(nocactx);

    SSL *c = SSL_new(cctx), *s = SSL_new(sctx);
    assert_true(handshake(c, s));
    tls_describe(s, text, sizeof(text));
    if (strncmp(text, "TLSv1.3 with cipher TLS_", 24) != 0 || !strstr(text, " bits)"))
        fail_msg("tls_describe: %s", text);
    assert_int_equal(tls_peer_verified(c, "mx.test.example", why, sizeof(why)), 1);
    assert_int_equal(tls_peer_verified(c, "other.example", why, sizeof(why)), 0);
    assert_non_null(strstr(why, "other.example"));
    /* The server asked for no client certificate. */
    assert_int_equal(tls_peer_verified(s, "client.example", why, sizeof(why)), 0);
    SSL_free(c);
    SSL_free(s);

    c = SSL_new(nocactx);
    s = SSL_new(sctx);
    assert_true(handshake(c, s));   /* opportunistic: no CA, still encrypted */
    assert_int_equal(tls_peer_verified(c, "mx.test.example", why, sizeof(why)), 0);
    assert_non_null(strstr(why, "CA"));
    SSL_free(c);
    SSL_free(s);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    SSL_CTX_free(nocactx);
}

static void test_protocol_mismatch_fails(void **state)
{
    struct fixture *f = *state;
    char err[256], text[256];
    SSL_CTX *sctx = tls_server_ctx(f->cert, f->key, "TLSv1.3", "medium", err, sizeof(err));
    SSL_CTX *cctx = tls_client_ctx(NULL, "TLSv1.2", "medium", err, sizeof(err));
    SSL *c = SSL_new(cctx), *s = SSL_new(sctx);
    assert_false(handshake(c, s));
    SSL_free(c);
    SSL_free(s);
    /* TLSv1.2 on both sides: the description names it. */
    SSL_CTX_free(sctx);
    sctx = tls_server_ctx(f->cert, f->key, "TLSv1.2", "high", err, sizeof(err));
    c = SSL_new(cctx);
    s = SSL_new(sctx);
    assert_true(handshake(c, s));
    tls_describe(c, text, sizeof(text));
    if (strncmp(text, "TLSv1.2 with cipher ", 20) != 0)
        fail_msg("tls_describe: %s", text);
    SSL_free(c);
    SSL_free(s);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_protocol_ranges),
        cmocka_unit_test(test_refused_configurations),
        cmocka_unit_test(test_handshake_and_verification),
        cmocka_unit_test(test_protocol_mismatch_fails),
    };
    return cmocka_run_group_tests_name("tls", tests, setup, teardown);
}
