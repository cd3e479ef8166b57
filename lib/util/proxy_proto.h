/* proxy_proto.h - the PROXY protocol header (HAProxy's, versions 1 and 2)
 * that a load balancer sends before anything else on a connection, naming
 * the client it accepted. A pure, bounded parser: the caller reads (smtpd
 * does it on its event loop, smtpd/proxy.c) and hands over what it has;
 * the parser says "need more", "bad" with a reason in Postfix's words, or
 * how many bytes the header took, so that no byte after it is consumed.
 */
#ifndef POSTERN_PROXY_PROTO_H
#define POSTERN_PROXY_PROTO_H

#include <stddef.h>
#include <sys/socket.h>

/* Longest header taken: a v1 line is at most 107 bytes (the spec's
 * bound); a v2 header 16 bytes plus its addresses and TLVs, which we cap
 * here so that a peer cannot make us buffer more. */
#define PROXY_V1_MAX 107
#define PROXY_V2_MAX 536
#define PROXY_HEADER_MAX PROXY_V2_MAX

struct proxy_header {
    int local;                      /* v2 LOCAL or v1 UNKNOWN: no client named,
                                       the connection's own addresses stand */
    struct sockaddr_storage client; /* the client, when !local */
    struct sockaddr_storage server; /* the address it connected to */
};

/* Parse the header at the start of buf[0..len). Returns the header's
 * length (> 0) with *out filled; 0 when buf is a proper beginning of a
 * header and more bytes are needed; -1 when it is not a valid header (too
 * long included), with *why set to a static text. */
long proxy_header_parse(const unsigned char *buf, size_t len, struct proxy_header *out,
                        const char **why);

#endif
