/* service.h - what every daemon started by master shares: the command line
 * master gives it, config and logging set-up, privilege drop, the status
 * report to master, and the accept loop of single-client daemons.
 *
 * Contract with master (master/master.c):
 *   argv: DAEMON -c CONFIG_DIR -n SERVICE_NAME -t TYPE [-r] [-o name=value]... [-v]
 *         [ARGS...]  (options end at the first word that is not one: the
 *         rest is the service's own, service_args)
 *         (-r: master.cf chroot column; system mode only: chroot to
 *         queue_directory before the switch to mail_owner)
 *   fd 3  the listening socket (inet, unix) or the fifo (opened read-write)
 *   fd 4  status pipe to master: struct service_status, written atomically
 *   fd 5  master-alive pipe: EOF means master exited or reloaded, so finish
 *         the work in hand and exit
 *   fd 6  master's secret: SERVICE_SECRET_LEN random bytes, the same for
 *         every child of one master (a reload keeps it); service_init reads
 *         and closes it (service_secret)
 * A child starts "available". A single-client daemon reports busy while it
 * serves a connection; a multi-client one (smtpd) only when full. Master
 * spawns another process when the listener is readable and no child of that
 * service is available (smtpd: fewer than one per CPU), up to maxproc.
 *
 * Stand-alone mode (-S, for a daemon that allows it: smtpd, which
 * sendmail -bs runs): one client on standard input and output, no master
 * descriptors, and no change of privileges: the daemon runs as whoever
 * started it.
 */
#ifndef POSTERN_SERVICE_H
#define POSTERN_SERVICE_H

#include <stdnoreturn.h>
#include <sys/types.h>

#define SERVICE_LISTEN_FD 3
#define SERVICE_STATUS_FD 4
#define SERVICE_ALIVE_FD 5
#define SERVICE_SECRET_FD 6
#define SERVICE_SECRET_LEN 32

struct service_status {
    pid_t pid;
    int available;   /* 1 available, 0 busy */
};

#define SERVICE_FLAG_ROOT 1          /* may keep root (local); others drop to mail_owner */
#define SERVICE_FLAG_STAND_ALONE 2   /* -S is allowed (smtpd) */

/* Register fn to run once inside service_init, with the configuration
 * loaded and root privileges still held (before any chroot and setuid):
 * e.g. loading a TLS key only root can read. Whatever fn keeps must not
 * point into the configuration (config_get strings): a chroot reloads it. */
void service_set_privileged_init(void (*fn)(void));

/* Parse argv as above, load main.cf plus -o overrides, open the log, drop
 * privileges, ignore SIGPIPE. Exits with a fatal log line on any error. */
void service_init(int argc, char **argv, const char *progname, int flags);
/* Whether -S was given (SERVICE_FLAG_STAND_ALONE). */
int service_stand_alone(void);
const char *service_name(void);
/* The master.cf words after the options (a pipe service's flags=, user=,
 * argv=...), argv[0] first; *n of them. */
char *const *service_args(size_t *n);
/* Whether master.cf "-o" or main.cf mail_owner says we are an instance
 * (mail_owner is the user running us). */
int service_instance_mode(void);
void service_report(int available);
/* Master's secret (fd 6 above), SERVICE_SECRET_LEN bytes; NULL in
 * stand-alone mode or when master gave none. For keys that the processes
 * of a service must share: smtpd's TLS ticket keys are derived from it. */
const unsigned char *service_secret(void);
/* Nonzero once fd 5 shows EOF (non-blocking check). */
int service_master_gone(void);

/* Accept loop for single-client daemons (cleanup, local): serve one
 * connection at a time with handler (which owns and closes fd), exit after
 * max_use connections, max_idle seconds without one, or master going away. */
typedef void (*service_conn_fn)(int fd);
noreturn void service_run_single(service_conn_fn handler);

#endif
