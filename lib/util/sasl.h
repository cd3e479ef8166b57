/* sasl.h - SMTP AUTH (RFC 4954) without an external SASL library: the PLAIN
 * and LOGIN exchanges, base64, and password checks against a lookup table
 * of user -> crypt(3) hash (smtpd_sasl_password_maps).
 *
 * smtpd drives the server side one client line at a time; an SMTP client
 * can use sasl_plain_response and the base64 helpers for its own side.
 * Nothing here does I/O or sleeps: the failed-attempt delay is the
 * caller's (smtpd uses a timer so its event loop never blocks).
 */
#ifndef POSTERN_SASL_H
#define POSTERN_SASL_H

#include <stddef.h>

struct lookup_list;

#define SASL_MECHANISMS "PLAIN LOGIN"   /* as advertised after "250-AUTH " */
#define SASL_NAME_MAX 256               /* user name bytes, NUL included */
#define SASL_PASS_MAX 256               /* password bytes, NUL included */
#define SASL_LINE_MAX 2048              /* longest base64 client response */

enum sasl_mech { SASL_MECH_NONE = 0, SASL_MECH_PLAIN, SASL_MECH_LOGIN };

/* Results of one step of an exchange. */
enum sasl_step {
    SASL_CONTINUE,       /* send "334 " + challenge and wait for a line */
    SASL_CREDENTIALS,    /* user and password are known: verify them */
    SASL_BAD_RESPONSE,   /* not base64, or not the mechanism's format */
    SASL_CANCELLED,      /* the client sent "*" */
};

/* One exchange in progress. Holds the password in memory only until
 * sasl_exchange_clear, which wipes it. */
struct sasl_exchange {
    enum sasl_mech mech;
    int step;
    char user[SASL_NAME_MAX];
    char pass[SASL_PASS_MAX];
};

/* SASL_MECH_* for a name (case-insensitive), SASL_MECH_NONE if unknown. */
enum sasl_mech sasl_mech_lookup(const char *name);
const char *sasl_mech_name(enum sasl_mech mech);

/* Begin an exchange. initial is the optional initial response of the AUTH
 * command (NULL when absent, "=" for an empty one). challenge (base64,
 * possibly empty) is filled when the result is SASL_CONTINUE. */
enum sasl_step sasl_exchange_start(struct sasl_exchange *x, enum sasl_mech mech,
                                   const char *initial, char *challenge, size_t clen);
/* Feed one client line (base64 or "*"). */
enum sasl_step sasl_exchange_step(struct sasl_exchange *x, const char *response,
                                  char *challenge, size_t clen);
void sasl_exchange_clear(struct sasl_exchange *x);

#define SASL_AUTH_OK 1
#define SASL_AUTH_FAILED 0
#define SASL_AUTH_TEMPFAIL (-1)
/* Check password against the crypt(3) hash maps hold for user. An unknown
 * user costs the same hashing work as a known one, so timing does not tell
 * which user names exist. TEMPFAIL when the table cannot be read. */
int sasl_verify_password(struct lookup_list *maps, const char *user, const char *password);

/* Base64 (RFC 4648, padding required, no white space). decode returns the
 * decoded length (out is NUL-terminated, so outlen must leave room) or -1
 * for malformed input or lack of room; encode returns the encoded length
 * or -1. */
int sasl_base64_decode(const char *in, unsigned char *out, size_t outlen);
int sasl_base64_encode(const void *in, size_t len, char *out, size_t outlen);

/* Client side: the base64 PLAIN initial response for user and password
 * (empty authorization identity). Returns its length or -1. */
int sasl_plain_response(const char *user, const char *password, char *out, size_t outlen);

#endif
