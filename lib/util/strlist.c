/* strlist.c - list splitting on commas and white space (strlist.h). */
#include "strlist.h"

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
