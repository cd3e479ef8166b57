/* fuzz_sasl_client.c - libFuzzer target for lib/util/sasl_client.c: what
 * remote does with a server's AUTH offer and 334 challenges, and with a
 * smtp_sasl_password_maps value.
 *
 * Input: line 1 is an EHLO AUTH keyword's value (mechanism list), line 2 a
 * table value ("user:password"), line 3 a 334 challenge, line 4 security
 * options. Properties: only known mechanism bits come back; the choice is
 * one allowed bit or none; split credentials are NUL-terminated within
 * their buffers; each response is NUL-terminated, its returned length is
 * its strlen and it is valid base64 that decodes within bounds.
 */
#include "fuzz.h"
#include "sasl.h"
#include "sasl_client.h"

static char *next_line(char **p)
{
    char *line = *p, *nl;

    if (line == NULL)
        return (char *)"";
    if ((nl = strchr(line, '\n')) != NULL) {
        *nl = 0;
        *p = nl + 1;
    } else {
        *p = NULL;
    }
    return line;
}

static void check_response(int n, const char *out, size_t outlen)
{
    unsigned char dec[SASL_CLIENT_RESPONSE_MAX];

    if (n < 0)
        return;
    FUZZ_ASSERT((size_t)n < outlen && strlen(out) == (size_t)n);
    FUZZ_ASSERT(sasl_base64_decode(out, dec, sizeof(dec)) >= 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char user[SASL_CLIENT_USER_MAX], pass[SASL_CLIENT_PASS_MAX];
    char out[SASL_CLIENT_RESPONSE_MAX], err[128];
    unsigned offered, allowed, chosen, flags = 0;

    if (size > 16384)
        return 0;
    char *text = fuzz_cstring(data, size), *p = text;
    char *list = next_line(&p), *value = next_line(&p), *challenge = next_line(&p);
    char *options = next_line(&p);

    offered = sasl_client_mechs_parse(list, strlen(list));
    FUZZ_ASSERT((offered & ~SASL_CLIENT_ALL) == 0);
    if (sasl_client_security_parse(options, &flags, err, sizeof(err)) < 0)
        FUZZ_ASSERT(memchr(err, 0, sizeof(err)) != NULL);
    allowed = sasl_client_mechs_allowed(offered, flags);
    FUZZ_ASSERT((allowed & ~offered) == 0);
    chosen = sasl_client_mech_choose(allowed);
    FUZZ_ASSERT(chosen == 0 || ((chosen & allowed) == chosen && (chosen & (chosen - 1)) == 0));
    FUZZ_ASSERT(chosen == 0 || *sasl_client_mech_name(chosen) != 0);

    if (sasl_client_split_credentials(value, user, sizeof(user), pass, sizeof(pass)) == 0) {
        FUZZ_ASSERT(memchr(user, 0, sizeof(user)) != NULL && *user != 0);
        FUZZ_ASSERT(memchr(pass, 0, sizeof(pass)) != NULL);
    } else {
        snprintf(user, sizeof(user), "u");
        snprintf(pass, sizeof(pass), "p");
    }
    check_response(sasl_client_plain(user, pass, out, sizeof(out)), out, sizeof(out));
    check_response(sasl_client_login(user, out, sizeof(out)), out, sizeof(out));
    check_response(sasl_client_cram_md5(user, pass, challenge, out, sizeof(out)), out,
                   sizeof(out));
    free(text);
    return 0;
}
