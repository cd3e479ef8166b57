/* sasl_client.h - the client's half of SMTP AUTH (RFC 4954): which
 * mechanisms a server offers and which of them the security options allow,
 * and the responses of PLAIN, LOGIN and CRAM-MD5 (RFC 2195, with OpenSSL's
 * HMAC). Postfix's option words (smtp_sasl_security_options) and its
 * "username:password" table values are parsed here.
 *
 * Nothing here does I/O. Every output is bounded by its buffer; responses
 * hold credentials, so callers wipe them (OPENSSL_cleanse) after use.
 */
#ifndef POSTERN_SASL_CLIENT_H
#define POSTERN_SASL_CLIENT_H

#include <stddef.h>

/* Mechanisms, as bits of a set. */
#define SASL_CLIENT_PLAIN 1u
#define SASL_CLIENT_LOGIN 2u
#define SASL_CLIENT_CRAM_MD5 4u
#define SASL_CLIENT_ALL (SASL_CLIENT_PLAIN | SASL_CLIENT_LOGIN | SASL_CLIENT_CRAM_MD5)

/* Security options (Cyrus SASL's words, as Postfix takes them). */
#define SASL_SEC_NOPLAINTEXT 1u    /* no mechanism that sends the password */
#define SASL_SEC_NOANONYMOUS 2u
#define SASL_SEC_NODICTIONARY 4u   /* none open to an offline dictionary attack */
#define SASL_SEC_NOACTIVE 8u       /* none open to an active attacker */
#define SASL_SEC_MUTUAL_AUTH 16u   /* the server must prove itself too */

#define SASL_CLIENT_USER_MAX 256   /* user name bytes, NUL included */
#define SASL_CLIENT_PASS_MAX 256   /* password bytes, NUL included */
/* The longest response line we make: base64 of user, password and two
 * separators, or of a user name and a 32-digit MD5 digest. */
#define SASL_CLIENT_RESPONSE_MAX (((SASL_CLIENT_USER_MAX + SASL_CLIENT_PASS_MAX + 2) / 3 + 1) * 4 + 1)
#define SASL_CLIENT_CHALLENGE_MAX 1024   /* a decoded CRAM-MD5 challenge */

/* The mechanisms named in a list ("PLAIN LOGIN CRAM-MD5 XOAUTH2", any
 * case, separated by white space or commas); unknown names are ignored. */
unsigned sasl_client_mechs_parse(const char *list, size_t len);
/* "PLAIN", "LOGIN", "CRAM-MD5" for one bit; "" otherwise. */
const char *sasl_client_mech_name(unsigned mech);
/* One bit for a name (any case), 0 if unknown. */
unsigned sasl_client_mech_bit(const char *name, size_t len);

/* Parse smtp_sasl_security_options. 0, or -1 with err set for an unknown
 * word. */
int sasl_client_security_parse(const char *value, unsigned *flags, char *err, size_t errlen);
/* The mechanisms of offered that flags allow. */
unsigned sasl_client_mechs_allowed(unsigned offered, unsigned flags);
/* The one to use: CRAM-MD5, then PLAIN, then LOGIN; 0 if none. */
unsigned sasl_client_mech_choose(unsigned allowed);

/* Split a table value "user:password" (at the first colon). 0, or -1 when
 * there is no colon, the user is empty, either part does not fit, or the
 * user name has control characters. */
int sasl_client_split_credentials(const char *value, char *user, size_t ulen, char *pass,
                                  size_t plen);

/* Base64 of the PLAIN initial response ("\0user\0password"), of one LOGIN
 * answer (the user name or the password), and the CRAM-MD5 answer to a
 * base64 challenge ("user hex(HMAC-MD5(password, challenge))", base64).
 * Each returns the length written, or -1 (bad challenge, no room). */
int sasl_client_plain(const char *user, const char *pass, char *out, size_t outlen);
int sasl_client_login(const char *value, char *out, size_t outlen);
int sasl_client_cram_md5(const char *user, const char *pass, const char *challenge,
                         char *out, size_t outlen);

#endif
