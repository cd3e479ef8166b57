/* fsync_dir.c - fsync of a directory, of a path's parent, of a new directory
 * with its whole file system (fsync_dir.h). */
#include "fsync_dir.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <unistd.h>

/* fsync dir, after a syncfs of its whole file system when whole_fs. */
static int sync_dir(const char *dir, int whole_fs)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0)
        return -1;
    int rc = (whole_fs && syncfs(fd) < 0) || fsync(fd) < 0 ? -1 : 0, saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

int fsync_dir(const char *dir)
{
    return sync_dir(dir, 0);
}

int fsync_parent(const char *path)
{
    char copy[PATH_MAX];

    if (snprintf(copy, sizeof(copy), "%s", path) >= (int)sizeof(copy)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    /* dirname(3) drops trailing slashes first, then the last name. */
    return fsync_dir(dirname(copy));
}

int fsync_new_dir(const char *dir)
{
    /* syncfs writes every dirty block but, on ext4 without a journal, its
     * last writes come after its cache flush; the fsync that follows
     * flushes them (and the new entry in the parent with them). */
    return sync_dir(dir, 1);
}
