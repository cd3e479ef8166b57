/* log.h - the one logger of Postern (msg_info/msg_warn/msg_fatal style).
 *
 * Lines go to maillog_file when set (one write(2) per line with O_APPEND, so
 * processes never interleave) or else to syslog, facility mail, ident
 * "postern/NAME". The file format is syslog's: "Mon DD HH:MM:SS host
 * postern/NAME[pid]: text", which is what pflogsumm and fail2ban read.
 * Commands also echo to stderr ("NAME: fatal: ...") when LOG_TO_STDERR is set.
 */
#ifndef POSTERN_LOG_H
#define POSTERN_LOG_H

#include <stdarg.h>
#include <stdnoreturn.h>

#define LOG_TO_STDERR 1

/* progname is e.g. "smtpd"; syslog_name (default "postern") is prefixed. */
void log_init(const char *progname, int flags);
/* Switch to maillog_file PATH, or to syslog when PATH is NULL or empty;
 * "/dev/stdout" duplicates descriptor 1 (which may be a socket). */
void log_set_file(const char *path);
void log_set_syslog_name(const char *name);
const char *log_progname(void);

void msg_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void msg_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void msg_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
noreturn void msg_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
noreturn void msg_panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void msg_vlog(const char *prefix, const char *fmt, va_list ap);

/* Connect to syslog now (when logging there), e.g. before a chroot makes
 * /dev/log unreachable. */
void log_connect(void);
void log_set_flags(int flags);

/* Called by msg_fatal before exit(1); a daemon uses it to unlink temp files. */
void log_set_fatal_hook(void (*hook)(void));

#endif
