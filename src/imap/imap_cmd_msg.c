/*
 * imap_cmd_msg.c: commands that change the set of messages of the selected
 * mailbox: CLOSE, UNSELECT, EXPUNGE / UID EXPUNGE (UIDPLUS), COPY and MOVE
 * (UIDPLUS COPYUID, RFC 6851 MOVE). Expunge, copy and move fsync, so they
 * run off the event loop.
 */
#include "imap/imap_int.h"

#include <stdlib.h>
#include <string.h>

#include "imap/imap_seqset.h"
#include "lib/buf.h"

static int collect_deleted(void *ctx, const struct store_msg *m)
{
	struct {
		uint32_t *v;
		size_t n, cap;
	} *l = ctx;
	if (!(m->flags & STORE_F_DELETED))
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		uint32_t *p = realloc(l->v, cap * sizeof(*p));
		if (p == NULL)
			return 1;
		l->v = p;
		l->cap = cap;
	}
	l->v[l->n++] = m->uid;
	return 0;
}

/* UIDs of messages flagged \Deleted (optionally only those in filter). */
static int deleted_uids(struct imap_session *s, const uint32_t *filter, size_t nfilter,
			uint32_t **uids_r, size_t *n_r, struct error *err)
{
	struct {
		uint32_t *v;
		size_t n, cap;
	} l = { NULL, 0, 0 };
	/* \Deleted as it is now on disk, including flags set by others. */
	if (store_mailbox_sync(s->view->mbox, 0, err) < 0 ||
	    store_mailbox_messages(s->view->mbox, 1, UINT32_MAX, collect_deleted, &l, err) < 0) {
		free(l.v);
		return -1;
	}
	if (filter != NULL) {
		size_t o = 0;
		for (size_t i = 0, j = 0; i < l.n; i++) {
			while (j < nfilter && filter[j] < l.v[i])
				j++;
			if (j < nfilter && filter[j] == l.v[i])
				l.v[o++] = l.v[i];
		}
		l.n = o;
	}
	*uids_r = l.v;
	*n_r = l.n;
	return 0;
}

static int cmd_close(struct imap_session *s, const struct imap_command *cmd)
{
	if (cmd->argc != 0) {
		imap_send_tagged(s, cmd, "BAD", "%s takes no arguments", cmd->name);
		return 0;
	}
	/* RFC 9051 6.4.1: CLOSE expunges \Deleted messages, silently, unless
	 * the mailbox is read-only; UNSELECT (RFC 3691) never does. */
	if (strcmp(cmd->name, "CLOSE") == 0 && !s->view->readonly) {
		uint32_t *uids = NULL;
		size_t n = 0;
		struct error err;
		if (deleted_uids(s, NULL, 0, &uids, &n, &err) == 0 && n > 0)
			store_mailbox_expunge(s->view->mbox, uids, n, &err);
		free(uids);
	}
	imap_view_close(s);
	s->state = IMAP_AUTH;
	imap_send_tagged(s, cmd, "OK", "%s completed", cmd->name);
	return 0;
}

/* ---- EXPUNGE -------------------------------------------------------------- */

struct expunge_job {
	struct imap_session *s;
	uint32_t *filter;
	size_t nfilter;
	bool has_filter;
	struct error err;
	int rc;
};

static void expunge_work(void *arg)
{
	struct expunge_job *j = arg;
	uint32_t *uids = NULL;
	size_t n = 0;
	j->rc = deleted_uids(j->s, j->has_filter ? j->filter : NULL, j->nfilter, &uids, &n, &j->err);
	if (j->rc == 0 && n > 0)
		j->rc = store_mailbox_expunge(j->s->view->mbox, uids, n, &j->err);
	free(uids);
}

static void expunge_done(struct session *base, void *arg)
{
	struct imap_session *s = imap_session_of(base);
	struct expunge_job *j = arg;
	imap_view_sync(s, true); /* reports what was expunged, also on failure */
	if (j->rc < 0)
		imap_send_store_error(s, NULL, &j->err);
	else
		imap_send_tagged(s, NULL, "OK", "Expunge completed");
	free(j->filter);
	free(j);
}

static int cmd_expunge(struct imap_session *s, const struct imap_command *cmd)
{
	if (cmd->argc != (cmd->uid ? 1u : 0u)) {
		imap_send_tagged(s, cmd, "BAD", cmd->uid ? "Usage: UID EXPUNGE set" : "EXPUNGE takes no arguments");
		return 0;
	}
	if (s->view->readonly) {
		imap_send_tagged(s, cmd, "NO", "[READ-ONLY] Mailbox is read-only");
		return 0;
	}
	struct expunge_job *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		imap_send_tagged(s, cmd, "NO", "[SERVERBUG] Out of memory");
		return 0;
	}
	j->s = s;
	if (cmd->uid) {
		/* RFC 4315 2.1: only the given UIDs that are \Deleted. */
		if (imap_arg_uidset(s, cmd, &cmd->args[0], true, &j->filter, &j->nfilter) < 0) {
			free(j);
			return 0;
		}
		j->has_filter = true;
		imap_arg_limit(s, cmd, &j->nfilter); /* RFC 9738: UID form, never -1 */
	}
	if (session_async(&s->base, expunge_work, expunge_done, j) < 0) {
		free(j->filter);
		free(j);
		imap_send_tagged(s, cmd, "NO", "[SERVERBUG] Out of memory");
	}
	return 0;
}

/* ---- COPY / MOVE ------------------------------------------------------------- */

struct copy_job {
	struct imap_session *s;
	bool move;
	char *dest;
	uint32_t *uids;
	uint32_t *dst_uids;
	size_t n;
	uint32_t dst_uidvalidity;
	struct error err;
	int rc;
};

static void copy_work(void *arg)
{
	struct copy_job *j = arg;
	struct store_mailbox *dst = NULL;
	struct store_status st;
	j->rc = -1;
	if (store_mailbox_open(j->s->suser, j->dest, &dst, &j->err) < 0)
		return;
	if (store_mailbox_status(dst, &st, &j->err) == 0) {
		j->dst_uidvalidity = st.uidvalidity;
		j->rc = j->move ? store_mailbox_move(j->s->view->mbox, j->uids, j->n, dst, j->dst_uids, &j->err)
				: store_mailbox_copy(j->s->view->mbox, j->uids, j->n, dst, j->dst_uids, &j->err);
	}
	store_mailbox_close(&dst);
}

static void copy_done(struct session *base, void *arg)
{
	struct imap_session *s = imap_session_of(base);
	struct copy_job *j = arg;
	struct buf src = BUF_INIT, dst = BUF_INIT;
	if (j->rc < 0) {
		if (j->err.code == ERR_NOTFOUND)
			imap_send_tagged(s, NULL, "NO", "[TRYCREATE] No such mailbox");
		else
			imap_send_store_error(s, NULL, &j->err);
		if (j->move)
			imap_view_sync(s, true);
		goto out;
	}
	/* COPYUID (RFC 4315 3): the copied messages' source and new UIDs, in
	 * the same order. Messages that vanished meanwhile are left out. */
	size_t k = 0;
	for (size_t i = 0; i < j->n; i++)
		if (j->dst_uids[i] != 0) {
			j->uids[k] = j->uids[i];
			j->dst_uids[k] = j->dst_uids[i];
			k++;
		}
	char code[64 + 1] = "";
	if (k > 0) {
		imap_seqset_format_uids(j->uids, k, &src);
		imap_seqset_format_uids(j->dst_uids, k, &dst);
	}
	if (j->move) {
		/* RFC 6851 4.3: COPYUID comes untagged, before the expunges. */
		if (k > 0)
			imap_send(s, "* OK [COPYUID %u %s %s] Moved\r\n", j->dst_uidvalidity,
				  buf_cstr(&src), buf_cstr(&dst));
		imap_view_sync(s, true);
		imap_send_tagged(s, NULL, "OK", "Move completed");
	} else if (k > 0 && s->limit_hit) {
		/* RFC 9738: the tagged OK carries [LIMIT], so COPYUID comes
		 * untagged, as MOVE sends it (RFC 6851 4.3) */
		imap_send(s, "* OK [COPYUID %u %s %s] Copied\r\n", j->dst_uidvalidity,
			  buf_cstr(&src), buf_cstr(&dst));
		imap_view_sync(s, true);
		imap_send_tagged(s, NULL, "OK", "Copy completed");
	} else if (k > 0) {
		imap_view_sync(s, true);
		imap_send_tagged(s, NULL, "OK", "[COPYUID %u %s %s] Copy completed", j->dst_uidvalidity,
			    buf_cstr(&src), buf_cstr(&dst));
	} else {
		imap_view_sync(s, true);
		imap_send_tagged(s, NULL, "OK", "Copy completed%s", code);
	}
out:
	buf_free(&src);
	buf_free(&dst);
	free(j->dest);
	free(j->uids);
	free(j->dst_uids);
	free(j);
}

static int cmd_copy(struct imap_session *s, const struct imap_command *cmd)
{
	if (cmd->argc != 2) {
		imap_send_tagged(s, cmd, "BAD", "Usage: %s set mailbox", cmd->name);
		return 0;
	}
	bool move = strcmp(cmd->name, "MOVE") == 0;
	if (move && s->view->readonly) {
		imap_send_tagged(s, cmd, "NO", "[READ-ONLY] Mailbox is read-only");
		return 0;
	}
	struct copy_job *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		imap_send_tagged(s, cmd, "NO", "[SERVERBUG] Out of memory");
		return 0;
	}
	j->s = s;
	j->move = move;
	if (imap_arg_uidset(s, cmd, &cmd->args[0], cmd->uid, &j->uids, &j->n) < 0) {
		free(j);
		return 0;
	}
	if (imap_arg_limit(s, cmd, &j->n) < 0) {
		free(j->uids);
		free(j);
		return 0;
	}
	j->dest = imap_arg_mailbox(s, cmd, &cmd->args[1]);
	j->dst_uids = calloc(j->n ? j->n : 1, sizeof(*j->dst_uids));
	if (j->dest == NULL || j->dst_uids == NULL) {
		if (j->dest != NULL)
			imap_send_tagged(s, cmd, "NO", "[SERVERBUG] Out of memory");
		free(j->dest);
		free(j->uids);
		free(j->dst_uids);
		free(j);
		return 0;
	}
	if (session_async(&s->base, copy_work, copy_done, j) < 0) {
		imap_send_tagged(s, cmd, "NO", "[SERVERBUG] Out of memory");
		free(j->dest);
		free(j->uids);
		free(j->dst_uids);
		free(j);
	}
	return 0;
}

static const struct imap_cmd_def rows[] = {
	{ { "CLOSE", IMAP_IN_SELECTED }, cmd_close, 0 },
	{ { "UNSELECT", IMAP_IN_SELECTED }, cmd_close, 0 },
	{ { "EXPUNGE", IMAP_IN_SELECTED }, cmd_expunge, IMAP_CMD_UID },
	{ { "COPY", IMAP_IN_SELECTED }, cmd_copy, IMAP_CMD_UID },
	{ { "MOVE", IMAP_IN_SELECTED }, cmd_copy, IMAP_CMD_UID },
};
const struct imap_cmd_family imap_cmd_msg = { rows, sizeof(rows) / sizeof(rows[0]) };
