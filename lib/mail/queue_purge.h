/* queue_purge.h - removing what a crashed cleanup left in the queue: its
 * temporary files (tmp.PID.N) and queue files it never finished (no
 * completion bit: mode QUEUE_MODE_WRITING, queue_file.h), in the queues
 * cleanup writes to (incoming/, and hold/ for a message a HOLD action
 * diverts there before its commit). Such a file is never scheduled; left
 * alone it only takes space. Two callers, one rule, different patience:
 *   postsuper -p   min_age QUEUE_PURGE_ABANDONED_AGE: cleanup may still be
 *                  writing anything younger (a tmp.PID.N file goes as soon
 *                  as its process is gone)
 *   postern start  min_age 0: master is not running, so no cleanup is
 *                  writing, and every unfinished file is litter
 * Each removal is logged "QUEUE/NAME: removed temporary file", then the
 * count "Deleted: N temporary file(s)" when there was any.
 */
#ifndef POSTERN_QUEUE_PURGE_H
#define POSTERN_QUEUE_PURGE_H

#include <sys/stat.h>

#define QUEUE_PURGE_ABANDONED_AGE (24 * 3600L)   /* seconds */

/* Whether st, a regular file in queue, is a queue file cleanup has not
 * finished (still writing it, or crashed). */
int queue_file_unfinished(const char *queue, const struct stat *st);

/* Remove the leftovers last modified at least min_age seconds ago (and
 * tmp.PID.N files whose process is gone). Returns how many went. */
long queue_purge_leftovers(long min_age);

#endif
