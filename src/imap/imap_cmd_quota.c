/*
 * imap_cmd_quota.c: QUOTA (RFC 9208): GETQUOTA, GETQUOTAROOT and SETQUOTA.
 *
 * Every mailbox of a user has one quota root, "" (the user's whole store),
 * with the resources STORAGE (RFC 9208 5.1: in units of 1024 octets) and
 * MESSAGE (5.2). The limits are the administrator's (the quota_bytes and
 * quota_messages settings, store_user_set_quota); the usage is the store's
 * counters (store_user_quota_usage: one read of the index, the bytes of a
 * file COPY linked into several mailboxes counted once).
 *
 * A resource without a limit is not listed, and a user without any limit
 * has no quota root: the QUOTA response must list at least one resource
 * (RFC 9208 7, quota_list), so GETQUOTAROOT then answers "* QUOTAROOT
 * mailbox" with no root and GETQUOTA "" is NO, as RFC 9208 4.1.1 allows
 * for a root that does not exist.
 *
 * SETQUOTA is refused: limits are set by the administrator, and we do not
 * advertise QUOTASET (RFC 9208 4.1.3).
 *
 * STORAGE units: bytes / 1024 rounded down for both usage and limit, as
 * Dovecot's imap_quota does; the check itself (store_user_quota_check)
 * compares bytes.
 */
#include "imap/imap_int.h"

#include <stdlib.h>
#include <string.h>

/* Does the user have a quota root; if so write "* QUOTA "" (...)". */
static int send_quota(struct imap_session *s, struct error *err)
{
	uint64_t max_b, max_m, used_b, used_m;
	store_user_quota_limits(s->suser, &max_b, &max_m);
	if (max_b == 0 && max_m == 0)
		return 0;
	if (store_user_quota_usage(s->suser, &used_b, &used_m, err) < 0)
		return -1;
	imap_send(s, "* QUOTA \"\" (");
	if (max_b != 0)
		imap_send(s, "STORAGE %llu %llu", (unsigned long long)(used_b / 1024),
			  (unsigned long long)(max_b / 1024));
	if (max_m != 0)
		imap_send(s, "%sMESSAGE %llu %llu", max_b != 0 ? " " : "",
			  (unsigned long long)used_m, (unsigned long long)max_m);
	imap_send(s, ")\r\n");
	return 0;
}

static bool has_root(struct imap_session *s)
{
	uint64_t max_b, max_m;
	store_user_quota_limits(s->suser, &max_b, &max_m);
	return max_b != 0 || max_m != 0;
}

/* RFC 9208 4.1.1: GETQUOTA quota-root */
static int cmd_getquota(struct imap_session *s, const struct imap_command *cmd)
{
	const char *root;
	size_t len;
	struct error err;
	if (cmd->argc != 1 || !imap_parser_arg_astring(&cmd->args[0], &root, &len)) {
		imap_send_tagged(s, cmd, "BAD", "Usage: GETQUOTA quota-root");
		return 0;
	}
	if (len != 0 || !has_root(s)) {
		imap_send_tagged(s, cmd, "NO", "[NONEXISTENT] No such quota root");
		return 0;
	}
	if (send_quota(s, &err) < 0)
		imap_send_store_error(s, cmd, &err);
	else
		imap_send_tagged(s, cmd, "OK", "GETQUOTA completed");
	return 0;
}

/* RFC 9208 4.1.2: GETQUOTAROOT mailbox */
static int cmd_getquotaroot(struct imap_session *s, const struct imap_command *cmd)
{
	struct error err;
	struct store_mailbox *m = NULL;
	if (cmd->argc != 1) {
		imap_send_tagged(s, cmd, "BAD", "Usage: GETQUOTAROOT mailbox");
		return 0;
	}
	char *name = imap_arg_mailbox(s, cmd, &cmd->args[0]);
	if (name == NULL)
		return 0;
	/* The mailbox must exist (RFC 9208 4.1.2: "no such mailbox"). */
	if (store_mailbox_open(s->suser, name, &m, &err) < 0) {
		imap_send_store_error(s, cmd, &err);
		free(name);
		return 0;
	}
	store_mailbox_close(&m);
	imap_send(s, "* QUOTAROOT ");
	imap_send_mailbox(s, name);
	imap_send(s, "%s\r\n", has_root(s) ? " \"\"" : "");
	if (send_quota(s, &err) < 0)
		imap_send_store_error(s, cmd, &err);
	else
		imap_send_tagged(s, cmd, "OK", "GETQUOTAROOT completed");
	free(name);
	return 0;
}

/* RFC 9208 4.1.3: SETQUOTA quota-root (resource limit ...): not for users. */
static int cmd_setquota(struct imap_session *s, const struct imap_command *cmd)
{
	if (cmd->argc != 2 || cmd->args[1].type != IMAP_ARG_LIST) {
		imap_send_tagged(s, cmd, "BAD", "Usage: SETQUOTA quota-root (resource limit ...)");
		return 0;
	}
	imap_send_tagged(s, cmd, "NO", "[NOPERM] Quotas are set by the administrator");
	return 0;
}

static const struct imap_cmd_def rows[] = {
	{ { "GETQUOTA", IMAP_IN_AUTH }, cmd_getquota, 0 },
	{ { "GETQUOTAROOT", IMAP_IN_AUTH }, cmd_getquotaroot, 0 },
	{ { "SETQUOTA", IMAP_IN_AUTH }, cmd_setquota, 0 },
};
const struct imap_cmd_family imap_cmd_quota = { rows, sizeof(rows) / sizeof(rows[0]) };
