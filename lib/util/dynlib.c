/* dynlib.c - a shared library loaded on first use (dynlib.h). */
#include "dynlib.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

static int load(void **handle, const char *soname, const struct dynlib_sym *syms, size_t n,
                char *err, size_t errlen)
{
    /* RTLD_LOCAL: nothing else resolves against the library's symbols. */
    void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        snprintf(err, errlen, "cannot load %s: %s", soname, dlerror());
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        void *f = dlsym(h, syms[i].name);
        if (f == NULL) {
            snprintf(err, errlen, "%s: no symbol %s", soname, syms[i].name);
            dlclose(h);
            return -1;
        }
        *syms[i].ptr = f;
    }
    *handle = h;
    return 0;
}

int dynlib_load(void **handle, const char *soname, const struct dynlib_sym *syms, size_t n,
                char *err, size_t errlen)
{
    /* Tables may be opened on worker threads (smtpd's lookups). */
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    int rc = 0;

    pthread_mutex_lock(&lock);
    if (*handle == NULL)
        rc = load(handle, soname, syms, n, err, errlen);
    pthread_mutex_unlock(&lock);
    return rc;
}
