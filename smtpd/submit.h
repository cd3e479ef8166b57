/* submit.h - the stream of one message out of smtpd: records (envelope,
 * content, end) to the cleanup service over cleanup_protocol, or in
 * stand-alone mode to postdrop (maildrop.h) as a local submission, which
 * gets only what a user may submit. Written without waiting and without
 * blocking. transaction.c owns one per transaction and learns through its
 * callbacks when content may follow, when the message is queued (or not),
 * and when the stream has room again.
 *
 * The session's milter connections go to cleanup with the stream's first
 * request (SCM_RIGHTS), for the content of the message; cleanup's answer
 * may carry the milters' SMTP reply and how each connection stands.
 */
#ifndef POSTERN_SMTPD_SUBMIT_H
#define POSTERN_SMTPD_SUBMIT_H

#include <stddef.h>

struct evbuffer;
struct smtpd_submit;

struct smtpd_submit_events {
    /* Content may follow now (smtpd_submit_queue_id says whether the id is
     * known), or the stream failed (smtpd_submit_failed). */
    void (*ready)(void *ctx);
    /* The answer for the whole message: status 0 (queued), 4 or 5 with
     * the reason ("4.3.0 text"). Only after smtpd_submit_finish. */
    void (*done)(void *ctx, int status, const char *reason);
    /* The backlog went down (back-pressure, smtpd_submit_backlog). */
    void (*drained)(void *ctx);
};

#define SMTPD_SUBMIT_FDS_MAX 32   /* milter connections passed to cleanup */

/* Never NULL unless out of memory; a stream that cannot reach its
 * destination is returned failed. ev must outlive the stream. The
 * callbacks may close the stream. fds[0..nfds): milter connections for
 * cleanup (not to postdrop); the caller keeps its own. */
struct smtpd_submit *smtpd_submit_open(const struct smtpd_submit_events *ev, void *ctx,
                                       const int *fds, size_t nfds);
/* Aborts the message unless it was queued. NULL is ignored. */
void smtpd_submit_close(struct smtpd_submit *m);

int smtpd_submit_ready(const struct smtpd_submit *m);       /* see ready() */
/* NULL until cleanup names the file; always NULL to postdrop. */
const char *smtpd_submit_queue_id(const struct smtpd_submit *m);
int smtpd_submit_failed(const struct smtpd_submit *m);
/* From cleanup's answer: the complete SMTP reply a milter gave (NULL when
 * none), and the state of each milter connection passed (NULL when the
 * answer did not say: the connections are then in an unknown state). */
const char *smtpd_submit_reply(const struct smtpd_submit *m);
const char *const *smtpd_submit_milters(const struct smtpd_submit *m, size_t *n);

/* Writers: -1 once the stream failed or was finished. */
int smtpd_submit_record(struct smtpd_submit *m, int type, const char *data, size_t len);
int smtpd_submit_attr(struct smtpd_submit *m, const char *name, const char *value);
/* Move len bytes of content from buf as REC_CONTENT records (drained from
 * buf whatever happens). */
int smtpd_submit_content(struct smtpd_submit *m, struct evbuffer *buf, size_t len);
/* The end record; the answer comes through done(). */
int smtpd_submit_finish(struct smtpd_submit *m);
/* Bytes written but not yet taken by the other side. */
size_t smtpd_submit_backlog(const struct smtpd_submit *m);

#endif
