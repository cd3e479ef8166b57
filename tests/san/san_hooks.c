/* san_hooks.c - sanitizer runtime hooks linked into every program of a
 * "make SANITIZE=1" build (never into a normal build).
 *
 * LeakSanitizer checks for leaks at exit by ptrace-attaching to the process's
 * own threads. That fails in a process the kernel marks non-dumpable: a
 * set-id program (postdrop and postqueue are setgid) or a daemon that
 * dropped root for mail_owner or a recipient. LSan then aborts with "LeakSanitizer
 * has encountered a fatal error" and exit status 1, turning every normal exit
 * into a failure. ASAN_OPTIONS cannot switch it off for those programs only:
 * /proc/self/environ, where the runtime reads its options, is unreadable to a
 * set-id process. So the decision is made here, per process and at exit time:
 * leak checking stays on wherever it can work (every program in instance
 * mode), and only the exits it cannot check are left unchecked. */

#include <sys/prctl.h>

int __lsan_is_turned_off(void);

int __lsan_is_turned_off(void)
{
    return prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 1;
}
