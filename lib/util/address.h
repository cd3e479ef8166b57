/* address.h - RFC 5321 paths and RFC 5322 addresses.
 *
 * The internal form of an address is unquoted: "local part@domain" with the
 * local part's quotes and backslashes removed ("" for the null sender).
 * The external form quotes the local part when RFC 5321 requires it.
 */
#ifndef POSTERN_ADDRESS_H
#define POSTERN_ADDRESS_H

#include <stddef.h>

#define ADDRESS_MAX 1024   /* buffer size for one address, NUL included */

/* Parse the argument of MAIL FROM: / RCPT TO: ("<path> params"). Accepts a
 * source route (dropped), quoted local parts, domain literals. On success
 * returns 0, stores the internal form in out and points *params at the
 * ESMTP parameters (after spaces, possibly ""). On failure returns -1 and
 * sets *err to a short reason for the 501 reply. */
int address_parse_path(const char *arg, char *out, size_t outlen,
                       const char **params, const char **err);
/* Internal -> external (quoted as needed; UTF-8 is no reason to quote).
 * Returns -1 if it does not fit. */
int address_quote(const char *internal, char *out, size_t outlen);
/* The external form for a log line or a header field: quoted as needed
 * (as it is when it does not fit), NULL as "", and every control character
 * shown as '?', so that no address can start a line of its own. out holds
 * 2 * ADDRESS_MAX + 8 bytes for any address; longer forms are cut. */
void address_quote_shown(const char *internal, char *out, size_t outlen);
/* Domain part (after the last '@'), or NULL when there is none. */
const char *address_domain(const char *internal);
/* Local part (before the last '@') copied into out. -1 if it does not fit. */
int address_localpart(const char *internal, char *out, size_t outlen);
/* Lower-case ASCII copy. -1 if it does not fit. */
int address_lowercase(const char *in, char *out, size_t outlen);

#endif
