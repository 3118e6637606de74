"""Postfix (Debian's, installed here when missing) as a relay into mailroom's
LMTP server, run by hand from a private config folder under the test's tmp
dir (CLIENTS.md, "LMTP senders"): nothing of the system's mail setup is used
or changed, and Postfix never becomes the system MTA.

Mail goes in with smtplib on Postfix's smtpd port and reaches mailroom over
LMTP (virtual_transport = lmtp:inet:127.0.0.1:PORT):
  - one message to alice@example.test and bob@example.test together: MIME,
    8-bit UTF-8 text, a 2,000-character line, lines starting with dots, a
    2 MB attachment;
  - one message to alice alone (8-bit UTF-8, long line, dot lines);
  - one message to bob alone (dot lines, including a lone "." line);
  - one message to nobody@example.test, for whom mailroom has no user.
Checked:
  - each stored message is the bytes that were sent (CRLF), after a leading
    block of trace fields that the message did not have: mailroom's
    Return-Path (the envelope sender) and Received, then Postfix's Received
    (and Delivered-To / X-Original-To, should Postfix add them);
  - the message to both is ONE file: the same inode, 2 links, in alice's and
    bob's INBOX (single-instance delivery over one LMTP transaction);
  - Postfix's maillog says status=sent with mailroom's 250 for every good
    recipient, and status=bounced with mailroom's 550 5.1.1 for nobody,
    tried once and never deferred; the queue ends up empty; the bounce (DSN,
    null sender) is itself delivered by Postfix into the sender's INBOX.

Postfix's own line-length limit for its LMTP client (lmtp_line_length_limit,
998 by default) is switched off: with it, Postfix itself would break the
2,000-character line before mailroom sees it.
"""
import base64
import os
import pwd
import re
import signal
import smtplib
import subprocess
import time
from email.utils import formatdate
from pathlib import Path

import pytest

import imap_server
from conftest import add_user, cur_files

POSTFIX = "/usr/sbin/postfix"
MASTER_CF_DIST = "/usr/share/postfix/master.cf.dist"
DOMAIN = "example.test"
SENDER = f"sender@{DOMAIN}"
MYHOSTNAME = "mx.mailroom.test"
WAIT = 60  # seconds for all mail to arrive and the bounce to be logged

# Header fields that may precede the message as it was sent: mailroom's and
# Postfix's trace fields. Any other field ends the trace block.
TRACE_FIELDS = {b"return-path", b"received", b"delivered-to", b"x-original-to"}


# ---- Postfix installation and private instance -------------------------------------------

def _postfix_present():
    return os.access(POSTFIX, os.X_OK) and os.path.exists(MASTER_CF_DIST)


def _install_postfix():
    """Install Debian's postfix ("No configuration") if missing; returns None
    when it is available, else the reason it is not."""
    if _postfix_present():
        return None
    if os.geteuid() != 0:
        return "postfix is not installed and the test is not root (cannot apt-get install it)"
    try:
        subprocess.run(["debconf-set-selections"],
                       input=b"postfix postfix/main_mailer_type select No configuration\n",
                       capture_output=True, timeout=60, check=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        p = subprocess.run(["apt-get", "install", "-y", "-o", "DPkg::Lock::Timeout=120", "postfix"],
                           env=env, capture_output=True, timeout=400)
    except (OSError, subprocess.SubprocessError) as e:
        return f"postfix is not installed and apt-get install postfix failed: {e}"
    if p.returncode != 0 or not _postfix_present():
        tail = (p.stdout + p.stderr).decode(errors="replace").strip().splitlines()[-5:]
        return f"postfix is not installed and apt-get install postfix failed (rc={p.returncode}): {tail}"
    return None


def _master_cf(smtpd_port):
    """master.cf.dist with every chroot column set to n and the smtpd service
    ("smtp inet") moved to 127.0.0.1:PORT."""
    out = []
    for line in Path(MASTER_CF_DIST).read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            f = line.split()
            if len(f) >= 8:
                if f[0] == "smtp" and f[1] == "inet":
                    f[0] = f"127.0.0.1:{smtpd_port}"
                f[4] = "n"
                line = "  ".join(f[:8]) + ("  " + " ".join(f[8:]) if len(f) > 8 else "")
        out.append(line)
    return "\n".join(out) + "\n"


def _main_cf(base, lmtp_port):
    return f"""\
compatibility_level = 3.6
myhostname = {MYHOSTNAME}
mydomain = mailroom.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
queue_directory = {base}/queue
data_directory = {base}/data
maillog_file = {base}/maillog
maillog_file_prefixes = {base}
alias_maps =
alias_database =
virtual_mailbox_domains = {DOMAIN}
virtual_transport = lmtp:inet:127.0.0.1:{lmtp_port}
# Accept any address in {DOMAIN} at SMTP time: mailroom is the one to say
# whether the user exists (550 over LMTP, then Postfix bounces).
smtpd_reject_unlisted_recipient = no
# Do not let Postfix itself break lines over 998 characters.
lmtp_line_length_limit = 0
# Fail fast instead of retrying a temporary failure in minutes.
minimal_backoff_time = 300s
maximal_queue_lifetime = 1d
bounce_queue_lifetime = 1d
smtputf8_enable = yes
biff = no
"""


class Postfix:
    """A private Postfix instance: config, queue and data folders and maillog
    under base; started and stopped with `postfix -c DIR`."""

    def __init__(self, base, lmtp_port):
        self.base = Path(base)
        self.conf = self.base / "etc"
        self.queue = self.base / "queue"
        self.datadir = self.base / "data"
        self.maillog = self.base / "maillog"
        self.master_pid = None
        self.conf.mkdir(parents=True)
        self.queue.mkdir(mode=0o755)
        self.datadir.mkdir(mode=0o700)
        pw = pwd.getpwnam("postfix")
        os.chown(self.datadir, pw.pw_uid, pw.pw_gid)
        self.lmtp_port = lmtp_port
        self.smtpd_port = None

    def _postfix(self, *args, timeout=60):
        return subprocess.run([POSTFIX, "-c", str(self.conf)] + list(args),
                              capture_output=True, timeout=timeout)

    def start(self):
        last = None
        for _attempt in range(3):
            self.smtpd_port = imap_server._free_port()
            (self.conf / "main.cf").write_text(_main_cf(self.base, self.lmtp_port))
            (self.conf / "master.cf").write_text(_master_cf(self.smtpd_port))
            p = self._postfix("check")  # also creates the queue's folders, owned by postfix
            assert p.returncode == 0, f"postfix check: {p.stdout!r} {p.stderr!r}"
            p = self._postfix("start")
            assert p.returncode == 0, f"postfix start: {p.stdout!r} {p.stderr!r}\n{self.log()}"
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                self.master_pid = self._read_master_pid() or self.master_pid
                if imap_server._answers(self.smtpd_port):
                    return
                time.sleep(0.1)
            last = self.log()
            self.stop()
            if "in use" not in last:
                break
        raise AssertionError(f"postfix smtpd did not come up on {self.smtpd_port}:\n{last}")

    def _read_master_pid(self):
        try:
            return int((self.queue / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def log(self):
        try:
            return self.maillog.read_text(errors="replace")
        except OSError:
            return ""

    def queued(self):
        """Names of the files in the queue (incoming, active, deferred, hold, maildrop)."""
        out = []
        for sub in ("maildrop", "incoming", "active", "deferred", "hold"):
            for dirpath, _dirs, files in os.walk(self.queue / sub):
                out += [os.path.join(dirpath, f) for f in files]
        return out

    def stop(self):
        """`postfix stop`, then make sure the master is gone (SIGKILL by PID,
        with its children, if it is still there after 10 s)."""
        pid = self._read_master_pid() or self.master_pid
        try:
            self._postfix("stop", timeout=30)
        except subprocess.SubprocessError:
            pass
        if pid is None:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and imap_server._running(pid):
            time.sleep(0.1)
        if imap_server._running(pid):
            for k in _children(pid) + [pid]:
                try:
                    os.kill(k, signal.SIGKILL)
                except OSError:
                    pass


def _children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return out


# ---- the messages ----------------------------------------------------------------------

def _crlf(text):
    return text.replace("\n", "\r\n").encode("utf-8")


def _headers(mid, to, subject, extra=""):
    return (f"From: Sender <{SENDER}>\n"
            f"To: {to}\n"
            f"Subject: {subject}\n"
            f"Date: {formatdate(localtime=False)}\n"
            f"Message-ID: <{mid}@mailroom.test>\n"
            f"MIME-Version: 1.0\n{extra}")


LONG_LINE = ("0123456789abcdefghijklmnopqrstuvwxyz" * 60)[:2000]
DOT_LINES = ".\n..\n...\n.leading dot\n..two leading dots\n. dot space\n"
UTF8_TEXT = "Grüße aus Köln: ½ € — ümlaut, 日本語のテキスト, ελληνικά, 🙂.\n"


def _msg_both():
    attachment = bytes((i * 7919 + (i >> 8)) & 0xFF for i in range(2 * 1024 * 1024))
    b64 = base64.encodebytes(attachment).decode()  # 76-character lines
    text = (_headers("both", "alice@example.test, bob@example.test", "to both, with a 2 MB attachment",
                     'Content-Type: multipart/mixed; boundary="=-=boundary-both=-="\n')
            + "\nThis is a MIME message.\n"
            + "--=-=boundary-both=-=\n"
            + "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
            + UTF8_TEXT + LONG_LINE + "\n" + DOT_LINES + "end of text\n"
            + "--=-=boundary-both=-=\n"
            + 'Content-Type: application/octet-stream; name="blob.bin"\n'
            + 'Content-Disposition: attachment; filename="blob.bin"\n'
            + "Content-Transfer-Encoding: base64\n\n"
            + b64
            + "--=-=boundary-both=-=--\n")
    return _crlf(text)


def _msg_alice():
    text = (_headers("alice-only", "Alice <alice@example.test>", "to alice: 8-bit, long line, dots",
                     "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n")
            + "\n" + UTF8_TEXT + DOT_LINES + LONG_LINE + "\n" + "Ä" * 500 + "\n.\n" + "last line\n")
    return _crlf(text)


def _msg_bob():
    text = (_headers("bob-only", "Bob <bob@example.test>", "to bob: dots")
            + "\n.\n..\n.hidden\nplain line\n\n\n.\nlast line, then an empty one\n\n")
    return _crlf(text)


def _msg_nobody():
    return _crlf(_headers("nobody", "Nobody <nobody@example.test>", "to nobody") + "\nno one reads this\n")


# ---- reading what was stored -----------------------------------------------------------

def _split_trace(stored):
    """(trace fields as [(lowercase name, raw bytes with CRLFs)], the rest)."""
    fields = []
    pos = 0
    while True:
        end = stored.find(b"\r\n", pos)
        if end < 0:
            break
        line = stored[pos:end + 2]
        if line[:1] in (b" ", b"\t"):
            if not fields:
                break
            fields[-1] = (fields[-1][0], fields[-1][1] + line)
        else:
            name = line.split(b":", 1)[0].strip().lower() if b":" in line else None
            if name not in TRACE_FIELDS:
                break
            fields.append((name, line))
        pos = end + 2
    return fields, stored[pos:]


def _message_id(stored):
    m = re.search(rb"(?im)^Message-ID:\s*<([^>]*)>", stored.split(b"\r\n\r\n", 1)[0])
    return m.group(1).decode() if m else None


def _inbox(data, user):
    try:
        return cur_files(data, user)
    except FileNotFoundError:
        return []


def _stored_by_id(data, user):
    out = {}
    for _uid, _flags, path in _inbox(data, user):
        out.setdefault(_message_id(path.read_bytes()), []).append(path)
    return out


def _describe(data, users):
    lines = []
    for u in users:
        for uid, flags, path in _inbox(data, u):
            st = os.stat(path)
            raw = path.read_bytes()
            trace, _rest = _split_trace(raw)
            lines.append(f"{u} uid={uid} ino={st.st_ino} nlink={st.st_nlink} size={len(raw)} "
                         f"id={_message_id(raw)} trace={[f[1] for f in trace]}")
    return "\n".join(lines)


# ---- the test --------------------------------------------------------------------------

def test_postfix_relays_into_mailroom(data, tmp_path):
    reason = _install_postfix()
    if reason:
        pytest.skip(reason)

    for u in ("alice", "bob", "sender"):
        add_user(data, u)
    srv = imap_server.start(str(data), protocols=("imap", "lmtp"))
    pf = None
    try:
        pf = Postfix(tmp_path / "postfix", srv.ports["lmtp"])
        pf.start()

        msgs = {
            "both": (_msg_both(), ["alice@example.test", "bob@example.test"]),
            "alice-only": (_msg_alice(), ["alice@example.test"]),
            "bob-only": (_msg_bob(), ["bob@example.test"]),
            "nobody": (_msg_nobody(), ["nobody@example.test"]),
        }
        with smtplib.SMTP("127.0.0.1", pf.smtpd_port, local_hostname="client.test", timeout=30) as s:
            s.ehlo("client.test")
            assert s.has_extn("8bitmime")
            for tag, (raw, rcpts) in msgs.items():
                refused = s.sendmail(SENDER, rcpts, raw, mail_options=["BODY=8BITMIME"])
                assert refused == {}, f"{tag}: Postfix refused {refused}"

        expected = {"alice": {"both", "alice-only"}, "bob": {"both", "bob-only"}}

        def done():
            for u, tags in expected.items():
                got = {_message_id(p.read_bytes()) for _uid, _f, p in _inbox(data, u)}
                if not {f"{t}@mailroom.test" for t in tags} <= got:
                    return False
            return (len(_inbox(data, "sender")) >= 1 and "status=bounced" in pf.log()
                    and not pf.queued())

        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and not done():
            time.sleep(0.25)
        time.sleep(0.5)  # anything extra (a duplicate, a retry) would show up now
        maillog = pf.log()
        diag = (f"\n--- Postfix maillog ---\n{maillog}\n--- stored ---\n"
                f"{_describe(data, ['alice', 'bob', 'sender', 'nobody'])}\n"
                f"--- queue ---\n{pf.queued()}\n--- mailroom log ---\n{srv.log()}")
        assert done(), f"mail did not all arrive within {WAIT} s" + diag

        # --- Postfix's view: every good recipient sent, nobody bounced once, nothing deferred.
        relay = rf"relay=127\.0\.0\.1\[127\.0\.0\.1\]:{srv.ports['lmtp']}"
        for u in ("alice", "bob"):
            sent = re.findall(rf"to=<{u}@example\.test>, {relay},.*status=sent \(250 2\.0\.0 [^)]*\)",
                              maillog)
            assert len(sent) == 2, f"{u}: expected 2 status=sent lines, got {sent}" + diag
        nob = [l for l in maillog.splitlines() if "to=<nobody@example.test>" in l]
        assert len(nob) == 1, f"nobody: expected one delivery attempt, got {nob}" + diag
        assert re.search(rf"{relay},.*dsn=5\.\d\.\d+, status=bounced \(host 127\.0\.0\.1\[127\.0\.0\.1\] "
                         rf"said: 5\d\d 5\.1\.1 [^\n]*\(in reply to RCPT TO command\)\)", nob[0]), nob[0] + diag
        assert "status=deferred" not in maillog, diag
        bad = [l for l in maillog.splitlines() if re.search(r"(warning|error|fatal|panic):", l)]
        assert not bad, f"Postfix complained: {bad}" + diag

        # --- mailroom's store: the bytes sent, after the trace block.
        for u, tags in expected.items():
            by_id = _stored_by_id(data, u)
            assert set(by_id) == {f"{t}@mailroom.test" for t in tags}, diag
            for tag in tags:
                paths = by_id[f"{tag}@mailroom.test"]
                assert len(paths) == 1, f"{u}: {tag} stored {len(paths)} times" + diag
                stored = paths[0].read_bytes()
                trace, rest = _split_trace(stored)
                names = [n for n, _ in trace]
                assert names[:1] == [b"return-path"], f"{u}/{tag}: trace {trace}" + diag
                assert trace[0][1] == f"Return-Path: <{SENDER}>\r\n".encode(), trace[0][1]
                received = [r for n, r in trace if n == b"received"]
                assert len(received) == 2, f"{u}/{tag}: Received fields {received}"
                assert b"(mailroom) with LMTP" in received[0], received[0]
                assert b"by " + MYHOSTNAME.encode() + b" (Postfix)" in received[1], received[1]
                sent = msgs[tag][0]
                if rest != sent:
                    i = next((k for k in range(min(len(rest), len(sent))) if rest[k] != sent[k]),
                             min(len(rest), len(sent)))
                    pytest.fail(f"{u}/{tag}: stored message differs from what was sent at byte {i} "
                                f"(after {len(stored) - len(rest)} bytes of trace fields): "
                                f"sent {sent[max(0, i - 60):i + 60]!r}, "
                                f"stored {rest[max(0, i - 60):i + 60]!r}; "
                                f"sizes sent={len(sent)} stored={len(rest)}" + diag)
                assert b"\n" not in stored.replace(b"\r\n", b""), f"{u}/{tag}: bare LF stored"

        # --- single-instance: the message to both is one file with 2 links.
        a = os.stat(_stored_by_id(data, "alice")["both@mailroom.test"][0])
        b = os.stat(_stored_by_id(data, "bob")["both@mailroom.test"][0])
        assert (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino), "the message to both is two files" + diag
        assert a.st_nlink == 2, f"the message to both has {a.st_nlink} links" + diag
        for u, tag in (("alice", "alice-only"), ("bob", "bob-only")):
            st = os.stat(_stored_by_id(data, u)[f"{tag}@mailroom.test"][0])
            assert st.st_nlink == 1 and st.st_ino != a.st_ino, diag

        # --- the unknown user: no mail folder, and the DSN reached the sender.
        assert not (Path(data) / "mail" / "nobody").exists(), diag
        dsns = [p.read_bytes() for _u, _f, p in _inbox(data, "sender")]
        assert len(dsns) == 1, diag
        dsn = dsns[0]
        assert dsn.startswith(b"Return-Path: <>\r\n"), dsn[:200]
        assert re.search(rb"(?im)^Content-Type: multipart/report;", dsn), dsn[:2000]
        assert re.search(rb"(?im)^Final-Recipient: rfc822;\s*nobody@example\.test\r$", dsn), dsn[:4000]
        assert re.search(rb"(?im)^Action: failed\r$", dsn), dsn[:4000]
        assert re.search(rb"(?im)^Status: 5\.1\.1\r$", dsn), dsn[:4000]
        assert b"<nobody@mailroom.test>" in dsn, "DSN does not carry the returned message"
        assert not pf.queued(), diag
    finally:
        if pf is not None:
            pf.stop()
        srv.stop()
    if pf is not None and pf.master_pid is not None:
        assert not imap_server._running(pf.master_pid), "Postfix master still running after stop"
