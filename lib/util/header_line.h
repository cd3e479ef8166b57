/* header_line.h - RFC 5322 header lines as they arrive in a message: where
 * a header's name ends, comparing names, and where a folded header ends.
 * One parser for cleanup, header_checks (mime_header_checks included),
 * remote's smtp_generic_maps and sendmail -t, so a line is a header for
 * all of them or for none.
 *
 * A header line is, as Postfix reads it: one or more name characters
 * (printable US-ASCII but ':'), optional spaces and tabs, then ':'. The
 * white space is RFC 5322's obsolete syntax ("Bcc : x"), still sent and
 * still read as a header by mail readers, so taking such a line for the
 * end of the header block would put it where readers show it.
 */
#ifndef POSTERN_HEADER_LINE_H
#define POSTERN_HEADER_LINE_H

#include <stddef.h>

/* The offset of the colon that ends the name of the header line[0..len):
 * the name and any white space before the colon. 0 when the line does not
 * start a header. The value starts at line + offset + 1. */
size_t header_name_len(const char *line, size_t len);

/* The name alone: colon (from header_name_len) without the white space
 * before it. */
size_t header_name_trim(const char *line, size_t colon);

/* Whether the header at line, colon from header_name_len, is called name
 * (case-insensitive); header_in: any name of a NULL-terminated list. */
int header_is(const char *line, size_t colon, const char *name);
int header_in(const char *line, size_t colon, const char *const *names);

/* The end of the header that starts at p: past its line and its
 * continuation lines (those starting with a space or a tab), at most end. */
const char *header_end(const char *p, const char *end);

#endif
