/* delivery.c - one recipient's status, the delivery log line, reply text
 * cleaning and the deliver_protocol formats shared by delivery agents
 * (delivery.h).
 *
 * Everything is formatted into bounded stack buffers; long addresses or
 * texts are truncated, never overflowed. Times are kept in integer
 * microseconds so the delay strings do not depend on floating point.
 */
#include "delivery.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "address.h"
#include "log.h"

#define ADDR_LOG_MAX (2 * ADDRESS_MAX + 8)   /* a quoted address at worst */

/* to - from in microseconds, never negative. */
static long long interval_usec(const struct timeval *from, const struct timeval *to)
{
    long long d = ((long long)to->tv_sec - (long long)from->tv_sec) * 1000000LL
                + ((long long)to->tv_usec - (long long)from->tv_usec);

    return d > 0 ? d : 0;
}

/* Integer division rounding half up (n >= 0, unit > 0). */
static long long round_div(long long n, long long unit)
{
    return (n + unit / 2) / unit;
}

static void format_usec(char *out, size_t outlen, long long usec)
{
    long long hundredths = round_div(usec, 10000);
    long long tenths = round_div(usec, 100000);

    if (hundredths == 0) {
        snprintf(out, outlen, "0");
    } else if (hundredths < 100) {
        if (hundredths % 10 == 0)
            snprintf(out, outlen, "0.%lld", hundredths / 10);
        else
            snprintf(out, outlen, "0.%02lld", hundredths);
    } else if (tenths < 100) {
        if (tenths % 10 == 0)
            snprintf(out, outlen, "%lld", tenths / 10);
        else
            snprintf(out, outlen, "%lld.%lld", tenths / 10, tenths % 10);
    } else {
        snprintf(out, outlen, "%lld", round_div(usec, 1000000));
    }
}

void delivery_format_delay(char *out, size_t outlen, const struct timeval *from,
                           const struct timeval *to)
{
    if (out == NULL || outlen == 0)
        return;
    format_usec(out, outlen, interval_usec(from, to));
}

const char *delivery_status_word(const char *dsn)
{
    if (dsn != NULL && dsn[0] == '2')
        return "sent";
    if (dsn != NULL && dsn[0] == '5')
        return "bounced";
    return "deferred";
}

/* 1-3 digits at *pp, advancing it. */
static int skip_digits(const char **pp)
{
    int n = 0;

    while (**pp >= '0' && **pp <= '9' && n < 4) {
        (*pp)++;
        n++;
    }
    return n >= 1 && n <= 3;
}

int delivery_dsn_valid(const char *dsn)
{
    const char *p = dsn;

    if (p == NULL || (p[0] != '2' && p[0] != '4' && p[0] != '5') || p[1] != '.')
        return 0;
    p += 2;
    if (!skip_digits(&p) || *p++ != '.')
        return 0;
    return skip_digits(&p) && *p == 0;
}

void delivery_text_clean(char *out, size_t outlen, const char *in)
{
    size_t n = 0;
    int last_space = 1;   /* also drops leading white space */

    if (out == NULL || outlen == 0)
        return;
    for (; in != NULL && *in != 0 && n + 1 < outlen; in++) {
        unsigned char c = (unsigned char)*in;
        if (c < 0x20 || c >= 0x7f)
            c = ' ';
        if (c == ' ' && last_space)
            continue;
        last_space = c == ' ';
        out[n++] = (char)c;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = 0;
}

void delivery_log(const struct delivery_result *r)
{
    char to[ADDR_LOG_MAX], orig[ADDR_LOG_MAX + 16], text[DELIVERY_TEXT_MAX];
    char delay[24], a[24], b[24], c[24], d[24];
    const struct delivery_times *t = &r->times;

    address_quote_shown(r->recipient, to, sizeof(to));
    orig[0] = 0;
    /* As Postfix: only an original recipient that differs other than in
     * case is worth a field. */
    if (r->orig_recipient != NULL && *r->orig_recipient != 0
        && (r->recipient == NULL || strcasecmp(r->orig_recipient, r->recipient) != 0)) {
        char addr[ADDR_LOG_MAX];
        address_quote_shown(r->orig_recipient, addr, sizeof(addr));
        snprintf(orig, sizeof(orig), "orig_to=<%s>, ", addr);
    }
    delivery_text_clean(text, sizeof(text), r->text);
    delivery_format_delay(delay, sizeof(delay), &t->arrival, &t->done);
    delivery_format_delay(a, sizeof(a), &t->arrival, &t->active);
    delivery_format_delay(b, sizeof(b), &t->active, &t->agent_start);
    delivery_format_delay(c, sizeof(c), &t->agent_start, &t->conn_done);
    delivery_format_delay(d, sizeof(d), &t->conn_done, &t->done);
    msg_info("%s: to=<%s>, %srelay=%s, delay=%s, delays=%s/%s/%s/%s, dsn=%s, status=%s (%s)",
             r->queue_id != NULL ? r->queue_id : "?", to, orig,
             r->relay != NULL ? r->relay : "none", delay, a, b, c, d,
             r->dsn != NULL ? r->dsn : "4.0.0", delivery_status_word(r->dsn), text);
}

void delivery_status_set(struct delivery_status *st, const char *dsn, const char *fmt, ...)
{
    char raw[DELIVERY_TEXT_MAX];
    va_list ap;

    snprintf(st->dsn, sizeof(st->dsn), "%s", dsn);
    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    delivery_text_clean(st->text, sizeof(st->text), raw);
}

static int storage_full(int err)
{
#ifdef EDQUOT
    if (err == EDQUOT)
        return 1;
#endif
    return err == ENOSPC;
}

void delivery_status_errno(struct delivery_status *st, int err, const char *fmt, ...)
{
    char what[DELIVERY_TEXT_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    delivery_status_set(st, storage_full(err) ? "4.3.0" : "4.2.0", "%s: %s", what, strerror(err));
}

int delivery_status_format(char *out, size_t outlen, long long offset,
                           const char *dsn, const char *text)
{
    char clean[DELIVERY_TEXT_MAX];
    int ok = delivery_dsn_valid(dsn);

    if (out == NULL || outlen == 0)
        return -1;
    delivery_text_clean(clean, sizeof(clean), ok ? text : "bad delivery status");
    snprintf(out, outlen, "%lld %s %s", offset, ok ? dsn : "4.3.0", clean);
    return ok ? 0 : -1;
}

int delivery_parse_time(const char *text, struct timeval *tv)
{
    long long sec = 0, usec = 0, scale = 100000;
    const char *p = text;

    if (p == NULL || *p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        sec = sec * 10 + (*p - '0');
        if (sec > 1LL << 40)   /* far beyond any real clock; keeps time_t safe */
            return -1;
    }
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return -1;
        for (; *p >= '0' && *p <= '9'; p++) {
            if (scale == 0)
                return -1;   /* more than microsecond precision */
            usec += (*p - '0') * scale;
            scale /= 10;
        }
    }
    if (*p != 0)
        return -1;
    tv->tv_sec = (time_t)sec;
    tv->tv_usec = (suseconds_t)usec;
    return 0;
}

void delivery_format_time(char *out, size_t outlen, const struct timeval *tv)
{
    if (out == NULL || outlen == 0)
        return;
    snprintf(out, outlen, "%lld.%06ld", (long long)tv->tv_sec, (long)tv->tv_usec);
}
