/* storage.c - whether the queue file system has room for one more message
 * (storage.h).
 *
 * At MAIL FROM (Postfix's rule, smtpd(8) and postconf(5) queue_minfree):
 * the free space of the file system that holds incoming/ must exceed
 * queue_minfree, and a SIZE= estimate must fit in what is left above it
 * with room to spare (free - queue_minfree, divided by 1.5: the queue file
 * is larger than the message). Otherwise "452 4.3.1 Insufficient system
 * storage", so that the client retries later instead of sending a message
 * that cannot be written. One statvfs per MAIL: cheap enough. cleanup
 * still has the last word: its ENOSPC at the end of DATA is the same 452.
 */
#include "storage.h"

#include "config.h"
#include "queue_file.h"

#include <limits.h>
#include <string.h>
#include <sys/statvfs.h>

#define STORAGE_STATUS "4.3.1"   /* cleanup's reason for ENOSPC starts with it */

/* Bytes an unprivileged writer (cleanup runs as mail_owner) may still use
 * where new queue files go; -1 when unknown. incoming/ is found under
 * queue_directory, which a chrooted smtpd has reset to "/". */
static long long queue_free_bytes(void)
{
    char dir[PATH_MAX];
    struct statvfs fs;
    if (queue_dir_path(dir, sizeof(dir), QUEUE_INCOMING) < 0 || statvfs(dir, &fs) < 0)
        return -1;
    long double bytes = (long double)fs.f_bavail * fs.f_frsize;
    return bytes > (long double)LLONG_MAX ? LLONG_MAX : (long long)bytes;
}

/* An unknown free space lets cleanup find out. */
int smtpd_storage_room(long long size)
{
    long long free_bytes = queue_free_bytes();
    if (free_bytes < 0)
        return 1;
    long long minfree = var.queue_minfree;
    if (free_bytes <= minfree)
        return 0;
    return (long double)size * 1.5L <= (long double)(free_bytes - minfree);
}

int smtpd_storage_reply_code(const char *reason)
{
    return reason && strncmp(reason, STORAGE_STATUS " ", strlen(STORAGE_STATUS) + 1) == 0 ? 452
                                                                                         : 451;
}
