"""mailroom-box is shared by every process that changes a mailbox: what one
writes must not undo what another wrote since it read the file (store_box.c,
store_box_save). Found by the issue 10 helpers: a session that expunged the
highest UID with an old copy of the file in memory wrote its old keyword list
back, so a keyword another session had just added lost its name (RFC 9051
2.3.2: keywords are part of the message's state, which must persist)."""
import imaplib
import re

import imap_server
from conftest import add_user, deliver, make_message


def flags_of(port, box="INBOX"):
    m = imaplib.IMAP4("127.0.0.1", port)
    m.login("alice", "secret")
    m.select(box, readonly=True)
    typ, data = m.uid("FETCH", "1:*", "(FLAGS)")
    m.logout()
    out = {}
    for line in data:
        g = re.search(rb"UID (\d+) FLAGS \(([^)]*)\)", line)
        out[int(g.group(1))] = set(g.group(2).decode().split()) - {"\\Recent"}
    return out


def test_keyword_added_by_another_session_survives_expunge(data):
    add_user(data, "alice")
    for i in range(3):
        assert deliver(data, "alice", make_message(f"m{i}")).returncode == 0
    srv = imap_server.start(data)
    try:
        a = imaplib.IMAP4("127.0.0.1", srv.port)
        a.login("alice", "secret")
        a.select("INBOX")  # A reads mailroom-box now: no keywords yet
        b = imaplib.IMAP4("127.0.0.1", srv.port)
        b.login("alice", "secret")
        typ, _ = b.append("INBOX", r"(\Seen $Work)", None, make_message("kw"))
        assert typ == "OK"
        b.select("INBOX")
        typ, _ = b.uid("STORE", "1", "+FLAGS", "(Project)")
        assert typ == "OK"
        b.logout()
        # A expunges the highest UID but one (the UID floor moves: A saves the box)
        a.uid("STORE", "3", "+FLAGS", r"(\Deleted)")
        assert a.expunge()[0] == "OK"
        a.logout()
        got = flags_of(srv.port)
        assert got[4] == {"\\Seen", "$Work"}, got
        assert got[1] == {"Project"}, got
    finally:
        srv.stop()
    # and after a restart with the index gone: the names come from mailroom-box
    for p in (data / "mail" / "alice").glob("index.sqlite*"):
        p.unlink()
    srv = imap_server.start(data)
    try:
        got = flags_of(srv.port)
        assert got[4] == {"\\Seen", "$Work"} and got[1] == {"Project"}, got
    finally:
        srv.stop()
