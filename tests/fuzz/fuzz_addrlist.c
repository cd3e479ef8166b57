/* fuzz_addrlist.c - libFuzzer target for lib/addrlist.c, the RFC 5322
 * address-list parser cleanup runs over To:, Cc:, Bcc: and From: headers
 * and sendmail over its arguments.
 *
 * Properties: every address reported lies inside the input with start <
 * end, spans come in increasing order and never end in a line end (a
 * caller appends "@domain" right after a span: it must stay on the
 * header's line; an escaped blank "a\ " may end one), addresses are NUL-terminated within ADDRESS_MAX, and the
 * count returned is the number of callbacks.
 */
#include "addrlist.h"
#include "fuzz.h"

struct walk {
    const char *text;
    size_t len;
    size_t last_end;
    int calls;
};

static int on_address(const struct addrlist_item *item, void *ctx)
{
    struct walk *w = ctx;
    FUZZ_ASSERT(memchr(item->address, 0, sizeof(item->address)) != NULL);
    FUZZ_ASSERT(item->start < item->end && item->end <= w->len);
    char last = w->text[item->end - 1];
    FUZZ_ASSERT(last != '\r' && last != '\n');
    FUZZ_ASSERT(item->start >= w->last_end);
    FUZZ_ASSERT(item->qualified == 0 || item->qualified == 1);
    w->last_end = item->end;
    w->calls++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    /* Not NUL-terminated on purpose: the parser takes a length. A private
     * copy lets ASan see any read past it. */
    char *text = malloc(size ? size : 1);
    memcpy(text, data, size);
    struct walk w = {.text = text, .len = size};
    int n = addrlist_parse(text, size, on_address, &w);
    FUZZ_ASSERT(n == w.calls);
    free(text);
    return 0;
}
