/*
 * imap_cmd_status.c: STATUS (RFC 9051 6.3.11, with STATUS=SIZE RFC 8438
 * and HIGHESTMODSEQ RFC 7162, MAILBOXID RFC 8474 4), and the "* STATUS"
 * line that LIST-STATUS (RFC 5819) also sends.
 */
#include "imap/imap_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *imap_cmd_status_mailboxid(const struct store_mailbox *m)
{
	const char *g = store_mailbox_guid(m);
	size_t n = strlen(g);
	if (n == 0 || n > 255 || strspn(g, "0123456789abcdefABCDEF") != n)
		return NULL; /* RFC 8474 4: objectid = 1*255(ALPHA / DIGIT / "_" / "-") */
	return g;
}


int imap_cmd_status_items(const struct imap_arg *list, unsigned *items_r)
{
	static const struct {
		const char *name;
		unsigned bit;
	} names[] = {
		{ "MESSAGES", IMAP_STATUS_MESSAGES },	{ "UIDNEXT", IMAP_STATUS_UIDNEXT },
		{ "UIDVALIDITY", IMAP_STATUS_UIDVALIDITY }, { "UNSEEN", IMAP_STATUS_UNSEEN },
		{ "DELETED", IMAP_STATUS_DELETED },	{ "SIZE", IMAP_STATUS_SIZE },
		{ "HIGHESTMODSEQ", IMAP_STATUS_HIGHESTMODSEQ }, { "RECENT", IMAP_STATUS_RECENT },
		{ "MAILBOXID", IMAP_STATUS_MAILBOXID },
	};
	unsigned items = 0;
	if (list->type != IMAP_ARG_LIST || list->count == 0)
		return -1;
	for (size_t i = 0; i < list->count; i++) {
		unsigned bit = 0;
		for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
			if (imap_parser_arg_atom_eq(&list->list[i], names[k].name))
				bit = names[k].bit;
		if (bit == 0)
			return -1;
		items |= bit;
	}
	*items_r = items;
	return 0;
}

int imap_cmd_status_send(struct imap_session *s, const char *name, unsigned items,
			 struct error *err)
{
	struct store_mailbox *m = NULL;
	struct store_status st;
	uint32_t recent = 0;
	char mailboxid[300] = "";
	if (store_mailbox_open(s->suser, name, &m, err) < 0)
		return -1;
	int rc = store_mailbox_status(m, &st, err);
	const char *mid = imap_cmd_status_mailboxid(m);
	if ((items & IMAP_STATUS_MAILBOXID) && mid != NULL) /* RFC 8474 4 */
		snprintf(mailboxid, sizeof(mailboxid), "%s", mid);
	/* RFC 3501 6.3.10: the messages no session has claimed as recent yet
	 * (store_mailbox_recent.c); STATUS itself claims nothing. */
	if (rc == 0 && (items & IMAP_STATUS_RECENT))
		rc = store_mailbox_recent_count(m, &recent, err);
	store_mailbox_close(&m);
	if (rc < 0)
		return -1;
	char text[600];
	size_t o = 0;
#define ADD(bit, fmt, val) \
	if (items & (bit)) \
		o += (size_t)snprintf(text + o, sizeof(text) - o, "%s" fmt, o ? " " : "", val)
	ADD(IMAP_STATUS_MESSAGES, "MESSAGES %u", st.messages);
	ADD(IMAP_STATUS_RECENT, "RECENT %u", recent);
	ADD(IMAP_STATUS_UIDNEXT, "UIDNEXT %u", st.uidnext);
	ADD(IMAP_STATUS_UIDVALIDITY, "UIDVALIDITY %u", st.uidvalidity);
	ADD(IMAP_STATUS_UNSEEN, "UNSEEN %u", st.unseen);
	ADD(IMAP_STATUS_DELETED, "DELETED %u", st.deleted);
	ADD(IMAP_STATUS_SIZE, "SIZE %llu", (unsigned long long)st.size);
	ADD(IMAP_STATUS_HIGHESTMODSEQ, "HIGHESTMODSEQ %llu", (unsigned long long)st.highestmodseq);
	if (mailboxid[0] != '\0')
		ADD(IMAP_STATUS_MAILBOXID, "MAILBOXID (%s)", mailboxid);
#undef ADD
	imap_send(s, "* STATUS ");
	imap_send_mailbox(s, name);
	imap_send(s, " (%s)\r\n", text);
	return 0;
}

static int cmd_status(struct imap_session *s, const struct imap_command *cmd)
{
	struct error err;
	unsigned items;
	if (cmd->argc != 2 || imap_cmd_status_items(&cmd->args[1], &items) < 0) {
		imap_send_tagged(s, cmd, "BAD", "Usage: STATUS mailbox (items)");
		return 0;
	}
	char *name = imap_arg_mailbox(s, cmd, &cmd->args[0]);
	if (name == NULL)
		return 0;
	if (items & IMAP_STATUS_HIGHESTMODSEQ)
		imap_view_enable_condstore(s); /* RFC 7162 3.1: CONDSTORE-enabling */
	if (imap_cmd_status_send(s, name, items, &err) < 0)
		imap_send_store_error(s, cmd, &err);
	else {
		imap_view_sync(s, true);
		imap_send_tagged(s, cmd, "OK", "STATUS completed");
	}
	free(name);
	return 0;
}

static const struct imap_cmd_def rows[] = {
	{ { "STATUS", IMAP_IN_AUTH }, cmd_status, 0 },
};
const struct imap_cmd_family imap_cmd_status = { rows, sizeof(rows) / sizeof(rows[0]) };
