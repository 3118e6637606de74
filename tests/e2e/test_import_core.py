"""`mailroom import` and the import sink end to end (issue 12).

The source drivers (Dovecot, Courier, mbox, IMAP) test themselves against
`mailroom import`; here the sink and the store under it are driven by
import_feeder.c, a stand-in driver compiled from this folder against
build/libmailroom.a (test code, not part of the binary), and the command
line of `mailroom import` is checked for what does not need a driver:
arguments, exit codes, the password file, --all.

What a user relies on: UIDVALIDITY, UIDs, flags, keywords and INTERNALDATE
as the old server had them; message files hard-linked (the source
untouched); POP3 UIDLs as the old server gave them; an import while the
server runs and a client has the folder selected (it sees the new messages,
no errors); a re-run adding nothing; `mailroom check` clean afterwards; a
dry run writing nothing.
"""

import imaplib
import os
import poplib
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import imap_server  # noqa: E402
from conftest import add_user, check, check_problems, run  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
EX_USAGE, EX_DATAERR, EX_NOINPUT = 64, 65, 66


@pytest.fixture(scope="session")
def feeder(tmp_path_factory):
    """import_feeder compiled against the library of this tree (the
    ASan+UBSan one when $MAILROOM is the sanitizer build)."""
    asan = "/asan/" in imap_server.MAILROOM
    lib = "build/asan/libmailroom.a" if asan else "build/libmailroom.a"
    san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
           "-fno-sanitize-recover=all"] if asan else []
    subprocess.run(["make", "--no-print-directory", lib], cwd=REPO, check=True,
                   capture_output=True, timeout=900)
    out = tmp_path_factory.mktemp("feeder") / "import_feeder"
    libs = subprocess.run(["pkg-config", "--libs", "sqlite3", "libxcrypt", "libevent", "openssl",
                           "zlib"], capture_output=True, text=True, check=True).stdout.split()
    subprocess.run(["cc", "-std=gnu11", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-Isrc",
                    "-D_GNU_SOURCE", *san, "tests/e2e/import_feeder.c", lib, *libs, "-lpthread",
                    "-o", str(out)], cwd=REPO, check=True, timeout=300)
    return str(out)


def feed(feeder, data, user, lines, tmp, dry=False):
    spec = tmp / f"spec-{time.monotonic_ns()}"
    spec.write_text("".join("\t".join(str(x) for x in l) + "\n" for l in lines))
    p = subprocess.run([feeder] + (["-n"] if dry else []) + [str(data), user, str(spec)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    m = re.search(r"^counts (.*)$", p.stdout, re.M)
    counts = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    return counts, p.stdout


def src_message(path, n, date, crlf=False, extra=""):
    eol = "\r\n" if crlf else "\n"
    text = eol.join([f"From: sender{n}@example.org", "To: alice@example.org",
                     f"Message-ID: <m{n}@example.org>", f"Subject: message {n}{extra}", "",
                     f"body of message {n}", ""])
    path.write_bytes(text.encode())
    os.utime(path, (date, date))
    return path


def served(b):
    """The bytes as mailroom serves them: bare LF as CRLF."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", b)


def hand_over(data, *sources):
    """Start and stop the server once: as root it hands DATA/mail to its
    run_user, after which an import links files (before, it copies them:
    the hand-over would chown a linked source file). The sources are then
    given to the store owner, as when run_user is the old server's mail
    user: fs.protected_hardlinks lets a user link only files it owns (or may
    write). Returns the owner's uid."""
    st = os.stat(data / "mail")
    if st.st_uid == 0:
        srv = imap_server.start(data)
        srv.stop()
        st = os.stat(data / "mail")
    assert st.st_uid != 0
    for s in sources:
        for d, dirs, files in os.walk(s):
            os.chown(d, st.st_uid, st.st_gid)
            for n in files:
                os.chown(os.path.join(d, n), st.st_uid, st.st_gid)
    return st.st_uid


def tree(top):
    """Every path under top with its size and mtime: what a dry run must leave as it is."""
    out = {}
    for d, dirs, files in os.walk(top):
        for n in dirs + files:
            st = os.lstat(os.path.join(d, n))
            out[os.path.join(d, n)] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def imap_login(srv):
    c = imaplib.IMAP4("127.0.0.1", srv.port, timeout=30)
    c.login("alice", "secret")
    return c


def uid_fetch(c, what="(UID FLAGS INTERNALDATE RFC822.SIZE)"):
    typ, data = c.uid("FETCH", "1:*", what)
    assert typ == "OK", data
    out = {}
    for item in data:
        if isinstance(item, tuple):
            item = item[0]
        if not item:
            continue
        s = item.decode()
        uid = int(re.search(r"UID (\d+)", s).group(1))
        out[uid] = s
    return out


# ---- the command line ------------------------------------------------------------------


def test_usage_and_exit_codes(data, tmp_path):
    add_user(data, "alice")
    assert run(["import", "-d", data]).returncode == EX_USAGE
    assert run(["import", "-d", data, "alice"]).returncode == EX_USAGE
    p = run(["import", "-d", data, "alice", "maildir:/tmp"])
    assert p.returncode == EX_USAGE and b"unknown source" in p.stderr
    p = run(["import", "-d", data, "--all", f"mbox:{tmp_path}/x"])
    assert p.returncode == EX_USAGE and b"%u" in p.stderr
    p = run(["import", "-d", data, "alice", "imap://alice@127.0.0.1:1"])
    assert p.returncode == EX_USAGE and b"--password-file" in p.stderr
    p = run(["import", "-d", data, "alice", "imap://127.0.0.1:99999"])
    assert p.returncode == EX_USAGE
    p = run(["import", "-d", data, "../x", f"mbox:{tmp_path}"])
    assert p.returncode == EX_USAGE
    # a source that is not there: EX_NOINPUT, and no mail folder made for it
    p = run(["import", "-d", data, "carol", f"dovecot:{tmp_path}/nonesuch"])
    assert p.returncode == EX_NOINPUT, p.stderr
    assert b"nonesuch" in p.stderr
    assert b"carol is not in" in p.stderr  # not a user of DATA/passwd: warned
    assert not (data / "mail" / "carol").exists()
    assert re.search(rb"^imported 0 messages \(0 linked, 0 copied\) in 0 folders, 0 already there, "
                     rb"0 skipped, [\d.]+ s$", p.stdout, re.M), p.stdout


def test_password_file(data, tmp_path):
    add_user(data, "alice")
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    os.chmod(pw, 0o644)
    # the source is a closed port: whatever the driver says, the warning
    # about the password file comes first
    p = run(["import", "-d", data, "--password-file", pw, "alice", "imap://127.0.0.1:1"])
    assert p.returncode != 0
    assert b"can be read by others" in p.stderr
    os.chmod(pw, 0o600)
    p = run(["import", "-d", data, "--password-file", pw, "alice", "imap://127.0.0.1:1"])
    assert b"can be read by others" not in p.stderr
    p = run(["import", "-d", data, "--password-file", tmp_path / "nope", "alice",
             "imap://127.0.0.1:1"])
    assert p.returncode == EX_NOINPUT
    assert b"secret" not in p.stdout + p.stderr


def test_all_users_missing_sources_are_skipped(data, tmp_path):
    add_user(data, "alice")
    add_user(data, "bob")
    p = run(["import", "-d", data, "--all", f"mbox:{tmp_path}/none/%u"])
    assert p.returncode == 0, p.stderr
    err = p.stderr.decode()
    assert f"{tmp_path}/none/alice" in err and f"{tmp_path}/none/bob" in err
    assert err.count("user skipped") == 2
    assert re.search(r"^imported 0 messages", p.stdout.decode(), re.M)


# ---- the sink, through the stand-in driver -----------------------------------------------


def test_uids_flags_keywords_dates_kept_and_linked(data, tmp_path, feeder):
    add_user(data, "alice")
    src = tmp_path / "src"
    src.mkdir()
    a = src_message(src / "a", 1, 1600000001)
    b = src_message(src / "b", 2, 1600000002, crlf=True)
    c = src_message(src / "c", 3, 1600000003)
    hand_over(data, src)
    # a file the store owner may read but neither owns nor may write:
    # fs.protected_hardlinks refuses the link, it is copied
    e = src_message(src / "e", 5, 1600000005)
    os.chown(e, 0, 0)
    os.chmod(e, 0o644)
    a_stat = a.stat()
    counts, out = feed(feeder, data, "alice", [
        ("folder", "Work/2024", 4000000001, 20),
        ("file", a, 7, 16, -1, len(served(a.read_bytes())), "-", "$Label1 Project"),
        ("file", b, 9, 16 | 8, -1, 0, "-", "-"),
        # an INTERNALDATE other than the mtime: copied, the source untouched
        ("file", c, 12, 2, 1500000000, 0, "-", "Project"),
        ("file", e, 14, 0, -1, 0, "-", "-"),
        ("end",),
        ("subscribe", "Work/2024"),
    ], tmp_path)
    assert counts["imported"] == 4 and counts["linked"] == 2 and counts["copied"] == 2, out
    assert "protected_hardlinks" in out and e.stat().st_nlink == 1
    assert counts["sizes"] == 0, out
    assert "copied: Work/2024: " in out and "INTERNALDATE is not the file's mtime" in out
    # the sources: linked, not changed
    assert a.stat().st_nlink == 2 and a.stat().st_mtime == a_stat.st_mtime
    assert a.stat().st_mode == a_stat.st_mode and a.stat().st_uid == a_stat.st_uid
    assert c.stat().st_nlink == 1 and c.stat().st_mtime == 1600000003
    srv = imap_server.start(data)
    try:
        cl = imap_login(srv)
        typ, d = cl.select('"Work/2024"')
        assert typ == "OK"
        assert cl.untagged_responses["UIDVALIDITY"] == [b"4000000001"]
        assert int(cl.untagged_responses["UIDNEXT"][0]) >= 20
        msgs = uid_fetch(cl)
        assert sorted(msgs) == [7, 9, 12, 14]
        assert "\\Seen" in msgs[7] and "$Label1" in msgs[7] and "Project" in msgs[7]
        assert "\\Seen" in msgs[9] and "\\Answered" in msgs[9]
        assert "\\Flagged" in msgs[12] and "\\Seen" not in msgs[12]
        assert '"13-Sep-2020 12:26:41 +0000"' in msgs[7]  # the file's mtime
        assert '"14-Jul-2017 02:40:00 +0000"' in msgs[12]  # the date given
        # served as CRLF with the CRLF size, bytes otherwise as they are
        typ, d = cl.uid("FETCH", "7", "(RFC822.SIZE BODY.PEEK[])")
        assert d[0][1] == served(a.read_bytes())
        assert f"RFC822.SIZE {len(served(a.read_bytes()))}" in d[0][0].decode()
        typ, lst = cl.lsub('""', "*")
        assert any(b"Work/2024" in l for l in lst)
        cl.logout()
    finally:
        srv.stop()
    assert a.stat().st_uid == a_stat.st_uid and a.stat().st_mode == a_stat.st_mode
    # a re-run adds nothing
    counts, out = feed(feeder, data, "alice", [
        ("folder", "Work/2024", 4000000001, 20),
        ("file", a, 7, 16, -1, 0, "-", "-"),
        ("file", b, 9, 16, -1, 0, "-", "-"),
        ("file", c, 12, 2, 1500000000, 0, "-", "-"),
        ("file", e, 14, 0, -1, 0, "-", "-"),
        ("end",),
    ], tmp_path)
    assert counts["imported"] == 0 and counts["already"] == 4, out
    p = check(data, users=["alice"])
    assert p.returncode == 0 and not check_problems(p), p.stdout


def test_dry_run_writes_nothing(data, tmp_path, feeder):
    add_user(data, "alice")
    src = tmp_path / "src"
    src.mkdir()
    files = [src_message(src / str(n), n, 1600000000 + n) for n in (3, 4, 5, 9)]
    hand_over(data, src)
    before = tree(data)
    counts, out = feed(feeder, data, "alice", [
        ("folder", "INBOX", 77, 10),
        *[("file", f, int(f.name), 0, -1, 0, "-", "-") for f in files[:3]],
        ("file", files[3], 9, 0, 1234567890, 0, "-", "-"),
        ("end",),
    ], tmp_path, dry=True)
    assert counts["imported"] == 4 and counts["linked"] == 3 and counts["copied"] == 1, out
    assert "UIDs 3-5,9" in out
    assert "would copy: INBOX: " in out and "INTERNALDATE" in out
    assert "UIDVALIDITY 77" in out
    assert tree(data) == before
    assert all(f.stat().st_nlink == 1 for f in files)
    # after the import, a dry run of the same says every UID is there
    spec = [("folder", "INBOX", 77, 10), *[("file", f, int(f.name), 0, -1, 0, "-", "-") for f in files],
            ("end",)]
    counts, out = feed(feeder, data, "alice", spec, tmp_path)
    assert counts["imported"] == 4, out
    counts, out = feed(feeder, data, "alice", spec + [("folder", "INBOX", 77, 10),
                                                      ("stream", files[0], 3, 0, -1, 0, "-", "-"),
                                                      ("stream", files[0], 11, 0, -1, 0, "-", "-"),
                                                      ("end",)], tmp_path, dry=True)
    assert counts["imported"] == 1 and counts["already"] == 5, out
    assert "UIDs 11;" in out


def test_pop3_uidls_kept(data, tmp_path, feeder):
    add_user(data, "alice")
    src = tmp_path / "src"
    src.mkdir()
    a = src_message(src / "a", 1, 1600000001)
    b = src_message(src / "b", 2, 1600000002)
    c = src_message(src / "c", 3, 1600000003)
    counts, out = feed(feeder, data, "alice", [
        ("folder", "INBOX", 1234, 4),
        ("file", a, 1, 0, -1, 0, "UID1-1234abcd", "-"),
        ("file", b, 2, 0, -1, 0, "-", "-"),
        ("stream", c, 3, 0, 1600000003, 0, "has space", "-"),  # refused: RFC 1939 7
        ("end",),
    ], tmp_path)
    assert counts["imported"] == 3, out
    assert "POP3 UIDL refused" in out
    srv = imap_server.start(data, protocols=("imap", "pop3"))
    try:
        p = poplib.POP3("127.0.0.1", srv.ports["pop3"], timeout=20)
        p.user("alice")
        p.pass_("secret")
        uidls = [l.decode().split() for l in p.uidl()[1]]
        assert uidls == [["1", "UID1-1234abcd"], ["2", "%08x%08x" % (2, 1234)],
                         ["3", "%08x%08x" % (3, 1234)]]
        assert p.uidl(1).decode().split()[2] == "UID1-1234abcd"
        sizes = [int(l.split()[1]) for l in p.list()[1]]
        assert sizes[0] == len(served(a.read_bytes()))
        p.quit()
    finally:
        srv.stop()
    # the new user's INBOX took the source's UIDVALIDITY: the index agrees
    p = check(data, users=["alice"])
    assert p.returncode == 0 and not check_problems(p), p.stdout


def test_import_while_a_session_has_the_folder_selected(data, tmp_path, feeder):
    add_user(data, "alice")
    src = tmp_path / "src"
    src.mkdir()
    first = [src_message(src / f"f{n}", n, 1600000000 + n) for n in (1, 2)]
    feed(feeder, data, "alice", [("folder", "Work", 5150, 3),
                                 *[("file", f, n, 16, -1, 0, "-", "-") for n, f in enumerate(first, 1)],
                                 ("end",)], tmp_path)
    bulk = tmp_path / "bulk"
    bulk.mkdir()
    N = 2500  # more than two batches
    for uid in range(3, 3 + N):
        src_message(bulk / str(uid), uid, 1600000000 + uid)
    srv = imap_server.start(data)
    hand_over(data, bulk)
    try:
        cl = imap_login(srv)
        typ, d = cl.select("Work")
        assert typ == "OK" and d == [b"2"]
        errors = []
        done = threading.Event()

        def poll():
            # another session keeps asking while the import runs
            c2 = imap_login(srv)
            c2.select("Work", readonly=True)
            while not done.is_set():
                typ, dd = c2.noop()
                if typ != "OK":
                    errors.append(dd)
                time.sleep(0.02)
            c2.logout()

        t = threading.Thread(target=poll)
        t.start()
        # and a third waits in IDLE: the import's commits wake it
        idler = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        idle_in = idler.makefile("rb")
        idle_in.readline()
        idler.sendall(b"a LOGIN alice secret\r\nb SELECT Work\r\nc IDLE\r\n")
        while not idle_in.readline().startswith(b"+"):
            pass
        try:
            counts, out = feed(feeder, data, "alice",
                               [("folder", "Work", 5150, 3), ("dir", bulk), ("end",)], tmp_path)
        finally:
            done.set()
            t.join(60)
        assert not errors
        assert counts["imported"] == N and counts["linked"] == N, out
        pushed = b""
        deadline = time.monotonic() + 20
        while b"* %d EXISTS" % (2 + N) not in pushed and time.monotonic() < deadline:
            pushed += idle_in.readline()
        assert b"* %d EXISTS" % (2 + N) in pushed, pushed[-300:]
        idler.sendall(b"DONE\r\nz LOGOUT\r\n")
        idler.close()
        assert "re-run" in out
        typ, d = cl.noop()
        assert typ == "OK"
        assert cl.untagged_responses.get("EXISTS", [b"0"])[-1] == str(2 + N).encode()
        msgs = uid_fetch(cl, "(UID FLAGS)")
        assert sorted(msgs) == list(range(1, 3 + N))
        cl.logout()
    finally:
        srv.stop()
    p = check(data, users=["alice"])
    assert p.returncode == 0 and not check_problems(p), p.stdout
    # a delivery afterwards takes a UID above every imported one
    d = run(["deliver", "-d", data, "-m", "Work", "alice"], input=b"Subject: new\r\n\r\nx\r\n")
    assert d.returncode == 0, d.stderr
    srv = imap_server.start(data)
    try:
        cl = imap_login(srv)
        cl.select("Work")
        assert max(uid_fetch(cl, "(UID)")) == 3 + N
        cl.logout()
    finally:
        srv.stop()


def test_append_under_another_uidvalidity_skips_duplicates(data, tmp_path, feeder):
    add_user(data, "alice")
    src = tmp_path / "src"
    src.mkdir()
    a = src_message(src / "a", 1, 1600000001)
    b = src_message(src / "b", 2, 1600000002)
    feed(feeder, data, "alice", [("folder", "Old", 111, 3), ("file", a, 1, 16, -1, 0, "-", "-"),
                                 ("end",)], tmp_path)
    # a second source for the same folder, under another UIDVALIDITY: its
    # UIDs mean nothing here; a (given as bytes this time) is there already
    counts, out = feed(feeder, data, "alice", [
        ("folder", "Old", 999, 3),
        ("stream", a, 1, 16, 1600000001, 0, "-", "-"),
        ("stream", b, 2, 16, 1600000002, 0, "-", "-"),
        ("end",),
    ], tmp_path)
    assert "appending with new UIDs" in out
    assert counts["imported"] == 1 and counts["already"] == 1, out
    srv = imap_server.start(data)
    try:
        cl = imap_login(srv)
        cl.select("Old")
        assert cl.untagged_responses["UIDVALIDITY"] == [b"111"]
        msgs = uid_fetch(cl, "(UID FLAGS)")
        assert sorted(msgs) == [1, 3]  # the new one above the first source's UIDNEXT
        typ, d = cl.uid("FETCH", "3", "(BODY.PEEK[])")
        assert d[0][1] == served(b.read_bytes())
        cl.logout()
    finally:
        srv.stop()


def test_root_links_nothing_into_a_store_not_handed_over(data, tmp_path, feeder):
    """Run as root before the server ever ran: DATA/mail is root's, and the
    server's first start chowns everything in it that is not run_user's, so
    a linked source file of another owner would change owner. Such files are
    copied, the report says why, and the source keeps its owner after the
    server has started; a file run_user owns already is linked (the old
    server ran as the same user)."""
    assert os.geteuid() == 0, "this test needs root (as make test runs)"
    import pwd
    mail = pwd.getpwnam("mail")
    add_user(data, "alice")
    src = tmp_path / "src"
    src.mkdir()
    a = src_message(src / "a", 1, 1600000001)
    b = src_message(src / "b", 2, 1600000002)
    os.chown(b, mail.pw_uid, mail.pw_gid)
    owner = a.stat().st_uid
    counts, out = feed(feeder, data, "alice", [("folder", "INBOX", 42, 3),
                                               ("file", a, 1, 0, -1, 0, "-", "-"),
                                               ("file", b, 2, 0, -1, 0, "-", "-"), ("end",)], tmp_path)
    assert counts["copied"] == 1 and counts["linked"] == 1, out
    assert "has not taken over yet" in out and "/src/a:" in out
    hand_over(data)
    assert a.stat().st_uid == owner and a.stat().st_nlink == 1
    assert b.stat().st_uid == mail.pw_uid and b.stat().st_nlink == 2
