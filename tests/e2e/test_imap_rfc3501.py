"""RFC 3501 behaviours that IMAP4rev1 clients rely on (issue 10), against a
real `mailroom serve`: \\Recent with several sessions and deliveries between
them (RFC 3501 2.3.2), mailbox names made of every astring character
(RFC 3501 9), tolerance of BAD commands, STORE FLAGS NIL, SEARCH beyond the
mailbox (RFC 9051 6.4.4), CONDSTORE enabled by a command (RFC 7162 3.1),
LIST-EXTENDED subscriptions (RFC 5258) and LSUB parents (RFC 3501 6.3.9).
Expectations come from the RFCs (section numbers in each docstring); where
the RFCs leave a choice, from what Dovecot and Cyrus do."""
import re
import smtplib

import pytest

import imap_server
from conftest import add_user, deliver

MSG = b"From: a@example.org\r\nTo: alice@example.org\r\nSubject: %d\r\n\r\nbody %d\r\n"


@pytest.fixture
def srv(data):
    add_user(data, "alice")
    s = imap_server.start(data, protocols=("imap", "lmtp"))
    yield s
    s.stop()


def put(data, n, mailbox=None):
    p = deliver(data, "alice", MSG % (n, n), mailbox=mailbox)
    assert p.returncode == 0, p.stderr


def lmtp_put(srv, n):
    with smtplib.LMTP("127.0.0.1", srv.ports["lmtp"], timeout=30) as l:
        l.sendmail("a@example.org", ["alice"], MSG % (n, n))


def login(srv, rev2=False):
    c = imap_server.Client(srv.port)
    c.login("alice", "secret")
    if rev2:
        c.ok("ENABLE IMAP4rev2")
    return c


def number(untagged, word):
    """n of the untagged '* n WORD' (the last one), or None."""
    found = None
    for r in untagged:
        m = re.fullmatch(rb"\* (\d+) " + word.encode(), r)
        if m:
            found = int(m.group(1))
    return found


def flags(c, seqset="1:*"):
    """{seq: [flags]} from FETCH FLAGS."""
    out = {}
    for r in c.ok(f"FETCH {seqset} (FLAGS)"):
        if b" FETCH " in r:
            seq, items = imap_server.fetch_items(r)
            out[seq] = items["FLAGS"]
    return out


def search(c, text):
    for r in c.ok(text):
        if r.startswith(b"* SEARCH"):
            return [int(x) for x in r.split()[2:]]
    raise AssertionError(f"no SEARCH response to {text}")


def status(c, box, items):
    untagged = c.ok(f"STATUS {box} ({items})")
    t = imap_server.parse([r for r in untagged if r.startswith(b"* STATUS")][0])
    return {t[3][i]: int(t[3][i + 1]) for i in range(0, len(t[3]), 2)}


# ---- \Recent ------------------------------------------------------------------


def test_recent_rfc3501_2_3_2_exactly_one_session_sees_new_mail(data, srv):
    """RFC 3501 2.3.2, 6.3.1, 6.3.2, 7.3.2: a message is recent in exactly
    one session, the first to SELECT the mailbox (or, while selected, to be
    told of it) after it arrived; EXAMINE does not take it; `* n RECENT`
    follows the new EXISTS; FETCH FLAGS shows \\Recent."""
    put(data, 1)
    put(data, 2)
    e = login(srv)
    assert status(e, "INBOX", "RECENT MESSAGES") == {"MESSAGES": 2, "RECENT": 2}
    assert number(e.ok("EXAMINE INBOX"), "RECENT") == 2  # looks, claims nothing
    a = login(srv)
    assert number(a.ok("SELECT INBOX"), "RECENT") == 2  # EXAMINE left them recent
    assert flags(a) == {1: ["\\Recent"], 2: ["\\Recent"]}
    b = login(srv)
    assert number(b.ok("SELECT INBOX"), "RECENT") == 0  # a has them
    assert flags(b) == {1: [], 2: []}
    assert status(e, "INBOX", "RECENT")["RECENT"] == 0

    lmtp_put(srv, 3)  # arrives while a and b have INBOX selected
    ub = b.ok("NOOP")  # b is told first: the message is b's
    assert number(ub, "EXISTS") == 3 and number(ub, "RECENT") == 1
    assert ub.index(b"* 3 EXISTS") < ub.index(b"* 1 RECENT")
    ua = a.ok("NOOP")
    assert number(ua, "EXISTS") == 3 and number(ua, "RECENT") == 2
    assert flags(a, "3") == {3: []}
    assert flags(b, "3") == {3: ["\\Recent"]}

    # SEARCH RECENT / NEW / OLD (RFC 3501 6.4.4): NEW = RECENT UNSEEN
    assert search(a, "SEARCH RECENT") == [1, 2]
    assert search(a, "SEARCH OLD") == [3]
    a.ok("STORE 2 +FLAGS.SILENT (\\Seen)")
    assert search(a, "SEARCH NEW") == [1]
    assert flags(a, "2") == {2: ["\\Seen", "\\Recent"]}  # a flag change keeps \Recent
    assert search(b, "UID SEARCH RECENT") == [3]
    assert search(b, "SEARCH NOT RECENT") == [1, 2]

    # every message has been claimed: a new session sees none recent
    f = login(srv)
    assert number(f.ok("SELECT INBOX"), "RECENT") == 0
    assert status(f, "INBOX", "RECENT")["RECENT"] == 0
    for c in (a, b, e, f):
        c.close()


def test_recent_rfc3501_7_3_2_pushed_during_idle(data, srv):
    """RFC 3501 7.3.2 with IDLE (RFC 2177): a delivery to the selected
    mailbox reaches the idling session as EXISTS then RECENT, and is its."""
    a = login(srv)
    a.ok("SELECT INBOX")
    a.send(b"i1 IDLE\r\n")
    assert a._read_response().startswith(b"+")
    lmtp_put(srv, 1)
    got = [a._read_response(), a._read_response()]
    assert got == [b"* 1 EXISTS", b"* 1 RECENT"]
    a.send(b"DONE\r\n")
    assert a._read_response().startswith(b"i1 OK")
    assert flags(a) == {1: ["\\Recent"]}
    b = login(srv)
    assert number(b.ok("SELECT INBOX"), "RECENT") == 0
    a.close()
    b.close()


def test_recent_rfc9051_imap4rev2_session_claims_but_never_shows(data, srv):
    """RFC 9051 removed \\Recent: a session that ENABLEd IMAP4rev2 gets no
    RECENT response and no \\Recent flag; like Dovecot, its SELECT still
    takes the messages (an IMAP4rev1 session after it sees none recent)."""
    put(data, 1)
    r2 = login(srv, rev2=True)
    u = r2.ok("SELECT INBOX")
    assert number(u, "RECENT") is None and number(u, "EXISTS") == 1
    assert flags(r2) == {1: []}
    put(data, 2)
    u = r2.ok("NOOP")
    assert number(u, "EXISTS") == 2 and number(u, "RECENT") is None
    r1 = login(srv)
    assert number(r1.ok("SELECT INBOX"), "RECENT") == 0
    r1.close()
    r2.close()


def test_recent_rfc3501_6_4_7_copy_and_append_are_recent_at_the_destination(data, srv):
    """RFC 3501 6.4.7 / 6.3.11 with 2.3.2: messages COPYed or APPENDed into a
    mailbox are new there: STATUS counts them as RECENT (6.3.10) until a
    SELECT of that mailbox takes them."""
    put(data, 1)
    put(data, 2)
    a = login(srv)
    a.ok("SELECT INBOX")
    a.ok("COPY 1:2 Archive")
    msg = MSG % (3, 3)
    u, t = a.cmd(f"APPEND Archive {{{len(msg)}}}", literal=msg + b"\r\n")
    assert t.startswith(b"OK"), t
    assert status(a, "Archive", "RECENT MESSAGES") == {"MESSAGES": 3, "RECENT": 3}
    b = login(srv)
    assert number(b.ok("EXAMINE Archive"), "RECENT") == 3
    assert number(b.ok("SELECT Archive"), "RECENT") == 3
    assert search(b, "SEARCH RECENT") == [1, 2, 3]
    assert status(a, "Archive", "RECENT MESSAGES") == {"MESSAGES": 3, "RECENT": 0}
    a.close()
    b.close()


# ---- names, errors, leniency ----------------------------------------------------

ODD = "!#$&-'+,-.0123456789:;<=>?@^_`|[}"  # every ASTRING-CHAR that is special elsewhere; & as "&-"


def test_mailbox_names_rfc3501_9_astring_chars(data, srv):
    """RFC 3501 9: ASTRING-CHAR is any ATOM-CHAR (so '[' and '}') or ']';
    a mailbox name sent as such an atom works in every command, and LIST
    with it keeps the connection."""
    c = login(srv)
    for name in (ODD, ODD + "]", "a]b", "x[y", "[Gmail]/All"):
        c.ok(f"CREATE {name}")
        u = c.ok(f"SELECT {name}")
        assert number(u, "EXISTS") == 0
        u = c.ok(f'LIST "" {name}')
        assert len(u) == 1 and imap_server.parse(u[0])[4] == name.encode(), u
        c.ok(f"STATUS {name} (MESSAGES)")
        c.ok(f"SUBSCRIBE {name}")
    put(data, 1, mailbox="x[y")
    c.ok("UNSELECT")
    u = c.ok(f"STATUS x[y (MESSAGES)")
    assert imap_server.parse(u[0])[3] == ["MESSAGES", "1"]
    u = c.ok('LIST "" *[*')
    names = sorted(imap_server.parse(r)[4] for r in u)
    assert names == sorted(n.encode() for n in (ODD, ODD + "]", "x[y", "[Gmail]", "[Gmail]/All"))
    c.ok(f"RENAME {ODD} y[z")
    c.ok("DELETE y[z")
    c.ok("NOOP")
    c.close()


def test_bad_tolerance_20_consecutive(data, srv):
    """RFC 3501 and 9051 set no limit on BADs; like Dovecot we say BYE only
    after 20 invalid commands in a row, and any good command starts the
    count again: a long session that sends odd commands now and then is
    never cut off for their sum."""
    c = login(srv)
    for _ in range(5):  # 95 BADs in all, never 20 in a row
        for _ in range(19):
            assert c.cmd("BOGUS")[1].startswith(b"BAD")
        c.ok("NOOP")
    for _ in range(20):
        assert c.cmd("FETCH")[1].startswith(b"BAD")  # not selected: BAD too
    c.ok("NOOP")  # 20 in a row still leaves the connection
    for _ in range(20):
        assert c.cmd("BOGUS")[1].startswith(b"BAD")
    c.send(b"x BOGUS\r\n")  # the 21st in a row
    assert c._read_response() == b"x BAD Unknown command"
    assert c._read_response().startswith(b"* BYE")
    with pytest.raises(EOFError):
        c._read_response()  # and the server closes
    c.close()


def test_store_flags_nil_as_empty_list(data, srv):
    """STORE 1 +FLAGS NIL: RFC 3501 9 allows no NIL here, but Dovecot and
    Cyrus take it as () and clients send it; so do we, for all three forms."""
    put(data, 1)
    c = login(srv)
    c.ok("SELECT INBOX")
    c.ok("STORE 1 FLAGS (\\Seen \\Flagged)")
    for op in ("+FLAGS", "-FLAGS", "+FLAGS.SILENT"):
        c.ok(f"STORE 1 {op} NIL")
        assert sorted(flags(c, "1")[1]) == ["\\Flagged", "\\Recent", "\\Seen"]
    c.ok("UID STORE 1 FLAGS NIL")
    assert flags(c, "1") == {1: ["\\Recent"]}
    c.close()


def test_search_rfc9051_6_4_4_sequence_beyond_mailbox(data, srv):
    """RFC 9051 6.4.4: a sequence set naming messages that do not exist may
    be answered OK; Dovecot and Cyrus match nothing for them. SEARCH,
    UID SEARCH and ESEARCH (RFC 4731) alike; FETCH still refuses them."""
    for n in range(3):
        put(data, n)
    c = login(srv)
    c.ok("SELECT INBOX")
    assert search(c, "SEARCH 1000") == []
    assert search(c, "UID SEARCH 1000") == []
    assert search(c, "SEARCH 2:1000") == [2, 3]
    assert search(c, "SEARCH 1000 OR 1 1001") == []
    u = c.ok("SEARCH RETURN () 1000")
    assert len(u) == 1 and u[0].startswith(b"* ESEARCH") and b"ALL" not in u[0]
    u = c.ok("SEARCH RETURN (COUNT) 3:1000")
    assert u[0].endswith(b"COUNT 1")
    assert c.cmd("FETCH 1000 FLAGS")[1].startswith(b"BAD")
    c.close()


def test_condstore_rfc7162_3_1_enabled_by_a_command_sends_highestmodseq(data, srv):
    """RFC 7162 3.1: the first CONDSTORE-enabling command while a mailbox is
    selected (that was not SELECTed with CONDSTORE) gets an untagged
    OK [HIGHESTMODSEQ n] before its own responses; later ones do not."""
    put(data, 1)
    enabling = ("FETCH 1 (MODSEQ)", "SEARCH MODSEQ 1", "STORE 1 (UNCHANGEDSINCE 1) +FLAGS (x)",
                "FETCH 1 (FLAGS) (CHANGEDSINCE 1)", "STATUS Drafts (HIGHESTMODSEQ)")
    for cmd in enabling:
        c = login(srv)
        sel = c.ok("SELECT INBOX")
        hms = [r for r in sel if b"HIGHESTMODSEQ" in r][0]
        u = c.ok(cmd)
        assert u and u[0].startswith(b"* OK [HIGHESTMODSEQ "), (cmd, u)
        # the value the SELECT gave (nothing changed since), or above it
        assert int(u[0].split()[3].rstrip(b"]")) >= int(hms.split()[3].rstrip(b"]")), (cmd, u)
        again = c.ok("FETCH 1 (MODSEQ)")
        assert not any(b"HIGHESTMODSEQ" in r for r in again), (cmd, again)
        c.close()
    c = login(srv)
    c.ok("SELECT INBOX (CONDSTORE)")
    assert not any(b"HIGHESTMODSEQ" in r for r in c.ok("FETCH 1 (MODSEQ)"))
    c.close()


# ---- LIST-EXTENDED and LSUB --------------------------------------------------------


def list_lines(c, cmd):
    out = {}
    for r in c.ok(cmd):
        t = imap_server.parse(r)
        out[t[4].decode()] = (sorted(t[2]), t[5:] if len(t) > 5 else [])
    return out


def test_list_extended_rfc5258_subscribed_and_childinfo(data, srv):
    """RFC 5258 3.4: LIST (SUBSCRIBED) lists subscriptions whose mailbox no
    longer exists with \\NonExistent (and \\Subscribed); 3.5 and the
    examples of section 5: with RECURSIVEMATCH, a name matching the pattern
    whose subscribed child does not match gets CHILDINFO ("SUBSCRIBED"),
    subscribed or not; RETURN (CHILDREN) reports children."""
    c = login(srv)
    for box in ("Foo", "Foo/Bar", "Foo/Baz", "Moo", "Gone"):
        c.ok(f"CREATE {box}")
    for box in ("Foo/Bar", "Gone", "Ghost/Child", "Moo"):
        c.ok(f"SUBSCRIBE {box}")
    c.ok("DELETE Gone")
    got = list_lines(c, 'LIST (SUBSCRIBED) "" "*"')
    assert "\\NonExistent" in got["Gone"][0] and "\\Subscribed" in got["Gone"][0]
    assert "\\NonExistent" in got["Ghost/Child"][0]
    assert "\\Subscribed" in got["Foo/Bar"][0] and "\\NonExistent" not in got["Foo/Bar"][0]
    assert "Foo" not in got and "Foo/Baz" not in got

    got = list_lines(c, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN)')
    assert got["Foo"] == (["\\HasChildren"], [[b"CHILDINFO", [b"SUBSCRIBED"]]])
    assert "\\NonExistent" in got["Ghost"][0] and got["Ghost"][1] == [[b"CHILDINFO", [b"SUBSCRIBED"]]]
    assert "\\Subscribed" in got["Moo"][0] and got["Moo"][1] == []
    assert "Foo/Bar" not in got  # does not match "%"
    # with "*" the subscribed child matches itself: no CHILDINFO, no parent
    got = list_lines(c, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "*"')
    assert "Foo" not in got and got["Foo/Bar"][1] == []
    # a subscribed parent of a subscribed child carries CHILDINFO as well
    c.ok("SUBSCRIBE Foo")
    got = list_lines(c, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"')
    assert "\\Subscribed" in got["Foo"][0] and got["Foo"][1] == [[b"CHILDINFO", [b"SUBSCRIBED"]]]
    # without RECURSIVEMATCH there is no CHILDINFO
    got = list_lines(c, 'LIST (SUBSCRIBED) "" "%"')
    assert got["Foo"][1] == [] and "Ghost" not in got
    c.close()


def test_lsub_rfc3501_6_3_9_noselect_parent(data, srv):
    """RFC 3501 6.3.9: LSUB with "%" returns a parent whose child is
    subscribed but which is not itself, flagged \\Noselect, once."""
    c = login(srv)
    for box in ("Foo", "Foo/Bar", "Foo/Baz"):
        c.ok(f"CREATE {box}")
    c.ok("SUBSCRIBE Foo/Bar")
    c.ok("SUBSCRIBE Foo/Baz")
    u = [r for r in c.ok('LSUB "" "%"') if b'"Foo' in r]
    assert u == [b'* LSUB (\\Noselect) "/" "Foo"']
    u = [r for r in c.ok('LSUB "" "Foo/%"') if b'"Foo' in r]
    assert sorted(imap_server.parse(r)[4] for r in u) == [b"Foo/Bar", b"Foo/Baz"]
    c.ok("SUBSCRIBE Foo")
    u = [r for r in c.ok('LSUB "" "%"') if b'"Foo' in r]
    assert len(u) == 1 and b"\\Noselect" not in u[0]
    c.close()
