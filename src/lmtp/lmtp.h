/*
 * lmtp.h: LMTP (RFC 2033), how an MTA such as Postfix hands mail to the
 * store. The server calls lmtp_session_start() for each connection.
 */
#ifndef MAILROOM_LMTP_H
#define MAILROOM_LMTP_H

#include "session/session.h"

struct conn;

void lmtp_session_start(struct session_env *env, struct conn *c);
/* Server shutdown: sessions close after their current transaction. */
void lmtp_shutdown_all(struct session_env *env);

#endif
