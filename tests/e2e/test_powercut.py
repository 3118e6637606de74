"""Power-cut simulation (issue 14, "Must show 2").

Method: an LD_PRELOAD logger, build/pclog.so (tests/powercut/pclog.c), logs
every change that mailroom and libsqlite3 make beneath DATA (writes with their
bytes, truncations, fsync/fdatasync, creations, links, renames, unlinks,
mkdir/rmdir), each with a global sequence number and its CLOCK_MONOTONIC time.
A workload runs with it, in rounds: `mailroom deliver` (one and three
recipients), LMTP to three recipients, and over IMAP APPEND (with flags and
keywords), STORE of flags and of new keywords (+FLAGS, -FLAGS), COPY, MOVE
and UID EXPUNGE. The client notes when each acknowledgement arrived (deliver
exit 0, LMTP 250 per recipient, IMAP tagged OK) on the same clock.

tests/powercut/replay.py then rebuilds, from a snapshot of DATA taken before
the run and the log, the state a strict POSIX file system may be left in by a
power cut just before record k: unsynced data and unsynced names all lost
(see its top comment for the model and what it cannot see: mmap writes,
metadata such as mtime, most half-kept states, lying disks). The durable
state changes only at an fsync, so cutting just before each fsync (and at the
end) covers every distinct durable state, each with the most acknowledgements
that can have been given before it. Every other cut is also tried with a
random half of the unsynced changes kept. With more fsyncs than
POWERCUT_CUTS (default 150) an evenly spread subset is taken.

For each cut: `mailroom serve` starts on that state with a new boot id (the
machine rebooted: LD_PRELOAD answers /proc/sys/kernel/random/boot_id), and
over IMAP every mailbox must hold exactly what the last acknowledged
operation left (byte-exact bodies, same UIDs, flags and keywords, same
UIDVALIDITY), give or take the one operation in flight at the cut, which may
show per message either before or after it (but a moved message is never in
neither mailbox); nothing partial or unknown; a new APPEND must get a UID
above every UID a client saw before the cut, and raise HIGHESTMODSEQ above
every value a client was told before it (DESIGN.md: modseqs never go back).
Then `mailroom check` must find the store clean.

Before any cut, the model's view of what the programs saw at the end must
equal the real DATA folder byte for byte (except SQLite's mmap'd -shm): the
log missed nothing.

Also: `mailroom user add` and the new user's first delivery, cut before each
of their fsyncs (checked on the files): the folders and the message survive
(test_power_cut_new_user_first_delivery), and so does the passwd line
(test_power_cut_user_add_passwd: passwd_file_update fsyncs DATA/ after its
rename).

Figures printed: log records, fsyncs, cut points, acknowledgements checked,
failing cuts. More: POWERCUT_CUTS=1000 (about 10 minutes).
"""

import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

import imap_server
from conftest import REPO, add_user, check, check_problems, make_message, run, wire

sys.path.insert(0, str(REPO / "tests" / "powercut"))
import replay  # noqa: E402

PRELOAD = REPO / "build" / "pclog.so"
# About 1 to 2 minutes on a loaded 2-core machine. A round of the workload
# makes about 43 fsyncs; POWERCUT_CUTS=1000 runs enough rounds for 1000.
MAX_CUTS = int(os.environ.get("POWERCUT_CUTS", "150"))
ROUNDS = int(os.environ.get("POWERCUT_ROUNDS", str(max(2, (MAX_CUTS + 42) // 43))))
USERS = ("alice", "bob", "carol")
BOXES = ("INBOX", "Archive")


@pytest.fixture(scope="module")
def preload():
    p = subprocess.run(["make", "-C", str(REPO), "--no-print-directory", "build/pclog.so"],
                       capture_output=True, text=True)
    assert p.returncode == 0, f"cannot build build/pclog.so: {p.stdout}{p.stderr}"
    return PRELOAD


def _norm_flags(items):
    return frozenset(f.lower() for f in items if f.lower() != "\\recent")


# ---- the workload ----------------------------------------------------------------


class Timeline:
    """The acknowledged operations, in order, and the state after each.

    state: {(user, box): {uid: (tag, flags)}}; flags a frozenset of lower-case
    flags and keywords. ops[i] = (name, t_start, t_ack, group); states[i + 1]
    is the state once ops[i] was acknowledged (states[0] the snapshot's).
    Operations of one group are one transaction with several
    acknowledgements (LMTP: one reply per recipient after one DATA).
    """

    def __init__(self, state, messages):
        self.states = [state]
        self.ops = []
        self.messages = messages  # tag -> bytes as stored
        self.seen_uids = [self._max_uids(state)]  # the highest UID a client saw, per box
        self.modseqs = []  # (time seen, (user, box), HIGHESTMODSEQ a client was told)
        self.on_add = None

    @staticmethod
    def _max_uids(state):
        return {k: max(v, default=0) for k, v in state.items()}

    def current(self):
        return {k: dict(v) for k, v in self.states[-1].items()}

    def add(self, name, t_start, t_ack, state, group=None):
        self.ops.append((name, t_start, t_ack, group))
        self.states.append(state)
        seen = dict(self.seen_uids[-1])
        for k, v in state.items():
            seen[k] = max(seen.get(k, 0), max(v, default=0))
        self.seen_uids.append(seen)
        if self.on_add is not None:
            self.on_add()

    def modseq_seen(self, key, t_cut):
        return max((m for t, k, m in self.modseqs if k == key and t < t_cut), default=0)


class Imap:
    """imap_server.Client that notes when each tagged reply arrived."""

    def __init__(self, port, user, tries=1):
        self.user = user
        for i in range(tries):
            self.c = imap_server.Client(port)
            _, tagged = self.c.cmd(f'LOGIN "{user}" "secret"')
            if tagged.startswith(b"OK"):
                return
            self.c.close()
            time.sleep(0.1)
        raise AssertionError(f"LOGIN {user}: {tagged!r}")

    def cmd(self, text, literal=None):
        t0 = time.monotonic()
        untagged, tagged = self.c.cmd(text, literal)
        return untagged, tagged, t0, time.monotonic()

    def ok(self, text, literal=None):
        untagged, tagged, t0, t1 = self.cmd(text, literal)
        assert tagged.startswith(b"OK"), f"{self.user}: {text!r}: {tagged!r}"
        return untagged, tagged, t0, t1

    def fetch_all(self, box):
        """{uid: (body bytes, flags)} and UIDVALIDITY of box."""
        untagged, _, _, _ = self.ok(f'SELECT "{box}"')
        uidvalidity = None
        for r in untagged:
            m = re.search(rb"\[UIDVALIDITY (\d+)\]", r)
            if m:
                uidvalidity = int(m.group(1))
        out = {}
        untagged, _, _, _ = self.ok("UID FETCH 1:* (UID FLAGS BODY.PEEK[])")
        for r in untagged:
            if b" FETCH " not in r:
                continue
            _, items = imap_server.fetch_items(r)
            out[int(items["UID"])] = (items["BODY[]"], _norm_flags(items["FLAGS"]))
        return out, uidvalidity


def _lmtp(port, rcpts, msg):
    """One LMTP transaction; returns {rcpt: (code, time of its reply)}."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    f = s.makefile("rb")

    def reply():
        while True:
            line = f.readline()
            if not line:
                raise EOFError("LMTP server closed the connection")
            if line[3:4] != b"-":
                return int(line[:3])

    try:
        assert reply() == 220
        for line in ["LHLO powercut.test", "MAIL FROM:<sender@example.org>"] + \
                [f"RCPT TO:<{r}>" for r in rcpts]:
            s.sendall(line.encode() + b"\r\n")
            code = reply()
            assert code == 250, f"{line}: {code}"
        s.sendall(b"DATA\r\n")
        assert reply() == 354
        body = re.sub(rb"(^|\r\n)\.", rb"\1..", wire(msg))
        s.sendall(body + (b"" if body.endswith(b"\r\n") else b"\r\n") + b".\r\n")
        out = {}
        for r in rcpts:  # RFC 2033 4.2: one reply per accepted recipient
            code = reply()
            out[r] = (code, time.monotonic())
        s.sendall(b"QUIT\r\n")
        return out
    finally:
        s.close()


def _highestmodseq(sess, box):
    untagged, _, _, _ = sess.ok(f'STATUS "{box}" (HIGHESTMODSEQ)')
    for r in untagged:
        m = re.search(rb"HIGHESTMODSEQ (\d+)", r)
        if m:
            return int(m.group(1))
    raise AssertionError(f"STATUS {box}: no HIGHESTMODSEQ in {untagged!r}")


def _learn_uid(sess, tag):
    """(UID, body) the selected mailbox gave the message with this tag (NOOP
    first, so the session sees deliveries made behind its back)."""
    sess.ok("NOOP")
    untagged, _, _, _ = sess.ok("UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    for r in untagged:
        if b" FETCH " in r and f"<{tag}@mailroom.test>".encode() in r:
            _, items = imap_server.fetch_items(r)
            uid = int(items["UID"])
            untagged, _, _, _ = sess.ok(f"UID FETCH {uid} (BODY.PEEK[])")
            _, items = imap_server.fetch_items(untagged[0])
            return uid, items["BODY[]"]
    raise AssertionError(f"{sess.user}: delivered message {tag} not found in INBOX")


def _workload(data, srv, env, tl):
    """Run the operations, recording each acknowledgement in tl."""
    a = Imap(srv.port, "alice")
    b = Imap(srv.port, "bob")
    a.ok("SELECT INBOX")
    b.ok("SELECT INBOX")
    sessions = {"alice": a, "bob": b}
    lmtp_port = srv.ports["lmtp"]

    def observe_modseqs():
        for user, sess in sessions.items():
            for box in BOXES:
                tl.modseqs.append((time.monotonic(), (user, box), _highestmodseq(sess, box)))

    tl.on_add = observe_modseqs

    c = sessions["carol"] = Imap(srv.port, "carol")
    c.ok("SELECT INBOX")

    def delivered(tags_users, name, t0, t1, group=None):
        st = tl.current()
        for tag, user in tags_users:
            sess = sessions[user]
            uid, body = _learn_uid(sess, tag)
            if name.startswith("LMTP"):
                # Return-Path and Received prepended (lmtp_txn.c); one
                # staged file for both recipients, so one body
                assert body.startswith(b"Return-Path: ") and body.endswith(tl.messages[tag]), body
                tl.messages[tag] = body
            assert body == tl.messages[tag], (tag, body)
            st[(user, "INBOX")][uid] = (tag, frozenset())
        tl.add(name, t0, t1, st, group)

    def new_msg(tag):
        m = make_message(tag, 200 + 700 * (len(tl.messages) % 5))
        tl.messages[tag] = wire(m)
        return m

    def store(sess, user, uid, mode, flags):
        _, _, t0, t1 = sess.ok(f"UID STORE {uid} {mode}FLAGS ({' '.join(flags)})")
        st = tl.current()
        tag, old = st[(user, "INBOX")][uid]
        fl = _norm_flags(flags)
        st[(user, "INBOX")][uid] = (tag, old | fl if mode == "+" else old - fl)
        tl.add(f"{user} STORE {mode}FLAGS {uid} {flags}", t0, t1, st)

    def inbox_uids(user):
        return sorted(tl.states[-1][(user, "INBOX")])

    for r in range(ROUNDS):
        kw = r % 6  # a mailbox holds at most 26 keywords; new ones in the first rounds
        # deliver, one recipient
        tag = f"r{r}-deliver1"
        m = new_msg(tag)
        t0 = time.monotonic()
        p = subprocess.run([imap_server.MAILROOM, "deliver", "-d", str(data), "alice"], input=m,
                           env=env, capture_output=True, timeout=60)
        t1 = time.monotonic()
        assert p.returncode == 0, p.stderr
        delivered([(tag, "alice")], f"deliver {tag}", t0, t1)
        # deliver, two recipients (one file, two links)
        tag = f"r{r}-deliver2"
        m = new_msg(tag)
        t0 = time.monotonic()
        p = subprocess.run([imap_server.MAILROOM, "deliver", "-d", str(data), "alice", "bob",
                            "carol"], input=m, env=env, capture_output=True, timeout=60)
        t1 = time.monotonic()
        assert p.returncode == 0, p.stderr
        delivered([(tag, "alice"), (tag, "bob"), (tag, "carol")], f"deliver {tag}", t0, t1)
        # LMTP, two recipients: each 250 is an acknowledgement
        tag = f"r{r}-lmtp"
        m = new_msg(tag)
        t0 = time.monotonic()
        res = _lmtp(lmtp_port, ["carol", "alice", "bob"], m)
        assert all(code == 250 for code, _ in res.values()), res
        for user in ("carol", "alice", "bob"):
            delivered([(tag, user)], f"LMTP {tag} {user}", t0, res[user][1], tag)
        # APPEND with flags and a keyword, to INBOX and to Archive
        for box, flags in (("INBOX", ["\\Seen"]), ("Archive", ["\\Flagged", f"$kw{kw}a"])):
            tag = f"r{r}-append-{box}"
            m = wire(new_msg(tag))
            _, tagged, t0, t1 = a.ok(f'APPEND "{box}" ({" ".join(flags)}) {{{len(m)}}}',
                                     m + b"\r\n")
            uid = int(re.search(rb"APPENDUID \d+ (\d+)", tagged).group(1))
            st = tl.current()
            st[("alice", box)][uid] = (tag, _norm_flags(flags))
            tl.add(f"APPEND {tag}", t0, t1, st)
        a.ok("NOOP")
        uids = inbox_uids("alice")
        # STORE: a flag, a keyword new to the mailbox, a removal
        store(a, "alice", uids[-1], "+", ["\\Flagged"])
        store(a, "alice", uids[-2], "+", [f"$kw{kw}b", "\\Answered"])
        store(a, "alice", uids[-1], "-", ["\\Seen"]) if r % 2 else \
            store(a, "alice", uids[-4], "-", ["\\Seen"])
        store(b, "bob", inbox_uids("bob")[-1], "+", ["\\Seen", f"$bob{kw}"])
        # COPY and MOVE to Archive
        # (in odd rounds the MOVE takes the highest UID away: a rebuilt index
        # must not give it out again)
        for verb, uid in (("COPY", uids[-3]), ("MOVE", uids[-1] if r % 2 else uids[-2])):
            untagged, tagged, t0, t1 = a.ok(f'UID {verb} {uid} "Archive"')
            m = re.search(rb"COPYUID \d+ (\d+) (\d+)", tagged) or next(
                re.search(rb"COPYUID \d+ (\d+) (\d+)", u) for u in untagged if b"COPYUID" in u)
            assert int(m.group(1)) == uid
            st = tl.current()
            tag, fl = st[("alice", "INBOX")][uid]
            st[("alice", "Archive")][int(m.group(2))] = (tag, fl)
            if verb == "MOVE":
                del st[("alice", "INBOX")][uid]
            tl.add(f"{verb} {uid} ({tag})", t0, t1, st)
        # EXPUNGE the oldest message (marked \Deleted, acknowledged as such first)
        uid = inbox_uids("alice")[0]
        store(a, "alice", uid, "+", ["\\Deleted"])
        _, _, t0, t1 = a.ok(f"UID EXPUNGE {uid}")
        st = tl.current()
        tag = st[("alice", "INBOX")].pop(uid)[0]
        tl.add(f"UID EXPUNGE {uid} ({tag})", t0, t1, st)
    for s in sessions.values():
        s.ok("LOGOUT")
        s.c.close()


# ---- checking one cut --------------------------------------------------------------


def _expected(tl, t_cut):
    """(index of the last acknowledged op or -1, P, N, index of the op in
    flight or None): P the state the last acknowledged operation left, N the
    state after the operation in flight at t_cut (P itself if none)."""
    last = -1
    inflight = None
    for i, (_, t0, t1, _) in enumerate(tl.ops):
        if t1 < t_cut:
            last = i
        elif t0 < t_cut and inflight is None:
            inflight = i
    P = tl.states[last + 1]
    N = P
    if inflight is not None:
        # the whole transaction may have happened (LMTP: both recipients)
        end = inflight
        group = tl.ops[inflight][3]
        while group is not None and end + 1 < len(tl.ops) and tl.ops[end + 1][3] == group:
            end += 1
        N = tl.states[end + 1]
    return last, P, N, inflight


def _verify(tl, uidvalidity, observed, t_cut):
    """Problems with the observed state of every mailbox for a cut at t_cut."""
    last, P, N, inflight = _expected(tl, t_cut)
    by_body = {v: k for k, v in tl.messages.items()}
    where_after = {}
    errors = []
    for key in P:
        obs, uv = observed[key]
        p, n = P[key], N[key]
        if uv != uidvalidity[key]:
            errors.append(f"{key}: UIDVALIDITY {uv}, was {uidvalidity[key]}")
        for uid, (body, flags) in obs.items():
            tag = by_body.get(body)
            if tag is None:
                errors.append(f"{key}: UID {uid}: partial or unknown message ({len(body)} bytes)")
                continue
            where_after.setdefault(tag, []).append(key)
            allowed = list(dict.fromkeys(s[uid] for s in (p, n) if uid in s))
            if not allowed:
                errors.append(f"{key}: UID {uid} ({tag}) should not be there"
                              " (expunged, or never acknowledged)")
            elif (tag, flags) not in allowed:
                errors.append(f"{key}: UID {uid}: {tag} {sorted(flags)}, expected "
                              + " or ".join(f"{t} {sorted(f)}" for t, f in allowed))
        for uid, (tag, flags) in p.items():
            if uid not in obs and uid in n:
                errors.append(f"{key}: acknowledged UID {uid} ({tag}, {sorted(flags)}) lost")
    # a message in flight (MOVE) is somewhere: in P's place or in N's
    for key in P:
        for uid, (tag, _) in P[key].items():
            if any(tag == t for s in N.values() for t, _ in s.values()) and tag not in where_after:
                errors.append(f"{tag} (UID {uid} in {key}) is in no mailbox")
    return last, inflight, errors


def _check_cut(k, cutdir, model, tl, uidvalidity, t_cut, rec, failures, seed=None):
    """Write the durable state (with seed: plus a random part of what was not
    synced), start the server on it, check it."""
    data = cutdir / "data"
    cutdir.mkdir(mode=0o755)
    model.write_durable(data, random.Random(seed) if seed is not None else None)
    env_keep = {}
    for var, val in (("LD_PRELOAD", str(PRELOAD)), ("PCLOG_BOOT_ID", str(uuid.uuid4()))):
        env_keep[var] = os.environ.get(var)
        os.environ[var] = val
    try:
        srv = imap_server.start(str(data))
    finally:
        for var, val in env_keep.items():
            if val is None:
                del os.environ[var]
            else:
                os.environ[var] = val
    what = f"cut {k}" + ("" if seed is None else f" random {seed}") + (
        f" (before record #{rec.seq} {rec.op} {rec.path or rec.name1})" if rec else " (the end)")
    try:
        observed = {}
        sessions = {}
        users = sorted({u for u, _ in _expected(tl, t_cut)[1]})
        for user in users:
            sessions[user] = Imap(srv.port, user)
            for box in BOXES:
                observed[(user, box)] = sessions[user].fetch_all(box)
        last, inflight, errors = _verify(tl, uidvalidity, observed, t_cut)
        # no UID is given out again: a new message gets one above all a client saw
        seen = tl.seen_uids[last + 1]
        for (user, box), (obs, _) in observed.items():
            m = wire(make_message(f"probe-{k}-{user}-{box}"))
            _, tagged, _, _ = sessions[user].cmd(f'APPEND "{box}" {{{len(m)}}}', m + b"\r\n")
            mm = re.search(rb"APPENDUID \d+ (\d+)", tagged)
            if not tagged.startswith(b"OK") or mm is None:
                errors.append(f"{(user, box)}: APPEND after the cut: {tagged!r}")
                continue
            floor = max([seen[(user, box)]] + list(obs))
            if int(mm.group(1)) <= floor:
                errors.append(f"{(user, box)}: new APPEND got UID {mm.group(1)},"
                              f" not above {floor} (UID reused)")
            # nor a modseq: the change after the cut gets one above all seen
            ms, was = _highestmodseq(sessions[user], box), tl.modseq_seen((user, box), t_cut)
            if ms <= was:
                errors.append(f"{(user, box)}: HIGHESTMODSEQ {ms} after a new APPEND,"
                              f" a client saw {was} before the cut (modseq went back)")
        for s in sessions.values():
            s.c.close()
    finally:
        srv.stop()
    if not errors:
        c = check(data)
        if c.returncode != 0 or check_problems(c):
            errors.append(f"`mailroom check` after the restart: exit {c.returncode}: "
                          f"{c.stdout.strip()} {c.stderr.strip()}")
    if errors:
        after = tl.ops[last][0] if last >= 0 else "(none)"
        fl = tl.ops[inflight][0] if inflight is not None else "(none)"
        failures.append(f"{what}: last acknowledged: {after}; in flight: {fl}:\n    "
                        + "\n    ".join(errors))
    shutil.rmtree(cutdir)
    return last + 1


def _compare_visible(model, data):
    """The model's view of what programs saw must be the real tree."""
    errors = []

    def walk(o, path, rel):
        names = set(n for n in os.listdir(path))
        if names != set(o.entries):
            errors.append(f"{rel}: names differ: only on disk {sorted(names - set(o.entries))}, "
                          f"only in the model {sorted(set(o.entries) - names)}")
        for n, child in o.entries.items():
            p = os.path.join(path, n)
            if n not in names:
                continue
            if child.kind == "d":
                walk(child, p, f"{rel}/{n}")
            elif not n.endswith("-shm"):
                with open(p, "rb") as f:
                    if f.read() != bytes(child.data):
                        errors.append(f"{rel}/{n}: content differs")

    walk(model.root, str(data), "DATA")
    return errors


@pytest.fixture
def workdir():
    """A folder outside pytest's basetemp: workers (run_user) and `check`
    (which takes the store owner's identity) must reach DATA by its path, and
    a pytest session started meanwhile by someone else resets
    /tmp/pytest-of-USER to 0700 (pytest >= 7.3), which made a cut fail with
    "Permission denied" on a shared machine."""
    d = Path(tempfile.mkdtemp(prefix="mailroom-powercut-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _start_log(tmp_path, data, preload):
    """Snapshot DATA; create the log; the environment that logs beneath DATA."""
    log = tmp_path / "pclog"
    log.write_bytes(b"")
    Path(str(log) + ".seq").write_bytes(b"\0" * 8)
    for p in (log, Path(str(log) + ".seq")):
        os.chmod(p, 0o666)
    snap = replay.snapshot(data)
    env = dict(os.environ, LD_PRELOAD=str(preload), PCLOG_FILE=str(log), PCLOG_ROOT=str(data))
    return snap, log, env


def _read_log(snap, log, data):
    """The records, once it is shown that they account for the tree: replayed
    on the snapshot, they give what is on disk now."""
    recs = replay.read_log(log)
    assert recs, "the preload logged nothing"
    model = replay.Model(snap)
    for r in recs:
        model.apply(r)
    assert not model.unknown, f"records about unknown files: {model.unknown[:5]}"
    diff = _compare_visible(model, data)
    assert not diff, "the log does not account for the tree:\n" + "\n".join(diff[:20])
    return recs


def _cut_points(recs, limit):
    """Indexes to cut before: every fsync, and the end (len(recs)); evenly
    thinned to limit."""
    points = [i for i, r in enumerate(recs) if r.op == "fsync"] + [len(recs)]
    if len(points) > limit:
        step = len(points) / limit
        points = sorted({points[int(i * step)] for i in range(limit - 1)} | {points[-1]})
    return points


def test_power_cut_at_every_fsync(workdir, preload, capsys):
    tmp_path = workdir
    data = tmp_path / "data"
    data.mkdir()
    for u in USERS:
        add_user(data, u)
        for box in ("Drafts", "Sent", "Trash", "Junk"):
            p = run(["mailbox", "delete", "-d", data, u, box])
            assert p.returncode == 0, p.stderr
    messages = {}
    state = {(u, b): {} for u in USERS for b in BOXES}
    for tag, users in (("old-1", ["alice", "bob"]), ("old-2", ["alice"]), ("old-3", ["alice"])):
        m = make_message(tag, 500)
        messages[tag] = wire(m)
        assert run(["deliver", "-d", data] + users, input=m).returncode == 0
    # UIDs and UIDVALIDITY from a server run before the snapshot
    srv = imap_server.start(str(data))
    uidvalidity = {}
    try:
        for u in USERS:
            s = Imap(srv.port, u)
            for box in BOXES:
                got, uidvalidity[(u, box)] = s.fetch_all(box)
                by_body = {v: k for k, v in messages.items()}
                state[(u, box)] = {uid: (by_body[body], fl) for uid, (body, fl) in got.items()}
            s.c.close()
    finally:
        srv.stop()
    tl = Timeline(state, messages)

    # ---- the logged run
    snap, log, env = _start_log(tmp_path, data, preload)
    saved = {k: os.environ.get(k) for k in ("LD_PRELOAD", "PCLOG_FILE", "PCLOG_ROOT")}
    os.environ.update({k: env[k] for k in saved})
    try:
        srv = imap_server.start(str(data), protocols=("imap", "lmtp"))
    finally:
        for k, v in saved.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v
    try:
        _workload(data, srv, env, tl)
    finally:
        srv.stop(timeout=10)
    recs = _read_log(snap, log, data)

    # ---- the cuts: just before each fsync, and the end
    nfsync = sum(1 for r in recs if r.op == "fsync")
    points = _cut_points(recs, MAX_CUTS)
    model = replay.Model(snap)
    failures = []
    acks_checked = 0
    nrandom = 0
    applied = 0
    t_end = time.monotonic()
    for k, idx in enumerate(points):
        while applied < idx:
            model.apply(recs[applied])
            applied += 1
        rec = recs[idx] if idx < len(recs) else None
        t_cut = rec.ns / 1e9 if rec else t_end
        acks_checked += _check_cut(k, tmp_path / f"cut{k}", model, tl, uidvalidity, t_cut, rec,
                                   failures)
        if k % 2 == 1:  # and every other one with a random part of the unsynced changes kept
            acks_checked += _check_cut(k, tmp_path / f"cut{k}r", model, tl, uidvalidity, t_cut,
                                       rec, failures, seed=k)
            nrandom += 1
    with capsys.disabled():
        print(f"\npowercut: {len(tl.ops)} acknowledged operations, {len(recs)} log records,"
              f" {nfsync} fsyncs; {len(points)} cut points (+{nrandom} with random unsynced"
              f" changes kept), {acks_checked} acknowledgements checked,"
              f" {len(failures)} failing cuts")
        for f in failures[:10]:
            print("  " + f)
    assert not failures, f"{len(failures)} of {len(points)} cuts lost acknowledged changes"


# ---- a new user: `mailroom user add`, then its first delivery -----------------------


@pytest.fixture(scope="module")
def new_user_cuts(preload):
    """Cut before every fsync of a logged `user add carol`, `deliver carol`,
    `user add dave`; per cut: (label, passwd problems, store problems)."""
    work = Path(tempfile.mkdtemp(prefix="mailroom-powercut-"))
    try:
        os.chmod(work, 0o755)
        data = work / "data"
        data.mkdir()
        add_user(data, "alice")
        snap, log, env = _start_log(work, data, preload)
        m = make_message("carol-first", 300)
        acks = {}
        for what, args, stdin in (("add carol", ["user", "add", "-d", data, "carol"], b"secret\n"),
                                  ("deliver", ["deliver", "-d", data, "carol"], m),
                                  ("add dave", ["user", "add", "-d", data, "dave"], b"secret\n")):
            p = subprocess.run([imap_server.MAILROOM] + [str(a) for a in args], input=stdin,
                               env=env, capture_output=True, timeout=60)
            acks[what] = time.monotonic()
            assert p.returncode == 0, (what, p.stderr)
        recs = _read_log(snap, log, data)
        out = []
        model = replay.Model(snap)
        applied = 0
        for k, idx in enumerate(_cut_points(recs, 1000)):
            while applied < idx:
                model.apply(recs[applied])
                applied += 1
            t_cut = recs[idx].ns / 1e9 if idx < len(recs) else time.monotonic()
            label = f"cut {k} before " + (f"#{recs[idx].seq} fsync {recs[idx].path}"
                                         if idx < len(recs) else "the end")
            cut = work / f"cut{k}"
            model.write_durable(cut)
            pw_errors, store_errors = [], []
            users = [l.split(":", 1)[0] for l in (cut / "passwd").read_text().splitlines()]
            for user, what in (("carol", "add carol"), ("dave", "add dave")):
                if acks[what] >= t_cut:
                    continue
                if user not in users:
                    pw_errors.append(f"`user add {user}` acknowledged, not in DATA/passwd")
                for sub in ("cur", "new", "tmp"):
                    if not (cut / "mail" / user / "INBOX" / sub).is_dir():
                        store_errors.append(f"`user add {user}` acknowledged, no INBOX/{sub}")
            if acks["deliver"] < t_cut:
                cur = cut / "mail" / "carol" / "INBOX" / "cur"
                bodies = [p.read_bytes() for p in cur.iterdir()] if cur.is_dir() else []
                if bodies != [wire(m)]:
                    store_errors.append("first delivery acknowledged; INBOX/cur holds"
                                        f" {bodies!r:.200}")
            out.append((label, pw_errors, store_errors))
            shutil.rmtree(cut)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_power_cut_new_user_first_delivery(new_user_cuts, capsys):
    """The folders `user add` makes and the first delivery into them are
    durable when acknowledged."""
    bad = [f"{label}: {e}" for label, _, errs in new_user_cuts for e in errs]
    with capsys.disabled():
        print(f"\npowercut new user: {len(new_user_cuts)} cut points, {len(bad)} problems")
    assert not bad, "\n".join(bad[:10])


def test_power_cut_user_add_passwd(new_user_cuts):
    """An acknowledged `user add` is in DATA/passwd after any later cut."""
    bad = [f"{label}: {e}" for label, errs, _ in new_user_cuts for e in errs]
    assert not bad, "\n".join(bad[:10])
