/* postdrop.h - postdrop (cmd/postdrop.c) as a child of smtpd in
 * stand-alone mode: started with a pipe to its standard input, its exit
 * status delivered through the event loop (SIGCHLD), so that nothing
 * waits for it.
 */
#ifndef POSTERN_SMTPD_POSTDROP_H
#define POSTERN_SMTPD_POSTDROP_H

#include <sys/types.h>

/* Start command_directory/postdrop -r, its standard output on /dev/null.
 * Returns the write end of the pipe to its standard input (non-blocking,
 * close-on-exec) with *pid set, or -1 (logged). */
int smtpd_postdrop_start(pid_t *pid);
/* Call exited(ctx, status) once pid exits: its exit status, or -1 when a
 * signal ended it. */
void smtpd_postdrop_watch(pid_t pid, void (*exited)(void *ctx, int status), void *ctx);
/* Stop pid (postdrop removes its unfinished file on SIGTERM) and forget
 * its watch. */
void smtpd_postdrop_stop(pid_t pid);
/* Wait for every postdrop that is still running (at exit). */
void smtpd_postdrop_wait_all(void);

#endif
