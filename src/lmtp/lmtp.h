/*
 * lmtp.h: LMTP (RFC 2033), how an MTA such as Postfix hands mail to the
 * store. The server starts each connection with
 * session_start(env, &lmtp_proto, conn); the session core (session.h) runs
 * it from then on.
 */
#ifndef MAILROOM_LMTP_H
#define MAILROOM_LMTP_H

#include "session/session.h"

/* The LMTP protocol for the session core. On server shutdown a session
 * without a transaction says 421 and closes at once; one in a transaction
 * finishes it (reads the rest of its message, answers each recipient) and
 * closes afterwards. */
extern const struct session_proto lmtp_proto;

#endif
