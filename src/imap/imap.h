/*
 * imap.h: the IMAP4rev2/IMAP4rev1 protocol (src/imap), as the server calls it.
 *
 * The server accepts a connection, wraps it in a struct conn and calls
 * imap_session_start(). Everything else (commands, the selected mailbox,
 * IDLE) happens in the session, which ends by itself when the client leaves.
 */
#ifndef MAILROOM_IMAP_H
#define MAILROOM_IMAP_H

#include "session/session.h"

struct conn;

/* Start a session on c (greeting sent at once; an implicit-TLS conn is
 * already TLS). env outlives the session. */
void imap_session_start(struct session_env *env, struct conn *c);
/* Server shutdown: every session says BYE after its current command and
 * closes. */
void imap_shutdown_all(struct session_env *env);

#endif
