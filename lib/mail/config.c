/* config.c - main.cf reader with Postfix's syntax and semantics (config.h).
 *
 * The table below is the single list of parameters Postern knows: name,
 * type, default and, for times, the unit a bare number means. main.cf lines
 * are kept raw; values are expanded on first read and cached until reload.
 */
#include "config.h"
#include "params.h"
#include "log.h"
#include "lookup.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum ptype { T_STR, T_INT, T_BOOL, T_TIME, T_SIZE };

struct param {
    const char *name;
    enum ptype type;
    const char *def;
    char unit;            /* T_TIME: unit of a bare number */
    long long min, max;   /* T_INT, T_TIME, T_SIZE: bounds of the value */
    size_t field;         /* offset of its field in struct params */
};

struct params var;

/* The table of known parameters, from params.def: sorted by name, so
 * config_walk prints in that order and param_find can bisect. */
static const struct param param_table[] = {
#define P_STR(f, d) {#f, T_STR, d, 0, 0, 0, offsetof(struct params, f)},
#define P_STR_AS(f, n, d) {n, T_STR, d, 0, 0, 0, offsetof(struct params, f)},
#define P_BOOL(f, d) {#f, T_BOOL, d, 0, 0, 0, offsetof(struct params, f)},
#define P_INT(f, d, lo, hi) {#f, T_INT, d, 0, lo, hi, offsetof(struct params, f)},
#define P_TIME(f, d, u, lo, hi) {#f, T_TIME, d, u, lo, hi, offsetof(struct params, f)},
#define P_SIZE(f, d, lo, hi) {#f, T_SIZE, d, 0, lo, hi, offsetof(struct params, f)},
#include "params.def"
};
#define NPARAMS (sizeof(param_table) / sizeof(param_table[0]))

/* Postfix's parameters that Postern does not implement (sorted). */
static const char *const postfix_only[] = {
#define PF(name) name,
#include "params_postfix.def"
};

/* Of those, the ones whose job Postern does another way, and how: a stock
 * Postfix main.cf sets several of them, and none needs the admin's care. */
static const struct {
    const char *name;
    const char *how;
} postfix_otherwise[] = {
    {"biff", "local delivery never notifies comsat"},
    {"data_directory", "Postern keeps no state files outside the queue"},
    {"html_directory", "documentation paths are not used"},
    {"lmtp_tls_session_cache_database", "TLS sessions are cached in each process"},
    {"mailq_path", "the commands are in command_directory"},
    {"manpage_directory", "documentation paths are not used"},
    {"meta_directory", "Postern keeps no files there"},
    {"mynetworks_style", "mynetworks defaults to the loopback networks"},
    {"newaliases_path", "the commands are in command_directory"},
    {"readme_directory", "documentation paths are not used"},
    {"sample_directory", "documentation paths are not used"},
    {"sendmail_path", "the commands are in command_directory"},
    {"shlib_directory", "Postern has no shared libraries of its own"},
    {"smtp_tls_session_cache_database", "TLS sessions are cached in each process"},
    {"smtp_tls_session_cache_timeout", "TLS sessions are cached in each process"},
    {"smtpd_tls_session_cache_database", "TLS sessions are cached in each process"},
    {"smtpd_tls_session_cache_timeout", "TLS sessions are cached in each process"},
    {"tls_random_source", "OpenSSL seeds itself"},
};

static const struct param *param_find(const char *name);

static int name_cmp(const void *key, const void *item)
{
    return strcmp(key, *(const char *const *)item);
}

/* Postfix's per-transport parameters, "<transport>_<suffix>" for any
 * master.cf transport (qmgr reads the first two, pipe the third; the
 * others are Postfix's scheduler and delivery knobs Postern does not
 * have). */
#define TRANSPORT_SUFFIXES_KNOWN 3
static const char *const transport_suffixes[] = {
    "_destination_concurrency_limit", "_destination_recipient_limit", "_time_limit",
    "_delivery_slot_cost", "_delivery_slot_discount", "_delivery_slot_loan",
    "_destination_concurrency_failed_cohort_limit",
    "_destination_concurrency_negative_feedback",
    "_destination_concurrency_positive_feedback", "_destination_rate_delay",
    "_extra_recipient_limit", "_initial_destination_concurrency", "_minimum_delivery_slots",
    "_recipient_limit", "_recipient_refill_delay", "_recipient_refill_limit",
    "_transport_rate_delay",
};

static int postfix_only_has(const char *name)
{
    return bsearch(name, postfix_only, sizeof(postfix_only) / sizeof(postfix_only[0]),
                   sizeof(postfix_only[0]), name_cmp) != NULL;
}

static int transport_param_kind(const char *name, enum config_kind *kind)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < sizeof(transport_suffixes) / sizeof(transport_suffixes[0]); i++) {
        size_t slen = strlen(transport_suffixes[i]);
        if (len <= slen || strcmp(name + len - slen, transport_suffixes[i]) != 0)
            continue;
        /* Postfix's own "*_time_limit" parameters (postscreen_command_...)
         * are not a transport's. */
        if (strcmp(transport_suffixes[i], "_time_limit") == 0 && postfix_only_has(name))
            return 0;
        *kind = i < TRANSPORT_SUFFIXES_KNOWN ? CONFIG_KNOWN : CONFIG_POSTFIX_IGNORED;
        return 1;
    }
    return 0;
}

enum config_kind config_kind(const char *name, const char **how)
{
    *how = NULL;
    enum config_kind kind;
    if (param_find(name))
        return CONFIG_KNOWN;
    if (transport_param_kind(name, &kind))
        return kind;
    if (!postfix_only_has(name))
        return CONFIG_UNKNOWN;
    for (size_t i = 0; i < sizeof(postfix_otherwise) / sizeof(postfix_otherwise[0]); i++)
        if (strcmp(name, postfix_otherwise[i].name) == 0) {
            *how = postfix_otherwise[i].how;
            return CONFIG_POSTFIX_OTHERWISE;
        }
    return CONFIG_POSTFIX_IGNORED;
}

struct setting {
    char *name;
    char *raw;
    int line;              /* 0 for an override */
};

struct config_state {
    char dir[PATH_MAX];
    struct setting *set;
    size_t nset, capset;
    char *expanded[NPARAMS];      /* cache for known parameters */
    char *computed[NPARAMS];      /* runtime defaults (myhostname, ...) */
    char *from_file[NPARAMS];     /* values read from a file (myorigin) */
};
static struct config_state cfg;

static const struct param *param_find(const char *name)
{
    size_t lo = 0, hi = NPARAMS;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(name, param_table[mid].name);
        if (c == 0)
            return &param_table[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *config_find_dir(const char *cmdline_dir)
{
    if (cmdline_dir && *cmdline_dir)
        return cmdline_dir;
    const char *env = getenv("MAIL_CONFIG");
    if (env && *env)
        return env;
    return DEF_CONFIG_DIR;
}

const char *config_directory(void)
{
    return cfg.dir;
}

static void config_reset(void)
{
    for (size_t i = 0; i < cfg.nset; i++) {
        free(cfg.set[i].name);
        free(cfg.set[i].raw);
    }
    free(cfg.set);
    cfg.set = NULL;
    cfg.nset = cfg.capset = 0;
    for (size_t i = 0; i < NPARAMS; i++) {
        free(cfg.expanded[i]);
        free(cfg.computed[i]);
        free(cfg.from_file[i]);
        cfg.expanded[i] = cfg.computed[i] = cfg.from_file[i] = NULL;
    }
}

/* Latest setting of name (overrides are appended last, so they win). */
static const struct setting *setting_find(const char *name)
{
    for (size_t i = cfg.nset; i-- > 0;)
        if (strcmp(cfg.set[i].name, name) == 0)
            return &cfg.set[i];
    return NULL;
}

static int setting_add(const char *name, size_t nlen, const char *raw, size_t rlen, int line)
{
    if (cfg.nset == cfg.capset) {
        size_t cap = cfg.capset ? cfg.capset * 2 : 64;
        struct setting *p = realloc(cfg.set, cap * sizeof(*p));
        if (!p)
            return -1;
        cfg.set = p;
        cfg.capset = cap;
    }
    struct setting *s = &cfg.set[cfg.nset];
    s->name = strndup(name, nlen);
    s->raw = strndup(raw, rlen);
    s->line = line;
    if (!s->name || !s->raw) {
        free(s->name);
        free(s->raw);
        return -1;
    }
    cfg.nset++;
    return 0;
}

static void trim(const char **start, const char **end)
{
    while (*start < *end && isspace((unsigned char)**start))
        (*start)++;
    while (*end > *start && isspace((unsigned char)(*end)[-1]))
        (*end)--;
}

/* One logical line (continuations already joined). */
static int parse_logical_line(const char *file, char *text, int line, char *err, size_t errlen)
{
    const char *start = text, *end = text + strlen(text);
    trim(&start, &end);
    if (start == end)
        return 0;
    const char *eq = memchr(start, '=', (size_t)(end - start));
    if (!eq) {
        snprintf(err, errlen, "%s, line %d: missing '=' after attribute name: \"%.*s\"",
                 file, line, (int)(end - start > 60 ? 60 : end - start), start);
        return -1;
    }
    const char *nend = eq, *vstart = eq + 1;
    trim(&start, &nend);
    trim(&vstart, &end);
    if (nend == start) {
        snprintf(err, errlen, "%s, line %d: missing parameter name", file, line);
        return -1;
    }
    for (const char *p = start; p < nend; p++)
        if (isspace((unsigned char)*p)) {
            snprintf(err, errlen, "%s, line %d: white space in parameter name", file, line);
            return -1;
        }
    if (setting_add(start, (size_t)(nend - start), vstart, (size_t)(end - vstart), line) < 0) {
        snprintf(err, errlen, "%s: out of memory", file);
        return -1;
    }
    return 0;
}

/* Flush the pending logical line, if any. */
static int finish_logical(const char *file, char **logical, int lstart, char *err, size_t errlen)
{
    int rc = 0;
    if (*logical) {
        rc = parse_logical_line(file, *logical, lstart, err, errlen);
        free(*logical);
        *logical = NULL;
    }
    return rc;
}

/* Parse main.cf text: '#' comment lines, continuation lines start with
 * white space, everything else is "name = value". */
static int parse_main_cf(const char *file, char *text, char *err, size_t errlen)
{
    char *logical = NULL;
    size_t llen = 0;
    int lstart = 0, lineno = 0;
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        char *next = nl ? nl + 1 : line + strlen(line);
        if (nl)
            *nl = 0;
        lineno++;
        const char *p = line;
        while (*p == ' ' || *p == '\t' || *p == '\r')
            p++;
        int cont = p != line;
        if (*p == '#' || *p == 0) {
            line = next;
            continue;
        }
        if (cont) {
            if (!logical) {
                snprintf(err, errlen, "%s, line %d: continuation line without a parameter",
                         file, lineno);
                return -1;
            }
            size_t add = strlen(p);
            char *n = realloc(logical, llen + add + 2);
            if (!n) {
                free(logical);
                return -1;
            }
            logical = n;
            logical[llen++] = ' ';
            memcpy(logical + llen, p, add + 1);
            llen += add;
        } else {
            if (finish_logical(file, &logical, lstart, err, errlen) < 0)
                return -1;
            logical = strdup(line);
            llen = strlen(line);
            lstart = lineno;
            if (!logical)
                return -1;
        }
        line = next;
    }
    return finish_logical(file, &logical, lstart, err, errlen);
}

static char *read_file(const char *path, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        snprintf(err, errlen, "open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, fp)) > 0) {
        len += n;
        if (len + 1 == cap) {
            if (cap >= ((size_t)16 << 20)) {
                snprintf(err, errlen, "%s: file too large", path);
                free(buf);
                buf = NULL;
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(fp);
    if (buf) {
        buf[len] = 0;
        /* An embedded NUL would silently truncate the configuration. */
        if (strlen(buf) != len) {
            snprintf(err, errlen, "%s: file contains a NUL byte", path);
            free(buf);
            return NULL;
        }
    } else if (!*err) {
        snprintf(err, errlen, "%s: out of memory", path);
    }
    return buf;
}

/* --- expansion --- */

static const char *value_raw(const char *name);
static int parse_time(const char *v, char unit, long long *out);

struct sbuf {
    char *s;
    size_t len, cap;
    int overflow;
    size_t names;     /* $name references expanded so far */
};

#define EXPAND_MAX (1 << 20)
/* "a = $b$b", "b = $a$a" (or a chain of empty values) expands an
 * exponential number of names before the depth limit; this bounds the
 * work of one value, as EXPAND_MAX bounds its size. */
#define EXPAND_NAMES_MAX 10000

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->overflow)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 128;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = cap <= EXPAND_MAX ? realloc(b->s, cap) : NULL;
        if (!p) {
            b->overflow = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static void expand_into(struct sbuf *b, const char *raw, int depth);

static void expand_name(struct sbuf *b, const char *name, size_t nlen, char op,
                        const char *text, size_t tlen, int depth)
{
    char key[128];
    if (b->overflow || ++b->names > EXPAND_NAMES_MAX) {
        b->overflow = 1;
        return;
    }
    if (nlen >= sizeof(key))
        return;
    memcpy(key, name, nlen);
    key[nlen] = 0;
    const char *raw = value_raw(key);
    int nonempty = raw && *raw;
    if (op == '?' || op == ':') {
        if ((op == '?') == (nonempty != 0)) {
            char *t = strndup(text, tlen);
            if (t) {
                expand_into(b, t, depth + 1);
                free(t);
            }
        }
        return;
    }
    if (raw)
        expand_into(b, raw, depth + 1);
}

/* Expand $name, ${name}, ${name?text}, ${name:text} and $$. */
static void expand_into(struct sbuf *b, const char *raw, int depth)
{
    if (depth > 100) {
        b->overflow = 1;
        return;
    }
    for (const char *p = raw; *p;) {
        const char *dollar = strchr(p, '$');
        if (!dollar) {
            sb_add(b, p, strlen(p));
            return;
        }
        sb_add(b, p, (size_t)(dollar - p));
        p = dollar + 1;
        if (*p == '$') {
            sb_add(b, "$", 1);
            p++;
        } else if (*p == '{' || *p == '(') {
            char close = *p == '{' ? '}' : ')';
            const char *name = p + 1, *q = name;
            while (*q && (isalnum((unsigned char)*q) || *q == '_'))
                q++;
            char op = (*q == '?' || *q == ':') ? *q : 0;
            const char *text = op ? q + 1 : q;
            int nest = 0;
            const char *e = text;
            while (*e && (*e != close || nest > 0)) {
                if (*e == '{' || *e == '(')
                    nest++;
                else if (*e == '}' || *e == ')')
                    nest--;
                e++;
            }
            if (!*e) {
                sb_add(b, dollar, strlen(dollar));
                return;
            }
            expand_name(b, name, (size_t)(q - name), op, text, (size_t)(e - text), depth);
            p = e + 1;
        } else if (isalnum((unsigned char)*p) || *p == '_') {
            const char *q = p;
            while (*q && (isalnum((unsigned char)*q) || *q == '_'))
                q++;
            expand_name(b, p, (size_t)(q - p), 0, NULL, 0, depth);
            p = q;
        } else {
            sb_add(b, "$", 1);
        }
    }
}

static char *expand(const char *raw)
{
    struct sbuf b = {0};
    sb_add(&b, "", 0);
    expand_into(&b, raw, 0);
    if (b.overflow) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

/* --- computed defaults --- */

static char *default_myhostname(void)
{
    char host[256];
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = 0;
    return strdup(host);
}

static char *default_mydomain(void)
{
    /* "myhostname = mail.$mydomain" with mydomain unset would come back
     * here without end; the inner reference then reads as empty. */
    static int busy;
    if (busy)
        return NULL;
    busy = 1;
    const char *host = value_raw("myhostname");
    char *exp = expand(host ? host : "");
    const char *dot = exp ? strchr(exp, '.') : NULL;
    char *d = strdup(dot && dot[1] ? dot + 1 : "localdomain");
    free(exp);
    busy = 0;
    return d;
}

static int is_file(const char *path)
{
    return access(path, X_OK) == 0;
}

/* Daemons live next to master: the running binary's directory if it holds
 * master, else ../libexec or ../libexec/postern relative to it. */
static char *default_daemon_directory(void)
{
    char exe[PATH_MAX], cand[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            static const char *const rel[] = {"", "/../libexec", "/../libexec/postern"};
            for (size_t i = 0; i < 3; i++) {
                snprintf(cand, sizeof(cand), "%s%s/master", exe, rel[i]);
                if (is_file(cand)) {
                    cand[strlen(cand) - 7] = 0;
                    char *real = realpath(cand, NULL);
                    return real ? real : strdup(cand);
                }
            }
        }
    }
    return strdup("/usr/libexec/postern");
}

/* Defaults that depend on compatibility_level, as in Postfix 3. Only when
 * main.cf sets compatibility_level: without it Postern's own defaults hold
 * (relaying refused with 554, not deferred). At a level below `level` the
 * default is `below`, at or above it `above` (NULL: the table's). */
static const struct {
    const char *name;
    double level;
    const char *below, *above;
} compat_defaults[] = {
    {"append_dot_mydomain", 1, "yes", NULL},
    {"relay_domains", 2, "$mydestination", NULL},
    {"smtpd_relay_restrictions", 1, "",
     "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination"},
    {"smtputf8_enable", 1, "no", NULL},
};

/* compatibility_level as a number ("3.6" -> 3.6); -1 when unset. */
static double compat_level(void)
{
    const struct setting *s = setting_find("compatibility_level");
    if (!s || !*s->raw)
        return -1;
    return strtod(s->raw, NULL);
}

static const char *compat_default(const struct param *p)
{
    double level = compat_level();
    if (level < 0)
        return NULL;
    for (size_t i = 0; i < sizeof(compat_defaults) / sizeof(compat_defaults[0]); i++)
        if (strcmp(p->name, compat_defaults[i].name) == 0)
            return level < compat_defaults[i].level ? compat_defaults[i].below
                                                    : compat_defaults[i].above;
    return NULL;
}

/* Instance mode (docs/DESIGN.md): mail_owner is whoever runs us. An
 * instance never touches files outside its own directory, so the alias
 * table defaults to one beside its main.cf instead of /etc/aliases. */
static int instance_mode(void)
{
    const char *owner = value_raw("mail_owner");
    struct passwd *pw = owner ? getpwnam(owner) : NULL;
    return pw && pw->pw_uid == getuid();
}

static char *instance_default(const struct param *p)
{
    char *value = NULL;
    if ((strcmp(p->name, "alias_database") == 0 || strcmp(p->name, "alias_maps") == 0) &&
        cfg.dir[0] && instance_mode() && asprintf(&value, "cdb:%s/aliases", cfg.dir) < 0)
        value = NULL;
    return value;
}

static const char *computed_default(const struct param *p)
{
    size_t i = (size_t)(p - param_table);
    if (cfg.computed[i])
        return cfg.computed[i];
    const char *compat = compat_default(p);
    if (compat)
        return compat;
    if ((cfg.computed[i] = instance_default(p)) != NULL)
        return cfg.computed[i];
    if (strcmp(p->name, "myhostname") == 0)
        cfg.computed[i] = default_myhostname();
    else if (strcmp(p->name, "mydomain") == 0)
        cfg.computed[i] = default_mydomain();
    else if (strcmp(p->name, "daemon_directory") == 0)
        cfg.computed[i] = default_daemon_directory();
    else if (strcmp(p->name, "config_directory") == 0 && cfg.dir[0])
        cfg.computed[i] = strdup(cfg.dir);
    else
        return p->def;
    return cfg.computed[i] ? cfg.computed[i] : p->def;
}

/* Debian's Postfix takes myorigin from a file when it is given as an
 * absolute path (its installer writes "myorigin = /etc/mailname"): the
 * file's first line, trimmed. An unreadable or empty file means
 * $myhostname, with a warning. */
static const char *value_from_file(const struct param *p, const char *path)
{
    size_t i = (size_t)(p - param_table);
    if (cfg.from_file[i])
        return cfg.from_file[i];
    char line[256] = "";
    FILE *fp = fopen(path, "r");
    if (fp) {
        if (!fgets(line, sizeof(line), fp))
            line[0] = 0;
        fclose(fp);
    }
    const char *start = line, *end = line + strcspn(line, "\r\n");
    trim(&start, &end);
    if (start == end) {
        msg_warn("%s = %s: %s; using $myhostname", p->name, path,
                 fp ? "the file is empty" : strerror(errno));
        cfg.from_file[i] = strdup("$myhostname");
    } else {
        cfg.from_file[i] = strndup(start, (size_t)(end - start));
    }
    return cfg.from_file[i] ? cfg.from_file[i] : "";
}

static const char *value_raw(const char *name)
{
    const struct setting *s = setting_find(name);
    const struct param *p = param_find(name);
    if (s && p && s->raw[0] == '/' && strcmp(name, "myorigin") == 0)
        return value_from_file(p, s->raw);
    if (s)
        return s->raw;
    return p ? computed_default(p) : NULL;
}


const char *config_name(enum param_id id)
{
    return param_table[id].name;
}

const char *config_raw(enum param_id id)
{
    return value_raw(param_table[id].name);
}

const char *config_value(enum param_id id)
{
    return config_get(param_table[id].name);
}

int config_is_set(enum param_id id)
{
    return setting_find(param_table[id].name) != NULL;
}

int config_parse_time(const char *value, char unit, long *seconds)
{
    long long n;
    if (parse_time(value, unit, &n) < 0 || n > LONG_MAX)
        return -1;
    *seconds = (long)n;
    return 0;
}

const char *config_default(const char *name)
{
    const struct param *p = param_find(name);
    return p ? computed_default(p) : NULL;
}

const char *config_get(const char *name)
{
    const struct param *p = param_find(name);
    if (p) {
        size_t i = (size_t)(p - param_table);
        if (!cfg.expanded[i]) {
            const char *raw = value_raw(name);
            cfg.expanded[i] = expand(raw ? raw : "");
        }
        return cfg.expanded[i] ? cfg.expanded[i] : "";
    }
    const struct setting *s = setting_find(name);
    if (!s)
        return NULL;
    /* Unknown but set: expand into a per-setting cache kept with the raw text. */
    static char *last;
    free(last);
    last = expand(s->raw);
    return last ? last : "";
}

/* --- typed access and validation --- */

static int parse_long(const char *v, long long *out)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end)
        return -1;
    *out = n;
    return 0;
}

static int parse_bool(const char *v, int *out)
{
    if (strcasecmp(v, "yes") == 0 || strcasecmp(v, "true") == 0) {
        *out = 1;
        return 0;
    }
    if (strcasecmp(v, "no") == 0 || strcasecmp(v, "false") == 0) {
        *out = 0;
        return 0;
    }
    return -1;
}

static int parse_time(const char *v, char unit, long long *out)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || n < 0)
        return -1;
    char u = *end ? *end : unit;
    if (*end && end[1])
        return -1;
    long long mult;
    switch (u) {
    case 's': mult = 1; break;
    case 'm': mult = 60; break;
    case 'h': mult = 3600; break;
    case 'd': mult = 86400; break;
    case 'w': mult = 604800; break;
    default: return -1;
    }
    if (n > LLONG_MAX / mult)
        return -1;
    *out = n * mult;
    return 0;
}

static int validate_param(const struct param *p, const char *v)
{
    long long n;
    int b;
    switch (p->type) {
    case T_STR: return 0;
    case T_INT: return parse_long(v, &n) == 0 && n >= INT_MIN && n <= INT_MAX ? 0 : -1;
    case T_SIZE: return parse_long(v, &n) == 0 && n >= 0 ? 0 : -1;
    case T_BOOL: return parse_bool(v, &b);
    case T_TIME: return parse_time(v, p->unit, &n);
    }
    return -1;
}

static const char *type_word(enum ptype t)
{
    switch (t) {
    case T_INT: case T_SIZE: return "numerical";
    case T_BOOL: return "boolean";
    case T_TIME: return "time";
    default: return "string";
    }
}

/* The value of a number or time parameter, already validated. */
static long long number_value(const struct param *p, const char *v)
{
    long long n = 0;
    int b = 0;
    if (p->type == T_BOOL)
        return parse_bool(v, &b) == 0 ? b : 0;
    if (p->type == T_TIME)
        return parse_time(v, p->unit, &n) == 0 ? n : 0;
    return parse_long(v, &n) == 0 ? n : 0;
}

static int check_bounds(const struct param *p, const char *v, const char *file, char *err,
                        size_t errlen)
{
    if (p->type == T_STR || p->type == T_BOOL)
        return 0;
    long long n = number_value(p, v);
    if (n >= p->min && n <= p->max)
        return 0;
    const struct setting *s = setting_find(p->name);
    char where[PATH_MAX + 32] = "";
    if (s && s->line)
        snprintf(where, sizeof(where), "%s, line %d: ", file, s->line);
    snprintf(err, errlen, "%sinvalid %s parameter value %lld %s %lld", where, p->name, n,
             n < p->min ? "<" : ">", n < p->min ? p->min : p->max);
    return -1;
}

/* Typed values into struct params, from the validated expansions. */
static void params_fill(void)
{
    for (size_t i = 0; i < NPARAMS; i++) {
        const struct param *p = &param_table[i];
        char *field = (char *)&var + p->field;
        const char *v = cfg.expanded[i] ? cfg.expanded[i] : "";
        switch (p->type) {
        case T_STR: *(const char **)field = v; break;
        case T_BOOL: *(int *)field = (int)number_value(p, v); break;
        case T_INT: case T_TIME: *(long *)field = (long)number_value(p, v); break;
        case T_SIZE: *(long long *)field = number_value(p, v); break;
        }
    }
}

static int validate_all(const char *file, char *err, size_t errlen)
{
    for (size_t i = 0; i < NPARAMS; i++) {
        const char *v = config_get(param_table[i].name);
        if (!cfg.expanded[i]) {
            snprintf(err, errlen, "%s: parameter %s: expansion too deep or too large",
                     file, param_table[i].name);
            return -1;
        }
        if (validate_param(&param_table[i], v) < 0) {
            const struct setting *s = setting_find(param_table[i].name);
            if (s && s->line)
                snprintf(err, errlen, "%s, line %d: bad %s parameter value: %s = %s", file,
                         s->line, type_word(param_table[i].type), param_table[i].name, v);
            else
                snprintf(err, errlen, "bad %s parameter value: %s = %s",
                         type_word(param_table[i].type), param_table[i].name, v);
            return -1;
        }
        if (check_bounds(&param_table[i], v, file, err, errlen) < 0)
            return -1;
    }
    return 0;
}

/* What Postern makes of the names main.cf sets that it does not implement
 * (config.h): postern and postconf say it when they load main.cf, master
 * once its log is set up; daemons stay quiet. A misspelt
 * name gets Postfix's "unused parameter" warning; a Postfix parameter
 * Postern ignores gets a warning that says so, one it covers another way a
 * note. */
void config_report_unimplemented(void)
{
    char file[PATH_MAX + 16];
    snprintf(file, sizeof(file), "%s/main.cf", cfg.dir);
    for (size_t i = 0; i < cfg.nset; i++) {
        const struct setting *s = &cfg.set[i];
        const char *how;
        if (!s->line || setting_find(s->name) != s)
            continue;
        switch (config_kind(s->name, &how)) {
        case CONFIG_KNOWN:
            break;
        case CONFIG_UNKNOWN:
            msg_warn("%s, line %d: unused parameter: %s=%s", file, s->line, s->name, s->raw);
            break;
        case CONFIG_POSTFIX_IGNORED:
            msg_warn("%s, line %d: %s=%s: a Postfix parameter that Postern does not "
                     "implement; ignored", file, s->line, s->name, s->raw);
            break;
        case CONFIG_POSTFIX_OTHERWISE:
            msg_info("%s, line %d: %s=%s: not needed, %s", file, s->line, s->name, s->raw,
                     how);
            break;
        }
    }
}

static int config_parse_all(const char *dir, char *const *overrides, size_t n_overrides,
                            char *err, size_t errlen);

/* A failed (re)load keeps the configuration that was in force. */
int config_try_load(const char *dir, char *const *overrides, size_t n_overrides, char *err,
                    size_t errlen)
{
    struct config_state old = cfg;
    memset(&cfg, 0, sizeof(cfg));
    err[0] = 0;
    if (config_parse_all(dir, overrides, n_overrides, err, errlen) < 0) {
        config_reset();
        cfg = old;
        return -1;
    }
    struct config_state fresh = cfg;
    cfg = old;
    config_reset();
    cfg = fresh;
    params_fill();
    /* Table servers (tcp:, socketmap:, SQL, LDAP) answer within this. */
    lookup_set_timeout((int)var.lookup_server_timeout);
    const char *prog = log_progname();
    if (strcmp(prog, "postern") == 0 || strcmp(prog, "postconf") == 0)
        config_report_unimplemented();
    return 0;
}

static int config_parse_all(const char *dir, char *const *overrides, size_t n_overrides,
                            char *err, size_t errlen)
{
    char path[PATH_MAX + 16];
    snprintf(cfg.dir, sizeof(cfg.dir), "%s", dir);
    snprintf(path, sizeof(path), "%s/main.cf", dir);
    char *text = read_file(path, err, errlen);
    if (!text)
        return -1;
    int rc = parse_main_cf(path, text, err, errlen);
    free(text);
    if (rc < 0)
        return -1;
    for (size_t i = 0; i < n_overrides; i++) {
        const char *eq = strchr(overrides[i], '=');
        if (!eq) {
            snprintf(err, errlen, "bad override (expected name=value): %s", overrides[i]);
            return -1;
        }
        const char *ns = overrides[i], *ne = eq, *vs = eq + 1, *ve = eq + strlen(eq);
        trim(&ns, &ne);
        trim(&vs, &ve);
        if (setting_add(ns, (size_t)(ne - ns), vs, (size_t)(ve - vs), 0) < 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    return validate_all(path, err, errlen);
}

int config_load(const char *dir, char *const *overrides, size_t n_overrides)
{
    char err[1024];
    if (config_try_load(dir, overrides, n_overrides, err, sizeof(err)) < 0)
        msg_fatal("%s", err);
    return 0;
}


void config_walk(int raw, int defaults_only, config_walk_fn fn, void *ctx)
{
    for (size_t i = 0; i < NPARAMS; i++) {
        const struct setting *s = defaults_only ? NULL : setting_find(param_table[i].name);
        const char *v;
        if (defaults_only)
            v = computed_default(&param_table[i]);
        else
            v = raw ? (s ? s->raw : computed_default(&param_table[i])) : config_get(param_table[i].name);
        fn(param_table[i].name, v, s != NULL, ctx);
    }
    if (defaults_only)
        return;
    for (size_t i = 0; i < cfg.nset; i++) {
        if (param_find(cfg.set[i].name) || setting_find(cfg.set[i].name) != &cfg.set[i])
            continue;
        fn(cfg.set[i].name, cfg.set[i].raw, 1, ctx);
    }
}

