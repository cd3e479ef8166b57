/* receive_override.c - receive_override_options words (receive_override.h). */
#include "receive_override.h"

#include "log.h"
#include "params.h"
#include "strlist.h"

#include <string.h>
#include <strings.h>

static const struct {
    const char *name;
    unsigned bit;
} words[] = {
    {"no_unknown_recipient_checks", RECEIVE_NO_UNKNOWN_RCPT_CHECKS},
    {"no_address_mappings", RECEIVE_NO_ADDRESS_MAPPINGS},
    {"no_header_body_checks", RECEIVE_NO_HEADER_BODY_CHECKS},
    {"no_milters", RECEIVE_NO_MILTERS},
};

static void add_word(const char *word, unsigned *mask)
{
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strcasecmp(word, words[i].name) == 0) {
            *mask |= words[i].bit;
            return;
        }
    msg_warn("unknown receive_override_options value \"%s\" ignored", word);
}

unsigned receive_override_parse(const char *value)
{
    unsigned mask = 0;
    char word[64];
    const char *p = value ? value : "";
    int r;
    while ((r = strlist_next(&p, word, sizeof(word))) != 0)
        if (r > 0)
            add_word(word, &mask);
    return mask;
}

unsigned receive_override_mask(void)
{
    static int parsed;
    static unsigned mask;
    if (!parsed) {
        mask = receive_override_parse(var.receive_override_options);
        parsed = 1;
    }
    return mask;
}
