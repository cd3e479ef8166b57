/* rcpt.c - envelope addresses on their way into the queue file
 * (cleanup.h), in Postfix's order: canonical form (myorigin, mydomain),
 * sender_/recipient_canonical_maps and canonical_maps, masquerading, and
 * for recipients virtual alias expansion (lib/rewrite.h).
 *
 * Every recipient written keeps the address the client gave as its
 * original recipient (an O record whenever it differs from the final
 * address), so delivery logs show orig_to= and DSNs the original address;
 * its DSN records (P, N) go with each address it expands to. A recipient
 * already written with the same original and DSN settings is not written
 * again, unless it asked for NOTIFY=SUCCESS (each success is reported).
 */
#include "cleanup.h"

#include "address.h"
#include "log.h"
#include "record.h"
#include "receive_override.h"
#include "rewrite.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cleanup_rcpt_hold_meta(struct cleanup_state *st, int type, const char *data)
{
    char **slot = type == REC_ORCPT       ? &st->next_orcpt
                  : type == REC_DSN_ORCPT ? &st->next_dsn_orcpt
                                          : &st->next_dsn_notify;
    free(*slot);
    if (!(*slot = strdup(data)))
        st->write_error = ENOMEM;
}

static void clear_meta(struct cleanup_state *st)
{
    free(st->next_orcpt);
    free(st->next_dsn_orcpt);
    free(st->next_dsn_notify);
    st->next_orcpt = st->next_dsn_orcpt = st->next_dsn_notify = NULL;
}

/* Whether this recipient, with these settings, was written already. */
static int already_written(struct cleanup_state *st, const char *orig, const char *dsn_orcpt,
                           const char *notify, const char *addr)
{
    if (notify && (atoi(notify) & DSN_NOTIFY_SUCCESS))
        return 0;
    size_t len = strlen(orig) + strlen(addr) + (dsn_orcpt ? strlen(dsn_orcpt) : 0) +
                 (notify ? strlen(notify) : 0) + 4;
    char *key = malloc(len);
    if (!key) {
        st->write_error = ENOMEM;
        return 1;
    }
    snprintf(key, len, "%s\n%s\n%s\n%s", orig, addr, dsn_orcpt ? dsn_orcpt : "",
             notify ? notify : "");
    int rc = cleanup_str_set_add(&st->written, key);
    free(key);
    if (rc < 0)
        st->write_error = ENOMEM;
    return rc != 1;
}

static void write_one(struct cleanup_state *st, const char *orig, const char *dsn_orcpt,
                      const char *notify, const char *addr)
{
    if (already_written(st, orig, dsn_orcpt, notify, addr))
        return;
    if (strcmp(orig, addr) != 0)
        cleanup_out_record(st, REC_ORCPT, orig, strlen(orig));
    if (dsn_orcpt)
        cleanup_out_record(st, REC_DSN_ORCPT, dsn_orcpt, strlen(dsn_orcpt));
    if (notify)
        cleanup_out_record(st, REC_DSN_NOTIFY, notify, strlen(notify));
    cleanup_out_record(st, REC_RCPT, addr, strlen(addr));
    st->nrcpt++;
}

static void defer_lookup(struct cleanup_state *st, const char *what, const char *addr)
{
    char why[ADDRESS_MAX + 64];
    snprintf(why, sizeof(why), "%s lookup problem for %s", what, addr);
    cleanup_defer(st, why);
}

/* A recipient in canonical form: the canonical maps and masquerading,
 * then what virtual alias expansion makes of it. */
static void add_recipient(struct cleanup_state *st, const char *addr, const char *orig,
                          const char *dsn_orcpt, const char *notify)
{
    char mapped[ADDRESS_MAX], why[ADDRESS_MAX + 128];
    struct rewrite_list list = {0};
    if (st->receive_flags & RECEIVE_NO_ADDRESS_MAPPINGS) {   /* a reinjection: done before */
        if (!st->first_rcpt && !(st->first_rcpt = strdup(addr)))
            st->write_error = ENOMEM;
        write_one(st, orig, dsn_orcpt, notify, addr);
        return;
    }
    int rc = rewrite_address(REWRITE_ENV_RCPT, addr, mapped, sizeof(mapped));
    if (rc == REWRITE_TEMPFAIL || rc == REWRITE_LIMIT) {
        defer_lookup(st, "canonical_maps", addr);
        return;
    }
    if (!st->first_rcpt && !(st->first_rcpt = strdup(mapped)))
        st->write_error = ENOMEM;
    rc = rewrite_virtual_alias(mapped, &list, why, sizeof(why));
    if (rc != REWRITE_OK)
        cleanup_defer(st, why);
    else
        for (size_t i = 0; i < list.n; i++)
            write_one(st, orig, dsn_orcpt, notify, list.addr[i]);
    rewrite_list_free(&list);
}

/* addr in canonical form into out; an address too long to qualify stays
 * as it is (it fails later, visibly). */
static void canonical(const char *addr, char *out, size_t outlen)
{
    if (rewrite_canonical_form(addr, NULL, NULL, out, outlen) != REWRITE_OK)
        snprintf(out, outlen, "%s", addr);
}

void cleanup_rcpt_envelope(struct cleanup_state *st, const char *addr)
{
    char qualified[ADDRESS_MAX];
    canonical(addr, qualified, sizeof(qualified));
    if (st->extract && cleanup_rcpt_list_add(&st->rcpts, qualified, addr) < 0)
        st->write_error = ENOMEM;
    add_recipient(st, qualified, st->next_orcpt ? st->next_orcpt : addr, st->next_dsn_orcpt,
                  st->next_dsn_notify);
    clear_meta(st);
}

void cleanup_rcpt_write_extracted(struct cleanup_state *st)
{
    char mask[8];
    snprintf(mask, sizeof(mask), "%d", st->extract_notify);
    for (size_t i = 0; i < st->extracted.n; i++) {
        const char *addr = st->extracted.addr[i], *orig = st->extracted.orig[i];
        if (cleanup_rcpt_list_has(&st->rcpts, addr))
            continue;
        if (cleanup_rcpt_list_add(&st->rcpts, addr, orig) < 0) {
            st->write_error = ENOMEM;
            return;
        }
        add_recipient(st, addr, orig, NULL, st->extract_notify ? mask : NULL);
    }
}

void cleanup_rcpt_write_bcc(struct cleanup_state *st)
{
    char mask[8], addr[ADDRESS_MAX];
    /* As Postfix does: the sender hears nothing about a BCC copy. */
    snprintf(mask, sizeof(mask), "%d", DSN_NOTIFY_NEVER);
    for (size_t i = 0; i < st->bcc.n; i++) {
        canonical(st->bcc.addr[i], addr, sizeof(addr));
        add_recipient(st, addr, addr, NULL, mask);
    }
}

void cleanup_rcpt_add(struct cleanup_state *st, const char *addr, const char *dsn_orcpt,
                      int notify)
{
    char qualified[ADDRESS_MAX], mask[16];
    canonical(addr, qualified, sizeof(qualified));
    snprintf(mask, sizeof(mask), "%d", notify);
    add_recipient(st, qualified, addr, dsn_orcpt, notify ? mask : NULL);
}

void cleanup_rcpt_rewrite_sender(struct cleanup_state *st)
{
    char addr[ADDRESS_MAX];
    if (!st->sender || !*st->sender)
        return;
    canonical(st->sender, addr, sizeof(addr));
    int rc = st->receive_flags & RECEIVE_NO_ADDRESS_MAPPINGS
                 ? REWRITE_OK
                 : rewrite_address(REWRITE_ENV_SENDER, addr, addr, sizeof(addr));
    if (rc == REWRITE_TEMPFAIL || rc == REWRITE_LIMIT) {
        defer_lookup(st, "sender canonical_maps", st->sender);
        return;
    }
    if (strcmp(addr, st->sender) == 0)
        return;
    char *copy = strdup(addr);
    if (!copy) {
        st->write_error = ENOMEM;
        return;
    }
    free(st->sender);
    st->sender = copy;
}
