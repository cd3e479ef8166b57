"""smtp_generic_maps in the SMTP client, end to end: a message relayed to a
real receiver (aiosmtpd on 127.0.0.2) leaves with its envelope sender,
envelope recipients and sender/recipient headers rewritten, while the
queue file and the local copy keep the local addresses.
"""

from postern_instance import HOSTNAME, rfc2822_now
from smtp_peers import Receiver, free_port_on
from tables_fixture import cdb_table, header_values


def test_generic_maps_rewrite_envelope_and_headers_of_outgoing_mail(make_instance):
    port = free_port_on("127.0.0.2")
    rcv = Receiver("127.0.0.2", port).start()
    try:
        inst = make_instance(start=False)
        generic = cdb_table(inst, "generic", [
            f"joe@{HOSTNAME} joe.public@example.com",
            f"@{HOSTNAME} @example.com",
            "bob@partner.example bob.b@partner.example",
        ])
        inst.append_main_cf(f"smtp_generic_maps = {generic}",
                            f"relayhost = [127.0.0.2]:{port}")
        inst.start()
        msg = "\n".join([
            f"From: Joe <joe@{HOSTNAME}>",
            f"To: bob@partner.example, alice@localhost",
            f"Cc: (the team) team@{HOSTNAME}",
            f"Reply-To: joe@{HOSTNAME}",
            "Subject: outgoing",
            f"Date: {rfc2822_now()}",
            "Message-ID: <generic@client.example>",
        ]) + f"\n\nsent by joe@{HOSTNAME}\n"
        qid = inst.send(msg, ["bob@partner.example", "alice@localhost"],
                        sender=f"joe@{HOSTNAME}")
        [got] = rcv.wait_messages(1)
        assert got["mail_from"] == "joe.public@example.com"
        assert got["rcpt_tos"] == ["bob.b@partner.example"]
        data = got["data"].replace(b"\r\n", b"\n")
        assert header_values(data, "From") == ["Joe <joe.public@example.com>"]
        assert header_values(data, "To") == ["bob.b@partner.example, alice@localhost"]
        assert header_values(data, "Cc") == ["(the team) team@example.com"]
        assert header_values(data, "Reply-To") == ["joe.public@example.com"]
        assert header_values(data, "Message-ID") == ["<generic@client.example>"]
        # The body is not an address header.
        assert data.endswith(f"\n\nsent by joe@{HOSTNAME}\n".encode())
        # Locally everything stays as it was queued.
        [local] = inst.wait_delivered("alice")
        local_data = local.read_bytes()
        assert local_data.startswith(f"Return-Path: <joe@{HOSTNAME}>\n".encode())
        assert header_values(local_data, "From") == [f"Joe <joe@{HOSTNAME}>"]
        inst.wait_log(rf"^{qid}: to=<bob@partner\.example>, relay=127\.0\.0\.2\[127\.0\.0\.2\]"
                      rf":{port}, .*status=sent", program="smtp")
    finally:
        rcv.stop()
