/* command.c - delivery to a command: "|command" from an alias, a .forward
 * or an :include: file, and mailbox_command.
 *
 * The command text comes only from the administrator (aliases,
 * mailbox_command) or the user (.forward); it runs as "/bin/sh -c COMMAND"
 * with the rights of the user it is run for, in that user's home (or
 * "/"), with the message on stdin (a From_ line and the trace headers
 * first) and a fixed environment. Envelope text (sender, recipient)
 * reaches the command only through that environment, with every character
 * outside a safe set replaced by '_', so no address can smuggle shell
 * syntax anywhere. Running it, the time limit (command_time_limit) and the
 * status from its exit are lib/mail/command_run.h, shared with pipe.
 */
#include "local.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "command_run.h"
#include "config.h"
#include "log.h"
#include "service.h"

#define ENV_VALUE_MAX 1024
#define ENV_COUNT 14
#define DEFAULT_PATH "/usr/bin:/bin"

/* Postfix's command_expansion_filter default. */
static const char safe_chars[] =
    "1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/* --- the environment --- */

static char *env_entry(const char *name, const char *value)
{
    size_t len = strlen(name) + 1 + strnlen(value, ENV_VALUE_MAX) + 1;
    char *entry = malloc(len), *p;

    if (entry == NULL)
        msg_fatal("out of memory");
    snprintf(entry, len, "%s=%.*s", name, ENV_VALUE_MAX, value);
    for (p = entry + strlen(name) + 1; *p != 0; p++)
        if (strchr(safe_chars, *p) == NULL)
            *p = '_';
    return entry;
}

/* SENDER RECIPIENT ORIGINAL_RECIPIENT LOCAL EXTENSION DOMAIN USER LOGNAME
 * HOME SHELL PATH, NULL-terminated. Caller frees (env_free). */
static char **build_env(const struct local_user *u, const struct mail_copy_trace *t,
                        const struct local_command_env *e)
{
    char **env = calloc(ENV_COUNT, sizeof(char *));
    char local[DELIVERY_TEXT_MAX], user[DELIVERY_TEXT_MAX];
    const char *at = strrchr(e->recipient, '@');
    const char *delims = var.recipient_delimiter;
    size_t n = 0, cut, i;

    if (env == NULL)
        msg_fatal("out of memory");
    snprintf(local, sizeof(local), "%.*s",
             (int)(at != NULL ? (size_t)(at - e->recipient) : strlen(e->recipient)),
             e->recipient);
    snprintf(user, sizeof(user), "%s", local);
    cut = delims != NULL && *delims != 0 ? strcspn(user, delims) : strlen(user);
    if (cut == 0)
        cut = strlen(user);
    for (i = 0; user[i] != 0; i++)
        user[i] = (char)tolower((unsigned char)user[i]);
    env[n++] = env_entry("SENDER", t->sender);
    env[n++] = env_entry("RECIPIENT", e->recipient);
    env[n++] = env_entry("ORIGINAL_RECIPIENT", e->orig_rcpt ? e->orig_rcpt : e->recipient);
    env[n++] = env_entry("LOCAL", local);
    env[n++] = env_entry("EXTENSION", user[cut] != 0 ? local + cut + 1 : "");
    env[n++] = env_entry("DOMAIN", at != NULL ? at + 1 : "");
    user[cut] = 0;
    env[n++] = env_entry("USER", user);
    env[n++] = env_entry("LOGNAME", user);
    env[n++] = env_entry("HOME", u->home);
    env[n++] = env_entry("SHELL", u->shell[0] != 0 ? u->shell : "/bin/sh");
    env[n++] = env_entry("PATH", DEFAULT_PATH);
    env[n] = NULL;
    return env;
}

static void env_free(char **env)
{
    size_t i;

    for (i = 0; env[i] != NULL; i++)
        free(env[i]);
    free(env);
}

/* --- running it --- */

struct feed {
    const struct deliver_message *m;
    const struct mail_copy_trace *t;
};

/* command_feed_fn: the From_ line, the trace headers, the message. */
static int feed_message(void *ctx, mail_copy_sink sink, void *sink_ctx)
{
    const struct feed *f = ctx;

    return mail_copy(f->m, f->t, MAIL_COPY_FROM_LINE | MAIL_COPY_TRACE, 0, sink, sink_ctx);
}

void command_deliver(const char *command, const struct local_user *u,
                     const struct deliver_message *m, const struct mail_copy_trace *t,
                     const struct local_command_env *env, struct delivery_status *st)
{
    char *argv[] = {"sh", "-c", (char *)command, NULL};
    char **envp = build_env(u, t, env);
    struct command_spec spec = {
        .path = "/bin/sh", .argv = argv, .envp = envp,
        .uid = u->uid, .gid = u->gid,
        .keep_ids = service_instance_mode(),
        .directory = u->home[0] != 0 ? u->home : "/", .directory_fallback = 1,
        .time_limit = var.command_time_limit,
    };
    struct feed f = {.m = m, .t = t};
    struct command_result *r = malloc(sizeof(*r));

    if (r == NULL)
        msg_fatal("out of memory");
    if (command_run(&spec, feed_message, &f, r, st) == 0 && !command_failed(r, command, st))
        delivery_status_set(st, "2.0.0", "delivered to command: %s", command);
    if (r->feed == MAIL_COPY_EREAD)
        msg_warn("%s: error reading queue file content", m->queue_id);
    env_free(envp);
    free(r);
}
