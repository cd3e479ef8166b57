/* nulattr.h - attribute lists in Postfix's NUL-terminated form, the
 * encoding Postfix's daemons use on UNIX sockets.
 *
 * An attribute is its name and its value, each ended by a NUL byte; an
 * empty name (a NUL where a name would start) ends the list. Names repeat
 * freely (one "recipient" per recipient). Postern speaks it where a
 * Postfix client must understand Postern: the showq stream that mailq
 * and monitoring tools (prometheus-postfix-exporter) read. Everything else
 * inside Postern uses record framing (record.h).
 *
 * Reads are bounded: a name longer than NULATTR_NAME_MAX or a value longer
 * than the caller's limit is an error, never a larger buffer.
 */
#ifndef POSTERN_NULATTR_H
#define POSTERN_NULATTR_H

#include <stddef.h>

struct stream;

#define NULATTR_NAME_MAX 64

/* One attribute as read; value is NUL-terminated and owned by the item
 * (nulattr_item_free). */
struct nulattr_item {
    char name[NULATTR_NAME_MAX + 1];
    char *value;
    size_t len, cap;
};
void nulattr_item_free(struct nulattr_item *it);

#define NULATTR_ATTR 1   /* an attribute: it->name and it->value */
#define NULATTR_END 0    /* the end of the list */
/* Read the next attribute of a list. Returns NULATTR_ATTR, NULATTR_END, or
 * -1 on EOF, error, timeout, an over-long name or a value longer than
 * value_max bytes. */
int nulattr_get(struct stream *s, struct nulattr_item *it, size_t value_max);

/* Write one attribute / a number / the end of the list (unflushed).
 * Names and values must not contain NUL (a C string cannot). 0 or -1. */
int nulattr_put(struct stream *s, const char *name, const char *value);
int nulattr_put_num(struct stream *s, const char *name, long long value);
int nulattr_end(struct stream *s);

#endif
