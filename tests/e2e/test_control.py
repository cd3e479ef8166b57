"""`postern status|start|stop|reload`: status tells running (exit 0) from
not running (exit 1), a second start is refused, reload re-reads main.cf,
logs it and keeps mail flowing, and stop leaves no process behind."""

import time

from postern_instance import HOSTNAME, RawSMTP, simple_message, wait_until


def banner(inst):
    with RawSMTP(inst.port, timeout=10) as c:
        code, texts = c.read_reply()
        c.cmd("QUIT")
        return code, texts[0]


def test_status_start_twice_stop(make_instance):
    inst = make_instance(start=False)
    rc, out = inst.postern("status")
    assert rc == 1 and "not running" in out, (rc, out)

    inst.start()
    rc, out = inst.postern("status")
    assert rc == 0 and "running" in out and "not running" not in out, (rc, out)
    masters = inst.master_pids()
    assert len(masters) == 1, inst.describe_live()

    rc, out = inst.postern("start")
    assert rc != 0, f"second start was not refused: {out}"
    time.sleep(0.5)
    assert inst.master_pids() == masters, "the running master was replaced or stopped"
    inst.send(simple_message(subject="still up"))
    inst.wait_delivered("alice", 1)

    rc, out = inst.stop()
    assert rc == 0, out
    rc, out = inst.postern("status")
    assert rc == 1 and "not running" in out, (rc, out)


def test_reload_keeps_mail_flowing(instance):
    masters = instance.master_pids()
    assert len(masters) == 1
    instance.send(simple_message(subject="before reload"))
    instance.wait_delivered("alice", 1)

    instance.append_main_cf("smtpd_banner = $myhostname ESMTP reloaded")
    rc, out = instance.postern("reload")
    assert rc == 0, out
    instance.wait_log(r"reload", program="master", timeout=10)
    assert instance.master_pids() == masters, "reload must not restart master"

    instance.send(simple_message(subject="after reload"))
    instance.wait_delivered("alice", 2)
    rc, out = instance.postern("status")
    assert rc == 0, out


def test_reload_applies_new_main_cf(instance):
    assert banner(instance) == (220, f"{HOSTNAME} ESMTP Postern")
    instance.append_main_cf("smtpd_banner = $myhostname ESMTP reloaded")
    rc, out = instance.postern("reload")
    assert rc == 0, out
    # Old smtpd processes finish their sessions and exit; new ones read the
    # new main.cf.
    wait_until(lambda: banner(instance) == (220, f"{HOSTNAME} ESMTP reloaded"), 15,
               interval=0.3, what="the new banner after reload")
