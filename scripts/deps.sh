#!/bin/sh
# Install the Debian packages a make target needs, when they are missing.
# Usage: scripts/deps.sh build|test|run|bench
# Runs apt-get only if something is missing, so a warm machine pays nothing.
set -eu

build="gcc make pkg-config libsqlite3-dev libcrypt-dev libevent-dev libssl-dev zlib1g-dev"
test="$build libcmocka-dev python3-pytest clang libclang-rt-14-dev strace e2fsprogs"
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
apt-get update -qq || true
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
