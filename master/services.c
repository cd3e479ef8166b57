/* services.c - master's service table (see master.h).
 *
 * Each master.cf entry becomes one struct service per listening descriptor.
 * On reload a new table is built and then takes over the descriptors of
 * the old one by key (the address or socket path), so that clients of an
 * unchanged service never see it go away; only what disappeared is closed
 * and only what is new is bound.
 */
#include "master.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KEEP_RUNNING_CHECK_MS 1000    /* re-check while an old process drains */
#define OLD_GENERATION_GRACE_MS 30000 /* then it gets SIGTERM */

static void service_free(struct service *s)
{
    listen_spec_free(&s->spec);
    free(s->name);
    free(s->command);
    free(s->argv0);
    free(s->exe);
    if (s->args)
        for (size_t i = 0; i < s->nargs; i++)
            free(s->args[i]);
    free(s->args);
    free(s);
}

void services_free(struct service *list)
{
    while (list) {
        struct service *next = list->next;
        service_free(list);
        list = next;
    }
}

static int copy_args(struct service *s, const struct mastercf_entry *e)
{
    s->args = calloc(e->nargs + 1, sizeof(*s->args));
    if (!s->args)
        return -1;
    for (size_t i = 0; i < e->nargs; i++) {
        if (!(s->args[i] = strdup(e->args[i])))
            return -1;
        s->nargs = i + 1;
    }
    return 0;
}

/* How many available processes master keeps while clients wait. A
 * single-client daemon is busy while it serves one, so one available is
 * enough: the next client makes another. smtpd serves thousands of
 * sessions and stays available, so one process would be the only one,
 * and its event loop would hold every session's TLS handshakes and
 * commands on one CPU. So it runs one per CPU, within maxproc; they take
 * connections from the shared listener, and anvil counts across them. */
static int min_available(const char *command, int limit)
{
    if (strcmp(command, "smtpd") != 0)
        return 1;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int n = cpus > 1 ? (cpus > 64 ? 64 : (int)cpus) : 1;
    return limit > 0 && limit < n ? limit : n;
}

/* A service for entry e listening on spec, whose strings it takes over.
 * NULL when out of memory (spec is then freed). Caller owns the result. */
static struct service *service_new(const struct mastercf_entry *e, const char *argv0,
                                   struct listen_spec *spec, const struct master_params *p)
{
    struct service *s = calloc(1, sizeof(*s));
    if (!s) {
        listen_spec_free(spec);
        return NULL;
    }
    s->spec = *spec;
    memset(spec, 0, sizeof(*spec));
    s->listen_fd = -1;
    s->name = strdup(e->name);
    s->command = strdup(e->command);
    if (argv0 && !(s->argv0 = strdup(argv0))) {
        service_free(s);
        return NULL;
    }
    if (asprintf(&s->exe, "%s/%s", p->daemon_dir, e->command) < 0)
        s->exe = NULL;
    if (!s->name || !s->command || !s->exe || copy_args(s, e) < 0) {
        service_free(s);
        return NULL;
    }
    s->limit = e->maxproc >= 0 ? e->maxproc : (int)(p->process_limit > 0 ? p->process_limit : 0);
    s->min_avail = min_available(e->command, s->limit);
    if (e->type != MASTERCF_INET) {
        s->wakeup_ms = (long long)e->wakeup * 1000;
        s->wakeup_if_running = e->wakeup_if_running;
    }
    /* qmgr and pickup: one process that must always be there. */
    s->keep_running = s->wakeup_ms > 0 && e->maxproc == 1;
    /* Only a daemon that gives up root can be jailed usefully; local
     * keeps root to reach home directories. */
    s->chroot = e->chroot && e->unpriv && p->chown_sockets;
    return s;
}

static struct service *find_key(struct service *list, const char *key)
{
    for (; list; list = list->next)
        if (strcmp(list->spec.key, key) == 0)
            return list;
    return NULL;
}

static void warn_unsupported_columns(const struct mastercf_entry *e,
                                     const struct master_params *p, const char *file)
{
    if (e->chroot && !e->unpriv)
        msg_warn("%s, line %d: service %s: chroot applies only to unprivileged services; "
                 "running it without", file, e->line, e->name);
    else if (e->chroot && !p->chown_sockets)
        msg_warn("%s, line %d: service %s: chroot needs system mode (master run by root, "
                 "mail_owner another user); running it without", file, e->line, e->name);
    if (e->type == MASTERCF_INET && e->wakeup > 0)
        msg_warn("%s, line %d: service %s: wakeup is ignored for inet services", file,
                 e->line, e->name);
}

/* A service whose program is not installed is left out with a warning,
 * so that one master.cf can name every daemon (conf/master.cf does) while
 * some are not built or installed; the rest of the mail system runs. */
static int program_exists(const struct mastercf_entry *e, const struct master_params *p,
                          const char *file)
{
    char *exe = NULL;
    if (asprintf(&exe, "%s/%s", p->daemon_dir, e->command) < 0)
        return 1;   /* out of memory: build_entry reports it */
    int ok = access(exe, X_OK) == 0;
    if (!ok)
        msg_warn("%s, line %d: service %s: cannot run %s: %s; service skipped", file,
                 e->line, e->name, exe, strerror(errno));
    free(exe);
    return ok;
}

/* A program's own arguments (a pipe service's flags=, user=, argv=) are
 * checked here, once: a daemon that refused them would die on every start
 * and be throttled again and again. A bad service is one error and is not
 * started; mail routed to it waits in the queue, and the rest runs (a
 * stock Debian master.cf names pipe services for users a host may not
 * have). */
static int program_args_ok(const struct mastercf_entry *e, const struct master_params *p,
                           const char *file)
{
    char why[512];
    int instance = p->owner_uid == getuid();
    if (mastercf_check_program(e, e->command, instance, p->mail_owner, why, sizeof(why)) == 0)
        return 1;
    msg_error("%s, line %d: service %s/%s (%s): %s; service not started, mail routed to it "
              "stays in the queue", file, e->line, e->name, mastercf_type_name(e->type),
              e->command, why);
    return 0;
}

/* Append the services of one entry at *tail. */
static int build_entry(const struct mastercf_entry *e, const char *argv0,
                       const struct master_params *p,
                       struct service **head, struct service ***tail, const char *file,
                       char *err, size_t errlen)
{
    struct listen_spec *specs = NULL;
    size_t nspecs = 0;
    char why[512];
    int rc = 0;
    if (listen_expand(e, p, &specs, &nspecs, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s, line %d: service %s/%s: %s", file, e->line, e->name,
                 mastercf_type_name(e->type), why);
        rc = -1;
    }
    for (size_t i = 0; rc == 0 && i < nspecs; i++) {
        struct service *other = find_key(*head, specs[i].key);
        if (other) {
            snprintf(err, errlen, "%s, line %d: service %s/%s: %s is already used by "
                     "service %s", file, e->line, e->name, mastercf_type_name(e->type),
                     specs[i].key, other->name);
            rc = -1;
            break;
        }
        struct service *s = service_new(e, argv0, &specs[i], p);
        if (!s) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
            break;
        }
        **tail = s;
        *tail = &s->next;
    }
    for (size_t i = 0; i < nspecs; i++)
        listen_spec_free(&specs[i]);
    free(specs);
    return rc;
}

/* Postern's wake-up services read a fifo; Postfix's master.cf may declare
 * them as unix sockets. */
static int wakes_by_fifo(const char *program)
{
    return strcmp(program, "qmgr") == 0 || strcmp(program, "pickup") == 0;
}

/* The entry as Postern runs it, or 0 when it is not run (said in the log:
 * a Postfix master.cf names daemons whose work Postern does another way,
 * and some it does not have yet). */
static int entry_to_run(const struct mastercf_entry *e, const char *file,
                        struct mastercf_entry *out, const char **argv0)
{
    struct mastercf_program prog = mastercf_classify(e);
    if (prog.role == MASTERCF_OTHERWISE) {
        msg_info("%s, line %d: service %s/%s (%s): not needed, %s", file, e->line, e->name,
                 mastercf_type_name(e->type), e->command, prog.why);
        return 0;
    }
    if (prog.role == MASTERCF_MISSING) {
        msg_warn("%s, line %d: service %s/%s (%s): not started, %s; mail routed to it stays "
                 "in the queue", file, e->line, e->name, mastercf_type_name(e->type),
                 e->command, prog.why);
        return 0;
    }
    *out = *e;
    out->command = (char *)prog.program;
    *argv0 = prog.argv0;
    if (strcmp(prog.program, e->command) != 0)
        msg_info("%s, line %d: service %s: Postfix's %s runs as Postern's %s", file, e->line,
                 e->name, e->command, prog.program);
    if (e->type == MASTERCF_UNIX && wakes_by_fifo(prog.program)) {
        out->type = MASTERCF_FIFO;
        msg_info("%s, line %d: service %s: Postern's %s is woken through a fifo; type unix "
                 "runs as fifo", file, e->line, e->name, prog.program);
    }
    return 1;
}

int services_build(const struct mastercf *cf, const struct master_params *p,
                   int fatal_errors, struct service **out, char *err, size_t errlen)
{
    char file[4096];
    snprintf(file, sizeof(file), "%s/master.cf", p->config_dir);
    struct service *head = NULL, **tail = &head;
    for (size_t i = 0; i < cf->count; i++) {
        struct mastercf_entry run;
        const char *argv0 = NULL;
        if (!entry_to_run(&cf->entries[i], file, &run, &argv0))
            continue;
        const struct mastercf_entry *e = &run;
        warn_unsupported_columns(e, p, file);
        if (!program_exists(e, p, file))
            continue;
        if (!program_args_ok(e, p, file))
            continue;
        if (build_entry(e, argv0, p, &head, &tail, file, err, errlen) == 0)
            continue;
        if (fatal_errors) {
            services_free(head);
            return -1;
        }
        msg_warn("%s; service skipped", err);
    }
    *out = head;
    return 0;
}

/* Unlink s from *list and free it. */
static void drop_service(struct service **list, struct service *s)
{
    for (struct service **pp = list; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            service_free(s);
            return;
        }
}

static void take_over(struct service *n, struct service *o)
{
    n->listen_fd = o->listen_fd;
    o->listen_fd = -1;
    n->throttle_until = o->throttle_until;
    n->throttle_delay = o->throttle_delay;
    if (n->wakeup_ms > 0 && o->wakeup_ms > 0)
        n->next_wakeup = o->next_wakeup;
}

int services_adopt(struct service *old, struct service **new_list,
                   const struct master_params *p, int fatal_errors, char *err, size_t errlen)
{
    for (struct service *n = *new_list; n; n = n->next) {
        struct service *o = find_key(old, n->spec.key);
        if (o && o->listen_fd >= 0)
            take_over(n, o);
    }
    /* Close what went away before binding what is new: an address may
     * move from one service to another. */
    services_close_all(old);
    services_free(old);
    long long now = master_now();
    for (struct service *n = *new_list, *next; n; n = next) {
        next = n->next;
        if (n->listen_fd < 0) {
            n->listen_fd = listen_open(&n->spec, p, err, errlen);
            if (n->listen_fd == -1 && fatal_errors)
                return -1;
            if (n->listen_fd < 0) {
                msg_warn("service %s: %s; skipped", n->name, err);
                drop_service(new_list, n);
                continue;
            }
        }
        /* A wakeup service is also woken once right at start. */
        if (n->wakeup_ms > 0 && n->next_wakeup == 0)
            n->next_wakeup = now;
    }
    return 0;
}

void services_close_all(struct service *list)
{
    for (; list; list = list->next)
        if (list->listen_fd >= 0) {
            listen_close(&list->spec, list->listen_fd);
            list->listen_fd = -1;
        }
}

int service_alive_class(const struct service *s)
{
    return s->spec.type == MASTERCF_UNIX ? ALIVE_BACK : ALIVE_FRONT;
}

void services_close_front(struct service *list)
{
    for (; list; list = list->next)
        if (service_alive_class(list) == ALIVE_FRONT && list->listen_fd >= 0) {
            listen_close(&list->spec, list->listen_fd);
            list->listen_fd = -1;
        }
}

int service_wants_child(const struct service *s, long long now)
{
    int may_spawn = master.stopping == MASTER_RUNNING ||
                    (master.stopping == MASTER_STOP_FRONT &&
                     service_alive_class(s) == ALIVE_BACK);
    return may_spawn && s->listen_fd >= 0 && s->navail < s->min_avail &&
           (s->limit == 0 || s->nproc < s->limit) && now >= s->throttle_until;
}

/* A keep-running service is restarted once its process is gone, but not
 * while a process of the previous configuration still finishes its work
 * (two queue managers must not share the active queue). */
static void keep_running(struct service *s, long long now)
{
    if (s->nproc == 0 && now >= s->throttle_until &&
        !process_old_alive(s->spec.key, now, OLD_GENERATION_GRACE_MS))
        process_spawn(s, now);
}

static void wake_up(struct service *s, long long now)
{
    if (!s->wakeup_if_running || s->nproc > 0)
        listen_trigger(&s->spec, s->listen_fd);
    s->next_wakeup = now + s->wakeup_ms;
}

void services_maintain(struct service *list, long long now)
{
    if (master.stopping)
        return;
    for (struct service *s = list; s; s = s->next) {
        if (s->listen_fd < 0)
            continue;
        if (s->keep_running)
            keep_running(s, now);
        if (s->wakeup_ms > 0 && s->next_wakeup > 0 && now >= s->next_wakeup)
            wake_up(s, now);
    }
}

static void earliest(long long *d, long long t)
{
    if (*d < 0 || t < *d)
        *d = t;
}

long long services_next_deadline(const struct service *list, long long now)
{
    long long d = -1;
    for (const struct service *s = list; s; s = s->next) {
        if (s->listen_fd < 0)
            continue;
        if (s->throttle_until > now)
            earliest(&d, s->throttle_until);
        if (s->keep_running && s->nproc == 0)
            earliest(&d, now + KEEP_RUNNING_CHECK_MS);
        if (s->wakeup_ms > 0 && s->next_wakeup > 0)
            earliest(&d, s->next_wakeup);
    }
    return d;
}
