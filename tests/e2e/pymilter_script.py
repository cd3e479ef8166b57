#!/usr/bin/python3
"""A milter on Sendmail's libmilter (python3-milter), scripted by the mail
it gets, for test_milter_pymilter.py. Usage: pymilter_script.py SOCKET RECORD
[rcpt_rej] (rcpt_rej: it asks to hear rejected recipients, SMFIP_RCPT_REJ)

What it does is chosen by the envelope and the message:
  sender  mail-reject@ / mail-tempfail@ / mail-reply@ / mail-accept@
  rcpt    rcpt-reject@ / rcpt-tempfail@ / rcpt-discard@ / rcpt-ml@
          data-tempfail@ (then DATA is refused)
  header  X-Milter-Do: ACTION [ACTION...] at the end of the message:
          add-header insert-header change-header delete-header add-rcpt
          add-rcpt-par del-rcpt change-from replace-body quarantine
          reject tempfail discard reply accept skip progress
  command XPYMILTER (an unknown command): refused with its own reply
Every callback appends a JSON line to RECORD: the stage, the connection
(a number; sessions run at once interleave their lines), its arguments,
and the value of each macro it asks libmilter for (None when not sent);
RECORD "-" records nothing (the crash storm's thousands of messages).
"""

import itertools
import json
import sys
import time

import Milter

MACROS = ["i", "j", "_", "v", "{daemon_name}", "{daemon_addr}", "{daemon_port}", "{client_connections}", "{client_addr}",
          "{client_name}", "{client_port}", "{client_ptr}", "{client_resolve}",
          "{auth_type}", "{auth_authen}", "{auth_author}", "{mail_addr}", "{mail_host}",
          "{mail_mailer}", "{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}", "{tls_version}",
          "{cipher}", "{cipher_bits}", "{cert_subject}", "{cert_issuer}"]

RECORD = None
CONNECTIONS = itertools.count(1)   # "conn" of a record: which milter connection


def record(stage, ctx, **args):
    if RECORD is None:
        return
    macros = {}
    for name in MACROS:
        try:
            macros[name] = ctx.getsymval(name)
        except Exception:   # noqa: BLE001 - libmilter refuses some at some stages
            macros[name] = None
    with open(RECORD, "a") as f:
        f.write(json.dumps({"stage": stage, "conn": ctx.conn, "args": args,
                            "macros": macros}) + "\n")


def local_part(addr):
    return addr.strip("<>").split("@", 1)[0].lower()


class Script(Milter.Base):
    def __init__(self):
        self.conn = next(CONNECTIONS)
        self.orders = []
        self.rcpts = []
        self.chunks = 0

    def connect(self, hostname, family, hostaddr):
        record("connect", self, hostname=hostname, hostaddr=list(hostaddr) if hostaddr else None)
        return Milter.CONTINUE

    def hello(self, heloname):
        record("helo", self, helo=heloname)
        return Milter.CONTINUE

    def envfrom(self, sender, *params):
        record("mail", self, sender=sender, params=list(params))
        self.orders, self.rcpts, self.chunks = [], [], 0
        what = local_part(sender)
        if what == "mail-reject":
            return Milter.REJECT
        if what == "mail-tempfail":
            return Milter.TEMPFAIL
        if what == "mail-reply":
            self.setreply("551", "5.7.1", "Sender refused by pymilter")
            return Milter.REJECT
        if what == "mail-accept":
            return Milter.ACCEPT
        return Milter.CONTINUE

    def envrcpt(self, rcpt, *params):
        record("rcpt", self, rcpt=rcpt, params=list(params))
        what = local_part(rcpt)
        if what == "rcpt-reject":
            return Milter.REJECT
        if what == "rcpt-tempfail":
            return Milter.TEMPFAIL
        if what == "rcpt-discard":
            return Milter.DISCARD
        if what == "rcpt-ml":
            self.setreply("550", "5.7.1", "first line", "second line", "third line")
            return Milter.REJECT
        self.rcpts.append(what)
        return Milter.CONTINUE

    def data(self):
        record("data", self)
        if "data-tempfail" in self.rcpts:
            return Milter.TEMPFAIL
        return Milter.CONTINUE

    def header(self, name, value):
        record("header", self, name=name, value=value)
        if name.lower() == "x-milter-do":
            self.orders += value.split()
        return Milter.CONTINUE

    def eoh(self):
        record("eoh", self)
        return Milter.CONTINUE

    def body(self, chunk):
        self.chunks += 1
        record("body", self, size=len(chunk), head=chunk[:40].decode("latin-1"))
        if "skip" in self.orders:
            return Milter.SKIP
        return Milter.CONTINUE

    def unknown(self, cmd):
        record("unknown", self, cmd=cmd.decode("latin-1") if isinstance(cmd, bytes) else cmd)
        if cmd.upper().startswith("XPYMILTER" if isinstance(cmd, str) else b"XPYMILTER"):
            self.setreply("550", "5.5.1", "pymilter does not know that")
            return Milter.REJECT
        return Milter.CONTINUE

    def eom(self):
        record("eom", self, orders=self.orders, chunks=self.chunks)
        return self.act()

    def act(self):
        o = self.orders
        if "progress" in o:
            for _ in range(4):   # longer than the MTA's content timeout, in steps
                time.sleep(1)
                self.progress()
        if "add-header" in o:
            self.addheader("X-Pymilter-Added", "appended")
        if "insert-header" in o:
            self.addheader("X-Pymilter-Top", "inserted at 0", 0)
        if "change-header" in o:
            self.chgheader("Subject", 1, "changed by pymilter")
        if "delete-header" in o:
            self.chgheader("X-Delete-Me", 1, "")
        if "add-rcpt" in o:
            self.addrcpt("<bob@localhost>")
        if "add-rcpt-par" in o:
            self.addrcpt("<carol@localhost>", "NOTIFY=NEVER")
        if "del-rcpt" in o:
            self.delrcpt("<dave@localhost>")
        if "change-from" in o:
            self.chgfrom("<changed-sender@example.net>")
        if "replace-body" in o:
            self.replacebody(b"The body pymilter wrote.\r\n")
            self.replacebody(b"Second chunk of it.\r\n")
        if "quarantine" in o:
            self.quarantine("pymilter says hold it")
        if "reject" in o:
            return Milter.REJECT
        if "tempfail" in o:
            return Milter.TEMPFAIL
        if "discard" in o:
            return Milter.DISCARD
        if "reply" in o:
            self.setreply("554", "5.7.1", "Rejected by pymilter", "for the test")
            return Milter.REJECT
        if "accept" in o:
            return Milter.ACCEPT
        return Milter.CONTINUE

    def abort(self):
        record("abort", self)
        return Milter.CONTINUE

    def close(self):
        record("close", self)
        return Milter.CONTINUE


def main():
    global RECORD
    socket, RECORD = sys.argv[1], (None if sys.argv[2] == "-" else sys.argv[2])
    Milter.factory = Script
    if sys.argv[3:] == ["rcpt_rej"]:
        Milter.factory = Milter.rejected_recipients(Script)
    Milter.set_flags(Milter.CURR_ACTS)
    Milter.runmilter("pymilter-script", socket, 240)


if __name__ == "__main__":
    main()
