"""Queue manager scheduling (issue 5, qmgr half): temporary failures go to
deferred/ with a back-off, are retried on schedule or on flush, and are
delivered once the fault is gone; mail no transport can take waits in
deferred/ while other mail keeps flowing.
"""

import os
import time

from postern_instance import simple_message, wait_until

FAST_RETRY = ["minimal_backoff_time = 1s", "maximal_backoff_time = 2s", "queue_run_delay = 1s"]


def deferred_files(inst):
    out = []
    for dirpath, _dirs, files in os.walk(inst.queue / "deferred"):
        out.extend(files)
    return out


def block_mailbox(inst, user):
    """A plain file where the user's Maildir should be: local cannot create
    the Maildir and must defer (4.x.x), never bounce or lose the message."""
    inst.mail.mkdir(exist_ok=True)
    (inst.mail / user).write_text("not a directory\n")


def test_temporary_failure_is_deferred_then_retried_and_delivered(make_instance):
    inst = make_instance(extra_main=FAST_RETRY)
    block_mailbox(inst, "alice")
    qid = inst.send(simple_message(subject="retry me"))
    inst.wait_log(rf"^{qid}: to=<alice@localhost>, relay=local, .*status=deferred \(")
    wait_until(lambda: qid in deferred_files(inst), 10, what="the message in deferred/")
    # The message waits for its retry time (mtime) in deferred/.
    path = next(p for p in inst.queue_files() if p.name == qid)
    assert path.stat().st_mtime > time.time() - 1
    (inst.mail / "alice").unlink()
    files = inst.wait_delivered("alice", 1, timeout=20)
    assert b"Subject: retry me\n" in files[0].read_bytes()
    inst.wait_queue_empty(10)
    texts = [l.text for l in inst.log_lines() if l.text.startswith(qid + ": to=<alice@localhost>")]
    assert "status=deferred" in texts[0] and "status=sent (delivered to maildir)" in texts[-1], texts
    # qmgr logs "removed" just after the file is gone: wait for the line.
    assert len(inst.wait_log(rf"^{qid}: removed$", "qmgr")) == 1


def test_back_off_waits_until_flush(make_instance):
    inst = make_instance(extra_main=["minimal_backoff_time = 300s", "maximal_backoff_time = 600s",
                                     "queue_run_delay = 1s"])
    block_mailbox(inst, "alice")
    qid = inst.send(simple_message(subject="flush me"))
    wait_until(lambda: qid in deferred_files(inst), 10, what="the message in deferred/")
    (inst.mail / "alice").unlink()
    # Not due for 300 s: a few queue runs pass without a new attempt.
    time.sleep(2.5)
    assert inst.delivered("alice") == []
    assert len(inst.find_log(rf"^{qid}: to=<alice@localhost>")) == 1
    rc, out = inst.postern("flush")
    assert rc == 0, out
    inst.wait_delivered("alice", 1, timeout=10)
    inst.wait_queue_empty(10)


def test_mail_without_a_transport_waits_while_local_mail_flows(make_instance):
    # A master.cf without the smtp service: remote mail from mynetworks is
    # accepted, then deferred until a transport exists.
    instance = make_instance(master_cf=None)
    instance.stop()
    instance.write_master_cf(
        f"127.0.0.1:{instance.port} inet n - n - - smtpd\n"
        "cleanup unix - - n - 0 cleanup\n"
        "qmgr fifo n - n 300 1 qmgr\n"
        "local unix - n n - - local\n"
        "bounce unix - - n - 0 bounce\n")
    instance.start()
    remote = instance.send(simple_message(subject="for far away"), rcpts=["bob@example.com"])
    instance.wait_log(rf"^{remote}: to=<bob@example.com>, relay=none, .*dsn=4\.3\.0, "
                      r"status=deferred \(mail transport unavailable\)")
    for n in range(5):
        instance.send(simple_message(subject=f"local {n}"))
    instance.wait_delivered("alice", 5)
    wait_until(lambda: deferred_files(instance) == [remote], 10, what="only the remote one deferred")


def test_recipients_of_one_message_are_delivered_and_marked_in_place(instance):
    rcpts = [f"user{n}@localhost" for n in range(5)]
    qid = instance.send(simple_message(subject="five"), rcpts=rcpts)
    for r in rcpts:
        instance.wait_delivered(r.split("@")[0], 1)
    instance.wait_log(rf"^{qid}: removed$", "qmgr")
    assert len(instance.find_log(rf"^{qid}: to=<user\d@localhost>.*status=sent")) == 5
    instance.wait_queue_empty(10)


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


# qmgr keeps at most qmgr_message_active_limit messages in memory; with
# 1,000 active its peak RSS must stay under this bound (measured 3 MB).
QMGR_RSS_BOUND_KB = 48 * 1024


def test_ten_thousand_deferring_messages_bounded_memory_and_others_flow(make_instance):
    import subprocess
    inst = make_instance(extra_main=["qmgr_message_active_limit = 1000",
                                     "minimal_backoff_time = 300s", "queue_run_delay = 300s"])
    block_mailbox(inst, "alice")
    [qmgr] = inst.wait_pids("qmgr")
    source = subprocess.Popen(
        ["smtp-source", "-s", "20", "-m", "10000", "-l", "512", "-f", "sender@example.org",
         "-t", "alice@localhost", f"127.0.0.1:{inst.port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # While alice's backlog is being worked through, bob's mail flows.
        time.sleep(1.0)
        for n in range(20):
            inst.send(simple_message(subject=f"bob {n}"), rcpts=["bob@localhost"])
        inst.wait_delivered("bob", 20, timeout=60)
        out, _ = source.communicate(timeout=240)
        assert source.returncode == 0, out
    finally:
        if source.poll() is None:
            source.kill()
    wait_until(lambda: len(deferred_files(inst)) == 10000, 240, interval=0.5,
               what="all 10,000 messages deferred")
    assert list((inst.queue / "incoming").iterdir()) == []
    peak = status_kb(qmgr, "VmHWM")
    print(f"qmgr peak RSS {peak} kB with 10,000 deferred messages")
    assert peak < QMGR_RSS_BOUND_KB, peak
    assert (inst.mail / "alice").read_text() == "not a directory\n"
    assert not inst.find_log(r"to=<alice@localhost>.*status=sent")


def test_error_and_retry_routes_are_logged_with_their_status(make_instance):
    inst = make_instance(extra_main=[
        "transport_maps = inline:{ { gone.example = error:5.1.1 no such domain here }, "
        "{ later.example = retry:try again later } }"])
    gone = inst.send(simple_message(subject="gone"), rcpts=["x@gone.example"])
    later = inst.send(simple_message(subject="later"), rcpts=["y@later.example"])
    inst.wait_log(rf"^{gone}: to=<x@gone.example>, relay=none, .*dsn=5\.1\.1, "
                  r"status=bounced \(no such domain here\)$")
    inst.wait_log(rf"^{later}: to=<y@later.example>, relay=none, .*dsn=4\.3\.0, "
                  r"status=deferred \(try again later\)$")
    wait_until(lambda: later in deferred_files(inst), 10, what="the retry: message deferred")


def test_delay_warning_sent_once_while_mail_stays_queued(make_instance):
    import email
    inst = make_instance(extra_main=FAST_RETRY + ["delay_warning_time = 1s"])
    block_mailbox(inst, "alice")
    qid = inst.send(simple_message(subject="slow one"), sender="carol@localhost")
    warnings = inst.wait_delivered("carol", 1, timeout=30)
    report = email.message_from_bytes(warnings[0].read_bytes())
    assert report.get_content_type() == "multipart/report", report.get_content_type()
    status = [p for p in report.walk() if p.get_content_type() == "message/delivery-status"]
    assert status, [p.get_content_type() for p in report.walk()]
    text = status[0].as_string()
    assert "Action: delayed" in text and "alice@localhost" in text, text
    # The message itself stays queued, and the warning is sent only once
    # even though several more attempts fail.
    assert qid in deferred_files(inst) or any(p.name == qid for p in inst.queue_files())
    inst.wait_log(rf"^{qid}: to=<alice@localhost>.*status=deferred", count=3, timeout=30)
    assert len(inst.delivered("carol")) == 1
    (inst.mail / "alice").unlink()
    inst.wait_delivered("alice", 1, timeout=20)


def nice_of(pid):
    """The nice value of a process (field 19 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[16])


def test_qmgr_runs_above_the_other_daemons(instance):
    """master starts qmgr at nice -5 when it may (root): the one serial
    stage of delivery; the other daemons keep master's priority."""
    [qmgr] = instance.wait_pids("qmgr")
    smtpds = instance.wait_pids("smtpd")
    expected = -5 if os.geteuid() == 0 else nice_of(os.getpid())
    assert nice_of(qmgr) == expected
    assert all(nice_of(smtpd) == nice_of(os.getpid()) for smtpd in smtpds)
