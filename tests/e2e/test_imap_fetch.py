"""FETCH / UID FETCH against a real `mailroom serve` (RFC 9051 6.4.5, 7.5.2;
RFC 3516 BINARY; RFC 7162 CONDSTORE / QRESYNC).

Expected values are computed here from the bytes delivered (split by hand
where the RFC says a section starts and ends), never taken from mailroom.
ENVELOPE and BODYSTRUCTURE are compared with `mailroom mime` run on the
stored file (the mime module is verified against Dovecot separately).
"""

import base64
import os
import re
import resource
import threading
import time

import pytest

import imap_server
from conftest import add_user, cur_files, deliver, mailbox_dir, run, wire
from imap_server import Client, fetch_items, parse

PW = "secret"

M1 = (b"From: Alice Example <alice@example.com>\r\n"
      b"To: Bob <bob@example.org>\r\n"
      b"Subject: simple one\r\n"
      b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
      b"Message-ID: <m1@example.com>\r\n"
      b"\r\n"
      b"Hello, world.\r\n"
      b"Second line.\r\n")

ATTACH = bytes(range(256)) * 4
ATTACH_B64 = base64.encodebytes(ATTACH).replace(b"\n", b"\r\n").rstrip(b"\r\n")
P1_MIME = (b"Content-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: quoted-printable\r\n\r\n")
P1_BODY = b"caf=C3=A9 au=\r\n lait"
P3_HEADER = b"From: inner@example.com\r\nSubject: inner\r\n\r\n"
P3_BODY = b"inner body"
M2_HEADER = (b"From: carol@example.net\r\n"
             b"To: alice@example.com\r\n"
             b"Subject: multipart\r\n"
             b"Date: Tue, 8 Feb 1994 10:00:00 +0000\r\n"
             b"MIME-Version: 1.0\r\n"
             b"Content-Type: multipart/mixed; boundary=\"XYZ\"\r\n"
             b"\r\n")
M2_TEXT = (b"preamble\r\n"
           b"--XYZ\r\n" + P1_MIME + P1_BODY + b"\r\n"
           b"--XYZ\r\n"
           b"Content-Type: application/octet-stream\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n" + ATTACH_B64 + b"\r\n"
           b"--XYZ\r\n"
           b"Content-Type: message/rfc822\r\n\r\n" + P3_HEADER + P3_BODY + b"\r\n"
           b"--XYZ--\r\n")
M2 = M2_HEADER + M2_TEXT

# delivered with bare LF: the store keeps CRLF
M3 = b"From: lf@example.com\nSubject: bare lf\n\nline one\nline two\n"

M4_BODY = b"".join(b"%07d the quick brown fox jumps over the lazy dog\r\n" % i for i in range(60000))
M4 = b"From: big@example.com\r\nSubject: big\r\n\r\n" + M4_BODY

M5 = (b"From: uu@example.com\r\nSubject: uuencoded\r\n"
      b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n`\r\nend\r\n")

MESSAGES = [M1, M2, M3, M4, M5]


def new_data(parent):
    """A DATA folder the server's workers (run_user, when started as root)
    can reach: conftest opens pytest's base folders, this opens the test's."""
    os.chmod(parent, 0o755)
    data = parent / "data"
    data.mkdir()
    return data


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    data = new_data(tmp_path_factory.mktemp("fetch"))
    add_user(data, "alice", PW)
    for m in MESSAGES:
        deliver(data, ["alice"], m)
    srv = imap_server.start(data)
    yield data, srv
    srv.stop()


@pytest.fixture
def c(env):
    _, srv = env
    cl = Client(srv.port)
    cl.login("alice", PW)
    cl.ok("EXAMINE INBOX")
    yield cl
    cl.close()


def one(cl, command):
    """Run a FETCH expected to give exactly one FETCH response."""
    untagged, tagged = cl.cmd(command)
    assert tagged.startswith(b"OK"), tagged
    fetches = [u for u in untagged if re.match(rb"\* \d+ FETCH ", u)]
    assert len(fetches) == 1, untagged
    return fetch_items(fetches[0])


def stored_path(data, uid):
    return {u: p for u, _, p in cur_files(data, "alice")}[uid]


# ---- message data ---------------------------------------------------------------

def test_body_whole_and_size(c):
    for seq, m in enumerate(MESSAGES, 1):
        _, items = one(c, f"FETCH {seq} (BODY.PEEK[] RFC822.SIZE)")
        assert items["BODY[]"] == wire(m)
        assert int(items["RFC822.SIZE"]) == len(wire(m))


def test_header_text_sections(c):
    _, items = one(c, "FETCH 2 (BODY.PEEK[HEADER] BODY.PEEK[TEXT])")
    assert items["BODY[HEADER]"] == M2_HEADER
    assert items["BODY[TEXT]"] == M2_TEXT
    _, items = one(c, "FETCH 1 (RFC822.HEADER RFC822.TEXT)")
    assert items["RFC822.HEADER"] == M1.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    assert items["RFC822.TEXT"] == M1.split(b"\r\n\r\n", 1)[1]


def test_part_sections(c):
    _, items = one(c, "FETCH 2 (BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[2] BODY.PEEK[3.HEADER] "
                      "BODY.PEEK[3.TEXT] BODY.PEEK[3.1] BODY.PEEK[3])")
    assert items["BODY[1]"] == P1_BODY            # RFC 2046 5.1.1: CRLF before --XYZ excluded
    assert items["BODY[1.MIME]"] == P1_MIME
    assert items["BODY[2]"] == ATTACH_B64
    assert items["BODY[3.HEADER]"] == P3_HEADER
    assert items["BODY[3.TEXT]"] == P3_BODY
    assert items["BODY[3.1]"] == P3_BODY
    assert items["BODY[3]"] == P3_HEADER + P3_BODY
    # a single-part message: part 1 is its body
    _, items = one(c, "FETCH 1 (BODY.PEEK[1])")
    assert items["BODY[1]"] == M1.split(b"\r\n\r\n", 1)[1]


def test_missing_part_is_nil(c):
    _, items = one(c, "FETCH 2 (BODY.PEEK[9] BODY.PEEK[2.HEADER])")
    assert items["BODY[9]"] is None
    assert items["BODY[2.HEADER]"] is None


def test_header_fields(c):
    _, items = one(c, "FETCH 1 (BODY.PEEK[HEADER.FIELDS (subject To)])")
    # field names are echoed upper-cased; fields in message order, then CRLF
    assert items["BODY[HEADER.FIELDS (SUBJECT TO)]"] == \
        b"To: Bob <bob@example.org>\r\nSubject: simple one\r\n\r\n"
    _, items = one(c, "FETCH 1 (BODY.PEEK[HEADER.FIELDS.NOT (Subject To Date Message-ID)])")
    assert items["BODY[HEADER.FIELDS.NOT (SUBJECT TO DATE MESSAGE-ID)]"] == \
        b"From: Alice Example <alice@example.com>\r\n\r\n"
    _, items = one(c, "FETCH 2 (BODY.PEEK[3.HEADER.FIELDS (SUBJECT)])")
    assert items["BODY[3.HEADER.FIELDS (SUBJECT)]"] == b"Subject: inner\r\n\r\n"


def test_partial(c):
    w = wire(M1)
    _, items = one(c, "FETCH 1 (BODY.PEEK[]<10.20>)")
    assert items["BODY[]<10>"] == w[10:30]
    _, items = one(c, "FETCH 1 (BODY.PEEK[]<100.100000>)")
    assert items["BODY[]<100>"] == w[100:]
    _, items = one(c, f"FETCH 1 (BODY.PEEK[]<{len(w) + 5}.10>)")
    assert items[f"BODY[]<{len(w) + 5}>"] == b""
    _, items = one(c, "FETCH 2 (BODY.PEEK[TEXT]<5.7>)")
    assert items["BODY[TEXT]<5>"] == M2_TEXT[5:12]
    # a cut inside a big body (sendfile path for the range)
    w4 = wire(M4)
    _, items = one(c, "FETCH 4 (BODY.PEEK[]<1000000.300000>)")
    assert items["BODY[]<1000000>"] == w4[1000000:1300000]


def test_bare_lf_message_is_served_with_crlf(c):
    w = wire(M3)
    assert b"\r\n" in w and b"\n\n" not in w
    _, items = one(c, "FETCH 3 (BODY.PEEK[] BODY.PEEK[TEXT] RFC822.SIZE)")
    assert items["BODY[]"] == w
    assert items["BODY[TEXT]"] == b"line one\r\nline two\r\n"
    assert int(items["RFC822.SIZE"]) == len(w)


def test_binary(c):
    _, items = one(c, "FETCH 2 (BINARY.PEEK[1] BINARY.PEEK[2] BINARY.SIZE[1] BINARY.SIZE[2])")
    assert items["BINARY[1]"] == "café au lait".encode()
    assert items["BINARY[2]"] == ATTACH
    assert int(items["BINARY.SIZE[1]"]) == len("café au lait".encode())
    assert int(items["BINARY.SIZE[2]"]) == len(ATTACH)
    # content with NUL goes as literal8 (RFC 3516 4.2)
    untagged, _ = c.cmd("FETCH 2 (BINARY.PEEK[2])")
    assert b"BINARY[2] ~{1024}\r\n" in untagged[0]
    _, items = one(c, "FETCH 2 (BINARY.PEEK[2]<3.5>)")
    assert items["BINARY[2]<3>"] == ATTACH[3:8]


def test_binary_unknown_cte(c):
    untagged, tagged = c.cmd("FETCH 5 (BINARY.PEEK[1])")
    assert tagged.startswith(b"NO [UNKNOWN-CTE]"), tagged
    # BODY[] of the same part works
    _, items = one(c, "FETCH 5 (BODY.PEEK[1])")
    assert items["BODY[1]"] == b"begin 644 x\r\n`\r\nend\r\n"


def test_envelope_bodystructure_match_mime_module(env, c):
    data, _ = env
    for seq in (1, 2, 3, 4):
        _, items = one(c, f"FETCH {seq} (UID)")
        path = stored_path(data, int(items["UID"]))
        untagged, tagged = c.cmd(f"FETCH {seq} (ENVELOPE BODYSTRUCTURE BODY)")
        assert tagged.startswith(b"OK")
        resp = untagged[0]
        for item, sub in ((b"ENVELOPE", "envelope"), (b"BODYSTRUCTURE", "bodystructure"),
                          (b"BODY", "body-basic")):
            p = run(["mime", sub, path])
            assert p.returncode == 0, p.stderr
            assert item + b" " + p.stdout in resp, (item, p.stdout, resp)


def test_internaldate_format(c):
    _, items = one(c, "FETCH 1 (INTERNALDATE)")
    d = items["INTERNALDATE"].decode()
    m = re.fullmatch(r"([ \d]\d)-(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-(\d{4}) "
                     r"(\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)", d)
    assert m, d
    when = time.strptime(d[:20].strip(), "%d-%b-%Y %H:%M:%S")
    tz = (int(m.group(8)) * 60 + int(m.group(9))) * 60 * (1 if m.group(7) == "+" else -1)
    epoch = time.mktime(when) - time.timezone - tz  # as UTC
    assert abs(epoch - time.time()) < 24 * 3600


def test_macros(c):
    _, items = one(c, "FETCH 1 ALL")
    assert set(items) == {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"}
    _, items = one(c, "FETCH 1 FAST")
    assert set(items) == {"FLAGS", "INTERNALDATE", "RFC822.SIZE"}
    _, items = one(c, "FETCH 1 FULL")
    assert set(items) == {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"}


def test_uid_fetch(c, env):
    data, _ = env
    uids = [u for u, _, _ in cur_files(data, "alice")]
    untagged, tagged = c.cmd(f"UID FETCH {uids[1]}:{uids[2]} (FLAGS)")
    assert tagged.startswith(b"OK")
    got = [fetch_items(u) for u in untagged if b" FETCH " in u]
    assert [(seq, int(it["UID"])) for seq, it in got] == [(2, uids[1]), (3, uids[2])]
    # UID comes first; FETCH of UIDs that do not exist is not an error
    assert untagged[0].startswith(b"* 2 FETCH (UID ")
    untagged, tagged = c.cmd("UID FETCH 99999 (FLAGS)")
    assert tagged.startswith(b"OK") and not [u for u in untagged if b"FETCH" in u]


def test_syntax_errors(c):
    for bad in ("FETCH 1 (BODY[HEADER.FIELDS])", "FETCH 1 FOO", "FETCH 1 (ALL)",
                "FETCH 1 (BINARY[HEADER])", "FETCH 1 (BODY[]<0.0>)", "FETCH 1 (BODY[]<5>)",
                "FETCH 1 (BINARY.SIZE[1]<0.5>)", "FETCH 1", "FETCH 1 (FLAGS) (FOO 1)",
                "FETCH 1 ()", "FETCH 99 FLAGS", "UID FETCH 1 (FLAGS) (VANISHED)"):
        _, tagged = c.cmd(bad)
        assert tagged.startswith(b"BAD"), (bad, tagged)
    # the session is still fine
    one(c, "FETCH 1 (UID)")


# ---- \Seen -----------------------------------------------------------------------------

def test_seen_set_by_body_fetch(tmp_path):
    data = new_data(tmp_path)
    add_user(data, "alice", PW)
    for m in (M1, M1, M1):
        deliver(data, ["alice"], m)
    srv = imap_server.start(data)
    try:
        ro = Client(srv.port)
        ro.login("alice", PW)
        ro.ok("EXAMINE INBOX")
        _, items = one(ro, "FETCH 1 (BODY[])")
        assert "FLAGS" not in items  # read-only: nothing set
        cl = Client(srv.port)
        cl.login("alice", PW)
        cl.ok("SELECT INBOX")
        _, items = one(cl, "FETCH 1 (BODY.PEEK[])")
        assert "FLAGS" not in items
        _, items = one(cl, "FETCH 1 (BODY[TEXT])")
        # RFC 9051 6.4.5: reported with the data; \Recent: the EXAMINE
        # before left the message recent for this SELECT (RFC 3501 2.3.2)
        assert items["FLAGS"] == ["\\Seen", "\\Recent"]
        _, items = one(cl, "FETCH 2 (RFC822)")
        assert items["FLAGS"] == ["\\Seen", "\\Recent"]
        _, items = one(cl, "FETCH 3 (BINARY[1])")
        assert items["FLAGS"] == ["\\Seen", "\\Recent"]
        # the disk agrees (file names carry the flags)
        assert [f for _, f, _ in cur_files(data, "alice")] == ["S", "S", "S"]
        # a second fetch of a seen message does not repeat FLAGS
        _, items = one(cl, "FETCH 1 (BODY[TEXT])")
        assert "FLAGS" not in items
        # the NOOP after does not echo the change back
        untagged = cl.ok("NOOP")
        assert not [u for u in untagged if b"FETCH" in u], untagged
        # \Seen removed elsewhere, unknown to this session: BODY[] sets it again
        other = Client(srv.port)
        other.login("alice", PW)
        other.ok("SELECT INBOX")
        other.ok("STORE 1 -FLAGS.SILENT (\\Seen)")
        other.close()
        assert cur_files(data, "alice")[0][1] == ""
        cl.ok("FETCH 1 (BODY[TEXT])")
        assert cur_files(data, "alice")[0][1] == "S"
        cl.close()
        ro.close()
    finally:
        srv.stop()


# ---- CONDSTORE / QRESYNC ----------------------------------------------------------------

def test_modseq_changedsince_vanished(tmp_path):
    data = new_data(tmp_path)
    add_user(data, "alice", PW)
    for _ in range(4):
        deliver(data, ["alice"], M1)
    srv = imap_server.start(data)
    try:
        cl = Client(srv.port)
        cl.login("alice", PW)
        cl.ok("ENABLE QRESYNC")
        cl.ok("SELECT INBOX")
        untagged, _ = cl.cmd("FETCH 1:4 (MODSEQ)")
        modseqs = {seq: int(it["MODSEQ"][0]) for seq, it in map(fetch_items, untagged)}
        assert len(modseqs) == 4 and all(v > 0 for v in modseqs.values())
        top = max(modseqs.values())
        cl.ok("STORE 2 +FLAGS.SILENT (\\Flagged)")
        untagged, tagged = cl.cmd(f"FETCH 1:4 (FLAGS) (CHANGEDSINCE {top})")
        assert tagged.startswith(b"OK")
        got = [fetch_items(u) for u in untagged if b"FETCH" in u]
        assert [seq for seq, _ in got] == [2]
        assert got[0][1]["FLAGS"] == ["\\Flagged", "\\Recent"]   # first SELECT: RFC 3501 2.3.2
        assert int(got[0][1]["MODSEQ"][0]) > top      # RFC 7162 3.1.4.1: MODSEQ implied
        # expunge message 3 (UID 3) from another session
        other = Client(srv.port)
        other.login("alice", PW)
        other.ok("SELECT INBOX")
        other.ok("STORE 3 +FLAGS.SILENT (\\Deleted)")
        other.ok("EXPUNGE")
        other.close()
        untagged, tagged = cl.cmd(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {top} VANISHED)")
        assert tagged.startswith(b"OK"), tagged
        assert untagged[0] == b"* VANISHED (EARLIER) 3", untagged
        cl.close()
    finally:
        srv.stop()


def test_message_expunged_by_other_session_is_skipped(tmp_path):
    data = new_data(tmp_path)
    add_user(data, "alice", PW)
    for m in (M1, M2, M1):
        deliver(data, ["alice"], m)
    srv = imap_server.start(data)
    try:
        a = Client(srv.port)
        a.login("alice", PW)
        a.ok("SELECT INBOX")
        b = Client(srv.port)
        b.login("alice", PW)
        b.ok("SELECT INBOX")
        b.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
        b.ok("EXPUNGE")
        untagged, tagged = a.cmd("FETCH 1:3 (BODY.PEEK[] ENVELOPE)")
        assert tagged.startswith(b"OK"), tagged
        seqs = [fetch_items(u)[0] for u in untagged if b" FETCH " in u]
        assert seqs == [1, 3]               # no EXPUNGE during FETCH; 2 is left out
        assert not [u for u in untagged if b"EXPUNGE" in u]
        untagged = a.ok("NOOP")
        assert b"* 2 EXPUNGE" in untagged
        a.close()
        b.close()
    finally:
        srv.stop()


# ---- many messages, bounded output -------------------------------------------------------

def worker_pids(master):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == master:
                    out.append(int(d))
            except OSError:
                pass
    return out


def open_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def test_fetch_many_large_messages_slow_reader(tmp_path):
    """FETCH 1:* BODY.PEEK[] over 200 messages of 40 KB (8 MB) to a client
    that reads slowly: everything arrives intact and the server does not hold
    a file descriptor per queued message."""
    data = new_data(tmp_path)
    add_user(data, "bulk", PW)
    msgs = []
    for i in range(200):
        body = b"".join(b"message %04d line %05d ........................................\r\n"
                        % (i, k) for k in range(600))
        m = b"Subject: bulk %d\r\nMessage-ID: <bulk%d@x>\r\n\r\n" % (i, i) + body
        msgs.append(m)
        deliver(data, ["bulk"], m)
    srv = imap_server.start(data)
    try:
        cl = Client(srv.port)
        cl.sock.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 65536)
        cl.login("bulk", PW)
        cl.ok("SELECT INBOX")
        workers = worker_pids(srv.pid)
        peak = [0]
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                peak[0] = max(peak[0], max((open_fds(p) for p in workers), default=0))
                time.sleep(0.02)
        t = threading.Thread(target=watch)
        t.start()
        cl.n += 1
        tag = f"t{cl.n}".encode()
        # a pipelined command waits behind the suspended FETCH
        cl.send(tag + b" FETCH 1:* (BODY.PEEK[])\r\n" + tag + b"b NOOP\r\n")
        time.sleep(1.0)  # let the server hit the high-water mark
        got = []
        while True:
            r = cl._read_response()
            if r.startswith(tag + b" "):
                assert r.startswith(tag + b" OK"), r
                break
            got.append(r)
            if len(got) % 50 == 0:
                time.sleep(0.05)
        assert cl._read_response().startswith(tag + b"b OK")
        stop.set()
        t.join()
        assert len(got) == 200
        for i, r in enumerate(got):
            seq, items = fetch_items(r)
            assert seq == i + 1
            assert items["BODY[]"] == msgs[i]
        # file segments are bounded by the output high-water mark, not 300
        assert peak[0] < 150, peak[0]
        one(cl, "FETCH 200 (UID)")
        cl.close()
        # a client that leaves in the middle of a suspended FETCH
        before = sorted(srv.children())
        for _ in range(3):
            gone = Client(srv.port)
            gone.login("bulk", PW)
            gone.ok("SELECT INBOX")
            gone.send(b"x FETCH 1:* (BODY.PEEK[])\r\n")
            time.sleep(0.3)
            gone.close()
        time.sleep(0.5)
        assert sorted(srv.children()) == before     # no worker died
        cl = Client(srv.port)
        cl.login("bulk", PW)
        cl.ok("SELECT INBOX")
        one(cl, "FETCH 7 (UID)")
        cl.close()
    finally:
        srv.stop()


def test_file_with_bare_lf_dropped_in_by_hand(tmp_path):
    """A file another program put in new/ with bare LF is served as CRLF:
    RFC822.SIZE, BODY[], partials and part bodies all agree (DESIGN.md)."""
    data = new_data(tmp_path)
    add_user(data, "alice", PW)
    m = (b"From: x@example.com\nSubject: lf\nContent-Type: multipart/mixed; boundary=b\n\n"
         b"--b\nContent-Type: text/plain\n\nline1\nline2\n--b--\n")
    (mailbox_dir(data, "alice") / "new" / "1700000000.lf.host").write_bytes(m)
    crlf = m.replace(b"\n", b"\r\n")
    srv = imap_server.start(data)
    try:
        cl = Client(srv.port)
        cl.login("alice", PW)
        cl.ok("EXAMINE INBOX")
        _, items = one(cl, "FETCH 1 (RFC822.SIZE BODY.PEEK[] BODY.PEEK[1] BODY.PEEK[]<3.20> "
                           "BINARY.PEEK[1] BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert int(items["RFC822.SIZE"]) == len(crlf)
        assert items["BODY[]"] == crlf
        assert items["BODY[1]"] == b"line1\r\nline2"
        assert items["BODY[]<3>"] == crlf[3:23]
        assert items["BINARY[1]"] == b"line1\r\nline2"
        assert items["BODY[HEADER.FIELDS (SUBJECT)]"] == b"Subject: lf\r\n\r\n"
        cl.close()
    finally:
        srv.stop()


def test_flag_change_elsewhere_is_still_reported(tmp_path):
    """A FETCH that does not show FLAGS must not swallow a flag change made by
    another session: the client still learns it (RFC 9051 7.5.1 sync)."""
    data = new_data(tmp_path)
    add_user(data, "alice", PW)
    deliver(data, ["alice"], M1)
    srv = imap_server.start(data)
    try:
        a = Client(srv.port)
        a.login("alice", PW)
        a.ok("SELECT INBOX")
        b = Client(srv.port)
        b.login("alice", PW)
        b.ok("SELECT INBOX")
        b.ok("STORE 1 +FLAGS.SILENT (\\Flagged)")
        untagged = a.ok("FETCH 1 (UID)") + a.ok("NOOP")
        flags = [it.get("FLAGS") for _, it in map(fetch_items, [u for u in untagged if b"FETCH" in u])]
        assert ["\\Flagged", "\\Recent"] in flags, untagged   # a selected first (RFC 3501 2.3.2)
        a.close()
        b.close()
    finally:
        srv.stop()
