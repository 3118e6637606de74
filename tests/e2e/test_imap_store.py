"""STORE / UID STORE against a real `mailroom serve` (RFC 9051 6.4.6,
RFC 7162 3.1.3 UNCHANGEDSINCE / MODIFIED).

What the server says is checked against the RFC, and the result against
the disk: the flags of a message are the letters of its file name in cur/
(DESIGN.md: D F P R S T, keywords a..z), read here without mailroom's help.
"""

import os
import re

import pytest

import imap_server
from conftest import add_user, cur_files, deliver
from imap_server import Client, fetch_items

PW = "secret"
MSG = b"From: a@example.com\r\nSubject: s\r\n\r\nbody\r\n"


def new_data(parent):
    os.chmod(parent, 0o755)  # workers run as run_user when started as root
    data = parent / "data"
    data.mkdir()
    return data


@pytest.fixture
def env(tmp_path):
    data = new_data(tmp_path)
    add_user(data, "alice", PW)
    for _ in range(5):
        deliver(data, ["alice"], MSG)
    srv = imap_server.start(data)
    yield data, srv
    srv.stop()


def client(srv, select="SELECT INBOX", enable=None):
    c = Client(srv.port)
    c.login("alice", PW)
    if enable:
        c.ok("ENABLE " + enable)
    c.ok(select)
    return c


def disk_flags(data):
    """{uid: maildir info letters} straight from the file names."""
    return {uid: flags for uid, flags, _ in cur_files(data, "alice")}


def fetches(untagged):
    """FETCH responses as (seq, items); FLAGS without \\Recent, which these
    sessions hold for every message as the first to select (RFC 3501 2.3.2,
    tested in test_imap_rfc3501.py) and which STORE never changes."""
    out = [fetch_items(u) for u in untagged if re.match(rb"\* \d+ FETCH ", u)]
    for _, items in out:
        if "FLAGS" in items:
            items["FLAGS"] = [f for f in items["FLAGS"] if f != "\\Recent"]
    return out


def test_set_add_remove(env):
    data, srv = env
    c = client(srv)
    untagged = c.ok("STORE 1 FLAGS (\\Seen \\Flagged)")
    assert fetches(untagged) == [(1, {"FLAGS": ["\\Flagged", "\\Seen"]})]
    untagged = c.ok("STORE 1:2 +FLAGS (\\Answered)")
    got = fetches(untagged)
    assert [s for s, _ in got] == [1, 2]
    assert sorted(got[0][1]["FLAGS"]) == ["\\Answered", "\\Flagged", "\\Seen"]
    assert got[1][1]["FLAGS"] == ["\\Answered"]
    untagged = c.ok("STORE 1 -FLAGS (\\Flagged)")
    assert sorted(fetches(untagged)[0][1]["FLAGS"]) == ["\\Answered", "\\Seen"]
    # several flags without parentheses (RFC 9051 9: flag *(SP flag))
    untagged = c.ok("STORE 3 +FLAGS \\Deleted \\Draft")
    assert sorted(fetches(untagged)[0][1]["FLAGS"]) == ["\\Deleted", "\\Draft"]
    d = disk_flags(data)
    assert d[1] == "RS" and d[2] == "R" and d[3] == "DT" and d[4] == "" and d[5] == ""
    # STORE FLAGS () clears
    c.ok("STORE 1 FLAGS ()")
    assert disk_flags(data)[1] == ""
    c.close()


def test_silent_and_no_echo(env):
    data, srv = env
    c = client(srv)
    untagged = c.ok("STORE 1:3 +FLAGS.SILENT (\\Seen)")
    assert fetches(untagged) == []
    assert [disk_flags(data)[u] for u in (1, 2, 3)] == ["S", "S", "S"]
    # nothing echoed later either
    assert not fetches(c.ok("NOOP"))
    # another session learns about it
    other = client(srv)
    c.ok("STORE 4 +FLAGS.SILENT (\\Flagged)")
    untagged = other.ok("NOOP")
    got = fetches(untagged)
    assert got == [(4, {"FLAGS": ["\\Flagged"]})], untagged
    other.close()
    c.close()


def test_uid_store(env):
    data, srv = env
    c = client(srv)
    untagged = c.ok("UID STORE 2,4 +FLAGS (\\Flagged)")
    got = fetches(untagged)
    assert [(s, it["UID"]) for s, it in got] == [(2, "2"), (4, "4")]
    assert disk_flags(data)[2] == "F" and disk_flags(data)[4] == "F"
    # UIDs that do not exist are not an error
    assert fetches(c.ok("UID STORE 999 +FLAGS (\\Flagged)")) == []
    c.close()


def test_keywords(env):
    data, srv = env
    c = client(srv)
    untagged = c.ok("STORE 1 +FLAGS (Work $Label1)")
    # the new keywords are announced before the FETCH that shows them
    flags_i = [i for i, u in enumerate(untagged) if u.startswith(b"* FLAGS ")]
    fetch_i = [i for i, u in enumerate(untagged) if b" FETCH " in u]
    assert flags_i and fetch_i and flags_i[0] < fetch_i[0], untagged
    assert b"Work" in untagged[flags_i[0]] and b"$Label1" in untagged[flags_i[0]]
    assert sorted(fetches(untagged)[0][1]["FLAGS"]) == ["$Label1", "Work"]
    letters = disk_flags(data)[1]
    assert len(letters) == 2 and letters.islower()   # keywords are letters a..z
    untagged = c.ok("STORE 1 -FLAGS (Work)")
    assert fetches(untagged)[0][1]["FLAGS"] == ["$Label1"]
    # removing a keyword nobody has is a no-op, not an error
    c.ok("STORE 1 -FLAGS (NeverSeen)")
    # $Forwarded is the maildir P flag
    c.ok("STORE 2 +FLAGS ($Forwarded)")
    assert disk_flags(data)[2] == "P"
    c.close()


def test_read_only(env):
    data, srv = env
    c = client(srv, select="EXAMINE INBOX")
    _, tagged = c.cmd("STORE 1 +FLAGS (\\Seen)")
    assert tagged.startswith(b"NO"), tagged
    assert disk_flags(data)[1] == ""
    c.close()


def test_bad_commands(env):
    _, srv = env
    c = client(srv)
    for bad in ("STORE 1 XFLAGS (\\Seen)", "STORE 1 +FLAGS (\\Recent)", "STORE 1 +FLAGS",
                "STORE 9 +FLAGS (\\Seen)", "STORE 1 (FOO 1) +FLAGS (\\Seen)",
                "STORE 1 (UNCHANGEDSINCE x) +FLAGS (\\Seen)", "STORE 1 +FLAGS ((\\Seen))"):
        _, tagged = c.cmd(bad)
        assert tagged.startswith(b"BAD"), (bad, tagged)
    c.ok("NOOP")
    c.close()


def modseqs(c, seqset):
    untagged = c.ok(f"FETCH {seqset} (MODSEQ)")
    return {s: int(it["MODSEQ"][0]) for s, it in fetches(untagged)}


def test_condstore_responses(env):
    data, srv = env
    c = client(srv, enable="CONDSTORE")
    before = modseqs(c, "1:5")
    untagged = c.ok("STORE 1 +FLAGS (\\Seen)")
    (seq, it), = fetches(untagged)
    assert it["FLAGS"] == ["\\Seen"] and int(it["MODSEQ"][0]) > max(before.values())
    # .SILENT still reports the new mod-sequence, without FLAGS (RFC 7162 3.1.3 example 3)
    untagged = c.ok("UID STORE 2,3 +FLAGS.SILENT (\\Deleted)")
    got = fetches(untagged)
    assert [(s, sorted(it)) for s, it in got] == [(2, ["MODSEQ", "UID"]), (3, ["MODSEQ", "UID"])]
    after = modseqs(c, "1:5")
    assert int(got[0][1]["MODSEQ"][0]) == after[2]
    assert after[4] == before[4] and after[5] == before[5]
    c.close()


def test_unchangedsince(env):
    data, srv = env
    c = client(srv)
    ms = modseqs(c, "1:5")   # FETCH MODSEQ enables CONDSTORE (RFC 7162 3.1)
    # message 2 changes behind our back
    other = client(srv)
    other.ok("STORE 2 +FLAGS.SILENT (\\Flagged)")
    other.close()
    limit = max(ms.values())
    untagged, tagged = c.cmd(f"STORE 1:3 (UNCHANGEDSINCE {limit}) +FLAGS (\\Seen)")
    assert tagged.startswith(b"OK [MODIFIED 2]"), tagged
    d = disk_flags(data)
    assert d[1] == "S" and d[2] == "F" and d[3] == "S"   # 2 left alone
    got = {s: it for s, it in fetches(untagged)}
    assert got[1]["FLAGS"] == ["\\Seen"] and got[3]["FLAGS"] == ["\\Seen"]
    assert "MODSEQ" in got[1]
    # UID STORE reports UIDs in MODIFIED
    ms = modseqs(c, "1:5")
    untagged, tagged = c.cmd(f"UID STORE 4,5 (UNCHANGEDSINCE {ms[4] - 1}) +FLAGS (\\Seen)")
    assert tagged.startswith(b"OK [MODIFIED 4:5]"), tagged
    # UNCHANGEDSINCE 0 fails for every message (RFC 7162 3.1.3)
    untagged, tagged = c.cmd("STORE 4 (UNCHANGEDSINCE 0) +FLAGS (\\Seen)")
    assert tagged.startswith(b"OK [MODIFIED 4]"), tagged
    # a modseq equal to the message's passes
    untagged, tagged = c.cmd(f"STORE 4 (UNCHANGEDSINCE {ms[4]}) +FLAGS (\\Seen)")
    assert tagged.startswith(b"OK") and b"MODIFIED" not in tagged, tagged
    assert disk_flags(data)[4] == "S" and disk_flags(data)[5] == ""
    c.close()


def test_qresync_store_includes_uid(env):
    _, srv = env
    c = client(srv, enable="QRESYNC")
    untagged = c.ok("STORE 2 +FLAGS (\\Seen)")
    (seq, it), = fetches(untagged)
    assert seq == 2 and it["UID"] == "2" and "MODSEQ" in it and it["FLAGS"] == ["\\Seen"]
    c.close()


def test_store_on_message_expunged_elsewhere(env):
    data, srv = env
    a = client(srv)
    b = client(srv)
    b.ok("STORE 3 +FLAGS.SILENT (\\Deleted)")
    b.ok("EXPUNGE")
    untagged, tagged = a.cmd("STORE 2:4 +FLAGS (\\Flagged)")
    assert tagged.startswith(b"OK"), tagged
    assert not [u for u in untagged if b"EXPUNGE" in u]   # RFC 9051 7.5.1
    assert [s for s, _ in fetches(untagged)] == [2, 4]
    d = disk_flags(data)
    assert 3 not in d and d[2] == "F" and d[4] == "F"
    a.close()
    b.close()
