"""SEARCH / UID SEARCH against a real `mailroom serve` (RFC 9051 6.4.4 and
7.3.4, RFC 3501 NEW/OLD/RECENT, RFC 4731 ESEARCH, RFC 5182 SEARCHRES,
RFC 7162 MODSEQ).

The mailbox holds a small hand-made corpus; each expected result below is
worked out by hand from that corpus and the RFC, not from mailroom.
"""

import base64
import os
import re
import time

import pytest

import imap_server
from conftest import add_user, deliver, wire
from imap_server import Client, parse

PW = "secret"


def msg(headers, body, extra=b""):
    return b"".join(h + b"\r\n" for h in headers) + extra + b"\r\n" + body


M = {}
M[1] = msg([b'From: "Alice Smith" <alice@example.com>', b"To: bob@example.org",
            b"Cc: carol@example.net", b"Subject: Meeting tomorrow",
            b"Date: Mon, 7 Feb 1994 21:52:25 -0800"],
           b"Let's discuss the QUARTERLY report.\r\n")
M[2] = msg([b"From: bob@example.org", b"To: alice@example.com", b"Bcc: secret@example.com",
            b"Subject: =?UTF-8?B?w6l0w6kgcsOpc3Vtw6k=?=",           # "été résumé"
            b"Date: 8 Feb 1994 10:00:00 +0000", b"MIME-Version: 1.0",
            b"Content-Type: text/plain; charset=utf-8", b"Content-Transfer-Encoding: base64"],
           base64.encodebytes("Über naïve café\n".encode()).replace(b"\n", b"\r\n"))
M[3] = msg([b"From: carol@example.net", b"To: alice@example.com", b"Subject: Re: Meeting tomorrow",
            b"Date: Tue, 1 Mar 2005 08:00:00 +0100", b"X-Priority: 1", b"MIME-Version: 1.0",
            b"Content-Type: text/plain; charset=iso-8859-1",
            b"Content-Transfer-Encoding: quoted-printable"],
           b"caf=E9 cr=E8me, s'il vous pla=EEt\r\n")              # "café crème, s'il vous plaît"
M[4] = msg([b"From: dave@example.com", b"To: alice@example.com", b"Subject: files",
            b"Date: Fri, 15 Jan 2010 12:00:00 +0000", b"MIME-Version: 1.0",
            b'Content-Type: multipart/mixed; boundary="b1"'],
           b"--b1\r\nContent-Type: text/plain\r\n\r\nattached please find\r\n"
           b"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           + base64.b64encode(b"secret binary PAYLOADXYZ") + b"\r\n--b1--\r\n")
# 2 MB: the needle is at the very end; another needle straddles 32 KiB of a
# line without line ends
M[5] = msg([b"From: big@example.com", b"Subject: big one", b"Date: Sat, 16 Jan 2010 12:00:00 +0000"],
           b"x" * 32760 + b"SPLITNEEDLE" + b"y" * 5000 + b"\r\n"
           + b"".join(b"filler line %06d lorem ipsum dolor sit amet\r\n" % i for i in range(45000))
           + b"ZEBRA FINISH\r\n")
M[6] = msg([b"From: nodate@example.com", b"Subject: no date here"], b"plain\r\n")
M[7] = msg([b"From: =?ISO-8859-1?Q?J=F6rg?= <joerg@example.de>",
            b"Subject: =?ISO-8859-1?Q?Gr=FC=DFe?= aus Berlin", b"Date: 2 Feb 2020 10:00 +0100"],
           b"hallo\r\n")
N = len(M)
ALL = list(range(1, N + 1))

# flags set by the fixture (sequence number = UID here)
FLAGS = {1: r"\Seen \Answered", 2: r"\Flagged", 3: r"\Deleted \Seen", 4: r"\Draft", 5: "Work"}


def new_data(parent):
    os.chmod(parent, 0o755)  # workers run as run_user when started as root
    data = parent / "data"
    data.mkdir()
    return data


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    data = new_data(tmp_path_factory.mktemp("search"))
    add_user(data, "alice", PW)
    for i in ALL:
        deliver(data, ["alice"], M[i])
    srv = imap_server.start(data)
    c = Client(srv.port)
    c.login("alice", PW)
    c.ok("SELECT INBOX")
    for seq, flags in FLAGS.items():
        c.ok(f"STORE {seq} +FLAGS.SILENT ({flags})")
    c.close()
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


def search(cl, criteria, uid=False):
    """Numbers of a rev1 `* SEARCH` answer."""
    untagged, tagged = cl.cmd(("UID SEARCH " if uid else "SEARCH ") + criteria
                              if isinstance(criteria, str) else
                              (b"UID SEARCH " if uid else b"SEARCH ") + criteria)
    assert tagged.startswith(b"OK"), (criteria, tagged)
    lines = [u for u in untagged if u.startswith(b"* SEARCH")]
    assert len(lines) == 1, untagged
    return [int(x) for x in lines[0].split()[2:]]


def test_flag_keys(c):
    cases = {
        "ALL": ALL, "SEEN": [1, 3], "UNSEEN": [2, 4, 5, 6, 7], "ANSWERED": [1],
        "UNANSWERED": [2, 3, 4, 5, 6, 7], "FLAGGED": [2], "UNFLAGGED": [1, 3, 4, 5, 6, 7],
        "DELETED": [3], "UNDELETED": [1, 2, 4, 5, 6, 7], "DRAFT": [4],
        "UNDRAFT": [1, 2, 3, 5, 6, 7], "KEYWORD Work": [5], "KEYWORD work": [5],
        "KEYWORD Nope": [], "UNKEYWORD Work": [1, 2, 3, 4, 6, 7], "UNKEYWORD Nope": ALL,
        # the fixture's session took every message as recent (RFC 3501 2.3.2),
        # so none is recent here: NEW = RECENT UNSEEN, OLD = NOT RECENT
        "RECENT": [], "NEW": [], "OLD": ALL,
        "seen deleted": [3],
    }
    for crit, want in cases.items():
        assert search(c, crit) == want, crit


def test_header_keys(c):
    cases = {
        "FROM alice": [1], 'FROM "alice smith"': [1], "FROM SMITH": [1],
        "FROM example.org": [2], "TO alice": [2, 3, 4], "CC carol": [1], "BCC secret": [2],
        "SUBJECT meeting": [1, 3], 'SUBJECT "re: meeting"': [3],
        "HEADER X-Priority 1": [3], 'HEADER x-priority ""': [3], 'HEADER Subject ""': ALL,
        "HEADER Date 1994": [1, 2], "FROM jörg": [],  # not UTF-8 declared -> see below
    }
    for crit, want in cases.items():
        if "ö" in crit:
            continue
        assert search(c, crit) == want, crit


def utf8_literal(key, text):
    t = text.encode()
    return b"CHARSET UTF-8 " + key + b" {%d+}\r\n" % len(t) + t


def test_decoded_headers(c):
    # RFC 2047 words are decoded; comparison ignores case (Ü/ü, É/é)
    assert search(c, utf8_literal(b"SUBJECT", "RÉSUMÉ")) == [2]
    assert search(c, utf8_literal(b"SUBJECT", "grüße aus")) == [7]
    assert search(c, utf8_literal(b"FROM", "JÖRG")) == [7]
    assert search(c, 'CHARSET US-ASCII SUBJECT "berlin"') == [7]


def test_body_and_text(c):
    assert search(c, "BODY quarterly") == [1]
    assert search(c, "BODY meeting") == []           # only in subjects
    assert search(c, "TEXT meeting") == [1, 3]       # TEXT includes the header
    assert search(c, "TEXT alice@example.com") == [1, 2, 3, 4]
    # a binary (application/octet-stream) attachment is not searched, as in
    # Dovecot; base64 text parts are (message 2 below)
    assert search(c, "BODY payloadxyz") == []
    assert search(c, 'BODY "attached please"') == [4]
    assert search(c, utf8_literal(b"BODY", "ÜBER NAÏVE")) == [2]       # base64 UTF-8
    assert search(c, utf8_literal(b"BODY", "café")) == [2, 3]         # latin-1 QP converted
    assert search(c, utf8_literal(b"BODY", "crème, s'il vous plaît")) == [3]
    assert search(c, "BODY zebra") == [5]            # end of a 2 MB body
    assert search(c, "BODY splitneedle") == [5]      # across the 32 KiB slices
    assert search(c, 'BODY ""') == ALL
    assert search(c, "NOT BODY lorem") == [1, 2, 3, 4, 6, 7]


def test_dates(c):
    # SENT*: the day written in Date:, time and zone disregarded
    assert search(c, "SENTON 7-Feb-1994") == [1]
    assert search(c, "SENTON 07-Feb-1994") == [1]
    assert search(c, 'SENTON "8-Feb-1994"') == [2]
    assert search(c, "SENTBEFORE 1-Jan-2000") == [1, 2]
    assert search(c, "SENTSINCE 1-Mar-2005 SENTBEFORE 1-Jan-2011") == [3, 4, 5]
    assert search(c, "SENTSINCE 2-Feb-2020 SENTBEFORE 3-Feb-2020") == [7]
    # internal dates: every message arrived today (server local time)
    today = time.strftime("%d-%b-%Y", time.localtime())
    tomorrow = time.strftime("%d-%b-%Y", time.localtime(time.time() + 86400))
    assert search(c, f"ON {today}") == ALL
    assert search(c, f"SINCE {today}") == ALL
    assert search(c, f"BEFORE {today}") == []
    assert search(c, f"BEFORE {tomorrow}") == ALL
    assert search(c, f"SINCE {tomorrow}") == []
    # the message without Date: is dated by its arrival
    assert search(c, f"SENTON {today}") == [6]
    for bad in ("ON 32-Jan-2000", "ON 1-Foo-2000", "SINCE yesterday", "BEFORE"):
        _, tagged = c.cmd("SEARCH " + bad)
        assert tagged.startswith(b"BAD"), (bad, tagged)


def test_internaldate_from_append(env):
    _, srv = env
    cl = Client(srv.port)
    cl.login("alice", PW)
    cl.ok('CREATE Old')
    m = b"Subject: old\r\n\r\nold body\r\n"
    cl.ok(b'APPEND Old "01-Jan-2000 23:30:00 +0000" {%d+}\r\n' % len(m) + m)
    cl.ok("SELECT Old")
    # the day is taken in the server's local time zone (RFC 9051 leaves it open)
    day = time.strftime("%d-%b-%Y", time.localtime(946769400))
    assert search(cl, f"ON {day}") == [1]
    assert search(cl, "BEFORE 1-Jan-2000") == []
    assert search(cl, "SINCE 3-Jan-2000") == []
    cl.close()


def test_sizes(c):
    sizes = {i: len(wire(M[i])) for i in ALL}
    s2 = sizes[2]
    assert search(c, f"LARGER {s2}") == [i for i in ALL if sizes[i] > s2]
    assert search(c, f"SMALLER {s2}") == [i for i in ALL if sizes[i] < s2]
    assert search(c, f"LARGER {s2 - 1} SMALLER {s2 + 1}") == [2]
    assert search(c, "LARGER 1000000") == [5]


def test_sets_and_logic(c):
    assert search(c, "2:4") == [2, 3, 4]
    assert search(c, "*") == [7]
    assert search(c, "5:*") == [5, 6, 7]
    assert search(c, "UID 1,3,6:7") == [1, 3, 6, 7]
    assert search(c, "UID 100:200") == []
    assert search(c, "NOT SEEN") == [2, 4, 5, 6, 7]
    assert search(c, "OR FROM alice FROM bob") == [1, 2]
    assert search(c, "OR SEEN (FLAGGED DRAFT)") == [1, 3]
    assert search(c, "OR SEEN OR FLAGGED DRAFT") == [1, 2, 3, 4]
    assert search(c, "(SEEN) (UNDELETED)") == [1]
    assert search(c, "((((SEEN))) NOT (DELETED))") == [1]
    assert search(c, "NOT NOT SEEN") == [1, 3]
    assert search(c, "1:3 OR 2 BODY zebra") == [2]
    assert search(c, "UNSEEN TEXT meeting") == []
    # UID SEARCH answers UIDs (equal to sequence numbers in this mailbox)
    assert search(c, "SUBJECT meeting", uid=True) == [1, 3]


def test_esearch(c):
    untagged, tagged = c.cmd("SEARCH RETURN (MIN MAX COUNT ALL) SUBJECT meeting")
    tag = c.last_tag()
    assert tagged.startswith(b"OK")
    assert untagged == [f'* ESEARCH (TAG "{tag}") MIN 1 MAX 3 COUNT 2 ALL 1,3'.encode()]
    untagged, _ = c.cmd("SEARCH RETURN () 2:7 UNDELETED")       # () means ALL
    assert untagged == [f'* ESEARCH (TAG "{c.last_tag()}") ALL 2,4:7'.encode()]
    untagged, _ = c.cmd("UID SEARCH RETURN (COUNT) FROM nobody")
    assert untagged == [f'* ESEARCH (TAG "{c.last_tag()}") UID COUNT 0'.encode()]
    untagged, _ = c.cmd("UID SEARCH RETURN (MIN MAX) FROM nobody")
    assert untagged == [f'* ESEARCH (TAG "{c.last_tag()}") UID'.encode()]
    untagged, _ = c.cmd("UID SEARCH RETURN (MAX) ALL")
    assert untagged == [f'* ESEARCH (TAG "{c.last_tag()}") UID MAX 7'.encode()]
    _, tagged = c.cmd("SEARCH RETURN (FOO) ALL")
    assert tagged.startswith(b"BAD")


def test_searchres(c):
    untagged, tagged = c.cmd("SEARCH RETURN (SAVE) OR FROM alice FROM carol")
    assert tagged.startswith(b"OK") and untagged == []      # SAVE alone: no ESEARCH
    untagged = c.ok("FETCH $ (UID)")
    assert [int(parse(u)[3][1]) for u in untagged if b"FETCH" in u] == [1, 3]
    assert search(c, "$ SEEN") == [1, 3]
    assert search(c, "UID $") == [1, 3]
    assert search(c, "NOT $") == [2, 4, 5, 6, 7]
    # MIN/MAX with SAVE keep only those (RFC 5182 2.4)
    untagged, _ = c.cmd("UID SEARCH RETURN (SAVE MAX) UNSEEN")
    assert untagged == [f'* ESEARCH (TAG "{c.last_tag()}") UID MAX 7'.encode()]
    assert search(c, "$") == [7]
    # a failed SAVE search leaves $ empty
    _, tagged = c.cmd("SEARCH RETURN (SAVE) CHARSET KOI8-R ALL")
    assert tagged.startswith(b"NO")
    assert search(c, "$") == []


def test_charset(c):
    _, tagged = c.cmd('SEARCH CHARSET ISO-8859-1 SUBJECT "x"')
    assert tagged.startswith(b"NO [BADCHARSET (UTF-8 US-ASCII)]"), tagged
    assert search(c, "CHARSET utf-8 ALL") == ALL
    assert search(c, "CHARSET US-ASCII FROM dave") == [4]


def test_modseq(env):
    _, srv = env
    cl = Client(srv.port)
    cl.login("alice", PW)
    cl.ok("SELECT INBOX")
    untagged = cl.ok("FETCH 1:* (MODSEQ)")
    ms = {int(parse(u)[1]): int(parse(u)[3][1][0]) for u in untagged if b"FETCH" in u}
    lo = sorted(ms.values())[3]
    want = [s for s in ALL if ms[s] >= lo]
    untagged, tagged = cl.cmd(f"SEARCH MODSEQ {lo}")
    assert tagged.startswith(b"OK")
    top = max(ms[s] for s in want)
    assert untagged == [("* SEARCH " + " ".join(map(str, want)) + f" (MODSEQ {top})").encode()]
    untagged, _ = cl.cmd(f'SEARCH RETURN (COUNT) MODSEQ "/flags/\\\\draft" all {lo}')
    assert untagged == [f'* ESEARCH (TAG "{cl.last_tag()}") COUNT {len(want)} MODSEQ {top}'.encode()]
    # no MODSEQ criterion: no MODSEQ in the answer
    untagged, _ = cl.cmd("SEARCH DRAFT")
    assert untagged == [b"* SEARCH 4"]
    cl.close()


def test_rev2_answers_esearch(env):
    _, srv = env
    cl = Client(srv.port)
    cl.login("alice", PW)
    cl.ok("ENABLE IMAP4rev2")
    cl.ok("EXAMINE INBOX")
    untagged, _ = cl.cmd("SEARCH SUBJECT meeting")
    assert untagged == [f'* ESEARCH (TAG "{cl.last_tag()}") ALL 1,3'.encode()]
    untagged, _ = cl.cmd("UID SEARCH FROM nobody")
    assert untagged == [f'* ESEARCH (TAG "{cl.last_tag()}") UID'.encode()]
    cl.close()


def test_limits_and_errors(c):
    bad = ["", "FOO", "FROM", "OR SEEN", "NOT", "HEADER X", "LARGER x", "UID", "KEYWORD \\Seen",
           "(", "()",
           "NOT " * 200 + "ALL",                   # nesting of keys
           "(" * 40 + "ALL" + ")" * 40,             # nesting of lists
           " ".join(["SEEN"] * 3000),               # number of keys
           "OR " * 150 + "ALL " * 151]
    for crit in bad:
        _, tagged = c.cmd(("SEARCH " + crit).rstrip())
        assert tagged.startswith(b"BAD"), (crit[:40], tagged)
    assert search(c, "NOT " * 50 + "SEEN") == [1, 3]   # within limits
    assert search(c, "99") == []   # beyond the mailbox: no match (RFC 9051 6.4.4, as Dovecot)
    assert search(c, "ALL") == ALL


def worker_hwm_kb(srv):
    """Peak resident memory (kB) of the server's children."""
    best = 0
    for pid in srv.children():
        try:
            with open(f"/proc/{pid}/status") as f:
                m = re.search(r"VmHWM:\s+(\d+) kB", f.read())
            best = max(best, int(m.group(1)))
        except (OSError, AttributeError):
            pass
    return best


def test_body_search_memory_is_bounded(tmp_path):
    with open(imap_server.MAILROOM, "rb") as f:
        if b"__asan_init" in f.read():
            pytest.skip("peak RSS means nothing under AddressSanitizer (quarantine)")
    data = new_data(tmp_path)
    add_user(data, "alice", PW)
    line = b"abcdefghij" * 9 + b"\r\n"
    big = b"Subject: huge\r\nContent-Type: text/plain\r\n\r\n" + line * 400000 + b"NEEDLE AT END\r\n"
    assert len(big) > 35 * 1024 * 1024
    deliver(data, ["alice"], big)
    deliver(data, ["alice"], M[1])
    srv = imap_server.start(data)
    try:
        cl = Client(srv.port)
        cl.login("alice", PW)
        cl.ok("SELECT INBOX")
        before = worker_hwm_kb(srv)
        assert search(cl, 'BODY "needle at end"') == [1]
        assert search(cl, 'TEXT "not there at all"') == []
        grown = worker_hwm_kb(srv) - before
        assert grown < 12 * 1024, f"peak RSS grew by {grown} kB searching a 36 MB message"
        cl.close()
    finally:
        srv.stop()
