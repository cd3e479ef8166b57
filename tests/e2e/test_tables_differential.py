"""Every table type against Postfix: the same table file (for SQL and
LDAP: the same query file, pointing at this session's private MariaDB,
PostgreSQL, slapd or SQLite database; for tcp: and socketmap: the same
server) is asked the same keys by Postern's postmap -q and Debian's
Postfix postmap -q, and both must print the same answers and exit the same.

The key corpus covers case, user+ext@domain, the '%' expansions of query
files (%s %u %d %1..%9 %S %U %D, suppressed queries), several results,
empty and NULL results, no match, and keys with quotes, '%', '\\', ';',
parentheses and '*'.
"""

import socketserver
import subprocess
import threading
import urllib.parse

import pytest

from postern_instance import BUILD
from table_servers import LDAP_BASE, mariadb, postgres, slapd, sqlite_db  # noqa: F401

POSTMAP = BUILD / "bin" / "postmap"
POSTCONF = BUILD / "bin" / "postconf"
POSTFIX_POSTMAP = "/usr/sbin/postmap"
POSTFIX_POSTCONF = "/usr/sbin/postconf"

ADDRESS_KEYS = [
    "bob@example.com", "BOB@Example.COM", "user+ext@example.com", "user@example.com",
    "user+other@example.com", "user", "multi@example.com", "empty@example.com",
    "null@example.com", "nobody@example.com", "o'brien@example.com", "100%@example.com",
    "back\\slash@example.com", "semi;colon@example.com", "p(a)r*en@example.com",
    "example.com", "@example.com", "local@sub.example.org", "x@", "@", "plain",
    "nodomain@example.com", "atonly@example.com", "staff@example.com", "routed@example.com",
    "nodesc@example.com", "a@b.c.d.e.f", "UPPER+Ext@Sub.Example.ORG", "*", "(", "\"q\"@x.y",
]


@pytest.fixture(scope="module")
def cfdir(tmp_path_factory):
    """A configuration directory for both postmaps (an empty main.cf)."""
    d = tmp_path_factory.mktemp("tables")
    (d / "main.cf").write_text("")
    return d


def query(program, cfdir, spec, keys):
    p = subprocess.run([str(program), "-c", str(cfdir), "-q", "-", spec],
                       input="".join(k + "\n" for k in keys), capture_output=True, text=True,
                       timeout=120)
    return p.returncode, p.stdout, p.stderr


def same_answers(cfdir, spec, keys, min_found=1):
    """Both postmaps answer keys alike; returns Postern's answers as a dict."""
    ours = query(POSTMAP, cfdir, spec, keys)
    theirs = query(POSTFIX_POSTMAP, cfdir, spec, keys)
    assert ours[:2] == theirs[:2], (
        f"{spec}\n--- postern (rc {ours[0]}):\n{ours[1]}{ours[2]}"
        f"--- postfix (rc {theirs[0]}):\n{theirs[1]}{theirs[2]}")
    found = dict(line.split("\t", 1) for line in ours[1].splitlines())
    assert len(found) >= min_found, f"{spec}: too few answers to compare: {found}"
    return found


def write(cfdir, name, text):
    path = cfdir / name
    path.write_text(text)
    return path


# --- file tables ---------------------------------------------------------------


def test_pcre_matches_postfix(cfdir):
    path = write(cfdir, "t.pcre", r"""# a comment
/^(.*)\+(.*)@example\.com$/        ext=$2 user=$1
if /@example\.com$/
/^bob@/                          bob-rule
!/^[a-m]/                        second-half ${1}
/^(m)(u)(l)(t)(i)@/              $5$4$3$2$1 $$literal
endif
/^CASE@/i                        case-sensitive
/^user$/                         bare-user
/^(?:100%|o'brien)@/             special
/^(x)(y)?@/                      [$1][$2]
/p\(a\)r\*en/                    escaped-parens
/local@ (sub\.)? example\.org/x  extended $1
/^.*$/U                          fallback
  continued
""".replace("${1}", "seen"))
    found = same_answers(cfdir, f"pcre:{path}", ADDRESS_KEYS, min_found=10)
    assert found["user+ext@example.com"] == "ext=ext user=user"
    assert found["multi@example.com"] == "itlum $literal"


def test_regexp_matches_postfix(cfdir):
    path = write(cfdir, "t.regexp", r"""/^(.*)\+(.*)@example\.com$/  ext=$2 user=$1
if !/^b/
/^([^@]*)@(.*)$/   local=$1 domain=$2
endif
/^bob@/  bob
""")
    same_answers(cfdir, f"regexp:{path}", ADDRESS_KEYS, min_found=10)


def test_cidr_matches_postfix(cfdir):
    path = write(cfdir, "t.cidr", """# networks
192.168.1.1          exact-host
192.168.0.0/16       private-16
[2001:db8::1]        v6-host
2001:db8::/32        v6-net
if 10.0.0.0/8
10.1.0.0/16          ten-one
!10.2.0.0/16         ten-not-two
endif
127.0.0.1/32         loopback
0.0.0.0/0            any-v4
""")
    keys = ["192.168.1.1", "192.168.2.3", "10.1.2.3", "10.2.3.4", "10.3.4.5", "127.0.0.1",
            "8.8.8.8", "2001:db8::1", "2001:DB8:0::2", "2001:db9::1", "::1", "010.1.2.3",
            "[10.1.2.3]", "foo", "1.2.3", "::ffff:10.1.2.3", "192.168.1.1/32"]
    found = same_answers(cfdir, f"cidr:{path}", keys, min_found=8)
    assert found["10.3.4.5"] == "ten-not-two"


def test_texthash_matches_postfix(cfdir):
    path = write(cfdir, "t.texthash", """# comment
bob@example.com     bob@mail.example.com
User@Example.COM    mixed case key
user+ext@example.com  with extension
multi@example.com   a@x.example, b@y.example
dup                 first
dup                 second
long                value on
  several lines
@example.com        catchall
""")
    same_answers(cfdir, f"texthash:{path}", ADDRESS_KEYS + ["dup", "DUP", "long"], min_found=6)
    # -s lists what lookups see, first duplicate only.
    ours = subprocess.run([str(POSTMAP), "-c", str(cfdir), "-s", f"texthash:{path}"],
                          capture_output=True, text=True, timeout=30)
    theirs = subprocess.run([POSTFIX_POSTMAP, "-c", str(cfdir), "-s", f"texthash:{path}"],
                            capture_output=True, text=True, timeout=30)
    assert ours.returncode == theirs.returncode == 0
    assert sorted(ours.stdout.splitlines()) == sorted(theirs.stdout.splitlines())


def test_sequence_is_refused_where_postfix_refuses_it(cfdir):
    path = write(cfdir, "s.pcre", "/x/ y\n")
    for spec in (f"pcre:{path}", "static:x"):
        ours = subprocess.run([str(POSTMAP), "-c", str(cfdir), "-s", spec],
                              capture_output=True, text=True, timeout=30)
        theirs = subprocess.run([POSTFIX_POSTMAP, "-c", str(cfdir), "-s", spec],
                                capture_output=True, text=True, timeout=30)
        assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout) == (1, "")
        assert f"table {spec}: sequence operation is not supported" in ours.stderr


def test_postconf_m_lists_the_types(cfdir):
    ours = subprocess.run([str(POSTCONF), "-m"], capture_output=True, text=True, timeout=30)
    theirs = subprocess.run([POSTFIX_POSTCONF, "-c", str(cfdir), "-m"], capture_output=True,
                            text=True, timeout=30)
    assert ours.returncode == 0 and theirs.returncode == 0
    types = ours.stdout.split()
    assert types == sorted(set(types))
    # Every type named is one Postfix has (lmdb: only in postfix-lmdb).
    assert set(types) - {"lmdb"} <= set(theirs.stdout.split())
    assert {"btree", "cdb", "cidr", "hash", "inline", "ldap", "lmdb", "mysql", "pcre",
            "pgsql", "proxy", "regexp", "socketmap", "sqlite", "static", "tcp", "texthash",
            "unix"} <= set(types)


# --- servers of the tcp: and socketmap: protocols ------------------------------

# What the test servers answer: None is "not found".
SERVER_DATA = {
    "bob@example.com": "bob@mail.example.com",
    "BOB@Example.COM": "upper case key",
    "user+ext@example.com": "value with spaces, and % and \"quotes\"",
    "multi@example.com": "a@x.example,b@y.example",
    "o'brien@example.com": "quote",
    "100%@example.com": "percent",
    "back\\slash@example.com": "back\\slash",
    "empty@example.com": "",
    "plain": "plain-value",
}


class _Threaded(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


class TcpTableHandler(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            req = line.decode("latin-1").rstrip("\n")
            key = urllib.parse.unquote(req[4:], encoding="latin-1")
            value = SERVER_DATA.get(key)
            if value is None:
                self.wfile.write(b"500 not%20found\n")
            else:
                enc = urllib.parse.quote(value, safe="@,.'\"\\+")
                self.wfile.write(f"200 {enc}\n".encode("latin-1"))


class SocketmapHandler(socketserver.BaseRequestHandler):
    def handle(self):
        buf = b""
        while True:
            data = self.request.recv(4096)
            if not data:
                return
            buf += data
            while b":" in buf:
                length, rest = buf.split(b":", 1)
                n = int(length)
                if len(rest) < n + 1:
                    break
                name, key = rest[:n].decode("latin-1").split(" ", 1)
                buf = rest[n + 1:]
                value = SERVER_DATA.get(key)
                reply = b"NOTFOUND " if value is None or name != "mymap" else (
                    b"OK " + value.encode("latin-1"))
                self.request.sendall(str(len(reply)).encode() + b":" + reply + b",")


@pytest.fixture(scope="module")
def table_protocol_servers():
    servers = [_Threaded(("127.0.0.1", 0), TcpTableHandler),
               _Threaded(("127.0.0.1", 0), SocketmapHandler)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    yield tuple(s.server_address[1] for s in servers)
    for s in servers:
        s.shutdown()
        s.server_close()


def test_tcp_table_matches_postfix(cfdir, table_protocol_servers):
    port = table_protocol_servers[0]
    found = same_answers(cfdir, f"tcp:127.0.0.1:{port}", ADDRESS_KEYS, min_found=6)
    assert found["user+ext@example.com"] == "value with spaces, and % and \"quotes\""


def test_socketmap_table_matches_postfix(cfdir, table_protocol_servers):
    port = table_protocol_servers[1]
    found = same_answers(cfdir, f"socketmap:inet:127.0.0.1:{port}:mymap", ADDRESS_KEYS,
                         min_found=6)
    assert found["BOB@Example.COM"] == "upper case key"
    same_answers(cfdir, f"socketmap:inet:127.0.0.1:{port}:othermap", ADDRESS_KEYS,
                 min_found=0)


# --- SQL -------------------------------------------------------------------------

# Query file bodies (without the connection lines), each compared on
# ADDRESS_KEYS for every SQL database.
SQL_QUERIES = {
    "plain": ["query = SELECT goto FROM aliases WHERE address='%s'"],
    "parts": ["query = SELECT 'u=%u d=%d 1=%1 2=%2 S=%S U=%U D=%D %%' "
              "FROM domains WHERE domain='sqlhosted.example'"],
    "third-label": ["query = SELECT '%3' FROM domains"],
    "local-part": ["query = SELECT goto FROM aliases WHERE address='%u@example.com'"],
    "format": ["query = SELECT goto FROM aliases WHERE address='%s'",
               "result_format = smtp:[%s] for %U at %D"],
    "format-parts": ["query = SELECT goto FROM aliases WHERE address='%s'",
                     "result_format = %u+%d"],
    "format-key-digits": ["query = SELECT goto FROM aliases WHERE address='%s'",
                          "result_format = %s via %2"],
    "domain": ["query = SELECT goto FROM aliases WHERE address='%s'",
               "domain = example.com, sub.example.org"],
    "legacy": ["select_field = goto", "table = aliases", "where_field = address",
               "additional_conditions = AND goto <> 'percent'"],
    "limit": ["query = SELECT goto FROM aliases WHERE address='%s' AND address <> "
              "'multi@example.com'", "expansion_limit = 1"],
}


def sql_compare(cfdir, typ, name, connection, body, tag=""):
    path = write(cfdir, f"{typ}{tag}-{name}.cf", "\n".join(connection + body) + "\n")
    return same_answers(cfdir, f"{typ}:{path}", ADDRESS_KEYS, min_found=1)


def check_sql_answers(found_by_query):
    plain = found_by_query["plain"]
    assert plain["bob@example.com"] == "bob@mail.example.com"
    assert plain["multi@example.com"] == "a@x.example,b@y.example"
    assert plain["o'brien@example.com"] == "quote@example.com"
    assert plain["back\\slash@example.com"] == "backslash"
    assert "empty@example.com" not in plain and "null@example.com" not in plain
    parts = found_by_query["parts"]
    # Keys are folded to lower case before the expansion, as Postfix does.
    assert parts["UPPER+Ext@Sub.Example.ORG"] == (
        "u=upper+ext d=sub.example.org 1=org 2=example S=upper+ext@sub.example.org "
        "U=upper+ext D=sub.example.org %")
    assert "user" not in parts        # no domain: the query is suppressed


@pytest.mark.parametrize("name", sorted(SQL_QUERIES))
def test_sqlite_matches_postfix(cfdir, sqlite_db, name):
    sql_compare(cfdir, "sqlite", name, [f"dbpath = {sqlite_db}"], SQL_QUERIES[name])


def test_sqlite_answers(cfdir, sqlite_db):
    check_sql_answers({n: sql_compare(cfdir, "sqlite", n, [f"dbpath = {sqlite_db}"], q)
                       for n, q in SQL_QUERIES.items() if n in ("plain", "parts")})


@pytest.mark.parametrize("name", sorted(SQL_QUERIES))
def test_mysql_matches_postfix(cfdir, mariadb, name):
    conn = mariadb.cf().splitlines()
    sql_compare(cfdir, "mysql", name, conn, SQL_QUERIES[name])


def test_mysql_answers_over_tcp_with_failover(cfdir, mariadb):
    """hosts tried in turn: a closed port first, then the server's TCP port."""
    from postern_instance import free_port
    conn = mariadb.cf(hosts=f"inet:127.0.0.1:{free_port()} inet:127.0.0.1:{mariadb.port}")
    check_sql_answers({n: sql_compare(cfdir, "mysql", n, conn.splitlines(), q, "-tcp")
                       for n, q in SQL_QUERIES.items() if n in ("plain", "parts")})


@pytest.mark.parametrize("name", sorted(SQL_QUERIES))
def test_pgsql_matches_postfix(cfdir, postgres, name):
    uri = (f"postgresql://{postgres.USER}@/{postgres.DB}?host={postgres.sockdir}"
           f"&port={postgres.port}")
    sql_compare(cfdir, "pgsql", name, [f"hosts = {uri}", f"dbname = {postgres.DB}"],
                SQL_QUERIES[name])


def test_pgsql_answers_over_its_unix_socket(cfdir, postgres):
    """Postern also takes the socket file itself as unix:/path."""
    conn = [f"hosts = unix:{postgres.socket}", f"user = {postgres.USER}",
            f"dbname = {postgres.DB}"]
    found = {}
    for n in ("plain", "parts"):
        path = write(cfdir, f"pgsql-unix-{n}.cf", "\n".join(conn + SQL_QUERIES[n]) + "\n")
        rc, out, err = query(POSTMAP, cfdir, f"pgsql:{path}", ADDRESS_KEYS)
        assert rc == 0, err
        found[n] = dict(line.split("\t", 1) for line in out.splitlines())
    check_sql_answers(found)


# --- LDAP ------------------------------------------------------------------------

LDAP_QUERIES = {
    "mail": ["query_filter = (mail=%s)", "result_attribute = description"],
    "uid": ["query_filter = (&(objectClass=inetOrgPerson)(uid=%u))",
            "result_attribute = description, mail", "result_format = %s (%D)"],
    "special": ["query_filter = (mail=%s)", "result_attribute = description",
                "special_result_attribute = member", "leaf_result_attribute = mail"],
    "leaf-only": ["query_filter = (mail=%s)", "result_attribute =",
                  "special_result_attribute = member", "leaf_result_attribute = mail"],
    "base": ["search_base = ou=people,dc=%2,dc=%1", "scope = one",
             "query_filter = (mail=%s)", "result_attribute = cn"],
    "domain": ["query_filter = (mail=%s)", "result_attribute = description",
               "domain = example.com"],
    "format": ["query_filter = (mail=%s)", "result_attribute = description",
               "result_format = %u at %d"],
    "bind": ["bind = yes", f"bind_dn = cn=admin,{LDAP_BASE}", "bind_pw = adminpw",
             "query_filter = (mail=%s)", "result_attribute = description"],
}


@pytest.mark.parametrize("name", sorted(LDAP_QUERIES))
def test_ldap_matches_postfix(cfdir, slapd, name):
    path = write(cfdir, f"ldap-{name}.cf", slapd.cf(*LDAP_QUERIES[name]))
    same_answers(cfdir, f"ldap:{path}", ADDRESS_KEYS, min_found=1)


def test_ldap_answers_over_tcp(cfdir, slapd):
    path = write(cfdir, "ldap-tcp.cf", slapd.cf(*LDAP_QUERIES["special"],
                                                 server_host=slapd.uri_tcp))
    found = same_answers(cfdir, f"ldap:{path}", ADDRESS_KEYS, min_found=3)
    assert found["multi@example.com"] == "multi@example.com,a@x.example,b@y.example"
    assert found["p(a)r*en@example.com"] == "p(a)r*en@example.com,paren-ok"
    assert found["staff@example.com"] == (
        "staff-list@example.com,bob@example.com,bob@mail.example.com,multi@example.com,"
        "a@x.example,b@y.example")


def test_ldap_bind_failure_is_a_temporary_failure(cfdir, slapd):
    path = write(cfdir, "ldap-badbind.cf", slapd.cf(
        "bind = simple", f"bind_dn = cn=admin,{LDAP_BASE}", "bind_pw = wrong",
        "query_filter = (mail=%s)", "result_attribute = description"))
    ours = query(POSTMAP, cfdir, f"ldap:{path}", ["bob@example.com"])
    theirs = query(POSTFIX_POSTMAP, cfdir, f"ldap:{path}", ["bob@example.com"])
    assert ours[:2] == theirs[:2] == (1, "")
    assert "bind: Invalid credentials" in ours[2]


def test_expansion_limit_exceeded_is_a_temporary_failure(cfdir, sqlite_db):
    path = write(cfdir, "sqlite-overflow.cf", "\n".join([
        f"dbpath = {sqlite_db}", "query = SELECT goto FROM aliases WHERE address='%s'",
        "expansion_limit = 1"]) + "\n")
    ours = query(POSTMAP, cfdir, f"sqlite:{path}", ["multi@example.com"])
    theirs = query(POSTFIX_POSTMAP, cfdir, f"sqlite:{path}", ["multi@example.com"])
    assert ours[:2] == theirs[:2] == (1, "")
    assert "exceeds expansion_limit 1" in ours[2]
    # Under the limit the same file answers.
    assert query(POSTMAP, cfdir, f"sqlite:{path}", ["bob@example.com"])[:2] == (
        0, "bob@example.com\tbob@mail.example.com\n")
