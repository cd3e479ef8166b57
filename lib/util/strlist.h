/* strlist.h - splitting a list value (main.cf, master.cf, table results) on
 * commas and white space, the one list syntax every Postfix parameter uses.
 */
#ifndef POSTERN_STRLIST_H
#define POSTERN_STRLIST_H

#include <stddef.h>

/* The next item of a list value into item (NUL-terminated), advancing *pp
 * past it: items are separated by commas and white space, except inside
 * braces, so "inline:{ a=b, c=d }" is one item. Returns 1 for an item, 0 at
 * the end of the list, -1 for an item longer than size (skipped, with a
 * warning). Walks in place: no allocation, no limit on the number of items. */
int strlist_next(const char **pp, char *item, size_t size);

/* 1 when item is "type:name", type being letters and digits: a lookup
 * table in a list (e.g. "hash:/etc/postfix/relay_domains"). */
int strlist_is_table(const char *item);

/* Split value on commas and white space. Returns the number of items stored
 * (at most max); items point into buf, which must hold strlen(value)+1. */
size_t strlist_split(const char *value, char *buf, char **items, size_t max);

#endif
