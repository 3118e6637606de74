"""SORT, ESORT, SORT=DISPLAY and THREAD (RFC 5256, RFC 5267, RFC 5957)
against a real `mailroom serve`, compared with a private Dovecot 2.3 that
holds the same generated mailbox of 2,000 messages (sort_corpus.py), and a
second one of 2,000 from another seed for the threads.

Each command's answer must be identical to Dovecot's, or differ only where
sort_known_deviations.txt names the command and gives the RFC reason. A
deviation listed but no longer seen fails too (the list stays honest).
Small hand-made cases check the rules themselves (RFC 5256 2.1 base
subject, tie by sequence number, BADCHARSET, ESORT forms).
"""
import os
import pathlib
import re

import pytest

import imap_server
from conftest import add_user, deliver
from dovecot_server import DovecotServer
from imap_server import Client
from sort_corpus import append_all, corpus

PW = "secret"
N = 2000
HERE = pathlib.Path(__file__).parent

COMMANDS = [
    "SORT (ARRIVAL) UTF-8 ALL",
    "SORT (CC) UTF-8 ALL",
    "SORT (DATE) UTF-8 ALL",
    "SORT (FROM) UTF-8 ALL",
    "SORT (SIZE) UTF-8 ALL",
    "SORT (SUBJECT) UTF-8 ALL",
    "SORT (TO) UTF-8 ALL",
    "SORT (DISPLAYFROM) UTF-8 ALL",
    "SORT (DISPLAYTO) UTF-8 ALL",
    "SORT (REVERSE ARRIVAL) UTF-8 ALL",
    "SORT (REVERSE DATE) UTF-8 ALL",
    "SORT (REVERSE SUBJECT) UTF-8 ALL",
    "SORT (SUBJECT REVERSE DATE) UTF-8 ALL",
    "SORT (REVERSE FROM SIZE) UTF-8 ALL",
    "SORT (TO CC SUBJECT ARRIVAL) US-ASCII ALL",
    "UID SORT (DATE) UTF-8 ALL",
    "SORT (SUBJECT) UTF-8 LARGER 500",
    "UID SORT (FROM) UTF-8 1:500 NOT SMALLER 300",
    "SORT RETURN (MIN MAX COUNT) (DATE) UTF-8 ALL",
    "SORT RETURN (ALL) (ARRIVAL) UTF-8 1:100",
    "THREAD ORDEREDSUBJECT UTF-8 ALL",
    "THREAD REFERENCES UTF-8 ALL",
    "UID THREAD REFERENCES UTF-8 ALL",
    "THREAD REFERENCES UTF-8 1:700",
]


def load_deviations():
    """command -> reason, from sort_known_deviations.txt (TAB separated)."""
    out = {}
    for line in (HERE / "sort_known_deviations.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            cmd, reason = line.split("\t", 1)
            assert re.search(r"RFC \d+", reason), "a deviation needs an RFC reason: " + line
            out[cmd] = reason
    return out


def answer(c, command):
    untagged, tagged = c.cmd(command)
    assert tagged.startswith(b"OK"), (command, tagged)
    lines = [u for u in untagged if re.match(rb"\* (SORT|THREAD|ESEARCH)\b", u)]
    assert len(lines) == 1, (command, untagged[:3])
    # the ESORT tag differs between the two clients' counters
    return re.sub(rb'\(TAG "[^"]*"\)', b'(TAG "x")', lines[0].rstrip())


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    msgs = corpus(N)
    parent = tmp_path_factory.mktemp("sort")
    os.chmod(parent, 0o755)
    data = parent / "data"
    data.mkdir()
    add_user(data, "alice", PW)
    srv = imap_server.start(data)
    dv = DovecotServer(users={"alice": PW})
    dv.start()
    try:
        second = corpus(N, seed=1)
        cm = Client(srv.port)
        cm.login("alice", PW)
        cd = Client(dv.imap_port)
        cd.login("alice", PW)
        for c in (cm, cd):
            append_all(c, msgs)
            c.ok("CREATE Second")
            append_all(c, second, mailbox="Second")
            c.ok("SELECT INBOX")
        yield cm, cd, data, srv
        cm.close()
        cd.close()
    finally:
        dv.cleanup()
        srv.stop()


def test_capabilities_rfc5256_rfc5267_rfc5957(servers):
    cm = servers[0]
    caps = b" ".join(cm.ok("CAPABILITY")).split()
    for cap in (b"SORT", b"SORT=DISPLAY", b"ESORT", b"THREAD=ORDEREDSUBJECT", b"THREAD=REFERENCES"):
        assert cap in caps
    assert not any(c.startswith(b"CONTEXT=") for c in caps)  # RFC 5267 4 not offered


def test_sort_and_thread_match_dovecot_rfc5256(servers):
    cm, cd = servers[0], servers[1]
    deviations = load_deviations()
    failures, seen = [], set()
    for command in COMMANDS:
        mine, theirs = answer(cm, command), answer(cd, command)
        if mine == theirs:
            continue
        if command in deviations:
            seen.add(command)
            continue
        a, b = mine.split(b" "), theirs.split(b" ")
        i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
        failures.append("%s: first difference at word %d:\n  mailroom %r\n  dovecot  %r"
                        % (command, i, b" ".join(a[max(0, i - 3):i + 6]),
                           b" ".join(b[max(0, i - 3):i + 6])))
    # a second mailbox from another seed: other shapes of threads
    cm.ok("EXAMINE Second")
    cd.ok("EXAMINE Second")
    try:
        for command in ("THREAD REFERENCES UTF-8 ALL", "THREAD ORDEREDSUBJECT UTF-8 ALL",
                        "SORT (SUBJECT REVERSE DATE) UTF-8 ALL", "SORT (DISPLAYTO CC) UTF-8 ALL"):
            mine, theirs = answer(cm, command), answer(cd, command)
            if mine != theirs and "Second " + command not in deviations:
                failures.append("Second: %s differs" % command)
            elif mine != theirs:
                seen.add("Second " + command)
    finally:
        cm.ok("SELECT INBOX")
        cd.ok("SELECT INBOX")
    stale = set(deviations) - seen
    assert not failures, "\n".join(failures)
    assert not stale, "listed deviations no longer seen: %s" % sorted(stale)


def test_sort_reads_no_message_file_when_cached_rfc5256(servers):
    """The keys come from the cached ENVELOPE and the index rows: with every
    message file made unreadable, SORT still answers the same."""
    cm, _, data, _ = servers
    before = {c: answer(cm, c) for c in ("SORT (SUBJECT) UTF-8 ALL", "SORT (DATE FROM) UTF-8 ALL",
                                         "THREAD ORDEREDSUBJECT UTF-8 ALL")}
    files = [p for p in data.rglob("*") if p.is_file() and "/cur/" in str(p)]
    assert len(files) >= N
    modes = {p: p.stat().st_mode for p in files}
    try:
        for p in files:
            os.chmod(p, 0)
        if os.geteuid() == 0:  # root reads mode-0 files: move them away instead
            for p in files:
                p.rename(str(p) + ".away")
        for c, want in before.items():
            assert answer(cm, c) == want
    finally:
        for p in files:
            q = pathlib.Path(str(p) + ".away")
            if q.exists():
                q.rename(p)
            os.chmod(p, modes[p] & 0o7777)


@pytest.fixture
def small(tmp_path):
    os.chmod(tmp_path, 0o755)
    data = tmp_path / "data"
    data.mkdir()
    add_user(data, "bob", PW)
    for raw in SMALL:
        deliver(data, ["bob"], raw)
    srv = imap_server.start(data)
    c = Client(srv.port)
    c.login("bob", PW)
    c.ok("SELECT INBOX")
    yield c
    c.close()
    srv.stop()


def m(subject, date, frm, extra=""):
    return ("From: %s\r\nSubject: %s\r\nDate: %s\r\n%s\r\nbody\r\n" % (frm, subject, date, extra)).encode()


SMALL = [
    m("Re: [list] Zebra (fwd)", "Mon, 2 Jan 2006 10:00:00 +0000", "zed@x", "Message-ID: <a@x>\r\n"),
    m("apple", "Mon, 2 Jan 2006 09:00:00 -0200", "Anna <amy@x>", "Message-ID: <b@x>\r\n"),
    m("[fwd: Apple]", "bogus", "bob@x", "References: <b@x>\r\nMessage-ID: <c@x>\r\n"),
    m("zebra", "Mon, 2 Jan 2006 10:00:00 +0000", "Yves <ann@x>", "In-Reply-To: <a@x>\r\n"),
]


def test_sort_rules_rfc5256_2_1_and_3(small):
    # base subjects: "zebra", "apple", "apple", "zebra"; ties by sequence
    assert answer(small, "SORT (SUBJECT) UTF-8 ALL") == b"* SORT 2 3 1 4"
    # 2 is 11:00 UTC; 1 and 4 are 10:00 UTC (tie: sequence); 3 has no usable
    # Date and sorts by its internal date (now, the latest)
    assert answer(small, "SORT (DATE) UTF-8 ALL") == b"* SORT 1 4 2 3"
    assert answer(small, "SORT (REVERSE DATE) UTF-8 ALL") == b"* SORT 3 2 1 4"
    # FROM: the first address's mailbox (RFC 5256 3); DISPLAYFROM: the display
    # name, else the address (RFC 5957)
    assert answer(small, "SORT (FROM) UTF-8 ALL") == b"* SORT 2 4 3 1"
    assert answer(small, "SORT (DISPLAYFROM) UTF-8 ALL") == b"* SORT 2 3 4 1"
    # REVERSE turns one key; the final tie (sequence order) stays ascending
    assert answer(small, "UID SORT (SUBJECT REVERSE DATE) UTF-8 ALL") == b"* SORT 3 2 1 4"


def test_thread_rfc5256_3(small):
    # ORDEREDSUBJECT: groups by base subject, first by date is the parent
    assert answer(small, "THREAD ORDEREDSUBJECT UTF-8 ALL") == b"* THREAD (1 4)(2 3)"
    # REFERENCES: 3 references 2, 4 replies to 1
    assert answer(small, "THREAD REFERENCES UTF-8 ALL") == b"* THREAD (1 4)(2 3)"
    assert answer(small, "THREAD REFERENCES UTF-8 2:3") == b"* THREAD (2 3)"


def test_esort_rfc5267_3(small):
    assert answer(small, "SORT RETURN (MIN MAX COUNT) (SUBJECT) UTF-8 ALL") == \
        b'* ESEARCH (TAG "x") MIN 2 MAX 4 COUNT 4'
    assert answer(small, "SORT RETURN () (DATE) UTF-8 ALL") == b'* ESEARCH (TAG "x") ALL 1,4,2:3'
    assert answer(small, "UID SORT RETURN (COUNT) (DATE) UTF-8 NOT ALL") == \
        b'* ESEARCH (TAG "x") UID COUNT 0'


def test_bad_forms_rfc5256_5(small):
    _, t = small.cmd("SORT (SUBJECT) KOI8-R ALL")
    assert t.startswith(b"NO [BADCHARSET")
    _, t = small.cmd("THREAD REFERENCES ISO-2022-JP ALL")
    assert t.startswith(b"NO [BADCHARSET")
    for bad in ("SORT (NOSUCHKEY) UTF-8 ALL", "SORT () UTF-8 ALL", "SORT (REVERSE) UTF-8 ALL",
                "SORT (SUBJECT) UTF-8", "THREAD FOO UTF-8 ALL", "SORT (DATE) UTF-8 NOSUCHSEARCH",
                "SORT RETURN (FOO) (DATE) UTF-8 ALL"):
        _, t = small.cmd(bad)
        assert t.startswith(b"BAD"), (bad, t)
    _, t = small.cmd("NOOP")
    assert t.startswith(b"OK")
