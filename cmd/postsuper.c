/* postsuper - queue maintenance for the super-user (and, in instance mode,
 * for mail_owner): delete (-d), hold (-h), release (-H) and requeue (-r)
 * messages named by queue id, "ALL" or "-" (ids on standard input),
 * optionally limited to the queues named after the options; repair the
 * queue's structure (-s) and purge temporary files left by crashes (-p).
 * Without options it runs -s -p. -s and -p run before the other operations.
 *
 *   -d  unlink the queue file and its bounce/, defer/ and success/ logs;
 *       qmgr tolerates a message vanishing while it is being delivered
 *   -h  move to hold/, which qmgr never schedules
 *   -H  move from hold/ to deferred/, due now
 *   -r  move to incoming/, where qmgr takes it in again, and forget the
 *       old deferral reasons
 *   -s  per queue file: a name that is not the queue id of its time and
 *       inode (e.g. after a restore from backup) is renamed, logs included;
 *       a file outside its deferred/ hash directory is moved into it; a
 *       file that does not parse or lacks its end record goes to corrupt/
 *   -p  remove cleanup's "tmp.PID.N" files whose process is gone, and
 *       incoming/ (and hold/) files cleanup never finished, once clearly
 *       abandoned (lib/queue_purge.h; postern start removes them all)
 * Every change is logged (QUEUEID: removed, placed on hold, ...) with a
 * count at the end, on standard error and in the mail log, as Postfix does.
 */
#include "config.h"
#include "dsn.h"
#include "fsync_dir.h"
#include "ipc.h"
#include "log.h"
#include "queue_file.h"
#include "queue_id.h"
#include "queue_purge.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_RCPT_PER_MESSAGE 100000
#define MAX_REQUESTS 100000          /* ids taken from the command line and stdin */

enum op { OP_DELETE, OP_HOLD, OP_RELEASE, OP_REQUEUE, NOPS };

static const struct {
    const char *done;     /* per-message log text */
    const char *summary;  /* the count line */
    const char *queues[5];/* where the operation looks by default */
} ops[NOPS] = {
    [OP_DELETE] = {"removed", "Deleted",
                   {QUEUE_HOLD, QUEUE_INCOMING, QUEUE_ACTIVE, QUEUE_DEFERRED, NULL}},
    [OP_HOLD] = {"placed on hold", "Placed on hold",
                 {QUEUE_INCOMING, QUEUE_ACTIVE, QUEUE_DEFERRED, NULL}},
    [OP_RELEASE] = {"released from hold", "Released from hold", {QUEUE_HOLD, NULL}},
    [OP_REQUEUE] = {"requeued", "Requeued",
                    {QUEUE_HOLD, QUEUE_INCOMING, QUEUE_ACTIVE, QUEUE_DEFERRED, NULL}},
};

struct request {
    enum op op;
    char id[QUEUE_ID_SIZE];   /* a queue id or "ALL" */
};

static struct {
    struct request *req;
    size_t nreq, capreq;
    const char *only[8];      /* queues named on the command line */
    size_t nonly;
    long count[NOPS];
    int wake_qmgr;
} S;

/* --- small helpers --- */

static int queue_is_hashed(const char *queue)
{
    return strcmp(queue, QUEUE_DEFERRED) == 0;
}

/* Whether op may look in queue: its defaults, cut down to the queues the
 * command line names. */
static int op_uses_queue(enum op op, const char *queue)
{
    int dflt = 0;
    for (size_t i = 0; ops[op].queues[i]; i++)
        dflt |= strcmp(ops[op].queues[i], queue) == 0;
    if (!dflt || S.nonly == 0)
        return dflt;
    for (size_t i = 0; i < S.nonly; i++)
        if (strcmp(S.only[i], queue) == 0)
            return 1;
    return 0;
}

static void add_request(enum op op, const char *id)
{
    if (strcmp(id, "ALL") != 0 && !queue_id_valid(id)) {
        msg_warn("invalid mail queue id: %s", id);
        return;
    }
    if (S.nreq >= MAX_REQUESTS)
        msg_fatal("too many queue ids (more than %d)", MAX_REQUESTS);
    if (S.nreq == S.capreq) {
        size_t cap = S.capreq ? S.capreq * 2 : 16;
        struct request *r = realloc(S.req, cap * sizeof(*r));
        if (!r)
            msg_fatal("out of memory");
        S.req = r;
        S.capreq = cap;
    }
    struct request *r = S.req;
    r[S.nreq].op = op;
    snprintf(r[S.nreq].id, sizeof(r[S.nreq].id), "%.*s", QUEUE_ID_SIZE - 1, id);
    S.nreq++;
}

/* "-": one queue id per line of standard input. */
static void add_requests_from_stdin(enum op op)
{
    char line[256];
    while (fgets(line, sizeof(line), stdin)) {
        size_t n = strlen(line);
        if (n == sizeof(line) - 1 && line[n - 1] != '\n') {
            int c;
            while ((c = getchar()) != EOF && c != '\n')
                ;   /* too long to be an id: skip the rest of the line */
            msg_warn("invalid mail queue id: %.40s...", line);
            continue;
        }
        while (n > 0 && isspace((unsigned char)line[n - 1]))
            line[--n] = 0;
        if (n > 0)
            add_request(op, line);
    }
}

/* Move one file, never replacing another (link refuses to). */
static int move_noreplace(const char *from, const char *to)
{
    if (link(from, to) < 0)
        return -1;
    if (unlink(from) < 0) {
        int saved = errno;
        unlink(to);
        errno = saved;
        return -1;
    }
    return 0;
}

static int mkdir_for(const char *path)
{
    char copy[PATH_MAX];
    snprintf(copy, sizeof(copy), "%s", path);
    return mkdir(dirname(copy), 0700) == 0 || errno == EEXIST ? 0 : -1;
}

/* --- -d -h -H -r --- */

/* Apply op to message id in queue: 1 done, 0 not there, -1 failed. */
static int apply(enum op op, const char *queue, const char *id)
{
    char path[PATH_MAX];
    if (queue_path(path, sizeof(path), queue, id) < 0)
        return -1;
    int rc;
    switch (op) {
    case OP_DELETE:
        rc = unlink(path);
        if (rc == 0)
            dsn_log_remove_all(id);
        break;
    case OP_HOLD:
        rc = queue_file_move(id, queue, QUEUE_HOLD);
        break;
    case OP_RELEASE:
        rc = queue_file_move(id, queue, QUEUE_DEFERRED);
        if (rc == 0 && queue_path(path, sizeof(path), QUEUE_DEFERRED, id) == 0)
            utimensat(AT_FDCWD, path, NULL, 0);   /* due now */
        break;
    default:
        rc = strcmp(queue, QUEUE_INCOMING) == 0 ? access(path, F_OK)
                                                : queue_file_move(id, queue, QUEUE_INCOMING);
        if (rc == 0)
            dsn_log_remove(QUEUE_DEFER_LOG, id);
        break;
    }
    if (rc < 0) {
        if (errno == ENOENT)
            return 0;
        msg_warn("%s: %s: %s", id, ops[op].done, strerror(errno));
        return -1;
    }
    msg_info("%s: %s", id, ops[op].done);
    S.count[op]++;
    S.wake_qmgr |= op == OP_RELEASE || op == OP_REQUEUE;
    return 1;
}

static void apply_one(enum op op, const char *id)
{
    static const char *const order[] = {QUEUE_HOLD, QUEUE_INCOMING, QUEUE_ACTIVE,
                                        QUEUE_DEFERRED};
    for (size_t q = 0; q < sizeof(order) / sizeof(order[0]); q++)
        if (op_uses_queue(op, order[q]) && apply(op, order[q], id) != 0)
            return;
}

/* Calls fn for every queue-id-named file of queue (deferred: its hash
 * directories). Names are collected first: fn may move files. */
struct name_list {
    size_t count, cap;
    char (*name)[QUEUE_ID_SIZE];
};

static void names_add(struct name_list *l, const char *name)
{
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        char (*n)[QUEUE_ID_SIZE] = realloc(l->name, cap * sizeof(*n));
        if (!n)
            msg_fatal("out of memory");
        l->name = n;
        l->cap = cap;
    }
    size_t len = strnlen(name, QUEUE_ID_SIZE - 1);
    memcpy(l->name[l->count], name, len);
    l->name[l->count][len] = 0;
    l->count++;
}

static void collect_ids(const char *dir, int hashed, struct name_list *l)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char sub[PATH_MAX];
        if (hashed && de->d_name[0] != '.' && strlen(de->d_name) == 1 &&
            snprintf(sub, sizeof(sub), "%s/%s", dir, de->d_name) < (int)sizeof(sub))
            collect_ids(sub, 0, l);
        else if (!hashed && queue_id_valid(de->d_name))
            names_add(l, de->d_name);
    }
    closedir(d);
}

static void apply_all(enum op op)
{
    static const char *const order[] = {QUEUE_HOLD, QUEUE_INCOMING, QUEUE_ACTIVE,
                                        QUEUE_DEFERRED};
    for (size_t q = 0; q < sizeof(order) / sizeof(order[0]); q++) {
        char dir[PATH_MAX];
        if (!op_uses_queue(op, order[q]) || queue_dir_path(dir, sizeof(dir), order[q]) < 0)
            continue;
        struct name_list l = {0};
        collect_ids(dir, queue_is_hashed(order[q]), &l);
        for (size_t i = 0; i < l.count; i++)
            apply(op, order[q], l.name[i]);
        free(l.name);
    }
}

/* --- -s --- */

struct repair_counts {
    long renamed, moved, corrupt;
};

/* The name this file should have: its own if the id matches the time it
 * encodes and the file's inode; else that time (or, for a name that is no
 * queue id, the arrival time in the file) with the file's inode. */
static void proper_id(char out[QUEUE_ID_SIZE], const char *name, const struct stat *st,
                      const struct queue_envelope *env)
{
    struct timeval tv = env->arrival;
    if (queue_id_valid(name))
        queue_id_time(name, &tv);
    queue_id_make(out, &tv, st->st_ino);
}

/* Give the file at path its proper name and place; on a collision the
 * time part is bumped by a microsecond, as cleanup does. */
static int rename_message(const char *path, const char *queue, char new_id[QUEUE_ID_SIZE],
                          const struct stat *st)
{
    struct timeval tv;
    queue_id_time(new_id, &tv);
    for (int attempt = 0; attempt < 100; attempt++) {
        char to[PATH_MAX];
        if (queue_path(to, sizeof(to), queue, new_id) < 0 || mkdir_for(to) < 0)
            return -1;
        if (move_noreplace(path, to) == 0)
            return fsync_parent(to);
        if (errno != EEXIST)
            return -1;
        if (++tv.tv_usec >= 1000000) {
            tv.tv_usec = 0;
            tv.tv_sec++;
        }
        queue_id_make(new_id, &tv, st->st_ino);
    }
    errno = EEXIST;
    return -1;
}

static void move_to_corrupt(const char *path, const char *queue, const char *name,
                            struct repair_counts *c)
{
    char dir[PATH_MAX], to[PATH_MAX];
    if (queue_dir_path(dir, sizeof(dir), QUEUE_CORRUPT) < 0 ||
        snprintf(to, sizeof(to), "%s/%s", dir, name) >= (int)sizeof(to))
        return;
    for (int n = 1; n < 100 && move_noreplace(path, to) < 0 && errno == EEXIST; n++)
        if (snprintf(to, sizeof(to), "%s/%s.%d", dir, name, n) >= (int)sizeof(to))
            break;
    if (access(path, F_OK) == 0) {
        msg_warn("%s/%s: cannot move to %s/: %s", queue, name, QUEUE_CORRUPT, strerror(errno));
        return;
    }
    msg_warn("%s/%s: malformed or truncated queue file, moved to %s/", queue, name, QUEUE_CORRUPT);
    c->corrupt++;
}

/* Check one file found as dir/name in queue (hash directory or not). */
static void check_file(const char *queue, const char *dir, const char *name, int misplaced,
                       struct repair_counts *c)
{
    char path[PATH_MAX];
    struct stat st;
    if (strncmp(name, "tmp.", 4) == 0 ||
        snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path) ||
        lstat(path, &st) < 0 || !S_ISREG(st.st_mode) ||
        queue_file_unfinished(queue, &st))   /* for -p to judge once old, not for -s */
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return;
    struct queue_envelope env;
    int ok = queue_envelope_read(fd, &env, MAX_RCPT_PER_MESSAGE) == 0 && env.complete &&
             env.sender && env.nrcpt > 0;
    close(fd);
    if (!ok) {
        queue_envelope_free(&env);
        move_to_corrupt(path, queue, name, c);
        return;
    }
    char id[QUEUE_ID_SIZE];
    proper_id(id, name, &st, &env);
    queue_envelope_free(&env);
    int misnamed = strcmp(id, name) != 0;
    if (!misnamed && !misplaced)
        return;
    if (rename_message(path, queue, id, &st) < 0) {
        msg_warn("%s/%s: cannot rename to %s: %s", queue, name, id, strerror(errno));
        return;
    }
    if (misnamed) {
        if (queue_id_valid(name))
            dsn_log_rename_all(name, id);
        msg_info("%s: renamed to %s (name did not match the file)", name, id);
        c->renamed++;
    } else {
        if (queue_is_hashed(queue))
            msg_info("%s: moved to %s/%c/", id, queue, id[strlen(id) - 1]);
        else
            msg_info("%s: moved to %s/", id, queue);
        c->moved++;
    }
}

static void check_dir(const char *queue, const char *dir, int depth, const char *hash,
                      struct repair_counts *c);

/* A directory inside a queue: deferred/X/ is a hash directory; anything
 * else only holds misplaced files, and goes once they are out. */
static void check_subdir(const char *queue, const char *dir, const char *name, int depth,
                         struct repair_counts *c)
{
    char sub[PATH_MAX];
    if (snprintf(sub, sizeof(sub), "%s/%s", dir, name) >= (int)sizeof(sub))
        return;
    int hash_dir = queue_is_hashed(queue) && depth == 0 && strlen(name) == 1;
    check_dir(queue, sub, depth + 1, hash_dir ? name : "", c);
    if (!hash_dir && rmdir(sub) == 0)
        msg_info("%s: removed unneeded directory %s", queue, name);
}

static int is_directory(const char *dir, const struct dirent *de)
{
    if (de->d_type != DT_UNKNOWN)
        return de->d_type == DT_DIR;
    char path[PATH_MAX];
    struct stat st;
    return snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) < (int)sizeof(path) &&
           lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* depth 0 is the queue directory itself; hash is the name of the hash
 * directory we are in ("" if none). */
static void check_dir(const char *queue, const char *dir, int depth, const char *hash,
                      struct repair_counts *c)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct name_list files = {0}, dirs = {0};
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            strlen(de->d_name) >= QUEUE_ID_SIZE || depth > 3)
            continue;
        names_add(is_directory(dir, de) ? &dirs : &files, de->d_name);
    }
    closedir(d);
    for (size_t i = 0; i < files.count; i++) {
        const char *name = files.name[i];
        /* deferred/ files belong in the hash directory of their id, the
         * other queues are flat. */
        int in_place = queue_is_hashed(queue)
                           ? depth == 1 && *hash && hash[0] == name[strlen(name) - 1]
                           : depth == 0;
        check_file(queue, dir, name, !in_place, c);
    }
    for (size_t i = 0; i < dirs.count; i++)
        check_subdir(queue, dir, dirs.name[i], depth, c);
    free(files.name);
    free(dirs.name);
}

static void structure_check(void)
{
    static const char *const queues[] = {QUEUE_INCOMING, QUEUE_ACTIVE, QUEUE_DEFERRED,
                                         QUEUE_HOLD};
    struct repair_counts c = {0};
    for (size_t q = 0; q < sizeof(queues) / sizeof(queues[0]); q++) {
        char dir[PATH_MAX];
        if (queue_dir_path(dir, sizeof(dir), queues[q]) == 0)
            check_dir(queues[q], dir, 0, "", &c);
    }
    if (c.renamed)
        msg_info("Renamed to match inode number: %ld message%s", c.renamed, c.renamed == 1 ? "" : "s");
    if (c.moved)
        msg_info("Moved to the proper directory: %ld message%s", c.moved, c.moved == 1 ? "" : "s");
    if (c.corrupt)
        msg_info("Moved to corrupt queue: %ld message%s", c.corrupt, c.corrupt == 1 ? "" : "s");
}

/* --- main --- */

static noreturn void usage(void)
{
    msg_fatal("usage: postsuper [-psv] [-c config_dir] [-d queue_id] [-h queue_id] "
              "[-H queue_id] [-r queue_id] [queue...]");
}

/* Root works as mail_owner, so files and directories it creates belong to
 * the mail system; in instance mode mail_owner itself may run us. */
static void become_mail_owner(void)
{
    const char *owner = var.mail_owner;
    struct passwd *pw = getpwnam(owner);
    if (!pw)
        msg_fatal("mail_owner %s: no such user", owner);
    if (getuid() != 0) {
        if (getuid() != pw->pw_uid)
            msg_fatal("use of this command is reserved for the superuser");
        return;
    }
    if (pw->pw_uid == 0)
        return;
    if (setgid(pw->pw_gid) < 0 || initgroups(owner, pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
        msg_fatal("cannot switch to mail_owner %s: %s", owner, strerror(errno));
}

static void add_queue_name(const char *name)
{
    static const char *const known[] = {QUEUE_INCOMING, QUEUE_ACTIVE, QUEUE_DEFERRED,
                                        QUEUE_HOLD};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(name, known[i]) == 0) {
            if (S.nonly < sizeof(S.only) / sizeof(S.only[0]))
                S.only[S.nonly++] = known[i];
            return;
        }
    msg_fatal("invalid directory name: %s", name);
}

static void print_counts(void)
{
    for (int op = 0; op < NOPS; op++)
        if (S.count[op])
            msg_info("%s: %ld message%s", ops[op].summary, S.count[op],
                     S.count[op] == 1 ? "" : "s");
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    int structure = 0, purge = 0, opt, reads_stdin = 0;
    static const char letters[] = "dhHr";
    log_init("postsuper", LOG_TO_STDERR);
    /* Ids are queued while parsing; "-" is read after, once. */
    int stdin_ops[NOPS] = {0};
    while ((opt = getopt(argc, argv, "c:d:h:H:r:psSv")) != -1) {
        const char *op_at = opt ? strchr(letters, opt) : NULL;
        if (op_at) {
            enum op op = (enum op)(op_at - letters);
            if (strcmp(optarg, "-") == 0)
                stdin_ops[op] = reads_stdin = 1;
            else
                add_request(op, optarg);
            continue;
        }
        switch (opt) {
        case 'c': dir = optarg; break;
        case 'p': purge = 1; break;
        case 's':
        case 'S': structure = 1; break;
        case 'v': break;
        default: usage();
        }
    }
    for (int i = optind; i < argc; i++)
        add_queue_name(argv[i]);
    for (int op = 0; op < NOPS && reads_stdin; op++)
        if (stdin_ops[op])
            add_requests_from_stdin((enum op)op);
    if (!structure && !purge && S.nreq == 0 && !reads_stdin)
        structure = purge = 1;
    config_load(config_find_dir(dir), NULL, 0);
    log_set_syslog_name(var.syslog_name);
    log_set_file(var.maillog_file);
    become_mail_owner();
    if (purge)
        queue_purge_leftovers(QUEUE_PURGE_ABANDONED_AGE);
    if (structure)
        structure_check();
    for (size_t i = 0; i < S.nreq; i++) {
        if (strcmp(S.req[i].id, "ALL") == 0)
            apply_all(S.req[i].op);
        else
            apply_one(S.req[i].op, S.req[i].id);
    }
    print_counts();
    if (S.wake_qmgr)
        ipc_trigger(IPC_PUBLIC, "qmgr", 'W');
    free(S.req);
    return 0;
}
