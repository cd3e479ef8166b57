/* sasl_client.c - the client's half of SMTP AUTH: mechanism sets, security
 * options, and the PLAIN, LOGIN and CRAM-MD5 responses (sasl_client.h).
 *
 * The server's challenge is untrusted input: it is decoded into a bounded
 * buffer and refused when it is not base64 or does not fit. Buffers that
 * held a password are wiped before they go out of scope.
 */
#include "sasl_client.h"

#include "sasl.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const struct {
    const char *name;
    unsigned bit;
} mechs[] = {
    {"PLAIN", SASL_CLIENT_PLAIN},
    {"LOGIN", SASL_CLIENT_LOGIN},
    {"CRAM-MD5", SASL_CLIENT_CRAM_MD5},
};
#define NMECHS (sizeof(mechs) / sizeof(mechs[0]))

unsigned sasl_client_mech_bit(const char *name, size_t len)
{
    for (size_t i = 0; i < NMECHS; i++)
        if (strlen(mechs[i].name) == len && strncasecmp(mechs[i].name, name, len) == 0)
            return mechs[i].bit;
    return 0;
}

const char *sasl_client_mech_name(unsigned mech)
{
    for (size_t i = 0; i < NMECHS; i++)
        if (mechs[i].bit == mech)
            return mechs[i].name;
    return "";
}

static int is_separator(char c)
{
    return c == ',' || isspace((unsigned char)c);
}

unsigned sasl_client_mechs_parse(const char *list, size_t len)
{
    unsigned set = 0;
    size_t i = 0;

    while (i < len) {
        while (i < len && is_separator(list[i]))
            i++;
        size_t start = i;
        while (i < len && list[i] != 0 && !is_separator(list[i]))
            i++;
        if (i > start)
            set |= sasl_client_mech_bit(list + start, i - start);
        if (i < len && list[i] == 0)
            break;
    }
    return set;
}

int sasl_client_security_parse(const char *value, unsigned *flags, char *err, size_t errlen)
{
    static const struct {
        const char *word;
        unsigned flag;
    } words[] = {
        {"noplaintext", SASL_SEC_NOPLAINTEXT}, {"noanonymous", SASL_SEC_NOANONYMOUS},
        {"nodictionary", SASL_SEC_NODICTIONARY}, {"noactive", SASL_SEC_NOACTIVE},
        {"mutual_auth", SASL_SEC_MUTUAL_AUTH},
    };
    const char *p = value;

    *flags = 0;
    while (*p) {
        while (*p && is_separator(*p))
            p++;
        const char *start = p;
        while (*p && !is_separator(*p))
            p++;
        size_t len = (size_t)(p - start), k;
        if (len == 0)
            break;
        for (k = 0; k < sizeof(words) / sizeof(words[0]); k++)
            if (strlen(words[k].word) == len && strncasecmp(words[k].word, start, len) == 0)
                break;
        if (k == sizeof(words) / sizeof(words[0])) {
            snprintf(err, errlen, "unknown SASL security option \"%.*s\"", (int)len, start);
            return -1;
        }
        *flags |= words[k].flag;
    }
    return 0;
}

/* PLAIN and LOGIN send the password itself; CRAM-MD5 does not, but a
 * recorded exchange can be attacked offline, and none of the three
 * authenticates the server or resists an active attacker. None is
 * anonymous. */
unsigned sasl_client_mechs_allowed(unsigned offered, unsigned flags)
{
    unsigned allowed = offered & SASL_CLIENT_ALL;

    if (flags & SASL_SEC_NOPLAINTEXT)
        allowed &= ~(SASL_CLIENT_PLAIN | SASL_CLIENT_LOGIN);
    if (flags & (SASL_SEC_NODICTIONARY | SASL_SEC_NOACTIVE | SASL_SEC_MUTUAL_AUTH))
        allowed = 0;
    return allowed;
}

unsigned sasl_client_mech_choose(unsigned allowed)
{
    static const unsigned order[] = {SASL_CLIENT_CRAM_MD5, SASL_CLIENT_PLAIN, SASL_CLIENT_LOGIN};

    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
        if (allowed & order[i])
            return order[i];
    return 0;
}

int sasl_client_split_credentials(const char *value, char *user, size_t ulen, char *pass,
                                  size_t plen)
{
    const char *colon = strchr(value, ':');
    size_t n;

    if (colon == NULL || colon == value)
        return -1;
    n = (size_t)(colon - value);
    if (n >= ulen || strlen(colon + 1) >= plen)
        return -1;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)value[i] < 0x20 || value[i] == 0x7f)
            return -1;
    memcpy(user, value, n);
    user[n] = 0;
    snprintf(pass, plen, "%s", colon + 1);
    return 0;
}

int sasl_client_plain(const char *user, const char *pass, char *out, size_t outlen)
{
    return sasl_plain_response(user, pass, out, outlen);
}

int sasl_client_login(const char *value, char *out, size_t outlen)
{
    return sasl_base64_encode(value, strlen(value), out, outlen);
}

int sasl_client_cram_md5(const char *user, const char *pass, const char *challenge,
                         char *out, size_t outlen)
{
    unsigned char chal[SASL_CLIENT_CHALLENGE_MAX + 1], digest[EVP_MAX_MD_SIZE];
    char answer[SASL_CLIENT_USER_MAX + 2 * 16 + 2];
    unsigned int dlen = 0;
    int n, len, rc = -1;

    if (strlen(challenge) > 4 * (SASL_CLIENT_CHALLENGE_MAX / 3)
        || (n = sasl_base64_decode(challenge, chal, sizeof(chal))) <= 0
        || strlen(user) >= SASL_CLIENT_USER_MAX)
        return -1;
    if (HMAC(EVP_md5(), pass, (int)strlen(pass), chal, (size_t)n, digest, &dlen) == NULL
        || dlen != 16)
        goto done;
    len = snprintf(answer, sizeof(answer), "%s ", user);
    for (unsigned i = 0; i < dlen; i++)
        len += snprintf(answer + len, sizeof(answer) - (size_t)len, "%02x", digest[i]);
    rc = sasl_base64_encode(answer, (size_t)len, out, outlen);
done:
    OPENSSL_cleanse(digest, sizeof(digest));
    OPENSSL_cleanse(answer, sizeof(answer));
    return rc;
}
