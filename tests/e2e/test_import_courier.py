"""`mailroom import USER courier:PATH` end to end (issue 12, Must show 2).

The test writes a Courier-IMAP maildir itself from the documented formats
(courier-libs: imap/imapscanclient.c for courierimapuiddb, "1 UIDVALIDITY
NEXTUID" then "UID basename"; maildir/maildirkeywords2.c for
courierimapkeywords/:list and the pending ".N.basename" update files, the
highest N winning; imap/pop3dserver.c for courierpop3dsizelist and the UIDLs
its pop3d prints; imap/imapd.h for courierimapsubscribed, names in Courier's
"INBOX." namespace), imports it, and checks over IMAP and POP3 what a user of
the old server relies on:

  - folder names: Courier's "INBOX.Work" is mailroom's "INBOX/Work" (the
    same child of INBOX; import_courier.c says why), a modified UTF-7 name
    decoded ("INBOX.Entw&APw-rfe" is Entwuerfe with u-umlaut, sent back as
    the same mUTF-7 to an IMAP4rev1 client);
  - every folder's UIDVALIDITY, every UID, UIDNEXT, flags and keywords as the
    Courier files say, a file the uiddb does not name numbered as Courier's
    next scan would have numbered it (NEXTUID on, in its file name order);
  - subscriptions (LSUB) and POP3 UIDLs exactly as Courier gave them;
  - messages hard-linked (the source file's inode is the store's), the
    source tree byte-for-byte and mtime unchanged, a second import adding
    nothing;
  - mbsync, having synced against mailroom, downloads nothing after the
    import is run again.
Expected values come from the tree the test writes, never from mailroom.
"""

import hashlib
import imaplib
import os
import poplib
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import imap_server  # noqa: E402
from conftest import add_user, check, check_problems, run  # noqa: E402

UTF7_ENTWUERFE = "Entw&APw-rfe"


def message(tag):
    return (f"From: sender-{tag}@example.org\nTo: alice@example.org\n"
            f"Subject: courier {tag}\nMessage-ID: <{tag}@courier.example>\n"
            f"Date: Tue, 14 Nov 2023 10:00:00 +0000\n\nbody of {tag}\n").encode()


# Courier folder directory -> (mailroom name as an IMAP4rev1 client sees it, UIDVALIDITY,
# NEXTUID in the uiddb, messages). A message: (basename, cur|new, maildir flags, UID in the
# uiddb or None, keywords it has after the keyword files are applied, UID expected).
TREE = {
    "": ("INBOX", 1234567890, 300, [
        ("1700000100.M1P1.mail", "cur", "S", 101, ["$Label1", "Project"], 101),
        ("1700000101.M2P1.mail", "cur", "RS", 102, ["Later"], 102),
        ("1700000103.M4P1.mail", "cur", "T", 205, ["Project", "Urgent"], 205),
        # not in the uiddb: Courier would number them 300, 301 (1700000102 < 1700000104)
        ("1700000104.M5P1.mail", "new", "", None, [], 301),
        ("1700000102.M3P1.mail", "cur", "F", None, [], 300),
    ]),
    ".Work": ("INBOX/Work", 777, 50, [
        ("1600000001.w1.mail", "cur", "S", 40, [], 40),
        ("1600000002.w2.mail", "cur", "", 41, ["Project"], 41),
    ]),
    ".Work.2024": ("INBOX/Work/2024", 99, 5, [
        ("1650000000.y.mail", "cur", "RS", 3, [], 3),
    ]),
    "." + UTF7_ENTWUERFE: ("INBOX/" + UTF7_ENTWUERFE, 4242, 10, [
        ("1690000000.x.mail", "cur", "D", 9, [], 9),
    ]),
}
SUBSCRIBED = ["INBOX", "INBOX.Work", "INBOX." + UTF7_ENTWUERFE]
SUBSCRIBED_MAILROOM = {"INBOX", "INBOX/Work", "INBOX/" + UTF7_ENTWUERFE}
FLAG_NAMES = {"S": "\\Seen", "R": "\\Answered", "F": "\\Flagged", "T": "\\Deleted", "D": "\\Draft"}
# POP3: what Courier's pop3d printed (pop3dserver.c print_uidl): UID<n>-<uidv>, or for a
# version-0 entry (uid 0) the file name. The one message not in the list has no UIDL to keep.
POP3_LIST = [("1700000100.M1P1.mail", "S", 1, 1111, "UID1-1111"),
             ("1700000101.M2P1.mail", "RS", 2, 1111, "UID2-1111"),
             ("1700000103.M4P1.mail", "T", 0, 0, "1700000103.M4P1.mail")]


def fname(base, where, flags):
    return base if where == "new" else f"{base}:2,{flags}"


def build_courier(top):
    """Write the Courier maildir of TREE under top; returns its path."""
    root = top / "Maildir"
    for dirname, (name, uidv, nextuid, msgs) in TREE.items():
        d = root / dirname if dirname else root
        for sub in ("cur", "new", "tmp"):
            (d / sub).mkdir(parents=True)
        if dirname:
            (d / "maildirfolder").write_bytes(b"")
        uiddb = [f"1 {uidv} {nextuid}\n"]
        uiddb += [f"{uid} {base}\n" for base, _, _, uid, _, _ in msgs if uid is not None]
        (d / "courierimapuiddb").write_text("".join(uiddb))
        for i, (base, where, flags, _, _, _) in enumerate(msgs):
            p = d / where / fname(base, where, flags)
            p.write_bytes(message(f"{dirname or 'inbox'}-{base}"))
            os.utime(p, (1700000000 + i * 3600, 1700000000 + i * 3600))
    # INBOX keywords: :list, then pending updates. 1700000100 keeps its :list keywords;
    # 1700000101: the plain update file replaces "Project" by "Later"; 1700000103: the
    # highest ".N." update wins ("Project Urgent" over "Old"). A scratch ".tmp." is ignored.
    kw = root / "courierimapkeywords"
    kw.mkdir()
    (kw / ":list").write_text("$Label1\nProject\n\n"
                              "1700000100.M1P1.mail:0 1\n"
                              "1700000101.M2P1.mail:1\n"
                              "1700000103.M4P1.mail:1\n")
    (kw / "1700000101.M2P1.mail").write_text("Later\n")
    (kw / ".5666666.1700000103.M4P1.mail").write_text("Old\n")
    (kw / ".5666670.1700000103.M4P1.mail").write_text("Project\nUrgent\n")
    (kw / ".tmp.1700000000.scratch").write_text("Scratch\n")
    wk = root / ".Work" / "courierimapkeywords"
    wk.mkdir()
    (wk / ":list").write_text("Project\n\n1600000002.w2.mail:0\n")
    (root / "courierimapsubscribed").write_text("".join(s + "\n" for s in SUBSCRIBED))
    lines = ["/3 3 1111\n"]
    for base, flags, n, uidv, _ in POP3_LIST:
        body = message(f"inbox-{base}")
        size = len(body) + body.count(b"\n")  # the CRLF size pop3d counted (calcsize)
        lines.append(f"{base}:2,{flags} {size} {n}:{uidv}:0\n")
    (root / "courierpop3dsizelist").write_text("".join(lines))
    return root


def give_to_store_owner(root, data):
    """The old store's files belong to the user the mail server runs as; so do
    mailroom's (DATA/mail's owner, once a server ran). Run as root, `mailroom import` takes that
    identity, and with fs.protected_hardlinks it may link only files it owns."""
    st = os.stat(Path(data) / "mail") if (Path(data) / "mail").exists() else os.stat(data)
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            os.lchown(os.path.join(d, n), st.st_uid, st.st_gid)
    os.lchown(root, st.st_uid, st.st_gid)


def snapshot(top):
    """Every path under top: kind, size, mtime and content hash; what must not change."""
    out = {}
    for d, dirs, files in os.walk(top):
        for n in dirs:
            st = os.lstat(os.path.join(d, n))
            out[os.path.join(d, n)] = ("dir", st.st_mtime_ns, st.st_mode)
        for n in files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            with open(p, "rb") as f:
                h = hashlib.sha256(f.read()).hexdigest()
            out[p] = ("file", st.st_size, st.st_mtime_ns, st.st_mode, st.st_ino, h)
    st = os.lstat(top)
    out[str(top)] = ("dir", st.st_mtime_ns, st.st_mode)
    return out


def do_import(data, root):
    p = run(["import", "-d", data, "alice", f"courier:{root}"], timeout=300)
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0, out + p.stderr.decode(errors="replace")
    m = re.search(r"^imported (\d+) messages \((\d+) linked, (\d+) copied\) in (\d+) folders, "
                  r"(\d+) already there, (\d+) skipped", out, re.M)
    assert m, out
    return [int(x) for x in m.groups()], out


def listed(c, cmd):
    typ, data = getattr(c, cmd)('""', "*")
    assert typ == "OK", data
    names = set()
    for line in data:
        m = re.match(rb'\(([^)]*)\) (?:"[^"]*"|NIL) (.*)$', line)
        assert m, line
        name = m.group(2).decode()
        names.add(name[1:-1] if name.startswith('"') else name)
    return names


def fetch_all(c):
    typ, data = c.uid("FETCH", "1:*", "(UID FLAGS)")
    assert typ == "OK", data
    out = {}
    for item in data:
        if item is None:
            continue
        s = item.decode() if isinstance(item, bytes) else item[0].decode()
        uid = int(re.search(r"UID (\d+)", s).group(1))
        out[uid] = set(re.search(r"FLAGS \(([^)]*)\)", s).group(1).split())
    return out


def expected_flags(flags, keywords):
    return {FLAG_NAMES[f] for f in flags} | set(keywords)


def total_messages():
    return sum(len(msgs) for _, _, _, msgs in TREE.values())


def test_courier_maildir_as_clients_saw_it(data, tmp_path):
    add_user(data, "alice")
    root = build_courier(tmp_path / "courier")
    # what a new user has before any import: the default mailboxes, subscribed
    srv = imap_server.start(data)
    try:
        c = imaplib.IMAP4("127.0.0.1", srv.port, timeout=30)
        c.login("alice", "secret")
        defaults, default_subs = listed(c, "list"), listed(c, "lsub")
        c.logout()
    finally:
        srv.stop()
    give_to_store_owner(root, data)
    before = snapshot(root)

    counts, out = do_import(data, root)
    assert counts[:3] == [total_messages(), total_messages(), 0], out  # all linked
    assert counts[3] == len(TREE) and counts[5] == 0, out
    assert "size differences" not in out or "0 size differences" in out, out

    srv = imap_server.start(data, protocols=("imap", "pop3"))
    try:
        c = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=30)
        c.login("alice", "secret")
        assert listed(c, "list") == defaults | {name for name, _, _, _ in TREE.values()}
        # a user who never held mail takes the source's subscriptions instead
        # of the defaults `user add` gave (import_core.c)
        assert default_subs and default_subs != SUBSCRIBED_MAILROOM
        assert listed(c, "lsub") == SUBSCRIBED_MAILROOM
        for dirname, (name, uidv, nextuid, msgs) in TREE.items():
            typ, _ = c.select(f'"{name}"', readonly=True)
            assert typ == "OK", name
            assert c.untagged_responses["UIDVALIDITY"] == [str(uidv).encode()], name
            new = sum(1 for m in msgs if m[3] is None)
            assert c.untagged_responses["UIDNEXT"] == [str(nextuid + new).encode()], name
            got = fetch_all(c)
            want = {uid: expected_flags(flags, kws) for _, _, flags, _, kws, uid in msgs}
            assert got == want, (name, got, want)
            c.close()
        c.logout()

        # POP3: Courier's UIDLs, matched to the messages by their Message-ID
        p = poplib.POP3("127.0.0.1", srv.ports["pop3"], timeout=30)
        p.user("alice")
        p.pass_("secret")
        uidls = {}
        for line in p.uidl()[1]:
            n, uidl = line.decode().split(" ", 1)
            top = b"\n".join(p.top(int(n), 0)[1]).decode()
            mid = re.search(r"Message-ID: <(.*?)>", top, re.I).group(1)
            uidls[mid] = uidl
        p.quit()
        inbox = TREE[""][3]
        assert len(uidls) == len(inbox)
        for base, _, _, _, want in POP3_LIST:
            assert uidls.pop(f"inbox-{base}@courier.example") == want, base
        assert len(set(uidls.values())) == len(uidls)  # the others: mailroom's own, distinct
        assert not set(uidls.values()) & {w for *_, w in POP3_LIST}
    finally:
        srv.stop()

    # hard links: every source message is one of the store's files
    store_inodes = {p.stat().st_ino for p in (Path(data) / "mail" / "alice").rglob("*")
                    if p.is_file() and p.parent.name in ("cur", "new")}
    for dirname, (_, _, _, msgs) in TREE.items():
        for base, where, flags, *_ in msgs:
            src = (root / dirname if dirname else root) / where / fname(base, where, flags)
            assert src.stat().st_ino in store_inodes, src
            assert src.stat().st_nlink == 2, src

    # a second import adds nothing
    counts, out = do_import(data, root)
    assert counts[0] == 0 and counts[4] == total_messages(), out
    assert snapshot(root) == before
    p = check(data, users=["alice"])
    assert p.returncode == 0 and not check_problems(p), p.stdout


# ---- mbsync ----------------------------------------------------------------------------


def mbsync_bin():
    """mbsync, installed from Debian's isync when missing; a test without it fails."""
    path = shutil.which("mbsync")
    if path is None:
        p = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "isync"],
                           capture_output=True, text=True, timeout=600,
                           env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        path = shutil.which("mbsync")
        assert path, f"mbsync (isync) is missing and could not be installed: {p.stderr[-800:]}"
    return path


def mbsync(binary, rc):
    p = subprocess.run([binary, "-V", "-c", str(rc), "-a"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"mbsync failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"
    return p.stdout + p.stderr


def near_files(near):
    out = {}
    for d, _, files in os.walk(near):
        if os.path.basename(d) in ("cur", "new"):
            for n in files:
                st = os.stat(os.path.join(d, n))
                out[os.path.join(d, n)] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


def test_mbsync_downloads_nothing_after_the_import_is_run_again(data, tmp_path):
    binary = mbsync_bin()
    add_user(data, "alice")
    root = build_courier(tmp_path / "courier")
    give_to_store_owner(root, data)
    do_import(data, root)
    srv = imap_server.start(data)
    try:
        near = tmp_path / "near"
        near.mkdir()
        rc = tmp_path / "mbsyncrc"
        rc.write_text(f"""IMAPAccount srv
Host 127.0.0.1
Port {srv.port}
User alice
Pass secret
SSLType None
AuthMechs LOGIN

IMAPStore far
Account srv

MaildirStore near
Path {near}/
Inbox {near}/Inbox
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
        mbsync(binary, rc)
        first = near_files(near)
        assert len(first) == total_messages(), sorted(first)
        # mbsync saw Courier's hierarchy: children of INBOX (kept under its Inbox
        # path), names as the server sent them (isync 1.4 keeps mUTF-7)
        for sub in ("Inbox/Work", "Inbox/Work/2024", "Inbox/" + UTF7_ENTWUERFE):
            assert (near / sub / "cur").is_dir(), sorted(p for p in near.rglob("*") if p.is_dir())

        counts, out = do_import(data, root)  # again, while the server runs
        assert counts[0] == 0, out
        time.sleep(1.1)  # mbsync skips maildirs changed within the last second
        log = mbsync(binary, rc)
        for name, _, _, msgs in TREE.values():  # it did look at every folder again
            assert f"Opening far side box {name}...\nOpening near side box {name}..." in log, log
            assert f"far side: {len(msgs)} messages" in log, log
        # nothing downloaded: not one file added, removed or rewritten in the near store
        assert near_files(near) == first, log
    finally:
        srv.stop()
