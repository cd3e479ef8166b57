"""Crashes under load (docs/DESIGN.md, "Durability"): while thousands of uniquely
tagged messages arrive over several connections, daemons are killed with
SIGKILL at random; then the whole instance is killed at once and started
again. Every message that got a 250 must be delivered; a message may be
delivered twice only when a delivery was interrupted between the mailbox
fsync and the done mark, so duplicates are counted and bounded by the
kills that can interrupt a delivery. Counts are printed (pytest -s shows
them; a failure always does).
"""

import time

from reliability_common import (FAST_RETRY, Killer, TaggedLoad, kill_instance_now,
                                queue_state, report, unexplained_duplicates,
                                wait_all_delivered)

# Deliveries one kill can interrupt: qmgr has at most this many in flight
# to the local transport (local_destination_concurrency_limit, times the
# mailboxes that are destinations of their own in instance mode).
IN_FLIGHT_BOUND = 20


def check_no_loss(instance, load, kills, kill_log, title):
    """The durability invariant after the instance was restarted: every
    acknowledged tag delivered, nothing but tried tags delivered, a
    duplicate only where a kill interrupted a delivery between the mailbox
    write and the done mark, nothing moved to corrupt/."""
    acked = list(load.acked)
    deliveries, untagged = wait_all_delivered(instance, acked, timeout=60)
    seen = {t: len(c) for t, c in deliveries.items()}
    dups = {t: n for t, n in seen.items() if n > 1}
    unacked_delivered = [t for t in seen if t not in load.acked]
    state = queue_state(instance)
    report(title, sent=len(load.tried), acknowledged=len(acked),
           delivered=len([t for t in acked if seen.get(t)]),
           delivered_unacknowledged=len(unacked_delivered), duplicates=len(dups),
           kills=dict(kills), failures=dict(load.failures),
           incomplete_left=len(state["incoming"]))
    assert untagged == 0, f"{untagged} delivered files without a tag"
    tried = set(load.tried)
    assert not [t for t in seen if t not in tried], "delivered a tag never sent"
    assert state["corrupt"] == [], f"crashes produced corrupt files: {state['corrupt']}"
    interrupting = sum(n for name, n in kills.items() if name in ("local", "qmgr", "all"))
    assert len(dups) <= interrupting * IN_FLIGHT_BOUND, (
        f"{len(dups)} duplicates for {interrupting} kills that could interrupt a "
        f"delivery: {sorted(dups.items())[:10]}")
    assert max(dups.values(), default=1) <= 1 + interrupting, dups
    unexplained = unexplained_duplicates(deliveries, kill_log, instance.log_lines())
    assert not unexplained, f"duplicates no kill explains: {unexplained}"
    return seen


def test_random_daemon_kills_lose_nothing(make_instance):
    # max_use 1000: at this load's rate a cleanup serving 100 connections
    # (the default) lived under 0.5 s, younger than the killer's min_age,
    # and was never chosen.
    instance = make_instance(extra_main=FAST_RETRY + ["max_use = 1000"])
    # 20 s of load (thousands of messages), with a kill every 0.2-0.5 s.
    load = TaggedLoad(instance.port, total=30000, conns=6, prefix="crash", deadline=20).start()
    time.sleep(1.5)    # every daemon up and past its start-up grace
    killer = Killer(instance, lo=0.2, hi=0.5, min_age=0.5, seed=10).start()
    try:
        load.join(60)
    finally:
        killer.stop()
        load.stop()
    kills = killer.kills
    assert sum(kills.values()) >= 30, f"too few kills to mean anything: {dict(kills)}"
    for daemon in ("smtpd", "cleanup", "qmgr", "local"):
        assert kills[daemon] > 0, f"{daemon} was never killed: {dict(kills)}"
    assert len(load.acked) >= 2000, (len(load.acked), load.failures)

    # Then everything at once, and a cold start.
    kill_instance_now(instance, killer.log)
    kills["all"] += 1
    instance.start()
    check_no_loss(instance, load, kills, killer.log, "crash test")


def test_whole_instance_killed_mid_burst(make_instance):
    """Power-loss style: master and every daemon are stopped and killed at
    the same instant, three times, in the middle of a burst (files being
    written, renamed, delivered); after each cold start mail flows again."""
    instance = make_instance(extra_main=FAST_RETRY)
    loads, kills, kill_log = [], {"all": 0}, []
    for cycle in range(3):
        load = TaggedLoad(instance.port, total=3000, conns=6, prefix=f"cut{cycle}",
                          deadline=20).start()
        time.sleep(1.0 + 0.5 * cycle)
        assert load.acked, f"cycle {cycle}: nothing acknowledged before the cut"
        # No new transactions; the ones in flight are cut by the kill.
        load.stop()
        kill_instance_now(instance, kill_log)
        kills["all"] += 1
        load.join(30)
        loads.append(load)
        instance.start()

    class Merged:
        tried = [t for l in loads for t in l.tried]
        acked = {t: q for l in loads for t, q in l.acked.items()}
        failures = sum((l.failures for l in loads), start=loads[0].failures.__class__())

    check_no_loss(instance, Merged, kills, kill_log, "power-loss test")
