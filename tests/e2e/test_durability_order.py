"""Durability order of every way a message enters or changes (issue 14).

DESIGN.md, "Delivery": stream the message into a staging file; fsync it;
for each recipient link() it into cur/ under its final name and fsync the
directory; remove the staging name; only then answer (LMTP 250, APPEND OK,
`deliver` exit 0). And: a copy is a link(), an expunge is an unlink(), a
flag change is a rename(), nothing is ever rewritten; every message byte is
written once and fsynced once.

Each operation is traced with `strace -f -y` (file descriptors shown with
their paths): `mailroom deliver` to 2 users; for the server, the worker's
threads after login (strace -f -p WORKER), during an LMTP DATA to 2 users,
APPEND, UID COPY, UID MOVE, UID STORE of a flag and of a keyword, and UID
EXPUNGE. Asserted, from the trace, per message:
  - delivery/APPEND: the staged file's last write, then an fsync of that
    file (exactly one: written and fsynced once), before its first link();
  - every link() into a cur/ (deliver, LMTP, APPEND, COPY; MOVE's link or
    rename): completed,
    then an fsync of that same cur/ directory (not its parent, not another
    mailbox's), completed before the reply is written (a write on the client
    socket holding the tagged OK or the LMTP 250) or before exit_group(0);
  - the staging name is unlinked before the reply (step 4);
  - MOVE: by a rename into the destination's cur/ (one step: test_crash_ops
    shows why) or by a link: then the source file is unlinked only after the
    destination cur/ was fsynced (else a crash between could lose the
    message; DESIGN.md does not say this in words, it follows from "never a
    lost one that was acknowledged" and "an expunge is an unlink()");
  - STORE: each message changes by exactly one rename() inside its cur/ to a
    name that differs only in the flag letters, before the OK; no message
    file is written, linked or unlinked. EXPUNGE: an unlink() of each
    expunged file in cur/ before the OK; nothing else happens to message
    files. DESIGN.md promises no fsync for a flag change or an expunge, so
    none is asserted there (the trace's fsyncs are printed).
Calls are ordered by their position in the strace output, which for calls of
different threads is the order strace saw them: an entry ("<unfinished
...>") and a completion ("<... resumed>") are kept apart, and a call counts
as done only at its completion.
"""

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import imap_server
from conftest import (MAILROOM, add_user, make_message, parse_fname, server_worker, strace_attach,
                      strace_detach, thread_ids, wire)
from imap_server import Client

TRACED = ("fsync,fdatasync,link,linkat,rename,renameat,renameat2,unlink,unlinkat,write,writev,"
          "pwrite64,sendmsg,sendto,exit_group")


# ---- reading a trace ------------------------------------------------------------


class Call:
    def __init__(self, tid, name, args, entry):
        self.tid, self.name, self.args, self.entry = tid, name, args, entry
        self.exit = None
        self.result = None

    def fds(self):
        """[(fd, path)] of the arguments shown as fd<path>."""
        return re.findall(r"(\d+)<([^>]*)>", self.args)

    def strings(self):
        return re.findall(r'"((?:[^"\\]|\\.)*)"', self.args)

    def __repr__(self):
        return f"#{self.entry}-{self.exit} {self.tid} {self.name}({self.args[:160]}) = {self.result}"


_START = re.compile(r"^(\d+)\s+([a-z0-9_]+)\((.*)$")
_RESUMED = re.compile(r"^(\d+)\s+<\.\.\. ([a-z0-9_]+) resumed>(.*)$")
_RESULT = re.compile(r"\)\s+=\s+(-?\d+|\?)")


def parse_trace(text):
    calls, open_ = [], {}
    for i, line in enumerate(text.splitlines()):
        m = _RESUMED.match(line)
        if m:
            c = open_.pop(int(m.group(1)), None)
            if c is not None:
                c.exit = i
                r = _RESULT.search(m.group(3))
                c.result = r.group(1) if r else None
            continue
        m = _START.match(line)
        if not m:
            continue
        c = Call(int(m.group(1)), m.group(2), m.group(3), i)
        if m.group(3).endswith("<unfinished ...>"):
            open_[c.tid] = c
        else:
            c.exit = i
            r = _RESULT.search(m.group(3))
            c.result = r.group(1) if r else None
        calls.append(c)
    return [c for c in calls if c.exit is not None]


def _path(dirpath, name):
    return name if name.startswith("/") else f"{dirpath}/{name}"


def links_into_cur(calls, renames=False):
    """[(call, source path, destination dir, destination name)] of the links
    into a cur/ (with renames: also the renames into a cur/ from another
    directory, as a MOVE may do)."""
    out = []
    for c in calls:
        names = ("link", "linkat") + (("rename", "renameat", "renameat2") if renames else ())
        if c.name not in names or c.result != "0":
            continue
        if c.name in ("linkat", "renameat", "renameat2"):
            fds, names = c.fds(), c.strings()
            src, ddir, dname = _path(fds[0][1], names[0]), fds[1][1], names[1]
        else:
            names = c.strings()
            src, ddir, dname = names[0], os.path.dirname(names[1]), os.path.basename(names[1])
        if ddir.endswith("/cur") and (c.name.startswith("link") or os.path.dirname(src) != ddir):
            out.append((c, src, ddir, dname))
    return out


def fsyncs_of(calls, path):
    return [c for c in calls if c.name in ("fsync", "fdatasync") and c.result == "0"
            and c.fds() and c.fds()[0][1] == path]


def writes_to(calls, path):
    return [c for c in calls if c.name in ("write", "writev", "pwrite64")
            and c.fds() and c.fds()[0][1] == path]


def unlinks_of(calls, path):
    out = []
    for c in calls:
        if c.name == "unlinkat" and c.result == "0":
            if _path(c.fds()[0][1], c.strings()[0]) == path:
                out.append(c)
        elif c.name == "unlink" and c.result == "0" and c.strings()[0] == path:
            out.append(c)
    return out


def reply_write(calls, needle):
    """The first write-like call whose shown data holds needle (bytes of the
    reply: a tagged OK, an LMTP 250)."""
    for c in calls:
        if c.name in ("write", "writev", "sendmsg", "sendto") and needle in c.args \
                and c.fds() and c.fds()[0][1].startswith(("TCP", "UNIX", "socket")):
            return c
    return None


def check_delivery(calls, reply, staged, where, renames=False):
    """Problems with the order of the links into cur/ before reply."""
    errors = []
    links = links_into_cur(calls, renames)
    if not links:
        return [f"{where}: no link() into a cur/ directory in the trace"]
    if reply is None:
        return [f"{where}: the reply (or exit) is not in the trace"]
    for link, src, ddir, dname in links:
        if staged:
            fs = [f for f in fsyncs_of(calls, src) if f.exit < link.entry]
            ws = writes_to(calls, src)
            if not fs:
                errors.append(f"{where}: staged file {src} linked into {ddir} without an fsync "
                              f"of it before: {link}")
            elif ws and max(w.exit for w in ws) > fs[-1].entry:
                errors.append(f"{where}: staged file written after its fsync")
        dfs = [f for f in fsyncs_of(calls, ddir) if f.entry > link.exit]
        if not dfs:
            errors.append(f"{where}: no fsync of {ddir} after the link of {dname} "
                          f"(fsyncs after it: {[f.fds()[0][1] for f in calls if f.name == 'fsync' and f.entry > link.exit]})")
        elif dfs[0].exit > reply.entry:
            errors.append(f"{where}: reply {reply} before the fsync of {ddir} completed: {dfs[0]}")
        if link.exit > reply.entry:
            errors.append(f"{where}: reply before the link of {dname}")
    if staged:
        for src in {s for _, s, _, _ in links}:
            if len(fsyncs_of(calls, src)) != 1:
                errors.append(f"{where}: staged file fsynced {len(fsyncs_of(calls, src))} times "
                              f"(once is the design)")
            u = unlinks_of(calls, src)
            if not u:
                errors.append(f"{where}: staging name {src} not removed")
            elif u[0].exit > reply.entry:
                errors.append(f"{where}: reply before the staging name was removed")
    return errors


# ---- running the operations under strace ---------------------------------------------


@pytest.fixture
def root():
    if shutil.which("strace") is None:
        pytest.fail("strace is not installed (scripts/deps.sh installs it)")
    # Outside /tmp/pytest-of-root: see test_crash_ops.py's template fixture.
    d = Path(tempfile.mkdtemp(prefix="mailroom-durability-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _store(root):
    data = root / "data"
    data.mkdir()
    for u in ("a", "b"):
        add_user(data, u, scheme="SHA256-CRYPT")
    return data


def _strace_cmd(out):
    return ["-f", "-y", "-s", "2000", "-o", str(out), "-e", f"trace={TRACED}"]


def test_deliver_order(root):
    data = _store(root)
    out = root / "deliver.trace"
    msg = make_message("durable-deliver", 5000)
    p = subprocess.run(["strace", "-qq"] + _strace_cmd(out) + [MAILROOM, "deliver", "-d", str(data),
                                                              "a", "b"],
                       input=msg, capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    calls = parse_trace(out.read_text())
    # exit_group never completes in a trace: its entry line is the exit.
    text = out.read_text().splitlines()
    ex = [i for i, l in enumerate(text) if re.match(r"^\d+\s+exit_group\(0\)", l)]
    assert ex, "no exit_group(0) in the trace"
    reply = Call(0, "exit_group", "0", ex[-1])
    reply.exit = ex[-1]
    errors = check_delivery(calls, reply, True, "deliver")
    assert len(links_into_cur(calls)) == 2
    assert errors == [], "\n".join(errors)


class _Traced:
    """A server on data, a client logged in; trace(fn) runs fn under
    strace -f -p WORKER and returns the parsed calls."""

    def __init__(self, root, data, protocols=("imap",)):
        self.root, self.srv = root, imap_server.start(data, protocols=protocols)
        self.n = 0

    def trace(self, fn):
        self.n += 1
        out = self.root / f"op{self.n}.trace"
        wpid = server_worker(self.srv)
        tracer = strace_attach(_strace_cmd(out), wpid, [wpid], wait_for=thread_ids(wpid))
        try:
            result = fn()
        finally:
            import time
            time.sleep(0.3)
            strace_detach(tracer)
        return parse_trace(out.read_text()), result

    def stop(self):
        self.srv.stop()


def _append(c, box, msg, flags=""):
    untagged, tagged = c.cmd(f'APPEND "{box}" ({flags}) {{{len(msg)}}}', literal=msg + b"\r\n")
    assert tagged.startswith(b"OK"), tagged
    return tagged


def test_lmtp_order(root):
    data = _store(root)
    t = _Traced(root, data, ("imap", "lmtp"))
    try:
        from test_crash_ops import LmtpConn
        conn = LmtpConn(t.srv)
        assert conn.cmd("LHLO durable.test")[-1].startswith("250")
        assert conn.cmd("MAIL FROM:<s@example.org>")[0].startswith("250")
        for u in ("a", "b"):
            assert conn.cmd(f"RCPT TO:<{u}@example.org>")[0].startswith("250")
        assert conn.cmd("DATA")[0].startswith("354")

        def data_():
            conn.s.sendall(wire(make_message("durable-lmtp", 8000)) + b".\r\n")
            return [conn.line(), conn.line()]
        calls, replies = t.trace(data_)
        conn.close()
    finally:
        t.stop()
    assert all(r.startswith("250") for r in replies), replies
    errors = check_delivery(calls, reply_write(calls, "250 "), True, "LMTP")
    assert len(links_into_cur(calls)) == 2
    assert errors == [], "\n".join(errors)


def _names(data, user, box_dir="INBOX"):
    return sorted(os.listdir(Path(data) / "mail" / user / box_dir / "cur"))


def test_imap_order(root, capsys):
    data = _store(root)
    t = _Traced(root, data)
    errors, report = [], []
    try:
        c = Client(t.srv.port)
        c.login("a", "secret")
        c.ok("CREATE Dest")
        for i in range(3):
            _append(c, "INBOX", make_message(f"durable-pre{i}", 2000))
        c.ok("SELECT INBOX")

        # APPEND: staged, fsynced, linked, cur/ fsynced, then the OK.
        calls, tagged = t.trace(lambda: _append(c, "INBOX", make_message("durable-append", 9000),
                                                r"\Seen"))
        errors += check_delivery(calls, reply_write(calls, f"{c.last_tag()} OK"), True, "APPEND")

        # COPY: a link per message into Dest/cur, fsync of Dest/cur, the OK.
        calls, _ = t.trace(lambda: c.ok("UID COPY 1:2 Dest"))
        errors += check_delivery(calls, reply_write(calls, f"{c.last_tag()} OK"), False, "COPY")
        if len(links_into_cur(calls)) != 2:
            errors.append(f"COPY: {len(links_into_cur(calls))} links for 2 messages")

        # MOVE: as COPY (by a link or a rename into Dest/cur); after a link
        # the source is unlinked only after Dest/cur's fsync, and before OK.
        before = _names(data, "a")
        calls, _ = t.trace(lambda: c.ok("UID MOVE 3 Dest"))
        reply = reply_write(calls, f"{c.last_tag()} OK")
        errors += check_delivery(calls, reply, False, "MOVE", renames=True)
        links = links_into_cur(calls, renames=True)
        if len(links) == 1 and links[0][0].name.startswith("link"):
            link, src, ddir, _ = links[0]
            dfs = [f for f in fsyncs_of(calls, ddir) if f.entry > link.exit]
            u = unlinks_of(calls, src)
            if not u:
                errors.append(f"MOVE: source {src} not unlinked")
            elif dfs and u[0].entry < dfs[0].exit:
                errors.append(f"MOVE: source unlinked before {ddir} was fsynced")
            if u and reply and u[0].exit > reply.entry:
                errors.append("MOVE: OK before the source was unlinked")
        elif len(links) != 1:
            errors.append(f"MOVE: {len(links)} links or renames into Dest/cur for 1 message")
        report.append(f"MOVE: by {links[0][0].name if links else '?'}")
        assert len(_names(data, "a")) == len(before) - 1

        # STORE of a flag, then of a keyword: one rename per message in cur/.
        for what, letters in ((r"+FLAGS.SILENT (\Flagged)", "F"), ("+FLAGS.SILENT ($Work)", None)):
            before = _names(data, "a")
            calls, _ = t.trace(lambda: c.ok(f"UID STORE 1:4 {what}"))
            reply = reply_write(calls, f"{c.last_tag()} OK")
            errors += _check_renames(calls, reply, before, letters, f"STORE {what}")
            report.append(f"STORE {what}: fsyncs {_fsync_paths(calls)}")

        # EXPUNGE: an unlink per message, before the OK.
        c.ok(r"UID STORE 1 +FLAGS.SILENT (\Deleted)")
        before = _names(data, "a")
        calls, _ = t.trace(lambda: c.ok("UID EXPUNGE 1"))
        reply = reply_write(calls, f"{c.last_tag()} OK")
        gone = [n for n in before if parse_fname(n)[0] == 1]
        cur = str((Path(data) / "mail" / "a" / "INBOX" / "cur").resolve())
        for n in gone:
            u = unlinks_of(calls, f"{cur}/{n}")
            if not u:
                errors.append(f"EXPUNGE: {n} not unlinked")
            elif reply is None or u[0].exit > reply.entry:
                errors.append("EXPUNGE: OK before the unlink")
        errors += _no_message_writes(calls, "EXPUNGE", allow_unlink=len(gone), allow_rename=0)
        report.append(f"EXPUNGE: fsyncs {_fsync_paths(calls)}")
        c.cmd("LOGOUT")
        c.close()
    finally:
        t.stop()
    with capsys.disabled():
        print("\n" + "\n".join(report))
    assert errors == [], "\n".join(errors)


def _fsync_paths(calls):
    return [c.fds()[0][1].rsplit("/", 2)[-2:] for c in calls if c.name in ("fsync", "fdatasync")]


def _no_message_writes(calls, where, allow_unlink, allow_rename):
    """No write, link or extra rename/unlink of a file in a cur/."""
    errors = []
    for c in calls:
        fds = c.fds()
        if c.name in ("write", "writev", "pwrite64") and fds and "/cur/" in fds[0][1]:
            errors.append(f"{where}: a message file written: {c}")
        if c.name in ("link", "linkat") and c.result == "0":
            errors.append(f"{where}: a link: {c}")
    unl = [c for c in calls if c.name in ("unlink", "unlinkat") and c.result == "0"
           and c.fds() and c.fds()[0][1].endswith("/cur")]
    ren = [c for c in calls if c.name.startswith("rename") and c.result == "0"
           and c.fds() and c.fds()[0][1].endswith("/cur")]
    if len(unl) != allow_unlink:
        errors.append(f"{where}: {len(unl)} unlinks in cur/, expected {allow_unlink}")
    if len(ren) != allow_rename:
        errors.append(f"{where}: {len(ren)} renames in cur/, expected {allow_rename}")
    return errors


def _check_renames(calls, reply, before, letter, where):
    errors = _no_message_writes(calls, where, 0, len(before))
    if reply is None:
        return errors + [f"{where}: no tagged OK in the trace"]
    for c in calls:
        if not c.name.startswith("rename") or c.result != "0":
            continue
        fds, names = c.fds(), c.strings()
        if len(fds) < 2 or not fds[0][1].endswith("/cur"):
            continue
        old, new = parse_fname(names[0]), parse_fname(names[1])
        if fds[0][1] != fds[1][1] or old is None or new is None:
            errors.append(f"{where}: rename out of its cur/ or of a foreign name: {c}")
            continue
        if names[0].split(":2,")[0] != names[1].split(":2,")[0]:
            errors.append(f"{where}: rename changes more than the flags: {c}")
        if letter and letter not in new[1]:
            errors.append(f"{where}: new name lacks flag {letter}: {names[1]}")
        if new[1] == old[1]:
            errors.append(f"{where}: rename to the same flags: {c}")
        if c.exit > reply.entry:
            errors.append(f"{where}: OK before the rename of {names[0]}")
    return errors
