/* strlist.h - splitting a list value (main.cf, master.cf, table results) on
 * commas and white space, the one list syntax every Postfix parameter uses.
 */
#ifndef POSTERN_STRLIST_H
#define POSTERN_STRLIST_H

#include <stddef.h>

/* Split value on commas and white space. Returns the number of items stored
 * (at most max); items point into buf, which must hold strlen(value)+1. */
size_t strlist_split(const char *value, char *buf, char **items, size_t max);

#endif
