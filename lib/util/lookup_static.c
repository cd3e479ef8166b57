/* lookup_static.c - the static: table type: static:value, or
 * static:{ value with spaces }, answers every key with the value. One of
 * the table types of lookup.c (lookup_type.h).
 */
#include "lookup.h"
#include "lookup_type.h"

#include <stdlib.h>

static int static_table_open(const char *spec, const char *name, void **state, char *err,
                             size_t errlen)
{
    char *value;

    if (name[0] == '{') {
        if ((value = lookup_unbrace(name)) == NULL) {
            lookup_set_err(err, errlen, "bad static:name syntax: missing '}' in \"%s\"", name);
            return -1;
        }
    } else {
        value = lookup_xstrdup(name);
    }
    *state = value;
    return 0;
}

/* Not even an over-long key is refused: the answer does not depend on it. */
static int static_table_get(void *state, const char *key, char **value)
{
    *value = lookup_xstrdup(state);
    return LOOKUP_FOUND;
}

static void static_table_close(void *state)
{
    free(state);
}

const struct lookup_type lookup_type_static = {
    .open = static_table_open,
    .get = static_table_get,
    .close = static_table_close,
};
