#!/usr/bin/python3
"""bench/msggen.py: realistic mail for the benchmarks, the same bytes on every run.

    msggen.py OUTDIR COUNT [--seed N] [--size BYTES]

writes OUTDIR/000000.eml ... (CRLF line endings) and OUTDIR/list.txt (one path
per line, the input of `loadgen lmtp -L`), and prints the count and total size.
From Python: message(i, seed=1, size=None) -> bytes.

What "realistic" means here (so that a server's parser, cache and search see
the kind of mail people have, not 4 KB of one repeated line):
- Sizes: lognormal, median 6 KB, sigma 1.3, clipped to 2 KB - 2 MB: about
  half the messages under 6 KB, 1 in 10 above 35 KB, 1 in 100 above 120 KB;
  `size=` asks for one size instead (the LMTP rows use 4 KB and 100 KB).
- Structure: up to ~24 KB, plain text or (half of them) multipart/alternative
  with an HTML part; above that, multipart/mixed with a text part and one or
  two base64 attachments (PDF/ZIP/JPEG types, RFC 2231 file names on some)
  that make up the size.
- Headers: Received trace lines, From/To/Cc with display names, RFC 2047
  encoded words (UTF-8 B and Q, ISO-8859-1) on 1 in 5 subjects and some
  display names, Date, Message-ID, In-Reply-To/References on replies,
  List-Id on list mail.
- Search targets: WORD appears in the text of 1% of the messages (i % 100 == 7)
  and nowhere else; SUBSTR is a substring of it (for SEARCH BODY).
"""

import base64
import math
import os
import random
import sys

WORD = "quuxfrobnicate"
SUBSTR = "frobnic"
MIN_SIZE, MAX_SIZE = 2048, 2 << 20

VOCAB = ("the quarterly report is attached please review figures before meeting we will "
         "discuss budget roadmap and hiring plan for next year thanks for your help with "
         "this could you send me the latest version of the contract I have updated the "
         "slides see notes below regards team project deadline friday monday call "
         "customer feedback release schedule invoice payment shipping order status").split()
NAMES = ["Alice Martin", "Bob Dupont", "Carol Nguyen", "David Okafor", "Eve Schmidt",
         "Frank Rossi", "Grace Kim", "Heidi Larsen", "Ivan Petrov", "Judy Chen"]
INTL_NAMES = ["Zoë Lefèvre", "Jürgen Groß", "Łukasz Żółć", "Renée Côté", "Søren Ærø",
              "田中 太郎", "Ольга Иванова"]
SUBJECTS = ["Weekly sync", "Re: budget 2024", "Invoice #{n}", "Fwd: contract draft",
            "Meeting notes {n}", "Release {n} schedule", "Question about the order",
            "[team] lunch on friday", "Your shipment {n} is on its way"]
INTL_SUBJECTS = ["Réunion n°{n} — ordre du jour", "Größere Änderungen an {n}",
                 "Привет, отчёт {n}", "会議の議事録 {n}", "Ça avance: étape {n}"]
ATTACH_TYPES = [("application/pdf", "report-{n}.pdf"), ("application/zip", "files-{n}.zip"),
                ("image/jpeg", "photo-{n}.jpg"),
                ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                 "budget-{n}.xlsx")]


def _encoded_word(text, rng):
    """An RFC 2047 encoded word for text: UTF-8 B, UTF-8 Q, or ISO-8859-1 Q
    when the text fits Latin-1."""
    kind = rng.randrange(3)
    if kind == 2:
        try:
            raw, cs = text.encode("iso-8859-1"), "ISO-8859-1"
        except UnicodeEncodeError:
            kind = 0
    if kind == 0:
        return f"=?UTF-8?B?{base64.b64encode(text.encode()).decode()}?="
    if kind == 1:
        raw, cs = text.encode(), "UTF-8"
    q = "".join(chr(b) if (0x30 <= b < 0x7F and chr(b) not in "=?_") or chr(b).isalpha() and b < 0x80
                else "_" if b == 0x20 else f"={b:02X}" for b in raw)
    return f"=?{cs}?Q?{q}?="


def _address(rng, n, domain):
    if rng.random() < 0.15:
        name = rng.choice(INTL_NAMES)
        return f"{_encoded_word(name, rng)} <user{n}@{domain}>"
    name = rng.choice(NAMES)
    return f"\"{name}\" <{name.split()[0].lower()}.{n}@{domain}>"


def _size(rng):
    s = int(6144 * math.exp(rng.gauss(0, 1.3)))
    return max(MIN_SIZE, min(MAX_SIZE, s))


def _text(rng, nbytes, with_word):
    """Wrapped text lines (CRLF) of about nbytes."""
    words, total = [], 0
    while total < nbytes:
        w = rng.choice(VOCAB)
        words.append(w)
        total += len(w) + 1
    if with_word:
        words.insert(rng.randrange(len(words) + 1), WORD)
    lines, line = [], []
    for w in words:
        line.append(w)
        if sum(len(x) + 1 for x in line) > 70:
            lines.append(" ".join(line))
            line = []
            if rng.random() < 0.12:
                lines.append("")
    lines.append(" ".join(line))
    return "\r\n".join(lines) + "\r\n"


def _attachment(rng, n, nbytes, boundary):
    ctype, fname = rng.choice(ATTACH_TYPES)
    fname = fname.format(n=n)
    raw = rng.randbytes(max(1, nbytes * 3 // 4))
    b64 = base64.encodebytes(raw).decode().replace("\n", "\r\n")
    if rng.random() < 0.2:
        disp = f"attachment;\r\n filename*=UTF-8''%C3%A9t%C3%A9-{fname}"
    else:
        disp = f'attachment;\r\n filename="{fname}"'
    return (f"--{boundary}\r\nContent-Type: {ctype}; name=\"{fname}\"\r\n"
            f"Content-Transfer-Encoding: base64\r\nContent-Disposition: {disp}\r\n\r\n{b64}")


def message(i, seed=1, size=None):
    """Message i of the stream `seed` (deterministic); about `size` bytes when
    given, else a size drawn from the distribution above."""
    rng = random.Random(seed * 1000003 + i)
    target = size or _size(rng)
    with_word = i % 100 == 7
    subj = rng.choice(SUBJECTS).format(n=i)
    if rng.random() < 0.2:
        subj = _encoded_word(rng.choice(INTL_SUBJECTS).format(n=i), rng)
    day = 1 + i % 28
    h = [f"Return-Path: <bounce-{i}@lists.example.com>",
         f"Received: from mx{i % 7}.example.com (mx{i % 7}.example.com [192.0.2.{i % 250}])\r\n"
         f"\tby mail.example.org with ESMTPS id {i:08X}\r\n\tfor <team@example.org>;"
         f" Tue, {day} Feb 2024 10:{i % 60:02d}:00 +0100",
         f"Received: from [10.0.0.{i % 250}] by mx{i % 7}.example.com with ESMTPSA;"
         f" Tue, {day} Feb 2024 10:{i % 60:02d}:00 +0100",
         f"From: {_address(rng, i % 41, 'example.com')}",
         f"To: {_address(rng, i % 13, 'example.org')}"]
    if rng.random() < 0.3:
        h.append(f"Cc: {_address(rng, i % 11, 'example.org')}, {_address(rng, i % 5, 'example.net')}")
    h += [f"Subject: {subj}", f"Date: Tue, {day} Feb 2024 {i % 24:02d}:{i % 60:02d}:{i % 53:02d} +0100",
          f"Message-ID: <{i}.{seed}.{rng.getrandbits(40):x}@bench.example>"]
    if i > 0 and rng.random() < 0.3:
        h.append(f"In-Reply-To: <{i - 1}.{seed}@bench.example>")
        h.append(f"References: <{max(0, i - 2)}.{seed}@bench.example> <{i - 1}.{seed}@bench.example>")
    if rng.random() < 0.2:
        h.append("List-Id: Team discussion <team.lists.example.com>")
    h.append("MIME-Version: 1.0")
    head = "\r\n".join(h) + "\r\n"
    room = max(200, target - len(head) - 100)
    if target > 24 * 1024:
        b = f"mix{i}x{rng.getrandbits(32):08x}"
        text = _text(rng, min(4000, room // 8), with_word)
        natt = 1 if rng.random() < 0.7 else 2
        left = room - len(text) - 300 * natt
        parts = [f"--{b}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                 f"Content-Transfer-Encoding: 8bit\r\n\r\n{text}"]
        for k in range(natt):
            parts.append(_attachment(rng, i * 10 + k, max(100, left // natt), b))
        body = "".join(parts) + f"--{b}--\r\n"
        head += f'Content-Type: multipart/mixed; boundary="{b}"\r\n'
    elif rng.random() < 0.5:
        b = f"alt{i}x{rng.getrandbits(32):08x}"
        text = _text(rng, room * 9 // 20, with_word)
        html = ("<html><head><meta charset=\"utf-8\"></head><body>\r\n<p>" +
                text.replace("\r\n\r\n", "</p>\r\n<p>") + "</p>\r\n</body></html>\r\n")
        body = (f"--{b}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Transfer-Encoding: 8bit\r\n\r\n{text}"
                f"--{b}\r\nContent-Type: text/html; charset=utf-8\r\n"
                f"Content-Transfer-Encoding: 8bit\r\n\r\n{html}--{b}--\r\n")
        head += f'Content-Type: multipart/alternative; boundary="{b}"\r\n'
    else:
        body = _text(rng, room, with_word)
        head += "Content-Type: text/plain; charset=utf-8; format=flowed\r\n"
    return (head + "\r\n" + body).encode()


def write(outdir, count, seed=1, size=None, start=0):
    """Writes messages start..start+count-1 and list.txt; returns (paths, bytes)."""
    os.makedirs(outdir, exist_ok=True)
    paths, total = [], 0
    for i in range(start, start + count):
        p = os.path.join(outdir, f"{i:06d}.eml")
        m = message(i, seed, size)
        with open(p, "wb") as f:
            f.write(m)
        paths.append(p)
        total += len(m)
    with open(os.path.join(outdir, "list.txt"), "w") as f:
        f.write("".join(p + "\n" for p in paths))
    return paths, total


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir")
    ap.add_argument("count", type=int)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--size", type=int)
    a = ap.parse_args(argv)
    paths, total = write(a.outdir, a.count, a.seed, a.size)
    print(f"{len(paths)} messages, {total} bytes, in {a.outdir}")


if __name__ == "__main__":
    main(sys.argv[1:])
