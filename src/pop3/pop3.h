/*
 * pop3.h: the POP3 protocol (src/pop3), as the server calls it: RFC 1939
 * with CAPA (RFC 2449), STLS (RFC 2595), AUTH (RFC 5034) and response codes
 * (RFC 2449 8, RFC 3206). The maildrop is the user's INBOX.
 *
 * The server accepts a connection on a POP3 or POP3S listener, wraps it in
 * a struct conn and calls pop3_session_start(). Everything else happens in
 * the session, which ends by itself when the client leaves.
 */
#ifndef MAILROOM_POP3_H
#define MAILROOM_POP3_H

#include "session/session.h"

struct conn;

/* Start a session on c: the greeting is sent at once (an implicit-TLS conn
 * is already TLS). env outlives the session. */
void pop3_session_start(struct session_env *env, struct conn *c);
/* Server shutdown: every session ends after its current command or
 * transfer with "-ERR [SYS/TEMP] Server shutting down" and closes, without
 * entering the UPDATE state (nothing marked deleted is removed). */
void pop3_shutdown_all(struct session_env *env);

#endif
