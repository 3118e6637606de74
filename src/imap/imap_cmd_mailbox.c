/*
 * imap_cmd_mailbox.c: commands on mailboxes as a whole: SELECT, EXAMINE,
 * CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST (with LIST-EXTENDED,
 * LIST-STATUS, SPECIAL-USE), LSUB, NAMESPACE, STATUS, IDLE.
 *
 * SELECT runs off the event loop (opening a mailbox may reconcile a big
 * maildir); the others touch a few directory entries and run inline.
 */
#include "imap/imap_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>

#include "imap/imap_seqset.h"
#include "imap/imap_utf7.h"
#include "lib/buf.h"
#include "lib/config.h"
#include "session/conn.h"

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
	struct store_error err;
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
	imap_send(s, "* %u FETCH (UID %u FLAGS ", seq, m->uid);
	imap_send_flags(s, m->flags, m->keywords);
	imap_send(s, " MODSEQ (%llu))\r\n", (unsigned long long)m->modseq);
	return 0;
}

static void select_done(struct imap_session *s, void *arg)
{
	struct select_job *j = arg;
	if (j->rc < 0) {
		s->state = IMAP_AUTH;
		imap_tagged_store_error(s, NULL, &j->err);
		goto out;
	}
	struct imap_view *v = s->view;
	struct store_status st;
	struct store_error err;
	if (store_mailbox_status(v->mbox, &st, &err) < 0) {
		imap_view_close(s);
		s->state = IMAP_AUTH;
		imap_tagged_store_error(s, NULL, &err);
		goto out;
	}
	s->state = IMAP_SELECTED;
	if (j->condstore)
		s->condstore = true;
	imap_view_send_flags(s);
	imap_send(s, "* %zu EXISTS\r\n", v->n);
	if (!s->rev2)
		imap_send(s, "* 0 RECENT\r\n"); /* we keep no \Recent (RFC 9051 removed it) */
	imap_send(s, "* OK [UIDVALIDITY %u] UIDs valid\r\n", st.uidvalidity);
	imap_send(s, "* OK [UIDNEXT %u] Predicted next UID\r\n", st.uidnext);
	imap_send(s, "* OK [HIGHESTMODSEQ %llu] Highest\r\n", (unsigned long long)v->seen_modseq);
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
	imap_tagged(s, NULL, "OK", "[%s] %s completed", j->readonly ? "READ-ONLY" : "READ-WRITE",
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
				imap_tagged(s, cmd, "BAD", "QRESYNC is not enabled");
				return -1;
			}
			if (q->count < 2 || q->count > 4 || !imap_parser_arg_number(&q->list[0], &uv) ||
			    uv == 0 || !imap_parser_arg_number64(&q->list[1], &ms) || ms == 0) {
				imap_tagged(s, cmd, "BAD", "Invalid QRESYNC parameters");
				return -1;
			}
			j->qresync = true;
			j->condstore = true;
			j->q_uidvalidity = uv;
			j->q_modseq = ms;
			if (q->count >= 3) {
				const char *why;
				if (q->list[2].type != IMAP_ARG_ATOM ||
				    imap_seqset_parse(q->list[2].str, q->list[2].len, UINT32_MAX, 0,
						      &j->q_known, &why) < 0) {
					imap_tagged(s, cmd, "BAD", "Invalid known-uids");
					return -1;
				}
				j->q_has_known = true;
			}
			continue;
		}
		imap_tagged(s, cmd, "BAD", "Unknown SELECT parameter");
		return -1;
	}
	return 0;
}

int imap_cmd_select(struct imap_session *s, const struct imap_command *cmd)
{
	if (cmd->argc < 1 || cmd->argc > 2 ||
	    (cmd->argc == 2 && cmd->args[1].type != IMAP_ARG_LIST)) {
		imap_tagged(s, cmd, "BAD", "Usage: %s mailbox [(parameters)]", cmd->name);
		return 0;
	}
	struct select_job *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		imap_tagged(s, cmd, "NO", "[SERVERBUG] Out of memory");
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
	if (imap_session_async(s, select_work, select_done, j) < 0) {
		free(j->name);
		free(j);
		imap_tagged(s, cmd, "NO", "[SERVERBUG] Out of memory");
	}
	return 0;
}

/* ---- CREATE / DELETE / RENAME / SUBSCRIBE -------------------------------- */

int imap_cmd_create(struct imap_session *s, const struct imap_command *cmd)
{
	struct store_error err;
	const char *use = NULL;
	if (cmd->argc < 1 || cmd->argc > 2) {
		imap_tagged(s, cmd, "BAD", "Usage: CREATE mailbox [(USE (attr))]");
		return 0;
	}
	if (cmd->argc == 2) {
		/* RFC 6154 3: CREATE name (USE (\Sent)) */
		const struct imap_arg *a = &cmd->args[1];
		if (a->type != IMAP_ARG_LIST || a->count != 2 || !imap_parser_arg_atom_eq(&a->list[0], "USE") ||
		    a->list[1].type != IMAP_ARG_LIST || a->list[1].count != 1 ||
		    a->list[1].list[0].type != IMAP_ARG_ATOM) {
			imap_tagged(s, cmd, "BAD", "Invalid CREATE parameters");
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
		imap_tagged(s, cmd, "NO", "[ALREADYEXISTS] INBOX always exists");
	} else if (store_mailbox_create(s->suser, name, use, &err) < 0) {
		if (err.code == STORE_ERR_INVALID && use != NULL)
			imap_tagged(s, cmd, "NO", "[USEATTR] %s", err.text);
		else
			imap_tagged_store_error(s, cmd, &err);
	} else {
		imap_tagged(s, cmd, "OK", "CREATE completed");
	}
	free(name);
	return 0;
}

int imap_cmd_delete(struct imap_session *s, const struct imap_command *cmd)
{
	struct store_error err;
	if (cmd->argc != 1) {
		imap_tagged(s, cmd, "BAD", "Usage: DELETE mailbox");
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
		imap_tagged_store_error(s, cmd, &err);
	else
		imap_tagged(s, cmd, "OK", "DELETE completed");
	free(name);
	return 0;
}

int imap_cmd_rename(struct imap_session *s, const struct imap_command *cmd)
{
	struct store_error err;
	if (cmd->argc != 2) {
		imap_tagged(s, cmd, "BAD", "Usage: RENAME old new");
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
		imap_tagged_store_error(s, cmd, &err);
	else
		imap_tagged(s, cmd, "OK", "RENAME completed");
	free(from);
	free(to);
	return 0;
}

int imap_cmd_subscribe(struct imap_session *s, const struct imap_command *cmd)
{
	struct store_error err;
	if (cmd->argc != 1) {
		imap_tagged(s, cmd, "BAD", "Usage: %s mailbox", cmd->name);
		return 0;
	}
	char *name = imap_arg_mailbox(s, cmd, &cmd->args[0]);
	if (name == NULL)
		return 0;
	/* RFC 9051 6.3.7: subscribing to a name that does not exist is allowed. */
	if (store_subscribe(s->suser, name, strcmp(cmd->name, "SUBSCRIBE") == 0, &err) < 0)
		imap_tagged_store_error(s, cmd, &err);
	else
		imap_tagged(s, cmd, "OK", "%s completed", cmd->name);
	free(name);
	return 0;
}

int imap_cmd_namespace(struct imap_session *s, const struct imap_command *cmd)
{
	if (cmd->argc != 0) {
		imap_tagged(s, cmd, "BAD", "NAMESPACE takes no arguments");
		return 0;
	}
	imap_send(s, "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
	imap_tagged(s, cmd, "OK", "NAMESPACE completed");
	return 0;
}

/* ---- STATUS ------------------------------------------------------------- */

enum { ST_MESSAGES = 1, ST_UIDNEXT = 2, ST_UIDVALIDITY = 4, ST_UNSEEN = 8, ST_DELETED = 16,
       ST_SIZE = 32, ST_HIGHESTMODSEQ = 64, ST_RECENT = 128 };

static int parse_status_items(const struct imap_arg *list, unsigned *items_r)
{
	static const struct {
		const char *name;
		unsigned bit;
	} names[] = {
		{ "MESSAGES", ST_MESSAGES },	{ "UIDNEXT", ST_UIDNEXT },
		{ "UIDVALIDITY", ST_UIDVALIDITY }, { "UNSEEN", ST_UNSEEN },
		{ "DELETED", ST_DELETED },	{ "SIZE", ST_SIZE },
		{ "HIGHESTMODSEQ", ST_HIGHESTMODSEQ }, { "RECENT", ST_RECENT },
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

/* One "* STATUS name (...)" line; -1 with err if the mailbox can't be read. */
static int send_status(struct imap_session *s, const char *name, unsigned items,
		       struct store_error *err)
{
	struct store_mailbox *m = NULL;
	struct store_status st;
	if (store_mailbox_open(s->suser, name, &m, err) < 0)
		return -1;
	int rc = store_mailbox_status(m, &st, err);
	store_mailbox_close(&m);
	if (rc < 0)
		return -1;
	char text[300];
	size_t o = 0;
#define ADD(bit, fmt, val) \
	if (items & (bit)) \
		o += (size_t)snprintf(text + o, sizeof(text) - o, "%s" fmt, o ? " " : "", val)
	ADD(ST_MESSAGES, "MESSAGES %u", st.messages);
	ADD(ST_RECENT, "RECENT %u", 0u);
	ADD(ST_UIDNEXT, "UIDNEXT %u", st.uidnext);
	ADD(ST_UIDVALIDITY, "UIDVALIDITY %u", st.uidvalidity);
	ADD(ST_UNSEEN, "UNSEEN %u", st.unseen);
	ADD(ST_DELETED, "DELETED %u", st.deleted);
	ADD(ST_SIZE, "SIZE %llu", (unsigned long long)st.size);
	ADD(ST_HIGHESTMODSEQ, "HIGHESTMODSEQ %llu", (unsigned long long)st.highestmodseq);
#undef ADD
	imap_send(s, "* STATUS ");
	imap_send_mailbox(s, name);
	imap_send(s, " (%s)\r\n", text);
	return 0;
}

int imap_cmd_status(struct imap_session *s, const struct imap_command *cmd)
{
	struct store_error err;
	unsigned items;
	if (cmd->argc != 2 || parse_status_items(&cmd->args[1], &items) < 0) {
		imap_tagged(s, cmd, "BAD", "Usage: STATUS mailbox (items)");
		return 0;
	}
	char *name = imap_arg_mailbox(s, cmd, &cmd->args[0]);
	if (name == NULL)
		return 0;
	if (items & ST_HIGHESTMODSEQ)
		s->condstore = true; /* RFC 7162 3.1: a CONDSTORE-enabling command */
	if (send_status(s, name, items, &err) < 0)
		imap_tagged_store_error(s, cmd, &err);
	else {
		imap_view_sync(s, true);
		imap_tagged(s, cmd, "OK", "STATUS completed");
	}
	free(name);
	return 0;
}

/* ---- LIST / LSUB --------------------------------------------------------- */

/* RFC 9051 6.3.9: '*' matches anything, '%' anything but the separator.
 * INBOX matches case-insensitively. */
static bool wildmat(const char *pat, const char *name)
{
	for (; *pat != '\0'; pat++, name++) {
		if (*pat == '*' || *pat == '%') {
			for (const char *n = name;; n++) {
				if (wildmat(pat + 1, n))
					return true;
				if (*n == '\0' || (*pat == '%' && *n == '/'))
					return false;
			}
		}
		if (*name != *pat)
			return false;
	}
	return *name == '\0';
}

static bool match(const char *pat, const char *name)
{
	if (strncasecmp(pat, "INBOX", 5) == 0 && (pat[5] == '\0' || pat[5] == '/' || pat[5] == '*' ||
						  pat[5] == '%')) {
		char p[1024];
		snprintf(p, sizeof(p), "INBOX%s", pat + 5);
		return wildmat(p, name);
	}
	return wildmat(pat, name);
}

struct name_set {
	char **v;
	char **special;
	size_t n, cap;
};

static int add_name(void *ctx, const struct store_mailbox_info *info)
{
	struct name_set *ns = ctx;
	if (ns->n == ns->cap) {
		size_t cap = ns->cap ? ns->cap * 2 : 32;
		char **p = realloc(ns->v, cap * sizeof(*p));
		char **q = p ? realloc(ns->special, cap * sizeof(*q)) : NULL;
		if (p != NULL)
			ns->v = p;
		if (q == NULL)
			return 1;
		ns->special = q;
		ns->cap = cap;
	}
	ns->v[ns->n] = strdup(info->name);
	ns->special[ns->n] = info->special_use ? strdup(info->special_use) : NULL;
	ns->n++;
	return 0;
}

static int add_sub(void *ctx, const char *name)
{
	struct store_mailbox_info info = { name, NULL };
	return add_name(ctx, &info);
}

static void names_free(struct name_set *ns)
{
	for (size_t i = 0; i < ns->n; i++) {
		free(ns->v[i]);
		free(ns->special[i]);
	}
	free(ns->v);
	free(ns->special);
}

static ssize_t find_name(const struct name_set *ns, const char *name)
{
	for (size_t i = 0; i < ns->n; i++)
		if (ns->v[i] != NULL && strcmp(ns->v[i], name) == 0)
			return (ssize_t)i;
	return -1;
}

static bool has_child(const struct name_set *ns, const char *name)
{
	size_t len = strlen(name);
	for (size_t i = 0; i < ns->n; i++)
		if (ns->v[i] != NULL && strncmp(ns->v[i], name, len) == 0 && ns->v[i][len] == '/')
			return true;
	return false;
}

#define LSEL_SUBSCRIBED 1
#define LSEL_SPECIAL 2
#define LSEL_RECURSIVE 4
#define LRET_SUBSCRIBED 1
#define LRET_CHILDREN 2
#define LRET_SPECIAL 4
#define LRET_STATUS 8

static void list_one(struct imap_session *s, const char *name, const char *special, bool exists,
		     bool subscribed, bool children, unsigned ret, bool lsub, unsigned status_items)
{
	char attrs[200] = "";
	if (!exists)
		strcat(attrs, lsub || !s->rev2 ? "\\Noselect " : "\\NonExistent ");
	if (exists || !lsub)
		strcat(attrs, children ? "\\HasChildren " : "\\HasNoChildren ");
	if (subscribed && (ret & LRET_SUBSCRIBED))
		strcat(attrs, "\\Subscribed ");
	/* RFC 6154 2: special-use attributes may always be shown. */
	if (special != NULL && exists) {
		strcat(attrs, special);
		strcat(attrs, " ");
	}
	size_t len = strlen(attrs);
	if (len > 0)
		attrs[len - 1] = '\0';
	imap_send(s, "* %s (%s) \"/\" ", lsub ? "LSUB" : "LIST", attrs);
	imap_send_mailbox(s, name);
	imap_send(s, "\r\n");
	if ((ret & LRET_STATUS) && exists) {
		struct store_error err;
		send_status(s, name, status_items, &err); /* RFC 5819: errors are skipped */
	}
}

int imap_cmd_list(struct imap_session *s, const struct imap_command *cmd)
{
	bool lsub = strcmp(cmd->name, "LSUB") == 0;
	size_t ai = 0;
	unsigned sel = 0, ret = 0, status_items = 0;
	struct store_error err;
	struct name_set all = { 0 }, subs = { 0 };

	/* LIST [(selection options)] reference patterns [RETURN (options)] */
	if (!lsub && ai < cmd->argc && cmd->args[ai].type == IMAP_ARG_LIST) {
		const struct imap_arg *o = &cmd->args[ai++];
		for (size_t i = 0; i < o->count; i++) {
			if (imap_parser_arg_atom_eq(&o->list[i], "SUBSCRIBED"))
				sel |= LSEL_SUBSCRIBED;
			else if (imap_parser_arg_atom_eq(&o->list[i], "SPECIAL-USE"))
				sel |= LSEL_SPECIAL;
			else if (imap_parser_arg_atom_eq(&o->list[i], "RECURSIVEMATCH"))
				sel |= LSEL_RECURSIVE;
			else if (!imap_parser_arg_atom_eq(&o->list[i], "REMOTE")) {
				imap_tagged(s, cmd, "BAD", "Unknown LIST selection option");
				return 0;
			}
		}
		if ((sel & LSEL_RECURSIVE) && !(sel & LSEL_SUBSCRIBED)) {
			/* RFC 5258 3.1: RECURSIVEMATCH needs another option. */
			imap_tagged(s, cmd, "BAD", "RECURSIVEMATCH alone");
			return 0;
		}
	}
	if (cmd->argc < ai + 2) {
		imap_tagged(s, cmd, "BAD", "Usage: %s reference pattern", cmd->name);
		return 0;
	}
	const struct imap_arg *ref_arg = &cmd->args[ai++];
	const struct imap_arg *pat_arg = &cmd->args[ai++];
	if (!lsub && ai < cmd->argc) {
		if (!imap_parser_arg_atom_eq(&cmd->args[ai], "RETURN") || ai + 1 >= cmd->argc ||
		    cmd->args[ai + 1].type != IMAP_ARG_LIST) {
			imap_tagged(s, cmd, "BAD", "Invalid LIST arguments");
			return 0;
		}
		const struct imap_arg *o = &cmd->args[ai + 1];
		for (size_t i = 0; i < o->count; i++) {
			if (imap_parser_arg_atom_eq(&o->list[i], "SUBSCRIBED"))
				ret |= LRET_SUBSCRIBED;
			else if (imap_parser_arg_atom_eq(&o->list[i], "CHILDREN"))
				ret |= LRET_CHILDREN;
			else if (imap_parser_arg_atom_eq(&o->list[i], "SPECIAL-USE"))
				ret |= LRET_SPECIAL;
			else if (imap_parser_arg_atom_eq(&o->list[i], "STATUS") && i + 1 < o->count &&
				 parse_status_items(&o->list[i + 1], &status_items) == 0) {
				ret |= LRET_STATUS;
				i++;
			} else {
				imap_tagged(s, cmd, "BAD", "Unknown LIST return option");
				return 0;
			}
		}
	}
	const char *ref;
	size_t reflen;
	if (!imap_parser_arg_astring(ref_arg, &ref, &reflen)) {
		imap_tagged(s, cmd, "BAD", "Invalid reference");
		return 0;
	}
	/* Patterns: one, or a list of them (RFC 5258 multiple patterns). */
	const struct imap_arg *pats = pat_arg;
	size_t npats = 1;
	if (pat_arg->type == IMAP_ARG_LIST && !lsub) {
		pats = pat_arg->list;
		npats = pat_arg->count;
	}
	if (store_mailbox_list(s->suser, add_name, &all, &err) < 0 ||
	    store_subscriptions(s->suser, add_sub, &subs, &err) < 0) {
		names_free(&all);
		names_free(&subs);
		imap_tagged_store_error(s, cmd, &err);
		return 0;
	}
	for (size_t p = 0; p < npats; p++) {
		const char *pat = pats[p].str;
		if (pats[p].type == IMAP_ARG_LIST || pats[p].type == IMAP_ARG_STREAMED || pat == NULL) {
			imap_tagged(s, cmd, "BAD", "Invalid pattern");
			goto out;
		}
		char full[2048];
		snprintf(full, sizeof(full), "%.*s%s", (int)reflen, ref, pat);
		if (!s->utf8) {
			struct buf d = BUF_INIT;
			const char *why;
			if (imap_utf7_decode(full, strlen(full), &d, &why) == 0 && !d.failed)
				snprintf(full, sizeof(full), "%s", buf_cstr(&d));
			buf_free(&d);
		}
		if (full[0] == '\0' && !lsub) {
			/* RFC 9051 6.3.9: the hierarchy delimiter and root. */
			imap_send(s, "* LIST (\\Noselect) \"/\" \"\"\r\n");
			continue;
		}
		const struct name_set *base = lsub || (sel & LSEL_SUBSCRIBED) ? &subs : &all;
		for (size_t i = 0; i < base->n; i++) {
			const char *name = base->v[i];
			if (!match(full, name))
				continue;
			ssize_t a = find_name(&all, name);
			bool exists = a >= 0;
			const char *special = a >= 0 ? all.special[a] : NULL;
			if ((sel & LSEL_SPECIAL) && special == NULL)
				continue;
			list_one(s, name, special, exists, find_name(&subs, name) >= 0 || lsub,
				 has_child(&all, name), ret | (sel & LSEL_SUBSCRIBED ? LRET_SUBSCRIBED : 0),
				 lsub, status_items);
		}
		/* Parents that do not exist but have matching children, for '%'
		 * patterns (RFC 9051 6.3.9: \NonExistent / \Noselect). */
		if (!lsub && !(sel & (LSEL_SUBSCRIBED | LSEL_SPECIAL))) {
			for (size_t i = 0; i < all.n; i++) {
				char parent[1024];
				snprintf(parent, sizeof(parent), "%s", all.v[i]);
				char *slash;
				while ((slash = strrchr(parent, '/')) != NULL) {
					*slash = '\0';
					if (find_name(&all, parent) >= 0)
						break;
					if (!match(full, parent))
						continue;
					/* report each missing parent once */
					bool dup = false;
					for (size_t k = 0; k < i && !dup; k++)
						dup = strncmp(all.v[k], parent, strlen(parent)) == 0 &&
						      all.v[k][strlen(parent)] == '/';
					if (!dup)
						list_one(s, parent, NULL, false, find_name(&subs, parent) >= 0,
							 true, ret, false, 0);
				}
			}
		}
	}
	imap_view_sync(s, true);
	imap_tagged(s, cmd, "OK", "%s completed", cmd->name);
out:
	names_free(&all);
	names_free(&subs);
	return 0;
}

/* ---- IDLE ------------------------------------------------------------------ */

void imap_idle_wakeup(void *session)
{
	struct imap_session *s = session;
	if (s->idling && s->view != NULL && s->conn != NULL) {
		imap_view_sync(s, true);
		store_user_release_index(s->suser);
		if (s->idling && s->view != NULL)
			store_mailbox_release_fds(s->view->mbox);
	}
}

int imap_cmd_idle(struct imap_session *s, const struct imap_command *cmd)
{
	if (cmd->argc != 0) {
		imap_tagged(s, cmd, "BAD", "IDLE takes no arguments");
		return 0;
	}
	s->idling = true;
	imap_send(s, "+ idling\r\n");
	if (s->view != NULL) {
		imap_view_sync(s, true);
		imap_view_watch(s);
	}
	/* Most connections spend their life in IDLE: hold no index connection
	 * and no directory descriptors meanwhile (both reopen on the next
	 * change or command; the inotify watches need neither). */
	store_user_release_index(s->suser);
	if (s->view != NULL)
		store_mailbox_release_fds(s->view->mbox);
	/* RFC 9051 6.3.13: IDLE outlives the autologout timer. */
	conn_set_idle_timeout(s->conn, (unsigned)config_uint(s->env->config, "imap_idle_timeout"));
	return 0;
}

void imap_idle_line(struct imap_session *s, const char *line, size_t len)
{
	s->idling = false;
	imap_view_unwatch(s);
	conn_set_idle_timeout(s->conn, (unsigned)config_uint(s->env->config, "imap_autologout"));
	if (len != 4 || strncasecmp(line, "DONE", 4) != 0) {
		imap_tagged(s, NULL, "BAD", "Expected DONE");
	} else {
		imap_view_sync(s, true);
		imap_tagged(s, NULL, "OK", "IDLE terminated");
	}
	free(s->cmd_tag);
	s->cmd_tag = NULL;
}
