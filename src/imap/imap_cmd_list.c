/*
 * imap_cmd_list.c: LIST (RFC 9051 6.3.9, with LIST-EXTENDED RFC 5258,
 * LIST-STATUS RFC 5819, SPECIAL-USE RFC 6154) and LSUB (RFC 3501 6.3.9).
 */
#include "imap/imap_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/imap_utf7.h"
#include "lib/buf.h"


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

/* One LIST/LSUB response. A name that does not exist is \Noselect in LSUB
 * and in a basic IMAP4rev1 LIST (RFC 3501 6.3.8, 6.3.9), \NonExistent in
 * IMAP4rev2 and when LIST-EXTENDED selection options were given (RFC 5258
 * 3.4: LIST (SUBSCRIBED) lists subscriptions whose mailbox is gone that
 * way). childinfo: ("CHILDINFO" ("SUBSCRIBED")) (RFC 5258 3.5). */
static void list_one(struct imap_session *s, const char *name, const char *special, bool exists,
		     bool subscribed, bool children, unsigned ret, bool lsub, unsigned status_items,
		     bool extended, bool childinfo)
{
	char attrs[200] = "";
	if (!exists)
		strcat(attrs, lsub || (!s->rev2 && !extended) ? "\\Noselect " : "\\NonExistent ");
	if (exists ? true : !lsub && children)
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
	imap_send(s, childinfo && !lsub ? " (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n" : "\r\n");
	if ((ret & LRET_STATUS) && exists) {
		struct error err;
		imap_cmd_status_send(s, name, status_items, &err); /* RFC 5819: errors are skipped */
	}
	if (s->list_metadata != NULL && exists)
		imap_cmd_metadata_list_send(s, name, s->list_metadata);
}

/* The names that match pat and have a subscribed descendant that does not
 * (RFC 5258 3.5 CHILDINFO with RECURSIVEMATCH; RFC 3501 6.3.9: LSUB "" "%"
 * with foo/bar subscribed gives foo as \Noselect), each once, into out. */
static int subscribed_parents(const char *pat, const struct name_set *subs, struct name_set *out)
{
	for (size_t i = 0; i < subs->n; i++) {
		if (match(pat, subs->v[i]))
			continue;
		char parent[1024];
		snprintf(parent, sizeof(parent), "%s", subs->v[i]);
		char *slash;
		while ((slash = strrchr(parent, '/')) != NULL) {
			*slash = '\0';
			if (match(pat, parent) && find_name(out, parent) < 0 && add_sub(out, parent) != 0)
				return -1;
		}
	}
	return 0;
}

/* What one LIST or LSUB command asks, and the names it works on. */
struct list_ctx {
	struct imap_session *s;
	bool lsub;
	unsigned sel, ret, status_items;
	struct name_set all, subs;
};

/* The responses for one pattern (reference included, decoded). -1: out
 * of memory. */
static int list_matches(const struct list_ctx *lc, const char *full)
{
	struct imap_session *s = lc->s;
	const struct name_set *all = &lc->all, *subs = &lc->subs;
	bool lsub = lc->lsub;
	unsigned sel = lc->sel, ret = lc->ret;
	const struct name_set *base = lsub || (sel & LSEL_SUBSCRIBED) ? subs : all;
	bool recursive = lsub || (sel & LSEL_RECURSIVE);
	struct name_set parents = { 0 };
	if (recursive && subscribed_parents(full, subs, &parents) < 0) {
		names_free(&parents);
		return -1;
	}
	for (size_t i = 0; i < base->n; i++) {
		const char *name = base->v[i];
		if (!match(full, name))
			continue;
		ssize_t a = find_name(all, name);
		const char *special = a >= 0 ? all->special[a] : NULL;
		if ((sel & LSEL_SPECIAL) && special == NULL)
			continue;
		list_one(s, name, special, a >= 0, find_name(subs, name) >= 0 || lsub,
			 has_child(all, name), ret | (sel & LSEL_SUBSCRIBED ? LRET_SUBSCRIBED : 0), lsub,
			 lc->status_items, sel != 0, find_name(&parents, name) >= 0);
	}
	/* RECURSIVEMATCH (RFC 5258 3.5) and LSUB (RFC 3501 6.3.9): the
	 * matching parents of subscribed names, not subscribed themselves. */
	for (size_t i = 0; i < parents.n; i++) {
		const char *name = parents.v[i];
		if (find_name(subs, name) >= 0)
			continue; /* listed above, with its CHILDINFO */
		ssize_t a = find_name(all, name);
		/* LSUB: \Noselect, "not subscribed" (RFC 3501 6.3.9) */
		list_one(s, name, a >= 0 ? all->special[a] : NULL, a >= 0 && !lsub, false,
			 has_child(all, name), ret, lsub, lc->status_items, sel != 0, true);
	}
	names_free(&parents);
	/* Parents that do not exist but have matching children, for '%'
	 * patterns (RFC 9051 6.3.9: \NonExistent / \Noselect). */
	if (lsub || (sel & (LSEL_SUBSCRIBED | LSEL_SPECIAL)))
		return 0;
	for (size_t i = 0; i < all->n; i++) {
		char parent[1024];
		snprintf(parent, sizeof(parent), "%s", all->v[i]);
		char *slash;
		while ((slash = strrchr(parent, '/')) != NULL) {
			*slash = '\0';
			if (find_name(all, parent) >= 0)
				break;
			if (!match(full, parent))
				continue;
			/* report each missing parent once */
			bool dup = false;
			for (size_t k = 0; k < i && !dup; k++)
				dup = strncmp(all->v[k], parent, strlen(parent)) == 0 &&
				      all->v[k][strlen(parent)] == '/';
			if (!dup)
				list_one(s, parent, NULL, false, find_name(subs, parent) >= 0, true, ret,
					 false, 0, sel != 0, false);
		}
	}
	return 0;
}

static int list_run(struct imap_session *s, const struct imap_command *cmd)
{
	bool lsub = strcmp(cmd->name, "LSUB") == 0;
	size_t ai = 0;
	unsigned sel = 0, ret = 0, status_items = 0;
	struct error err;
	struct list_ctx lc = { .s = s, .lsub = lsub };

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
				imap_send_tagged(s, cmd, "BAD", "Unknown LIST selection option");
				return 0;
			}
		}
		if ((sel & LSEL_RECURSIVE) && !(sel & LSEL_SUBSCRIBED)) {
			/* RFC 5258 3.1: RECURSIVEMATCH needs another option. */
			imap_send_tagged(s, cmd, "BAD", "RECURSIVEMATCH alone");
			return 0;
		}
	}
	if (cmd->argc < ai + 2) {
		imap_send_tagged(s, cmd, "BAD", "Usage: %s reference pattern", cmd->name);
		return 0;
	}
	const struct imap_arg *ref_arg = &cmd->args[ai++];
	const struct imap_arg *pat_arg = &cmd->args[ai++];
	if (!lsub && ai < cmd->argc) {
		if (!imap_parser_arg_atom_eq(&cmd->args[ai], "RETURN") || ai + 1 >= cmd->argc ||
		    cmd->args[ai + 1].type != IMAP_ARG_LIST) {
			imap_send_tagged(s, cmd, "BAD", "Invalid LIST arguments");
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
				 imap_cmd_status_items(&o->list[i + 1], &status_items) == 0) {
				ret |= LRET_STATUS;
				i++;
			} else if (imap_parser_arg_atom_eq(&o->list[i], "METADATA") && i + 1 < o->count &&
				   imap_cmd_metadata_list_check(&o->list[i + 1]) == 0) {
				s->list_metadata = &o->list[++i]; /* RFC 9590 */
			} else {
				imap_send_tagged(s, cmd, "BAD", "Unknown LIST return option");
				return 0;
			}
		}
	}
	const char *ref;
	size_t reflen;
	if (!imap_parser_arg_astring(ref_arg, &ref, &reflen)) {
		imap_send_tagged(s, cmd, "BAD", "Invalid reference");
		return 0;
	}
	/* Patterns: one, or a list of them (RFC 5258 multiple patterns). */
	const struct imap_arg *pats = pat_arg;
	size_t npats = 1;
	if (pat_arg->type == IMAP_ARG_LIST && !lsub) {
		pats = pat_arg->list;
		npats = pat_arg->count;
	}
	lc.sel = sel;
	lc.ret = ret;
	lc.status_items = status_items;
	if (store_mailbox_list(s->suser, add_name, &lc.all, &err) < 0 ||
	    store_subscriptions(s->suser, add_sub, &lc.subs, &err) < 0) {
		names_free(&lc.all);
		names_free(&lc.subs);
		imap_send_store_error(s, cmd, &err);
		return 0;
	}
	for (size_t p = 0; p < npats; p++) {
		const char *pat = pats[p].str;
		if (pats[p].type == IMAP_ARG_LIST || pats[p].type == IMAP_ARG_STREAMED || pat == NULL) {
			imap_send_tagged(s, cmd, "BAD", "Invalid pattern");
			goto out;
		}
		char full[2048];
		snprintf(full, sizeof(full), "%.*s%s", (int)reflen, ref, pat);
		if (!s->utf8) {
			struct buf d = BUF_INIT;
			struct error why;
			if (imap_utf7_decode(full, strlen(full), &d, &why) == 0 && !d.failed)
				snprintf(full, sizeof(full), "%s", buf_cstr(&d));
			buf_free(&d);
		}
		if (full[0] == '\0' && !lsub) {
			/* RFC 9051 6.3.9: the hierarchy delimiter and root. */
			imap_send(s, "* LIST (\\Noselect) \"/\" \"\"\r\n");
			continue;
		}
		if (list_matches(&lc, full) < 0) {
			imap_send_tagged(s, cmd, "NO", "[SERVERBUG] Out of memory");
			goto out;
		}
	}
	imap_view_sync(s, true);
	imap_send_tagged(s, cmd, "OK", "%s completed", cmd->name);
out:
	names_free(&lc.all);
	names_free(&lc.subs);
	return 0;
}

static int cmd_list(struct imap_session *s, const struct imap_command *cmd)
{
	int rc = list_run(s, cmd);
	s->list_metadata = NULL; /* points into the command's arguments */
	return rc;
}

static const struct imap_cmd_def rows[] = {
	{ { "LIST", IMAP_IN_AUTH }, cmd_list, 0 },
	{ { "LSUB", IMAP_IN_AUTH }, cmd_list, 0 },
};
const struct imap_cmd_family imap_cmd_list = { rows, sizeof(rows) / sizeof(rows[0]) };
