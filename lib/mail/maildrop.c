/* maildrop.c - the maildrop record layout, checked record by record
 * (maildrop.h). postdrop checks what sendmail (or any user) hands it;
 * pickup checks each file again before it gives it to cleanup, because a
 * file that does not parse must be moved aside, not half-queued.
 */
#include "maildrop.h"
#include "address.h"
#include "ipc.h"
#include "record.h"

#include <stdlib.h>
#include <string.h>

enum md_state { MD_TIME, MD_SENDER, MD_ENVELOPE, MD_CONTENT, MD_DONE };

void maildrop_check_init(struct maildrop_check *c, int with_time, long long size_limit)
{
    memset(c, 0, sizeof(*c));
    c->state = with_time ? MD_TIME : MD_SENDER;
    c->size_limit = size_limit;
}

static int refuse(struct maildrop_check *c, const char *why)
{
    c->error = why;
    return -1;
}

/* No NUL or control bytes: they would corrupt log lines and headers. */
static int printable(const char *data, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)data[i] < ' ' || data[i] == 0x7f)
            return 0;
    return 1;
}

static int all_digits(const char *s, size_t len)
{
    if (len == 0 || len > 19)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

static int time_ok(const char *data, size_t len)
{
    const char *dot = memchr(data, '.', len);
    return dot && all_digits(data, (size_t)(dot - data)) &&
           all_digits(dot + 1, len - (size_t)(dot - data) - 1);
}

int maildrop_notify_ok(const char *text)
{
    size_t len = strlen(text);
    if (!all_digits(text, len) || len > 2)
        return 0;
    int mask = atoi(text);
    if (mask < 1 || mask > 15)
        return 0;
    return !(mask & DSN_NOTIFY_NEVER) || mask == DSN_NOTIFY_NEVER;
}

static int address_ok(const char *data, size_t len)
{
    return len < ADDRESS_MAX && printable(data, len);
}

/* "name=value" with a plain name; values are checked by their users. */
static int attr_shape_ok(const char *data, size_t len)
{
    const char *eq = memchr(data, '=', len);
    if (!eq || eq == data || len > IPC_VALUE_MAX || !printable(data, len))
        return 0;
    for (const char *p = data; p < eq; p++)
        if (!(*p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
            return 0;
    return 1;
}

static int envelope_record(struct maildrop_check *c, int type, const char *data, size_t len)
{
    switch (type) {
    case REC_ATTR:
        if (c->nrcpt > 0 || c->notify_pending)
            return refuse(c, "attribute after recipients");
        return attr_shape_ok(data, len) ? 0 : refuse(c, "malformed attribute");
    case REC_DSN_NOTIFY: {
        char mask[4];
        if (c->notify_pending || len >= sizeof(mask))
            return refuse(c, "malformed DSN notify record");
        memcpy(mask, data, len);
        mask[len] = 0;
        if (!maildrop_notify_ok(mask))
            return refuse(c, "malformed DSN notify record");
        c->notify_pending = 1;
        return 0;
    }
    case REC_RCPT:
        if (len == 0 || !address_ok(data, len))
            return refuse(c, "malformed recipient");
        if (++c->nrcpt > MAILDROP_RCPT_MAX)
            return refuse(c, "too many recipients");
        c->notify_pending = 0;
        return 0;
    case REC_CONTENT_START:
        if (c->notify_pending)
            return refuse(c, "DSN notify record without recipient");
        c->state = MD_CONTENT;
        return 0;
    default:
        return refuse(c, "unexpected record in envelope");
    }
}

int maildrop_check_record(struct maildrop_check *c, int type, const char *data, size_t len)
{
    switch (c->state) {
    case MD_TIME:
        if (type != REC_TIME || !time_ok(data, len))
            return refuse(c, "missing or malformed time record");
        c->state = MD_SENDER;
        return 0;
    case MD_SENDER:
        if (type != REC_SENDER || !address_ok(data, len))
            return refuse(c, "missing or malformed sender record");
        c->state = MD_ENVELOPE;
        return 0;
    case MD_ENVELOPE:
        return envelope_record(c, type, data, len);
    case MD_CONTENT:
        if (type == REC_END) {
            c->state = MD_DONE;
            return 1;
        }
        if (type != REC_CONTENT)
            return refuse(c, "unexpected record in content");
        c->content_size += (long long)len;
        if (c->size_limit > 0 && c->content_size > c->size_limit)
            return refuse(c, "message file too big");
        return 0;
    default:
        return refuse(c, "data after the end record");
    }
}

static int value_in(const char *value, const char *a, const char *b)
{
    return strcasecmp(value, a) == 0 || strcasecmp(value, b) == 0;
}

int maildrop_attr_ok(const char *name, const char *value)
{
    size_t len = strlen(value);
    if (!printable(value, len))
        return 0;
    if (strcmp(name, ATTR_FULL_NAME) == 0)
        return len <= MAILDROP_FULL_NAME_MAX;
    if (strcmp(name, ATTR_EXTRACT) == 0)
        return strcmp(value, "1") == 0 || strcmp(value, "0") == 0;
    if (strcmp(name, ATTR_DSN_NOTIFY) == 0)
        return maildrop_notify_ok(value);
    if (strcmp(name, ATTR_DSN_RET) == 0)
        return value_in(value, "FULL", "HDRS");
    if (strcmp(name, ATTR_DSN_ENVID) == 0) {
        if (len == 0 || len > MAILDROP_ENVID_MAX)
            return 0;
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)value[i] > 0x7e)
                return 0;
        return 1;
    }
    return 0;
}
