/* strlist.c - list splitting on commas and white space (strlist.h). */
#include "strlist.h"
#include "log.h"

#include <ctype.h>
#include <string.h>

size_t strlist_split(const char *value, char *buf, char **items, size_t max)
{
    size_t n = 0;
    strcpy(buf, value);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ", \t\r\n", &save); tok && n < max;
         tok = strtok_r(NULL, ", \t\r\n", &save))
        items[n++] = tok;
    return n;
}

static int is_separator(char c)
{
    return c == ',' || c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int strlist_next(const char **pp, char *item, size_t size)
{
    const char *p = *pp;
    while (*p && is_separator(*p))
        p++;
    if (!*p) {
        *pp = p;
        return 0;
    }
    const char *start = p;
    int depth = 0;
    while (*p && (depth > 0 || !is_separator(*p))) {
        if (*p == '{')
            depth++;
        else if (*p == '}' && depth > 0)
            depth--;
        p++;
    }
    *pp = p;
    size_t len = (size_t)(p - start);
    if (len >= size) {
        msg_warn("list item too long, skipped: \"%.40s...\"", start);
        return -1;
    }
    memcpy(item, start, len);
    item[len] = 0;
    return 1;
}

int strlist_is_table(const char *item)
{
    const char *p = item;
    if (!isalpha((unsigned char)*p))
        return 0;
    while (isalnum((unsigned char)*p))
        p++;
    return *p == ':';
}
