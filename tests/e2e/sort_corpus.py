"""A generated mailbox for SORT and THREAD tests and benchmarks (RFC 5256):
varied Subject (Re:/Fwd:/[tags]/(fwd)/encoded words/missing), Date
(missing, unparsable, two-digit years, numeric and named zones), From/To/Cc
(missing, groups, encoded names, bare addresses), Message-ID chains through
References and In-Reply-To (missing, duplicate and dangling IDs), sizes.

    for internaldate, raw in corpus(2000, seed=5256): ...

internaldate is an IMAP date-time string for APPEND; raw is the message in
CRLF form. Deterministic for a seed. Also: append_all(client, msgs), which
APPENDs with LITERAL+ in pipelined batches through imap_server.Client.
"""
import base64
import random

WORDS = ["alpha", "Budget", "café", "delta", "Échéance", "zebra", "Meeting", "meeting",
         "report", "_under", "ünïcode", "Ñandú", "42 things", "Zulu", "ärger", "Ostern"]
NAMES = ["Alice Smith", "bob", "Çelik Ayşe", "Zoë Ward", "émile", "Ünal", "carol", "Dave"]
HOSTS = ["example.com", "Example.org", "mail.test"]
ZONES = ["+0000", "-0800", "+0530", "+1200", "-1100", "GMT", "EST", "PDT", "UT", "+0100"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def enc(text):
    if all(ord(ch) < 128 for ch in text):
        return text
    return "=?UTF-8?B?%s?=" % base64.b64encode(text.encode()).decode()


def subject(r):
    base = r.choice(WORDS) + (" " + r.choice(WORDS) if r.random() < 0.5 else "")
    k = r.random()
    if k < 0.05:
        return None
    if k < 0.10:
        return ""
    pre = r.choice(["", "", "Re: ", "RE: ", "re:", "Fwd: ", "Fw: ", "[list] ", "Re: [tag] ",
                    "Re: Re: ", "Re[2]: ", "[a][b] Re: "])
    post = r.choice(["", "", "", " (fwd)", "  "])
    s = pre + base + post
    if r.random() < 0.08:
        s = "[fwd: " + base + "]"
    if r.random() < 0.25:
        s = enc(s)
    return s


def date(r):
    k = r.random()
    if k < 0.05:
        return None
    if k < 0.08:
        return r.choice(["yesterday", "Mon, 32 Foo 2020", "12 Mar", ""])
    y = r.randint(1995, 2025)
    yy = str(y) if r.random() < 0.9 else "%02d" % (y % 100)
    wd = r.choice(["", "Mon, ", "Tue, "])
    sec = ":%02d" % r.randint(0, 59) if r.random() < 0.8 else ""
    return "%s%d %s %s %02d:%02d%s %s" % (wd, r.randint(1, 28), r.choice(MONTHS), yy,
                                          r.randint(0, 23), r.randint(0, 59), sec, r.choice(ZONES))


def address(r):
    local = r.choice(["alice", "Bob", "carol", "zed", "_x", "dave", "Émile", "yann", "8ball"])
    host = r.choice(HOSTS)
    k = r.random()
    if k < 0.3:
        return "%s@%s" % (local, host)
    if k < 0.7:
        return "%s <%s@%s>" % (enc(r.choice(NAMES)), local, host)
    if k < 0.8:
        return '"%s" <%s@%s>' % (r.choice(NAMES).encode("ascii", "ignore").decode() or "x", local, host)
    return "%s <%s@%s>" % (r.choice(NAMES).encode("ascii", "ignore").decode() or "x", local, host)


def addresses(r):
    k = r.random()
    if k < 0.08:
        return None
    if k < 0.12:
        return "undisclosed-recipients:;"
    if k < 0.15:
        return "team: %s, %s;" % (address(r), address(r))
    return ", ".join(address(r) for _ in range(r.randint(1, 3)))


def corpus(n, seed=5256):
    r = random.Random(seed)
    ids = []
    refs_of = []
    out = []
    for i in range(n):
        h = []
        frm, to, cc = addresses(r), addresses(r), addresses(r) if r.random() < 0.5 else None
        if frm is not None:
            h.append("From: " + frm)
        if to is not None:
            h.append("To: " + to)
        if cc is not None:
            h.append("Cc: " + cc)
        s = subject(r)
        if s is not None:
            h.append("Subject: " + s)
        d = date(r)
        if d is not None:
            h.append("Date: " + d)
        k = r.random()
        if k < 0.04:
            mid = None
        elif k < 0.06 and ids:
            mid = r.choice(ids)  # duplicate Message-ID
        else:
            mid = "<m%d.%d@gen.test>" % (i, seed)
        if mid:
            h.append("Message-ID: " + mid)
        refs = []
        if ids and r.random() < 0.6:
            j = r.randrange(len(ids))
            refs = refs_of[j] + [ids[j]]
            if r.random() < 0.1:
                refs = ["<gone%d@gen.test>" % r.randint(0, 50)] + refs
            k = r.random()
            if k < 0.15:
                h.append("In-Reply-To: " + refs[-1])
            elif k < 0.25:
                h.append("In-Reply-To: " + refs[-1])
                h.append("References: " + " ".join(refs[-3:]))
            else:
                h.append("References: " + "\r\n ".join(refs))
        ids.append(mid or "<none%d@gen.test>" % i)
        refs_of.append(refs[-5:])
        body = ("line %d of message %d\r\n" % (0, i)) * r.randint(0, 40)
        raw = ("\r\n".join(h) + "\r\n\r\n" + body).encode()
        day = r.randint(1, 28)
        idate = "%02d-%s-20%02d %02d:%02d:%02d +0000" % (day, r.choice(MONTHS), r.randint(10, 24),
                                                         r.randint(0, 23), r.randint(0, 59),
                                                         r.randint(0, 59))
        if r.random() < 0.1 and out:
            idate = out[-1][0]  # same arrival time: ties broken by sequence
        out.append((idate, raw))
    return out


def append_all(client, msgs, mailbox="INBOX", batch=200):
    """APPEND each message with LITERAL+, batch commands per round trip."""
    for start in range(0, len(msgs), batch):
        chunk = msgs[start:start + batch]
        data = b""
        tags = []
        for idate, raw in chunk:
            client.n += 1
            tag = b"a%d" % client.n
            tags.append(tag)
            data += b'%s APPEND %s "%s" {%d+}\r\n%s\r\n' % (tag, mailbox.encode(),
                                                           idate.encode(), len(raw), raw)
        client.send(data)
        for tag in tags:
            while True:
                resp = client._read_response()
                if resp.startswith(tag + b" "):
                    assert resp.startswith(tag + b" OK"), resp
                    break
