/*
 * pop3.h: the POP3 protocol (src/pop3), as the server calls it: RFC 1939
 * with CAPA (RFC 2449), STLS (RFC 2595), AUTH (RFC 5034) and response codes
 * (RFC 2449 8, RFC 3206). The maildrop is the user's INBOX.
 *
 * The server accepts a connection on a POP3 or POP3S listener, wraps it in
 * a struct conn and calls session_start(env, &pop3_proto, c): the greeting
 * is sent at once (an implicit-TLS conn is already TLS). The session core
 * runs it from then on, until the client leaves.
 *
 * Server shutdown (session_shutdown_all): every session ends after its
 * current command or transfer with "-ERR [SYS/TEMP] Server shutting down"
 * (not sent when a command was running: that command's answer is the last)
 * and closes, without entering the UPDATE state (nothing marked deleted is
 * removed).
 */
#ifndef MAILROOM_POP3_H
#define MAILROOM_POP3_H

#include "session/session.h"

extern const struct session_proto pop3_proto;

#endif
