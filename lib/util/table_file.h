/* table_file.h - the files behind cdb: and texthash: tables (hash: and btree: are read
 * as cdb:, see lookup.h): parsing a table's text source, writing
 * SOURCE.cdb atomically, and listing a .cdb. postmap and postalias are thin
 * command lines over this; daemons only ever read tables through lookup.h.
 *
 * Source syntax (postmap(1), aliases(5)): '#' comment lines and blank
 * lines are ignored; a line starting with white space continues the
 * previous logical line. A map line is `key whitespace value` (the key may
 * be "double quoted" with \" and \\ inside); an alias line is
 * `name: value` (the name may be double quoted). Keys are folded to lower
 * case, as lookup_get folds the keys it is asked for.
 *
 * The build is atomic: the entries go to a temporary file in the same
 * directory, which is fsynced and renamed over SOURCE.cdb, and the
 * directory is fsynced; a reader sees the old table or the new one, never
 * a mixture, and a crash leaves the old one in place.
 */
#ifndef POSTERN_TABLE_FILE_H
#define POSTERN_TABLE_FILE_H

#include <stddef.h>

enum table_syntax { TABLE_SYNTAX_MAP, TABLE_SYNTAX_ALIASES };

/* A key that appears twice: warn and keep the first (Postfix's default),
 * keep the last silently (-r), or keep the first silently (-w). */
enum table_dups { TABLE_DUPS_WARN, TABLE_DUPS_REPLACE, TABLE_DUPS_IGNORE };

#define TABLE_LINE_MAX (1 << 20)   /* bytes in one logical source line */

/* Build source.cdb from the text file source. The new file gets the
 * source's group and other read bits (mode 0644 when default_mode is set),
 * and, when we run as root, the source's owner. Syntax problems in a line
 * are warned about (file and line) and the line skipped. Returns the
 * number of entries written, or -1 with a reason in err (nothing changed). */
long table_file_build(const char *source, enum table_syntax syntax, enum table_dups dups,
                      int default_mode, char *err, size_t errlen);

/* Call fn for every entry of the cdb file path, in file order; a nonzero
 * return from fn stops the walk and is returned. -1 with err when the file
 * cannot be read. */
typedef int (*table_dump_fn)(const char *key, const char *value, void *ctx);
int table_file_dump(const char *path, table_dump_fn fn, void *ctx, char *err, size_t errlen);

/* Call fn for every entry of the text file source (the syntax above,
 * keys folded), in file order; bad lines are warned about and skipped, as
 * by table_file_build. A nonzero return from fn stops the walk. Returns
 * the number of entries passed to fn, or -1 with err (texthash:). */
long table_file_read(const char *source, enum table_syntax syntax, table_dump_fn fn, void *ctx,
                     char *err, size_t errlen);

/* For a fatal-error hook: remove the temporary file of a build in progress. */
void table_file_cleanup(void);

#endif
