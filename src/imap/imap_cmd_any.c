/*
 * imap_cmd_any.c: the commands valid in every state (RFC 9051 6.1):
 * CAPABILITY, NOOP (and CHECK, which RFC 9051 removed and IMAP4rev1 clients
 * still send), LOGOUT, ID (RFC 2971), and ENABLE (RFC 5161; after login).
 */
#include "imap/imap_int.h"

#include <string.h>
#include <strings.h>

static int cmd_capability(struct imap_session *s, const struct imap_command *cmd)
{
	if (cmd->argc != 0) {
		imap_send_tagged(s, cmd, "BAD", "CAPABILITY takes no arguments");
		return 0;
	}
	imap_send(s, "* ");
	imap_capability_send(s);
	imap_send(s, "\r\n");
	imap_send_tagged(s, cmd, "OK", "Capability completed");
	return 0;
}

static int cmd_noop(struct imap_session *s, const struct imap_command *cmd)
{
	if (cmd->argc != 0) {
		imap_send_tagged(s, cmd, "BAD", "%s takes no arguments", cmd->name);
		return 0;
	}
	imap_view_sync(s, true);
	imap_send_tagged(s, cmd, "OK", "%s completed", cmd->name);
	return 0;
}

static int cmd_check(struct imap_session *s, const struct imap_command *cmd)
{
	return cmd_noop(s, cmd);
}

static int cmd_logout(struct imap_session *s, const struct imap_command *cmd)
{
	imap_send(s, "* BYE Logging out\r\n");
	imap_send_tagged(s, cmd, "OK", "Logout completed");
	s->state = IMAP_LOGOUT;
	session_close(&s->base);
	return 0;
}

static int cmd_enable(struct imap_session *s, const struct imap_command *cmd)
{
	char enabled[128] = "";
	if (cmd->argc == 0) {
		imap_send_tagged(s, cmd, "BAD", "Usage: ENABLE capability...");
		return 0;
	}
	for (size_t i = 0; i < cmd->argc; i++) {
		const struct imap_arg *a = &cmd->args[i];
		if (a->type != IMAP_ARG_ATOM) {
			imap_send_tagged(s, cmd, "BAD", "Invalid capability");
			return 0;
		}
		const char *add = NULL;
		if (strcasecmp(a->str, "CONDSTORE") == 0 && !s->condstore) {
			imap_view_enable_condstore(s);
			add = "CONDSTORE";
		} else if (strcasecmp(a->str, "QRESYNC") == 0 && !s->qresync) {
			/* RFC 7162 3.2.3: QRESYNC implies CONDSTORE. */
			imap_view_enable_condstore(s);
			s->qresync = true;
			add = "QRESYNC";
		} else if (strcasecmp(a->str, "IMAP4rev2") == 0 && !s->rev2) {
			/* RFC 9051 2.3: UTF-8 names come with it (5.1). */
			s->rev2 = s->utf8 = true;
			add = "IMAP4rev2";
		} else if (strcasecmp(a->str, "UTF8=ACCEPT") == 0 && !s->utf8) {
			s->utf8 = true;
			add = "UTF8=ACCEPT";
		} else if (strcasecmp(a->str, "UIDONLY") == 0 && !s->uidonly) {
			s->uidonly = true; /* RFC 9586 */
			add = "UIDONLY";
		}
		if (add != NULL && strlen(enabled) + strlen(add) + 2 < sizeof(enabled)) {
			strcat(enabled, " ");
			strcat(enabled, add);
		}
	}
	imap_send(s, "* ENABLED%s\r\n", enabled);
	imap_send_tagged(s, cmd, "OK", "Enabled");
	return 0;
}

static int cmd_id(struct imap_session *s, const struct imap_command *cmd)
{
	/* RFC 2971: a NIL or a list of at most 30 field/value pairs. */
	if (cmd->argc != 1 ||
	    (cmd->args[0].type != IMAP_ARG_NIL &&
	     (cmd->args[0].type != IMAP_ARG_LIST || cmd->args[0].count % 2 != 0 ||
	      cmd->args[0].count > 60))) {
		imap_send_tagged(s, cmd, "BAD", "Usage: ID NIL | ID (\"field\" \"value\" ...)");
		return 0;
	}
	imap_send(s, "* ID (\"name\" \"mailroom\" \"vendor\" \"mailroom\")\r\n");
	imap_send_tagged(s, cmd, "OK", "ID completed");
	return 0;
}

static const struct imap_cmd_def rows[] = {
	{ { "CAPABILITY", IMAP_IN_ANY }, cmd_capability, 0 },
	{ { "NOOP", IMAP_IN_ANY }, cmd_noop, 0 },
	{ { "CHECK", IMAP_IN_SELECTED }, cmd_check, 0 },
	{ { "LOGOUT", IMAP_IN_ANY }, cmd_logout, 0 },
	{ { "ID", IMAP_IN_ANY }, cmd_id, 0 },
	{ { "ENABLE", IMAP_IN_AUTH }, cmd_enable, 0 },
};
const struct imap_cmd_family imap_cmd_any = { rows, sizeof(rows) / sizeof(rows[0]) };
