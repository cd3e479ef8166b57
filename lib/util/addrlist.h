/* addrlist.h - RFC 5322 address lists, as found in To:, Cc:, Bcc:, From:
 * headers and in sendmail's command-line recipients:
 *     a@b, Name <c@d>, "x y"@e (comment), group: f, g;, undisclosed:;
 *
 * Used by cleanup (local submissions: recipients from headers for
 * sendmail -t, and qualifying bare local parts with myorigin) and by
 * sendmail (its recipient arguments). Parsing is lenient, as mailers must
 * be with what users type: display names and comments are skipped, groups
 * are entered, a source route inside <> is dropped, and anything left that
 * is not a special character is taken as part of the address.
 *
 * Each address is reported with the byte span of its addr-spec in the
 * input, so a caller can rewrite a header in place (append "@domain" to a
 * bare local part) without touching its display names, comments or folding.
 */
#ifndef POSTERN_ADDRLIST_H
#define POSTERN_ADDRLIST_H

#include <stddef.h>

#include "address.h"

struct addrlist_item {
    char address[ADDRESS_MAX];  /* internal form: quotes and escapes removed */
    size_t start, end;          /* addr-spec is text[start..end) */
    int qualified;              /* the addr-spec has an '@' domain part */
};

/* Called once per address, in order; a nonzero return stops the walk. */
typedef int (*addrlist_fn)(const struct addrlist_item *item, void *ctx);

/* Walk the address list text[0..len) (it need not be NUL-terminated).
 * Empty members ("<>", "a,,b", "group:;") are skipped; an address too long
 * for ADDRESS_MAX is skipped too. Returns the number of addresses passed
 * to fn, or -1 when out of memory. */
int addrlist_parse(const char *text, size_t len, addrlist_fn fn, void *ctx);

#endif
