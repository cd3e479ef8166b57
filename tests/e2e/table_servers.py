"""Private database and directory servers for the table tests: MariaDB,
PostgreSQL and slapd, each started once per test session in its own
temporary directory, listening on a UNIX socket there (and a loopback TCP
port for MariaDB and slapd), never the system's service or configuration,
and stopped at the end of the session. Each is loaded with the same small
data set (SQL_ROWS, and the LDAP entries below), and an SQLite file holds
the same rows.

Import the fixtures into a test module: `from table_servers import
mariadb, postgres, slapd, sqlite_db`.
"""

import glob
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from postern_instance import free_port, wait_until

# PostgreSQL's programs live in a versioned directory, not on PATH.
PG_PATH = ":".join(sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True))

# (address, goto): every SQL database gets these rows in table "aliases".
SQL_ROWS = [
    ("bob@example.com", "bob@mail.example.com"),
    ("multi@example.com", "a@x.example"),
    ("multi@example.com", "b@y.example"),
    ("empty@example.com", ""),
    ("null@example.com", None),
    ("o'brien@example.com", "quote@example.com"),
    ("user+ext@example.com", "ext-match"),
    ("user@example.com", "base-user"),
    ("100%@example.com", "percent"),
    ("example.com", "domain-entry"),
    ("@example.com", "catchall"),
    ("plain", "plain-value"),
    ("back\\slash@example.com", "backslash"),
    ("semi;colon@example.com", "semicolon"),
    ("local@sub.example.org", "deep@other.example"),
    ("nodomain@example.com", "no-domain-here"),
    ("atonly@example.com", "@example.net"),
]
# Hosted mailboxes for the virtual delivery test: (email, maildir).
SQL_MAILBOXES = [
    ("anna@sqlhosted.example", "sqlhosted.example/anna/"),
    ("ben@sqlhosted.example", "sqlhosted.example/ben/"),
]
SQL_DOMAINS = ["sqlhosted.example"]


def _which(prog, extra=""):
    path = shutil.which(prog, path=extra + ":" + os.environ.get("PATH", "") + ":/usr/sbin")
    assert path, f"{prog} is not installed (scripts/packages.txt)"
    return path


def _run(argv, **kw):
    kw.setdefault("timeout", 120)
    p = subprocess.run(argv, capture_output=True, text=True, **kw)
    assert p.returncode == 0, f"{argv[0]} failed: {p.stdout}\n{p.stderr}"
    return p


def _sql_literal(v, backslash_escapes):
    if v is None:
        return "NULL"
    v = v.replace("'", "''")
    if backslash_escapes:
        v = v.replace("\\", "\\\\")
    return "'" + v + "'"


def sql_script(backslash_escapes):
    """The schema and rows, as SQL every one of the three databases reads."""
    lit = lambda v: _sql_literal(v, backslash_escapes)  # noqa: E731
    lines = ["CREATE TABLE aliases (address VARCHAR(255), goto VARCHAR(255));",
             "CREATE TABLE mailbox (email VARCHAR(255), maildir VARCHAR(255), active INT);",
             "CREATE TABLE domains (domain VARCHAR(255));"]
    lines += [f"INSERT INTO aliases VALUES ({lit(a)}, {lit(g)});" for a, g in SQL_ROWS]
    lines += [f"INSERT INTO mailbox VALUES ({lit(e)}, {lit(m)}, 1);" for e, m in SQL_MAILBOXES]
    lines += [f"INSERT INTO domains VALUES ({lit(d)});" for d in SQL_DOMAINS]
    return "\n".join(lines) + "\n"


class Server:
    """A started server: where it listens and how to stop it."""

    def __init__(self, root, proc=None):
        self.root = Path(root)
        self.proc = proc
        self.socket = None
        self.port = None

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# --- MariaDB -------------------------------------------------------------------


class MariaDB(Server):
    USER, PASSWORD, DB = "postfix", "secret pw", "mail"

    def start(self):
        datadir = self.root / "data"
        self.socket = self.root / "mysqld.sock"
        self.port = free_port()
        _run([_which("mariadb-install-db"), "--no-defaults", f"--datadir={datadir}",
              "--user=root", "--skip-test-db", "--auth-root-authentication-method=normal"],
             cwd=self.root)
        self.proc = subprocess.Popen(
            [_which("mariadbd"), "--no-defaults", f"--datadir={datadir}", "--user=root",
             f"--socket={self.socket}", f"--port={self.port}", "--bind-address=127.0.0.1",
             f"--pid-file={self.root}/mysqld.pid", f"--log-error={self.root}/error.log",
             "--innodb-buffer-pool-size=16M",
             "--innodb-log-file-size=8M", "--performance-schema=0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: self.socket.exists() and self.client("SELECT 1", check=False)
                   .returncode == 0, 60, what="mariadbd to accept connections")
        self.client(f"CREATE DATABASE {self.DB}; "
                    f"CREATE USER '{self.USER}'@'localhost' IDENTIFIED BY '{self.PASSWORD}'; "
                    f"CREATE USER '{self.USER}'@'127.0.0.1' IDENTIFIED BY '{self.PASSWORD}'; "
                    f"GRANT SELECT ON {self.DB}.* TO '{self.USER}'@'localhost'; "
                    f"GRANT SELECT ON {self.DB}.* TO '{self.USER}'@'127.0.0.1';")
        self.client(sql_script(backslash_escapes=True), db=self.DB)
        return self

    def client(self, sql, db=None, check=True):
        argv = [_which("mariadb"), "--no-defaults", "-S", str(self.socket), "-u", "root"]
        if db:
            argv.append(db)
        p = subprocess.run(argv, input=sql, capture_output=True, text=True, timeout=60)
        if check:
            assert p.returncode == 0, p.stderr
        return p

    def restart(self):
        """Stop and start again on the same socket and port (same data)."""
        self.stop()
        self.socket.unlink(missing_ok=True)
        self.proc = subprocess.Popen(self.proc.args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_until(lambda: self.socket.exists() and self.client("SELECT 1", check=False)
                   .returncode == 0, 60, what="mariadbd to accept connections again")

    def cf(self, *lines, hosts=None):
        return "\n".join([f"hosts = {hosts or 'unix:' + str(self.socket)}",
                          f"user = {self.USER}", f"password = {self.PASSWORD}",
                          f"dbname = {self.DB}", *lines]) + "\n"


# --- PostgreSQL ----------------------------------------------------------------


class Postgres(Server):
    """Runs as the postgres user (initdb refuses root), data and socket in
    a directory that user owns."""
    USER, DB = "postfix", "mail"

    def start(self):
        os.chmod(self.root, 0o755)
        data = self.root / "data"
        self.sockdir = self.root / "sock"
        self.sockdir.mkdir()
        self.port = free_port()
        shutil.chown(self.root, "postgres", "postgres")
        shutil.chown(self.sockdir, "postgres", "postgres")
        self.socket = self.sockdir / f".s.PGSQL.{self.port}"
        self._as_pg([_which("initdb", PG_PATH), "-D", str(data), "-A", "trust", "-U",
                     "postgres", "--no-sync"])
        self._as_pg([_which("pg_ctl", PG_PATH), "-D", str(data), "-l",
                     str(self.root / "log"), "-w", "-t", "60", "-o",
                     f"-k {self.sockdir} -p {self.port} -c listen_addresses='' -c fsync=off",
                     "start"])
        self.data = data
        self.psql(f"CREATE ROLE {self.USER} LOGIN; CREATE DATABASE {self.DB};")
        self.psql(sql_script(backslash_escapes=False)
                  + f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {self.USER};", db=self.DB)
        return self

    def _as_pg(self, argv, **kw):
        return _run([_which("runuser"), "-u", "postgres", "--", *argv], cwd="/", **kw)

    def psql(self, sql, db="postgres"):
        return self._as_pg([_which("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                            "-h", str(self.sockdir), "-p", str(self.port), "-U", "postgres",
                            "-d", db], input=sql)

    def stop(self):
        self._as_pg([_which("pg_ctl", PG_PATH), "-D", str(self.data), "-m", "fast", "-w",
                     "stop"])

    def cf(self, *lines, hosts=None):
        # The socket file, which names the port: a directory alone would
        # mean port 5432.
        return "\n".join([f"hosts = {hosts or 'unix:' + str(self.socket)}",
                          f"user = {self.USER}", f"dbname = {self.DB}", *lines]) + "\n"


# --- slapd ---------------------------------------------------------------------

LDAP_BASE = "dc=example,dc=com"
LDAP_LDIF = f"""dn: {LDAP_BASE}
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,{LDAP_BASE}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{LDAP_BASE}
objectClass: organizationalUnit
ou: groups

dn: uid=bob,ou=people,{LDAP_BASE}
objectClass: inetOrgPerson
uid: bob
cn: Bob
sn: Builder
mail: bob@example.com
description: bob@mail.example.com

dn: uid=multi,ou=people,{LDAP_BASE}
objectClass: inetOrgPerson
uid: multi
cn: Multi
sn: Value
mail: multi@example.com
description: a@x.example
description: b@y.example

dn: uid=paren,ou=people,{LDAP_BASE}
objectClass: inetOrgPerson
uid: paren
cn: Paren
sn: Thesis
mail: p(a)r*en@example.com
description: paren-ok

dn: uid=nodesc,ou=people,{LDAP_BASE}
objectClass: inetOrgPerson
uid: nodesc
cn: No
sn: Description
mail: nodesc@example.com

dn: uid=deep,ou=people,{LDAP_BASE}
objectClass: inetOrgPerson
uid: deep
cn: Deep
sn: Sub
mail: local@sub.example.org
description: deep@other.example

dn: cn=staff,ou=groups,{LDAP_BASE}
objectClass: groupOfNames
objectClass: extensibleObject
cn: staff
mail: staff@example.com
description: staff-list@example.com
member: uid=bob,ou=people,{LDAP_BASE}
member: uid=multi,ou=people,{LDAP_BASE}

dn: cn=routed,ou=groups,{LDAP_BASE}
objectClass: groupOfNames
objectClass: extensibleObject
cn: routed
mail: routed@example.com
seeAlso: cn=terminal
member: uid=bob,ou=people,{LDAP_BASE}
"""


class Slapd(Server):
    ROOTDN, ROOTPW = f"cn=admin,{LDAP_BASE}", "adminpw"

    def start(self):
        data = self.root / "db"
        data.mkdir()
        self.socket = self.root / "ldapi"
        self.port = free_port()
        conf = self.root / "slapd.conf"
        conf.write_text(
            "include /etc/ldap/schema/core.schema\n"
            "include /etc/ldap/schema/cosine.schema\n"
            "include /etc/ldap/schema/inetorgperson.schema\n"
            f"pidfile {self.root}/slapd.pid\n"
            "modulepath /usr/lib/ldap\nmoduleload back_mdb\n"
            "database mdb\nmaxsize 10485760\n"
            f"suffix \"{LDAP_BASE}\"\nrootdn \"{self.ROOTDN}\"\nrootpw {self.ROOTPW}\n"
            f"directory {data}\n"
            "access to * by * read\n")
        (self.root / "data.ldif").write_text(LDAP_LDIF)
        _run([_which("slapadd"), "-f", str(conf), "-l", str(self.root / "data.ldif")])
        self.uri_ldapi = "ldapi://" + str(self.socket).replace("/", "%2F")
        self.uri_tcp = f"ldap://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [_which("slapd"), "-d", "0", "-f", str(conf), "-h",
             f"{self.uri_ldapi} {self.uri_tcp}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.answers, 30, what="slapd to answer an LDAP bind")
        return self

    def answers(self):
        """An anonymous LDAP bind over TCP gets a reply."""
        bind = bytes.fromhex("300c020101600702010304008000")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(bind)
                return s.recv(1)[:1] == b"\x30"
        except OSError:
            return False

    def cf(self, *lines, server_host=None):
        return "\n".join([f"server_host = {server_host or self.uri_ldapi}",
                          f"search_base = {LDAP_BASE}", "version = 3", "bind = no",
                          *lines]) + "\n"


# --- fixtures --------------------------------------------------------------------


def _session_server(cls, prefix):
    root = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    server = cls(root)
    try:
        server.start()
    except BaseException:
        try:
            server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)
        raise
    return server


@pytest.fixture(scope="session")
def mariadb():
    s = _session_server(MariaDB, "ptmy.")
    yield s
    s.stop()
    shutil.rmtree(s.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():
    s = _session_server(Postgres, "ptpg.")
    yield s
    s.stop()
    shutil.rmtree(s.root, ignore_errors=True)


@pytest.fixture(scope="session")
def slapd():
    s = _session_server(Slapd, "ptld.")
    yield s
    s.stop()
    shutil.rmtree(s.root, ignore_errors=True)


@pytest.fixture(scope="session")
def sqlite_db(tmp_path_factory):
    """An SQLite file with the same rows."""
    path = tmp_path_factory.mktemp("sqlite") / "mail.db"
    con = sqlite3.connect(path)
    con.executescript(sql_script(backslash_escapes=False))
    con.commit()
    con.close()
    return path
