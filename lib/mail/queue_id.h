/* queue_id.h - queue ids: unique across restarts, sorting by arrival.
 *
 * An id is the arrival time (6 base-62 digits of seconds, 4 of microseconds,
 * fixed width so ids sort by arrival) followed by the queue file's inode in
 * base 62. Digits are 0-9A-Za-z, in ASCII order. Two live files never share
 * an inode, and cleanup creates the name with link(2), which refuses to
 * replace an existing file, so a reused inode within one microsecond cannot
 * collide either.
 */
#ifndef POSTERN_QUEUE_ID_H
#define POSTERN_QUEUE_ID_H

#include <stddef.h>
#include <sys/time.h>
#include <sys/types.h>

#define QUEUE_ID_SIZE 32   /* buffer size, including the NUL */

void queue_id_make(char out[QUEUE_ID_SIZE], const struct timeval *tv, ino_t ino);
/* 1 when id has the form above (and so is safe as a file name). */
int queue_id_valid(const char *id);
/* Arrival time encoded in id; -1 if id is not valid. */
int queue_id_time(const char *id, struct timeval *tv);

#endif
