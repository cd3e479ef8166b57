/* fuzz_table_reply.c - libFuzzer target for what tcp: and socketmap:
 * table servers send back (lib/util/lookup_reply.c): the tcp_table(5)
 * reply line with its %XX decoding, the netstring framing of
 * socketmap_table(5) and its reply words. A server is not under our
 * control, so this is parsed input from the network.
 *
 * Input: byte 0 picks the protocol (even: tcp, odd: socketmap), the rest
 * is what the server sent. Properties: an answer is one of the three
 * codes, FOUND iff a value, a value is NUL-free and no longer than the
 * reply; a temporary failure has a printable reason; a netstring's payload
 * lies inside the input and within the size bound; and any key, encoded
 * as a request, comes back unchanged through the reply decoder.
 */
#include "fuzz.h"
#include "lookup.h"
#include "lookup_reply.h"

#include <ctype.h>

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_quiet_log("fuzz_table_reply");
    return 0;
}

static void check_answer(int rc, const char *value, size_t len, const char *why)
{
    FUZZ_ASSERT(rc == LOOKUP_FOUND || rc == LOOKUP_NOTFOUND || rc == LOOKUP_TEMPFAIL);
    FUZZ_ASSERT((rc == LOOKUP_FOUND) == (value != NULL));
    if (value != NULL)
        FUZZ_ASSERT(strlen(value) <= len);
    if (rc == LOOKUP_TEMPFAIL)
        for (const char *p = why; *p != 0; p++)
            FUZZ_ASSERT(isprint((unsigned char)*p));
}

static void tcp_reply(const char *buf, size_t len)
{
    const char *nl = memchr(buf, '\n', len);
    size_t line = nl ? (size_t)(nl - buf) : len;
    char why[256] = "", *value = NULL;
    int rc = lookup_tcp_reply(buf, line, &value, why, sizeof(why));

    check_answer(rc, value, line, why);
    free(value);
}

static void socketmap_reply(const char *buf, size_t len)
{
    const char *data = NULL;
    size_t dlen = 0, used = 0;
    char why[256] = "", *value = NULL;
    int rc = lookup_netstring(buf, len, SOCKETMAP_REPLY_MAX, &data, &dlen, &used, why,
                              sizeof(why));

    FUZZ_ASSERT(rc >= -1 && rc <= 1);
    if (rc != 1)
        return;
    FUZZ_ASSERT(used <= len && dlen <= SOCKETMAP_REPLY_MAX);
    FUZZ_ASSERT(data >= buf && data + dlen <= buf + len && data + dlen < buf + used);
    rc = lookup_socketmap_reply(data, dlen, &value, why, sizeof(why));
    check_answer(rc, value, dlen, why);
    free(value);
}

/* The input as a key: request, then the server echoing it as a value. */
static void round_trip(const uint8_t *data, size_t size)
{
    char *key = fuzz_cstring(data, size), *req = lookup_tcp_request(key), *value = NULL;
    char why[256];
    size_t rlen = strlen(req);

    FUZZ_ASSERT(rlen >= 5 && memcmp(req, "get ", 4) == 0 && req[rlen - 1] == '\n');
    FUZZ_ASSERT(strcspn(req + 4, " \t\r\n") == rlen - 5);
    memcpy(req, "200 ", 4);             /* "get ENCODED" -> "200 ENCODED" */
    FUZZ_ASSERT(lookup_tcp_reply(req, rlen - 1, &value, why, sizeof(why)) == LOOKUP_FOUND);
    FUZZ_ASSERT(strcmp(value, key) == 0);
    free(value);
    free(req);
    free(key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 200000)
        return 0;
    /* A copy of exactly the bytes, so reads past them are caught. */
    char *buf = malloc(size - 1 ? size - 1 : 1);
    memcpy(buf, data + 1, size - 1);
    if (data[0] % 2 == 0)
        tcp_reply(buf, size - 1);
    else
        socketmap_reply(buf, size - 1);
    free(buf);
    round_trip(data + 1, size - 1);
    return 0;
}
