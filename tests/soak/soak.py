#!/usr/bin/python3
"""mailroom soak (issue 14, "Must show 6"): a bounded, self-stopping mixed load
against a real `mailroom serve`, with faults, and a ledger of what the
server acknowledged.

    SOAK_SECONDS=120 MAILROOM=build/mailroom /usr/bin/python3 tests/soak/soak.py

Environment: SOAK_SECONDS (default 1800), SOAK_SEED (default: from the
clock; printed for reproduction), SOAK_THREADS (load threads, default 4),
SOAK_SAMPLE (seconds between table rows; default 60, 10 for runs of 600 s
or less), MAILROOM (the binary).

Load (each thread picks at random): LMTP deliveries to 1-3 users (some
dropped in the middle of DATA), `mailroom deliver` runs (INBOX or Archive),
IMAP sessions (LOGIN, SELECT, FETCH, STORE of flags and keywords, APPEND,
COPY, MOVE, STORE \\Deleted + UID EXPUNGE, IDLE that must see a delivery
pushed, clients that drop in the middle of a command or of an APPEND
literal), POP3 sessions (STAT, UIDL, RETR, DELE, QUIT; some drop before
QUIT, so their DELEs must not happen). Faults, from a chaos thread: SIGKILL
of a worker (the master must replace it), SIGHUP of the master (reload),
and a user's index.sqlite (with -wal and -shm) deleted under load.

The ledger holds, per user and mailbox, every acknowledged message (LMTP
250, deliver exit 0, APPEND OK; COPY/MOVE OK move or add copies; expunges
and POP3 DELE+QUIT the soak made take them away). A command whose reply was
lost because the soak killed the worker leaves its messages "maybe" (either
outcome is right). Messages abandoned mid-DATA or mid-literal must never
appear. At the end: 0 acknowledged messages lost, nothing unexpected
present, every message byte-exact (its known content), UIDs stable (a UID
seen for a message never names another), 0 protocol errors (any reply the
load did not expect, a disconnect no fault explains, a timeout), `mailroom
check` exit 0 after the stop, and RSS, descriptors (master, auth, workers)
and log growth per operation flat after warm-up (the table printed every
SOAK_SAMPLE seconds; bounds in check_growth()).

The last line is "soak: 1 passed, 0 failed" or "soak: 0 passed, 1 failed"
and the exit status says the same.
"""
import collections
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
import imap_server  # noqa: E402
from imap_server import Client, fetch_items  # noqa: E402

PW = "soak-secret"
USERS = [f"u{i}" for i in range(6)]
BOXES = ("INBOX", "Archive")
MSGID = re.compile(rb"<([^@>]+)@mailroom\.test>")


def wire(msg):
    return re.sub(rb"(?<!\r)\n", b"\r\n", msg)


def make_message(tag, size):
    """A message whose content follows from (tag, size) alone."""
    head = (f"From: load@example.org\nTo: rcpt@example.org\nSubject: soak {tag}\n"
            f"Message-ID: <{tag}@mailroom.test>\n\n").encode()
    line = (f"{tag} " * 20)[:75].encode() + b"\n"
    return head + f"body of {tag}\n".encode() + line * (size // len(line))


class Disconnected(Exception):
    pass


class Soak:
    def __init__(self, seconds, seed, threads, sample):
        self.seconds, self.seed, self.nthreads, self.sample = seconds, seed, threads, sample
        self.lock = threading.Lock()
        self.user_lock = {u: threading.Lock() for u in USERS}
        # ledger[user][box] = Counter(tag): acknowledged and not removed by us
        self.ledger = {u: {b: collections.Counter() for b in BOXES} for u in USERS}
        self.maybe = {u: {b: collections.Counter() for b in BOXES} for u in USERS}
        self.never = set()
        self.sizes = {}
        self.uidmap = {}  # (user, box, uid) -> tag, every UID ever seen: never another tag
        self.live = collections.defaultdict(set)  # (user, box, tag) -> UIDs it has now
        self.errors = []
        self.ops = collections.Counter()
        self.acked = 0
        self.events = []  # (time, what)
        self.kill_times = []
        self.seq = 0
        self.samples = []
        self.stop_at = None
        self.stopping = False

    # ---- bookkeeping ---------------------------------------------------------

    def new_tag(self, rng):
        with self.lock:
            self.seq += 1
            tag = f"s{self.seed}-{self.seq}"
        r = rng.random()
        size = rng.randint(0, 4000) if r < 0.7 else rng.randint(4000, 40000) if r < 0.95 \
            else rng.randint(100000, 300000)
        self.sizes[tag] = size
        return tag, make_message(tag, size)

    def error(self, what):
        now = time.monotonic()
        with self.lock:
            last = [f"{w} at t={e - self.t0:.1f}s" for e, w in self.events if e >= now - 5]
            self.errors.append(f"t={now - self.t0:.1f}s {what}"
                               + (f" (within 5 s after: {'; '.join(last)})" if last else ""))

    def event(self, what):
        with self.lock:
            self.events.append((time.monotonic(), what))

    def add(self, user, box, tag, uid=None):
        with self.lock:
            self.ledger[user][box][tag] += 1
            self.acked += 1
        if uid is not None:
            self.seen(user, box, uid, tag)

    def seen(self, user, box, uid, tag):
        with self.lock:
            old = self.uidmap.setdefault((user, box, uid), tag)
            self.live[(user, box, tag)].add(uid)
        if old != tag:
            self.error(f"{user}/{box} UID {uid}: was {old}, now {tag} (UID reused)")

    def remove(self, user, box, tag, uid=None):
        with self.lock:
            self.ledger[user][box][tag] -= 1
            if uid is None:
                self.live.pop((user, box, tag), None)
            else:
                self.live[(user, box, tag)].discard(uid)

    def unsure(self, user, box, tag, also=None):
        """A change whose reply was lost: tag may or may not be in box (nor in also)."""
        with self.lock:
            self.ledger[user][box][tag] -= 1
            self.maybe[user][box][tag] += 1
            self.live.pop((user, box, tag), None)
            if also:
                self.maybe[user][also][tag] += 1

    def killed_since(self, t):
        with self.lock:
            return any(k >= t - 1.0 for k in self.kill_times)

    def check_body(self, where, body):
        m = MSGID.search(body[:4096])
        if not m:
            self.error(f"{where}: a message without our Message-ID ({len(body)} bytes)")
            return None
        tag = m.group(1).decode()
        if tag not in self.sizes:
            self.error(f"{where}: unknown message {tag}")
        elif not body.endswith(wire(make_message(tag, self.sizes[tag]))):
            self.error(f"{where}: message {tag} is not intact ({len(body)} bytes)")
        return tag

    # ---- LMTP and deliver -------------------------------------------------------

    def lmtp(self, rng, rcpts=None, drop=None):
        rcpts = rcpts or rng.sample(USERS, rng.randint(1, 3))
        tag, msg = self.new_tag(rng)
        drop = rng.random() < 0.05 if drop is None else drop
        t0 = time.monotonic()
        s = socket.create_connection(("127.0.0.1", self.srv.ports["lmtp"]), timeout=60)
        f = s.makefile("rb")

        def reply():
            lines = []
            while True:
                line = f.readline()
                if not line:
                    raise Disconnected("lmtp")
                lines.append(line.decode(errors="replace").rstrip("\r\n"))
                if lines[-1][3:4] != "-":
                    return lines

        def cmd(text, want):
            s.sendall(text.encode() + b"\r\n")
            r = reply()
            if not r[-1].startswith(want):
                self.error(f"LMTP {text!r}: {r}")
                raise Disconnected("lmtp refused")
            return r

        sent_dot = False
        try:
            reply()
            cmd("LHLO soak.example", "250")
            cmd("MAIL FROM:<load@example.org>", "250")
            for r in rcpts:
                cmd(f"RCPT TO:<{r}>", "250")
            cmd("DATA", "354")
            body = re.sub(rb"(^|\r\n)\.", rb"\1..", wire(msg))
            if drop:
                s.sendall(body[: len(body) // 2])
                with self.lock:
                    self.never.add(tag)
                self.ops["lmtp-drop"] += 1
                return
            s.sendall(body + b".\r\n")
            sent_dot = True
            for r in rcpts:
                line = reply()[-1]
                if line.startswith("250 "):
                    self.add(r, "INBOX", tag, int(line.split()[3]))
                else:
                    self.error(f"LMTP DATA for {r}: {line}")
            cmd("QUIT", "221")
            self.ops["lmtp"] += 1
        except (Disconnected, OSError) as e:
            if self.killed_since(t0):
                self.ops["disconnect-after-kill"] += 1
                if sent_dot:  # the replies not read: each copy may or may not be stored
                    for r in rcpts:
                        with self.lock:
                            if self.ledger[r]["INBOX"][tag] == 0:
                                self.maybe[r]["INBOX"][tag] += 1
            elif not isinstance(e, Disconnected) or str(e) != "lmtp refused":
                self.error(f"LMTP: unexpected disconnect: {e!r}")
        finally:
            s.close()

    def deliver(self, rng):
        user = rng.choice(USERS)
        box = "Archive" if rng.random() < 0.2 else "INBOX"
        tag, msg = self.new_tag(rng)
        args = [imap_server.MAILROOM, "deliver", "-d", str(self.data)]
        if box != "INBOX":
            args += ["-m", box]
        p = subprocess.run(args + [user], input=msg, capture_output=True, timeout=120)
        if p.returncode == 0:
            self.add(user, box, tag)
        else:
            self.error(f"deliver to {user}/{box}: exit {p.returncode} {p.stderr!r}")
            with self.lock:
                self.maybe[user][box][tag] += 1
        self.ops["deliver"] += 1

    # ---- IMAP -------------------------------------------------------------------

    def imap(self, rng):
        user = rng.choice(USERS)
        with self.user_lock[user]:
            t0 = time.monotonic()
            pending = []  # (fn to call if the reply is lost)
            c = None
            try:
                c = Client(self.srv.port, timeout=60)
                self.imap_session(rng, user, c, pending)
                self.ops["imap"] += 1
            except (EOFError, OSError) as e:
                if self.killed_since(t0):
                    self.ops["disconnect-after-kill"] += 1
                    for fn in pending:
                        fn()
                else:
                    self.error(f"IMAP {user}: unexpected disconnect or timeout: {e!r}")
            finally:
                if c:
                    c.close()

    def ok(self, c, text, literal=None):
        untagged, tagged = c.cmd(text, literal=literal)
        if not tagged.startswith(b"OK"):
            self.error(f"IMAP {text[:60]!r}: {tagged[:200]!r}")
            return None, tagged
        return untagged, tagged

    def imap_session(self, rng, user, c, pending):
        if self.ok(c, f'LOGIN "{user}" "{PW}"')[0] is None:
            return
        box = rng.choice(("INBOX", "INBOX", "Archive"))
        other = "Archive" if box == "INBOX" else "INBOX"
        if self.ok(c, f"SELECT {box}")[0] is None:
            return
        untagged, _ = self.ok(c, "UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        msgs = {}  # uid -> tag
        for r in untagged or ():
            if b" FETCH " not in r:
                continue
            _, items = fetch_items(r)
            hdr = next((v for k, v in items.items() if k.startswith("BODY[HEADER")), b"")
            m = MSGID.search(hdr or b"")
            if "UID" in items and m:
                uid, tag = int(items["UID"]), m.group(1).decode()
                msgs[uid] = tag
                self.seen(user, box, uid, tag)
        for _ in range(rng.randint(1, 5)):
            act = rng.choice(("store", "store", "fetch", "append", "copy", "move", "expunge",
                              "expunge", "idle", "drop"))
            uids = sorted(msgs)
            n = min(len(uids), 20 if len(uids) > 200 else 3)
            pick = rng.sample(uids, rng.randint(1, n)) if n else []
            sset = ",".join(map(str, pick))
            if act == "store" and pick:
                fl = rng.choice(("+FLAGS (\\Seen)", "-FLAGS (\\Seen)", "+FLAGS (\\Flagged $Soak)",
                                 "-FLAGS ($Soak)"))
                self.ok(c, f"UID STORE {sset} {fl}")
            elif act == "fetch" and pick:
                untagged, _ = self.ok(c, f"UID FETCH {sset} (UID BODY.PEEK[])")
                for r in untagged or ():
                    if b" FETCH " in r:
                        _, items = fetch_items(r)
                        tag = self.check_body(f"IMAP {user}/{box}", items.get("BODY[]", b""))
                        if tag and msgs.get(int(items["UID"])) != tag:
                            self.error(f"{user}/{box} UID {items['UID']}: body of {tag}")
            elif act == "append":
                tag, msg = self.new_tag(rng)
                data = wire(msg)
                pending.append(lambda t=tag: self.maybe[user][box].update([t]))
                _, tagged = self.ok(c, f"APPEND {box} (\\Seen) {{{len(data)}}}", literal=data + b"\r\n")
                pending.pop()
                m = re.search(rb"APPENDUID \d+ (\d+)", tagged)
                if tagged.startswith(b"OK") and m:
                    self.add(user, box, tag, int(m.group(1)))
                elif tagged.startswith(b"OK"):
                    self.error(f"APPEND OK without APPENDUID: {tagged!r}")
            elif act in ("copy", "move") and pick:
                tags = [msgs[u] for u in pick]
                if act == "move":
                    pending.append(lambda ts=tags: [self.unsure(user, box, t, also=other) for t in ts])
                else:
                    pending.append(lambda ts=tags: [self.maybe[user][other].update([t]) for t in ts])
                untagged, tagged = self.ok(c, f"UID {act.upper()} {sset} {other}")
                pending.pop()
                if untagged is not None:
                    for u, t in zip(pick, tags):
                        self.add(user, other, t)
                        if act == "move":
                            self.remove(user, box, t, u)
                            del msgs[u]
            elif act == "expunge" and pick:
                if self.ok(c, f"UID STORE {sset} +FLAGS.SILENT (\\Deleted)")[0] is None:
                    continue
                tags = [msgs[u] for u in pick]
                pending.append(lambda ts=tags: [self.unsure(user, box, t) for t in ts])
                untagged, _ = self.ok(c, f"UID EXPUNGE {sset}")
                pending.pop()
                if untagged is not None:
                    for u, t in zip(pick, tags):
                        self.remove(user, box, t, u)
                        del msgs[u]
            elif act == "idle":
                self.idle(rng, user, box, c)
            elif act == "drop":
                if rng.random() < 0.5:
                    c.send(b"x1 UID FETCH 1:* (FLAGS BODY.PE")
                else:
                    tag, msg = self.new_tag(rng)
                    data = wire(msg)
                    with self.lock:
                        self.never.add(tag)
                    c.send(f"x1 APPEND {box} {{{len(data)}+}}\r\n".encode() + data[: len(data) // 2])
                self.ops["imap-drop"] += 1
                return
        self.ok(c, "LOGOUT")

    def idle(self, rng, user, box, c):
        c.n += 1
        tag = f"t{c.n}".encode()
        c.send(tag + b" IDLE\r\n")
        r = c._read_response()
        if not r.startswith(b"+"):
            self.error(f"IDLE: {r!r}")
            return
        if box == "INBOX" and rng.random() < 0.7:
            self.lmtp(rng, rcpts=[user], drop=False)
            c.sock.settimeout(10)
            deadline = time.monotonic() + 10
            seen = False
            while time.monotonic() < deadline and not seen:
                try:
                    r = c._read_response()
                except socket.timeout:
                    break
                seen = r.endswith(b" EXISTS")
            c.sock.settimeout(60)
            if not seen:
                self.error(f"IDLE {user}: no EXISTS within 10 s of a delivery")
        else:
            time.sleep(rng.uniform(0.2, 1.5))
        c.send(b"DONE\r\n")
        while True:
            r = c._read_response()
            if r.startswith(tag + b" "):
                if not r[len(tag) + 1:].startswith(b"OK"):
                    self.error(f"IDLE DONE: {r!r}")
                return

    # ---- POP3 -------------------------------------------------------------------

    def pop3(self, rng):
        user = rng.choice(USERS)
        with self.user_lock[user]:
            t0 = time.monotonic()
            s = socket.create_connection(("127.0.0.1", self.srv.ports["pop3"]), timeout=60)
            f = s.makefile("rb")
            deleted = []
            quit_sent = False

            def line():
                l = f.readline()
                if not l:
                    raise Disconnected("pop3")
                return l.rstrip(b"\r\n")

            def cmd(text, multi=False):
                s.sendall(text.encode() + b"\r\n")
                first = line()
                if not first.startswith(b"+OK"):
                    self.error(f"POP3 {text.split()[0]}: {first!r}")
                    raise Disconnected("pop3 refused")
                if not multi:
                    return first, None
                out = []
                while True:
                    l = line()
                    if l == b".":
                        return first, b"\r\n".join(out) + (b"\r\n" if out else b"")
                    out.append(l[1:] if l.startswith(b".") else l)

            try:
                line()
                cmd(f"USER {user}")
                cmd(f"PASS {PW}")
                first, _ = cmd("STAT")
                count = int(first.split()[1])
                _, uidl = cmd("UIDL", multi=True)
                if len(uidl.splitlines()) != count:
                    self.error(f"POP3 {user}: STAT {count} but UIDL lists {len(uidl.splitlines())}")
                for n in rng.sample(range(1, count + 1), min(count, rng.randint(1, 3))):
                    _, body = cmd(f"RETR {n}", multi=True)
                    tag = self.check_body(f"POP3 {user}", body)
                    if tag and rng.random() < 0.5:
                        cmd(f"DELE {n}")
                        deleted.append(tag)
                if rng.random() < 0.1:
                    self.ops["pop3-drop"] += 1  # no QUIT: the DELEs must not happen
                    return
                quit_sent = True
                cmd("QUIT")
                for t in deleted:
                    self.remove(user, "INBOX", t)
                self.ops["pop3"] += 1
            except (Disconnected, OSError) as e:
                if self.killed_since(t0):
                    self.ops["disconnect-after-kill"] += 1
                    if quit_sent:
                        for t in deleted:
                            self.unsure(user, "INBOX", t)
                elif str(e) != "pop3 refused":
                    self.error(f"POP3 {user}: unexpected disconnect or timeout: {e!r}")
            finally:
                s.close()

    # ---- threads ----------------------------------------------------------------

    def load(self, i):
        rng = random.Random(self.seed * 1000 + i)
        ops = (self.lmtp, self.lmtp, self.deliver, self.imap, self.imap, self.imap, self.pop3)
        while time.monotonic() < self.stop_at:
            op = rng.choice(ops)
            try:
                op(rng)
            except Exception as e:  # a bug of the soak or a reply it cannot parse
                self.error(f"{op.__name__}: {type(e).__name__}: {e}")

    def workers(self):
        """(auth pid, [worker pids]). The auth process is the child that,
        settled (1 s old), holds no DATA/mail open; it keeps its PID."""
        kids = self.srv.children()
        if self.auth_pid not in kids:
            self.auth_pid = None
            for pid in kids:
                try:
                    links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
                except OSError:
                    continue
                if proc_age(pid) > 1 and not any(l.endswith("/mail") for l in links):
                    self.auth_pid = pid
        return self.auth_pid, [p for p in kids if p != self.auth_pid]

    def chaos(self):
        rng = random.Random(self.seed)
        period = 15 if self.seconds <= 600 else 30
        nxt = {"kill": self.t0 + period, "hup": self.t0 + period * 1.6, "index": self.t0 + period * 2.3}
        while time.monotonic() < self.stop_at - 5:
            time.sleep(0.5)
            now = time.monotonic()
            if now >= nxt["kill"]:
                nxt["kill"] = now + period * rng.uniform(0.7, 1.3)
                _, ws = self.workers()
                old = [w for w in ws if proc_age(w) > 10]
                if old:
                    victim = rng.choice(old)
                    with self.lock:
                        self.kill_times.append(time.monotonic())
                    os.kill(victim, signal.SIGKILL)
                    self.event(f"SIGKILL worker {victim}")
                    deadline = time.monotonic() + 15
                    while time.monotonic() < deadline:
                        _, ws2 = self.workers()
                        if len([w for w in ws2 if w != victim]) >= self.nworkers:
                            break
                        time.sleep(0.2)
                    else:
                        self.error(f"worker {victim} killed: not replaced within 15 s")
            if now >= nxt["hup"]:
                nxt["hup"] = now + period * rng.uniform(1.2, 2.0)
                os.kill(self.srv.pid, signal.SIGHUP)
                self.event("SIGHUP master")
            if now >= nxt["index"]:
                nxt["index"] = now + period * rng.uniform(2.0, 3.0)
                user = rng.choice(USERS)
                for suffix in ("", "-wal", "-shm"):
                    try:
                        os.unlink(self.data / "mail" / user / f"index.sqlite{suffix}")
                    except FileNotFoundError:
                        pass
                self.event(f"index.sqlite of {user} deleted")

    def sampler(self):
        while not self.stopping:
            self.take_sample()
            end = time.monotonic() + self.sample
            while not self.stopping and time.monotonic() < end:
                time.sleep(0.2)

    def take_sample(self):
        auth, ws = self.workers()
        wr = [rss_kb(w) for w in ws]
        wf = [nfds(w) for w in ws]
        with self.lock:
            row = dict(t=time.monotonic() - self.t0, ops=sum(self.ops.values()), acked=self.acked,
                       errors=len(self.errors), m_rss=rss_kb(self.srv.pid), m_fd=nfds(self.srv.pid),
                       a_rss=settled_rss_kb(auth) if auth else 0, a_fd=nfds(auth) if auth else 0,
                       nw=len(ws), w_rss=max(wr, default=0), w_fd=max(wf, default=0),
                       log=os.path.getsize(self.srv._logfile.name))
            self.samples.append(row)
        if len(self.samples) == 1:
            print(f"{'t(s)':>6} {'ops':>6} {'acked':>6} {'err':>4} | {'master rss/fd':>14} | "
                  f"{'auth rss/fd':>12} | {'workers n, max rss/fd':>22} | {'log KB':>7}", flush=True)
        print(f"{row['t']:6.0f} {row['ops']:6d} {row['acked']:6d} {row['errors']:4d} | "
              f"{row['m_rss']:8d}KB {row['m_fd']:4d} | {row['a_rss']:6d}KB {row['a_fd']:4d} | "
              f"{row['nw']:3d} {row['w_rss']:10d}KB {row['w_fd']:5d} | {row['log'] / 1024:7.0f}",
              flush=True)

    # ---- the run ---------------------------------------------------------------

    def setup(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="mailroom-soak-"))
        os.chmod(self.tmp, 0o755)
        self.data = self.tmp / "data"
        self.data.mkdir()
        for u in USERS:
            imap_server.add_user(self.data, u, PW)
        self.nworkers = 2
        self.auth_pid = None
        self.srv = imap_server.start(str(self.data), extra_opts={"workers": str(self.nworkers)},
                                     protocols=("imap", "pop3", "lmtp"))
        for u in USERS:
            c = Client(self.srv.port)
            c.login(u, PW)
            _, tagged = c.cmd("CREATE Archive")  # may exist already (special-use defaults)
            assert tagged.startswith(b"OK") or b"[ALREADYEXISTS]" in tagged, tagged
            c.close()

    def run(self):
        print(f"soak: seed {self.seed}, {self.seconds} s, {self.nthreads} load threads "
              f"(reproduce: SOAK_SEED={self.seed} SOAK_SECONDS={self.seconds} make soak)", flush=True)
        self.setup()
        self.t0 = time.monotonic()
        self.stop_at = self.t0 + self.seconds
        threads = [threading.Thread(target=self.load, args=(i,), daemon=True) for i in range(self.nthreads)]
        threads.append(threading.Thread(target=self.chaos, daemon=True))
        sampler = threading.Thread(target=self.sampler, daemon=True)
        sampler.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=max(1, self.stop_at - time.monotonic()) + 180)
            if t.is_alive():
                self.error("a load thread did not finish within 180 s of the end (server hung?)")
        self.stopping = True
        sampler.join(timeout=30)
        self.take_sample()
        self.lost = self.extra = 0
        try:
            problems = self.verify()
        except (OSError, EOFError, AssertionError) as e:  # the server is gone or refuses
            problems = [f"final verification failed: {type(e).__name__}: {e}"]
        problems += self.check_growth()
        self.srv.stop(timeout=30)
        p = subprocess.run([imap_server.MAILROOM, "check", "-d", str(self.data)],
                           capture_output=True, timeout=600)
        if p.returncode != 0:
            problems.append(f"mailroom check after the stop: exit {p.returncode}: "
                            f"{(p.stdout + p.stderr).decode(errors='replace')[-1500:]}")
        return self.report(problems)

    def verify(self):
        """The final state, by fresh IMAP sessions, against the ledger."""
        problems = []
        lost = extra = 0
        for user in USERS:
            c = Client(self.srv.port, timeout=120)
            c.login(user, PW)
            for box in BOXES:
                c.ok(f"EXAMINE {box}")
                untagged, tagged = c.cmd("UID FETCH 1:* (UID BODY.PEEK[])")
                if not tagged.startswith(b"OK"):
                    problems.append(f"final FETCH {user}/{box}: {tagged!r}")
                    continue
                have = collections.Counter()
                where = {}
                for r in untagged:
                    if b" FETCH " not in r:
                        continue
                    _, items = fetch_items(r)
                    uid = int(items["UID"])
                    tag = self.check_body(f"final {user}/{box}", items.get("BODY[]", b""))
                    if tag is None:
                        continue
                    have[tag] += 1
                    where.setdefault(tag, set()).add(uid)
                    known = self.uidmap.get((user, box, uid))
                    if known is not None and known != tag:
                        problems.append(f"{user}/{box} UID {uid} was {known}, is {tag}")
                    if tag in self.never:
                        problems.append(f"{user}/{box} UID {uid}: {tag} was abandoned mid-transfer, yet stored")
                want, maybe = self.ledger[user][box], self.maybe[user][box]
                for tag in set(want) | set(have):
                    w, h, m = max(want[tag], 0), have[tag], maybe[tag]
                    if h < w:
                        lost += w - h
                        problems.append(f"LOST {user}/{box} {tag}: acknowledged {w}, present {h}")
                    elif h > w + m and tag not in self.never:
                        extra += h - w - m
                        problems.append(f"UNEXPECTED {user}/{box} {tag}: acknowledged {w}"
                                        f" (+{m} unsure), present {h}")
                for (u, b, tag), uids in list(self.live.items()):
                    if u == user and b == box and have[tag] and have[tag] == want[tag] \
                            and maybe[tag] == 0 and not uids <= where.get(tag, set()):
                        problems.append(f"{user}/{box} {tag}: UIDs {sorted(uids)} became"
                                        f" {sorted(where[tag])}")
            c.close()
        self.lost, self.extra = lost, extra
        return problems

    def check_growth(self):
        """RSS and descriptors flat after warm-up; log bytes per operation too."""
        warm = max(30.0, self.seconds * 0.2)
        s = [r for r in self.samples if r["t"] >= warm]
        if len(s) < 3:
            return [f"too few samples after the {warm:.0f} s warm-up: {len(s)}"]
        # A leak stays; a spike (a hash running, a burst of sessions) does
        # not: compare the least of the last three samples with the median
        # of the first three after warm-up.
        head, tail = s[:3], s[-3:]
        base = {k: sorted(r[k] for r in head)[1] for k in head[0]}
        problems = []

        def bound(name, key, limit):
            end = min(r[key] for r in tail)
            if end > limit:
                problems.append(f"{name} grew: {base[key]} after warm-up, {end} at the end (limit {limit:.0f})")

        bound("master RSS KB", "m_rss", base["m_rss"] * 1.1 + 2048)
        bound("master fds", "m_fd", base["m_fd"] + 2)
        bound("auth RSS KB", "a_rss", base["a_rss"] * 1.1 + 2048)
        bound("auth fds", "a_fd", base["a_fd"] + 4)
        wbase = max(r["w_rss"] for r in s[: max(1, len(s) // 3)])
        bound("worker RSS KB", "w_rss", wbase * 1.5 + 8192)
        fbase = max(r["w_fd"] for r in s[: max(1, len(s) // 3)])
        bound("worker fds", "w_fd", fbase + 32)
        first, last = s[0], s[-1]
        mid = s[len(s) // 2]

        def per_op(a, b):
            return (b["log"] - a["log"]) / max(1, b["ops"] - a["ops"])

        r1, r2 = per_op(first, mid), per_op(mid, last)
        print(f"log bytes per operation: {r1:.0f} (first half after warm-up), {r2:.0f} (second half)")
        if r2 > r1 * 2 + 200:
            problems.append(f"log grows faster per operation: {r1:.0f} then {r2:.0f} bytes")
        return problems

    def report(self, problems):
        print("\nevents:", collections.Counter(w.split(" ")[0] + " " + w.split(" ")[1]
                                             for _, w in self.events))
        print("operations:", dict(self.ops))
        print(f"acknowledged messages: {self.acked}; lost: {self.lost}; unexpected: {self.extra};"
              f" protocol errors: {len(self.errors)}")
        for e in self.errors[:40]:
            print("  error:", e)
        if len(self.errors) > 40:
            print(f"  ... {len(self.errors) - 40} more")
        for p in problems[:40]:
            print("  problem:", p)
        if len(problems) > 40:
            print(f"  ... {len(problems) - 40} more")
        failed = bool(self.errors or problems)
        if failed:
            log = self.srv.log()
            (self.tmp / "server.log").write_text(log)
            print("server log (last lines):\n" + "\n".join(log.splitlines()[-30:]))
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        print(f"seed {self.seed}; data and server.log kept in {self.tmp}" if failed else f"seed {self.seed}")
        print(f"soak: {0 if failed else 1} passed, {1 if failed else 0} failed")
        return 1 if failed else 0


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def settled_rss_kb(pid):
    """The auth process's RSS between hashes: yescrypt takes 16 MB while it
    runs and gives it back, so take the least of a few reads."""
    least = rss_kb(pid)
    for _ in range(5):
        time.sleep(0.02)
        least = min(least, rss_kb(pid))
    return least


def nfds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def proc_age(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            start = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            up = float(f.read().split()[0])
        return up - start / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0


def main():
    seconds = int(os.environ.get("SOAK_SECONDS", "1800"))
    seed = int(os.environ.get("SOAK_SEED") or int(time.time()) % 1000000)
    threads = int(os.environ.get("SOAK_THREADS", "4"))
    sample = int(os.environ.get("SOAK_SAMPLE") or (10 if seconds <= 600 else 60))
    if os.geteuid() != 0:
        print("soak: must run as root (the server drops privileges to its run_user)")
        print("soak: 0 passed, 1 failed")
        return 1
    soak = Soak(seconds, seed, threads, sample)
    try:
        return soak.run()
    finally:
        if getattr(soak, "srv", None) is not None:
            soak.srv.stop(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
