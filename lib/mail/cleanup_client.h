/* cleanup_client.h - the blocking client of cleanup_protocol (ipc.h) for
 * daemons that queue new mail: pickup (local submissions), bounce
 * (reports) and local (forwarding). smtpd, being event-driven, has its own
 * non-blocking client in smtpd/cleanup.c.
 *
 * Every record goes through the client, so envelope records sent after the
 * content (extracted recipients) never overtake content still buffered.
 * Content is gathered into REC_CHUNK_SIZE records.
 */
#ifndef POSTERN_CLEANUP_CLIENT_H
#define POSTERN_CLEANUP_CLIENT_H

#include <stddef.h>

struct cleanup_client;

/* Connect to private/cleanup, exchange greeting and flags, get the queue
 * id. NULL with the reason in why. The caller owns the result: it ends
 * with cleanup_client_finish or cleanup_client_abort. */
struct cleanup_client *cleanup_client_open(char *why, size_t whylen);
/* The same with the flags of the first request: a receiving service's
 * receive_override_options (receive_override.h; pickup). */
struct cleanup_client *cleanup_client_open_flags(unsigned flags, char *why, size_t whylen);
const char *cleanup_client_queue_id(const struct cleanup_client *c);

/* Envelope (or any non-content) record; -1 once a write failed. */
int cleanup_client_record(struct cleanup_client *c, int type, const void *data, size_t len);
int cleanup_client_attr(struct cleanup_client *c, const char *name, const char *value);
/* Message content, LF line ends, after a REC_CONTENT_START record. */
int cleanup_client_write(struct cleanup_client *c, const void *data, size_t len);

/* Send the end record and wait for cleanup's verdict: 0 when the message
 * is safely queued, else 4 (temporary: cleanup said so, or the connection
 * failed) or 5 (cleanup rejected it), with cleanup's reason ("D.S.N text")
 * or the local error in why. Frees c. */
int cleanup_client_finish(struct cleanup_client *c, char *why, size_t whylen);
/* Give up: closing early makes cleanup discard its file. Frees c. */
void cleanup_client_abort(struct cleanup_client *c);

#endif
