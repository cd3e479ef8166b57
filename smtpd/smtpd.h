/* smtpd.h - the SMTP server's internals shared by its source files.
 *
 * smtpd.c     accepting, the event loop, process lifetime
 * session.c   one SMTP session: command parsing, replies, DATA
 * cleanup.c   the per-transaction stream to the cleanup service
 */
#ifndef POSTERN_SMTPD_H
#define POSTERN_SMTPD_H

#include <stddef.h>
#include <sys/socket.h>

struct event_base;
struct bufferevent;
struct evbuffer;
struct session;

/* Settings read once per process (main.cf can change only on reload, and
 * reload replaces the process). */
struct smtpd_config {
    const char *myhostname;
    const char *mydestination;
    const char *mynetworks;
    const char *banner;
    const char *mail_name;
    long long message_size_limit;
    long recipient_limit;
    long timeout;
    long line_length_limit;
    long hard_error_limit;
};
extern struct smtpd_config smtpd_cfg;
extern struct event_base *smtpd_base;

/* smtpd.c */
void smtpd_session_closed(void);

/* session.c */
void session_start(int fd, const struct sockaddr_storage *peer);
/* Called by cleanup.c: the queue id is known, or the stream failed. */
void session_cleanup_ready(struct session *s);
/* Called by cleanup.c with cleanup's final answer for the message. */
void session_cleanup_done(struct session *s, int status, const char *reason);
/* Called by cleanup.c when the stream to cleanup has room again. */
void session_cleanup_drained(struct session *s);

/* cleanup.c: one stream per transaction, owned by the session. */
struct cleanup_stream;
struct cleanup_stream *cleanup_open(struct session *s);
void cleanup_close(struct cleanup_stream *c);   /* aborts if not finished */
const char *cleanup_queue_id(const struct cleanup_stream *c);  /* NULL until known */
int cleanup_failed(const struct cleanup_stream *c);
int cleanup_record(struct cleanup_stream *c, int type, const char *data, size_t len);
int cleanup_attr(struct cleanup_stream *c, const char *name, const char *value);
/* Move len bytes of content from buf as REC_CONTENT records. */
int cleanup_content(struct cleanup_stream *c, struct evbuffer *buf, size_t len);
/* Send REC_END; the answer comes through session_cleanup_done. */
int cleanup_finish(struct cleanup_stream *c);
/* Bytes queued towards cleanup (for back-pressure). */
size_t cleanup_backlog(const struct cleanup_stream *c);

#endif
