/* table_cmd.h - the command line that postmap and postalias share
 * (Postfix's postmap(1) and postalias(1)):
 *
 *   postmap   [-prsvwNno] [-c config_dir] [-q key] [type:]file ...
 *   postalias [-prsvwNno] [-c config_dir] [-q key] [type:]file ...
 *
 * Without -q or -s each file is rebuilt into file.cdb (table_file.h);
 * only cdb:, hash: and btree: (all written as cdb) can be built, a file
 * without a type is cdb. -q key prints the first value found in the
 * tables, in order (exit 0), or nothing (exit 1); "-q -" reads one key per
 * line from stdin and prints "key<TAB>value" for each key found. -s lists
 * every entry as "key<TAB>value". postalias writes "key:<TAB>value" in
 * both listings and parses aliases(5) syntax; run with no table it works
 * on alias_database (rebuild, -s) or alias_maps (-q), which is what
 * newaliases and "sendmail -bi" mean. Any error is fatal (exit 1).
 */
#ifndef POSTERN_TABLE_CMD_H
#define POSTERN_TABLE_CMD_H

#include "table_file.h"

/* Run the command; returns the exit status. */
int table_cmd_main(int argc, char **argv, const char *progname, enum table_syntax syntax);

#endif
