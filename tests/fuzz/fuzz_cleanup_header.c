/* fuzz_cleanup_header.c - libFuzzer target for cleanup's header block
 * (cleanup/headers.c): header_checks and what their actions do to a
 * header, the local treatment (Bcc: removal, sendmail -t recipients) and
 * header address rewriting. Every SMTP client and every local user's
 * sendmail input reaches it.
 *
 * cleanup's headers.c, checks.c, rcpt.c, local.c and output.c are compiled
 * in unchanged (fuzz.mk); cleanup.c, with main() and the session, is not:
 * this file plays its part for one message. main.cf, written once under
 * $TMPDIR, has header_checks rules for each action, canonical maps,
 * masquerading, virtual aliases and a queue directory. Each input gets a
 * real queue writer (lib/queue_file.h) that takes the header block, the
 * body and the recipients, and is aborted at the end.
 *
 * Input: byte 0 picks the origin (bits 0-1: 0 a local submission, 1 the
 * same with sendmail -t, 2 SMTP from a remote client, 3 SMTP from
 * mynetworks; bit 2: the SMTP client authenticated). The rest is the
 * message content: the header block ends where cleanup ends it when the
 * message ends (cleanup_headers_block_end with at_end), the body follows it.
 *
 * Properties:
 *  - the output block is header lines, each logical header ending in LF;
 *  - each output header is an input header (same bytes), in order, or a
 *    rewrite of one (an address header of the same name, no more lines),
 *    a REPLACE text for an input header a rule may replace, or a PREPEND
 *    text; input headers are missing only when a rule or the local
 *    treatment may remove them; no other header names appear;
 *  - local submissions: no Bcc: or Resent-Bcc: in the output block, nor
 *    where a reader of the finished message still sees headers (a line
 *    "Bcc : x" that ended cleanup's block but is a header to a reader);
 *  - extracted recipients are bounded, qualified, without CR or LF.
 * Everything is freed per input (leaks are findings).
 */
#include "address.h"
#include "cleanup.h"
#include "config.h"
#include "fuzz.h"
#include "queue_file.h"
#include "rewrite.h"

#include <limits.h>
#include <strings.h>
#include <sys/time.h>

#define INPUT_MAX 32768
#define HEADERS_MAX 2048

/* header_checks (also mime_header_checks, its default). */
static const char header_rules[] =
    "/^X-Ignore-Me:/ IGNORE\n"
    "/^X-Strip-Me:/ STRIP stripped by rule\n"
    "/^Subject: *\\[spam\\] *(.*)/ REPLACE Subject: $1\n"
    "/^Subject:.*replace-me/ REPLACE Subject: replaced by rule\n"
    "/^X-Replace-To:/ REPLACE To: replaced@rule.invalid, bare\n"
    "/^X-Replace-Bad:/ REPLACE this is no header\n"
    "/^Content-Description:/ REPLACE Content-Description: replaced by rule\n"
    "/^X-Prepend-Me:/ PREPEND X-Prepended: by rule\n"
    "/^X-Echo: (.*)/ PREPEND X-Echoed: $1\n"
    "/^X-Prepend-Bad:/ PREPEND this is no header\n"
    "/^X-Warn:/ WARN warned by rule\n"
    "/^X-Info:/ INFO noted by rule\n"
    "/^X-Hold:/ HOLD held by rule\n"
    "/^X-Bcc-Me:/ BCC bcc@rule.invalid\n"
    "/^X-Discard:/ DISCARD discarded by rule\n"
    "/^X-Reject:/ REJECT 5.7.1 rejected by rule\n"
    "/^X-Pass:/ PASS\n"
    "/^Content-Type:.*evil/ REJECT evil content type\n";
static const char body_rules[] = "/^reject-body-line/ REJECT body\n"
                                 "/^warn-body-line/ WARN body\n";

/* What the rules above may put into the block: PREPEND texts (a name
 * alone when the rule substitutes input), the name of the header each
 * REPLACE rule makes of which input header, and the input headers a rule
 * removes. */
static const char *const prepend_texts[] = {"X-Prepended: by rule\n", NULL};
static const char *const prepend_names[] = {"X-Prepended", "X-Echoed", NULL};
static const struct {
    const char *from[2], *to[2];
} replaced[] = {
    {{"Subject", NULL}, {"Subject", NULL}},
    {{"X-Replace-To", NULL}, {"To", NULL}},
    {{"Content-Description", NULL}, {"Content-Description", NULL}},
};
static const char *const rule_removes[] = {"X-Ignore-Me", "X-Strip-Me", NULL};
static const char *const blind[] = {"Bcc", "Resent-Bcc", NULL};

static char queue_dir[PATH_MAX];

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fuzz_write_file(path, (const uint8_t *)text, strlen(text));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char maincf[8192], err[512];
    const char *dir = fuzz_tempdir();

    fuzz_quiet_log("fuzz_cleanup_header");
    snprintf(queue_dir, sizeof(queue_dir), "%s/queue", dir);
    write_text(dir, "header_checks", header_rules);
    write_text(dir, "body_checks", body_rules);
    snprintf(maincf, sizeof(maincf),
             "myhostname = mail.example.com\n"
             "mydomain = example.com\n"
             "myorigin = $mydomain\n"
             "mydestination = $myhostname, localhost, $mydomain\n"
             "queue_directory = %s\n"
             "mynetworks = 127.0.0.0/8, [::1]/128\n"
             "inet_interfaces = loopback-only\n"
             "local_header_rewrite_clients = permit_mynetworks, permit_sasl_authenticated\n"
             "remote_header_rewrite_domain = remote.invalid\n"
             "recipient_delimiter = +\n"
             "canonical_maps = inline:{ alice=alice.smith@example.com, "
             "@old.invalid=@new.invalid }\n"
             "sender_canonical_maps = inline:{ bob@example.com=robert@example.com }\n"
             "recipient_canonical_maps = inline:{ carol=caroline@example.org }\n"
             "masquerade_domains = example.com\n"
             "masquerade_exceptions = root\n"
             "virtual_alias_maps = inline:{ { team@example.com = alice@example.com, "
             "bob@example.com }, loop@example.com=loop@example.com }\n"
             "header_checks = regexp:%s/header_checks\n"
             "body_checks = regexp:%s/body_checks\n",
             queue_dir, dir, dir);
    write_text(dir, "main.cf", maincf);
    if (config_try_load(dir, NULL, 0, err, sizeof(err)) < 0) {
        fprintf(stderr, "fuzz_cleanup_header: %s\n", err);
        abort();
    }
    if (queue_dirs_create() < 0) {
        perror("fuzz_cleanup_header: queue_dirs_create");
        abort();
    }
    return 0;
}

/* --- the harness's own reading of a block (not cleanup's helpers) --- */

/* One logical header: a line and its continuation lines. nlen is the
 * length of its name (0 for a line that starts no header). */
struct hdr {
    const char *p;
    size_t len, nlen;
};

/* Name length as RFC 5322 reads it: printable US-ASCII but ':', then the
 * colon, with white space before it (obsolete syntax, which readers
 * still accept). */
static size_t name_len(const char *s, size_t len)
{
    size_t i = 0, n;
    while (i < len && s[i] > ' ' && s[i] < 0x7f && s[i] != ':')
        i++;
    n = i;
    while (i < len && (s[i] == ' ' || s[i] == '\t'))
        i++;
    return n > 0 && i < len && s[i] == ':' ? n : 0;
}

static size_t split(const char *s, size_t len, struct hdr *h, size_t max)
{
    size_t n = 0, pos = 0;
    while (pos < len && n < max) {
        size_t start = pos;
        do {
            const char *nl = memchr(s + pos, '\n', len - pos);
            pos = nl ? (size_t)(nl - s) + 1 : len;
        } while (pos < len && (s[pos] == ' ' || s[pos] == '\t'));
        h[n].p = s + start;
        h[n].len = pos - start;
        h[n].nlen = name_len(s + start, pos - start);
        n++;
    }
    return n;
}

static int named(const struct hdr *h, const char *const *names)
{
    for (size_t i = 0; names[i]; i++)
        if (strlen(names[i]) == h->nlen && strncasecmp(h->p, names[i], h->nlen) == 0)
            return 1;
    return 0;
}

static int same_name(const struct hdr *a, const struct hdr *b)
{
    return a->nlen == b->nlen && memcmp(a->p, b->p, a->nlen) == 0;
}

static size_t count_lf(const struct hdr *h)
{
    size_t n = 0;
    for (size_t i = 0; i < h->len; i++)
        n += h->p[i] == '\n';
    return n;
}

/* in as the output should carry it: the same bytes, with the final LF a
 * block at the end of the input may lack. */
static int same_header(const struct hdr *out, const struct hdr *in)
{
    int lf = in->len > 0 && in->p[in->len - 1] == '\n';
    return out->len == in->len + !lf && memcmp(out->p, in->p, in->len) == 0;
}

/* out is what in may become: itself, an address rewrite of it, or a
 * REPLACE text when a rule may replace it. */
static int derived_from(const struct hdr *out, const struct hdr *in, int rewriting)
{
    if (same_header(out, in))
        return 1;
    /* An address rewritten across a folding may lose a line, never gain one. */
    if (rewriting && same_name(out, in) && rewrite_header_class(out->p, out->nlen) &&
        count_lf(out) <= count_lf(in) + !(in->len && in->p[in->len - 1] == '\n'))
        return 1;
    for (size_t i = 0; i < sizeof(replaced) / sizeof(replaced[0]); i++)
        if (named(in, replaced[i].from) && named(out, replaced[i].to))
            return 1;
    return 0;
}

static int is_prepend_text(const struct hdr *out)
{
    for (size_t i = 0; prepend_texts[i]; i++)
        if (out->len == strlen(prepend_texts[i]) && memcmp(out->p, prepend_texts[i], out->len) == 0)
            return 1;
    return named(out, prepend_names);
}

/* Whether an input header may be missing from the output. */
static int removable(const struct hdr *in, int local)
{
    return named(in, rule_removes) || (local && named(in, blind));
}

/* Output headers against input headers, in order (see the top). */
static void check_order(const struct hdr *in, size_t nin, const struct hdr *out, size_t nout,
                        int local, int rewriting)
{
    size_t j = 0;
    for (size_t k = 0; k < nout; k++) {
        for (;;) {
            if (j < nin && derived_from(&out[k], &in[j], rewriting)) {
                j++;
                break;
            }
            if (is_prepend_text(&out[k]))
                break;
            FUZZ_ASSERT(j < nin && removable(&in[j], local));
            j++;
        }
    }
    for (; j < nin; j++)
        FUZZ_ASSERT(removable(&in[j], local));
}

/* Headers of the finished content as a reader sees them (obsolete
 * syntax included), up to the first line that is neither header nor
 * continuation: none may be a blind copy. */
static void check_no_blind_copy(const char *s, size_t len)
{
    size_t pos = 0;
    while (pos < len && s[pos] != '\n') {
        const char *nl = memchr(s + pos, '\n', len - pos);
        size_t llen = nl ? (size_t)(nl - (s + pos)) + 1 : len - pos;
        struct hdr h = {s + pos, llen, name_len(s + pos, llen)};
        int cont = pos > 0 && (s[pos] == ' ' || s[pos] == '\t');
        if (!cont && h.nlen == 0)
            return;
        FUZZ_ASSERT(cont || !named(&h, blind));
        pos += llen;
    }
}

static void check_block(const char *in, size_t inlen, const struct dynbuf *out, int local,
                        int rewriting)
{
    static struct hdr hin[HEADERS_MAX], hout[2 * HEADERS_MAX];
    size_t nin = split(in, inlen, hin, HEADERS_MAX);
    size_t nout = split(out->p, out->len, hout, 2 * HEADERS_MAX);

    FUZZ_ASSERT(out->len == 0 || out->p[out->len - 1] == '\n');
    for (size_t k = 0; k < nout; k++) {
        FUZZ_ASSERT(hout[k].nlen > 0);
        if (local)
            FUZZ_ASSERT(!named(&hout[k], blind));
    }
    if (nin < HEADERS_MAX && nout < 2 * HEADERS_MAX)
        check_order(hin, nin, hout, nout, local, rewriting);
}

static void check_extracted(const struct rcpt_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        FUZZ_ASSERT(strlen(l->addr[i]) < ADDRESS_MAX && strlen(l->orig[i]) < ADDRESS_MAX);
        FUZZ_ASSERT(strpbrk(l->addr[i], "\r\n") == NULL && strpbrk(l->orig[i], "\r\n") == NULL);
        FUZZ_ASSERT(strchr(l->addr[i], '@') != NULL);
    }
}

/* --- one message --- */

static void set_origin(struct cleanup_state *st, uint8_t sel)
{
    switch (sel & 3) {
    case 0:
    case 1:
        st->origin = ORIGIN_LOCAL;
        st->local = 1;
        st->extract = sel & 1;
        snprintf(st->proto, sizeof(st->proto), "%s", "");
        break;
    case 2:
        st->origin = ORIGIN_SMTP;
        snprintf(st->client_name, sizeof(st->client_name), "%s", "client.remote.invalid");
        snprintf(st->client_addr, sizeof(st->client_addr), "%s", "192.0.2.10");
        break;
    default:
        st->origin = ORIGIN_SMTP;
        snprintf(st->client_name, sizeof(st->client_name), "%s", "localhost");
        snprintf(st->client_addr, sizeof(st->client_addr), "%s", "127.0.0.1");
        break;
    }
    if (st->origin == ORIGIN_SMTP) {
        snprintf(st->proto, sizeof(st->proto), "%s", "ESMTP");
        snprintf(st->helo, sizeof(st->helo), "%s", "client.invalid");
        st->sasl_authenticated = (sel & 4) != 0;
    }
}

/* What cleanup.c frees at the end of a session, for the fields used. */
static void state_free(struct cleanup_state *st)
{
    free(st->sender);
    free(st->first_rcpt);
    hc_body_free(st->body);
    cleanup_rcpt_list_free(&st->rcpts);
    cleanup_rcpt_list_free(&st->extracted);
    cleanup_rcpt_list_free(&st->bcc);
    cleanup_str_set_free(&st->written);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cleanup_state st = {0};
    struct dynbuf out = {0};
    struct timeval now;

    if (size < 1 || size > INPUT_MAX)
        return 0;
    /* A private copy, exactly as long as the content, so ASan sees overreads. */
    size_t len = size - 1;
    char *content = malloc(len ? len : 1);
    memcpy(content, data + 1, len);
    /* As cleanup.c ends the block when the message ends. */
    size_t block = (size_t)cleanup_headers_block_end(content, len, 1);

    set_origin(&st, data[0]);
    st.sender = strdup("sender@example.com");
    gettimeofday(&now, NULL);
    st.writer = queue_writer_create(QUEUE_INCOMING, &now);
    FUZZ_ASSERT(st.writer != NULL);
    st.out = queue_writer_stream(st.writer);
    /* As cleanup.c starts the content and writes the header block. */
    st.inspect = hc_headers_enabled() || hc_body_enabled();
    cleanup_headers_init(&st);
    int rc = cleanup_headers_process(&st, content, block, &out);
    FUZZ_ASSERT(rc == 0);
    cleanup_out_content(&st, out.p, out.len);
    cleanup_checks_body_start(&st);
    if (st.body) {
        hc_body_feed(st.body, content + block, len - block);
        hc_body_finish(st.body);
    } else {
        cleanup_out_content(&st, content + block, len - block);
    }
    cleanup_rcpt_write_extracted(&st);
    cleanup_rcpt_write_bcc(&st);

    check_block(content, block, &out, st.local, st.hdr_rewrite);
    if (st.local) {
        /* The block as written, then what followed it. */
        char *whole = malloc(out.len + (len - block) + 1);
        memcpy(whole, out.p ? out.p : "", out.len);
        memcpy(whole + out.len, content + block, len - block);
        check_no_blind_copy(whole, out.len + (len - block));
        free(whole);
    }
    if (!st.extract)
        FUZZ_ASSERT(st.extracted.n == 0);
    check_extracted(&st.extracted);

    queue_writer_abort(st.writer);
    state_free(&st);
    free(out.p);
    free(content);
    return 0;
}
