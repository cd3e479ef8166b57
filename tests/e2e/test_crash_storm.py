"""The crash storm (issue #24, item 4; docs/DESIGN.md, "Durability"): ten
clients send uniquely tagged messages that go, a third each, to three
destinations at once:

  local  u0..u4@localhost, the instance's own Maildirs (local);
  lmtp   alice/bob/carol@example.com, virtual_transport to the session's
         private Dovecot over LMTP (dovecot_fixture.py);
  relay  x@relay.example, transport_maps to smtp:[127.0.0.1]:PORT, a
         recording aiosmtpd server (smtp_peers.Receiver) that keeps every
         message with the time it arrived;

through the real libmilter milter (pymilter_script.py), which adds
"X-Pymilter-Added: appended" to each (X-Milter-Do: add-header), and a
policy service (check_policy_service, policy_peers.PolicyServer) that
answers every RCPT with PREPEND X-Policy-Seen: yes, while a
random daemon of the instance is SIGKILLed every 0.1 s; then the whole
instance is killed at once and started cold.

It asserts: every acknowledged (250) message is delivered, to its own
destination, with the milter's and the policy service's headers; nothing is delivered that was
never sent; nothing lands in corrupt/; a message is delivered twice only
where a kill explains it (reliability_common.explain_duplicates): the
delivery agent that wrote the first copy died before qmgr heard of it
(the Maildir name's pid was killed, or qmgr logged the agent's death
while it held the queue file: for the relay sink, a remote-side delivery
interrupted), or the whole instance was killed between the copies (the
agent with it; with the instance still delivering when it is killed, an
LMTP delivery Dovecot has saved but not yet answered is one); a qmgr
killed between the copies explains none (agents mark their deliveries
done themselves), so there must be no such duplicate. The counts are printed (pytest -s shows them; a failure always does).

The suite runs POSTERN_STORM_MESSAGES messages (default 1000, tens of
seconds); `make crash-storm` runs the issue's 5,000.
"""

import os
import secrets
import time

import pytest

from milter_peers import PyMilter
from policy_peers import PolicyServer
from reliability_common import (FAST_RETRY, Killer, MaildirStore, SinkStore, TaggedLoad,
                                explain_duplicates, kill_instance_now, queue_state, report,
                                wait_all_delivered)
from smtp_peers import Receiver

MESSAGES = int(os.environ.get("POSTERN_STORM_MESSAGES", "1000"))
CLIENTS = 10
KILL_EVERY = 0.1

DESTINATIONS = ("local", "lmtp", "relay")
LOCAL_USERS = ("u0", "u1", "u2", "u3", "u4")
LMTP_USERS = ("alice@example.com", "bob@example.com", "carol@example.com")
RELAY_DOMAIN = "relay.example"
MILTER_ORDER = "X-Milter-Do: add-header"
MILTER_MARK = b"\nX-Pymilter-Added: appended\n"
POLICY_MARK = b"\nX-Policy-Seen: yes\n"


def destination(tag):
    return DESTINATIONS[int(tag.rsplit("-", 1)[1]) % len(DESTINATIONS)]


def rcpt_for(tag):
    n = int(tag.rsplit("-", 1)[1]) // len(DESTINATIONS)
    where = destination(tag)
    if where == "local":
        return f"{LOCAL_USERS[n % len(LOCAL_USERS)]}@localhost"
    if where == "lmtp":
        return LMTP_USERS[n % len(LMTP_USERS)]
    return f"r{n % 7}@{RELAY_DOMAIN}"


def milter_passed(head):
    """Whether the milter's and the policy service's headers are among the
    message's headers."""
    text = b"\n" + head.replace(b"\r\n", b"\n")
    headers = text.split(b"\n\n", 1)[0] + b"\n"
    return MILTER_MARK in headers and POLICY_MARK in headers


@pytest.fixture(scope="module")
def policy():
    srv = PolicyServer(lambda req: "PREPEND " + POLICY_MARK.strip().decode())
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def milter():
    m = PyMilter(record=False)
    yield m
    print(m.log_text()[-2000:])
    m.close()


@pytest.fixture
def sink():
    r = Receiver("127.0.0.1").start()
    yield r
    r.stop()


def storm_main_cf(dovecot, milter, sink, policy):
    return [
        *FAST_RETRY,
        f"smtpd_milters = {milter.spec}",
        "virtual_mailbox_domains = example.com",
        "virtual_mailbox_maps = inline:{ " + ", ".join(f"{u}=x" for u in LMTP_USERS) + " }",
        f"virtual_transport = lmtp:inet:127.0.0.1:{dovecot.lmtp_port}",
        f"transport_maps = inline:{{ {RELAY_DOMAIN}=smtp:[127.0.0.1]:{sink.port} }}",
        # Before permit_mynetworks: every client is 127.0.0.1.
        f"smtpd_recipient_restrictions = check_policy_service {policy.endpoint}, "
        "permit_mynetworks, reject_unauth_destination",
    ]


def storm_instance(make_instance, dovecot, milter, sink, policy):
    inst = make_instance(extra_main=storm_main_cf(dovecot, milter, sink, policy), start=False)
    with open(inst.etc / "master.cf", "a") as f:
        f.write("lmtp unix - - n - - lmtp\n")
    inst.start()
    return inst


def stores(inst, dovecot, sink, prefix):
    return [MaildirStore("local", inst.mail, check=milter_passed),
            # new/ and cur/ of each user of each domain, never tmp/.
            MaildirStore("lmtp", dovecot.mail, "*/*/[nc][eu][wr]/*", prefix=prefix,
                         check=milter_passed, own_pids=False),
            SinkStore("relay", sink, check=milter_passed)]


def by_destination(tags):
    counts = dict.fromkeys(DESTINATIONS, 0)
    for t in tags:
        counts[destination(t)] += 1
    return counts


def kills_near(kill_log, copies):
    """The kills from 2 s before the first copy to the last, to name in a
    failure."""
    return [(round(t, 3), name, pid) for t, name, pid in kill_log
            if copies[0][0] - 2 <= t <= copies[-1][0]]


def test_crash_storm(make_instance, dovecot, milter, sink, policy):
    inst = storm_instance(make_instance, dovecot, milter, sink, policy)
    prefix = f"storm{secrets.token_hex(3)}"   # the session's Dovecot keeps other runs' mail
    started = time.monotonic()
    load = TaggedLoad(inst.port, total=MESSAGES, conns=CLIENTS, prefix=prefix,
                      deadline=max(60, MESSAGES / 15), rcpt_for=rcpt_for,
                      headers=(MILTER_ORDER,), fresh_after_refusal=True).start()
    time.sleep(1.5)    # every daemon up and past its start-up grace
    killer = Killer(inst, lo=KILL_EVERY, hi=KILL_EVERY, min_age=0.5, seed=24).start()
    try:
        load.join(90 + MESSAGES / 15)
    finally:
        killer.stop()
        load.stop()
    sending = time.monotonic() - started
    kills = killer.kills
    kill_instance_now(inst, killer.log)
    kills["all"] += 1
    inst.start()

    acked = list(load.acked)
    deliveries, untagged, where = wait_all_delivered(
        inst, acked, timeout=120, stores=stores(inst, dovecot, sink, prefix))
    total_time = time.monotonic() - started
    why = explain_duplicates(deliveries, killer.log, inst.log_lines())
    dups = {d: {"agent": 0, "all": 0, "qmgr": 0, "unexplained": 0} for d in DESTINATIONS}
    for tag, w in why.items():
        dups[destination(tag)][w or "unexplained"] += 1
    state = queue_state(inst)
    report("crash storm", messages=MESSAGES, clients=CLIENTS, sent=len(load.tried),
           acknowledged=by_destination(acked),
           delivered=by_destination(t for t in acked if deliveries.get(t)),
           delivered_unacknowledged=len([t for t in deliveries if t not in load.acked]),
           duplicates=dups, kills=dict(kills), failures=dict(load.failures),
           corrupt=len(state["corrupt"]), sending_s=round(sending, 1),
           total_s=round(total_time, 1))

    assert sum(kills.values()) >= 30, f"too few kills to mean anything: {dict(kills)}"
    for daemon in ("smtpd", "cleanup", "qmgr", "local", "remote", "lmtp"):
        assert kills[daemon] > 0, f"{daemon} was never killed: {dict(kills)}"
    # A loaded machine may end the sending at its deadline: half of what
    # was tried, not of MESSAGES.
    assert len(acked) >= len(load.tried) // 2, (len(acked), load.failures)
    assert state["corrupt"] == [], f"crashes produced corrupt files: {state['corrupt']}"
    assert untagged == {"local": 0, "lmtp": 0, "relay": 0}, f"untagged deliveries: {untagged}"
    tried = set(load.tried)
    assert not [t for t in deliveries if t not in tried], "delivered a tag never sent"
    astray = {t: w for t, w in where.items() if w != destination(t)}
    assert not astray, f"delivered to the wrong destination: {list(astray.items())[:10]}"
    no_milter = [t for t, copies in deliveries.items() if not all(c[2] for c in copies)]
    assert not no_milter, f"delivered without the milter's header: {no_milter[:10]}"
    unexplained = {t: (deliveries[t], kills_near(killer.log, deliveries[t]))
                   for t, w in why.items() if w is None}
    assert not unexplained, f"duplicates no kill explains (copies, kills near): {unexplained}"
    # A qmgr killed mid-delivery costs no second copy: its agents mark what
    # they delivered done themselves, and the next qmgr leaves the files
    # they still hold alone until they let go (docs/DESIGN.md, Durability).
    by_qmgr = {t: (deliveries[t], kills_near(killer.log, deliveries[t]))
               for t, w in why.items() if w == "qmgr"}
    assert not by_qmgr, f"duplicates after a qmgr kill (copies, kills near): {list(by_qmgr.items())[:5]}"
