/* pipe_args.h - the command attributes of a pipe(8) service in master.cf,
 *
 *   name unix - n n - - pipe [-o name=value]... flags=BDFORXhqu.> user=U[:G]
 *       [size=N] [eol=\r\n] [directory=D] [chroot=D] [null_sender=T] argv=CMD ARGS...
 *
 * one parser for master (which refuses a bad line at start with its file
 * and line, so the agent never crash-loops on it), postern check, and the
 * pipe agent, which runs what it describes. argv= comes last and takes
 * every word after it; its words may hold macros, checked here and
 * expanded by the agent:
 *   $name  ${name}  $(name)   a macro (pipe_macro below)
 *   $$                        a literal '$'
 *   '$' before anything else  itself
 * An unknown macro name, an unknown attribute or flag, a missing user= or
 * argv=, a user of root or the mail system owner are errors. pipe(8) has
 * no ${name?text} or ${name:text} forms: they are unknown macro names.
 */
#ifndef POSTERN_PIPE_ARGS_H
#define POSTERN_PIPE_ARGS_H

#include <stddef.h>
#include <sys/types.h>

#define PIPE_FLAG_BLANK_END 0x001    /* B: an empty line after the message */
#define PIPE_FLAG_DELIVERED_TO 0x002 /* D: Delivered-To:, and the loop check */
#define PIPE_FLAG_FROM_LINE 0x004    /* F: "From sender date" first */
#define PIPE_FLAG_ORIG_TO 0x008      /* O: X-Original-To: */
#define PIPE_FLAG_RETURN_PATH 0x010  /* R: Return-Path: */
#define PIPE_FLAG_FINAL 0x020        /* X: final delivery (DSN "delivered") */
#define PIPE_FLAG_FOLD_HOST 0x040    /* h: domains and nexthop lower case */
#define PIPE_FLAG_QUOTE 0x080        /* q: quote address local parts */
#define PIPE_FLAG_FOLD_USER 0x100    /* u: local parts lower case */
#define PIPE_FLAG_DOT 0x200          /* .: a line starting "." gets another */
#define PIPE_FLAG_QUOTE_FROM 0x400   /* >: ">From " */

#define PIPE_EOL_MAX 16
#define PIPE_NAME_MAX 256
#define PIPE_ARGV_MAX 256             /* words of argv= */

/* The macros of argv=. Per-recipient ones expand an argument once per
 * recipient of the request (pipe_macro_per_recipient). */
enum pipe_macro {
    PIPE_M_CLIENT_ADDRESS,
    PIPE_M_CLIENT_HELO,
    PIPE_M_CLIENT_HOSTNAME,
    PIPE_M_CLIENT_PORT,
    PIPE_M_CLIENT_PROTOCOL,
    PIPE_M_DOMAIN,
    PIPE_M_EXTENSION,
    PIPE_M_MAILBOX,
    PIPE_M_NEXTHOP,
    PIPE_M_ORIGINAL_RECIPIENT,
    PIPE_M_QUEUE_ID,
    PIPE_M_RECIPIENT,
    PIPE_M_SASL_METHOD,
    PIPE_M_SASL_SENDER,
    PIPE_M_SASL_USERNAME,
    PIPE_M_SENDER,
    PIPE_M_SIZE,
    PIPE_M_USER,
    PIPE_M_COUNT
};

struct pipe_args {
    int flags;                     /* PIPE_FLAG_* */
    char user[PIPE_NAME_MAX];      /* user= before any ':' */
    char group[PIPE_NAME_MAX];     /* after it, or "" */
    long long size_limit;          /* size=, 0 = none */
    char eol[PIPE_EOL_MAX];        /* eol=, decoded; "\n" by default */
    size_t eol_len;
    const char *directory;         /* directory=, or NULL (queue_directory) */
    const char *chroot;            /* chroot=, or NULL */
    const char *null_sender;       /* null_sender=, "MAILER-DAEMON" by default */
    const char *argv[PIPE_ARGV_MAX + 1];   /* argv=: the command and its
                                            * words, unexpanded, NULL-ended */
    size_t argc;                   /* at least 1 */
};

/* Parse the arguments of a pipe service: args[0..nargs) as master.cf
 * gives them (leading "-o name=value" pairs and other "-x" options are
 * skipped) or as the daemon has them after its options. Strings in pa
 * point into args, which must outlive it. Returns 0, or -1 with a reason
 * in err ("unknown flag: Z", "missing argv= attribute", ...). */
int pipe_args_parse(char *const *args, size_t nargs, struct pipe_args *pa, char *err,
                    size_t errlen);

/* The user= rights: uid and gid (the group's when one is named). In
 * instance mode (instance nonzero) the names are not looked up and the
 * ids are ours. -1 with a reason in err: no such user or group, root
 * (uid or gid 0), or the mail system owner mail_owner. */
int pipe_args_user(const struct pipe_args *pa, int instance, const char *mail_owner,
                   uid_t *uid, gid_t *gid, char *err, size_t errlen);

/* Walk one argv= word: literal text and macros in order. A callback that
 * returns -1 stops the walk, which returns -1; so does a syntax error
 * (missing '}' or ')', unknown macro name), with the reason in err.
 * Returns 0 at the end of the word. */
struct pipe_template_walk {
    int (*literal)(void *ctx, const char *text, size_t len);
    int (*macro)(void *ctx, enum pipe_macro m);
    void *ctx;
};
int pipe_template_walk(const char *word, const struct pipe_template_walk *w, char *err,
                       size_t errlen);

const char *pipe_macro_name(enum pipe_macro m);
/* recipient, original_recipient, user, extension, mailbox, domain. */
int pipe_macro_per_recipient(enum pipe_macro m);

#endif
