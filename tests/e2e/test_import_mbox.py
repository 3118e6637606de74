"""`mailroom import USER mbox:PATH` end to end (issue 12, Must show 2, mbox).

- An mbox as UW-IMAP writes it (the "FOLDER INTERNAL DATA" pseudo message
  with X-IMAP, X-UID, Status/X-Status/X-Keywords, mboxo ">From " quoting):
  UIDVALIDITY and UIDs kept, flags and keywords, INTERNALDATE from the From_
  line, every body byte-identical (as CRLF) over IMAP, the pseudo message not
  imported, a second import adds nothing.
- An mbox written by Python's mailbox.mbox (no UW headers): every message
  once, in order, UIDs 1..n, \\Seen/\\Answered/\\Flagged from Status/X-Status,
  a second import adds nothing, and fetchmail (POP3, keep, uidl) sees each
  message exactly once across the re-import.
- A folder of mbox files: one folder each, subfolders as children, the
  mUTF-7 file name decoded, UW's .mailboxlist as subscriptions, a non-mbox
  file reported.
- A real Dovecot 2.3 serving mbox (mail_location = mbox:), synced by mbsync:
  after the import mbsync downloads nothing again, the flags agree, and the
  POP3 UIDLs are Dovecot's.

Expected values come from the messages the test writes, never from mailroom.
Components (Dovecot, mbsync, fetchmail) are installed if missing; the test
fails if they cannot be.
"""

import datetime
import mailbox
import os
import poplib
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import imap_server  # noqa: E402
from conftest import add_user, deliver, run, wire  # noqa: E402
from dovecot_server import DovecotServer  # noqa: E402

import imaplib  # noqa: E402

_SUMMARY = re.compile(r"imported (\d+) messages .* in (\d+) folders, (\d+) already there, (\d+) skipped")


def _apt_install(pkg):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", pkg]
    if subprocess.run(cmd, env=env, capture_output=True, timeout=900).returncode == 0:
        return
    subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
    subprocess.run(cmd, env=env, capture_output=True, timeout=900)


def _tool(name, pkg):
    if shutil.which(name) is None and os.geteuid() == 0:
        _apt_install(pkg)
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} ({pkg}) is not installed and cannot be installed")
    return path


def do_import(data, user, source):
    """`mailroom import`; asserts exit 0; (imported, folders, already, skipped, output)."""
    p = run(["import", "-d", data, user, source], timeout=300)
    out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    assert p.returncode == 0, out
    m = _SUMMARY.search(out)
    assert m, out
    return tuple(int(x) for x in m.groups()) + (out,)


_ITEM = re.compile(rb"UID (\d+)|FLAGS \(([^)]*)\)|INTERNALDATE \"([^\"]+)\"|RFC822\.SIZE (\d+)")


def mailbox_view(port, user, password, box="INBOX"):
    """(UIDVALIDITY, UIDNEXT, {uid: (flags, internaldate, size, body)}) as imaplib
    sees them; flags without \\Recent, internaldate in seconds since the epoch."""
    m = imaplib.IMAP4("127.0.0.1", port)
    try:
        m.login(user, password)
        typ, st = m.status(_q(box), "(UIDNEXT UIDVALIDITY)")
        assert typ == "OK", st
        uidnext = int(re.search(rb"UIDNEXT (\d+)", st[0]).group(1))
        uidvalidity = int(re.search(rb"UIDVALIDITY (\d+)", st[0]).group(1))
        typ, _ = m.select(_q(box), readonly=True)
        assert typ == "OK"
        typ, resp = m.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
        assert typ == "OK", resp
        msgs = {}
        for item in resp:
            if not isinstance(item, tuple):
                continue
            head, body = item
            uid = flags = date = size = None
            for g in _ITEM.finditer(head):
                if g.group(1):
                    uid = int(g.group(1))
                elif g.group(2) is not None:
                    flags = frozenset(g.group(2).decode().split()) - {"\\Recent"}
                elif g.group(3):
                    date = int(datetime.datetime.strptime(g.group(3).decode().strip(),
                                                          "%d-%b-%Y %H:%M:%S %z").timestamp())
                elif g.group(4):
                    size = int(g.group(4))
            msgs[uid] = (flags, date, size, body)
        # a server may send FLAGS after the literal: fetch them on their own
        typ, resp = m.uid("FETCH", "1:*", "(UID FLAGS)")
        for line in resp:
            if isinstance(line, bytes) and b"UID" in line:
                uid = int(re.search(rb"UID (\d+)", line).group(1))
                flags = frozenset(re.search(rb"FLAGS \(([^)]*)\)", line).group(1).decode().split())
                f, d, s, b = msgs[uid]
                msgs[uid] = (flags - {"\\Recent"}, d, s, b)
        m.logout()
        return uidvalidity, uidnext, msgs
    finally:
        try:
            m.shutdown()
        except OSError:
            pass


def _q(box):
    return '"' + box.replace("\\", "\\\\").replace('"', '\\"') + '"'


def epoch(y, mo, d, h, mi, s):
    return int(datetime.datetime(y, mo, d, h, mi, s, tzinfo=datetime.timezone.utc).timestamp())


def asctime(t):
    """The From_ line date, as ctime(3) writes it (UTC)."""
    return time.asctime(time.gmtime(t))


def quote_mboxo(body):
    """mboxo quoting as UW-IMAP, mutt and Python write it: ^From  -> >From ."""
    return re.sub(rb"(?m)^From ", b">From ", body)


# ---- UW-IMAP --------------------------------------------------------------------

UW_VALIDITY = 1704877200
UW_LAST = 42

UW_PSEUDO = (
    b"From MAILER-DAEMON Wed Jan 10 09:00:00 2024\n"
    b"Date: Wed, 10 Jan 2024 09:00:00 +0000\n"
    b"From: Mail System Internal Data <MAILER-DAEMON@uw.example.org>\n"
    b"Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\n"
    b"Message-ID: <1704877200@uw.example.org>\n"
    b"X-IMAP: 1704877200 0000000042 Junk Project\n"
    b"Status: RO\n"
    b"\n"
    b"This text is part of the internal format of your mail folder, and is not\n"
    b"a real message.  It is created automatically by the mail system software.\n"
    b"If deleted, important folder data will be lost, and it will be re-created\n"
    b"with the data reset to initial values.\n"
    b"\n")


def _orig(n, subject, body):
    return (b"Return-Path: <sender%d@example.org>\n"
            b"From: Sender %d <sender%d@example.org>\n"
            b"To: alice@example.org\n"
            b"Subject: %s\n"
            b"Date: Mon, 1 Jan 2024 10:00:00 +0000\n"
            b"Message-ID: <uw%d@example.org>\n"
            b"\n" % (n, n, n, subject, n)) + body


# (original message, From_ date, Status, X-Status, X-Keywords, X-UID, IMAP flags)
UW_MSGS = [
    (_orig(1, b"seen", b"first\n"), epoch(2024, 1, 1, 10, 0, 0), b"RO", b"", b"", 3, {"\\Seen"}),
    (_orig(2, b"answered and flagged",
           b"Hi,\n\nFrom the start of a line, UW quoted this.\n\n\ntwo empty lines above\n"),
     epoch(2024, 1, 2, 11, 30, 15), b"RO", b"AF", b"Junk Project", 7,
     {"\\Seen", "\\Answered", "\\Flagged", "Junk", "Project"}),
    (_orig(3, b"draft", b"draft text\n"), epoch(2024, 1, 3, 12, 0, 0), b"O", b"T", b"", 9, {"\\Draft"}),
    (_orig(4, b"deleted, with a From_ line in the body",
           b"quoted mail:\n\nFrom bob@example.org Mon Jan  1 10:00:00 2024\nSubject: inner\n"),
     epoch(2024, 2, 29, 23, 59, 59), b"RO", b"D", b"Project", 12, {"\\Seen", "\\Deleted", "Project"}),
]
# Delivered by the MDA after UW last rewrote the file: no status headers.
UW_NEW = _orig(5, b"new since", b"not yet seen by UW\n")
UW_NEW_DATE = epoch(2024, 3, 1, 8, 0, 0)


def uw_mbox():
    """The mbox as UW-IMAP's unix driver leaves it: the pseudo message, then
    each message with its status headers at the end of the header."""
    out = UW_PSEUDO
    for orig, date, status, xstatus, kw, uid, _ in UW_MSGS:
        head, body = orig.split(b"\n\n", 1)
        out += (b"From sender@example.org " + asctime(date).encode() + b"\n" + head + b"\n"
                + b"Status: " + status + b"\nX-Status: " + xstatus + b"\nX-Keywords: " + kw
                + b"\nX-UID: %d\n\n" % uid + quote_mboxo(body) + b"\n")
    head, body = UW_NEW.split(b"\n\n", 1)
    out += (b"From sender5@example.org " + asctime(UW_NEW_DATE).encode() + b"\n" + head + b"\n\n"
            + quote_mboxo(body) + b"\n")
    return out


def test_uw_imap_mbox(data, tmp_path):
    add_user(data, "alice", "pw")
    src = tmp_path / "INBOX.mbox"
    src.write_bytes(uw_mbox())
    imported, folders, already, skipped, out = do_import(data, "alice", f"mbox:{src}")
    assert (imported, folders, already, skipped) == (len(UW_MSGS) + 1, 1, 0, 0), out

    srv = imap_server.start(data)
    try:
        uidvalidity, uidnext, msgs = mailbox_view(srv.port, "alice", "pw")
        assert uidvalidity == UW_VALIDITY
        # the new message got UIDLAST + 1, as UW-IMAP would have given it
        assert sorted(msgs) == [m[5] for m in UW_MSGS] + [UW_LAST + 1]
        assert uidnext == UW_LAST + 2
        for orig, date, _, _, _, uid, flags in UW_MSGS:
            got_flags, got_date, size, body = msgs[uid]
            assert got_flags == flags, (uid, got_flags)
            assert got_date == date, (uid, got_date, date)
            assert body == wire(orig), (uid, body)
            assert size == len(wire(orig))
        got_flags, got_date, size, body = msgs[UW_LAST + 1]
        assert (got_flags, got_date, body) == (frozenset(), UW_NEW_DATE, wire(UW_NEW))
        assert not any(b"FOLDER INTERNAL DATA" in m[3] for m in msgs.values())
        before = (uidvalidity, uidnext, msgs)
    finally:
        srv.stop()

    # a second run (an interrupted import run again) adds nothing
    imported, folders, already, skipped, out = do_import(data, "alice", f"mbox:{src}")
    assert (imported, already) == (0, len(UW_MSGS) + 1), out
    srv = imap_server.start(data)
    try:
        assert mailbox_view(srv.port, "alice", "pw") == before
    finally:
        srv.stop()


# ---- an mbox without UW headers: Python's mailbox.mbox ------------------------------

PY_MSGS = [
    # (original, Python mbox flags, IMAP flags)
    (b"From: a@example.org\nTo: alice@example.org\nSubject: plain\n"
     b"Message-ID: <py1@example.org>\n\nhello\n", "RO", {"\\Seen"}),
    (b"From: b@example.org\nTo: alice@example.org\nSubject: from lines\n"
     b"Message-ID: <py2@example.org>\n\nFrom here on\n\nFrom b@example.org Mon Jan  1 10:00:00 2024\n"
     b"trailing\n", "O", set()),
    (b"From: c@example.org\nTo: alice@example.org\nSubject: answered\n"
     b"Message-ID: <py3@example.org>\n\nreplied\n\n", "RA", {"\\Seen", "\\Answered"}),
    (b"From: d@example.org\nTo: alice@example.org\nSubject: flagged\n"
     b"Message-ID: <py4@example.org>\n\n" + b"".join(b"line %05d\n" % i for i in range(3000)),
     "F", {"\\Flagged"}),
    (b"From: e@example.org\nTo: alice@example.org\nSubject: last\n"
     b"Message-ID: <py5@example.org>\n\nno flags\n", "", set()),
]
PY_BASE = epoch(2023, 12, 24, 18, 0, 0)


def python_mbox(path):
    mb = mailbox.mbox(str(path))
    mb.lock()
    for i, (orig, flags, _) in enumerate(PY_MSGS):
        msg = mailbox.mboxMessage(orig)
        msg.set_from(f"sender{i}@example.org", time.gmtime(PY_BASE + 3600 * i))
        if flags:
            msg.set_flags(flags)
        mb.add(msg)
    mb.flush()
    mb.unlock()
    mb.close()
    raw = Path(path).read_bytes()
    assert raw.count(b"\nFrom sender") == len(PY_MSGS) - 1  # as Python wrote it
    assert b"\n>From here on\n" in raw


def fetchmail_keep(fm, home, port, out):
    """fetchmail, POP3, keep, uidl; the MDA appends to out. Returns its exit code."""
    rc = home / "fetchmailrc"
    rc.write_text(f'poll 127.0.0.1 service {port} protocol POP3 uidl user "alice" password "pw" '
                  f"sslproto '' options keep norewrite mda \"cat >> {out}\"\n")
    os.chmod(rc, 0o600)
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    p = subprocess.run([fm, "-f", str(rc), "--nodetach", "-v", "-i", str(home / "fetchids"),
                        "--pidfile", str(home / "fetchmail.pid")],
                       env=env, capture_output=True, text=True, timeout=180)
    assert p.returncode in (0, 1), p.stdout[-3000:] + p.stderr[-3000:]
    return p.returncode


def _count_msgids(out):
    data = Path(out).read_bytes() if Path(out).exists() else b""
    return re.findall(rb"(?im)^Message-ID: (<[^>]+>)", data)


def test_python_mbox_and_fetchmail(data, tmp_path):
    fm = _tool("fetchmail", "fetchmail")
    add_user(data, "alice", "pw")
    src = tmp_path / "python.mbox"
    python_mbox(src)
    imported, folders, already, skipped, out = do_import(data, "alice", f"mbox:{src}")
    assert (imported, folders, skipped) == (len(PY_MSGS), 1, 0), out

    home = tmp_path / "home"
    home.mkdir()
    got = home / "fetched"
    srv = imap_server.start(data, protocols=("imap", "pop3"))
    try:
        _, uidnext, msgs = mailbox_view(srv.port, "alice", "pw")
        assert sorted(msgs) == list(range(1, len(PY_MSGS) + 1))  # every message once, in order
        assert uidnext == len(PY_MSGS) + 1
        for uid, (orig, _, flags) in enumerate(PY_MSGS, 1):
            got_flags, date, size, body = msgs[uid]
            assert body == wire(orig), (uid, body[:300])
            assert got_flags == flags, (uid, got_flags)
            assert date == PY_BASE + 3600 * (uid - 1)
        assert fetchmail_keep(fm, home, srv.ports["pop3"], got) == 0
        assert _count_msgids(got) == [re.search(rb"<py\d@example.org>", m[0]).group(0)
                                      for m in PY_MSGS]
        before = mailbox_view(srv.port, "alice", "pw")
    finally:
        srv.stop()

    # the same mbox again: nothing added (Message-ID, size and date match)
    imported, folders, already, skipped, out = do_import(data, "alice", f"mbox:{src}")
    assert (imported, already) == (0, len(PY_MSGS)), out
    srv = imap_server.start(data, protocols=("imap", "pop3"))
    try:
        assert mailbox_view(srv.port, "alice", "pw") == before
        # fetchmail with its UIDL list: nothing new (exit 1: no mail)
        assert fetchmail_keep(fm, home, srv.ports["pop3"], got) == 1
        assert len(_count_msgids(got)) == len(PY_MSGS)
        # and a message delivered now is fetched, once
        p = deliver(data, "alice", b"From: z@example.org\nSubject: after\nMessage-ID: <after@x>\n\nz\n")
        assert p.returncode == 0, p.stderr
        assert fetchmail_keep(fm, home, srv.ports["pop3"], got) == 0
        assert fetchmail_keep(fm, home, srv.ports["pop3"], got) == 1
        assert len(_count_msgids(got)) == len(PY_MSGS) + 1
    finally:
        srv.stop()


# ---- a folder of mbox files --------------------------------------------------------------

def _one(n):
    return (b"From: f@example.org\nSubject: folder message %d\nMessage-ID: <f%d@example.org>\n\nbody %d\n"
            % (n, n, n))


def _mbox_of(msgs, date=epoch(2024, 5, 1, 12, 0, 0)):
    return b"".join(b"From f@example.org " + asctime(date).encode() + b"\n" + quote_mboxo(m) + b"\n"
                    for m in msgs)


def test_folder_of_mboxes(data, tmp_path):
    add_user(data, "alice", "pw")
    mail = tmp_path / "mail"
    (mail / "Work").mkdir(parents=True)
    (mail / "inbox").write_bytes(_mbox_of([_one(1), _one(2)]))
    (mail / "Work" / "2024").write_bytes(_mbox_of([_one(3)]))
    (mail / "Work" / "Old").write_bytes(b"")  # UW-IMAP makes new folders as empty files
    (mail / "Entw&APw-rfe").write_bytes(_mbox_of([_one(4), _one(5), _one(6)]))
    (mail / "notes.txt").write_bytes(b"not mail\n")
    (mail / ".mailboxlist").write_bytes(b"Work/2024\nEntw&APw-rfe\n")
    imported, folders, already, skipped, out = do_import(data, "alice", f"mbox:{mail}")
    assert (imported, folders) == (6, 4), out
    assert re.search(r"notes\.txt.*not an mbox", out), out

    srv = imap_server.start(data)
    try:
        m = imaplib.IMAP4("127.0.0.1", srv.port)
        m.login("alice", "pw")
        typ, lines = m.list()
        assert typ == "OK"
        names = {re.search(rb'"([^"]*)"$|(\S+)$', line).group(1) or
                 re.search(rb"(\S+)$", line).group(1) for line in lines}
        assert {b"INBOX", b"Work/2024", b"Work/Old", b"Entw&APw-rfe"} <= names, lines
        want = {"INBOX": 2, "Work/2024": 1, "Work/Old": 0, "Entw&APw-rfe": 3}
        for box, n in want.items():
            typ, st = m.status(_q(box), "(MESSAGES)")
            assert typ == "OK" and int(re.search(rb"MESSAGES (\d+)", st[0]).group(1)) == n, (box, st)
        typ, lines = m.lsub()
        subs = {re.search(rb'"?([^" ]+)"?$', line).group(1) for line in lines}
        # the user's own (a new user's special-use folders) and .mailboxlist's
        assert {b"Work/2024", b"Entw&APw-rfe"} <= subs and b"Work/Old" not in subs, lines
        m.select(_q("Entw&APw-rfe"), readonly=True)
        typ, resp = m.uid("FETCH", "1:*", "(BODY.PEEK[])")
        assert [x[1] for x in resp if isinstance(x, tuple)] == [wire(_one(n)) for n in (4, 5, 6)]
        m.logout()
    finally:
        srv.stop()


# ---- from a real Dovecot serving mbox, synced by mbsync -----------------------------------

DV_INBOX = [
    b"From: d%d@example.org\nTo: alice@example.org\nSubject: dovecot %d\n"
    b"Message-ID: <dv%d@example.org>\n\nbody %d\n" % (i, i, i, i) for i in range(6)
]
DV_WORK = [
    b"From: w%d@example.org\nSubject: work %d\nMessage-ID: <dvw%d@example.org>\n\nwork %d\n" % (i, i, i, i)
    for i in range(3)
]


def _mbsyncrc(path, near, port):
    path.write_text(f"""IMAPAccount srv
Host 127.0.0.1
Port {port}
User alice
Pass pw
SSLType None
AuthMechs LOGIN

IMAPStore far
Account srv

MaildirStore near
Path {near}/
Inbox {near}/INBOX
SubFolders Verbatim

Channel ch
Far :far:
Near :near:
Patterns *
Create Near
Expunge None
Sync All
SyncState *
""")


def _mbsync(mbsync, rc):
    p = subprocess.run([mbsync, "-V", "-c", str(rc), "ch"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return p


def _local_files(near):
    """{folder: sorted [(Message-ID, maildir flags)]} of mbsync's local copy."""
    out = {}
    for box in sorted(p for p in Path(near).iterdir() if p.is_dir()):
        files = []
        for sub in ("new", "cur"):
            for f in sorted((box / sub).iterdir()) if (box / sub).is_dir() else []:
                mid = re.search(rb"(?im)^Message-ID: (<[^>]+>)", f.read_bytes()).group(1)
                files.append((mid, f.name.rsplit(":2,", 1)[1] if ":2," in f.name else ""))
        out[box.name] = sorted(files)
    return out


def _pop3_uidls(port, password):
    p = poplib.POP3("127.0.0.1", port, timeout=30)
    try:
        p.user("alice")
        p.pass_(password)
        return [line.split()[1].decode() for line in p.uidl()[1]]
    finally:
        p.quit()


def test_from_dovecot_mbox_mbsync_sees_each_message_once(data, tmp_path):
    mbsync = _tool("mbsync", "isync")
    dv = DovecotServer(users={"alice": "pw"}, protocols=("imap", "pop3"),
                       extra_conf="mail_location = mbox:~/mail:INBOX=~/mail/inbox\n"
                                  "mbox_lazy_writes = no\n")
    try:
        home = dv.home("alice")
        (home / "mail").mkdir(parents=True)
        (home / "mail" / "inbox").write_bytes(_mbox_of(DV_INBOX, epoch(2024, 4, 1, 9, 0, 0)))
        (home / "mail" / "Work").write_bytes(_mbox_of(DV_WORK, epoch(2024, 4, 2, 9, 0, 0)))
        subprocess.run(["chown", "-R", f"{dv.mail_user}:{dv.mail_group}", str(dv.dir / "mail")],
                       check=True)
        dv.start()
        # flags, keywords and an APPEND (Dovecot stores its "From " line
        # unquoted under Content-Length) through Dovecot
        m = imaplib.IMAP4("127.0.0.1", dv.imap_port)
        m.login("alice", "pw")
        m.select("INBOX")
        m.uid("STORE", "1", "+FLAGS", "(\\Seen)")
        m.uid("STORE", "2", "+FLAGS", "(\\Flagged \\Answered $Label1)")
        m.append("INBOX", "(\\Seen)", imaplib.Time2Internaldate(epoch(2024, 4, 3, 9, 0, 0)),
                 b"From: x@example.org\r\nSubject: appended\r\nMessage-ID: <dvapp@example.org>\r\n\r\n"
                 b"text\r\n\r\nFrom x@example.org Mon Jan  1 10:00:00 2024\r\nstill the same message\r\n")
        m.subscribe("Work")
        m.logout()
        dovecot_view = {box: mailbox_view(dv.imap_port, "alice", "pw", box) for box in ("INBOX", "Work")}
        dovecot_uidls = _pop3_uidls(dv.pop3_port, "pw")

        near = tmp_path / "near"
        near.mkdir()
        rc = tmp_path / "mbsyncrc"
        _mbsyncrc(rc, near, dv.imap_port)
        _mbsync(mbsync, rc)
        local = _local_files(near)
        assert len(local["INBOX"]) == len(DV_INBOX) + 1 and len(local["Work"]) == len(DV_WORK), local
    finally:
        dv.stop()

    try:
        add_user(data, "alice", "pw")
        imported, folders, already, skipped, out = do_import(data, "alice", f"mbox:{home / 'mail'}")
        assert (imported, folders, skipped) == (len(DV_INBOX) + 1 + len(DV_WORK), 2, 0), out
        srv = imap_server.start(data, protocols=("imap", "pop3"))
        try:
            for box in ("INBOX", "Work"):
                assert mailbox_view(srv.port, "alice", "pw", box) == dovecot_view[box], box
            # Dovecot's UIDLs ("%08Xu%08Xv": UID and UIDVALIDITY in lowercase
            # hex) are kept exactly: fetchmail compares them as strings
            assert _pop3_uidls(srv.ports["pop3"], "pw") == dovecot_uidls
            _mbsyncrc(rc, near, srv.port)
            time.sleep(1.1)  # mbsync skips maildirs changed within the last second
            p = _mbsync(mbsync, rc)
            after = _local_files(near)
            # nothing downloaded again, no duplicate, the same flags; the new
            # user's empty special-use folders come along empty
            assert {box: after[box] for box in local} == local, p.stdout[-2000:]
            assert all(not files for box, files in after.items() if box not in local), after
            m = imaplib.IMAP4("127.0.0.1", srv.port)
            m.login("alice", "pw")
            typ, lines = m.lsub()
            subs = {re.search(rb"(\S+)$", line).group(1).strip(b'"') for line in lines}
            assert b"Work" in subs, lines  # Dovecot's .subscriptions
            m.logout()
        finally:
            srv.stop()
    finally:
        dv.cleanup()
