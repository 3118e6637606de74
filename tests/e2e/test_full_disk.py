"""A real full disk (issue 14, "Must show 3").

The store lives on a small file system of its own: a 16 MB ext4 image
loop-mounted (closest to a real disk: delayed allocation, directory blocks,
the journal), or a size-limited tmpfs where loop devices cannot be had
(the test prints which one ran). A filler file takes the rest of the space.
Then, while the server keeps running:

- LMTP answers every recipient "452 4.3.1" (RFC 5321 4.2.2: 452 "insufficient
  system storage"; RFC 3463 3.4: X.3.1 "Mail system full"), a temporary
  failure the MTA retries; `mailroom deliver` exits 75 (EX_TEMPFAIL);
  IMAP APPEND answers NO [UNAVAILABLE] (RFC 5530 3: "temporary failure
  because a subsystem is down"; [OVERQUOTA] would tell the user to delete
  mail over a quota they are not over, and RFC 5530 has no disk-full code);
- nothing partial is visible (cur/ and new/ hold only whole messages, IMAP
  shows only acknowledged ones), `mailroom check` finds no damage, and
  every message acknowledged before is served byte for byte as before;
- once the filler is removed, LMTP, deliver, APPEND and STORE work again,
  served by the same master and worker processes (no restart).

A second test leaves only a few KB free and changes flags on hundreds of
messages and expunges (renames, SQLite WAL growth): each command answers OK
or NO, never BAD or a dropped connection, and afterwards the files, the
index and a fresh IMAP session agree, with every change the server
confirmed kept.
"""
import os
import re
import subprocess
import time

import pytest

import imap_server
from conftest import EX_TEMPFAIL, LmtpClient, add_user, check, deliver, make_message, wire
from imap_server import Client, fetch_items

FS_MB = 16


def _mount_small_fs(base):
    """Mount a FS_MB file system at base/mnt: a loop-mounted ext4 image, or
    tmpfs if that fails. Returns (mountpoint, kind)."""
    mnt = base / "mnt"
    mnt.mkdir()
    img = base / "disk.img"
    why = ""
    try:
        with open(img, "wb") as f:
            f.truncate(FS_MB << 20)
        # -m 0: no blocks reserved for root (the server's master is root).
        p = subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(img)],
                           capture_output=True, timeout=60)
        if p.returncode == 0:
            p = subprocess.run(["mount", "-o", "loop", str(img), str(mnt)],
                               capture_output=True, timeout=60)
            if p.returncode == 0:
                return mnt, "ext4 on a loop device"
        why = p.stderr.decode(errors="replace").strip()
    except OSError as e:
        why = str(e)
    img.unlink(missing_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_MB}m", "tmpfs", str(mnt)],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, f"neither loop ext4 ({why}) nor tmpfs could be mounted: {p.stderr!r}"
    return mnt, f"tmpfs (loop ext4 failed: {why})"


@pytest.fixture
def small_fs(tmp_path, mailroom_bin):
    os.chmod(tmp_path, 0o755)  # the workers (run_user) must reach DATA
    mnt, kind = _mount_small_fs(tmp_path)
    print(f"\nfull-disk test on {kind}, {FS_MB} MB")
    try:
        os.chmod(mnt, 0o755)
        yield mnt
    finally:
        for _ in range(50):
            if subprocess.run(["umount", str(mnt)], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        (tmp_path / "disk.img").unlink(missing_ok=True)


def fill(mnt, name="filler"):
    """Write a file in mnt until the file system is full (ENOSPC at every
    chunk size down to one byte). Returns its path."""
    path = mnt / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for chunk in (1 << 20, 1 << 16, 4096, 512, 1):
            block = b"\0" * chunk
            for _ in range((FS_MB << 20) // chunk + 1):
                try:
                    os.write(fd, block)
                except OSError as e:
                    assert e.errno == 28, e  # ENOSPC
                    break
            try:
                os.fsync(fd)  # ext4 allocates at writeback: make it real
            except OSError:
                pass
    finally:
        os.close(fd)
    return path


def free_kb(mnt):
    st = os.statvfs(mnt)
    return st.f_bavail * st.f_frsize // 1024


class Lmtp(LmtpClient):
    """conftest.LmtpClient after LHLO, with one whole transaction."""

    def __init__(self, port):
        super().__init__(port, timeout=60)
        assert self.greeting[-1].startswith("220")
        assert self.cmd("LHLO test.example")[-1].startswith("250")

    def send(self, rcpts, msg):
        """One transaction; returns one reply line per accepted recipient
        (or the single DATA refusal)."""
        assert self.cmd("MAIL FROM:<sender@example.org>")[-1].startswith("250")
        for r in rcpts:
            line = self.cmd(f"RCPT TO:<{r}>")[-1]
            assert line.startswith("250"), line
        go = self.cmd("DATA")[-1]
        if not go.startswith("354"):
            return [go]
        body = re.sub(rb"(^|\r\n)\.", rb"\1..", wire(msg))
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        self.s.sendall(body + b".\r\n")
        return [self.line() for _ in rcpts]


def imap(srv, user):
    c = Client(srv.port, timeout=60)
    c.login(user, "secret")
    return c


def served(srv, user, mailbox="INBOX"):
    """{uid: BODY[] bytes} of a mailbox, read by a fresh IMAP session."""
    c = imap(srv, user)
    try:
        c.ok(f"EXAMINE {mailbox}")
        out = {}
        untagged, tagged = c.cmd("UID FETCH 1:* (UID BODY.PEEK[])")
        assert tagged.startswith(b"OK"), tagged
        for r in untagged:
            if b" FETCH " in r:
                _, items = fetch_items(r)
                out[int(items["UID"])] = items["BODY[]"]
        return out
    finally:
        c.close()


def append(c, mailbox, msg):
    """APPEND; returns (tagged reply, uid or None)."""
    data = wire(msg)
    _, tagged = c.cmd(f"APPEND {mailbox} (\\Seen) {{{len(data)}}}", literal=data + b"\r\n")
    m = re.search(rb"APPENDUID \d+ (\d+)", tagged)
    return tagged, int(m.group(1)) if m else None


def on_disk(data):
    """Every message file in cur/ and new/ of every user's mailboxes, with
    the size its name claims (None where the name has none)."""
    out = []
    for root, dirs, files in os.walk(data / "mail"):
        if os.path.basename(root) not in ("cur", "new"):
            continue
        for f in files:
            m = re.search(r",S=(\d+)", f)
            out.append((os.path.join(root, f), int(m.group(1)) if m else None))
    return out


def assert_nothing_partial(data, acked):
    """Every file in cur/ and new/ is one whole acknowledged message."""
    known = set()
    for msgs in acked.values():
        known.update(msgs.values())
    for path, size in on_disk(data):
        with open(path, "rb") as f:
            body = f.read()
        assert size is None or size == len(body), f"{path}: S={size}, {len(body)} bytes"
        assert body in known, f"{path}: not an acknowledged message ({len(body)} bytes)"


def assert_served_exactly(srv, acked):
    for user, msgs in acked.items():
        got = served(srv, user)
        assert got == msgs, (f"{user}: served UIDs {sorted(got)} vs acknowledged {sorted(msgs)};"
                             f" differing: {[u for u in msgs if got.get(u) != msgs[u]]}")


def test_full_disk_refuses_cleanly_and_recovers(small_fs):
    data = small_fs / "data"
    data.mkdir()
    for u in ("alice", "bob"):
        add_user(data, u)
    srv = imap_server.start(str(data), protocols=("imap", "lmtp"))
    try:
        acked = {"alice": {}, "bob": {}}

        def record(user, uid, msg):
            body = served(srv, user)[uid]
            assert body.endswith(wire(msg)), f"{user} uid {uid}: not the message sent"
            acked[user][uid] = body

        # Messages acknowledged before the disk fills, by each way in.
        l = Lmtp(srv.ports["lmtp"])
        for i in range(3):
            msg = make_message(f"before-lmtp-{i}", 2000 * i)
            replies = l.send(["alice", "bob"], msg)
            for user, line in zip(("alice", "bob"), replies):
                assert line.startswith("250 "), line
                record(user, int(line.split()[3]), msg)
        for i in range(2):
            msg = make_message(f"before-deliver-{i}", 5000)
            assert deliver(data, "alice", msg).returncode == 0
            record("alice", max(served(srv, "alice")), msg)
        c = imap(srv, "alice")
        for i in range(2):
            msg = make_message(f"before-append-{i}", 3000)
            tagged, uid = append(c, "INBOX", msg)
            assert tagged.startswith(b"OK"), tagged
            record("alice", uid, msg)
        pids = (srv.pid, sorted(srv.children()))

        filler = fill(small_fs)
        print(f"disk filled: {free_kb(small_fs)} KB left")

        for size in (0, 200_000):  # one that fits a page, one that does not
            msg = make_message(f"full-lmtp-{size}", size)
            replies = l.send(["alice", "bob"], msg)
            assert len(replies) in (1, 2), replies
            for line in replies:
                assert line.startswith("452 4.3.1 "), f"size {size}: {replies}"
            p = deliver(data, ["alice"], make_message(f"full-deliver-{size}", size))
            assert p.returncode == EX_TEMPFAIL, (size, p.returncode, p.stderr)
            tagged, _ = append(c, "INBOX", make_message(f"full-append-{size}", size))
            assert tagged.startswith(b"NO [UNAVAILABLE]"), tagged
            assert b"space" in tagged.lower(), tagged

        # Nothing partial, nothing lost, nothing damaged, all while full.
        # (Staging files in tmp/ are not messages: report, do not judge.)
        left = [f for d in data.rglob("tmp") if d.is_dir() for f in d.iterdir()]
        print(f"staging files left in tmp/ folders: {len(left)}")
        assert srv.alive()
        assert_nothing_partial(data, acked)
        assert_served_exactly(srv, acked)
        # `check` may be unable to open an index that is not open already
        # (SQLite needs a few blocks for its -shm/-wal): then it must say
        # so as a temporary failure (75), never report damage (1).
        p = check(data)
        print(f"check on the full disk: exit {p.returncode} {p.stderr.strip()!r}")
        assert p.returncode == 0 or (p.returncode == EX_TEMPFAIL and "full" in p.stderr), \
            p.stdout + p.stderr

        # Free the space: everything works again, without a restart.
        os.unlink(filler)
        print(f"space freed: {free_kb(small_fs)} KB")
        msg = make_message("after-lmtp", 50_000)
        replies = l.send(["alice", "bob"], msg)
        for user, line in zip(("alice", "bob"), replies):
            assert line.startswith("250 "), replies
            record(user, int(line.split()[3]), msg)
        msg = make_message("after-deliver", 50_000)
        assert deliver(data, "bob", msg).returncode == 0
        record("bob", max(served(srv, "bob")), msg)
        msg = make_message("after-append", 50_000)
        tagged, uid = append(c, "INBOX", msg)
        assert tagged.startswith(b"OK"), tagged
        record("alice", uid, msg)
        c.ok("SELECT INBOX")
        untagged = c.ok(f"UID STORE {uid} +FLAGS (\\Flagged)")
        assert any(b"\\Flagged" in r for r in untagged), untagged
        c.close()
        l.close()
        assert (srv.pid, sorted(srv.children())) == pids, "the server restarted a process"
        assert_served_exactly(srv, acked)
        assert_nothing_partial(data, acked)
        p = check(data)
        assert p.returncode == 0, p.stdout + p.stderr
    finally:
        srv.stop()


def flags_of(c):
    """{uid: set of flags} of the selected mailbox."""
    untagged, tagged = c.cmd("UID FETCH 1:* (UID FLAGS)")
    assert tagged.startswith(b"OK"), tagged
    out = {}
    for r in untagged:
        if b" FETCH " in r:
            _, items = fetch_items(r)
            out[int(items["UID"])] = set(items["FLAGS"])
    return out


def files_flags(data, user="alice"):
    """{uid: maildir flag letters} from the names in INBOX/cur/."""
    out = {}
    for f in os.listdir(data / "mail" / user / "INBOX" / "cur"):
        m = re.search(r",U=(\d+):2,([A-Za-z]*)$", f)
        if m:
            out[int(m.group(1))] = m.group(2)
    return out


def test_index_writes_on_a_nearly_full_disk(small_fs):
    """STORE on many messages and EXPUNGE with a few KB free: OK or NO, and
    what the server confirmed is what a fresh session and the files show."""
    data = small_fs / "data"
    data.mkdir()
    add_user(data, "alice")
    srv = imap_server.start(str(data), protocols=("imap", "lmtp"))
    try:
        l = Lmtp(srv.ports["lmtp"])
        n = 300
        for i in range(n):
            assert l.send(["alice"], make_message(f"m{i}"))[0].startswith("250 ")
        l.close()
        pids = (srv.pid, sorted(srv.children()))
        c = imap(srv, "alice")
        c.ok("SELECT INBOX")
        uids = sorted(flags_of(c))
        assert len(uids) == n
        # Small files to delete one by one, each freeing a little space.
        pads = []
        for i, kb in enumerate((4, 8, 16, 32, 64, 128)):
            p = small_fs / f"pad{i}"
            p.write_bytes(b"\0" * (kb << 10))
            pads.append(p)
        filler = fill(small_fs)
        expect_gone = set()
        confirmed = {}  # uid -> flags the server confirmed last
        results = []
        flag = "\\Flagged"
        no_texts = set()
        for step in range(len(pads) + 1):
            left = free_kb(small_fs)
            for op, sign in (("STORE", "+"), ("STORE", "-"), ("STORE", "+")):
                untagged, tagged = c.cmd(f"UID STORE 1:* {sign}FLAGS ({flag})")
                assert tagged[:2] in (b"OK", b"NO"), tagged
                results.append((left, f"{sign}FLAGS", tagged.split(b" ", 2)[0].decode()))
                for r in untagged:
                    if b" FETCH " in r:
                        _, items = fetch_items(r)
                        if "UID" in items and "FLAGS" in items:
                            confirmed[int(items["UID"])] = set(items["FLAGS"])
                if tagged.startswith(b"NO"):
                    assert b"[UNAVAILABLE]" in tagged, tagged
                    no_texts.add(tagged.decode(errors="replace"))
            # Mark and expunge a few.
            victims = [u for u in uids if u not in expect_gone][:10]
            vset = ",".join(map(str, victims))
            _, tagged = c.cmd(f"UID STORE {vset} +FLAGS.SILENT (\\Deleted)")
            assert tagged[:2] in (b"OK", b"NO"), tagged
            if tagged.startswith(b"OK"):
                untagged, tagged = c.cmd(f"UID EXPUNGE {vset}")
                assert tagged[:2] in (b"OK", b"NO"), tagged
                results.append((left, "EXPUNGE", tagged.split(b" ", 2)[0].decode()))
                if tagged.startswith(b"OK"):
                    expect_gone.update(victims)
            if step < len(pads):
                os.unlink(pads[step])
        print("free KB, command, reply:", results)
        print("NO replies:", sorted(no_texts))
        c.close()
        os.unlink(filler)

        assert (srv.pid, sorted(srv.children())) == pids, "the server restarted a process"
        p = check(data)
        assert p.returncode == 0, p.stdout + p.stderr
        c = imap(srv, "alice")
        c.ok("SELECT INBOX")
        now = flags_of(c)
        assert not expect_gone & set(now), "an expunge confirmed OK came back"
        assert set(now) <= set(uids)
        files = files_flags(data)
        assert set(files) == set(now), "IMAP and cur/ disagree on the messages"
        for uid, fl in now.items():
            assert ("F" in files[uid]) == (flag in fl), f"uid {uid}: IMAP {fl}, file {files[uid]}"
            if uid in confirmed:
                assert (flag in confirmed[uid]) == (flag in fl), \
                    f"uid {uid}: confirmed {confirmed[uid]}, now {fl}"
        # And with space, the changes all work.
        c.ok(f"UID STORE 1:* -FLAGS ({flag})")
        assert all(flag not in f for f in flags_of(c).values())
        c.close()
        p = check(data)
        assert p.returncode == 0, p.stdout + p.stderr
    finally:
        srv.stop()
