/* log.c - Postfix-format logging to maillog_file or syslog (see log.h).
 *
 * Each line is formatted into one bounded buffer and written with a single
 * write(2) on an O_APPEND descriptor, so concurrent daemons never interleave
 * partial lines in the shared maillog file.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096

static char log_prog[64] = "postern";
static char log_syslog_name[64] = "postern";
static char log_host[256];
static int log_fd = -1;
static int log_flags;
static int log_syslog_open;
static void (*log_fatal_hook)(void);

static void copy_bounded(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}

void log_init(const char *progname, int flags)
{
    const char *slash = strrchr(progname, '/');
    copy_bounded(log_prog, sizeof(log_prog), slash ? slash + 1 : progname);
    log_flags = flags;
    if (gethostname(log_host, sizeof(log_host)) != 0)
        copy_bounded(log_host, sizeof(log_host), "localhost");
    log_host[sizeof(log_host) - 1] = 0;
    char *dot = strchr(log_host, '.');
    if (dot)
        *dot = 0;
}

const char *log_progname(void)
{
    return log_prog;
}

void log_set_syslog_name(const char *name)
{
    if (name && *name)
        copy_bounded(log_syslog_name, sizeof(log_syslog_name), name);
}

void log_set_file(const char *path)
{
    if (log_fd >= 0) {
        close(log_fd);
        log_fd = -1;
    }
    if (path && strcmp(path, "/dev/stdout") == 0) {
        /* Under systemd stdout may be a socket, which open(2) refuses. */
        log_fd = fcntl(1, F_DUPFD_CLOEXEC, 3);
        if (log_fd < 0)
            fprintf(stderr, "%s: warning: dup stdout: %s\n", log_prog, strerror(errno));
    } else if (path && *path) {
        log_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (log_fd < 0)
            fprintf(stderr, "%s: warning: open %s: %s\n", log_prog, path, strerror(errno));
    }
}

void log_set_fatal_hook(void (*hook)(void))
{
    log_fatal_hook = hook;
}

static int syslog_priority(const char *prefix)
{
    if (strncmp(prefix, "warning", 7) == 0)
        return LOG_WARNING;
    if (strncmp(prefix, "error", 5) == 0)
        return LOG_ERR;
    if (strncmp(prefix, "fatal", 5) == 0)
        return LOG_CRIT;
    if (strncmp(prefix, "panic", 5) == 0)
        return LOG_CRIT;
    return LOG_INFO;
}

/* Control characters would let a client forge extra log lines. */
static void sanitize(char *text)
{
    for (unsigned char *p = (unsigned char *)text; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            *p = '?';
}

static void write_file_line(const char *text)
{
    char line[LOG_LINE_MAX + 512];
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%b %e %H:%M:%S", &tm);
    int n = snprintf(line, sizeof(line), "%s %s %s/%s[%ld]: %s\n", stamp, log_host,
                     log_syslog_name, log_prog, (long)getpid(), text);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line)) {
        n = sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    ssize_t ignored = write(log_fd, line, (size_t)n);
    (void)ignored;
}

static void syslog_connect(void)
{
    if (!log_syslog_open) {
        static char ident[160];
        snprintf(ident, sizeof(ident), "%s/%s", log_syslog_name, log_prog);
        openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
        log_syslog_open = 1;
    }
}

void log_connect(void)
{
    if (log_fd < 0)
        syslog_connect();
}

void log_set_flags(int flags)
{
    log_flags = flags;
}

static void write_syslog_line(const char *prefix, const char *text)
{
    syslog_connect();
    syslog(syslog_priority(prefix), "%s", text);
}

void msg_vlog(const char *prefix, const char *fmt, va_list ap)
{
    char text[LOG_LINE_MAX];
    int saved = errno;
    size_t off = 0;
    if (prefix && *prefix)
        off = (size_t)snprintf(text, sizeof(text), "%s: ", prefix);
    if (off >= sizeof(text))
        off = 0;
    vsnprintf(text + off, sizeof(text) - off, fmt, ap);
    sanitize(text);
    if (log_fd >= 0)
        write_file_line(text);
    else
        write_syslog_line(prefix ? prefix : "", text);
    if (log_flags & LOG_TO_STDERR)
        fprintf(stderr, "%s: %s\n", log_prog, text);
    errno = saved;
}

#define DEFINE_LOGGER(fn, prefix)                                              \
    void fn(const char *fmt, ...)                                              \
    {                                                                          \
        va_list ap;                                                            \
        va_start(ap, fmt);                                                     \
        msg_vlog(prefix, fmt, ap);                                             \
        va_end(ap);                                                            \
    }

DEFINE_LOGGER(msg_info, "")
DEFINE_LOGGER(msg_warn, "warning")
DEFINE_LOGGER(msg_error, "error")

void msg_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    msg_vlog("fatal", fmt, ap);
    va_end(ap);
    if (log_fatal_hook) {
        void (*hook)(void) = log_fatal_hook;
        log_fatal_hook = NULL;
        hook();
    }
    exit(1);
}

void msg_panic(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    msg_vlog("panic", fmt, ap);
    va_end(ap);
    abort();
}
