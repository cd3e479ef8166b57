/* fsync_dir.h - making a directory entry durable: fsync(2) of a directory,
 * or of the directory that holds a path. Every writer that promises a file
 * is on disk (queue files, Maildir and mbox files, status logs, tables,
 * main.cf) needs the entry of a new or renamed name synced too.
 */
#ifndef POSTERN_FSYNC_DIR_H
#define POSTERN_FSYNC_DIR_H

/* fsync the directory dir. 0, or -1 with errno. */
int fsync_dir(const char *dir);

/* fsync the directory that holds path: "a/b/c" syncs "a/b", "/c" syncs
 * "/", a name without a slash syncs ".". A trailing '/' is not a name:
 * "a/b/" syncs "a". 0, or -1 with errno (ENAMETOOLONG when path does not
 * fit PATH_MAX). */
int fsync_parent(const char *path);

#endif
