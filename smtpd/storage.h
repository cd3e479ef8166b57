/* storage.h - whether the queue file system has room for one more
 * message (storage.c), and the reply when it has not.
 */
#ifndef POSTERN_SMTPD_STORAGE_H
#define POSTERN_SMTPD_STORAGE_H

#define SMTPD_STORAGE_REPLY "452 4.3.1 Insufficient system storage"

/* At MAIL FROM: 0 when the queue file system is at or below
 * queue_minfree, or cannot hold 1.5 times size (SIZE=, 0 when none). */
int smtpd_storage_room(long long size);
/* The reply code for cleanup's temporary failure with this reason: 452
 * for 4.3.1 (insufficient system storage, RFC 5321), 451 otherwise. */
int smtpd_storage_reply_code(const char *reason);

#endif
