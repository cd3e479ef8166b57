/* strbuf.h - a growing NUL-terminated string: the one buffer that query
 * templates (lookup_db), header rewriting (rewrite) and pipe's argv words
 * build text in. Out of memory is fatal, as everywhere in Postern.
 */
#ifndef POSTERN_STRBUF_H
#define POSTERN_STRBUF_H

#include <stddef.h>

struct strbuf {
    char *s;          /* NULL until something is added; then NUL-terminated */
    size_t len, cap;
};

/* Append n bytes of s. */
void strbuf_add(struct strbuf *b, const char *s, size_t n);
/* Free the text and empty b. */
void strbuf_free(struct strbuf *b);

#endif
