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


def test_unauthenticate_rfc8437_3_releases_the_auth_session_count(data, srv):
    """RFC 8437 3: the authentication's resources are released. With
    max_userip_connections = 1, a second session of alice is refused while
    the first is logged in ([LIMIT], RFC 5530) and accepted once the first
    sent UNAUTHENTICATE: the auth process's count went down (its `E`)."""
    a = imap_server.Client(srv.port)
    a.login("alice", "secret")
    b = imap_server.Client(srv.port)
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
