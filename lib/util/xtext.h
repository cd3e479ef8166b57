/* xtext.h - RFC 3461 xtext, the encoding of the DSN parameters ENVID and
 * ORCPT (and of AUTH= on MAIL FROM): printable ASCII except '+' and '=',
 * anything else written as "+HH".
 *
 * smtpd decodes what clients send; the SMTP client (remote) and bounce
 * encode what they pass on.
 */
#ifndef POSTERN_XTEXT_H
#define POSTERN_XTEXT_H

#include <stddef.h>

#define XTEXT_MALFORMED (-1)   /* bad character or bad "+HH" */
#define XTEXT_TOO_LONG (-2)    /* does not fit in out */
#define XTEXT_CONTROL (-3)     /* decodes to NUL, CR or LF */

/* Decode in into out (NUL-terminated). Returns the decoded length or one
 * of the negatives above; a value that decodes to a NUL, CR or LF byte is
 * refused (XTEXT_CONTROL) so nothing downstream can be tricked into
 * splitting a line or a string. */
int xtext_decode(const char *in, char *out, size_t outlen);
/* Encode in into out (NUL-terminated). Returns the encoded length or
 * XTEXT_TOO_LONG. */
int xtext_encode(const char *in, char *out, size_t outlen);

#endif
