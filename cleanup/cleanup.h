/* cleanup.h - what cleanup's source files share: the treatment of local
 * submissions (local.c) as cleanup.c applies it.
 *
 * A local submission (origin=local, from pickup) is treated as Postfix
 * treats sendmail mail: bare local parts in the envelope and in address
 * headers get "@$myorigin" (append_at_myorigin), Bcc: and Resent-Bcc: are
 * removed, with extract=1 (sendmail -t) the recipients come from the
 * To:/Cc:/Bcc: headers (the Resent- ones when there are any), and an added
 * From: carries the sender's full name.
 */
#ifndef POSTERN_CLEANUP_H
#define POSTERN_CLEANUP_H

#include <stddef.h>

/* A growable byte buffer; free p when done. */
struct dynbuf {
    char *p;
    size_t len, cap;
};
int dynbuf_add(struct dynbuf *b, const void *data, size_t len);

/* Recipients in internal form, each with the address it was written as
 * (before qualification). Owns its strings. */
struct rcpt_list {
    char **addr, **orig;
    size_t n, cap;
};
int rcpt_list_add(struct rcpt_list *l, const char *addr, const char *orig);
int rcpt_list_has(const struct rcpt_list *l, const char *addr);
void rcpt_list_free(struct rcpt_list *l);

/* Length of the header name at line (up to the colon), 0 if the line
 * does not start a header; header_is compares such a name. */
size_t header_name_len(const char *line, size_t len);
int header_is(const char *line, size_t nlen, const char *name);

/* addr with "@$myorigin" appended when it is a bare local part (and
 * append_at_myorigin is on); the null address stays empty. -1 when the
 * result does not fit. */
int local_qualify(const char *addr, char *out, size_t outlen);

/* The header block block[0..len) of a local submission, rewritten into
 * out as described above. When extract is set, the recipients found are
 * added to found. Returns 0, or -1 when out of memory. */
int local_header_block(const char *block, size_t len, int extract, struct dynbuf *out,
                       struct rcpt_list *found);

/* "Full Name <addr>" as a From: value: the name quoted when it is not
 * plain words; just the address when there is no name. addr is internal
 * form. */
void local_from_value(const char *full_name, const char *addr, char *out, size_t outlen);

#endif
