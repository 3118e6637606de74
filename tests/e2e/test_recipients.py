"""Who counts as a user: the user database (DATA/passwd), not a mail folder.

- `mailroom user del` (mail kept): LMTP RCPT answers 550 5.1.1 and
  `mailroom deliver` exits 67 (EX_NOUSER); the kept files are untouched.
- DATA/passwd unreadable (a directory or a symbolic link in its place; the
  tests run as root, for whom chmod 000 changes nothing): LMTP 451 4.3.0,
  deliver 75 (EX_TEMPFAIL), never a 550 that would bounce mail.
- Garbage lines in DATA/passwd: skipped with one warning naming file:line,
  every other user is served (login, LMTP, deliver).
- max_userip_connections (default 10, as Dovecot's
  mail_max_userip_connections): counted by the auth process over all
  workers; the 11th IMAP login from one IP gets NO [LIMIT], POP3 -ERR
  [IN-USE]; a logout or a dead worker frees the places.
"""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import imap_server  # noqa: E402
from conftest import EX_NOUSER, EX_OK, EX_TEMPFAIL, MAILROOM, add_user, cur_files, deliver, run  # noqa: E402
from test_auth import Pop3, break_passwd, next_look, restore_passwd  # noqa: E402
from test_lmtp import Raw as Lmtp  # noqa: E402

MSG = b"From: a@example.org\r\nSubject: recipients\r\n\r\nhello\r\n"
LIMIT = b"NO [LIMIT] Too many connections from this user and IP address"


def tree(root):
    """{relative path: bytes} of every file under root."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = fh.read()
    return out


def rcpt(port, *addrs):
    """The RCPT reply lines (last line of each) for addrs, in one transaction."""
    c = Lmtp(port)
    try:
        assert c.code("LHLO test") == 250
        assert c.code("MAIL FROM:<a@example.org>") == 250
        return [c.cmd(f"RCPT TO:<{a}>")[-1] for a in addrs]
    finally:
        c.s.close()


def test_deleted_user_is_no_recipient(data):
    add_user(data, "alice", "secret")
    add_user(data, "bob", "bobpw")
    assert deliver(data, "bob", MSG).returncode == EX_OK
    srv = imap_server.start(data, protocols=("imap", "lmtp"))
    try:
        port = srv.ports["lmtp"]
        assert rcpt(port, "bob@example.org")[0].startswith("250"), "bob is a user yet"
        p = run(["user", "del", "-d", data, "--yes", "bob"])
        assert p.returncode == 0, p.stderr
        before = tree(data / "mail" / "bob")
        assert before, "the mail is kept"
        next_look()
        got = rcpt(port, "bob@example.org", "BOB@example.org", "bob+work@example.org",
                   "alice@example.org")
        for r in got[:3]:
            assert r.startswith("550 5.1.1"), got
        assert got[3].startswith("250"), got
        # deliver: no such user; with alice too, she gets it and the exit
        # status still says one recipient is unknown
        p = deliver(data, "bob", MSG)
        assert p.returncode == EX_NOUSER, (p.returncode, p.stderr)
        assert b"bob" in p.stderr
        n_alice = len(cur_files(data, "alice"))
        p = deliver(data, ["alice", "bob"], MSG)
        assert p.returncode == EX_NOUSER, (p.returncode, p.stderr)
        assert len(cur_files(data, "alice")) == n_alice + 1
        # deliver as Postfix's pipe(8) runs it (not root: DATA/passwd, 0600,
        # cannot be read): it goes by the mail folder and the mark `user del`
        # left there, so bob is still unknown and alice still gets her copy
        assert subprocess.run(["runuser", "-u", "mail", "--", "cat", str(data / "passwd")],
                              capture_output=True).returncode != 0
        p = subprocess.run(["runuser", "-u", "mail", "--", MAILROOM, "deliver", "-d", str(data),
                            "alice", "bob"], input=MSG, capture_output=True, timeout=60)
        assert p.returncode == EX_NOUSER, (p.returncode, p.stderr)
        assert len(cur_files(data, "alice")) == n_alice + 2
        assert tree(data / "mail" / "bob") == before
        # and bob cannot log in either
        c = imap_server.Client(srv.port)
        assert c.cmd('LOGIN bob "bobpw"')[1].startswith(b"NO [AUTHENTICATIONFAILED]")
        c.close()
        # added again: the mark goes, and bob is a recipient for that deliver too
        assert run(["user", "add", "-d", data, "bob"], input=b"bobpw\n").returncode == 0
        p = subprocess.run(["runuser", "-u", "mail", "--", MAILROOM, "deliver", "-d", str(data), "bob"],
                           input=MSG, capture_output=True, timeout=60)
        assert p.returncode == EX_OK, (p.returncode, p.stderr)
    finally:
        srv.stop()


@pytest.mark.parametrize("how", ["directory", "symlink"])
def test_unreadable_passwd_is_a_temporary_failure(data, how):
    add_user(data, "alice", "secret")
    srv = imap_server.start(data, protocols=("imap", "lmtp"))
    try:
        port = srv.ports["lmtp"]
        assert rcpt(port, "alice@example.org")[0].startswith("250")
        break_passwd(data, how)
        try:
            next_look()
            got = rcpt(port, "alice@example.org", "nobody@example.org")
            assert all(r.startswith("451 4.3.0") for r in got), got
            p = deliver(data, "alice", MSG)
            assert p.returncode == EX_TEMPFAIL, (p.returncode, p.stderr)
            assert b"passwd" in p.stderr, p.stderr
        finally:
            restore_passwd(data)
        next_look()
        assert rcpt(port, "alice@example.org")[0].startswith("250")
        assert deliver(data, "alice", MSG).returncode == EX_OK
    finally:
        srv.stop()


def test_garbage_passwd_lines_are_skipped_with_a_warning(data):
    for u in ("alice", "bob", "carol"):
        add_user(data, u, u + "pw")
    pw = data / "passwd"
    lines = pw.read_bytes().splitlines(keepends=True)
    assert len(lines) == 3
    garbage = [b"garbage line without a colon\n", lines[0], b"\x00\x01\xff binary\n", lines[1],
               b":no-user-name:x\n", lines[0].replace(b"alice:", b"alice:{SHA512-CRYPT}$6$dup$x:", 1),
               b"# a comment\n", b"\n", lines[2]]
    pw.write_bytes(b"".join(garbage))
    srv = imap_server.start(data, protocols=("imap", "lmtp"))
    try:
        for u in ("alice", "bob", "carol"):
            c = imap_server.Client(srv.port)
            assert c.cmd(f'LOGIN {u} "{u}pw"')[1].startswith(b"OK"), u
            c.close()
        got = rcpt(srv.ports["lmtp"], "alice@example.org", "bob@example.org", "carol@example.org")
        assert all(r.startswith("250") for r in got), got
        assert deliver(data, "carol", MSG).returncode == EX_OK
        log = srv.log()
        for n in (1, 3, 5, 6):
            assert log.count(f"{pw}:{n}: ") == 1, (n, log)
        for n in (2, 4, 7, 8, 9):  # users, a comment, a blank line
            assert f"{pw}:{n}: " not in log, (n, log)
        assert re.search(rf"{re.escape(str(pw))}:6: user alice is listed already on line 2", log), log
    finally:
        srv.stop()


def login_pid(srv, before):
    """The PID of the process that logged the newest alice login after the
    first `before` ones."""
    pids = re.findall(r"mailroom\[(\d+)\]: info: imap \S+ login user=alice", srv.log())
    return int(pids[-1]) if len(pids) > before else None


def test_max_userip_connections_over_two_workers(data):
    add_user(data, "alice", "secret")
    srv = imap_server.start(data, extra_opts={"workers": "2", "plaintext_auth": "yes"},
                            protocols=("imap", "pop3"))
    held = []
    try:
        port = srv.ports["imap"]
        logins = 0
        where = []  # worker PID of each held session
        # ten sessions, on both workers (connections land on whichever
        # worker accepts first: replace sessions until both have some)
        for attempt in range(60):
            if len(held) == 10 and len(set(where)) == 2:
                break
            if len(held) == 10:
                held.pop(0).cmd("LOGOUT")
                where.pop(0)
                time.sleep(0.05)
            c = imap_server.Client(port)
            r = c.cmd('LOGIN alice "secret"')[1]
            if r == LIMIT:  # a logout not yet counted: the worker tells the auth process after closing
                c.close()
                time.sleep(0.1)
                continue
            assert r.startswith(b"OK"), r
            logins += 1
            deadline = time.monotonic() + 5
            while login_pid(srv, logins - 1) is None and time.monotonic() < deadline:
                time.sleep(0.02)
            held.append(c)
            where.append(login_pid(srv, logins - 1))
        assert len(held) == 10 and len(set(where)) == 2, (len(held), where)
        print("sessions per worker:", {p: where.count(p) for p in set(where)})
        # the 11th from this IP: refused, whichever worker takes it
        for _ in range(4):
            c = imap_server.Client(port)
            assert c.cmd('LOGIN alice "secret"')[1] == LIMIT
            # not logged in: a mailbox command is in the wrong state
            assert c.cmd("SELECT INBOX")[1].startswith(b"BAD")
            c.close()
        # another IP, or POP3 (counted per protocol, as Dovecot): not limited
        c = imap_server.Client(port, source="127.0.0.2")
        assert c.cmd('LOGIN alice "secret"')[1].startswith(b"OK")
        c.close()
        p = Pop3(srv.ports["pop3"])
        assert p.login("alice", "secret").startswith(b"+OK")
        p.close()
        # one logs out: one new login works
        held.pop().cmd("LOGOUT")
        deadline = time.monotonic() + 5
        while True:
            c = imap_server.Client(port)
            r = c.cmd('LOGIN alice "secret"')[1]
            if r.startswith(b"OK") or time.monotonic() > deadline:
                break
            c.close()
            time.sleep(0.1)
        assert r.startswith(b"OK"), r
        held.append(c)
        c = imap_server.Client(port)
        assert c.cmd('LOGIN alice "secret"')[1] == LIMIT
        c.close()
    finally:
        for c in held:
            c.close()
        srv.stop()


def test_pop3_in_use_and_a_dead_worker_frees_its_places(data):
    """max_userip_connections = 1: a second POP3 login gets -ERR [IN-USE]
    from the limit (before the maildrop lock, whose text differs), a
    second IMAP one NO [LIMIT]; when the worker holding both dies, the
    auth process forgets its sessions and both logins work again."""
    add_user(data, "alice", "secret")
    srv = imap_server.start(data, extra_opts={"max_userip_connections": "1"}, protocols=("imap", "pop3"))
    held = []
    try:
        port = srv.ports["pop3"]
        p = Pop3(port)
        assert p.login("alice", "secret").startswith(b"+OK")
        held.append(p)
        p = Pop3(port)
        r = p.login("alice", "secret")
        assert r == b"-ERR [IN-USE] Too many connections from this user and IP address", r
        p.close()
        c = imap_server.Client(srv.port)
        assert c.cmd('LOGIN alice "secret"')[1].startswith(b"OK")
        held.append(c)
        c = imap_server.Client(srv.port)
        assert c.cmd('LOGIN alice "secret"')[1] == LIMIT
        c.close()
        # kill the worker that holds them; the auth process forgets its
        # sessions when its connection closes
        auth = set(int(x) for x in re.findall(r"mailroom\[(\d+)\]: info: auth: ", srv.log()))
        workers = [k for k in srv.children() if k not in auth]
        assert len(auth) == 1 and len(workers) == 1, (auth, workers)
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        got = {}
        while len(got) < 2 and time.monotonic() < deadline:
            try:
                if "pop3" not in got:
                    p = Pop3(port, timeout=5)
                    r = p.login("alice", "secret")
                    if r.startswith(b"+OK"):
                        got["pop3"] = p
                    else:
                        p.close()
                if "imap" not in got:
                    c = imap_server.Client(srv.port, timeout=5)
                    if c.cmd('LOGIN alice "secret"')[1].startswith(b"OK"):
                        got["imap"] = c
                    else:
                        c.close()
            except (OSError, EOFError, AssertionError):
                pass
            time.sleep(0.1)
        held += list(got.values())
        assert set(got) == {"pop3", "imap"}, srv.log()
    finally:
        for p in held:
            if hasattr(p, "sock"):
                p.sock.close()
        srv.stop()
