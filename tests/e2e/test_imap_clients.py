"""Real IMAP clients against `mailroom serve` (issue 4, "Must show 2"):
mbsync (isync) syncing 500 messages both ways, curl's IMAP support, and
Python's imaplib.

mbsync keeps its own file names and adds an X-TUID header line to every
message it copies (its crash-recovery tag, isync(1)); it also stores
messages with LF line ends in the maildir. Contents are compared after
removing that one header line and with CRLF read as LF; everything else
must be byte-identical. Expectations come from the messages the test
delivered and the changes it made, never from the server's answers.
"""

import imaplib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import imap_server
from conftest import (MAILROOM, add_user, check, check_problems, cur_files, deliver, mailbox_dir, run, wire)


def _server(data, **opts):
    return imap_server.start(data, extra_opts=opts or None)


@pytest.fixture
def stopper():
    servers = []
    yield servers.append
    for s in servers:
        s.stop(timeout=15)


# --- mbsync ------------------------------------------------------------------------

def _mbsync_bin():
    path = shutil.which("mbsync")
    if path:
        return path
    try:
        p = subprocess.run(["apt-get", "install", "-y", "isync"], capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"mbsync (isync) missing and apt-get install failed: {e}")
    path = shutil.which("mbsync")
    if not path:
        pytest.skip(f"mbsync (isync) missing and could not be installed: {p.stderr[-500:]}")
    return path


def _msg_500(i):
    """Message i of the 500: unique Message-ID, varied size and content
    (8-bit UTF-8, long lines, MIME), bare LF line ends as from an MTA."""
    word = "caf\u00e9" if i % 7 == 0 else "plain"
    head = (f"From: Sender {i} <s{i}@example.org>\nTo: alice@example.org\n"
            f"Subject: sync {i} {word}\n"
            f"Message-ID: <sync-{i}@mailroom.test>\nDate: Mon, 1 Jan 2024 10:{i % 60:02d}:00 +0000\n")
    if i % 11 == 0:
        head += "MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=b\n"
        body = "\n--b\nContent-Type: text/plain\n\nplain part\n--b\nContent-Type: text/html\n\n<p>html</p>\n--b--\n"
    else:
        body = f"\nbody of {i}\n" + ("x" * (i % 990) + "\n") * (i % 13) + ("gr\u00fc\u00dfe\n" if i % 5 == 0 else "")
    return (head + body).encode()


def _norm(b):
    """Contents as compared: CRLF read as LF, mbsync's X-TUID header line removed."""
    b = b.replace(b"\r\n", b"\n")
    head, sep, body = b.partition(b"\n\n")
    head = re.sub(rb"(?m)^X-TUID: [^\n]*\n?", b"", head + b"\n")[:-1]
    return head + sep + body


def _mid(b):
    m = re.search(rb"(?mi)^Message-ID: *(<[^>]+>)", b)
    return m.group(1).decode() if m else None


def _local(near, box="INBOX"):
    """{Message-ID: (path, flags, bytes)} of a local maildir (new/ and cur/)."""
    out = {}
    for sub in ("new", "cur"):
        d = Path(near) / box / sub
        if not d.is_dir():
            continue
        for name in os.listdir(d):
            data = (d / name).read_bytes()
            flags = name.rsplit(":2,", 1)[1] if ":2," in name else ""
            out[_mid(data)] = (d / name, flags, data)
    return out


def _server_msgs(data, box="INBOX"):
    """{Message-ID: (uid, flags, bytes)} from the server's files."""
    out = {}
    for uid, flags, path in cur_files(data, "alice", box):
        b = path.read_bytes()
        out[_mid(b)] = (uid, flags, b)
    return out


def _mbsync(mbsync, rc, timeout=180):
    p = subprocess.run([mbsync, "-c", str(rc), "ch"], capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"mbsync failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"
    return p


def test_mbsync_500_both_ways(data, tmp_path, stopper):
    mbsync = _mbsync_bin()
    add_user(data, "alice", "secret")
    msgs = {f"<sync-{i}@mailroom.test>": _msg_500(i) for i in range(500)}
    for m in msgs.values():
        p = deliver(data, "alice", m)
        assert p.returncode == 0, p.stderr
    srv = _server(data)
    stopper(srv)
    # some flags on the server before the first sync
    c = imap_server.Client(srv.port)
    c.login("alice", "secret")
    c.ok("SELECT INBOX")
    c.ok("STORE 1:50 +FLAGS.SILENT (\\Seen)")
    c.ok("STORE 41:60 +FLAGS.SILENT (\\Flagged)")
    c.ok("LOGOUT")
    c.close()
    seen = {f"<sync-{i}@mailroom.test>" for i in range(50)}
    flagged = {f"<sync-{i}@mailroom.test>" for i in range(40, 60)}

    near = tmp_path / "near"
    near.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(f"""IMAPAccount srv
Host 127.0.0.1
Port {srv.port}
User alice
Pass secret
SSLType None
AuthMechs LOGIN

IMAPStore far
Account srv

MaildirStore near
Path {near}/
Inbox {near}/INBOX
SubFolders Verbatim

Channel ch
Far :far:
Near :near:
Patterns *
Create Both
Expunge Both
Sync All
SyncState *
""")
    # 1. server -> local: all 500, byte-identical, with their flags
    t0 = time.monotonic()
    _mbsync(mbsync, rc)
    first_sync = time.monotonic() - t0
    local = _local(near)
    assert set(local) == set(msgs), (len(local), sorted(set(msgs) - set(local))[:5])
    bad = [mid for mid, (_, _, b) in local.items() if _norm(b) != _norm(wire(msgs[mid]))]
    assert not bad, f"{len(bad)} messages differ, e.g. {bad[:3]}"
    for mid, (_, flags, _) in local.items():
        assert ("S" in flags) == (mid in seen), (mid, flags)
        assert ("F" in flags) == (mid in flagged), (mid, flags)
    for box in ("Drafts", "Sent", "Trash"):  # the server's other mailboxes were created locally
        assert (near / box / "cur").is_dir(), box

    # 2. local changes: a flag, a new message, an expunge, a new folder
    def rename_flags(mid, flags):
        path, _, _ = _local(near)[mid]
        base = path.name.split(":2,")[0]
        os.rename(path, near / "INBOX" / "cur" / f"{base}:2,{flags}")
    flag_mid, gone_mid = "<sync-100@mailroom.test>", "<sync-101@mailroom.test>"
    rename_flags(flag_mid, "FS")
    os.unlink(_local(near)[gone_mid][0])
    new_local = (b"From: me@example.org\nTo: alice@example.org\nSubject: written locally\n"
                 b"Message-ID: <local-1@mailroom.test>\n\nfrom the laptop \xc3\xa9\n")
    (near / "INBOX" / "new" / "1700000000.local1.laptop").write_bytes(new_local)
    (near / "Projects").mkdir()
    for sub in ("cur", "new", "tmp"):
        (near / "Projects" / sub).mkdir()
    proj_msg = b"Subject: project\nMessage-ID: <proj-1@mailroom.test>\n\nplan\n"
    (near / "Projects" / "cur" / "1700000001.proj1.laptop:2,S").write_bytes(proj_msg)
    time.sleep(1.1)  # mbsync waits for maildirs changed within the last second; spare it the sleep
    _mbsync(mbsync, rc)

    server = _server_msgs(data)
    assert len(server) == 500  # 500 - 1 expunged + 1 new
    assert gone_mid not in server
    assert "F" in server[flag_mid][1] and "S" in server[flag_mid][1], server[flag_mid][1]
    assert "<local-1@mailroom.test>" in server
    got = server["<local-1@mailroom.test>"][2]
    assert _norm(got) == new_local
    assert re.search(rb"(?<!\r)\n", got) is None, "stored with bare LF"
    assert not any(mid == gone_mid for mid in _local(near))
    proj = _server_msgs(data, "Projects")
    assert list(proj) == ["<proj-1@mailroom.test>"] and _norm(proj["<proj-1@mailroom.test>"][2]) == proj_msg
    assert "S" in proj["<proj-1@mailroom.test>"][1]
    # the server's view over IMAP agrees with its files
    c = imap_server.Client(srv.port)
    c.login("alice", "secret")
    c.ok("EXAMINE INBOX")
    untagged = c.ok('UID SEARCH HEADER Message-ID "sync-101@"')
    assert untagged == [b"* SEARCH"], untagged
    untagged = c.ok('SEARCH FLAGGED HEADER Message-ID "sync-100@"')
    assert re.fullmatch(rb"\* SEARCH \d+", untagged[0]), untagged
    c.ok("LOGOUT")
    c.close()

    # 3. server changes: flags, an expunge, an APPEND and a delivery
    ans_mid, del_mid = "<sync-200@mailroom.test>", "<sync-201@mailroom.test>"
    c = imap_server.Client(srv.port)
    c.login("alice", "secret")
    c.ok("SELECT INBOX")
    c.ok(f"UID STORE {server[ans_mid][0]} +FLAGS.SILENT (\\Answered \\Seen)")
    c.ok(f"UID STORE {server[del_mid][0]} +FLAGS.SILENT (\\Deleted)")
    c.ok(f"UID EXPUNGE {server[del_mid][0]}")
    appended = b"Subject: appended on the server\r\nMessage-ID: <srv-append@mailroom.test>\r\n\r\nhi\r\n"
    _, tagged = c.cmd(b"APPEND INBOX (\\Flagged) {%d+}\r\n" % len(appended) + appended)
    assert tagged.startswith(b"OK"), tagged
    c.ok("LOGOUT")
    c.close()
    delivered = b"Subject: delivered later\nMessage-ID: <srv-deliver@mailroom.test>\n\nnew mail\n"
    # as an MTA's pipe would run it, as run_user (mail); delivery as root
    # while serving is test_server.py::test_deliver_as_root_while_serving
    p = subprocess.run(["runuser", "-u", "mail", "--", MAILROOM, "deliver", "-d", str(data), "alice"],
                       input=delivered, capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    time.sleep(1.1)
    _mbsync(mbsync, rc)
    local = _local(near)
    assert del_mid not in local
    assert "R" in local[ans_mid][1] and "S" in local[ans_mid][1], local[ans_mid][1]
    assert _norm(local["<srv-append@mailroom.test>"][2]) == _norm(appended)
    assert "F" in local["<srv-append@mailroom.test>"][1]
    assert _norm(local["<srv-deliver@mailroom.test>"][2]) == _norm(wire(delivered))
    assert len(local) == 501
    assert set(local) == set(_server_msgs(data))

    # 4. nothing left to do: another run changes neither side
    before_l = sorted(p.name for p, _, _ in _local(near).values())
    before_s = sorted(str(p) for _, _, p in cur_files(data, "alice"))
    time.sleep(1.1)
    _mbsync(mbsync, rc)
    assert sorted(p.name for p, _, _ in _local(near).values()) == before_l
    assert sorted(str(p) for _, _, p in cur_files(data, "alice")) == before_s
    p = check(data)
    assert p.returncode == 0 and not check_problems(p), p.stdout
    assert first_sync < 120


# --- curl --------------------------------------------------------------------------

CURL_MSGS = [
    b"From: a@example.org\nSubject: quarterly report\nMessage-ID: <c1@x>\n\nnumbers\n",
    b"From: b@example.org\nSubject: lunch plans\nMessage-ID: <c2@x>\n\nsoup\n",
    b"From: c@example.org\nSubject: Re: quarterly REPORT draft\nMessage-ID: <c3@x>\n\nmore numbers\n",
    b"From: d@example.org\nSubject: binary\nMessage-ID: <c4@x>\nContent-Type: application/octet-stream\n"
    b"Content-Transfer-Encoding: base64\n\n" + b"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n" * 50,
]


def _curl(args, timeout=60):
    p = subprocess.run(["curl", "-s", "-S", "--max-time", "30"] + args, capture_output=True, timeout=timeout)
    assert p.returncode == 0, (args, p.returncode, p.stderr)
    return p.stdout


def test_curl(data, tmp_path, stopper):
    if not shutil.which("curl"):
        pytest.skip("curl is not installed")
    add_user(data, "alice", "secret")
    for m in CURL_MSGS:
        assert deliver(data, "alice", m).returncode == 0
    assert run(["mailbox", "create", "-d", data, "alice", "Box"]).returncode == 0
    srv = _server(data)
    stopper(srv)
    base = f"imap://127.0.0.1:{srv.port}"
    user = ["--user", "alice:secret"]
    uids = [uid for uid, _, _ in cur_files(data, "alice")]
    assert len(uids) == 4
    # fetch by UID: the exact stored bytes
    for uid, m in zip(uids, CURL_MSGS):
        assert _curl(user + [f"{base}/INBOX;UID={uid}"]) == wire(m)
    # a section of a message
    assert _curl(user + [f"{base}/INBOX;UID={uids[1]};SECTION=HEADER.FIELDS%20(SUBJECT)"]) == \
        b"Subject: lunch plans\r\n\r\n"
    # SEARCH (sequence numbers; SUBJECT is a case-insensitive substring, RFC 9051 6.4.4)
    out = _curl(user + [f"{base}/INBOX?SUBJECT%20quarterly"])
    assert re.fullmatch(rb"\* SEARCH 1 3\r\n", out), out
    out = _curl(user + [f"{base}/INBOX?SUBJECT%20soup"])
    assert re.fullmatch(rb"\* SEARCH\r\n", out), out
    out = _curl(user + [f"{base}/INBOX?BODY%20soup"])
    assert re.fullmatch(rb"\* SEARCH 2\r\n", out), out
    # a custom command
    out = _curl(user + ["-X", "EXAMINE INBOX", f"{base}/"])
    assert re.search(rb"(?m)^\* 4 EXISTS\r$", out), out
    assert re.search(rb"(?m)^\* OK \[UIDNEXT 5\]", out), out
    out = _curl(user + ["-X", "STATUS Box (MESSAGES)", f"{base}/"])
    assert re.search(rb'\* STATUS "?Box"? \(MESSAGES 0\)', out), out
    # APPEND a file (curl sends it as is; the store keeps CRLF)
    f = tmp_path / "upload.eml"
    upload = b"From: curl@example.org\nTo: alice@example.org\nSubject: uploaded\n\nvia curl -T\n"
    f.write_bytes(upload)
    _curl(user + ["-T", str(f), f"{base}/Box"])
    files = cur_files(data, "alice", "Box")
    assert len(files) == 1
    assert files[0][2].read_bytes() == wire(upload)
    # curl fetches with BODY[] (not PEEK): \Seen on the fetched messages (CLIENTS.md)
    assert all("S" in flags for _, flags, _ in cur_files(data, "alice"))
    # a wrong password is refused (curl exit 67: login denied)
    p = subprocess.run(["curl", "-s", "--max-time", "30", "--user", "alice:wrong", f"{base}/INBOX;UID={uids[0]}"],
                       capture_output=True, timeout=60)
    assert p.returncode == 67 and p.stdout == b"", p
    # STARTTLS with the generated certificate
    out = _curl(["-k", "--ssl-reqd"] + user + [f"{base}/INBOX;UID={uids[0]}"])
    assert out == wire(CURL_MSGS[0])
    p = check(data)
    assert p.returncode == 0 and not check_problems(p), p.stdout


# --- Python imaplib ----------------------------------------------------------------------

def test_imaplib_smoke(data, stopper):
    add_user(data, "alice", "secret")
    msgs = [b"From: p@example.org\nSubject: py %d\nMessage-ID: <py%d@x>\n\nbody %d\n" % (i, i, i) for i in range(3)]
    for m in msgs:
        assert deliver(data, "alice", m).returncode == 0
    srv = _server(data)
    stopper(srv)
    M = imaplib.IMAP4("127.0.0.1", srv.port, timeout=30)
    try:
        typ, _ = M.login("alice", "secret")
        assert typ == "OK"
        typ, d = M.select("INBOX")
        assert typ == "OK" and d == [b"3"]
        typ, d = M.fetch("1:3", "(RFC822)")
        assert typ == "OK"
        bodies = [part[1] for part in d if isinstance(part, tuple)]
        assert bodies == [wire(m) for m in msgs]
        typ, d = M.uid("SEARCH", None, "SUBJECT", '"py 1"')
        assert typ == "OK"
        uid2 = d[0].split()
        assert len(uid2) == 1
        typ, d = M.store("2", "+FLAGS", "(\\Deleted \\Flagged)")
        assert typ == "OK" and b"\\Deleted" in d[0] and b"\\Flagged" in d[0]
        typ, d = M.expunge()
        assert typ == "OK" and d == [b"2"]
        typ, d = M.search(None, "ALL")
        assert d == [b"1 2"]
        typ, d = M.fetch("2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert d[0][1] == b"Subject: py 2\r\n\r\n"
        typ, d = M.append("INBOX", "(\\Seen)", None, b"Subject: from imaplib\r\n\r\nx\r\n")
        assert typ == "OK", d
        typ, d = M.status("INBOX", "(MESSAGES)")
        assert typ == "OK" and b"MESSAGES 3" in d[0]
        M.close()
        typ, _ = M.logout()
        assert typ == "BYE"
    finally:
        try:
            M.shutdown()
        except OSError:
            pass
    files = cur_files(data, "alice")
    assert [f[2].read_bytes() for f in files] == [wire(msgs[0]), wire(msgs[2]), b"Subject: from imaplib\r\n\r\nx\r\n"]
    assert "S" in files[0][1] and "S" in files[2][1]  # RFC822 fetch sets \Seen; APPEND (\Seen)
    p = check(data)
    assert p.returncode == 0 and not check_problems(p), p.stdout
