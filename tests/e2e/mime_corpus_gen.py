"""Deterministic generator of varied test messages for the MIME corpus test.

generate(n) returns n messages (bytes, CRLF line endings), then the fixed
ISSUE10_CASES. Message i depends only on i, so a failure can be reproduced
by its index. The mix covers what
RFC 5322/2045-2049/2231 allow and a share of what real mail gets wrong:
plain and 8-bit bodies, multipart/alternative, mixed, digest, nested
message/rfc822, base64 and quoted-printable attachments, RFC 2047 words in
several charsets, RFC 2231 parameters, groups, comments, folded fields, and
malformed structure (missing final boundary, header cut short, unknown
encoding, broken addresses, invalid Content-Type).
"""
import base64
import quopri
import random

CHARSET_TEXTS = [
    ("utf-8", "Grüße aus Köln – ☃ ü"),
    ("iso-8859-1", "Café crème à la carte"),
    ("iso-8859-15", "Prix: 5 € seulement"),
    ("windows-1252", "“Smart quotes” — and dashes"),
    ("koi8-r", "Привет, мир"),
    ("iso-2022-jp", "こんにちは世界"),
    ("utf-8", "日本語のメール"),
    ("iso-8859-2", "Zażółć gęślą jaźń"),
]

NAMES = ["Alice Example", "Bob O'Neil", "Carol", "Dr. Dave Q. Public", "Eve (the spy)",
         "Frank, Jr.", "Gina \"G\" Smith", "Hé Llo"]
DOMAINS = ["example.com", "example.org", "mail.example.net", "sub.domain.test"]
WORDS = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
         "incididunt ut labore et dolore magna aliqua meeting report invoice "
         "quarterly review draft final").split()


def ew(r, charset, text):
    """An RFC 2047 encoded word (or a few)."""
    data = text.encode(charset)
    if r.random() < 0.5:
        return "=?%s?B?%s?=" % (charset, base64.b64encode(data).decode())
    q = "".join(
        "_" if b == 0x20 else
        chr(b) if (0x30 <= b <= 0x39 or 0x41 <= b <= 0x5a or 0x61 <= b <= 0x7a) else
        "=%02X" % b for b in data)
    return "=?%s?Q?%s?=" % (charset, q)


def words(r, n):
    return " ".join(r.choice(WORDS) for _ in range(n))


def mailbox(r):
    user = r.choice(["alice", "bob", "carol.x", "d+tag", "e_f", "first.last"])
    return "%s@%s" % (user, r.choice(DOMAINS))


def address(r):
    k = r.randrange(10)
    mb = mailbox(r)
    name = r.choice(NAMES)
    if k == 0:
        return mb
    if k == 1:
        return "<%s>" % mb
    if k == 2:
        return '"%s" <%s>' % (name.replace('"', '\\"'), mb)
    if k == 3:
        cs, t = r.choice(CHARSET_TEXTS)
        return "%s <%s>" % (ew(r, cs, t[:12]), mb)
    if k == 4:
        return "%s (%s)" % (mb, name.replace("(", "").replace(")", ""))
    if k == 5:
        return "Plain Name <%s>" % mb
    if k == 6:
        return '"last, first" <%s>' % mb
    if k == 7:
        return "<@relay.example:%s>" % mb
    if k == 8:
        return "%s  <%s>" % ("Two  Spaces", mb)
    return "%s (comment) <%s>" % (name.split()[0].replace('"', ''), mb)


def address_list(r):
    k = r.randrange(8)
    if k == 0:
        return "undisclosed-recipients:;"
    if k == 1:
        return "Team: %s, %s;" % (address(r), address(r))
    n = r.randint(1, 4)
    return ", ".join(address(r) for _ in range(n))


def fold(r, name, value):
    """Folds a long value at spaces (with one space, RFC 5322 2.2.3)."""
    line = "%s: %s" % (name, value)
    if len(line) < 70 or r.random() < 0.3:
        return line
    out, cur = [], ""
    for w in value.split(" "):
        if cur and len(cur) + len(w) > 60:
            out.append(cur)
            cur = w
        else:
            cur = (cur + " " + w) if cur else w
    out.append(cur)
    return "%s: %s" % (name, "\r\n ".join(out))


def subject(r):
    k = r.randrange(9)
    if k == 0:
        cs, t = r.choice(CHARSET_TEXTS)
        return ew(r, cs, t)
    if k == 1:
        cs, t = r.choice(CHARSET_TEXTS)
        return "Re: %s %s" % (ew(r, cs, t[:6]), ew(r, cs, t[6:] or "x"))
    if k == 2:
        return ""
    if k == 3:
        return "[list] Fwd: " + words(r, r.randint(3, 15))
    if k == 4:
        return 'quotes "inside" and back\\slash'
    if k == 5:
        return words(r, r.randint(10, 25))
    return words(r, r.randint(1, 8)).capitalize()


def top_headers(r, idx):
    h = []
    if r.random() < 0.9:
        h.append("Date: %s, %d Mar 2024 %02d:%02d:%02d +0100" % (
            r.choice(["Mon", "Tue", "Wed"]), r.randint(1, 28), r.randint(0, 23),
            r.randint(0, 59), r.randint(0, 59)))
    h.append(fold(r, "From", address(r)))
    if r.random() < 0.2:
        h.append("Sender: " + address(r))
    if r.random() < 0.3:
        h.append("Reply-To: " + address(r))
    h.append(fold(r, "To", address_list(r)))
    if r.random() < 0.4:
        h.append(fold(r, "Cc", address_list(r)))
    if r.random() < 0.1:
        h.append("Bcc: " + address(r))
    if r.random() < 0.95:
        h.append(fold(r, "Subject", subject(r)))
    if r.random() < 0.8:
        h.append("Message-ID: <%d.%d@%s>" % (idx, r.randrange(10**6), r.choice(DOMAINS)))
    if r.random() < 0.3:
        h.append("In-Reply-To: <%d@%s>" % (r.randrange(10**6), r.choice(DOMAINS)))
    if r.random() < 0.2:
        h.append("X-Mailer: corpus-gen %d" % idx)
    h.append("MIME-Version: 1.0")
    return h


def text_body(r, lines=None):
    n = lines if lines is not None else r.randint(0, 12)
    return "\r\n".join(words(r, r.randint(1, 12)) for _ in range(n))


def leaf_text(r, subtype="plain"):
    """A text part: (header lines, body)."""
    k = r.randrange(5)
    body = text_body(r)
    if subtype == "html":
        body = "<html><body><p>%s</p></body></html>" % body.replace("\r\n", "<br>\r\n")
    if k == 0:
        return ["Content-Type: text/%s; charset=us-ascii" % subtype], body.encode()
    if k == 1:
        cs, t = r.choice(CHARSET_TEXTS[:4])
        data = (t + "\r\n" + body).encode(cs, "replace")
        qp = quopri.encodestring(data.replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n")
        return ["Content-Type: text/%s; charset=\"%s\"" % (subtype, cs),
                "Content-Transfer-Encoding: quoted-printable"], qp
    if k == 2:
        cs, t = ("utf-8", "Grüße ☃ " + body)
        return ["Content-Type: text/%s; charset=%s" % (subtype, cs),
                "Content-Transfer-Encoding: 8bit"], t.encode(cs)
    if k == 3:
        return ["Content-Type: text/%s" % subtype, "Content-Language: en"], body.encode()
    return ["Content-Type: TEXT/%s; CHARSET=UTF-8; format=flowed" % subtype.upper(),
            "Content-Transfer-Encoding: 7BIT"], body.encode()


def b64_lines(data):
    s = base64.b64encode(data).decode()
    return "\r\n".join(s[i:i + 76] for i in range(0, len(s), 76)).encode()


def attachment(r):
    k = r.randrange(7)
    data = bytes(r.randrange(256) for _ in range(r.randint(0, 600)))
    if k == 0:
        return ["Content-Type: application/octet-stream; name=\"data.bin\"",
                "Content-Transfer-Encoding: base64",
                "Content-Disposition: attachment; filename=\"data.bin\""], b64_lines(data)
    if k == 1:
        cs, t = r.choice(CHARSET_TEXTS)
        fname = "%s.txt" % t[:8]
        enc = "".join(chr(b) if b < 0x80 and chr(b).isalnum() else "%%%02X" % b
                      for b in fname.encode("utf-8"))
        return ["Content-Type: text/plain; charset=utf-8",
                "Content-Transfer-Encoding: base64",
                "Content-Disposition: attachment; filename*=utf-8''%s" % enc], b64_lines(t.encode())
    if k == 2:
        return ["Content-Type: image/png",
                "Content-Transfer-Encoding: base64",
                "Content-ID: <img%d@x>" % r.randrange(1000),
                "Content-Description: a picture",
                "Content-Disposition: inline; filename=\"pic.png\"; size=%d" % len(data)], b64_lines(data)
    if k == 3:
        return ["Content-Type: application/pdf;\r\n name*0=\"long-file-name-\";\r\n name*1=\"part-two.pdf\"",
                "Content-Transfer-Encoding: base64",
                "Content-Disposition: attachment;\r\n filename*0*=utf-8''%E2%82%AC-;\r\n filename*1=\"rest.pdf\""],\
            b64_lines(data)
    if k == 4:
        text = ("Säure = acid; line with trailing space \r\n" + text_body(r)).encode("iso-8859-1", "replace")
        qp = quopri.encodestring(text.replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n")
        return ["Content-Type: text/plain; charset=iso-8859-1",
                "Content-Transfer-Encoding: quoted-printable",
                "Content-Disposition: attachment; filename=notes.txt",
                "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==",
                "Content-Location: http://example.com/notes.txt"], qp
    if k == 5:
        return ["Content-Type: application/x-stuff",
                "Content-Transfer-Encoding: x-uuencode"], b"begin 644 x\r\n`\r\nend"
    return ["Content-Type: application/json; charset=utf-8",
            "Content-Language: en, de"], b'{"a": 1}'


def render(headers, body):
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


def boundary(r, depth):
    return r.choice(["b", "==_Part_%d_%d" % (depth, r.randrange(10**6)), "simple-boundary",
                     "----=_NextPart_000_%04d" % r.randrange(10**4), "x y z"])


def multipart(r, subtype, parts, depth, extra_hdr=(), preamble=None, epilogue=None,
              final=True, padding=False):
    b = boundary(r, depth)
    quoted = '"%s"' % b if (" " in b or "=" in b or r.random() < 0.5) else b
    hdr = ["Content-Type: multipart/%s; boundary=%s" % (subtype, quoted)] + list(extra_hdr)
    out = b""
    if preamble is None and r.random() < 0.3:
        preamble = "This is a multi-part message in MIME format."
    if preamble:
        out += preamble.encode() + b"\r\n"
    for ph, pb in parts:
        pad = b"  \t" if padding else b""
        out += b"--" + b.encode() + pad + b"\r\n" + render(ph, pb) + b"\r\n"
    if final:
        out += b"--" + b.encode() + b"--\r\n"
        if epilogue is None and r.random() < 0.2:
            epilogue = "epilogue text"
        if epilogue:
            out += epilogue.encode() + b"\r\n"
    return hdr, out


def random_part(r, depth):
    k = r.randrange(10) if depth < 3 else r.randrange(4)
    if k <= 1:
        return leaf_text(r)
    if k <= 3:
        return attachment(r)
    if k <= 5:
        return multipart(r, "alternative", [leaf_text(r), leaf_text(r, "html")], depth)
    if k <= 7:
        parts = [random_part(r, depth + 1) for _ in range(r.randint(1, 4))]
        return multipart(r, "mixed", parts, depth)
    if k == 8:
        inner_h, inner_b = random_part(r, depth + 1)
        msg = render(top_headers(r, depth) + inner_h, inner_b)
        return ["Content-Type: message/rfc822"] + (
            ["Content-Disposition: attachment"] if r.random() < 0.5 else []), msg
    msgs = []
    for _ in range(r.randint(1, 3)):
        h, b = leaf_text(r)
        msgs.append(([], render(top_headers(r, depth)[:4] + h, b)))
    return multipart(r, "digest", msgs, depth)


def malformed(r, idx):
    k = idx % 8
    top = top_headers(r, idx)
    if k == 0:  # missing final boundary
        h, b = multipart(r, "mixed", [leaf_text(r), attachment(r)], 0, final=False)
        return render(top + h, b)
    if k == 1:  # the boundary never appears
        return render(top + ["Content-Type: multipart/mixed; boundary=nowhere"], text_body(r, 3).encode())
    if k == 2:  # invalid Content-Type
        return render(top + ["Content-Type: garbage"], text_body(r, 2).encode())
    if k == 3:  # no blank line at all: all header
        return ("\r\n".join(top) + "\r\nX-Last: no body").encode()
    if k == 4:  # broken addresses
        bad = r.choice(["foo", "John Smith", "Joe <>", "a@b, , c@d", "\"unterminated <x@y>",
                        "<@route.only:u@h>", "x@[127.0.0.1]", "group: a@b, c@d"])
        return render(["From: %s" % bad, "To: %s" % bad, "Subject: broken addresses"], b"x")
    if k == 5:  # transport padding after delimiters
        h, b = multipart(r, "mixed", [leaf_text(r), leaf_text(r)], 0, padding=True)
        return render(top + h, b)
    if k == 6:  # raw 8-bit header
        return render(top + ["X-Raw: caf\xe9".encode("latin-1").decode("latin-1")],
                      text_body(r).encode()).replace(b"caf\xc3\xa9", b"caf\xe9")
    # multipart without parameters
    return render(top + ["Content-Type: multipart/mixed"], b"--b\r\n\r\nx\r\n--b--\r\n")


ISSUE10_TOP = (b"Date: Mon, 4 Mar 2024 10:00:00 +0100\r\nFrom: Real Mail <real@example.com>\r\n"
               b"To: bob@example.org\r\nSubject: issue 10 case\r\nMIME-Version: 1.0\r\n")


def _mp(ctype, body):
    return ISSUE10_TOP + b"Content-Type: " + ctype + b"\r\n\r\n" + body


# One message per MIME case of issue 10 (IMAP completeness), seen in real mail.
# Each is also a unit test (tests/unit/test_mime.c) and an IMAP test
# (tests/e2e/test_imap_mime_cases.py).
ISSUE10_CASES = [
    # existing but empty parts: BODY[n] and BINARY[n] "", BINARY.SIZE 0
    ("empty-parts", _mp(b"multipart/mixed; boundary=X",
                        b"--X\r\nContent-Type: text/plain\r\n\r\n\r\n"
                        b"--X\r\nContent-Type: application/octet-stream\r\n"
                        b"Content-Transfer-Encoding: base64\r\n\r\n"
                        b"--X\r\nContent-Type: text/plain\r\n\r\n--X--\r\n")),
    # BINARY.SIZE is the decoded size
    ("decoded-sizes", _mp(b"multipart/mixed; boundary=X",
                          b"--X\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8g\r\nd29ybGQ=\r\n"
                          b"--X\r\nContent-Type: text/plain; charset=utf-8\r\n"
                          b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
                          b"caf=C3=A9 =3D soft=\r\nbreak \r\n--X--\r\n")),
    # the final CRLF of a single-part body is its own (blank lines too)
    ("single-final-crlf", ISSUE10_TOP + b"\r\nline one\r\nline two\r\n\r\n"),
    # the last part before the close-delimiter, with and without a blank line,
    # and a message that ends right after the close-delimiter
    ("last-part-crlf", _mp(b"multipart/mixed; boundary=X",
                           b"--X\r\n\r\nA\r\n--X\r\n\r\nB\r\n\r\n--X--\r\n")),
    ("last-part-eof", _mp(b"multipart/mixed; boundary=X",
                          b"--X\r\n\r\nA\r\n\r\n--X\r\n\r\nB\r\n--X--")),
    # a close-delimiter right before the outer one (NESTED-CLOSE-CRLF)
    ("nested-close", _mp(b"multipart/mixed; boundary=X",
                         b"--X\r\nContent-Type: multipart/alternative; boundary=Y\r\n\r\n"
                         b"--Y\r\n\r\nA\r\n--Y\r\n\r\nB\r\n--Y--\r\n--X--\r\n")),
    ("nested-close-rfc822", _mp(b"multipart/mixed; boundary=X",
                                b"--X\r\n\r\nA\r\n--X\r\nContent-Type: message/rfc822\r\n\r\n"
                                b"Subject: inner\r\nContent-Type: multipart/mixed; boundary=Y\r\n\r\n"
                                b"--Y\r\n\r\ninner\r\n--Y--\r\n--X--\r\n")),
    # a header line ending in a bare CR, CR CR LF, a lone CR inside a value
    ("bare-cr-header", ISSUE10_TOP.replace(b"MIME-Version: 1.0\r\n", b"")
     + b"Content-Type: text/plain; charset=UTF-8\rReturn-Path: <bounce@example.com>\r\n"
       b"MIME-Version: 1.0\r\n\r\nbody\r\n"),
    ("bare-cr-part-header", _mp(b"multipart/mixed; boundary=X",
                                b"--X\r\nContent-Type: text/plain; charset=UTF-8\r"
                                b"Content-Disposition: inline\r\n\r\nA\r\n"
                                b"--X\r\nContent-Type: text/plain;\r charset=iso-8859-1\r\n"
                                b"Content-ID: <a\rb@example.com>\r\nContent-Description: two\rwords\r\n"
                                b"\r\nB\r\n--X--\r\n")),
    ("cr-cr-lf-header", ISSUE10_TOP + b"Content-Type: text/plain; charset=UTF-8\r\r\n"
                        b"X-After: yes\r\r\n\r\nbody\r\n"),
    # multiparts with no parts: no delimiter line, only the close-delimiter,
    # an empty body
    ("mp-no-delimiter", _mp(b"multipart/mixed; boundary=X", b"just text\r\nno parts\r\n")),
    ("mp-only-close", _mp(b"multipart/mixed; boundary=X", b"preamble\r\n--X--\r\nepilogue\r\n")),
    ("mp-empty", _mp(b"multipart/alternative; boundary=X", b"")),
    # two Content-Disposition / Content-Type fields (DISP-FIRST)
    ("two-disp", _mp(b"multipart/mixed; boundary=X",
                     b"--X\r\nContent-Type: text/plain\r\nContent-Disposition: inline\r\n"
                     b"Content-Disposition: attachment; filename=a.txt\r\n\r\nA\r\n"
                     b"--X\r\nContent-Type: text/plain\r\n"
                     b"Content-Disposition: attachment; filename=first.txt\r\n"
                     b"Content-Disposition: inline; filename=second.txt\r\n\r\nB\r\n--X--\r\n")),
    ("two-ctype", ISSUE10_TOP + b"Content-Type: text/html; charset=iso-8859-1\r\n"
                  b"Content-Type: text/plain; charset=utf-8\r\n\r\n<p>x</p>\r\n"),
]


def generate(n=520):
    """n generated messages, then the fixed ISSUE10_CASES."""
    out = []
    for i in range(n):
        r = random.Random(1000 + i)
        if i % 10 == 9:
            msg = malformed(r, i // 10)
        else:
            h, b = random_part(r, 0)
            msg = render(top_headers(r, i) + h, b)
        out.append(msg)
    return out + [m for _, m in ISSUE10_CASES]


if __name__ == "__main__":
    import sys
    import os
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    for i, m in enumerate(generate(int(sys.argv[2]) if len(sys.argv) > 2 else 520)):
        with open(os.path.join(d, "%04d.eml" % i), "wb") as f:
            f.write(m)
