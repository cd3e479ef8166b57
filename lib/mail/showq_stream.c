/* showq_stream.c - mail_queue_list_protocol, Postfix 3's showq stream
 * (see showq_stream.h): sending entries (showq) and reading them back
 * (postqueue).
 */
#include "showq_stream.h"

#include "stream.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* --- server side --- */

int showq_stream_greet(struct stream *s)
{
    return nulattr_put(s, "protocol", SHOWQ_PROTOCOL) < 0 || nulattr_end(s) < 0 ? -1 : 0;
}

int showq_stream_send(struct stream *s, const struct queue_list_entry *e)
{
    if (nulattr_put(s, "queue_name", e->queue) < 0 || nulattr_put(s, "queue_id", e->id) < 0 ||
        nulattr_put_num(s, "time", e->arrival) < 0 || nulattr_put_num(s, "size", e->size) < 0 ||
        nulattr_put_num(s, "forced_expire", e->forced_expire != 0) < 0 ||
        nulattr_put(s, "sender", e->sender) < 0)
        return -1;
    for (size_t i = 0; i < e->nrcpt; i++)
        if (nulattr_put(s, "recipient", e->rcpt[i].address) < 0 ||
            nulattr_put(s, "reason", e->rcpt[i].reason) < 0)
            return -1;
    return nulattr_end(s);
}

int showq_stream_end(struct stream *s)
{
    return nulattr_end(s) < 0 || stream_flush(s) < 0 ? -1 : 0;
}

/* --- client side --- */

int showq_stream_check_greeting(struct stream *s)
{
    struct nulattr_item it = {0};
    int named = 0, other = 0, rc;
    while ((rc = nulattr_get(s, &it, NULATTR_NAME_MAX)) == NULATTR_ATTR) {
        if (strcmp(it.name, "protocol") == 0 && strcmp(it.value, SHOWQ_PROTOCOL) == 0)
            named = 1;
        else if (strcmp(it.name, "protocol") == 0)
            other = 1;
    }
    nulattr_item_free(&it);
    if (rc < 0)
        return -1;
    return named ? 0 : other ? -2 : -1;
}

#define UNSET SIZE_MAX   /* a string offset not given */

/* What one message's list said, as offsets into r->strings until the list
 * is complete (the buffer may move while it grows). */
struct entry_offsets {
    size_t queue, id, sender;
    int have_time, have_size;
};

void showq_reader_free(struct showq_reader *r)
{
    nulattr_item_free(&r->item);
    free(r->strings);
    free(r->rcpt);
    free(r->rcpt_off);
    memset(r, 0, sizeof(*r));
}

/* Keep the item's value; its offset in r->strings, or UNSET when memory
 * ran out. */
static size_t keep_value(struct showq_reader *r)
{
    size_t need = r->len + r->item.len + 1;
    if (need > r->cap) {
        size_t cap = r->cap ? r->cap : 1024;
        while (cap < need)
            cap *= 2;
        char *p = realloc(r->strings, cap);
        if (!p)
            return UNSET;
        r->strings = p;
        r->cap = cap;
    }
    size_t off = r->len;
    memcpy(r->strings + off, r->item.value, r->item.len + 1);
    r->len = need;
    return off;
}

/* A new recipient whose address is the item's value. */
static int add_recipient(struct showq_reader *r)
{
    size_t n = r->entry.nrcpt;
    if (n == r->rcpt_cap) {
        size_t cap = r->rcpt_cap ? r->rcpt_cap * 2 : 16;
        size_t *off = realloc(r->rcpt_off, cap * 2 * sizeof(*off));
        if (!off)
            return -1;
        r->rcpt_off = off;
        struct queue_list_rcpt *rc = realloc(r->rcpt, cap * sizeof(*rc));
        if (!rc)
            return -1;
        r->rcpt = rc;
        r->rcpt_cap = cap;
    }
    size_t addr = keep_value(r);
    if (addr == UNSET)
        return -1;
    r->rcpt_off[2 * n] = addr;
    r->rcpt_off[2 * n + 1] = UNSET;
    r->entry.nrcpt = n + 1;
    return 0;
}

/* A decimal number that is the whole of text. */
static int parse_number(const char *text, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (end == text || *end || errno)
        return -1;
    *out = v;
    return 0;
}

static int fail(struct showq_reader *r, const char *why)
{
    r->error = why;
    return -1;
}

/* Take one attribute of a message's list. -1 with r->error. */
static int take_attribute(struct showq_reader *r, struct entry_offsets *o)
{
    const char *name = r->item.name;
    size_t *field = strcmp(name, "queue_name") == 0 ? &o->queue
                    : strcmp(name, "queue_id") == 0 ? &o->id
                    : strcmp(name, "sender") == 0   ? &o->sender
                                                    : NULL;
    long long num;
    if (field) {
        *field = keep_value(r);
        if (*field == UNSET)
            return fail(r, "out of memory");
    } else if (strcmp(name, "time") == 0 || strcmp(name, "size") == 0 ||
               strcmp(name, "forced_expire") == 0) {
        if (parse_number(r->item.value, &num) < 0)
            return fail(r, "malformed number");
        if (name[0] == 't')
            r->entry.arrival = num, o->have_time = 1;
        else if (name[0] == 's')
            r->entry.size = num, o->have_size = 1;
        else
            r->entry.forced_expire = num != 0;
    } else if (strcmp(name, "recipient") == 0) {
        if (add_recipient(r) < 0)
            return fail(r, "out of memory");
    } else if (strcmp(name, "reason") == 0 && r->entry.nrcpt > 0) {
        size_t off = keep_value(r);
        if (off == UNSET)
            return fail(r, "out of memory");
        r->rcpt_off[2 * r->entry.nrcpt - 1] = off;
    }
    return 0;   /* anything else: a newer server's attribute */
}

/* The list is complete: offsets become pointers. */
static int finish_entry(struct showq_reader *r, const struct entry_offsets *o)
{
    if (o->queue == UNSET || o->id == UNSET || o->sender == UNSET || !o->have_time ||
        !o->have_size)
        return fail(r, "a message without queue_name, queue_id, time, size or sender");
    r->entry.queue = r->strings + o->queue;
    r->entry.id = r->strings + o->id;
    r->entry.sender = r->strings + o->sender;
    for (size_t i = 0; i < r->entry.nrcpt; i++) {
        size_t why = r->rcpt_off[2 * i + 1];
        r->rcpt[i].address = r->strings + r->rcpt_off[2 * i];
        r->rcpt[i].reason = why == UNSET ? "" : r->strings + why;
    }
    r->entry.rcpt = r->rcpt;
    return 0;
}

int showq_stream_read(struct stream *s, struct showq_reader *r)
{
    struct entry_offsets o = {UNSET, UNSET, UNSET, 0, 0};
    memset(&r->entry, 0, sizeof(r->entry));
    r->len = 0;
    r->error = NULL;
    size_t wire = 0;
    int n, first = 1;
    while ((n = nulattr_get(s, &r->item, SHOWQ_VALUE_MAX)) == NULATTR_ATTR) {
        first = 0;
        wire += strlen(r->item.name) + r->item.len + 2;
        if (wire > SHOWQ_ENTRY_MAX)
            return fail(r, "a message's list is too long");
        if (take_attribute(r, &o) < 0)
            return -1;
    }
    if (n < 0)
        return fail(r, stream_timed_out(s) ? "timeout" : "connection closed or malformed");
    if (first)
        return 0;   /* the empty list: the end of the listing */
    return finish_entry(r, &o) < 0 ? -1 : 1;
}
