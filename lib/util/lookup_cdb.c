/* lookup_cdb.c - the cdb: table type (also hash: and btree:, so existing
 * Postfix configurations work): cdb:/path reads the tinycdb file
 * /path.cdb that postmap or postalias built from /path (table_file.c).
 * One of the table types of lookup.c (lookup_type.h).
 *
 * The file is opened lazily and re-checked on every lookup: when its
 * inode, size or mtime changes it is reopened, so a table rebuilt by
 * postmap (a temporary file renamed over the old one) is picked up by a
 * running daemon, and a reader never sees half a table. A missing file or
 * a .cdb older than its source text is a logged temporary failure.
 */
#include "lookup.h"
#include "lookup_type.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cdb.h>

struct cdb_table {
    char *spec;                  /* as given, for log messages */
    char *path;                  /* the .cdb file */
    char *source;                /* the text it was built from */
    int fd;
    struct cdb cdb;
    int cdb_ready;
    struct lookup_file_id id;
};

static void cdb_table_release(struct cdb_table *t)
{
    if (t->cdb_ready) {
        cdb_free(&t->cdb);
        close(t->fd);
        t->cdb_ready = 0;
    }
}

/* A .cdb older than the text it was built from means someone edited the
 * source and forgot postmap: answering from the old data would be a silent
 * wrong answer, so it is a temporary failure until the table is rebuilt. */
static int cdb_is_stale(const struct cdb_table *t, const struct lookup_file_id *db)
{
    struct lookup_file_id src;

    if (lookup_file_id_get(t->source, &src) < 0)
        return 0;
    if (!lookup_timespec_after(&src.mtime, &db->mtime))
        return 0;
    msg_warn("table %s: database %s is older than source file %s; run postmap or postalias",
             t->spec, t->path, t->source);
    return 1;
}

/* Make sure the open cdb is the current file. 0, or -1 (logged). */
static int cdb_table_ready(struct cdb_table *t)
{
    struct lookup_file_id now;
    struct stat st;
    int fd;

    if (lookup_file_id_get(t->path, &now) < 0) {
        msg_warn("table %s: open database %s: %s", t->spec, t->path, strerror(errno));
        cdb_table_release(t);
        return -1;
    }
    if (cdb_is_stale(t, &now))
        return -1;
    if (t->cdb_ready && lookup_file_id_same(&now, &t->id))
        return 0;
    cdb_table_release(t);
    if ((fd = open(t->path, O_RDONLY | O_CLOEXEC)) < 0) {
        msg_warn("table %s: open database %s: %s", t->spec, t->path, strerror(errno));
        return -1;
    }
    /* The identity of what we actually opened, which may be newer than
     * what stat saw a moment ago. */
    if (fstat(fd, &st) < 0 || cdb_init(&t->cdb, fd) < 0) {
        msg_warn("table %s: %s is not a valid cdb file", t->spec, t->path);
        close(fd);
        return -1;
    }
    t->fd = fd;
    lookup_file_id_of(&st, &t->id);
    t->cdb_ready = 1;
    return 0;
}

static int cdb_table_get(void *state, const char *key, char **value)
{
    struct cdb_table *t = state;
    char *folded;
    int r;

    if (cdb_table_ready(t) < 0)
        return LOOKUP_TEMPFAIL;
    if ((folded = lookup_fold_key(key)) == NULL || *folded == 0) {
        free(folded);
        return LOOKUP_NOTFOUND;
    }
    r = cdb_find(&t->cdb, folded, (unsigned)strlen(folded));
    free(folded);
    if (r < 0) {
        msg_warn("table %s: %s is corrupt", t->spec, t->path);
        return LOOKUP_TEMPFAIL;
    }
    if (r == 0)
        return LOOKUP_NOTFOUND;
    *value = lookup_xstrndup(cdb_getdata(&t->cdb), cdb_datalen(&t->cdb));
    return LOOKUP_FOUND;
}

static void cdb_table_close(void *state)
{
    struct cdb_table *t = state;

    cdb_table_release(t);
    free(t->path);
    free(t->source);
    free(t->spec);
    free(t);
}

/* Nothing is opened yet: a missing file fails at lookup time, so a daemon
 * started before postmap ran recovers once the file exists. */
static int cdb_table_open(const char *spec, const char *name, void **state, char *err,
                          size_t errlen)
{
    size_t len = strlen(name);
    struct cdb_table *t;

    if (len + 4 >= PATH_MAX) {
        lookup_set_err(err, errlen, "table %s: path name too long", spec);
        return -1;
    }
    t = lookup_xmalloc(sizeof(*t));
    memset(t, 0, sizeof(*t));
    t->spec = lookup_xstrdup(spec);
    t->source = lookup_xstrdup(name);
    t->path = lookup_xmalloc(len + 5);
    snprintf(t->path, len + 5, "%s.cdb", name);
    t->fd = -1;
    *state = t;
    return 0;
}

const struct lookup_type lookup_type_cdb = {
    .open = cdb_table_open,
    .get = cdb_table_get,
    .close = cdb_table_close,
};
