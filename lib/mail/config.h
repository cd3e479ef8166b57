/* config.h - main.cf: the one configuration reader.
 *
 * Every known parameter is declared once in params.def (type, default,
 * bounds); programs read the typed fields of `var` (params.h). main.cf is "name = value" lines, continuation lines start with
 * white space, '#' comments; when a name is set twice the last line wins.
 * Values expand $name, ${name}, ${name?text}, ${name:text} and $$ when read.
 * Unknown names warn; a value of the wrong type or out of its bounds is
 * fatal with file and line.
 * Overrides (master.cf -o, command line -o) win over main.cf.
 */
#ifndef POSTERN_CONFIG_H
#define POSTERN_CONFIG_H

#include "params.h"

#include <stddef.h>

/* -c DIR if given, else $MAIL_CONFIG, else DEF_CONFIG_DIR. */
const char *config_find_dir(const char *cmdline_dir);

/* Read DIR/main.cf (a missing file is fatal), apply overrides ("name=value"),
 * validate every typed parameter (fatal on error). Safe to call again on
 * reload: the previous state is discarded. Returns 0. */
int config_load(const char *dir, char *const *overrides, size_t n_overrides);
/* Like config_load but returns -1 with a message in err instead of exiting. */
int config_try_load(const char *dir, char *const *overrides, size_t n_overrides,
                    char *err, size_t errlen);
const char *config_directory(void);

/* A parameter by name, for names built at run time (a transport's
 * "<transport>_destination_concurrency_limit") and for postconf: the
 * expanded value; "" for a known parameter set to nothing; NULL for an
 * unknown one that main.cf does not set. Valid until the next config_load.
 * Code that knows the name reads the typed field instead (params.h). */
const char *config_get(const char *name);
/* A time value as main.cf writes them ("30", "5m"; a bare number is in
 * unit: 's', 'm', 'h', 'd', 'w') for a name config_get read: 0 with the
 * seconds, or -1 when it is not one. */
int config_parse_time(const char *value, char unit, long *seconds);

/* For postconf: every known parameter in name order, plus unknown set ones.
 * is_set is 1 when main.cf or an override sets it. value is unexpanded when
 * raw is nonzero. */
typedef void (*config_walk_fn)(const char *name, const char *value, int is_set,
                               void *ctx);
void config_walk(int raw, int defaults_only, config_walk_fn fn, void *ctx);
const char *config_default(const char *name);

/* What Postern makes of a parameter name: one it implements, one of
 * Postfix's that it covers another way (how says how), one of Postfix's
 * that it ignores, or a name nobody knows (a typo: "unused parameter"). */
enum config_kind { CONFIG_KNOWN, CONFIG_POSTFIX_OTHERWISE, CONFIG_POSTFIX_IGNORED, CONFIG_UNKNOWN };
enum config_kind config_kind(const char *name, const char **how);
/* Log each main.cf setting that is not CONFIG_KNOWN, with file and line:
 * postern and postconf do it on load; master once its log is open. */
void config_report_unimplemented(void);

#endif
