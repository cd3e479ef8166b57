"""1,000 messages over 10 parallel SMTP connections (100 per connection, the
connection reused): every message is delivered exactly once, every queue id
is logged as removed, and the queue ends empty."""

import collections
import re
import threading
import time

from postern_instance import SENDER, all_delivered, send_in_session, simple_message, wait_until

CONNECTIONS = 10
PER_CONNECTION = 100
TOTAL = CONNECTIONS * PER_CONNECTION
DEADLINE = 120
TEST_ID_RE = re.compile(rb"\nX-Test-Id: (\S+)\n")


def sender_thread(instance, conn, qids, errors):
    try:
        with instance.smtp(timeout=60) as s:
            code, resp = s.ehlo()
            assert code == 250, resp
            for i in range(PER_CONNECTION):
                test_id = f"c{conn:02d}-m{i:03d}"
                rcpt = f"load{i % 10}@localhost"
                msg = simple_message(subject=f"load {test_id}", test_id=test_id,
                                     body=f"message {test_id}\n")
                qids[test_id] = send_in_session(s, msg, [rcpt], SENDER)
    except Exception as e:   # reported by the main thread
        errors.append(f"connection {conn}: {e!r}")


def test_thousand_messages_ten_connections(instance):
    start = time.monotonic()
    qids, errors = {}, []
    threads = [threading.Thread(target=sender_thread, args=(instance, c, qids, errors), daemon=True)
               for c in range(CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1, DEADLINE - (time.monotonic() - start)))
    assert not any(t.is_alive() for t in threads), "senders did not finish in time"
    assert not errors, errors[:5]
    assert len(qids) == TOTAL
    assert len(set(qids.values())) == TOTAL, "queue ids are not unique"

    remaining = max(5, DEADLINE - (time.monotonic() - start))
    try:
        wait_until(lambda: len(all_delivered(instance.mail)) >= TOTAL, remaining, interval=0.5,
                   what=f"{TOTAL} deliveries")
    except AssertionError as e:
        raise AssertionError(f"{e}: {len(all_delivered(instance.mail))} delivered, "
                             f"{len(instance.queue_files())} in the queue\n{instance.log_tail()}")
    time.sleep(1)   # a duplicate delivery would show up now

    seen = collections.Counter()
    for path, user in all_delivered(instance.mail).items():
        data = path.read_bytes()
        m = TEST_ID_RE.search(data)
        assert m, f"{path} has no X-Test-Id"
        test_id = m[1].decode()
        i = int(test_id.split("-m")[1])
        assert user == f"load{i % 10}", (path, test_id)
        seen[test_id] += 1
    dups = [k for k, n in seen.items() if n > 1]
    assert not dups, f"delivered more than once: {dups[:10]}"
    assert set(seen) == set(qids), f"missing: {sorted(set(qids) - set(seen))[:10]}"

    instance.wait_queue_empty(30)

    def not_logged_removed():
        removed = {l.text.split(":")[0] for l in instance.find_log(r"^\w+: removed$", program="qmgr")}
        return set(qids.values()) - removed
    # qmgr logs "removed" just after the file is gone: wait for the lines.
    wait_until(lambda: not not_logged_removed(), 10,
               what="every message logged as removed")
