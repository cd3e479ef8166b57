/* milter.c - the MTA side of a milter session (milter.h): settings,
 * negotiation, which event goes out when and with which macros, and what
 * each reply means. Decisions follow Postfix's milter client: the same
 * replies for REJECT and TEMPFAIL, the same default actions, a rejected
 * connection answering every later event, the same warnings.
 */
#include "milter.h"

#include "config.h"
#include "log.h"
#include "strlist.h"

#include <ctype.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define REJECT_REPLY "550 5.7.1 Command rejected"
#define TEMPFAIL_REPLY "451 4.7.1 Service unavailable - try again later"
#define CONF_ERROR_REPLY "451 4.3.5 Server configuration problem - try again later"
#define UNAVAILABLE_REPLY "550 5.5.0 Service unavailable"

/* What each event is on the wire. */
struct event_info {
    int cmd;              /* SMFIC_* */
    uint32_t no_flag;     /* SMFIP_NO*: the milter does not want it */
    uint32_t nr_flag;     /* SMFIP_NR_*: it sends no reply */
    int macro_stage;      /* SMFIM_*, SMFIM_COUNT for unknown, -1 none */
};

static const struct event_info events[] = {
    [MILTER_CONNECT] = {SMFIC_CONNECT, SMFIP_NOCONNECT, SMFIP_NR_CONN, SMFIM_CONNECT},
    [MILTER_HELO] = {SMFIC_HELO, SMFIP_NOHELO, SMFIP_NR_HELO, SMFIM_HELO},
    [MILTER_MAIL] = {SMFIC_MAIL, SMFIP_NOMAIL, SMFIP_NR_MAIL, SMFIM_ENVFROM},
    [MILTER_RCPT] = {SMFIC_RCPT, SMFIP_NORCPT, SMFIP_NR_RCPT, SMFIM_ENVRCPT},
    [MILTER_DATA] = {SMFIC_DATA, SMFIP_NODATA, SMFIP_NR_DATA, SMFIM_DATA},
    [MILTER_UNKNOWN] = {SMFIC_UNKNOWN, SMFIP_NOUNKNOWN, SMFIP_NR_UNKN, SMFIM_COUNT},
    [MILTER_HEADER] = {SMFIC_HEADER, SMFIP_NOHDRS, SMFIP_NR_HDR, SMFIM_EOH},
    [MILTER_EOH] = {SMFIC_EOH, SMFIP_NOEOH, SMFIP_NR_EOH, SMFIM_EOH},
    [MILTER_BODY] = {SMFIC_BODY, SMFIP_NOBODY, SMFIP_NR_BODY, SMFIM_EOM},
    [MILTER_EOM] = {SMFIC_BODYEOB, 0, 0, SMFIM_EOM},
    [MILTER_ABORT] = {SMFIC_ABORT, 0, 0, -1},
    [MILTER_QUIT] = {SMFIC_QUIT, 0, 0, -1},
};

/* The events each protocol version has (Postfix's masks): a milter that
 * speaks an older version never gets the others. */
#define V2_EVENTS (SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT | SMFIP_NOBODY | \
                   SMFIP_NOHDRS | SMFIP_NOEOH)
#define V3_EVENTS (V2_EVENTS | SMFIP_NOUNKNOWN)
#define V4_EVENTS (V3_EVENTS | SMFIP_NODATA)
#define NO_REPLY_FLAGS (SMFIP_NR_HDR | SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | \
                        SMFIP_NR_RCPT | SMFIP_NR_DATA | SMFIP_NR_UNKN | SMFIP_NR_EOH | \
                        SMFIP_NR_BODY)
/* SMFIP_RCPT_REJ too: a milter may ask to hear rejected recipients. */
#define V6_EVENTS (V4_EVENTS | SMFIP_SKIP | SMFIP_RCPT_REJ | NO_REPLY_FLAGS | SMFIP_HDR_LEADSPC)
#define NOSEND_MASK (V4_EVENTS)
#define V2_ACTIONS (SMFIF_ADDHDRS | SMFIF_CHGBODY | SMFIF_ADDRCPT | SMFIF_DELRCPT | \
                    SMFIF_CHGHDRS | SMFIF_QUARANTINE)
#define V6_ACTIONS (V2_ACTIONS | SMFIF_CHGFROM | SMFIF_ADDRCPT_PAR | SMFIF_SETSYMLIST)
/* Every version is offered every action, as Postfix offers them: a milter
 * of an older version simply never asks for the newer ones. */
#define MTA_ACTIONS V6_ACTIONS

/* --- settings --- */

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = 0;
    size_t i = 0;
    while (isspace((unsigned char)s[i]))
        i++;
    memmove(s, s + i, n - i + 1);
}

/* Strip one pair of braces: "{ x }" -> "x". 1 when there were braces. */
static int unbrace(char *s)
{
    trim(s);
    size_t n = strlen(s);
    if (n < 2 || s[0] != '{' || s[n - 1] != '}')
        return 0;
    s[n - 1] = 0;
    memmove(s, s + 1, n - 1);
    trim(s);
    return 1;
}

static int setting(struct milter_settings *m, char *item, char *err, size_t errlen)
{
    unbrace(item);
    char *eq = strchr(item, '=');
    if (!eq) {
        snprintf(err, errlen, "milter %s: bad setting \"%s\"", m->spec, item);
        return -1;
    }
    *eq = 0;
    char *name = item, *value = eq + 1;
    trim(name);
    trim(value);
    long *timeout = strcmp(name, "connect_timeout") == 0   ? &m->connect_timeout
                    : strcmp(name, "command_timeout") == 0 ? &m->command_timeout
                    : strcmp(name, "content_timeout") == 0 ? &m->content_timeout
                                                            : NULL;
    if (timeout) {
        /* main.cf's time syntax and bounds (config_parse_time): an
         * absurd value is refused, never overflowed (fuzz_milter_list). */
        if (config_parse_time(value, 's', timeout) < 0 || *timeout <= 0) {
            snprintf(err, errlen, "milter %s: bad %s value \"%s\"", m->spec, name, value);
            return -1;
        }
    } else if (strcmp(name, "default_action") == 0) {
        snprintf(m->default_action, sizeof(m->default_action), "%s", value);
    } else if (strcmp(name, "protocol") == 0) {
        snprintf(m->protocol, sizeof(m->protocol), "%s", value);
    } else {
        snprintf(err, errlen, "milter %s: unknown setting \"%s\"", m->spec, name);
        return -1;
    }
    return 0;
}

static void defaults(struct milter_settings *m)
{
    m->connect_timeout = var.milter_connect_timeout;
    m->command_timeout = var.milter_command_timeout;
    m->content_timeout = var.milter_content_timeout;
    snprintf(m->default_action, sizeof(m->default_action), "%s", var.milter_default_action);
    snprintf(m->protocol, sizeof(m->protocol), "%s", var.milter_protocol);
}

/* One list item: an endpoint, or "{ endpoint, name=value, ... }". */
static int parse_item(char *item, struct milter_settings *m, char *err, size_t errlen)
{
    defaults(m);
    int braced = unbrace(item);
    const char *p = item;
    char part[MILTER_SPEC_MAX * 2];
    int n = 0, rc;
    while ((rc = strlist_next(&p, part, sizeof(part))) != 0) {
        if (rc < 0) {
            snprintf(err, errlen, "milter list item too long");
            return -1;
        }
        if (n++ == 0) {
            if (strlen(part) >= sizeof(m->spec)) {
                snprintf(err, errlen, "milter endpoint too long: \"%.60s...\"", part);
                return -1;
            }
            memcpy(m->spec, part, strlen(part) + 1);
        } else if (!braced || setting(m, part, err, errlen) < 0) {
            if (!braced)
                snprintf(err, errlen, "bad milter item \"%.200s\"", item);
            return -1;
        }
    }
    if (n == 0) {
        snprintf(err, errlen, "empty milter item");
        return -1;
    }
    return 0;
}

int milter_list_parse(const char *value, struct milter_settings *out, size_t max, char *err,
                      size_t errlen)
{
    const char *p = value;
    char item[MILTER_SPEC_MAX * 4];
    size_t n = 0;
    int rc;
    while ((rc = strlist_next(&p, item, sizeof(item))) != 0) {
        if (rc < 0) {
            snprintf(err, errlen, "milter list item too long");
            return -1;
        }
        if (n >= max) {
            snprintf(err, errlen, "more than %zu milters", max);
            return -1;
        }
        if (parse_item(item, &out[n], err, errlen) < 0)
            return -1;
        n++;
    }
    return (int)n;
}

int milter_endpoint(const char *spec, char *host, size_t hostlen, char *port, size_t portlen,
                    int *is_unix)
{
    const char *colon = strchr(spec, ':');
    if (!colon || colon == spec || !colon[1]) {
        msg_warn("Milter service needs transport:endpoint instead of \"%s\"", spec);
        return -1;
    }
    size_t tlen = (size_t)(colon - spec);
    const char *ep = colon + 1;
    if ((tlen == 4 && strncmp(spec, "unix", 4) == 0) ||
        (tlen == 5 && strncmp(spec, "local", 5) == 0)) {
        *is_unix = 1;
        snprintf(host, hostlen, "%s", ep);
        port[0] = 0;
        return 0;
    }
    if (!(tlen == 4 && strncmp(spec, "inet", 4) == 0)) {
        msg_warn("invalid transport name: %.*s in Milter service: %s", (int)tlen, spec, spec);
        return -1;
    }
    *is_unix = 0;
    const char *pc = strrchr(ep, ':');
    if (!pc || pc == ep || !pc[1]) {
        msg_warn("milter %s: missing host or port in \"%s\"", spec, ep);
        return -1;
    }
    const char *h = ep, *he = pc;
    if (*h == '[' && he > h + 1 && he[-1] == ']') {
        h++;
        he--;
    }
    if ((size_t)(he - h) >= hostlen || strlen(pc + 1) >= portlen) {
        msg_warn("milter %s: endpoint too long", spec);
        return -1;
    }
    memcpy(host, h, (size_t)(he - h));
    host[he - h] = 0;
    snprintf(port, portlen, "%s", pc + 1);
    return 0;
}

/* --- the session --- */

static void set_str(char **slot, const char *value)
{
    free(*slot);
    *slot = value ? strdup(value) : NULL;
}

/* The configured macro list of each stage. */
static void default_macros(struct milter *m)
{
    const char *lists[SMFIM_COUNT + 1] = {
        [SMFIM_CONNECT] = var.milter_connect_macros,
        [SMFIM_HELO] = var.milter_helo_macros,
        [SMFIM_ENVFROM] = var.milter_mail_macros,
        [SMFIM_ENVRCPT] = var.milter_rcpt_macros,
        [SMFIM_DATA] = var.milter_data_macros,
        [SMFIM_EOM] = var.milter_end_of_data_macros,
        [SMFIM_EOH] = var.milter_end_of_header_macros,
        [SMFIM_COUNT] = var.milter_unknown_command_macros,
    };
    for (int i = 0; i <= SMFIM_COUNT; i++)
        set_str(&m->macros[i], lists[i] ? lists[i] : "");
}

struct milter *milter_new(const struct milter_settings *set)
{
    struct milter *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->set = *set;
    m->fd = -1;
    m->state = MILTER_ST_CLOSED;
    default_macros(m);
    return m;
}

void milter_free(struct milter *m)
{
    if (!m)
        return;
    for (int i = 0; i <= SMFIM_COUNT; i++)
        free(m->macros[i]);
    free(m->def_reply);
    free(m->result);
    free(m);
}

const char *milter_result(const struct milter *m)
{
    return m->result;
}

static void set_result(struct milter *m, const char *reply)
{
    set_str(&m->result, reply);
}

/* The answer for a session that cannot go on: the default action. */
static const char *default_action_reply(struct milter *m)
{
    const char *a = m->set.default_action;
    if (strcasecmp(a, "accept") == 0)
        return NULL;
    if (strcasecmp(a, "reject") == 0)
        return UNAVAILABLE_REPLY;
    if (strcasecmp(a, "tempfail") == 0)
        return TEMPFAIL_REPLY;
    if (strcasecmp(a, "quarantine") == 0)
        return "H";
    msg_warn("milter %s: unrecognized default action: %s", m->set.spec, a);
    return CONF_ERROR_REPLY;
}

void milter_comm_error(struct milter *m)
{
    m->state = MILTER_ST_ERROR;
    set_str(&m->def_reply, default_action_reply(m));
    set_result(m, m->def_reply);
}

/* A configuration error (ours or the milter's): accept as configured,
 * else Postfix's "configuration problem" reply. */
static void conf_error(struct milter *m)
{
    m->state = MILTER_ST_ERROR;
    set_str(&m->def_reply, strcasecmp(m->set.default_action, "accept") == 0 ? NULL
                                                                               : CONF_ERROR_REPLY);
    set_result(m, m->def_reply);
}

int milter_wants_close(const struct milter *m)
{
    return m->state == MILTER_ST_ERROR || m->state == MILTER_ST_ACCEPT_CON ||
           m->state == MILTER_ST_REJECT_CON;
}

int milter_in_message(const struct milter *m)
{
    return m->state == MILTER_ST_ENVELOPE || m->state == MILTER_ST_MESSAGE;
}

long milter_event_timeout(const struct milter *m, enum milter_event ev)
{
    if (ev >= MILTER_HEADER && ev <= MILTER_EOM)
        return m->set.content_timeout;
    return m->set.command_timeout;
}

int milter_event_command(enum milter_event ev)
{
    return events[ev].cmd;
}

/* --- negotiation --- */

/* milter_protocol: a version (2, 3, 4 or 6) and optionally
 * "no_header_reply"; the version and the events it has. */
static int protocol_setting(struct milter *m, uint32_t *version, uint32_t *evmask)
{
    char buf[sizeof(m->set.protocol)];
    snprintf(buf, sizeof(buf), "%s", m->set.protocol);
    *version = 0;
    *evmask = 0;
    for (char *save = NULL, *t = strtok_r(buf, " ,\t\r\n", &save); t;
         t = strtok_r(NULL, " ,\t\r\n", &save)) {
        uint32_t v = strcmp(t, "2") == 0 ? 2 : strcmp(t, "3") == 0 ? 3
                                            : strcmp(t, "4") == 0 ? 4
                                            : strcmp(t, "6") == 0 ? 6 : 0;
        if (strcmp(t, "no_header_reply") == 0) {
            *evmask |= SMFIP_NR_HDR;
        } else if (v && !*version) {
            *version = v;
            *evmask |= v == 2 ? V2_EVENTS : v == 3 ? V3_EVENTS : v == 4 ? V4_EVENTS : V6_EVENTS;
        } else {
            msg_warn("milter %s: bad protocol information: %s", m->set.spec, t);
            return -1;
        }
    }
    if (!*version) {
        msg_warn("milter %s: no protocol version information", m->set.spec);
        return -1;
    }
    return 0;
}

int milter_negotiate(struct milter *m, struct milter_buf *out)
{
    uint32_t version, evmask;
    if (protocol_setting(m, &version, &evmask) < 0) {
        conf_error(m);
        return -1;
    }
    m->version = version;
    m->np_mask = NOSEND_MASK & ~evmask;
    m->protocol = evmask;   /* what we offer, until the milter answers */
    size_t start = milter_packet_begin(out, SMFIC_OPTNEG);
    milter_add_u32(out, version);
    milter_add_u32(out, MTA_ACTIONS);
    milter_add_u32(out, evmask);
    milter_packet_end(out, start);
    return 0;
}

/* The macro lists a version 6 milter asked for replace ours. */
static void take_macro_lists(struct milter *m, const struct milter_optneg *o)
{
    for (int i = 0; i < SMFIM_COUNT; i++)
        if (o->macros[i])
            set_str(&m->macros[i], o->macros[i]);
}

int milter_negotiated(struct milter *m, int cmd, char *data, size_t len)
{
    struct milter_optneg o;
    const char *why;
    uint32_t my_version = m->version, my_actions = MTA_ACTIONS;
    if (cmd != SMFIC_OPTNEG) {
        msg_warn("milter %s: unexpected reply \"%c\" in initial handshake", m->set.spec,
                 isprint(cmd) ? cmd : '?');
    } else if (milter_optneg_parse(data, len, &o, &why) < 0) {
        msg_warn("milter %s: read error in initial handshake: %s", m->set.spec, why);
    } else if (o.version > my_version || o.version < 2) {
        msg_warn("milter %s: protocol version %u conflict with MTA protocol version %u",
                 m->set.spec, o.version, my_version);
    } else if ((o.actions & my_actions) != o.actions) {
        msg_warn("milter %s: request mask 0x%x conflict with MTA request mask 0x%x",
                 m->set.spec, o.actions, my_actions);
    } else {
        /* Flags we did not offer are taken as the milter means them, as
         * Postfix does: it will not send those replies or want those
         * events either way. */
        m->actions = o.actions;
        m->protocol = o.protocol;
        if (o.version < my_version)   /* no events its version lacks */
            m->np_mask |= NOSEND_MASK & ~(o.version == 2 ? V2_EVENTS : o.version == 3 ? V3_EVENTS
                                                                                       : V4_EVENTS);
        m->version = o.version;
        take_macro_lists(m, &o);
        m->state = MILTER_ST_READY;
        set_str(&m->def_reply, NULL);
        return 0;
    }
    milter_comm_error(m);
    return -1;
}

/* --- events --- */

/* --- milter_macro_defaults --- */

#define MACRO_DEFAULTS_MAX 64

/* A macro name without its braces: "{auth_type}" and "auth_type" name the
 * same macro here, as in Postfix's milter_macro_defaults. */
static size_t bare_name(const char *name, const char **start)
{
    size_t n = strlen(name);
    if (n >= 2 && name[0] == '{' && name[n - 1] == '}') {
        *start = name + 1;
        return n - 2;
    }
    *start = name;
    return n;
}

/* Whether item is one "{ ... }" (its first brace closes at its end), not
 * "{name}=value". */
static int whole_braced(const char *item)
{
    size_t n = strlen(item);
    if (n < 2 || item[0] != '{' || item[n - 1] != '}')
        return 0;
    int depth = 0;
    for (size_t i = 0; i < n; i++) {
        depth += item[i] == '{' ? 1 : item[i] == '}' ? -1 : 0;
        if (depth == 0)
            return i == n - 1;
    }
    return 0;
}

/* The pairs of milter_macro_defaults ("name=value", "{ name = value }"),
 * read once per process. */
static struct {
    int loaded;
    size_t n;
    char *name[MACRO_DEFAULTS_MAX], *value[MACRO_DEFAULTS_MAX];
} defaults_cache;

static void load_macro_defaults(void)
{
    char item[MILTER_MACRO_LIST_MAX];
    const char *p = var.milter_macro_defaults ? var.milter_macro_defaults : "";
    int rc;
    defaults_cache.loaded = 1;
    while ((rc = strlist_next(&p, item, sizeof(item))) != 0) {
        if (rc < 0)
            continue;
        if (whole_braced(item))
            unbrace(item);
        char *eq = strchr(item, '=');
        if (!eq || defaults_cache.n >= MACRO_DEFAULTS_MAX) {
            msg_warn("milter_macro_defaults: ignoring \"%s\"", item);
            continue;
        }
        *eq = 0;
        trim(item);
        char *value = eq + 1;
        trim(value);
        char *n = strdup(item), *v = strdup(value);
        if (n && v) {
            defaults_cache.name[defaults_cache.n] = n;
            defaults_cache.value[defaults_cache.n++] = v;
        } else {
            free(n);
            free(v);
        }
    }
}

/* The default of a macro that has no value now, or NULL. */
static const char *macro_default(const char *name)
{
    const char *want, *have;
    if (!defaults_cache.loaded)
        load_macro_defaults();
    size_t wlen = bare_name(name, &want);
    for (size_t i = 0; i < defaults_cache.n; i++) {
        size_t hlen = bare_name(defaults_cache.name[i], &have);
        if (hlen == wlen && strncmp(have, want, wlen) == 0)
            return defaults_cache.value[i];
    }
    return NULL;
}

/* SMFIC_MACRO for the stage of event ev, when any macro has a value (its
 * own, or its milter_macro_defaults value). */
static void put_macros(struct milter *m, enum milter_event ev, milter_macro_fn fn, void *ctx,
                       struct milter_buf *out)
{
    int stage = events[ev].macro_stage;
    if (stage < 0 || !fn || !m->macros[stage])
        return;
    size_t start = out->len, count = 0;
    size_t pkt = milter_packet_begin(out, SMFIC_MACRO);
    milter_add_byte(out, events[ev].cmd);
    char names[MILTER_MACRO_LIST_MAX + 1];
    snprintf(names, sizeof(names), "%s", m->macros[stage]);
    for (char *save = NULL, *name = strtok_r(names, " ,\t\r\n", &save); name;
         name = strtok_r(NULL, " ,\t\r\n", &save)) {
        const char *value = fn(ctx, name);
        if (!value && !(value = macro_default(name)))
            continue;
        milter_add_str(out, name);
        milter_add_str(out, value);
        count++;
    }
    if (count)
        milter_packet_end(out, pkt);
    else
        out->len = start;   /* nothing worth sending */
}

static void put_argv(struct milter_buf *out, const char *const *argv)
{
    for (; argv && *argv; argv++)
        milter_add_str(out, *argv);
}

static void put_event(struct milter *m, enum milter_event ev, const struct milter_args *a,
                      struct milter_buf *out)
{
    size_t start = milter_packet_begin(out, events[ev].cmd);
    switch (ev) {
    case MILTER_CONNECT:
        milter_add_str(out, a->client_name);
        milter_add_byte(out, a->family);
        if (a->family != SMFIA_UNKNOWN) {
            milter_add_u16(out, (uint16_t)a->port);
            milter_add_str(out, a->client_addr);
        }
        break;
    case MILTER_HELO:
    case MILTER_UNKNOWN:
        milter_add_str(out, a->text);
        break;
    case MILTER_MAIL:
    case MILTER_RCPT:
        put_argv(out, a->argv);
        break;
    case MILTER_HEADER: {
        /* Sendmail eats the one space after the colon unless the milter
         * asked for it (SMFIP_HDR_LEADSPC). */
        const char *v = a->value;
        if (!(m->protocol & SMFIP_HDR_LEADSPC) && *v == ' ')
            v++;
        milter_add_str(out, a->name);
        milter_add_str(out, v);
        break;
    }
    case MILTER_BODY:
        milter_add_bytes(out, a->chunk, a->chunk_len);
        break;
    default:
        break;
    }
    milter_packet_end(out, start);
}

/* Whether the session takes part in event ev at all, in its state. */
static int event_allowed(struct milter *m, enum milter_event ev)
{
    switch (m->state) {
    case MILTER_ST_READY:
        return ev == MILTER_CONNECT;
    case MILTER_ST_ENVELOPE:
        return ev != MILTER_CONNECT;   /* content events start the message */
    case MILTER_ST_MESSAGE:
        return ev >= MILTER_HEADER;
    case MILTER_ST_ACCEPT_MSG:
        /* the rest of this message is skipped; the next one is not */
        return ev == MILTER_ABORT || ev == MILTER_QUIT || ev == MILTER_HELO ||
               ev == MILTER_UNKNOWN;
    default:
        return 0;
    }
}

enum milter_step milter_event(struct milter *m, enum milter_event ev, const struct milter_args *a,
                              milter_macro_fn macros, void *ctx, struct milter_buf *out)
{
    const struct event_info *e = &events[ev];
    if (ev == MILTER_RCPT && a && a->rejected && !(m->protocol & SMFIP_RCPT_REJ)) {
        set_result(m, NULL);   /* it did not ask for rejected recipients */
        return MILTER_SKIP;
    }
    set_result(m, m->def_reply);
    if (m->state == MILTER_ST_ACCEPT_MSG && (ev == MILTER_MAIL || ev == MILTER_ABORT))
        m->state = MILTER_ST_ENVELOPE;   /* a new transaction */
    if (!event_allowed(m, ev))
        return MILTER_SKIP;
    if (ev == MILTER_CONNECT)
        m->state = MILTER_ST_ENVELOPE;
    if (ev == MILTER_HEADER || ev == MILTER_EOH || ev == MILTER_BODY || ev == MILTER_EOM) {
        m->state = MILTER_ST_MESSAGE;
        if (ev == MILTER_EOM)
            m->body_replaced = 0;
    }
    if (ev == MILTER_ABORT || ev == MILTER_QUIT) {
        m->skip_body = 0;
        if (m->state == MILTER_ST_MESSAGE)
            m->state = MILTER_ST_ENVELOPE;
        milter_put_packet(out, e->cmd, NULL, 0);
        return MILTER_SEND_ONLY;
    }
    if (e->no_flag & m->np_mask)
        return MILTER_SKIP;   /* not in the milter's protocol version */
    put_macros(m, ev, macros, ctx, out);
    if ((e->no_flag & m->protocol) || (ev == MILTER_BODY && m->skip_body))
        return out->len ? MILTER_SEND_ONLY : MILTER_SKIP;
    put_event(m, ev, a, out);
    return (e->nr_flag & m->protocol) ? MILTER_SEND_ONLY : MILTER_SEND;
}

/* --- replies --- */

static int connection_event(enum milter_event ev)
{
    return ev == MILTER_CONNECT || ev == MILTER_HELO;
}

/* A final answer that rejects the connection (at CONNECT or HELO) or only
 * this command. */
static void reject_with(struct milter *m, enum milter_event ev, const char *reply)
{
    if (connection_event(ev)) {
        m->state = MILTER_ST_REJECT_CON;
        set_str(&m->def_reply, reply);
    }
    set_result(m, reply);
}

/* The end of a message's reply: back to the envelope for the next one. */
static void message_done(struct milter *m, enum milter_event ev)
{
    if (ev == MILTER_EOM && (m->state == MILTER_ST_MESSAGE || m->state == MILTER_ST_ACCEPT_MSG)) {
        m->state = MILTER_ST_ENVELOPE;
        m->skip_body = 0;
    }
}

static int unexpected(struct milter *m, enum milter_event ev, int cmd)
{
    msg_warn("milter %s: unexpected filter response %s after event %s", m->set.spec,
             milter_reply_name(cmd), milter_command_name(events[ev].cmd));
    milter_comm_error(m);
    return 1;
}

/* A modification: only at the end of the message, and only the actions
 * the milter negotiated. 0: more packets follow; 1: answer complete. */
static int modification(struct milter *m, enum milter_event ev, const struct milter_reply *r,
                        const struct milter_edits *ed, void *ctx)
{
    static const struct {
        int cmd;
        uint32_t action;
    } need[] = {
        {SMFIR_ADDHEADER, SMFIF_ADDHDRS},   {SMFIR_INSHEADER, SMFIF_ADDHDRS},
        {SMFIR_CHGHEADER, SMFIF_CHGHDRS},   {SMFIR_ADDRCPT, SMFIF_ADDRCPT},
        {SMFIR_ADDRCPT_PAR, SMFIF_ADDRCPT_PAR}, {SMFIR_DELRCPT, SMFIF_DELRCPT},
        {SMFIR_CHGFROM, SMFIF_CHGFROM},     {SMFIR_REPLBODY, SMFIF_CHGBODY},
        {SMFIR_QUARANTINE, SMFIF_QUARANTINE},
    };
    uint32_t action = 0;
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
        if (need[i].cmd == r->cmd)
            action = need[i].action;
    if (ev != MILTER_EOM || !action || !ed || !(m->actions & action))
        return unexpected(m, ev, r->cmd);
    const char *err = NULL;
    switch (r->cmd) {
    case SMFIR_ADDHEADER:
        err = ed->add_header(ctx, r->name, r->value);
        break;
    case SMFIR_INSHEADER:
        err = ed->ins_header(ctx, r->index, r->name, r->value);
        break;
    case SMFIR_CHGHEADER:
        if (!*r->name) {
            msg_warn("milter %s: null change header name", m->set.spec);
            conf_error(m);
            return 1;
        }
        err = ed->chg_header(ctx, r->index ? r->index : 1, r->name, r->value);
        break;
    case SMFIR_ADDRCPT:
    case SMFIR_ADDRCPT_PAR:
        err = ed->add_rcpt(ctx, r->addr, r->args);
        break;
    case SMFIR_DELRCPT:
        err = ed->del_rcpt(ctx, r->addr);
        break;
    case SMFIR_CHGFROM:
        err = ed->chg_from(ctx, r->addr, r->args);
        break;
    case SMFIR_REPLBODY:
        err = ed->repl_body(ctx, !m->body_replaced, r->body, r->body_len);
        m->body_replaced = 1;
        break;
    case SMFIR_QUARANTINE:
        err = ed->quarantine(ctx, r->value);
        break;
    }
    if (err) {
        /* The rest of this answer is unread: the connection cannot go on
         * (its default action from now on), and this message gets err. */
        milter_comm_error(m);
        set_result(m, err);
        return 1;
    }
    return 0;
}

/* SMFIR_REPLYCODE: a reply the client may see, checked as Postfix does. */
static int reply_code(struct milter *m, enum milter_event ev, const char *text)
{
    char checked[MILTER_REPLY_MAX];
    if (milter_reply_text_check(text, checked, sizeof(checked)) < 0) {
        char shown[256];
        milter_printable(text, shown, sizeof(shown));
        msg_warn("milter %s: malformed reply: %s", m->set.spec, shown);
        conf_error(m);
        return 1;
    }
    reject_with(m, ev, checked);
    message_done(m, ev);
    return 1;
}

int milter_reply(struct milter *m, enum milter_event ev, int cmd, char *data, size_t len,
                 const struct milter_edits *ed, void *ctx)
{
    struct milter_reply r;
    const char *why;
    if (milter_reply_parse(cmd, data, len, &r, &why) < 0) {
        if (strcmp(why, "reply was followed by data bytes") == 0)
            msg_warn("milter %s: reply %s was followed by %zu data bytes", m->set.spec,
                     milter_reply_name(cmd), len);
        else
            msg_warn("milter %s: %s in %s reply", m->set.spec, why, milter_reply_name(cmd));
        milter_comm_error(m);
        return 1;
    }
    switch (cmd) {
    case SMFIR_PROGRESS:
        return 0;
    case SMFIR_CONTINUE:
        set_result(m, m->def_reply);
        message_done(m, ev);
        return 1;
    case SMFIR_ACCEPT:
        if (connection_event(ev))
            m->state = MILTER_ST_ACCEPT_CON;   /* nothing more for this connection */
        else if (ev != MILTER_EOM)
            m->state = MILTER_ST_ACCEPT_MSG;   /* nothing more for this message */
        set_result(m, m->def_reply);
        message_done(m, ev);
        return 1;
    case SMFIR_DISCARD:
        if (connection_event(ev)) {
            msg_warn("milter %s: DISCARD action is not allowed for connect or helo",
                     m->set.spec);
            conf_error(m);
            return 1;
        }
        m->state = ev == MILTER_EOM ? MILTER_ST_ENVELOPE : MILTER_ST_ACCEPT_MSG;
        set_result(m, "D");
        return 1;
    case SMFIR_REJECT:
        reject_with(m, ev, REJECT_REPLY);
        message_done(m, ev);
        return 1;
    case SMFIR_TEMPFAIL:
        reject_with(m, ev, TEMPFAIL_REPLY);
        message_done(m, ev);
        return 1;
    case SMFIR_SHUTDOWN:
        m->state = MILTER_ST_REJECT_CON;
        set_str(&m->def_reply, "S");
        set_result(m, "S");
        return 1;
    case SMFIR_REPLYCODE:
        return reply_code(m, ev, r.value);
    case SMFIR_SKIP:
        if (ev != MILTER_BODY || !(m->protocol & SMFIP_SKIP))
            return unexpected(m, ev, cmd);
        m->skip_body = 1;
        set_result(m, m->def_reply);
        return 1;
    default:
        return modification(m, ev, &r, ed, ctx);
    }
}

/* --- handing a session to cleanup --- */

int milter_export(const struct milter *m, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%u %u %u %u %d %ld %ld %ld\n%s\n%s\n%s\n%s\n%s\n",
                     m->version, m->actions, m->protocol, m->np_mask, (int)m->state,
                     m->set.connect_timeout, m->set.command_timeout, m->set.content_timeout,
                     m->set.default_action, m->set.spec, m->macros[SMFIM_EOH],
                     m->macros[SMFIM_EOM], m->def_reply ? m->def_reply : "");
    return n > 0 && (size_t)n < outlen ? 0 : -1;
}

/* The next line of *p (NUL-terminated in place), or NULL. */
static char *next_line(char **p)
{
    char *s = *p, *nl = s ? strchr(s, '\n') : NULL;
    if (!nl)
        return NULL;
    *nl = 0;
    *p = nl + 1;
    return s;
}

struct milter *milter_import(const char *text)
{
    struct milter_settings set = {0};
    char *copy = strdup(text), *p = copy;
    struct milter *m = NULL;
    char *nums = next_line(&p), *action = next_line(&p), *spec = next_line(&p);
    char *eoh = next_line(&p), *eom = next_line(&p), *def = next_line(&p);
    unsigned version, actions, protocol, np_mask;
    int state;
    if (!def || sscanf(nums, "%u %u %u %u %d %ld %ld %ld", &version, &actions, &protocol,
                       &np_mask, &state, &set.connect_timeout, &set.command_timeout,
                       &set.content_timeout) != 8 ||
        state < MILTER_ST_CLOSED || state > MILTER_ST_REJECT_CON)
        goto done;
    snprintf(set.spec, sizeof(set.spec), "%s", spec);
    snprintf(set.default_action, sizeof(set.default_action), "%s", action);
    snprintf(set.protocol, sizeof(set.protocol), "%u", version);
    if (!(m = milter_new(&set)))
        goto done;
    m->version = version;
    m->actions = actions;
    m->protocol = protocol;
    m->np_mask = np_mask;
    m->state = (enum milter_state)state;
    set_str(&m->macros[SMFIM_EOH], eoh);
    set_str(&m->macros[SMFIM_EOM], eom);
    if (*def)
        set_str(&m->def_reply, def);
done:
    free(copy);
    return m;
}

const char *milter_config_macro(const char *name)
{
    if (strcmp(name, "j") == 0)
        return var.myhostname;
    if (strcmp(name, "{daemon_name}") == 0)
        return var.milter_macro_daemon_name;
    if (strcmp(name, "v") == 0)
        return var.milter_macro_v;
    return NULL;
}

void milter_printable(const char *in, char *out, size_t outlen)
{
    size_t o = 0;
    for (; *in && o + 1 < outlen; in++)
        out[o++] = (unsigned char)*in < 0x20 || *in == 0x7f ? '?' : *in;
    if (outlen)
        out[o] = 0;
}

int milter_socket(int family)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0 && (family == AF_INET || family == AF_INET6))
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
    return fd;
}
