"""Power cuts at the block level, short form (the long one is `make
powercut`; tests/powercut/powercut.py explains the harness): Postern's
queue and Maildirs on ext4 without a journal and on ext4 with its journal,
every block write and flush recorded, crash images built at 25 cut points
per file system, each fsck'd and recovered by a fresh start of Postern.
Every message acknowledged before a cut must come back delivered intact
(or still queued), no file that is not a complete message may be
delivered, and recovery must need nobody. Counts are printed (pytest -s).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "powercut"))

import powercut  # noqa: E402


def test_power_cuts_lose_no_acknowledged_message():
    results = [powercut.run_one("postern", fs, n_cuts=25, messages=12, seed=24,
                                workroot="/dev/shm")
               for fs in ("nojournal", "journal")]
    for r in results:
        print(r.line(), flush=True)
    for r in results:
        assert r.cuts == 25 and r.acked >= 6, r.line()
        assert r.at_risk > 0, f"no cut point came after an acknowledgement: {r.line()}"
        assert r.lost == 0, f"{r.line()}\n" + "\n".join(r.lost_detail[:10])
        assert r.corrupt == 0, f"{r.line()}\n" + "\n".join(r.corrupt_detail[:10])
        assert r.human == 0, f"{r.line()}\n" + "\n".join(r.human_detail[:10])
