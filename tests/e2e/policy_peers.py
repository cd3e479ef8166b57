"""Policy servers for the check_policy_service tests, on 127.0.0.1 or a
UNIX socket in the test's directory:

PolicyServer  a threaded server speaking Postfix's policy protocol: keeps
              every request it got (a dict of attributes) and answers
              each with decide(request) -> the action text. decide may
              also return a HOSTILE_* behaviour instead of an action.
Postgrey      the Debian postgrey daemon with its own --dbdir, on a free
              port, with a short --delay.
"""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading

from postern_instance import free_port, wait_port

GARBAGE = "garbage"          # a line without '='
LONG_LINE = "long line"      # one line of 100 kB
SILENT = "silent"            # never answers
CLOSE_MID = "close mid"      # half an answer, then close


class PolicyServer:
    def __init__(self, decide, unix_path=None):
        self.decide = decide
        self.requests = []
        self.connections = 0
        self.lock = threading.Lock()
        self.stopping = False
        if unix_path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(unix_path)
            self.endpoint = f"unix:{unix_path}"
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(("127.0.0.1", 0))
            self.endpoint = f"inet:127.0.0.1:{self.sock.getsockname()[1]}"
        self.sock.listen(64)
        self.threads = []
        self.conns = []
        self.acceptor = threading.Thread(target=self.accept_loop, daemon=True)
        self.acceptor.start()

    def accept_loop(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.conns.append(conn)
            t = threading.Thread(target=self.serve, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def serve(self, conn):
        f = conn.makefile("rb")
        try:
            while True:
                attrs = {}
                while True:
                    line = f.readline()
                    if not line:
                        return
                    line = line.rstrip(b"\n").decode()
                    if not line:
                        break
                    name, _, value = line.partition("=")
                    attrs[name] = value
                with self.lock:
                    self.requests.append(attrs)
                answer = self.decide(attrs)
                if answer == SILENT:
                    while f.readline():
                        pass
                    return
                if answer == GARBAGE:
                    conn.sendall(b"this is no attribute\n\n")
                elif answer == LONG_LINE:
                    conn.sendall(b"action=" + b"x" * 100000 + b"\n\n")
                elif answer == CLOSE_MID:
                    conn.sendall(b"action=REJ")
                    return
                else:
                    conn.sendall(f"action={answer}\n\n".encode())
        except OSError:
            return
        finally:
            conn.close()

    def close(self):
        self.stopping = True
        self.sock.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class Postgrey:
    def __init__(self, delay=2):
        self.dir = tempfile.mkdtemp(prefix="postgrey-")
        if os.geteuid() == 0:   # postgrey drops to its own user, which must own the db
            pw = pwd.getpwnam("postgrey")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.port = free_port()
        exe = shutil.which("postgrey") or "/usr/sbin/postgrey"
        self.proc = subprocess.Popen(
            [exe, f"--inet=127.0.0.1:{self.port}", f"--dbdir={self.dir}", f"--delay={delay}",
             f"--pidfile={self.dir}/postgrey.pid", "--max-age=1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_port(self.port, timeout=30)
        self.endpoint = f"inet:127.0.0.1:{self.port}"

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
