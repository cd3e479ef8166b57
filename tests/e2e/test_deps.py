"""test_deps.py - the dependency list is complete (issue 15).

A green run on a developer's machine can hide a package installed by hand.
scripts/tools.txt names every external program the tests and benchmarks run
with the Debian package it comes from, and scripts/check-tools.py (run by
make check before any test) proves each is present and comes from a package
that scripts/deps.sh installs. This test closes the loop from the other side:
every program the test and bench sources start must be in tools.txt.
"""
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Programs that are not Debian tools: ours, Python itself, shell built-ins;
# policy-rc.d is the script test_deb.py writes into its throwaway root.
OURS = {"postern", "sendmail", "mailq", "newaliases", "postdrop", "postmap", "postalias",
        "master", "python3", "sh", "true", "false", "make", "nologin", "sudo", "policy-rc.d"}
# Run only by bench/profile.py, a hand-run profiling aid outside make check/bench.
PROFILING = {"perf", "callgrind_annotate", "valgrind"}

PATTERNS = [
    re.compile(r"""(?:subprocess\.(?:run|Popen|check_output|check_call|call))\(\s*\[\s*["']([\w.+-]+)["']"""),
    re.compile(r"""shutil\.which\(\s*["']([\w.+-]+)["']"""),
    re.compile(r"""["']/usr/s?bin/([\w.+-]+)["']"""),
]


def programs_run():
    found = {}
    for src in list((ROOT / "tests" / "e2e").glob("*.py")) + list((ROOT / "bench").glob("*.py")):
        text = src.read_text()
        for pat in PATTERNS:
            for name in pat.findall(text):
                found.setdefault(name, src.name)
    return found


def listed_tools():
    names = set()
    for line in (ROOT / "scripts" / "tools.txt").read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if fields:
            names.add(fields[0])
    return names


def test_every_program_the_tests_run_is_listed_with_its_package():
    run = programs_run()
    assert "swaks" in run and "dnsmasq" in run, run   # the scan itself works
    missing = {name: where for name, where in run.items()
               if name not in listed_tools() and name not in OURS | PROFILING}
    assert not missing, f"add these to scripts/tools.txt with their package: {missing}"


def test_check_tools_passes_and_names_a_missing_package(tmp_path):
    script = ROOT / "scripts" / "check-tools.py"
    ok = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    # A copy of the scripts whose tools.txt names a program nobody installs.
    for f in ("check-tools.py", "packages.txt"):
        (tmp_path / f).write_bytes((ROOT / "scripts" / f).read_bytes())
    (tmp_path / "tools.txt").write_text("no-such-program-xyz   swaks\nswaks  not-in-the-list\n")
    bad = subprocess.run([sys.executable, str(tmp_path / "check-tools.py")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    assert "no-such-program-xyz: not installed (package swaks" in bad.stderr
    assert "swaks: its package not-in-the-list is not in scripts/packages.txt" in bad.stderr
