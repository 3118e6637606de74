"""A real POP3 client against mailroom: fetchmail (CLIENTS.md) downloads and
deletes, keeps and uses UIDL across a server restart, and fetches over POP3S.

fetchmail is installed with apt-get when missing; the test is skipped, with
the reason, only if that fails. CPython's email test messages (47 real-world
messages, package libpython3.11-testsuite) join the hand-written ones when
they are installed or installable.

Expected values come from the delivered bytes: fetchmail hands each message
to its MDA ("cat >> FILE") with LF line endings, unstuffed, after a
Received: line of its own, so FILE must hold exactly each delivered message
(wire form, CRLF -> LF, a final LF added if it had none), in order.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import imap_server  # noqa: E402
from conftest import add_user, cur_files, deliver, wire  # noqa: E402

CORPUS = Path("/usr/lib/python3.11/test/test_email/data")

HANDMADE = [
    b"From: a@example.org\nTo: alice@example.org\nSubject: dots\n\n.\n..two\n.three\n.\nend\n",
    b"From: b@example.org\r\nTo: alice@example.org\r\nSubject: crlf\r\n\r\nl1\r\nl2\r\n",
    b"From: c@example.org\nTo: alice@example.org\nSubject: no eol\n\nlast line without newline",
    b"From: d@example.org\nTo: alice@example.org\nSubject: =?utf-8?q?caf=C3=A9?=\n"
    b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\ncaf\xc3\xa9\n",
    b"From: e@example.org\nTo: alice@example.org\nSubject: big\n\n"
    + b"".join(b"line %06d of a large message, with a .dot later .\n" % i for i in range(20000)),
]


def _apt_install(pkg):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", pkg]
    if subprocess.run(cmd, env=env, capture_output=True, timeout=600).returncode == 0:
        return True
    subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
    return subprocess.run(cmd, env=env, capture_output=True, timeout=600).returncode == 0


@pytest.fixture(scope="module")
def fetchmail():
    path = shutil.which("fetchmail")
    if path is None:
        if os.geteuid() != 0:
            pytest.skip("fetchmail is not installed and we are not root to apt-get it")
        if not _apt_install("fetchmail"):
            pytest.skip("fetchmail is not installed and `apt-get install fetchmail` failed")
        path = shutil.which("fetchmail")
        if path is None:
            pytest.skip("fetchmail not found after installing it")
    return path


@pytest.fixture(scope="module")
def corpus():
    if not CORPUS.is_dir() and os.geteuid() == 0:
        _apt_install("libpython3.11-testsuite")
    if not CORPUS.is_dir():
        return []
    out = []
    for f in sorted(CORPUS.glob("msg_*.txt")):
        b = f.read_bytes()
        # fetchmail's MDA output is compared byte for byte: leave out
        # the few samples whose bytes it legitimately changes (a bare CR,
        # which its CR stripping removes; no header/body separator, where
        # its header parsing decides; NUL; a leading mbox "From " line,
        # which it drops).
        if (b"\r" in b.replace(b"\r\n", b"") or b"\0" in b or b.startswith(b"From ")
                or b"\n\n" not in wire(b).replace(b"\r\n", b"\n")):
            continue
        out.append(b)
    return out


def fetchmail_run(fm, home, port, out, options, ssl=False, uidl=False, timeout=180):
    rc = home / "fetchmailrc"
    ssl_opts = "ssl no sslcertck" if ssl else "sslproto ''"
    # bad-header accept: some of the corpus messages have malformed headers
    # (CLIENTS.md).
    rc.write_text(f'poll 127.0.0.1 service {port} protocol POP3 {"uidl " if uidl else ""}'
                  f'bad-header accept user "alice" password "secret" '
                  f'{ssl_opts} options {options} norewrite mda "cat >> {out}"\n')
    os.chmod(rc, 0o600)
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    return subprocess.run([fm, "-f", str(rc), "--nodetach", "-v", "-i", str(home / "fetchids"),
                           "--pidfile", str(home / "fetchmail.pid")],
                          env=env, capture_output=True, text=True, timeout=timeout)


_RECEIVED = re.compile(rb"(?m)^Received: from 127\.0\.0\.1 \[127\.0\.0\.1\]\n\tby .*\n\tfor .*\n")


def mda_output(out):
    """(number of messages, bytes without fetchmail's Received: lines) of
    what the MDA got. fetchmail puts its Received: line first, or after a
    message's leading Return-Path:/Delivered-To: lines, so it is removed
    wherever it is rather than used to split the messages."""
    data = Path(out).read_bytes() if Path(out).exists() else b""
    return len(_RECEIVED.findall(data)), _RECEIVED.sub(b"", data)


def expected_output(msgs):
    return len(msgs), b"".join(as_delivered(m) for m in msgs)


def as_delivered(msg):
    """What the MDA must receive: the stored (wire) form with LF endings."""
    lf = wire(msg).replace(b"\r\n", b"\n")
    return lf if lf.endswith(b"\n") else lf + b"\n"


def _deliver_all(data, msgs):
    for m in msgs:
        p = deliver(data, "alice", m)
        assert p.returncode == 0, p.stderr


def test_fetchmail_downloads_and_deletes(fetchmail, corpus, data, tmp_path):
    add_user(data, "alice", "secret")
    msgs = HANDMADE + corpus
    _deliver_all(data, msgs)
    home = tmp_path / "home"
    home.mkdir()
    out = home / "mbox"
    srv = imap_server.start(data, protocols=("imap", "pop3"))
    try:
        p = fetchmail_run(fetchmail, home, srv.ports["pop3"], out, "fetchall")
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        n, got = mda_output(out)
        want_n, want = expected_output(msgs)
        assert n == want_n
        if got != want:
            i = next(k for k in range(min(len(got), len(want))) if got[k] != want[k])
            pytest.fail(f"MDA output differs at byte {i}: got {got[i - 80:i + 80]!r}, "
                        f"want {want[i - 80:i + 80]!r}")
        assert f"{len(msgs)} messages for alice" in p.stdout
        # Deleted on the server (fetchmail QUITs; the UPDATE state ran).
        assert cur_files(data, "alice") == []
        # A second run finds nothing: exit 1 is "no mail".
        p = fetchmail_run(fetchmail, home, srv.ports["pop3"], out, "fetchall")
        assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]
        assert mda_output(out)[0] == len(msgs)
        time.sleep(0.2)
        log = srv.log()
        assert re.search(r"pop3 \S+ login user=alice ip=127\.0\.0\.1", log)
        assert re.search(rf"pop3 \S+ expunged user=alice messages={len(msgs)}", log)
    finally:
        srv.stop()


def test_fetchmail_keep_uses_uidl_across_restart(fetchmail, data, tmp_path):
    add_user(data, "alice", "secret")
    _deliver_all(data, HANDMADE[:3])
    home = tmp_path / "home"
    home.mkdir()
    out = home / "mbox"
    srv = imap_server.start(data, protocols=("imap", "pop3"))
    try:
        p = fetchmail_run(fetchmail, home, srv.ports["pop3"], out, "keep", uidl=True)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        assert mda_output(out) == expected_output(HANDMADE[:3])
        assert len(cur_files(data, "alice")) == 3  # kept
    finally:
        srv.stop()
    # New mail while the server is down, then a restart: fetchmail must
    # recognise the three it has seen by their UIDLs and fetch only the new one.
    _deliver_all(data, HANDMADE[3:4])
    srv = imap_server.start(data, protocols=("imap", "pop3"))
    try:
        p = fetchmail_run(fetchmail, home, srv.ports["pop3"], out, "keep", uidl=True)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        assert mda_output(out) == expected_output(HANDMADE[:4])
        assert "1 message (3 seen)" in p.stdout or "(3 seen)" in p.stdout, p.stdout[-2000:]
        p = fetchmail_run(fetchmail, home, srv.ports["pop3"], out, "keep", uidl=True)
        assert p.returncode == 1, p.stdout[-3000:]
        assert mda_output(out)[0] == 4
        assert len(cur_files(data, "alice")) == 4
    finally:
        srv.stop()


def test_fetchmail_pop3s(fetchmail, data, tmp_path):
    add_user(data, "alice", "secret")
    _deliver_all(data, HANDMADE[:2])
    home = tmp_path / "home"
    home.mkdir()
    out = home / "mbox"
    s = __import__("socket").socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    srv = imap_server.start(data, extra_opts={"pop3s_listen": f"127.0.0.1:{port}"},
                            protocols=("imap", "pop3"))
    try:
        p = fetchmail_run(fetchmail, home, port, out, "fetchall", ssl=True)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        assert mda_output(out) == expected_output(HANDMADE[:2])
        assert cur_files(data, "alice") == []
    finally:
        srv.stop()
