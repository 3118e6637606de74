"""bench/compare/reference.py: the reference server (Dovecot from Debian),
run by hand from a private config in a temporary folder.

    ref = reference.Dovecot({"alice": "pw", ...})     # or {"alice": "{SHA256-CRYPT}$5$..."}
    ref.start()        # ref.ports == {"imap": N, "pop3": N, "lmtp": N} on 127.0.0.1
    ...
    ref.stop()         # by the PID in DIR/run/master.pid, then leftovers by PID

Installs dovecot-imapd, dovecot-lmtpd and dovecot-pop3d with apt-get when a
piece is missing (root only). The config (DIR/dovecot.conf):
  - base_dir, state_dir, log_path, instance_name inside DIR; ssl = no;
    disable_plaintext_auth = no; mail_location = maildir:~/Maildir;
  - passwd-file passdb: a password given in clear is written as {PLAIN}pw,
    one that starts with '{' (a scheme prefix) is written as given;
  - static userdb uid=mail gid=mail home=DIR/mail/%u (mailroom's workers run
    as `mail` too); auth_username_format = %Ln so that the LMTP recipient
    user@example.org is the user `user`, as for mailroom; first_valid_uid
    and first_valid_gid lowered to mail's (8) so Dovecot accepts that uid;
  - inet listeners for imap, pop3 and lmtp on free loopback high ports;
  - Dovecot's default fsync behaviour (mail_fsync is not set: "optimized");
  - process/client limits raised (default_process_limit,
    default_client_limit, imap-login/pop3-login in high-performance mode
    with a large client_limit) and RLIMIT_NOFILE raised for the master.
"""

import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DOVECOT = "/usr/sbin/dovecot"
PACKAGES = {"dovecot-imapd": "/usr/lib/dovecot/imap",
            "dovecot-lmtpd": "/usr/lib/dovecot/lmtp",
            "dovecot-pop3d": "/usr/lib/dovecot/pop3"}


def ensure_installed():
    """Install the Dovecot packages that are missing; returns the binary.
    Raises RuntimeError (with the reason) when it cannot."""
    missing = [p for p, f in PACKAGES.items() if not os.path.exists(f)]
    if not os.path.exists(DOVECOT) or missing:
        if os.geteuid() != 0:
            raise RuntimeError(f"Dovecot packages missing ({' '.join(missing) or 'dovecot-core'})"
                               " and not root to install them")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        pkgs = missing or list(PACKAGES)
        r = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + pkgs,
                           env=env, capture_output=True, text=True, timeout=900)
        if r.returncode != 0:  # stale package lists: update once, then retry
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
            r = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + pkgs,
                               env=env, capture_output=True, text=True, timeout=900)
        still = [p for p, f in PACKAGES.items() if not os.path.exists(f)]
        if r.returncode != 0 or still or not os.path.exists(DOVECOT):
            raise RuntimeError(f"apt-get install {' '.join(pkgs)} failed: {r.stderr[-400:]}")
    return DOVECOT


def version():
    try:
        return subprocess.run([DOVECOT, "--version"], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except OSError:
        return "?"


def free_port(taken=()):
    for _ in range(200):
        port = random.randint(30000, 60000)
        if port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


def _answers(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class Dovecot:
    def __init__(self, users, root=None, protocols=("imap", "pop3", "lmtp")):
        """users: {name: password or '{SCHEME}hash'}. root: a folder to
        create DIR in (default /tmp; it must be reachable by `mail` and
        `dovecot`, so it is made 0755)."""
        self.users = dict(users)
        self.protocols = tuple(protocols)
        self.dir = Path(tempfile.mkdtemp(prefix="mailroom-ref-dovecot-", dir=root or "/tmp"))
        os.chmod(self.dir, 0o755)
        self.ports = {}
        self.pid = None
        self.pids = []  # every process of the instance seen while running

    # ---- config ----
    def write_config(self):
        d = self.dir
        for sub in ("run", "state", "mail"):
            (d / sub).mkdir(exist_ok=True)
        try:
            shutil.chown(d / "mail", "mail", "mail")
        except (LookupError, PermissionError):
            os.chmod(d / "mail", 0o777)
        with open(d / "passwd", "w") as f:
            for name, pw in self.users.items():
                f.write(f"{name}:{pw if pw.startswith('{') else '{PLAIN}' + pw}\n")
        os.chmod(d / "passwd", 0o644)
        taken = set()
        for p in self.protocols:
            self.ports[p] = free_port(taken)
            taken.add(self.ports[p])
        ncpu = os.cpu_count() or 1
        import pwd
        mail_uid, mail_gid = pwd.getpwnam('mail')[2:4]
        listeners = ""
        if "imap" in self.ports:
            listeners += f"""
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.ports['imap']}
  }}
  inet_listener imaps {{
    port = 0
  }}
  service_count = 0
  process_min_avail = {ncpu}
  process_limit = {max(4, ncpu * 2)}
  client_limit = 12000
  vsz_limit = 1G
}}
service imap {{
  process_limit = 12000
}}
"""
        if "pop3" in self.ports:
            listeners += f"""
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {self.ports['pop3']}
  }}
  inet_listener pop3s {{
    port = 0
  }}
  service_count = 0
  process_min_avail = {ncpu}
  process_limit = {max(4, ncpu * 2)}
  client_limit = 12000
}}
"""
        if "lmtp" in self.ports:
            listeners += f"""
service lmtp {{
  unix_listener lmtp {{
    mode = 0600
  }}
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.ports['lmtp']}
  }}
  process_limit = 1000
}}
"""
        conf = f"""# written by bench/compare/reference.py
instance_name = mailroom-ref-{self.ports.get('imap') or os.getpid()}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
protocols = {' '.join(self.protocols)}
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_username_format = %Ln
mail_location = maildir:~/Maildir
first_valid_uid = {mail_uid}
first_valid_gid = {mail_gid}
postmaster_address = postmaster@example.org
hostname = ref.example.org
default_process_limit = 12000
default_client_limit = 12000
default_vsz_limit = 1G
passdb {{
  driver = passwd-file
  args = {d}/passwd
}}
userdb {{
  driver = static
  args = uid=mail gid=mail home={d}/mail/%u
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
service anvil {{
  client_limit = 15000
}}
service auth {{
  client_limit = 15000
}}
service imap-urlauth-login {{
  process_limit = 1
}}
{listeners}"""
        (d / "dovecot.conf").write_text(conf)
        return d / "dovecot.conf"

    # ---- run ----
    def start(self, timeout=30):
        binary = ensure_installed()
        conf = self.write_config()

        def limits():
            try:
                soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, 65536), max(hard, 65536)))
            except (ValueError, OSError):
                soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        # dovecot daemonizes; its children must not inherit pipes we wait on
        with open(self.dir / "start.out", "wb") as out:
            r = subprocess.run([binary, "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=out,
                               stderr=subprocess.STDOUT, timeout=60, preexec_fn=limits)
        if r.returncode != 0:
            raise RuntimeError(f"dovecot did not start: {(self.dir / 'start.out').read_text()} {self.log()}")
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.pid is None:
                try:
                    self.pid = int((self.dir / "run" / "master.pid").read_text().strip())
                except (OSError, ValueError):
                    pass
            if self.pid and all(_answers(p) for p in self.ports.values()):
                self.pids = self.all_pids()
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"dovecot is not listening on {self.ports}: {self.log()}")

    def all_pids(self):
        """The master and all its descendants (now)."""
        if not self.pid:
            return []
        parent = {}
        for e in os.listdir("/proc"):
            if e.isdigit():
                try:
                    with open(f"/proc/{e}/stat") as f:
                        parent[int(e)] = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    pass
        out, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            if p in parent or p == self.pid:
                out.append(p)
                todo += [c for c, pp in parent.items() if pp == p]
        return out

    def log(self):
        try:
            return (self.dir / "dovecot.log").read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def stop(self, timeout=10, remove=True):
        """SIGTERM the master (PID from DIR/run/master.pid), wait, then
        SIGKILL it and every process of the instance still there, by PID."""
        pid = self.pid
        if pid is None:
            try:
                pid = int((self.dir / "run" / "master.pid").read_text().strip())
            except (OSError, ValueError):
                pid = None
        pids = set(self.pids)
        if pid:
            self.pid = pid
            pids |= set(self.all_pids())
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.time() + timeout
            while time.time() < deadline and _running(pid):
                time.sleep(0.1)
        deadline = time.time() + 3
        for p in sorted(pids):
            while time.time() < deadline and _running(p):
                time.sleep(0.05)
            if _running(p):
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
        self.pid = None
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)


if __name__ == "__main__":  # smoke test: start, show ports, stop
    ref = Dovecot({"alice": "pw"})
    try:
        ref.start()
        print(version(), ref.ports, ref.dir, "pids", ref.all_pids())
    finally:
        ref.stop(remove=False)
        print(ref.log())
        shutil.rmtree(ref.dir, ignore_errors=True)
