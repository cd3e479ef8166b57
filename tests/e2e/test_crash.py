"""Crashes: kill -9 of smtpd in the middle of DATA leaves no queue file and
master restarts smtpd; kill -9 of qmgr while mail waits in incoming/ loses
nothing and delivers nothing twice."""

import collections
import os
import re
import signal
import time

from postern_instance import HELO, SENDER, RawSMTP, simple_message, wait_until

TEST_ID_RE = re.compile(rb"\nX-Test-Id: (\S+)\n")


def master_warned_killed(instance, program, pid, timeout=10):
    return instance.wait_log(
        rf"^warning: process \S*{program} pid {pid} killed by signal 9$", program="master",
        timeout=timeout)


def test_kill_smtpd_mid_data(instance):
    with RawSMTP(instance.port) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        assert c.cmd(f"MAIL FROM:<{SENDER}>") == (250, ["2.1.0 Ok"])
        assert c.cmd("RCPT TO:<alice@localhost>") == (250, ["2.1.5 Ok"])
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: partial\r\nX-Test-Id: partial\r\n\r\nthe first part of the body\r\n")
        time.sleep(0.5)   # let smtpd pass what it has to cleanup

        victims = instance.pids("smtpd")
        assert victims, "no smtpd process of the instance found"
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not any(p in instance.pids("smtpd") for p in victims), 5,
                   what="the killed smtpd to be gone")

    for pid in victims:
        master_warned_killed(instance, "smtpd", pid)
    # cleanup sees its client vanish and throws the incomplete file away.
    instance.wait_queue_empty(10)

    # A new connection gets a new smtpd and mail flows again.
    qid = instance.send(simple_message(subject="after crash", test_id="after-crash"))
    files = instance.wait_delivered("alice", 1)
    new_smtpd = instance.pids("smtpd")
    assert new_smtpd and not set(new_smtpd) & set(victims), (new_smtpd, victims)
    instance.wait_log(rf"^{qid}: removed$", program="qmgr")
    time.sleep(0.5)
    files = instance.delivered("alice")
    assert len(files) == 1, files
    data = files[0].read_bytes()
    assert b"X-Test-Id: after-crash\n" in data
    assert b"partial" not in data
    instance.wait_queue_empty(10)


def test_kill_qmgr_with_mail_queued(instance):
    # Warm up so that the whole chain, qmgr included, is known to run.
    instance.send(simple_message(subject="warm-up"), ["warmup@localhost"])
    instance.wait_delivered("warmup", 1)
    qmgr = instance.wait_pids("qmgr")
    assert len(qmgr) == 1, qmgr
    qpid = qmgr[0]

    os.kill(qpid, signal.SIGSTOP)
    try:
        ids = [f"queued-{i:02d}" for i in range(20)]
        qids = [instance.send(simple_message(subject=t, test_id=t), ["bob@localhost"])
                for t in ids]
        incoming = [p.name for p in (instance.queue / "incoming").iterdir()]
        assert sorted(incoming) == sorted(qids), (incoming, qids)
        time.sleep(0.5)
        assert instance.delivered("bob") == [], "delivered while qmgr was stopped"
    finally:
        os.kill(qpid, signal.SIGKILL)   # works on a stopped process too

    master_warned_killed(instance, "qmgr", qpid)
    new_qmgr = instance.wait_pids("qmgr", exclude=[qpid], timeout=15)
    assert qpid not in new_qmgr

    instance.wait_delivered("bob", 20, timeout=60)
    instance.wait_queue_empty(30)
    time.sleep(1)   # a second delivery of anything would show up now
    seen = collections.Counter()
    for path in instance.delivered("bob"):
        m = TEST_ID_RE.search(path.read_bytes())
        assert m, path
        seen[m[1].decode()] += 1
    assert seen == collections.Counter(ids), seen
    for qid in qids:
        assert len(instance.find_log(rf"^{qid}: removed$", program="qmgr")) == 1, qid
