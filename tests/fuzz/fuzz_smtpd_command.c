/* fuzz_smtpd_command.c - libFuzzer target for smtpd/parse.c, smtpd's
 * parser of what a client sends on a command line: verb and argument, the
 * MAIL FROM/RCPT TO path (ASCII, or UTF-8 under SMTPUTF8) and the ESMTP
 * parameters of MAIL (SIZE, BODY, SMTPUTF8, RET, ENVID, AUTH) and RCPT
 * (NOTIFY, ORCPT).
 *
 * Input: one command line as smtpd hands it over after line splitting: it
 * ends at the first LF or NUL (smtpd splits at LF and refuses NUL), bare CR
 * and 8-bit bytes stay. MAIL and RCPT lines are parsed with SMTPUTF8 off
 * and on and, for MAIL, with and without a SIZE limit; the argument of any
 * other verb goes to both parameter parsers as if it were parameters.
 *
 * Properties: a refusal is one reply line "C.. C.x.y text" with C 4 or 5
 * in both places, bounded, without CR or LF; an accepted address fits its
 * buffer, has no control bytes, no 8-bit bytes unless SMTPUTF8 is on and
 * then well-formed UTF-8, is never <> for a recipient, and quoting then
 * parsing it with lib/address gives it back (8-bit bytes standing in as
 * letters); an ASCII line parses the same with SMTPUTF8 on and off;
 * parameters accepted without SMTPUTF8 or a SIZE limit are accepted with
 * them; decoded ENVID and ORCPT keep RFC 3461's limits and have no CR, LF
 * or NUL; NOTIFY=NEVER stands alone; nothing leaks.
 */
#include "address.h"
#include "fuzz.h"
#include "parse.h"
#include "smtp_command.h"
#include "record.h"

#include <strings.h>

#define SIZE_LIMIT 10240000LL   /* message_size_limit's default */
#define LOCAL_PART_MAX 64       /* as lib/address.c counts it, on the wire */

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* 1-3 digits at *p; advances past them. */
static int skip_digits(const char **p)
{
    int n = 0;
    while (is_digit(**p) && n < 4)
        (*p)++, n++;
    return n >= 1 && n <= 3;
}

/* "C.. C.x.y text": 3-digit code of class 4 or 5, enhanced code of the
 * same class, one bounded line. */
static void check_refusal(const char *why, size_t whylen)
{
    const char *end = memchr(why, 0, whylen);
    FUZZ_ASSERT(end != NULL);
    FUZZ_ASSERT(strpbrk(why, "\r\n") == NULL);
    FUZZ_ASSERT(why[0] == '4' || why[0] == '5');
    FUZZ_ASSERT(is_digit(why[1]) && is_digit(why[2]) && why[3] == ' ');
    FUZZ_ASSERT(why[4] == why[0] && why[5] == '.');
    const char *p = why + 6;
    FUZZ_ASSERT(skip_digits(&p) && *p == '.');
    p++;
    FUZZ_ASSERT(skip_digits(&p) && *p == ' ' && p[1] != 0);
}

/* Well-formed UTF-8 (RFC 3629), decoded independently of parse.c: the
 * length from the lead byte, then the shortest form and range checked on
 * the value. */
static int utf8_ok(const unsigned char *s)
{
    while (*s) {
        unsigned c = *s, need, v;
        if (c < 0x80) {
            s++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            need = 1, v = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
            need = 2, v = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
            need = 3, v = c & 0x07;
        else
            return 0;
        for (unsigned i = 1; i <= need; i++) {
            if (s[i] < 0x80 || s[i] > 0xbf)
                return 0;
            v = v << 6 | (s[i] & 0x3f);
        }
        if ((need == 2 && (v < 0x800 || (v >= 0xd800 && v <= 0xdfff))) ||
            (need == 3 && (v < 0x10000 || v > 0x10ffff)))
            return 0;
        s += need + 1;
    }
    return 1;
}

/* Quote the internal form, parse it back: the same internal form, unless
 * quoting grew the local part past the limit (as in fuzz_address.c). */
static void check_round_trip(const char *internal)
{
    char quoted[ADDRESS_MAX + 2], path[ADDRESS_MAX + 4], again[ADDRESS_MAX];
    const char *params, *err;

    FUZZ_ASSERT(address_quote(internal, quoted, sizeof(quoted)) == 0);
    snprintf(path, sizeof(path), "<%s>", quoted);
    if (address_parse_path(path, again, sizeof(again), &params, &err) < 0) {
        const char *at = strrchr(quoted, '@');
        size_t local_len = at != NULL ? (size_t)(at - quoted) : strlen(quoted);
        FUZZ_ASSERT(local_len > LOCAL_PART_MAX);
        return;
    }
    FUZZ_ASSERT(strcmp(again, internal) == 0);
    FUZZ_ASSERT(*params == 0);
}

static void check_address(const char *addr, size_t addrlen, int smtputf8,
                          enum smtpd_path_role role)
{
    const char *end = memchr(addr, 0, addrlen);
    FUZZ_ASSERT(end != NULL);
    for (const unsigned char *p = (const unsigned char *)addr; *p; p++)
        FUZZ_ASSERT(*p >= 0x20 && *p != 0x7f);
    FUZZ_ASSERT(role == SMTPD_PATH_SENDER || addr[0] != 0);
    if (!smtpd_has_8bit(addr)) {
        check_round_trip(addr);
        return;
    }
    FUZZ_ASSERT(smtputf8);
    FUZZ_ASSERT(utf8_ok((const unsigned char *)addr));
    /* The ASCII skeleton is what lib/address parsed: it must round-trip. */
    char skeleton[ADDRESS_MAX];
    size_t len = (size_t)(end - addr);
    FUZZ_ASSERT(len < sizeof(skeleton));
    for (size_t i = 0; i <= len; i++)
        skeleton[i] = (unsigned char)addr[i] >= 0x80 ? 'a' : addr[i];
    check_round_trip(skeleton);
}

/* The path; returns 0 with *params set when accepted. */
static int run_path(const char *arg, enum smtpd_path_role role, int smtputf8, char *addr,
                    size_t addrlen, const char **params)
{
    char why[SMTPD_REPLY_MAX] = "";
    *params = NULL;
    int rc = smtpd_parse_path(arg, role, smtputf8, addr, addrlen, params, why, sizeof(why));
    FUZZ_ASSERT(rc == 0 || rc == -1);
    if (rc < 0) {
        check_refusal(why, sizeof(why));
        FUZZ_ASSERT(strncmp(why, "501 5.1.", 8) == 0);
        return -1;
    }
    FUZZ_ASSERT(*params >= arg && *params <= arg + strlen(arg));
    check_address(addr, addrlen, smtputf8, role);
    return 0;
}

static void check_envid(const char *envid)
{
    size_t len = strlen(envid);
    FUZZ_ASSERT(len >= 1 && len <= SMTPD_ENVID_MAX);
    FUZZ_ASSERT(strpbrk(envid, "\r\n") == NULL);
}

/* MAIL parameters; returns the parser's answer. */
static int run_mail_params(const char *params, long long limit, int smtputf8)
{
    struct smtpd_mail_params p;
    char why[SMTPD_REPLY_MAX] = "";
    int rc = smtpd_parse_mail_params(params, limit, smtputf8, &p, why, sizeof(why));
    FUZZ_ASSERT(rc == 0 || rc == -1);
    if (rc < 0) {
        check_refusal(why, sizeof(why));
        FUZZ_ASSERT(p.envid == NULL);
        return -1;
    }
    FUZZ_ASSERT(p.size >= -1);
    FUZZ_ASSERT(limit <= 0 || p.size <= limit);
    FUZZ_ASSERT(p.body >= SMTPD_BODY_NONE && p.body <= SMTPD_BODY_8BITMIME);
    FUZZ_ASSERT(smtputf8 || !p.smtputf8);
    FUZZ_ASSERT(p.ret == NULL || strcmp(p.ret, "FULL") == 0 || strcmp(p.ret, "HDRS") == 0);
    if (p.envid)
        check_envid(p.envid);
    smtpd_mail_params_free(&p);
    FUZZ_ASSERT(p.envid == NULL);
    return 0;
}

static void check_notify(int mask)
{
    int all = DSN_NOTIFY_NEVER | DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY;
    FUZZ_ASSERT((mask & ~all) == 0);
    FUZZ_ASSERT(!(mask & DSN_NOTIFY_NEVER) || mask == DSN_NOTIFY_NEVER);
}

/* "type;address": a type of letters, digits and '-', a decoded address
 * within RFC 3461's 500 characters, no CR or LF anywhere. */
static void check_orcpt(const char *orcpt)
{
    const char *semi = strchr(orcpt, ';');
    FUZZ_ASSERT(semi != NULL);
    size_t tlen = (size_t)(semi - orcpt);
    FUZZ_ASSERT(tlen >= 1 && tlen <= SMTPD_ADDR_TYPE_MAX);
    for (size_t i = 0; i < tlen; i++) {
        char c = orcpt[i];
        FUZZ_ASSERT((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) ||
                    c == '-');
    }
    size_t alen = strlen(semi + 1);
    FUZZ_ASSERT(alen >= 1 && alen <= SMTPD_ORCPT_MAX);
    FUZZ_ASSERT(strpbrk(orcpt, "\r\n") == NULL);
}

static void run_rcpt_params(const char *params)
{
    struct smtpd_rcpt_params p;
    char why[SMTPD_REPLY_MAX] = "";
    int rc = smtpd_parse_rcpt_params(params, &p, why, sizeof(why));
    FUZZ_ASSERT(rc == 0 || rc == -1);
    if (rc < 0) {
        check_refusal(why, sizeof(why));
        FUZZ_ASSERT(p.orcpt == NULL);
        return;
    }
    check_notify(p.notify);
    if (p.orcpt)
        check_orcpt(p.orcpt);
    smtpd_rcpt_params_free(&p);
    FUZZ_ASSERT(p.orcpt == NULL);
}

/* Every combination of SMTPUTF8 and SIZE limit; the settings only ever
 * add refusals, never lift one. */
static void run_all_mail_params(const char *params)
{
    int open = run_mail_params(params, 0, 1);
    int no_utf8 = run_mail_params(params, 0, 0);
    int limited = run_mail_params(params, SIZE_LIMIT, 1);
    int both = run_mail_params(params, SIZE_LIMIT, 0);
    FUZZ_ASSERT(no_utf8 < 0 || open == 0);
    FUZZ_ASSERT(limited < 0 || open == 0);
    FUZZ_ASSERT(both < 0 || (no_utf8 == 0 && limited == 0));
}

/* MAIL FROM: / RCPT TO: with SMTPUTF8 off and on. */
static void run_mail_rcpt(const char *arg, enum smtpd_path_role role)
{
    const char *path = smtp_path_argument(arg, role == SMTPD_PATH_SENDER ? "FROM:" : "TO:");
    if (path == NULL)
        return;
    FUZZ_ASSERT(path >= arg && path <= arg + strlen(arg) && *path != ' ');
    char addr[2][ADDRESS_MAX];
    const char *params[2];
    int rc[2];
    for (int utf8 = 0; utf8 <= 1; utf8++) {
        rc[utf8] = run_path(path, role, utf8, addr[utf8], sizeof(addr[utf8]), &params[utf8]);
        if (rc[utf8] < 0)
            continue;
        if (role == SMTPD_PATH_SENDER)
            run_all_mail_params(params[utf8]);
        else
            run_rcpt_params(params[utf8]);
    }
    if (!smtpd_has_8bit(path)) {
        FUZZ_ASSERT(rc[0] == rc[1]);
        if (rc[0] == 0)
            FUZZ_ASSERT(strcmp(addr[0], addr[1]) == 0 && params[0] == params[1]);
    }
    /* A small buffer is refused, never overrun. */
    char small[16];
    const char *p;
    if (run_path(path, role, 1, small, sizeof(small), &p) == 0)
        FUZZ_ASSERT(strlen(small) < sizeof(small));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *lf = memchr(data, '\n', size);
    char *line = fuzz_cstring(data, lf ? (size_t)(lf - data) : size);
    size_t len = strlen(line);
    char *verb, *arg;

    smtp_split_command(line, &verb, &arg);
    FUZZ_ASSERT(verb == line && strchr(verb, ' ') == NULL);
    FUZZ_ASSERT(arg >= line && arg <= line + len && *arg != ' ');
    FUZZ_ASSERT(strlen(verb) + strlen(arg) <= len);
    if (strcasecmp(verb, "MAIL") == 0) {
        run_mail_rcpt(arg, SMTPD_PATH_SENDER);
    } else if (strcasecmp(verb, "RCPT") == 0) {
        run_mail_rcpt(arg, SMTPD_PATH_RECIPIENT);
    } else {
        run_all_mail_params(arg);
        run_rcpt_params(arg);
    }
    free(line);
    return 0;
}
