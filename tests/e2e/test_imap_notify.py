"""NOTIFY (RFC 5465) for the SELECTED and PERSONAL mailbox specifiers.

A session that set NOTIFY learns, without asking, of changes made by others:
FETCH (with the attributes MessageNew asked for) for new mail in the selected
mailbox, EXPUNGE and FETCH FLAGS there, STATUS for mail delivered to another
mailbox, LIST for mailboxes created, renamed, deleted and (un)subscribed by
another session; during IDLE and between commands. NOTIFY NONE stops it;
events we do not support are refused with [BADEVENT]. The memory and kernel
watches each NOTIFY session costs are measured and printed."""
import os
import re
import socket
import subprocess
import time

import pytest

import imap_server
from conftest import MAILROOM, add_user, server_worker

FILTERS = (b"NOTIFY SET (SELECTED (MessageNew (UID FLAGS) MessageExpunge FlagChange)) "
           b"(PERSONAL (MessageNew MessageExpunge MailboxName SubscriptionChange))")


class Client:
    """A raw IMAP client: cmd() sends a tagged command and returns every
    line up to and including its tagged reply; wait_for() reads unsolicited
    lines until one matches."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.buf = b""
        self.n = 0
        self.seen = []  # unsolicited lines read by wait_for
        self.line()

    def line(self, timeout=20):
        self.s.settimeout(timeout)
        while b"\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise EOFError(self.buf)
            self.buf += d
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l.decode("utf-8", "replace")

    def send(self, data):
        self.s.sendall(data + b"\r\n")

    def cmd(self, text):
        self.n += 1
        tag = "t%d" % self.n
        self.send(tag.encode() + b" " + (text if isinstance(text, bytes) else text.encode()))
        lines = []
        while True:
            l = self.line()
            lines.append(l)
            if l.startswith(tag + " "):
                return lines

    def wait_for(self, pattern, timeout=10):
        """Read lines until one matches pattern; return it (or fail)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                l = self.line(timeout=max(0.05, deadline - time.monotonic()))
            except socket.timeout:
                break
            self.seen.append(l)
            if re.search(pattern, l):
                return l
        raise AssertionError("no line matching %r; got %r" % (pattern, self.seen))

    def quiet(self, seconds=1.0):
        """The lines that arrive within seconds (expected: none)."""
        got = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                got.append(self.line(timeout=max(0.05, deadline - time.monotonic())))
            except socket.timeout:
                break
        return got

    def close(self):
        self.s.close()


def deliver(data, mailbox=None, subject="hi"):
    args = [MAILROOM, "deliver", "-d", str(data)]
    if mailbox:
        args += ["-m", mailbox]
    subprocess.run(args + ["alice"], input=b"Subject: %s\n\nbody\n" % subject.encode(),
                   check=True, timeout=60)


@pytest.fixture
def srv(data):
    add_user(data, "alice")
    deliver(data)
    s = imap_server.start(str(data), extra_opts={"max_userip_connections": "0"})
    yield s
    s.stop()


def login(srv, select=True):
    c = Client(srv.port)
    r = c.cmd("LOGIN alice secret")
    assert r[-1].split()[1] == "OK", r
    if select:
        assert c.cmd("SELECT INBOX")[-1].split()[1] == "OK"
    return c


def notifying(srv):
    c = login(srv)
    r = c.cmd(FILTERS)
    assert r[-1].split()[1] == "OK", r
    return c


def test_rfc5465_3_capability_notify(srv):
    c = login(srv, select=False)
    caps = c.cmd("CAPABILITY")[0].split()
    assert "NOTIFY" in caps
    c.close()


def test_rfc5465_5_2_messagenew_fetch_in_selected_during_idle(srv, data):
    c = notifying(srv)
    c.send(b"i IDLE")
    assert c.line().startswith("+")
    deliver(data, subject="pushed")
    c.wait_for(r"^\* 2 EXISTS$")
    # The attributes MessageNew asked for, for the new message (RFC 5465 5.2).
    l = c.wait_for(r"^\* 2 FETCH ")
    assert re.match(r"^\* 2 FETCH \(UID 2 FLAGS \([^)]*\)\)$", l), l
    c.send(b"DONE")
    c.wait_for(r"^i OK")
    c.close()


def test_rfc5465_5_2_messagenew_between_commands(srv, data):
    """No IDLE, no command: the new message is pushed all the same."""
    c = notifying(srv)
    deliver(data)
    c.wait_for(r"^\* 2 EXISTS$")
    c.wait_for(r"^\* 2 FETCH \(UID 2 FLAGS ")
    c.close()


def test_rfc5465_5_2_status_for_delivery_into_another_mailbox(srv, data):
    other = login(srv, select=False)
    assert other.cmd("CREATE Box")[-1].split()[1] == "OK"
    c = notifying(srv)
    c.send(b"i IDLE")
    assert c.line().startswith("+")
    deliver(data, mailbox="Box")
    l = c.wait_for(r"^\* STATUS ")
    assert re.match(r'^\* STATUS "?Box"? \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+\)$', l), l
    c.send(b"DONE")
    c.wait_for(r"^i OK")
    # Outside IDLE too, and by the next NOOP at the latest.
    deliver(data, mailbox="Box")
    time.sleep(0.3)
    r = c.cmd("NOOP")
    lines = c.seen + r
    assert any(re.match(r'^\* STATUS "?Box"? \(MESSAGES 2 UIDNEXT 3 ', l) for l in lines), lines
    c.close()
    other.close()


def test_rfc5465_5_3_flagchange_and_5_2_expunge_in_selected(srv):
    c = notifying(srv)
    other = login(srv)
    assert other.cmd("STORE 1 +FLAGS (\\Flagged)")[-1].split()[1] == "OK"
    l = c.wait_for(r"^\* 1 FETCH ")
    assert "\\Flagged" in l
    assert other.cmd("STORE 1 +FLAGS (\\Deleted)")[-1].split()[1] == "OK"
    assert other.cmd("EXPUNGE")[-1].split()[1] == "OK"
    c.wait_for(r"^\* 1 EXPUNGE$")
    c.close()
    other.close()


def test_rfc5465_5_4_mailboxname_create_rename_delete(srv):
    c = notifying(srv)
    other = login(srv, select=False)
    assert other.cmd("CREATE Foo")[-1].split()[1] == "OK"
    l = c.wait_for(r"^\* LIST ")
    assert re.match(r'^\* LIST \(\) "/" "?Foo"?$', l), l
    assert other.cmd("RENAME Foo Bar")[-1].split()[1] == "OK"
    l = c.wait_for(r"^\* LIST ")
    assert re.match(r'^\* LIST \(\) "/" "?Bar"? \("OLDNAME" \("?Foo"?\)\)$', l), l
    c.send(b"i IDLE")
    assert c.line().startswith("+")
    assert other.cmd("DELETE Bar")[-1].split()[1] == "OK"
    l = c.wait_for(r"^\* LIST ")
    assert re.match(r'^\* LIST \(\\NonExistent\) "/" "?Bar"?$', l), l
    c.send(b"DONE")
    c.wait_for(r"^i OK")
    c.close()
    other.close()


def test_rfc5465_5_5_subscriptionchange(srv):
    c = notifying(srv)
    other = login(srv, select=False)
    # Subscriptions need not exist (RFC 9051 6.3.7); INBOX is subscribed
    # from the start.
    assert other.cmd("SUBSCRIBE Ghost")[-1].split()[1] == "OK"
    l = c.wait_for(r"^\* LIST ")
    assert re.match(r'^\* LIST \(\\Subscribed\) "/" "?Ghost"?$', l), l
    assert other.cmd("UNSUBSCRIBE INBOX")[-1].split()[1] == "OK"
    l = c.wait_for(r"^\* LIST ")
    assert re.match(r'^\* LIST \(\) "/" "?INBOX"?$', l), l
    c.close()
    other.close()


def test_rfc5465_3_1_notify_set_status_sends_status_now(srv):
    other = login(srv, select=False)
    assert other.cmd("CREATE Box")[-1].split()[1] == "OK"
    c = login(srv)
    r = c.cmd(b"NOTIFY SET STATUS (PERSONAL (MessageNew MessageExpunge))")
    assert r[-1].split()[1] == "OK", r
    assert any(re.match(r'^\* STATUS "?Box"? \(MESSAGES 0 UIDNEXT 1 ', l) for l in r), r
    c.close()
    other.close()


def test_rfc5465_6_mailboxes_and_subtree_filters_name_only_their_mailboxes(srv, data):
    other = login(srv, select=False)
    for name in ("Box", "Lists", "Lists/a", "Elsewhere"):
        assert other.cmd("CREATE " + name)[-1].split()[1] == "OK"
    c = login(srv, select=False)
    r = c.cmd(b"NOTIFY SET (MAILBOXES Box (MessageNew MessageExpunge)) "
              b"(SUBTREE Lists (MessageNew MessageExpunge))")
    assert r[-1].split()[1] == "OK", r
    deliver(data, mailbox="Elsewhere")
    deliver(data, mailbox="Lists/a")
    c.wait_for(r'^\* STATUS "?Lists/a"? \(MESSAGES 1 ')
    deliver(data, mailbox="Box")
    c.wait_for(r'^\* STATUS "?Box"? \(MESSAGES 1 ')
    assert not any("Elsewhere" in l for l in c.seen + c.cmd("NOOP")), c.seen
    c.close()
    other.close()


def test_rfc5465_3_2_notify_none_stops_notifications(srv, data):
    other = login(srv, select=False)
    assert other.cmd("CREATE Box")[-1].split()[1] == "OK"
    c = notifying(srv)
    assert c.cmd("NOTIFY NONE")[-1].split()[1] == "OK"
    deliver(data, mailbox="Box")
    assert other.cmd("CREATE Quiet")[-1].split()[1] == "OK"
    got = c.quiet(1.0)
    r = c.cmd("NOOP")
    got += r
    assert not any(l.startswith(("* STATUS", "* LIST")) for l in got), got
    c.close()
    other.close()


def test_rfc5465_3_1_unsupported_event_is_badevent(srv):
    c = login(srv)
    r = c.cmd(b"NOTIFY SET (PERSONAL (MessageNew MessageExpunge AnnotationChange))")
    assert re.match(r"^t\d+ NO \[BADEVENT \(.*MessageNew.*\)\]", r[-1]), r
    r = c.cmd(b"NOTIFY SET (PERSONAL (MailboxMetadataChange))")
    assert "[BADEVENT" in r[-1] and " NO " in r[-1], r
    # RFC 5465 5.1/5.2: MessageNew without MessageExpunge is a client error;
    # fetch attributes outside SELECTED too.
    assert c.cmd(b"NOTIFY SET (PERSONAL (MessageNew))")[-1].split()[1] == "BAD"
    assert c.cmd(b"NOTIFY SET (PERSONAL (MessageNew (UID) MessageExpunge))")[-1].split()[1] == "BAD"
    assert c.cmd(b"NOTIFY SET (NOWHERE (MessageNew MessageExpunge))")[-1].split()[1] == "BAD"
    assert c.cmd(b"NOTIFY")[-1].split()[1] == "BAD"
    # A failed NOTIFY SET leaves the session without notifications (none were set).
    c.close()


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"RssAnon:\s+(\d+)", f.read()).group(1))


def inotify_watches(pid):
    """Kernel inotify watches held by pid (all its inotify instances)."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                n += sum(1 for l in f if l.startswith("inotify wd:"))
        except OSError:
            pass
    return n


def test_rfc5465_memory_and_watches_per_session(srv, data, capsys):
    """200 sessions of one user with NOTIFY (PERSONAL ...) on 20 mailboxes:
    memory per session is printed and bounded, and they share one kernel
    watch (an inotify watch per session and mailbox would be 4,000)."""
    N = 200
    other = login(srv, select=False)
    for i in range(20):
        assert other.cmd("CREATE Box%d" % i)[-1].split()[1] == "OK"
    worker = server_worker(srv)
    base0 = rss_kb(worker)
    plain = [login(srv, select=False) for _ in range(N)]
    base = rss_kb(worker)
    watches_before = inotify_watches(worker)
    sessions = []
    for _ in range(N):
        c = login(srv, select=False)
        r = c.cmd(b"NOTIFY SET (PERSONAL (MessageNew MessageExpunge MailboxName))")
        assert r[-1].split()[1] == "OK", r
        sessions.append(c)
    after = rss_kb(worker)
    watches = inotify_watches(worker) - watches_before
    for c in plain:
        c.close()
    plain_per = (base - base0) / N
    per = (after - base) / N
    with capsys.disabled():
        print("\nNOTIFY: %d sessions, 21 mailboxes: %.1f kB RssAnon per session with NOTIFY, "
              "%.1f kB without (logged in, nothing selected); %d inotify watch(es) added"
              % (N, per, plain_per, watches))
    assert watches <= 2, watches
    # A NOTIFY session waits without an index connection (released after
    # each wakeup, as in IDLE): kilobytes, not the ~80 kB of a session
    # that holds one. (ASan's redzones and quarantine make every figure of
    # build/asan/mailroom about ten times larger.)
    assert per < (32 if "asan" not in MAILROOM else 2048), (per, plain_per)
    # And they all hear of one delivery.
    deliver(data, mailbox="Box7")
    for c in sessions[:: N // 10]:
        c.wait_for(r'^\* STATUS "?Box7"? \(MESSAGES 1 ')
    for c in sessions:
        c.close()
    other.close()
