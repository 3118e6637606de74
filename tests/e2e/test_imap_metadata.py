"""METADATA and METADATA-SERVER (RFC 5464) and LIST-METADATA (RFC 9590)
against a real `mailroom serve`.

Values live in a plain file "mailroom-metadata" in the mailbox's folder
(the user's folder for server entries); the tests check what a client sees,
and that the values outlive the index and follow RENAME / go with DELETE.
"""

import os

import pytest

import imap_server
from conftest import add_user, check, check_problems, mailbox_dir
from imap_server import Client, parse

PW = "secret"


@pytest.fixture
def env(tmp_path):
    os.chmod(tmp_path, 0o755)  # workers run as run_user when started as root
    data = tmp_path / "data"
    data.mkdir()
    add_user(data, "alice", PW)
    add_user(data, "bob", PW)
    srv = imap_server.start(data, {"metadata_max_size": "1000", "metadata_max_entries": "5"})
    yield data, srv
    srv.stop()


def login(srv, user="alice"):
    c = Client(srv.port)
    c.login(user, PW)
    return c


def metadata(untagged):
    """{mailbox: {entry: value}} from the * METADATA responses."""
    out = {}
    for u in untagged:
        t = parse(u)
        if len(t) >= 4 and t[0] == "*" and t[1].upper() == "METADATA":
            box = t[2].decode() if isinstance(t[2], bytes) else t[2]
            lst = t[3]
            d = out.setdefault(box, {})
            for i in range(0, len(lst), 2):
                d[lst[i]] = lst[i + 1]
    return out


def get(c, args, box="INBOX"):
    untagged, tagged = c.cmd(f"GETMETADATA {args}")
    assert tagged.startswith(b"OK"), tagged
    return metadata(untagged).get(box, {}), tagged


def test_capabilities_advertised(env):
    """RFC 5464 1 / RFC 9590 2: METADATA, METADATA-SERVER, LIST-METADATA."""
    _, srv = env
    c = login(srv)
    caps = b" ".join(c.ok("CAPABILITY")).split()
    for cap in (b"METADATA", b"METADATA-SERVER", b"LIST-METADATA"):
        assert cap in caps


def test_set_get_remove_rfc5464_4_3(env):
    """RFC 5464 4.3 set, 4.2 get, 4.3 remove with NIL."""
    _, srv = env
    c = login(srv)
    c.ok('SETMETADATA INBOX (/private/comment "My comment" /shared/comment "Shared")')
    vals, _ = get(c, "INBOX (/private/comment /shared/comment)")
    assert vals == {"/private/comment": b"My comment", "/shared/comment": b"Shared"}
    # names are case-insensitive (3.2)
    vals, _ = get(c, "INBOX /PRIVATE/Comment")
    assert vals == {"/private/comment": b"My comment"}
    c.ok("SETMETADATA INBOX (/private/comment NIL)")
    vals, _ = get(c, "INBOX (/private/comment /shared/comment)")
    assert vals.get("/private/comment") is None
    assert vals["/shared/comment"] == b"Shared"
    # a second session sees the same
    vals, _ = get(login(srv), "INBOX /shared/comment")
    assert vals == {"/shared/comment": b"Shared"}


def test_depth_rfc5464_4_2_2(env):
    """RFC 5464 4.2.2: DEPTH 0, 1 and infinity."""
    _, srv = env
    c = login(srv)
    c.ok('SETMETADATA INBOX (/private/a "1" /private/a/b "2" /private/a/b/c "3")')
    vals, _ = get(c, "(DEPTH 0) INBOX /private/a")
    assert vals == {"/private/a": b"1"}
    vals, _ = get(c, "(DEPTH 1) INBOX /private/a")
    assert vals == {"/private/a": b"1", "/private/a/b": b"2"}
    vals, _ = get(c, "(DEPTH infinity) INBOX /private/a")
    assert vals == {"/private/a": b"1", "/private/a/b": b"2", "/private/a/b/c": b"3"}
    vals, _ = get(c, "(DEPTH infinity) INBOX /private")
    assert len(vals) == 3


def test_maxsize_longentries_rfc5464_4_2_1(env):
    """RFC 5464 4.2.1: MAXSIZE leaves longer values out, LONGENTRIES says
    the size of the longest left out."""
    _, srv = env
    c = login(srv)
    c.ok('SETMETADATA INBOX (/private/s "abc" /private/l "%s" /private/m "%s")' % ("x" * 50, "y" * 20))
    vals, tagged = get(c, "(MAXSIZE 10 DEPTH 1) INBOX /private")
    assert vals == {"/private/s": b"abc"}
    assert b"[METADATA LONGENTRIES 50]" in tagged
    vals, tagged = get(c, "(MAXSIZE 100 DEPTH 1) INBOX /private")
    assert len(vals) == 3 and b"LONGENTRIES" not in tagged


def test_limits_rfc5464_4_3(env):
    """RFC 5464 4.3: [METADATA MAXSIZE n] for a value over the limit,
    [METADATA TOOMANY] past the per-user entry count (configured 1000 / 5);
    nothing of a refused command is stored."""
    _, srv = env
    c = login(srv)
    _, tagged = c.cmd('SETMETADATA INBOX (/private/big "%s")' % ("z" * 1001))
    assert tagged.startswith(b"NO") and b"[METADATA MAXSIZE 1000]" in tagged
    c.ok('SETMETADATA INBOX (/private/ok "%s")' % ("z" * 1000))
    c.ok('SETMETADATA "" (/private/s1 "1" /private/s2 "2")')
    c.ok("CREATE Other")
    c.ok('SETMETADATA Other (/private/o1 "1" /private/o2 "2")')  # 5 in all
    _, tagged = c.cmd('SETMETADATA INBOX (/private/n1 "1")')
    assert tagged.startswith(b"NO") and b"[METADATA TOOMANY]" in tagged
    vals, _ = get(c, "INBOX /private/n1")
    assert vals.get("/private/n1") is None
    # replacing a value and removing are still allowed at the limit
    c.ok('SETMETADATA Other (/private/o1 "new")')
    c.ok("SETMETADATA Other (/private/o2 NIL)")
    c.ok('SETMETADATA INBOX (/private/n1 "1")')


@pytest.mark.parametrize("name", [
    "/private", "/shared/", "/other/x", "private/x", "/private//x", "/private/x/",
    "/private/a*", "/private/a%", '"/private/a b"', '"/private/\x01"',
])
def test_bad_entry_names_rfc5464_3_2(env, name):
    """RFC 5464 3.2: entry names are /private or /shared then components;
    no "*", "%", "//", trailing "/", or non-printable bytes: BAD."""
    _, srv = env
    c = login(srv)
    _, tagged = c.cmd(f'SETMETADATA INBOX ({name} "v")')
    assert tagged.startswith(b"BAD"), (name, tagged)
    if name != "/private":
        _, tagged = c.cmd(f"GETMETADATA INBOX {name}")
        assert tagged.startswith(b"BAD"), (name, tagged)
    # the session is still usable
    c.ok("NOOP")


def test_server_entries_rfc5464_3_1(env):
    """RFC 5464 3.1 / 4.2: server entries use the mailbox name ""."""
    _, srv = env
    c = login(srv)
    c.ok('SETMETADATA "" (/shared/admin "mailto:postmaster@example.com")')
    untagged, tagged = c.cmd('GETMETADATA "" /shared/admin')
    assert tagged.startswith(b"OK")
    assert metadata(untagged) == {"": {"/shared/admin": b"mailto:postmaster@example.com"}}
    # not a mailbox entry
    vals, _ = get(c, "INBOX /shared/admin")
    assert vals.get("/shared/admin") is None


def test_literal_values_crlf_and_binary_rfc5464_5(env):
    """RFC 5464 5: value = nstring / literal8: a value with CRLF by literal,
    one with NUL bytes by literal8, both returned byte for byte."""
    _, srv = env
    c = login(srv)
    v1 = b"line one\r\nline two\r\n"
    _, tagged = c.cmd(b"SETMETADATA INBOX (/private/text {%d}" % len(v1), literal=v1 + b")\r\n")
    assert tagged.startswith(b"OK"), tagged
    v2 = bytes(range(256))
    _, tagged = c.cmd(b"SETMETADATA INBOX (/private/bin ~{%d}" % len(v2), literal=v2 + b")\r\n")
    assert tagged.startswith(b"OK"), tagged
    vals, _ = get(c, "INBOX (/private/text /private/bin)")
    assert vals == {"/private/text": v1, "/private/bin": v2}


def test_nonexistent_mailbox(env):
    _, srv = env
    c = login(srv)
    _, tagged = c.cmd('SETMETADATA Nope (/private/x "1")')
    assert tagged.startswith(b"NO") and b"NONEXISTENT" in tagged
    _, tagged = c.cmd("GETMETADATA Nope /private/x")
    assert tagged.startswith(b"NO")


def test_rename_keeps_delete_drops(env):
    """RENAME carries a mailbox's entries; DELETE drops them (a new mailbox
    of that name starts with none)."""
    data, srv = env
    c = login(srv)
    c.ok("CREATE Work")
    c.ok("CREATE Work/Sub")
    c.ok('SETMETADATA Work (/private/color "red")')
    c.ok('SETMETADATA Work/Sub (/shared/comment "kid")')
    c.ok("RENAME Work Job")
    vals, _ = get(c, "Job /private/color", box="Job")
    assert vals == {"/private/color": b"red"}
    vals, _ = get(c, "Job/Sub /shared/comment", box="Job/Sub")
    assert vals == {"/shared/comment": b"kid"}
    c.ok("DELETE Job/Sub")
    c.ok("CREATE Job/Sub")
    vals, _ = get(c, "Job/Sub /shared/comment", box="Job/Sub")
    assert vals.get("/shared/comment") is None
    assert not (mailbox_dir(data, "alice", "Job/Sub") / "mailroom-metadata").exists()
    # `mailroom check` takes the metadata files as part of the store
    c.ok('SETMETADATA "" (/private/x "1")')
    p = check(data)
    assert p.returncode == 0 and check_problems(p) == [], (p.stdout, p.stderr)


def test_index_loss_keeps_values(env):
    """The index is not where values live: delete index.sqlite, they stay."""
    data, srv = env
    c = login(srv)
    c.ok('SETMETADATA INBOX (/private/comment "kept")')
    c.ok('SETMETADATA "" (/private/vendor/x "server")')
    c.close()
    srv.stop()
    root = data / "mail" / "alice"
    for f in os.listdir(root):
        if f.startswith("index.sqlite"):
            os.unlink(root / f)
    srv2 = imap_server.start(data)
    try:
        c = login(srv2)
        vals, _ = get(c, "INBOX /private/comment")
        assert vals == {"/private/comment": b"kept"}
        vals, _ = get(c, '"" /private/vendor/x', box="")
        assert vals == {"/private/vendor/x": b"server"}
    finally:
        srv2.stop()


def test_isolation_between_users(env):
    """Another user sees none of alice's entries, /private or /shared,
    mailbox or server."""
    _, srv = env
    a = login(srv, "alice")
    a.ok('SETMETADATA INBOX (/private/secret "alice-only" /shared/s "alice-shared")')
    a.ok('SETMETADATA "" (/private/secret "alice-server")')
    b = login(srv, "bob")
    untagged, tagged = b.cmd("GETMETADATA (DEPTH infinity) INBOX (/private /shared)")
    assert tagged.startswith(b"OK") and metadata(untagged) == {}
    untagged, tagged = b.cmd('GETMETADATA "" /private/secret')
    assert tagged.startswith(b"OK")
    assert all(v is None for v in metadata(untagged).get("", {}).values())
    b.ok('SETMETADATA INBOX (/private/secret "bob")')
    vals, _ = get(a, "INBOX /private/secret")
    assert vals == {"/private/secret": b"alice-only"}


def test_list_metadata_rfc9590(env):
    """RFC 9590 3: LIST ... RETURN (METADATA (entries)) sends a METADATA
    response after each mailbox's LIST response."""
    _, srv = env
    c = login(srv)
    c.ok("CREATE Other")
    c.ok('SETMETADATA INBOX (/shared/comment "in")')
    c.ok('SETMETADATA Other (/private/comment "ot")')
    untagged = c.ok('LIST "" "*" RETURN (METADATA (/shared/comment /private/comment))')
    md = metadata(untagged)
    assert md["INBOX"]["/shared/comment"] == b"in"
    assert md["Other"]["/private/comment"] == b"ot"
    # each METADATA follows its LIST line
    toks = [parse(u) for u in untagged]
    kinds = [t[1].upper() for t in toks]
    assert kinds.count("LIST") >= 2 and kinds == ["LIST", "METADATA"] * (len(kinds) // 2)
    for i in range(0, len(toks), 2):
        assert toks[i][4] == toks[i + 1][2], (toks[i], toks[i + 1])
    _, tagged = c.cmd('LIST "" "*" RETURN (METADATA (/bad/name))')
    assert tagged.startswith(b"BAD")
    # a LIST without it after one with it has no METADATA lines
    untagged = c.ok('LIST "" "*"')
    assert metadata(untagged) == {}
