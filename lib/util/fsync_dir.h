/* fsync_dir.h - making a directory entry durable: fsync(2) of a directory,
 * or of the directory that holds a path. Every writer that promises a file
 * is on disk (queue files, Maildir and mbox files, status logs, tables,
 * main.cf) needs the entry of a new or renamed name synced too, and a
 * directory made at run time more (fsync_new_dir).
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

/* Make a directory just made by mkdir(2) (by this process or another) safe
 * to fill: the whole file system is synced, then flushed. Why: the new
 * directory's inode may be one a recent unlink freed, whose old entry
 * (a delivered queue file's, say) is not yet gone on disk. On ext4
 * without a journal a power cut then leaves two entries naming the
 * directory, and fsck keeps the one it meets first and cuts the other:
 * a Maildir's new/ ended up as queue/active/ID (tests/powercut). Once
 * every earlier unlink is on disk no such entry can come back. (It also
 * writes the block groups' inode counts, which fsync leaves there and
 * without which fsck takes the new inode for an unused one.) Costly,
 * so only for directories a delivery has to create. 0, or -1 with errno. */
int fsync_new_dir(const char *dir);

#endif
