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


def mp_kids(node):
    """The body parts of a parsed multipart: the lists before its subtype
    (the lists after it are its parameters and extension data)."""
    kids = []
    for x in node:
        if not isinstance(x, list):
            break
        kids.append(x)
    return kids


def part_at(bs, section):
    """The BODYSTRUCTURE node (parsed) that a numeric section names."""
    node = bs
    for i, n in enumerate(int(x) for x in section.split(".")):
        if i > 0 and is_message(node):
            node = node[8]
        if is_multipart(node):
            kids = mp_kids(node)
            if n > len(kids):
                return None
            node = kids[n - 1]
        elif n != 1:
            return None
    return node


def part_exists(bs, section):
    """Does the section's part exist by the strict rule (a child of a
    multipart, the parts of an encapsulated message, or part 1 of a
    single-part message), in a parsed BODYSTRUCTURE? "n.MIME" asks about n.
    Not the lenient "n.1 of a leaf" both servers also answer."""
    nums = section.split(".")
    if nums[-1] == "MIME":
        nums = nums[:-1]
    if not nums or not all(x.isdigit() for x in nums):
        return False
    node = bs
    for i, n in enumerate(int(x) for x in nums):
        if i > 0 and is_message(node):
            node = node[8]
        if is_multipart(node):
            kids = mp_kids(node)
            if n < 1 or n > len(kids):
                return False
            node = kids[n - 1]
        elif i == 0 and n == 1:
            continue
        else:
            return False
    return True


CLOSE_LINE = re.compile(rb"(?:^|\n)--[^\r\n]*--[ \t]*$")


def nested_close_bytes(ours, theirs):
    """NESTED-CLOSE-CRLF on section bytes: ours ends with a close-delimiter
    line, Dovecot's has the CRLF after it too."""
    return theirs == ours + b"\r\n" and CLOSE_LINE.search(ours) is not None


def nested_close_structure(a, b):
    """NESTED-CLOSE-CRLF on a parsed BODYSTRUCTURE: a copy of b (Dovecot's)
    where each message/rfc822 part holding a multipart that is exactly
    2 bytes and 1 line longer than ours has our size and lines."""
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = [nested_close_structure(x, y) for x, y in zip(a, b)]
        if (is_message(a) and is_message(b) and is_multipart(a[8]) and len(a) > 9
                and isinstance(a[6], bytes) and isinstance(b[6], bytes)
                and isinstance(a[9], bytes) and isinstance(b[9], bytes)
                and int(b[6]) == int(a[6]) + 2 and int(b[9]) == int(a[9]) + 1):
            out[6], out[9] = a[6], a[9]
        return out
    return b


def is_dsp(v):
    return (isinstance(v, list) and len(v) == 2 and isinstance(v[0], tuple)
            and (v[1] is None or isinstance(v[1], list)))


def disp_first(a, b):
    """DISP-FIRST on a parsed BODYSTRUCTURE: a copy of b where each
    body-fld-dsp that differs from ours, ours being one without parameters
    (the first of two Content-Disposition fields), is ours."""
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for x, y in zip(a, b):
            if x != y and is_dsp(x) and x[1] is None and is_dsp(y):
                out.append(x)
            else:
                out.append(disp_first(x, y))
        return out
    return b


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
    if kind == "BINARY.SIZE" and ctx is not None:
        # the size of what BINARY sent on each side, and that difference
        # was explained by a rule: the same rule
        our_bin, their_bin, bin_rule = ctx
        if (bin_rule is not None and our_bin is not None and their_bin is not None
                and ours == b"%d" % len(our_bin) and theirs == b"%d" % len(their_bin)):
            return bin_rule
        # a composite part: Dovecot's size is that of its re-encoding (or
        # refused); ours is that of what our BINARY sends (BODY's bytes)
        if (bin_rule == "BINARY-COMPOSITE" and our_bin is not None
                and ours == b"%d" % len(our_bin)):
            return bin_rule
        return None
    if kind == "BINARY" and ctx is not None:
        section, bs, our_body, their_body = ctx
        node = part_at(bs, section) if bs is not None else None
        if (node is not None and (is_multipart(node) or is_message(node))
                and ours == our_body and our_body == their_body):
            return "BINARY-COMPOSITE"
        if (node is not None and (is_multipart(node) or is_message(node))
                and ours == our_body and theirs == their_body and our_body is not None
                and their_body is not None and nested_close_bytes(our_body, their_body)):
            return "NESTED-CLOSE-CRLF"
    if kind == "BODY":
        if nested_close_bytes(ours, theirs):
            return "NESTED-CLOSE-CRLF"
        if b"\r\r\n" in ours and ours.replace(b"\r\r\n", b"\r\n") == theirs:
            return "CRCRLF-STORED"
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
            if a == nested_close_structure(a, b):
                return "NESTED-CLOSE-CRLF"
            if a == disp_first(a, b):
                return "DISP-FIRST"
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
    first_issue10 = len(msgs) - len(mime_corpus_gen.ISSUE10_CASES)
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
            lines.append("binary-size\t%s\t%s\n" % (f, s))
    ours = iter(run_batch(lines))

    rules = load_deviations()
    dovecot_size_wrong = []
    compared = 0
    deviations = {}
    failures = []

    def record(i, what, mine, theirs, ctx=None):
        """Compare; returns None if equal, else the rule id that explains
        the difference (or "" for a failure)."""
        nonlocal compared
        compared += 1
        if mine == theirs:
            return None
        kind = what.split("[")[0]
        rid = explain(kind, mine or b"", theirs or b"", ctx)
        if rid is not None and rid in rules:
            deviations.setdefault(rid, []).append((i, what))
            return rid
        failures.append("message %d (%s) %s:\n  mailroom: %r\n  dovecot:  %r" % (
            i, files[i], what, mine, theirs))
        return ""

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
            # a part that does not exist: Dovecot sends NIL or "", we refuse;
            # but a part that exists (in Dovecot's BODYSTRUCTURE, which ours
            # equals) is never NIL, even when empty (RFC 9051 7.5.2)
            if mine is None and theirs in (None, b"") and not part_exists(their_bs, s):
                compared += 1
                continue
            record(i, "BODY[%s]" % s, mine, theirs)
        for s in BINARY_SECTIONS:
            mine = next(ours)
            mine_size = next(ours)
            theirs = theirs_size = None
            tagged, untagged = imap.command(b"FETCH " + seq + b" (BINARY.PEEK[%s])" % s.encode())
            if b" OK" in tagged:
                # else UNKNOWN-CTE or a part Dovecot cannot decode: we must refuse too
                for u in untagged:
                    if b" FETCH " in u:
                        v = fetch_items(u).get("BINARY[%s]" % s)
                        theirs = string_value(v) if v is not None else None
            # RFC 3516 4.2: BINARY.SIZE is the size of what BINARY sends. Ours
            # is compared with the length of Dovecot's BINARY, not with
            # Dovecot's BINARY.SIZE: Dovecot 2.3 gets that wrong (331 for a
            # 343-byte 7bit part, 2^64-29 for a multipart, NO [UNKNOWN-CTE]
            # for parts it decodes fine); how often is counted and printed.
            tagged, untagged = imap.command(b"FETCH " + seq + b" (BINARY.SIZE[%s])" % s.encode())
            for u in untagged:
                if b" FETCH " in u and b" OK" in tagged:
                    theirs_size = fetch_items(u).get("BINARY.SIZE[%s]" % s)
            if theirs is not None:
                if theirs_size != b"%d" % len(theirs):
                    dovecot_size_wrong.append((i, s, theirs_size, len(theirs)))
                theirs_size = b"%d" % len(theirs)
            if mine is None and theirs in (None, b"") and not part_exists(their_bs, s):
                compared += 1
                continue
            rid = record(i, "BINARY[%s]" % s, mine, theirs, (s, their_bs) + bodies[s])
            # RFC 3516 4.2: BINARY.SIZE is the size of what BINARY sends
            if mine is not None:
                assert mine_size == b"%d" % len(mine), (i, s, mine_size, len(mine))
            if theirs is not None or mine is not None:
                record(i, "BINARY.SIZE[%s]" % s, mine_size, theirs_size, (mine, theirs, rid))
    imap.command(b"LOGOUT")

    summary = ", ".join("%s: %d" % (k, len(v)) for k, v in sorted(deviations.items()))
    if os.environ.get("MIME_CORPUS_DUMP"):
        with open(os.environ["MIME_CORPUS_DUMP"] + ".dev", "w") as f:
            f.write(repr(deviations))
    print("\nmime corpus: %d messages, %d comparisons, %d known deviations (%s), %d failures"
          % (len(msgs), compared, sum(len(v) for v in deviations.values()), summary or "none",
             len(failures)))
    fixed = sorted({(mime_corpus_gen.ISSUE10_CASES[i - first_issue10][0], rid)
                    for rid, v in deviations.items() for i, _ in v if i >= first_issue10})
    print("Dovecot's own BINARY.SIZE differed from the length of its BINARY %d times "
          "(ours never: asserted)" % len(dovecot_size_wrong))
    print("issue 10 cases: %d messages; their known deviations: %s"
          % (len(mime_corpus_gen.ISSUE10_CASES), ", ".join("%s %s" % x for x in fixed) or "none"))
    if os.environ.get("MIME_CORPUS_DUMP"):
        with open(os.environ["MIME_CORPUS_DUMP"], "w") as f:
            f.write("\n".join(failures))
    assert not failures, "\n".join(failures[:15]) + "\n... %d differences in all" % len(failures)
