/* header_line.c - header names and folded headers (header_line.h). */
#include "header_line.h"

#include <string.h>
#include <strings.h>

static int is_name_char(char c)
{
    return c > ' ' && c < 0x7f && c != ':';
}

size_t header_name_len(const char *line, size_t len)
{
    size_t i = 0;
    while (i < len && is_name_char(line[i]))
        i++;
    size_t name = i;
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    return name > 0 && i < len && line[i] == ':' ? i : 0;
}

size_t header_name_trim(const char *line, size_t colon)
{
    while (colon > 0 && (line[colon - 1] == ' ' || line[colon - 1] == '\t'))
        colon--;
    return colon;
}

int header_is(const char *line, size_t colon, const char *name)
{
    size_t nlen = header_name_trim(line, colon);
    return strlen(name) == nlen && strncasecmp(line, name, nlen) == 0;
}

int header_in(const char *line, size_t colon, const char *const *names)
{
    for (size_t i = 0; names[i]; i++)
        if (header_is(line, colon, names[i]))
            return 1;
    return 0;
}

const char *header_end(const char *p, const char *end)
{
    for (;;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return end;
        p = nl + 1;
        if (p >= end || (*p != ' ' && *p != '\t'))
            return p;
    }
}
