"""IMAP session commands against a real `mailroom serve`: greeting and
CAPABILITY, LOGIN and AUTHENTICATE, STARTTLS, mailbox commands (SELECT,
EXAMINE, CREATE, DELETE, RENAME, SUBSCRIBE, LIST, LSUB, STATUS, NAMESPACE),
APPEND (with MULTIAPPEND and LITERAL+), COPY/MOVE/EXPUNGE with UIDPLUS, IDLE
push, ENABLE, ID and error handling. Expectations come from RFC 9051 and
the RFCs of each extension."""
import os
import re
import signal
import socket
import ssl
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("MAILROOM", os.path.join(ROOT, "build", "mailroom"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, data, *opts, host="127.0.0.1"):
        self.port = free_port()
        self.tls_port = free_port()
        self.host = host
        args = [BIN, "serve", "-d", data, "-o", "imap_listen=%s:%d" % (host, self.port),
                "-o", "imaps_listen=127.0.0.1:%d" % self.tls_port, "-o", "pop3_listen=",
                "-o", "pop3s_listen=", "-o", "lmtp_listen=", "-o", "workers=1",
                "-o", "auth_failure_delay_ms=300"]
        for o in opts:
            args += ["-o", o]
        self.log = open(os.path.join(data, "serve.log"), "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return
            except OSError:
                assert self.proc.poll() is None, open(os.path.join(data, "serve.log")).read()
                time.sleep(0.05)
        self.stop()  # never leave a half-started server behind
        raise RuntimeError("server did not start")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Client:
    """A raw IMAP client: send a command, collect lines up to its tagged reply."""

    def __init__(self, port, sock=None):
        self.sock = sock or socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.n = 0
        self.greeting = self.line()

    def line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(self.buf)
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        # a literal: read its bytes into the same logical line
        m = re.search(rb"\{(\d+)\}$", line)
        if m:
            need = int(m.group(1))
            while len(self.buf) < need:
                self.buf += self.sock.recv(65536)
            line += b"\r\n" + self.buf[:need]
            self.buf = self.buf[need:]
            line += self.line()
        return line

    def send(self, data):
        self.sock.sendall(data)

    def cmd(self, text, tag=None):
        self.n += 1
        tag = tag or "t%d" % self.n
        self.send(tag.encode() + b" " + (text.encode() if isinstance(text, str) else text) + b"\r\n")
        return self.collect(tag)

    def collect(self, tag):
        untagged = []
        while True:
            l = self.line()
            if l.startswith(tag.encode() + b" "):
                return l[len(tag) + 1:].decode("utf-8", "replace"), untagged
            untagged.append(l.decode("utf-8", "replace"))

    def login(self, user="alice", pw="secret"):
        r, _ = self.cmd('LOGIN %s "%s"' % (user, pw))
        assert r.startswith("OK"), r
        return r

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def add_user(data, name, pw):
    r = subprocess.run([BIN, "user", "add", "-d", data, name], input=(pw + "\n").encode(),
                       capture_output=True)
    assert r.returncode == 0, r.stderr


def deliver(data, user, msg, mailbox=None):
    args = [BIN, "deliver", "-d", data] + (["-m", mailbox] if mailbox else []) + [user]
    r = subprocess.run(args, input=msg, capture_output=True)
    assert r.returncode == 0, r.stderr


@pytest.fixture
def server(tmp_path, _searchable_tmp):
    os.chmod(tmp_path, 0o755)  # the workers (run_user) must reach DATA
    data = str(tmp_path / "data")
    os.mkdir(data)
    add_user(data, "alice", "secret")
    add_user(data, "bob", "bobpw")
    for i in range(3):
        deliver(data, "alice", b"From: x@example.org\nSubject: msg %d\n\nbody %d\n" % (i, i))
    srv = Server(data)
    srv.data = data
    yield srv
    srv.stop()


def test_greeting_capability_and_login(server):
    c = Client(server.port)
    assert c.greeting.startswith(b"* OK [CAPABILITY ")
    r, u = c.cmd("CAPABILITY")
    caps = u[0].split()
    assert r.startswith("OK")
    for cap in ["IMAP4rev1", "IMAP4rev2", "STARTTLS", "AUTH=PLAIN", "SASL-IR", "LITERAL+", "ID", "ENABLE", "IDLE"]:
        assert cap in caps, cap
    r, _ = c.cmd("SELECT INBOX")
    assert r.startswith("BAD")  # not logged in yet
    t0 = time.time()
    r, _ = c.cmd('LOGIN alice "wrong"')
    assert r.startswith("NO [AUTHENTICATIONFAILED]")
    assert time.time() - t0 >= 0.25  # auth_failure_delay_ms=300
    r = c.login()
    for cap in ["UIDPLUS", "MOVE", "CONDSTORE", "QRESYNC", "SPECIAL-USE", "LIST-STATUS", "UNSELECT", "NAMESPACE"]:
        assert cap in r, cap
    r, _ = c.cmd("LOGIN alice secret")
    assert r.startswith("BAD")  # already logged in
    r, u = c.cmd("LOGOUT")
    assert u[0].startswith("* BYE") and r.startswith("OK")


def test_authenticate_plain_and_login(server):
    import base64
    c = Client(server.port)
    ir = base64.b64encode(b"\0alice\0secret").decode()
    r, _ = c.cmd("AUTHENTICATE PLAIN " + ir)
    assert r.startswith("OK [CAPABILITY"), r
    c.close()
    # without initial response: a continuation
    c = Client(server.port)
    c.send(b"a AUTHENTICATE PLAIN\r\n")
    assert c.line() == b"+ "
    c.send(base64.b64encode(b"\0alice\0secret") + b"\r\n")
    r, _ = c.collect("a")
    assert r.startswith("OK"), r
    c.close()
    # LOGIN mechanism, two challenges
    c = Client(server.port)
    c.send(b"a AUTHENTICATE LOGIN\r\n")
    assert base64.b64decode(c.line()[2:]) == b"Username:"
    c.send(base64.b64encode(b"bob") + b"\r\n")
    assert base64.b64decode(c.line()[2:]) == b"Password:"
    c.send(base64.b64encode(b"bobpw") + b"\r\n")
    r, _ = c.collect("a")
    assert r.startswith("OK"), r
    c.close()
    # cancel, garbage, wrong password, authzid of another user
    c = Client(server.port)
    c.send(b"a AUTHENTICATE PLAIN\r\n")
    c.line()
    c.send(b"*\r\n")
    r, _ = c.collect("a")
    assert r.startswith("BAD")
    r, _ = c.cmd("AUTHENTICATE PLAIN !!!notbase64")
    assert r.startswith("NO")
    r, _ = c.cmd("AUTHENTICATE PLAIN " + base64.b64encode(b"\0alice\0nope").decode())
    assert r.startswith("NO [AUTHENTICATIONFAILED]")
    r, _ = c.cmd("AUTHENTICATE PLAIN " + base64.b64encode(b"bob\0alice\0secret").decode())
    assert r.startswith("NO")
    r, _ = c.cmd("AUTHENTICATE CRAM-MD5")
    assert r.startswith("NO")


def test_starttls_discards_pipelined_commands(server):
    c = Client(server.port)
    # CVE-2011-0411: a command pipelined after STARTTLS must not run in TLS.
    c.send(b"a STARTTLS\r\nb CAPABILITY\r\n")
    r, _ = c.collect("a")
    assert r.startswith("OK")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    tls = ctx.wrap_socket(c.sock)
    tls.sendall(b"c NOOP\r\n")
    data = b""
    while b"c OK" not in data:
        chunk = tls.recv(4096)
        assert chunk
        data += chunk
    assert b"b OK" not in data and b"* CAPABILITY" not in data
    tls.sendall(b"d CAPABILITY\r\n")
    data = b""
    while b"d OK" not in data:
        data += tls.recv(4096)
    assert b"STARTTLS" not in data  # not offered twice
    tls.close()


def test_implicit_tls(server):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", server.tls_port), timeout=10))
    c = Client(0, sock=s)
    assert c.greeting.startswith(b"* OK")
    c.login()
    r, u = c.cmd("SELECT INBOX")
    assert r.startswith("OK [READ-WRITE]") and "* 3 EXISTS" in u


def test_select_examine_status(server):
    c = Client(server.port)
    c.login()
    r, u = c.cmd("SELECT INBOX")
    assert r.startswith("OK [READ-WRITE]")
    assert "* 3 EXISTS" in u
    assert any(l.startswith("* FLAGS (") and "\\Seen" in l for l in u)
    assert any(l.startswith("* OK [PERMANENTFLAGS (") and "\\*" in l for l in u)
    uv = [re.search(r"UIDVALIDITY (\d+)", l) for l in u if "UIDVALIDITY" in l][0].group(1)
    assert any("[UIDNEXT 4]" in l for l in u)
    assert any("[HIGHESTMODSEQ " in l for l in u)
    r, u = c.cmd("EXAMINE INBOX")
    assert r.startswith("OK [READ-ONLY]")
    assert u[0] == "* OK [CLOSED] Previous mailbox closed"
    r, u = c.cmd("STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN SIZE DELETED)")
    assert r.startswith("OK")
    st = u[-1]
    assert "MESSAGES 3" in st and "UIDNEXT 4" in st and "UNSEEN 3" in st and "DELETED 0" in st
    assert "UIDVALIDITY " + uv in st
    r, _ = c.cmd("SELECT Nope")
    assert r.startswith("NO [NONEXISTENT]")
    r, _ = c.cmd("FETCH 1 FLAGS")
    assert r.startswith("BAD")  # the failed SELECT left nothing selected
    r, _ = c.cmd("STATUS INBOX (BOGUS)")
    assert r.startswith("BAD")


def test_mailbox_management_and_list(server):
    c = Client(server.port)
    c.login()
    assert c.cmd("CREATE Projects/2024/")[0].startswith("OK")
    assert c.cmd("CREATE Projects/2024")[0].startswith("NO [ALREADYEXISTS]")
    assert c.cmd("CREATE INBOX")[0].startswith("NO")
    assert c.cmd("CREATE Later (USE (\\Archive))")[0].startswith("OK")
    r, u = c.cmd('LIST "" "*"')
    names = {l.rsplit(" ", 1)[1].strip('"'): l for l in u}
    assert "Projects/2024" in names and "\\HasNoChildren" in names["Projects/2024"]
    # the parent does not exist: shown as non-selectable with children
    assert "Projects" in names and "\\HasChildren" in names["Projects"]
    assert "\\Noselect" in names["Projects"] or "\\NonExistent" in names["Projects"]
    assert "\\Sent" in names["Sent"] and "\\Archive" in names["Later"]
    r, u = c.cmd('LIST "" "%"')
    assert not any("Projects/2024" in l for l in u)
    r, u = c.cmd('LIST "" ""')
    assert u == ['* LIST (\\Noselect) "/" ""']
    r, u = c.cmd('LIST "Projects/" "%"')
    assert len(u) == 1 and u[0].endswith('"Projects/2024"')
    r, u = c.cmd('LIST (SPECIAL-USE) "" "*"')
    assert {l.rsplit(" ", 1)[1].strip('"') for l in u} == {"Drafts", "Sent", "Trash", "Junk", "Archive", "Later"}
    r, u = c.cmd('LIST "" "INBOX" RETURN (STATUS (MESSAGES UNSEEN))')
    assert r.startswith("OK") and any(l.startswith('* STATUS "INBOX" (MESSAGES 3 UNSEEN 3)') for l in u)
    # subscriptions
    assert c.cmd("SUBSCRIBE Projects/2024")[0].startswith("OK")
    assert c.cmd("SUBSCRIBE Ghost")[0].startswith("OK")
    r, u = c.cmd('LSUB "" "*"')
    assert any(l.endswith('"Projects/2024"') for l in u) and any(l.endswith('"Ghost"') and "\\Noselect" in l for l in u)
    r, u = c.cmd('LIST (SUBSCRIBED) "" "*"')
    assert any("\\Subscribed" in l and l.endswith('"Projects/2024"') for l in u)
    assert c.cmd("UNSUBSCRIBE Ghost")[0].startswith("OK")
    assert not any("Ghost" in l for l in c.cmd('LSUB "" "*"')[1])
    # rename with children, delete
    assert c.cmd("CREATE Projects")[0].startswith("OK")
    assert c.cmd("RENAME Projects Old")[0].startswith("OK")
    names = [l.rsplit(" ", 1)[1].strip('"') for l in c.cmd('LIST "" "*"')[1]]
    assert "Old/2024" in names and "Projects/2024" not in names
    assert c.cmd("RENAME Old Sent")[0].startswith("NO")
    assert c.cmd("DELETE Old/2024")[0].startswith("OK")
    assert c.cmd("DELETE Old/2024")[0].startswith("NO [NONEXISTENT]")
    assert c.cmd("DELETE INBOX")[0].startswith("NO")
    r, u = c.cmd("NAMESPACE")
    assert u == ['* NAMESPACE (("" "/")) NIL NIL']


def test_mailbox_names_utf7_and_utf8(server):
    c = Client(server.port)
    c.login()
    # RFC 3501 5.1.3 example: "~peter/mail/日本語/台北" in modified UTF-7
    assert c.cmd("CREATE &ZeVnLIqe-/&U,BTFw-")[0].startswith("OK")
    assert os.path.isdir(os.path.join(server.data, "mail", "alice", ".日本語.台北"))
    r, u = c.cmd('LIST "" "*"')
    assert any(l.endswith('"&ZeVnLIqe-/&U,BTFw-"') for l in u)
    assert c.cmd("CREATE &Jjo!")[0].startswith("NO")  # invalid mUTF-7
    r, u = c.cmd("ENABLE UTF8=ACCEPT")
    assert u == ["* ENABLED UTF8=ACCEPT"]
    r, u = c.cmd('LIST "" "*"')
    assert any(l.endswith('"日本語/台北"') for l in u)


def test_append_multiappend_literal_plus(server):
    c = Client(server.port)
    c.login()
    msg = b"Subject: appended\r\n\r\nhello\r\n"
    c.send(b"a APPEND Drafts (\\Draft $Todo) \" 7-Feb-1994 21:52:25 -0800\" {%d}\r\n" % len(msg))
    assert c.line().startswith(b"+ ")
    c.send(msg + b"\r\n")
    r, _ = c.collect("a")
    m = re.match(r"OK \[APPENDUID (\d+) 1\]", r)
    assert m, r
    cur = os.path.join(server.data, "mail", "alice", ".Drafts", "cur")
    files = os.listdir(cur)
    assert len(files) == 1 and files[0].endswith(":2,Da")
    path = os.path.join(cur, files[0])
    assert open(path, "rb").read() == msg
    assert int(os.stat(path).st_mtime) == 760686745  # 1994-02-08 05:52:25 UTC
    assert "$Todo" in open(os.path.join(server.data, "mail", "alice", ".Drafts", "mailroom-box")).read()
    # MULTIAPPEND with LITERAL+ (no continuations)
    m1, m2 = b"Subject: one\r\n\r\n1\r\n", b"Subject: two\n\n2\n"
    c.send(b"b APPEND Drafts {%d+}\r\n%s (\\Seen) {%d+}\r\n%s\r\n" % (len(m1), m1, len(m2), m2))
    r, _ = c.collect("b")
    assert re.match(r"OK \[APPENDUID \d+ 2:3\]", r), r
    assert len(os.listdir(cur)) == 3
    assert c.cmd("APPEND Nowhere {3+}\r\nx\r\n")[0].startswith("NO [TRYCREATE]")
    assert c.cmd('APPEND Drafts "bad date" {3+}\r\nabc')[0].startswith("BAD")
    # over APPENDLIMIT: refused before the bytes are sent
    r, _ = c.cmd("APPEND Drafts {999999999999}")
    assert r.startswith("NO") or r.startswith("BAD")
    assert len(os.listdir(cur)) == 3
    r, u = c.cmd("STATUS Drafts (MESSAGES)")
    assert "MESSAGES 3" in u[0]


def test_copy_move_expunge_uidplus(server):
    c = Client(server.port)
    c.login()
    c.cmd("SELECT INBOX")
    r, _ = c.cmd("COPY 1:2 Archive")
    assert re.match(r"OK \[COPYUID \d+ 1:2 1:2\]", r), r
    r, u = c.cmd("UID MOVE 3 Trash")
    assert r.startswith("OK")
    assert any(re.match(r"\* OK \[COPYUID \d+ 3 1\]", l) for l in u), u
    assert "* 3 EXPUNGE" in u
    r, _ = c.cmd("COPY 1 Nowhere")
    assert r.startswith("NO [TRYCREATE]")
    r, _ = c.cmd("COPY 9 Archive")
    assert r.startswith("BAD")  # no such sequence number
    # EXPUNGE removes only \Deleted; UID EXPUNGE only the given UIDs
    cur = os.path.join(server.data, "mail", "alice", "INBOX", "cur")
    for name in os.listdir(cur):  # mark both \Deleted by hand, as another client would
        os.rename(os.path.join(cur, name), os.path.join(cur, name + "T"))
    r, u = c.cmd("UID EXPUNGE 2")
    # the flags set by hand are reported first (FETCH), then the expunge
    assert r.startswith("OK") and [l for l in u if "EXPUNGE" in l] == ["* 2 EXPUNGE"], u
    r, u = c.cmd("EXPUNGE")
    assert [l for l in u if "EXPUNGE" in l] == ["* 1 EXPUNGE"], u
    assert os.listdir(cur) == []
    r, u = c.cmd("STATUS Archive (MESSAGES)")
    assert "MESSAGES 2" in u[0]
    # read-only mailboxes refuse changes
    c.cmd("EXAMINE Archive")
    assert c.cmd("EXPUNGE")[0].startswith("NO")
    assert c.cmd("MOVE 1 INBOX")[0].startswith("NO")
    assert c.cmd("UNSELECT")[0].startswith("OK")
    assert c.cmd("CLOSE")[0].startswith("BAD")  # nothing selected


def test_untagged_updates_and_idle(server):
    a, b = Client(server.port), Client(server.port)
    a.login()
    b.login()
    a.cmd("SELECT INBOX")
    b.cmd("SELECT INBOX")
    # a delivery shows up at the next NOOP
    deliver(server.data, "alice", b"Subject: new\n\nx\n")
    r, u = a.cmd("NOOP")
    assert "* 4 EXISTS" in u
    # an expunge by b is reported to a as EXPUNGE
    cur = os.path.join(server.data, "mail", "alice", "INBOX", "cur")
    first = sorted(os.listdir(cur), key=lambda n: int(re.search(r"U=(\d+)", n).group(1)))[0]
    os.rename(os.path.join(cur, first), os.path.join(cur, first + "T"))
    r, u = b.cmd("EXPUNGE")
    assert "* 1 EXPUNGE" in u
    r, u = a.cmd("NOOP")
    assert "* 1 EXPUNGE" in u
    # IDLE: pushed without asking
    a.send(b"i IDLE\r\n")
    assert a.line().startswith(b"+ ")
    t0 = time.time()
    deliver(server.data, "alice", b"Subject: pushed\n\nx\n")
    line = a.line()
    assert line == b"* 4 EXISTS", line
    assert time.time() - t0 < 5
    a.send(b"DONE\r\n")
    r, _ = a.collect("i")
    assert r.startswith("OK")
    # IDLE with a wrong continuation line
    a.send(b"j IDLE\r\n")
    a.line()
    a.send(b"NOTDONE\r\n")
    r, _ = a.collect("j")
    assert r.startswith("BAD")


def test_enable_id_errors(server):
    c = Client(server.port)
    r, u = c.cmd('ID ("name" "pytest")')
    assert r.startswith("OK") and u[0].startswith("* ID (")
    c.login()
    r, u = c.cmd("ENABLE CONDSTORE QRESYNC IMAP4rev2 X-UNKNOWN")
    assert u == ["* ENABLED CONDSTORE QRESYNC IMAP4rev2"]
    r, u = c.cmd("SELECT INBOX")
    assert any(l.startswith('* LIST () "/" "INBOX"') for l in u)  # RFC 9051 6.3.2
    assert not any("RECENT" in l for l in u)
    assert c.cmd("BOGUS")[0].startswith("BAD")
    assert c.cmd("UID CREATE x")[0].startswith("BAD")
    c.send(b"\r\n")  # an empty line: ignored or BAD, never fatal
    r, u = c.cmd("NOOP")
    assert r.startswith("OK") and all(l.startswith("* BAD") for l in u if "BAD" in l)
    # too many bad commands: BYE and close
    for i in range(25):
        c.send(b"x%d NONSENSE\r\n" % i)
    lines = []
    try:
        while True:
            lines.append(c.line())
    except (EOFError, ConnectionResetError, socket.timeout):
        pass
    assert any(l.startswith(b"* BYE") for l in lines)


def test_privilege_separation(server):
    """Workers run as run_user (mail), the auth process as auth_user
    (nobody); only the auth process gets to read DATA/passwd (through a
    descriptor the master passes it), and no worker can open it."""
    c = Client(server.port)
    c.login()  # a login went through the auth process
    kids = subprocess.run(["pgrep", "-P", str(server.proc.pid)], capture_output=True,
                          text=True).stdout.split()
    users = {}
    for pid in kids:
        with open("/proc/%s/status" % pid) as f:
            uid = [l.split()[1] for l in f if l.startswith("Uid:")][0]
        users.setdefault(uid, []).append(pid)
    import pwd
    mail_uid, nobody_uid = str(pwd.getpwnam("mail").pw_uid), str(pwd.getpwnam("nobody").pw_uid)
    assert set(users) == {mail_uid, nobody_uid}, users
    assert len(users[nobody_uid]) == 1  # the auth process
    passwd = os.path.join(server.data, "passwd")
    assert os.stat(passwd).st_mode & 0o077 == 0
    r = subprocess.run(["runuser", "-u", "mail", "--", "cat", passwd], capture_output=True)
    assert r.returncode != 0 and b"Permission denied" in r.stderr


def _non_loopback_ipv4():
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("192.0.2.1", 9))  # picks the outgoing address; no packet is sent
        ip = s.getsockname()[0]
        s.close()
    except OSError:
        return None
    return None if ip.startswith("127.") else ip


@pytest.mark.parametrize("allow", [False, True])
def test_logindisabled_off_loopback(tmp_path, _searchable_tmp, allow):
    """RFC 9051 6.2.3 / 7.2.2: on an unencrypted connection from another host
    the server says LOGINDISABLED and refuses LOGIN and AUTHENTICATE until
    STARTTLS, unless plaintext_auth = yes."""
    ip = _non_loopback_ipv4()
    if ip is None:
        pytest.skip("no non-loopback IPv4 address on this machine")
    os.chmod(tmp_path, 0o755)
    data = str(tmp_path / "data")
    os.mkdir(data)
    add_user(data, "alice", "secret")
    srv = Server(data, "plaintext_auth=%s" % ("yes" if allow else "no"), host=ip)
    try:
        c = Client(0, sock=socket.create_connection((ip, srv.port), timeout=10))
        r, u = c.cmd("CAPABILITY")
        caps = u[0].split()
        if allow:
            assert "AUTH=PLAIN" in caps and "LOGINDISABLED" not in caps
            assert c.cmd("LOGIN alice secret")[0].startswith("OK")
            return
        assert "LOGINDISABLED" in caps and "AUTH=PLAIN" not in caps and "STARTTLS" in caps
        assert c.cmd("LOGIN alice secret")[0].startswith("NO [PRIVACYREQUIRED]")
        assert c.cmd("AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==")[0].startswith("NO")
        assert c.cmd("STARTTLS")[0].startswith("OK")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        tls = Client.__new__(Client)
        tls.sock, tls.buf, tls.n = ctx.wrap_socket(c.sock), b"", 100
        r, u = tls.cmd("CAPABILITY")
        assert "AUTH=PLAIN" in u[0].split() and "LOGINDISABLED" not in u[0].split()
        assert tls.cmd("LOGIN alice secret")[0].startswith("OK")
    finally:
        srv.stop()
