"""Shared fixtures and helpers for mailroom's end-to-end tests.

Everything here drives the real binary (``$MAILROOM``, default
``build/mailroom`` in the repository) on a throw-away DATA folder and reads
the results straight from disk, so a test can compare what the CLI says with
what the files and the index hold.

Fixtures
    mailroom_bin  path of the binary (the test session fails early if missing)
    data          a fresh, empty DATA folder under pytest's tmp_path

Helpers (plain functions, safe to call from threads)
    run(args, input=None, env=None, cwd=None, timeout=60)   -> CompletedProcess
    add_user(data, name, password="secret", scheme=None)    -> CompletedProcess (asserts exit 0)
    deliver(data, users, message_bytes, mailbox=None, env=None) -> CompletedProcess
    check(data, repair=False, users=())                     -> CompletedProcess
    write_config(data, **settings)          writes DATA/mailroom.conf (key = value)
    mailbox_dir(data, user, mailbox="INBOX") the maildir of an IMAP mailbox name
    cur_files(data, user, mailbox="INBOX")  -> [(uid, flags, path)] sorted by UID
    index_rows(data, user, mailbox="INBOX") -> [dict] rows of table msg, by UID
    wire(message_bytes)                     the stored form (bare LF -> CRLF)
    make_message(tag, body_size=0)          a unique message (Message-ID from tag)
    check_problems(proc)                    lines of `check` output that are not "USER: ok"
    imap_state(port, user, password, boxes) what an IMAP client sees of mailboxes:
                                            {box: (UIDVALIDITY, UIDNEXT, {uid: (flags, size, sha256)})}

The helpers never assume anything about the store that the format
documentation (DESIGN.md, store_fname.c, store_name.c) does not promise.
"""

import hashlib
import imaplib
import os
import re
import socket
import sqlite3
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAILROOM = os.environ.get("MAILROOM") or str(REPO / "build" / "mailroom")

# sysexits.h codes that `mailroom deliver` returns.
EX_OK, EX_DATAERR, EX_NOUSER, EX_TEMPFAIL, EX_NOPERM = 0, 65, 67, 75, 77

# <base>,S=<size>,U=<uid>:2,<flags>  (store_fname.c)
_FNAME = re.compile(r"^(?P<base>.+?),S=(?P<size>\d+),U=(?P<uid>\d+):2,(?P<flags>[A-Za-z]*)$")


@pytest.fixture(scope="session", autouse=True)
def _searchable_tmp(tmp_path_factory):
    """`mailroom serve` started as root runs its workers as run_user (mail),
    which must be able to reach DATA by its path, as in production. pytest
    makes its temp folders 0700; open the two levels above the tests' DATA
    folders for searching (x only: nothing becomes listable or readable); under
    pytest-xdist each worker's basetemp (popen-gwN) is one level deeper."""
    base = tmp_path_factory.getbasetemp()
    levels = (base.parent.parent, base.parent, base) if base.name.startswith("popen-gw") \
        else (base.parent, base)
    for d in levels:
        try:
            os.chmod(d, os.stat(d).st_mode | 0o111)
        except OSError:
            pass


@pytest.fixture(scope="session")
def mailroom_bin():
    if not os.access(MAILROOM, os.X_OK):
        pytest.fail(f"mailroom binary not found at {MAILROOM} (set MAILROOM or run make build/mailroom)")
    return MAILROOM


@pytest.fixture
def data(tmp_path, mailroom_bin):
    os.chmod(tmp_path, 0o755)  # see _searchable_tmp
    d = tmp_path / "data"
    d.mkdir()
    return d


def run(args, input=None, env=None, cwd=None, timeout=60):
    """Run `mailroom ARGS...`; stdout/stderr captured as text (bytes if input is bytes)."""
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    return subprocess.run([MAILROOM] + [str(a) for a in args], input=input, env=full_env,
                          cwd=cwd, capture_output=True, timeout=timeout)


def add_user(data, name, password="secret", scheme=None):
    """`mailroom user add`; the password goes on stdin as one line."""
    args = ["user", "add", "-d", data]
    if scheme:
        args += ["--scheme", scheme]
    p = run(args + [name], input=(password + "\n").encode())
    assert p.returncode == 0, f"user add {name}: rc={p.returncode} {p.stderr!r}"
    return p


def deliver(data, users, message_bytes, mailbox=None, env=None, timeout=120):
    """`mailroom deliver -d DATA [-m MAILBOX] USER...` with the message on stdin."""
    if isinstance(users, str):
        users = [users]
    args = ["deliver", "-d", data]
    if mailbox is not None:
        args += ["-m", mailbox]
    return run(args + list(users), input=message_bytes, env=env, timeout=timeout)


def check(data, repair=False, users=(), timeout=120):
    """`mailroom check -d DATA [--repair] [USER...]`, output as text."""
    args = ["check", "-d", data] + (["--repair"] if repair else []) + list(users)
    p = run(args, timeout=timeout)
    p.stdout = p.stdout.decode(errors="replace")
    p.stderr = p.stderr.decode(errors="replace")
    return p


def check_problems(proc):
    """Lines of a `check` run other than the "USER: ok" summaries."""
    return [l for l in proc.stdout.splitlines() if l.strip() and not re.fullmatch(r"\S+: ok", l)]


def check_damage(proc):
    """check_problems without the "USER: recovered: ..." lines: crash residue
    that `check` resolved (an interrupted delivery or mailbox operation) is not
    damage (issue 14); what is left is."""
    return [l for l in check_problems(proc) if ": recovered: " not in l]


class LmtpClient:
    """A raw LMTP client on 127.0.0.1:port, one reply at a time: reply() and
    cmd() return the lines of one (possibly multi-line) reply; greeting holds
    the 220 lines. For tests that need per-recipient replies or a session
    held open, which smtplib does not give."""

    def __init__(self, port, timeout=20):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.greeting = self.reply()

    def line(self):
        while b"\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise EOFError(self.buf)
            self.buf += d
        l, self.buf = self.buf.split(b"\n", 1)
        return l.rstrip(b"\r").decode("utf-8", "replace")

    def reply(self):
        lines = [self.line()]
        while lines[-1][3:4] == "-":
            lines.append(self.line())
        return lines

    def send(self, data):
        self.s.sendall(data)

    def cmd(self, text):
        self.s.sendall(text.encode() + b"\r\n")
        return self.reply()

    def close(self):
        self.s.close()


def write_config(data, **settings):
    """Write DATA/mailroom.conf with `key = value` lines (replacing the file)."""
    text = "".join(f"{k} = {v}\n" for k, v in settings.items())
    (Path(data) / "mailroom.conf").write_text(text)


def mailbox_dir(data, user, mailbox="INBOX"):
    """Directory of an IMAP mailbox (store_name.c: INBOX, else ".a.b" with '.', '%'
    and control characters of each component written %XX)."""
    root = Path(data) / "mail" / user
    if mailbox.upper() == "INBOX":
        return root / "INBOX"
    parts = []
    for comp in mailbox.split("/"):
        out = []
        for ch in comp.encode():
            if ch in (ord("."), ord("%")) or ch < 0x20 or ch == 0x7F:
                out.append(b"%%%02X" % ch)
            else:
                out.append(bytes([ch]))
        parts.append(b"".join(out).decode())
    return root / ("." + ".".join(parts))


def parse_fname(name):
    """(uid, flags, size) from a cur/ file name, or None if it is not ours."""
    m = _FNAME.match(name)
    if m is None:
        return None
    return int(m["uid"]), m["flags"], int(m["size"])


def cur_files(data, user, mailbox="INBOX"):
    """[(uid, flags, path)] of the messages in the mailbox's cur/, sorted by UID.
    Files whose name carries no UID are returned with uid None (they sort last)."""
    out = []
    cur = mailbox_dir(data, user, mailbox) / "cur"
    for name in os.listdir(cur):
        if name.startswith("."):
            continue
        parsed = parse_fname(name)
        if parsed is None:
            out.append((None, "", cur / name))
        else:
            out.append((parsed[0], parsed[1], cur / name))
    out.sort(key=lambda t: (t[0] is None, t[0] or 0, str(t[2])))
    return out


def index_rows(data, user, mailbox="INBOX", include_pending=True):
    """Rows of index.sqlite's msg table for one mailbox, as dicts, by UID.
    Opened read-only; safe while mailroom processes run (WAL)."""
    db = Path(data) / "mail" / user / "index.sqlite"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        con.row_factory = sqlite3.Row
        q = ("SELECT msg.* FROM msg JOIN mailbox ON msg.mailbox = mailbox.id"
             " WHERE mailbox.name = ?")
        if not include_pending:
            q += " AND msg.pending = 0"
        rows = [dict(r) for r in con.execute(q + " ORDER BY msg.uid", (mailbox,))]
    finally:
        con.close()
    return rows


def wire(message_bytes):
    """The form the store keeps a message in: every LF without a CR before it
    becomes CRLF; a CR not followed by LF stays as it is."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", message_bytes)


def make_message(tag, body_size=0):
    """A message whose content is unique to tag (in Message-ID and body), with
    roughly body_size extra bytes of body, bare LF line endings."""
    head = (f"From: sender@example.org\nTo: rcpt@example.org\nSubject: test {tag}\n"
            f"Message-ID: <{tag}@mailroom.test>\n\n").encode()
    body = f"body of {tag}\n".encode()
    if body_size > 0:
        line = (f"{tag} " * 20)[:75].encode() + b"\n"
        body += line * (body_size // len(line) + 1)
    return head + body


# ---- suite-wide checks: sanitizer reports and skips are failures -----------------------
#
# `make e2e-asan` runs protocol suites against build/asan/mailroom with
# MAILROOM_SANITIZER_LOGS=DIR. For each test the fixture below points
# ASAN_OPTIONS/UBSAN_OPTIONS log_path at DIR/<test id>/ (every mailroom the
# test starts inherits it, whichever helper starts it) and fails the test at
# teardown if a report appeared there or in the output of a server stopped by
# imap_server.Server.stop(). A process started before the test (module
# fixtures) logs under the Makefile's DIR/session/; pytest_sessionfinish
# sweeps the whole DIR at the end, so no report goes unread. UBSan reports
# of the workers go to stderr whatever log_path says: they are found in the
# logs of servers stopped through imap_server and in *.log under tmp_path.

import imap_server  # noqa: E402  (tests/e2e is on sys.path, as for the tests)

_SAN_DIR = os.environ.get("MAILROOM_SANITIZER_LOGS")
_SAN_SEEN = set()     # report files some test failed on
_SAN_CLAIMED = set()  # id() of imap_server.SANITIZER_REPORTS entries some test failed on


def _san_files(d):
    if not d or not os.path.isdir(d):
        return []
    out = []
    for root, _dirs, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            if os.path.getsize(p) > 0:
                out.append(p)
    return sorted(out)


def _san_excerpt(paths):
    parts = []
    for p in paths[:3]:
        with open(p, errors="replace") as f:
            parts.append(f"--- {p}\n" + "".join(f.readlines()[:40]))
    return "\n".join(parts)


def _san_in_test_logs(tmp):
    """UBSan ignores log_path in the server's workers and writes to stderr:
    look into the *.log files a test's own server helper left in its
    tmp_path (test_imap_session.py's DATA/serve.log, for one)."""
    out = []
    for p in Path(tmp).rglob("*.log"):
        try:
            if p.is_file() and not p.is_symlink() and p.stat().st_size < 64 << 20:
                found = imap_server.sanitizer_reports(p.read_text(errors="replace"))
                if found:
                    out.append((str(p), "\n".join(found[:20])))
        except OSError:
            pass
    return out


@pytest.fixture(autouse=True)
def _sanitizer_check(request):
    before = len(imap_server.SANITIZER_REPORTS)
    d = tmp = None
    saved = {}
    if _SAN_DIR:
        if "tmp_path" in request.fixturenames:  # taken now: it is gone at our teardown
            tmp = request.getfixturevalue("tmp_path")
        d = os.path.join(_SAN_DIR, re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)[:150])
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o1777)  # workers write here after dropping to run_user
        for var, name in (("ASAN_OPTIONS", "asan"), ("UBSAN_OPTIONS", "ubsan")):
            saved[var] = os.environ.get(var)
            os.environ[var] = (saved[var] + ":" if saved[var] else "") + f"log_path={d}/{name}"
    yield
    for var, old in saved.items():
        if old is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = old
    found = imap_server.SANITIZER_REPORTS[before:]
    _SAN_CLAIMED.update(id(r) for r in found)
    if tmp is not None:
        found = found + _san_in_test_logs(tmp)
    files = _san_files(d)
    _SAN_SEEN.update(files)
    if found or files:
        text = "\n".join(f"--- in server log {name}\n{excerpt}" for name, excerpt in found)
        pytest.fail("sanitizer report(s) while this test ran:\n" + text + _san_excerpt(files),
                    pytrace=False)


# A skip means a component that scripts/deps.sh installs is missing or
# broken: it fails the run (xfail stays allowed, for a documented deviation).
_SKIPS = []


def pytest_collectreport(report):
    if report.skipped:
        _SKIPS.append((report.nodeid, str(report.longrepr)))


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _SKIPS.append((report.nodeid, reason))


def _late_sanitizer_files():
    return [p for p in _san_files(_SAN_DIR) if p not in _SAN_SEEN]


def _late_server_reports():
    """Reports of servers stopped after the test that started them (module
    fixtures): no test has failed on them yet."""
    return [r for r in imap_server.SANITIZER_REPORTS if id(r) not in _SAN_CLAIMED]


def pytest_sessionfinish(session, exitstatus):
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the controller sees every report and file
    if (_SKIPS or _late_sanitizer_files() or _late_server_reports()) and session.exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    tr = terminalreporter
    if _SKIPS:
        tr.section("skips are failures (scripts/deps.sh installs every component)", red=True)
        for nodeid, reason in _SKIPS:
            tr.line(f"SKIPPED {nodeid}: {reason}", red=True)
    late, late_srv = _late_sanitizer_files(), _late_server_reports()
    if late or late_srv:
        tr.section("sanitizer reports outside any test (module fixtures, late exits)", red=True)
        for name, excerpt in late_srv:
            tr.line(f"--- in server log {name}\n{excerpt}", red=True)
        if late:
            tr.line(_san_excerpt(late), red=True)

_IMAP_FETCH = re.compile(rb"UID (\d+) .*?FLAGS \(([^)]*)\).*?RFC822\.SIZE (\d+)")


def imap_state(port, user, password, boxes=("INBOX",)):
    """What an IMAP client sees of each mailbox in boxes, read over a real login
    (imaplib): {box: (UIDVALIDITY, UIDNEXT, {uid: (frozenset of flags and keywords,
    RFC822.SIZE, sha256 of BODY[])})}. Asserts that every RFC822.SIZE announced is
    the length of the BODY[] sent. For comparing a user's state before and after
    something that must not change it (a repair, a heal). \\Recent is left out: it
    belongs to one session, not to the mailbox (RFC 3501 2.3.2), and a rebuilt
    index makes messages recent once more, as Dovecot's does."""
    m = imaplib.IMAP4("127.0.0.1", port)
    try:
        m.login(user, password)
        out = {}
        for box in boxes:
            typ, data = m.status(box, "(UIDNEXT)")
            assert typ == "OK", (box, data)
            uidnext = int(re.search(rb"UIDNEXT (\d+)", data[0]).group(1))
            typ, data = m.select(box, readonly=True)
            assert typ == "OK", (box, data)
            uidvalidity = int(m.response("UIDVALIDITY")[1][0])
            typ, data = m.uid("FETCH", "1:*", "(FLAGS RFC822.SIZE BODY.PEEK[])")
            assert typ == "OK", (box, data)
            msgs = {}
            for item in data:
                if not isinstance(item, tuple):
                    continue
                head, body = item
                g = _IMAP_FETCH.search(head)
                assert g, head
                size = int(g.group(3))
                assert size == len(body), f"{box} UID {g.group(1)}: RFC822.SIZE {size}, BODY[] {len(body)}"
                flags = frozenset(g.group(2).decode().split()) - {"\\Recent"}
                msgs[int(g.group(1))] = (flags, size,
                                         hashlib.sha256(body).hexdigest())
            out[box] = (uidvalidity, uidnext, msgs)
        m.logout()
        return out
    finally:
        try:
            m.shutdown()
        except OSError:
            pass

# ---- tracing a running server's worker with strace (test_crash_ops.py,
# test_durability_order.py) ---------------------------------------------------


def server_worker(srv, timeout=2.0):
    """PID of the worker of a Server started by imap_server.start (one worker:
    the child with more than one thread; the auth process has one)."""
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for k in srv.children():
            try:
                if len(os.listdir(f"/proc/{k}/task")) > 1:
                    return k
            except OSError:
                pass
        time.sleep(0.01)
    raise AssertionError("no worker process with threads")


def thread_ids(pid):
    """Thread IDs of pid, the main thread (== pid) first."""
    tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    return [pid] + [t for t in tids if t != pid]


def _tracer_of(pid, tid):
    try:
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                if line.startswith("TracerPid:"):
                    return int(line.split()[1])
    except OSError:
        return -1
    return 0


def _pid_running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def strace_attach(args, pid, tids, wait_for=None):
    """Start `strace -qq ARGS -p TID...` on threads tids of process pid and
    return the Popen once every one of them is traced (TracerPid), so that
    what the test does next is seen. Without -f in args only those threads
    are traced, each with its own `when=` counters. If the process dies
    while strace attaches (an inject at the first call), the finished Popen
    is returned. wait_for: the threads to wait for, if not tids (with -f,
    strace attaches every thread of the process given)."""
    import time
    tracer = subprocess.Popen(["strace", "-qq"] + list(args)
                              + [a for t in tids for a in ("-p", str(t))],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if all(_tracer_of(pid, t) == tracer.pid for t in (wait_for or tids)):
            return tracer
        if tracer.poll() is not None:
            if not _pid_running(pid):
                return tracer
            break
        time.sleep(0.002)
    tracer.kill()
    raise AssertionError(f"strace did not attach: {tracer.communicate()[1]!r}")


def strace_detach(tracer, timeout=10):
    """Stop a strace started by strace_attach (SIGINT: it detaches and the
    traced process goes on) and wait for it."""
    import signal
    if tracer.poll() is None:
        tracer.send_signal(signal.SIGINT)
    try:
        tracer.wait(timeout)
    except subprocess.TimeoutExpired:
        tracer.kill()
        tracer.wait()
