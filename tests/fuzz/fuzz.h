/* fuzz.h - helpers shared by the libFuzzer targets in tests/fuzz/.
 *
 * Each target is one file, fuzz_NAME.c, defining LLVMFuzzerTestOneInput
 * (and often LLVMFuzzerInitialize). The parsers under test take C strings,
 * file descriptors or files in a directory; these helpers turn the fuzzer's
 * byte array into each of those, always with explicit bounds, and keep the
 * library's logging out of the way (warnings go to /dev/null, not syslog).
 *
 * Everything here is static inline: a target is a single translation unit.
 */
#ifndef POSTERN_FUZZ_H
#define POSTERN_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"

/* Abort with a message: a violated property is a finding like a crash. */
#define FUZZ_ASSERT(cond)                                                          \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__,   \
                    #cond);                                                        \
            abort();                                                               \
        }                                                                          \
    } while (0)

/* Log lines of the library under test go nowhere: warnings about hostile
 * input are expected by the thousand. */
static inline void fuzz_quiet_log(const char *progname)
{
    log_init(progname, 0);
    log_set_file("/dev/null");
}

/* A NUL-terminated copy of data[0..size), with embedded NULs kept (so the
 * string ends at the first one, as it would for a C caller). Caller frees. */
static inline char *fuzz_cstring(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL)
        abort();
    memcpy(s, data, size);
    s[size] = 0;
    return s;
}

/* Split data at the first byte sep into a NUL-terminated head and tail
 * (both malloc'd, caller frees). With no sep the tail is empty. */
static inline void fuzz_split(const uint8_t *data, size_t size, uint8_t sep, char **head,
                              char **tail)
{
    const uint8_t *p = memchr(data, sep, size);
    size_t hlen = p ? (size_t)(p - data) : size;
    *head = fuzz_cstring(data, hlen);
    *tail = p ? fuzz_cstring(p + 1, size - hlen - 1) : fuzz_cstring(data, 0);
}

/* An anonymous seekable file holding data, offset 0. Caller closes. */
static inline int fuzz_memfd(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz", MFD_CLOEXEC);
    if (fd < 0)
        abort();
    size_t done = 0;
    while (done < size) {
        ssize_t n = write(fd, data + done, size - done);
        if (n <= 0)
            abort();
        done += (size_t)n;
    }
    if (lseek(fd, 0, SEEK_SET) != 0)
        abort();
    return fd;
}

/* Write data to path (created or truncated). */
static inline void fuzz_write_file(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL || (size > 0 && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        abort();
}

static char fuzz_dir[256];

static inline int fuzz_remove_one(const char *path, const struct stat *st, int flag,
                                  struct FTW *ftw)
{
    remove(path);
    return 0;
}

static inline void fuzz_tempdir_remove(void)
{
    if (fuzz_dir[0] != 0)
        nftw(fuzz_dir, fuzz_remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A private directory for the life of the process (e.g. for a main.cf),
 * under $TMPDIR or /tmp; removed with its contents at exit. libFuzzer
 * ends a -max_total_time run with exit(), so the handler runs; a crash
 * leaves the directory behind for a look. */
static inline const char *fuzz_tempdir(void)
{
    if (fuzz_dir[0] == 0) {
        const char *tmp = getenv("TMPDIR");
        snprintf(fuzz_dir, sizeof(fuzz_dir), "%s/postern-fuzz.XXXXXX",
                 tmp && *tmp ? tmp : "/tmp");
        if (mkdtemp(fuzz_dir) == NULL)
            abort();
        atexit(fuzz_tempdir_remove);
    }
    return fuzz_dir;
}

#endif
