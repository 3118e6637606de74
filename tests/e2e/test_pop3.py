"""End-to-end tests of POP3 (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034
AUTH, RFC 3206 response codes) against a real `mailroom serve`, with
Python's poplib and with raw sockets where the exact bytes matter.

Expected values come from the RFCs and from the bytes delivered: a message's
size is the length of its wire form (bare LF -> CRLF, conftest.wire), RETR
must give back exactly those bytes with RFC 1939 byte-stuffing, and a UIDL
is "%08x%08x" of the UID (from the file name, U=) and the mailbox's
UIDVALIDITY (from INBOX/mailroom-box), never numbers read from mailroom's
own POP3 answers.

Messages are delivered before the server starts (`mailroom deliver` run as
root while a server runs leaves files its workers cannot read; see
test_clients.py).
"""

import base64
import imaplib
import os
import poplib
import re
import shutil
import socket
import ssl
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import imap_server  # noqa: E402
from conftest import (add_user, check, check_problems, cur_files, deliver, mailbox_dir,  # noqa: E402
                      make_message, wire)

MAX_ERRORS = 20  # POP3_MAX_ERRORS in src/pop3/pop3_int.h


# ---- helpers ---------------------------------------------------------------------

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(data, **opts):
    """A server with IMAP and POP3 listeners on loopback."""
    return imap_server.start(data, extra_opts=opts or None, protocols=("imap", "pop3"))


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def pop3_body(wire_bytes):
    """RFC 1939 3: a multi-line response body for these message bytes:
    every line starting with "." gets another ".", the last line gets a
    CRLF if it has none, then the terminating ".CRLF"."""
    out = re.sub(rb"(^|\r\n)\.", rb"\1..", wire_bytes)
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out + b".\r\n"


def top_bytes(wire_bytes, n):
    """RFC 1939 7: header, the blank line, then n lines of the body."""
    head, sep, body = wire_bytes.partition(b"\r\n\r\n")
    if not sep:
        return wire_bytes
    lines = body.split(b"\r\n")
    keep = b"".join(l + b"\r\n" for l in lines[:n]) if n else b""
    if n >= len(lines) or (n == len(lines) - 1 and lines[-1] == b""):
        keep = body
    return head + b"\r\n\r\n" + keep


def uidvalidity(data, user, mailbox="INBOX"):
    text = (mailbox_dir(data, user, mailbox) / "mailroom-box").read_text()
    return int(re.search(r"^uidvalidity (\d+)$", text, re.M).group(1))


def expected_uidls(data, user):
    uv = uidvalidity(data, user)
    return [b"%08x%08x" % (uid, uv) for uid, _, _ in cur_files(data, user)]


def store_snapshot(data, user):
    """Names and contents of every message file: what must not change."""
    out = {}
    for sub in ("cur", "new"):
        d = mailbox_dir(data, user) / sub
        for name in sorted(os.listdir(d)):
            out[f"{sub}/{name}"] = (d / name).read_bytes()
    return out


class Raw:
    """A POP3 client over a plain socket, for the exact bytes."""

    def __init__(self, port, host="127.0.0.1", timeout=20):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.greeting = self.line()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def body(self):
        """The rest of a multi-line response, terminator included."""
        parts = []
        tail = b"\r\n"  # the status line's CRLF: a line starts here
        while True:
            i = (tail + self.buf).find(b"\r\n.\r\n")
            if i >= 0:
                end = i + 5 - len(tail)  # the terminator ends in buf
                parts.append(self.buf[:end])
                self.buf = self.buf[end:]
                return b"".join(parts)
            parts.append(self.buf)
            tail = (tail + self.buf)[-4:]
            self.buf = b""
            self._fill()

    def cmd(self, text):
        self.send(text.encode() + b"\r\n" if isinstance(text, str) else text + b"\r\n")
        return self.line()

    def login(self, user="alice", password="secret"):
        assert self.cmd(f"USER {user}").startswith(b"+OK")
        r = self.cmd(f"PASS {password}")
        assert r.startswith(b"+OK"), r
        return r

    def is_closed(self, timeout=5):
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (socket.timeout, TimeoutError):
            return False
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


MSGS = [
    # a line that is a lone ".", lines starting with "." and "..", bare LF
    b"From: a@example.org\nTo: alice@example.org\nSubject: dots\n\n.\n..two\n.three\nend\n",
    # already CRLF, several body lines
    b"From: b@example.org\r\nSubject: lines\r\n\r\nl1\r\nl2\r\nl3\r\nl4\r\n",
    # no final line ending
    b"From: c@example.org\nSubject: no eol\n\nlast line without newline",
]


@pytest.fixture
def mailbox(data):
    """alice with MSGS delivered; returns their wire forms."""
    add_user(data, "alice", "secret")
    for m in MSGS:
        p = deliver(data, "alice", m)
        assert p.returncode == 0, p.stderr
    return [wire(m) for m in MSGS]


@pytest.fixture
def server(data, mailbox):
    srv = start(data)
    yield srv
    srv.stop()


def pop3(srv):
    return poplib.POP3("127.0.0.1", srv.ports["pop3"], timeout=20)


# ---- greeting, CAPA ----------------------------------------------------------------

def test_greeting_and_capa_in_both_states(server):
    p = pop3(server)
    assert p.getwelcome().startswith(b"+OK")
    want = {"TOP": [], "UIDL": [], "USER": [], "SASL": ["PLAIN", "LOGIN"], "RESP-CODES": [],
            "AUTH-RESP-CODE": [], "PIPELINING": [], "STLS": [], "EXPIRE": ["NEVER"],
            "IMPLEMENTATION": ["mailroom"]}
    assert p.capa() == want
    p.user("alice")
    p.pass_("secret")
    # RFC 2449 5: what AUTHORIZATION offers is announced in both states.
    assert p.capa() == want
    p.quit()


def test_capa_takes_no_argument(server):
    c = Raw(server.ports["pop3"])
    assert c.cmd("CAPA x").startswith(b"-ERR")
    assert c.cmd("CAPA").startswith(b"+OK")
    assert b"\r\nTOP\r\n" in b"\r\n" + c.body()


# ---- AUTHORIZATION ------------------------------------------------------------------

def test_user_pass(server):
    p = pop3(server)
    assert p.user("alice").startswith(b"+OK")
    assert p.pass_("secret").startswith(b"+OK")
    p.quit()


def test_wrong_password_and_unknown_user(server):
    c = Raw(server.ports["pop3"])
    assert c.cmd("USER alice").startswith(b"+OK")
    assert c.cmd("PASS wrong").startswith(b"-ERR [AUTH]")
    # The USER must be given again after a failed PASS.
    assert c.cmd("PASS secret").startswith(b"-ERR")
    # An unknown user gets the same answer as a wrong password.
    assert c.cmd("USER nobody-here").startswith(b"+OK")
    assert c.cmd("PASS secret").startswith(b"-ERR [AUTH]")
    c.login()
    assert c.cmd("STAT") == b"+OK 3 %d" % sum(len(w) for w in map(wire, MSGS))


def test_usage_errors_in_authorization(server):
    c = Raw(server.ports["pop3"])
    assert c.cmd("USER").startswith(b"-ERR")
    assert c.cmd("USER a b").startswith(b"-ERR")
    assert c.cmd("PASS").startswith(b"-ERR")
    assert c.cmd("PASS secret").startswith(b"-ERR")  # no USER yet
    assert c.cmd("APOP alice 0123456789abcdef0123456789abcdef").startswith(b"-ERR")
    c.login()


def test_commands_before_auth_get_err_and_change_nothing(data, server):
    before = store_snapshot(data, "alice")
    c = Raw(server.ports["pop3"])
    for cmd in ["STAT", "LIST", "LIST 1", "RETR 1", "DELE 1", "DELE 2", "NOOP", "RSET",
                "TOP 1 1", "UIDL", "UIDL 1"]:
        assert c.cmd(cmd).startswith(b"-ERR"), cmd
    # QUIT in AUTHORIZATION: no UPDATE state (RFC 1939 4).
    assert c.cmd("QUIT").startswith(b"+OK")
    assert c.is_closed()
    assert store_snapshot(data, "alice") == before


def test_auth_mechanism_list(server):
    c = Raw(server.ports["pop3"])
    assert c.cmd("AUTH").startswith(b"+OK")
    assert c.body() == b"PLAIN\r\nLOGIN\r\n.\r\n"


def test_auth_plain_initial_response(server):
    c = Raw(server.ports["pop3"])
    ir = base64.b64encode(b"\0alice\0secret").decode()
    assert c.cmd(f"AUTH PLAIN {ir}").startswith(b"+OK")
    assert c.cmd("STAT").startswith(b"+OK 3 ")


def test_auth_plain_with_authzid_and_continuation(server):
    c = Raw(server.ports["pop3"])
    assert c.cmd("AUTH PLAIN") == b"+ "  # RFC 5034 4: "+" SP empty challenge
    assert c.cmd(base64.b64encode(b"alice\0alice\0secret")).startswith(b"+OK")


def test_auth_login(server):
    c = Raw(server.ports["pop3"])
    assert base64.b64decode(c.cmd("AUTH LOGIN")[2:]) == b"Username:"
    assert base64.b64decode(c.cmd(base64.b64encode(b"alice"))[2:]) == b"Password:"
    assert c.cmd(base64.b64encode(b"secret")).startswith(b"+OK")


def test_auth_failures(server):
    c = Raw(server.ports["pop3"])
    assert c.cmd("AUTH CRAM-MD5").startswith(b"-ERR")
    assert c.cmd("AUTH PLAIN").startswith(b"+ ")
    assert c.cmd("*").startswith(b"-ERR")  # RFC 5034 4: cancel
    assert c.cmd("AUTH PLAIN !!!notbase64").startswith(b"-ERR [AUTH]")
    assert c.cmd("AUTH PLAIN " + base64.b64encode(b"\0alice\0wrong").decode()).startswith(b"-ERR [AUTH]")
    # Acting as another user is not offered.
    assert c.cmd("AUTH PLAIN " + base64.b64encode(b"bob\0alice\0secret").decode()).startswith(b"-ERR [AUTH]")
    assert c.cmd("AUTH LOGIN").startswith(b"+ ")
    assert c.cmd(b"\0").startswith(b"-ERR")  # NUL in a SASL line aborts it
    # Still usable.
    assert c.cmd("AUTH PLAIN " + base64.b64encode(b"\0alice\0secret").decode()).startswith(b"+OK")


def test_overlong_sasl_line_aborts_the_exchange(server):
    c = Raw(server.ports["pop3"])
    assert c.cmd("AUTH PLAIN").startswith(b"+ ")
    r = c.cmd(b"A" * 100000)
    assert r.startswith(b"-ERR"), r
    # The exchange is over: the next line is a command again, not a response.
    assert c.cmd("CAPA").startswith(b"+OK")
    c.body()
    # A response of 4094 octets plus CRLF is within the line limit: it is
    # read as the SASL response (and refused: it is no valid PLAIN message),
    # not as an overlong line.
    assert c.cmd("AUTH PLAIN").startswith(b"+ ")
    r = c.cmd(b"A" * 4092)
    assert r.startswith(b"-ERR [AUTH]"), r
    c.login()


def test_auth_failure_delay_comes_from_auth_process(data, mailbox):
    """The failure delay is the auth process's, per user and IP
    (src/auth/auth_penalty.h): alice's failure is held back, and so is her
    next answer (the right password too); bob's right password from the
    same IP is answered at once."""
    add_user(data, "bob", "bobpw")
    srv = start(data, auth_failure_delay_ms="600")
    try:
        c = Raw(srv.ports["pop3"])
        c.cmd("USER alice")
        t = time.monotonic()
        assert c.cmd("PASS wrong").startswith(b"-ERR [AUTH]")
        assert time.monotonic() - t >= 0.55
        b = Raw(srv.ports["pop3"])
        b.cmd("USER bob")
        t = time.monotonic()
        assert b.cmd("PASS bobpw").startswith(b"+OK")
        assert time.monotonic() - t < 0.5
        c.cmd("USER alice")
        t = time.monotonic()
        assert c.cmd("PASS secret").startswith(b"+OK")
        assert time.monotonic() - t >= 0.55
    finally:
        srv.stop()


def test_auth_rate_limit(data, mailbox):
    """auth_max_failures different wrong passwords of alice from one IP
    refuse that pair (src/auth/auth_penalty.h)."""
    srv = start(data, auth_max_failures="3")
    try:
        c = Raw(srv.ports["pop3"])
        for i in range(3):
            c.cmd("USER alice")
            assert c.cmd(f"PASS wrong{i}").startswith(b"-ERR [AUTH]")
        c.cmd("USER alice")
        r = c.cmd("PASS secret")
        assert r.startswith(b"-ERR [AUTH]") and b"Too many" in r
    finally:
        srv.stop()


def test_wrong_state_after_login(server):
    c = Raw(server.ports["pop3"])
    c.login()
    for cmd in ["USER alice", "PASS secret", "AUTH PLAIN", "STLS"]:
        assert c.cmd(cmd).startswith(b"-ERR"), cmd
    assert c.cmd("NOOP") == b"+OK"


def test_login_and_logout_logged(server):
    c = Raw(server.ports["pop3"])
    c.login()
    c.cmd("QUIT")
    assert c.is_closed()
    time.sleep(0.3)
    log = server.log()
    assert re.search(r"pop3 \S+ login user=alice ip=127\.0\.0\.1", log), log
    assert re.search(r"pop3 \S+ disconnect user=alice ip=127\.0\.0\.1", log), log


# ---- TRANSACTION --------------------------------------------------------------------

def test_stat_list(server, mailbox):
    p = pop3(server)
    p.user("alice")
    p.pass_("secret")
    sizes = [len(w) for w in mailbox]
    assert p.stat() == (3, sum(sizes))
    resp, lines, _ = p.list()
    assert resp.startswith(b"+OK")
    assert lines == [b"%d %d" % (i + 1, s) for i, s in enumerate(sizes)]
    for i, s in enumerate(sizes):
        assert p.list(i + 1) == b"+OK %d %d" % (i + 1, s)
    for bad in (0, 4):
        with pytest.raises(poplib.error_proto):
            p.list(bad)
    p.quit()


def test_retr_exact_bytes(server, mailbox):
    c = Raw(server.ports["pop3"])
    c.login()
    for i, w in enumerate(mailbox):
        status = c.cmd(f"RETR {i + 1}")
        assert status.startswith(b"+OK %d" % len(w)), status
        assert c.body() == pop3_body(w)
    # poplib's view agrees (unstuffed lines).
    p = pop3(server)
    with pytest.raises(poplib.error_proto):  # the maildrop is locked by c
        p.user("alice")
        p.pass_("secret")
    c.cmd("QUIT")
    p = pop3(server)
    p.user("alice")
    p.pass_("secret")
    _, lines, octets = p.retr(1)
    assert b"\r\n".join(lines) + b"\r\n" == mailbox[0]
    p.quit()


def test_top(server, mailbox):
    c = Raw(server.ports["pop3"])
    c.login()
    w = mailbox[1]
    for n in (0, 1, 2, 4, 5, 4294967295):
        assert c.cmd(f"TOP 2 {n}").startswith(b"+OK")
        assert c.body() == pop3_body(top_bytes(w, n)), n
    # TOP of the message whose body starts with a lone "." line.
    assert c.cmd("TOP 1 1").startswith(b"+OK")
    assert c.body() == pop3_body(top_bytes(mailbox[0], 1))
    for bad in ("TOP", "TOP 1", "TOP 1 x", "TOP x 1", "TOP 1 -1", "TOP 1 1 1",
                "TOP 1 4294967296", "TOP 1 99999999999999999999"):
        assert c.cmd(bad).startswith(b"-ERR"), bad
    assert c.cmd("TOP 9 1").startswith(b"-ERR")
    assert c.cmd("TOP 0 1").startswith(b"-ERR")


def test_uidl_format(data, server):
    p = pop3(server)
    p.user("alice")
    p.pass_("secret")
    want = expected_uidls(data, "alice")
    _, lines, _ = p.uidl()
    assert lines == [b"%d %s" % (i + 1, u) for i, u in enumerate(want)]
    assert p.uidl(2) == b"+OK 2 " + want[1]
    # RFC 1939 7: 1 to 70 characters in 0x21-0x7E.
    assert all(re.fullmatch(rb"[\x21-\x7e]{1,70}", u) for u in want)
    p.quit()


def test_uidl_stable_across_restart_rebuild_and_imap(data, mailbox):
    want = expected_uidls(data, "alice")
    uv = uidvalidity(data, "alice")
    srv = start(data)
    try:
        # IMAP sees the same UIDs and UIDVALIDITY (it saw them first here).
        m = imaplib.IMAP4("127.0.0.1", srv.port)
        m.login("alice", "secret")
        typ, st = m.status("INBOX", "(UIDVALIDITY)")
        assert int(re.search(rb"UIDVALIDITY (\d+)", st[0]).group(1)) == uv
        m.select("INBOX")
        typ, fetched = m.uid("FETCH", "1:*", "(UID)")
        imap_uids = [int(re.search(rb"UID (\d+)", f).group(1)) for f in fetched]
        assert [b"%08x%08x" % (u, uv) for u in imap_uids] == want
        m.logout()
        p = pop3(srv)
        p.user("alice")
        p.pass_("secret")
        assert [l.split()[1] for l in p.uidl()[1]] == want
        p.quit()
    finally:
        srv.stop()
    # Delete the index, rebuild it, start again: the same UIDLs.
    idx = Path(data) / "mail" / "alice" / "index.sqlite"
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(str(idx) + suffix)
        except FileNotFoundError:
            pass
    r = check(data, repair=True)
    assert r.returncode == 0, r.stderr
    assert check_problems(check(data)) == []
    srv = start(data)
    try:
        p = pop3(srv)
        p.user("alice")
        p.pass_("secret")
        assert [l.split()[1] for l in p.uidl()[1]] == want
        assert p.stat() == (3, sum(len(w) for w in mailbox))
        p.quit()
    finally:
        srv.stop()


def test_dele_rset_quit(data, server, mailbox):
    c = Raw(server.ports["pop3"])
    c.login()
    total = sum(len(w) for w in mailbox)
    assert c.cmd("DELE 2").startswith(b"+OK")
    assert c.cmd("DELE 2").startswith(b"-ERR")  # already deleted
    assert c.cmd("STAT") == b"+OK 2 %d" % (total - len(mailbox[1]))
    for cmd in ("LIST 2", "RETR 2", "TOP 2 0", "UIDL 2"):
        assert c.cmd(cmd).startswith(b"-ERR"), cmd
    # RFC 1939 5: deleted messages are not listed.
    assert c.cmd("LIST").startswith(b"+OK")
    assert c.body() == b"1 %d\r\n3 %d\r\n.\r\n" % (len(mailbox[0]), len(mailbox[2]))
    assert c.cmd("UIDL").startswith(b"+OK")
    assert [l.split()[0] for l in c.body().split(b"\r\n")[:-2]] == [b"1", b"3"]
    assert c.cmd("RSET").startswith(b"+OK")
    assert c.cmd("STAT") == b"+OK 3 %d" % total
    assert c.cmd("DELE 1").startswith(b"+OK")
    assert c.cmd("DELE 3").startswith(b"+OK")
    uids = [u for u, _, _ in cur_files(data, "alice")]
    # Nothing is removed before QUIT.
    assert len(cur_files(data, "alice")) == 3
    assert c.cmd("QUIT").startswith(b"+OK")
    assert c.is_closed()
    assert [u for u, _, _ in cur_files(data, "alice")] == [uids[1]]


def test_dropped_connection_deletes_nothing(data, server):
    before = store_snapshot(data, "alice")
    c = Raw(server.ports["pop3"])
    c.login()
    assert c.cmd("DELE 1").startswith(b"+OK")
    assert c.cmd("DELE 2").startswith(b"+OK")
    c.close()
    time.sleep(0.5)
    assert store_snapshot(data, "alice") == before
    # And the lock went with the connection.
    c = Raw(server.ports["pop3"])
    c.login()
    assert c.cmd("STAT").startswith(b"+OK 3 ")


def test_imap_session_sees_pop3_expunge(data, server):
    m = imaplib.IMAP4("127.0.0.1", server.port)
    m.login("alice", "secret")
    typ, n = m.select("INBOX")
    assert int(n[0]) == 3
    p = pop3(server)
    p.user("alice")
    p.pass_("secret")
    p.dele(1)
    p.dele(3)
    p.quit()
    m.noop()
    expunged = m.response("EXPUNGE")[1]
    assert expunged is not None and len([e for e in expunged if e]) == 2, expunged
    typ, n = m.select("INBOX")
    assert int(n[0]) == 1
    m.logout()


def test_message_expunged_by_imap_meanwhile(data, server, mailbox):
    c = Raw(server.ports["pop3"])
    c.login()
    m = imaplib.IMAP4("127.0.0.1", server.port)
    m.login("alice", "secret")
    m.select("INBOX")
    m.uid("STORE", str(cur_files(data, "alice")[0][0]), "+FLAGS", r"(\Deleted)")
    m.expunge()
    m.logout()
    assert c.cmd("RETR 1").startswith(b"-ERR")
    assert c.cmd("RETR 2").startswith(b"+OK %d" % len(mailbox[1]))
    assert c.body() == pop3_body(mailbox[1])
    assert c.cmd("DELE 1").startswith(b"+OK")  # harmless
    assert c.cmd("QUIT").startswith(b"+OK")
    assert len(cur_files(data, "alice")) == 2


def test_in_use(data, server):
    a = Raw(server.ports["pop3"])
    a.login()
    b = Raw(server.ports["pop3"])
    b.cmd("USER alice")
    r = b.cmd("PASS secret")
    assert r.startswith(b"-ERR [IN-USE]"), r
    # RFC 1939 4: b may try again; once a is gone it gets in.
    assert a.cmd("QUIT").startswith(b"+OK")
    assert a.is_closed()
    b.login()
    assert b.cmd("STAT").startswith(b"+OK 3 ")
    # IMAP is not locked out meanwhile.
    m = imaplib.IMAP4("127.0.0.1", server.port)
    m.login("alice", "secret")
    assert m.select("INBOX")[0] == "OK"
    m.logout()


def test_noop_and_usage_errors_in_transaction(server):
    c = Raw(server.ports["pop3"])
    c.login()
    assert c.cmd("NOOP") == b"+OK"
    for bad in ("NOOP x", "STAT x", "RSET x", "LIST 1 2", "UIDL 1 2", "RETR", "RETR 1 2",
                "DELE", "QUIT now"):
        assert c.cmd(bad).startswith(b"-ERR"), bad
    assert c.cmd("QUIT").startswith(b"+OK")


def test_empty_maildrop(data):
    add_user(data, "bob", "pw")
    srv = start(data)
    try:
        c = Raw(srv.ports["pop3"])
        c.login("bob", "pw")
        assert c.cmd("STAT") == b"+OK 0 0"
        assert c.cmd("LIST").startswith(b"+OK")
        assert c.body() == b".\r\n"
        assert c.cmd("UIDL").startswith(b"+OK")
        assert c.body() == b".\r\n"
        assert c.cmd("RETR 1").startswith(b"-ERR")
        assert c.cmd("QUIT").startswith(b"+OK")
    finally:
        srv.stop()


# ---- pipelining ----------------------------------------------------------------------

def test_pipelining(server, mailbox):
    c = Raw(server.ports["pop3"])
    c.send(b"CAPA\r\nUSER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nRETR 1\r\nTOP 2 1\r\n"
           b"UIDL 3\r\nBOGUS\r\nDELE 3\r\nNOOP\r\nRSET\r\nQUIT\r\n")
    assert c.line().startswith(b"+OK")
    assert b"PIPELINING" in c.body()
    assert c.line().startswith(b"+OK")
    assert c.line().startswith(b"+OK")
    assert c.line() == b"+OK 3 %d" % sum(len(w) for w in mailbox)
    assert c.line().startswith(b"+OK")
    assert c.body() == b"".join(b"%d %d\r\n" % (i + 1, len(w)) for i, w in enumerate(mailbox)) + b".\r\n"
    assert c.line().startswith(b"+OK %d" % len(mailbox[0]))
    assert c.body() == pop3_body(mailbox[0])
    assert c.line().startswith(b"+OK")
    assert c.body() == pop3_body(top_bytes(mailbox[1], 1))
    assert c.line().startswith(b"+OK 3 ")
    assert c.line().startswith(b"-ERR")
    assert c.line().startswith(b"+OK")
    assert c.line() == b"+OK"
    assert c.line().startswith(b"+OK")
    assert c.line().startswith(b"+OK")
    assert c.is_closed()


def test_verb_and_args_in_separate_writes(server):
    c = Raw(server.ports["pop3"])
    for piece in (b"US", b"ER ali", b"ce\r", b"\nPASS sec", b"ret\r\n"):
        c.send(piece)
        time.sleep(0.05)
    assert c.line().startswith(b"+OK")
    assert c.line().startswith(b"+OK")


# ---- hostile input ------------------------------------------------------------------

@pytest.mark.parametrize("line, logged_in", [
    (b"RETR 99999999999999999999", True),
    (b"LIST 4294967296", True),
    (b"DELE 18446744073709551617", True),
    (b"TOP 1 99999999999999999999", True),
    (b"RETR -1", True),
    (b"RETR 0x1", True),
    (b"UIDL +1", True),
    (b"\x01\x02\x03 garbage \xff\xfe", True),
    (b"\xff\xfe\xfd", False),
    (b"RETR\x001", True),
    (b"DELE 1\x00", True),
    (b"\x00", False),
    (b"", False),
    (b"  ", False),
    (b"NOOP\rX", True),
    (b"A" * 300, False),
    (b"DELE " + b"1" * 300, True),
    (b"USER " + b"x" * 251, False),  # 256 octets with CRLF
])
def test_hostile_lines_get_err_and_change_nothing(data, server, line, logged_in):
    before = store_snapshot(data, "alice")
    c = Raw(server.ports["pop3"])
    if logged_in:
        c.login()
    r = c.cmd(line)
    assert r.startswith(b"-ERR "), r
    assert len(r) > 5
    # The session goes on, and the line did not leave anything behind.
    assert c.cmd("CAPA").startswith(b"+OK")
    c.body()
    if logged_in:
        assert c.cmd("STAT").startswith(b"+OK 3 ")
        assert c.cmd("QUIT").startswith(b"+OK")
    else:
        c.login()
        assert c.cmd("QUIT").startswith(b"+OK")
    assert c.is_closed()
    assert store_snapshot(data, "alice") == before


def test_longest_command_line_is_accepted(server):
    c = Raw(server.ports["pop3"])
    # RFC 2449 4: 255 octets including CRLF.
    line = b"USER " + b"x" * 248
    assert len(line) + 2 == 255
    assert c.cmd(line).startswith(b"+OK")


def test_megabyte_line_then_commands(data, server):
    c = Raw(server.ports["pop3"])
    c.login()
    c.send(b"DELE 1" + b"1" * (4 << 20) + b"\r\nSTAT\r\nQUIT\r\n")
    assert c.line().startswith(b"-ERR")
    assert c.line().startswith(b"+OK 3 ")
    assert c.line().startswith(b"+OK")
    assert len(cur_files(data, "alice")) == 3


def test_too_many_errors_closes(server):
    c = Raw(server.ports["pop3"])
    # Exactly as many as allowed: nothing is left unread when the server
    # closes (unread input would turn the close into a reset).
    c.send(b"BOGUS\r\n" * MAX_ERRORS)
    answers = []
    try:
        while True:
            answers.append(c.line())
    except (EOFError, ConnectionResetError):
        pass
    assert len(answers) == MAX_ERRORS
    assert all(a.startswith(b"-ERR") for a in answers)


# ---- bare LF, big messages, backpressure -----------------------------------------------

def test_bare_lf_file_dropped_in_new(data, mailbox):
    raw = (b"From: x@example.org\nSubject: dropped\n\n.leading dot\nline two\n"
           b"\n..\nend")
    new = mailbox_dir(data, "alice") / "new"
    f = new / "1700000000.dropped.host"
    f.write_bytes(raw)
    st = os.stat(mailbox_dir(data, "alice"))
    os.chown(f, st.st_uid, st.st_gid)
    srv = start(data)
    try:
        c = Raw(srv.ports["pop3"])
        c.login()
        want = wire(raw)
        assert c.cmd("LIST 4") == b"+OK 4 %d" % len(want)
        assert c.cmd("RETR 4").startswith(b"+OK %d" % len(want))
        assert c.body() == pop3_body(want)
        assert c.cmd("TOP 4 1").startswith(b"+OK")
        assert c.body() == pop3_body(top_bytes(want, 1))
        # The size is the same number IMAP gives as RFC822.SIZE.
        m = imaplib.IMAP4("127.0.0.1", srv.port)
        m.login("alice", "secret")
        m.select("INBOX")
        typ, d = m.fetch("4", "(RFC822.SIZE)")
        assert int(re.search(rb"RFC822.SIZE (\d+)", d[0]).group(1)) == len(want)
        m.logout()
        # The file itself is not rewritten.
        files = cur_files(data, "alice")
        assert files[-1][2].read_bytes() == raw
    finally:
        srv.stop()


def _rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for l in f:
            if l.startswith("VmRSS:"):
                return int(l.split()[1])
    return 0


def test_big_message_pipelined_retr_bounded_memory(data):
    add_user(data, "alice", "secret")
    msg = make_message("big", body_size=4 << 20)
    assert deliver(data, "alice", msg).returncode == 0
    w = wire(msg)
    srv = start(data)
    try:
        c = Raw(srv.ports["pop3"], timeout=60)
        c.login()
        kids = srv.children()
        before = sum(_rss_kb(k) for k in kids)
        n = 20  # 80 MB of responses asked for, none read yet
        c.send(b"RETR 1\r\n" * n + b"QUIT\r\n")
        time.sleep(2)
        grown = sum(_rss_kb(k) for k in kids) - before
        print(f"RSS of the server's children grew by {grown} KB with {n} x {len(w)} bytes asked for")
        if "asan" not in os.environ.get("MAILROOM", ""):
            assert grown < 40 * 1024, f"RSS grew by {grown} KB"
        expect = pop3_body(w)
        for _ in range(n):
            assert c.line() == b"+OK %d octets" % len(w)
            assert c.body() == expect
        assert c.line().startswith(b"+OK")
        assert c.is_closed()
    finally:
        srv.stop()


# ---- TLS ---------------------------------------------------------------------------

def test_stls(server):
    p = pop3(server)
    assert "STLS" in p.capa()
    p.stls(tls_context())
    caps = p.capa()
    assert "STLS" not in caps  # RFC 2595 4: not once TLS is active
    p.user("alice")
    p.pass_("secret")
    assert p.stat()[0] == 3
    p.close()


def test_quit_answer_after_stls(data, server):
    p = pop3(server)
    p.stls(tls_context())
    p.user("alice")
    p.pass_("secret")
    p.dele(1)
    try:
        assert p.quit().startswith(b"+OK")
    finally:
        # Whatever the client saw, the UPDATE state ran.
        time.sleep(0.3)
        assert len(cur_files(data, "alice")) == 2


def test_stls_discards_pipelined_plaintext(server):
    c = Raw(server.ports["pop3"])
    # CVE-2011-0411: what follows STLS in the same write must not be read
    # as if it came through TLS.
    c.send(b"STLS\r\nUSER alice\r\nPASS secret\r\n")
    assert c.line().startswith(b"+OK")
    assert c.buf == b""
    s = tls_context().wrap_socket(c.sock)
    s.sendall(b"STAT\r\n")
    r = s.recv(1000)
    assert r.startswith(b"-ERR"), r  # not logged in: the USER/PASS were dropped
    s.sendall(b"USER alice\r\nPASS secret\r\nSTAT\r\n")
    buf = b""
    while buf.count(b"\r\n") < 3:
        buf += s.recv(1000)
    assert buf.split(b"\r\n")[2].startswith(b"+OK 3 ")
    s.sendall(b"STLS\r\n")
    assert s.recv(1000).startswith(b"-ERR")  # in TRANSACTION
    s.close()


def test_stls_twice(server):
    p = pop3(server)
    p.stls(tls_context())
    with pytest.raises(poplib.error_proto):
        p._shortcmd("STLS")


def test_pop3s_implicit_tls(data, mailbox):
    port = free_port()
    srv = start(data, pop3s_listen=f"127.0.0.1:{port}")
    try:
        for _ in range(50):
            try:
                p = poplib.POP3_SSL("127.0.0.1", port, context=tls_context(), timeout=20)
                break
            except OSError:
                time.sleep(0.1)
        assert "STLS" not in p.capa()
        p.user("alice")
        p.pass_("secret")
        assert p.stat()[0] == 3
        _, lines, _ = p.retr(2)
        assert b"\r\n".join(lines) + b"\r\n" == mailbox[1]
        p.quit()
        time.sleep(0.2)
        assert re.search(r"pop3 \S+ connect ip=127\.0\.0\.1 tls", srv.log())
    finally:
        srv.stop()


def _non_loopback_ipv4():
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("192.0.2.1", 9))  # no packet is sent
        ip = s.getsockname()[0]
        s.close()
    except OSError:
        return None
    return None if ip.startswith("127.") else ip


def test_plaintext_refused_off_loopback_until_stls(data, mailbox):
    ip = _non_loopback_ipv4()
    if ip is None:
        pytest.skip("no non-loopback IPv4 address on this machine")
    port = free_port()
    srv = imap_server.start(data, extra_opts={"pop3_listen": f"{ip}:{port}"}, protocols=("imap",))
    try:
        p = poplib.POP3(ip, port, timeout=20)
        caps = p.capa()
        assert "USER" not in caps and "SASL" not in caps and "STLS" in caps
        with pytest.raises(poplib.error_proto) as e:
            p.user("alice")
        assert b"[AUTH]" in e.value.args[0]
        with pytest.raises(poplib.error_proto):
            p._shortcmd("AUTH PLAIN " + base64.b64encode(b"\0alice\0secret").decode())
        p.stls(tls_context())
        assert "USER" in p.capa()
        p.user("alice")
        p.pass_("secret")
        assert p.stat()[0] == 3
        p.close()  # QUIT's answer after STLS: see test_quit_answer_after_stls
        # plaintext_auth = yes allows it.
    finally:
        srv.stop()
    port = free_port()
    srv = imap_server.start(data, extra_opts={"pop3_listen": f"{ip}:{port}", "plaintext_auth": "yes"},
                            protocols=("imap",))
    try:
        p = poplib.POP3(ip, port, timeout=20)
        p.user("alice")
        p.pass_("secret")
        p.quit()
    finally:
        srv.stop()


# ---- server shutdown ----------------------------------------------------------------

def test_shutdown_ends_sessions_without_update(data, server):
    before = store_snapshot(data, "alice")
    c = Raw(server.ports["pop3"])
    c.login()
    assert c.cmd("DELE 1").startswith(b"+OK")
    server.stop()
    rest = c.buf
    try:
        while True:
            chunk = c.sock.recv(1000)
            if not chunk:
                break
            rest += chunk
    except OSError:
        pass
    assert rest.startswith(b"-ERR [SYS/TEMP]"), rest
    assert store_snapshot(data, "alice") == before
