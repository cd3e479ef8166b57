/* fuzz_match.c - libFuzzer target for lib/match.c: mydestination /
 * relay_domains style domain lists and mynetworks style network lists,
 * which smtpd consults for every client and recipient.
 *
 * Input: "LIST\nSUBJECT". SUBJECT is matched as a domain and as a client
 * address. Properties: answers are 0 or 1; a domain matches the same with
 * a trailing dot and in another case (match.h); for a valid IP address the
 * printable and the struct sockaddr forms give the same answer.
 */
#include "fuzz.h"
#include "match.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <sys/socket.h>

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_quiet_log("fuzz_match");
    return 0;
}

static void check_domain(const char *list, const char *domain)
{
    int m = match_domain_list(list, domain);
    FUZZ_ASSERT(m == 0 || m == 1);
    size_t len = strlen(domain);
    if (len == 0 || len > 250 || domain[len - 1] == '.')
        return;
    char variant[256];
    for (size_t i = 0; i < len; i++)
        variant[i] = (char)toupper((unsigned char)domain[i]);
    variant[len] = '.';
    variant[len + 1] = 0;
    FUZZ_ASSERT(match_domain_list(list, variant) == m);
}

static void check_address(const char *list, const char *addr)
{
    int m = match_network_list_str(list, addr);
    FUZZ_ASSERT(m == 0 || m == 1);

    struct sockaddr_in in4 = {.sin_family = AF_INET};
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
    if (inet_pton(AF_INET, addr, &in4.sin_addr) == 1)
        FUZZ_ASSERT(match_network_list(list, (struct sockaddr *)&in4) == m);
    else if (inet_pton(AF_INET6, addr, &in6.sin6_addr) == 1)
        FUZZ_ASSERT(match_network_list(list, (struct sockaddr *)&in6) == m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *list, *subject;

    if (size > 16384)
        return 0;
    fuzz_split(data, size, '\n', &list, &subject);
    check_domain(list, subject);
    check_address(list, subject);
    free(list);
    free(subject);
    return 0;
}
