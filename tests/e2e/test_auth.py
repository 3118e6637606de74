"""The auth process's typed answers as IMAP and POP3 clients see them
(src/auth/auth_client.h): a wrong password is an authentication failure, too
many failures the try-again text, and an auth service that cannot check --
DATA/passwd unreadable, the auth process gone -- a temporary failure
(IMAP NO [UNAVAILABLE], POP3 -ERR [SYS/TEMP]), never "Authentication
failed": a client must not ask its user for another password because the
server cannot read its password file.

These tests run the server as root (as the others do), so a chmod 000
passwd would still be opened by the master; the unreadable file is a
directory or a symbolic link in its place instead (the master opens it
with O_NOFOLLOW).
"""

import base64
import os
import re
import signal
import socket
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import imap_server  # noqa: E402
from conftest import add_user  # noqa: E402

UNAVAILABLE = b"NO [UNAVAILABLE] Authentication service unavailable"
SYS_TEMP = b"-ERR [SYS/TEMP] Authentication service unavailable"


class Pop3:
    """Just enough POP3 for USER/PASS, over a plain socket."""

    def __init__(self, port, timeout=20):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        assert self.line().startswith(b"+OK")

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def cmd(self, text):
        self.sock.sendall(text.encode() + b"\r\n")
        return self.line()

    def login(self, user, password):
        assert self.cmd(f"USER {user}").startswith(b"+OK")
        return self.cmd(f"PASS {password}")

    def close(self):
        self.sock.close()


def imap_login(port, user, password):
    c = imap_server.Client(port)
    try:
        return c.cmd(f'LOGIN "{user}" "{password}"')[1]
    finally:
        c.close()


def imap_auth_plain(port, user, password):
    c = imap_server.Client(port)
    try:
        ir = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
        return c.cmd("AUTHENTICATE PLAIN " + ir)[1]
    finally:
        c.close()


def pop3_login(port, user, password):
    c = Pop3(port)
    try:
        return c.login(user, password)
    finally:
        c.close()


def next_look():
    """The auth process looks at DATA/passwd at most once a second."""
    time.sleep(1.1)


@pytest.fixture
def server(data):
    add_user(data, "alice", "secret")
    srv = imap_server.start(data, extra_opts={"auth_max_failures": "3"}, protocols=("imap", "pop3"))
    yield srv
    srv.stop()


def break_passwd(data, how):
    pw = data / "passwd"
    os.rename(pw, data / "passwd.saved")
    if how == "directory":
        os.mkdir(pw)
    elif how == "symlink":
        os.symlink(data / "passwd.saved", pw)
    else:
        assert how == "missing"


def restore_passwd(data):
    pw = data / "passwd"
    if pw.is_symlink() or pw.is_file():
        pw.unlink()
    elif pw.is_dir():
        pw.rmdir()
    os.rename(data / "passwd.saved", pw)


@pytest.mark.parametrize("how", ["directory", "symlink"])
def test_unreadable_passwd_is_unavailable(server, data, how):
    imap, pop3 = server.ports["imap"], server.ports["pop3"]
    assert imap_login(imap, "alice", "secret").startswith(b"OK")
    break_passwd(data, how)
    try:
        next_look()
        # right and wrong passwords alike: the server cannot tell
        for pw in ("secret", "wrong"):
            assert imap_login(imap, "alice", pw) == UNAVAILABLE
            assert imap_auth_plain(imap, "alice", pw) == UNAVAILABLE
            assert pop3_login(pop3, "alice", pw) == SYS_TEMP
    finally:
        restore_passwd(data)
    next_look()
    # the six answers above did not count as failures (auth_max_failures=3)
    assert imap_login(imap, "alice", "secret").startswith(b"OK")
    assert pop3_login(pop3, "alice", "secret").startswith(b"+OK")
    log = server.log()
    assert "cannot read the passwd file" in log, log
    assert "readable again" in log, log


def test_missing_passwd_is_no_users(server, data):
    """No file at all is no users (as with Dovecot's passwd-file): a plain
    authentication failure, not a temporary one."""
    imap, pop3 = server.ports["imap"], server.ports["pop3"]
    break_passwd(data, "missing")
    try:
        next_look()
        assert imap_login(imap, "alice", "secret") == b"NO [AUTHENTICATIONFAILED] Authentication failed"
        assert pop3_login(pop3, "alice", "secret") == b"-ERR [AUTH] Authentication failed"
    finally:
        restore_passwd(data)


def test_rate_limit_answers_try_again(data):
    add_user(data, "alice", "secret")
    srv = imap_server.start(data, extra_opts={"auth_max_failures": "3"}, protocols=("imap", "pop3"))
    try:
        imap, pop3 = srv.ports["imap"], srv.ports["pop3"]
        assert imap_login(imap, "alice", "wrong1") == b"NO [AUTHENTICATIONFAILED] Authentication failed"
        assert pop3_login(pop3, "alice", "wrong2") == b"-ERR [AUTH] Authentication failed"
        assert imap_login(imap, "alice", "wrong3") == b"NO [AUTHENTICATIONFAILED] Authentication failed"
        # the limit is reached: refused even with the right password
        try_again = b"NO [AUTHENTICATIONFAILED] Too many failures; try again later"
        assert imap_login(imap, "alice", "secret") == try_again
        assert imap_auth_plain(imap, "alice", "secret") == try_again
        assert pop3_login(pop3, "alice", "secret") == b"-ERR [AUTH] Too many failures; try again later"
    finally:
        srv.stop()


def test_over_long_user_is_answered(server):
    """IMAP LOGIN takes a user name of any length; one longer than the auth
    protocol carries is no user, and is answered (it used to get no answer
    at all, and the session hung)."""
    c = imap_server.Client(server.ports["imap"], timeout=10)
    try:
        _, r = c.cmd('LOGIN "%s" "secret"' % ("u" * 300))
        assert r == b"NO [AUTHENTICATIONFAILED] Authentication failed"
        assert c.cmd('LOGIN "alice" "secret"')[1].startswith(b"OK")
    finally:
        c.close()


def test_auth_process_lost_fails_waiting_logins(data):
    """A login waiting for its answer (here: a failure held back by
    auth_failure_delay_ms) when the auth process dies is answered as a
    temporary failure at once, not left hanging."""
    add_user(data, "alice", "secret")
    srv = imap_server.start(data, extra_opts={"auth_failure_delay_ms": "20000"},
                            protocols=("imap", "pop3"))
    try:
        imap = imap_server.Client(srv.ports["imap"], timeout=10)
        pop3 = Pop3(srv.ports["pop3"], timeout=10)
        imap.send(b"a LOGIN alice wrong\r\n")
        assert pop3.cmd("USER alice").startswith(b"+OK")
        pop3.sock.sendall(b"PASS wrong\r\n")
        # the auth process logs each attempt as it handles it
        deadline = time.monotonic() + 10
        pids = set()
        while time.monotonic() < deadline and len(pids) < 1:
            pids = set(re.findall(r"mailroom\[(\d+)\]: info: auth: user=alice", srv.log()))
            time.sleep(0.05)
        while time.monotonic() < deadline and srv.log().count("auth: user=alice") < 2:
            time.sleep(0.05)
        assert len(pids) == 1, srv.log()
        t0 = time.monotonic()
        os.kill(int(pids.pop()), signal.SIGKILL)
        assert imap._read_response() == b"a " + UNAVAILABLE
        assert pop3.line() == SYS_TEMP
        assert time.monotonic() - t0 < 5
        imap.close()
        pop3.close()
    finally:
        srv.stop()
