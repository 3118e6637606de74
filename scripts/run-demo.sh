#!/bin/sh
# make run: create a demo DATA folder under the checkout (once) with a user
# `demo` whose random password is printed, then start the server on it.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
bin="$top/build/mailroom"
data="$top/demo/data"

if [ ! -f "$data/passwd" ]; then
	mkdir -p "$data"
	pw=$(head -c 12 /dev/urandom | base64 | tr -d '/+=' | cut -c1-12)
	printf '%s\n' "$pw" | "$bin" user add -d "$data" demo >/dev/null
	printf '%s\n' "$pw" > "$top/demo/demo-password"
	chmod 600 "$top/demo/demo-password"
	printf 'From: Welcome <postmaster@localhost>\nTo: demo@localhost\nSubject: Welcome to mailroom\n\nThis message was delivered by `mailroom deliver`.\n' |
		"$bin" deliver -d "$data" demo
	echo "created $data with user demo"
fi
pw=$(cat "$top/demo/demo-password")
echo "demo user:     demo"
echo "demo password: $pw"
echo "data folder:   $data"

cat <<EOT

IMAP   127.0.0.1:1143 (STARTTLS)   IMAPS 127.0.0.1:1993 (self-signed certificate)
       user demo, password $pw, normal password authentication
Try:   curl -s --user 'demo:$pw' 'imap://127.0.0.1:1143/INBOX;UID=1'
       printf 'Subject: hi\\n\\nhello\\n' | $bin deliver -d $data demo
POP3   127.0.0.1:1110 (STLS)      POP3S 127.0.0.1:1995
LMTP   127.0.0.1:2424 (for an MTA: Postfix virtual_transport = lmtp:inet:127.0.0.1:2424)
Stop with Ctrl-C.
EOT
exec "$bin" serve -d "$data"
