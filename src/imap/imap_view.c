/*
 * imap_view.c: the selected mailbox as this session's client knows it.
 *
 * Design note. The view is an array of UIDs (sequence number = index + 1)
 * with each message's flags, keywords and modseq as last reported, and two
 * modseq watermarks: every flag change and new message up to seen_modseq,
 * and every expunge up to expunge_modseq, has been told to the client.
 * imap_view_sync() asks the store only for what changed above them
 * (store_mailbox_changed_since / _expunged_since), so a NOOP on a 20,000
 * message mailbox costs two indexed queries, not a rescan. While expunges
 * may not be reported (during FETCH, STORE, SEARCH: RFC 9051 7.5.1), the
 * expunge watermark simply stays behind and the messages keep their
 * sequence numbers; EXISTS always counts them.
 *
 * Order of untagged responses in one sync: EXPUNGE (descending sequence
 * numbers, so each is valid when sent) or VANISHED under QRESYNC, then FLAGS
 * if new keywords appeared, then FETCH for changed flags, then EXISTS (and
 * RECENT, RFC 3501 7.3.2, to IMAP4rev1 sessions).
 *
 * \Recent (RFC 3501 2.3.2; the store's side: store_mailbox_recent.c). A
 * read-write view claims the mailbox's unclaimed messages when it opens and
 * at every sync that finds changes, before it reads them: whatever it
 * claimed, it is about to see. Each message that enters the view inside the
 * last claim gets IMAP_FLAG_RECENT in its flags word (no memory beyond the
 * view's arrays: one bit of a word each message has anyway; the bit is kept
 * when flags change and goes away with the message). A read-only view
 * (EXAMINE) looks without claiming (RFC 3501 6.3.2: EXAMINE does not clear
 * \Recent). Claiming is best effort: \Recent is advisory, and a failed
 * claim (index busy) leaves the messages recent for another session rather
 * than failing the SELECT or the sync. Sessions that ENABLEd IMAP4rev2
 * claim too (as Dovecot does: RFC 9051 says nothing; a rev2 client that has
 * seen the mail has seen it) but are never shown \Recent or RECENT.
 */
#include "imap/imap_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap_seqset.h"
#include "lib/buf.h"


static void view_free(struct imap_view *v)
{
	store_mailbox_close(&v->mbox);
	free(v->uids);
	free(v->flags);
	free(v->keywords);
	free(v->modseqs);
	free(v);
}

static int resize(void **p, size_t n, size_t size)
{
	void *q = realloc(*p, n * size);
	if (q == NULL)
		return -1;
	*p = q;
	return 0;
}

static int grow(struct imap_view *v, size_t need)
{
	if (need <= v->cap)
		return 0;
	size_t cap = v->cap ? v->cap : 64;
	while (cap < need)
		cap *= 2;
	/* Each array grows on its own; one that could not stays as it was
	 * (still valid at the old capacity). */
	if (resize((void **)&v->uids, cap, sizeof(*v->uids)) < 0 ||
	    resize((void **)&v->flags, cap, sizeof(*v->flags)) < 0 ||
	    resize((void **)&v->keywords, cap, sizeof(*v->keywords)) < 0 ||
	    resize((void **)&v->modseqs, cap, sizeof(*v->modseqs)) < 0)
		return -1;
	v->cap = cap;
	return 0;
}

static int append_msg(void *ctx, const struct store_msg *m)
{
	struct imap_view *v = ctx;
	if (v->n > 0 && m->uid <= v->uids[v->n - 1])
		return 0; /* already known, or adopted below the top: see note */
	if (grow(v, v->n + 1) < 0)
		return -1;
	v->uids[v->n] = m->uid;
	v->flags[v->n] = m->flags;
	if (m->uid >= v->recent_lo && m->uid < v->recent_hi)
		v->flags[v->n] |= IMAP_FLAG_RECENT;
	v->keywords[v->n] = m->keywords;
	v->modseqs[v->n] = m->modseq;
	v->n++;
	return 0;
}

int imap_view_open(struct imap_session *s, const char *name, bool readonly, struct error *err)
{
	struct imap_view *v = calloc(1, sizeof(*v));
	struct store_status st;
	if (v == NULL) {
		err->code = ERR_TEMP;
		strcpy(err->text, "out of memory");
		return -1;
	}
	v->readonly = readonly;
	if (store_mailbox_open(s->suser, name, &v->mbox, err) < 0) {
		free(v);
		return -1;
	}
	/* Claim before reading the messages (see the note). */
	struct error ignore;
	if (store_mailbox_recent(v->mbox, !readonly, &v->recent_lo, &v->recent_hi, &ignore) < 0)
		v->recent_lo = v->recent_hi = 0;
	/* Status first, then the messages: a change in between is reported
	 * again by the next sync, never lost. */
	err->code = ERR_OK;
	if (store_mailbox_status(v->mbox, &st, err) < 0 ||
	    store_mailbox_messages(v->mbox, 1, UINT32_MAX, append_msg, v, err) < 0) {
		view_free(v);
		if (err->code == ERR_OK) { /* append_msg ran out of memory */
			err->code = ERR_TEMP;
			strcpy(err->text, "out of memory");
		}
		return -1;
	}
	v->uidvalidity = st.uidvalidity;
	v->seen_modseq = v->expunge_modseq = st.highestmodseq;
	s->view = v;
	return 0;
}

void imap_view_close(struct imap_session *s)
{
	struct imap_view *v = s->view;
	if (v == NULL)
		return;
	view_free(v);
	s->view = NULL;
	s->saved_valid = false;
}

uint32_t imap_view_seq(const struct imap_view *v, uint32_t uid)
{
	size_t lo = 0, hi = v->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (v->uids[mid] == uid)
			return (uint32_t)mid + 1;
		if (v->uids[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

uint32_t imap_view_recent(const struct imap_session *s, uint32_t uid)
{
	if (s->rev2 || s->view == NULL)
		return 0;
	uint32_t seq = imap_view_seq(s->view, uid);
	return seq != 0 ? s->view->flags[seq - 1] & IMAP_FLAG_RECENT : 0;
}

size_t imap_view_recent_count(const struct imap_view *v)
{
	size_t n = 0;
	for (size_t i = 0; i < v->n; i++)
		n += (v->flags[i] & IMAP_FLAG_RECENT) != 0;
	return n;
}

void imap_view_update(struct imap_view *v, uint32_t uid, uint32_t flags, uint32_t keywords,
		      uint64_t modseq)
{
	uint32_t seq = imap_view_seq(v, uid);
	if (seq == 0)
		return;
	v->flags[seq - 1] = flags | (v->flags[seq - 1] & IMAP_FLAG_RECENT);
	v->keywords[seq - 1] = keywords;
	v->modseqs[seq - 1] = modseq;
}

/* Fold one message's new state into the view; FETCH for what the client
 * must learn. Returns the number of messages added (0 or 1), or -1. */
static int apply_change(struct imap_session *s, const struct store_msg *m)
{
	struct imap_view *v = s->view;
	uint32_t seq = imap_view_seq(v, m->uid);
	if (seq == 0) {
		size_t before = v->n;
		if (append_msg(v, m) < 0)
			return -1;
		return (int)(v->n - before);
	}
	size_t i = seq - 1;
	uint32_t recent = v->flags[i] & IMAP_FLAG_RECENT;
	/* Already in the view but claimed just now: it came in between
	 * imap_view_open's claim and its read (a new claim takes only what
	 * no one has, so it is ours). */
	if (m->uid >= v->recent_lo && m->uid < v->recent_hi)
		recent = IMAP_FLAG_RECENT;
	bool flags_changed = (v->flags[i] & ~IMAP_FLAG_RECENT) != m->flags ||
			     v->keywords[i] != m->keywords;
	bool modseq_changed = v->modseqs[i] != m->modseq;
	v->flags[i] = m->flags | recent;
	v->keywords[i] = m->keywords;
	v->modseqs[i] = m->modseq;
	if (!flags_changed && !(s->condstore && modseq_changed))
		return 0;
	imap_send_fetch_open(s, seq, m->uid);
	if (s->qresync && !s->uidonly)
		imap_send(s, "UID %u ", m->uid);
	imap_send(s, "FLAGS ");
	imap_send_flags(s, m->flags | imap_view_recent(s, m->uid), m->keywords);
	if (s->condstore)
		imap_send(s, " MODSEQ (%llu)", (unsigned long long)m->modseq);
	imap_send(s, ")\r\n");
	return 0;
}

/* NOTIFY (RFC 5465 5.2): the fetch attributes MessageNew asked for, for
 * each message that entered the view from index first on, after EXISTS. */
static void send_new_fetch(struct imap_session *s, size_t first)
{
	struct imap_view *v = s->view;
	unsigned want = s->notify_fetch;
	for (size_t i = first; i < v->n; i++) {
		const char *sp = "";
		imap_send(s, "* %zu FETCH (", i + 1);
		if (want & IMAP_NOTIFY_FETCH_UID) {
			imap_send(s, "UID %u", v->uids[i]);
			sp = " ";
		}
		if (want & IMAP_NOTIFY_FETCH_FLAGS) {
			imap_send(s, "%sFLAGS ", sp);
			imap_send_flags(s, v->flags[i] & (s->rev2 ? ~IMAP_FLAG_RECENT : ~0u),
					v->keywords[i]);
			sp = " ";
		}
		if (want & IMAP_NOTIFY_FETCH_MODSEQ)
			imap_send(s, "%sMODSEQ (%llu)", sp, (unsigned long long)v->modseqs[i]);
		imap_send(s, ")\r\n");
	}
}

static unsigned keyword_count(const struct imap_view *v)
{
	unsigned n = 0;
	for (unsigned k = 0; k < STORE_MAX_KEYWORDS; k++)
		if (store_mailbox_keyword(v->mbox, k) != NULL)
			n = k + 1;
	return n;
}

void imap_view_send_flags(struct imap_session *s)
{
	struct imap_view *v = s->view;
	char kws[STORE_MAX_KEYWORDS * 104];
	size_t o = 0;
	kws[0] = '\0';
	for (unsigned k = 0; k < STORE_MAX_KEYWORDS; k++) {
		const char *kw = store_mailbox_keyword(v->mbox, k);
		if (kw != NULL)
			o += (size_t)snprintf(kws + o, sizeof(kws) - o, " %s", kw);
	}
	v->nkeywords_announced = keyword_count(v);
	imap_send(s, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded%s)\r\n", kws);
	if (v->readonly)
		imap_send(s, "* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n");
	else
		imap_send(s, "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft "
			     "$Forwarded%s%s)] Flags permitted\r\n",
			  kws, v->nkeywords_announced < STORE_MAX_KEYWORDS ? " \\*" : "");
}

static int collect_expunged(void *ctx, uint32_t uid, uint64_t modseq)
{
	struct imap_view_changes *c = ctx;
	(void)modseq;
	if (c->nexpunged == c->cap_expunged) {
		size_t cap = c->cap_expunged ? c->cap_expunged * 2 : 16;
		uint32_t *p = realloc(c->expunged, cap * sizeof(*p));
		if (p == NULL) {
			c->oom = true;
			return 1;
		}
		c->expunged = p;
		c->cap_expunged = cap;
	}
	c->expunged[c->nexpunged++] = uid;
	return 0;
}

static int collect_changed(void *ctx, const struct store_msg *m)
{
	struct imap_view_changes *c = ctx;
	if (c->nchanged == c->cap_changed) {
		size_t cap = c->cap_changed ? c->cap_changed * 2 : 16;
		struct store_msg *p = realloc(c->changed, cap * sizeof(*p));
		if (p == NULL) {
			c->oom = true;
			return 1;
		}
		c->changed = p;
		c->cap_changed = cap;
	}
	c->changed[c->nchanged] = *m;
	c->changed[c->nchanged++].fname = NULL; /* valid during the callback only */
	return 0;
}

int imap_view_changes_read(const struct imap_view *v, bool with_expunges,
			   struct imap_view_changes *c, struct error *err)
{
	memset(c, 0, sizeof(*c));
	if (store_mailbox_sync(v->mbox, 0, err) < 0 ||
	    store_mailbox_modseq(v->mbox, &c->uidvalidity, &c->highestmodseq, err) < 0)
		return -1;
	if (c->uidvalidity != v->uidvalidity)
		return 0; /* imap_view_changes_apply says BYE */
	c->with_expunges = with_expunges;
	if (c->highestmodseq > v->seen_modseq) {
		/* Something changed, perhaps new mail: claim it before reading
		 * (see the note; a failure only costs the claim). */
		struct error ignore;
		c->recent_read = store_mailbox_recent(v->mbox, !v->readonly, &c->recent_lo,
						      &c->recent_hi, &ignore) == 0;
	}
	if (with_expunges && c->highestmodseq > v->expunge_modseq && v->n > 0 &&
	    store_mailbox_expunged_since(v->mbox, v->expunge_modseq, collect_expunged, c, err) < 0)
		return -1;
	if (c->highestmodseq > v->seen_modseq &&
	    store_mailbox_changed_since(v->mbox, v->seen_modseq, collect_changed, c, err) < 0)
		return -1;
	if (c->oom) {
		err->code = ERR_TEMP;
		snprintf(err->text, sizeof(err->text), "out of memory");
		return -1;
	}
	return 0;
}

void imap_view_changes_free(struct imap_view_changes *c)
{
	free(c->expunged);
	free(c->changed);
	memset(c, 0, sizeof(*c));
}

static void send_expunges(struct imap_session *s, const char *gone, size_t count)
{
	struct imap_view *v = s->view;
	if (s->qresync || s->uidonly) { /* RFC 7162 3.2.10, RFC 9586 3.2 */
		struct buf b = BUF_INIT;
		uint32_t *gone_uids = malloc(count * sizeof(*gone_uids));
		size_t k = 0;
		for (size_t i = 0; i < v->n && gone_uids; i++)
			if (gone[i])
				gone_uids[k++] = v->uids[i];
		if (gone_uids != NULL) {
			imap_seqset_format_uids(gone_uids, k, &b);
			imap_send(s, "* VANISHED %s\r\n", buf_cstr(&b));
		}
		free(gone_uids);
		buf_free(&b);
	} else {
		for (size_t i = v->n; i-- > 0;)
			if (gone[i])
				imap_send(s, "* %zu EXPUNGE\r\n", i + 1);
	}
	size_t o = 0;
	for (size_t i = 0; i < v->n; i++) {
		if (gone[i])
			continue;
		v->uids[o] = v->uids[i];
		v->flags[o] = v->flags[i];
		v->keywords[o] = v->keywords[i];
		v->modseqs[o] = v->modseqs[i];
		o++;
	}
	v->n = o; /* "$" (SEARCHRES) is filtered against the view on use */
}

int imap_view_changes_apply(struct imap_session *s, const struct imap_view_changes *c)
{
	struct imap_view *v = s->view;
	if (c->uidvalidity != v->uidvalidity) {
		/* Deleted and re-created under us: nothing the client knows holds. */
		imap_send(s, "* BYE [UIDVALIDITY] The selected mailbox was replaced\r\n");
		s->base.closing = true;
		return -1;
	}
	if (c->nexpunged > 0 && v->n > 0) {
		char *gone = calloc(v->n, 1);
		size_t count = 0;
		if (gone == NULL)
			return -1;
		for (size_t i = 0; i < c->nexpunged; i++) {
			uint32_t seq = imap_view_seq(v, c->expunged[i]);
			if (seq != 0 && !gone[seq - 1]) {
				gone[seq - 1] = 1;
				count++;
			}
		}
		if (count > 0)
			send_expunges(s, gone, count);
		free(gone);
	}
	if (c->with_expunges)
		v->expunge_modseq = c->highestmodseq;
	if (c->highestmodseq > v->seen_modseq) {
		if (c->recent_read) {
			v->recent_lo = c->recent_lo;
			v->recent_hi = c->recent_hi;
		}
		if (keyword_count(v) > v->nkeywords_announced)
			imap_view_send_flags(s);
		size_t recent_before = imap_view_recent_count(v);
		size_t added = 0;
		for (size_t i = 0; i < c->nchanged; i++) {
			int r = apply_change(s, &c->changed[i]);
			if (r < 0)
				return -1;
			added += (size_t)r;
		}
		if (added > 0)
			imap_send(s, "* %zu EXISTS\r\n", v->n);
		size_t recent = imap_view_recent_count(v);
		if ((added > 0 || recent != recent_before) && !s->rev2)
			imap_send(s, "* %zu RECENT\r\n", recent);
		if (added > 0 && s->notify_fetch != 0)
			send_new_fetch(s, v->n - added);
		v->seen_modseq = c->highestmodseq;
	}
	return 0;
}

void imap_view_enable_condstore(struct imap_session *s)
{
	if (s->condstore)
		return;
	s->condstore = true;
	/* RFC 7162 3.1: a CONDSTORE-enabling command while a mailbox is
	 * selected whose SELECT did not enable it: tell the client the
	 * mailbox's HIGHESTMODSEQ now (as Dovecot does), before the command's
	 * own responses. seen_modseq, not the store's: changes above it are
	 * still to come to this client as FETCH responses. */
	if (s->view != NULL)
		imap_send(s, "* OK [HIGHESTMODSEQ %llu] Highest\r\n",
			  (unsigned long long)s->view->seen_modseq);
}

int imap_view_sync(struct imap_session *s, bool allow_expunge)
{
	struct imap_view_changes c;
	struct error err;
	if (s->view == NULL)
		return 0;
	int r = imap_view_changes_read(s->view, allow_expunge, &c, &err);
	if (r == 0)
		r = imap_view_changes_apply(s, &c);
	imap_view_changes_free(&c);
	return r;
}
