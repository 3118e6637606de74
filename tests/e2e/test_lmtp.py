"""LMTP (RFC 2033) against a real `mailroom serve`: Python's smtplib.LMTP and
raw sockets for 1 and 100 recipients (one inode, 100 links), per-recipient
failures mixed with successes, PIPELINING, CHUNKING (BDAT), SIZE, detail
addresses, and hostile input (commands out of order, a DATA that never
ends, a 10 MB line, bare LF, NUL bytes, 10,000 RCPTs), and SIGTERM in the
middle of DATA. Expectations come from RFC 2033 / 5321 / 3030 and from the
bytes the test itself sent."""
import os
import re
import smtplib
import time

import pytest

import imap_server
from conftest import LmtpClient, add_user, check, cur_files, mailbox_dir, write_config


def lmtp_server(data, **opts):
    srv = imap_server.start(str(data), extra_opts=opts, protocols=("imap", "lmtp"))
    return srv, srv.ports["lmtp"]


class Raw(LmtpClient):
    """A raw LMTP client (conftest.LmtpClient) with a reply code helper."""

    def code(self, text):
        return int(self.cmd(text)[-1][:3])


def dotstuff(msg):
    """RFC 5321 4.5.2: a line that starts with '.' gets one more."""
    return re.sub(rb"(^|\r\n)\.", rb"\1..", msg)


def lmtp_sendmail(l, sender, rcpts, msg):
    """smtplib.LMTP.sendmail reads one reply after DATA; LMTP sends one per
    accepted recipient (RFC 2033 4.2). Returns {rcpt: (code, text)} for every
    recipient: RCPT refusals and the per-recipient DATA replies."""
    l.ehlo_or_helo_if_needed()
    code, resp = l.mail(sender)
    assert code == 250, resp
    result, accepted = {}, []
    for r in rcpts:
        code, resp = l.rcpt(r)
        if code == 250:
            accepted.append(r)
        else:
            result[r] = (code, resp)
    if not accepted:
        l.rset()
        return result
    code, resp = l.data(msg)
    result[accepted[0]] = (code, resp)
    for r in accepted[1:]:
        result[r] = l.getreply()
    return result


def stored(data, user, box="INBOX"):
    return [open(p, "rb").read() for _, _, p in cur_files(str(data), user, box)]


def body_of(msg):
    """The stored message minus our Return-Path/Received trace headers."""
    assert msg.startswith(b"Return-Path: <")
    i = msg.index(b"\r\nReceived: ")
    j = msg.index(b"\r\n", msg.index(b"\r\n\t", i) + 1)
    while msg[j + 2:j + 3] == b"\t":
        j = msg.index(b"\r\n", j + 2)
    return msg[j + 2:]


MSG = b"From: a@example.org\r\nSubject: lmtp\r\n\r\nhello\r\n.leading dot\r\n..two dots\r\n"


def test_one_and_hundred_recipients(data):
    users = ["u%03d" % i for i in range(100)]
    for u in users:
        add_user(data, u)
    srv, port = lmtp_server(data)
    try:
        with smtplib.LMTP("127.0.0.1", port) as l:
            code, caps = l.ehlo("mta.example.org")
            assert code == 250
            for cap in [b"PIPELINING", b"ENHANCEDSTATUSCODES", b"8BITMIME", b"CHUNKING", b"SIZE"]:
                assert cap in caps
            res = lmtp_sendmail(l, "s@example.org", ["u000@example.org"], MSG)
            assert res["u000@example.org"][0] == 250
            got = stored(data, "u000")
            assert len(got) == 1
            # dot-unstuffing by smtplib + us: the body comes back as sent
            assert body_of(got[0]) == MSG
            assert got[0].startswith(b"Return-Path: <s@example.org>\r\nReceived: from mta.example.org")
            assert b"for <u000@example.org>" in got[0]
            big = MSG + b"x" * 100000 + b"\r\n"
            res = lmtp_sendmail(l, "s@example.org", [u + "@example.org" for u in users], big)
            assert all(code == 250 for code, _ in res.values()) and len(res) == 100
        inodes = set()
        for u in users:
            files = cur_files(str(data), u)
            assert len(files) == (2 if u == "u000" else 1)
            st = os.stat(files[-1][2])
            inodes.add(st.st_ino)
            assert st.st_nlink == 100
            assert body_of(open(files[-1][2], "rb").read()) == big
        assert len(inodes) == 1
    finally:
        srv.stop()
    assert check(str(data)).returncode == 0


def test_per_recipient_results_in_order(data):
    add_user(data, "alice")
    add_user(data, "bob")
    add_user(data, "full")
    write_config(data, quota_messages="1")
    srv, port = lmtp_server(data)
    try:
        with smtplib.LMTP("127.0.0.1", port) as l:
            lmtp_sendmail(l, "s@x", ["full@x"], MSG)  # full is now at its quota of 1
        r = Raw(port)
        assert r.code("LHLO mta") == 250
        assert r.code("MAIL FROM:<s@example.org>") == 250
        assert r.code("RCPT TO:<alice@example.org>") == 250
        assert r.cmd("RCPT TO:<nosuch@example.org>")[0].startswith("550 5.1.1")
        assert r.cmd("RCPT TO:<full@example.org>")[0].startswith("552 5.2.2")
        assert r.code("RCPT TO:<Bob@Example.ORG>") == 250  # case folded to bob
        assert r.code("DATA") == 354
        r.send(dotstuff(MSG) + b".\r\n")
        # RFC 2033 4.2: one reply per accepted recipient, in RCPT order
        a, b = r.reply(), r.reply()
        assert a[0].startswith("250 2.0.0 <alice@example.org>"), a
        assert b[0].startswith("250 2.0.0 <Bob@Example.ORG>"), b
        assert r.code("QUIT") == 221
    finally:
        srv.stop()
    assert len(stored(data, "alice")) == 1 and len(stored(data, "bob")) == 1
    assert len(stored(data, "full")) == 1


def test_quota_tempfail_and_detail(data):
    add_user(data, "carol")
    write_config(data, quota_messages="0")
    srv, port = lmtp_server(data)
    try:
        with smtplib.LMTP("127.0.0.1", port) as l:
            # user+detail into an existing mailbox, a missing one into INBOX
            res = lmtp_sendmail(l, "s@x", ["carol+Archive@x", "carol+nothere@x"], MSG)
            assert [c for c, _ in res.values()] == [250, 250]
        assert len(stored(data, "carol", "Archive")) == 1
        assert len(stored(data, "carol")) == 1
    finally:
        srv.stop()
    write_config(data, quota_messages="1", quota_full_tempfail="yes")
    srv, port = lmtp_server(data)
    try:
        r = Raw(port)
        r.cmd("LHLO mta")
        r.cmd("MAIL FROM:<>")  # the null sender (bounces) is accepted
        assert r.cmd("RCPT TO:<carol@x>")[0].startswith("452 4.2.2")
    finally:
        srv.stop()


def test_local_domains(data):
    add_user(data, "dave")
    srv, port = lmtp_server(data, lmtp_local_domains="example.org, example.net")
    try:
        r = Raw(port)
        r.cmd("LHLO mta")
        r.cmd("MAIL FROM:<s@x>")
        assert r.code("RCPT TO:<dave@EXAMPLE.net>") == 250
        assert r.cmd("RCPT TO:<dave@elsewhere.com>")[0].startswith("550")
    finally:
        srv.stop()


def test_pipelining_and_bdat(data):
    add_user(data, "erin")
    srv, port = lmtp_server(data)
    try:
        r = Raw(port)
        # everything in one write (RFC 2920)
        r.send(b"LHLO mta\r\nMAIL FROM:<s@x>\r\nRCPT TO:<erin@x>\r\nRCPT TO:<nobody@x>\r\nDATA\r\n")
        assert r.reply()[-1].startswith("250 SIZE")
        assert r.reply()[0].startswith("250")
        assert r.reply()[0].startswith("250")
        assert r.reply()[0].startswith("550")
        assert r.reply()[0].startswith("354")
        r.send(dotstuff(MSG) + b".\r\nMAIL FROM:<s@x>\r\nRCPT TO:<erin@x>\r\n")
        assert r.reply()[0].startswith("250 2.0.0 <erin@x>")
        assert r.reply()[0].startswith("250")
        assert r.reply()[0].startswith("250")
        # BDAT (RFC 3030): binary chunks, no dot-stuffing
        chunk1, chunk2 = b"Subject: bdat\r\n\r\n.not stuffed\r\n", b"second\r\n"
        r.send(b"BDAT %d\r\n" % len(chunk1) + chunk1)
        assert r.reply()[0].startswith("250")
        r.send(b"BDAT %d LAST\r\n" % len(chunk2) + chunk2)
        assert r.reply()[0].startswith("250 2.0.0 <erin@x>")
        # BDAT without a transaction: the chunk is read and refused
        r.send(b"BDAT 5 LAST\r\nabcde")
        assert r.reply()[0].startswith("503")
        assert r.code("NOOP") == 250
    finally:
        srv.stop()
    msgs = stored(data, "erin")
    assert len(msgs) == 2
    assert body_of(msgs[0]) == MSG
    assert body_of(msgs[1]) == chunk1 + chunk2


def test_size_limits(data):
    add_user(data, "fred")
    srv, port = lmtp_server(data, message_size_limit="10K")
    try:
        r = Raw(port)
        r.cmd("LHLO mta")
        assert r.cmd("MAIL FROM:<s@x> SIZE=20000")[0].startswith("552")
        assert r.code("MAIL FROM:<s@x> SIZE=100") == 250
        r.cmd("RCPT TO:<fred@x>")
        r.cmd("DATA")
        r.send(b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 20 + b".\r\n")
        assert r.reply()[0].startswith("552 5.3.4")
        assert r.code("NOOP") == 250  # the session goes on
    finally:
        srv.stop()
    assert stored(data, "fred") == []
    assert os.listdir(os.path.join(str(data), "spool", "tmp")) == []


def test_hostile_input(data):
    add_user(data, "gina")
    srv, port = lmtp_server(data)
    try:
        r = Raw(port)
        # out of order
        assert r.cmd("MAIL FROM:<s@x>")[0].startswith("503")
        r.cmd("LHLO mta")
        assert r.cmd("RCPT TO:<gina@x>")[0].startswith("503")
        assert r.cmd("DATA")[0].startswith("503")
        r.cmd("MAIL FROM:<s@x>")
        assert r.cmd("MAIL FROM:<s@x>")[0].startswith("503")
        assert r.cmd("DATA")[0].startswith("503")  # no recipients yet
        assert r.cmd("RCPT TO:gina@x")[0].startswith("501")  # no brackets
        assert r.cmd("FOO bar")[0].startswith("500")
        # NUL in a command
        r.send(b"NOOP\0x\r\n")
        assert r.reply()[0].startswith("500")
        # a 10 MB command line: one error, then business as usual
        r.send(b"RCPT TO:<" + b"a" * (10 * 1024 * 1024) + b">\r\n")
        assert r.reply()[0].startswith("500 5.5.2")
        assert r.code("NOOP") == 250
        # 10,000 recipients: the ones past the limit get 452, nothing breaks
        r.send(b"RSET\r\nMAIL FROM:<s@x>\r\n" + b"RCPT TO:<gina@x>\r\n" * 10000)
        assert r.reply()[0].startswith("250")
        assert r.reply()[0].startswith("250")
        codes = [r.reply()[0][:3] for _ in range(10000)]
        assert codes.count("250") == 1000 and codes.count("452") == 9000
        assert r.code("RSET") == 250
        # bare LF and NUL in DATA are stored (normalised to CRLF)
        r.cmd("MAIL FROM:<s@x>")
        r.cmd("RCPT TO:<gina@x>")
        r.cmd("DATA")
        r.send(b"Subject: lf\n\nline1\nnul\0here\n.\n")
        assert r.reply()[0].startswith("250")
        # a DATA that never ends: the connection drops, nothing is stored
        r.cmd("MAIL FROM:<s@x>")
        r.cmd("RCPT TO:<gina@x>")
        r.cmd("DATA")
        r.send(b"Subject: cut\r\n\r\npartial")
        r.s.close()
        time.sleep(0.5)
        # the server still serves others
        with smtplib.LMTP("127.0.0.1", port) as l:
            assert lmtp_sendmail(l, "s@x", ["gina@x"], MSG)["gina@x"][0] == 250
    finally:
        srv.stop()
    msgs = stored(data, "gina")
    assert len(msgs) == 2
    assert body_of(msgs[0]) == b"Subject: lf\r\n\r\nline1\r\nnul\0here\r\n"
    assert body_of(msgs[1]) == MSG
    assert os.listdir(os.path.join(str(data), "spool", "tmp")) == []
    assert check(str(data)).returncode == 0


def test_concurrent_first_deliveries_to_new_users(data):
    """Several MTA sessions deliver at once to users whose index does not
    exist yet (each index is created under contention): every recipient of
    every transaction gets 250, none a 451 "index is locked"."""
    import threading
    users = ["n%02d" % i for i in range(40)]
    for u in users:
        add_user(data, u)
    srv, port = lmtp_server(data, workers="2")
    results, errors = [], []
    start = threading.Barrier(6)

    def session(k):
        try:
            with smtplib.LMTP("127.0.0.1", port) as l:
                l.ehlo("mta.example.org")
                start.wait(30)
                for r in range(3):
                    res = lmtp_sendmail(l, "s@example.org", [u + "@example.org" for u in users],
                                        MSG + b"session %d round %d\r\n" % (k, r))
                    results.extend(res.values())
        except Exception as e:  # reported below, with the replies
            errors.append(repr(e))
    threads = [threading.Thread(target=session, args=(k,)) for k in range(6)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        srv.stop()
    assert errors == []
    bad = [r for r in results if r[0] != 250]
    assert len(results) == 6 * 3 * len(users) and bad == [], bad[:3]
    for u in users:
        assert len(cur_files(str(data), u)) == 18


def test_shutdown_mid_data(data):
    """SIGTERM while a client is in the middle of DATA: the transaction
    completes (the rest of the message is read, each recipient gets its
    250 and the message is stored), then 421 and the close; an idle
    session gets 421 at once (RFC 5321 3.8)."""
    import signal
    add_user(data, "hank")
    add_user(data, "iris")
    srv, port = lmtp_server(data)
    try:
        idle = Raw(port)
        assert idle.code("LHLO mta") == 250
        r = Raw(port)
        assert r.code("LHLO mta") == 250
        assert r.code("MAIL FROM:<s@example.org>") == 250
        assert r.code("RCPT TO:<hank@example.org>") == 250
        assert r.code("RCPT TO:<iris@example.org>") == 250
        assert r.code("DATA") == 354
        body = dotstuff(MSG + b"x" * 100000 + b"\r\n")
        r.send(body[:1000])
        os.kill(srv.pid, signal.SIGTERM)
        # The worker has begun its shutdown once the idle session hears it.
        assert idle.reply()[0].startswith("421 4.3.2"), "no 421 for the idle session"
        with pytest.raises(EOFError):
            idle.line()
        r.send(body[1000:] + b".\r\n")
        a, b = r.reply(), r.reply()
        assert a[0].startswith("250 2.0.0 <hank@example.org>"), a
        assert b[0].startswith("250 2.0.0 <iris@example.org>"), b
        assert r.reply()[0].startswith("421 4.3.2")
        with pytest.raises(EOFError):
            r.line()
        assert srv.proc.wait(15) == 0
    finally:
        srv.stop()
    for u in ("hank", "iris"):
        got = stored(data, u)
        assert len(got) == 1 and body_of(got[0]) == MSG + b"x" * 100000 + b"\r\n"
    assert os.listdir(os.path.join(str(data), "spool", "tmp")) == []


def test_bdat_empty_chunks(data):
    """RFC 3030 2: a chunk may be empty ("BDAT 0", "BDAT 0 LAST"); its reply
    comes without the client sending anything more."""
    add_user(data, "jack")
    srv, port = lmtp_server(data)
    try:
        r = Raw(port)
        r.s.settimeout(5)
        r.cmd("LHLO mta")
        r.cmd("MAIL FROM:<s@x>")
        assert r.code("RCPT TO:<jack@x>") == 250
        chunk = b"Subject: empty chunks\r\n\r\nbody\r\n"
        r.send(b"BDAT %d\r\n" % len(chunk) + chunk)
        assert r.reply()[0].startswith("250 2.0.0 Chunk")
        assert r.cmd("BDAT 0")[0].startswith("250 2.0.0 Chunk")
        assert r.cmd("BDAT 0 LAST")[0].startswith("250 2.0.0 <jack@x>")
        assert r.cmd("BDAT 0 LAST")[0].startswith("503")  # no transaction any more
        assert r.code("NOOP") == 250
    finally:
        srv.stop()
    msgs = stored(data, "jack")
    assert len(msgs) == 1 and body_of(msgs[0]) == chunk
