/* postalias.c - Postfix's postalias(1) and newaliases: build, query and
 * list alias databases in aliases(5) syntax.
 *
 *   postalias [-prsvwNno] [-c config_dir] [-q key] [type:]file ...
 *
 * With no file, postalias rebuilds every table of alias_database: that is
 * newaliases (and what "sendmail -bi" runs), so this program also answers
 * to the name newaliases. The command line is shared with postmap
 * (lib/table_cmd.h).
 */
#include <string.h>

#include "table_cmd.h"

int main(int argc, char **argv)
{
    const char *slash = strrchr(argv[0], '/');
    const char *name = slash ? slash + 1 : argv[0];

    if (strcmp(name, "newaliases") == 0)
        return table_cmd_main(argc, argv, "newaliases", TABLE_SYNTAX_ALIASES);
    return table_cmd_main(argc, argv, "postalias", TABLE_SYNTAX_ALIASES);
}
