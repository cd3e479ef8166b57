/* attr_lines.h - "name=value" lines ended by an empty line: the plain
 * attribute protocol of Postfix's policy delegation (SMTPD_POLICY_README),
 * read by smtpd's policy client (attr_lines.c).
 */
#ifndef POSTERN_ATTR_LINES_H
#define POSTERN_ATTR_LINES_H

#include <stddef.h>

#define ATTR_LINES_INCOMPLETE 0   /* no empty line yet */
#define ATTR_LINES_MALFORMED (-1) /* a line without '=', or longer than max_line */

/* Scan buf[0..len) for one block of lines ended by an empty line (LF or
 * CR LF). Returns the bytes the block takes, ATTR_LINES_INCOMPLETE, or
 * ATTR_LINES_MALFORMED. When the block is complete and holds name, its
 * value (the last one given) is copied to value (truncated to valuelen,
 * always terminated) and *found is set. */
long attr_lines_scan(const char *buf, size_t len, size_t max_line, const char *name,
                     char *value, size_t valuelen, int *found);

#endif
