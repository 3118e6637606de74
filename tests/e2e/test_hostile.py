"""Hostile clients against a real `mailroom serve` (issue 4, "Must show 4").

Each test plays one kind of abuse on its own server (one worker, no login
delay) over a raw socket and then proves three things:

  * the abusive connection got a BAD/NO/BYE (never a "+", never an OK for
    what must fail) and, where the protocol allows, still works afterwards;
  * the server keeps serving OTHER clients: a second connection logs in
    and FETCHes every message byte-identical to what was delivered, the
    same worker process is still there (no crash, no restart) and the log
    reports no dead worker;
  * no stored message changed: the names and bytes of every file in the
    users' maildirs are those from before the server started, DATA/spool/tmp
    holds no staging file once the server noticed, and `mailroom check`
    finds nothing.

Memory is measured from /proc: VmHWM (peak resident set) of the worker
after the attack minus VmRSS before it must stay under 50 MB, for a 100 MB
line, a 4 GiB literal and thousands of pipelined commands.

Expectations come from RFC 9051 (syntax, section 7.1 BAD/BYE), RFC 7888
(literals), RFC 4616 (SASL PLAIN) and CVE-2011-0411 (STARTTLS injection),
not from mailroom's own output: any BAD text is accepted, only its tag and
kind are checked.
"""

import base64
import os
import pwd
import re
import resource
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

import imap_server
from conftest import add_user, check, check_problems, deliver, run, wire

MB = 1 << 20
RSS_BOUND = 50 * MB

# --- the store every test starts with ---------------------------------------------

_MULTIPART = (b"From: Ann <ann@example.org>\nTo: alice@example.org\nSubject: parts\n"
              b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\n\n"
              b"--XX\nContent-Type: text/plain\n\nfirst part\n"
              b"--XX\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
              + base64.encodebytes(bytes(range(256)) * 8) + b"--XX--\n")


def _msg(i, extra=b""):
    return (b"From: sender%d@example.org\nTo: alice@example.org\nSubject: hostile %d\n"
            b"Message-ID: <hostile-%d@mailroom.test>\n\nbody %d\n" % (i, i, i, i)) + extra


INBOX = [_msg(1), _msg(2, b"x" * 70 + b"\n"), _MULTIPART, _msg(4, (b"line of text " * 6 + b"\n") * 400),
         _msg(5), _msg(6)]
WORK = [_msg(7), _msg(8)]
BOB = [_msg(9)]


def _snapshot(data):
    """{relative path: bytes} of every file in a maildir folder (cur/new/tmp)
    of every user, so that a renamed, changed, added or removed message shows."""
    out = {}
    root = Path(data) / "mail"
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.parent.name in ("cur", "new", "tmp"):
            out[str(p.relative_to(data))] = p.read_bytes()
    return out


def _status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


def _uid_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    return -1


class Env:
    def __init__(self, data, srv):
        self.data = data
        self.srv = srv
        self.port = srv.port
        self.before = _snapshot(data)
        self.worker = self._find_worker()

    def _find_worker(self):
        """The worker is the child running as run_user (mail); the auth
        process runs as nobody. Before the master logs "N workers", a
        short-lived child that checks run_user's access to DATA also runs
        as mail (slow to exit under ASan): wait for that line."""
        mail_uid = pwd.getpwnam("mail").pw_uid
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            kids = []
            if " workers, data " in self.srv.log():  # the check child is gone by then
                kids = [k for k in self.srv.children() if _uid_of(k) == mail_uid]
            if len(kids) == 1:
                return kids[0]
            time.sleep(0.05)
        raise AssertionError(f"cannot find the worker among {self.srv.children()}")

    def rss(self):
        return _status_kb(self.worker, "VmRSS")

    def peak(self):
        return _status_kb(self.worker, "VmHWM")

    def logins(self):
        return len(re.findall(r" login user=alice ", self.srv.log()))

    def spool_files(self):
        return os.listdir(Path(self.data) / "spool" / "tmp")

    def wait_spool_empty(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.spool_files():
                return []
            time.sleep(0.05)
        return self.spool_files()

    def assert_serving(self):
        """Another client logs in and reads every message back unchanged."""
        c = imap_server.Client(self.port, timeout=20)
        try:
            c.login("alice", "secret")
            for box, msgs in (("INBOX", INBOX), ("Work", WORK)):
                c.ok(f"EXAMINE {box}")
                untagged = c.ok("FETCH 1:* (BODY.PEEK[])")
                got = {}
                for r in untagged:
                    if b" FETCH " in r:
                        seq, items = imap_server.fetch_items(r)
                        got[seq] = items["BODY[]"]
                assert got == {i + 1: wire(m) for i, m in enumerate(msgs)}, f"{box} changed"
            c.ok("LOGOUT")
        finally:
            c.close()
        assert self.srv.alive(), "master exited:\n" + self.srv.log()[-3000:]
        assert os.path.exists(f"/proc/{self.worker}") and self.worker in self.srv.children(), \
            "the worker died:\n" + self.srv.log()[-3000:]
        assert "died" not in self.srv.log(), self.srv.log()[-3000:]

    def assert_intact(self):
        self.assert_serving()
        left = self.wait_spool_empty()
        assert left == [], f"staging files left in spool/tmp: {left}"
        after = _snapshot(self.data)
        assert sorted(after) == sorted(self.before), (
            f"files added: {sorted(set(after) - set(self.before))}, "
            f"removed: {sorted(set(self.before) - set(after))}")
        changed = [k for k in after if after[k] != self.before[k]]
        assert not changed, f"message bytes changed: {changed}"
        p = check(self.data)
        assert p.returncode == 0 and not check_problems(p), (p.returncode, p.stdout, p.stderr)


def _fill_store(data):
    add_user(data, "alice", "secret")
    add_user(data, "bob", "bobpw")
    for m in INBOX:
        assert deliver(data, "alice", m).returncode == 0
    assert run(["mailbox", "create", "-d", data, "alice", "Work"]).returncode == 0
    for m in WORK:
        assert deliver(data, "alice", m, mailbox="Work").returncode == 0
    for m in BOB:
        assert deliver(data, "bob", m).returncode == 0


SERVE_OPTS = {"auth_max_failures": "1000", "imap_autologout": "300"}


@pytest.fixture
def env(data):
    _fill_store(data)
    srv = imap_server.start(data, extra_opts=SERVE_OPTS)
    try:
        yield Env(data, srv)
    finally:
        srv.stop(timeout=15)


def _start_with_nofile(data, nofile):
    """imap_server.start, but the server runs with RLIMIT_NOFILE nofile:nofile."""
    port = imap_server._free_port()
    opts = {"imap_listen": f"127.0.0.1:{port}", "imaps_listen": "", "pop3_listen": "", "pop3s_listen": "",
            "lmtp_listen": "", "workers": "1", "auth_failure_delay_ms": "0"}
    opts.update(SERVE_OPTS)
    args = [imap_server.MAILROOM, "serve", "-d", str(data)]
    for k, v in opts.items():
        args += ["-o", f"{k}={v}"]
    logfile = tempfile.NamedTemporaryFile(prefix="mailroom-serve-", suffix=".log", delete=False)
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile)))
    srv = imap_server.Server(proc, {"imap": port}, logfile)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and proc.poll() is None and not imap_server._answers(port):
        time.sleep(0.05)
    if proc.poll() is not None or not imap_server._answers(port):
        srv.stop(timeout=15)
        raise RuntimeError(f"mailroom serve did not start: {srv.log()}")
    return srv


# --- a raw connection with a bounded background reader -------------------------------

class Raw:
    """A socket whose replies are collected by a thread (at most `cap` bytes
    kept; the rest is counted), so that a test can write megabytes without
    deadlocking against a server that answers while it reads."""

    def __init__(self, port, cap=16 * MB, tls_sock=None):
        self.sock = tls_sock or socket.create_connection(("127.0.0.1", port), timeout=60)
        self.buf = bytearray()
        self.total = 0
        self.eof = False
        self.cap = cap
        self.cv = threading.Condition()
        self.thread = threading.Thread(target=self._reader, daemon=True)
        self.thread.start()
        assert self.wait(lambda b: b"\r\n" in b, 10), "no greeting"
        assert self.buf.startswith(b"* OK"), bytes(self.buf[:200])

    def _reader(self):
        while True:
            try:
                chunk = self.sock.recv(1 << 16)
            except (OSError, ValueError):
                chunk = b""
            with self.cv:
                if not chunk:
                    self.eof = True
                    self.cv.notify_all()
                    return
                self.total += len(chunk)
                if len(self.buf) < self.cap:
                    self.buf += chunk
                self.cv.notify_all()

    def wait(self, pred, timeout=15):
        """Wait until pred(buffer) is true; False on EOF or timeout."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while not pred(self.buf):
                left = deadline - time.monotonic()
                if self.eof or left <= 0:
                    return pred(self.buf)
                self.cv.wait(min(left, 0.5))
            return True

    def wait_eof(self, timeout=15):
        deadline = time.monotonic() + timeout
        with self.cv:
            while not self.eof and time.monotonic() < deadline:
                self.cv.wait(0.2)
            return self.eof

    def send(self, data):
        """sendall; returns False if the server closed the connection."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def send_chunks(self, data_iter):
        sent = 0
        for chunk in data_iter:
            if not self.send(chunk):
                break
            sent += len(chunk)
        return sent

    def tagged(self, tag, timeout=15):
        """The tagged reply line for tag (without CRLF), or None."""
        pat = re.compile(rb"(?:^|\r\n)" + re.escape(tag) + rb" ((?:OK|NO|BAD)[^\r\n]*)\r\n")
        found = []

        def pred(b):
            m = pat.search(b)
            if m:
                found.append(m.group(1))
            return bool(m)

        self.wait(pred, timeout)
        return found[0] if found else None

    def text(self):
        with self.cv:
            return bytes(self.buf)

    def close(self):
        # shutdown first: close() alone does not end a connection that the
        # reader thread is blocked in recv() on (no FIN would be sent)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


def _login(port, select="INBOX"):
    r = Raw(port)
    r.send(b"L1 LOGIN alice secret\r\n")
    assert (r.tagged(b"L1") or b"").startswith(b"OK"), r.text()[-500:]
    if select:
        r.send(b"L2 SELECT " + select.encode() + b"\r\n")
        assert (r.tagged(b"L2") or b"").startswith(b"OK"), r.text()[-500:]
    return r


def _alive(r, tag=b"alive"):
    """The connection still answers a NOOP."""
    r.send(tag + b" NOOP\r\n")
    t = r.tagged(tag)
    assert t is not None and t.startswith(b"OK"), (t, r.text()[-500:])


def _expect_bad_each(port, commands, login=True, per_conn=8):
    """Send each command on a connection (a fresh one every per_conn commands:
    the server closes after 20 bad commands) and expect a tagged BAD for
    it, then an OK for a NOOP behind it. Returns {command: reply}."""
    replies = {}
    r = None
    for i, cmd in enumerate(commands):
        if i % per_conn == 0:
            if r is not None:
                r.close()
            r = _login(port) if login else Raw(port)
        tag = b"h%d" % i
        r.send(tag + b" " + cmd + b"\r\n")
        t = r.tagged(tag)
        replies[cmd] = t
        assert t is not None and t.startswith(b"BAD"), f"{cmd[:120]!r}: {t!r}\n{r.text()[-600:]!r}"
        _alive(r, b"n%d" % i)
    assert b"\r\n+ " not in r.text() and not r.text().startswith(b"+ ")
    r.close()
    return replies


# --- the tests -----------------------------------------------------------------------

def test_literal_announcing_4gib(env):
    """{4294967296} and friends: refused at once (no "+", no waiting for the
    bytes, no memory), the connection goes on; a non-synchronizing one that
    cannot be skipped ends with BYE; one the server can skip is skipped."""
    before = env.rss()
    r = _login(env.port)
    for i, lit in enumerate([b"{4294967296}", b"{4294967295}", b"{18446744073709551616}",
                             b"{99999999999999999999999999999}"]):
        tag = b"s%d" % i
        t0 = time.monotonic()
        r.send(tag + b" APPEND INBOX " + lit + b"\r\n")
        t = r.tagged(tag, timeout=10)
        assert t is not None and (t.startswith(b"NO") or t.startswith(b"BAD")), (lit, t)
        assert time.monotonic() - t0 < 5
        # a literal outside APPEND (buffered in memory by the parser)
        tag = b"l%d" % i
        r.send(tag + b" LOGIN alice " + lit + b"\r\n")
        t = r.tagged(tag, timeout=10)
        assert t is not None and (t.startswith(b"NO") or t.startswith(b"BAD")), (lit, t)
        _alive(r, b"a%d" % i)
    assert b"\r\n+" not in r.text(), "a continuation was sent for a 4 GiB literal"
    r.close()

    # Non-synchronizing, too large to be skipped: BYE (RFC 7888 4) or a refusal;
    # never a wait for 4 GiB.
    for lit in (b"{4294967296+}", b"{18446744073709551615+}"):
        r = _login(env.port)
        r.send(b"x APPEND INBOX " + lit + b"\r\n" + b"A" * 100000)
        assert r.wait(lambda b: re.search(rb"(\r\n\* BYE |\r\nx (NO|BAD) )", b) is not None, 10), \
            (lit, r.text()[-300:])
        if b"* BYE" in r.text().split(b"SELECT completed", 1)[1]:
            assert r.wait_eof(10), "BYE but the connection stayed open"
        r.close()

    # Non-synchronizing within 32 bits, over message_size_limit: refused, and
    # the bytes that follow are skipped, not stored, not buffered.
    r = _login(env.port)
    r.send(b"y APPEND INBOX {4294967295+}\r\n")
    assert r.wait(lambda b: b"\r\ny " in b or b"* BYE" in b, 10)
    sent = r.send_chunks(b"B" * MB for _ in range(20))
    assert env.spool_files() == []  # nothing staged for a refused literal
    assert env.peak() - before < RSS_BOUND, (env.peak(), before, sent)
    r.close()
    env.assert_intact()


def test_garbage_numbers(env):
    """Negative, zero, overflowing and non-numeric numbers in sequence sets,
    UIDs, literal sizes, partials and section parts are BAD; extreme but
    valid numbers are OK and touch nothing."""
    bad = [
        # sequence sets (RFC 9051 9: seq-number = nz-number / "*", nz-number < 2^32)
        b"FETCH -1 FLAGS", b"FETCH 0 FLAGS", b"FETCH 4294967296 FLAGS", b"FETCH 99999999999999999999 FLAGS",
        b"FETCH 1:-1 FLAGS", b"FETCH 1,,2 FLAGS", b"FETCH 1: FLAGS", b"FETCH :1 FLAGS", b"FETCH abc FLAGS",
        b"FETCH 1e3 FLAGS", b"FETCH +1 FLAGS", b"FETCH *:-3 FLAGS", b"FETCH 0x1 FLAGS", b"FETCH 1.5 FLAGS",
        b"FETCH 7 FLAGS",  # beyond the 6 messages: RFC 9051 6.4.5 / 9 "invalid"
        # UIDs
        b"UID FETCH -5 FLAGS", b"UID FETCH 0 FLAGS", b"UID FETCH 4294967296 FLAGS",
        b"UID FETCH 1:abc FLAGS", b"UID STORE 0 +FLAGS (\\Deleted)", b"UID STORE -1 +FLAGS (\\Deleted)",
        b"UID COPY 4294967296 Work", b"UID EXPUNGE -1", b"UID EXPUNGE 0",
        b"STORE -1 +FLAGS (\\Deleted)", b"COPY 0 Work", b"MOVE -1:2 Work",
        # literal sizes
        b"LOGIN {-1}", b"LOGIN {abc}", b"LOGIN {1a}", b"LOGIN {}", b"LOGIN {+}", b"LOGIN { 5}",
        b"LOGIN {-5+}", b"APPEND INBOX {-100}", b"APPEND INBOX {0x10}", b"APPEND INBOX {1e9}",
        # partials (RFC 9051 9: partial = "<" number64 "." nz-number64 ">")
        b"FETCH 1 BODY.PEEK[]<-1.5>", b"FETCH 1 BODY.PEEK[]<1.>", b"FETCH 1 BODY.PEEK[]<.5>",
        b"FETCH 1 BODY.PEEK[]<2.-3>", b"FETCH 1 BODY.PEEK[]<0.0>", b"FETCH 1 BODY.PEEK[]<a.b>",
        b"FETCH 1 BODY.PEEK[]<5>", b"FETCH 1 BODY.PEEK[]<99999999999999999999999.1>",
        # number64 (RFC 9051 9): 0 <= n <= 2^63 - 1
        b"FETCH 1 BODY.PEEK[]<9223372036854775808.1>", b"FETCH 1 BODY.PEEK[]<0.9223372036854775808>",
        b"FETCH 1 BINARY.PEEK[1]<-1.2>",
        # section parts (nz-number)
        b"FETCH 3 BODY.PEEK[-1]", b"FETCH 3 BODY.PEEK[0]", b"FETCH 3 BODY.PEEK[1.0]",
        b"FETCH 3 BODY.PEEK[4294967296]", b"FETCH 3 BODY.PEEK[1.-2.MIME]",
        # numbers in SEARCH and modifiers
        b"SEARCH UID -1", b"SEARCH LARGER -1", b"SEARCH SMALLER 99999999999999999999999",
        b"SEARCH 0", b"FETCH 1 (FLAGS) (CHANGEDSINCE abc)", b"FETCH 1 (FLAGS) (CHANGEDSINCE -1)",
        b"STORE 1 (UNCHANGEDSINCE -1) +FLAGS (\\Deleted)",
    ]
    _expect_bad_each(env.port, bad)

    # Extreme but valid numbers: OK, no message touched.
    r = _login(env.port)
    for i, cmd in enumerate([b"UID FETCH 4294967295 (FLAGS)", b"UID STORE 4294967295 +FLAGS (\\Deleted)",
                             b"UID EXPUNGE 4294967295", b"UID SEARCH UID 4294967295",
                             b"UID COPY 4294967295 Work", b"FETCH 1 BODY.PEEK[]<4294967295.4294967295>",
                             b"FETCH 1 BODY.PEEK[]<9223372036854775807.1>", b"UID FETCH 4294967295:* (UID)",
                             b"SEARCH LARGER 4294967295", b"FETCH 1:* (FLAGS) (CHANGEDSINCE 1)"]):
        tag = b"v%d" % i
        r.send(tag + b" " + cmd + b"\r\n")
        t = r.tagged(tag)
        assert t is not None and t.startswith(b"OK"), (cmd, t, r.text()[-500:])
    text = r.text()
    assert not re.search(rb"\r\n\* \d+ EXPUNGE", text), text[-800:]
    # the one UID FETCH n:* with n above every UID returns the last message (RFC 9051 6.4.8)
    assert re.search(rb"\r\n\* 6 FETCH \(UID \d+\)\r\nv7 OK", text), text[-800:]
    # BODY[]<huge offset> is the empty string (RFC 9051 6.4.5: past the end, empty)
    assert re.search(rb'\* 1 FETCH \(BODY\[\]<4294967295> ""\)', text), text[-1500:]
    assert re.search(rb'\* 1 FETCH \(BODY\[\]<9223372036854775807> ""\)', text), text[-1500:]
    r.close()
    env.assert_intact()


@pytest.mark.parametrize("prefix,login", [
    (b"x ", False),                     # one enormous tag/command name, before login
    (b"x LOGIN alice ", False),        # one enormous argument, before login
    (b"x SEARCH TEXT ", True),          # one enormous atom in a command
    (b"x FETCH 1 (", True),             # an unclosed list that never ends
], ids=["tag", "login-arg", "search-atom", "fetch-list"])
def test_100mb_line(env, prefix, login):
    """A 100 MB command line, sent in 1 MB writes while the replies are read:
    the server answers BAD or BYE, does not buffer the line (peak RSS of the
    worker grows less than 50 MB) and, if it kept the connection, answers
    the next command."""
    before = env.rss()
    r = _login(env.port) if login else Raw(env.port)
    start = len(r.text())
    chunk = b"A" * MB
    r.send(prefix)
    sent = r.send_chunks(chunk for _ in range(50))
    env.assert_serving()  # halfway through, the worker still serves others
    sent += r.send_chunks(chunk for _ in range(50))
    r.send(b"\r\nz NOOP\r\n")
    pat = re.compile(rb"(\r\nx BAD |\r\n\* BAD |\r\n\* BYE )")
    assert r.wait(lambda b: pat.search(b, start - 2) is not None, 30), r.text()[-500:]
    if b"* BYE" in r.text()[start:]:
        assert r.wait_eof(10)
    else:
        t = r.tagged(b"z", 30)
        assert t is not None and t.startswith(b"OK"), (t, r.text()[-500:])
    growth = env.peak() - before
    assert growth < RSS_BOUND, f"worker peak RSS grew by {growth >> 20} MB for a 100 MB line (sent {sent})"
    r.close()
    env.assert_intact()


def test_100mb_line_in_idle(env):
    """In IDLE the server reads plain lines (waiting for DONE): a 100 MB one
    is refused without being buffered, and DONE still ends the IDLE."""
    before = env.rss()
    r = _login(env.port)
    r.send(b"i IDLE\r\n")
    assert r.wait(lambda b: b"\r\n+" in b, 10)
    sent = r.send_chunks(b"D" * MB for _ in range(100))
    assert sent == 100 * MB
    r.send(b"\r\nDONE\r\nz NOOP\r\n")
    t = r.tagged(b"i", 30)
    assert t is not None and t.startswith(b"OK"), r.text()[-500:]  # RFC 9051 6.3.13
    assert (r.tagged(b"z", 10) or b"").startswith(b"OK"), r.text()[-500:]
    growth = env.peak() - before
    assert growth < RSS_BOUND, f"worker peak RSS grew by {growth >> 20} MB"
    r.close()
    env.assert_intact()


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_100mb_line_in_authenticate(env, mech):
    """A 100 MB response to an AUTHENTICATE challenge ends the exchange with
    a tagged BAD (RFC 9051 6.2.2: a response that cannot be decoded is
    rejected with BAD): the next line is a command again, never a SASL
    response or a password, and nothing is buffered."""
    before = env.rss()
    logins = env.logins()
    r = Raw(env.port)
    r.send(b"c AUTHENTICATE " + mech.encode() + b"\r\n")
    assert r.wait(lambda b: b"\r\n+" in b, 10)
    sent = r.send_chunks(b"Q" * MB for _ in range(100))
    assert sent == 100 * MB
    r.send(b"\r\nz NOOP\r\n")
    t = r.tagged(b"c", 30)
    assert t is not None and not t.startswith(b"OK"), r.text()[-500:]
    z = r.tagged(b"z", 3)
    assert z is not None and z.startswith(b"OK"), f"the NOOP after the long line was not run: {r.text()[-400:]!r}"
    assert env.peak() - before < RSS_BOUND
    assert env.logins() == logins
    r.close()
    env.assert_intact()


def test_nul_bytes(env):
    """NUL is not allowed in a command line, a quoted string or a plain
    literal (RFC 9051 4.3, 9 CHAR8 excludes %x00): BAD, nothing stored, and
    a NUL never cuts a password or a user name short."""
    cmds = [b"NO\x00OP", b"NOOP\x00", b"FETCH 1\x00 FLAGS", b"SELECT IN\x00BOX",
            b'SELECT "IN\x00BOX"', b"FETCH 1 (FL\x00AGS)", b'SEARCH SUBJECT "hos\x00tile"',
            b"STORE 1 +FLAGS (\\Del\x00eted)", b"CREATE Ev\x00il", b'CREATE "Ev\x00il"',
            b"APPEND INBOX {12+}\r\nSubj: \x00a\r\n\r\n", b"APPEND Work (\\Seen) {7}"]
    _expect_bad_each(env.port, cmds[:-1])
    # a synchronizing literal with a NUL, sent after the "+"
    r = _login(env.port)
    r.send(b"k APPEND INBOX {12}\r\n")
    assert r.wait(lambda b: b"\r\n+" in b, 10)
    r.send(b"Subj: \x00a\r\n\r\n\r\n")
    t = r.tagged(b"k")
    assert t is not None and t.startswith(b"BAD"), t
    _alive(r)
    r.close()
    # a NUL inside the tag
    r = Raw(env.port)
    r.send(b"t\x00g NOOP\r\nok NOOP\r\n")
    assert r.wait(lambda b: b"\r\n* BAD" in b or b"\r\nt" in b, 10)
    assert (r.tagged(b"ok") or b"").startswith(b"OK")
    assert not re.search(rb"\r\nt\x00?g OK", r.text())
    r.close()

    # Passwords and user names with a NUL: never a login.
    logins = env.logins()
    for i, cmd in enumerate([b'LOGIN alice "secret\x00junk"', b"LOGIN alice {11+}\r\nsecret\x00junk",
                             b"LOGIN alice ~{11+}\r\nsecret\x00junk", b"LOGIN alice ~{7+}\r\nsecret\x00",
                             b"LOGIN ~{10+}\r\nalice\x00junk secret", b"LOGIN ~{6+}\r\nalice\x00 secret",
                             b"LOGIN alice\x00 secret"]):
        r = Raw(env.port)
        r.send(b"p%d " % i + cmd + b"\r\n")
        t = r.tagged(b"p%d" % i)
        assert t is not None and not t.startswith(b"OK"), (cmd, t)
        r.send(b"q SELECT INBOX\r\n")
        assert (r.tagged(b"q") or b"").startswith(b"BAD"), "not logged in, SELECT must fail"
        r.close()
    # AUTHENTICATE LOGIN with a NUL in the password
    r = Raw(env.port)
    r.send(b"a AUTHENTICATE LOGIN " + base64.b64encode(b"alice") + b"\r\n")
    assert r.wait(lambda b: b"\r\n+ " in b, 10)
    r.send(base64.b64encode(b"secret\x00junk") + b"\r\n")
    t = r.tagged(b"a")
    assert t is not None and not t.startswith(b"OK"), t
    r.close()
    assert env.logins() == logins, "a password or user name with a NUL logged in"
    env.assert_intact()


def test_nul_in_sasl_plain_password(env):
    """RFC 4616 2: passwd = 1*SAFE (no NUL); a PLAIN message with a third
    NUL is malformed and must not log in, whatever follows the NUL."""
    for i, blob in enumerate([b"\x00alice\x00secret\x00junk", b"\x00alice\x00secret\x00",
                              b"alice\x00alice\x00secret\x00\x00"]):
        r = Raw(env.port)
        r.send(b"a%d AUTHENTICATE PLAIN " % i + base64.b64encode(blob) + b"\r\n")
        t = r.tagged(b"a%d" % i)
        assert t is not None and not t.startswith(b"OK"), (blob, t)
        r.close()
    env.assert_intact()


def test_disconnect_mid_literal(env):
    """A client that vanishes in the middle of a literal (LOGIN), of an
    APPEND message, between the messages of a MULTIAPPEND, or after the
    message but before the command's end: no message is added, and the
    staging file is gone once the server has seen the disconnect."""
    # mid-literal of a LOGIN (held in memory by the parser)
    r = Raw(env.port)
    r.send(b"a LOGIN alice {1000}\r\n")
    assert r.wait(lambda b: b"\r\n+" in b, 10)
    r.send(b"s" * 500)
    time.sleep(0.1)
    r.close()

    msg = wire(_msg(100, b"y" * 199000))
    # mid-APPEND: the staging file exists while the bytes arrive, and goes
    # away with the client.
    for variant in ("mid-message", "multiappend", "no-crlf", "after-message"):
        r = _login(env.port, select=None)
        if variant == "mid-message":
            r.send(b"m APPEND INBOX (\\Seen) {%d}\r\n" % len(msg))
            assert r.wait(lambda b: b"\r\n+" in b, 10), r.text()[-300:]
            r.send(msg[:len(msg) // 2])
        elif variant == "multiappend":
            r.send(b"m APPEND INBOX {%d+}\r\n%s Work {%d+}\r\n%s" % (
                len(msg), msg, len(msg), msg[:1000]))
        elif variant == "no-crlf":
            r.send(b"m APPEND INBOX {%d+}\r\n%s" % (len(msg), msg))
        else:
            r.send(b"m APPEND INBOX {%d+}\r\n%s (\\Flagged" % (len(msg), msg))
        deadline = time.monotonic() + 10
        while not env.spool_files() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert env.spool_files(), f"{variant}: no staging file while the APPEND is under way"
        assert r.tagged(b"m", timeout=0.3) is None, f"{variant}: the APPEND completed: {r.text()[-300:]}"
        r.close()
        left = env.wait_spool_empty(10)
        assert left == [], f"{variant}: staging files left after the disconnect: {left}"
        assert _snapshot(env.data) == env.before, f"{variant}: the store changed"
    env.assert_intact()


def test_unfinished_multiappend_does_not_starve_others(data):
    """One client sends 1000 small messages of a MULTIAPPEND with LITERAL+
    and never ends the command. With RLIMIT_NOFILE 1024 (systemd's default
    for services), other users must still log in and read their mail: a
    single client may not take the worker's descriptors."""
    _fill_store(data)
    srv = _start_with_nofile(data, 1024)
    try:
        env = Env(data, srv)
        hog = _login(env.port, select=None)
        m = b"Subject: x\r\n\r\ny\r\n"
        hog.send(b"m APPEND INBOX" + b"".join(b" {%d+}\r\n%s" % (len(m), m) for _ in range(1000)))
        # let the server read all of it (it may refuse part of it: any answer is fine)
        deadline = time.monotonic() + 20
        last = -1
        while time.monotonic() < deadline:
            n = len(env.spool_files())
            if n == last:
                break
            last = n
            time.sleep(0.5)
        env.assert_serving()
        hog.close()
        env.assert_intact()
    finally:
        srv.stop(timeout=15)


def test_pipelined_10000_commands(env):
    """10,000 commands in one write: all answered, in order, each once, and
    the connection still works (read by a bounded reader while writing)."""
    r = _login(env.port)
    kinds = [b"NOOP", b"FETCH 2 (FLAGS UID)", b"UID FETCH 1:* (UID RFC822.SIZE)", b"UID SEARCH ALL",
             b"STATUS Work (MESSAGES UIDNEXT)", b"CAPABILITY", b"FETCH 1:3 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])",
             b"CHECK", b"LIST \"\" *", b"SEARCH SUBJECT hostile"]
    n = 10000
    batch = b"".join(b"p%d %s\r\n" % (i, kinds[i % len(kinds)]) for i in range(n))
    start = len(r.text())
    assert r.send(batch)
    assert r.wait(lambda b: b"\r\np%d " % (n - 1) in b, 60), f"only part answered: {r.text()[-300:]}"
    _alive(r)
    tags = re.findall(rb"\r\n(p\d+) (OK|NO|BAD)", r.text()[start - 2:])
    assert [t for t, _ in tags] == [b"p%d" % i for i in range(n)], "tagged replies out of order or missing"
    assert all(s == b"OK" for _, s in tags), [t for t in tags if t[1] != b"OK"][:5]
    body = r.text()[start:]
    assert body.count(b"* SEARCH 1 2 3 4 5 6\r\n") == n // len(kinds)
    assert len(re.findall(rb'\* STATUS "?Work"? \(MESSAGES 2 UIDNEXT 3\)\r\n', body)) == n // len(kinds)
    r.close()
    env.assert_intact()


def test_pipelined_fetches_slow_reader(env):
    """3,000 FETCH BODY.PEEK[] of every message pipelined by a client that
    does not read for two seconds: the worker applies backpressure (peak RSS
    bounded), serves other clients meanwhile, then delivers every reply."""
    before = env.rss()
    sock = socket.create_connection(("127.0.0.1", env.port), timeout=30)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.sendall(b"a LOGIN alice secret\r\nb EXAMINE INBOX\r\n")
    n = 3000
    size = sum(len(wire(m)) for m in INBOX)
    sock.sendall(b"".join(b"f%d FETCH 1:* (BODY.PEEK[])\r\n" % i for i in range(n)))
    time.sleep(2)
    env.assert_serving()  # the same worker answers others while this one is stuck
    growth = env.peak() - before
    assert growth < RSS_BOUND, f"peak RSS grew by {growth >> 20} MB with a client not reading"
    # now read it all, streaming, counting the tagged replies in order
    total = 0
    tail = b""
    seen = 0
    deadline = time.monotonic() + 120
    while seen < n and time.monotonic() < deadline:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        total += len(chunk)
        data = tail + chunk
        for m in re.finditer(rb"\r\nf(\d+) (OK|NO|BAD)", data):
            if m.end() > len(tail):
                assert int(m.group(1)) == seen and m.group(2) == b"OK", (m.group(0), seen)
                seen += 1
        tail = data[-64:]
    sock.close()
    assert seen == n, f"{seen} of {n} FETCH replies"
    assert total > n * size, (total, n * size)
    assert env.peak() - before < RSS_BOUND
    env.assert_intact()


def _tls_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_starttls_injection(env):
    """Commands sent in the same write as STARTTLS, or in clear text after
    its OK, must never be executed (CVE-2011-0411): inside TLS the session
    is still not authenticated and nothing was appended."""
    logins = env.logins()
    # in the same packet as STARTTLS
    sock = socket.create_connection(("127.0.0.1", env.port), timeout=15)
    got = b""
    while not got.endswith(b"\r\n"):  # byte by byte: nothing after the greeting is read in clear
        c = sock.recv(1)
        assert c, got
        got += c
    assert got.startswith(b"* OK"), got
    sock.sendall(b"a STARTTLS\r\nb LOGIN alice secret\r\nc APPEND INBOX {5+}\r\nhello\r\nd SELECT INBOX\r\n")
    line = b""
    while not line.endswith(b"\r\n"):
        c = sock.recv(1)
        assert c, line
        line += c
    assert line.startswith(b"a OK"), line
    tls = _tls_ctx().wrap_socket(sock)
    tls.settimeout(15)
    tls.sendall(b"e SELECT INBOX\r\nf CAPABILITY\r\n")
    got = b""
    deadline = time.monotonic() + 15
    while b"\r\nf OK" not in got and not got.startswith(b"f OK") and time.monotonic() < deadline:
        chunk = tls.recv(65536)
        if not chunk:
            break
        got += chunk
    assert re.search(rb"(^|\r\n)e BAD", got), got  # not logged in: the injected LOGIN did not run
    assert not re.search(rb"(^|\r\n)[bcd] ", got), got
    assert b"AUTH=PLAIN" in got or b"LOGINDISABLED" in got, got  # still the not-authenticated capability list
    tls.sendall(b"g LOGIN alice secret\r\n")  # positive control: TLS works, the login works
    got = b""
    while b"g OK" not in got and time.monotonic() < deadline:
        chunk = tls.recv(65536)
        if not chunk:
            break
        got += chunk
    assert b"g OK" in got, got
    tls.close()
    assert env.logins() == logins + 1

    # clear-text commands after the OK, where the TLS handshake should be
    logins = env.logins()
    r = Raw(env.port)
    r.send(b"a STARTTLS\r\n")
    assert (r.tagged(b"a") or b"").startswith(b"OK")
    r.send(b"b LOGIN alice secret\r\nc APPEND INBOX {5+}\r\nhello\r\n")
    assert r.wait_eof(15), "the server kept a connection that failed its TLS handshake"
    assert not re.search(rb"\r\n[bc] (OK|NO|BAD)", r.text()), r.text()
    r.close()
    assert env.logins() == logins
    env.assert_intact()


def test_deep_parentheses(env):
    """10,000 nested parentheses (and other deep structures) in FETCH,
    SEARCH, STORE and APPEND: BAD, no crash (the worker is the same)."""
    deep = 10000
    cmds = [
        b"FETCH 1 " + b"(" * deep + b"FLAGS" + b")" * deep,
        b"SEARCH " + b"(" * deep + b"ALL" + b")" * deep,
        b"UID SEARCH " + b"(" * deep + b"SUBJECT x" + b")" * deep,
        b"FETCH 1 " + b"(" * deep,
        b"SEARCH " + b"(" * deep,
        b"FETCH 1 FLAGS" + b")" * deep,
        b"SEARCH ALL" + b")" * deep,
        b"STORE 1 +FLAGS " + b"(" * deep + b"\\Seen" + b")" * deep,
        b"APPEND INBOX " + b"(" * deep + b")" * deep + b" {3+}\r\nabc",
        b"FETCH 1 BODY.PEEK[HEADER.FIELDS " + b"(" * deep + b"A" + b")" * deep + b"]",
        b"FETCH 1 BODY.PEEK[HEADER.FIELDS " + b"(" * deep,
        b"SEARCH " + b"NOT " * deep + b"ALL",                         # recursion without parentheses
        b"SEARCH " + b"OR ALL " * (deep // 2) + b"ALL",
        b"SEARCH " + b"OR " * (deep // 2) + b"ALL ALL" * (deep // 2),
        b"FETCH 1 (" + b"FLAGS " * deep + b")",                       # very many items, flat
        b"SEARCH " + b"(NOT (OR ALL (" * 2000 + b"ALL" + b")))" * 2000,
        b"SELECT " + b"(" * deep,
        b"ID " + b"(" * deep + b")" * deep,
        b"ENABLE " + b"(" * deep,
    ]
    replies = _expect_bad_each(env.port, cmds)
    assert len(replies) == len(cmds)
    # a sane nesting still works (positive control, RFC 9051 6.4.4)
    r = _login(env.port)
    r.send(b"s SEARCH (((SUBJECT hostile) (NOT SUBJECT parts)))\r\n")
    t = r.tagged(b"s")
    assert t is not None and t.startswith(b"OK") and b"* SEARCH 1 2 4 5 6\r\n" in r.text(), r.text()[-300:]
    r.close()
    env.assert_intact()


@pytest.mark.parametrize("login", [False, True], ids=["not-authenticated", "selected"])
def test_too_many_bad_commands(env, login):
    """A client that sends nothing but bad commands gets BYE and is
    disconnected, whether they come in one write or one at a time."""
    # all in one write
    r = _login(env.port) if login else Raw(env.port)
    start = len(r.text())
    r.send(b"".join(b"x%d NONSENSE%d\r\n" % (i, i) for i in range(200)))
    assert r.wait_eof(15), "still connected after 200 bad commands"
    out = r.text()[start:]
    assert b"* BYE" in out, out[-500:]
    nbad = len(re.findall(rb"(^|\r\n)x\d+ BAD", out))
    assert 1 <= nbad < 100, f"{nbad} BAD replies before the BYE"
    assert not re.search(rb"x\d+ BAD[^\r]*\r\n" + rb"(?s:.*)" + rb"\* BYE(?s:.*)x\d+ BAD", out)
    r.close()
    # one at a time, waiting for each reply
    r = _login(env.port) if login else Raw(env.port)
    for i in range(200):
        if not r.send(b"y%d BOGUS\r\n" % i):
            break
        if r.tagged(b"y%d" % i, timeout=5) is None:
            break
    assert r.wait_eof(15), "still connected after 200 bad commands one by one"
    assert b"* BYE" in r.text()
    assert i < 100, i
    r.close()
    env.assert_intact()


def test_literal_memory_released(env):
    """Many commands each with a 1 MB literal (the parser's in-memory limit)
    and literals over it: refused or answered, and the memory goes back
    after each command (peak RSS bounded)."""
    before = env.rss()
    r = Raw(env.port)
    payload = b"n" * (MB - 100)
    for i in range(60):
        tag = b"i%d" % i
        r.send(tag + b' ID ("name" {%d+}\r\n' % len(payload) + payload + b")\r\n")
        t = r.tagged(tag, 20)
        assert t is not None, r.text()[-300:]
    # two literals in one command that together pass the limit
    r.send(b"j LOGIN {1048576+}\r\n" + b"a" * MB + b" {1048576+}\r\n" + b"b" * MB + b"\r\n")
    t = r.tagged(b"j", 20)
    assert t is not None and not t.startswith(b"OK"), t
    _alive(r)
    growth = env.peak() - before
    assert growth < RSS_BOUND, f"peak RSS grew by {growth >> 20} MB"
    r.close()
    env.assert_intact()
