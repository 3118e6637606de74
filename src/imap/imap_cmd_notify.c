/*
 * imap_cmd_notify.c: NOTIFY (RFC 5465).
 *
 * Design note. NOTIFY SET gives filters (SELECTED, SELECTED-DELAYED,
 * PERSONAL, INBOXES, SUBSCRIBED, SUBTREE, MAILBOXES), each with the events
 * the client wants for the mailboxes it names. We support MessageNew (with
 * UID, FLAGS and MODSEQ fetch attributes for the selected mailbox),
 * MessageExpunge, FlagChange, MailboxName and SubscriptionChange, the ones
 * RFC 5465 5 requires; the metadata events are refused with [BADEVENT]
 * (RFC 5465 3.1: NO, listing the events we do support).
 *
 * How changes arrive. A session with NOTIFY active registers its user's
 * root directory with a per-worker store_notify (store_notify_add_user): one
 * kernel watch per user per worker, shared by all of that user's sessions,
 * sees every index commit (so every change made through the store: LMTP,
 * `mailroom deliver`, other sessions), every mailbox directory created,
 * removed or renamed, and the subscriptions file replaced. Files dropped
 * into a maildir by hand are not seen until the index learns of them (IDLE's
 * own watch on the selected mailbox still sees them).
 *
 * On a wakeup the session, when no command is running (or it is in IDLE),
 * folds the selected mailbox's changes in (imap_view_sync: EXISTS, EXPUNGE,
 * FETCH FLAGS, and FETCH of the attributes MessageNew asked for), then
 * compares a snapshot of the other mailboxes it follows (name, UIDVALIDITY,
 * UIDNEXT, MESSAGES, HIGHESTMODSEQ) and of the subscriptions with the store
 * and sends STATUS and LIST for the differences. A RENAME is told as a
 * LIST with OLDNAME (RFC 5465 5.4, RFC 5258) when a vanished and a new name
 * share UIDVALIDITY; else as a delete and a create. While a command runs the
 * wakeup is remembered and handled when the command ends.
 *
 * Costs. Per session: the filters and the snapshot, about 40 bytes plus the
 * name per followed mailbox; at most NOTIFY_MAX_BOXES mailboxes, beyond
 * which the session gets [NOTIFICATIONOVERFLOW] and NOTIFY is off (RFC 5465
 * 5.8). Per wakeup: one status query per followed mailbox, on the loop
 * (unlike IDLE's sync, which waits for locks on a job thread): a user with
 * very many mailboxes and a busy index pays for it, the others do not.
 * Our own commands commit to the index too and so wake us; the snapshot
 * comparison turns that into nothing or into STATUS for a mailbox we changed
 * while not selected, which RFC 5465 allows.
 */
#include "imap/imap_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>

#define NOTIFY_MAX_BOXES   2000
#define NOTIFY_MAX_FILTERS 32
#define NOTIFY_MAX_NAMES   256 /* per SUBTREE / MAILBOXES filter */

enum {
	EV_NEW = 1,
	EV_EXPUNGE = 2,
	EV_FLAGS = 4,
	EV_MAILBOXNAME = 8,
	EV_SUBSCRIPTION = 16,
};
#define EV_MESSAGE (EV_NEW | EV_EXPUNGE | EV_FLAGS)

enum filter_kind {
	F_SELECTED,
	F_SELECTED_DELAYED,
	F_INBOXES,
	F_PERSONAL,
	F_SUBSCRIBED,
	F_SUBTREE,
	F_MAILBOXES
};

struct filter {
	enum filter_kind kind;
	unsigned events;
	char **names; /* SUBTREE, MAILBOXES: UTF-8 */
	size_t nnames;
};

struct box {
	char *name;
	uint32_t uidvalidity, uidnext, messages;
	uint64_t highestmodseq;
};

struct imap_notify {
	unsigned watch_id;
	struct filter *filters;
	size_t nfilters;
	unsigned sel_events; /* for the selected mailbox */
	bool sel_delayed;    /* SELECTED-DELAYED: expunges wait for a command */
	struct box *boxes;   /* sorted by name */
	size_t nboxes;
	char **subs; /* sorted */
	size_t nsubs;
	bool pending; /* woken while a command ran */
};

static struct store_notify *notify;
static struct event *notify_ev;

/* ---- snapshots ---- */

static int cmp_box(const void *a, const void *b)
{
	return strcmp(((const struct box *)a)->name, ((const struct box *)b)->name);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void boxes_free(struct box *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(b[i].name);
	free(b);
}

static void strs_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

struct strs {
	char **v;
	size_t n, cap;
	bool overflow;
};

static int strs_add(struct strs *l, const char *s)
{
	if (l->n >= NOTIFY_MAX_BOXES) {
		l->overflow = true;
		return 1;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		char **p = realloc(l->v, cap * sizeof(*p));
		if (p == NULL) {
			l->overflow = true;
			return 1;
		}
		l->v = p;
		l->cap = cap;
	}
	if ((l->v[l->n] = strdup(s)) == NULL) {
		l->overflow = true;
		return 1;
	}
	l->n++;
	return 0;
}

static int list_cb(void *ctx, const struct store_mailbox_info *info)
{
	return strs_add(ctx, info->name);
}

static int subs_cb(void *ctx, const char *name)
{
	return strs_add(ctx, name);
}

static bool in_sorted(char **v, size_t n, const char *name)
{
	return v != NULL && n > 0 && bsearch(&name, v, n, sizeof(*v), cmp_str) != NULL;
}

static bool filter_matches(const struct imap_notify *nt, const struct filter *f, const char *name)
{
	switch (f->kind) {
	case F_SELECTED:
	case F_SELECTED_DELAYED:
		return false; /* the selected mailbox is handled by the view */
	case F_INBOXES:
		/* RFC 5465 6: the mailboxes an MDA may deliver to; ours deliver to
		 * INBOX, or elsewhere only when told (deliver -m, as Dovecot). */
		return strcmp(name, "INBOX") == 0;
	case F_PERSONAL:
		return true; /* one namespace, all the user's */
	case F_SUBSCRIBED:
		return in_sorted(nt->subs, nt->nsubs, name);
	case F_SUBTREE:
	case F_MAILBOXES:
		for (size_t i = 0; i < f->nnames; i++) {
			size_t l = strlen(f->names[i]);
			if (strcmp(name, f->names[i]) == 0 ||
			    (f->kind == F_SUBTREE && strncmp(name, f->names[i], l) == 0 &&
			     name[l] == '/'))
				return true;
		}
		return false;
	}
	return false;
}

/* The events that apply to a (non-selected) mailbox: the first filter that
 * names it decides (RFC 5465 6 leaves overlaps to the client; Dovecot
 * also takes the first match). */
static unsigned box_events(const struct imap_notify *nt, const char *name)
{
	for (size_t i = 0; i < nt->nfilters; i++)
		if (filter_matches(nt, &nt->filters[i], name))
			return nt->filters[i].events;
	return 0;
}

static unsigned all_events(const struct imap_notify *nt)
{
	unsigned ev = 0;
	for (size_t i = 0; i < nt->nfilters; i++)
		ev |= nt->filters[i].events;
	return ev;
}

/* The store's mailboxes and subscriptions now. -1: overflow or error. */
static int read_state(struct imap_session *s, struct box **boxes_r, size_t *nboxes_r,
		      char ***subs_r, size_t *nsubs_r)
{
	struct imap_notify *nt = s->notify;
	struct strs names = {0}, subs = {0};
	struct error err;
	struct box *boxes = NULL;
	size_t n = 0;
	if (store_mailbox_list(s->suser, list_cb, &names, &err) < 0 || names.overflow)
		goto fail;
	/* Always: SUBSCRIBED filters need them as well as SubscriptionChange. */
	if (store_subscriptions(s->suser, subs_cb, &subs, &err) < 0 || subs.overflow)
		goto fail;
	if (subs.n > 0)
		qsort(subs.v, subs.n, sizeof(*subs.v), cmp_str);
	/* SUBSCRIBED filters match against the new subscription list. */
	char **old_subs = nt->subs;
	size_t old_nsubs = nt->nsubs;
	nt->subs = subs.v;
	nt->nsubs = subs.n;
	boxes = calloc(names.n ? names.n : 1, sizeof(*boxes));
	for (size_t i = 0; boxes != NULL && i < names.n; i++) {
		if (box_events(nt, names.v[i]) == 0)
			continue;
		struct store_mailbox *m = NULL;
		struct store_status st;
		if (store_mailbox_open(s->suser, names.v[i], &m, &err) < 0)
			continue; /* deleted meanwhile */
		int rc = store_mailbox_status(m, &st, &err);
		store_mailbox_close(&m);
		if (rc < 0)
			continue;
		boxes[n].name = names.v[i];
		names.v[i] = NULL;
		boxes[n].uidvalidity = st.uidvalidity;
		boxes[n].uidnext = st.uidnext;
		boxes[n].messages = st.messages;
		boxes[n].highestmodseq = st.highestmodseq;
		n++;
	}
	nt->subs = old_subs;
	nt->nsubs = old_nsubs;
	if (boxes == NULL)
		goto fail;
	qsort(boxes, n, sizeof(*boxes), cmp_box);
	strs_free(names.v, names.n);
	*boxes_r = boxes;
	*nboxes_r = n;
	*subs_r = subs.v;
	*nsubs_r = subs.n;
	return 0;
fail:
	strs_free(names.v, names.n);
	strs_free(subs.v, subs.n);
	return -1;
}

/* ---- responses ---- */

static void send_status(struct imap_session *s, const struct box *b)
{
	imap_send(s, "* STATUS ");
	imap_send_mailbox(s, b->name);
	imap_send(s, " (MESSAGES %u UIDNEXT %u UIDVALIDITY %u", b->messages, b->uidnext,
		  b->uidvalidity);
	if (s->condstore)
		imap_send(s, " HIGHESTMODSEQ %llu", (unsigned long long)b->highestmodseq);
	imap_send(s, ")\r\n");
}

/* RFC 5465 5.4/5.5: LIST with the mailbox's attributes; \NonExistent for
 * one that went (RFC 5258 3.4); OLDNAME extended data for a rename. */
static void send_list(struct imap_session *s, const char *name, const char *attrs,
		      const char *oldname)
{
	imap_send(s, "* LIST (%s) \"/\" ", attrs);
	imap_send_mailbox(s, name);
	if (oldname != NULL) {
		imap_send(s, " (\"OLDNAME\" (");
		imap_send_mailbox(s, oldname);
		imap_send(s, "))");
	}
	imap_send(s, "\r\n");
}

static const struct box *find_box(const struct box *b, size_t n, const char *name)
{
	struct box key = {.name = (char *)(uintptr_t)name};
	if (n == 0)
		return NULL;
	return bsearch(&key, b, n, sizeof(*b), cmp_box);
}

static bool is_selected(const struct imap_session *s, const char *name)
{
	return s->view != NULL && strcmp(store_mailbox_name(s->view->mbox), name) == 0;
}

static void overflow(struct imap_session *s)
{
	/* RFC 5465 5.8: say so and behave as after NOTIFY NONE. */
	imap_send(s, "* OK [NOTIFICATIONOVERFLOW] Too many changes; NOTIFY is off\r\n");
	imap_cmd_notify_free(s);
}

/* Compare the store with the snapshot, tell the client, keep the new one.
 * initial: the first snapshot (NOTIFY SET), told only as STATUS and only
 * when send_all_status (NOTIFY SET STATUS). */
static void diff_and_send(struct imap_session *s, bool initial, bool send_all_status)
{
	struct imap_notify *nt = s->notify;
	struct box *nb;
	size_t nn;
	char **subs;
	size_t nsubs;
	if (read_state(s, &nb, &nn, &subs, &nsubs) < 0) {
		overflow(s);
		return;
	}
	/* The selected mailbox is the SELECTED filter's when there is one;
	 * without one it is like any other (RFC 5465 6.1: the filters name
	 * mailboxes, SELECTED names the selected one first). */
	bool sel_covered = nt->sel_events != 0;
	/* Gone: deleted, or renamed (a new name with its UIDVALIDITY). */
	for (size_t i = 0; i < nt->nboxes && !initial; i++) {
		const struct box *o = &nt->boxes[i];
		if (find_box(nb, nn, o->name) != NULL ||
		    !(box_events(nt, o->name) & EV_MAILBOXNAME))
			continue;
		const struct box *renamed = NULL;
		for (size_t k = 0; k < nn && renamed == NULL; k++)
			if (nb[k].uidvalidity == o->uidvalidity &&
			    find_box(nt->boxes, nt->nboxes, nb[k].name) == NULL)
				renamed = &nb[k];
		if (renamed != NULL)
			send_list(s, renamed->name, "", o->name);
		else
			send_list(s, o->name, "\\NonExistent", NULL);
	}
	for (size_t i = 0; i < nn; i++) {
		const struct box *b = &nb[i];
		const struct box *o = find_box(nt->boxes, nt->nboxes, b->name);
		unsigned ev = box_events(nt, b->name);
		if (o == NULL && !initial && (ev & EV_MAILBOXNAME)) {
			bool was_renamed = false;
			for (size_t k = 0; k < nt->nboxes && !was_renamed; k++)
				was_renamed = nt->boxes[k].uidvalidity == b->uidvalidity &&
					      find_box(nb, nn, nt->boxes[k].name) == NULL;
			if (!was_renamed)
				send_list(s, b->name, "", NULL);
		}
		if (!(ev & EV_MESSAGE) || (sel_covered && is_selected(s, b->name)))
			continue;
		bool changed =
			o == NULL || o->messages != b->messages || o->uidnext != b->uidnext ||
			o->uidvalidity != b->uidvalidity ||
			(s->condstore && (ev & EV_FLAGS) && o->highestmodseq != b->highestmodseq);
		/* A new mailbox is told by its LIST (MailboxName), not STATUS. */
		if (send_all_status || (o != NULL && changed))
			send_status(s, b);
	}
	/* RFC 5465 5.5: a LIST, with or without \Subscribed. */
	if (!initial && (all_events(nt) & EV_SUBSCRIPTION)) {
		for (size_t i = 0; i < nsubs; i++)
			if (!in_sorted(nt->subs, nt->nsubs, subs[i]))
				send_list(s, subs[i], "\\Subscribed", NULL);
		for (size_t i = 0; i < nt->nsubs; i++)
			if (!in_sorted(subs, nsubs, nt->subs[i]))
				send_list(s, nt->subs[i], "", NULL);
	}
	boxes_free(nt->boxes, nt->nboxes);
	strs_free(nt->subs, nt->nsubs);
	nt->boxes = nb;
	nt->nboxes = nn;
	nt->subs = subs;
	nt->nsubs = nsubs;
}

/* ---- wakeups ---- */

static bool command_running(const struct imap_session *s)
{
	if (s->base.busy > 0 || s->base.pump.step != NULL || s->authenticating || s->append != NULL)
		return true;
	return !s->idling && s->cmd_tag != NULL;
}

/* As IDLE does: a session that waits (in IDLE, or with nothing selected)
 * holds no index connection or directories between wakeups; reading the
 * snapshot opened them. A selected session keeps its index, as always. */
static void release(struct imap_session *s)
{
	if (s->view != NULL && !s->idling)
		return;
	store_user_release_index(s->suser);
	if (s->view != NULL)
		store_mailbox_release_fds(s->view->mbox);
}

static void deliver(struct imap_session *s)
{
	struct imap_notify *nt = s->notify;
	nt->pending = false;
	if (nt->sel_events != 0 && s->view != NULL)
		imap_view_sync(s, !nt->sel_delayed || s->idling);
	if (s->notify != NULL && !s->base.closing)
		diff_and_send(s, false, false);
	release(s);
}

static void wakeup(void *owner)
{
	struct imap_session *s = owner;
	if (s->notify == NULL || s->base.conn == NULL || s->base.closing)
		return;
	if (command_running(s)) {
		s->notify->pending = true;
		return;
	}
	deliver(s);
}

void imap_cmd_notify_flush(struct imap_session *s)
{
	if (s->notify != NULL && s->notify->pending && !s->base.closing && !command_running(s))
		deliver(s);
}

static void notify_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	store_notify_read(notify, wakeup);
}

static int watch(struct imap_session *s)
{
	if (notify == NULL) {
		notify = store_notify_new();
		if (notify == NULL)
			return -1;
		notify_ev = event_new(s->base.env->base, store_notify_fd(notify),
				      EV_READ | EV_PERSIST, notify_cb, NULL);
		if (notify_ev == NULL || event_add(notify_ev, NULL) < 0)
			return -1;
	}
	s->notify->watch_id = store_notify_add_user(notify, s->suser, s);
	return s->notify->watch_id != 0 ? 0 : -1;
}

static void notify_free(struct imap_notify *nt)
{
	if (nt == NULL)
		return;
	if (nt->watch_id != 0 && notify != NULL)
		store_notify_remove(notify, nt->watch_id);
	for (size_t i = 0; i < nt->nfilters; i++)
		strs_free(nt->filters[i].names, nt->filters[i].nnames);
	free(nt->filters);
	boxes_free(nt->boxes, nt->nboxes);
	strs_free(nt->subs, nt->nsubs);
	free(nt);
}

void imap_cmd_notify_free(struct imap_session *s)
{
	notify_free(s->notify);
	s->notify = NULL;
	s->notify_fetch = 0;
}

/* ---- NOTIFY command ---- */

/* Result of parsing: 0 ok, or which reply. */
enum parse_result { P_OK, P_BAD, P_BADEVENT, P_NO };

struct parse {
	struct imap_session *s;
	const struct imap_command *cmd;
	struct imap_notify *nt;
	unsigned fetch;
	const char *why;
};

static const struct {
	const char *name;
	enum filter_kind kind;
} filter_names[] = {
	{"SELECTED", F_SELECTED},     {"SELECTED-DELAYED", F_SELECTED_DELAYED},
	{"INBOXES", F_INBOXES},	      {"PERSONAL", F_PERSONAL},
	{"SUBSCRIBED", F_SUBSCRIBED}, {"SUBTREE", F_SUBTREE},
	{"MAILBOXES", F_MAILBOXES},
};

static enum parse_result parse_fetch(struct parse *p, const struct imap_arg *list)
{
	if (list->type != IMAP_ARG_LIST || list->count == 0) {
		p->why = "MessageNew: expected a list of fetch attributes";
		return P_BAD;
	}
	for (size_t i = 0; i < list->count; i++) {
		const struct imap_arg *a = &list->list[i];
		if (imap_parser_arg_atom_eq(a, "UID"))
			p->fetch |= IMAP_NOTIFY_FETCH_UID;
		else if (imap_parser_arg_atom_eq(a, "FLAGS"))
			p->fetch |= IMAP_NOTIFY_FETCH_FLAGS;
		else if (imap_parser_arg_atom_eq(a, "MODSEQ"))
			p->fetch |= IMAP_NOTIFY_FETCH_MODSEQ;
		else {
			p->why = "MessageNew: only UID, FLAGS and MODSEQ may be fetched";
			return P_BAD;
		}
	}
	return P_OK;
}

static enum parse_result parse_events(struct parse *p, struct filter *f, const struct imap_arg *a)
{
	if (imap_parser_arg_atom_eq(a, "NONE"))
		return P_OK;
	if (a->type != IMAP_ARG_LIST || a->count == 0) {
		p->why = "Expected a list of events or NONE";
		return P_BAD;
	}
	bool badevent = false;
	for (size_t i = 0; i < a->count; i++) {
		const struct imap_arg *e = &a->list[i];
		if (e->type != IMAP_ARG_ATOM) {
			p->why = "Expected an event name";
			return P_BAD;
		}
		if (imap_parser_arg_atom_eq(e, "MessageNew")) {
			f->events |= EV_NEW;
			if (i + 1 < a->count && a->list[i + 1].type == IMAP_ARG_LIST) {
				/* RFC 5465 5.2: fetch attributes only for the selected mailbox. */
				if (f->kind != F_SELECTED && f->kind != F_SELECTED_DELAYED) {
					p->why = "Fetch attributes are for SELECTED only";
					return P_BAD;
				}
				enum parse_result r = parse_fetch(p, &a->list[++i]);
				if (r != P_OK)
					return r;
			}
		} else if (imap_parser_arg_atom_eq(e, "MessageExpunge"))
			f->events |= EV_EXPUNGE;
		else if (imap_parser_arg_atom_eq(e, "FlagChange"))
			f->events |= EV_FLAGS;
		else if (imap_parser_arg_atom_eq(e, "MailboxName"))
			f->events |= EV_MAILBOXNAME;
		else if (imap_parser_arg_atom_eq(e, "SubscriptionChange"))
			f->events |= EV_SUBSCRIPTION;
		else
			badevent = true; /* AnnotationChange, the METADATA ones, unknown */
	}
	/* RFC 5465 5.1/5.2/5.3: MessageNew and MessageExpunge go together, and
	 * FlagChange needs both. */
	if (((f->events & EV_NEW) != 0) != ((f->events & EV_EXPUNGE) != 0) ||
	    ((f->events & EV_FLAGS) && !(f->events & EV_NEW))) {
		p->why = "MessageNew and MessageExpunge go together; FlagChange needs both";
		return P_BAD;
	}
	if ((f->kind == F_SELECTED || f->kind == F_SELECTED_DELAYED) &&
	    (f->events & (EV_MAILBOXNAME | EV_SUBSCRIPTION))) {
		p->why = "MailboxName and SubscriptionChange are not for SELECTED";
		return P_BAD;
	}
	return badevent ? P_BADEVENT : P_OK;
}

static enum parse_result parse_names(struct parse *p, struct filter *f, const struct imap_arg *a)
{
	const struct imap_arg *v = a->type == IMAP_ARG_LIST ? a->list : a;
	size_t n = a->type == IMAP_ARG_LIST ? a->count : 1;
	if (n == 0 || n > NOTIFY_MAX_NAMES) {
		p->why = "Expected one or more mailbox names";
		return P_BAD;
	}
	f->names = calloc(n, sizeof(*f->names));
	if (f->names == NULL) {
		p->why = "Out of memory";
		return P_NO;
	}
	for (size_t i = 0; i < n; i++) {
		char *name = imap_arg_mailbox(p->s, p->cmd, &v[i]);
		if (name == NULL)
			return P_NO; /* reply sent */
		char *norm = NULL;
		struct error err;
		if (store_mailbox_name_normalize(name, &norm, &err) == 0) {
			free(name);
			name = norm;
		}
		f->names[f->nnames++] = name;
	}
	return P_OK;
}

static enum parse_result parse_filter(struct parse *p, const struct imap_arg *a)
{
	struct imap_notify *nt = p->nt;
	if (a->type != IMAP_ARG_LIST || a->count < 2 || a->list[0].type != IMAP_ARG_ATOM) {
		p->why = "Expected (filter events)";
		return P_BAD;
	}
	if (nt->nfilters >= NOTIFY_MAX_FILTERS) {
		p->why = "Too many filters";
		return P_BAD;
	}
	struct filter *f = &nt->filters[nt->nfilters];
	size_t k;
	for (k = 0; k < sizeof(filter_names) / sizeof(filter_names[0]); k++)
		if (imap_parser_arg_atom_eq(&a->list[0], filter_names[k].name))
			break;
	if (k == sizeof(filter_names) / sizeof(filter_names[0])) {
		p->why = "Unknown filter";
		return P_BAD;
	}
	memset(f, 0, sizeof(*f));
	f->kind = filter_names[k].kind;
	nt->nfilters++;
	size_t ev_at = 1;
	if (f->kind == F_SUBTREE || f->kind == F_MAILBOXES) {
		if (a->count != 3) {
			p->why = "SUBTREE and MAILBOXES take mailbox names and events";
			return P_BAD;
		}
		enum parse_result r = parse_names(p, f, &a->list[1]);
		if (r != P_OK)
			return r;
		ev_at = 2;
	} else if (a->count != 2) {
		p->why = "Expected (filter events)";
		return P_BAD;
	}
	enum parse_result r = parse_events(p, f, &a->list[ev_at]);
	if (f->kind == F_SELECTED || f->kind == F_SELECTED_DELAYED) {
		if (nt->sel_events != 0 || nt->sel_delayed) {
			p->why = "SELECTED given twice";
			return P_BAD;
		}
		nt->sel_events = f->events;
		nt->sel_delayed = f->kind == F_SELECTED_DELAYED;
	}
	return r;
}

static void cmd_notify_set(struct imap_session *s, const struct imap_command *cmd)
{
	struct parse p = {s, cmd, calloc(1, sizeof(struct imap_notify)), 0, NULL};
	size_t i = 1;
	bool status = false;
	enum parse_result r = P_OK;
	if (p.nt == NULL ||
	    (p.nt->filters = calloc(NOTIFY_MAX_FILTERS, sizeof(*p.nt->filters))) == NULL) {
		free(p.nt);
		imap_send_tagged(s, cmd, "NO", "[SERVERBUG] Out of memory");
		return;
	}
	if (i < cmd->argc && imap_parser_arg_atom_eq(&cmd->args[i], "STATUS")) {
		status = true;
		i++;
	}
	if (i == cmd->argc) {
		r = P_BAD;
		p.why = "NOTIFY SET needs at least one filter";
	}
	/* Parse every filter: a BAD outranks a BADEVENT. */
	for (; i < cmd->argc && r != P_BAD && r != P_NO; i++) {
		enum parse_result fr = parse_filter(&p, &cmd->args[i]);
		if (fr != P_OK)
			r = fr;
	}
	/* RFC 5465 3.1: a failed NOTIFY leaves the previous setting in force. */
	if (r != P_OK) {
		notify_free(p.nt);
		if (r == P_BAD)
			imap_send_tagged(s, cmd, "BAD", "%s", p.why);
		else if (r == P_BADEVENT)
			imap_send_tagged(
				s, cmd, "NO",
				"[BADEVENT (MessageNew MessageExpunge FlagChange MailboxName "
				"SubscriptionChange)] Event not supported");
		else if (p.why != NULL)
			imap_send_tagged(s, cmd, "NO", "%s", p.why);
		return;
	}
	imap_cmd_notify_free(s);
	s->notify = p.nt;
	s->notify_fetch = p.fetch;
	if (watch(s) < 0) {
		imap_cmd_notify_free(s);
		imap_send_tagged(s, cmd, "NO", "[UNAVAILABLE] Cannot watch the mailboxes");
		return;
	}
	/* The first snapshot; with STATUS (RFC 5465 3.1) it is sent. */
	diff_and_send(s, true, status);
	if (s->notify == NULL) {
		imap_send_tagged(s, cmd, "NO", "[NOTIFICATIONOVERFLOW] Too many mailboxes");
		return;
	}
	release(s);
	imap_send_tagged(s, cmd, "OK", "NOTIFY completed");
}

static int cmd_notify(struct imap_session *s, const struct imap_command *cmd)
{
	if (cmd->argc == 1 && imap_parser_arg_atom_eq(&cmd->args[0], "NONE")) {
		imap_cmd_notify_free(s);
		imap_send_tagged(s, cmd, "OK", "NOTIFY completed");
		return 0;
	}
	if (cmd->argc < 1 || !imap_parser_arg_atom_eq(&cmd->args[0], "SET")) {
		imap_send_tagged(s, cmd, "BAD", "Expected NOTIFY SET or NOTIFY NONE");
		return 0;
	}
	cmd_notify_set(s, cmd);
	return 0;
}

static const struct imap_cmd_def rows[] = {
	{{"NOTIFY", IMAP_IN_AUTH}, cmd_notify, 0},
};
const struct imap_cmd_family imap_cmd_notify = {rows, sizeof(rows) / sizeof(rows[0])};
