/* pipe.h - the parts of the pipe delivery agent that its files share.
 * What every agent does alike (the request, the queue file, the log line,
 * the reply, the copy with its trace headers) is lib/mail's
 * (deliver_agent.h), running a command and its exit status too
 * (command_run.h), and the master.cf attributes are parsed there
 * (pipe_args.h), because master checks them before it starts us.
 *
 *   pipe.c   main: attributes and user at start, then per request one
 *            command for all its recipients, its environment and status
 *   argv.c   argv= with its macros expanded for one request
 */
#ifndef POSTERN_PIPE_H
#define POSTERN_PIPE_H

#include <stddef.h>

#include "pipe_args.h"

struct deliver_message;
struct deliver_request;

#define PIPE_ARG_MAX 65536         /* bytes of one expanded word */
#define PIPE_ARGV_BYTES_MAX (1 << 20)   /* of all words: under ARG_MAX */

/* What argv= macros expand to, for one request. */
struct pipe_expand {
    const struct pipe_args *pa;
    const struct deliver_message *m;
    const struct deliver_request *req;
    const char *const *rcpt;       /* the recipients the command is for */
    const char *const *orig;       /* their original addresses */
    size_t nrcpt;
};

/* argv= for x: a word with a per-recipient macro (${recipient}, ${user},
 * ...) becomes one word per recipient, any other word one word. Returns a
 * NULL-terminated malloc'd vector (pipe_argv_free), or NULL with the
 * reason in err when it would be too long. */
char **pipe_argv_expand(const struct pipe_expand *x, char *err, size_t errlen);
void pipe_argv_free(char **argv);

#endif
