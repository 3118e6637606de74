"""The `mailroom` command line as admins and MTAs use it: user, deliver,
mailbox and check, with their exit codes (sysexits.h) and error messages."""
import glob
import os
import subprocess
import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt  # deprecated in 3.11 but present: checks hashes independently of mailroom

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("MAILROOM", os.path.join(ROOT, "build", "mailroom"))

EX_DATAERR, EX_NOUSER, EX_CANTCREAT, EX_TEMPFAIL, EX_NOPERM, EX_CONFIG, EX_USAGE = 65, 67, 73, 75, 77, 78, 64


def run(*args, stdin=b"", env=None):
    return subprocess.run([BIN, *args], input=stdin, capture_output=True, env=env, timeout=60)


@pytest.fixture
def data(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    return str(d)


def add(data, user, pw="pw-" + "x" * 8):
    r = run("user", "add", "-d", data, user, stdin=(pw + "\n").encode())
    assert r.returncode == 0, r.stderr
    return pw


def inbox_files(data, user, box="INBOX"):
    d = os.path.join(data, "mail", user, box, "cur")
    return sorted(os.listdir(d))


MSG = b"From: a@example.org\nTo: b@example.org\nSubject: hello\n\nline one\nline two\n"


def test_user_add_writes_passwd_and_mailboxes(data):
    pw = add(data, "alice", "open sesame")
    line = open(os.path.join(data, "passwd")).read().splitlines()[0]
    user, hashed = line.split(":")[:2]
    assert user == "alice"
    assert hashed.startswith("{YESCRYPT}$y$")
    # Verified by the system's crypt(3), not by mailroom.
    h = hashed[len("{YESCRYPT}"):]
    assert crypt.crypt("open sesame", h) == h
    assert crypt.crypt("open sesamE", h) != h
    assert len(line.split(":")) == 8  # Dovecot passwd-file: 8 fields
    root = os.path.join(data, "mail", "alice")
    for box in ["INBOX", ".Drafts", ".Sent", ".Trash", ".Junk", ".Archive"]:
        for sub in ["cur", "new", "tmp"]:
            assert os.path.isdir(os.path.join(root, box, sub)), box
    assert "\\Sent" in open(os.path.join(root, ".Sent", "mailroom-box")).read()
    assert pw not in open(os.path.join(data, "passwd")).read()
    r = run("user", "list", "-d", data)
    assert r.stdout.decode() == "alice\t{YESCRYPT}\n"


def test_user_add_refusals(data):
    add(data, "alice")
    r = run("user", "add", "-d", data, "alice", stdin=b"x\n")
    assert r.returncode == EX_CANTCREAT and b"already exists" in r.stderr
    for bad in ["a/b", "..", ".hidden", "x" * 65, "tab\tuser", "col:on", ""]:
        r = run("user", "add", "-d", data, bad, stdin=b"x\n")
        assert r.returncode in (EX_DATAERR, EX_USAGE), bad
        assert not os.path.exists(os.path.join(data, "mail", "a")), bad
    r = run("user", "add", "-d", data, "bob", stdin=b"")
    assert r.returncode == EX_DATAERR and b"no password" in r.stderr
    r = run("user", "add", "-d", data, "bob", stdin=b"\n")
    assert r.returncode == EX_DATAERR and b"empty password" in r.stderr
    r = run("user", "add", "-d", data, "bob", "--scheme", "ROT13", stdin=b"x\n")
    assert r.returncode != 0 and b"unknown password scheme" in r.stderr
    r = run("user", "add", "bob", stdin=b"x\n", env={"PATH": "/usr/bin"})
    assert r.returncode == EX_USAGE and b"-d DATA" in r.stderr
    assert [l.split(":")[0] for l in open(os.path.join(data, "passwd"))] == ["alice"]


def test_user_passwd_and_del(data):
    add(data, "alice", "old")
    add(data, "bob", "bobpw")
    r = run("user", "passwd", "-d", data, "--scheme", "SHA512-CRYPT", "alice", stdin=b"new\n")
    assert r.returncode == 0, r.stderr
    lines = dict(l.split(":", 1) for l in open(os.path.join(data, "passwd")).read().splitlines())
    h = lines["alice"].split(":")[0]
    assert h.startswith("{SHA512-CRYPT}$6$")
    assert crypt.crypt("new", h[len("{SHA512-CRYPT}"):]) == h[len("{SHA512-CRYPT}"):]
    assert run("user", "passwd", "-d", data, "nobody", stdin=b"x\n").returncode == EX_NOUSER
    assert run("deliver", "-d", data, "alice", stdin=MSG).returncode == 0
    r = run("user", "del", "-d", data, "alice")
    assert r.returncode == EX_USAGE and b"--yes" in r.stderr
    assert run("user", "del", "-d", data, "--yes", "alice").returncode == 0
    assert len(inbox_files(data, "alice")) == 1  # mail kept
    assert run("user", "del", "-d", data, "--yes", "--purge", "bob").returncode == 0
    assert not os.path.exists(os.path.join(data, "mail", "bob"))
    assert open(os.path.join(data, "passwd")).read() == ""
    assert run("user", "del", "-d", data, "--yes", "alice").returncode == EX_NOUSER


def test_deliver_roundtrip_and_exit_codes(data):
    add(data, "alice")
    add(data, "bob")
    r = run("deliver", "-d", data, "alice", "bob", stdin=MSG)
    assert r.returncode == 0, r.stderr
    fa = inbox_files(data, "alice")
    assert len(fa) == 1 and ",U=1:2," in fa[0]
    pa = os.path.join(data, "mail", "alice", "INBOX", "cur", fa[0])
    assert open(pa, "rb").read() == MSG.replace(b"\n", b"\r\n")
    assert os.stat(pa).st_nlink == 2  # alice + bob, one inode
    crlf_size = len(MSG.replace(b"\n", b"\r\n"))
    assert ",S=%d," % crlf_size in fa[0]

    r = run("deliver", "-d", data, "nosuch", stdin=MSG)
    assert r.returncode == EX_NOUSER
    assert r.stderr.decode().count("\n") == 1 and "nosuch" in r.stderr.decode()
    r = run("deliver", "-d", data, "alice", "nosuch", stdin=MSG)
    assert r.returncode == EX_NOUSER and len(inbox_files(data, "alice")) == 2
    r = run("deliver", "-d", data, "alice", stdin=b"")
    assert r.returncode == EX_DATAERR and b"empty" in r.stderr
    r = run("deliver", "-d", data, stdin=MSG)
    assert r.returncode == EX_USAGE
    # -m: into a mailbox; a missing one falls back to INBOX
    assert run("deliver", "-d", data, "-m", "Sent", "alice", stdin=MSG).returncode == 0
    assert len(inbox_files(data, "alice", ".Sent")) == 1
    assert run("deliver", "-d", data, "-m", "No/Such", "alice", stdin=MSG).returncode == 0
    assert len(inbox_files(data, "alice")) == 3
    # nothing left behind in the spool
    assert os.listdir(os.path.join(data, "spool", "tmp")) == []


def test_deliver_limits_and_quota(data):
    add(data, "alice")
    with open(os.path.join(data, "mailroom.conf"), "w") as f:
        f.write("message_size_limit = 1K\nquota_messages = 2\n")
    big = b"Subject: big\n\n" + b"x" * 2000 + b"\n"
    r = run("deliver", "-d", data, "alice", stdin=big)
    assert r.returncode == EX_DATAERR and b"message_size_limit" in r.stderr
    assert inbox_files(data, "alice") == []
    assert run("deliver", "-d", data, "alice", stdin=MSG).returncode == 0
    assert run("deliver", "-d", data, "alice", stdin=MSG).returncode == 0
    r = run("deliver", "-d", data, "alice", stdin=MSG)
    assert r.returncode == EX_NOPERM and b"quota" in r.stderr
    with open(os.path.join(data, "mailroom.conf"), "a") as f:
        f.write("quota_full_tempfail = yes\n")
    assert run("deliver", "-d", data, "alice", stdin=MSG).returncode == EX_TEMPFAIL
    assert len(inbox_files(data, "alice")) == 2
    with open(os.path.join(data, "mailroom.conf"), "w") as f:
        f.write("quota_messages = many\n")
    r = run("deliver", "-d", data, "alice", stdin=MSG)
    assert r.returncode == EX_CONFIG and b"mailroom.conf:1: quota_messages" in r.stderr


def test_deliver_disk_errors_are_temporary(data):
    add(data, "alice")
    env = dict(os.environ, MAILROOM_TEST_FAULT="fsync:1:ENOSPC")
    r = run("deliver", "-d", data, "alice", stdin=MSG, env=env)
    assert r.returncode == EX_TEMPFAIL and b"No space left" in r.stderr
    env = dict(os.environ, MAILROOM_TEST_FAULT="link:1:EIO")
    r = run("deliver", "-d", data, "alice", stdin=MSG, env=env)
    assert r.returncode == EX_TEMPFAIL
    assert inbox_files(data, "alice") == []
    assert run("check", "-d", data).returncode == 0


def test_mailbox_commands(data):
    add(data, "alice")
    assert run("mailbox", "create", "-d", data, "alice", "Lists/Debian Devel").returncode == 0
    # the parent is not a mailbox until created (IMAP \\NonExistent): RENAME refuses it
    assert run("mailbox", "rename", "-d", data, "alice", "Lists", "X").returncode == 66
    assert run("mailbox", "create", "-d", data, "alice", "Lists").returncode == 0
    r = run("mailbox", "create", "-d", data, "alice", "Lists/Debian Devel")
    assert r.returncode == EX_CANTCREAT
    for bad in ["../bob", "a//b", "x*"]:
        r = run("mailbox", "create", "-d", data, "alice", bad)
        assert r.returncode == EX_DATAERR, bad
    assert os.path.isdir(os.path.join(data, "mail", "alice", ".Lists.Debian Devel", "cur"))
    assert run("deliver", "-d", data, "-m", "Lists/Debian Devel", "alice", stdin=MSG).returncode == 0
    assert run("mailbox", "rename", "-d", data, "alice", "Lists", "Archive/Lists").returncode == 0
    out = run("mailbox", "list", "-d", data, "alice").stdout.decode()
    line = [l for l in out.splitlines() if l.startswith("Archive/Lists/Debian Devel\t")]
    assert line and "messages=1 " in line[0], out
    assert out.splitlines()[0].startswith("INBOX\t")
    assert run("mailbox", "delete", "-d", data, "alice", "Archive/Lists/Debian Devel").returncode == 0
    assert "Debian" not in run("mailbox", "list", "-d", data, "alice").stdout.decode()
    assert run("mailbox", "delete", "-d", data, "alice", "INBOX").returncode == EX_DATAERR
    assert run("mailbox", "list", "-d", data, "nobody").returncode == EX_NOUSER


def test_check_finds_and_repairs(data):
    add(data, "alice")
    for i in range(3):
        assert run("deliver", "-d", data, "alice", stdin=MSG + b"%d\n" % i).returncode == 0
    r = run("check", "-d", data)
    assert r.returncode == 0 and r.stdout.decode() == "alice: ok\n"
    # remove a file and drop one into new/ by hand
    cur = os.path.join(data, "mail", "alice", "INBOX", "cur")
    victim = sorted(os.listdir(cur))[0]
    os.unlink(os.path.join(cur, victim))
    with open(os.path.join(data, "mail", "alice", "INBOX", "new", "123.dropped"), "wb") as f:
        f.write(b"Subject: dropped\n\nx\n")
    r = run("check", "-d", data, "alice")
    assert r.returncode == 1
    out = r.stdout.decode()
    assert "UID 1: file is gone" in out and "new message" in out and "INCONSISTENT" in out
    r = run("check", "-d", data, "--repair", "alice")
    assert r.returncode == 0 and "alice: ok" in r.stdout.decode()
    names = sorted(os.listdir(cur))
    assert len(names) == 3 and any(",U=4:2," in n for n in names)
    # delete the index: check says so, --repair rebuilds it identically
    for f in glob.glob(os.path.join(data, "mail", "alice", "index.sqlite*")):
        os.unlink(f)
    assert run("check", "-d", data).returncode == 1
    assert run("check", "-d", data, "--repair").returncode == 0
    assert sorted(os.listdir(cur)) == names
    assert run("check", "-d", data, "nobody").returncode == EX_NOUSER


def test_deliver_lock_timeout_is_temporary(data):
    """A mailbox locked by another process (here: us, with flock on the
    mailbox directory, as mailroom's writers lock it) makes deliver give up
    after lock_timeout with EX_TEMPFAIL, so the MTA retries later."""
    import fcntl
    import time
    add(data, "alice")
    with open(os.path.join(data, "mailroom.conf"), "w") as f:
        f.write("lock_timeout = 1\n")
    fd = os.open(os.path.join(data, "mail", "alice", "INBOX"), os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        # make the mailbox need a sync, so that even opening it takes the lock
        open(os.path.join(data, "mail", "alice", "INBOX", "new", "1.x"), "wb").write(b"S: x\n\nx\n")
        t0 = time.monotonic()
        r = run("deliver", "-d", data, "alice", stdin=MSG)
        took = time.monotonic() - t0
        assert r.returncode == EX_TEMPFAIL and b"lock timeout" in r.stderr
        assert 0.9 < took < 10
    finally:
        os.close(fd)
    assert run("deliver", "-d", data, "alice", stdin=MSG).returncode == 0
    assert len(inbox_files(data, "alice")) == 2


def test_delivery_caches_the_parsed_message(data):
    """DESIGN.md, Delivery step 1: the message is parsed while it is written,
    so the index holds ENVELOPE/BODYSTRUCTURE before any FETCH, equal to what
    the parser gives for the stored file."""
    import sqlite3
    add(data, "alice")
    msg = b"From: A <a@example.org>\nSubject: cached\nContent-Type: text/plain; charset=utf-8\n\nbody\n"
    assert run("deliver", "-d", data, "alice", stdin=msg).returncode == 0
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(data, "mail", "alice", "index.sqlite"), uri=True)
    rows = db.execute("SELECT envelope, bodystructure, mimetree FROM msg_cache").fetchall()
    db.close()
    assert len(rows) == 1 and all(v is not None for v in rows[0])
    path = os.path.join(data, "mail", "alice", "INBOX", "cur", inbox_files(data, "alice")[0])
    env = run("mime", "envelope", path).stdout.decode()
    bs = run("mime", "bodystructure", path).stdout.decode()
    assert rows[0][0] == env.strip() and rows[0][1] == bs.strip()


# ---- check --repair as IMAP clients see it -------------------------------------


def _imap_populate(port, user, pw):
    """Flags, keywords, a second mailbox with copies, and the highest UID
    expunged (so UIDNEXT is above every file's UID)."""
    import imaplib
    m = imaplib.IMAP4("127.0.0.1", port)
    m.login(user, pw)
    assert m.create("Work")[0] == "OK"
    m.select("INBOX")
    for uid, flags in (("1", r"(\Seen)"), ("2", r"(\Flagged $Work)"), ("3", r"(Todo \Answered)"),
                       ("4", r"(\Deleted)")):
        assert m.uid("STORE", uid, "+FLAGS", flags)[0] == "OK"
    assert m.uid("COPY", "2:3", "Work")[0] == "OK"
    assert m.expunge()[0] == "OK"
    m.logout()


def _damage(data, user, how):
    root = os.path.join(data, "mail", user)
    index = [os.path.join(root, "index.sqlite" + s) for s in ("", "-wal", "-shm")]
    if how == "index deleted":
        for f in index:
            os.unlink(f)
    elif how == "index garbage":
        for f in index:
            with open(f, "wb") as out:
                out.write(os.urandom(8192))
    elif how == "box garbage":
        with open(os.path.join(root, "INBOX", "mailroom-box"), "wb") as out:
            out.write(b"uidvalid\x00\xff\n")


@pytest.mark.parametrize("how", ["index deleted", "index garbage", "box garbage"])
def test_check_repair_keeps_uidvalidity_uids_flags_keywords(data, tmp_path, how):
    """The repair check that compares more than file names: over IMAP, the same
    UIDVALIDITY, UIDNEXT, UIDs, flags, keywords and bodies before the damage and
    after `check --repair` (which must first say INCONSISTENT, exit 1)."""
    import imap_server
    from conftest import imap_state
    os.chmod(tmp_path, 0o755)  # the server's run_user must reach DATA
    pw = add(data, "alice")
    for i in range(4):
        assert run("deliver", "-d", data, "alice", stdin=MSG + b"%d\n" % i).returncode == 0
    srv = imap_server.start(data)
    try:
        _imap_populate(srv.port, "alice", pw)
        before = imap_state(srv.port, "alice", pw, ("INBOX", "Work"))
    finally:
        srv.stop()
    assert before["INBOX"][1] == 5 and sorted(before["INBOX"][2]) == [1, 2, 3]
    assert "$Work" in before["INBOX"][2][2][0] and "Todo" in before["Work"][2][2][0]
    _damage(data, "alice", how)
    r = run("check", "-d", data)
    assert r.returncode == 1 and b"alice: INCONSISTENT" in r.stdout, r.stdout + r.stderr
    r = run("check", "-d", data, "--repair")
    assert r.returncode == 0 and r.stdout.endswith(b"alice: ok\n"), r.stdout + r.stderr
    assert run("check", "-d", data).stdout == b"alice: ok\n"
    srv = imap_server.start(data)
    try:
        after = imap_state(srv.port, "alice", pw, ("INBOX", "Work"))
    finally:
        srv.stop()
    assert after == before


def test_check_after_a_delivery_killed_in_its_crash_window(data):
    """A delivery killed after its link into cur/ and before its last index
    commit (the designed crash window) is crash residue, not damage: `check`
    completes it, says "recovered: ...", prints "USER: ok" and exits 0."""
    import shutil
    assert shutil.which("strace"), "strace is needed (scripts/deps.sh installs it)"
    add(data, "alice")
    assert run("deliver", "-d", data, "alice", stdin=MSG).returncode == 0
    # The fsync calls of a normal delivery, and which one comes first after the link.
    trace = os.path.join(data, "..", "trace")
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")  # LeakSanitizer cannot run under ptrace
    p = subprocess.run(["strace", "-f", "-o", trace, "-e", "trace=linkat,fsync", BIN, "deliver",
                        "-d", data, "alice"], input=MSG, capture_output=True, timeout=60, env=env)
    assert p.returncode == 0, p.stderr
    calls = [l.split()[1].split("(")[0] for l in open(trace) if "(" in l and "resumed" not in l]
    first_after_link = calls.index("linkat") + 1
    assert calls[first_after_link] == "fsync", calls
    when = calls[:first_after_link + 1].count("fsync")
    p = subprocess.run(["strace", "-f", "-o", "/dev/null", "-e", "trace=fsync", "-e",
                        f"inject=fsync:signal=KILL:when={when}", BIN, "deliver", "-d", data, "alice"],
                       input=MSG + b"killed\n", capture_output=True, timeout=60, env=env)
    assert p.returncode == -9, (p.returncode, p.stderr)
    assert len(inbox_files(data, "alice")) == 3  # linked, not yet acknowledged
    r = run("check", "-d", data)
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    assert "alice: recovered: INBOX: UID 3: interrupted delivery completed" in out, out
    assert out.splitlines()[-1] == "alice: ok" and "INCONSISTENT" not in out
    # Completed for good: the next check has nothing to say.
    r = run("check", "-d", data)
    assert r.returncode == 0 and r.stdout == b"alice: ok\n", r.stdout
