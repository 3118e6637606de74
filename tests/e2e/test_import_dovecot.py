"""Issue 12, Must show 1: a site moves from a real Dovecot 2.3 to mailroom and
its users' clients notice nothing.

A private Dovecot (dovecot_server.py; once each with the default Maildir++
layout, with LAYOUT=fs and with UTF-8 folder names on disk) gets two
users. Through IMAP they get folders with non-ASCII names ("Entwürfe",
"Работа/2024"), messages with flags and custom keywords ("project-x",
"Later"), subscriptions; more messages are dropped straight into new/ as an
MDA would, and flags change through Dovecot afterwards. Then the users'
clients take their copies: mbsync (isync) and offlineimap3 sync every
folder to a local maildir, fetchmail polls INBOX over POP3 (keep, uidl)
into an MDA file. What Dovecot shows is recorded (per folder UIDVALIDITY,
UIDNEXT, and per UID the flags, RFC822.SIZE and a hash of BODY[]; LIST;
LSUB; POP3 UIDL).

Dovecot stops; `mailroom import -d DATA USER dovecot:MAILDIR` moves each
user; `mailroom serve` starts on the very ports Dovecot had. Then:
  - what mailroom shows equals what Dovecot showed (the same record);
  - mbsync, offlineimap and fetchmail run again and download nothing: mbsync
    reports 0 new messages and 0 flag updates either way, offlineimap copies
    no message and changes no flag, fetchmail says there is no mail and its
    MDA file is unchanged; the local copies hold no duplicate (one file per
    Message-ID, the same files as before);
  - the mailboxes are still as they were after the clients ran (no client
    changed anything because it saw something different).
Everything it needs is installed with apt-get when missing; a component
that cannot be had fails the test (no skip).
"""
import hashlib
import imaplib
import os
import poplib
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import imap_server
from conftest import add_user, imap_state, make_message, run, wire
from dovecot_server import DovecotServer

USERS = {"alice": "alice-pw", "bob": "bob-pw"}

# Folders as IMAP4rev1 clients name them (modified UTF-7; '/' stands for
# the server's hierarchy separator), with what goes in them: (flags at
# APPEND, tag).
ENTW = "Entw&APw-rfe"               # Entwürfe
WORK = "&BCAEMAQxBD4EQgQw-"          # Работа
WORK24 = "&BCAEMAQxBD4EQgQw-/2024"   # Работа/2024
CONTENT = {
    "alice": {
        "INBOX": [("", "a-in-1"), ("\\Seen", "a-in-2"), ("\\Flagged project-x", "a-in-3"),
                  ("\\Answered $Forwarded", "a-in-4"), ("\\Seen Later", "a-in-5")],
        ENTW: [("\\Draft project-x", "a-draft-1"), ("\\Draft \\Seen", "a-draft-2")],
        WORK: [("\\Seen", "a-work-1")],
        WORK24: [("", "a-w24-1"), ("\\Seen \\Flagged", "a-w24-2"), ("Later project-x", "a-w24-3")],
        "Sent": [("\\Seen", "a-sent-1")],
        "Drafts": [], "Trash": [], "Junk": [], "Archive": [],
    },
    "bob": {
        "INBOX": [("", "b-in-1"), ("\\Seen", "b-in-2")],
        "Archive": [("\\Seen project-x", "b-arch-1")],
        "Drafts": [], "Sent": [], "Trash": [], "Junk": [],
    },
}
SUBSCRIBED = {"alice": ["INBOX", ENTW, WORK24, "Sent"], "bob": ["Archive"]}
DROPPED = {"alice": ["a-drop-1", "a-drop-2"], "bob": ["b-drop-1"]}  # files put into new/


def ensure(binary, package):
    path = shutil.which(binary)
    if path:
        return path
    if os.geteuid() != 0:
        pytest.fail(f"{binary} ({package}) is missing and we are not root to install it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for attempt in range(2):
        r = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
                           env=env, capture_output=True, text=True, timeout=900)
        if r.returncode == 0 and shutil.which(binary):
            return shutil.which(binary)
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=300)
    pytest.fail(f"{binary} ({package}) cannot be installed: {r.stderr[-500:]}")


# ---- filling Dovecot ---------------------------------------------------------------

def _imap(port, user):
    m = imaplib.IMAP4("127.0.0.1", port)
    m.login(user, USERS[user])
    return m


def populate(dv, user):
    m = _imap(dv.imap_port, user)
    sep = m.list('""', '""')[1][0].split(b'"')[1].decode()

    def _q(name):
        return '"%s"' % name.replace("/", sep)

    for box, msgs in CONTENT[user].items():
        if box != "INBOX":
            assert m.create(_q(box))[0] == "OK", box
        for flags, tag in msgs:
            typ, data = m.append(_q(box), f"({flags})" if flags else None, None,
                                 make_message(tag).replace(b"\n", b"\r\n"))
            assert typ == "OK", (box, tag, data)
    for box in SUBSCRIBED[user]:
        assert m.subscribe(_q(box))[0] == "OK", box
    m.logout()
    # An MDA drops mail into new/ behind Dovecot's back (LF line ends, no
    # S=/W= in the name, as procmail or maildrop write it).
    new = dv.maildir(user) / "new"
    for i, tag in enumerate(DROPPED[user]):
        p = new / f"17000000{i:02d}.M{i}P99.mda"
        p.write_bytes(make_message(tag, body_size=300))
        shutil.chown(p, dv.mail_user, dv.mail_group)
        os.utime(p, (1700000000 + i, 1700000000 + i))
    # Flags change through Dovecot once it has seen everything.
    m = _imap(dv.imap_port, user)
    m.select("INBOX")
    typ, data = m.search(None, "ALL")
    seqs = data[0].split()
    assert len(seqs) == len(CONTENT[user]["INBOX"]) + len(DROPPED[user])
    assert m.store(seqs[0], "+FLAGS", "(\\Seen project-x)")[0] == "OK"
    assert m.store(seqs[1], "-FLAGS", "(\\Seen)")[0] == "OK"
    assert m.store(seqs[-1], "+FLAGS", "(\\Flagged Later)")[0] == "OK"
    assert m.store(seqs[-2], "+FLAGS", "(\\Deleted)")[0] == "OK"  # not expunged
    m.logout()


# ---- what a server shows --------------------------------------------------------

_LIST = re.compile(rb'^\((?P<attrs>[^)]*)\) (?:"(?P<sep>[^"]*)"|NIL) (?P<name>.*)$')


def _unquote(b):
    s = b.decode()
    if s.startswith('"') and s.endswith('"'):
        s = s[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return s


def names(m, cmd):
    """{name with '/' between levels: is \\Noselect} from LIST or LSUB."""
    typ, data = (m.list if cmd == "LIST" else m.lsub)('""', "*")
    assert typ == "OK", data
    out = {}
    for line in data:
        g = _LIST.match(line)
        assert g, line
        sep = (g.group("sep") or b"/").decode()
        name = _unquote(g.group("name"))
        out[name.replace(sep, "/") if sep else name] = b"\\Noselect" in g.group("attrs")
    return out


def server_view(port, pop3_port, user):
    """Everything the tests compare between Dovecot and mailroom."""
    m = _imap(port, user)
    listed = names(m, "LIST")
    subscribed = set(names(m, "LSUB"))
    sep = m.list('""', '""')[1][0].split(b'"')[1].decode()
    m.logout()
    wire_names = {n: n.replace("/", sep) for n, noselect in listed.items() if not noselect}
    state = imap_state(port, user, USERS[user], boxes=sorted(wire_names.values()))
    # \Recent is per session, not state a migration keeps
    by_name = {}
    for n, w in wire_names.items():
        uidvalidity, uidnext, msgs = state[w]
        by_name[n] = (uidvalidity, uidnext,
                      {uid: (flags - {"\\Recent"}, size, h) for uid, (flags, size, h) in msgs.items()})
    p = poplib.POP3("127.0.0.1", pop3_port, timeout=30)
    p.user(user)
    p.pass_(USERS[user])
    uidl = sorted(line.split()[1] for line in p.uidl()[1])
    p.quit()
    return {"list": set(listed), "lsub": subscribed, "boxes": by_name, "uidl": uidl}


# ---- the clients -------------------------------------------------------------------

def mbsync_rc(tmp, port):
    text = ""
    for user, pw in USERS.items():
        near = tmp / "mbsync" / user
        near.mkdir(parents=True, exist_ok=True)
        text += f"""IMAPAccount {user}
Host 127.0.0.1
Port {port}
User {user}
Pass {pw}
SSLType None
AuthMechs LOGIN

IMAPStore {user}-far
Account {user}

MaildirStore {user}-near
Path {near}/
Inbox {near}/INBOX
SubFolders Verbatim

Channel {user}
Far :{user}-far:
Near :{user}-near:
Patterns *
Create Both
Sync All
SyncState *

"""
    rc = tmp / "mbsyncrc"
    rc.write_text(text)
    return rc


# mbsync's progress counters (printed on a terminal only, so it runs under
# script(1)): C: channels, B: boxes, F: far side, N: near side, each with
# +new messages, *flag updates, #trashed (and -expunged), done/total.
_MBSYNC_COUNTERS = re.compile(r"C: \d+/\d+ +B: \d+/\d+ +F: \+(\d+)/\d+ \*(\d+)/\d+ #\d+/\d+(?: -\d+/\d+)? +"
                              r"N: \+(\d+)/\d+ \*(\d+)/\d+ #\d+/\d+")


def mbsync(binary, rc):
    """Runs mbsync for every channel; returns (messages pulled, flag updates
    pulled, messages pushed, flag updates pushed) from its final counters."""
    p = subprocess.run(["script", "-qec", f"{shlex.quote(binary)} -c {shlex.quote(str(rc))} -a", "/dev/null"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    out = p.stdout + p.stderr
    assert p.returncode == 0 and "Error" not in out, f"mbsync failed ({p.returncode}):\n{out[-3000:]}"
    found = _MBSYNC_COUNTERS.findall(out)
    assert found, out[-3000:]
    far_new, far_flags, near_new, near_flags = (int(x) for x in found[-1])
    return (near_new, near_flags, far_new, far_flags), out


def offlineimap_rc(tmp, port):
    text = f"""[general]
accounts = {", ".join(USERS)}
metadata = {tmp}/offlineimap/meta
ui = basic

"""
    for user, pw in USERS.items():
        text += f"""[Account {user}]
localrepository = {user}-local
remoterepository = {user}-remote

[Repository {user}-local]
type = Maildir
localfolders = {tmp}/offlineimap/{user}

[Repository {user}-remote]
type = IMAP
remotehost = 127.0.0.1
remoteport = {port}
remoteuser = {user}
remotepass = {pw}
ssl = no
starttls = no
expunge = no

"""
    (tmp / "offlineimap").mkdir(exist_ok=True)
    for user in USERS:
        (tmp / "offlineimap" / user).mkdir(exist_ok=True)
    rc = tmp / "offlineimaprc"
    rc.write_text(text)
    return rc


def offlineimap(binary, rc, tmp):
    """One-shot offlineimap run; returns (messages copied, flag changes) from its log."""
    log = tmp / "offlineimap.log"
    log.unlink(missing_ok=True)
    p = subprocess.run([binary, "-c", str(rc), "-o", "-u", "basic", "-l", str(log)],
                       capture_output=True, text=True, timeout=180, env=dict(os.environ, HOME=str(tmp)))
    out = p.stdout + p.stderr + (log.read_text() if log.exists() else "")
    assert p.returncode == 0 and "ERROR" not in out, f"offlineimap failed ({p.returncode}):\n{out[-3000:]}"
    copied = len(re.findall(r"(?m)^\s*Copy message UID", out))
    flags = len(re.findall(r"(?m)^\s*(Adding|Deleting) flag", out))
    return copied, flags, out


def fetchmail_rc(tmp, port):
    rc = tmp / "fetchmailrc"
    text = f"poll 127.0.0.1 service {port} protocol POP3 uidl\n"
    for user, pw in USERS.items():
        text += (f'  user "{user}" password "{pw}" sslproto \'\' options keep norewrite '
                 f'mda "cat >> {tmp}/fetchmail-{user}.mda"\n')
    rc.write_text(text)
    os.chmod(rc, 0o600)
    return rc


def fetchmail(binary, rc, tmp):
    env = {"HOME": str(tmp), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    p = subprocess.run([binary, "-f", str(rc), "--nodetach", "-v", "-i", str(tmp / "fetchids"),
                        "--pidfile", str(tmp / "fetchmail.pid")],
                       env=env, capture_output=True, text=True, timeout=120)
    # 0: mail fetched, 1: no mail (fetchmail(1) EXIT CODES)
    out = p.stdout + p.stderr
    assert p.returncode in (0, 1), f"fetchmail failed ({p.returncode}):\n{out[-3000:]}"
    fetched = len(re.findall(r"(?m)^reading message ", out))
    assert (fetched == 0) == (p.returncode == 1), out[-3000:]
    return fetched, out


def import_user(data, user, maildir):
    """`mailroom import -d DATA USER dovecot:MAILDIR`, run as the tests run
    every mailroom command; returns its report."""
    p = run(["import", "-d", data, user, f"dovecot:{maildir}"], timeout=120)
    report = p.stdout.decode()
    assert p.returncode == 0, f"import {user}: rc={p.returncode}\n{report}\n{p.stderr!r}"
    return report


def source_state(dv):
    """Every file and folder of the users' Dovecot maildirs with its owner,
    mode, size, mtime and contents' hash."""
    out = {}
    for user in USERS:
        for p in sorted(dv.maildir(user).rglob("*")):
            st = p.lstat()
            h = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
            out[str(p)] = (st.st_uid, st.st_gid, st.st_mode, st.st_size, st.st_mtime_ns, h)
    return out


def local_copies(tmp):
    """What the clients hold: per message file of mbsync and offlineimap (keyed
    by client, folder and Message-ID: a second copy fails) its base name and
    maildir flags; mbsync's state files; a hash of each fetchmail MDA file."""
    out = {}
    for client in ("mbsync", "offlineimap"):
        for p in (tmp / client).rglob("*"):
            if p.name == ".mbsyncstate":  # the far side's UIDVALIDITY and the UID pairs
                out[(client, str(p.relative_to(tmp)))] = p.read_text()
            elif p.is_file() and p.parent.name in ("cur", "new"):
                body = p.read_bytes()
                mid = re.search(rb"(?mi)^Message-ID: *(<[^>]*>)", body)
                key = (client, str(p.parent.parent.relative_to(tmp)), mid.group(1).decode() if mid else p.name)
                assert key not in out, f"duplicate in a local copy: {key}"
                out[key] = (p.name.split(":")[0], p.name.split(":2,")[-1] if ":2," in p.name else "")
    for user in USERS:
        f = tmp / f"fetchmail-{user}.mda"
        out[("fetchmail", user)] = hashlib.sha256(f.read_bytes()).hexdigest() if f.exists() else None
    return out


# ---- the test --------------------------------------------------------------------

# Dovecot's mail_location: the default (Maildir++, '.' between levels,
# names in modified UTF-7 on disk), LAYOUT=fs (plain subfolders, '/'), and
# UTF-8 names on disk.
LAYOUTS = {"maildir++": "", "fs": ":LAYOUT=fs", "utf8": ":UTF-8"}
# where Entwürfe and Работа/2024 are on disk with each
ON_DISK = {"maildir++": (".Entw&APw-rfe", ".&BCAEMAQxBD4EQgQw-.2024"),
           "fs": ("Entw&APw-rfe", "&BCAEMAQxBD4EQgQw-/2024"),
           "utf8": (".Entwürfe", ".Работа.2024")}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_dovecot_to_mailroom_nobody_downloads_again(data, tmp_path, layout):
    t0 = time.monotonic()
    mbsync_bin = ensure("mbsync", "isync")
    offlineimap_bin = ensure("offlineimap", "offlineimap3")
    fetchmail_bin = ensure("fetchmail", "fetchmail")
    # Dovecot's mail processes run as the user mailroom's workers run as
    # (run_user, "mail"), as on a site where both serve the same vmail
    # account. With another owner two things break that are reported, not
    # tested here: `mailroom import` run after `mailroom serve` has taken
    # the store becomes the store's owner and cannot read the source; and
    # `mailroom serve` chowns the store's files, so the Dovecot files the
    # import hard-linked change owner (the source is touched).
    # ("mail" is a system account: Dovecot refuses uids below 500 unless told)
    dv = DovecotServer(users=USERS, protocols=("imap", "pop3"), mail_user="mail",
                       extra_conf=f"mail_location = maildir:~/Maildir{LAYOUTS[layout]}\n"
                                  "first_valid_uid = 1\nfirst_valid_gid = 1\n")
    srv = None
    try:
        dv.start()
        for user in USERS:
            populate(dv, user)
        for d in ON_DISK[layout]:
            assert (dv.maildir("alice") / d / "cur").is_dir(), (layout, d)
        # the clients take their copies from Dovecot
        mrc, orc, frc = mbsync_rc(tmp_path, dv.imap_port), offlineimap_rc(tmp_path, dv.imap_port), \
            fetchmail_rc(tmp_path, dv.pop3_port)
        n_inbox = {u: len(CONTENT[u]["INBOX"]) + len(DROPPED[u]) for u in USERS}
        fetched, out = fetchmail(fetchmail_bin, frc, tmp_path)
        assert fetched == sum(n_inbox.values()), out
        (pulled, *_), out = mbsync(mbsync_bin, mrc)
        assert pulled == sum(len(v) for u in USERS for v in CONTENT[u].values()) + \
            sum(len(v) for v in DROPPED.values()), out
        copied, _, out = offlineimap(offlineimap_bin, orc, tmp_path)
        assert copied == pulled, out
        before_view = {u: server_view(dv.imap_port, dv.pop3_port, u) for u in USERS}
        for u in USERS:
            assert len(before_view[u]["uidl"]) == n_inbox[u]
        copies = local_copies(tmp_path)
        # a second round against Dovecot itself downloads nothing: the
        # baseline the same round against mailroom is held to
        time.sleep(1.1)  # mbsync passes over maildirs changed within the last second
        assert mbsync(mbsync_bin, mrc)[0] == (0, 0, 0, 0)
        assert offlineimap(offlineimap_bin, orc, tmp_path)[:2] == (0, 0)
        assert fetchmail(fetchmail_bin, frc, tmp_path)[0] == 0
        assert local_copies(tmp_path) == copies
        assert {u: server_view(dv.imap_port, dv.pop3_port, u) for u in USERS} == before_view

        dv.stop()
        # An MDA puts one more message into bob's new/ after Dovecot's last
        # look: it has no UID yet, and must get the one Dovecot would have
        # given (its UIDNEXT), never one a client already holds.
        late = dv.maildir("bob") / "new" / "1800000000.M7P7.late"
        late.write_bytes(make_message("b-late-1"))
        shutil.chown(late, dv.mail_user, dv.mail_group)
        source = source_state(dv)

        # the move
        for user, pw in USERS.items():
            add_user(data, user, pw)
            report = import_user(data, user, dv.maildir(user))
            # a clean Dovecot tree: nothing skipped (Dovecot's own files pass
            # silently), every W= size what mailroom shows, every keyword and
            # UIDL taken, every file linked (same file system), not copied
            bad = re.findall(rf"(?m)^{user}: (?:skipped|size|keywords|uidl|copied)\b.*$", report)
            assert not bad, report
        srv = imap_server.start(data, protocols=("imap", "pop3"),
                                ports={"imap": dv.imap_port, "pop3": dv.pop3_port})
        # run again while mailroom serves (as after an interruption): nothing more
        for user in USERS:
            report = import_user(data, user, dv.maildir(user))
            counts = re.findall(rf"(?m)^{user}: folder .*: (\d+) imported", report)
            assert counts and set(counts) == {"0"}, report

        after_view = {u: server_view(dv.imap_port, dv.pop3_port, u) for u in USERS}
        for u in USERS:
            assert after_view[u]["list"] == before_view[u]["list"], u
            # The subscriptions are Dovecot's, exactly: a user who had never
            # held mail gives up the defaults `user add` subscribed
            # (store_user_create: INBOX and the special-use folders) for the source's.
            assert after_view[u]["lsub"] == before_view[u]["lsub"], u
            for box, want in before_view[u]["boxes"].items():
                if (u, box) != ("bob", "INBOX"):
                    assert after_view[u]["boxes"][box] == want, (u, box)
        assert after_view["alice"]["uidl"] == before_view["alice"]["uidl"]
        uidvalidity, uidnext, msgs = before_view["bob"]["boxes"]["INBOX"]
        late_wire = wire(make_message("b-late-1"))
        assert after_view["bob"]["boxes"]["INBOX"] == (
            uidvalidity, uidnext + 1,
            {**msgs, uidnext: (frozenset(), len(late_wire), hashlib.sha256(late_wire).hexdigest())})
        assert set(before_view["bob"]["uidl"]) < set(after_view["bob"]["uidl"])
        assert len(after_view["bob"]["uidl"]) == len(before_view["bob"]["uidl"]) + 1

        # the clients again: only the late message is new to them
        time.sleep(1.1)
        counts, out = mbsync(mbsync_bin, mrc)
        assert counts == (1, 0, 0, 0), out[-3000:]
        copied, flags, out = offlineimap(offlineimap_bin, orc, tmp_path)
        assert (copied, flags) == (1, 0), out[-3000:]
        fetched, out = fetchmail(fetchmail_bin, frc, tmp_path)
        assert fetched == 1, out[-3000:]
        now = local_copies(tmp_path)
        changed = {k for k in set(copies) | set(now) if copies.get(k) != now.get(k)}
        late_id = "<b-late-1@mailroom.test>"
        assert changed == {("mbsync", "mbsync/bob/INBOX", late_id), ("offlineimap", "offlineimap/bob/INBOX", late_id),
                           ("mbsync", "mbsync/bob/INBOX/.mbsyncstate"), ("fetchmail", "bob")}, changed
        assert {u: server_view(dv.imap_port, dv.pop3_port, u) for u in USERS} == after_view

        # and once more: nothing at all
        time.sleep(1.1)
        assert mbsync(mbsync_bin, mrc)[0] == (0, 0, 0, 0)
        assert offlineimap(offlineimap_bin, orc, tmp_path)[:2] == (0, 0)
        assert fetchmail(fetchmail_bin, frc, tmp_path)[0] == 0
        assert local_copies(tmp_path) == now
        assert {u: server_view(dv.imap_port, dv.pop3_port, u) for u in USERS} == after_view
        # the import and mailroom never changed the Dovecot tree
        assert source_state(dv) == source
    finally:
        if srv is not None:
            srv.stop()
        dv.cleanup()
    print(f"dovecot ({layout}) -> mailroom, clients before and after: {time.monotonic() - t0:.1f} s")
