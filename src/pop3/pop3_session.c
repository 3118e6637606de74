/*
 * pop3_session.c: one POP3 connection: lifecycle, input loop, dispatcher,
 * login, multi-line responses and the UPDATE state.
 *
 * Design note.
 *
 * States (RFC 1939 3). AUTHORIZATION: USER/PASS or AUTH; the password goes
 * to the auth process (auth_client.h), which answers after its failure
 * delay and applies the rate limits. On success the maildrop (INBOX) is
 * opened off the event loop: mailbox open (reconciled with the files),
 * the POP3 maildrop lock (store_pop3lock.h; a second POP3 session of the
 * same user gets -ERR [IN-USE], RFC 2449 8.1.1) and a snapshot of the
 * messages: UID and size, in UID order. Message numbers are indexes into
 * that snapshot and never change during the session (RFC 1939 5); mail
 * delivered meanwhile shows up at the next login. TRANSACTION: DELE only
 * marks. QUIT enters UPDATE: the marked messages are expunged through
 * store_mailbox_expunge (so IMAP sessions of the same mailbox see ordinary
 * EXPUNGEs), then the connection closes. A session that ends any other way
 * (the client drops, the autologout timer, a server shutdown) never enters
 * UPDATE and deletes nothing. IMAP may expunge a message of the snapshot
 * meanwhile: RETR/TOP of it then answer -ERR, DELE of it is harmless.
 *
 * Input. One line at a time through the incremental parser (pop3_parser.h),
 * so pipelined commands (RFC 2449 6.6) are answered in order. The line is
 * looked up in the command table (pop3_cmd.c) and its state flags checked
 * here, so handlers never re-check the state. A SASL exchange reads its
 * response lines in the parser's line mode. Protocol errors are counted;
 * after POP3_MAX_ERRORS the session closes.
 *
 * Waiting. A command waiting for the auth process or running on the job pool
 * (the maildrop snapshot, the expunge) sets `busy`: input is paused and the
 * session outlives its connection until the work is done (a job still uses
 * its store objects). A pending auth request is simply cancelled when the
 * client leaves.
 *
 * Output and memory. Multi-line responses (LIST, UIDL, RETR, TOP) are
 * written by pump() only while the connection's output is below
 * CONN_OUTPUT_HIGH, and continued from the drained callback; input is paused
 * meanwhile. A message is read PUMP_CHUNK bytes at a time (never whole) and
 * passed through pop3_stream (byte-stuffing, bare LF to CRLF). So a client
 * that pipelines RETRs of a 1 GB maildrop without reading costs about
 * CONN_OUTPUT_HIGH plus one chunk.
 *
 * Sizes. STAT, LIST and the RETR +OK line count octets as sent before
 * stuffing: the file size plus one per bare LF, which is the MIME tree's
 * vsize (the same number as IMAP RFC822.SIZE). The tree comes from the
 * index's cache; a message whose tree is not cached yet (never FETCHed by
 * IMAP) is parsed once, during the login snapshot, and its tree cached.
 *
 * UIDL (RFC 1939 7). "%08X%08X" of the UID and the mailbox's UIDVALIDITY:
 * 16 hex digits, Dovecot's default format ("%08Xu%08Xv"), so a maildrop
 * migrated from Dovecot keeps its UIDLs when its UIDs are kept. Both numbers
 * live in the files (U= in the file name, UIDVALIDITY in mailroom-box), so
 * the UIDL survives restarts and an index rebuild, and a message has the
 * same UIDL whether POP3 or IMAP saw it first.
 */
#include "pop3/pop3_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "auth/auth_client.h"
#include "lib/config.h"
#include "lib/conn.h"
#include "lib/jobs.h"
#include "lib/log.h"
#include "mime/mime.h"
#include "store/store_pop3lock.h"

/* Bytes of a message file read per step of a RETR/TOP. */
#define PUMP_CHUNK (32 * 1024)
/* LIST/UIDL lines written per step. */
#define PUMP_LINES 256
/* Bytes read per step when a message is parsed for its size. */
#define PARSE_CHUNK (64 * 1024)

/* pump() runs on the event loop thread only, one session at a time. */
static unsigned char pump_in[PUMP_CHUNK];
static unsigned char pump_out[PUMP_CHUNK * POP3_STREAM_EXPANSION + POP3_STREAM_FINISH_MAX];

static struct pop3_session *all_sessions;

static void session_free(struct pop3_session *s);
static void pump(struct pop3_session *s);

static void set_err(struct store_error *err, enum store_errcode code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(struct store_error *err, enum store_errcode code, const char *fmt, ...)
{
	va_list ap;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->text, sizeof(err->text), fmt, ap);
	va_end(ap);
}

/* ---- responses ------------------------------------------------------------ */

static void vsend(struct pop3_session *s, const char *prefix, const char *fmt, va_list ap)
{
	char buf[512]; /* RFC 1939 3: responses up to 512 octets, CRLF included */
	if (s->conn == NULL)
		return;
	size_t n = (size_t)snprintf(buf, sizeof(buf), "%s", prefix);
	int m = vsnprintf(buf + n, sizeof(buf) - n - 2, fmt, ap);
	if (m < 0)
		m = 0;
	n += (size_t)m < sizeof(buf) - n - 2 ? (size_t)m : sizeof(buf) - n - 3;
	buf[n++] = '\r';
	buf[n++] = '\n';
	conn_write(s->conn, buf, n);
}

void pop3_send(struct pop3_session *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsend(s, "", fmt, ap);
	va_end(ap);
}

void pop3_error(struct pop3_session *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsend(s, "-ERR ", fmt, ap);
	va_end(ap);
	if (++s->errors >= POP3_MAX_ERRORS && !s->closing) {
		/* The -ERR above answered the command; the connection then
		 * closes (RFC 1939 3 lets a server close on errors). */
		log_info("pop3 %s: too many errors, closing ip=%s", s->id,
			 s->conn ? conn_peer_ip(s->conn) : "-");
		s->closing = true;
	}
}

void pop3_store_error(struct pop3_session *s, const char *what, const struct store_error *err)
{
	log_warn("pop3 %s user=%s: %s: %s", s->id, s->user ? s->user : "-", what, err->text);
	/* RFC 3206 4, 5: worth retrying, or not. */
	pop3_send(s, "-ERR [%s] %s", err->code == STORE_ERR_TEMP ? "SYS/TEMP" : "SYS/PERM", what);
}

bool pop3_plaintext_ok(const struct pop3_session *s)
{
	return conn_is_tls(s->conn) || conn_is_local(s->conn) ||
	       config_bool(s->env->config, "plaintext_auth");
}

void pop3_uidl(const struct pop3_session *s, const struct pop3_msg *m, char out[17])
{
	snprintf(out, 17, "%08X%08X", (unsigned)m->uid, (unsigned)s->uidvalidity);
}

/* ---- flow control ---------------------------------------------------------- */

/* Nothing is running: read the next command, or close if asked to. */
static void resume_or_close(struct pop3_session *s)
{
	if (s->conn == NULL || s->busy || s->out.kind != POP3_OUT_NONE)
		return;
	if (s->closing) {
		conn_close(s->conn);
		return;
	}
	if (conn_output_pending(s->conn) < CONN_OUTPUT_HIGH)
		conn_resume_input(s->conn);
}

/* A waiting command has answered. */
static void command_done(struct pop3_session *s)
{
	s->busy = false;
	if (s->conn == NULL) {
		session_free(s); /* the client left while a job ran */
		return;
	}
	resume_or_close(s);
}

struct async_job {
	struct pop3_session *s;
	void (*work)(void *arg);
	void (*done)(struct pop3_session *s, void *arg);
	void *arg;
};

static void async_work(void *p)
{
	struct async_job *j = p;
	j->work(j->arg);
}

static void async_done(void *p)
{
	struct async_job *j = p;
	struct pop3_session *s = j->s;
	j->done(s, j->arg);
	free(j);
	command_done(s);
}

int pop3_session_async(struct pop3_session *s, void (*work)(void *arg),
		       void (*done)(struct pop3_session *s, void *arg), void *arg)
{
	struct async_job *j = malloc(sizeof(*j));
	if (j == NULL)
		return -1;
	j->s = s;
	j->work = work;
	j->done = done;
	j->arg = arg;
	if (jobs_run(s->env->jobs, async_work, async_done, j) < 0) {
		free(j);
		return -1;
	}
	s->busy = true;
	conn_pause_input(s->conn);
	return 0;
}

/* ---- multi-line responses --------------------------------------------------- */

static void out_end(struct pop3_session *s)
{
	if (s->out.kind == POP3_OUT_MESSAGE && s->out.fd >= 0)
		close(s->out.fd);
	s->out.fd = -1;
	s->out.kind = POP3_OUT_NONE;
}

static void pump_lines(struct pop3_session *s)
{
	char buf[PUMP_LINES * 40 + 8];
	size_t n = 0;
	for (unsigned k = 0; k < PUMP_LINES && s->out.next < s->nmsgs; s->out.next++) {
		const struct pop3_msg *m = &s->msgs[s->out.next];
		if (m->deleted)
			continue; /* RFC 1939 5: deleted messages are not listed */
		if (s->out.kind == POP3_OUT_LIST) {
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%zu %llu\r\n", s->out.next + 1,
					      (unsigned long long)m->size);
		} else {
			char uidl[17];
			pop3_uidl(s, m, uidl);
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%zu %s\r\n", s->out.next + 1,
					      uidl);
		}
		k++;
	}
	if (s->out.next == s->nmsgs) {
		memcpy(buf + n, ".\r\n", 3);
		n += 3;
		out_end(s);
	}
	conn_write(s->conn, buf, n);
}

static void pump_message(struct pop3_session *s)
{
	ssize_t n = pread(s->out.fd, pump_in, sizeof(pump_in), (off_t)s->out.offset);
	if (n < 0 && errno == EINTR)
		return;
	if (n < 0) {
		/* The +OK is out: there is no way to say -ERR any more. Drop
		 * the connection so the client does not take a partial
		 * message for a whole one. */
		log_error("pop3 %s user=%s: read message: %s", s->id, s->user, strerror(errno));
		out_end(s);
		s->closing = true;
		conn_abort(s->conn);
		return;
	}
	size_t w = 0;
	if (n > 0) {
		size_t used;
		w = pop3_stream_encode(&s->out.stream, pump_in, (size_t)n, pump_out, &used);
		s->out.offset += used;
	}
	if (n == 0 || pop3_stream_done(&s->out.stream)) {
		w += pop3_stream_finish(&s->out.stream, pump_out + w);
		out_end(s);
	}
	s->retr_bytes += w;
	conn_write(s->conn, pump_out, w);
}

/* Write as much of the current multi-line response as the output allows. */
static void pump(struct pop3_session *s)
{
	while (s->out.kind != POP3_OUT_NONE && s->conn != NULL &&
	       conn_output_pending(s->conn) < CONN_OUTPUT_HIGH) {
		if (s->out.kind == POP3_OUT_MESSAGE)
			pump_message(s);
		else
			pump_lines(s);
	}
	resume_or_close(s);
}

void pop3_session_list(struct pop3_session *s, enum pop3_out_kind kind)
{
	s->out.kind = kind;
	s->out.next = 0;
	conn_pause_input(s->conn);
	pump(s);
}

void pop3_session_message(struct pop3_session *s, int fd, bool top, uint64_t body_lines)
{
	s->out.kind = POP3_OUT_MESSAGE;
	s->out.fd = fd;
	s->out.offset = 0;
	pop3_stream_init(&s->out.stream, top, body_lines);
	conn_pause_input(s->conn);
	pump(s);
}

/* ---- login ------------------------------------------------------------------ */

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
	struct store_error err;
};

static int snap_collect(void *ctx, const struct store_msg *m)
{
	struct snap_job *j = ctx;
	if (j->n == j->cap) {
		size_t cap = j->cap ? j->cap * 2 : 64;
		struct pop3_msg *v = realloc(j->msgs, cap * sizeof(*v));
		if (v == NULL) {
			set_err(&j->err, STORE_ERR_TEMP, "out of memory");
			j->failed = 1;
			return 1;
		}
		j->msgs = v;
		j->cap = cap;
	}
	j->msgs[j->n].uid = m->uid;
	j->msgs[j->n].deleted = false;
	j->msgs[j->n].size = m->size;
	j->n++;
	return 0;
}

/* The size of message uid as sent (see "Sizes" above): the MIME tree's
 * virtual size, from the store's parsed-message cache (the store parses the
 * file on a miss and caches the result). buf is not used any more. -1 with
 * err (NOTFOUND: the message went away meanwhile). */
static int message_vsize(struct snap_job *j, uint32_t uid, unsigned char *buf, uint64_t *vsize_r,
			 struct store_error *err)
{
	struct store_parsed parsed = { 0 };
	(void)buf;
	if (store_cache_get(j->mbox, uid, STORE_PARSED_TREE, &parsed, err) < 0)
		return -1;
	*vsize_r = parsed.tree->vsize;
	store_cache_parsed_clear(&parsed);
	return 0;
}

static void snap_work(void *arg)
{
	struct snap_job *j = arg;
	struct store_status st;
	unsigned char *buf = NULL;
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
	buf = malloc(PARSE_CHUNK);
	if (buf == NULL && j->n > 0) {
		set_err(&j->err, STORE_ERR_TEMP, "out of memory");
		goto fail;
	}
	size_t k = 0;
	for (size_t i = 0; i < j->n; i++) {
		uint64_t vsize;
		if (message_vsize(j, j->msgs[i].uid, buf, &vsize, &j->err) < 0) {
			if (j->err.code == STORE_ERR_NOTFOUND)
				continue; /* expunged meanwhile: not in the maildrop */
			goto fail;
		}
		j->msgs[k] = j->msgs[i];
		j->msgs[k].size = vsize;
		k++;
	}
	j->n = k;
	free(buf);
	return;
fail:
	free(buf);
	j->failed = 1;
	free(j->msgs);
	j->msgs = NULL;
	j->n = 0;
	store_pop3lock_release(&j->lock_fd);
	store_mailbox_close(&j->mbox);
}

static void snap_done(struct pop3_session *s, void *arg)
{
	struct snap_job *j = arg;
	if (j->failed) {
		if (j->err.code == STORE_ERR_EXISTS) {
			/* RFC 2449 8.1.1; RFC 1939 4 lets the client try again
			 * or QUIT, so the session stays in AUTHORIZATION. */
			log_info("pop3 %s login refused user=%s ip=%s: maildrop in use", s->id, s->user,
				 s->conn ? conn_peer_ip(s->conn) : "-");
			pop3_send(s, "-ERR [IN-USE] Mailbox is locked by another POP3 session");
		} else {
			pop3_store_error(s, "Cannot open the maildrop", &j->err);
		}
		store_user_close(&s->suser);
		free(s->user);
		s->user = NULL;
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
	log_info("pop3 %s login user=%s ip=%s messages=%zu", s->id, s->user,
		 s->conn ? conn_peer_ip(s->conn) : "-", s->nmsgs);
	pop3_send(s, "+OK Logged in; maildrop has %zu messages (%llu octets)", s->nmsgs,
		  (unsigned long long)total);
	free(j);
}

static void login_done(void *ctx, int ok, const char *text)
{
	struct pop3_session *s = ctx;
	struct store_error err;
	s->auth_id = 0;
	if (s->closing) {
		/* The server began shutting down meanwhile: do not open the
		 * maildrop only to close it again. */
		pop3_send(s, "-ERR [SYS/TEMP] Server shutting down");
		command_done(s);
		return;
	}
	if (!ok) {
		/* RFC 3206 4: [AUTH] says the credentials are at fault. */
		pop3_send(s, "-ERR [AUTH] %s",
			  strstr(text, "too many") ? "Too many failures; try again later"
						   : "Authentication failed");
		command_done(s);
		return;
	}
	if (store_user_open(s->env->store, text, &s->suser, &err) < 0 &&
	    err.code == STORE_ERR_NOUSER) {
		/* A user pasted into DATA/passwd without a mail folder yet. */
		if (store_user_create(s->env->store, text, &err) == 0 || err.code == STORE_ERR_EXISTS)
			store_user_open(s->env->store, text, &s->suser, &err);
	}
	if (s->suser == NULL) {
		log_error("pop3 %s: user %s: %s", s->id, text, err.text);
		pop3_send(s, "-ERR [SYS/TEMP] Mail store unavailable");
		command_done(s);
		return;
	}
	s->user = strdup(text);
	struct snap_job *j = calloc(1, sizeof(*j));
	if (s->user == NULL || j == NULL) {
		free(j);
		store_user_close(&s->suser);
		free(s->user);
		s->user = NULL;
		pop3_send(s, "-ERR [SYS/TEMP] Out of memory");
		command_done(s);
		return;
	}
	j->suser = s->suser;
	j->sid = s->id;
	s->busy = false; /* pop3_session_async sets it again */
	if (pop3_session_async(s, snap_work, snap_done, j) < 0) {
		free(j);
		store_user_close(&s->suser);
		free(s->user);
		s->user = NULL;
		pop3_send(s, "-ERR [SYS/TEMP] Out of memory");
		command_done(s);
	}
}

/* What the auth protocol can carry as a user name (auth_client.h): no
 * control characters, no TAB. Anything else cannot be a user. */
static bool user_ok(const char *user)
{
	size_t n = strlen(user);
	if (n == 0 || n >= SASL_MAX_USER)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)user[i] < 0x20 || user[i] == 0x7f)
			return false;
	return true;
}

void pop3_session_login(struct pop3_session *s, const char *user, const char *pass)
{
	if (!user_ok(user)) {
		pop3_send(s, "-ERR [AUTH] Authentication failed");
		return;
	}
	s->busy = true;
	conn_pause_input(s->conn);
	s->auth_id = auth_client_verify(s->env->auth, conn_peer_ip(s->conn), user, pass, login_done, s);
	if (s->auth_id == 0) {
		pop3_send(s, "-ERR [SYS/TEMP] Authentication service unavailable");
		command_done(s);
	}
}

/* ---- STLS, UPDATE ---------------------------------------------------------------- */

void pop3_session_starttls(struct pop3_session *s)
{
	pop3_send(s, "+OK Begin TLS negotiation now");
	/* RFC 2595 4: forget what the client said in plaintext. */
	free(s->user_arg);
	s->user_arg = NULL;
	/* Drops whatever the client pipelined after STLS (CVE-2011-0411). */
	if (conn_starttls(s->conn, s->env->tls) < 0) {
		s->closing = true;
		return;
	}
	pop3_parser_reset(&s->parser, POP3_PARSER_COMMAND);
}

struct update_job {
	struct store_mailbox *mbox;
	uint32_t *uids;
	size_t n;
	int failed;
	struct store_error err;
};

static void update_work(void *arg)
{
	struct update_job *j = arg;
	if (store_mailbox_expunge(j->mbox, j->uids, j->n, &j->err) < 0)
		j->failed = 1;
}

static void update_done(struct pop3_session *s, void *arg)
{
	struct update_job *j = arg;
	if (j->failed) {
		/* RFC 1939 6: "-ERR some deleted messages not removed". */
		pop3_store_error(s, "Some deleted messages were not removed", &j->err);
	} else {
		log_info("pop3 %s expunged user=%s messages=%zu", s->id, s->user, j->n);
		pop3_send(s, "+OK Logging out; %zu messages deleted", j->n);
	}
	s->closing = true;
	free(j->uids);
	free(j);
}

void pop3_session_update(struct pop3_session *s)
{
	s->state = POP3_UPDATE;
	s->closing = true;
	size_t n = 0;
	for (size_t i = 0; i < s->nmsgs; i++)
		n += s->msgs[i].deleted;
	if (n == 0) {
		pop3_send(s, "+OK Logging out");
		return;
	}
	struct update_job *j = calloc(1, sizeof(*j));
	uint32_t *uids = malloc(n * sizeof(*uids));
	if (j == NULL || uids == NULL) {
		free(j);
		free(uids);
		pop3_send(s, "-ERR [SYS/TEMP] Out of memory; no messages deleted");
		return;
	}
	n = 0;
	for (size_t i = 0; i < s->nmsgs; i++) /* the snapshot is in UID order */
		if (s->msgs[i].deleted)
			uids[n++] = s->msgs[i].uid;
	j->mbox = s->mbox;
	j->uids = uids;
	j->n = n;
	if (pop3_session_async(s, update_work, update_done, j) < 0) {
		free(j);
		free(uids);
		pop3_send(s, "-ERR [SYS/TEMP] Out of memory; no messages deleted");
	}
}

/* ---- input ------------------------------------------------------------------- */

static void parser_error(struct pop3_session *s)
{
	const char *why = "Invalid command";
	switch (pop3_parser_error(&s->parser)) {
	case POP3_PARSER_ERR_TOOLONG:
		why = s->authenticating ? "Line too long" : "Line too long (RFC 2449: 255 octets)";
		break;
	case POP3_PARSER_ERR_CHAR: why = "Invalid character (NUL or control) in line"; break;
	case POP3_PARSER_ERR_EMPTY: why = "Empty command"; break;
	case POP3_PARSER_ERR_VERB: why = "Unknown command"; break;
	case POP3_PARSER_ERR_NONE: break;
	}
	if (s->authenticating) {
		s->authenticating = false;
		sasl_clear(&s->sasl);
		pop3_error(s, "[AUTH] %s; authentication aborted", why);
		return;
	}
	pop3_error(s, "%s", why);
}

static void dispatch(struct pop3_session *s)
{
	const char *verb = pop3_parser_verb(&s->parser);
	const struct pop3_cmd_def *def = pop3_cmd_find(verb);
	if (def == NULL) {
		pop3_error(s, "Unknown command");
		return;
	}
	unsigned need = s->state == POP3_AUTHORIZATION ? POP3_CMD_AUTHORIZATION : POP3_CMD_TRANSACTION;
	if (!(def->flags & need)) {
		pop3_error(s, "%s", s->state == POP3_AUTHORIZATION ? "Not logged in; authenticate first"
								   : "Not allowed after login");
		return;
	}
	def->handler(s, pop3_parser_args(&s->parser, NULL));
}

static void session_input(void *ctx)
{
	struct pop3_session *s = ctx;
	while (!s->busy && !s->closing && s->out.kind == POP3_OUT_NONE) {
		/* Fetched anew each time: STLS replaces the input buffer. */
		struct evbuffer *in = conn_input(s->conn);
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
			break;
		size_t used;
		enum pop3_parser_result r = pop3_parser_feed(&s->parser, v.iov_base, v.iov_len, &used);
		evbuffer_drain(in, used);
		if (r == POP3_PARSER_NEED_MORE)
			continue;
		if (r == POP3_PARSER_ERROR) {
			parser_error(s);
		} else if (s->authenticating) {
			size_t len;
			const char *line = pop3_parser_line(&s->parser, &len);
			pop3_cmd_auth_line(s, line, len);
		} else {
			dispatch(s);
		}
		/* The line may hold a password: do not leave it in memory. */
		explicit_bzero(s->parser.line, sizeof(s->parser.line));
		pop3_parser_reset(&s->parser,
				  s->authenticating ? POP3_PARSER_LINE : POP3_PARSER_COMMAND);
		if (s->conn != NULL && conn_output_pending(s->conn) >= CONN_OUTPUT_HIGH) {
			conn_pause_input(s->conn);
			break;
		}
	}
	if (s->closing && !s->busy && s->out.kind == POP3_OUT_NONE)
		conn_close(s->conn);
}

static void session_drained(void *ctx)
{
	struct pop3_session *s = ctx;
	if (s->out.kind != POP3_OUT_NONE)
		pump(s);
	else
		resume_or_close(s);
}

static void session_timeout(void *ctx)
{
	struct pop3_session *s = ctx;
	if (s->busy || s->out.kind != POP3_OUT_NONE)
		return;
	/* RFC 1939 3: on autologout the session does not enter UPDATE and the
	 * server closes "without ... sending any response". */
	log_info("pop3 %s autologout user=%s ip=%s", s->id, s->user ? s->user : "-",
		 conn_peer_ip(s->conn));
	s->closing = true;
	conn_close(s->conn);
}

static void session_closed(void *ctx)
{
	struct pop3_session *s = ctx;
	unsigned long long bin, bout;
	conn_byte_counts(s->conn, &bin, &bout);
	log_info("pop3 %s disconnect user=%s ip=%s in=%llu out=%llu retr=%u/%llu top=%u del=%u%s",
		 s->id, s->user ? s->user : "-", conn_peer_ip(s->conn), bin, bout, s->n_retr,
		 (unsigned long long)s->retr_bytes, s->n_top, s->n_dele,
		 s->state == POP3_UPDATE ? " quit" : "");
	s->conn = NULL;
	out_end(s);
	if (s->auth_id != 0) {
		/* Only the auth process was waited for: nothing else uses the
		 * session, so it can go now. */
		auth_client_cancel(s->env->auth, s->auth_id);
		s->auth_id = 0;
		s->busy = false;
	}
	if (s->busy) {
		/* A job still uses the session's store objects: it is freed
		 * when the job is done (command_done sees conn == NULL). */
		s->closing = true;
		return;
	}
	session_free(s);
}

static const struct conn_handler handler = {
	session_input, session_drained, session_closed, session_timeout,
};

static void session_free(struct pop3_session *s)
{
	struct proto_env *env = s->env;
	if (s->auth_id != 0)
		auth_client_cancel(env->auth, s->auth_id);
	out_end(s);
	store_mailbox_close(&s->mbox);
	store_pop3lock_release(&s->lock_fd);
	store_user_close(&s->suser);
	sasl_clear(&s->sasl);
	explicit_bzero(&s->parser, sizeof(s->parser));
	free(s->user_arg);
	free(s->user);
	free(s->msgs);
	if (all_sessions == s)
		all_sessions = s->next;
	if (s->prev)
		s->prev->next = s->next;
	if (s->next)
		s->next->prev = s->prev;
	env->sessions--;
	free(s);
}

void pop3_session_start(struct proto_env *env, struct conn *c)
{
	static unsigned long counter;
	struct pop3_session *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		conn_abort(c);
		return;
	}
	s->env = env;
	s->conn = c;
	s->lock_fd = -1;
	s->out.fd = -1;
	s->state = POP3_AUTHORIZATION;
	pop3_parser_init(&s->parser, POP3_PARSER_COMMAND);
	snprintf(s->id, sizeof(s->id), "%lx%04lx", (unsigned long)getpid() & 0xffff,
		 ++counter & 0xffff);
	env->sessions++;
	s->next = all_sessions;
	if (all_sessions)
		all_sessions->prev = s;
	all_sessions = s;
	conn_set_handler(c, &handler, s);
	conn_set_idle_timeout(c, POP3_AUTOLOGOUT_SECONDS);
	/* No APOP timestamp: APOP is not offered (it needs the plaintext
	 * password on the server). */
	pop3_send(s, "+OK mailroom POP3 ready");
	log_info("pop3 %s connect ip=%s%s", s->id, conn_peer_ip(c), conn_is_tls(c) ? " tls" : "");
}

void pop3_shutdown_all(struct proto_env *env)
{
	(void)env;
	for (struct pop3_session *s = all_sessions; s != NULL; s = s->next) {
		if (s->conn == NULL || s->closing)
			continue;
		s->closing = true;
		if (s->busy || s->out.kind != POP3_OUT_NONE)
			continue; /* closes when the command or transfer ends */
		/* RFC 3206 5: the client may come back. */
		pop3_send(s, "-ERR [SYS/TEMP] Server shutting down");
		conn_close(s->conn);
	}
}
