/* milter_proto.h - the Sendmail milter protocol on the wire: packet framing,
 * the commands an MTA sends and the replies a milter sends back, each field
 * checked against the packet's length. Constants are libmilter's (mfdef.h).
 * Nothing here knows Postern's configuration: the session logic
 * (negotiation, which event to send when, what a reply means) is
 * lib/mail/milter.h. milter_rx and milter_tx move packets on a
 * non-blocking descriptor for the callers' event loops (or poll), and
 * never read past the end of a packet: a milter connection is handed
 * from smtpd to cleanup between two packets.
 *
 * A packet is a 32-bit length in network order (the command byte
 * included), the command byte, then the data. Strings inside are
 * NUL-terminated; numbers are 32-bit (16-bit for a port) in network order.
 */
#ifndef POSTERN_MILTER_PROTO_H
#define POSTERN_MILTER_PROTO_H

#include <stddef.h>
#include <stdint.h>

/* Commands, MTA to milter (SMFIC_*). */
#define SMFIC_ABORT 'A'
#define SMFIC_BODY 'B'
#define SMFIC_CONNECT 'C'
#define SMFIC_MACRO 'D'
#define SMFIC_BODYEOB 'E'
#define SMFIC_HELO 'H'
#define SMFIC_QUIT_NC 'K'
#define SMFIC_HEADER 'L'
#define SMFIC_MAIL 'M'
#define SMFIC_EOH 'N'
#define SMFIC_OPTNEG 'O'
#define SMFIC_QUIT 'Q'
#define SMFIC_RCPT 'R'
#define SMFIC_DATA 'T'
#define SMFIC_UNKNOWN 'U'

/* Replies, milter to MTA (SMFIR_*). */
#define SMFIR_ADDRCPT '+'
#define SMFIR_DELRCPT '-'
#define SMFIR_ADDRCPT_PAR '2'
#define SMFIR_SHUTDOWN '4'
#define SMFIR_ACCEPT 'a'
#define SMFIR_REPLBODY 'b'
#define SMFIR_CONTINUE 'c'
#define SMFIR_DISCARD 'd'
#define SMFIR_CHGFROM 'e'
#define SMFIR_CONN_FAIL 'f'
#define SMFIR_ADDHEADER 'h'
#define SMFIR_INSHEADER 'i'
#define SMFIR_SETSYMLIST 'l'
#define SMFIR_CHGHEADER 'm'
#define SMFIR_PROGRESS 'p'
#define SMFIR_QUARANTINE 'q'
#define SMFIR_REJECT 'r'
#define SMFIR_SKIP 's'
#define SMFIR_TEMPFAIL 't'
#define SMFIR_REPLYCODE 'y'

/* Protocol flags (SMFIP_*): events the milter does not want, replies it
 * will not send, and extensions. */
#define SMFIP_NOCONNECT 0x00000001u
#define SMFIP_NOHELO 0x00000002u
#define SMFIP_NOMAIL 0x00000004u
#define SMFIP_NORCPT 0x00000008u
#define SMFIP_NOBODY 0x00000010u
#define SMFIP_NOHDRS 0x00000020u
#define SMFIP_NOEOH 0x00000040u
#define SMFIP_NR_HDR 0x00000080u   /* also SMFIP_NOHREPL */
#define SMFIP_NOUNKNOWN 0x00000100u
#define SMFIP_NODATA 0x00000200u
#define SMFIP_SKIP 0x00000400u
#define SMFIP_RCPT_REJ 0x00000800u
#define SMFIP_NR_CONN 0x00001000u
#define SMFIP_NR_HELO 0x00002000u
#define SMFIP_NR_MAIL 0x00004000u
#define SMFIP_NR_RCPT 0x00008000u
#define SMFIP_NR_DATA 0x00010000u
#define SMFIP_NR_UNKN 0x00020000u
#define SMFIP_NR_EOH 0x00040000u
#define SMFIP_NR_BODY 0x00080000u
#define SMFIP_HDR_LEADSPC 0x00100000u

/* Actions a milter may take at the end of a message (SMFIF_*). */
#define SMFIF_ADDHDRS 0x001u
#define SMFIF_CHGBODY 0x002u
#define SMFIF_ADDRCPT 0x004u
#define SMFIF_DELRCPT 0x008u
#define SMFIF_CHGHDRS 0x010u
#define SMFIF_QUARANTINE 0x020u
#define SMFIF_CHGFROM 0x040u
#define SMFIF_ADDRCPT_PAR 0x080u
#define SMFIF_SETSYMLIST 0x100u

/* Macro stages of SMFIC_OPTNEG's symbol lists (SMFIM_*). */
enum milter_macro_stage {
    SMFIM_CONNECT, SMFIM_HELO, SMFIM_ENVFROM, SMFIM_ENVRCPT, SMFIM_DATA, SMFIM_EOM, SMFIM_EOH,
    SMFIM_COUNT
};

/* Address families of SMFIC_CONNECT. */
#define SMFIA_UNKNOWN 'U'
#define SMFIA_UNIX 'L'
#define SMFIA_INET '4'
#define SMFIA_INET6 '6'

#define MILTER_CHUNK_MAX 65535            /* body bytes per SMFIC_BODY */
#define MILTER_PACKET_MAX (1024 * 1024)   /* largest reply packet taken */
#define MILTER_MACRO_LIST_MAX 1024        /* bytes of one OPTNEG symbol list */

/* --- writing --- */

/* A growable byte buffer for outgoing packets. Free p when done. */
struct milter_buf {
    unsigned char *p;
    size_t len, cap;
    int failed;              /* out of memory: everything after is dropped */
};

/* Start a packet with command cmd; returns where it starts, for
 * milter_packet_end. The add functions append to its data. */
size_t milter_packet_begin(struct milter_buf *b, int cmd);
void milter_add_bytes(struct milter_buf *b, const void *data, size_t len);
void milter_add_str(struct milter_buf *b, const char *s);   /* with its NUL */
void milter_add_u32(struct milter_buf *b, uint32_t v);
void milter_add_u16(struct milter_buf *b, uint16_t v);
void milter_add_byte(struct milter_buf *b, int c);
/* Fill in the packet's length. */
void milter_packet_end(struct milter_buf *b, size_t start);
/* A whole packet. -1 when out of memory. */
int milter_put_packet(struct milter_buf *b, int cmd, const void *data, size_t len);
void milter_buf_reset(struct milter_buf *b);
void milter_buf_free(struct milter_buf *b);

/* --- reading --- */

#define MILTER_PACKET_MORE 0      /* buf holds no complete packet yet */
#define MILTER_PACKET_BAD (-1)    /* length 0 (no command byte) */
#define MILTER_PACKET_TOOBIG (-2) /* longer than max */

/* Look at buf[0..avail) for one packet of at most max bytes (command byte
 * and data). Returns the bytes the whole packet takes (header included),
 * with *cmd, *data and *dlen set; or one of the codes above (*dlen is then
 * the announced length, for the warning). */
long milter_packet_peek(const unsigned char *buf, size_t avail, size_t max, int *cmd,
                        const unsigned char **data, size_t *dlen);

/* The fields of one reply. Strings point into the caller's copy of the
 * packet data, which milter_reply_parse NUL-terminates in place; body
 * points at the raw bytes. */
struct milter_reply {
    int cmd;
    uint32_t index;          /* SMFIR_INSHEADER, SMFIR_CHGHEADER */
    const char *name;        /* header name */
    const char *value;       /* header value; text of REPLYCODE, QUARANTINE */
    const char *addr;        /* ADDRCPT, ADDRCPT_PAR, DELRCPT, CHGFROM */
    const char *args;        /* ESMTP arguments of ADDRCPT_PAR, CHGFROM, or NULL */
    const unsigned char *body;   /* REPLBODY */
    size_t body_len;
};

/* Split the data of reply cmd (data[0..len), writable) into r. Returns 0,
 * or -1 with *why set to what is wrong ("reply SMFIR_X was followed by N
 * data bytes", "missing string null terminator", ...). Unknown commands
 * parse with no fields (the caller decides they are unexpected). */
int milter_reply_parse(int cmd, char *data, size_t len, struct milter_reply *r, const char **why);

/* SMFIC_OPTNEG, both ways: version, actions, protocol flags, and (from a
 * version 6 milter) the macro lists it wants per stage (NULL: none given;
 * pointers into the data, NUL-terminated in place). */
struct milter_optneg {
    uint32_t version, actions, protocol;
    const char *macros[SMFIM_COUNT];
};
int milter_optneg_parse(char *data, size_t len, struct milter_optneg *o, const char **why);

/* A reply text from SMFIR_REPLYCODE as it may go to an SMTP client: every
 * line "4xx" or "5xx", the same code on every line, '-' after it on every
 * line but the last (' ' there, or nothing after a bare code), and an
 * enhanced status code of the same class after it, as Postfix demands;
 * lines separated by CR LF, no other control characters. "%%" becomes "%"
 * and a single '%' is dropped, the byte after it kept (libmilter's replies
 * are printf formats). The result goes into out. Returns 0, or -1 when
 * malformed or longer than outlen. */
int milter_reply_text_check(const char *in, char *out, size_t outlen);

/* --- moving packets --- */

/* One packet being received: the length, then exactly that many bytes. */
struct milter_rx {
    unsigned char hdr[4];
    size_t hdr_have;
    char *pkt;               /* command byte, data, and a NUL after it */
    size_t len, have;
};
enum milter_rx_status {
    MILTER_RX_MORE,          /* wait until readable, then call again */
    MILTER_RX_DONE,          /* rx->pkt[0] is the command, data rx->pkt + 1 */
    MILTER_RX_EOF,           /* closed (in the middle of a packet or not) */
    MILTER_RX_ERROR,         /* read error, errno set */
    MILTER_RX_BAD,           /* announced length 0 */
    MILTER_RX_TOOBIG,        /* announced length over max (in rx->len) */
};
enum milter_rx_status milter_rx_read(struct milter_rx *rx, int fd, size_t max);
/* Forget the packet (after use, or to start over). */
void milter_rx_reset(struct milter_rx *rx);

/* Send b->p[*off..b->len) on fd: 1 when all is out, 0 when the socket is
 * full (wait until writable), -1 on error (errno). Never raises SIGPIPE. */
int milter_tx_write(const struct milter_buf *b, size_t *off, int fd);

/* The name of a command or reply for log lines ("SMFIC_BODYEOB",
 * "SMFIR_REPLYCODE"); "(unknown MTA event)" / "(unknown filter reply)". */
const char *milter_command_name(int cmd);
const char *milter_reply_name(int cmd);

#endif
