"""QUOTA (RFC 9208) against a real `mailroom serve`, with the usage checked
against the disk, read here without mailroom's help.

mailroom has one quota root per user, "" (RFC 9208 3.2: every mailbox of
the user shares it), with STORAGE (5.1: units of 1024 octets) and MESSAGE
(5.2). The bytes of one message file count once however many hard links
COPY gave it in the user's mailboxes (issue 10: quota once per single
instance file per user); each message in a mailbox counts as a message.
Limits come from the quota_bytes / quota_messages settings.
"""

import os
import re
import smtplib
import sqlite3
from pathlib import Path

import pytest

import imap_server
from conftest import LmtpClient, add_user, check, check_problems, cur_files, deliver, make_message
from imap_server import Client, parse

PW = "secret"


def start(data, **limits):
    opts = {k: str(v) for k, v in limits.items()}
    return imap_server.start(data, extra_opts=opts, protocols=("imap", "lmtp"))


def login(srv):
    c = Client(srv.port)
    c.login("alice", PW)
    return c


def disk_usage(data, user="alice"):
    """(bytes of distinct files, number of message links) over every cur/
    of the user: what quota must report, from stat(2) alone."""
    inodes, links = {}, 0
    root = Path(data) / "mail" / user
    for d in root.iterdir():
        cur = d / "cur"
        if not d.is_dir() or not cur.is_dir():
            continue
        for name in os.listdir(cur):
            if name.startswith("."):
                continue
            st = os.stat(cur / name)
            inodes[st.st_ino] = st.st_size
            links += 1
    return sum(inodes.values()), links


def quotaroot(resp):
    """(mailbox, [roots]) of a QUOTAROOT response (names are astrings)."""
    t = parse(resp)
    assert t[:2] == ["*", "QUOTAROOT"], t
    name = lambda v: v.decode() if isinstance(v, bytes) else v  # noqa: E731
    return name(t[2]), [name(r) for r in t[3:]]


QUOTA_RE = re.compile(rb'^\* QUOTA "" \(([A-Z0-9 ]*)\)$')


def quota_of(untagged):
    """{resource: (usage, limit)} from the one QUOTA response for root ""."""
    found = [QUOTA_RE.match(u) for u in untagged if u.startswith(b"* QUOTA ")]
    assert len(found) == 1 and found[0], untagged
    words = found[0].group(1).decode().split()
    assert len(words) % 3 == 0, words
    return {words[i]: (int(words[i + 1]), int(words[i + 2])) for i in range(0, len(words), 3)}


def expected(data, max_bytes, max_messages):
    b, m = disk_usage(data)
    return {"STORAGE": (b // 1024, max_bytes // 1024), "MESSAGE": (m, max_messages)}


def big_message(tag, kib):
    return make_message(tag, body_size=kib * 1024)


def test_capabilities_rfc9208_3(data):
    """RFC 9208 3.1/5: QUOTA and the resources it supports, after login."""
    add_user(data, "alice", PW)
    srv = start(data)
    try:
        c = login(srv)
        caps = b" ".join(c.ok("CAPABILITY")).split()
        for cap in (b"QUOTA", b"QUOTA=RES-STORAGE", b"QUOTA=RES-MESSAGE"):
            assert cap in caps
        assert b"QUOTASET" not in caps  # 4.1.3: limits are the admin's
    finally:
        srv.stop()


def test_getquotaroot_and_getquota_rfc9208_4_1(data):
    """RFC 9208 4.1.2: GETQUOTAROOT INBOX names root "" and its QUOTA;
    4.1.1: GETQUOTA "" answers the same; an unknown root is NO."""
    add_user(data, "alice", PW)
    for i in range(3):
        deliver(data, ["alice"], big_message(f"m{i}", 3))
    max_b, max_m = 1 << 20, 10
    srv = start(data, quota_bytes=max_b, quota_messages=max_m)
    try:
        c = login(srv)
        u = c.ok("GETQUOTAROOT INBOX")
        assert quotaroot(u[0]) == ("INBOX", [""]), u
        want = expected(data, max_b, max_m)
        assert want["STORAGE"][0] >= 9 and want["MESSAGE"][0] == 3
        assert quota_of(u) == want
        assert quota_of(c.ok('GETQUOTA ""')) == want
        # every mailbox shares the one root (3.2)
        u = c.ok("GETQUOTAROOT Archive")
        assert quotaroot(u[0]) == ("Archive", [""]) and quota_of(u) == want
        u, t = c.cmd('GETQUOTA "nosuchroot"')
        assert t.startswith(b"NO") and not u
        u, t = c.cmd("GETQUOTAROOT NoSuchBox")
        assert t.startswith(b"NO [NONEXISTENT]"), t
    finally:
        srv.stop()


def test_usage_follows_append_copy_move_expunge_rfc9208_5(data):
    """RFC 9208 5.1/5.2: usage moves with APPEND and EXPUNGE; a COPY in the
    same user adds messages but no STORAGE (the copy is a hard link of the
    same file), and MOVE changes neither."""
    add_user(data, "alice", PW)
    deliver(data, ["alice"], big_message("first", 20))
    max_b, max_m = 10 << 20, 100
    srv = start(data, quota_bytes=max_b, quota_messages=max_m)
    try:
        c = login(srv)

        def now():
            got = quota_of(c.ok("GETQUOTAROOT INBOX"))
            assert got == expected(data, max_b, max_m)
            return got["STORAGE"][0], got["MESSAGE"][0]

        s0, m0 = now()
        assert m0 == 1 and s0 >= 20
        msg = big_message("appended", 30)
        _, t = c.cmd(f"APPEND INBOX {{{len(msg)}}}", literal=msg + b"\r\n")
        assert t.startswith(b"OK"), t
        s1, m1 = now()
        assert m1 == 2 and s1 >= s0 + 30

        c.ok("SELECT INBOX")
        c.ok("COPY 1:2 Archive")
        c.ok("COPY 1:2 Junk")
        s2, m2 = now()
        assert (s2, m2) == (s1, 6)  # no STORAGE for the links

        c.ok("MOVE 1 Trash")
        assert now() == (s2, m2)

        # INBOX has the appended message only now; expunging it leaves its
        # links in Archive and Junk: nothing freed
        c.ok("STORE 1 +FLAGS (\\Deleted)")
        c.ok("EXPUNGE")
        s3, m3 = now()
        assert (s3, m3) == (s2, 5)

        # the last links of "appended" go: its bytes go
        for box in ("Archive", "Junk"):
            c.ok(f"SELECT {box}")
            c.ok("STORE 2 +FLAGS (\\Deleted)")
            c.ok("EXPUNGE")
        s4, m4 = now()
        assert m4 == 3 and s4 <= s3 - 29

        # DELETE of a mailbox holding one of three links of "first"
        c.ok("SELECT INBOX")
        c.ok("DELETE Archive")
        assert now() == (s4, 2)
    finally:
        srv.stop()


def test_overquota_on_append_and_copy_rfc9208_4_3(data):
    """RFC 9208 4.3 / RFC 5530 3: APPEND and COPY over a limit are NO
    [OVERQUOTA] and store nothing; MOVE within the user never changes the
    usage and is not refused."""
    add_user(data, "alice", PW)
    deliver(data, ["alice"], big_message("a", 1))
    deliver(data, ["alice"], big_message("b", 1))
    srv = start(data, quota_messages=2)
    try:
        c = login(srv)
        before = disk_usage(data)
        msg = big_message("c", 1)
        _, t = c.cmd(f"APPEND INBOX {{{len(msg)}}}", literal=msg + b"\r\n")
        assert t.startswith(b"NO [OVERQUOTA]"), t
        c.ok("SELECT INBOX")
        _, t = c.cmd("COPY 1 Archive")
        assert t.startswith(b"NO [OVERQUOTA]"), t
        assert disk_usage(data) == before
        assert cur_files(data, "alice", "Archive") == []
        c.ok("MOVE 1 Archive")
        assert disk_usage(data) == before
        assert len(cur_files(data, "alice", "Archive")) == 1
    finally:
        srv.stop()

    # STORAGE: a limit below usage + the new message's size
    size = disk_usage(data)[0]
    srv = start(data, quota_bytes=size + 2048)
    try:
        c = login(srv)
        msg = big_message("d", 4)
        _, t = c.cmd(f"APPEND INBOX {{{len(msg)}}}", literal=msg + b"\r\n")
        assert t.startswith(b"NO [OVERQUOTA]"), t
        assert disk_usage(data)[0] == size
        # a COPY adds no bytes: allowed although the bytes are near the limit
        c.ok("SELECT INBOX")
        c.ok("COPY 1 Junk")
        assert disk_usage(data)[0] == size
    finally:
        srv.stop()


def test_setquota_refused_rfc9208_4_1_3(data):
    """RFC 9208 4.1.3: SETQUOTA is for administrators; a user gets NO."""
    add_user(data, "alice", PW)
    srv = start(data, quota_messages=5)
    try:
        c = login(srv)
        u, t = c.cmd('SETQUOTA "" (STORAGE 512)')
        assert t.startswith(b"NO"), t
        assert quota_of(c.ok('GETQUOTA ""'))["MESSAGE"] == (0, 5)
        _, t = c.cmd("SETQUOTA")
        assert t.startswith(b"BAD"), t
    finally:
        srv.stop()


def test_no_limits_no_root_rfc9208_4_2(data):
    """RFC 9208 4.2.1/7: a QUOTA response lists at least one resource, so a
    user without limits has no quota root: QUOTAROOT names none and GETQUOTA
    "" is NO. A single limit lists only that resource."""
    add_user(data, "alice", PW)
    deliver(data, ["alice"], big_message("a", 2))
    srv = start(data)
    try:
        c = login(srv)
        u = c.ok("GETQUOTAROOT INBOX")
        assert len(u) == 1 and quotaroot(u[0]) == ("INBOX", []), u
        _, t = c.cmd('GETQUOTA ""')
        assert t.startswith(b"NO"), t
    finally:
        srv.stop()
    srv = start(data, quota_bytes=1 << 20)
    try:
        c = login(srv)
        got = quota_of(c.ok('GETQUOTA ""'))
        assert got == {"STORAGE": (disk_usage(data)[0] // 1024, 1024)}
    finally:
        srv.stop()


def lmtp_rcpt(port, rcpt):
    r = LmtpClient(port)
    try:
        r.cmd("LHLO mta")
        r.cmd("MAIL FROM:<s@example.org>")
        return r.cmd(f"RCPT TO:<{rcpt}>")[-1]
    finally:
        r.close()


def test_lmtp_over_quota_counts_files_once(data):
    """LMTP (RFC 2033, RFC 3463 X.2.2): delivery over quota is refused, at
    RCPT when the user is already over (552, or 452 with
    quota_full_tempfail) and after DATA when this message would pass the
    limit; links made by COPY do not count against the bytes."""
    add_user(data, "alice", PW)
    deliver(data, ["alice"], big_message("a", 8))
    one = disk_usage(data)[0]
    srv = start(data, quota_bytes=2 * one + 1024)
    try:
        c = login(srv)
        c.ok("SELECT INBOX")
        for box in ("Archive", "Junk", "Trash", "Drafts"):
            c.ok(f"COPY 1 {box}")
        assert disk_usage(data) == (one, 5)  # five links of one file
        port = srv.ports["lmtp"]
        with smtplib.LMTP("127.0.0.1", port) as lm:
            refused = lm.sendmail("s@example.org", ["alice@example.org"], big_message("b", 8))
            assert refused == {}
        two, n = disk_usage(data)
        assert n == 6 and one * 2 - 1024 < two <= 2 * one + 1024
        with smtplib.LMTP("127.0.0.1", port) as lm:
            with pytest.raises(smtplib.SMTPDataError) as e:
                lm.sendmail("s@example.org", ["alice@example.org"], big_message("c", 8))
            assert e.value.smtp_code == 552
        assert disk_usage(data) == (two, 6)
    finally:
        srv.stop()
    srv = start(data, quota_bytes=two - 1)
    try:
        assert lmtp_rcpt(srv.ports["lmtp"], "alice@example.org").startswith("552 5.2.2")
    finally:
        srv.stop()
    srv = start(data, quota_bytes=two - 1, quota_full_tempfail="yes")
    try:
        assert lmtp_rcpt(srv.ports["lmtp"], "alice@example.org").startswith("452 4.2.2")
    finally:
        srv.stop()


def downgrade_index_to_schema_3(data, user="alice"):
    """Make the user's index look like one written before quota counted a
    file once (schema 3): no qfile table, its triggers or counter."""
    con = sqlite3.connect(str(Path(data) / "mail" / user / "index.sqlite"), timeout=30)
    try:
        con.executescript(
            "DROP TRIGGER qfile_ins; DROP TRIGGER qfile_done; DROP TRIGGER qfile_del;"
            " DROP TABLE qfile; DELETE FROM meta WHERE key='quota_dup_bytes';"
            " PRAGMA user_version=3;")
    finally:
        con.close()


def test_index_upgrade_counts_links_once(data):
    """An index from before this change (every link counted) is upgraded
    on open: the links that exist then are counted once, and `mailroom
    check` finds the counters right."""
    add_user(data, "alice", PW)
    deliver(data, ["alice"], big_message("a", 6))
    srv = start(data, quota_messages=50)
    try:
        c = login(srv)
        c.ok("SELECT INBOX")
        c.ok("COPY 1 Archive")
        c.ok("COPY 1 Junk")
    finally:
        srv.stop()
    downgrade_index_to_schema_3(data)
    srv = start(data, quota_messages=50)
    try:
        c = login(srv)
        got = quota_of(c.ok('GETQUOTA ""'))
        assert got == {"MESSAGE": (3, 50)}
    finally:
        srv.stop()
    srv = start(data, quota_bytes=1 << 20)
    try:
        c = login(srv)
        got = quota_of(c.ok('GETQUOTA ""'))
        assert got == {"STORAGE": (disk_usage(data)[0] // 1024, 1024)}
        assert got["STORAGE"][0] >= 6
    finally:
        srv.stop()
    p = check(str(data))
    assert p.returncode == 0 and check_problems(p) == [], p.stdout
    # a wrong counter is found and repaired by `mailroom check`
    con = sqlite3.connect(str(Path(data) / "mail" / "alice" / "index.sqlite"), timeout=30)
    try:
        con.execute("UPDATE meta SET value=0 WHERE key='quota_dup_bytes'")
        con.commit()
    finally:
        con.close()
    p = check(str(data))
    assert any("extra links" in l for l in check_problems(p)), p.stdout
    check(str(data), repair=True)
    p = check(str(data))
    assert p.returncode == 0 and check_problems(p) == [], p.stdout
    srv = start(data, quota_bytes=1 << 20)
    try:
        got = quota_of(login(srv).ok('GETQUOTA ""'))
        assert got == {"STORAGE": (disk_usage(data)[0] // 1024, 1024)}
    finally:
        srv.stop()
