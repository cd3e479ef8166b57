"""postmap and postalias as an administrator uses them: build a table from
its text source, query it, list it, rebuild it while something is reading
it, and newaliases (postalias without a file) rebuilding alias_database.

The programs are the real build/bin/postmap and build/bin/postalias (not
Postfix's, which the machine may also have), run on files in a temporary
directory with their own main.cf.
"""

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from postern_instance import BUILD

POSTMAP = BUILD / "bin" / "postmap"
POSTALIAS = BUILD / "bin" / "postalias"


def run(argv, stdin=None, timeout=60):
    p = subprocess.run([str(a) for a in argv], input=stdin, capture_output=True,
                       timeout=timeout)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def make_old(path, seconds=3600):
    """Date a source file back, as if it had been edited long before the
    table is (re)built from it."""
    t = time.time() - seconds
    os.utime(path, (t, t))


@pytest.fixture
def tdir(tmp_path):
    (tmp_path / "main.cf").write_text(
        f"alias_database = cdb:{tmp_path}/aliases\n"
        f"alias_maps = cdb:{tmp_path}/aliases\n")
    return tmp_path


def test_postmap_round_trip_10000_keys(tdir):
    src = tdir / "table"
    src.write_text("".join(f"Key{i:05d}  value {i} end\n" for i in range(10000)))
    rc, out, err = run([POSTMAP, "-c", tdir, f"cdb:{src}"])
    assert (rc, out, err) == (0, "", "")
    assert Path(f"{src}.cdb").is_file()

    # -s lists every entry once, key folded to lower case, value as written.
    rc, out, err = run([POSTMAP, "-c", tdir, "-s", f"cdb:{src}"])
    assert rc == 0, err
    lines = out.splitlines()
    assert len(lines) == 10000
    assert sorted(lines) == [f"key{i:05d}\tvalue {i} end" for i in range(10000)]

    # -q - answers every key (in any case) with its value, in order.
    keys = "".join(f"KEY{i:05d}\n" for i in range(10000)).encode()
    rc, out, err = run([POSTMAP, "-c", tdir, "-q", "-", f"cdb:{src}"], stdin=keys)
    assert rc == 0, err
    assert out.splitlines() == [f"KEY{i:05d}\tvalue {i} end" for i in range(10000)]

    # Single queries: present, absent (exit 1, no output), hash: reads cdb.
    assert run([POSTMAP, "-c", tdir, "-q", "key04242", f"hash:{src}"]) == (
        0, "value 4242 end\n", "")
    assert run([POSTMAP, "-c", tdir, "-q", "key10000", f"cdb:{src}"]) == (1, "", "")
    assert run([POSTMAP, "-c", tdir, "-q", "value", str(src)]) == (1, "", "")


def test_postalias_round_trip_10000_keys(tdir):
    src = tdir / "aliases"
    src.write_text("# generated\n" + "".join(
        f"Name{i:05d}: user{i}, \"|/bin/true {i}\",\n    /var/tmp/f{i}\n" for i in range(10000)))
    rc, out, err = run([POSTALIAS, "-c", tdir, src])
    assert (rc, err) == (0, "")
    rc, out, err = run([POSTALIAS, "-c", tdir, "-s", src])
    assert rc == 0, err
    assert sorted(out.splitlines()) == sorted(
        f"name{i:05d}:\tuser{i}, \"|/bin/true {i}\",    /var/tmp/f{i}" for i in range(10000))
    assert run([POSTALIAS, "-c", tdir, "-q", "NAME00007", f"cdb:{src}"]) == (
        0, "user7, \"|/bin/true 7\",    /var/tmp/f7\n", "")
    assert run([POSTALIAS, "-c", tdir, "-q", "name10000", f"cdb:{src}"]) == (1, "", "")


def test_newaliases_rebuilds_alias_database(tdir):
    src = tdir / "aliases"
    src.write_text("postmaster: root\nroot: admin\n")
    assert not Path(f"{src}.cdb").exists()
    # postalias without a file is newaliases: it rebuilds alias_database.
    assert run([POSTALIAS, "-c", tdir]) == (0, "", "")
    # -q without a table asks alias_maps.
    assert run([POSTALIAS, "-c", tdir, "-q", "postmaster"]) == (0, "root\n", "")
    src.write_text("postmaster: someone-else\n")
    assert run([POSTALIAS, "-c", tdir]) == (0, "", "")
    assert run([POSTALIAS, "-c", tdir, "-q", "postmaster"]) == (0, "someone-else\n", "")
    assert run([POSTALIAS, "-c", tdir, "-q", "root"]) == (1, "", "")


def test_missing_and_stale_tables_are_errors(tdir):
    src = tdir / "virtual"
    # A missing table is an error, not "not found".
    rc, out, err = run([POSTMAP, "-c", tdir, "-q", "a", f"cdb:{src}"])
    assert rc == 1 and out == ""
    assert "No such file or directory" in err and "virtual.cdb" in err
    src.write_text("a b\n")
    make_old(src)
    assert run([POSTMAP, "-c", tdir, src]) == (0, "", "")
    assert run([POSTMAP, "-c", tdir, "-q", "a", f"cdb:{src}"]) == (0, "b\n", "")
    # Edited but not rebuilt: the answer would be stale, so it is an error.
    src.write_text("a changed\n")
    rc, out, err = run([POSTMAP, "-c", tdir, "-q", "a", f"cdb:{src}"])
    assert rc == 1 and out == ""
    assert "older than source file" in err
    assert run([POSTMAP, "-c", tdir, src]) == (0, "", "")
    assert run([POSTMAP, "-c", tdir, "-q", "a", f"cdb:{src}"]) == (0, "changed\n", "")


def test_syntax_errors_warn_with_file_and_line(tdir):
    src = tdir / "map"
    src.write_text("good value\nlonely\n\"unterminated value\ndup one\ndup two\n")
    rc, out, err = run([POSTMAP, "-c", tdir, src])
    assert rc == 0
    assert f"{src}, line 2: expected format: key whitespace value" in err
    assert f"{src}, line 3: unterminated or over-long quoted key" in err
    assert f"{src}, line 5: duplicate entry: \"dup\"" in err
    # The first of two duplicates wins, as with Postfix.
    assert run([POSTMAP, "-c", tdir, "-q", "dup", src]) == (0, "one\n", "")
    assert run([POSTMAP, "-c", tdir, "-q", "lonely", src])[0] == 1
    # Types postmap cannot build are refused.
    rc, out, err = run([POSTMAP, "-c", tdir, f"regexp:{src}"])
    assert rc == 1 and "unsupported dictionary type" in err


def test_new_table_takes_source_permissions_and_owner(tdir):
    src = tdir / "private"
    src.write_text("k v\n")
    os.chmod(src, 0o640)
    if os.geteuid() == 0:
        os.chown(src, 65534, 65534)
    assert run([POSTMAP, "-c", tdir, src]) == (0, "", "")
    st = os.stat(f"{src}.cdb")
    assert st.st_mode & 0o777 == 0o640
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (65534, 65534)
    # No temporary files are left next to the table.
    assert sorted(p.name for p in tdir.iterdir()) == ["main.cf", "private", "private.cdb"]


def test_table_rebuilt_while_being_read(tdir):
    """A long-running reader (one postmap -q - process, which keeps the
    table open as a daemon does) asks for keys while the table is rebuilt
    again and again with other values. Every key must always be answered,
    with the old or the new value, never missing, and the reader must
    notice the new table without a restart."""
    nkeys, rounds = 2000, 15
    src = tdir / "live"

    def write_version(v):
        # The new source replaces the old one in one rename, already dated
        # back: a source newer than its table would (rightly) make every
        # lookup fail until postmap ran, which is not what is tested here.
        tmp = tdir / "live.new"
        tmp.write_text("".join(f"k{i} v{v}-{i}\n" for i in range(nkeys)))
        make_old(tmp)
        os.rename(tmp, src)
        rc, out, err = run([POSTMAP, "-c", tdir, src])
        assert (rc, err) == (0, ""), err

    write_version(0)
    reader = subprocess.Popen([str(POSTMAP), "-c", str(tdir), "-q", "-", f"cdb:{src}"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    errors = []

    def rebuild():
        try:
            for v in range(1, rounds + 1):
                write_version(v)
        except AssertionError as e:
            errors.append(e)

    writer = threading.Thread(target=rebuild)
    seen_versions = set()
    try:
        writer.start()
        asked = 0
        while writer.is_alive() or asked < nkeys:
            i = asked % nkeys
            reader.stdin.write(f"k{i}\n".encode())
            reader.stdin.flush()
            line = reader.stdout.readline().decode()
            assert line.startswith(f"k{i}\tv"), f"key k{i}: got {line!r}"
            version, _, idx = line.rstrip("\n").split("\t")[1][1:].partition("-")
            assert idx == str(i), line
            seen_versions.add(int(version))
            asked += 1
        writer.join(60)
        # After the last rebuild the reader answers from the last table.
        reader.stdin.write(b"k7\n")
        reader.stdin.flush()
        assert reader.stdout.readline().decode() == f"k7\tv{rounds}-7\n"
        reader.stdin.close()
        assert reader.wait(30) == 0
        assert reader.stderr.read() == b""
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait(10)
        writer.join(60)
    assert not errors, errors
    assert len(seen_versions) >= 2, seen_versions
    assert asked >= nkeys
