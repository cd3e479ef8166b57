/* mail_date.c - RFC 5322 dates for mail headers (mail_date.h). */
#include "mail_date.h"

#include <stdio.h>

void mail_date(char *buf, size_t len, time_t when)
{
    struct tm tm;
    char zone[16];
    localtime_r(&when, &tm);
    strftime(zone, sizeof(zone), "%Z", &tm);
    size_t n = strftime(buf, len, "%a, %d %b %Y %H:%M:%S %z", &tm);
    snprintf(buf + n, len - n, " (%s)", zone);
}
