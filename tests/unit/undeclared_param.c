/* undeclared_param.c - must NOT compile (make params-check): it reads a
 * parameter that lib/mail/params.def does not declare, and parameters are
 * fields of `var`, so a misspelt name is a compile error, not a run-time
 * surprise. */
#include "params.h"

long undeclared_param(void)
{
    return var.no_such_parameter;
}
