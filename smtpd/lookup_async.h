/* lookup_async.h - table lookups that may wait on a server (tcp:,
 * socketmap:, mysql:, pgsql:, ldap:), run off smtpd's event loop on a
 * small pool of worker threads (lookup_async.c).
 *
 * Between smtpd_lookup_async_begin and _end, such a lookup made by the
 * restriction code answers from the owner's results of this evaluation,
 * or starts the lookup on a worker and returns LOOKUP_PENDING; when the
 * answer is in, resume(owner) runs on the event loop and the evaluation
 * asks again. Every other lookup, and every lookup outside begin/end,
 * runs as it always did.
 */
#ifndef SMTPD_LOOKUP_ASYNC_H
#define SMTPD_LOOKUP_ASYNC_H

typedef void (*smtpd_lookup_resume_fn)(void *owner);

void smtpd_lookup_async_begin(void *owner, smtpd_lookup_resume_fn resume);
void smtpd_lookup_async_end(void);
/* Forget owner's answers (a new evaluation starts). */
void smtpd_lookup_async_reset(void *owner);
/* owner is gone: answers still on their way are dropped. */
void smtpd_lookup_async_forget(void *owner);

#endif
