/* queue_id.c - arrival-ordered, unique queue ids (see queue_id.h). */
#include "queue_id.h"

#include <string.h>

static const char digits62[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#define SEC_DIGITS 6
#define USEC_DIGITS 4
#define TIME_DIGITS (SEC_DIGITS + USEC_DIGITS)

static void put_fixed(char *out, unsigned long long v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        out[i] = digits62[v % 62];
        v /= 62;
    }
}

static int digit_value(char c)
{
    const char *p = c ? strchr(digits62, c) : NULL;
    return p ? (int)(p - digits62) : -1;
}

void queue_id_make(char out[QUEUE_ID_SIZE], const struct timeval *tv, ino_t ino)
{
    put_fixed(out, (unsigned long long)tv->tv_sec, SEC_DIGITS);
    put_fixed(out + SEC_DIGITS, (unsigned long long)tv->tv_usec, USEC_DIGITS);
    char tmp[16];
    int n = 0;
    unsigned long long v = (unsigned long long)ino;
    do {
        tmp[n++] = digits62[v % 62];
        v /= 62;
    } while (v && n < (int)sizeof(tmp));
    int pos = TIME_DIGITS;
    while (n > 0)
        out[pos++] = tmp[--n];
    out[pos] = 0;
}

int queue_id_valid(const char *id)
{
    size_t len = strnlen(id, QUEUE_ID_SIZE);
    if (len <= TIME_DIGITS || len >= QUEUE_ID_SIZE)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (digit_value(id[i]) < 0)
            return 0;
    return 1;
}

int queue_id_time(const char *id, struct timeval *tv)
{
    if (!queue_id_valid(id))
        return -1;
    unsigned long long sec = 0, usec = 0;
    for (int i = 0; i < SEC_DIGITS; i++)
        sec = sec * 62 + (unsigned)digit_value(id[i]);
    for (int i = SEC_DIGITS; i < TIME_DIGITS; i++)
        usec = usec * 62 + (unsigned)digit_value(id[i]);
    if (usec >= 1000000)
        return -1;
    tv->tv_sec = (time_t)sec;
    tv->tv_usec = (suseconds_t)usec;
    return 0;
}
