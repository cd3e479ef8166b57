/* tls_policy.c - the TLS policy of a destination (remote.h): the level
 * and attributes from smtp_tls_policy_maps, else smtp_tls_security_level
 * and the smtp_tls_* defaults, as Postfix's smtp(8) takes them.
 *
 * The table is looked up with the nexthop exactly as qmgr wrote it
 * ("[host]:port", "domain", "domain:port"), then, for a domain, with each
 * parent domain after a dot (".example.com", ".com"). An answer is a level
 * (none, may, encrypt, dane, dane-only, verify, secure) and attributes:
 * match= (names the certificate must match, ':' between them; hostname,
 * nexthop and dot-nexthop stand for those names), protocols=, ciphers=,
 * exclude= and servername=. An answer that does not parse defers the
 * mail ("client TLS configuration problem") with a warning that names
 * the key, never a silent downgrade.
 *
 * For each connection it makes the SSL object the policy asks for
 * (protocols, ciphers, names or TLSA records, SNI, a cached session) and,
 * as Postfix does, hands fingerprints (smtp_tls_fingerprint_digest) to
 * OpenSSL as DANE-EE(3) records of the certificate and of its key, and
 * trust anchors as DANE-TA(2) records, warning of each it cannot use;
 * after the handshake, judges and logs it as Postfix does
 * (smtp_tls_loglevel 1: "Verified/Trusted/Untrusted TLS connection
 * established to H[A]:P: ...", and where verification is required,
 * "certificate verification failed for ...").
 */
#include "remote.h"

#include "config.h"
#include "log.h"
#include "lookup.h"
#include "tls_client.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static struct {
    struct lookup_list *maps;
    enum tls_level level;
} tp;

static const char *const level_names[] = {
    [TLS_LEVEL_NONE] = "none",       [TLS_LEVEL_MAY] = "may",
    [TLS_LEVEL_ENCRYPT] = "encrypt", [TLS_LEVEL_DANE] = "dane",
    [TLS_LEVEL_DANE_ONLY] = "dane-only", [TLS_LEVEL_VERIFY] = "verify",
    [TLS_LEVEL_SECURE] = "secure",   [TLS_LEVEL_FINGERPRINT] = "fingerprint",
};

const char *tls_level_name(enum tls_level level)
{
    return level_names[level];
}

/* -1 when name is no level we have. */
static int level_parse(const char *name, size_t len, enum tls_level *level)
{
    if (len == 0) {
        *level = TLS_LEVEL_NONE;
        return 0;
    }
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
        if (strlen(level_names[i]) == len && strncasecmp(level_names[i], name, len) == 0) {
            *level = (enum tls_level)i;
            return 0;
        }
    return -1;
}

void tls_policy_init(void)
{
    /* Run as lmtp, remote reads lmtp_tls_security_level instead. */
    const char *name = remote_cfg.lmtp ? "lmtp_tls_security_level" : "smtp_tls_security_level";
    const char *value = remote_cfg.lmtp ? var.lmtp_tls_security_level : var.smtp_tls_security_level;
    char err[256];

    if (level_parse(value, strlen(value), &tp.level) < 0)
        msg_fatal("unsupported %s \"%s\"", name, value);
    if (*var.smtp_tls_policy_maps
        && (tp.maps = lookup_list_open(var.smtp_tls_policy_maps, err, sizeof(err))) == NULL)
        msg_fatal("smtp_tls_policy_maps: %s", err);
}

int tls_policy_mandatory(const struct tls_policy *p)
{
    switch (p->level) {
    case TLS_LEVEL_ENCRYPT:
    case TLS_LEVEL_VERIFY:
    case TLS_LEVEL_SECURE:
    case TLS_LEVEL_DANE_ONLY:
    case TLS_LEVEL_FINGERPRINT:
        return 1;
    case TLS_LEVEL_DANE:
        return p->tlsa != NULL && p->tlsa->n > 0;
    default:
        return 0;
    }
}

int tls_policy_verifies(const struct tls_policy *p)
{
    return p->level == TLS_LEVEL_VERIFY || p->level == TLS_LEVEL_SECURE
           || p->level == TLS_LEVEL_FINGERPRINT
           || ((p->level == TLS_LEVEL_DANE || p->level == TLS_LEVEL_DANE_ONLY) && p->tlsa != NULL
               && p->tlsa->n > 0);
}

/* name=value of one attribute into its field; a repeated match= or
 * tafile= adds to the earlier ones. -1 when unknown or too long. */
static int take_attribute(struct tls_policy *p, const char *word, size_t len)
{
#define ATTR(name, field, sep) {name, offsetof(struct tls_policy, field), \
                                sizeof(((struct tls_policy *)0)->field), sep}
    static const struct {
        const char *name;
        size_t offset, size;
        char sep;   /* between repeated values; 0: the last one counts */
    } attrs[] = {
        ATTR("match", match, ':'),         ATTR("protocols", protocols, 0),
        ATTR("ciphers", ciphers, 0),       ATTR("exclude", exclude, 0),
        ATTR("servername", servername, 0), ATTR("tafile", tafile, ' '),
    };
#undef ATTR
    const char *eq = memchr(word, '=', len);

    if (eq == NULL)
        return -1;
    for (size_t i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++) {
        size_t nlen = strlen(attrs[i].name);
        size_t vlen = len - (size_t)(eq - word) - 1;
        if ((size_t)(eq - word) != nlen || strncasecmp(word, attrs[i].name, nlen) != 0)
            continue;
        char *field = (char *)p + attrs[i].offset;
        size_t used = attrs[i].sep ? strlen(field) : 0;
        char sep = p->level == TLS_LEVEL_FINGERPRINT && attrs[i].sep == ':' ? '|' : attrs[i].sep;
        if (used + 1 + vlen >= attrs[i].size)
            return -1;
        if (used > 0)
            field[used++] = sep;
        memcpy(field + used, eq + 1, vlen);
        field[used + vlen] = 0;
        return 0;
    }
    return -1;
}

int tls_policy_parse(const char *value, struct tls_policy *p, char *err, size_t errlen)
{
    const char *s = value;
    int first = 1;

    memset(p, 0, sizeof(*p));
    p->level = TLS_LEVEL_NONE;
    while (*s) {
        while (*s && (isspace((unsigned char)*s) || *s == ','))
            s++;
        const char *start = s;
        while (*s && !isspace((unsigned char)*s) && *s != ',')
            s++;
        size_t len = (size_t)(s - start);
        if (len == 0)
            break;
        if (first) {
            if (level_parse(start, len, &p->level) < 0) {
                snprintf(err, errlen, "invalid security level \"%.*s\"", (int)len, start);
                return -1;
            }
            first = 0;
        } else if (take_attribute(p, start, len) < 0) {
            snprintf(err, errlen, "invalid attribute \"%.*s\"", (int)(len > 100 ? 100 : len),
                     start);
            return -1;
        }
    }
    if (first) {
        snprintf(err, errlen, "empty policy");
        return -1;
    }
    return 0;
}

/* The table's answer for key: LOOKUP_*, with p filled when found. */
static int lookup_policy(const char *key, struct tls_policy *p, char *text, size_t textlen)
{
    char *value = NULL, err[160];
    int rc = lookup_list_get(tp.maps, key, &value);

    if (rc != LOOKUP_FOUND)
        return rc;
    if (tls_policy_parse(value, p, err, sizeof(err)) < 0) {
        msg_warn("smtp_tls_policy_maps: entry for %.200s: %s", key, err);
        snprintf(text, textlen, "client TLS configuration problem");
        free(value);
        return LOOKUP_TEMPFAIL;
    }
    free(value);
    return LOOKUP_FOUND;
}

/* The trust-anchor files verify and secure would use: tafile= or
 * smtp_tls_trust_anchor_file ("" none). */
static const char *anchor_files(const struct tls_policy *p)
{
    if (p->level != TLS_LEVEL_VERIFY && p->level != TLS_LEVEL_SECURE)
        return "";
    return p->tafile[0] ? p->tafile : remote_cfg.tls_trust_anchor_file;
}

/* As Postfix, trust-anchor files that cannot be read, or hold no anchor,
 * defer the mail before any connection. 0, or -1 with text. */
static int anchors_usable(const struct nexthop *nh, const char *nexthop_text,
                          const struct tls_policy *p, char *text, size_t textlen)
{
    char err[320];

    if (*anchor_files(p) == 0)
        return 0;
    err[0] = 0;
    if (tls_client_trust_anchors_check(anchor_files(p), err, sizeof(err)) > 0)
        return 0;
    if (strncmp(err, "error opening", 13) == 0)
        msg_warn("%s", err);
    msg_warn("TLS policy lookup for %s/%s: client TLS configuration problem", nexthop_text,
             nh->name);
    snprintf(text, textlen, "client TLS configuration problem");
    return -1;
}

int tls_policy_find(const struct nexthop *nh, const char *nexthop_text, struct tls_policy *p,
                    char *text, size_t textlen)
{
    int rc = LOOKUP_NOTFOUND;

    memset(p, 0, sizeof(*p));
    p->level = tp.level;
    if (tp.maps == NULL)
        return anchors_usable(nh, nexthop_text, p, text, textlen);
    snprintf(text, textlen, "TLS policy lookup failure");
    rc = lookup_policy(nexthop_text, p, text, textlen);
    if (rc == LOOKUP_NOTFOUND && nh->mx && !nh->literal)
        for (const char *dot = strchr(nh->name, '.'); dot != NULL && rc == LOOKUP_NOTFOUND;
             dot = strchr(dot + 1, '.'))
            rc = lookup_policy(dot, p, text, textlen);
    if (rc == LOOKUP_TEMPFAIL)
        return -1;
    if (rc == LOOKUP_NOTFOUND) {
        memset(p, 0, sizeof(*p));
        p->level = tp.level;
    }
    return anchors_usable(nh, nexthop_text, p, text, textlen);
}

/* One match word resolved into names[] (pointers into buf). */
static size_t add_name(const char *word, size_t len, const char *host, const char *nexthop,
                       char **buf, size_t *left, const char **names, size_t n, size_t max)
{
    const char *value = word;
    size_t vlen = len;
    int dot = 0;

    if (len == 8 && strncasecmp(word, "hostname", 8) == 0) {
        value = host;
        vlen = strlen(host);
    } else if (len == 7 && strncasecmp(word, "nexthop", 7) == 0) {
        value = nexthop;
        vlen = strlen(nexthop);
    } else if (len == 11 && strncasecmp(word, "dot-nexthop", 11) == 0) {
        value = nexthop;
        vlen = strlen(nexthop);
        dot = 1;
    }
    if (n >= max || vlen == 0 || vlen + 2 > *left)
        return n;
    names[n] = *buf;
    if (dot)
        *(*buf)++ = '.';
    memcpy(*buf, value, vlen);
    (*buf)[vlen] = 0;
    *left -= vlen + 1 + (size_t)dot;
    *buf += vlen + 1;
    return n + 1;
}

size_t tls_policy_names(const struct tls_policy *p, const char *host, const char *nexthop,
                        char *buf, size_t buflen, const char **names, size_t max)
{
    const char *list = p->match[0] ? p->match
                       : p->level == TLS_LEVEL_SECURE ? var.smtp_tls_secure_cert_match
                                                       : var.smtp_tls_verify_cert_match;
    size_t n = 0, left = buflen;

    for (const char *s = list; *s;) {
        while (*s && (*s == ':' || *s == ',' || isspace((unsigned char)*s)))
            s++;
        const char *start = s;
        while (*s && *s != ':' && *s != ',' && !isspace((unsigned char)*s))
            s++;
        if (s > start)
            n = add_name(start, (size_t)(s - start), host, nexthop, &buf, &left, names, n, max);
    }
    return n;
}

/* --- connections under a policy --------------------------------------------- */

static SSL_CTX *client_ctx;
static int client_ctx_failed;

static SSL_CTX *context(char *err, size_t errlen)
{
    struct tls_client_config c = {
        .ca_file = remote_cfg.tls_cafile, .ca_path = remote_cfg.tls_capath,
        .cert_file = remote_cfg.tls_cert_file, .key_file = remote_cfg.tls_key_file,
        .fingerprint_digest = remote_cfg.tls_fingerprint_digest,
    };

    if (client_ctx == NULL && !client_ctx_failed
        && (client_ctx = tls_client_context(&c, err, errlen)) == NULL) {
        msg_warn("cannot set up the TLS client context: %s", err);
        client_ctx_failed = 1;
    }
    if (client_ctx == NULL && err[0] == 0)
        snprintf(err, errlen, "TLS client context unavailable");
    return client_ctx;
}

/* Protocols, ciphers and exclusions: the policy's, else main.cf's for a
 * mandatory or an opportunistic level. */
static int apply_settings(SSL *ssl, const struct tls_policy *p, char *err, size_t errlen)
{
    int mandatory = tls_policy_mandatory(p);
    char exclude[2 * TLS_POLICY_ATTR_MAX + 8];
    const char *protocols = p->protocols[0] ? p->protocols
                            : mandatory     ? remote_cfg.tls_mandatory_protocols
                                            : remote_cfg.tls_protocols;
    const char *ciphers = p->ciphers[0] ? p->ciphers
                          : mandatory   ? remote_cfg.tls_mandatory_ciphers
                                        : remote_cfg.tls_ciphers;

    snprintf(exclude, sizeof(exclude), "%s %s %s", remote_cfg.tls_exclude,
             mandatory ? remote_cfg.tls_mandatory_exclude : "", p->exclude);
    return tls_client_settings(ssl, protocols, ciphers, exclude, err, errlen);
}

/* smtp_tls_servername (or servername=): none, "hostname", "nexthop" or a
 * name; never an address. DANE sends the TLSA base domain. */
static void apply_sni(SSL *ssl, const struct tls_policy *p, const char *host,
                      const char *nexthop_name)
{
    const char *want = p->servername[0] ? p->servername : remote_cfg.tls_servername;
    struct dns_addr literal;

    if (p->tlsa != NULL && p->tlsa->n > 0)
        want = p->tlsa->base;
    else if (strcasecmp(want, "hostname") == 0)
        want = host;
    else if (strcasecmp(want, "nexthop") == 0)
        want = nexthop_name;
    if (*want && dns_addr_parse(want, &literal) < 0)
        tls_client_sni(ssl, want);
}

size_t tls_policy_fingerprint(const char *word, size_t len, unsigned char *out, size_t max)
{
    size_t n = 0;
    int half = -1;

    for (size_t i = 0; i < len; i++) {
        int c = tolower((unsigned char)word[i]), v;
        if (c == ':')
            continue;
        if (c >= '0' && c <= '9')
            v = c - '0';
        else if (c >= 'a' && c <= 'f')
            v = c - 'a' + 10;
        else
            return 0;
        if (half < 0) {
            half = v;
        } else {
            if (n == max)
                return 0;
            out[n++] = (unsigned char)(half << 4 | v);
            half = -1;
        }
    }
    return half < 0 ? n : 0;
}

/* One fingerprint as a DANE-EE(3) record of the key, then of the whole
 * certificate; warns of each that OpenSSL cannot use (a length that is not
 * the digest's), as Postfix words it. The count taken, or -1. */
static int add_fingerprint(SSL *ssl, const char *word, size_t len, const char *relay)
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    size_t n = tls_policy_fingerprint(word, len, digest, sizeof(digest));
    int taken = 0;

    if (n == 0) {
        msg_warn("%s: malformed fingerprint value: %.*s", relay, (int)(len > 200 ? 200 : len),
                 word);
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02X", digest[i]);
    for (unsigned selector = 2; selector-- > 0;) {
        int rc = tls_client_dane_add(ssl, 3, selector, TLS_CLIENT_FINGERPRINT, digest, n);
        if (rc < 0)
            return -1;
        if (rc == 0)
            msg_warn("%s: unusable TLSA RR: 3 %u 255 %s", relay, selector, hex);
        taken += rc;
    }
    return taken;
}

/* fingerprint: match= (else smtp_tls_fingerprint_cert_match), separated
 * by '|', commas or spaces. Postfix takes them last first; so do we, for
 * the same warnings in the same order. None usable: never verified. */
static int apply_fingerprints(SSL *ssl, const struct tls_policy *p, const char *relay)
{
    const char *list = p->match[0] ? p->match : remote_cfg.tls_fingerprint_match;
    const char *word[64];
    size_t wlen[64], n = 0;
    int usable = 0;

    if (tls_client_dane_enable(ssl, NULL) < 0)
        return -1;
    for (const char *s = list; *s && n < 64;) {
        s += strspn(s, "|, \t");
        size_t len = strcspn(s, "|, \t");
        if (len == 0)
            break;
        word[n] = s;
        wlen[n++] = len;
        s += len;
    }
    while (n-- > 0) {
        int rc = add_fingerprint(ssl, word[n], wlen[n], relay);
        if (rc < 0)
            return -1;
        usable += rc;
    }
    if (usable == 0) {
        msg_warn("%s: all fingerprints unusable", relay);
        tls_client_never_verified(ssl);
    }
    return 0;
}

/* verify and secure with tafile= or smtp_tls_trust_anchor_file: the chain
 * must lead to one of those anchors, not to CAfile's. */
static int apply_trust_anchors(SSL *ssl, const struct tls_policy *p, char *err, size_t errlen)
{
    const char *files = anchor_files(p);

    if (*files == 0)
        return 0;
    if (tls_client_dane_enable(ssl, NULL) < 0) {
        snprintf(err, errlen, "cannot enable trust anchors");
        return -1;
    }
    if (tls_client_trust_anchors(ssl, files, err, errlen) < 0) {
        msg_warn("%s", err);
        return -1;
    }
    return 0;
}

/* verify and secure: the names to match; dane: the TLSA records;
 * fingerprint: the fingerprints. */
static int apply_verification(SSL *ssl, const struct tls_policy *p, const char *host,
                              const char *relay, const char *nexthop_name, char *err,
                              size_t errlen)
{
    char buf[2 * DNS_NAME_SIZE + TLS_POLICY_MATCH_MAX];
    const char *names[16];
    struct dns_addr literal;
    size_t n, usable = 0;

    if (p->tlsa != NULL && p->tlsa->n > 0) {
        if (tls_client_dane_enable(ssl, p->tlsa->base) < 0)
            return -1;
        for (size_t i = 0; i < p->tlsa->n; i++) {
            const struct tlsa_record *r = &p->tlsa->rec[i];
            int rc = tls_client_dane_add(ssl, r->usage, r->selector, r->mtype, r->data, r->len);
            if (rc < 0)
                return -1;
            usable += (size_t)rc;
        }
        return usable > 0 ? 0 : -1;
    }
    if (p->level == TLS_LEVEL_FINGERPRINT)
        return apply_fingerprints(ssl, p, relay);
    if (p->level != TLS_LEVEL_VERIFY && p->level != TLS_LEVEL_SECURE)
        return 0;
    if (apply_trust_anchors(ssl, p, err, errlen) < 0)
        return -1;
    n = tls_policy_names(p, host, nexthop_name, buf, sizeof(buf), names, 16);
    /* "hostname" of an address literal is matched as an address. */
    return tls_client_match_names(ssl, names, n,
                                  p->level == TLS_LEVEL_VERIFY && n == 1
                                      && dns_addr_parse(names[0], &literal) == 0);
}

/* Whether OpenSSL's DANE verifier judges this connection (TLSA records,
 * fingerprints, trust anchors): its verdict is not carried by a resumed
 * session, so such a session is never resumed. */
static int judged_by_dane(const struct tls_policy *p)
{
    return p->tlsa != NULL || p->level == TLS_LEVEL_FINGERPRINT || *anchor_files(p) != 0;
}

SSL *tls_policy_ssl(const struct tls_policy *p, const char *host, const char *relay,
                    const char *nexthop_name, char *err, size_t errlen)
{
    SSL_CTX *ctx;
    SSL *ssl;
    char key[HOST_RELAY_SIZE + TLS_POLICY_MATCH_MAX + DNS_NAME_SIZE + 32];

    err[0] = 0;
    if ((ctx = context(err, errlen)) == NULL)
        return NULL;
    if ((ssl = SSL_new(ctx)) == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (apply_settings(ssl, p, err, errlen) < 0
        || apply_verification(ssl, p, host, relay, nexthop_name, err, errlen) < 0) {
        if (err[0] == 0)
            snprintf(err, errlen, "cannot set up certificate verification");
        SSL_free(ssl);
        return NULL;
    }
    apply_sni(ssl, p, host, nexthop_name);
    /* A session is resumed only under the policy that judged it. */
    if (!judged_by_dane(p)) {
        snprintf(key, sizeof(key), "%s|%s|%s|%s", relay, tls_level_name(p->level), p->match,
                 p->servername);
        tls_client_resume(ssl, key);
    }
    return ssl;
}

static const char *trust_word(enum tls_trust t)
{
    return t == TLS_TRUST_VERIFIED ? "Verified" : t == TLS_TRUST_TRUSTED ? "Trusted" : "Untrusted";
}

int tls_policy_established(SSL *ssl, const struct tls_policy *p, const char *relay, char *text,
                           size_t textlen)
{
    char desc[512], why[512];
    int server_prefix, verifies = tls_policy_verifies(p);
    enum tls_trust trust = tls_client_trust(ssl, &server_prefix, why, sizeof(why));

    /* Postfix logs a verification failure only where it matters. */
    if (verifies && trust != TLS_TRUST_VERIFIED && remote_cfg.tls_loglevel >= 1 && why[0])
        msg_info("%scertificate verification failed for %s: %s",
                 server_prefix ? "server " : "", relay, why);
    if (remote_cfg.tls_loglevel >= 2 && tls_client_resumed(ssl))
        msg_info("%s: Reusing old session", relay);
    if (remote_cfg.tls_loglevel >= 1) {
        tls_client_describe(ssl, desc, sizeof(desc));
        msg_info("%s TLS connection established to %s: %s", trust_word(trust), relay, desc);
    }
    if (verifies && trust != TLS_TRUST_VERIFIED) {
        snprintf(text, textlen, "Server certificate not verified");
        return 0;
    }
    return 1;
}
