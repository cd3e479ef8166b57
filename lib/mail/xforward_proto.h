/* xforward_proto.h - Postfix's XFORWARD command: the original client's
 * attributes (NAME ADDR PORT PROTO HELO IDENT SOURCE) that an after-queue
 * content filter passes back to the reinjection smtpd, so that its log
 * lines, Received: header and queue file name the client that sent the
 * mail, not the filter. One module for both sides: smtpd parses the
 * command (smtpd/xforward.c), remote formats it from the queue file's
 * client attributes (remote/xforward.c). Values are xtext on the wire;
 * "[UNAVAILABLE]" and "[TEMPUNAVAIL]" stand for a value not known.
 */
#ifndef POSTERN_XFORWARD_PROTO_H
#define POSTERN_XFORWARD_PROTO_H

#include <stddef.h>

enum xforward_attr { XF_NAME, XF_ADDR, XF_PORT, XF_PROTO, XF_HELO, XF_IDENT, XF_SOURCE,
                     XF_COUNT };

#define XFORWARD_VALUE_MAX 256
#define XFORWARD_LINE_MAX 512            /* one command line, as Postfix bounds it */
#define XFORWARD_UNAVAILABLE "[UNAVAILABLE]"
/* What smtpd announces after EHLO to an authorized client. */
#define XFORWARD_EHLO "XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT"

struct xforward {
    unsigned given;                      /* bit (1 << attr) per attribute sent */
    char value[XF_COUNT][XFORWARD_VALUE_MAX];   /* decoded; "unknown" when unavailable */
};

/* The wire name of an attribute ("NAME", ...). */
const char *xforward_attr_name(enum xforward_attr a);

/* Add the attributes of one command's argument ("NAME=x ADDR=y ...") to
 * xf; values are checked as Postfix checks them (an address, a port, a
 * printable word). 0, or -1 with the complete SMTP reply in reply (xf
 * then unchanged). */
int xforward_parse(const char *arg, struct xforward *xf, char *reply, size_t replylen);

/* The attributes a server offers, from its EHLO keyword's arguments
 * ("NAME ADDR ..."): bits (1 << attr). */
unsigned xforward_offered(const char *args);

/* Client side: the XFORWARD command lines for the values in xf (a value
 * not given is sent as [UNAVAILABLE]) restricted to the offered ones,
 * each at most XFORWARD_LINE_MAX bytes, NAME ADDR PORT first and PROTO
 * HELO IDENT SOURCE second, as Postfix sends them. Returns the number of
 * lines written into lines (at most 2). */
size_t xforward_format(const struct xforward *xf, unsigned offered,
                       char lines[2][XFORWARD_LINE_MAX]);

#endif
