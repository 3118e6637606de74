"""The MIME cases of issue 10 over IMAP, on a running `mailroom serve`:
FETCH BODY[n], BODY[n.MIME], BINARY[n], BINARY.SIZE[n] and BODYSTRUCTURE.

The messages are mime_corpus_gen.ISSUE10_CASES (the same bytes the corpus
test compares with Dovecot). Expected values are cut by hand from those
bytes where the RFCs say a part starts and ends, never taken from mailroom:

  - RFC 3501 6.4.5 / RFC 9051 6.4.5 and 7.5.2: BODY[<section>] of an existing
    but empty part is "" (or {0}); NIL means there is no such part.
  - RFC 3516 4.2: BINARY.SIZE[n] is the size of the decoded content, the
    bytes BINARY[n] sends; its grammar has a number, never NIL.
  - RFC 2046 5.1.1: the CRLF before a delimiter belongs to the delimiter;
    a single-part body ends at the end of the message.
  - RFC 5322 2.2: CR only in CRLF; a bare CR must not glue the next header's
    text to a parameter (charset=UTF-8<CR>Return-Path: ... was read as the
    charset "UTF-8Return-Path").
  - RFC 3501 7.4.2 body-type-mpart = 1*body: a multipart without parts has
    one empty text/plain part (as in Dovecot).
  - RFC 2183 / RFC 2045: two Content-Disposition or Content-Type fields:
    the first wins (see mime_parser.c field_dispatch).
"""

import base64
import os
import sqlite3
from pathlib import Path

import pytest

import imap_server
import mime_corpus_gen
from conftest import add_user, deliver
from imap_server import Client, fetch_items

PW = "secret"
CASES = dict(mime_corpus_gen.ISSUE10_CASES)
NAMES = [n for n, _ in mime_corpus_gen.ISSUE10_CASES]


def seq_of(name):
    return NAMES.index(name) + 1


def split(msg):
    """(header with its blank line, body) of a message."""
    i = msg.index(b"\r\n\r\n") + 4
    return msg[:i], msg[i:]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    parent = tmp_path_factory.mktemp("mimecases")
    os.chmod(parent, 0o755)
    data = parent / "data"
    data.mkdir()
    add_user(data, "alice", PW)
    for name in NAMES:
        deliver(data, ["alice"], CASES[name])
    srv = imap_server.start(data)
    yield data, srv
    srv.stop()


@pytest.fixture
def c(env):
    _, srv = env
    cl = Client(srv.port)
    cl.login("alice", PW)
    cl.ok("EXAMINE INBOX")
    yield cl
    cl.close()


def fetch(cl, name, items):
    untagged, tagged = cl.cmd("FETCH %d (%s)" % (seq_of(name), items))
    assert tagged.startswith(b"OK"), tagged
    got = {}
    for u in untagged:
        if b" FETCH " in u:
            got.update(fetch_items(u)[1])
    return got


def parts_of(bs):
    """The body parts of a parsed multipart BODYSTRUCTURE (the lists before
    its subtype)."""
    out = []
    for x in bs:
        if not isinstance(x, list):
            break
        out.append(x)
    return out


def params(lst):
    return {lst[i].lower(): lst[i + 1] for i in range(0, len(lst or []), 2)}


# ---- empty parts and BINARY.SIZE ------------------------------------------------

def test_empty_parts_are_empty_strings_not_nil(c):
    """RFC 9051 7.5.2 BODY[<section>], RFC 3516 4.2: an existing empty part is
    "" with BINARY.SIZE 0; a part that does not exist is NIL, BINARY.SIZE 0."""
    got = fetch(c, "empty-parts", "BODY.PEEK[1] BODY.PEEK[2] BODY.PEEK[3] BODY.PEEK[4] "
                                  "BINARY.PEEK[1] BINARY.PEEK[2] BINARY.PEEK[3] BINARY.PEEK[4] "
                                  "BINARY.SIZE[1] BINARY.SIZE[2] BINARY.SIZE[3] BINARY.SIZE[4] "
                                  "BODY.PEEK[2.MIME] BODYSTRUCTURE")
    for n in (1, 2, 3):
        assert got["BODY[%d]" % n] == b"", n
        assert got["BINARY[%d]" % n] == b"", n
        assert got["BINARY.SIZE[%d]" % n] == "0", n
    assert got["BODY[4]"] is None
    assert got["BINARY[4]"] is None
    assert got["BINARY.SIZE[4]"] == "0"
    # part 2's only CRLF after its header is the delimiter's: no blank line
    assert got["BODY[2.MIME]"] == (b"Content-Type: application/octet-stream\r\n"
                                   b"Content-Transfer-Encoding: base64\r\n")
    sizes = [int(p[6]) for p in parts_of(got["BODYSTRUCTURE"])]
    assert sizes == [0, 0, 0]


def test_binary_size_is_the_decoded_size(c):
    """RFC 3516 4.2: BINARY.SIZE[n] is the decoded size, what BINARY[n] sends."""
    got = fetch(c, "decoded-sizes", "BINARY.PEEK[1] BINARY.SIZE[1] BINARY.PEEK[2] BINARY.SIZE[2] "
                                    "BODY.PEEK[1] BODY.PEEK[2]")
    assert got["BODY[1]"] == b"aGVsbG8g\r\nd29ybGQ="
    assert got["BINARY[1]"] == base64.b64decode(b"aGVsbG8gd29ybGQ=") == b"hello world"
    assert got["BINARY.SIZE[1]"] == "11"
    assert got["BODY[2]"] == b"caf=C3=A9 =3D soft=\r\nbreak "
    # RFC 2045 6.7: =XX decoded, soft line break removed, trailing space dropped
    assert got["BINARY[2]"] == "café = softbreak".encode()
    assert got["BINARY.SIZE[2]"] == str(len("café = softbreak".encode()))
    # the encoded sizes are different numbers: BINARY.SIZE is not BODY's
    assert int(got["BINARY.SIZE[2]"]) != len(got["BODY[2]"])


# ---- where a body ends ----------------------------------------------------------

def test_single_part_keeps_its_final_crlf(c):
    """RFC 2046 5.1.1 concerns delimiters only: a single-part body ends at the
    end of the message, its last CRLFs included."""
    _, body = split(CASES["single-final-crlf"])
    assert body.endswith(b"\r\n\r\n")
    got = fetch(c, "single-final-crlf", "BODY.PEEK[1] BODY.PEEK[TEXT] BINARY.PEEK[1] "
                                        "BINARY.SIZE[1] BODYSTRUCTURE")
    assert got["BODY[1]"] == body
    assert got["BODY[TEXT]"] == body
    assert got["BINARY[1]"] == body
    assert got["BINARY.SIZE[1]"] == str(len(body))
    assert int(got["BODYSTRUCTURE"][6]) == len(body)
    assert int(got["BODYSTRUCTURE"][7]) == body.count(b"\n")


def test_last_part_ends_before_the_close_delimiter_crlf(c):
    """RFC 2046 5.1.1: the CRLF before "--X--" is the delimiter's; one more
    blank line is the part's; a message may end right after "--X--"."""
    got = fetch(c, "last-part-crlf", "BODY.PEEK[1] BODY.PEEK[2] BINARY.SIZE[2]")
    assert got["BODY[1]"] == b"A"
    assert got["BODY[2]"] == b"B\r\n"
    assert got["BINARY.SIZE[2]"] == "3"
    got = fetch(c, "last-part-eof", "BODY.PEEK[1] BODY.PEEK[2] BODY.PEEK[TEXT]")
    assert got["BODY[1]"] == b"A\r\n"
    assert got["BODY[2]"] == b"B"
    assert got["BODY[TEXT]"] == split(CASES["last-part-eof"])[1]


def test_nested_close_delimiter_leaves_the_crlf_to_the_outer_one(c):
    """RFC 2046 5.1.1 grammar: in "--Y--\\r\\n--X--" the one CRLF starts the
    outer delimiter, so the inner multipart (and the message holding it)
    ends at "--Y--" (Dovecot differs: NESTED-CLOSE-CRLF)."""
    _, body = split(CASES["nested-close"])
    part1 = body[body.index(b"--X\r\n") + 5:body.index(b"\r\n--X--")]
    got = fetch(c, "nested-close", "BODY.PEEK[1] BODY.PEEK[1.1] BODY.PEEK[1.2] BINARY.SIZE[1]")
    assert got["BODY[1]"] == part1.split(b"\r\n\r\n", 1)[1]
    assert got["BODY[1]"].endswith(b"--Y--")
    assert got["BODY[1.1]"] == b"A"
    assert got["BODY[1.2]"] == b"B"
    assert got["BINARY.SIZE[1]"] == str(len(got["BODY[1]"]))
    _, body = split(CASES["nested-close-rfc822"])
    inner = body[body.index(b"message/rfc822\r\n\r\n") + 18:body.index(b"\r\n--X--")]
    got = fetch(c, "nested-close-rfc822", "BODY.PEEK[2] BODY.PEEK[2.1] BODYSTRUCTURE")
    assert got["BODY[2]"] == inner
    assert got["BODY[2.1]"] == b"inner"
    msg_part = parts_of(got["BODYSTRUCTURE"])[1]
    assert msg_part[0].lower() == b"message"
    assert int(msg_part[6]) == len(inner)
    assert int(msg_part[9]) == inner.count(b"\n")


# ---- broken line endings in headers --------------------------------------------

def test_bare_cr_does_not_glue_the_next_header_to_a_parameter(c):
    """RFC 5322 2.2: charset=UTF-8<CR>Return-Path: ... gives charset UTF-8, and
    the header and body are still where the bytes put them."""
    msg = CASES["bare-cr-header"]
    header, body = split(msg)
    got = fetch(c, "bare-cr-header", "BODYSTRUCTURE BODY.PEEK[HEADER] BODY.PEEK[TEXT] "
                                     "BODY.PEEK[1] RFC822.SIZE")
    bs = got["BODYSTRUCTURE"]
    assert [bs[0].lower(), bs[1].lower()] == [b"text", b"plain"]
    assert params(bs[2]) == {b"charset": b"UTF-8"}
    assert got["BODY[HEADER]"] == header
    assert got["BODY[TEXT]"] == body == b"body\r\n"
    assert got["BODY[1]"] == body
    assert int(got["RFC822.SIZE"]) == len(msg)


def test_bare_cr_in_a_part_header(c):
    """The same in a body part's header; a lone CR inside a value is a space
    (Content-ID, Content-Description, a folded parameter)."""
    got = fetch(c, "bare-cr-part-header", "BODYSTRUCTURE BODY.PEEK[1] BODY.PEEK[2]")
    p1, p2 = parts_of(got["BODYSTRUCTURE"])
    assert params(p1[2]) == {b"charset": b"UTF-8"}
    assert p1[9] is None  # body-fld-dsp (text: [7] lines, [8] md5): none, it is inside Content-Type's line
    assert params(p2[2]) == {b"charset": b"iso-8859-1"}
    assert p2[3] == b"<a b@example.com>"
    assert p2[4] == b"two words"
    assert got["BODY[1]"] == b"A"
    assert got["BODY[2]"] == b"B"


def test_cr_cr_lf_header_is_served_as_stored(c):
    """CR CR LF: the field reads as if the extra CR were a space; the message
    is served as delivered (mailroom does not rewrite it)."""
    msg = CASES["cr-cr-lf-header"]
    header, body = split(msg)
    got = fetch(c, "cr-cr-lf-header", "BODYSTRUCTURE BODY.PEEK[HEADER] BODY.PEEK[TEXT] "
                                      "BODY.PEEK[HEADER.FIELDS (X-AFTER)]")
    assert params(got["BODYSTRUCTURE"][2]) == {b"charset": b"UTF-8"}
    assert got["BODY[HEADER]"] == header
    assert b"\r\r\n" in got["BODY[HEADER]"]
    assert got["BODY[TEXT]"] == body
    assert got["BODY[HEADER.FIELDS (X-AFTER)]"] == b"X-After: yes\r\r\n\r\n"


# ---- multipart without parts, duplicate fields --------------------------------

@pytest.mark.parametrize("name", ["mp-no-delimiter", "mp-only-close", "mp-empty"])
def test_multipart_without_parts_has_one_empty_part(c, name):
    """RFC 3501 7.4.2 body-type-mpart = 1*body: one empty text/plain part, and
    FETCH of it answers "" (it exists), not NIL."""
    _, body = split(CASES[name])
    got = fetch(c, name, "BODYSTRUCTURE BODY BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[2] "
                         "BINARY.PEEK[1] BINARY.SIZE[1] BODY.PEEK[TEXT]")
    for key in ("BODYSTRUCTURE", "BODY"):
        parts = parts_of(got[key])
        assert len(parts) == 1, got[key]
        assert [parts[0][0].lower(), parts[0][1].lower()] == [b"text", b"plain"]
        assert int(parts[0][6]) == 0
    assert got["BODY[1]"] == b""
    assert got["BODY[1.MIME]"] == b""
    assert got["BINARY[1]"] == b""
    assert got["BINARY.SIZE[1]"] == "0"
    assert got["BODY[2]"] is None
    assert got["BODY[TEXT]"] == body


def test_first_of_two_content_fields_wins(c):
    """RFC 2183 / RFC 2045 allow each field once; with two, the first is taken
    (as Thunderbird's libmime does)."""
    got = fetch(c, "two-disp", "BODYSTRUCTURE")
    p1, p2 = parts_of(got["BODYSTRUCTURE"])
    assert p1[9] == [b"inline", None]  # text part: [7] lines, [8] md5, [9] dsp
    assert p2[9] == [b"attachment", [b"filename", b"first.txt"]]
    got = fetch(c, "two-ctype", "BODYSTRUCTURE")
    bs = got["BODYSTRUCTURE"]
    assert [bs[0].lower(), bs[1].lower()] == [b"text", b"html"]
    assert params(bs[2]) == {b"charset": b"iso-8859-1"}


# ---- the cache -------------------------------------------------------------------

def test_rows_cached_by_an_older_parser_are_not_served(env, tmp_path):
    """A cache row of an older MIME tree version (store_cache.c) is reparsed:
    a parser fix reaches messages delivered before it. The row is made to
    look old (version 2 and a wrong BODYSTRUCTURE) in the index."""
    data, srv = env
    db = Path(data) / "mail" / "alice" / "index.sqlite"
    uid = seq_of("bare-cr-header")  # delivered in order into an empty INBOX
    con = sqlite3.connect(str(db), timeout=30)
    try:
        tree = con.execute("SELECT mimetree FROM msg_cache WHERE uid=?", (uid,)).fetchone()[0]
        tree = bytes(tree) if not isinstance(tree, str) else tree.encode()
        assert tree.startswith(b"mime-tree ")
        old = b"mime-tree 2 " + tree.split(b" ", 2)[2]
        stale = b'("text" "plain" ("charset" "UTF-8Return-Path") NIL NIL "7bit" 6 1 NIL NIL NIL NIL)'
        con.execute("UPDATE msg_cache SET mimetree=?, bodystructure=? WHERE uid=?",
                    (old, stale.decode(), uid))
        con.commit()
    finally:
        con.close()
    cl = Client(srv.port)
    try:
        cl.login("alice", PW)
        cl.ok("EXAMINE INBOX")
        untagged, tagged = cl.cmd("UID FETCH %d (BODYSTRUCTURE)" % uid)
        assert tagged.startswith(b"OK"), tagged
        bs = fetch_items([u for u in untagged if b" FETCH " in u][0])[1]["BODYSTRUCTURE"]
        assert params(bs[2]) == {b"charset": b"UTF-8"}
    finally:
        cl.close()
    con = sqlite3.connect(str(db), timeout=30)
    try:
        tree, bs = con.execute("SELECT mimetree, bodystructure FROM msg_cache WHERE uid=?",
                               (uid,)).fetchone()
    finally:
        con.close()
    tree = bytes(tree) if not isinstance(tree, str) else tree.encode()
    assert not tree.startswith(b"mime-tree 2 ")
    assert "UTF-8Return-Path" not in bs
