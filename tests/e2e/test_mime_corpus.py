"""Corpus test: mailroom's MIME parser against Dovecot, byte for byte.

Generates >= 500 messages (mime_corpus_gen.py), APPENDs them to a private
Dovecot (installed with apt if missing, started on a loopback port from a
config in a temp folder, stopped by the PID in its run dir), and compares
ENVELOPE, BODYSTRUCTURE, BODY.PEEK[n] and BINARY.PEEK[n] with what
`mailroom mime batch` prints for the same files.

A difference passes only if a rule in mime_known_deviations.txt explains
it: each rule is a transformation, applied to *both* answers, that must make
them equal (so the rule describes exactly the difference, nothing more),
and names the RFC clause behind our side. Anything else fails the test.
"""
import os
import pathlib
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import mime_corpus_gen  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MAILROOM = os.environ.get("MAILROOM", os.path.join(HERE, "..", "..", "build", "mailroom"))
SECTIONS = ["1", "2", "3", "1.1", "1.2", "2.1", "2.2", "3.1", "2.1.1", "2.1.2", "2.2.1",
            "HEADER", "TEXT", "1.MIME", "2.MIME", "2.HEADER", "2.TEXT"]
BINARY_SECTIONS = ["1", "2", "3", "1.1", "1.2", "2.1", "2.2", "2.1.1"]
N_MESSAGES = 520


# ---------------------------------------------------------------- dovecot

def ensure_dovecot():
    if shutil.which("dovecot") or os.path.exists("/usr/sbin/dovecot"):
        return "/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else shutil.which("dovecot")
    if os.geteuid() != 0:
        pytest.skip("Dovecot is not installed and we are not root to install it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, timeout=300,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                        "dovecot-imapd"], env=env, timeout=600,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode != 0 or not os.path.exists("/usr/sbin/dovecot"):
        pytest.skip("Dovecot (dovecot-imapd) cannot be installed: %s" % r.stderr[-300:])
    return "/usr/sbin/dovecot"


def free_port():
    for _ in range(50):
        port = random.randint(21000, 29000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


@pytest.fixture(scope="module")
def dovecot():
    binary = ensure_dovecot()
    # not under pytest's tmp folder: that is 0700 and Dovecot's unprivileged
    # processes (auth as "dovecot", mail as "nobody") must reach this one
    d = pathlib.Path(tempfile.mkdtemp(prefix="mailroom-dovecot-"))
    os.chmod(d, 0o755)
    port = free_port()
    (d / "run").mkdir()
    (d / "state").mkdir()
    (d / "mail").mkdir()
    os.chmod(d / "mail", 0o777)
    (d / "passwd").write_text("t:{PLAIN}pw\n")
    conf = d / "dovecot.conf"
    conf.write_text(f"""
instance_name = mailroom-mime-test-{port}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {d}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
""")
    # dovecot daemonizes; its children must not inherit pipes we wait on
    with open(d / "start.out", "wb") as out:
        r = subprocess.run([binary, "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=out,
                           stderr=subprocess.STDOUT, timeout=60)
    if r.returncode != 0:
        pytest.fail("dovecot did not start: %s %s" % ((d / "start.out").read_text(), _log(d)))
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        _stop(d)
        pytest.fail("dovecot is not listening: %s" % _log(d))
    try:
        yield port
    finally:
        _stop(d)
        shutil.rmtree(d, ignore_errors=True)


def _log(d):
    try:
        return (d / "dovecot.log").read_text()[-2000:]
    except OSError:
        return ""


def _stop(d):
    pidfile = d / "run" / "master.pid"
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------- raw IMAP

class Imap:
    """A minimal IMAP client that keeps the server's bytes exactly."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.f = self.s.makefile("rb")
        self.tag = 0
        self.readline()  # greeting

    def readline(self):
        line = self.f.readline()
        if not line:
            raise EOFError("connection closed")
        return line

    def read_response(self):
        """One response (line plus its literals), as bytes."""
        out = b""
        while True:
            line = self.readline()
            out += line
            m = re.search(rb"~?\{(\d+)\}\r\n$", line)
            if not m:
                return out
            out += self.f.read(int(m.group(1)))

    def command(self, cmd, literal=None):
        self.tag += 1
        tag = b"A%d" % self.tag
        if literal is None:
            self.s.sendall(tag + b" " + cmd + b"\r\n")
        else:
            self.s.sendall(tag + b" " + cmd + b" {%d+}\r\n" % len(literal) + literal + b"\r\n")
        untagged = []
        while True:
            r = self.read_response()
            if r.startswith(tag + b" "):
                return r, untagged
            untagged.append(r)


def sexp_end(data, i):
    """Index just past the IMAP value starting at data[i]."""
    c = data[i:i + 1]
    if c == b"(":
        depth = 0
        while True:
            c = data[i:i + 1]
            if c == b"(":
                depth += 1
                i += 1
            elif c == b")":
                depth -= 1
                i += 1
                if depth == 0:
                    return i
            elif c == b'"':
                i = sexp_end(data, i)
            elif c in (b"{", b"~"):
                i = sexp_end(data, i)
            else:
                i += 1
    if c == b'"':
        i += 1
        while data[i:i + 1] != b'"':
            i += 2 if data[i:i + 1] == b"\\" else 1
        return i + 1
    if c in (b"{", b"~"):
        m = re.compile(rb"~?\{(\d+)\}\r\n").match(data, i)
        return m.end() + int(m.group(1))
    m = re.compile(rb"[^ ()]+").match(data, i)
    return m.end()


def fetch_items(resp):
    """FETCH response bytes -> {item name: raw value bytes}."""
    i = resp.index(b"FETCH (") + len(b"FETCH (")
    items = {}
    while resp[i:i + 1] != b")":
        m = re.compile(rb"([A-Z0-9.]+(?:\[[^\]]*\](?:<\d+>)?)?) ").match(resp, i)
        name = m.group(1).decode()
        j = sexp_end(resp, m.end())
        items[name] = resp[m.end():j]
        i = j
        if resp[i:i + 1] == b" ":
            i += 1
    return items


def string_value(raw):
    """Decodes an IMAP nstring value (NIL -> None)."""
    if raw == b"NIL":
        return None
    if raw.startswith(b'"'):
        return re.sub(rb"\\(.)", rb"\1", raw[1:-1])
    m = re.match(rb"~?\{(\d+)\}\r\n", raw)
    return raw[m.end():]


# ---------------------------------------------------------------- deviations

def parse_sexp(data, i=0):
    """IMAP value -> Python (list / bytes / None / int-ish bytes)."""
    c = data[i:i + 1]
    if c == b"(":
        i += 1
        out = []
        while data[i:i + 1] != b")":
            v, i = parse_sexp(data, i)
            out.append(v)
            if data[i:i + 1] == b" ":
                i += 1
        return out, i + 1
    j = sexp_end(data, i)
    raw = data[i:j]
    if raw == b"NIL":
        return None, j
    if raw[:1] in (b'"', b"{", b"~"):
        return ("S", string_value(raw)), j
    return raw, j


def humans(s):
    """Dovecot's imap_append_string_for_humans whitespace rule."""
    return re.sub(rb"[ \t\r\n]+", b" ", s).strip(b" ")


def map_strings(v, f, path=()):
    if isinstance(v, list):
        return [map_strings(x, f, path + (k,)) for k, x in enumerate(v)]
    if isinstance(v, tuple):
        return ("S", f(v[1], path))
    return v


def env_humans(env):
    """ENVELOPE with subject and display names whitespace-collapsed."""
    def f(s, path):
        if path == (1,) or (len(path) == 3 and 2 <= path[0] <= 7 and path[2] == 0):
            return humans(s)
        return s
    return map_strings(env, f)


def load_deviations():
    rules = {}
    with open(os.path.join(HERE, "mime_known_deviations.txt")) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                rid = line.split()[0]
                rules[rid] = line
    return rules


def is_message(node):
    return (isinstance(node, list) and len(node) > 8 and isinstance(node[0], tuple)
            and node[0][1].lower() == b"message" and node[1][1].lower() in (b"rfc822", b"global"))


def is_multipart(node):
    return isinstance(node, list) and len(node) > 0 and isinstance(node[0], list)


def part_at(bs, section):
    """The BODYSTRUCTURE node (parsed) that a numeric section names."""
    node = bs
    for i, n in enumerate(int(x) for x in section.split(".")):
        if i > 0 and is_message(node):
            node = node[8]
        if is_multipart(node):
            kids = [x for x in node if isinstance(x, list)]
            if n > len(kids):
                return None
            node = kids[n - 1]
        elif n != 1:
            return None
    return node


def basic_default(a, b):
    """ours text/plain us-ascii where Dovecot kept an invalid Content-Type
    (type with an empty subtype); all the other fields equal."""
    if is_multipart(a) and is_multipart(b):
        return len(a) == len(b) and all(basic_default(x, y) for x, y in zip(a, b))
    if a == b:
        return True
    if not (isinstance(a, list) and isinstance(b, list) and len(a) > 7 and len(b) > 6
            and all(isinstance(x, tuple) for x in (a[0], a[1], b[0], b[1], a[5], b[5]))):
        return False
    if b[1] != ("S", b"") or a[:3] != [("S", b"text"), ("S", b"plain"),
                                        [("S", b"charset"), ("S", b"us-ascii")]]:
        return False
    # ours has the text lines count at [7], Dovecot's basic part has none
    return a[3:7] == b[3:7] and a[8:] == b[7:]


def explain(kind, ours, theirs, ctx=None):
    """The id of the deviation rule that explains the difference, or None."""
    if kind == "BINARY" and ctx is not None:
        section, bs, our_body, their_body = ctx
        node = part_at(bs, section) if bs is not None else None
        if (node is not None and (is_multipart(node) or is_message(node))
                and ours == our_body and our_body == their_body):
            return "BINARY-COMPOSITE"
    if kind in ("ENVELOPE", "BODYSTRUCTURE"):
        try:
            a, _ = parse_sexp(ours)
            b, _ = parse_sexp(theirs)
        except Exception:
            return None
        if kind == "ENVELOPE":
            if env_humans(a) == env_humans(b):
                return "ENV-WHITESPACE"
        if kind == "BODYSTRUCTURE":
            # apply the envelope rule to every nested envelope too
            def norm(v):
                if isinstance(v, list):
                    if len(v) == 10 and all(x is None or isinstance(x, (list, tuple)) for x in v):
                        v = env_humans(v)
                    return [norm(x) for x in v]
                return v
            if norm(a) == norm(b):
                return "ENV-WHITESPACE"
            if basic_default(a, b):
                return "CT-INVALID-DEFAULT"
    return None


# ---------------------------------------------------------------- the test

def run_batch(lines):
    p = subprocess.run([MAILROOM, "mime", "batch"], input="".join(lines).encode(),
                       capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out, i, results = p.stdout, 0, []
    while i < len(out):
        j = out.index(b"\n", i)
        head = out[i:j]
        if head.startswith(b"OK "):
            n = int(head[3:])
            results.append(out[j + 1:j + 1 + n])
            i = j + 1 + n + 1
        else:
            results.append(None if head.startswith(b"NO ") else head)
            i = j + 1
    assert len(results) == len(lines)
    return results


def test_corpus_against_dovecot(dovecot, tmp_path):
    assert os.path.exists(MAILROOM), "build mailroom first (MAILROOM=%s)" % MAILROOM
    msgs = mime_corpus_gen.generate(N_MESSAGES)
    assert len(msgs) >= 500
    files = []
    for i, m in enumerate(msgs):
        p = tmp_path / ("%04d.eml" % i)
        p.write_bytes(m)
        files.append(str(p))

    imap = Imap(dovecot)
    tagged, _ = imap.command(b"LOGIN t pw")
    assert b"OK" in tagged, tagged
    tagged, _ = imap.command(b"SELECT INBOX")
    for m in msgs:
        tagged, _ = imap.command(b"APPEND INBOX", m)
        assert b" OK" in tagged, tagged
    tagged, _ = imap.command(b"SELECT INBOX")

    # our side, all in one process
    lines = []
    for f in files:
        lines.append("envelope\t%s\n" % f)
        lines.append("bodystructure\t%s\n" % f)
        for s in SECTIONS:
            lines.append("body\t%s\t%s\n" % (f, s))
        for s in BINARY_SECTIONS:
            lines.append("binary\t%s\t%s\n" % (f, s))
    ours = iter(run_batch(lines))

    rules = load_deviations()
    compared = 0
    deviations = {}
    failures = []

    def record(i, what, mine, theirs, ctx=None):
        nonlocal compared
        compared += 1
        if mine == theirs:
            return
        kind = what.split("[")[0]
        rid = explain(kind, mine or b"", theirs or b"", ctx)
        if rid is not None and rid in rules:
            deviations.setdefault(rid, []).append((i, what))
            return
        failures.append("message %d (%s) %s:\n  mailroom: %r\n  dovecot:  %r" % (
            i, files[i], what, mine, theirs))

    for i in range(len(msgs)):
        seq = b"%d" % (i + 1)
        items = "ENVELOPE BODYSTRUCTURE " + " ".join("BODY.PEEK[%s]" % s for s in SECTIONS)
        tagged, untagged = imap.command(b"FETCH " + seq + b" (" + items.encode() + b")")
        assert b" OK" in tagged, tagged
        got = {}
        for u in untagged:
            if b" FETCH " in u:
                got.update(fetch_items(u))
        record(i, "ENVELOPE", next(ours), got["ENVELOPE"])
        record(i, "BODYSTRUCTURE", next(ours), got["BODYSTRUCTURE"])
        their_bs, _ = parse_sexp(got["BODYSTRUCTURE"])
        bodies = {}
        for s in SECTIONS:
            mine = next(ours)
            theirs = string_value(got["BODY[%s]" % s])
            bodies[s] = (mine, theirs)
            # a part that does not exist: Dovecot sends NIL or "", we refuse
            if mine is None and theirs in (None, b""):
                compared += 1
                continue
            record(i, "BODY[%s]" % s, mine, theirs)
        for s in BINARY_SECTIONS:
            mine = next(ours)
            tagged, untagged = imap.command(b"FETCH " + seq + b" (BINARY.PEEK[%s])" % s.encode())
            if b" OK" not in tagged:
                # UNKNOWN-CTE or a part Dovecot cannot decode: we must refuse too
                theirs = None
            else:
                theirs = None
                for u in untagged:
                    if b" FETCH " in u:
                        v = fetch_items(u).get("BINARY[%s]" % s)
                        theirs = string_value(v) if v is not None else None
            if mine is None and theirs in (None, b""):
                compared += 1
                continue
            record(i, "BINARY[%s]" % s, mine, theirs, (s, their_bs) + bodies[s])
    imap.command(b"LOGOUT")

    summary = ", ".join("%s: %d" % (k, len(v)) for k, v in sorted(deviations.items()))
    if os.environ.get("MIME_CORPUS_DUMP"):
        with open(os.environ["MIME_CORPUS_DUMP"] + ".dev", "w") as f:
            f.write(repr(deviations))
    print("\nmime corpus: %d messages, %d comparisons, %d known deviations (%s), %d failures"
          % (len(msgs), compared, sum(len(v) for v in deviations.values()), summary or "none",
             len(failures)))
    if os.environ.get("MIME_CORPUS_DUMP"):
        with open(os.environ["MIME_CORPUS_DUMP"], "w") as f:
            f.write("\n".join(failures))
    assert not failures, "\n".join(failures[:15]) + "\n... %d differences in all" % len(failures)
