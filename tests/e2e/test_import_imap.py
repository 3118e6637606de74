"""`mailroom import` from a running IMAP server (imap://, imaps://), issue 12 Must show 3.

The source is a real Dovecot 2.3 (tests/e2e/dovecot_server.py) holding 2,000
messages in 5 folders, put there over IMAP with APPEND (varied: sizes from a
few hundred bytes to 2 MB, multipart, 8-bit, bare-LF and CRLF; flags,
keywords and explicit INTERNALDATEs with several zones), and with some UIDs
expunged so that the UIDs have gaps. What a user moving servers relies on,
checked over mailroom's own IMAP against what Dovecot serves:

  - every message byte-identical (BODY.PEEK[] of both, compared by SHA-256),
    its flags and keywords, INTERNALDATE (as an instant) and RFC822.SIZE;
  - each folder's UIDVALIDITY and every UID kept (no client downloads again);
    the folder names (modified UTF-7, hierarchy) and subscriptions;
  - a second run adds nothing (the summary line and the counts say so);
  - a run killed half way (SIGKILL once some messages are in) and run again
    ends complete, without duplicates;
  - a wrong password is a clear error with a sysexits code, nothing imported;
  - imaps:// against a Dovecot with a self-signed certificate: refused while
    the certificate is verified, imported with ?tls-verify=no; a certificate
    that is trusted (SSL_CERT_FILE) is accepted for the right address only;
    a 50 MB message goes through with the importer's memory bounded;
  - a personal namespace with a prefix (INBOX.) and names that need quoting.

Dovecot's own log tells how many bodies each session fetched: every body
once on the first run, none on the second, only the missing ones after an
interruption.
"""

import hashlib
import imaplib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import imap_server  # noqa: E402
from conftest import MAILROOM, add_user  # noqa: E402
from dovecot_server import DovecotServer, free_port  # noqa: E402

USER, PASSWORD = "alice", "Pa55 w\"rd"
# Dovecot's names (separator ".") -> mailroom's ("/"), and how many messages
FOLDERS = [("INBOX", "INBOX", 800), ("Sent", "Sent", 400), ("Archive.2024", "Archive/2024", 400),
           ("Entw&APw-rfe", "Entw&APw-rfe", 200), ("Work", "Work", 200)]
SUBSCRIBED = ["INBOX", "Sent", "Archive.2024", "Entw&APw-rfe"]
TOTAL = sum(n for _, _, n in FOLDERS)
KEYWORDS = ["$Label1", "$Junk", "todo", "Project_X", "$MDNSent"]
SYSFLAGS = ["\\Seen", "\\Answered", "\\Flagged", "\\Draft", "\\Deleted", "$Forwarded"]
ZONES = ["+0000", "-0700", "+0530", "+1400", "-1200", "+0100"]
MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
# Dovecot answers INTERNALDATE in its own zone: +0530, so that a zone read
# the wrong way round shows (and minutes count).
DOVECOT_CONF = """
mail_fsync = never
import_environment = TZ=XST-5:30
namespace inbox {
  inbox = yes
  separator = .
  mailbox Sent {
    special_use = \\Sent
  }
}
"""


# ---- the source: messages ---------------------------------------------------------

def make_message(i, rng):
    """Message i: one of several shapes, CRLF or bare LF."""
    kind = i % 7
    subject = "message %d" % i
    if kind == 2:
        subject += " Gr\u00fc\u00dfe \u2603"  # raw 8-bit UTF-8 in a header
    head = ("From: Sender %d <s%d@example.org>\nTo: %s@example.net\nSubject: %s\n"
            "Message-ID: <imp-%d@test.example>\nDate: Mon, 7 Dec 2026 10:00:00 +0000\n"
            % (i, i, USER, subject, i))
    words = ["lorem", "ipsum", "dolor", "sit", "amet", "f\u00fcr", "caf\u00e9", "na\u00efve"]
    if kind in (0, 2, 5):
        size = rng.choice([0, 80, 600, 3000, 12000])
        body = "\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(size // 70 + 1))
        ctype = "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n"
        text = head + "MIME-Version: 1.0\n" + ctype + "\n" + body + "\n"
    elif kind in (1, 4):
        blob = rng.randbytes(rng.choice([300, 5000, 40000]))
        import base64
        b64 = base64.encodebytes(blob).decode()
        text = (head + "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b%d\"\n\n"
                "preamble\n--b%d\nContent-Type: text/plain; charset=us-ascii\n\nhello %d\n"
                "--b%d\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n"
                "Content-Disposition: attachment; filename=\"f%d.bin\"\n\n%s--b%d--\nepilogue\n"
                % (i, i, i, i, i, b64, i))
    elif kind == 3:
        text = (head + "MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=alt\n\n"
                "--alt\nContent-Type: text/plain\n\nplain %d\n--alt\nContent-Type: text/html\n\n"
                "<p>html %d</p>\n--alt--\n" % (i, i))
    else:
        text = head + "\n" + ("x" * 76 + "\n") * rng.choice([1, 50, 1500])
    if i in (7, 1007):  # two big ones, streamed in pieces
        text += ("y" * 99 + "\n") * 20000
    data = text.encode("utf-8")
    if rng.random() < 0.5:
        data = data.replace(b"\n", b"\r\n")
    return data


def internaldate(rng):
    t = time.gmtime(rng.randrange(946684800, 1790000000))
    return '"%02d-%s-%d %02d:%02d:%02d %s"' % (t.tm_mday, MONTHS[t.tm_mon - 1], t.tm_year, t.tm_hour,
                                                t.tm_min, t.tm_sec, rng.choice(ZONES))


class RawImap:
    """Just enough IMAP to pipeline APPENDs with LITERAL+ (Dovecot has it)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.f = self.sock.makefile("rb")
        self.n = 0
        self.f.readline()

    def run(self, cmds):
        """Send the commands (bytes, tag left out) at once, wait for every tagged reply."""
        tags = []
        out = []
        for c in cmds:
            self.n += 1
            tag = b"p%d" % self.n
            tags.append(tag)
            out.append(tag + b" " + c + b"\r\n")
        self.sock.sendall(b"".join(out))
        left = set(tags)
        while left:
            line = self.f.readline()
            assert line, "dovecot closed the connection"
            t = line.split(b" ", 1)[0]
            if t in left:
                assert line.split(b" ")[1] == b"OK", line
                left.discard(t)

    def close(self):
        self.sock.close()


def populate(port, rng):
    c = RawImap(port)
    c.run([b'LOGIN "%s" "%s"' % (USER.encode(), PASSWORD.replace('"', '\\"').encode())])
    c.run([b'CREATE "%s"' % box.encode() for box, _, _ in FOLDERS if box != "INBOX"])
    c.run([b'SUBSCRIBE "%s"' % box.encode() for box in SUBSCRIBED])
    i = 0
    gaps = {}
    for box, _, n in FOLDERS:
        extra = n // 25  # appended, then expunged: gaps in the UIDs
        cmds = []
        for k in range(n + extra):
            flags = [f for f in SYSFLAGS if rng.random() < 0.3]
            flags += [kw for kw in KEYWORDS if rng.random() < 0.15]
            msg = make_message(i, rng)
            i += 1
            cmds.append(b'APPEND "%s" (%s) %s {%d+}\r\n' % (box.encode(), " ".join(flags).encode(),
                                                           internaldate(rng).encode(), len(msg)) + msg)
        for k in range(0, len(cmds), 100):
            c.run(cmds[k:k + 100])
        gaps[box] = sorted(rng.sample(range(1, n + extra + 1), extra))
        uids = ",".join(map(str, gaps[box])).encode()
        c.run([b'SELECT "%s"' % box.encode()])
        c.run([b"UID STORE " + uids + b" +FLAGS.SILENT (\\Deleted)"])
        c.run([b"UID EXPUNGE " + uids])
        c.run([b"UNSELECT"])  # not CLOSE: that would expunge every \\Deleted
    c.run([b"LOGOUT"])
    c.close()
    return gaps


# ---- reading a folder over IMAP -----------------------------------------------------

_META = re.compile(rb"UID (\d+)|FLAGS \(([^)]*)\)|INTERNALDATE \"([^\"]+)\"|RFC822\.SIZE (\d+)")


def parse_date(s):
    t = time.strptime(s[:20].strip(), "%d-%b-%Y %H:%M:%S")
    z = s[21:]
    off = (int(z[1:3]) * 3600 + int(z[3:5]) * 60) * (-1 if z[0] == "-" else 1)
    return int(time.mktime(t) - time.timezone) - off


def folder_state(c, box):
    """(UIDVALIDITY, {uid: (flags, internaldate, size, sha256)}) of box, read-only."""
    typ, _ = c.select('"%s"' % box, readonly=True)
    assert typ == "OK", (box, typ)
    uidvalidity = int(c.untagged_responses["UIDVALIDITY"][0])
    typ, data = c.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
    assert typ == "OK"
    msgs = {}
    k = 0
    while k < len(data):
        item = data[k]
        k += 1
        if not isinstance(item, tuple):
            continue
        meta, body = item[0], item[1]
        if k < len(data) and isinstance(data[k], bytes):
            meta += data[k]
            k += 1
        fields = {}
        for m in _META.finditer(meta):
            if m.group(1):
                fields["uid"] = int(m.group(1))
            elif m.group(2) is not None:
                fields["flags"] = frozenset(f for f in m.group(2).decode().split() if f != "\\Recent")
            elif m.group(3):
                fields["date"] = parse_date(m.group(3).decode())
            else:
                fields["size"] = int(m.group(4))
        assert set(fields) == {"uid", "flags", "date", "size"}, meta
        assert fields["size"] == len(body), meta
        msgs[fields["uid"]] = (fields["flags"], fields["date"], fields["size"],
                               hashlib.sha256(body).hexdigest())
    c.close()
    return uidvalidity, msgs


def subscriptions(c):
    typ, data = c.lsub('""', '"*"')
    assert typ == "OK"
    return {re.search(rb'"([^"]*)"$|(\S+)$', d).group(0).strip(b'"').decode() for d in data if d}


def login(port):
    c = imaplib.IMAP4("127.0.0.1", port, timeout=120)
    c.login(USER, PASSWORD)
    return c


@pytest.fixture(scope="module")
def source():
    """Dovecot with the 2,000 messages, and what it serves of them."""
    dv = DovecotServer(users={USER: PASSWORD}, extra_conf=DOVECOT_CONF)
    dv.start()
    try:
        t0 = time.monotonic()
        gaps = populate(dv.imap_port, random.Random(12))
        c = login(dv.imap_port)
        want = {mine: folder_state(c, theirs) for theirs, mine, _ in FOLDERS}
        subs = subscriptions(c)
        c.logout()
        assert sum(len(m) for _, m in want.values()) == TOTAL
        for theirs, mine, n in FOLDERS:
            uids = set(want[mine][1])
            assert not uids & set(gaps[theirs]) and max(uids) > n  # the gaps are there
        print("source: %d messages in %d folders put into Dovecot and read back in %.1f s"
              % (TOTAL, len(FOLDERS), time.monotonic() - t0))
        yield dv, want, subs
    finally:
        dv.cleanup()


def password_file(tmp_path, pw=PASSWORD):
    f = tmp_path / "pw"
    f.write_text(pw + "\n")
    os.chmod(f, 0o600)
    return f


def import_cmd(data, url, pwfile):
    return ["import", "-d", str(data), USER, url, "--password-file", str(pwfile)]


def run(args, env=None, timeout=120):
    """`mailroom ARGS...`, output as text."""
    return subprocess.run([MAILROOM] + args, env=env, capture_output=True, text=True, timeout=timeout)


def summary(out):
    m = re.search(r"^imported (\d+) messages .* in (\d+) folders, (\d+) already there, (\d+) skipped",
                  out, re.M)
    assert m, out
    return tuple(int(x) for x in m.groups())


def check_mailroom(data, want, subs=None):
    """mailroom serves exactly what Dovecot served."""
    srv = imap_server.start(data)
    try:
        c = login(srv.port)
        for _, mine, _ in FOLDERS:
            uidvalidity, msgs = folder_state(c, mine)
            w_uidvalidity, w_msgs = want[mine]
            assert uidvalidity == w_uidvalidity, mine
            assert sorted(msgs) == sorted(w_msgs), mine  # the same UIDs, none more
            bad = [u for u in w_msgs if msgs[u] != w_msgs[u]]
            assert not bad, (mine, [(u, msgs[u], w_msgs[u]) for u in bad[:3]])
        if subs is not None:
            mapped = {s.replace(".", "/") for s in subs}
            assert mapped <= subscriptions(c)
        typ, data_ = c.list('""', '"Sent"')
        assert typ == "OK" and b"\\Sent" in data_[0]
        c.logout()
    finally:
        srv.stop()


def sessions(dv):
    """From Dovecot's log: how many IMAP logins of USER, and the bodies fetched by
    each session that ended ([body_count], oldest first)."""
    text = (dv.dir / "dovecot.log").read_text(errors="replace")
    logins = len(re.findall(r"imap-login: Info: Login: user=<%s>" % USER, text))
    ended = [int(n) for n in re.findall(r"imap\(%s\).*Disconnected: .*body_count=(\d+)" % USER, text)]
    return logins, ended


def settled(dv, at_least=0):
    """Wait until every session that logged in has ended (Dovecot writes its log a
    moment later) and at least at_least have; returns the body counts."""
    deadline = time.monotonic() + 10
    while True:
        logins, ended = sessions(dv)
        if logins == len(ended) >= at_least:
            return ended
        assert time.monotonic() < deadline, (logins, ended)
        time.sleep(0.05)


def count_files(data):
    n = 0
    for d, _, files in os.walk(data / "mail" / USER):
        if os.path.basename(d) == "cur":
            n += len(files)
    return n


# ---- the tests -------------------------------------------------------------------------

def test_import_from_dovecot_keeps_everything(source, data, tmp_path, mailroom_bin):
    dv, want, subs = source
    add_user(data, USER, PASSWORD)
    pw = password_file(tmp_path)
    url = "imap://%s@127.0.0.1:%d" % (USER, dv.imap_port)
    t0 = time.monotonic()
    before = len(settled(dv))
    p = run(import_cmd(data, url, pw), timeout=300)
    took = time.monotonic() - t0
    assert p.returncode == 0, p.stdout + p.stderr
    imported, folders, already, skipped = summary(p.stdout)
    assert (imported, already, skipped) == (TOTAL, 0, 0), p.stdout
    assert folders >= len(FOLDERS)
    assert settled(dv, before + 1)[before:] == [TOTAL]  # each body once
    print("first run: %d messages in %.1f s (%.0f messages/s)" % (TOTAL, took, TOTAL / took))
    check_mailroom(data, want, subs)

    # the source is left as it was (EXAMINE, BODY.PEEK[]: not even \Seen set)
    c = login(dv.imap_port)
    for theirs, mine, _ in FOLDERS:
        c.select('"%s"' % theirs, readonly=True)
        typ, lines = c.uid("FETCH", "1:*", "(UID FLAGS)")
        flags = {}
        for line in lines:
            m = re.search(rb"UID (\d+) FLAGS \(([^)]*)\)", line)
            flags[int(m.group(1))] = frozenset(f for f in m.group(2).decode().split() if f != "\\Recent")
        assert flags == {u: v[0] for u, v in want[mine][1].items()}, theirs
        c.close()
    c.logout()

    # a second run adds nothing, and downloads no body again
    before = len(settled(dv))
    p = run(import_cmd(data, url, pw), timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert summary(p.stdout)[0::2] == (0, TOTAL), p.stdout
    assert settled(dv, before + 1)[before:] == [0]
    assert count_files(data) == TOTAL
    check_mailroom(data, want)


def test_interrupted_import_then_rerun(source, data, tmp_path, mailroom_bin):
    dv, want, _ = source
    add_user(data, USER, PASSWORD)
    pw = password_file(tmp_path)
    url = "imap://%s@127.0.0.1:%d" % (USER, dv.imap_port)
    p = subprocess.Popen([mailroom_bin] + import_cmd(data, url, pw), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    seen = 0
    while time.monotonic() < deadline and p.poll() is None:
        seen = count_files(data) if (data / "mail" / USER).exists() else 0
        if seen >= 300:
            break
        time.sleep(0.02)
    assert p.poll() is None, "the import ended before it could be interrupted"
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert 300 <= seen < TOTAL
    before = count_files(data)
    assert before < TOTAL

    n = len(settled(dv))
    p = run(import_cmd(data, url, pw), timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    imported, _, already, skipped = summary(p.stdout)
    assert imported + already == TOTAL and skipped == 0, p.stdout
    assert imported >= TOTAL - before  # what was missing came now
    assert settled(dv, n + 1)[n:] == [imported]  # and only that was downloaded
    assert count_files(data) == TOTAL  # and nothing twice
    check_mailroom(data, want)


def test_wrong_password_is_a_clear_error(source, data, tmp_path, mailroom_bin):
    dv, _, _ = source
    pw = password_file(tmp_path, "not the password")
    p = run(import_cmd(data, "imap://%s@127.0.0.1:%d" % (USER, dv.imap_port), pw), timeout=120)
    assert 64 <= p.returncode <= 78, (p.returncode, p.stderr)  # sysexits.h
    assert "refused the login of %s: wrong user name or password" % USER in p.stderr, p.stderr
    assert not (data / "mail" / USER).exists() or count_files(data) == 0

    # an option that is not one: a usage error
    p = run(import_cmd(data, "imap://%s@127.0.0.1:%d?tls-verify=maybe" % (USER, dv.imap_port), pw))
    assert p.returncode == 64, (p.returncode, p.stderr)

    # and a server that is not there: temporary (EX_TEMPFAIL), said so
    p = run(import_cmd(data, "imap://%s@127.0.0.1:%d" % (USER, free_port()), pw), timeout=120)
    assert p.returncode == 75, (p.returncode, p.stderr)
    assert "Connection refused" in p.stderr


# ---- TLS -------------------------------------------------------------------------------

def make_cert(d, san):
    key, cert = d / ("key-%s.pem" % san.replace(":", "_")), d / ("cert-%s.pem" % san.replace(":", "_"))
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=mailroom test", "-addext", "subjectAltName=" + san,
                        "-keyout", str(key), "-out", str(cert)], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    os.chmod(key, 0o644)  # dovecot's config reader
    return key, cert


@pytest.mark.parametrize("san", ["IP:127.0.0.1", "DNS:other.example"])
def test_imaps_self_signed(tmp_path, data, mailroom_bin, san):
    key, cert = make_cert(tmp_path, san)
    os.chmod(tmp_path, 0o755)
    imaps_port = free_port()
    dv = DovecotServer(users={USER: PASSWORD}, extra_conf="""
ssl = yes
ssl_cert = <%s
ssl_key = <%s
service imap-login {
  inet_listener imaps {
    address = 127.0.0.1
    port = %d
  }
}
""" % (cert, key, imaps_port))
    dv.start()
    try:
        rng = random.Random(5)
        c = login(dv.imap_port)
        msgs = [make_message(7, rng)] + [make_message(i, rng) for i in range(20, 29)]
        if san.startswith("IP:"):
            msgs.append(b"Subject: big\r\n\r\n" + (b"z" * 98 + b"\r\n") * 500000)
        for m in msgs:
            assert c.append("INBOX", "(\\Seen kw)", internaldate(rng), m)[0] == "OK"
        want = {"INBOX": folder_state(c, "INBOX")}
        c.logout()
        add_user(data, USER, PASSWORD)
        pw = password_file(tmp_path)
        url = "imaps://%s@127.0.0.1:%d" % (USER, imaps_port)

        # verified against the system's CAs: refused, nothing imported
        p = run(import_cmd(data, url, pw), timeout=120)
        assert p.returncode != 0 and "certificate refused" in p.stderr, p.stdout + p.stderr
        assert summary(p.stdout)[0] == 0
        # the same over imap:// (STARTTLS is offered, so it is used and verified)
        p = run(import_cmd(data, "imap://%s@127.0.0.1:%d" % (USER, dv.imap_port), pw), timeout=120)
        assert p.returncode != 0 and "certificate refused" in p.stderr, p.stdout + p.stderr

        # trusted (SSL_CERT_FILE): accepted if it names the address we connect to
        env = dict(os.environ, SSL_CERT_FILE=str(cert))
        if san.startswith("IP:"):
            # with a 50 MB message, streamed: the importer's memory stays small. Its
            # peak RSS by GNU time (Debian's package "time"): a child of this big
            # Python process would inherit its high-water mark across exec.
            assert os.access("/usr/bin/time", os.X_OK), "/usr/bin/time (package time) is missing"
            rss = tmp_path / "rss"
            p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(rss), MAILROOM]
                               + import_cmd(data, url, pw), env=env, capture_output=True, text=True,
                               timeout=120)
            assert p.returncode == 0, p.stdout + p.stderr
            assert summary(p.stdout)[0] == len(msgs)
            peak_kb = int(rss.read_text().split()[-1])
            print("imaps: %d messages (%d MB) imported, peak RSS of the importer %d MB"
                  % (len(msgs), sum(map(len, msgs)) >> 20, peak_kb >> 10))
            assert peak_kb < 40 * 1024, peak_kb
        else:
            assert p.returncode != 0 and "certificate refused" in p.stderr, p.stdout + p.stderr

            # verification off: imported
            p = run(import_cmd(data, url + "?tls-verify=no", pw), timeout=120)
            assert p.returncode == 0, p.stdout + p.stderr
            assert summary(p.stdout)[0] == len(msgs)
        # Dovecot logged the import's login as over TLS (its log process may lag a little)
        deadline = time.monotonic() + 10
        while not re.search(r"imap-login: Info: Login: user=<%s>.*, TLS," % USER, dv.log()):
            assert time.monotonic() < deadline, dv.log()
            time.sleep(0.1)

        srv = imap_server.start(data)
        try:
            c = login(srv.port)
            assert folder_state(c, "INBOX") == want["INBOX"]
            c.logout()
        finally:
            srv.stop()
    finally:
        dv.cleanup()


def test_namespace_prefix_and_odd_names(tmp_path, data, mailroom_bin):
    """A server whose personal namespace has a prefix (Courier's and Cyrus's
    "INBOX."): the prefix is not part of mailroom's names; a name with a quote
    and one with a space go through EXAMINE quoted, Dovecot's literal-free
    answers notwithstanding."""
    dv = DovecotServer(users={USER: PASSWORD}, extra_conf="""
namespace inbox {
  inbox = yes
  prefix = INBOX.
  separator = .
}
""")
    dv.start()
    try:
        names = {"INBOX": "INBOX", "INBOX.Work.Sub": "Work/Sub", 'INBOX.Quo"te': 'Quo"te',
                 "INBOX.Two words": "Two words"}
        c = login(dv.imap_port)
        rng = random.Random(9)
        for k, box in enumerate(names):
            if box != "INBOX":
                assert c.create('"%s"' % box.replace('"', '\\"'))[0] == "OK", box
            for i in range(3):
                assert c.append('"%s"' % box.replace('"', '\\"'), "(\\Flagged)", internaldate(rng),
                                make_message(100 * k + i, rng))[0] == "OK"
        want = {mine: folder_state(c, theirs.replace('"', '\\"')) for theirs, mine in names.items()}
        c.logout()
        add_user(data, USER, PASSWORD)
        pw = password_file(tmp_path)
        p = run(import_cmd(data, "imap://%s@127.0.0.1:%d" % (USER, dv.imap_port), pw))
        assert p.returncode == 0, p.stdout + p.stderr
        assert summary(p.stdout)[0::2] == (3 * len(names), 0), p.stdout
        srv = imap_server.start(data)
        try:
            c = login(srv.port)
            for mine, w in want.items():
                assert folder_state(c, mine.replace('"', '\\"')) == w, mine
            typ, lines = c.list('""', '"*"')
            assert not [l for l in lines if b"INBOX/" in l], lines
            c.logout()
        finally:
            srv.stop()
    finally:
        dv.cleanup()
