"""Isolation between users: alice, logged in over IMAP or POP3 or named as an
LMTP recipient, never reads bob's mail and never writes into bob's folder.

DESIGN.md: "a session holds a directory fd for its user's root; every path
is opened beneath it (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, with a
careful fallback elsewhere), so no mailbox name can reach another user's
files". Tried here:
  * mailbox names that climb out (../bob, .., INBOX/../../bob, absolute
    paths, %2e%2e, modified UTF-7 spellings of '.' and '/', NUL/CR/LF in a
    literal, very long and very deep names) with every command that takes
    a name: each gets a tagged NO or BAD, LIST shows none of bob's names;
  * user names that climb (LOGIN, AUTHENTICATE PLAIN with bob as the
    authorization identity, POP3 USER/PASS, LMTP RCPT TO and +detail);
  * a symlink planted in alice's folder: a mailbox folder that is a link to
    bob's INBOX, INBOX itself a link, cur/ a link, a message file in cur/ or
    new/ that is a link to bob's message, mailroom-box a link, index.sqlite a
    link to bob's index.
Every case ends with: no byte of bob's messages (each carries SECRET) in
anything the server sent alice, and every file under DATA/mail/bob the same
(name, type, SHA-256) as before the server started.

`make e2e-no-openat2` runs this file again with MAILROOM_TEST_NO_OPENAT2=1,
which makes src/lib/fsx.c use its component-by-component walk (kernels
without openat2); test_openat2_switch checks that the switch works.
"""
import base64
import hashlib
import os
import poplib
import shutil
import socket
import subprocess

import pytest

import imap_server
from conftest import add_user, cur_files, deliver, make_message, run

SECRET = "BOBSECRET7f3a"  # in the Message-ID, subject and body of each of bob's messages
ALICE_BOXES = {"INBOX", "Box", "Archive", "Drafts", "Junk", "Sent", "Trash"}
PW = {"alice": "alicepw", "bob": "bobpw"}


# ---- the store ------------------------------------------------------------------

@pytest.fixture
def store(data):
    for u, pw in PW.items():
        add_user(data, u, pw)
    for i in (1, 2):
        assert deliver(data, "bob", make_message(f"{SECRET}-{i}")).returncode == 0
    assert run(["mailbox", "create", "-d", data, "bob", "Private"]).returncode == 0
    assert deliver(data, "bob", make_message(f"{SECRET}-3"), mailbox="Private").returncode == 0
    assert deliver(data, "alice", make_message("alice-1")).returncode == 0
    assert run(["mailbox", "create", "-d", data, "alice", "Box"]).returncode == 0
    assert deliver(data, "alice", make_message("alice-box"), mailbox="Box").returncode == 0
    return data


def tree(root):
    """{relative path: ('d',) | ('l', target) | ('f', sha256)} of everything
    under root, symlinks not followed."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = ("l", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("d",)
            else:
                with open(p, "rb") as f:
                    out[rel] = ("f", hashlib.sha256(f.read()).hexdigest())
    return out


def assert_same(before, after, who="bob"):
    added = sorted(set(after) - set(before))
    gone = sorted(set(before) - set(after))
    changed = sorted(k for k in before if k in after and before[k] != after[k])
    assert not (added or gone or changed), \
        f"{who}'s folder changed: added {added}, removed {gone}, changed {changed}"


class Rec(imap_server.Client):
    """imap_server.Client that keeps every byte the server sent."""

    def __init__(self, port):
        self.seen = b""
        super().__init__(port)

    def _fill(self):
        n = len(self.buf)
        super()._fill()
        self.seen += self.buf[n:]


def tagged_no_or_bad(c, text, literal=None):
    _untagged, tagged = c.cmd(text, literal=literal)
    assert tagged.startswith((b"NO", b"BAD")), f"{text!r}: {tagged!r}"
    return tagged


def list_names(c, ref, pattern):
    untagged, tagged = c.cmd(f"LIST {ref} {pattern}")
    names = set()
    for r in untagged:
        t = imap_server.parse(r)
        if len(t) >= 5 and t[1].upper() == "LIST":
            names.add(t[4].decode() if isinstance(t[4], bytes) else t[4])
    return tagged, names


# ---- mailbox names ---------------------------------------------------------------

CLIMBING = [
    "../bob", "..", "../bob/INBOX", "../../bob", "INBOX/../../bob", "INBOX/../../bob/INBOX",
    "Box/../../../bob/Private", "./INBOX", ".", "%2e%2e/bob", "%2E%2E", "..%2fbob",
    "/bob", "/", "//bob", "/etc/passwd", "/tmp", "bob//", "INBOX//x",
    # modified UTF-7 (RFC 3501 5.1.3): '.' is &AC4-, '/' is &AC8-; printable
    # ASCII must not be encoded, so these spell nothing a server may accept
    "&AC4ALg-/bob", "&AC4ALgAv-bob", "..&AC8-bob", "INBOX&AC8ALgAuAC8-bob", "&AC8-etc",
    "&-/..", "a" * 5000, "b" * 300, "x/" * 200 + "y",
]
LITERAL_NAMES = [b"..\x00/bob", b"INBOX\x00", b"INBOX\r\n../bob", b"../bob\r", b"\n..", b"a\nb"]


def _quote(name):
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def test_imap_mailbox_names_stay_inside(store):
    before = tree(store / "mail" / "bob")
    srv = imap_server.start(store)
    c = None
    try:
        c = Rec(srv.port)
        c.login("alice", PW["alice"])
        msg = b"Subject: alice writes\r\n\r\nALICE WAS HERE\r\n"
        for name in CLIMBING:
            q = _quote(name)
            for cmd in (f"SELECT {q}", f"EXAMINE {q}", f"CREATE {q}", f"DELETE {q}",
                        f"STATUS {q} (MESSAGES UIDNEXT)", f"RENAME {q} Stolen", f"RENAME Box {q}",
                        f"SUBSCRIBE {q}" if name.startswith(".") else None):
                if cmd:
                    tagged_no_or_bad(c, cmd)
            tagged_no_or_bad(c, f"APPEND {q} {{{len(msg)}}}", literal=msg + b"\r\n")
            c.ok("SELECT INBOX")
            tagged_no_or_bad(c, f"COPY 1 {q}")
            tagged_no_or_bad(c, f"MOVE 1 {q}")
            c.ok("UNSELECT")
            for ref, pat in (('""', q), (q, '"*"'), (q, '"%"')):
                tagged, names = list_names(c, ref, pat)
                assert names <= ALICE_BOXES, (ref, pat, tagged, names)
        for raw in LITERAL_NAMES:
            for cmd in ("SELECT", "CREATE", "DELETE"):
                tagged_no_or_bad(c, f"{cmd} {{{len(raw)}}}", literal=raw + b"\r\n")
            c.ok("NOOP")  # the connection goes on
        for ref, pat in (('""', '"*"'), ('"../"', '"*"'), ('""', '"../*"'), ('"/"', '"*"'),
                         ('"~bob/"', '"*"'), ('""', '"../bob/*"')):
            tagged, names = list_names(c, ref, pat)
            assert "Private" not in names and names <= ALICE_BOXES, (ref, pat, tagged, names)
        # alice's own mail is where it was: INBOX and Box, one message each
        for box in ("INBOX", "Box"):
            untagged = c.ok(f"STATUS {box} (MESSAGES)")
            assert b"(MESSAGES 1)" in untagged[0], (box, untagged)
        c.ok("LOGOUT")
    finally:
        if c:
            c.close()
        srv.stop()
    assert SECRET.encode() not in c.seen
    assert_same(before, tree(store / "mail" / "bob"))
    assert not (store / "mail" / "Stolen").exists() and sorted(os.listdir(store / "mail")) == ["alice", "bob"]


# ---- user names ------------------------------------------------------------------

CLIMBING_USERS = [("../bob", "bob"), ("bob/../alice", "alice"), ("alice/../bob", "bob"),
                  ("./bob", "bob"), ("/bob", "bob"), ("../mail/bob", "bob"), ("bob/", "bob"),
                  ("bob/INBOX", "bob"), ("alice/../../mail/bob", "bob"), ("..", "bob")]


def test_imap_login_names(store):
    before = tree(store / "mail" / "bob")
    srv = imap_server.start(store, extra_opts={"auth_max_failures": "1000"})
    try:
        for user, pw_of in CLIMBING_USERS:
            c = Rec(srv.port)
            try:
                t = tagged_no_or_bad(c, f"LOGIN {_quote(user)} {_quote(PW[pw_of])}")
                assert t.startswith(b"NO"), (user, t)
                # AUTHENTICATE PLAIN: authzid (bob's name in any spelling) with
                # alice's credentials must not give bob's mailbox
                for authz in ("bob", user):
                    blob = base64.b64encode(f"{authz}\0alice\0{PW['alice']}".encode()).decode()
                    tagged_no_or_bad(c, f"AUTHENTICATE PLAIN {blob}")
            finally:
                c.close()
            assert SECRET.encode() not in c.seen
    finally:
        srv.stop()
    assert_same(before, tree(store / "mail" / "bob"))


def test_pop3_user_names(store):
    before = tree(store / "mail" / "bob")
    srv = imap_server.start(store, protocols=("imap", "pop3"), extra_opts={"auth_max_failures": "1000"})
    try:
        for user, pw_of in CLIMBING_USERS:
            p = poplib.POP3("127.0.0.1", srv.ports["pop3"], timeout=20)
            try:
                try:
                    p.user(user)
                    r = p.pass_(PW[pw_of])
                except poplib.error_proto as e:
                    r = e.args[0]
                assert r.startswith(b"-ERR"), (user, r)
            finally:
                p.close()
        # alice herself: her one INBOX message, nothing of bob's
        p = poplib.POP3("127.0.0.1", srv.ports["pop3"], timeout=20)
        p.user("alice")
        p.pass_(PW["alice"])
        n = len(p.list()[1])
        got = b"\n".join(b"\n".join(p.retr(i + 1)[1]) for i in range(n))
        p.quit()
        assert n == 1 and b"alice-1@mailroom.test" in got and SECRET.encode() not in got
    finally:
        srv.stop()
    assert_same(before, tree(store / "mail" / "bob"))


class Lmtp:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.f = self.s.makefile("rb")
        self.reply()

    def reply(self):
        while True:
            line = self.f.readline().decode("utf-8", "replace").rstrip("\r\n")
            if line[3:4] != "-":
                return line

    def cmd(self, text):
        self.s.sendall(text.encode() + b"\r\n")
        return self.reply()

    def close(self):
        self.f.close()
        self.s.close()


def test_lmtp_recipients(store):
    """Climbing recipients are refused at RCPT with 550 (or another 5xx);
    a +detail that names a climbing mailbox may be refused or delivered to
    alice's INBOX (RFC 5233 leaves detail handling to the server), never
    anywhere else."""
    before = tree(store / "mail" / "bob")
    alice_before = len(cur_files(store, "alice"))
    srv = imap_server.start(store, protocols=("imap", "lmtp"))
    delivered = 0
    try:
        c = Lmtp(srv.ports["lmtp"])
        assert c.cmd("LHLO mta").startswith("250")
        for user, _ in CLIMBING_USERS + [("../../etc/passwd", None), ('"../bob"', None),
                                         ("%2e%2e/bob", None)]:
            assert c.cmd("MAIL FROM:<s@example.org>").startswith("250")
            r = c.cmd(f"RCPT TO:<{user}@example.org>")
            assert r[:1] == "5", (user, r)
            assert c.cmd("RSET").startswith("250")
        for detail in ("../bob", "../../bob/INBOX", "/bob", "..", "../bob/Private", "INBOX/../../bob"):
            assert c.cmd("MAIL FROM:<s@example.org>").startswith("250")
            r = c.cmd(f"RCPT TO:<alice+{detail}@example.org>")
            if r.startswith("250"):
                assert c.cmd("DATA").startswith("354")
                c.s.sendall(b"Subject: detail\r\n\r\nfor alice only\r\n.\r\n")
                r2 = c.reply()
                assert r2.startswith("250"), (detail, r2)
                delivered += 1
            else:
                assert r[:1] == "5", (detail, r)
                assert c.cmd("RSET").startswith("250")
        c.cmd("QUIT")
        c.close()
    finally:
        srv.stop()
    assert_same(before, tree(store / "mail" / "bob"))
    assert len(cur_files(store, "alice")) == alice_before + delivered


# ---- symlinks planted in alice's folder ------------------------------------------

def _plant(data, how):
    A = data / "mail" / "alice"
    B = data / "mail" / "bob"
    bobmsg = cur_files(data, "bob")[0][2]
    if how == "mailbox-dir":
        os.symlink(B / "INBOX", A / ".Evil")
    elif how == "mailbox-dir-relative":
        os.symlink("../bob/.Private", A / ".Evil")
    elif how == "inbox-dir":
        shutil.rmtree(A / "INBOX")
        os.symlink("../bob/INBOX", A / "INBOX")
    elif how == "cur-dir":
        shutil.rmtree(A / ".Box" / "cur")
        os.symlink("../../bob/INBOX/cur", A / ".Box" / "cur")
    elif how == "message-in-cur":
        name = bobmsg.name.replace(",U=1:", ",U=9:")
        os.symlink(bobmsg, A / "INBOX" / "cur" / name)
    elif how == "message-in-new":
        os.symlink(bobmsg, A / "INBOX" / "new" / "1700000000.planted.host")
    elif how == "mailbox-box-file":
        os.unlink(A / ".Box" / "mailroom-box")
        os.symlink(B / "INBOX" / "mailroom-box", A / ".Box" / "mailroom-box")
    elif how == "index-file":
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(A / f"index.sqlite{suffix}")
            except FileNotFoundError:
                pass
        os.symlink("../bob/index.sqlite", A / "index.sqlite")
    elif how in ("index-wal", "index-shm"):
        suffix = how[5:]
        try:
            os.unlink(A / f"index.sqlite-{suffix}")
        except FileNotFoundError:
            pass
        os.symlink(f"../bob/index.sqlite-{suffix}", A / f"index.sqlite-{suffix}")
    else:
        raise AssertionError(how)


# The mailboxes each plant must make unusable for alice (a tagged NO).
REFUSED = {
    "mailbox-dir": {"Evil"}, "mailbox-dir-relative": {"Evil"}, "inbox-dir": {"INBOX"},
    "cur-dir": {"Box"}, "message-in-cur": set(), "message-in-new": set(),
    "mailbox-box-file": {"Box"}, "index-file": set(), "index-wal": set(), "index-shm": set(),
}
@pytest.mark.parametrize("how", [
    "mailbox-dir", "mailbox-dir-relative", "inbox-dir", "cur-dir", "message-in-cur", "message-in-new",
    "mailbox-box-file",
    "index-file",
    "index-wal", "index-shm",
])
def test_planted_symlink(store, how):
    _plant(store, how)
    before = tree(store / "mail" / "bob")
    srv = imap_server.start(store, protocols=("imap", "pop3"))
    seen = b""
    try:
        c = Rec(srv.port)
        try:
            _untagged, t = c.cmd(f'LOGIN alice {PW["alice"]}')
            if t.startswith(b"OK"):
                _alice_session(c, how)
                c.cmd("LOGOUT")
        finally:
            c.close()
            seen += c.seen
        seen += _pop3_session(srv.ports["pop3"], how)
    finally:
        srv.stop()
    assert SECRET.encode() not in seen, f"{how}: alice was sent bob's mail"
    assert_same(before, tree(store / "mail" / "bob"))


def _alice_session(c, how):
    msg = b"Subject: alice writes\r\n\r\nALICE WAS HERE\r\n"
    tagged, names = list_names(c, '""', '"*"')
    assert "Private" not in names, names
    for box in ("INBOX", "Box", "Evil", "Private"):
        refused = box in REFUSED[how] or box not in ALICE_BOXES
        _u, t = c.cmd(f"STATUS {box} (MESSAGES UIDNEXT)")
        _u, s = c.cmd(f"SELECT {box}")
        if s.startswith(b"OK"):
            c.ok("FETCH 1:* (UID FLAGS BODY.PEEK[])")
            c.ok("UID SEARCH ALL")
            c.ok("UNSELECT")
        _u, a = c.cmd(f"APPEND {box} {{{len(msg)}}}", literal=msg + b"\r\n")
        if refused:
            for what, r in (("STATUS", t), ("SELECT", s), ("APPEND", a)):
                assert r.startswith(b"NO"), f"{how}: {what} {box}: {r!r}"
        else:
            for what, r in (("STATUS", t), ("SELECT", s), ("APPEND", a)):
                assert r.startswith(b"OK"), f"{how}: {what} {box}: {r!r}"
    # COPY and MOVE out of a usable mailbox into each of the others
    src = "Box" if "INBOX" in REFUSED[how] else "INBOX"
    c.ok(f"SELECT {src}")
    for box in ("Evil", "Private") + tuple(REFUSED[how] - {src}):
        tagged_no_or_bad(c, f"COPY 1 {box}")
        tagged_no_or_bad(c, f"MOVE 1 {box}")
    c.ok("UNSELECT")
    # DELETE and RENAME of the damaged mailbox act on alice's own folder
    # entry (removing or renaming her link is hers to do): either answer
    # is right, as long as nothing under bob's folder goes (checked by the
    # caller), nor the files the link points to.
    for box in sorted(REFUSED[how]):
        _u, d = c.cmd(f"DELETE {box}")
        if d.startswith(b"NO"):
            c.cmd(f"RENAME {box} Renamed")


def _pop3_session(port, how):
    """POP3 for alice: her INBOX or -ERR (INBOX unusable); all she got."""
    p = poplib.POP3("127.0.0.1", port, timeout=20)
    got = b""
    try:
        p.user("alice")
        try:
            p.pass_(PW["alice"])
        except poplib.error_proto as e:
            assert "INBOX" in REFUSED[how], f"{how}: POP3 login refused: {e}"
            return b""
        assert "INBOX" not in REFUSED[how], f"{how}: POP3 opened a linked INBOX"
        for i in range(len(p.list()[1])):
            got += b"\n".join(p.retr(i + 1)[1])
        p.quit()
    finally:
        p.close()
    return got


# ---- the openat2 switch ----------------------------------------------------------

def _openat2_calls(data, env_value):
    env = dict(os.environ)
    env.pop("MAILROOM_TEST_NO_OPENAT2", None)
    if env_value is not None:
        env["MAILROOM_TEST_NO_OPENAT2"] = env_value
    # the sanitizer build: LeakSanitizer cannot run under ptrace
    env["ASAN_OPTIONS"] = ":".join(filter(None, [env.get("ASAN_OPTIONS"), "detect_leaks=0"]))
    log = data / f"strace-{env_value}.txt"
    p = subprocess.run(["strace", "-f", "-qq", "-e", "trace=openat2", "-o", str(log),
                        imap_server.MAILROOM, "deliver", "-d", str(data), "alice"],
                       input=make_message(f"strace-{env_value}"), env=env, capture_output=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    return sum(1 for line in log.read_text().splitlines() if "openat2(" in line)


def test_openat2_switch(store):
    """MAILROOM_TEST_NO_OPENAT2=1 makes fsx.c use its fallback walk: no
    openat2 call at all; without it, deliveries go through openat2."""
    assert shutil.which("strace"), "strace is missing (scripts/deps.sh installs it)"
    assert _openat2_calls(store, None) > 0
    assert _openat2_calls(store, "1") == 0
    assert _openat2_calls(store, "0") > 0
