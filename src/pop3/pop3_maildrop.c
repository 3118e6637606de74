/*
 * pop3_maildrop.c: the maildrop of a POP3 session: login (the auth process,
 * then a snapshot of INBOX made on the job pool) and the UPDATE state.
 *
 * Design note.
 *
 * Login. USER/PASS or AUTH end in pop3_maildrop_login(), that is in the
 * session core's session_login (the auth process, which answers after its
 * failure delay and applies the rate limits, then the user's store opened
 * on a job thread); login_done turns its typed result into the answer. On
 * success the maildrop (INBOX) is opened off the event loop, as a job that
 * nests inside the login's wait: mailbox open (reconciled with the files), the
 * POP3 maildrop lock (store_pop3lock.h; a second POP3 session of the same
 * user gets -ERR [IN-USE], RFC 2449 8.1.1) and a snapshot of the messages:
 * UID and size, in UID order. Message numbers are indexes into that
 * snapshot and never change during the session (RFC 1939 5); mail delivered
 * meanwhile shows up at the next login. A job outlives a client that
 * leaves: the core frees the session after the job's done().
 *
 * UPDATE. DELE only marks. QUIT in TRANSACTION expunges the marked messages
 * through store_mailbox_expunge (so IMAP sessions of the same mailbox see
 * ordinary EXPUNGEs), then the connection closes. A session that ends any
 * other way (the client drops, the autologout timer, a server shutdown)
 * never enters UPDATE and deletes nothing. IMAP may expunge a message of
 * the snapshot meanwhile: RETR/TOP of it then answer -ERR, DELE of it is
 * harmless.
 *
 * Sizes. STAT, LIST and the RETR +OK line count octets as sent before
 * stuffing: the file size plus one per bare LF, which is the MIME tree's
 * vsize (the same number as IMAP RFC822.SIZE). The tree comes from the
 * index's cache; a message whose tree is not cached yet (never FETCHed by
 * IMAP) is parsed once, during the login snapshot, and its tree cached.
 */
#include "pop3/pop3_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/log.h"
#include "mime/mime.h"
#include "session/conn.h"
#include "store/store_pop3lock.h"

static void set_err(struct error *err, enum error_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(struct error *err, enum error_code code, const char *fmt, ...)
{
	va_list ap;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->text, sizeof(err->text), fmt, ap);
	va_end(ap);
}

static void msgs_free(struct pop3_msg *msgs, size_t n)
{
	for (size_t i = 0; msgs != NULL && i < n; i++)
		free(msgs[i].uidl);
	free(msgs);
}

void pop3_maildrop_close(struct pop3_session *s)
{
	store_mailbox_close(&s->mbox);
	store_pop3lock_release(&s->lock_fd);
	store_user_close(&s->suser);
	free(s->user);
	s->user = NULL;
	msgs_free(s->msgs, s->nmsgs);
	s->msgs = NULL;
	s->nmsgs = 0;
}

/* ---- the snapshot ---------------------------------------------------------- */

/* The maildrop snapshot, made on the job pool. */
struct snap_job {
	struct store_user *suser; /* the session's; not touched by the loop meanwhile */
	const char *sid;
	struct store_mailbox *mbox;
	int lock_fd;
	uint32_t uidvalidity;
	struct pop3_msg *msgs;
	size_t n, cap;
	int failed;
	struct error err;
};

static int snap_collect(void *ctx, const struct store_msg *m)
{
	struct snap_job *j = ctx;
	if (j->n == j->cap) {
		size_t cap = j->cap ? j->cap * 2 : 64;
		struct pop3_msg *v = realloc(j->msgs, cap * sizeof(*v));
		if (v == NULL) {
			set_err(&j->err, ERR_TEMP, "out of memory");
			j->failed = 1;
			return 1;
		}
		j->msgs = v;
		j->cap = cap;
	}
	j->msgs[j->n].uid = m->uid;
	j->msgs[j->n].deleted = false;
	j->msgs[j->n].size = m->size;
	j->msgs[j->n].uidl = NULL;
	j->n++;
	return 0;
}

/* The size of message uid as sent (see "Sizes" above): the MIME tree's
 * virtual size, from the store's parsed-message cache (the store parses the
 * file on a miss and caches the result). -1 with err (NOTFOUND: the
 * message went away meanwhile). */
static int message_vsize(struct snap_job *j, uint32_t uid, uint64_t *vsize_r, struct error *err)
{
	struct store_parsed parsed = { 0 };
	if (store_cache_get(j->mbox, uid, STORE_PARSED_TREE, &parsed, err) < 0)
		return -1;
	*vsize_r = parsed.tree->vsize;
	store_cache_parsed_clear(&parsed);
	return 0;
}

static int msg_cmp(const void *a, const void *b)
{
	const struct pop3_msg *x = a, *y = b;
	return x->uid < y->uid ? -1 : x->uid > y->uid;
}

/* A UIDL kept by `mailroom import` for one of the snapshot's messages. */
static int snap_uidl(void *ctx, uint32_t uid, const char *uidl)
{
	struct snap_job *j = ctx;
	struct pop3_msg key = { .uid = uid };
	struct pop3_msg *m = bsearch(&key, j->msgs, j->n, sizeof(key), msg_cmp);
	if (m != NULL && m->uidl == NULL && (m->uidl = strdup(uidl)) == NULL) {
		set_err(&j->err, ERR_TEMP, "out of memory");
		j->failed = 1;
		return 1;
	}
	return 0;
}

static void snap_work(void *arg)
{
	struct snap_job *j = arg;
	struct store_status st;
	j->lock_fd = -1;
	if (store_mailbox_open(j->suser, "INBOX", &j->mbox, &j->err) < 0)
		goto fail;
	if (store_pop3lock_take(j->mbox, &j->lock_fd, &j->err) < 0)
		goto fail;
	if (store_mailbox_status(j->mbox, &st, &j->err) < 0)
		goto fail;
	j->uidvalidity = st.uidvalidity;
	if (store_mailbox_messages(j->mbox, 1, UINT32_MAX, snap_collect, j, &j->err) < 0 ||
	    j->failed)
		goto fail;
	size_t k = 0;
	for (size_t i = 0; i < j->n; i++) {
		uint64_t vsize;
		if (message_vsize(j, j->msgs[i].uid, &vsize, &j->err) < 0) {
			if (j->err.code == ERR_NOTFOUND)
				continue; /* expunged meanwhile: not in the maildrop */
			goto fail;
		}
		j->msgs[k] = j->msgs[i];
		j->msgs[k].size = vsize;
		k++;
	}
	j->n = k;
	/* the snapshot is in UID order: looked up by bsearch */
	if (store_import_uidls(j->mbox, snap_uidl, j, &j->err) < 0 || j->failed)
		goto fail;
	return;
fail:
	j->failed = 1;
	msgs_free(j->msgs, j->n);
	j->msgs = NULL;
	j->n = 0;
	store_pop3lock_release(&j->lock_fd);
	store_mailbox_close(&j->mbox);
}

static void snap_done(struct session *base, void *arg)
{
	struct pop3_session *s = (struct pop3_session *)base;
	struct snap_job *j = arg;
	const char *ip = base->conn ? conn_peer_ip(base->conn) : "-";
	if (j->failed) {
		if (j->err.code == ERR_EXISTS) {
			/* RFC 2449 8.1.1; RFC 1939 4 lets the client try again
			 * or QUIT, so the session stays in AUTHORIZATION. */
			log_info("pop3 %s login refused user=%s ip=%s: maildrop in use", base->id,
				 s->user, ip);
			pop3_resp_send(s,
				       "-ERR [IN-USE] Mailbox is locked by another POP3 session");
		} else {
			pop3_resp_store_error(s, "Cannot open the maildrop", &j->err);
		}
		pop3_maildrop_close(s);
		free(j);
		return;
	}
	s->mbox = j->mbox;
	s->lock_fd = j->lock_fd;
	s->uidvalidity = j->uidvalidity;
	s->msgs = j->msgs;
	s->nmsgs = j->n;
	s->state = POP3_TRANSACTION;
	uint64_t total = 0;
	for (size_t i = 0; i < s->nmsgs; i++)
		total += s->msgs[i].size;
	log_info("pop3 %s login user=%s ip=%s messages=%zu", base->id, s->user, ip, s->nmsgs);
	pop3_resp_send(s, "+OK Logged in; maildrop has %zu messages (%llu octets)", s->nmsgs,
		       (unsigned long long)total);
	free(j);
}

/* ---- login ------------------------------------------------------------------ */

/* session_login's answer: on success, the snapshot job starts (it nests
 * inside the login's wait, so input stays paused until snap_done). */
static void login_done(struct session *base, enum session_login_result r, const char *user,
		       struct store_user *suser)
{
	struct pop3_session *s = (struct pop3_session *)base;
	struct snap_job *j = NULL;
	if (base->shut_down) {
		/* The server began shutting down meanwhile: do not open the
		 * maildrop only to close it again. */
		store_user_close(&suser);
		pop3_resp_send(s, "-ERR [SYS/TEMP] Server shutting down");
		return;
	}
	switch (r) {
	case SESSION_LOGIN_OK:
		break;
	case SESSION_LOGIN_FAILED:
		/* RFC 3206 4: [AUTH] says the credentials are at fault. */
		pop3_resp_send(s, "-ERR [AUTH] Authentication failed");
		return;
	case SESSION_LOGIN_RATE_LIMITED:
		pop3_resp_send(s, "-ERR [AUTH] Too many failures; try again later");
		return;
	case SESSION_LOGIN_AUTH_UNAVAILABLE:
		pop3_resp_send(s, "-ERR [SYS/TEMP] Authentication service unavailable");
		return;
	case SESSION_LOGIN_STORE_UNAVAILABLE:
		pop3_resp_send(s, "-ERR [SYS/TEMP] Mail store unavailable");
		return;
	case SESSION_LOGIN_TOO_MANY:
		/* RFC 2449 8.1.1: IN-USE, the maildrop is in use by other
		 * sessions; a client retries later rather than asking for
		 * another password. */
		pop3_resp_send(s, "-ERR [IN-USE] Too many connections from this user and IP address");
		return;
	}
	s->suser = suser;
	s->user = strdup(user);
	j = calloc(1, sizeof(*j));
	if (s->user == NULL || j == NULL)
		goto fail;
	j->suser = s->suser;
	j->sid = s->base.id;
	if (session_async(&s->base, snap_work, snap_done, j) < 0)
		goto fail;
	return;
fail:
	free(j);
	pop3_maildrop_close(s);
	pop3_resp_send(s, "-ERR [SYS/TEMP] Out of memory");
}

void pop3_maildrop_login(struct pop3_session *s, const char *user, const char *pass)
{
	session_login(&s->base, user, pass, login_done);
}

/* ---- UPDATE ---------------------------------------------------------------------- */

struct update_job {
	struct store_mailbox *mbox;
	uint32_t *uids;
	size_t n;
	int failed;
	struct error err;
};

static void update_work(void *arg)
{
	struct update_job *j = arg;
	if (store_mailbox_expunge(j->mbox, j->uids, j->n, &j->err) < 0)
		j->failed = 1;
}

static void update_done(struct session *base, void *arg)
{
	struct pop3_session *s = (struct pop3_session *)base;
	struct update_job *j = arg;
	if (j->failed) {
		/* RFC 1939 6: "-ERR some deleted messages not removed". */
		pop3_resp_store_error(s, "Some deleted messages were not removed", &j->err);
	} else {
		log_info("pop3 %s expunged user=%s messages=%zu", base->id, s->user, j->n);
		pop3_resp_send(s, "+OK Logging out; %zu messages deleted", j->n);
	}
	free(j->uids);
	free(j);
}

/* Expunge the n messages marked deleted, on the job pool (update_done
 * answers). 0, or -1 if the job could not start (nothing deleted). */
static int start_expunge(struct pop3_session *s, size_t n)
{
	struct update_job *j = calloc(1, sizeof(*j));
	uint32_t *uids = malloc(n * sizeof(*uids));
	if (j == NULL || uids == NULL)
		goto fail;
	n = 0;
	for (size_t i = 0; i < s->nmsgs; i++) /* the snapshot is in UID order */
		if (s->msgs[i].deleted)
			uids[n++] = s->msgs[i].uid;
	j->mbox = s->mbox;
	j->uids = uids;
	j->n = n;
	if (session_async(&s->base, update_work, update_done, j) < 0)
		goto fail;
	return 0;
fail:
	free(j);
	free(uids);
	return -1;
}

void pop3_maildrop_update(struct pop3_session *s)
{
	s->state = POP3_UPDATE;
	size_t n = 0;
	for (size_t i = 0; i < s->nmsgs; i++)
		n += s->msgs[i].deleted;
	if (n == 0)
		pop3_resp_send(s, "+OK Logging out");
	else if (start_expunge(s, n) < 0)
		pop3_resp_send(s, "-ERR [SYS/TEMP] Out of memory; no messages deleted");
	/* After the answer, or while the expunge runs: the core closes when
	 * nothing runs any more, after sending what is queued. */
	session_close(&s->base);
}
