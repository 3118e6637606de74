"""Start and stop a real `mailroom serve` for end-to-end tests.

    srv = imap_server.start(data, extra_opts={"imap_autologout": "60"})
    ... imaplib.IMAP4("127.0.0.1", srv.port) ...
    srv.stop()

start(data, extra_opts=None, protocols=("imap",)) runs
`mailroom serve -d DATA -o imap_listen=127.0.0.1:PORT ...` with every other
listener switched off (unless named in protocols: "pop3" and "lmtp" get
ports too, see .ports), one worker and no delay after failed logins, waits
until the port accepts connections and returns a Server with .port, .ports,
.pid, .log() (what the server wrote so far) and .stop() (SIGTERM, then
SIGKILL after a timeout). extra_opts override the defaults.

The binary is $MAILROOM, default build/mailroom in the repository. Ports
are picked at random among free high ports; a start that loses a race for
its port is retried.

Also: add_user(data, name, password) and deliver(data, user, message_bytes,
mailbox=None) as thin wrappers of the CLI, usable without conftest.
"""

import os
import random
import re
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MAILROOM = os.environ.get("MAILROOM") or str(REPO / "build" / "mailroom")

# Sanitizer reports (ASan, LSan, UBSan) found in the output of a stopped
# server, as (server log file name, excerpt). conftest.py fails the running
# test at teardown when this list grows; without ASAN_OPTIONS=log_path the
# sanitizer build writes its reports to stderr, that is into the server log.
SANITIZER_REPORTS = []
_SANITIZER_MARK = re.compile(r"==\d+==ERROR: \w+Sanitizer|: runtime error: |SUMMARY: \w+Sanitizer")


def sanitizer_reports(text):
    """The lines of text that start or sum up a sanitizer report."""
    return [l for l in text.splitlines() if _SANITIZER_MARK.search(l)]


def _free_port():
    for _ in range(100):
        port = random.randint(20000, 60000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def _answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _running(pid):
    """pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class Server:
    def __init__(self, proc, ports, logfile):
        self.proc = proc
        self.ports = ports
        self.port = ports.get("imap")
        self.pid = proc.pid
        self._logfile = logfile
        self._final = None

    def log(self):
        """What the server wrote to stdout/stderr so far (also after stop())."""
        if self._final is not None:
            return self._final
        self._logfile.flush()
        with open(self._logfile.name, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.proc.poll() is None

    def children(self):
        """PIDs of the master's children (auth process, workers)."""
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == self.pid:
                        out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
        return out

    def stop(self, timeout=3):
        """SIGTERM the master and wait; if it does not exit in time, SIGKILL
        it and its children (by PID: a killed master leaves its workers
        behind otherwise)."""
        kids = self.children() if self.proc.poll() is None else []
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                for k in kids:
                    try:
                        os.kill(k, signal.SIGKILL)
                    except OSError:
                        pass
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        deadline = time.monotonic() + timeout
        for k in kids:  # the children of a master that exited must follow it
            while time.monotonic() < deadline and _running(k):
                time.sleep(0.05)
            if _running(k):
                try:
                    os.kill(k, signal.SIGKILL)
                except OSError:
                    pass
        if self._final is not None:
            return
        self._final = self.log()
        found = sanitizer_reports(self._final)
        if found:
            SANITIZER_REPORTS.append((self._logfile.name, "\n".join(found[:20])))
        self._logfile.close()
        if found:
            return  # the log is kept for the one who reads the failure
        try:
            os.unlink(self._logfile.name)
        except OSError:
            pass


def start(data, extra_opts=None, protocols=("imap",), timeout=15, ports=None):
    """Start `mailroom serve` on DATA; returns a Server (see module doc).
    ports: {protocol: port} to listen on chosen ports (the ones another
    server just left, for a migration test) instead of random free ones."""
    last = None
    chosen = dict(ports or {})
    for _attempt in range(5):
        ports = {p: chosen.get(p) or _free_port() for p in protocols}
        opts = {
            "imap_listen": f"127.0.0.1:{ports['imap']}" if "imap" in ports else "",
            "imaps_listen": "",
            "pop3_listen": f"127.0.0.1:{ports['pop3']}" if "pop3" in ports else "",
            "pop3s_listen": "",
            "lmtp_listen": f"127.0.0.1:{ports['lmtp']}" if "lmtp" in ports else "",
            "workers": "1",
            "auth_failure_delay_ms": "0",
        }
        opts.update(extra_opts or {})
        args = [MAILROOM, "serve", "-d", str(data)]
        for k, v in opts.items():
            args += ["-o", f"{k}={v}"]
        logfile = tempfile.NamedTemporaryFile(prefix="mailroom-serve-", suffix=".log", delete=False)
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT)
        srv = Server(proc, ports, logfile)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if all(_answers(p) for p in ports.values()):
                return srv
            time.sleep(0.05)
        last = srv.log()
        srv.stop()
        if "in use" not in last.lower():
            break
        if chosen:
            time.sleep(0.5)  # a chosen port may take a moment to be released
    raise RuntimeError(f"mailroom serve did not start: {last}")


def add_user(data, name, password="secret"):
    p = subprocess.run([MAILROOM, "user", "add", "-d", str(data), name],
                       input=(password + "\n").encode(), capture_output=True, timeout=60)
    assert p.returncode == 0, f"user add {name}: {p.returncode} {p.stderr!r}"


def deliver(data, user, message_bytes, mailbox=None):
    args = [MAILROOM, "deliver", "-d", str(data)]
    if mailbox:
        args += ["-m", mailbox]
    p = subprocess.run(args + [user], input=message_bytes, capture_output=True, timeout=120)
    assert p.returncode == 0, f"deliver: {p.returncode} {p.stderr!r}"


# ---- a raw IMAP client, for tests that need the exact bytes --------------------

class Client:
    """A minimal IMAP client over a plain socket.

        c = Client(srv.port); c.login("alice", "secret"); c.ok("SELECT INBOX")
        untagged, tagged = c.cmd("FETCH 1 (FLAGS)")

    cmd() sends one command line (a tag is added) and reads to the tagged
    reply. untagged is a list of responses, each the raw bytes of one
    response with its literals in place (b'* 1 FETCH (BODY[] {3}\\r\\nabc)');
    tagged is the tagged line without the tag and CRLF (b'OK Fetch completed').
    parse(resp) turns a response into a token list (see parse()).
    """

    def __init__(self, port, host="127.0.0.1", timeout=30, source=None):
        # source: a local address to connect from (another 127.x.y.z, to
        # be another client IP for the server)
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.buf = b""
        self.n = 0
        self.greeting = self._read_response()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self):
        data = self.sock.recv(1 << 16)
        if not data:
            raise EOFError("server closed the connection")
        self.buf += data

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\r\n") + 2
        line, self.buf = self.buf[:i], self.buf[i:]
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _read_response(self):
        """One response: a line, plus literals and the lines after them."""
        out = b""
        while True:
            line = self._line()
            out += line
            m = _LITERAL_END.search(line)
            if not m:
                return out[:-2]
            out += self._exact(int(m.group(1)))

    def send(self, data):
        self.sock.sendall(data)

    def cmd(self, text, literal=None):
        """Send 'TAG text' (str or bytes); returns (untagged, tagged)."""
        self.n += 1
        tag = f"t{self.n}".encode()
        if isinstance(text, str):
            text = text.encode()
        self.send(tag + b" " + text + b"\r\n")
        untagged = []
        while True:
            r = self._read_response()
            if r.startswith(tag + b" "):
                return untagged, r[len(tag) + 1:]
            if r.startswith(b"+"):
                if literal is None:
                    raise AssertionError(f"unexpected continuation {r!r}")
                self.send(literal)
                literal = None
                continue
            untagged.append(r)

    def ok(self, text):
        untagged, tagged = self.cmd(text)
        assert tagged.startswith(b"OK"), f"{text!r}: {tagged!r}"
        return untagged

    def login(self, user, password):
        return self.ok(f'LOGIN "{user}" "{password}"')

    def last_tag(self):
        return f"t{self.n}"


import re as _re  # noqa: E402

_LITERAL_END = _re.compile(rb"~?\{(\d+)\+?\}\r\n$")


def parse(resp):
    """Tokenise one response: atoms -> str, quoted strings and literals ->
    bytes, NIL -> None, lists -> list. A fetch attribute with a section
    (BODY[HEADER.FIELDS (A B)]<0>) is one str token."""
    pos = 0
    n = len(resp)

    def skip():
        nonlocal pos
        while pos < n and resp[pos:pos + 1] == b" ":
            pos += 1

    def value():
        nonlocal pos
        skip()
        c = resp[pos:pos + 1]
        if c == b"(":
            pos += 1
            items = []
            while True:
                skip()
                if resp[pos:pos + 1] == b")":
                    pos += 1
                    return items
                items.append(value())
        if c == b'"':
            pos += 1
            out = b""
            while resp[pos:pos + 1] != b'"':
                if resp[pos:pos + 1] == b"\\":
                    pos += 1
                out += resp[pos:pos + 1]
                pos += 1
            pos += 1
            return out
        if c in (b"{", b"~"):
            m = _re.compile(rb"~?\{(\d+)\+?\}\r\n").match(resp, pos)
            size = int(m.group(1))
            pos = m.end()
            data = resp[pos:pos + size]
            pos += size
            return data
        start = pos
        depth = 0
        while pos < n:
            ch = resp[pos:pos + 1]
            if ch == b"[":
                depth += 1
            elif ch == b"]":
                depth -= 1
            elif depth == 0 and ch in (b" ", b"(", b")"):
                break
            pos += 1
        tok = resp[start:pos].decode("latin-1")
        return None if tok.upper() == "NIL" else tok

    items = []
    while True:
        skip()
        if pos >= n:
            return items
        items.append(value())


def fetch_items(resp):
    """b'* 3 FETCH (UID 7 FLAGS (\\\\Seen))' -> (3, {'UID': '7', 'FLAGS': ['\\\\Seen']})."""
    t = parse(resp)
    assert t[0] == "*" and t[2].upper() == "FETCH", resp
    lst = t[3]
    return int(t[1]), {lst[i].upper() if isinstance(lst[i], str) else lst[i]: lst[i + 1]
                       for i in range(0, len(lst), 2)}
