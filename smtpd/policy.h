/* policy.h - smtpd's client for policy services (check_policy_service,
 * Postfix's SMTPD_POLICY_README): requests on smtpd's event loop,
 * connections kept and reused per service (policy.c).
 */
#ifndef POSTERN_SMTPD_POLICY_H
#define POSTERN_SMTPD_POLICY_H

#include <stddef.h>

struct policy_service;
struct policy_request;

/* The service a check_policy_service argument names: "inet:host:port",
 * "unix:/path", a path relative to queue_directory ("private/policy"),
 * or "{ endpoint, timeout=..., default_action=..., policy_context=...,
 * max_idle=..., max_ttl=..., request_limit=..., try_limit=...,
 * retry_delay=... }". NULL with err set when it is unusable. */
struct policy_service *policy_service_open(const char *spec, char *err, size_t errlen);
const char *policy_service_context(const struct policy_service *svc);
/* The endpoint as configured ("inet:host:port"): Postfix's table name
 * for the service in warnings about its answers. */
const char *policy_service_endpoint(const struct policy_service *svc);

/* The answer: the "action" attribute's value, or the service's default
 * action when the service failed (down, slow, garbage). Never called
 * before policy_query returns. */
typedef void (*policy_done_fn)(void *ctx, const char *action);

/* Send request (attribute lines, the empty line included). */
struct policy_request *policy_query(struct policy_service *svc, const char *request,
                                    policy_done_fn done, void *ctx);
void policy_cancel(struct policy_request *req);

#endif
