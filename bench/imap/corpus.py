"""Realistic messages for bench/imap/run, written straight into a maildir.

fill_maildir(new_dir, n, seed) writes n messages (CRLF line endings) into a
maildir's new/ folder and returns the total size. Message i depends only on
(seed, i). The mix:

  55 %  text/plain (7bit or quoted-printable)
  30 %  multipart/alternative: text/plain + text/html
  15 %  multipart/mixed: a text part and one base64 attachment (pdf, png, zip)
  ~30 % of subjects are RFC 2047 encoded words (UTF-8 B, ISO-8859-1 Q)

Sizes 2 KB .. 200 KB, most small: 70 % 2-8 KB, 20 % 8-40 KB, 8 % 40-120 KB,
2 % 120-200 KB (mean about 18 KB). Large messages are mostly attachments, as
in real mail.

RARE_WORD appears in the body text of exactly every 100th message (1 %), for
SEARCH TEXT; RARE_SUBSTRING is a substring of it, for SEARCH BODY.
"""
import base64
import os
import random

RARE_WORD = "quokkaflux"
RARE_SUBSTRING = "okkaflu"

_WORDS = ("the of and to in is that for it as was with be by on not he this are or his from at "
          "which but have an they you were her she there one all we can their has been if more "
          "when will would who so no meeting report invoice quarterly review draft final budget "
          "project schedule customer release server deploy patch ticket please thanks regards "
          "tomorrow attached agenda minutes follow up question answer issue update status team "
          "lunch friday monday office travel approval contract payment order shipping").split()
_NAMES = ["Alice Martin", "Bob O'Neil", "Carol Jensen", "Dave Kowalski", "Eve Lambert",
          "Frank Moreau", "Gina Rossi", "Heinz Mueller", "Ines Duarte", "Jun Tanaka"]
_DOMAINS = ["example.com", "example.org", "mail.example.net", "corp.example"]
_UTF8_SUBJECTS = ["Grüße aus Köln", "Réunion de l'équipe – compte rendu", "Zażółć gęślą jaźń",
                  "Привет, как дела?", "日本語のメール", "Café crème à la carte"]


def _pool(r, nbytes):
    """A block of plain text lines (< 76 chars) to slice bodies from."""
    lines = []
    size = 0
    while size < nbytes:
        words = [r.choice(_WORDS) for _ in range(r.randint(6, 11))]
        line = " ".join(words)
        if r.random() < 0.15:
            line = line.capitalize() + "."
        lines.append(line)
        size += len(line) + 2
    return "\r\n".join(lines) + "\r\n"


def _size(r):
    x = r.random()
    if x < 0.70:
        return r.randint(2400, 8000)
    if x < 0.90:
        return r.randint(8000, 40000)
    if x < 0.98:
        return r.randint(40000, 120000)
    return r.randint(120000, 200000)


def _ew(r, text):
    if r.random() < 0.6:
        return "=?UTF-8?B?%s?=" % base64.b64encode(text.encode()).decode()
    try:
        data = text.encode("iso-8859-1")
        cs = "ISO-8859-1"
    except UnicodeEncodeError:
        data = text.encode()
        cs = "UTF-8"
    q = "".join(chr(b) if (48 <= b < 58 or 65 <= b < 91 or 97 <= b < 123) else
                "_" if b == 32 else "=%02X" % b for b in data)
    return "=?%s?Q?%s?=" % (cs, q)


def _addr(r):
    name = r.choice(_NAMES)
    local = name.split()[0].lower().replace("'", "")
    return '"%s" <%s@%s>' % (name, local, r.choice(_DOMAINS))


def _text(r, pool, n, rare):
    if n <= 0:
        n = 40
    start = r.randrange(0, len(pool) - n - 200)
    start = pool.index("\r\n", start) + 2
    end = pool.index("\r\n", start + n) + 2
    body = pool[start:end]
    if rare:
        i = body.index("\r\n") + 2
        body = body[:i] + "Remember the %s code word.\r\n" % RARE_WORD + body[i:]
    return body


def _wrap_b64(data):
    enc = base64.b64encode(data).decode()
    return "\r\n".join(enc[i:i + 76] for i in range(0, len(enc), 76)) + "\r\n"


def message(r, pool, i):
    size = _size(r)
    rare = i % 100 == 0
    subj = "%s %s %d" % (r.choice(_WORDS).capitalize(), r.choice(_WORDS), i)
    if r.random() < 0.3:
        subj = _ew(r, r.choice(_UTF8_SUBJECTS)) + " " + str(i)
    day = 1 + i % 28
    hdr = ("Return-Path: <bounce@%s>\r\n"
           "Received: from mx.example.net (mx.example.net [192.0.2.%d])\r\n"
           "\tby mail.example.com with ESMTPS id %08x; Mon, %d Jan 2024 10:%02d:00 +0000\r\n"
           "From: %s\r\nTo: %s\r\n%s"
           "Subject: %s\r\nDate: Mon, %d Jan 2024 10:%02d:%02d +0100\r\n"
           "Message-ID: <%d.%08x@bench.example>\r\nMIME-Version: 1.0\r\n") % (
        r.choice(_DOMAINS), i % 250, r.getrandbits(32), day, i % 60,
        _addr(r), _addr(r), ("Cc: %s\r\n" % _addr(r)) if r.random() < 0.3 else "",
        subj, day, i % 60, i % 60, i, r.getrandbits(32))
    kind = r.random()
    if kind < 0.55:
        body = _text(r, pool, size - len(hdr) - 80, rare)
        out = hdr + "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n" + body
    elif kind < 0.85:
        b = "=_alt_%08x" % r.getrandbits(32)
        n = max(400, (size - len(hdr) - 400) // 3)
        text = _text(r, pool, n, rare)
        html = "<html><body>\r\n" + "".join("<p>%s</p>\r\n" % l for l in _text(r, pool, n, False).split("\r\n") if l) + "</body></html>\r\n"
        out = (hdr + 'Content-Type: multipart/alternative; boundary="%s"\r\n\r\n' % b +
               "This is a multi-part message in MIME format.\r\n"
               "--%s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s"
               "--%s\r\nContent-Type: text/html; charset=utf-8\r\n\r\n%s--%s--\r\n" % (b, text, b, html, b))
    else:
        b = "=_mix_%08x" % r.getrandbits(32)
        text = _text(r, pool, r.randint(300, 1500), rare)
        att = max(600, (size - len(hdr) - len(text) - 500) * 3 // 4)
        ext, ctype = r.choice([("pdf", "application/pdf"), ("png", "image/png"),
                               ("zip", "application/zip")])
        data = r.randbytes(att)
        out = (hdr + 'Content-Type: multipart/mixed; boundary="%s"\r\n\r\n' % b +
               "--%s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s"
               "--%s\r\nContent-Type: %s; name=\"file%d.%s\"\r\n"
               "Content-Disposition: attachment; filename=\"file%d.%s\"\r\n"
               "Content-Transfer-Encoding: base64\r\n\r\n%s--%s--\r\n" % (
                   b, text, b, ctype, i, ext, i, ext, _wrap_b64(data), b))
    return out.encode("utf-8")


def fill_maildir(new_dir, n, seed=1, uid=None, gid=None, first=0):
    """Write messages first..first+n-1 into new_dir; returns total bytes."""
    r = random.Random(seed)
    pool = _pool(r, 1 << 20)
    total = 0
    base = 1700000000
    for i in range(first, first + n):
        r.seed(seed * 1000003 + i)
        data = message(r, pool, i)
        name = os.path.join(new_dir, "%d.M%dP%d.bench" % (base + i, i, os.getpid()))
        with open(name, "wb") as f:
            f.write(data)
        t = base + i * 60
        os.utime(name, (t, t))
        if uid is not None:
            os.chown(name, uid, gid)
        total += len(data)
    return total


if __name__ == "__main__":
    import sys
    import time
    t = time.monotonic()
    tot = fill_maildir(sys.argv[1], int(sys.argv[2]))
    print("%d bytes in %.1fs" % (tot, time.monotonic() - t))
