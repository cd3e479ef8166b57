/* mastercf.h - master.cf: the Postfix columns
 *   service type private unpriv chroot wakeup maxproc command [args...]
 * with "-o name=value" arguments, '#' comments and continuation lines that
 * start with white space. Used by master and postconf -M.
 */
#ifndef POSTERN_MASTERCF_H
#define POSTERN_MASTERCF_H

#include <stddef.h>

enum mastercf_type { MASTERCF_INET, MASTERCF_UNIX, MASTERCF_UNIX_DGRAM, MASTERCF_FIFO, MASTERCF_PASS };

struct mastercf_entry {
    char *name;               /* "smtp", "127.0.0.1:2525", "cleanup" */
    enum mastercf_type type;
    int private_;             /* 1 = private/ (unix, fifo), "-" means y */
    int unpriv;               /* "-" means y */
    int chroot;               /* "-" means n */
    int wakeup;               /* seconds, 0 = none ("-") */
    int wakeup_if_running;    /* wakeup column ended in '?' */
    int maxproc;              /* -1 for "-" (use default_process_limit), 0 = no limit */
    char *command;            /* program name in daemon_directory */
    char **args;              /* after the command, -o pairs included; NULL-terminated */
    size_t nargs;
    int line;                 /* first line in the file */
};

struct mastercf {
    struct mastercf_entry *entries;
    size_t count;
};

/* Parse text (named filename in messages). On error returns -1 and writes
 * "FILE, line N: reason" into err. out is owned by the caller (mastercf_free). */
int mastercf_parse(const char *text, const char *filename, struct mastercf *out,
                   char *err, size_t errlen);
int mastercf_load(const char *path, struct mastercf *out, char *err, size_t errlen);
void mastercf_free(struct mastercf *cf);

/* "inet", "unix", "unix-dgram", "fifo", "pass". */
const char *mastercf_type_name(enum mastercf_type type);

/* What Postern does with the program in a master.cf command column. A
 * Postfix master.cf names Postfix's daemons; each is one of these. */
enum mastercf_role {
    MASTERCF_RUN,        /* a Postern program runs it (program says which) */
    MASTERCF_OTHERWISE,  /* Postern does that job another way: not started */
    MASTERCF_MISSING,    /* Postern has no such service yet: not started, and
                          * mail routed to it waits in the queue (deferred) */
};

struct mastercf_program {
    enum mastercf_role role;
    const char *program;   /* MASTERCF_RUN: the file in daemon_directory */
    const char *argv0;     /* MASTERCF_RUN: the name it runs under, when its role
                            * depends on it (remote as "lmtp" is the LMTP
                            * client, as Postfix's smtp is); else NULL */
    const char *why;       /* MASTERCF_OTHERWISE/MISSING: for the report */
};

/* Classify entry e: Postfix names map to Postern's programs ("smtp" ->
 * "remote", "lmtp" -> "remote" named "lmtp", "oqmgr" -> "qmgr",
 * "postscreen" -> "smtpd", "pipe" -> "pipe"), services whose work Postern
 * does another way (tlsmgr, trivial-rewrite, scache, postlogd, proxymap,
 * flush, ...) and those it lacks (verify, anvil, ...). A name it does not
 * know is run as it is (a program of the admin's own). */
struct mastercf_program mastercf_classify(const struct mastercf_entry *e);

/* What program (mastercf_classify's) needs of e's arguments, checked
 * before anything is started, so that a bad line is one error naming it
 * rather than a daemon that dies on every start: a pipe service's
 * attributes and user (pipe_args.h; the user is looked up unless
 * instance). 0, or -1 with the reason (no file or line) in err. */
int mastercf_check_program(const struct mastercf_entry *e, const char *program, int instance,
                           const char *mail_owner, char *err, size_t errlen);

#endif
