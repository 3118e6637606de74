"""Small IMAP extensions (issue 10) against a real `mailroom serve`:
UNAUTHENTICATE (RFC 8437), STATUS DELETED (RFC 9051 6.3.11), REPLACE
(RFC 8508), PARTIAL (RFC 9394), UIDONLY (RFC 9586) and MESSAGELIMIT
(RFC 9738). Expectations come from the RFCs, whose sections are named in
each test's docstring."""
import re

import pytest

import imap_server
from conftest import add_user, deliver

MSG = b"From: a@example.org\r\nTo: %s@example.org\r\nSubject: %s %d\r\n\r\nbody %d\r\n"


@pytest.fixture
def srv(data):
    add_user(data, "alice")
    add_user(data, "bob", "bobpw")
    s = imap_server.start(data)
    yield s
    s.stop()


@pytest.fixture
def srv1(data):
    """A server that lets a user have one session per IP."""
    add_user(data, "alice")
    add_user(data, "bob", "bobpw")
    s = imap_server.start(data, extra_opts={"max_userip_connections": "1"})
    yield s
    s.stop()


def put(data, user, n, mailbox=None):
    p = deliver(data, user, MSG % (user.encode(), user.encode(), n, n), mailbox=mailbox)
    assert p.returncode == 0, p.stderr


def caps(c):
    for r in c.ok("CAPABILITY"):
        if r.startswith(b"* CAPABILITY "):
            return r.decode().split()[2:]
    raise AssertionError("no CAPABILITY")


def subjects(c):
    """{seq: subject} of the selected mailbox."""
    out = {}
    for r in c.ok("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])"):
        m = re.match(rb"\* (\d+) FETCH .*Subject: ([^\r]*)", r, re.S)
        if m:
            out[int(m.group(1))] = m.group(2).decode()
    return out


def number(untagged, word):
    found = None
    for r in untagged:
        m = re.fullmatch(rb"\* (\d+) " + word.encode(), r)
        if m:
            found = int(m.group(1))
    return found


# ---- UNAUTHENTICATE (RFC 8437) ---------------------------------------------------


def test_unauthenticate_rfc8437_3_relogin_as_other_user_sees_only_their_mail(data, srv):
    """RFC 8437 3: UNAUTHENTICATE returns to the not-authenticated state
    (advertised after login, RFC 8437 2); the selected mailbox, ENABLE and
    the saved search go; a LOGIN as another user then sees that user's
    INBOX only, and the first user's mailbox view is gone."""
    put(data, "alice", 1)
    put(data, "alice", 2)
    put(data, "bob", 7)
    c = imap_server.Client(srv.port)
    assert "UNAUTHENTICATE" not in caps(c)  # before login there is nothing to undo
    c.login("alice", "secret")
    assert "UNAUTHENTICATE" in caps(c)
    c.ok("ENABLE UTF8=ACCEPT")
    untagged = c.ok("SELECT INBOX")
    assert number(untagged, "EXISTS") == 2
    c.ok("SEARCH RETURN (SAVE) ALL")
    c.ok("UNAUTHENTICATE")
    # Not authenticated now: commands of the logged-in states are refused.
    for cmd in ("FETCH 1 (FLAGS)", "SELECT INBOX", "SEARCH $", "NOOP"):
        _, tagged = c.cmd(cmd)
        if cmd == "NOOP":
            assert tagged.startswith(b"OK")
        else:
            assert tagged.startswith(b"BAD"), (cmd, tagged)
    assert "UNAUTHENTICATE" not in caps(c)
    assert "AUTH=PLAIN" in caps(c)
    c.login("bob", "bobpw")
    # The state after the new login is fresh: no mailbox selected, ENABLE
    # undone (ENABLE UTF8=ACCEPT is answered as new), no saved result.
    _, tagged = c.cmd("FETCH 1 (FLAGS)")
    assert tagged.startswith(b"BAD")
    enabled = c.ok("ENABLE UTF8=ACCEPT")
    assert b"* ENABLED UTF8=ACCEPT" in enabled
    untagged = c.ok("SELECT INBOX")
    assert number(untagged, "EXISTS") == 1
    assert subjects(c) == {1: "bob 7"}
    _, tagged = c.cmd("SEARCH $")
    # RFC 5182 2.1: "$" with no saved result is an empty set, never alice's.
    assert not any(r.startswith(b"* SEARCH 1") for r in _)
    c.close()


def test_unauthenticate_rfc8437_3_releases_the_auth_session_count(data, srv1):
    """RFC 8437 3: the authentication's resources are released. With
    max_userip_connections = 1, a second session of alice is refused while
    the first is logged in ([LIMIT], RFC 5530) and accepted once the first
    sent UNAUTHENTICATE: the auth process's count went down (its `E`)."""
    a = imap_server.Client(srv1.port)
    a.login("alice", "secret")
    b = imap_server.Client(srv1.port)
    _, tagged = b.cmd('LOGIN "alice" "secret"')
    assert tagged.startswith(b"NO [LIMIT]"), tagged
    a.ok("UNAUTHENTICATE")
    b.login("alice", "secret")
    # And a logs in again as bob: one session each, within the limit.
    a.login("bob", "bobpw")
    _, tagged = a.cmd("UNAUTHENTICATE extra")
    assert tagged.startswith(b"BAD")
    a.ok("LOGOUT")
    b.ok("LOGOUT")
    a.close()
    b.close()


# ---- STATUS DELETED (RFC 9051 6.3.11) -------------------------------------------


def test_status_deleted_rfc9051_6_3_11_counts_deleted_messages(data, srv):
    """RFC 9051 6.3.11: STATUS (DELETED) is the number of messages with
    \\Deleted; advertised as STATUS=DELETED to IMAP4rev1 clients."""
    for n in range(4):
        put(data, "alice", n)
    c = imap_server.Client(srv.port)
    c.login("alice", "secret")
    assert "STATUS=DELETED" in caps(c)
    def deleted():
        r = [x for x in c.ok("STATUS INBOX (DELETED MESSAGES)") if x.startswith(b"* STATUS")][0]
        t = imap_server.parse(r)[3]
        return {t[i]: int(t[i + 1]) for i in range(0, len(t), 2)}
    assert deleted() == {"DELETED": 0, "MESSAGES": 4}
    c.ok("SELECT INBOX")
    c.ok("STORE 1,3 +FLAGS (\\Deleted)")
    assert deleted() == {"DELETED": 2, "MESSAGES": 4}
    c.ok("STORE 1 -FLAGS (\\Deleted)")
    assert deleted() == {"DELETED": 1, "MESSAGES": 4}
    c.ok("EXPUNGE")
    assert deleted() == {"DELETED": 0, "MESSAGES": 3}
    c.close()


# ---- REPLACE (RFC 8508) -----------------------------------------------------------

NEW = b"From: a@example.org\r\nSubject: draft v2\r\n\r\nsecond version\r\n"


def replace(c, text, message=NEW):
    """Send 'REPLACE ...' with message as a synchronizing literal."""
    return c.cmd(f"{text} {{{len(message)}}}", literal=message + b"\r\n")


def test_replace_rfc8508_3_same_mailbox_appenduid_and_expunge(data, srv):
    """RFC 8508 3, 3.2: REPLACE n mailbox message adds the new message
    (untagged OK [APPENDUID]), then expunges message n (EXPUNGE), then OK;
    the flags given apply to the new message."""
    for n in range(3):
        put(data, "alice", n)
    c = imap_server.Client(srv.port)
    c.login("alice", "secret")
    assert "REPLACE" in caps(c)
    c.ok("SELECT INBOX")
    # $Work exists before (a keyword new to the mailbox would not show in
    # this session's FETCH: a bug of APPEND as well, see this branch's report)
    c.ok("STORE 1 +FLAGS.SILENT ($Work)")
    untagged, tagged = replace(c, "REPLACE 2 INBOX (\\Draft $Work)")
    assert tagged.startswith(b"OK"), tagged
    ok = [r for r in untagged if r.startswith(b"* OK [APPENDUID ")]
    assert len(ok) == 1
    uidvalidity, newuid = (int(x) for x in ok[0].split(b"]")[0].split()[3:5])
    assert b"* 2 EXPUNGE" in untagged
    assert b"* 3 EXISTS" in untagged or b"* 4 EXISTS" in untagged
    assert untagged.index(ok[0]) < untagged.index(b"* 2 EXPUNGE")  # RFC 8508 3.2 order
    assert subjects(c) == {1: "alice 0", 2: "alice 2", 3: "draft v2"}
    r = [x for x in c.ok("UID FETCH %d (FLAGS BODY.PEEK[TEXT])" % newuid) if b"FETCH" in x][0]
    items = imap_server.fetch_items(r)[1]
    assert set(items["FLAGS"]) - {"\\Recent"} == {"\\Draft", "$Work"}
    assert items["BODY[TEXT]"] == b"second version\r\n"
    st = [x for x in c.ok("STATUS INBOX (UIDVALIDITY)") if x.startswith(b"* STATUS")][0]
    assert str(uidvalidity).encode() in st
    c.close()


def test_replace_rfc8508_3_uid_replace_into_other_mailbox_qresync_vanished(data, srv):
    """RFC 8508 3, 3.2 with RFC 7162 3.2.10: UID REPLACE into another
    mailbox; with QRESYNC enabled the old message is reported by VANISHED;
    the target mailbox gains the new message."""
    put(data, "alice", 1)
    put(data, "alice", 2)
    c = imap_server.Client(srv.port)
    c.login("alice", "secret")
    c.ok("CREATE Notes")
    c.ok("ENABLE QRESYNC")
    c.ok("SELECT INBOX")
    uid2 = int(re.search(rb"UID (\d+)", [x for x in c.ok("FETCH 2 (UID)") if b"FETCH" in x][0]).group(1))
    untagged, tagged = replace(c, f"UID REPLACE {uid2} Notes")
    assert tagged.startswith(b"OK"), tagged
    assert any(r.startswith(b"* OK [APPENDUID ") for r in untagged)
    assert f"* VANISHED {uid2}".encode() in untagged
    assert not any(r.endswith(b"EXPUNGE") for r in untagged)
    assert subjects(c) == {1: "alice 1"}
    c.ok("SELECT Notes")
    assert subjects(c) == {1: "draft v2"}
    c.close()


def test_replace_rfc8508_3_3_errors_leave_the_old_message(data, srv):
    """RFC 8508 3.3: a missing target mailbox is NO [TRYCREATE] and the
    old message stays; a sequence number beyond the mailbox is BAD, a UID
    that names no message is NO; REPLACE needs a selected mailbox and a
    read-write one (EXAMINE: NO); a message over message_size_limit is
    refused before it is sent ([TOOBIG])."""
    put(data, "alice", 1)
    c = imap_server.Client(srv.port)
    c.login("alice", "secret")
    _, tagged = c.cmd("REPLACE 1 INBOX {3+}\r\nabc")
    assert tagged.startswith(b"BAD")  # not selected
    c.ok("SELECT INBOX")
    untagged, tagged = replace(c, "REPLACE 1 Nowhere")
    assert tagged.startswith(b"NO [TRYCREATE]"), tagged
    assert not any(b"EXPUNGE" in r for r in untagged)
    _, tagged = replace(c, "REPLACE 5 INBOX")
    assert tagged.startswith(b"BAD"), tagged
    _, tagged = replace(c, "UID REPLACE 999 INBOX")
    assert tagged.startswith(b"NO"), tagged
    assert subjects(c) == {1: "alice 1"}
    c.ok("EXAMINE INBOX")
    _, tagged = replace(c, "REPLACE 1 INBOX")
    assert tagged.startswith(b"NO [READ-ONLY]"), tagged
    assert subjects(c) == {1: "alice 1"}
    # A client can still APPEND and REPLACE after all this: no literal
    # stayed behind.
    c.ok("SELECT INBOX")
    untagged, tagged = replace(c, "REPLACE 1 INBOX")
    assert tagged.startswith(b"OK"), tagged
    assert subjects(c) == {1: "draft v2"}
    c.close()


def test_replace_rfc8508_3_3_over_size_limit_is_refused(data):
    """RFC 8508 3.3 with RFC 7889 (APPENDLIMIT): a replacement above the
    size limit is refused like an APPEND and the old message stays."""
    add_user(data, "alice")
    srv = imap_server.start(data, extra_opts={"message_size_limit": "100"})
    try:
        put(data, "alice", 1)
        c = imap_server.Client(srv.port)
        c.login("alice", "secret")
        c.ok("SELECT INBOX")
        big = b"Subject: big\r\n\r\n" + b"x" * 200 + b"\r\n"
        c.n += 1
        c.send(f"t{c.n} REPLACE 1 INBOX {{{len(big)}}}\r\n".encode())
        r = c._read_response()
        assert r.startswith(f"t{c.n} NO [TOOBIG]".encode()), r
        assert subjects(c) == {1: "alice 1"}
        c.close()
    finally:
        srv.stop()


# ---- PARTIAL (RFC 9394) ----------------------------------------------------------


def esearch(c, text):
    """The ESEARCH response to text, as {name: value} (values as str)."""
    for r in c.ok(text):
        if r.startswith(b"* ESEARCH"):
            t = imap_server.parse(r)
            out, i = {}, 3  # "*", "ESEARCH", (TAG ...)
            if len(t) > i and t[i] == "UID":
                i += 1
            while i < len(t):
                out[t[i]] = t[i + 1]
                i += 2
            return out
    raise AssertionError(f"no ESEARCH to {text}")


def expand(s):
    out = []
    for part in s.split(","):
        a, _, b = part.partition(":")
        out += list(range(int(a), int(b or a) + 1))
    return out


def test_partial_rfc9394_3_1_search_pages_from_either_end(data, srv):
    """RFC 9394 3.1: SEARCH RETURN (PARTIAL 1:n) gives the first n results,
    PARTIAL -1:-n the last n, as (range set) with the range as asked;
    beyond the results: NIL; COUNT/MIN/MAX still describe all results;
    PARTIAL with ALL, a zero or mixed-sign range is BAD."""
    for n in range(12):
        put(data, "alice", n)
    c = imap_server.Client(srv.port)
    c.login("alice", "secret")
    assert "PARTIAL" in caps(c)
    c.ok("SELECT INBOX")
    c.ok("STORE 1:12 +FLAGS.SILENT (\\Seen)")
    c.ok("STORE 2,4 -FLAGS.SILENT (\\Seen)")  # results: 1,3,5:12 (10 messages)
    allr = expand(esearch(c, "SEARCH RETURN (ALL) SEEN")["ALL"])
    assert allr == [1, 3] + list(range(5, 13))
    r = esearch(c, "SEARCH RETURN (PARTIAL 1:3) SEEN")
    assert r["PARTIAL"][0] == "1:3" and expand(r["PARTIAL"][1]) == allr[:3]
    r = esearch(c, "SEARCH RETURN (PARTIAL -1:-4 COUNT MIN) SEEN")
    assert r["PARTIAL"][0] == "-1:-4" and expand(r["PARTIAL"][1]) == allr[-4:]
    assert r["COUNT"] == "10" and r["MIN"] == "1"
    r = esearch(c, "SEARCH RETURN (PARTIAL 9:20) SEEN")  # runs past the end
    assert expand(r["PARTIAL"][1]) == allr[8:]
    r = esearch(c, "SEARCH RETURN (PARTIAL 11:20) SEEN")
    assert r["PARTIAL"] == ["11:20", None]
    r = esearch(c, "SEARCH RETURN (PARTIAL -10:-20) SEEN")
    assert expand(r["PARTIAL"][1]) == allr[:1]
    # UID SEARCH: UIDs, not sequence numbers (after an expunge they differ).
    c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    c.ok("EXPUNGE")
    uids = expand(esearch(c, "UID SEARCH RETURN (ALL) SEEN")["ALL"])
    r = esearch(c, "UID SEARCH RETURN (PARTIAL -1:-2) SEEN")
    assert expand(r["PARTIAL"][1]) == uids[-2:]
    for bad in ("PARTIAL 0:5", "PARTIAL 1:-5", "PARTIAL -0:-5", "PARTIAL 1:5 ALL", "PARTIAL",
                "PARTIAL x:y"):
        _, tagged = c.cmd(f"SEARCH RETURN ({bad}) ALL")
        assert tagged.startswith(b"BAD"), (bad, tagged)
    c.close()


def test_partial_rfc9394_3_1_save_keeps_the_page(data, srv):
    """RFC 9394 3.1 with RFC 5182 2.4: SAVE with PARTIAL saves what was
    returned, so FETCH $ reaches the page the client got."""
    for n in range(6):
        put(data, "alice", n)
    c = imap_server.Client(srv.port)
    c.login("alice", "secret")
    c.ok("SELECT INBOX")
    c.ok("SEARCH RETURN (SAVE PARTIAL -1:-2) ALL")
    seqs = sorted(int(r.split()[1]) for r in c.ok("FETCH $ (FLAGS)") if b" FETCH " in r)
    assert seqs == [5, 6]
    c.close()


def test_partial_rfc9394_3_2_fetch_pages_the_set(data, srv):
    """RFC 9394 3.2: UID FETCH set items (PARTIAL range) answers only the
    messages at those positions of the set; with CHANGEDSINCE, positions
    among the changed messages."""
    for n in range(8):
        put(data, "alice", n)
    c = imap_server.Client(srv.port)
    c.login("alice", "secret")
    c.ok("SELECT INBOX")
    def fetched(text):
        return [int(re.search(rb"UID (\d+)", r).group(1)) for r in c.ok(text) if b" FETCH " in r]
    uids = fetched("UID FETCH 1:* (UID)")
    assert len(uids) == 8
    assert fetched("UID FETCH 1:* (FLAGS) (PARTIAL -1:-3)") == uids[-3:]
    assert fetched("UID FETCH 1:* (FLAGS) (PARTIAL 2:3)") == uids[1:3]
    assert fetched("FETCH 1:* (UID) (PARTIAL 1:2)") == uids[:2]
    assert fetched("UID FETCH 1:* (FLAGS) (PARTIAL 20:30)") == []
    r = [x for x in c.ok("UID FETCH 1:* (MODSEQ)") if b" FETCH " in x]
    top = max(int(re.search(rb"MODSEQ \((\d+)\)", x).group(1)) for x in r)
    c.ok(f"UID STORE {uids[1]},{uids[4]},{uids[6]} +FLAGS.SILENT (\\Flagged)")
    assert fetched(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {top} PARTIAL 1:2)") == [uids[1], uids[4]]
    assert fetched(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {top} PARTIAL -1:-1)") == [uids[6]]
    _, tagged = c.cmd("UID FETCH 1:* (FLAGS) (PARTIAL 0:1)")
    assert tagged.startswith(b"BAD")
    c.close()


# ---- UIDONLY (RFC 9586) -----------------------------------------------------------


def uidonly_session(srv):
    c = imap_server.Client(srv.port)
    c.login("alice", "secret")
    assert "UIDONLY" in caps(c)
    assert b"* ENABLED UIDONLY" in c.ok("ENABLE UIDONLY")
    return c


def test_uidonly_rfc9586_3_1_sequence_numbers_are_uidrequired(data, srv):
    """RFC 9586 3.1: after ENABLE UIDONLY, FETCH, STORE, SEARCH, COPY and
    MOVE with message sequence numbers, and UID SEARCH with a sequence-set
    key, are BAD [UIDREQUIRED]; their UID forms and EXPUNGE work."""
    for n in range(3):
        put(data, "alice", n)
    c = uidonly_session(srv)
    c.ok("SELECT INBOX")
    for cmd in ("FETCH 1 (FLAGS)", "STORE 1 +FLAGS (\\Seen)", "SEARCH ALL", "COPY 1 INBOX",
                "MOVE 1 INBOX", "UID SEARCH 1:2", "UID SEARCH NOT 1"):
        _, tagged = c.cmd(cmd)
        assert tagged.startswith(b"BAD [UIDREQUIRED]"), (cmd, tagged)
    r = [x for x in c.ok("UID SEARCH ALL") if x.startswith(b"* SEARCH")][0]
    assert len(r.split()) == 5
    c.ok("UID STORE 1:* +FLAGS.SILENT (\\Deleted)")
    c.ok("EXPUNGE")
    c.close()


def test_uidonly_rfc9586_3_3_uidfetch_and_vanished(data, srv):
    """RFC 9586 3.3, 3.2: FETCH responses become "* uid UIDFETCH (...)",
    numbered by UID, both answers to UID FETCH/UID STORE and unsolicited
    flag changes from another session; expunges are reported by VANISHED,
    never EXPUNGE, without QRESYNC; EXISTS is still sent."""
    for n in range(4):
        put(data, "alice", n)
    c = uidonly_session(srv)
    c.ok("SELECT INBOX")
    # Make UIDs and sequence numbers differ.
    c.ok("UID STORE 1 +FLAGS.SILENT (\\Deleted)")
    c.ok("EXPUNGE")
    untagged = c.ok("UID FETCH 1:* (FLAGS)")
    uids = [int(r.split()[1]) for r in untagged]
    assert uids == [2, 3, 4]
    assert all(re.fullmatch(rb"\* \d+ UIDFETCH \(FLAGS \([^)]*\)\)", r) for r in untagged), untagged
    untagged = c.ok("UID STORE 3 +FLAGS (\\Flagged)")
    assert re.fullmatch(rb"\* 3 UIDFETCH \(FLAGS \(\\Flagged( \\Recent)?\)\)", untagged[0]), untagged
    # Another session's changes: flags, an expunge, a new message.
    o = imap_server.Client(srv.port)
    o.login("alice", "secret")
    o.ok("SELECT INBOX")
    o.ok("UID STORE 4 +FLAGS.SILENT (\\Seen)")
    o.ok("UID STORE 2 +FLAGS.SILENT (\\Deleted)")
    o.ok("UID EXPUNGE 2")
    o.close()
    put(data, "alice", 9)
    untagged = c.ok("NOOP")
    assert b"* VANISHED 2" in untagged, untagged
    assert not any(r.endswith(b" EXPUNGE") for r in untagged)
    assert any(re.fullmatch(rb"\* 4 UIDFETCH \(FLAGS \(\\Seen( \\Recent)?\)\)", r) for r in untagged), untagged
    assert b"* 3 EXISTS" in untagged
    assert not any(b" FETCH " in r for r in untagged)
    c.close()


def test_uidonly_rfc9586_with_qresync_select(data, srv):
    """RFC 9586 with RFC 7162 3.2.5: a QRESYNC SELECT in a UIDONLY session
    reports what changed since the client's modseq as UIDFETCH responses
    and what went as VANISHED (EARLIER)."""
    for n in range(3):
        put(data, "alice", n)
    c = uidonly_session(srv)
    c.ok("ENABLE QRESYNC")
    untagged = c.ok("SELECT INBOX")
    uv = int(re.search(rb"UIDVALIDITY (\d+)", b"\n".join(untagged)).group(1))
    ms = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"\n".join(untagged)).group(1))
    c.ok("UNSELECT")
    o = imap_server.Client(srv.port)
    o.login("alice", "secret")
    o.ok("SELECT INBOX")
    o.ok("UID STORE 2 +FLAGS.SILENT (\\Answered)")
    o.ok("UID STORE 1 +FLAGS.SILENT (\\Deleted)")
    o.ok("UID EXPUNGE 1")
    o.close()
    untagged = c.ok(f"SELECT INBOX (QRESYNC ({uv} {ms}))")
    assert b"* VANISHED (EARLIER) 1" in untagged, untagged
    fetches = [r for r in untagged if b"FETCH" in r]
    assert fetches and all(b" UIDFETCH " in r for r in fetches), fetches
    assert any(r.startswith(b"* 2 UIDFETCH (") and b"\\Answered" in r for r in fetches), fetches
    c.close()


def test_uidonly_rfc9586_ends_with_unauthenticate(data, srv):
    """RFC 9586 with RFC 8437 3: ENABLE UIDONLY is a session state that a
    new login does not inherit: FETCH answers FETCH again."""
    put(data, "alice", 1)
    c = uidonly_session(srv)
    c.ok("UNAUTHENTICATE")
    c.login("alice", "secret")
    c.ok("SELECT INBOX")
    assert re.fullmatch(rb"\* 1 FETCH \(FLAGS \(.*\)\)", c.ok("FETCH 1 (FLAGS)")[0])
    c.close()


# ---- MESSAGELIMIT (RFC 9738) -------------------------------------------------------


@pytest.fixture
def srv_limit(data):
    """A server whose commands handle at most 3 messages each."""
    add_user(data, "alice")
    s = imap_server.start(data, extra_opts={"imap_message_limit": "3"})
    yield s
    s.stop()


def test_messagelimit_rfc9738_not_advertised_without_a_limit(data, srv):
    """RFC 9738: a server with no limit (imap_message_limit = 0, the
    default) does not advertise MESSAGELIMIT."""
    c = imap_server.Client(srv.port)
    c.login("alice", "secret")
    assert not any(w.startswith("MESSAGELIMIT") for w in caps(c))
    c.close()


def test_messagelimit_rfc9738_advertised_when_configured(data, srv_limit):
    """RFC 9738: MESSAGELIMIT=N names the configured limit."""
    c = imap_server.Client(srv_limit.port)
    c.login("alice", "secret")
    assert "MESSAGELIMIT=3" in caps(c)
    c.close()


def test_messagelimit_rfc9738_uid_commands_do_the_lowest_n_then_continue(data, srv_limit):
    """RFC 9738: a UID FETCH, UID STORE, UID COPY, UID MOVE or UID EXPUNGE
    over more messages than the limit handles the limit's worth with the
    lowest UIDs and completes OK [LIMIT] (RFC 5530), so the client repeats
    from the UID after the last one it got; COPYUID then comes untagged."""
    for n in range(5):
        put(data, "alice", n)
    c = imap_server.Client(srv_limit.port)
    c.login("alice", "secret")
    c.ok("CREATE Other")
    c.ok("SELECT INBOX")
    untagged, tagged = c.cmd("UID FETCH 1:* (FLAGS)")
    assert tagged.startswith(b"OK [LIMIT]"), tagged
    got = [int(re.search(rb"UID (\d+)", r).group(1)) for r in untagged if b" FETCH " in r]
    assert got == [1, 2, 3]
    untagged, tagged = c.cmd(f"UID FETCH {got[-1] + 1}:* (FLAGS)")
    assert tagged == b"OK Fetch completed"
    assert [int(re.search(rb"UID (\d+)", r).group(1)) for r in untagged if b" FETCH " in r] == [4, 5]
    # UID STORE: the first three only.
    _, tagged = c.cmd("UID STORE 1:5 +FLAGS.SILENT (\\Flagged)")
    assert tagged.startswith(b"OK [LIMIT]"), tagged
    flagged = [x for x in c.ok("UID SEARCH FLAGGED") if x.startswith(b"* SEARCH")][0]
    assert flagged.split()[2:] == [b"1", b"2", b"3"]
    # UID COPY: COPYUID untagged for the three copied, [LIMIT] tagged.
    untagged, tagged = c.cmd("UID COPY 1:* Other")
    assert tagged.startswith(b"OK [LIMIT]"), tagged
    cu = [r for r in untagged if r.startswith(b"* OK [COPYUID ")]
    assert len(cu) == 1 and cu[0].split()[4] == b"1:3", cu
    # UID EXPUNGE: \Deleted on all five, only the three lowest go.
    c.ok("UID STORE 1:3 +FLAGS.SILENT (\\Deleted)")
    c.ok("UID STORE 4:5 +FLAGS.SILENT (\\Deleted)")
    untagged, tagged = c.cmd("UID EXPUNGE 1:*")
    assert tagged.startswith(b"OK [LIMIT]"), tagged
    assert sum(1 for r in untagged if r.endswith(b" EXPUNGE")) == 3
    untagged, tagged = c.cmd("UID EXPUNGE 1:*")
    assert tagged.startswith(b"OK Expunge"), tagged
    assert sum(1 for r in untagged if r.endswith(b" EXPUNGE")) == 2
    c.ok("SELECT Other")
    assert sorted(subjects(c).values()) == ["alice 0", "alice 1", "alice 2"]
    c.close()


def test_messagelimit_rfc9738_sequence_numbers_over_the_limit_are_refused(data, srv_limit):
    """RFC 9738: with message sequence numbers the server cannot say where
    to go on, so FETCH, STORE, COPY and MOVE over the limit answer NO
    [LIMIT] and change nothing; within the limit they work."""
    for n in range(5):
        put(data, "alice", n)
    c = imap_server.Client(srv_limit.port)
    c.login("alice", "secret")
    c.ok("CREATE Other")
    c.ok("SELECT INBOX")
    for cmd in ("FETCH 1:* (FLAGS)", "STORE 1:5 +FLAGS (\\Seen)", "COPY 1:4 Other", "MOVE 1:* Other"):
        untagged, tagged = c.cmd(cmd)
        assert tagged.startswith(b"NO [LIMIT]"), (cmd, tagged)
        assert not any(b"FETCH" in r or b"EXPUNGE" in r for r in untagged), (cmd, untagged)
    assert [x for x in c.ok("SEARCH SEEN") if x.startswith(b"* SEARCH")][0] == b"* SEARCH"
    st = [x for x in c.ok("STATUS Other (MESSAGES)") if x.startswith(b"* STATUS")][0]
    assert st.endswith(b"(MESSAGES 0)")
    assert len([r for r in c.ok("FETCH 1:3 (FLAGS)") if b" FETCH " in r]) == 3
    c.ok("MOVE 4:5 Other")
    c.close()


def test_replace_rfc8508_refused_commands_leave_no_staged_literal(data, srv):
    """RFC 8508 6 (REPLACE's message literal streams as APPEND's): a
    command refused before it runs (UID APPEND has no UID form, REPLACE
    under UIDONLY with a sequence number, RFC 9586 3.1) drops the literal
    it streamed, so the next APPEND stores exactly its own message."""
    put(data, "alice", 1)
    c = imap_server.Client(srv.port)
    c.login("alice", "secret")
    c.ok("SELECT INBOX")
    _, tagged = c.cmd(f"UID APPEND INBOX {{{len(NEW)}}}", literal=NEW + b"\r\n")
    assert tagged.startswith(b"BAD"), tagged
    c.ok("ENABLE UIDONLY")
    _, tagged = replace(c, "REPLACE 1 INBOX")
    assert tagged.startswith(b"BAD [UIDREQUIRED]"), tagged
    m = b"Subject: third\r\n\r\nthird\r\n"
    untagged, tagged = c.cmd(f"APPEND INBOX {{{len(m)}}}", literal=m + b"\r\n")
    assert tagged.startswith(b"OK [APPENDUID "), tagged
    uid = int(tagged.split()[3].rstrip(b"]"))
    r = [x for x in c.ok(f"UID FETCH {uid} (BODY.PEEK[])") if b"UIDFETCH" in x][0]
    assert r.endswith(b"{%d}\r\n" % len(m) + m + b")"), r
    c.close()
