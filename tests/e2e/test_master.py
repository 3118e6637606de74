"""The master process and its children (issue 14): the start-up check of
what each child needs, restart throttling, and what clients see meanwhile.

- A DATA folder the workers cannot read (mode 700, as `mktemp -d` makes it,
  run_user mail or nobody) is refused at start: one message naming the
  folder, the user and the error, exit 77 (EX_NOPERM), before any port is
  bound. It used to start, then fork hundreds of thousands of workers that
  died at once, with 67 MB of log in three minutes.
- Workers that die young are restarted after a back-off (1 s, 2 s, 4 s ...),
  with one log line per back-off; connections meanwhile get a BYE
  [UNAVAILABLE] greeting from the master instead of hanging; once the cause
  is gone a worker comes back without a restart of the master.
- A worker or the auth process killed after a long run is replaced at once.

Needs root (the server drops to run_user/auth_user only when started as
root) and strace (to count the master's forks); both are part of the test
setup (scripts/deps.sh), so their absence fails the tests.
"""

import errno
import os
import pwd
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

import imap_server
from conftest import MAILROOM, EX_NOPERM, add_user, deliver, make_message

EX_CONFIG = 78


def need_root():
    assert os.geteuid() == 0, "these tests start `mailroom serve` as root (it drops to run_user)"


def uid_of(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def kids_as(srv, user):
    """Running children of the master that run as user (workers: mail, auth: nobody)."""
    uid = pwd.getpwnam(user).pw_uid
    return [k for k in srv.children() if uid_of(k) == uid and imap_server._running(k)]


def wait_until(pred, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def greeting(port, timeout=3):
    """The first line the server sends, b"" if it closes at once; raises
    socket.timeout if nothing comes in time (a client left hanging)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        data = b""
        while b"\r\n" not in data:
            d = s.recv(4096)
            if not d:
                break
            data += d
        return data


def login_works(port):
    try:
        c = imap_server.Client(port, timeout=5)
    except (OSError, EOFError):
        return False
    try:
        if not c.greeting.startswith(b"* OK"):
            return False
        _, tagged = c.cmd('LOGIN "alice" "secret"')
        return tagged.startswith(b"OK")
    except (OSError, EOFError):
        return False
    finally:
        c.close()


class LogWatch:
    """Collects the server's new log lines with the time each was first seen
    (the server writes no timestamps), polling every 20 ms in a thread."""

    def __init__(self, srv):
        self.srv = srv
        self.start_len = len(srv.log())
        self.lines = []  # (monotonic time, line)
        self._stop = threading.Event()
        self._seen = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self._poll()
            time.sleep(0.02)

    def _poll(self):
        new = self.srv.log()[self.start_len:]
        complete = new[:new.rfind("\n") + 1] if "\n" in new else ""
        got = complete.splitlines()
        now = time.monotonic()
        for line in got[self._seen:]:
            self.lines.append((now, line))
        self._seen = len(got)

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        self._poll()
        return self.lines


def serve(data, protocols=("imap",), **opts):
    return imap_server.start(data, extra_opts=dict({"workers": "1"}, **opts), protocols=protocols)


@pytest.fixture
def alice(data):
    add_user(data, "alice", "secret")
    p = deliver(data, "alice", make_message("master-1"))
    assert p.returncode == 0, p.stderr
    return data


# --- the start-up check ------------------------------------------------------------

@pytest.mark.parametrize("run_user", ["mail", "nobody"])
def test_unreadable_data_is_refused_at_start(alice, run_user):
    """DATA mode 700 owned by root (mktemp -d): the workers, as run_user,
    cannot open it. One message with the folder, the user and the error,
    exit EX_NOPERM, and nothing bound: the IMAP port is held by the test, so
    a master that bound before the check would fail with "in use" instead."""
    need_root()
    os.chmod(alice, 0o700)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        t0 = time.monotonic()
        p = subprocess.run([MAILROOM, "serve", "-d", str(alice), "-o", f"imap_listen=127.0.0.1:{port}",
                            "-o", "imaps_listen=", "-o", "pop3_listen=", "-o", "pop3s_listen=",
                            "-o", "lmtp_listen=", "-o", "workers=1", "-o", f"run_user={run_user}"],
                           capture_output=True, text=True, timeout=30)
        took = time.monotonic() - t0
    lines = [l for l in (p.stdout + p.stderr).splitlines() if l.strip()]
    assert p.returncode == EX_NOPERM, (p.returncode, lines)
    assert len(lines) == 1, lines
    msg = lines[0]
    assert str(alice) in msg and run_user in msg and os.strerror(errno.EACCES) in msg, msg
    assert "/proc/self" not in msg, msg
    assert took < 10, took


def test_passwd_that_is_not_a_file_is_refused_at_start(alice):
    """The auth process's DATA/passwd (opened for it by the master) is a
    folder: refused at start, EX_CONFIG, naming the file."""
    need_root()
    os.rename(alice / "passwd", alice / "passwd.real")
    (alice / "passwd").mkdir()
    p = subprocess.run([MAILROOM, "serve", "-d", str(alice), "-o", "imap_listen=", "-o", "imaps_listen=",
                        "-o", "pop3_listen=", "-o", "pop3s_listen=", "-o", "lmtp_listen="],
                       capture_output=True, text=True, timeout=30)
    lines = [l for l in (p.stdout + p.stderr).splitlines() if l.strip()]
    assert p.returncode == EX_CONFIG, (p.returncode, lines)
    assert len(lines) == 1 and str(alice / "passwd") in lines[0], lines


# --- restart throttling ------------------------------------------------------------------

BACKOFF = re.compile(r"worker died (\d+) times? within (\d+) s of start; next restart in (\d+) s: (.*)$")


def test_workers_that_die_at_start_are_throttled(alice):
    """DATA made unreadable to run_user after the start, then the worker
    killed: each new worker dies at once. Over 5 s the master forks 2 of them
    (at 1 s and 3 s), not thousands, and logs one line per back-off (1, 2,
    4 s) and nothing per death; a client meanwhile gets a temporary-failure
    greeting at once (IMAP, POP3, LMTP). With DATA readable again, the next scheduled worker serves IMAP:
    the same master, no restart."""
    need_root()
    srv = serve(alice, protocols=("imap", "pop3", "lmtp"))  # restart_min_uptime: the default, 10 s
    try:
        assert wait_until(lambda: kids_as(srv, "mail"), 5), srv.log()
        [w] = kids_as(srv, "mail")
        tracer = subprocess.Popen(["strace", "-qq", "-e", "trace=clone,clone3,fork,vfork", "-e", "signal=none",
                                   "-p", str(srv.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True)
        time.sleep(0.5)  # attached
        assert tracer.poll() is None, tracer.stderr.read()
        watch = LogWatch(srv)
        os.chmod(alice, 0o700)
        t0 = time.monotonic()
        os.kill(w, signal.SIGKILL)
        time.sleep(1.5)  # inside the 2 s back-off that follows the first restart
        # RFC 9051 7.1.5 + RFC 5530; RFC 3206; RFC 5321 3.1 (an MTA retries a 421)
        g = greeting(srv.port)
        assert g.startswith(b"* BYE [UNAVAILABLE]"), g
        g = greeting(srv.ports["pop3"])
        assert g.startswith(b"-ERR [SYS/TEMP]"), g
        g = greeting(srv.ports["lmtp"])
        assert g.startswith(b"421 4.3.2 "), g
        time.sleep(max(0.0, t0 + 5 - time.monotonic()))
        os.chmod(alice, 0o755)
        lines = watch.stop()
        tracer.send_signal(signal.SIGINT)
        _, trace = tracer.communicate(timeout=10)

        forks = [l for l in trace.splitlines() if re.match(r"(clone|clone3|fork|vfork)\(", l)]
        assert 1 <= len(forks) <= 3, trace
        backoffs = [(t - t0, BACKOFF.search(l)) for t, l in lines]
        assert all(m is not None for _, m in backoffs), "only back-off lines:\n" + "\n".join(l for _, l in lines)
        assert [int(m[3]) for _, m in backoffs] == [1, 2, 4], lines
        assert [int(m[2]) for _, m in backoffs] == [10] * 3, lines
        counts = [int(m[1]) for _, m in backoffs]
        assert counts == [1, 2, 3], lines
        # one line per back-off, each when the previous one ended
        when = [t for t, _ in backoffs]
        assert when[0] < 0.8 and 0.7 < when[1] - when[0] < 2.0 and 1.7 < when[2] - when[1] < 3.0, when
        assert str(alice) in backoffs[-1][1][4] and os.strerror(errno.EACCES) in backoffs[-1][1][4], lines
        assert "/proc/self" not in backoffs[-1][1][4], lines

        # the worker scheduled at t0 + 7 s can open DATA again: it serves
        assert wait_until(lambda: login_works(srv.port), 8, step=0.2), srv.log()[-2000:]
        back = time.monotonic() - t0
        assert back > 6.5, f"a worker started before the back-off ended: {back:.1f} s"
        assert srv.alive()
    finally:
        os.chmod(alice, 0o755)
        srv.stop()


def test_killed_long_running_worker_is_replaced_at_once(alice):
    """kill -9 of a worker that has run longer than restart_min_uptime: a
    new one at once, logins within 2 s, no back-off."""
    need_root()
    srv = serve(alice, restart_min_uptime="2")
    try:
        assert login_works(srv.port)
        time.sleep(2.5)
        [w] = kids_as(srv, "mail")
        before = len(srv.log())
        os.kill(w, signal.SIGKILL)
        t0 = time.monotonic()
        assert wait_until(lambda: login_works(srv.port), 2, step=0.05), srv.log()[before:]
        assert time.monotonic() - t0 < 2
        new = srv.log()[before:]
        assert re.search(rf"worker {w} died after \d+ s: killed by signal 9", new), new
        assert "next restart" not in new, new
        assert [k for k in kids_as(srv, "mail") if k != w]
    finally:
        srv.stop()


def test_killed_auth_process_is_restarted(alice):
    """The auth process killed after a long run: restarted at once (and the
    workers, which held sockets to the dead one, replaced); killed again
    young: restarted after a 1 s back-off. Logins work again each time."""
    need_root()
    srv = serve(alice, restart_min_uptime="2")
    try:
        assert login_works(srv.port)
        time.sleep(2.5)
        [a] = kids_as(srv, "nobody")
        before = len(srv.log())
        os.kill(a, signal.SIGKILL)
        t0 = time.monotonic()
        assert wait_until(lambda: login_works(srv.port), 3, step=0.05), srv.log()[before:]
        assert time.monotonic() - t0 < 3
        assert re.search(rf"auth process {a} died after \d+ s: killed by signal 9", srv.log()[before:])

        [b] = [x for x in kids_as(srv, "nobody") if x != a]
        before = len(srv.log())
        os.kill(b, signal.SIGKILL)
        t0 = time.monotonic()
        assert wait_until(lambda: login_works(srv.port), 5, step=0.1), srv.log()[before:]
        assert time.monotonic() - t0 > 0.8, "restarted without the back-off"
        new = srv.log()[before:]
        assert re.search(r"auth process died 1 time within 2 s of start; next restart in 1 s: "
                         r"killed by signal 9", new), new
    finally:
        srv.stop()
