/* stream.h - buffered, bounded, timed I/O on a file descriptor.
 *
 * Used for queue files and for the blocking side of IPC (cleanup, local).
 * Every read or write waits at most the stream's timeout (0 = no timeout,
 * for regular files); a timeout, an error or EOF sets the stream's error
 * state and is reported as -1 (EOF as 0 from stream_read).
 */
#ifndef POSTERN_STREAM_H
#define POSTERN_STREAM_H

#include <stddef.h>
#include <sys/types.h>

#define STREAM_BUFSIZE 65536

struct stream;

/* Allocates a stream that owns fd (closed by stream_close). */
struct stream *stream_open(int fd, int timeout_secs);
/* Flushes, closes fd, frees. Returns -1 if the final flush or close failed. */
int stream_close(struct stream *s);
/* Frees without flushing; closes fd. */
void stream_abandon(struct stream *s);
int stream_fd(const struct stream *s);
void stream_set_timeout(struct stream *s, int timeout_secs);

/* A socket whose peer may pass descriptors (SCM_RIGHTS) with its first
 * bytes: fill the (empty) read buffer with one recvmsg(2) and take up to
 * max descriptors into fds (*nfds of them, close-on-exec). A plain read
 * would drop them. Returns the bytes read, 0 at EOF, -1 on error, timeout,
 * or when the buffer is not empty. */
ssize_t stream_fill_fds(struct stream *s, int *fds, size_t max, size_t *nfds);

/* Up to len bytes; 0 at EOF, -1 on error or timeout. */
ssize_t stream_read(struct stream *s, void *buf, size_t len);
/* Exactly len bytes, or -1. */
int stream_read_exact(struct stream *s, void *buf, size_t len);
/* Next byte, or -1 at EOF/error. */
int stream_getc(struct stream *s);
/* The next byte without consuming it, or -1 at EOF/error. */
int stream_peek(struct stream *s);
/* Skip len bytes (lseek on a regular file when it pays). -1 on error/EOF. */
int stream_skip(struct stream *s, size_t len);

int stream_write(struct stream *s, const void *buf, size_t len);
int stream_flush(struct stream *s);

/* The one chunking loop behind every buffered writer (stream_write, the
 * cleanup client's content records, the delivery agents' copies): copy len
 * bytes of data into buf (size bytes, *used of them taken), calling
 * flush(ctx) each time buf is full; flush writes all of buf out, after
 * which *used is 0. Returns 0, or -1 as soon as a flush fails (the rest of
 * data is not copied). */
int stream_copy(void *buf, size_t size, size_t *used, const void *data, size_t len,
                int (*flush)(void *ctx), void *ctx);

/* Offset of the next byte to be read or written, as the caller sees it. */
off_t stream_tell(const struct stream *s);
/* Reposition (flushes first, drops read-ahead). */
int stream_seek(struct stream *s, off_t off);
/* Nonzero once a timeout happened. */
int stream_timed_out(const struct stream *s);

#endif
