/*
 * imap_cmd_mailbox.c: commands on mailboxes as a whole: SELECT, EXAMINE,
 * CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, NAMESPACE. (STATUS, LIST
 * and IDLE have files of their own.)
 *
 * SELECT runs off the event loop (opening a mailbox may reconcile a big
 * maildir); the others touch a few directory entries and run inline.
 */
#include "imap/imap_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/imap_seqset.h"
#include "lib/buf.h"

/* ---- SELECT / EXAMINE ----------------------------------------------------- */

struct select_job {
	struct imap_session *s;
	char *name;
	bool readonly;
	bool condstore;
	/* QRESYNC (RFC 7162 3.2.5) */
	bool qresync;
	uint32_t q_uidvalidity;
	uint64_t q_modseq;
	struct imap_seqset q_known;
	bool q_has_known;
	struct error err;
	int rc;
};

static void select_work(void *arg)
{
	struct select_job *j = arg;
	j->rc = imap_view_open(j->s, j->name, j->readonly, &j->err);
}

struct vanished_ctx {
	struct select_job *j;
	uint32_t *uids;
	size_t n, cap;
};

static int collect_vanished(void *ctx, uint32_t uid, uint64_t modseq)
{
	struct vanished_ctx *v = ctx;
	(void)modseq;
	if (v->j->q_has_known && !imap_seqset_contains(&v->j->q_known, uid))
		return 0;
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 64;
		uint32_t *p = realloc(v->uids, cap * sizeof(*p));
		if (p == NULL)
			return 1;
		v->uids = p;
		v->cap = cap;
	}
	v->uids[v->n++] = uid;
	return 0;
}

static int send_changed(void *ctx, const struct store_msg *m)
{
	struct imap_session *s = ctx;
	uint32_t seq = imap_view_seq(s->view, m->uid);
	if (seq == 0)
		return 0;
	imap_send_fetch_open(s, seq, m->uid);
	if (!s->uidonly)
		imap_send(s, "UID %u ", m->uid);
	imap_send(s, "FLAGS ");
	imap_send_flags(s, m->flags | imap_view_recent(s, m->uid), m->keywords);
	imap_send(s, " MODSEQ (%llu))\r\n", (unsigned long long)m->modseq);
	return 0;
}

static void select_done(struct session *base, void *arg)
{
	struct imap_session *s = imap_session_of(base);
	struct select_job *j = arg;
	if (j->rc < 0) {
		s->state = IMAP_AUTH;
		imap_send_store_error(s, NULL, &j->err);
		goto out;
	}
	struct imap_view *v = s->view;
	struct store_status st;
	struct error err;
	if (store_mailbox_status(v->mbox, &st, &err) < 0) {
		imap_view_close(s);
		s->state = IMAP_AUTH;
		imap_send_store_error(s, NULL, &err);
		goto out;
	}
	s->state = IMAP_SELECTED;
	if (j->condstore)
		s->condstore = true;
	imap_view_send_flags(s);
	imap_send(s, "* %zu EXISTS\r\n", v->n);
	if (!s->rev2) /* RFC 3501 6.3.1; RFC 9051 removed \Recent */
		imap_send(s, "* %zu RECENT\r\n", imap_view_recent_count(v));
	imap_send(s, "* OK [UIDVALIDITY %u] UIDs valid\r\n", st.uidvalidity);
	imap_send(s, "* OK [UIDNEXT %u] Predicted next UID\r\n", st.uidnext);
	imap_send(s, "* OK [HIGHESTMODSEQ %llu] Highest\r\n", (unsigned long long)v->seen_modseq);
	const char *mailboxid = imap_cmd_status_mailboxid(v->mbox);
	if (mailboxid != NULL) /* RFC 8474 4 */
		imap_send(s, "* OK [MAILBOXID (%s)] Ok\r\n", mailboxid);
	if (!s->rev2) {
		for (size_t i = 0; i < v->n; i++)
			if (!(v->flags[i] & STORE_F_SEEN)) {
				imap_send(s, "* OK [UNSEEN %zu] First unseen\r\n", i + 1);
				break;
			}
	} else {
		/* RFC 9051 6.3.2: the mailbox's name as LIST would give it. */
		imap_send(s, "* LIST () \"/\" ");
		imap_send_mailbox(s, store_mailbox_name(v->mbox));
		imap_send(s, "\r\n");
	}
	if (j->qresync && j->q_uidvalidity == st.uidvalidity) {
		/* RFC 7162 3.2.5.2: what changed since the client's modseq. */
		struct vanished_ctx vc = { j, NULL, 0, 0 };
		if (store_mailbox_expunged_since(v->mbox, j->q_modseq, collect_vanished, &vc, &err) == 0 &&
		    vc.n > 0) {
			struct buf b = BUF_INIT;
			imap_seqset_format_uids(vc.uids, vc.n, &b);
			imap_send(s, "* VANISHED (EARLIER) %s\r\n", buf_cstr(&b));
			buf_free(&b);
		}
		free(vc.uids);
		store_mailbox_changed_since(v->mbox, j->q_modseq, send_changed, s, &err);
	}
	imap_send_tagged(s, NULL, "OK", "[%s] %s completed", j->readonly ? "READ-ONLY" : "READ-WRITE",
		    j->readonly ? "EXAMINE" : "SELECT");
out:
	imap_seqset_free(&j->q_known);
	free(j->name);
	free(j);
}

/* (CONDSTORE) or (QRESYNC (uidvalidity modseq [known-uids [seq-match]])) */
static int select_params(struct imap_session *s, const struct imap_command *cmd,
			 const struct imap_arg *a, struct select_job *j)
{
	for (size_t i = 0; i < a->count; i++) {
		const struct imap_arg *p = &a->list[i];
		if (imap_parser_arg_atom_eq(p, "CONDSTORE")) {
			j->condstore = true;
			continue;
		}
		if (imap_parser_arg_atom_eq(p, "QRESYNC") && i + 1 < a->count &&
		    a->list[i + 1].type == IMAP_ARG_LIST) {
			const struct imap_arg *q = &a->list[++i];
			uint32_t uv;
			uint64_t ms;
			if (!s->qresync) {
				/* RFC 7162 3.2.5: QRESYNC must be ENABLEd first. */
				imap_send_tagged(s, cmd, "BAD", "QRESYNC is not enabled");
				return -1;
			}
			if (q->count < 2 || q->count > 4 || !imap_parser_arg_number(&q->list[0], &uv) ||
			    uv == 0 || !imap_parser_arg_number64(&q->list[1], &ms) || ms == 0) {
				imap_send_tagged(s, cmd, "BAD", "Invalid QRESYNC parameters");
				return -1;
			}
			j->qresync = true;
			j->condstore = true;
			j->q_uidvalidity = uv;
			j->q_modseq = ms;
			if (q->count >= 3) {
				struct error why;
				if (q->list[2].type != IMAP_ARG_ATOM ||
				    imap_seqset_parse(q->list[2].str, q->list[2].len, UINT32_MAX, 0,
						      &j->q_known, &why) < 0) {
					imap_send_tagged(s, cmd, "BAD", "Invalid known-uids");
					return -1;
				}
				j->q_has_known = true;
			}
			continue;
		}
		imap_send_tagged(s, cmd, "BAD", "Unknown SELECT parameter");
		return -1;
	}
	return 0;
}

static int cmd_select(struct imap_session *s, const struct imap_command *cmd)
{
	if (cmd->argc < 1 || cmd->argc > 2 ||
	    (cmd->argc == 2 && cmd->args[1].type != IMAP_ARG_LIST)) {
		imap_send_tagged(s, cmd, "BAD", "Usage: %s mailbox [(parameters)]", cmd->name);
		return 0;
	}
	struct select_job *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		imap_send_tagged(s, cmd, "NO", "[SERVERBUG] Out of memory");
		return 0;
	}
	j->s = s;
	j->readonly = strcmp(cmd->name, "EXAMINE") == 0;
	if (cmd->argc == 2 && select_params(s, cmd, &cmd->args[1], j) < 0) {
		imap_seqset_free(&j->q_known);
		free(j);
		return 0;
	}
	j->name = imap_arg_mailbox(s, cmd, &cmd->args[0]);
	if (j->name == NULL) {
		imap_seqset_free(&j->q_known);
		free(j);
		return 0;
	}
	/* A failed SELECT leaves no mailbox selected (RFC 9051 6.3.2). */
	if (s->view != NULL) {
		imap_view_close(s);
		s->state = IMAP_AUTH;
		imap_send(s, "* OK [CLOSED] Previous mailbox closed\r\n");
	}
	if (session_async(&s->base, select_work, select_done, j) < 0) {
		free(j->name);
		free(j);
		imap_send_tagged(s, cmd, "NO", "[SERVERBUG] Out of memory");
	}
	return 0;
}

/* ---- CREATE / DELETE / RENAME / SUBSCRIBE -------------------------------- */

/* RFC 8474 4: "OK [MAILBOXID (id)]" for the mailbox just created (a plain
 * OK if it cannot be opened now: it was created all the same). */
static void create_ok(struct imap_session *s, const struct imap_command *cmd, const char *name)
{
	struct store_mailbox *m = NULL;
	struct error err;
	const char *mid = NULL;
	if (store_mailbox_open(s->suser, name, &m, &err) == 0)
		mid = imap_cmd_status_mailboxid(m);
	if (mid != NULL)
		imap_send_tagged(s, cmd, "OK", "[MAILBOXID (%s)] CREATE completed", mid);
	else
		imap_send_tagged(s, cmd, "OK", "CREATE completed");
	store_mailbox_close(&m);
}

static int cmd_create(struct imap_session *s, const struct imap_command *cmd)
{
	struct error err;
	const char *use = NULL;
	if (cmd->argc < 1 || cmd->argc > 2) {
		imap_send_tagged(s, cmd, "BAD", "Usage: CREATE mailbox [(USE (attr))]");
		return 0;
	}
	if (cmd->argc == 2) {
		/* RFC 6154 3: CREATE name (USE (\Sent)) */
		const struct imap_arg *a = &cmd->args[1];
		if (a->type != IMAP_ARG_LIST || a->count != 2 || !imap_parser_arg_atom_eq(&a->list[0], "USE") ||
		    a->list[1].type != IMAP_ARG_LIST || a->list[1].count != 1 ||
		    a->list[1].list[0].type != IMAP_ARG_ATOM) {
			imap_send_tagged(s, cmd, "BAD", "Invalid CREATE parameters");
			return 0;
		}
		use = a->list[1].list[0].str;
	}
	char *name = imap_arg_mailbox(s, cmd, &cmd->args[0]);
	if (name == NULL)
		return 0;
	size_t len = strlen(name);
	/* RFC 9051 6.3.4: a trailing separator declares the intent to have
	 * children; the mailbox is created without it. */
	if (len > 1 && name[len - 1] == '/')
		name[len - 1] = '\0';
	if (strcasecmp(name, "INBOX") == 0) {
		imap_send_tagged(s, cmd, "NO", "[ALREADYEXISTS] INBOX always exists");
	} else if (store_mailbox_create(s->suser, name, use, &err) < 0) {
		if (err.code == ERR_INVALID && use != NULL)
			imap_send_tagged(s, cmd, "NO", "[USEATTR] %s", err.text);
		else
			imap_send_store_error(s, cmd, &err);
	} else {
		create_ok(s, cmd, name);
	}
	free(name);
	return 0;
}

static int cmd_delete(struct imap_session *s, const struct imap_command *cmd)
{
	struct error err;
	if (cmd->argc != 1) {
		imap_send_tagged(s, cmd, "BAD", "Usage: DELETE mailbox");
		return 0;
	}
	char *name = imap_arg_mailbox(s, cmd, &cmd->args[0]);
	if (name == NULL)
		return 0;
	if (s->view != NULL && strcmp(store_mailbox_name(s->view->mbox), name) == 0) {
		/* Deleting the selected mailbox: deselect it first. */
		imap_view_close(s);
		s->state = IMAP_AUTH;
		imap_send(s, "* OK [CLOSED] Mailbox closed\r\n");
	}
	if (store_mailbox_delete(s->suser, name, &err) < 0)
		imap_send_store_error(s, cmd, &err);
	else
		imap_send_tagged(s, cmd, "OK", "DELETE completed");
	free(name);
	return 0;
}

static int cmd_rename(struct imap_session *s, const struct imap_command *cmd)
{
	struct error err;
	if (cmd->argc != 2) {
		imap_send_tagged(s, cmd, "BAD", "Usage: RENAME old new");
		return 0;
	}
	char *from = imap_arg_mailbox(s, cmd, &cmd->args[0]);
	if (from == NULL)
		return 0;
	char *to = imap_arg_mailbox(s, cmd, &cmd->args[1]);
	if (to == NULL) {
		free(from);
		return 0;
	}
	if (store_mailbox_rename(s->suser, from, to, &err) < 0)
		imap_send_store_error(s, cmd, &err);
	else
		imap_send_tagged(s, cmd, "OK", "RENAME completed");
	free(from);
	free(to);
	return 0;
}

static int cmd_subscribe(struct imap_session *s, const struct imap_command *cmd)
{
	struct error err;
	if (cmd->argc != 1) {
		imap_send_tagged(s, cmd, "BAD", "Usage: %s mailbox", cmd->name);
		return 0;
	}
	char *name = imap_arg_mailbox(s, cmd, &cmd->args[0]);
	if (name == NULL)
		return 0;
	/* RFC 9051 6.3.7: subscribing to a name that does not exist is allowed. */
	if (store_subscribe(s->suser, name, strcmp(cmd->name, "SUBSCRIBE") == 0, &err) < 0)
		imap_send_store_error(s, cmd, &err);
	else
		imap_send_tagged(s, cmd, "OK", "%s completed", cmd->name);
	free(name);
	return 0;
}

static int cmd_namespace(struct imap_session *s, const struct imap_command *cmd)
{
	if (cmd->argc != 0) {
		imap_send_tagged(s, cmd, "BAD", "NAMESPACE takes no arguments");
		return 0;
	}
	imap_send(s, "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
	imap_send_tagged(s, cmd, "OK", "NAMESPACE completed");
	return 0;
}

static const struct imap_cmd_def rows[] = {
	{ { "SELECT", IMAP_IN_AUTH }, cmd_select, 0 },
	{ { "EXAMINE", IMAP_IN_AUTH }, cmd_select, 0 },
	{ { "CREATE", IMAP_IN_AUTH }, cmd_create, 0 },
	{ { "DELETE", IMAP_IN_AUTH }, cmd_delete, 0 },
	{ { "RENAME", IMAP_IN_AUTH }, cmd_rename, 0 },
	{ { "SUBSCRIBE", IMAP_IN_AUTH }, cmd_subscribe, 0 },
	{ { "UNSUBSCRIBE", IMAP_IN_AUTH }, cmd_subscribe, 0 },
	{ { "NAMESPACE", IMAP_IN_AUTH }, cmd_namespace, 0 },
};
const struct imap_cmd_family imap_cmd_mailbox = { rows, sizeof(rows) / sizeof(rows[0]) };
