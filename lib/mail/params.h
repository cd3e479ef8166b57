/* params.h - the typed parameters every program reads (params.def).
 *
 * config_load fills `var` from main.cf, the -o overrides and the
 * defaults, expanded and converted to their types, at start and at each
 * reload; code reads fields (`var.ipc_timeout`), never names, so a
 * misspelt parameter fails to compile. String fields stay valid until the
 * next config_load. Parameters whose names are built at run time (a
 * transport's `<transport>_destination_concurrency_limit`) are read by name
 * with config_get (config.h); values expanded later with per-recipient
 * values ($home, $user) with config_raw.
 */
#ifndef POSTERN_PARAMS_H
#define POSTERN_PARAMS_H

#include <limits.h>

#define DEF_CONFIG_DIR "/etc/postern"

enum param_id {
#define P_STR(f, d) PARAM_##f,
#define P_STR_AS(f, n, d) PARAM_##f,
#define P_BOOL(f, d) PARAM_##f,
#define P_INT(f, d, lo, hi) PARAM_##f,
#define P_TIME(f, d, u, lo, hi) PARAM_##f,
#define P_SIZE(f, d, lo, hi) PARAM_##f,
#include "params.def"
    PARAM_COUNT
};

struct params {
#define P_STR(f, d) const char *f;
#define P_STR_AS(f, n, d) const char *f;
#define P_BOOL(f, d) int f;
#define P_INT(f, d, lo, hi) long f;
#define P_TIME(f, d, u, lo, hi) long f;
#define P_SIZE(f, d, lo, hi) long long f;
#include "params.def"
};

extern struct params var;

/* The main.cf name of a parameter, and its value as written (or its
 * default) before $name expansion. */
const char *config_name(enum param_id id);
const char *config_raw(enum param_id id);
/* The expanded value as a string, whatever the type (for code that handles
 * several parameters alike, e.g. a list of table parameters). */
const char *config_value(enum param_id id);
/* Whether main.cf or an override sets it (else its default holds). */
int config_is_set(enum param_id id);

#endif
