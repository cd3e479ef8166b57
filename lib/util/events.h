/* events.h - libevent glue: record framing on evbuffers, and the EOF watch
 * with which every event-driven daemon (smtpd, qmgr, remote) follows master.
 */
#ifndef POSTERN_EVENTS_H
#define POSTERN_EVENTS_H

#include <stddef.h>

struct evbuffer;
struct event_base;
struct rec_buf;

int evrec_put(struct evbuffer *out, int type, const void *data, size_t len);
int evrec_put_attr(struct evbuffer *out, const char *name, const char *value);
/* Take one complete record from in. Returns its type, 0 when the record is
 * not complete yet (nothing consumed), REC_ERROR when malformed, REC_TOOBIG
 * when the payload exceeds max. */
int evrec_get(struct evbuffer *in, struct rec_buf *b, size_t max);

/* The event loop of an event-driven daemon; msg_fatal on failure. Uses
 * epoll's change list: a bufferevent switching reading and writing on and
 * off within one loop pass costs one epoll_ctl, not one per switch (the
 * bench counted 16 per message in smtpd). Nothing here dup()s a watched
 * descriptor, which is the case libevent warns this mode gets wrong. */
struct event_base *events_base_new(void);

/* Call on_gone(ctx) once when fd, a pipe nothing writes to, reaches EOF: the
 * daemons pass master's alive descriptor (service.h), so they learn that
 * master went away or reloads, finish their work and exit. */
void events_watch_eof(struct event_base *base, int fd, void (*on_gone)(void *), void *ctx);

#endif
