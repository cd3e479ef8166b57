/* ipc.c - service connect and attribute lists over record streams (ipc.h). */
#include "ipc.h"
#include "log.h"
#include "queue_file.h"
#include "record.h"
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int service_path(char *buf, size_t len, const char *klass, const char *service)
{
    char sub[256];
    if (strchr(service, '/') || (size_t)snprintf(sub, sizeof(sub), "%s/%s", klass, service) >= sizeof(sub))
        return -1;
    return queue_dir_path(buf, len, sub);
}

/* A Postfix master.cf may put any service in either class (cleanup and
 * pickup are public there, private in Postern's): the other class is where
 * a service is looked for when its own has no such name. */
static const char *other_class(const char *klass)
{
    return strcmp(klass, IPC_PRIVATE) == 0 ? IPC_PUBLIC : IPC_PRIVATE;
}

static int connect_in(const char *klass, const char *service);
static int trigger_in(const char *klass, const char *service, char what);

int ipc_connect(const char *klass, const char *service)
{
    int fd = connect_in(klass, service);
    if (fd < 0 && errno == ENOENT)
        fd = connect_in(other_class(klass), service);
    return fd;
}

int ipc_trigger(const char *klass, const char *service, char what)
{
    int rc = trigger_in(klass, service, what);
    if (rc < 0 && errno == ENOENT)
        rc = trigger_in(other_class(klass), service, what);
    return rc;
}

static int connect_in(const char *klass, const char *service)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (service_path(sun.sun_path, sizeof(sun.sun_path), klass, service) < 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

static int trigger_in(const char *klass, const char *service, char what)
{
    char path[PATH_MAX];
    if (service_path(path, sizeof(path), klass, service) < 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, &what, 1);
    close(fd);
    return n == 1 ? 0 : -1;
}

void attr_list_free(struct attr_list *list)
{
    for (size_t i = 0; i < list->count; i++) {
        free(list->names[i]);
        free(list->values[i]);
    }
    free(list->names);
    free(list->values);
    memset(list, 0, sizeof(*list));
}

int attr_list_add(struct attr_list *list, const char *name, const char *value)
{
    if (list->count >= IPC_ATTR_MAX)
        return -1;
    if (list->count == list->cap) {
        size_t ncap = list->cap ? list->cap * 2 : 16;
        char **n = realloc(list->names, ncap * sizeof(*n));
        if (!n)
            return -1;
        list->names = n;
        char **v = realloc(list->values, ncap * sizeof(*v));
        if (!v)
            return -1;
        list->values = v;
        list->cap = ncap;
    }
    list->names[list->count] = strdup(name);
    list->values[list->count] = strdup(value);
    if (!list->names[list->count] || !list->values[list->count]) {
        free(list->names[list->count]);
        free(list->values[list->count]);
        return -1;
    }
    list->count++;
    return 0;
}

int attr_list_read(struct stream *s, struct attr_list *list)
{
    memset(list, 0, sizeof(*list));
    struct rec_buf b = {0};
    int rc = -1;
    for (;;) {
        int type = rec_get(s, &b, IPC_VALUE_MAX, NULL);
        if (type == REC_END) {
            rc = 0;
            break;
        }
        if (type != REC_ATTR)
            break;
        char *name, *value;
        if (rec_attr_split(b.data, &name, &value) < 0)
            continue;
        if (attr_list_add(list, name, value) < 0)
            break;
    }
    rec_buf_free(&b);
    if (rc < 0)
        attr_list_free(list);
    return rc;
}

const char *attr_get(const struct attr_list *list, const char *name)
{
    for (size_t i = 0; i < list->count; i++)
        if (strcmp(list->names[i], name) == 0)
            return list->values[i];
    return NULL;
}

int attr_put(struct stream *s, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    if (nl + 1 + vl > IPC_VALUE_MAX)
        return -1;
    unsigned char hdr[REC_MAX_HEADER];
    size_t h = rec_header_encode(hdr, REC_ATTR, nl + 1 + vl);
    if (stream_write(s, hdr, h) < 0 || stream_write(s, name, nl) < 0 ||
        stream_write(s, "=", 1) < 0 || stream_write(s, value, vl) < 0)
        return -1;
    return 0;
}

int attr_end(struct stream *s)
{
    if (rec_put(s, REC_END, "", 0) < 0)
        return -1;
    return stream_flush(s);
}

int attr_send(struct stream *s, ...)
{
    va_list ap;
    va_start(ap, s);
    int rc = 0;
    const char *name;
    while (rc == 0 && (name = va_arg(ap, const char *)) != NULL) {
        const char *value = va_arg(ap, const char *);
        rc = attr_put(s, name, value ? value : "");
    }
    va_end(ap);
    return rc == 0 ? attr_end(s) : -1;
}

int ipc_greet(struct stream *s, const char *protocol)
{
    return attr_send(s, "protocol", protocol, (const char *)NULL);
}

int ipc_check_greeting(struct stream *s, const char *protocol)
{
    struct attr_list list;
    if (attr_list_read(s, &list) < 0)
        return -1;
    const char *got = attr_get(&list, "protocol");
    int rc = got && strcmp(got, protocol) == 0 ? 0 : -2;
    attr_list_free(&list);
    return rc;
}

int ipc_expect_greeting(struct stream *s, const char *protocol)
{
    int rc = ipc_check_greeting(s, protocol);
    if (rc == -1)
        msg_warn("no %s greeting from server: %s", protocol,
                 stream_timed_out(s) ? "timeout" : "connection closed or malformed");
    else if (rc < 0)
        msg_warn("unexpected server protocol: wanted %s", protocol);
    return rc < 0 ? -1 : 0;
}

int ipc_peer_closed(int fd)
{
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && (errno == ECONNRESET || errno == ENOTCONN));
}
