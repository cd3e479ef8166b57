/* queue_purge.c - removing what a crashed cleanup left in the queue, for
 * postsuper -p and postern start (queue_purge.h).
 */
#include "queue_purge.h"

#include "log.h"
#include "queue_file.h"
#include "queue_id.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The queues cleanup writes into before a message is complete. */
static const char *const written_queues[] = {QUEUE_INCOMING, QUEUE_HOLD};

int queue_file_unfinished(const char *queue, const struct stat *st)
{
    if ((st->st_mode & 0777) == QUEUE_MODE_COMPLETE)
        return 0;
    for (size_t i = 0; i < sizeof(written_queues) / sizeof(written_queues[0]); i++)
        if (strcmp(queue, written_queues[i]) == 0)
            return 1;
    return 0;
}

/* tmp.PID.N: whether PID is gone. A reused pid only delays the removal
 * until the file is old enough anyway. */
static int temp_file_owner_gone(const char *name)
{
    char *end;
    long pid = strtol(name + 4, &end, 10);
    return pid > 0 && *end == '.' && kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

static int is_leftover(const char *queue, const char *name, const struct stat *st, time_t now,
                       long min_age)
{
    int old = now - st->st_mtime >= min_age;
    if (strncmp(name, "tmp.", 4) == 0)
        return old || temp_file_owner_gone(name);
    return old && queue_id_valid(name) && queue_file_unfinished(queue, st);
}

static void purge_queue(const char *queue, long min_age, long *purged)
{
    char dir[PATH_MAX];
    if (queue_dir_path(dir, sizeof(dir), queue) < 0)
        return;
    DIR *d = opendir(dir);
    if (!d)
        return;
    time_t now = time(NULL);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char path[PATH_MAX];
        struct stat st;
        if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= (int)sizeof(path) ||
            lstat(path, &st) < 0 || !S_ISREG(st.st_mode) ||
            !is_leftover(queue, de->d_name, &st, now, min_age))
            continue;
        if (unlink(path) == 0) {
            msg_info("%s/%s: removed temporary file", queue, de->d_name);
            (*purged)++;
        } else if (errno != ENOENT) {
            msg_warn("%s/%s: cannot remove: %s", queue, de->d_name, strerror(errno));
        }
    }
    closedir(d);
}

long queue_purge_leftovers(long min_age)
{
    long purged = 0;
    for (size_t i = 0; i < sizeof(written_queues) / sizeof(written_queues[0]); i++)
        purge_queue(written_queues[i], min_age, &purged);
    if (purged)
        msg_info("Deleted: %ld temporary file%s", purged, purged == 1 ? "" : "s");
    return purged;
}
