"""Where remote sends mail besides the recipient's MX, and how it presents
itself there:

per sender     sender_dependent_relayhost_maps picks each sender's relay and
               smtp_sender_dependent_authentication its credentials (two
               senders, two authenticating relays, each seeing only its
               own user; a third sender falls back to relayhost)
transport      sender_dependent_default_transport_maps picks a master.cf
               transport whose -o smtp_helo_name the server sees
fallback       smtp_fallback_relay takes the mail when the relayhost is
               down, or when the destination cannot be resolved
bind           smtp_bind_address is the connection's source address
"""

import re

import pytest

from postern_instance import simple_message
from smtp_peers import Receiver, free_port_on, make_cert
from tables_fixture import cdb_table


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_cert(tmp_path_factory.mktemp("relays"), "relay.test")


@pytest.fixture
def receiver():
    made = []

    def start(*args, **kwargs):
        r = Receiver(*args, **kwargs).start()
        made.append(r)
        return r

    yield start
    for r in made:
        r.stop()


def delivery(inst, qid, rcpt, timeout=30):
    rx = rf"^{qid}: to=<{re.escape(rcpt)}>, relay=(\S+), .*dsn=(\S+), status=(\w+) \((.*)\)$"
    line = inst.wait_log(rx, program="smtp", timeout=timeout)[0]
    return re.match(rx, line.text).groups()


def test_relay_and_credentials_by_sender(make_instance, receiver, cert):
    one = receiver("127.0.0.31", tls=cert[1:], users={"user-one": "pw-one"})
    two = receiver("127.0.0.32", tls=cert[1:], users={"user-two": "pw-two"})
    default = receiver("127.0.0.33")
    inst = make_instance(start=False)
    relays = cdb_table(inst, "sender_relay", [f"a@one.example [127.0.0.31]:{one.port}",
                                              f"@two.example [127.0.0.32]:{two.port}"])
    passwords = cdb_table(inst, "sasl_passwd", ["a@one.example user-one:pw-one",
                                                "@two.example user-two:pw-two"])
    inst.append_main_cf(f"sender_dependent_relayhost_maps = {relays}",
                        f"relayhost = [127.0.0.33]:{default.port}",
                        "smtp_sasl_auth_enable = yes", f"smtp_sasl_password_maps = {passwords}",
                        "smtp_sender_dependent_authentication = yes",
                        "smtp_sasl_tls_security_options = noanonymous",
                        "smtp_tls_security_level = may")
    inst.start()
    q1 = inst.send(simple_message("from one"), rcpts=["x@far.example"], sender="a@one.example")
    q2 = inst.send(simple_message("from two"), rcpts=["y@far.example"], sender="b@two.example")
    q3 = inst.send(simple_message("from three"), rcpts=["z@far.example"],
                   sender="c@three.example")
    assert delivery(inst, q1, "x@far.example")[0] == f"127.0.0.31[127.0.0.31]:{one.port}"
    assert delivery(inst, q2, "y@far.example")[0] == f"127.0.0.32[127.0.0.32]:{two.port}"
    assert delivery(inst, q3, "z@far.example")[0] == f"127.0.0.33[127.0.0.33]:{default.port}"
    m1, m2, m3 = one.wait_messages(1)[0], two.wait_messages(1)[0], default.wait_messages(1)[0]
    assert (m1["mail_from"], m1["auth_user"]) == ("a@one.example", "user-one")
    assert (m2["mail_from"], m2["auth_user"]) == ("b@two.example", "user-two")
    assert (m3["mail_from"], m3["auth_user"]) == ("c@three.example", None)
    assert [(a[1], a[3]) for a in one.auth_attempts] == [("user-one", True)]
    assert [(a[1], a[3]) for a in two.auth_attempts] == [("user-two", True)]


def test_default_transport_by_sender_with_its_helo_name(make_instance, receiver):
    alt = receiver("127.0.0.35")
    inst = make_instance(start=False)
    transports = cdb_table(inst, "sender_transport",
                           [f"@alt.example smtp2:[127.0.0.35]:{alt.port}"])
    inst.append_main_cf(f"sender_dependent_default_transport_maps = {transports}")
    master = (inst.etc / "master.cf").read_text()
    (inst.etc / "master.cf").write_text(
        master + "smtp2 unix - - n - - remote -o smtp_helo_name=alt-helo.example\n")
    inst.start()
    qid = inst.send(simple_message("alt transport"), rcpts=["r@far.example"],
                    sender="s@alt.example")
    relay, dsn, status, text = delivery(inst, qid, "r@far.example")
    assert (relay, status) == (f"127.0.0.35[127.0.0.35]:{alt.port}", "sent"), text
    msg = alt.wait_messages(1)[0]
    assert msg["helo"] == "alt-helo.example"
    assert inst.find_log(rf"^{qid}: to=<r@far\.example>", program="smtp")


def test_fallback_relay_when_relayhost_is_down(make_instance, receiver):
    down = free_port_on("127.0.0.33")
    backup = receiver("127.0.0.34")
    inst = make_instance(extra_main=[f"relayhost = [127.0.0.33]:{down}",
                                     f"smtp_fallback_relay = [127.0.0.34]:{backup.port}"])
    qid = inst.send(simple_message("fallback"), rcpts=["r@far.example"])
    relay, dsn, status, text = delivery(inst, qid, "r@far.example")
    assert (relay, status) == (f"127.0.0.34[127.0.0.34]:{backup.port}", "sent"), text
    assert backup.wait_messages(1)[0]["rcpt_tos"] == ["r@far.example"]
    assert inst.find_log(rf"^{qid}: connect to 127\.0\.0\.33\[127\.0\.0\.33\]:{down}: "
                         r"Connection refused$", program="smtp")


def test_fallback_relay_when_destination_cannot_be_resolved(make_instance, receiver):
    backup = receiver("127.0.0.34")
    inst = make_instance(extra_main=[f"smtp_fallback_relay = [127.0.0.34]:{backup.port}"])
    qid = inst.send(simple_message("fallback dns"), rcpts=["r@unresolvable.example"])
    relay, dsn, status, text = delivery(inst, qid, "r@unresolvable.example", timeout=60)
    assert (relay, status) == (f"127.0.0.34[127.0.0.34]:{backup.port}", "sent"), text
    assert backup.wait_messages(1)


def test_bind_address(make_instance, receiver):
    rcv = receiver("127.0.0.37")
    inst = make_instance(extra_main=[f"relayhost = [127.0.0.37]:{rcv.port}",
                                     "smtp_bind_address = 127.0.0.36"])
    qid = inst.send(simple_message("bind"), rcpts=["r@far.example"])
    assert delivery(inst, qid, "r@far.example")[2] == "sent"
    assert rcv.wait_messages(1)[0]["peer"][0] == "127.0.0.36"
