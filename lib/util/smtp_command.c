/* smtp_command.c - splitting an SMTP command line (smtp_command.h). The
 * full parsing of paths and ESMTP parameters is smtpd's (smtpd/parse.c).
 */
#include "smtp_command.h"

#include <string.h>
#include <strings.h>

void smtp_split_command(char *line, char **verb, char **arg)
{
    char *p = line;
    while (*p && *p != ' ')
        p++;
    if (*p)
        *p++ = 0;
    while (*p == ' ')
        p++;
    *verb = line;
    *arg = p;
}

const char *smtp_path_argument(const char *arg, const char *keyword)
{
    size_t n = strlen(keyword);
    if (strncasecmp(arg, keyword, n) != 0)
        return NULL;
    arg += n;
    while (*arg == ' ')
        arg++;
    return arg;
}
