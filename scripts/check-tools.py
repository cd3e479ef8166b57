#!/usr/bin/python3
"""check-tools.py - proves that a fresh machine has every program the tests run.

make check runs it before any test: each entry of scripts/tools.txt (a
command, a Perl module as perl:Name, or a module of Debian's Python as
python3:name) must be present and must come from
the Debian package named beside it, and that package must be one that
scripts/packages.txt (what deps.sh installs) lists. A program that is here only
because someone installed it by hand fails, naming the package to add, instead
of a test failing obscurely on a new machine.
"""
import glob
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def read_table(name):
    rows = []
    with open(os.path.join(HERE, name)) as f:
        for line in f:
            line = line.split("#", 1)[0].split()
            if line:
                rows.append(line)
    return rows


def packages():
    return {row[0] for row in read_table("packages.txt")}


def tools():
    return {row[0]: row[1] for row in read_table("tools.txt")}


def locate(tool):
    """The file that provides tool, or None."""
    if tool.startswith("perl:"):
        module = tool[5:]
        rel = module.replace("::", "/") + ".pm"
        r = subprocess.run(["perl", f"-M{module}", "-e", f'print $INC{{"{rel}"}}'],
                           capture_output=True, text=True, timeout=30)
        return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else None
    if tool.startswith("python3:"):
        r = subprocess.run(["/usr/bin/python3", "-c",
                            f"import {tool[8:]} as m; print(m.__file__)"],
                           capture_output=True, text=True, timeout=30)
        return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else None
    # PostgreSQL's server programs live in a versioned directory off PATH.
    pg = ":".join(sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True))
    path = shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin:" + pg)
    return path


def owner(path):
    """Debian package that owns path (through symlinks, usrmerge aware)."""
    candidates = [path, os.path.realpath(path)]
    for c in list(candidates):
        for a, b in (("/usr/bin/", "/bin/"), ("/usr/sbin/", "/sbin/"),
                     ("/bin/", "/usr/bin/"), ("/sbin/", "/usr/sbin/")):
            if c.startswith(a):
                candidates.append(b + c[len(a):])
    for c in candidates:
        r = subprocess.run(["dpkg-query", "-S", c], capture_output=True, text=True, timeout=30)
        if r.returncode == 0:
            pkgs = r.stdout.split(":", 1)[0]
            if pkgs.startswith("diversion by"):
                continue
            return [p.strip().split(":")[0] for p in pkgs.split(",")]
    return None


def problems():
    listed = packages()
    out = []
    for tool, pkg in sorted(tools().items()):
        if pkg not in listed:
            out.append(f"{tool}: its package {pkg} is not in scripts/packages.txt")
            continue
        path = locate(tool)
        if path is None:
            out.append(f"{tool}: not installed (package {pkg}; run scripts/deps.sh as root)")
            continue
        owners = owner(path)
        if owners is None or pkg not in owners:
            out.append(f"{tool}: {path} comes from {owners or 'no package'}, not {pkg}")
    return out


def main():
    found = problems()
    for p in found:
        print(f"check-tools: {p}", file=sys.stderr)
    if found:
        return 1
    print(f"check-tools: {len(tools())} programs present, each from a package deps.sh installs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
