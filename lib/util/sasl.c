/* sasl.c - SMTP AUTH PLAIN and LOGIN, base64 and crypt(3) password checks
 * (sasl.h).
 *
 * The exchange is a small state machine over client lines so that smtpd
 * can run it from its event loop; the password check is one table lookup
 * and one crypt_r call.
 */
#include "sasl.h"

#include "log.h"
#include "lookup.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* "Username:" and "Password:", the de facto LOGIN prompts. */
#define LOGIN_USER_PROMPT "VXNlcm5hbWU6"
#define LOGIN_PASS_PROMPT "UGFzc3dvcmQ6"

/* Hashed when the user is unknown, so that answer takes as long as a real
 * check (a SHA-512 crypt hash of a random string). */
#define DUMMY_HASH "$6$Qb9cXzDd2hL1Wm0e$" \
    "1zk1Nq0v2m3pVxS0eZ6j7y8H9a0bCdEfGhIjKlMnOpQrStUvWxYz0123456789ABCDEFGHIJKLMNOPQRSTUVW"

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(unsigned char c)
{
    const char *p = c ? strchr(b64_alphabet, c) : NULL;
    return p ? (int)(p - b64_alphabet) : -1;
}

int sasl_base64_decode(const char *in, unsigned char *out, size_t outlen)
{
    size_t len = strlen(in), n = 0;
    if (len % 4 != 0)
        return -1;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)in[i + k];
            /* '=' only at the end, at most two of them */
            if (c == '=' && i + 4 == len && k >= 2 && (k == 3 || in[i + 3] == '=')) {
                v[k] = 0;
                pad++;
            } else if ((v[k] = b64_value(c)) < 0) {
                return -1;
            }
        }
        unsigned char bytes[3] = {(unsigned char)(v[0] << 2 | v[1] >> 4),
                                  (unsigned char)((v[1] & 15) << 4 | v[2] >> 2),
                                  (unsigned char)((v[2] & 3) << 6 | v[3])};
        for (int k = 0; k < 3 - pad; k++) {
            if (n + 1 >= outlen)
                return -1;
            out[n++] = bytes[k];
        }
    }
    if (outlen == 0)
        return -1;
    out[n] = 0;
    return (int)n;
}

int sasl_base64_encode(const void *in, size_t len, char *out, size_t outlen)
{
    const unsigned char *p = in;
    size_t n = 0;
    if (((len + 2) / 3) * 4 + 1 > outlen)
        return -1;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)p[i] << 16;
        if (i + 1 < len)
            v |= (unsigned)p[i + 1] << 8;
        if (i + 2 < len)
            v |= p[i + 2];
        out[n++] = b64_alphabet[v >> 18 & 63];
        out[n++] = b64_alphabet[v >> 12 & 63];
        out[n++] = i + 1 < len ? b64_alphabet[v >> 6 & 63] : '=';
        out[n++] = i + 2 < len ? b64_alphabet[v & 63] : '=';
    }
    out[n] = 0;
    return (int)n;
}

enum sasl_mech sasl_mech_lookup(const char *name)
{
    if (strcasecmp(name, "PLAIN") == 0)
        return SASL_MECH_PLAIN;
    if (strcasecmp(name, "LOGIN") == 0)
        return SASL_MECH_LOGIN;
    return SASL_MECH_NONE;
}

const char *sasl_mech_name(enum sasl_mech mech)
{
    return mech == SASL_MECH_PLAIN ? "PLAIN" : mech == SASL_MECH_LOGIN ? "LOGIN" : "NONE";
}

/* User names go into logs and the queue file: no control characters. */
static int printable_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

/* Decode one base64 client line into buf; -1 when malformed. */
static int decode_line(const char *response, unsigned char *buf, size_t buflen)
{
    if (strlen(response) > SASL_LINE_MAX)
        return -1;
    return sasl_base64_decode(response, buf, buflen);
}

/* "authzid NUL authcid NUL password"; a different authzid (proxy
 * authorization) is not supported and reads as a bad response. */
static enum sasl_step plain_credentials(struct sasl_exchange *x, const char *response)
{
    unsigned char buf[SASL_NAME_MAX * 2 + SASL_PASS_MAX + 4];
    int n = decode_line(response, buf, sizeof(buf));
    if (n < 0)
        return SASL_BAD_RESPONSE;
    const char *authz = (const char *)buf;
    size_t alen = strnlen(authz, (size_t)n);
    if (alen == (size_t)n)
        return SASL_BAD_RESPONSE;
    const char *authc = authz + alen + 1;
    size_t clen = strnlen(authc, (size_t)n - alen - 1);
    if (alen + 1 + clen == (size_t)n)
        return SASL_BAD_RESPONSE;
    const char *pass = authc + clen + 1;
    size_t plen = (size_t)n - alen - clen - 2;
    enum sasl_step result = SASL_BAD_RESPONSE;
    if (strnlen(pass, plen) == plen && clen < sizeof(x->user) && plen < sizeof(x->pass) &&
        (alen == 0 || strcmp(authz, authc) == 0)) {
        memcpy(x->user, authc, clen + 1);
        memcpy(x->pass, pass, plen);
        x->pass[plen] = 0;
        result = printable_name(x->user) ? SASL_CREDENTIALS : SASL_BAD_RESPONSE;
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    return result;
}

/* One LOGIN answer (user name, then password) into dst. */
static int login_field(const char *response, char *dst, size_t dstlen)
{
    unsigned char buf[SASL_PASS_MAX > SASL_NAME_MAX ? SASL_PASS_MAX : SASL_NAME_MAX];
    int n = decode_line(response, buf, sizeof(buf));
    int ok = n >= 0 && (size_t)n < dstlen && strlen((char *)buf) == (size_t)n;
    if (ok)
        memcpy(dst, buf, (size_t)n + 1);
    OPENSSL_cleanse(buf, sizeof(buf));
    return ok ? 0 : -1;
}

static enum sasl_step set_challenge(const char *text, char *challenge, size_t clen)
{
    size_t n = strlen(text);
    if (n >= clen)
        return SASL_BAD_RESPONSE;
    memcpy(challenge, text, n + 1);
    return SASL_CONTINUE;
}

enum sasl_step sasl_exchange_start(struct sasl_exchange *x, enum sasl_mech mech,
                                   const char *initial, char *challenge, size_t clen)
{
    memset(x, 0, sizeof(*x));
    x->mech = mech;
    if (initial && strcmp(initial, "=") == 0)
        initial = "";
    if (!initial)
        return mech == SASL_MECH_PLAIN ? set_challenge("", challenge, clen)
                                       : set_challenge(LOGIN_USER_PROMPT, challenge, clen);
    return sasl_exchange_step(x, initial, challenge, clen);
}

enum sasl_step sasl_exchange_step(struct sasl_exchange *x, const char *response,
                                  char *challenge, size_t clen)
{
    if (strcmp(response, "*") == 0)
        return SASL_CANCELLED;
    if (x->mech == SASL_MECH_PLAIN)
        return plain_credentials(x, response);
    if (x->mech != SASL_MECH_LOGIN)
        return SASL_BAD_RESPONSE;
    if (x->step++ == 0) {
        if (login_field(response, x->user, sizeof(x->user)) < 0 || !printable_name(x->user))
            return SASL_BAD_RESPONSE;
        return set_challenge(LOGIN_PASS_PROMPT, challenge, clen);
    }
    if (login_field(response, x->pass, sizeof(x->pass)) < 0)
        return SASL_BAD_RESPONSE;
    return SASL_CREDENTIALS;
}

void sasl_exchange_clear(struct sasl_exchange *x)
{
    OPENSSL_cleanse(x, sizeof(*x));
}

/* crypt_r's state is tens of kilobytes: allocate it per check rather than
 * keep it on the stack. 1 when password hashes to hash. */
static int crypt_matches(const char *password, const char *hash)
{
    struct crypt_data *data = calloc(1, sizeof(*data));
    if (!data)
        return 0;
    const char *out = crypt_r(password, hash, data);
    size_t hlen = strlen(hash);
    int ok = out && out[0] != '*' && strlen(out) == hlen && CRYPTO_memcmp(out, hash, hlen) == 0;
    OPENSSL_cleanse(data, sizeof(*data));
    free(data);
    return ok;
}

int sasl_verify_password(struct lookup_list *maps, const char *user, const char *password)
{
    char *hash = NULL;
    int found = maps ? lookup_list_get(maps, user, &hash) : LOOKUP_NOTFOUND;
    if (found == LOOKUP_TEMPFAIL)
        return SASL_AUTH_TEMPFAIL;
    if (found != LOOKUP_FOUND) {
        crypt_matches(password, DUMMY_HASH);
        return SASL_AUTH_FAILED;
    }
    /* Table values may carry white space around the hash. */
    char *h = hash;
    while (*h == ' ' || *h == '\t')
        h++;
    size_t len = strlen(h);
    while (len && (h[len - 1] == ' ' || h[len - 1] == '\t'))
        h[--len] = 0;
    int ok = 0;
    if (h[0] != '$') {
        msg_warn("smtpd_sasl_password_maps: entry for %s is not a crypt(3) hash", user);
        crypt_matches(password, DUMMY_HASH);
    } else {
        ok = crypt_matches(password, h);
    }
    OPENSSL_cleanse(hash, strlen(hash));
    free(hash);
    return ok ? SASL_AUTH_OK : SASL_AUTH_FAILED;
}

int sasl_plain_response(const char *user, const char *password, char *out, size_t outlen)
{
    size_t ulen = strlen(user), plen = strlen(password);
    unsigned char buf[SASL_NAME_MAX + SASL_PASS_MAX + 2];
    if (ulen >= SASL_NAME_MAX || plen >= SASL_PASS_MAX)
        return -1;
    buf[0] = 0;
    memcpy(buf + 1, user, ulen);
    buf[1 + ulen] = 0;
    memcpy(buf + 2 + ulen, password, plen);
    int n = sasl_base64_encode(buf, ulen + plen + 2, out, outlen);
    OPENSSL_cleanse(buf, sizeof(buf));
    return n;
}
