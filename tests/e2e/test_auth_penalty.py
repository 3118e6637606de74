"""The authentication failure penalty (src/auth/auth_penalty.h), as IMAP
and POP3 clients see it: growing delays per (user, IP) in the manner of
Dovecot's auth_penalty, a refusal of that pair only after
auth_max_failures, and a much higher per-IP threshold that slows an address
down without refusing anybody. What it replaces: 10 wrong passwords from one
IP locked every user of that IP out for a minute (webmail, NAT, a school).

Delays are configured small (auth_failure_delay_ms, doubling up to
auth_failure_max_delay_ms) and measured around each reply; lower bounds
come from the settings (minus a little for timer granularity), upper
bounds are loose (a loaded machine answers late, never early).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import imap_server  # noqa: E402
from conftest import add_user  # noqa: E402
from test_auth import Pop3  # noqa: E402

FAILED = b"NO [AUTHENTICATIONFAILED] Authentication failed"
TRY_AGAIN = b"NO [AUTHENTICATIONFAILED] Too many failures; try again later"
SLACK = 0.05  # timers fire a little early at most


def timed_login(port, user, password, source=None):
    """(tagged reply, seconds) of one LOGIN on a fresh connection."""
    c = imap_server.Client(port, timeout=60, source=source)
    try:
        t = time.monotonic()
        _, r = c.cmd(f'LOGIN "{user}" "{password}"')
        return r, time.monotonic() - t
    finally:
        c.close()


def start(data, **opts):
    add_user(data, "alice", "secret")
    add_user(data, "bob", "bobpw")
    return imap_server.start(data, extra_opts=opts, protocols=("imap", "pop3"))


def test_ten_failures_of_bob_leave_alice_alone(data):
    """The case of the issue: 10 wrong passwords of bob from 127.0.0.1
    (auth_max_failures is 10 by default). Bob's answers slow down, doubling
    from auth_failure_delay_ms to auth_failure_max_delay_ms; then bob's pair
    is refused; alice logs in at once from the same IP, over IMAP and POP3."""
    srv = start(data, auth_failure_delay_ms="200", auth_failure_max_delay_ms="800")
    try:
        port = srv.ports["imap"]
        took = []
        for i in range(10):
            r, t = timed_login(port, "bob", f"wrong{i}")
            assert r == FAILED, (i, r)
            took.append(t)
        want = [0.2, 0.4, 0.8] + [0.8] * 7
        print("bob's failures answered after (s):", " ".join(f"{t:.2f}" for t in took))
        for i, (t, w) in enumerate(zip(took, want)):
            assert t >= w - SLACK, f"failure {i + 1}: {t:.2f} s < {w} s"
        assert took[0] < 0.6, took  # the first is the base delay, not the longest
        assert took[2] > took[0] + 0.4, took  # it grows
        # alice, same IP, right password: no delay, no refusal
        r, t = timed_login(port, "alice", "secret")
        assert r.startswith(b"OK"), r
        assert t < 0.5, f"alice waited {t:.2f} s"
        p = Pop3(port=srv.ports["pop3"])
        assert p.login("alice", "secret").startswith(b"+OK")
        p.close()
        # bob's pair is refused, even with his right password
        r, t = timed_login(port, "bob", "bobpw")
        assert r == TRY_AGAIN, r
        assert t >= 0.8 - SLACK
    finally:
        srv.stop()


def test_right_password_after_failures_works_after_the_delay(data):
    """No refusal below auth_max_failures: bob's right password after three
    failures is held back as long as his pair earned (the third delay,
    d(3) = 4 x base), then accepted; a success forgets the penalty."""
    srv = start(data, auth_failure_delay_ms="200", auth_failure_max_delay_ms="2000")
    try:
        port = srv.ports["imap"]
        for i in range(3):
            assert timed_login(port, "bob", f"wrong{i}")[0] == FAILED
        r, t = timed_login(port, "bob", "bobpw")
        assert r.startswith(b"OK"), r
        assert t >= 0.8 - SLACK, f"bob's right password after 3 failures took only {t:.2f} s"
        r, t = timed_login(port, "bob", "bobpw")
        assert r.startswith(b"OK"), r
        assert t < 0.5, f"the penalty was not forgotten after a success: {t:.2f} s"
    finally:
        srv.stop()


def test_same_wrong_password_is_not_counted(data):
    """A client retrying one stale password (a phone after a password
    change) is not counted again: as in Dovecot, it never grows the delay
    nor leads to a refusal."""
    srv = start(data, auth_failure_delay_ms="200", auth_failure_max_delay_ms="3000",
                auth_max_failures="3")
    try:
        port = srv.ports["imap"]
        for _ in range(5):
            r, t = timed_login(port, "bob", "stale")
            assert r == FAILED, r
            assert t < 0.6, f"the same wrong password grew the delay: {t:.2f} s"
        r, _ = timed_login(port, "bob", "bobpw")
        assert r.startswith(b"OK"), r
    finally:
        srv.stop()


def test_penalty_is_forgotten(data):
    """auth_failure_forget_seconds after the pair's last failure, its
    delays start again from the base, and a refusal ends."""
    srv = start(data, auth_failure_delay_ms="200", auth_failure_max_delay_ms="1600",
                auth_max_failures="3", auth_failure_forget_seconds="2")
    try:
        port = srv.ports["imap"]
        for i in range(3):
            assert timed_login(port, "bob", f"wrong{i}")[0] == FAILED
        assert timed_login(port, "bob", "bobpw")[0] == TRY_AGAIN
        time.sleep(2.5)
        r, t = timed_login(port, "bob", "bobpw")
        assert r.startswith(b"OK"), r
        assert t < 0.5, t
    finally:
        srv.stop()


def test_per_ip_threshold_slows_the_address_without_refusing(data):
    """auth_ip_max_failures failures from one IP, for any users, put every
    answer to that IP at auth_failure_max_delay_ms -- right passwords too,
    which still succeed. Another address is not affected (127.0.0.2: the
    server listens on 127.0.0.1 and sees the source address)."""
    srv = start(data, auth_failure_delay_ms="100", auth_failure_max_delay_ms="1200",
                auth_ip_max_failures="5", plaintext_auth="yes")
    try:
        port = srv.ports["imap"]
        r, t = timed_login(port, "alice", "secret")
        assert r.startswith(b"OK") and t < 0.5, (r, t)
        took = []
        for i in range(5):  # five users, one failure each: no pair is slow
            r, t = timed_login(port, f"nobody{i}", "guess")
            assert r == FAILED, r
            took.append(t)
        assert all(t < 0.6 for t in took[:4]), took
        assert took[4] >= 1.2 - SLACK, took  # the fifth reaches the threshold
        r, t = timed_login(port, "carol", "guess")
        assert r == FAILED and t >= 1.2 - SLACK, (r, t)
        r, t = timed_login(port, "alice", "secret")
        assert r.startswith(b"OK"), r  # slowed down, never refused
        assert t >= 1.2 - SLACK, t
        r, t = timed_login(port, "alice", "secret", source="127.0.0.2")
        assert r.startswith(b"OK"), r
        assert t < 0.5, f"another IP was slowed down too: {t:.2f} s"
        assert "ip=127.0.0.2" in srv.log()
    finally:
        srv.stop()
