#!/bin/sh
# Install the Debian packages a make target needs, when they are missing.
# Usage: scripts/deps.sh build|test|run|bench
# Runs apt-get only if something is missing, so a warm machine pays nothing.
set -eu

build="gcc make pkg-config libsqlite3-dev libcrypt-dev libevent-dev libssl-dev zlib1g-dev"
# test: every client or server an e2e test drives (a test that cannot find
# its component fails, it does not skip): curl, isync (mbsync), fetchmail,
# postfix, dovecot-imapd (the MIME reference), openssl, procps (pgrep).
test="$build libcmocka-dev python3-pytest python3-pytest-xdist clang libclang-rt-14-dev strace curl isync offlineimap3 fetchmail postfix dovecot-imapd dovecot-pop3d openssl procps e2fsprogs mutt time rsync"
run="$build openssl"
bench="$build dovecot-imapd dovecot-pop3d dovecot-lmtpd"

case "${1:-build}" in
build) want=$build ;;
test) want=$test ;;
run) want=$run ;;
bench) want=$bench ;;
*) echo "usage: $0 build|test|run|bench" >&2; exit 64 ;;
esac

missing=""
for p in $want; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing Debian packages:$missing (run as root, or install them)" >&2
	exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
# postfix asks what kind of mail system this is: none (its test writes its own).
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
# The daemons of these packages (postfix on 25, dovecot on 143/110/993/995,
# fetchmail) are no part of the tests, which run their own instances on free
# ports: none is started by the install (a policy-rc.d that says 101, where the
# machine has none), and those installed now are disabled (no start at boot)
# and stopped if something started them anyway.
policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
	policy=/usr/sbin/policy-rc.d
	printf '#!/bin/sh\n# scripts/deps.sh: no daemon starts while it installs\nexit 101\n' >$policy
	chmod 755 $policy
	trap 'rm -f $policy' EXIT
fi
apt-get update -qq || true
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
for svc in postfix dovecot fetchmail; do
	case " $missing " in *" $svc "* | *" $svc-"*) ;; *) continue ;; esac
	if [ -d /run/systemd/system ]; then
		systemctl disable --now "$svc" >/dev/null 2>&1 || true
	elif [ -x "/etc/init.d/$svc" ]; then
		update-rc.d "$svc" disable >/dev/null 2>&1 || true
		"/etc/init.d/$svc" stop >/dev/null 2>&1 || true
	fi
	echo "deps: $svc installed, its system daemon disabled (tests run their own)"
done
