"""LMTP results per recipient at DATA time (RFC 2033 4.2): after the final
".", the server sends one reply for each recipient it accepted at RCPT, in
RCPT order, each telling that recipient's own outcome. Here two or three
recipients pass RCPT (each is under its quota then: RCPT cannot know the
message size), and at DATA the message pushes one of them over quota_bytes:
that one gets 552 5.2.2 (452 4.2.2 with quota_full_tempfail = yes) and no
copy, the others 250 and exactly one copy each.

A server that gave every recipient the first recipient's result would tell
the MTA that a stored copy bounced (and it would be sent again: a duplicate)
or that a refused copy was delivered (mail lost without a bounce).
"""
import re

import pytest

import imap_server
from conftest import LmtpClient, add_user, cur_files, deliver, make_message, write_config

QUOTA = 20000


class Lmtp(LmtpClient):
    """conftest.LmtpClient whose reply() and cmd() give the last line."""

    def __init__(self, port):
        super().__init__(port, timeout=30)

    def reply(self):
        return super().reply()[-1]


def _ids(data, user):
    """Message-IDs of the messages in user's INBOX, in UID order."""
    out = []
    for _uid, _flags, p in cur_files(str(data), user):
        m = re.search(rb"^Message-ID: <([^>]*)>", p.read_bytes(), re.M | re.I)
        out.append(m.group(1).decode() if m else None)
    return out


@pytest.mark.parametrize("tempfail", [False, True], ids=["552", "452"])
@pytest.mark.parametrize("order", [("full", "alice"), ("alice", "full", "bob")],
                         ids=["full-first", "full-second"])
def test_quota_at_data_is_per_recipient(data, order, tempfail):
    for u in ("alice", "bob", "full"):
        add_user(data, u)
    write_config(data, quota_bytes=str(QUOTA), quota_full_tempfail="yes" if tempfail else "no")
    # full holds 15 kB of its 20 kB: under quota, so its RCPT is accepted.
    p = deliver(data, "full", make_message("filler", body_size=15000))
    assert p.returncode == 0, p.stderr
    before_full = _ids(data, "full")
    assert len(before_full) == 1

    msg = make_message("mixed", body_size=8000).replace(b"\n", b"\r\n")
    srv = imap_server.start(str(data), protocols=("imap", "lmtp"))
    try:
        c = Lmtp(srv.ports["lmtp"])
        assert c.cmd("LHLO mta.example.org").startswith("250")
        assert c.cmd("MAIL FROM:<sender@example.org>").startswith("250")
        for u in order:
            r = c.cmd(f"RCPT TO:<{u}@example.org>")
            assert r.startswith("250"), (u, r)  # each is under quota at RCPT time
        assert c.cmd("DATA").startswith("354")
        c.s.sendall(msg + b".\r\n")
        replies = {u: c.reply() for u in order}  # RFC 2033 4.2: one each, in RCPT order
        assert c.cmd("QUIT").startswith("221")
        c.close()
    finally:
        srv.stop()

    want_full = "452 4.2.2" if tempfail else "552 5.2.2"
    assert replies["full"].startswith(want_full), replies
    assert "<full@example.org>" in replies["full"], replies
    for u in order:
        if u != "full":
            assert replies[u].startswith("250 2.0.0"), replies
            assert f"<{u}@example.org>" in replies[u], replies
    # Only the recipients told 250 have a copy: one each, the message sent.
    assert _ids(data, "full") == before_full
    for u in ("alice", "bob"):
        assert _ids(data, u) == (["mixed@mailroom.test"] if u in order else [])
