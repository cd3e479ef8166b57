/* mail_date.h - the date of mail headers (Date:, Received:, DSN fields) in
 * RFC 5322 form with the zone name as a comment, as Postfix writes them:
 * "Mon, 7 Dec 2026 10:33:39 +0000 (UTC)". One formatter for smtpd, pickup,
 * cleanup and bounce, so every header carries the same form.
 */
#ifndef POSTERN_MAIL_DATE_H
#define POSTERN_MAIL_DATE_H

#include <stddef.h>
#include <time.h>

/* Local time of when into buf; 64 bytes always suffice. */
void mail_date(char *buf, size_t len, time_t when);

#endif
