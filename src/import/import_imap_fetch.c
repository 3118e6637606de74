/*
 * import_imap_fetch.c: one folder of the IMAP import (see import_imap.c's
 * design note): EXAMINE (read-only), the message list with UID, FLAGS,
 * INTERNALDATE and RFC822.SIZE, then the bodies the sink lacks with
 * UID FETCH ... (UID BODY.PEEK[]) in batches, each streamed from the
 * response parser's literal hooks straight into msg_begin/msg_write/msg_end.
 *
 * Messages are kept by sequence number (msgs[seq - 1]), as the server
 * numbers its FETCH responses; an EXPUNGE (which a UID FETCH may bring)
 * shifts them. A body's UID is the response's UID item when it comes before
 * BODY[] (Dovecot puts it first), else the sequence number's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/civil.h"

#include "import/import_imap_int.h"

#define BATCH_UIDS  50
#define BATCH_BYTES (16u << 20)

/* ---- INTERNALDATE ----------------------------------------------------------- */

static int digits(const char *s, int n, int *v)
{
	*v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		*v = *v * 10 + (s[i] - '0');
	}
	return 0;
}

int64_t import_imap_fetch_date(const char *s)
{
	static const char months[] = "janfebmaraprmayjunjulaugsepoctnovdec";
	int day, year, hh, mm, ss, zh, zm;
	if (*s == ' ')
		s++;
	if (s[0] == '\0')
		return -1;
	size_t dl = (s[1] == '-') ? 1 : 2;
	if (digits(s, (int)dl, &day) < 0 || s[dl] != '-')
		return -1;
	s += dl + 1;
	int mon = -1;
	for (int i = 0; i < 12 && s[0] && s[1] && s[2]; i++)
		if (strncasecmp(s, months + 3 * i, 3) == 0)
			mon = i + 1;
	if (mon < 0 || s[3] != '-' || digits(s + 4, 4, &year) < 0 || s[8] != ' ')
		return -1;
	s += 9;
	if (digits(s, 2, &hh) < 0 || s[2] != ':' || digits(s + 3, 2, &mm) < 0 || s[5] != ':' ||
	    digits(s + 6, 2, &ss) < 0 || s[8] != ' ')
		return -1;
	s += 9;
	if ((s[0] != '+' && s[0] != '-') || digits(s + 1, 2, &zh) < 0 ||
	    digits(s + 3, 2, &zm) < 0 || s[5] != '\0')
		return -1;
	if (day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60 || zm > 59)
		return -1;
	int64_t t = civil_days_from_date(year, (unsigned)mon, (unsigned)day) * 86400 + hh * 3600 +
		    mm * 60 + ss;
	int64_t zone = (zh * 3600 + zm * 60) * (s[0] == '-' ? -1 : 1);
	return t - zone;
}

/* ---- one folder: EXAMINE and the message list ---------------------------- */

/* The message with sequence number seq, growing the list up to it; NULL if
 * seq is 0 or out of memory. */
static struct msg *msg_at(struct imp *imp, uint64_t seq)
{
	if (seq == 0 || seq > UINT32_MAX)
		return NULL;
	if (seq > imp->msgcap) {
		size_t cap = imp->msgcap ? imp->msgcap : 64;
		while (cap < seq)
			cap *= 2;
		struct msg *m = realloc(imp->msgs, cap * sizeof(*m));
		if (m == NULL)
			return NULL;
		imp->msgs = m;
		imp->msgcap = cap;
	}
	for (size_t i = imp->nmsgs; i < seq; i++) {
		memset(&imp->msgs[i], 0, sizeof(imp->msgs[i]));
		imp->msgs[i].date = -1;
	}
	if (seq > imp->nmsgs)
		imp->nmsgs = (size_t)seq;
	return &imp->msgs[seq - 1];
}

static struct msg *find_uid(struct imp *imp, uint32_t uid)
{
	for (size_t k = 0; k < imp->nmsgs; k++) {
		size_t i = (imp->hint + k) % imp->nmsgs;
		if (imp->msgs[i].uid == uid) {
			imp->hint = i;
			return &imp->msgs[i];
		}
	}
	return NULL;
}

static void set_flags(struct imp *imp, struct msg *m, const struct imapc_resp *r, size_t from,
		      size_t to)
{
	static const struct {
		const char *name;
		uint32_t bit;
	} sys[] = {{"\\Seen", STORE_F_SEEN},	   {"\\Answered", STORE_F_ANSWERED},
		   {"\\Flagged", STORE_F_FLAGGED}, {"\\Deleted", STORE_F_DELETED},
		   {"\\Draft", STORE_F_DRAFT},	   {"$Forwarded", STORE_F_PASSED}};
	m->flags = 0;
	m->nkw = 0;
	m->kw_off = (uint32_t)imp->kw.len;
	for (size_t i = from; i < to; i++) {
		const struct imapc_tok *t = imapc_resp_tok(r, i);
		if (t->type != IMAPC_TOK_ATOM)
			continue;
		const char *s = imapc_resp_str(r, i);
		size_t k = 0;
		while (k < sizeof(sys) / sizeof(sys[0]) && strcasecmp(s, sys[k].name) != 0)
			k++;
		if (k < sizeof(sys) / sizeof(sys[0]))
			m->flags |= sys[k].bit;
		else if (s[0] != '\\') { /* \Recent and unknown system flags are not kept */
			buf_append(&imp->kw, s, t->len + 1);
			m->nkw++;
		}
	}
}

/* * N FETCH (UID u FLAGS (...) INTERNALDATE "..." RFC822.SIZE n) */
static void fetch_meta(struct imp *imp, struct msg *m, const struct imapc_resp *r)
{
	const struct imapc_tok *list = imapc_resp_tok(r, 2);
	for (size_t i = 3; i + 1 < list->end; i = imapc_resp_next(r, i + 1)) {
		const struct imapc_tok *v = imapc_resp_tok(r, i + 1);
		uint64_t n;
		if (imapc_resp_is(r, i, "UID") && imapc_resp_num(r, i + 1, &n) == 0 &&
		    n <= UINT32_MAX)
			m->uid = (uint32_t)n;
		else if (imapc_resp_is(r, i, "FLAGS") && v->type == IMAPC_TOK_LIST)
			set_flags(imp, m, r, i + 2, v->end);
		else if (imapc_resp_is(r, i, "INTERNALDATE") && v->type == IMAPC_TOK_STRING)
			m->date = import_imap_fetch_date(imapc_resp_str(r, i + 1));
		else if (imapc_resp_is(r, i, "RFC822.SIZE") && imapc_resp_num(r, i + 1, &n) == 0)
			m->size = n;
	}
}

/* Untagged responses while a folder is open: EXISTS, EXPUNGE, FETCH and
 * EXAMINE's [UIDVALIDITY] and [UIDNEXT]. */
static int on_folder(void *ctx, const struct imapc_resp *r)
{
	struct imp *imp = ctx;
	uint64_t n, v;
	const struct imapc_tok *t1 = imapc_resp_tok(r, 1), *t2 = imapc_resp_tok(r, 2);
	if (imapc_resp_is(r, 0, "OK") && t1 != NULL && t1->type == IMAPC_TOK_CODE &&
	    imapc_resp_num(r, 3, &v) == 0 && v <= UINT32_MAX) {
		if (imapc_resp_is(r, 2, "UIDVALIDITY"))
			imp->uidvalidity = (uint32_t)v;
		else if (imapc_resp_is(r, 2, "UIDNEXT"))
			imp->uidnext = (uint32_t)v;
		return 0;
	}
	if (imapc_resp_num(r, 0, &n) < 0)
		return 0;
	if (imapc_resp_is(r, 1, "EXISTS")) {
		imp->exists = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
	} else if (imapc_resp_is(r, 1, "EXPUNGE") && n >= 1 && n <= imp->nmsgs) {
		memmove(&imp->msgs[n - 1], &imp->msgs[n], (imp->nmsgs - n) * sizeof(*imp->msgs));
		imp->nmsgs--;
		if (imp->exists > 0)
			imp->exists--;
	} else if (imapc_resp_is(r, 1, "FETCH") && t2 != NULL && t2->type == IMAPC_TOK_LIST &&
		   n <= imp->exists) {
		struct msg *m = msg_at(imp, n);
		if (m == NULL) {
			error_set(&imp->stop_err, ERR_TEMP, "out of memory");
			imp->stopped = 1;
			return -1;
		}
		fetch_meta(imp, m, r);
	}
	return 0;
}

/* ---- bodies, streamed -------------------------------------------------------- */

/* The UID of the FETCH response being read (before its BODY[] literal). */
static uint32_t fetch_uid(struct imp *imp, const struct imapc_resp *r)
{
	uint64_t n;
	size_t nt = imapc_resp_ntok(r);
	for (size_t i = 3; i + 1 < nt; i = imapc_resp_next(r, i + 1))
		if (imapc_resp_is(r, i, "UID") && imapc_resp_num(r, i + 1, &n) == 0 &&
		    n <= UINT32_MAX)
			return (uint32_t)n;
	if (imapc_resp_num(r, 0, &n) == 0 && n >= 1 && n <= imp->nmsgs)
		return imp->msgs[n - 1].uid;
	return 0;
}

static int body_begin(void *ctx, const struct imapc_resp *r, uint64_t size)
{
	struct imp *imp = ctx;
	size_t nt = imapc_resp_ntok(r);
	(void)size;
	if (strcmp(imapc_resp_tag(r), "*") != 0 || !imapc_resp_is(r, 1, "FETCH") ||
	    imapc_resp_depth(r) != 1 || nt < 4 || !imapc_resp_is(r, nt - 1, "BODY[]"))
		return 0;
	uint32_t uid = fetch_uid(imp, r);
	struct msg *m = uid ? find_uid(imp, uid) : NULL;
	if (m == NULL || !m->want || m->done) {
		imp->discarding = 1;
		return 1;
	}
	free(imp->kwptrs);
	imp->kwptrs = calloc(m->nkw + 1, sizeof(*imp->kwptrs));
	if (imp->kwptrs == NULL) {
		error_set(&imp->stop_err, ERR_TEMP, "out of memory");
		return imp_stop(imp);
	}
	const char *k = imp->kw.data + m->kw_off;
	for (uint32_t i = 0; i < m->nkw; i++, k += strlen(k) + 1)
		imp->kwptrs[i] = k;
	snprintf(imp->id, sizeof(imp->id), "%s UID %u", imp->cur->name, m->uid);
	struct import_msg im = {
		.uid = m->uid,
		.flags = m->flags,
		.keywords = imp->kwptrs,
		.nkeywords = m->nkw,
		.internaldate = m->date,
		.size = m->size,
		.id = imp->id,
	};
	if (imp->sink->msg_begin(imp->sink->ctx, &im, &imp->stop_err) < 0)
		return imp_stop(imp);
	imp->streaming = m;
	return 1;
}

static int body_data(void *ctx, const char *data, size_t len)
{
	struct imp *imp = ctx;
	if (imp->discarding)
		return 0;
	if (imp->sink->msg_write(imp->sink->ctx, data, len, &imp->stop_err) < 0)
		return imp_stop(imp);
	return 0;
}

static int body_end(void *ctx)
{
	struct imp *imp = ctx;
	if (imp->discarding) {
		imp->discarding = 0;
		return 0;
	}
	struct msg *m = imp->streaming;
	imp->streaming = NULL;
	if (imp->sink->msg_end(imp->sink->ctx, &imp->stop_err) < 0)
		return imp_stop(imp);
	m->done = 1;
	imp->nimported++;
	return 0;
}

/* UID FETCH uids (UID BODY.PEEK[]): the bodies stream through the hooks. */
static int fetch_bodies(struct imp *imp, const uint32_t *uids, size_t n)
{
	struct buf cmd = BUF_INIT;
	buf_puts(&cmd, "UID FETCH ");
	for (size_t i = 0; i < n; i++)
		buf_printf(&cmd, "%s%u", i ? "," : "", uids[i]);
	buf_puts(&cmd, " (UID BODY.PEEK[])");
	struct imapc_resp *r = imapc_conn_resp(imp->c);
	r->hooks = (struct imapc_resp_hooks){imp, body_begin, body_data, body_end};
	int st = cmd.failed ? (error_set(imp->err, ERR_TEMP, "out of memory"), -1)
			    : imp_run(imp, buf_cstr(&cmd), on_folder);
	r->hooks = (struct imapc_resp_hooks){0};
	buf_free(&cmd);
	return st;
}

/* Fetch the batch; what did not come is tried once more on its own, then
 * skipped with the reason. */
static int fetch_batch(struct imp *imp, const uint32_t *uids, size_t n)
{
	int st = fetch_bodies(imp, uids, n);
	if (st < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		struct msg *m = find_uid(imp, uids[i]);
		if (m == NULL || m->done || !m->want)
			continue;
		if (n > 1 && (st = fetch_bodies(imp, &uids[i], 1)) < 0)
			return -1;
		m = find_uid(imp, uids[i]);
		if (m != NULL && !m->done) {
			char what[STORE_MAX_MAILBOX_NAME + 32];
			snprintf(what, sizeof(what), "%s UID %u", imp->cur->name, uids[i]);
			imp_skip(imp, what,
				 st == IMAPC_OK ? "the server sent no body for it (expunged there "
						  "meanwhile?)"
						: imapc_conn_reply_text(imp->c));
		}
	}
	return 0;
}

static int fetch_missing(struct imp *imp)
{
	uint32_t uids[BATCH_UIDS];
	size_t n = 0;
	uint64_t bytes = 0;
	for (size_t i = 0; i < imp->nmsgs; i++) {
		struct msg *m = &imp->msgs[i];
		if (m->uid == 0)
			continue;
		m->want = imp->sink->has_uid == NULL || !imp->sink->has_uid(imp->sink->ctx, m->uid);
	}
	/* uids are collected first: an EXPUNGE during a fetch moves msgs[] */
	for (size_t i = 0; i < imp->nmsgs; i++) {
		if (!imp->msgs[i].want || imp->msgs[i].done)
			continue;
		uids[n++] = imp->msgs[i].uid;
		bytes += imp->msgs[i].size;
		if (n == BATCH_UIDS || bytes >= BATCH_BYTES) {
			if (fetch_batch(imp, uids, n) < 0)
				return -1;
			n = 0;
			bytes = 0;
		}
	}
	return n > 0 ? fetch_batch(imp, uids, n) : 0;
}

int import_imap_fetch_folder(struct imp *imp, const struct folder *f)
{
	struct buf cmd = BUF_INIT;
	imp->cur = f;
	imp->uidvalidity = imp->uidnext = imp->exists = 0;
	imp->nmsgs = 0;
	imp->hint = 0;
	buf_truncate(&imp->kw, 0);
	buf_puts(&cmd, "EXAMINE ");
	imapc_conn_astring(&cmd, f->raw, strlen(f->raw), imp->utf8);
	int st = cmd.failed ? (error_set(imp->err, ERR_TEMP, "out of memory"), -1)
			    : imp_run(imp, buf_cstr(&cmd), on_folder);
	buf_free(&cmd);
	if (st < 0)
		return -1;
	if (st != IMAPC_OK) {
		imp_skip(imp, f->name, imapc_conn_reply_text(imp->c));
		return 0;
	}
	struct import_folder fo = {f->name, imp->uidvalidity, imp->uidnext, f->special_use};
	if (imp->sink->folder_begin(imp->sink->ctx, &fo, &imp->stop_err) < 0)
		return imp_stop(imp);
	if (imp->exists > 0) {
		st = imp_run(imp, "UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE)", on_folder);
		if (st < 0)
			return -1;
		if (st != IMAPC_OK)
			imp_skip(imp, f->name, imapc_conn_reply_text(imp->c));
		else if (imp->kw.failed) {
			error_set(imp->err, ERR_TEMP, "out of memory");
			return -1;
		} else if (fetch_missing(imp) < 0)
			return -1;
	}
	if (imp->sink->folder_end(imp->sink->ctx, &imp->stop_err) < 0)
		return imp_stop(imp);
	return 0;
}
