/* receive_override.h - receive_override_options, Postfix's switches that
 * turn off work a receiving service would do again for mail that already
 * had it (the reinjection smtpd after a content filter, typically set
 * with -o in master.cf). The receiving side parses its own setting and
 * sends the bits that concern cleanup as the "flags" of cleanup_protocol's
 * first request; smtpd applies no_unknown_recipient_checks and no_milters
 * itself, cleanup no_address_mappings, no_header_body_checks and
 * no_milters (non_smtpd_milters).
 */
#ifndef POSTERN_RECEIVE_OVERRIDE_H
#define POSTERN_RECEIVE_OVERRIDE_H

#define RECEIVE_NO_UNKNOWN_RCPT_CHECKS 0x01
#define RECEIVE_NO_ADDRESS_MAPPINGS 0x02
#define RECEIVE_NO_HEADER_BODY_CHECKS 0x04
#define RECEIVE_NO_MILTERS 0x08

/* The bits of a receive_override_options value; an unknown word is
 * warned about (naming the parameter) and ignored, as Postfix does. */
unsigned receive_override_parse(const char *value);
/* var.receive_override_options of this process, parsed once. */
unsigned receive_override_mask(void);

#endif
