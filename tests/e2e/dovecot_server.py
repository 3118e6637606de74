"""A private Dovecot 2.3 (Debian's) for tests: the reference server and the
source of migrations.

    dv = DovecotServer(users={"alice": "pw"}, protocols=("imap", "pop3"))
    dv.start()            # apt-get installs dovecot-imapd/-pop3d if missing
    dv.imap_port, dv.pop3_port, dv.maildir("alice")
    dv.stop()             # by the PID in its run folder

It runs from a config in its own temp folder (not under pytest's tmp, which
is 0700: Dovecot's unprivileged processes must reach it), listens on
127.0.0.1 on free ports, keeps mail in maildir:~/Maildir (Maildir++), and
runs mail processes as mail_user:mail_group (default nobody:nogroup). extra_conf is appended
to the config (e.g. "mail_location = maildir:~/Maildir:LAYOUT=fs").
A component that cannot be installed or started fails the test: no skip.
"""
import os
import pathlib
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

PACKAGES = {"imap": "dovecot-imapd", "pop3": "dovecot-pop3d", "lmtp": "dovecot-lmtpd"}
BINARY = "/usr/sbin/dovecot"


def ensure_packages(protocols):
    """Install what is missing (Debian's packages); fail if that cannot be done."""
    missing = []
    for p in protocols:
        pkg = PACKAGES[p]
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
        if "install ok installed" not in r.stdout:
            missing.append(pkg)
    if not missing and os.path.exists(BINARY):
        return BINARY
    if os.geteuid() != 0:
        pytest.fail("Dovecot (%s) is not installed and we are not root to install it" % missing)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + missing,
                       env=env, timeout=900, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, timeout=300,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        r = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + missing,
                           env=env, timeout=900, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode != 0 or not os.path.exists(BINARY):
        pytest.fail("Dovecot (%s) cannot be installed: %s" % (missing, r.stderr[-300:]))
    return BINARY


def free_port():
    for _ in range(200):
        port = random.randint(21000, 29000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


class DovecotServer:
    def __init__(self, users, protocols=("imap",), mail_user="nobody", mail_group=None,
                 extra_conf="", imap_port=None, pop3_port=None):
        self.users = dict(users)
        self.protocols = tuple(protocols)
        self.mail_user = mail_user
        self.mail_group = mail_group or ("nogroup" if mail_user == "nobody" else mail_user)
        self.extra_conf = extra_conf
        self.imap_port = imap_port or (free_port() if "imap" in protocols else 0)
        self.pop3_port = pop3_port or (free_port() if "pop3" in protocols else 0)
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="mailroom-dovecot-"))
        os.chmod(self.dir, 0o755)
        self.running = False

    def home(self, user):
        return self.dir / "mail" / user

    def maildir(self, user):
        return self.home(user) / "Maildir"

    def log(self):
        try:
            return (self.dir / "dovecot.log").read_text()[-3000:]
        except OSError:
            return ""

    def _config(self):
        d = self.dir
        listeners = ""
        if "imap" in self.protocols:
            listeners += f"""
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}"""
        if "pop3" in self.protocols:
            listeners += f"""
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}"""
        return f"""
instance_name = mailroom-test-{os.getpid()}-{self.imap_port}-{self.pop3_port}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
protocols = {" ".join(p for p in self.protocols if p != "lmtp")}
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {d}/passwd
}}
userdb {{
  driver = static
  args = uid={self.mail_user} gid={self.mail_group} home={d}/mail/%u
}}
{listeners}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
{self.extra_conf}
"""

    def start(self):
        ensure_packages(self.protocols)
        d = self.dir
        for sub in ("run", "state", "mail"):
            (d / sub).mkdir(exist_ok=True)
        os.chmod(d / "mail", 0o777)
        (d / "passwd").write_text("".join("%s:{PLAIN}%s\n" % kv for kv in self.users.items()))
        (d / "dovecot.conf").write_text(self._config())
        # dovecot daemonizes; its children must not inherit pipes we wait on
        with open(d / "start.out", "wb") as out:
            r = subprocess.run([BINARY, "-c", str(d / "dovecot.conf")], stdin=subprocess.DEVNULL,
                               stdout=out, stderr=subprocess.STDOUT, timeout=60)
        if r.returncode != 0:
            pytest.fail("dovecot did not start: %s %s" % ((d / "start.out").read_text(), self.log()))
        self.running = True
        for port in (self.imap_port, self.pop3_port):
            if not port:
                continue
            deadline = time.time() + 20
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.time() > deadline:
                        self.stop()
                        pytest.fail("dovecot is not listening on %d: %s" % (port, self.log()))
                    time.sleep(0.1)
        return self

    def stop(self):
        """Stop Dovecot (by its master's PID) and wait until its ports are free."""
        if not self.running:
            return
        self.running = False
        try:
            pid = int((self.dir / "run" / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
