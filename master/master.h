/* master.h - what the files of the master daemon share.
 *
 * master.c   start-up, daemonising, the pid lock, the event loop, signals,
 *            reload and shutdown;
 * services.c the service table built from master.cf: one struct service per
 *            listening descriptor, kept across reloads when unchanged;
 * listen.c   turning a master.cf entry into addresses and opening them;
 * process.c  the child table: spawn, status reports, reaping, throttling.
 *
 * Every main.cf value master uses is copied into struct master_params when
 * the configuration is loaded, because a failed reload leaves config.c's
 * state unusable and master must go on with the old values.
 */
#ifndef POSTERN_MASTER_H
#define POSTERN_MASTER_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "mastercf.h"

#define MASTER_LISTEN_BACKLOG 1024   /* deep on purpose: docs/DESIGN.md */
#define MASTER_STARTUP_GRACE_MS 1000 /* a death sooner than this is a bad start */

/* main.cf values master needs, owned strings (master_params_free). */
struct master_params {
    char *config_dir;        /* absolute */
    char *queue_dir;
    char *daemon_dir;
    char *inet_interfaces;
    char *inet_protocols;
    char *mail_owner;
    char *maillog_file;
    char *syslog_name;
    char *version;
    long process_limit;      /* default_process_limit */
    long throttle_ms;        /* service_throttle_time */
    int chown_sockets;       /* system mode (root, mail_owner another user):
                                sockets belong to mail_owner, chroot works */
    uid_t owner_uid;
    gid_t owner_gid;
};

/* Where a listener lives: an inet address or a file under the queue. */
struct listen_spec {
    enum mastercf_type type;
    int dual_stack;                 /* inet "all": [::] that also takes IPv4 */
    int v6_optional;                /* failure to bind is only a warning */
    int private_;                   /* unix, fifo: under private/ */
    struct sockaddr_storage addr;   /* inet */
    socklen_t addrlen;
    char *path;                     /* unix, fifo: owned */
    char *key;                      /* identity across reloads: owned */
};

/* One listening descriptor and its pool of processes. */
struct service {
    struct service *next;
    struct listen_spec spec;
    char *name;              /* master.cf service name, for -n */
    char *command;           /* for messages */
    char *argv0;             /* the name it runs under ("lmtp" for remote), or NULL */
    char *exe;               /* daemon_directory/command */
    char **args;             /* master.cf arguments, NULL-terminated */
    size_t nargs;
    int limit;               /* process limit; 0 = none */
    int min_avail;           /* spawn while fewer are available (smtpd: one per CPU) */
    long long wakeup_ms;     /* 0 = none */
    int wakeup_if_running;
    int keep_running;        /* wakeup service with one process: always up */
    int chroot;              /* pass -r: chroot to queue_directory (system mode) */
    int listen_fd;           /* -1 until opened */
    int nproc;               /* processes of the current generation */
    int navail;              /* ... of which available */
    long long throttle_until;   /* no spawn before this (monotonic ms) */
    long long throttle_delay;   /* last throttle step, doubles */
    long long next_wakeup;      /* monotonic ms; 0 = none */
};

/* Two master-alive pipes, so that a graceful stop can end the front
 * services (inet and fifo: smtpd, pickup, qmgr, which start work) while
 * the back services (unix: cleanup, local, bounce, remote, which serve
 * the front) keep running and are still spawned on demand until the front
 * is gone. */
enum { ALIVE_FRONT, ALIVE_BACK, ALIVE_PIPES };

enum master_stop {
    MASTER_RUNNING,
    MASTER_STOP_FRONT,   /* front told to finish; back still served */
    MASTER_STOP_ALL,     /* everything told to finish; nothing spawned */
};

struct master_state {
    struct master_params params;
    struct service *services;
    int status_rfd, status_wfd;   /* children report on the write end */
    int secret_fd;                /* every child's fd 6 (service.h) */
    int alive_rfd[ALIVE_PIPES];   /* only master holds the write ends */
    int alive_wfd[ALIVE_PIPES];
    enum master_stop stopping;
    long long stop_deadline;      /* end of MASTER_STOP_FRONT (monotonic ms) */
};

/* Which alive pipe a service's children get. */
int service_alive_class(const struct service *s);

extern struct master_state master;

/* master.c */
long long master_now(void);

/* listen.c */
/* Expand e into listener specs (inet: one per address). *specs is
 * allocated; free each with listen_spec_free and the array with free(). */
int listen_expand(const struct mastercf_entry *e, const struct master_params *p,
                  struct listen_spec **specs, size_t *nspecs, char *err, size_t errlen);
void listen_spec_free(struct listen_spec *s);
/* Open the descriptor (non-blocking, close-on-exec). -1 with err, or -2
 * when the spec is v6_optional (the caller warns and goes on without it). */
int listen_open(const struct listen_spec *s, const struct master_params *p,
                char *err, size_t errlen);
/* Close fd and remove the socket or fifo file. */
void listen_close(const struct listen_spec *s, int fd);
/* Wake the service: a 'W' into its fifo or socket. */
void listen_trigger(const struct listen_spec *s, int fd);

/* services.c */
/* Build the table for cf. fatal_errors: at start any failure is fatal; on
 * reload a service that cannot be set up is skipped with a warning. The
 * result's listeners are not open yet. -1 with err. */
int services_build(const struct mastercf *cf, const struct master_params *p,
                   int fatal_errors, struct service **out, char *err, size_t errlen);
/* Take over the open listeners of old that new still wants, close the
 * rest, open the new ones. Frees old. */
int services_adopt(struct service *old, struct service **new_list,
                   const struct master_params *p, int fatal_errors, char *err, size_t errlen);
void services_free(struct service *list);
void services_close_all(struct service *list);
/* Close the listeners of the front services only (graceful stop). */
void services_close_front(struct service *list);
/* 1 when a readable listener should make master spawn a process. */
int service_wants_child(const struct service *s, long long now);
/* Keep-running spawns and wakeup triggers due at now. */
void services_maintain(struct service *list, long long now);
/* Earliest moment services_maintain has something to do; -1 = none. */
long long services_next_deadline(const struct service *list, long long now);

/* process.c */
int process_spawn(struct service *s, long long now);
void process_reap(long long now);
void process_read_status(int fd);
/* Reload: every current child becomes old-generation. */
void process_detach_all(long long now);
/* 1 while an old-generation child of the listener with this key lives;
 * one that outstays grace_ms gets SIGTERM. */
int process_old_alive(const char *key, long long now, long long grace_ms);
void process_signal_all(int sig);
size_t process_count(void);
/* Children of front services (any generation). */
size_t process_count_front(void);

#endif
