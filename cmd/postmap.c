/* postmap.c - Postfix's postmap(1): build, query and list lookup tables.
 *
 *   postmap [-prsvwNno] [-c config_dir] [-q key] [type:]file ...
 *
 * "postmap /etc/postern/virtual" writes /etc/postern/virtual.cdb
 * atomically; "postmap -q key cdb:/etc/postern/virtual" answers as a daemon
 * would. The command line is shared with postalias (lib/table_cmd.h).
 */
#include "table_cmd.h"

int main(int argc, char **argv)
{
    return table_cmd_main(argc, argv, "postmap", TABLE_SYNTAX_MAP);
}
