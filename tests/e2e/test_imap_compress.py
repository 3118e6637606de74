"""COMPRESS=DEFLATE (RFC 4978), with a raw socket and Python's zlib as the
client (raw deflate, wbits=-15, a Z_SYNC_FLUSH after each command).

- advertised after login (RFC 4978 3), not before;
- after the tagged OK everything both ways is compressed: a large FETCH is
  byte-identical to the uncompressed one, an APPEND literal arrives whole,
  an IDLE push comes compressed;
- a second COMPRESS is NO [COMPRESSIONACTIVE] (RFC 4978 3, RFC 5530 3), an
  unknown mechanism BAD;
- over implicit TLS (IMAPS) too (RFC 4978 8: compression inside TLS);
- backpressure: a compressed client that stops reading a huge FETCH does not
  grow the server's memory and is cut off by the write timeout;
- garbage compressed input closes that connection, nothing else;
- memory: RssAnon per idle compressed session is measured and printed.
"""
import base64
import os
import random
import re
import socket
import ssl
import time
import zlib

import imap_server
from conftest import add_user, deliver, make_message, wire
from test_client_limits import log_wait, rss_kb

WRITE_TIMEOUT = 3


def start(data, **opts):
    return imap_server.start(str(data), extra_opts=opts)


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class ZClient:
    """An IMAP client on a raw socket that can switch to deflate."""

    def __init__(self, port, tls=False, rcvbuf=None):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(30)
        s.connect(("127.0.0.1", port))
        self.sock = tls_context().wrap_socket(s) if tls else s
        self.z_out = self.z_in = None
        self.buf = b""
        self.wire_in = 0  # bytes as received (compressed once on)
        self.read_until(b"\r\n")

    def compress(self):
        self.z_out = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.z_in = zlib.decompressobj(-15)

    def send(self, data):
        if self.z_out:
            data = self.z_out.compress(data) + self.z_out.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def _fill(self):
        d = self.sock.recv(65536)
        if not d:
            raise EOFError(self.buf[-300:])
        self.wire_in += len(d)
        self.buf += self.z_in.decompress(d) if self.z_in else d

    def read_until(self, end, limit=1 << 26):
        while end not in self.buf:
            self._fill()
            assert len(self.buf) < limit
        i = self.buf.index(end) + len(end)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def cmd(self, tag, text, literal=None):
        """The whole response to one command, raw, up to its tagged line."""
        if literal is not None:
            self.send(f"{tag} {text} {{{len(literal)}+}}\r\n".encode() + literal + b"\r\n")
        else:
            self.send(f"{tag} {text}\r\n".encode())
        return self.tagged(tag)

    def tagged(self, tag):
        parts = []
        pat = re.compile(tag.encode() + rb" (OK|NO|BAD)[^\r\n]*\r\n")
        while True:
            ln = self.read_until(b"\r\n")
            parts.append(ln)
            if pat.fullmatch(ln):
                return b"".join(parts)

    def close(self):
        self.sock.close()


def status(resp, tag):
    return re.search(rb"(?:^|\r\n)" + tag.encode() + rb" (OK|NO|BAD)", resp).group(1).decode()


def compressed(c, tag="z"):
    r = c.cmd(tag, "COMPRESS DEFLATE")
    assert status(r, tag) == "OK", r
    c.compress()


def noise_message(tag, size):
    """A message that compresses poorly (base64 of random bytes)."""
    rnd = random.Random(tag)
    raw = bytes(rnd.getrandbits(8) for _ in range(size * 3 // 4))
    body = base64.encodebytes(raw)
    return (f"From: a@example.org\nTo: b@example.org\nSubject: {tag}\n"
            f"Message-ID: <{tag}@mailroom.test>\n\n").encode() + body


def test_capability_after_login_rfc4978_3(data):
    add_user(data, "alice")
    srv = start(data)
    try:
        c = ZClient(srv.port)
        before = c.cmd("a", "CAPABILITY")
        assert b"COMPRESS=DEFLATE" not in before
        r = c.cmd("b", "COMPRESS DEFLATE")
        assert status(r, "b") == "BAD", r  # not authenticated yet
        c.cmd("c", "LOGIN alice secret")
        after = c.cmd("d", "CAPABILITY")
        assert re.search(rb"^\* CAPABILITY [^\r]* COMPRESS=DEFLATE", after, re.M), after
        c.close()
    finally:
        srv.stop()


def deliver_big_pair(data):
    """A large compressible message and a 600 KiB incompressible one."""
    big = make_message("big", 2 << 20)
    noisy = noise_message("noisy", 600 << 10)
    assert deliver(data, "alice", big).returncode == 0
    assert deliver(data, "alice", noisy).returncode == 0
    return big, noisy


def run_compressed_session(port, tls):
    """Login, FETCH uncompressed, COMPRESS, FETCH the same again, APPEND,
    a second COMPRESS; returns the wire byte counts."""
    c = ZClient(port, tls=tls)
    assert status(c.cmd("a", "LOGIN alice secret"), "a") == "OK"
    c.cmd("b", "SELECT INBOX")
    plain = c.cmd("f1", "FETCH 1:2 (BODY.PEEK[])")
    assert status(plain, "f1") == "OK"
    compressed(c)
    # RFC 4978 3: everything after the OK is compressed; identical answer
    w0 = c.wire_in
    zipped = c.cmd("f1", "FETCH 1:2 (BODY.PEEK[])")
    assert zipped == plain
    wire_bytes = c.wire_in - w0
    # APPEND: a literal in the compressed stream (RFC 4978 3)
    msg = wire(noise_message("appended", 300 << 10))
    r = c.cmd("ap", "APPEND INBOX", literal=msg)
    assert status(r, "ap") == "OK", r
    r = c.cmd("f2", "FETCH 3 (BODY.PEEK[])")
    assert msg in r and status(r, "f2") == "OK"
    # RFC 4978 3 / RFC 5530 3
    r = c.cmd("y", "COMPRESS DEFLATE")
    assert re.search(rb"^y NO \[COMPRESSIONACTIVE\]", r, re.M), r
    r = c.cmd("x", "COMPRESS FOO")
    assert status(r, "x") == "BAD", r
    r = c.cmd("l", "LOGOUT")
    assert b"* BYE" in r and status(r, "l") == "OK"
    c.close()
    return len(plain), wire_bytes


def test_fetch_append_identical_when_compressed_rfc4978_3(data):
    add_user(data, "alice")
    deliver_big_pair(data)
    srv = start(data)
    try:
        n, w = run_compressed_session(srv.port, tls=False)
        print(f"\nFETCH of {n} bytes came as {w} compressed bytes")
        assert w < n * 0.8, (n, w)  # it really was compressed
    finally:
        srv.stop()


def test_compress_over_implicit_tls_rfc4978_8(data):
    add_user(data, "alice")
    deliver_big_pair(data)
    pi = imap_server._free_port()
    srv = start(data, imaps_listen=f"127.0.0.1:{pi}")
    try:
        n, w = run_compressed_session(pi, tls=True)
        assert w < n * 0.8, (n, w)
    finally:
        srv.stop()


def test_idle_push_arrives_compressed_rfc4978_3(data):
    add_user(data, "alice")
    assert deliver(data, "alice", make_message("one")).returncode == 0
    srv = start(data)
    try:
        c = ZClient(srv.port)
        c.cmd("a", "LOGIN alice secret")
        compressed(c)
        c.cmd("b", "SELECT INBOX")
        c.send(b"i IDLE\r\n")
        c.read_until(b"+ ")
        c.read_until(b"\r\n")
        assert deliver(data, "alice", make_message("two")).returncode == 0
        assert b"* 2 EXISTS" in c.read_until(b"EXISTS\r\n")
        c.send(b"DONE\r\n")
        assert status(c.tagged("i"), "i") == "OK"
        c.close()
    finally:
        srv.stop()


def test_garbage_compressed_input_closes_cleanly(data):
    add_user(data, "alice")
    srv = start(data)
    try:
        c = ZClient(srv.port)
        c.cmd("a", "LOGIN alice secret")
        compressed(c)
        # a stored block whose length check fails: invalid deflate data
        c.sock.sendall(b"\x00\x05\x00\x05\x00garbage" + os.urandom(200))
        with_eof = False
        try:
            for _ in range(100):
                c._fill()
        except (EOFError, ConnectionResetError):
            with_eof = True
        assert with_eof
        assert srv.alive()
        d = ZClient(srv.port)
        assert status(d.cmd("a", "LOGIN alice secret"), "a") == "OK"
        d.close()
    finally:
        srv.stop()


def test_compressed_client_that_stops_reading_is_bounded(data):
    """Backpressure holds through deflate: the pump stops at the high-water
    mark (plain bytes waiting for deflate plus compressed bytes waiting for
    the socket), memory stays flat, the write timeout cuts the client off."""
    add_user(data, "alice")
    for i in range(16):
        assert deliver(data, "alice", noise_message(f"n{i}", 1 << 20)).returncode == 0
    srv = start(data, client_write_timeout=str(WRITE_TIMEOUT))
    try:
        c = ZClient(srv.port, rcvbuf=8192)
        c.cmd("a", "LOGIN alice secret")
        compressed(c)
        c.cmd("b", "SELECT INBOX")
        kids = srv.children()
        base = rss_kb(kids)
        c.send(b"c FETCH 1:* (BODY[])\r\n")
        t0 = time.monotonic()
        peak = base
        m = None
        while time.monotonic() - t0 < 20 and not m:
            peak = max(peak, rss_kb(kids))
            m = re.search(r"imap \S+ write timeout: (\d+) bytes unread", srv.log())
            time.sleep(0.1)
        assert m, srv.log()[-2000:]
        queued = int(m.group(1))
        print(f"\ncompressed: {queued} bytes queued at the cut (mailbox ~16 MiB); "
              f"RssAnon {base} -> {peak} kB")
        assert queued <= (1 << 20) + 2 * 256 * 1024 + 4096 + 128 * 1024, queued
        assert peak - base < 16 * 1024, (base, peak)
        c.close()
    finally:
        srv.stop()


def test_rss_per_idle_compressed_session(data):
    add_user(data, "alice")
    n = 200
    srv = start(data, max_userip_connections="0")
    try:
        kids = srv.children()
        time.sleep(0.3)
        r0 = rss_kb(kids)
        plain = []
        for _ in range(n):
            c = ZClient(srv.port)
            c.cmd("a", "LOGIN alice secret")
            plain.append(c)
        time.sleep(0.3)
        r1 = rss_kb(kids)
        for c in plain:
            compressed(c)
            assert status(c.cmd("n", "NOOP"), "n") == "OK"
        time.sleep(0.3)
        r2 = rss_kb(kids)
        per_plain = (r1 - r0) / n
        per_z = (r2 - r0) / n
        print(f"\nRssAnon per idle session: {per_plain:.1f} kB plain, "
              f"{per_z:.1f} kB compressed (+{per_z - per_plain:.1f} kB zlib), {n} sessions")
        # zlib at default settings would cost ~300 kB a session
        assert per_z - per_plain < 120, (per_plain, per_z)
        for c in plain:
            c.close()
    finally:
        srv.stop()
