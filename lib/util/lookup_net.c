/* lookup_net.c - the client side of table servers for the tcp: and
 * socketmap: types (lookup_type.h): connecting to "host:port" or a UNIX
 * socket, and writing and reading with a deadline, so that a server that
 * stops answering costs a bounded wait (lookup_timeout) and a temporary
 * failure, never a hung daemon.
 */
#include "lookup.h"
#include "lookup_type.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int timeout_secs = 10;

void lookup_set_timeout(int seconds)
{
    timeout_secs = seconds > 0 ? seconds : 1;
}

int lookup_timeout(void)
{
    return timeout_secs;
}

long long lookup_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long lookup_deadline(void)
{
    return lookup_now_ms() + (long long)timeout_secs * 1000;
}

int lookup_wait_ready(int fd, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - lookup_now_ms();
        struct pollfd p = {.fd = fd, .events = events};
        int n;
        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        n = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

/* A non-blocking connect of fd to sa, finished by the deadline. */
static int connect_by(int fd, const struct sockaddr *sa, socklen_t len, long long deadline)
{
    int soerr = 0;
    socklen_t elen = sizeof(soerr);

    if (connect(fd, sa, len) == 0)
        return 0;
    if (errno != EINPROGRESS && errno != EAGAIN)
        return -1;
    if (lookup_wait_ready(fd, POLLOUT, deadline) < 0)
        return -1;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &elen) < 0)
        return -1;
    if (soerr != 0) {
        errno = soerr;
        return -1;
    }
    return 0;
}

int lookup_connect_unix(const char *path, long long deadline, char *err, size_t errlen)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd;

    if (strlen(path) >= sizeof(sun.sun_path)) {
        lookup_set_err(err, errlen, "connect to %s: path name too long", path);
        return -1;
    }
    strcpy(sun.sun_path, path);
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0
        || connect_by(fd, (struct sockaddr *)&sun, sizeof(sun), deadline) < 0) {
        lookup_set_err(err, errlen, "connect to %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

int lookup_connect_inet(const char *host, const char *port, long long deadline, char *err,
                        size_t errlen)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
    int fd = -1, rc, saved = 0;

    if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
        lookup_set_err(err, errlen, "connect to %s:%s: %s", host, port, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd >= 0 && connect_by(fd, ai->ai_addr, ai->ai_addrlen, deadline) == 0)
            break;
        saved = errno;
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        lookup_set_err(err, errlen, "connect to %s:%s: %s", host, port,
                       strerror(saved ? saved : ECONNREFUSED));
    return fd;
}

int lookup_write_all(int fd, const void *buf, size_t len, long long deadline)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (lookup_wait_ready(fd, POLLOUT, deadline) < 0)
                return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

ssize_t lookup_read_some(int fd, void *buf, size_t len, long long deadline)
{
    for (;;) {
        ssize_t n = recv(fd, buf, len, 0);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        if (lookup_wait_ready(fd, POLLIN, deadline) < 0)
            return -1;
    }
}

/* An idle connection is readable only when the server closed it, failed,
 * or sent what nobody asked for: in each case it is not worth a request. */
int lookup_conn_alive(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};

    return poll(&p, 1, 0) == 0;
}
