/* maildir.h - putting one message file into a Maildir, for the local and
 * virtual delivery agents: maildir_deliver writes a whole message (trace
 * headers and content from mail_copy.h) and words its status; the steps
 * under it (maildir_file_create, the content, maildir_file_publish) are
 * here too for a writer of other content.
 *
 * A message is wholly in new/ or absent: it is written in tmp/ and renamed
 * into new/ once complete and fsynced. new/ is fsynced too before publish
 * returns, so a reported delivery survives a crash.
 */
#ifndef POSTERN_MAILDIR_H
#define POSTERN_MAILDIR_H

#include <limits.h>

#include "delivery.h"
#include "params.h"

struct deliver_message;
struct mail_copy_trace;

/* The step that failed (errno says why), for the agent's own wording. */
enum maildir_step {
    MAILDIR_STEP_PARENTS = 1,   /* creating the Maildir's parent directories */
    MAILDIR_STEP_DIRS,          /* creating the Maildir, tmp/, new/, cur/ */
    MAILDIR_STEP_CREATE,        /* creating the message file */
    MAILDIR_STEP_FSYNC,         /* fsync or close of the file */
    MAILDIR_STEP_NAME,          /* naming it in new/ */
    MAILDIR_STEP_FSYNC_NEW,     /* fsync of new/ (the file is taken back) */
    MAILDIR_STEP_PATH,          /* a path too long (errno ENAMETOOLONG) */
};

/* One message being written; fd is where the content goes. */
struct maildir_file {
    int fd;
    char dir[PATH_MAX];         /* the Maildir, ending in '/' */
    char tmp[PATH_MAX];         /* tmp/UNIQUE while it exists, else "" */
};

/* Write m into the Maildir dir (ending in '/'), creating it and missing
 * parents with the rights we run as. st: 2.0.0 "delivered to maildir" only
 * once the file is in new/ and new/ is fsynced; 5.2.2 when the copy would
 * pass limit (0 = none; limit_param names it in the text); 4.3.0 for a
 * full disk or quota or an unreadable queue file; 4.2.0 for other errors.
 * Nothing is left in tmp/ or new/ on failure. */
void maildir_deliver(const char *dir, const struct deliver_message *m,
                     const struct mail_copy_trace *t, long long limit,
                     enum param_id limit_param, struct delivery_status *st);

/* Open a new message file in Maildir dir (ending in '/'), creating the
 * Maildir and its missing parents; host (myhostname) ends its unique name.
 * 0, or -1 with errno and *failed. */
int maildir_file_create(struct maildir_file *f, const char *dir, const char *host,
                        enum maildir_step *failed);
/* fsync and close the file, give it its unique name in new/, fsync new/.
 * 0, or -1 with errno and *failed; either way f is finished with (a file
 * that did not make it is removed). */
int maildir_file_publish(struct maildir_file *f, enum maildir_step *failed);
/* Close and remove a file that will not be published. */
void maildir_file_discard(struct maildir_file *f);
/* For a fatal-error hook: remove the file being written, if it has a name. */
void maildir_fatal_cleanup(void);

/* mkdir -p of path's parent directories (mode 0700); when one was made,
 * the file system is synced (fsync_new_dir) before path may be created.
 * 0, or -1 with errno. */
int maildir_make_parents(const char *path);

#endif
