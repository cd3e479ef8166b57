"""The pipe agent in system mode (master run by root for another
mail_owner): the command runs with user='s uid and gid, not root's or the
agent's, in queue_directory; and user= naming root, the mail system owner
or nobody at all is one error per line, that service is not started, and
the rest of the mail system runs.
"""

import os

from postern_instance import simple_message
from system_mode import needs_root, system_mode  # noqa: F401 (fixture)
from test_pipe import Recorder, log_status

pytestmark = needs_root


def test_command_runs_as_user_and_bad_users_are_refused(system_mode):
    accounts, make = system_mode
    carol = accounts.login("pc")
    inst = make(start=False)
    rec = Recorder(inst.root)
    os.chmod(rec.dir, 0o1777)   # carol writes the records
    owner = inst.owner.pw_name
    bad = {"root": "user=root: commands never run with root privileges",
           owner: f"user={owner}: commands never run as the mail system owner",
           "no-such-user-pe2e": "user=no-such-user-pe2e: no such user"}
    with open(inst.etc / "master.cf", "a") as f:
        f.write(f"asuser unix - n n - - pipe user={carol.pw_name} argv={rec.script} exit0\n")
        for i, user in enumerate(bad):
            f.write(f"bad{i} unix - n n - - pipe user={user} argv=/bin/true\n")
    inst.append_main_cf("transport_maps = inline:{ asuser.test=asuser, bad0.test=bad0 }")
    out = inst.start()
    for i, why in enumerate(bad.values()):
        assert f"service bad{i}/unix (pipe): {why}" in out, out
        assert len(inst.find_log(rf"service bad{i}/unix \(pipe\): .*service not started",
                                 program="master")) == 1
    inst.send(simple_message("as user"), ["x@asuser.test"])
    [run] = rec.wait_runs(1)
    assert run["uid"] == carol.pw_uid
    assert run["cwd"] == str(inst.queue)
    assert log_status(inst, "x@asuser.test", "sent").endswith(
        "(delivered via asuser service (said by exit0))")
    qid = inst.send(simple_message("bad"), ["x@bad0.test"])
    inst.wait_log(rf"{qid}: to=<x@bad0.test>, relay=none, .*status=deferred", program="qmgr")
