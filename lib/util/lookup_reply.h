/* lookup_reply.h - the wire formats of the tcp: and socketmap: table
 * protocols (tcp_table(5), socketmap_table(5)): encoding a request and
 * parsing what a server sends back. Pure functions over bytes, so the
 * fuzz targets reach exactly what the table types run on a server's
 * answer. Internal to the lookup module.
 */
#ifndef POSTERN_LOOKUP_REPLY_H
#define POSTERN_LOOKUP_REPLY_H

#include <stddef.h>

#define TCP_REPLY_MAX 4096          /* tcp_table(5): reply line with its newline */
#define SOCKETMAP_REPLY_MAX 100000  /* socketmap_table(5): netstring payload */

/* "get KEY\n" with '%', white space and non-printing bytes of key as %XX.
 * Caller frees. */
char *lookup_tcp_request(const char *key);
/* One reply line (without its newline, len bytes, may hold NULs): "200
 * text" -> LOOKUP_FOUND with *value the %XX-decoded text (malloc'd); "500
 * text" -> LOOKUP_NOTFOUND; "400 text" or anything else -> LOOKUP_TEMPFAIL
 * with why set (printable, bounded). */
int lookup_tcp_reply(const char *line, size_t len, char **value, char *why, size_t whylen);

/* The netstring "LEN:NAME KEY," of a socketmap request. Caller frees;
 * *len its length. */
char *lookup_socketmap_request(const char *name, const char *key, size_t *len);
/* A netstring at the start of buf: 1 when complete (*data, *dlen its
 * payload, *used the bytes it took), 0 when more bytes are needed, -1 when
 * it is malformed or its payload would exceed max (why set). */
int lookup_netstring(const char *buf, size_t len, size_t max, const char **data, size_t *dlen,
                     size_t *used, char *why, size_t whylen);
/* A socketmap reply payload: "OK data" -> LOOKUP_FOUND (*value malloc'd),
 * "NOTFOUND " -> LOOKUP_NOTFOUND, "TEMP", "TIMEOUT", "PERM" or anything
 * else -> LOOKUP_TEMPFAIL with why set (printable, bounded). */
int lookup_socketmap_reply(const char *data, size_t len, char **value, char *why,
                           size_t whylen);

#endif
