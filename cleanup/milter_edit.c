/* milter_edit.c - the message as the milters see and change it (cleanup.h),
 * and how their changes reach the queue file.
 *
 * While milters inspect a message, cleanup writes it (envelope and
 * content, as always) into a spool file instead of the queue file. At the
 * end the header block is read back into memory (it is bounded by
 * header_size_limit), and the body stays in the spool. Each milter sees
 * the message with the changes of the milters before it: header edits
 * change the list in memory, a replaced body goes to a second spool file
 * (streamed, never held whole), sender and recipient edits are noted.
 * Then the spool is copied into the queue file with the changes: the new
 * sender, the recipients not deleted, the edited header block, the body
 * (replaced or not), the added recipients last (through cleanup's
 * recipient rewriting). The queue file is never rewritten in place: it is
 * written once, as for any message.
 *
 * Header positions follow Postfix: our own Received: header (the first
 * one, from smtpd or pickup) is not shown to milters and not counted when
 * they change the Nth header of a name; an insert at index 0 goes before
 * it, at 1 after it.
 */
#include "cleanup.h"

#include "address.h"
#include "config.h"
#include "dsn.h"
#include "header_line.h"
#include "ipc.h"
#include "log.h"
#include "lookup.h"
#include "queue_file.h"
#include "record.h"
#include "stream.h"
#include "xtext.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define WRITE_ERROR "451 4.3.0 Error: queue file write error"
#define TOO_BIG "552 5.3.4 Message file too big"
/* What milters may add, at most: recipients, deletions, header bytes
 * beyond header_size_limit (a signature or a verdict takes a few hundred). */
#define ADDED_RCPT_MAX 1000
#define DELETED_RCPT_MAX 10000
#define ADDED_HEADER_BYTES (256 * 1024)

struct header {
    char *text;        /* "Name: value\n", folded lines included */
    size_t len;
};

struct added_rcpt {
    char *addr;        /* internal form */
    char *dsn_orcpt;
    int notify;
};

struct cleanup_model {
    struct cleanup_state *st;
    struct stream *spool;      /* the message as cleanup wrote it */
    struct header *h;
    size_t n, cap;
    int own_received;          /* h[0] is our own Received: */
    int separator;             /* an empty line came between headers and body */
    off_t body_start;          /* spool offset of the first body C record */
    size_t body_skip;          /* bytes of that record before the body */
    /* a replaced body: the current one, and the one a milter is sending */
    int body_fd;
    int new_fd;
    int new_cr;                /* the last chunk ended in CR */
    long long new_size;        /* bytes of it so far (message_size_limit) */
    size_t header_bytes;       /* of the header list */
    /* envelope changes */
    char *sender;              /* internal form; NULL: unchanged */
    char *dsn_ret, *dsn_envid; /* CHGFROM's RET= and ENVID= */
    char **deleted;
    size_t ndeleted;
    struct added_rcpt *added;
    size_t nadded;
    struct lookup_list *checks;   /* milter_header_checks */
};

/* --- reading the spool --- */

/* The next content record of the spool: 1 with its bytes in b, 0 at the
 * end of the content (another record, or the end of the spool, which has
 * no E record), -1 when it cannot be read. */
static int content_next(struct stream *spool, struct rec_buf *b)
{
    int type = rec_get(spool, b, REC_CHUNK_SIZE, NULL);
    if (type == REC_CONTENT)
        return 1;
    return type == REC_ERROR || type == REC_TOOBIG ? -1 : 0;
}

static int add_header_text(struct cleanup_model *md, size_t at, const char *text, size_t len)
{
    if (md->n == md->cap) {
        size_t cap = md->cap ? md->cap * 2 : 32;
        struct header *h = realloc(md->h, cap * sizeof(*h));
        if (!h)
            return -1;
        md->h = h;
        md->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return -1;
    memcpy(copy, text, len);
    copy[len] = 0;
    memmove(md->h + at + 1, md->h + at, (md->n - at) * sizeof(*md->h));
    md->h[at].text = copy;
    md->h[at].len = len;
    md->n++;
    md->header_bytes += len;
    return 0;
}

/* The header block (header_len bytes) from the spool, and where the body
 * starts. */
static int read_headers(struct cleanup_model *md)
{
    struct cleanup_state *st = md->st;
    struct rec_buf chunk = {0};
    char *block = malloc((size_t)st->header_len + 1);
    size_t have = 0;
    int rc = -1;
    if (!block || queue_content_begin(md->spool, st->content_offset) < 0)
        goto done;
    for (;;) {
        off_t at = stream_tell(md->spool);
        int more = content_next(md->spool, &chunk);
        if (more < 0)
            goto done;
        size_t want = (size_t)st->header_len - have, take = 0;
        if (more) {
            take = chunk.len < want ? chunk.len : want;
            memcpy(block + have, chunk.data, take);
            have += take;
        }
        if (!more || take < chunk.len || have == (size_t)st->header_len) {
            if (more && take < chunk.len) {
                md->separator = chunk.data[take] == '\n';
                md->body_start = at;
                md->body_skip = take + (size_t)md->separator;
            } else {
                /* the body starts with the next record, if any */
                md->body_start = stream_tell(md->spool);
                md->body_skip = 0;
                if (more && content_next(md->spool, &chunk) == 1 && chunk.len) {
                    md->separator = chunk.data[0] == '\n';
                    md->body_skip = (size_t)md->separator;
                }
            }
            break;
        }
    }
    for (const char *p = block, *end = block + have; p < end;) {
        const char *next = header_end(p, end);
        if (add_header_text(md, md->n, p, (size_t)(next - p)) < 0)
            goto done;
        p = next;
    }
    md->own_received = md->n > 0 && (st->origin == ORIGIN_SMTP || st->origin == ORIGIN_LOCAL) &&
                       header_is(md->h[0].text, header_name_len(md->h[0].text, md->h[0].len),
                                 "Received");
    rc = 0;
done:
    free(block);
    rec_buf_free(&chunk);
    return rc;
}

struct cleanup_model *cleanup_model_new(struct cleanup_state *st)
{
    struct cleanup_model *md = calloc(1, sizeof(*md));
    if (!md)
        return NULL;
    md->st = st;
    md->spool = st->out;
    md->body_fd = md->new_fd = -1;
    if (stream_flush(md->spool) < 0 || read_headers(md) < 0) {
        msg_warn("%s: read back the message for the milters: %s", queue_writer_id(st->writer),
                 strerror(errno));
        cleanup_model_free(md);
        return NULL;
    }
    if (*var.milter_header_checks) {
        char err[256];
        if (!(md->checks = lookup_list_open(var.milter_header_checks, err, sizeof(err))))
            msg_warn("milter_header_checks: %s", err);
    }
    return md;
}

void cleanup_model_free(struct cleanup_model *md)
{
    if (!md)
        return;
    for (size_t i = 0; i < md->n; i++)
        free(md->h[i].text);
    free(md->h);
    if (md->body_fd >= 0)
        close(md->body_fd);
    if (md->new_fd >= 0)
        close(md->new_fd);
    free(md->sender);
    free(md->dsn_ret);
    free(md->dsn_envid);
    for (size_t i = 0; i < md->ndeleted; i++)
        free(md->deleted[i]);
    free(md->deleted);
    for (size_t i = 0; i < md->nadded; i++) {
        free(md->added[i].addr);
        free(md->added[i].dsn_orcpt);
    }
    free(md->added);
    lookup_list_close(md->checks);
    free(md);
}

/* --- what the milters see --- */

size_t cleanup_model_headers(const struct cleanup_model *md)
{
    return md->n - (size_t)md->own_received;
}

int cleanup_model_header(const struct cleanup_model *md, size_t i, char *name, size_t nlen,
                         const char **value, size_t *vlen)
{
    const struct header *h = &md->h[i + (size_t)md->own_received];
    size_t colon = header_name_len(h->text, h->len);
    size_t trimmed = header_name_trim(h->text, colon);
    if (!colon || trimmed >= nlen)
        return -1;
    memcpy(name, h->text, trimmed);
    name[trimmed] = 0;
    *value = h->text + colon + 1;
    *vlen = h->len - colon - 1;
    if (*vlen && (*value)[*vlen - 1] == '\n')
        (*vlen)--;   /* the header's own line end is not its value */
    return 0;
}

/* The body, from the spool or the replaced one, as LF text. */
struct cleanup_body {
    struct cleanup_model *md;
    struct stream *file;       /* a replaced body */
    struct rec_buf chunk;
    size_t skip;
    int started;
};

struct cleanup_body *cleanup_body_open(struct cleanup_model *md)
{
    struct cleanup_body *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->md = md;
    if (md->body_fd >= 0) {
        int fd = dup(md->body_fd);
        if (fd < 0 || lseek(fd, 0, SEEK_SET) < 0 || !(b->file = stream_open(fd, 0))) {
            if (fd >= 0)
                close(fd);
            free(b);
            return NULL;
        }
    } else if (queue_content_begin(md->spool, md->body_start) < 0) {
        free(b);
        return NULL;
    }
    b->skip = md->body_fd >= 0 ? 0 : md->body_skip;
    return b;
}

/* The next piece: 1 with *data, *len; 0 at the end; -1 on error. */
int cleanup_body_next(struct cleanup_body *b, const char **data, size_t *len)
{
    if (b->file) {
        if (rec_buf_reserve(&b->chunk, REC_CHUNK_SIZE) < 0)
            return -1;
        ssize_t n = stream_read(b->file, b->chunk.data, REC_CHUNK_SIZE);
        if (n <= 0)
            return (int)n;
        *data = b->chunk.data;
        *len = (size_t)n;
        return 1;
    }
    for (;;) {
        int rc = content_next(b->md->spool, &b->chunk);
        if (rc <= 0)
            return rc;
        size_t skip = b->skip < b->chunk.len ? b->skip : b->chunk.len;
        b->skip -= skip;
        if (b->chunk.len > skip) {
            *data = b->chunk.data + skip;
            *len = b->chunk.len - skip;
            return 1;
        }
    }
}

void cleanup_body_close(struct cleanup_body *b)
{
    if (!b)
        return;
    if (b->file)
        stream_close(b->file);
    rec_buf_free(&b->chunk);
    free(b);
}

/* --- the milters' edits (milter.h's callbacks; ctx is the model) --- */

/* "Name: value" as it goes into the header block: one space after the
 * colon unless the milter gave its own (SMFIP_HDR_LEADSPC), CR LF turned
 * into LF, and a continuation line that does not start with white space
 * indented, so a value can never start a header of its own. */
static char *header_text(const char *name, const char *value, int leadspc, size_t *len)
{
    size_t vlen = strlen(value), cap = strlen(name) + 2 * vlen + 8, o = 0;
    char *t = malloc(cap);
    if (!t)
        return NULL;
    o = (size_t)snprintf(t, cap, "%s:%s", name, leadspc ? "" : " ");
    for (const char *p = value; *p; p++) {
        if (*p == '\r' && p[1] == '\n')
            continue;
        t[o++] = *p;
        if (*p == '\n' && p[1] && p[1] != ' ' && p[1] != '\t')
            t[o++] = '\t';
    }
    if (o == 0 || t[o - 1] != '\n')
        t[o++] = '\n';
    t[o] = 0;
    *len = o;
    return t;
}

/* A header name a milter gives: header_line's rule, and no colon. */
static int good_name(const char *name)
{
    size_t n = strlen(name);
    char probe[256];
    if (n == 0 || n + 2 > sizeof(probe))
        return 0;
    snprintf(probe, sizeof(probe), "%s:", name);
    return header_name_len(probe, n + 1) == n;
}

/* milter_header_checks on a header a milter produced: 0 to add it (text
 * may have been replaced), 1 when it is dropped. */
static int check_new_header(struct cleanup_model *md, char **text, size_t *len)
{
    struct hc_result r;
    char *value = NULL;
    size_t tlen = *len - ((*text)[*len - 1] == '\n');
    if (!md->checks)
        return 0;
    char *key = strndup(*text, tlen);
    if (!key)
        return 0;
    int rc = lookup_list_get(md->checks, key, &value);
    free(key);
    if (rc == LOOKUP_TEMPFAIL) {
        cleanup_checks_tempfail(md->st);
        return 0;
    }
    if (rc != LOOKUP_FOUND)
        return 0;
    hc_parse_action(value, &r);
    free(value);
    if (r.action == HC_DUNNO)
        return 0;
    cleanup_checks_matched(md->st, "header", *text, tlen, &r);
    if (r.action == HC_IGNORE || r.action == HC_STRIP)
        return 1;
    if (r.action == HC_REPLACE && header_name_len(r.text, strlen(r.text))) {
        char *t = malloc(strlen(r.text) + 2);
        if (t) {
            *len = (size_t)sprintf(t, "%s\n", r.text);
            free(*text);
            *text = t;
        }
    }
    return 0;
}

/* Insert a new header at position at of the whole list. */
static const char *put_header(struct cleanup_model *md, size_t at, const char *name,
                              const char *value)
{
    size_t len;
    if (!good_name(name)) {
        msg_warn("%s: milter header name \"%.100s\" is not a header name; ignored",
                 queue_writer_id(md->st->writer), name);
        return NULL;
    }
    char *t = header_text(name, value, cleanup_milter_leadspc(md->st), &len);
    if (!t)
        return WRITE_ERROR;
    if (md->header_bytes + len > (size_t)var.header_size_limit + ADDED_HEADER_BYTES) {
        msg_warn("%s: milter header \"%.100s\" would exceed the header size; ignored",
                 queue_writer_id(md->st->writer), name);
        free(t);
        return NULL;
    }
    if (check_new_header(md, &t, &len)) {
        free(t);
        return NULL;
    }
    int rc = add_header_text(md, at > md->n ? md->n : at, t, len);
    free(t);
    return rc < 0 ? WRITE_ERROR : NULL;
}

static const char *add_header(void *ctx, const char *name, const char *value)
{
    struct cleanup_model *md = ctx;
    return put_header(md, md->n, name, value);
}

static const char *ins_header(void *ctx, uint32_t index, const char *name, const char *value)
{
    struct cleanup_model *md = ctx;
    return put_header(md, index, name, value);
}

/* The index-th header called name (our own Received: not counted). */
static long find_header(struct cleanup_model *md, uint32_t index, const char *name)
{
    uint32_t seen = 0;
    for (size_t i = (size_t)md->own_received; i < md->n; i++) {
        size_t colon = header_name_len(md->h[i].text, md->h[i].len);
        if (colon && header_is(md->h[i].text, colon, name) && ++seen == index)
            return (long)i;
    }
    return -1;
}

static const char *chg_header(void *ctx, uint32_t index, const char *name, const char *value)
{
    struct cleanup_model *md = ctx;
    long i = find_header(md, index, name);
    if (!*value) {
        if (i >= 0) {
            md->header_bytes -= md->h[i].len;
            free(md->h[i].text);
            memmove(md->h + i, md->h + i + 1, (md->n - (size_t)i - 1) * sizeof(*md->h));
            md->n--;
        }
        return NULL;
    }
    if (i < 0)
        return add_header(ctx, name, value);   /* as Postfix: a change of none adds one */
    /* The new one goes in before the old one, which then goes (unless
     * the new one was refused: then the old one stays). */
    size_t before = md->n;
    const char *err = put_header(md, (size_t)i, name, value);
    if (err || md->n == before)
        return err;
    size_t old = (size_t)i + 1;
    md->header_bytes -= md->h[old].len;
    free(md->h[old].text);
    memmove(md->h + old, md->h + old + 1, (md->n - old - 1) * sizeof(*md->h));
    md->n--;
    return NULL;
}

/* An address as a milter gives it ("<a@b>", "a@b") in internal form. */
static int internal_address(const char *ext, char *out, size_t outlen)
{
    const char *params, *err;
    char buf[ADDRESS_MAX + 8];
    while (isspace((unsigned char)*ext))
        ext++;
    if (*ext != '<') {
        if (snprintf(buf, sizeof(buf), "<%s>", ext) >= (int)sizeof(buf))
            return -1;
        ext = buf;
    }
    if (address_parse_path(ext, out, outlen, &params, &err) < 0)
        return -1;
    while (isspace((unsigned char)*params))
        params++;
    return *params ? -1 : 0;
}

/* ADDRCPT_PAR's NOTIFY= and ORCPT=; anything else is ignored with
 * Postfix's warning. */
static void rcpt_args(struct cleanup_model *md, const char *args, struct added_rcpt *r)
{
    char buf[2048];
    const char *id = queue_writer_id(md->st->writer);
    snprintf(buf, sizeof(buf), "%s", args ? args : "");
    for (char *save = NULL, *a = strtok_r(buf, " ", &save); a; a = strtok_r(NULL, " ", &save)) {
        if (strncasecmp(a, "NOTIFY=", 7) == 0) {
            int mask = dsn_notify_parse(a + 7);
            if (mask <= 0 || r->notify)
                msg_warn("%s: Bad NOTIFY parameter from Milter or header/body_checks: \"%.100s\"",
                         id, a);
            else
                r->notify = mask;
        } else if (strncasecmp(a, "ORCPT=", 6) == 0) {
            char decoded[ADDRESS_MAX + 64];
            const char *semi = strchr(a + 6, ';');
            size_t tlen = semi ? (size_t)(semi - (a + 6)) : 0;
            int n = semi && tlen ? snprintf(decoded, sizeof(decoded), "%.*s;", (int)tlen, a + 6)
                                 : -1;
            if (n < 0 || r->dsn_orcpt ||
                xtext_decode(semi + 1, decoded + n, sizeof(decoded) - (size_t)n) < 0)
                msg_warn("%s: Bad ORCPT parameter from Milter or header/body_checks: \"%.100s\"",
                         id, a);
            else
                r->dsn_orcpt = strdup(decoded);
        } else {
            msg_warn("%s: ignoring ESMTP argument from Milter or header/body_checks: \"%.100s\"",
                     id, a);
        }
    }
}

static const char *add_rcpt(void *ctx, const char *addr, const char *args)
{
    struct cleanup_model *md = ctx;
    char internal[ADDRESS_MAX];
    if (internal_address(addr, internal, sizeof(internal)) < 0 || !*internal) {
        msg_warn("%s: ignoring attempt from Milter to add bad recipient \"%.100s\"",
                 queue_writer_id(md->st->writer), addr);
        return NULL;
    }
    if (md->nadded >= ADDED_RCPT_MAX) {
        msg_warn("%s: more than %d recipients added by milters; \"%.100s\" ignored",
                 queue_writer_id(md->st->writer), ADDED_RCPT_MAX, addr);
        return NULL;
    }
    struct added_rcpt *a = realloc(md->added, (md->nadded + 1) * sizeof(*a));
    if (!a)
        return WRITE_ERROR;
    md->added = a;
    struct added_rcpt *r = &md->added[md->nadded];
    memset(r, 0, sizeof(*r));
    rcpt_args(md, args, r);
    if (!(r->addr = strdup(internal))) {
        free(r->dsn_orcpt);
        return WRITE_ERROR;
    }
    md->nadded++;
    return NULL;
}

static const char *del_rcpt(void *ctx, const char *addr)
{
    struct cleanup_model *md = ctx;
    char internal[ADDRESS_MAX];
    if (internal_address(addr, internal, sizeof(internal)) < 0)
        snprintf(internal, sizeof(internal), "%s", addr);
    if (md->ndeleted >= DELETED_RCPT_MAX)
        return WRITE_ERROR;   /* deletions lost would deliver where it must not */
    char **d = realloc(md->deleted, (md->ndeleted + 1) * sizeof(*d));
    if (!d)
        return WRITE_ERROR;
    md->deleted = d;
    if (!(d[md->ndeleted] = strdup(internal)))
        return WRITE_ERROR;
    md->ndeleted++;
    /* a recipient added before and deleted now is not added */
    for (size_t i = 0; i < md->nadded; i++)
        if (strcasecmp(md->added[i].addr, internal) == 0)
            md->added[i].addr[0] = 0;
    return NULL;
}

/* CHGFROM: the new sender, with RET= and ENVID= (Postfix takes only
 * those; others are warned about and ignored). */
static const char *chg_from(void *ctx, const char *addr, const char *args)
{
    struct cleanup_model *md = ctx;
    const char *id = queue_writer_id(md->st->writer);
    char internal[ADDRESS_MAX], buf[2048];
    if (internal_address(addr, internal, sizeof(internal)) < 0) {
        msg_warn("%s: ignoring bad sender address \"%.100s\" from Milter", id, addr);
        return NULL;
    }
    snprintf(buf, sizeof(buf), "%s", args ? args : "");
    for (char *save = NULL, *a = strtok_r(buf, " ", &save); a; a = strtok_r(NULL, " ", &save)) {
        char decoded[256];
        if (strncasecmp(a, "RET=", 4) == 0 &&
            (strcasecmp(a + 4, "FULL") == 0 || strcasecmp(a + 4, "HDRS") == 0)) {
            free(md->dsn_ret);
            md->dsn_ret = strdup(strcasecmp(a + 4, "FULL") == 0 ? "FULL" : "HDRS");
        } else if (strncasecmp(a, "ENVID=", 6) == 0 &&
                   xtext_decode(a + 6, decoded, sizeof(decoded)) >= 0) {
            free(md->dsn_envid);
            md->dsn_envid = strdup(decoded);
        } else {
            msg_warn("Ignoring bad ESMTP parameter \"%.100s\" in SMFI_CHGFROM request", a);
        }
    }
    free(md->sender);
    return (md->sender = strdup(internal)) ? NULL : WRITE_ERROR;
}

/* REPLBODY: chunks of the new body, CR LF into LF, into a file of its
 * own; it becomes the body when the milter's answer is complete. */
static const char *repl_body(void *ctx, int first, const unsigned char *data, size_t len)
{
    struct cleanup_model *md = ctx;
    if (first) {
        if (md->new_fd >= 0)
            close(md->new_fd);
        md->new_cr = 0;
        md->new_size = 0;
        if ((md->new_fd = queue_spool_open()) < 0) {
            msg_warn("%s: replacement body: %s", queue_writer_id(md->st->writer), strerror(errno));
            return WRITE_ERROR;
        }
    }
    md->new_size += (long long)len;
    if (var.message_size_limit > 0 && md->new_size > var.message_size_limit) {
        msg_warn("%s: replacement body from milter exceeds message_size_limit",
                 queue_writer_id(md->st->writer));
        return TOO_BIG;
    }
    char out[REC_CHUNK_SIZE + 2];
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (md->new_cr && data[i] != '\n')
            out[o++] = '\r';
        md->new_cr = data[i] == '\r';
        if (!md->new_cr)
            out[o++] = (char)data[i];
        if (o >= REC_CHUNK_SIZE) {
            if (write(md->new_fd, out, o) != (ssize_t)o)
                return WRITE_ERROR;
            o = 0;
        }
    }
    if (o && write(md->new_fd, out, o) != (ssize_t)o)
        return WRITE_ERROR;
    return NULL;
}

static const char *quarantine(void *ctx, const char *reason)
{
    struct cleanup_model *md = ctx;
    cleanup_milter_hold(md->st, reason);
    return NULL;
}

const struct milter_edits cleanup_model_edits = {
    add_header, ins_header, chg_header, add_rcpt, del_rcpt, chg_from, repl_body, quarantine,
};

size_t cleanup_model_deletions(const struct cleanup_model *md)
{
    return md->ndeleted;
}

/* A milter's answer is complete: a body it sent is the body from now on. */
void cleanup_model_commit_body(struct cleanup_model *md)
{
    if (md->new_fd < 0)
        return;
    if (md->new_cr && write(md->new_fd, "\r", 1) != 1)
        msg_warn("%s: replacement body: %s", queue_writer_id(md->st->writer), strerror(errno));
    if (md->body_fd >= 0)
        close(md->body_fd);
    md->body_fd = md->new_fd;
    md->new_fd = -1;
}

/* A milter's answer failed: what it sent of a body is dropped. */
void cleanup_model_drop_body(struct cleanup_model *md)
{
    if (md->new_fd >= 0)
        close(md->new_fd);
    md->new_fd = -1;
}

/* --- into the queue file --- */

static int deleted(const struct cleanup_model *md, const char *orig, const char *addr)
{
    for (size_t i = 0; i < md->ndeleted; i++)
        if (strcasecmp(md->deleted[i], orig ? orig : addr) == 0)
            return 1;
    return 0;
}

/* O, P, N records wait for their R: written with it, or dropped with it. */
struct pending {
    char *orig, *orcpt, *notify;
};

static void pending_clear(struct pending *p)
{
    free(p->orig);
    free(p->orcpt);
    free(p->notify);
    memset(p, 0, sizeof(*p));
}

static void recipient_record(struct cleanup_model *md, struct pending *p, int type,
                             const struct rec_buf *b)
{
    struct cleanup_state *st = md->st;
    char **slot = type == REC_ORCPT ? &p->orig : type == REC_DSN_ORCPT ? &p->orcpt : &p->notify;
    if (type != REC_RCPT) {
        free(*slot);
        if (!(*slot = strdup(b->data)))
            st->write_error = ENOMEM;
        return;
    }
    if (!deleted(md, p->orig, b->data)) {
        if (p->orig)
            cleanup_out_record(st, REC_ORCPT, p->orig, strlen(p->orig));
        if (p->orcpt)
            cleanup_out_record(st, REC_DSN_ORCPT, p->orcpt, strlen(p->orcpt));
        if (p->notify)
            cleanup_out_record(st, REC_DSN_NOTIFY, p->notify, strlen(p->notify));
        cleanup_out_record(st, REC_RCPT, b->data, b->len);
        st->nrcpt++;
    }
    pending_clear(p);
}

/* An attribute, unless a CHGFROM replaced it (then it comes at the end). */
static void attribute_record(struct cleanup_model *md, const struct rec_buf *b)
{
    if ((md->dsn_ret && strncmp(b->data, ATTR_DSN_RET "=", strlen(ATTR_DSN_RET) + 1) == 0) ||
        (md->dsn_envid && strncmp(b->data, ATTR_DSN_ENVID "=", strlen(ATTR_DSN_ENVID) + 1) == 0))
        return;
    cleanup_out_record(md->st, REC_ATTR, b->data, b->len);
}

static void changed_attributes(struct cleanup_model *md)
{
    char a[512];
    if (md->dsn_ret && snprintf(a, sizeof(a), "%s=%s", ATTR_DSN_RET, md->dsn_ret) < (int)sizeof(a))
        cleanup_out_record(md->st, REC_ATTR, a, strlen(a));
    if (md->dsn_envid &&
        snprintf(a, sizeof(a), "%s=%s", ATTR_DSN_ENVID, md->dsn_envid) < (int)sizeof(a))
        cleanup_out_record(md->st, REC_ATTR, a, strlen(a));
    if (md->st->hold && md->st->hold_reason[0] &&
        snprintf(a, sizeof(a), "hold_reason=%s", md->st->hold_reason) < (int)sizeof(a))
        cleanup_out_record(md->st, REC_ATTR, a, strlen(a));
}

/* The content: the header block as the milters left it, the separator,
 * and the body. */
static void write_content(struct cleanup_model *md)
{
    struct cleanup_state *st = md->st;
    struct cleanup_body *b = NULL;
    for (size_t i = 0; i < md->n; i++)
        cleanup_out_content(st, md->h[i].text, md->h[i].len);
    if (md->separator || md->body_fd >= 0)
        cleanup_out_content(st, "\n", 1);
    if (!(b = cleanup_body_open(md))) {
        st->write_error = st->write_error ? st->write_error : EIO;
        return;
    }
    const char *data;
    size_t len;
    int rc;
    while ((rc = cleanup_body_next(b, &data, &len)) == 1)
        cleanup_out_content(st, data, len);
    if (rc < 0)
        st->write_error = st->write_error ? st->write_error : EIO;
    cleanup_body_close(b);
}

/* Copy the spool into the queue file (st->out switches back to it),
 * with the milters' changes. */
void cleanup_model_write(struct cleanup_model *md, struct stream *queue)
{
    struct cleanup_state *st = md->st;
    struct stream *spool = md->spool;
    struct rec_buf b = {0};
    struct pending p = {0};
    off_t content_end = st->content_end;
    st->out = queue;
    st->nrcpt = 0;
    st->content_size = 0;
    if (stream_seek(spool, 0) < 0) {
        st->write_error = errno;
        return;
    }
    for (;;) {
        int type = rec_get(spool, &b, REC_CHUNK_SIZE + IPC_VALUE_MAX, NULL);
        if (type == REC_EOF)
            break;
        if (type < 0) {
            st->write_error = st->write_error ? st->write_error : EIO;
            break;
        }
        switch (type) {
        case REC_SENDER:
            if (md->sender) {
                free(st->sender);
                st->sender = strdup(md->sender);
                cleanup_rcpt_rewrite_sender(st);
                cleanup_out_record(st, REC_SENDER, st->sender, strlen(st->sender));
            } else {
                cleanup_out_record(st, REC_SENDER, b.data, b.len);
            }
            break;
        case REC_ATTR:
            attribute_record(md, &b);
            break;
        case REC_ORCPT:
        case REC_DSN_ORCPT:
        case REC_DSN_NOTIFY:
        case REC_RCPT:
            recipient_record(md, &p, type, &b);
            break;
        case REC_CONTENT_START:
            changed_attributes(md);
            cleanup_out_record(st, REC_CONTENT_START, "", 0);
            st->content_offset = stream_tell(st->out);
            write_content(md);
            /* on with the records after the spool's content */
            if (content_end > 0 && stream_seek(spool, content_end) < 0)
                st->write_error = errno;
            break;
        default:
            cleanup_out_record(st, type, b.data, b.len);
        }
    }
    pending_clear(&p);
    rec_buf_free(&b);
    for (size_t i = 0; i < md->nadded; i++)
        if (md->added[i].addr[0])
            cleanup_rcpt_add(st, md->added[i].addr, md->added[i].dsn_orcpt, md->added[i].notify);
}
