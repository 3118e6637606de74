/*
 * imap_cmd_unauth.c: UNAUTHENTICATE (RFC 8437), which takes a logged-in
 * session back to the not-authenticated state so that an administrative
 * client can log in as another user on the same connection.
 *
 * RFC 8437 3: everything the login gave is dropped, as if the connection
 * had just been made, except what belongs to the connection itself (TLS,
 * and COMPRESS would be, RFC 8437 3 says so for both). So: the selected
 * mailbox is closed without expunging (as UNSELECT), the saved SEARCH
 * result, the ENABLEd extensions, the user's store and the auth process's
 * count of the session (max_userip_connections: session_logout) all go.
 * The next LOGIN starts from nothing.
 */
#include "imap/imap_int.h"

#include <stdlib.h>

#include "lib/log.h"

static int cmd_unauthenticate(struct imap_session *s, const struct imap_command *cmd)
{
	if (cmd->argc != 0) {
		imap_send_tagged(s, cmd, "BAD", "Usage: UNAUTHENTICATE");
		return 0;
	}
	log_info("imap %s unauthenticate user=%s", s->base.id, s->user ? s->user : "-");
	imap_cmd_idle_unwatch(s);
	imap_view_close(s);
	free(s->saved);
	s->saved = NULL;
	s->nsaved = 0;
	s->saved_valid = false;
	store_user_close(&s->suser);
	free(s->user);
	s->user = NULL;
	/* RFC 8437 3: ENABLE's effects end with the authentication. */
	s->rev2 = s->utf8 = s->condstore = s->qresync = false;
	s->uidonly = false;
	session_logout(&s->base);
	s->state = IMAP_NOT_AUTH;
	imap_send_tagged(s, cmd, "OK", "Now not authenticated");
	return 0;
}

static const struct imap_cmd_def rows[] = {
	{ { "UNAUTHENTICATE", IMAP_IN_AUTH }, cmd_unauthenticate, 0 },
};
const struct imap_cmd_family imap_cmd_unauth = { rows, sizeof(rows) / sizeof(rows[0]) };
