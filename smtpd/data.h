/* data.h - decoding the content a client sends after DATA: the end of
 * data, dot-unstuffing, CR LF -> LF, the size limit, NUL bytes and the
 * defence against SMTP smuggling. Session-free: transaction.c feeds it
 * the client's input and takes the decoded message; what to answer is
 * transaction.c's business.
 *
 * The end of data is only ever CR LF . CR LF: a "." line counts only when
 * the line before it ended in CR LF as well and the dot line itself does.
 * A bare LF or a bare CR anywhere in the content (what smuggling attacks
 * are made of, since other servers read them as line ends) is, per
 * smtpd_forbid_bare_newline: refused (SMTPD_BARE_REJECT), so nothing after
 * it is ever looked at; turned into a line end (SMTPD_BARE_NORMALIZE); or
 * kept as it is (SMTPD_BARE_ALLOW). A NUL byte is only noted: the message
 * is refused at its end (servers downstream drop NULs, which could turn a
 * line "NUL ." into an end of data there). Once the message is too big or
 * has a NUL, the rest is read and dropped.
 */
#ifndef POSTERN_SMTPD_DATA_H
#define POSTERN_SMTPD_DATA_H

#include <stddef.h>

struct evbuffer;

enum smtpd_bare_newline { SMTPD_BARE_REJECT, SMTPD_BARE_NORMALIZE, SMTPD_BARE_ALLOW };

struct smtpd_data {
    enum smtpd_bare_newline bare_newline;
    long long size_limit;      /* message_size_limit; 0 means none */
    int at_line_start, prev_crlf;
    long long size;            /* decoded bytes so far, line ends counted as one */
    long long log_size;        /* as Postfix logs it: each line end as CR LF */
    int too_big;
    int has_nul;
};

enum smtpd_data_status {
    SMTPD_DATA_MORE,      /* in holds no complete piece: wait for input */
    SMTPD_DATA_FULL,      /* out reached its limit: take from it, then go on */
    SMTPD_DATA_END,       /* the end of data was read */
    SMTPD_DATA_BARE_LF,   /* refused (SMTPD_BARE_REJECT) */
    SMTPD_DATA_BARE_CR,
};

void smtpd_data_start(struct smtpd_data *d, enum smtpd_bare_newline bare_newline,
                      long long size_limit);

/* Decode from in into out (LF line ends) until one of the statuses above;
 * out_full is the length of out at which to stop. Adds the bytes taken
 * from in to *taken (they count towards smtpd_min_data_rate). */
enum smtpd_data_status smtpd_data_decode(struct smtpd_data *d, struct evbuffer *in,
                                         struct evbuffer *out, size_t out_full,
                                         long long *taken);

#endif
