/* dynlib.h - a shared library loaded on first use (dlopen), its functions
 * reached through pointers. The database clients of the lookup tables
 * (libpq, libmariadb, libldap, libsqlite3) are loaded this way rather than
 * linked: linked, every daemon paid their start-up (libpq alone pulls in
 * Kerberos and OpenLDAP, about 3 ms of CPU per exec) although few ever
 * open such a table, and cleanup and local are started again every
 * max_use messages (bench/README.md, "What bounds each scenario").
 *
 * A user lists its functions once and gets a pointer per function:
 *
 *   #define PQ_FUNCS(X) X(PQclear) X(PQsocket)
 *   PQ_FUNCS(DYNLIB_DECLARE)         // static __typeof__(PQclear) *dl_PQclear;
 *   #define PQclear (*dl_PQclear)    // the code below calls through them
 *   static const struct dynlib_sym pq_syms[] = { PQ_FUNCS(DYNLIB_ENTRY) };
 *   ... dynlib_load(&handle, "libpq.so.5", pq_syms, n, err, errlen) ...
 */
#ifndef POSTERN_DYNLIB_H
#define POSTERN_DYNLIB_H

#include <stddef.h>

struct dynlib_sym {
    const char *name;
    void **ptr;
};

#define DYNLIB_DECLARE(f) static __typeof__(f) *dl_##f;
#define DYNLIB_ENTRY(f) {#f, (void **)&dl_##f},

/* Load soname once (*handle remembers it) and set every pointer of syms.
 * 0, or -1 with the reason in err (the library or a function missing);
 * then *handle stays NULL, the pointers are not to be used, and a later
 * call tries again. */
int dynlib_load(void **handle, const char *soname, const struct dynlib_sym *syms, size_t n,
                char *err, size_t errlen);

#endif
