"""Crash at every system call, beyond delivery (issue 14, "Must show 1").

For APPEND, UID COPY, UID MOVE, UID EXPUNGE, UID STORE of flags and of
keywords, RENAME and DELETE of a mailbox (IMAP) and LMTP DATA to 5
recipients, the server's worker is killed (SIGKILL) at entry to each system
call the operation makes, on a fresh copy of one template DATA folder, and
the store is checked after a restart.

Method. The operation runs in the worker, which has an event-loop thread
(main: socket I/O, literal and DATA streaming, STORE, RENAME, DELETE) and a
pool of 4 job threads (session_async: APPEND's commit, COPY, MOVE, EXPUNGE,
the LMTP delivery). strace counts `when=N` per system call *and per
thread* ("per tracee"), so a kill point is (thread role, call name, n-th
call of that name in that thread):
  1. trace run: after login and SELECT, `strace -f -p WORKER` attaches to all
     threads of the worker (login's calls are not counted), the operation
     runs, strace detaches 0.3 s after the reply. Each thread's calls are
     listed in order; the job thread is the pool thread that made calls
     other than waiting.
  2. kill run, per point: same start; strace attaches to the main thread
     only (role main) or to the 4 pool threads only (role job, each with its
     own counter: whichever runs the one job of the operation reaches its
     n-th call; the idle ones only wait on their condition variable) with
     `-e inject=NAME:signal=KILL:when=N`.
What this cannot see: calls made inside the kernel on the worker's behalf
(writeback), and interleavings: a kill in one thread stops the other
wherever it is, which is only one of its possible positions (the operations
here use one job at a time, so the other thread is waiting). `epoll_wait`
and `futex` counts depend on timing (a 1 s timer, lock contention), so such
a point may not be reached: the operation then completes and is checked as
acknowledged, and the count of unreached points is printed. Not used: a
test-only setting for one job thread (not needed with per-thread counters)
and the store's MAILROOM_TEST_FAULT hooks (src/lib/fsx.c), which see only
the store's own write/fsync/link/rename/unlink, not SQLite's writes to the
index nor any other call, and fail a call rather than stop the process.

Bugs found and not fixed here are listed in KNOWN_BUGS: a point that shows
only those makes its operation xfail (printed with a count and an example);
any other problem fails the test.

After each kill (or completion): the server is stopped, a new one started,
and over IMAP: every message is byte-identical to one we gave it (nothing
partial), the mailboxes the operation did not touch are unchanged, the
touched ones hold the old or the new state message by message (a MOVE
leaves each message in exactly one of source and destination, a RENAME is
all done or not, a DELETE leaves the mailbox whole or nothing), an
acknowledged change (tagged OK, LMTP 250) is there, and an APPEND to each
touched mailbox gets a UID above every UID shown before, in a reply, or in a
cur/ file name after the kill (or, for a re-created mailbox, a UIDVALIDITY
that was never shown with that UID). Then `mailroom check` (after that
next open) exits 0 and reports nothing.

Cost: the normal run takes a sample of the kill points of each operation
(every point at an fsync, link, rename, unlink, mkdir, rmdir or ftruncate,
plus every k-th of all points, CRASH_SAMPLE, default 8: about 300 points,
2 minutes on 2 cores); CRASH_FULL=1 (`make crash-full`) runs every point
(about 1,700).
"""

import os
import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import imap_server
from conftest import (LmtpClient, add_user, check, check_damage, check_problems, make_message, mailbox_dir, parse_fname,
                      server_worker, strace_attach, strace_detach, thread_ids, wire)
from imap_server import Client, fetch_items, parse

USERS = ["r1", "r2", "r3", "r4", "r5"]
PARALLEL = max(2, min(4, (os.cpu_count() or 2) + 1))
FULL = os.environ.get("CRASH_FULL") == "1"
SAMPLE = int(os.environ.get("CRASH_SAMPLE", "8"))
FUZZY = {"futex", "epoll_wait", "epoll_pwait", "restart_syscall", "brk", "mmap", "munmap",
         "mremap", "mprotect", "madvise", "sched_yield"}
# Calls that make a step of the store's protocol durable or visible: kill
# points in the sample too (writes, of which SQLite makes many, are sampled
# like the other calls).
CHANGING = re.compile(r"^(fsync|fdatasync|link|linkat|rename|renameat2?|unlink|unlinkat|rmdir|"
                      r"mkdir|mkdirat|ftruncate)$")

# ---- the template -----------------------------------------------------------

MSGS = {f"m{i}": make_message(f"crash-m{i}", 30_000 if i == 2 else 1500) for i in range(1, 7)}
MSGS.update({t: make_message(f"crash-{t}", 1200) for t in ("d1", "d2", "o1", "o2", "k1", "g1",
                                                              "g2")})
MSGS.update({f"old-{u}": make_message(f"crash-old-{u}", 800) for u in USERS})
NEW = make_message("crash-new", 20_000)  # what APPEND and LMTP bring
INBOX_FLAGS = {"m1": r"\Seen", "m2": "", "m3": r"\Flagged", "m4": r"\Deleted",
               "m5": r"\Deleted \Seen", "m6": r"\Deleted"}
BOXES = {"Dest": ["d1", "d2"], "Old": ["o1", "o2"], "Old/Kid": ["k1"], "Gone": ["g1", "g2"]}
KNOWN = {wire(m): t for t, m in MSGS.items()}
KNOWN[wire(NEW)] = "new"


def _norm_flags(flags):
    """System flags case-folded, keywords as they are, \\Recent left out."""
    out = set()
    for f in flags or []:
        f = f.decode() if isinstance(f, bytes) else f
        if f.startswith("\\"):
            if f.lower() != "\\recent":
                out.add(f.lower())
        else:
            out.add(f)
    return frozenset(out)


def _append(c, box, msg, flags=""):
    return c.cmd(f'APPEND "{box}" ({flags}) {{{len(msg)}}}', literal=msg + b"\r\n")


def _make_template(root):
    data = root / "template"
    data.mkdir()
    os.chmod(root, 0o755)
    for u in USERS:
        add_user(data, u, scheme="SHA256-CRYPT")
    srv = imap_server.start(data)
    try:
        for u in USERS:
            c = Client(srv.port)
            c.login(u, "secret")
            for box in ("Drafts", "Sent", "Trash", "Junk", "Archive"):
                c.cmd(f'DELETE "{box}"')  # fewer mailboxes: a faster check per point
            if u == "r1":
                for t, f in INBOX_FLAGS.items():
                    assert _append(c, "INBOX", MSGS[t], f)[1].startswith(b"OK")
                for box, tags in BOXES.items():
                    c.ok(f'CREATE "{box}"')
                for box, tags in BOXES.items():
                    for t in tags:
                        assert _append(c, box, MSGS[t], r"\Seen" if t == "o2" else "")[1] \
                            .startswith(b"OK")
            else:
                assert _append(c, "INBOX", MSGS[f"old-{u}"])[1].startswith(b"OK")
            c.cmd("LOGOUT")
            c.close()
    finally:
        srv.stop()
    chk = check(data)
    assert chk.returncode == 0 and check_problems(chk) == [], chk.stdout + chk.stderr
    return data


def _copy_tree(src, dst):
    subprocess.run(["cp", "-r", "--preserve=links,timestamps,mode", str(src), str(dst)],
                   check=True)


# ---- looking at a user's mailboxes over IMAP -------------------------------


def _select(c, box):
    untagged, tagged = c.cmd(f'SELECT "{box}"')
    if not tagged.startswith(b"OK"):
        return None
    state = {"uidvalidity": None, "exists": 0, "msgs": {}}
    for r in untagged:
        m = re.search(rb"\[UIDVALIDITY (\d+)\]", r)
        if m:
            state["uidvalidity"] = int(m.group(1))
        m = re.match(rb"\* (\d+) EXISTS", r)
        if m:
            state["exists"] = int(m.group(1))
    return state


def _canon(body):
    """LMTP puts trace fields (Return-Path, Delivered-To, Received) above the
    message (RFC 5321 4.4): a body that is a known message below a few
    complete header lines counts as that message."""
    rest = body
    for _ in range(6):
        if rest in KNOWN:
            return rest
        m = re.match(rb"[A-Za-z-]+: [^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*", rest)
        if not m:
            break
        rest = rest[m.end():]
    return body


def _snapshot_user(c):
    """{mailbox: {"uidvalidity", "msgs": {uid: (flags, body)}}} of the
    selectable mailboxes, read with BODY.PEEK (changes nothing)."""
    boxes = {}
    for r in c.ok('LIST "" "*"'):
        t = parse(r)
        if len(t) < 5 or t[1].upper() != "LIST":
            continue
        attrs = {a.lower() for a in t[2]}
        name = t[4].decode() if isinstance(t[4], bytes) else t[4]
        if "\\noselect" in attrs or "\\nonexistent" in attrs:
            continue
        boxes[name] = None
    for name in list(boxes):
        st = _select(c, name)
        if st is None:
            raise AssertionError(f"LIST shows {name} but SELECT fails")
        if st["exists"] > 0:
            for r in c.ok("UID FETCH 1:* (UID FLAGS BODY.PEEK[])"):
                _, items = fetch_items(r)
                st["msgs"][int(items["UID"])] = (_norm_flags(items["FLAGS"]),
                                                 _canon(items["BODY[]"]))
        boxes[name] = st
    return boxes


def _disk_uids(data, user):
    """{mailbox dir name: set of UIDs in cur/ file names} (right after a kill)."""
    out = {}
    root = Path(data) / "mail" / user
    for d in root.iterdir():
        cur = d / "cur"
        if cur.is_dir():
            out[d.name] = {p[0] for p in map(parse_fname, os.listdir(cur)) if p}
    return out


# ---- the operations ----------------------------------------------------------
#
# Each has: users it touches, prep(conn) before strace attaches, run(conn) ->
# reply info (raises on a dead connection; partial info in the dict given),
# and check(before, after, info) -> list of problems for one user.


class ImapConn:
    def __init__(self, srv, user="r1"):
        self.c = Client(srv.port, timeout=20)
        self.c.login(user, "secret")

    def close(self):
        self.c.close()


class LmtpConn(LmtpClient):
    def __init__(self, srv):
        super().__init__(srv.ports["lmtp"])


def _tagged_ok(info, untagged, tagged):
    info["untagged"] = untagged
    info["tagged"] = tagged
    info["acked"] = tagged.startswith(b"OK")
    m = re.search(rb"\[COPYUID \d+ ([\d:,]+) ([\d:,]+)\]", tagged + b" ".join(untagged))
    if m:
        info["copyuid"] = dict(zip(_uidset(m.group(1)), _uidset(m.group(2))))
    m = re.search(rb"\[APPENDUID (\d+) (\d+)\]", tagged)
    if m:
        info["appenduid"] = (int(m.group(1)), int(m.group(2)))


def _uidset(s):
    out = []
    for part in s.decode().split(","):
        a, _, b = part.partition(":")
        out += list(range(int(a), int(b or a) + 1))
    return out


def _uids_of(state, tags):
    by_body = {wire(MSGS[t]): t for t in tags}
    return sorted(u for u, (_, body) in state["msgs"].items() if body in by_body)


def _op_append(conn, info, before):
    _tagged_ok(info, *_append(conn.c, "Dest", NEW, r"\Seen"))


def _prep_select(conn, before):
    conn.c.ok("SELECT INBOX")


def _op_copy(conn, info, before, verb="COPY"):
    uids = _uids_of(before["r1"]["INBOX"], ["m1", "m2", "m3"])
    _tagged_ok(info, *conn.c.cmd(f"UID {verb} {','.join(map(str, uids))} Dest"))


def _op_move(conn, info, before):
    _op_copy(conn, info, before, "MOVE")


def _op_expunge(conn, info, before):
    uids = _uids_of(before["r1"]["INBOX"], ["m4", "m5"])
    _tagged_ok(info, *conn.c.cmd(f"UID EXPUNGE {','.join(map(str, uids))}"))


def _op_store_flags(conn, info, before):
    _tagged_ok(info, *conn.c.cmd(r"UID STORE 1:* +FLAGS.SILENT (\Flagged \Answered)"))


def _op_store_keywords(conn, info, before):
    _tagged_ok(info, *conn.c.cmd(r"UID STORE 1:* +FLAGS.SILENT ($Work Urgent)"))


def _op_rename(conn, info, before):
    _tagged_ok(info, *conn.c.cmd('RENAME "Old" "New"'))


def _op_delete(conn, info, before):
    _tagged_ok(info, *conn.c.cmd('DELETE "Gone"'))


def _prep_lmtp(conn, before):
    assert conn.cmd("LHLO crash.test")[-1].startswith("250")
    assert conn.cmd("MAIL FROM:<sender@example.org>")[0].startswith("250")
    for u in USERS:
        assert conn.cmd(f"RCPT TO:<{u}@example.org>")[0].startswith("250")


def _op_lmtp(conn, info, before):
    info["acked_users"] = []
    info["acked"] = False
    assert conn.cmd("DATA")[0].startswith("354")
    body = re.sub(rb"(?m)^\.", b"..", wire(NEW))
    conn.s.sendall(body + b".\r\n")
    for u in USERS:  # RFC 2033 4.2: one reply per recipient, in RCPT order
        r = conn.line()
        if r.startswith("250"):
            info["acked_users"].append(u)
    info["acked"] = True


# -- checks ---------------------------------------------------------------------


def _same(before, after, boxes, user, errors):
    for b in boxes:
        if before.get(b) != after.get(b):
            errors.append(f"{user}/{b}: changed by an operation that does not touch it: "
                          f"{_describe(before.get(b))} -> {_describe(after.get(b))}")


def _describe(st):
    if st is None:
        return "absent"
    return "{" + ", ".join(f"{u}:{KNOWN.get(b, '?')}{sorted(f)}"
                           for u, (f, b) in sorted(st["msgs"].items())) + "}"


def _grows(user, box, old, new, allowed, acked_uids, errors):
    """new = old plus some of `allowed` ({body: flags}) each at most once,
    with UIDs above old's; acked_uids ({uid: body}) must be there."""
    if new is None:
        errors.append(f"{user}/{box}: mailbox gone")
        return set()
    top = max(old["msgs"], default=0)
    for uid, m in old["msgs"].items():
        if new["msgs"].get(uid) != m:
            errors.append(f"{user}/{box}: old message UID {uid} changed or LOST")
    extra = {u: m for u, m in new["msgs"].items() if u not in old["msgs"]}
    seen = set()
    for uid, (flags, body) in extra.items():
        if body not in allowed:
            errors.append(f"{user}/{box}: unexpected message UID {uid} {KNOWN.get(body, '?')}")
        elif body in seen:
            errors.append(f"{user}/{box}: {KNOWN.get(body)} present twice")
        elif flags != allowed[body]:
            errors.append(f"{user}/{box}: {KNOWN.get(body)} has flags {sorted(flags)}, "
                          f"expected {sorted(allowed[body])}")
        if uid <= top:
            errors.append(f"{user}/{box}: new UID {uid} not above {top}")
        seen.add(body)
    for uid, body in acked_uids.items():
        if new["msgs"].get(uid, (None, None))[1] != body:
            errors.append(f"{user}/{box}: LOST acknowledged {KNOWN.get(body)} (UID {uid})")
    return seen


def _flags_of(st, tag):
    for f, b in st["msgs"].values():
        if b == wire(MSGS[tag]):
            return f
    raise KeyError(tag)


def _check_append(before, after, info):
    errors = []
    b, a = before["r1"], after["r1"]
    _same(b, a, (set(b) | set(a)) - {"Dest"}, "r1", errors)
    acked = {}
    if info.get("acked"):
        acked = {info["appenduid"][1]: wire(NEW)}
    seen = _grows("r1", "Dest", b["Dest"], a.get("Dest"), {wire(NEW): frozenset({"\\seen"})},
                  acked, errors)
    info["applied"] = bool(seen)
    return errors, ["r1/Dest"]


def _check_copy(before, after, info):
    errors = []
    b, a = before["r1"], after["r1"]
    _same(b, a, (set(b) | set(a)) - {"Dest"}, "r1", errors)
    tags = ["m1", "m2", "m3"]
    allowed = {wire(MSGS[t]): _flags_of(b["INBOX"], t) for t in tags}
    acked = {}
    if info.get("acked"):
        src = {u: body for u, (_, body) in b["INBOX"]["msgs"].items()}
        acked = {d: src[s] for s, d in info["copyuid"].items()}
        if len(acked) != 3:
            errors.append(f"COPY acknowledged with COPYUID for {len(acked)} messages")
    seen = _grows("r1", "Dest", b["Dest"], a.get("Dest"), allowed, acked, errors)
    info["partial"] = 0 < len(seen) < 3
    info["applied"] = len(seen) == 3
    return errors, ["r1/Dest"]


def _check_move(before, after, info):
    errors = []
    b, a = before["r1"], after["r1"]
    _same(b, a, (set(b) | set(a)) - {"Dest", "INBOX"}, "r1", errors)
    tags = ["m1", "m2", "m3"]
    moved = {wire(MSGS[t]) for t in tags}
    src_after = a.get("INBOX") or {"msgs": {}}
    for uid, m in b["INBOX"]["msgs"].items():
        if m[1] not in moved and src_after["msgs"].get(uid) != m:
            errors.append(f"r1/INBOX: message UID {uid} not moved but changed or LOST")
    allowed = {wire(MSGS[t]): _flags_of(b["INBOX"], t) for t in tags}
    acked = {}
    if info.get("acked"):
        src = {u: body for u, (_, body) in b["INBOX"]["msgs"].items()}
        acked = {d: src[s] for s, d in info["copyuid"].items()}
    in_dest = _grows("r1", "Dest", b["Dest"], a.get("Dest"), allowed, acked, errors)
    in_src = {body for _, body in src_after["msgs"].values()} & moved
    for t in tags:
        w = wire(MSGS[t])
        if w in in_src and w in in_dest:
            errors.append(f"MOVE: {t} in both INBOX and Dest")
        if w not in in_src and w not in in_dest:
            errors.append(f"MOVE: {t} LOST: in neither INBOX nor Dest")
        if w in in_src:
            olduid = [u for u, m in b["INBOX"]["msgs"].items() if m[1] == w][0]
            if src_after["msgs"].get(olduid) != b["INBOX"]["msgs"][olduid]:
                errors.append(f"MOVE: {t} still in INBOX but changed")
            if info.get("acked"):
                errors.append(f"MOVE acknowledged but {t} still in INBOX")
    info["partial"] = 0 < len(in_dest) < 3
    info["applied"] = len(in_dest) == 3
    return errors, ["r1/INBOX", "r1/Dest"]


def _check_expunge(before, after, info):
    errors = []
    b, a = before["r1"], after["r1"]
    _same(b, a, (set(b) | set(a)) - {"INBOX"}, "r1", errors)
    gone = {wire(MSGS["m4"]), wire(MSGS["m5"])}
    new = a.get("INBOX") or {"msgs": {}}
    for uid, m in b["INBOX"]["msgs"].items():
        now = new["msgs"].get(uid)
        if m[1] not in gone:
            if now != m:
                errors.append(f"r1/INBOX: UID {uid} ({KNOWN.get(m[1])}) not expunged but "
                              f"changed or LOST")
        elif now is not None and (now != m or info.get("acked")):
            errors.append(f"r1/INBOX: UID {uid} ({KNOWN.get(m[1])}) still there after an "
                          f"acknowledged expunge, or changed")
    for uid in new["msgs"]:
        if uid not in b["INBOX"]["msgs"]:
            errors.append(f"r1/INBOX: new UID {uid} appeared")
    left = len([u for u, m in new["msgs"].items() if m[1] in gone])
    info["partial"] = left == 1
    info["applied"] = left == 0
    return errors, ["r1/INBOX"]


def _check_store(added):
    def check_(before, after, info):
        errors = []
        b, a = before["r1"], after["r1"]
        _same(b, a, (set(b) | set(a)) - {"INBOX"}, "r1", errors)
        new = a.get("INBOX") or {"msgs": {}}
        if set(new["msgs"]) != set(b["INBOX"]["msgs"]):
            errors.append(f"r1/INBOX: UIDs {sorted(b['INBOX']['msgs'])} became "
                          f"{sorted(new['msgs'])} (a message LOST or doubled by STORE)")
        done = 0
        for uid, (flags, body) in b["INBOX"]["msgs"].items():
            if uid not in new["msgs"]:
                continue
            nflags, nbody = new["msgs"][uid]
            if nbody != body:
                errors.append(f"r1/INBOX: UID {uid} has another body")
            want = flags | added
            if nflags == want:
                done += 1
            elif nflags != flags or info.get("acked"):
                errors.append(f"r1/INBOX: UID {uid} flags {sorted(nflags)}: neither "
                              f"{sorted(flags)} nor {sorted(want)}"
                              + (" (acknowledged)" if info.get("acked") else ""))
        info["partial"] = 0 < done < len(b["INBOX"]["msgs"])
        info["applied"] = done == len(b["INBOX"]["msgs"])
        return errors, ["r1/INBOX"]
    return check_


def _check_rename(before, after, info):
    errors = []
    b, a = before["r1"], after["r1"]
    moved = {"Old": "New", "Old/Kid": "New/Kid"}
    _same(b, a, (set(b) | set(a)) - set(moved) - set(moved.values()), "r1", errors)
    old_state = all(a.get(o) == b[o] for o in moved) and all(n not in a for n in moved.values())
    new_state = all(o not in a for o in moved) and all(
        a.get(n) is not None and a[n]["msgs"] == b[o]["msgs"] for o, n in moved.items())
    if not (old_state or new_state):
        errors.append("RENAME half done or contents changed: "
                      + "; ".join(f"{k}={_describe(a.get(k))}" for k in
                                  list(moved) + list(moved.values())))
    info["applied"] = new_state
    if info.get("acked") and not new_state:
        errors.append("RENAME acknowledged but not done")
    return errors, ["r1/New" if new_state else "r1/Old"]


def _check_delete(before, after, info):
    errors = []
    b, a = before["r1"], after["r1"]
    _same(b, a, (set(b) | set(a)) - {"Gone"}, "r1", errors)
    if "Gone" in a and a["Gone"] != b["Gone"]:
        errors.append(f"DELETE left Gone partly deleted: {_describe(a['Gone'])}")
    info["applied"] = "Gone" not in a
    if info.get("acked") and "Gone" in a:
        errors.append("DELETE acknowledged but Gone still there")
    return errors, ["r1/Gone"]


def _check_lmtp(before, after, info):
    errors = []
    for u in USERS:
        b, a = before[u], after[u]
        _same(b, a, (set(b) | set(a)) - {"INBOX"}, u, errors)
        seen = _grows(u, "INBOX", b["INBOX"], a.get("INBOX"), {wire(NEW): frozenset()}, {},
                      errors)
        if u in info.get("acked_users", []) and not seen:
            errors.append(f"{u}/INBOX: LOST: LMTP answered 250 but the message is not there")
    n = sum(1 for u in USERS if any(m[1] == wire(NEW) for m in after[u]["INBOX"]["msgs"].values()))
    info["partial"] = 0 < n < len(USERS)
    info["applied"] = n == len(USERS)
    return errors, [f"{u}/INBOX" for u in USERS]


# Bugs this test found that are not fixed yet: (pattern of the problem,
# what it is). A point that shows only these makes the operation's test
# xfail, with the count printed; any other problem fails it; once fixed,
# the test passes and the entry can go.
KNOWN_BUGS = {}

OPS = {
    "APPEND": (["r1"], None, _op_append, _check_append),
    "COPY": (["r1"], _prep_select, _op_copy, _check_copy),
    "MOVE": (["r1"], _prep_select, _op_move, _check_move),
    "UID EXPUNGE": (["r1"], _prep_select, _op_expunge, _check_expunge),
    "STORE flags": (["r1"], _prep_select, _op_store_flags,
                    _check_store(frozenset({"\\flagged", "\\answered"}))),
    "STORE keywords": (["r1"], _prep_select, _op_store_keywords,
                       _check_store(frozenset({"$Work", "Urgent"}))),
    "RENAME": (["r1"], None, _op_rename, _check_rename),
    "DELETE": (["r1"], None, _op_delete, _check_delete),
    "LMTP DATA x5": (USERS, _prep_lmtp, _op_lmtp, _check_lmtp),
}


# ---- running one operation under strace ---------------------------------------


def _start(data, lmtp):
    return imap_server.start(data, protocols=("imap", "lmtp") if lmtp else ("imap",))


def _alive(pid):
    return imap_server._running(pid)


def _run_op(data, op, before, strace_args=None, role=None):
    """Start a server on data, prepare, attach strace (trace or inject), run
    the operation. Returns (info, killed, trace lines or None)."""
    users, prep, run, _ = OPS[op]
    lmtp = op.startswith("LMTP")
    srv = _start(data, lmtp)
    conn = None
    try:
        conn = LmtpConn(srv) if lmtp else ImapConn(srv)
        if prep:
            prep(conn, before)
        wpid = server_worker(srv)
        tids = thread_ids(wpid)
        targets = tids[1:] if role == "job" else [wpid]
        tracer = strace_attach(strace_args, wpid, targets)
        info = {"acked": False}
        try:
            run(conn, info, before)
        except (EOFError, OSError, AssertionError) as e:
            info["error"] = repr(e)
        time.sleep(0.3)  # the calls after the reply
        killed = not _alive(wpid)
        strace_detach(tracer)
        return info, killed, wpid
    finally:
        if conn:
            conn.close()
        srv.stop()


_LINE = re.compile(r"^(\d+)\s+([a-z0-9_]+)\(")


def _trace(template, work, op, before):
    data = work / f"trace-{op.replace(' ', '_')}"
    _copy_tree(template, data)
    out = work / f"trace-{op.replace(' ', '_')}.txt"
    info, killed, wpid = _run_op(data, op, before, ["-f", "-o", str(out)], None)
    assert not killed and info.get("acked"), (op, info)
    seqs = {}
    for line in out.read_text().splitlines():
        m = _LINE.match(line)
        if m:
            seqs.setdefault(int(m.group(1)), []).append(m.group(2))
    main = seqs.pop(wpid, [])
    busy = [t for t, s in seqs.items() if set(s) - {"futex"}]
    assert len(busy) <= 1, f"{op}: work in more than one job thread: {busy}"
    job = seqs[busy[0]] if busy else []
    shutil.rmtree(data)
    return {"main": main, "job": job}


def _points(seqs):
    """[(role, name, occurrence, index)] of every call, and the sample."""
    pts = []
    for role, names in seqs.items():
        for k, name in enumerate(names):
            pts.append((role, name, names[: k + 1].count(name), k))
    if FULL:
        return pts, pts
    sample = [p for i, p in enumerate(pts) if CHANGING.match(p[1]) or i % SAMPLE == 0]
    return pts, sample


# ---- after the kill --------------------------------------------------------


def _verify(data, op, before, info, disk_after_kill):
    """Restart, look, probe UIDs, stop, check. Returns problems."""
    users, _, _, check_fn = OPS[op]
    errors = []
    srv = _start(data, False)
    try:
        after = {}
        conns = {}
        for u in users:
            c = Client(srv.port, timeout=20)
            c.login(u, "secret")
            conns[u] = c
            after[u] = _snapshot_user(c)
        for u, boxes in after.items():
            for b, st in boxes.items():
                for uid, (_, body) in st["msgs"].items():
                    if body not in KNOWN:
                        errors.append(f"{u}/{b}: partial or unknown message UID {uid} "
                                      f"({len(body)} bytes)")
        errs, touched = check_fn(before, after, info)
        errors += errs
        # No UID reused: an APPEND to each touched mailbox gets a UID above
        # every UID shown for it (same UIDVALIDITY) or a new UIDVALIDITY.
        for ub in touched:
            u, box = ub.split("/", 1)
            c = conns[u]
            shown = set()
            for snap in (before[u], after[u]):
                if snap.get(box):
                    shown |= {(snap[box]["uidvalidity"], uid) for uid in snap[box]["msgs"]}
            src = {"New": "Old"}.get(box)
            if src and before[u].get(src):
                shown |= {(before[u][src]["uidvalidity"], uid) for uid in before[u][src]["msgs"]}
            dirname = mailbox_dir(data, u, box).name
            vals = {v for v, _ in shown}
            for uid in disk_after_kill.get(u, {}).get(dirname, ()):
                shown |= {(v, uid) for v in vals}
            if "appenduid" in info and box == "Dest":
                shown.add(info["appenduid"])
            if "copyuid" in info and box == "Dest" and after[u].get("Dest"):
                shown |= {(after[u]["Dest"]["uidvalidity"], d) for d in info["copyuid"].values()}
            if box not in after[u]:
                c.ok(f'CREATE "{box}"')
            untagged, tagged = _append(c, box, make_message("crash-probe"))
            m = re.search(rb"\[APPENDUID (\d+) (\d+)\]", tagged)
            if not m:
                errors.append(f"{ub}: probe APPEND failed: {tagged!r}")
                continue
            got = (int(m.group(1)), int(m.group(2)))
            same_validity = [uid for v, uid in shown if v == got[0]]
            if same_validity and got[1] <= max(same_validity):
                errors.append(f"{ub}: UID REUSED: probe got UID {got[1]} (UIDVALIDITY {got[0]})"
                              f", but UID {max(same_validity)} was shown")
        for c in conns.values():
            c.cmd("LOGOUT")
            c.close()
    finally:
        srv.stop()
    chk = check(data)
    if chk.returncode != 0 or check_damage(chk):
        # Say whether --repair resolves it (for the report; still a problem).
        rep = check(data, repair=True)
        again = check(data)
        fixed = again.returncode == 0 and not check_problems(again)
        errors.append(f"check after the next open: exit {chk.returncode}: "
                      f"{chk.stdout.strip()} {chk.stderr.strip()} [check --repair: exit "
                      f"{rep.returncode}, then check {'clean' if fixed else 'NOT clean'}]")
    return errors


def _kill_point(template, work, op, before, point):
    role, name, nth, k = point
    data = work / f"{op.replace(' ', '_')}-{role}-{k}"
    _copy_tree(template, data)
    where = f"{op}: kill at {role} call #{k} {name} (occurrence {nth})"
    try:
        info, killed, _ = _run_op(data, op, before,
                                  ["-o", "/dev/null", "-e", f"trace={name}", "-e",
                                   f"inject={name}:signal=KILL:when={nth}"], role)
        errors = []
        if not killed and name not in FUZZY:
            errors.append(f"{where}: not reached (op completed: {info})")
        if not killed and not info.get("acked"):
            errors.append(f"{where}: worker alive but the operation failed: {info}")
        disk = {u: _disk_uids(data, u) for u in OPS[op][0]}
        errors += [f"{where}: {e}" for e in _verify(data, op, before, info, disk)]
        return killed, bool(info.get("acked")), bool(info.get("partial")), errors, \
            bool(info.get("applied"))
    except Exception as e:  # a harness failure is a failure of this point
        return False, False, False, [f"{where}: {type(e).__name__}: {e}"], False
    finally:
        shutil.rmtree(data, ignore_errors=True)


def _snapshot_all(template):
    data = template.parent / "snap"
    _copy_tree(template, data)
    srv = _start(data, False)
    try:
        out = {}
        for u in USERS:
            c = Client(srv.port, timeout=20)
            c.login(u, "secret")
            out[u] = _snapshot_user(c)
            c.cmd("LOGOUT")
            c.close()
    finally:
        srv.stop()
        shutil.rmtree(data)
    return out


@pytest.fixture(scope="module")
def template():
    if shutil.which("strace") is None:
        pytest.fail("strace is not installed (scripts/deps.sh installs it)")
    # Not below /tmp/pytest-of-root: every pytest session that starts makes
    # that 0700 again until its own fixture opens it, and the server's
    # workers and `check` (run_user when started as root) then cannot reach
    # DATA for a moment, which fails a point now and then when several test
    # runs share the machine.
    root = Path(tempfile.mkdtemp(prefix="mailroom-crashops-"))
    os.chmod(root, 0o755)
    try:
        t = _make_template(root)
        yield root, t, _snapshot_all(t)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("op", list(OPS))
def test_kill_at_every_call(template, op, capsys):
    root, tpl, before = template
    work = root / op.replace(" ", "_")
    work.mkdir()
    t0 = time.monotonic()
    seqs = _trace(tpl, work, op, before)
    pts, sample = _points(seqs)
    with ThreadPoolExecutor(PARALLEL) as pool:
        results = list(pool.map(lambda p: _kill_point(tpl, work, op, before, p), sample))
    errors = [e for r in results for e in r[3]]
    known = {}
    for pattern, reason in KNOWN_BUGS.get(op, []):
        hit = [e for e in errors if re.search(pattern, e)]
        if hit:
            known[reason] = (len({h.split(": ", 2)[1] for h in hit}), hit[0])
        errors = [e for e in errors if e not in hit]
    killed = sum(1 for r in results if r[0])
    acked = sum(1 for r in results if r[1])
    partial = sum(1 for r in results if r[2])
    applied = sum(1 for r in results if r[4])
    ok = sum(1 for r in results if not r[3])
    with capsys.disabled():
        print(f"\n{op}: {len(pts)} kill points ({len(seqs['main'])} main-thread, "
              f"{len(seqs['job'])} job-thread calls), {len(sample)} run"
              f"{'' if FULL else f' (sample: every fsync, link, rename, unlink, mkdir, rmdir + every {SAMPLE}th call)'}, "
              f"{ok} ok; {killed} killed, {len(sample) - killed} not reached (op completed), "
              f"{acked} acknowledged; change visible after restart at {applied}, "
              f"not at all at {len(sample) - applied - partial}, partly (some messages) "
              f"at {partial} "
              f"[{time.monotonic() - t0:.0f} s]")
        for reason, (n, example) in known.items():
            print(f"  KNOWN BUG at {n} kill points: {reason}\n    e.g. {example[:400]}")
    assert errors == [], "\n".join(errors[:30]) + f"\n({len(errors)} problems)"
    assert killed >= len(sample) * 0.8
    if known:
        pytest.xfail("; ".join(known))


def test_move_fails_midway(template, capsys):
    """MOVE of 3 messages whose n-th rename (MAILROOM_TEST_FAULT=rename:n:EIO
    in the server) fails: a NO leaves all three in INBOX and none in Dest
    (store_mailbox_copy.c's move_undo renames back what had moved; RFC 6851
    3.3 asks for a MOVE that fails to change nothing); an OK has moved all
    three; the store is consistent after the next open either way."""
    root, tpl, before = template
    work = root / "move-faults"
    work.mkdir()
    failed = 0
    errors = []
    for n in range(1, 9):
        data = work / f"n{n}"
        _copy_tree(tpl, data)
        old = os.environ.get("MAILROOM_TEST_FAULT")
        os.environ["MAILROOM_TEST_FAULT"] = f"rename:{n}:EIO"
        try:
            srv = _start(data, False)
        finally:
            if old is None:
                del os.environ["MAILROOM_TEST_FAULT"]
            else:
                os.environ["MAILROOM_TEST_FAULT"] = old
        info = {"acked": False}
        try:
            conn = ImapConn(srv)
            _prep_select(conn, before)
            _op_move(conn, info, before)
            conn.close()
        finally:
            srv.stop()
        if not info["acked"]:
            failed += 1
        srv = _start(data, False)
        try:
            c = Client(srv.port, timeout=20)
            c.login("r1", "secret")
            after = {"r1": _snapshot_user(c)}
            c.cmd("LOGOUT")
            c.close()
        finally:
            srv.stop()
        errs, _ = _check_move(before, after, info)
        errors += [f"rename:{n}:EIO: {e}" for e in errs]
        if not info["acked"] and after["r1"].get("Dest") != before["r1"]["Dest"]:
            errors.append(f"rename:{n}:EIO: MOVE answered {info.get('tagged')!r} but Dest changed: "
                          f"{_describe(after['r1'].get('Dest'))}")
        chk = check(data)
        if chk.returncode != 0 or check_damage(chk):
            errors.append(f"rename:{n}:EIO: check exit {chk.returncode}: {chk.stdout}")
    with capsys.disabled():
        print(f"\nMOVE with the n-th rename failing, n = 1..8: {failed} answered NO, "
              f"{8 - failed} OK, {len(errors)} problems")
    assert errors == [], "\n".join(errors)
    assert failed > 0, "no injected rename fault made a MOVE fail"
