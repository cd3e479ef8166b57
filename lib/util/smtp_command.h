/* smtp_command.h - the first steps of reading an SMTP command line, shared
 * by smtpd and its fuzz target: splitting the verb from its argument, and
 * finding the path after "FROM:" or "TO:".
 */
#ifndef POSTERN_SMTP_COMMAND_H
#define POSTERN_SMTP_COMMAND_H

/* Split a command line in place: *verb is the line up to the first space
 * (NUL-terminated there), *arg what follows after any spaces ("" when
 * nothing does). Both point into line. */
void smtp_split_command(char *line, char **verb, char **arg);

/* The path after "FROM:" or "TO:" (keyword matched without regard to case,
 * then spaces skipped), pointing into arg; NULL when arg does not start
 * with keyword. */
const char *smtp_path_argument(const char *arg, const char *keyword);

#endif
