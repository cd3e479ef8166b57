/* attr_lines.c - one block of "name=value" lines ended by an empty line
 * (attr_lines.h). Nothing here trusts the peer: every line is bounded,
 * every value copied with its length.
 */
#include "attr_lines.h"

#include <stdio.h>
#include <string.h>

/* Length of the line at p without its LF and an optional CR before it. */
static size_t content_length(const char *p, size_t n)
{
    if (n > 0 && p[n - 1] == '\r')
        n--;
    return n;
}

static void copy_value(const char *v, size_t n, char *value, size_t valuelen)
{
    if (valuelen == 0)
        return;
    if (n >= valuelen)
        n = valuelen - 1;
    memcpy(value, v, n);
    value[n] = 0;
}

/* Not a complete block: nothing found, whatever lines came so far. */
static long not_complete(long why, char *value, size_t valuelen, int *found)
{
    *found = 0;
    if (valuelen)
        value[0] = 0;
    return why;
}

long attr_lines_scan(const char *buf, size_t len, size_t max_line, const char *name,
                     char *value, size_t valuelen, int *found)
{
    size_t name_len = strlen(name), off = 0;
    *found = 0;
    if (valuelen)
        value[0] = 0;
    while (off < len) {
        const char *line = buf + off;
        const char *lf = memchr(line, '\n', len - off);
        if (!lf)
            return not_complete(len - off > max_line ? ATTR_LINES_MALFORMED
                                                     : ATTR_LINES_INCOMPLETE,
                                value, valuelen, found);
        size_t n = content_length(line, (size_t)(lf - line));
        if (n > max_line)
            return not_complete(ATTR_LINES_MALFORMED, value, valuelen, found);
        off = (size_t)(lf - buf) + 1;
        if (n == 0)
            return (long)off;
        const char *eq = memchr(line, '=', n);
        if (!eq || eq == line || memchr(line, 0, n))
            return not_complete(ATTR_LINES_MALFORMED, value, valuelen, found);
        if ((size_t)(eq - line) == name_len && memcmp(line, name, name_len) == 0) {
            copy_value(eq + 1, n - name_len - 1, value, valuelen);
            *found = 1;
        }
    }
    return not_complete(ATTR_LINES_INCOMPLETE, value, valuelen, found);
}
