"""OBJECTID (RFC 8474), SAVEDATE (RFC 8514) and PREVIEW (RFC 8970).

Decisions these tests hold the server to (see src/store/store_message.c,
store_fname.c and src/mime/mime_preview.c):
  - EMAILID is derived from the unique base of the message file's name (all
    hard links of one file share it) and the user's name: equal for a COPY
    and a MOVE, and after the index is lost or DATA copied with rsync -aH;
    two users who got one delivery (one inode) see different EMAILIDs.
  - THREADID is NIL (RFC 8474 5.2: a server that does not support threads).
  - MAILBOXID is the GUID in mailroom-box: kept by RENAME, new after
    DELETE + CREATE, kept after index loss and rsync.
  - The save date is in the file name (,A=<time>): a COPY gets its own, a
    flag change keeps it, index loss and rsync keep it; a name without it
    gives SAVEDATE NIL, and SAVED* searches fall back to INTERNALDATE.
  - PREVIEW is computed at delivery and cached in the index; PREVIEW (LAZY)
    answers NIL for a message not cached (RFC 8970 3.2).
"""
import base64
import datetime
import os
import re
import shutil
import subprocess
import time

import pytest

import imap_server
from conftest import add_user, cur_files, deliver, mailbox_dir, server_worker, strace_attach, \
    strace_detach, thread_ids
from imap_server import Client, fetch_items, parse

OBJECTID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")  # RFC 8474 4, 5.1: objectid


def msg(subject, body, headers=""):
    return (f"From: a@example.com\r\nTo: b@example.com\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@example.com>\r\n{headers}\r\n{body}").encode()


@pytest.fixture
def srv(data):
    add_user(data, "alice")
    s = imap_server.start(data)
    yield s
    s.stop()


def login(srv, user="alice"):
    c = Client(srv.port)
    c.login(user, "secret")
    return c


def fetch_map(c, cmd):
    """{uid: {item: value}} of a UID FETCH."""
    out = {}
    for r in c.ok(cmd):
        _seq, items = fetch_items(r)
        out[int(items["UID"])] = items
    return out


def emailids(c):
    return {u: it["EMAILID"][0] for u, it in fetch_map(c, "UID FETCH 1:* (EMAILID)").items()}


def code_value(lines, code):
    """The list after [CODE ( ... )] in any of lines (bytes), or None."""
    for l in lines:
        m = re.search(rb"\[" + code.encode() + rb" \(([^)]*)\)\]", l)
        if m:
            return m.group(1).decode()
    return None


def status_mailboxid(c, name):
    for r in c.ok(f'STATUS "{name}" (MAILBOXID MESSAGES)'):
        t = parse(r)
        if t[1] == "STATUS":
            items = t[3]
            d = {items[i]: items[i + 1] for i in range(0, len(items), 2)}
            return d["MAILBOXID"][0]
    raise AssertionError("no STATUS response")


def search(c, text):
    for r in c.ok(text):
        if r.startswith(b"* SEARCH"):
            return [int(x) for x in r.split()[2:]]
    raise AssertionError("no SEARCH response")


def test_capabilities_advertised(srv):
    c = login(srv)
    caps = b" ".join(c.ok("CAPABILITY")).split()
    for cap in (b"OBJECTID", b"SAVEDATE", b"PREVIEW"):
        assert cap in caps


# ---- OBJECTID --------------------------------------------------------------


def test_rfc8474_5_1_emailid_same_after_copy_and_move(srv, data):
    c = login(srv)
    c.ok("CREATE Work")
    deliver(data, "alice", msg("one", "first\r\n"))
    deliver(data, "alice", msg("two", "second\r\n"))
    deliver(data, "alice", msg("zero", "in Work first\r\n"), mailbox="Work")  # Work's copies get UIDs 2, 3
    c.ok("SELECT INBOX")
    ids = emailids(c)
    assert len(ids) == 2 and ids[1] != ids[2]
    for v in ids.values():
        assert OBJECTID.match(v), v
    time.sleep(1.1)  # another save date, so the copies' file names differ in A= as well as U=
    c.ok("UID COPY 1 Work")
    c.ok("UID MOVE 2 Work")
    c.ok("SELECT Work")
    work = emailids(c)
    assert work[2] == ids[1] and work[3] == ids[2]
    assert work[1] not in ids.values()
    names = {p.name for _u, _f, p in cur_files(data, "alice", "Work")}
    assert not names & {p.name for _u, _f, p in cur_files(data, "alice")}  # the ids are not the names'
    # RFC 8474 6: SEARCH EMAILID finds the message by its id
    assert search(c, f"UID SEARCH EMAILID {ids[2]}") == [u for u, v in work.items() if v == ids[2]]
    assert search(c, "UID SEARCH EMAILID Mnosuchmessage") == []
    # 5.2: no threads here: THREADID is NIL and SEARCH THREADID finds nothing
    for it in fetch_map(c, "UID FETCH 1:* (THREADID)").values():
        assert it["THREADID"] is None
    assert search(c, "SEARCH THREADID T1") == []
    _u, tagged = c.cmd("SEARCH EMAILID \"bad id!\"")
    assert tagged.startswith(b"BAD")


def test_rfc8474_5_1_emailid_single_instance_two_users(data):
    """One delivery to two users is one file with two links; each user sees
    a stable EMAILID, but not the same one (our choice: ids shown to one user
    say nothing about another's mail). Two deliveries of the same bytes are
    two messages with two ids."""
    add_user(data, "alice")
    add_user(data, "bob")
    p = deliver(data, ["alice", "bob"], msg("shared", "to both\r\n"))
    assert p.returncode == 0, p.stderr
    deliver(data, "alice", msg("shared", "to both\r\n"))
    fa = cur_files(data, "alice")[0][2]
    fb = cur_files(data, "bob")[0][2]
    assert os.stat(fa).st_ino == os.stat(fb).st_ino  # single instance
    s = imap_server.start(data)
    try:
        a = login(s, "alice")
        a.ok("SELECT INBOX")
        ida = emailids(a)
        b = login(s, "bob")
        b.ok("SELECT INBOX")
        idb = emailids(b)
    finally:
        s.stop()
    assert ida[1] != idb[1]
    assert ida[1] != ida[2]


def test_rfc8474_4_mailboxid_create_status_select_rename_delete(srv):
    c = login(srv)
    untagged, tagged = c.cmd("CREATE Work")
    assert tagged.startswith(b"OK")
    created = code_value([tagged], "MAILBOXID")
    assert created is not None and OBJECTID.match(created), tagged
    assert status_mailboxid(c, "Work") == created
    sel = c.ok("SELECT Work")
    assert code_value(sel, "MAILBOXID") == created
    c.ok("UNSELECT")
    c.ok("RENAME Work Play")
    assert status_mailboxid(c, "Play") == created  # 4: RENAME keeps it
    c.ok("DELETE Play")
    _u, tagged = c.cmd("CREATE Play")
    again = code_value([tagged], "MAILBOXID")
    assert again is not None and again != created
    assert status_mailboxid(c, "INBOX") not in (created, again)


def snapshot(port):
    """What must survive: EMAILIDs, SAVEDATEs, MAILBOXIDs, by mailbox."""
    c = Client(port)
    c.login("alice", "secret")
    out = {}
    for box in ("INBOX", "Work"):
        c.ok(f"SELECT {box}")
        f = fetch_map(c, "UID FETCH 1:* (EMAILID SAVEDATE INTERNALDATE)")
        out[box] = ({u: (it["EMAILID"][0], it["SAVEDATE"]) for u, it in f.items()},
                    status_mailboxid(c, box))
    c.close()
    return out


def drop_index(data, user="alice"):
    root = data / "mail" / user
    for n in os.listdir(root):
        if n.startswith("index.sqlite"):
            os.unlink(root / n)


def test_ids_and_savedate_survive_index_loss_and_rsync(data, tmp_path):
    """The disk is the whole truth: delete index.sqlite, or rsync -aH DATA
    to another folder (new inode numbers) and start a server there."""
    add_user(data, "alice")
    deliver(data, "alice", msg("one", "first\r\n"))
    deliver(data, "alice", msg("two", "second\r\n"))
    s = imap_server.start(data)
    try:
        c = login(s)
        c.ok("CREATE Work")
        c.ok("SELECT INBOX")
        c.ok("UID COPY 1:2 Work")
        c.ok("UID STORE 1 +FLAGS (\\Seen)")
        before = snapshot(s.port)
    finally:
        s.stop()
    assert before["INBOX"][0][1][1] is not None  # a save date is known
    drop_index(data)
    s = imap_server.start(data)
    try:
        assert snapshot(s.port) == before
    finally:
        s.stop()
    if shutil.which("rsync") is None:
        pytest.fail("rsync is needed (scripts/deps.sh installs it)")
    spare = tmp_path / "spare"
    p = subprocess.run(["rsync", "-aH", f"{data}/", f"{spare}/"], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    ino = lambda d: os.stat(cur_files(d, "alice")[0][2]).st_ino  # noqa: E731
    assert ino(spare) != ino(data)
    drop_index(spare)
    s = imap_server.start(spare)
    try:
        assert snapshot(s.port) == before
    finally:
        s.stop()


# ---- SAVEDATE ---------------------------------------------------------------


def imap_date(d):
    return f"{d.day}-{d.strftime('%b')}-{d.year}"


def parse_dt(b):
    return datetime.datetime.strptime(b.decode().strip(), "%d-%b-%Y %H:%M:%S %z")


def test_rfc8514_savedate_append_copy_move_flags(srv):
    c = login(srv)
    c.ok("CREATE Work")
    c.ok("CREATE Other")
    m = msg("old", "from the past\r\n")
    _u, tagged = c.cmd(f'APPEND INBOX (\\Seen) "01-Jan-2000 10:00:00 +0000" {{{len(m)}}}',
                       literal=m + b"\r\n")
    assert tagged.startswith(b"OK"), tagged
    c.ok("SELECT INBOX")
    it = fetch_map(c, "UID FETCH 1 (SAVEDATE INTERNALDATE)")[1]
    saved = parse_dt(it["SAVEDATE"])
    assert parse_dt(it["INTERNALDATE"]).year == 2000
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((saved - now).total_seconds()) < 60  # 3: when it was saved, not INTERNALDATE
    today = datetime.date.today()
    # 4.2: SAVEDON / SAVEDSINCE / SAVEDBEFORE use the save date, BEFORE the internal date
    assert search(c, f"UID SEARCH SAVEDON {imap_date(today)}") == [1]
    assert search(c, "UID SEARCH SAVEDSINCE 1-Jan-2001") == [1]
    assert search(c, "UID SEARCH SAVEDBEFORE 1-Jan-2001") == []
    assert search(c, "UID SEARCH BEFORE 1-Jan-2001") == [1]
    assert search(c, "UID SEARCH SAVEDATESUPPORTED") == [1]
    # a flag change (a rename of the file) keeps the save date
    c.ok("UID STORE 1 -FLAGS (\\Seen)")
    assert fetch_map(c, "UID FETCH 1 (SAVEDATE)")[1]["SAVEDATE"] == it["SAVEDATE"]
    time.sleep(1.2)
    c.ok("UID COPY 1 Work")
    c.ok("SELECT Work")
    copied = parse_dt(fetch_map(c, "UID FETCH 1 (SAVEDATE)")[1]["SAVEDATE"])
    assert copied > saved  # the copy was saved in Work later
    time.sleep(1.2)
    c.ok("UID MOVE 1 Other")
    c.ok("SELECT Other")
    moved = parse_dt(fetch_map(c, "UID FETCH 1 (SAVEDATE)")[1]["SAVEDATE"])
    assert moved > copied  # MOVE saves it in Other now


def test_rfc8514_savedate_unknown_is_nil_and_search_uses_internaldate(data):
    """A file whose name has no save date (written before it was kept, or by
    another program): SAVEDATE NIL; SAVED* compare the INTERNALDATE."""
    add_user(data, "alice")
    deliver(data, "alice", msg("plain", "x\r\n"))
    path = cur_files(data, "alice")[0][2]
    stripped = re.sub(r",A=\d+", "", path.name)
    assert stripped != path.name  # delivery wrote one
    os.utime(path, (946720800, 946720800))  # INTERNALDATE 1-Jan-2000
    os.rename(path, path.parent / stripped)
    drop_index(data)
    s = imap_server.start(data)
    try:
        c = login(s)
        c.ok("SELECT INBOX")
        (uid, items), = fetch_map(c, "UID FETCH 1:* (SAVEDATE INTERNALDATE)").items()
        assert items["SAVEDATE"] is None
        assert parse_dt(items["INTERNALDATE"]).year == 2000
        assert search(c, "UID SEARCH SAVEDBEFORE 1-Jan-2001") == [uid]
        assert search(c, "UID SEARCH SAVEDSINCE 1-Jan-2001") == []
    finally:
        s.stop()


# ---- PREVIEW -------------------------------------------------------------------

HTML = ("<html><head><title>T</title><style>p { color: red }</style></head>"
        "<body><p>Hello&nbsp;<b>bold</b> &amp; brave</p>\r\n<script>var x;</script>"
        "<p>world &#233;&#x20AC;</p><!-- a <p>comment</p> --></body></html>\r\n")

PREVIEWS = [
    # (name, message, expected preview)
    ("plain", msg("plain", "Hello   there,\r\n\r\n\tthis is\r\nplain text.\r\n"),
     "Hello there, this is plain text."),
    ("html", msg("html", HTML, "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n"),
     "Hello bold & brave world \u00e9\u20ac"),
    ("qp", msg("qp", "Caf=C3=A9 au lait, a long soft=\r\n break.\r\n",
               "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
               "Content-Transfer-Encoding: quoted-printable\r\n"),
     "Caf\u00e9 au lait, a long soft break."),
    ("base64", msg("b64", base64.encodebytes("Grüße aus Köln\n".encode()).decode().replace("\n", "\r\n"),
                   "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                   "Content-Transfer-Encoding: base64\r\n"),
     "Gr\u00fc\u00dfe aus K\u00f6ln"),
    ("latin1", msg("latin1", "", "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=ISO-8859-1\r\n"
                   "Content-Transfer-Encoding: 8bit\r\n").rstrip(b"\r\n") + b"\r\n\r\nna\xefve fa\xe7ade\r\n",
     "na\u00efve fa\u00e7ade"),
    ("empty", msg("empty", ""), ""),
    ("alternative", msg("alt", "--b\r\nContent-Type: text/html\r\n\r\n<p>HTML version</p>\r\n"
                        "--b\r\nContent-Type: text/plain\r\n\r\nPlain version\r\n--b--\r\n",
                        "MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n"),
     "Plain version"),
    ("attachment-first", msg("att", "--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment;"
                             " filename=a.txt\r\n\r\nattached file\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
                             "the body\r\n--b--\r\n",
                             "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n"),
     "the body"),
    ("image-only", msg("img", "AAAA\r\n", "MIME-Version: 1.0\r\nContent-Type: image/png\r\n"
                       "Content-Transfer-Encoding: base64\r\n"), ""),
]


def previews(c, lazy=False):
    item = "PREVIEW (LAZY)" if lazy else "PREVIEW"
    out = {}
    for u, it in fetch_map(c, f"UID FETCH 1:* ({item})").items():
        v = it["PREVIEW"]
        out[u] = None if v is None else v.decode("utf-8")
    return out


def test_rfc8970_preview_text(srv, data):
    for _name, m, _exp in PREVIEWS:
        deliver(data, "alice", m)
    long = "word " * 100
    deliver(data, "alice", msg("long", long + "\r\n"))
    deliver(data, "alice", msg("utf8", "\u00e9" * 300 + "\r\n",
                               "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"))
    c = login(srv)
    c.ok("SELECT INBOX")
    got = previews(c)
    for i, (name, _m, exp) in enumerate(PREVIEWS):
        assert got[i + 1] == exp, name
    # 3.1: at most 256 characters, whitespace collapsed
    assert got[len(PREVIEWS) + 1] == " ".join(long.split())[:256].rstrip()
    # characters, not bytes: 300 two-byte characters give 256 of them
    assert got[len(PREVIEWS) + 2] == "\u00e9" * 256
    # LAZY: everything delivered here is cached
    assert previews(c, lazy=True) == got
    # the answer is the same for a client without UTF8=ACCEPT (literal) and
    # one with it (quoted)
    c.ok("ENABLE UTF8=ACCEPT")
    assert previews(c) == got


def test_rfc8970_3_2_lazy_after_index_loss(data):
    add_user(data, "alice")
    deliver(data, "alice", PREVIEWS[0][1])
    drop_index(data)
    s = imap_server.start(data)
    try:
        c = login(s)
        c.ok("SELECT INBOX")
        assert previews(c, lazy=True) == {1: None}  # not cached: NIL, no file read
        assert previews(c) == {1: PREVIEWS[0][2]}  # computed and cached
        assert previews(c, lazy=True) == {1: PREVIEWS[0][2]}
        _u, tagged = c.cmd("FETCH 1 (PREVIEW (FOO))")
        assert tagged.startswith(b"BAD")
        # top-level form: FETCH 1 PREVIEW (LAZY)
        r = c.ok("FETCH 1 PREVIEW (LAZY)")
        assert fetch_items(r[0])[1]["PREVIEW"].decode() == PREVIEWS[0][2]
    finally:
        s.stop()


def test_rfc8970_preview_cache_hit_reads_no_file(srv, data):
    """FETCH PREVIEW of a cached message opens no message file (strace on the
    worker); BODY[] of the same message does, which shows the trace sees it."""
    deliver(data, "alice", PREVIEWS[1][1])
    if shutil.which("strace") is None:
        pytest.fail("strace is needed (scripts/deps.sh installs it)")
    c = login(srv)
    c.ok("SELECT INBOX")
    name = cur_files(data, "alice")[0][2].name
    base = name.split(",")[0]
    pid = server_worker(srv)
    log = data.parent / "strace.log"

    def traced(cmd):
        tracer = strace_attach(["-f", "-e", "trace=open,openat,openat2", "-o", str(log)], pid,
                               thread_ids(pid), wait_for=thread_ids(pid))
        try:
            r = c.ok(cmd)
        finally:
            strace_detach(tracer)
        return r, log.read_text()

    r, trace = traced("UID FETCH 1 (PREVIEW)")
    assert fetch_items(r[0])[1]["PREVIEW"].decode() == PREVIEWS[1][2]
    assert base not in trace, trace
    _r, trace = traced("UID FETCH 1 (BODY.PEEK[])")
    assert base in trace


def test_preview_index_of_schema_3_is_upgraded(data):
    """An index written before the preview column (schema 3) gains it on
    open; its cached rows have no preview: LAZY gives NIL, PREVIEW computes."""
    import sqlite3
    add_user(data, "alice")
    deliver(data, "alice", PREVIEWS[0][1])
    db = data / "mail" / "alice" / "index.sqlite"
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM msg_cache WHERE preview IS NOT NULL").fetchone()[0] == 1
    con.execute("ALTER TABLE msg_cache DROP COLUMN preview")
    con.execute("PRAGMA user_version=3")
    con.commit()
    con.close()
    s = imap_server.start(data)
    try:
        c = login(s)
        c.ok("SELECT INBOX")
        assert previews(c, lazy=True) == {1: None}
        assert previews(c) == {1: PREVIEWS[0][2]}
        assert previews(c, lazy=True) == {1: PREVIEWS[0][2]}
    finally:
        s.stop()
