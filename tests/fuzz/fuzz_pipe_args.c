/* fuzz_pipe_args.c - libFuzzer target for lib/mail/pipe_args.c, a pipe
 * service's master.cf attributes (pipe_args_parse, the argv= macro walk),
 * and pipe/argv.c, which expands argv= for a request (compiled in
 * unchanged).
 *
 * Input: the attribute words on the first line (split at spaces), then the
 * sender, then one recipient per line (at most 8). A parse either fails
 * with a reason, or gives a user, a command and an end-of-line string;
 * the expansion of a good parse is NULL-terminated, each word under
 * PIPE_ARG_MAX, the command name not empty, and has one word per argv=
 * word, or one per recipient for a word with a per-recipient macro.
 */
#include "fuzz.h"
#include "pipe.h"

#include "deliver_request.h"

#define WORDS_MAX 300
#define RCPTS_MAX 8

static int note_recipient_macro(void *ctx, enum pipe_macro m)
{
    *(int *)ctx |= pipe_macro_per_recipient(m);
    return 0;
}

static size_t expected_words(const struct pipe_args *pa, size_t nrcpt)
{
    size_t n = 0;
    char err[64];

    for (size_t i = 0; i < pa->argc; i++) {
        int per = 0;
        struct pipe_template_walk w = {.macro = note_recipient_macro, .ctx = &per};
        FUZZ_ASSERT(pipe_template_walk(pa->argv[i], &w, err, sizeof(err)) == 0);
        n += per ? nrcpt : 1;
    }
    return n;
}

static void check_expansion(const struct pipe_args *pa, const char *sender,
                            const char **rcpt, size_t nrcpt)
{
    struct deliver_message m = {.queue_id = "1xaX6N0EYRjzka", .sender = sender};
    struct pipe_expand x = {.pa = pa, .m = &m, .rcpt = rcpt, .orig = rcpt, .nrcpt = nrcpt};
    char err[256] = "";
    char **argv = pipe_argv_expand(&x, err, sizeof(err));

    if (argv == NULL) {
        FUZZ_ASSERT(err[0] != 0);
        return;
    }
    size_t n = 0;
    for (; argv[n] != NULL; n++)
        FUZZ_ASSERT(strlen(argv[n]) < PIPE_ARG_MAX);
    FUZZ_ASSERT(n == expected_words(pa, nrcpt));
    FUZZ_ASSERT(argv[0][0] != 0);
    pipe_argv_free(argv);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_quiet_log("fuzz_pipe_args");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line, *rest, *words[WORDS_MAX], *save = NULL;
    const char *rcpt[RCPTS_MAX];
    size_t nwords = 0, nrcpt = 0;
    struct pipe_args *pa = malloc(sizeof(*pa));
    char err[256] = "";

    if (pa == NULL)
        abort();
    fuzz_split(data, size, '\n', &line, &rest);
    for (char *w = strtok_r(line, " ", &save); w != NULL && nwords < WORDS_MAX;
         w = strtok_r(NULL, " ", &save))
        words[nwords++] = w;
    int rc = pipe_args_parse(words, nwords, pa, err, sizeof(err));
    FUZZ_ASSERT(rc == 0 || rc == -1);
    if (rc < 0) {
        FUZZ_ASSERT(err[0] != 0);
    } else {
        FUZZ_ASSERT(pa->user[0] != 0 && pa->argc >= 1 && pa->argv[pa->argc] == NULL);
        FUZZ_ASSERT(pa->eol_len >= 1 && pa->eol_len < PIPE_EOL_MAX && pa->null_sender != NULL);
        char *sender = strtok_r(rest, "\n", &save);
        for (char *r = strtok_r(NULL, "\n", &save); r != NULL && nrcpt < RCPTS_MAX;
             r = strtok_r(NULL, "\n", &save))
            rcpt[nrcpt++] = r;
        if (nrcpt == 0)
            rcpt[nrcpt++] = "user+ext@example.com";
        check_expansion(pa, sender != NULL ? sender : "", rcpt, nrcpt);
    }
    free(line);
    free(rest);
    free(pa);
    return 0;
}
