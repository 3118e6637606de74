/*
 * imap.h: the IMAP4rev2/IMAP4rev1 protocol (src/imap), as the server calls it.
 *
 * The worker accepts a connection, wraps it in a struct conn and starts a
 * session of this protocol on the session core: session_start(env,
 * &imap_proto, conn). Everything else (commands, the selected mailbox,
 * IDLE) happens in the session, which ends by itself when the client
 * leaves; on shutdown it says BYE after its current command.
 */
#ifndef MAILROOM_IMAP_H
#define MAILROOM_IMAP_H

#include "session/session.h"

extern const struct session_proto imap_proto;

#endif
