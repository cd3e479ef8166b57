/* anvil.h - smtpd's client of the anvil service (anvil/anvil.c): counts
 * and rates per client shared by all smtpd processes (anvil.c).
 */
#ifndef POSTERN_SMTPD_ANVIL_H
#define POSTERN_SMTPD_ANVIL_H

struct smtpd_anvil_req;

/* ok 0: anvil could not be asked (not running, slow, broken): no limit
 * applies, as in Postfix. */
typedef void (*smtpd_anvil_fn)(void *ctx, int ok, long count, long rate);

/* Ask about request ("connect", "message", "recipient") for addr; the
 * answer comes later through fn, never before this returns. NULL when
 * out of memory. */
struct smtpd_anvil_req *smtpd_anvil_ask(const char *request, const char *addr,
                                        smtpd_anvil_fn fn, void *ctx);
/* The answer is no longer wanted (the session ended). */
void smtpd_anvil_cancel(struct smtpd_anvil_req *req);
/* Tell without waiting ("disconnect"). */
void smtpd_anvil_tell(const char *request, const char *addr);

#endif
