/*
 * lmtp_session.c: one LMTP connection (RFC 2033, with RFC 5321 grammar,
 * PIPELINING RFC 2920, ENHANCEDSTATUSCODES RFC 2034, 8BITMIME RFC 6152,
 * SIZE RFC 1870, CHUNKING RFC 3030, SMTPUTF8 RFC 6531).
 *
 * Design note. A transaction is MAIL, one or more RCPT, then DATA (or
 * BDAT chunks). Each RCPT is checked at once, on a job thread (it opens
 * the user's index): the user must have a mail folder (550 5.1.1), and be
 * under quota (452 4.2.2 or 552 5.2.2, per
 * quota_full_tempfail). The message streams into one staging file as it
 * arrives (dot-unstuffed by lmtp_parser.c; never whole in memory) with
 * Return-Path and Received prepended; past message_size_limit the rest is
 * read and dropped and every recipient gets 552. At the end, off the event
 * loop, the file is fsynced once and hard-linked into every recipient's
 * mailbox (store_deliver); only then is the one reply per recipient sent,
 * in RCPT order (RFC 2033 4.2), each saying whether that copy is durable.
 *
 * Recipients: "user@any.domain" is the user "user", unless a user named by
 * the whole address exists; with lmtp_local_domains set, other domains get
 * 550. "user+detail" (recipient_delimiter) delivers to the mailbox "detail"
 * when it exists, else to INBOX.
 */
#include "lmtp/lmtp.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "lib/config.h"
#include "session/conn.h"
#include "session/jobs.h"
#include "lib/log.h"
#include "lib/strnum.h"
#include "lmtp/lmtp_parser.h"
#include "store/store.h"

#define MAX_ERRORS 20
#define LMTP_TIMEOUT 300 /* RFC 5321 4.5.3.2.7: 5 minutes between commands */

enum mode { MODE_CMD, MODE_DATA, MODE_BDAT };

struct rcpt {
	char addr[LMTP_MAX_ADDRESS + 1];
	char user[STORE_MAX_USERNAME + 1];
	char mailbox[STORE_MAX_MAILBOX_NAME + 1]; /* "" for INBOX */
};

struct lmtp_session {
	struct session_env *env;
	struct conn *conn;
	char id[16];
	char helo[256];
	bool lhlo;
	bool has_from;
	char from[LMTP_MAX_ADDRESS + 1];
	struct rcpt *rcpts;
	size_t nrcpts;
	enum mode mode;
	struct lmtp_dot dot;
	struct store_stage *stage;
	bool too_big;
	bool stage_failed;
	struct store_error stage_err;
	uint64_t bdat_left;
	bool bdat_last;
	bool discarding; /* an overlong command line is being skipped */
	bool busy;
	bool closing;
	unsigned errors;
	struct lmtp_session *next, *prev;
};

static struct lmtp_session *all_sessions;

static void session_input(void *ctx);

static void reply(struct lmtp_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void reply(struct lmtp_session *s, const char *fmt, ...)
{
	char line[1200];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 3)
		n = (int)sizeof(line) - 3;
	line[n++] = '\r';
	line[n++] = '\n';
	conn_write(s->conn, line, (size_t)n);
}

static void error_reply(struct lmtp_session *s, const char *text)
{
	reply(s, "%s", text);
	if (++s->errors > MAX_ERRORS) {
		reply(s, "421 4.7.0 Too many errors, closing connection");
		s->closing = true;
	}
}

static void reset_transaction(struct lmtp_session *s)
{
	s->has_from = false;
	s->from[0] = '\0';
	free(s->rcpts);
	s->rcpts = NULL;
	s->nrcpts = 0;
	store_stage_free(&s->stage);
	s->too_big = s->stage_failed = false;
	s->mode = MODE_CMD;
	s->bdat_left = 0;
	s->bdat_last = false;
}

static bool domain_is_local(struct lmtp_session *s, const char *domain)
{
	const char *list = config_str(s->env->config, "lmtp_local_domains");
	if (list[0] == '\0')
		return true;
	size_t dlen = strlen(domain);
	for (const char *p = list; *p != '\0';) {
		while (*p == ' ' || *p == ',')
			p++;
		const char *e = p;
		while (*e != '\0' && *e != ',' && *e != ' ')
			e++;
		if ((size_t)(e - p) == dlen && dlen > 0 && strncasecmp(p, domain, dlen) == 0)
			return true;
		p = e;
	}
	return false;
}

/* Find the store user for an address; 0 and the rcpt filled, or -1 with
 * the reply to send. */
static int resolve(struct lmtp_session *s, const char *addr, struct rcpt *r, const char **why)
{
	char local[LMTP_MAX_ADDRESS + 1], domain[LMTP_MAX_ADDRESS + 1];
	struct store_user *u = NULL;
	struct store_error err;

	memset(r, 0, sizeof(*r));
	snprintf(r->addr, sizeof(r->addr), "%s", addr);
	if (lmtp_split_address(addr, local, sizeof(local), domain, sizeof(domain)) < 0) {
		*why = "501 5.1.3 Bad recipient address syntax";
		return -1;
	}
	if (domain[0] != '\0' && !domain_is_local(s, domain)) {
		*why = "550 5.1.2 Domain not handled here";
		return -1;
	}
	/* A user whose name is the whole address (passwd lines with full
	 * addresses) wins over the local part. */
	const char *cands[4];
	char lower[sizeof(local)], base[sizeof(local)], detail[sizeof(local)] = "";
	size_t nc = 0;
	if (domain[0] != '\0' && store_username_valid(addr) == 0)
		cands[nc++] = addr;
	snprintf(base, sizeof(base), "%s", local);
	const char *delim = config_str(s->env->config, "recipient_delimiter");
	if (delim[0] != '\0') {
		char *d = strstr(base, delim);
		if (d != NULL && d != base) {
			snprintf(detail, sizeof(detail), "%s", d + strlen(delim));
			*d = '\0';
		}
	}
	cands[nc++] = base;
	for (size_t i = 0; base[i] != '\0' && i < sizeof(lower) - 1; i++)
		lower[i] = (char)tolower((unsigned char)base[i]);
	lower[strlen(base)] = '\0';
	if (strcmp(lower, base) != 0)
		cands[nc++] = lower;
	size_t matched = nc;
	for (size_t i = 0; i < nc; i++) {
		if (store_username_valid(cands[i]) < 0)
			continue;
		if (store_user_open(s->env->store, cands[i], &u, &err) == 0) {
			snprintf(r->user, sizeof(r->user), "%s", cands[i]);
			matched = i;
			break;
		}
		if (err.code != STORE_ERR_NOUSER) {
			*why = "451 4.3.0 Temporary failure looking up the recipient";
			return -1;
		}
	}
	if (u == NULL) {
		*why = "550 5.1.1 No such user here";
		return -1;
	}
	if (detail[0] != '\0' && cands[matched] != addr)
		snprintf(r->mailbox, sizeof(r->mailbox), "%s", detail);
	int ret = 0;
	if (store_user_quota_check(u, 0, 1, &err) < 0) {
		if (err.code == STORE_ERR_QUOTA)
			*why = store_quota_is_temporary(s->env->store)
				       ? "452 4.2.2 Mailbox is full"
				       : "552 5.2.2 Mailbox is full";
		else
			*why = "451 4.3.0 Temporary failure reading the quota";
		ret = -1;
	}
	store_user_close(&u);
	return ret;
}

/* Return-Path and Received (RFC 5321 4.4), then the message. */
static int start_message(struct lmtp_session *s)
{
	struct store_error err;
	char host[256] = "localhost", date[64], hdr[2048];
	time_t now = time(NULL);
	struct tm tm;
	if (store_stage_new(s->env->store, &s->stage, &err) < 0) {
		reply(s, "451 4.3.0 %s", err.text);
		return -1;
	}
	gethostname(host, sizeof(host) - 1);
	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	int n = snprintf(hdr, sizeof(hdr),
			 "Return-Path: <%s>\r\n"
			 "Received: from %.200s (%s)\r\n"
			 "\tby %s (mailroom) with LMTP id %s%s%s%s;\r\n"
			 "\t%s\r\n",
			 s->from, s->helo, conn_peer_ip(s->conn), host, s->id,
			 s->nrcpts == 1 ? "\r\n\tfor <" : "", s->nrcpts == 1 ? s->rcpts[0].addr : "",
			 s->nrcpts == 1 ? ">" : "", date);
	if (n < 0 || (size_t)n >= sizeof(hdr) ||
	    store_stage_write(s->stage, hdr, (size_t)n, &s->stage_err) < 0) {
		s->stage_failed = true;
		if (n < 0 || (size_t)n >= sizeof(hdr))
			snprintf(s->stage_err.text, sizeof(s->stage_err.text), "header too long");
	}
	return 0;
}

static void add_body(struct lmtp_session *s, const char *data, size_t len)
{
	if (s->too_big || s->stage_failed || len == 0)
		return;
	uint64_t limit = config_uint(s->env->config, "message_size_limit");
	if (limit != 0 && store_stage_size(s->stage) + len > limit) {
		s->too_big = true;
		return;
	}
	if (store_stage_write(s->stage, data, len, &s->stage_err) < 0)
		s->stage_failed = true;
}

/* ---- the end of a message: deliver off the loop, then one reply each --- */

struct deliver_job {
	struct lmtp_session *s;
	struct store_rcpt *r;
	size_t n;
};

static void deliver_work(void *arg)
{
	struct deliver_job *j = arg;
	struct lmtp_session *s = j->s;
	if (s->too_big || s->stage_failed)
		return;
	if (store_stage_finish(s->stage, &s->stage_err) < 0) {
		s->stage_failed = true;
		return;
	}
	store_deliver(s->env->store, s->stage, 0, j->r, j->n);
}

static void session_free(struct lmtp_session *s);

static void deliver_done(void *arg)
{
	struct deliver_job *j = arg;
	struct lmtp_session *s = j->s;
	s->busy = false;
	if (s->conn == NULL) {
		free(j->r);
		free(j);
		session_free(s);
		return;
	}
	unsigned ok = 0;
	for (size_t i = 0; i < j->n; i++) {
		const char *addr = s->rcpts[i].addr;
		if (s->too_big) {
			reply(s, "552 5.3.4 <%s> Message too big", addr);
			continue;
		}
		if (s->stage_failed) {
			reply(s, "451 4.3.0 <%s> %s", addr, s->stage_err.text);
			continue;
		}
		switch (j->r[i].result.code) {
		case STORE_OK:
			reply(s, "250 2.0.0 <%s> %u Saved", addr, j->r[i].uid);
			ok++;
			break;
		case STORE_ERR_NOUSER:
			reply(s, "550 5.1.1 <%s> No such user here", addr);
			break;
		case STORE_ERR_QUOTA:
			reply(s, store_quota_is_temporary(s->env->store) ? "452 4.2.2 <%s> Mailbox is full"
									 : "552 5.2.2 <%s> Mailbox is full",
			      addr);
			break;
		case STORE_ERR_LIMIT:
		case STORE_ERR_DATA:
			reply(s, "554 5.6.0 <%s> %s", addr, j->r[i].result.text);
			break;
		default:
			reply(s, "451 4.3.0 <%s> Temporary failure: %s", addr, j->r[i].result.text);
			break;
		}
	}
	log_info("lmtp %s from=<%s> rcpts=%zu delivered=%u size=%llu", s->id, s->from, j->n, ok,
		 (unsigned long long)(s->stage ? store_stage_size(s->stage) : 0));
	free(j->r);
	free(j);
	reset_transaction(s);
	if (s->closing) {
		conn_close(s->conn);
		return;
	}
	conn_resume_input(s->conn);
}

static void end_of_message(struct lmtp_session *s)
{
	struct deliver_job *j = calloc(1, sizeof(*j));
	struct store_rcpt *r = calloc(s->nrcpts, sizeof(*r));
	if (j == NULL || r == NULL) {
		free(j);
		free(r);
		for (size_t i = 0; i < s->nrcpts; i++)
			reply(s, "451 4.3.0 <%s> Out of memory", s->rcpts[i].addr);
		reset_transaction(s);
		return;
	}
	for (size_t i = 0; i < s->nrcpts; i++) {
		r[i].user = s->rcpts[i].user;
		r[i].mailbox = s->rcpts[i].mailbox[0] ? s->rcpts[i].mailbox : NULL;
	}
	j->s = s;
	j->r = r;
	j->n = s->nrcpts;
	s->mode = MODE_CMD;
	s->busy = true;
	conn_pause_input(s->conn);
	if (jobs_run(s->env->jobs, deliver_work, deliver_done, j) < 0) {
		deliver_work(j); /* cannot queue: do it here rather than lose it */
		deliver_done(j);
	}
}

/* ---- commands -------------------------------------------------------------- */

static void cmd_lhlo(struct lmtp_session *s, const struct lmtp_command *c)
{
	char host[256] = "localhost";
	reset_transaction(s);
	size_t hl = strnlen(c->arg, sizeof(s->helo) - 1);
	memcpy(s->helo, c->arg, hl);
	s->helo[hl] = '\0';
	for (char *p = s->helo; *p != '\0'; p++)
		if ((unsigned char)*p < 0x21 || *p == 0x7f)
			*p = '?';
	s->lhlo = true;
	gethostname(host, sizeof(host) - 1);
	reply(s, "250-%s", host);
	reply(s, "250-PIPELINING");
	reply(s, "250-ENHANCEDSTATUSCODES");
	reply(s, "250-8BITMIME");
	reply(s, "250-SMTPUTF8");
	reply(s, "250-CHUNKING");
	reply(s, "250 SIZE %llu", (unsigned long long)config_uint(s->env->config, "message_size_limit"));
}

static void cmd_mail(struct lmtp_session *s, const struct lmtp_command *c)
{
	if (!s->lhlo) {
		error_reply(s, "503 5.5.1 Send LHLO first");
		return;
	}
	if (s->has_from) {
		error_reply(s, "503 5.5.1 Nested MAIL command");
		return;
	}
	uint64_t limit = config_uint(s->env->config, "message_size_limit");
	for (unsigned i = 0; i < c->nparams; i++) {
		const struct lmtp_param *p = &c->params[i];
		uint64_t size;
		if (strcmp(p->name, "SIZE") == 0) {
			if (strnum_u64z(p->value, UINT64_MAX, &size) < 0) {
				error_reply(s, "501 5.5.4 Invalid SIZE");
				return;
			}
			if (limit != 0 && size > limit) {
				reply(s, "552 5.3.4 Message size exceeds the limit");
				return;
			}
		} else if (strcmp(p->name, "BODY") == 0) {
			if (strcasecmp(p->value, "7BIT") != 0 && strcasecmp(p->value, "8BITMIME") != 0) {
				error_reply(s, "555 5.5.4 Unsupported BODY type");
				return;
			}
		} else if (strcmp(p->name, "SMTPUTF8") != 0 && strcmp(p->name, "AUTH") != 0 &&
			   strcmp(p->name, "ENVID") != 0 && strcmp(p->name, "RET") != 0) {
			error_reply(s, "555 5.5.4 Unsupported MAIL parameter");
			return;
		}
	}
	for (const char *q = c->address; *q != '\0'; q++)
		if ((unsigned char)*q < 0x20 || *q == 0x7f) {
			error_reply(s, "501 5.1.7 Bad sender address");
			return;
		}
	snprintf(s->from, sizeof(s->from), "%s", c->address);
	s->has_from = true;
	reply(s, "250 2.1.0 Ok");
}

struct rcpt_job {
	struct lmtp_session *s;
	char addr[LMTP_MAX_ADDRESS + 1];
	struct rcpt r;
	const char *why;
	int rc;
};

static void rcpt_work(void *arg)
{
	struct rcpt_job *j = arg;
	j->rc = resolve(j->s, j->addr, &j->r, &j->why);
}

static void rcpt_done(void *arg)
{
	struct rcpt_job *j = arg;
	struct lmtp_session *s = j->s;
	s->busy = false;
	if (s->conn == NULL) {
		free(j);
		session_free(s);
		return;
	}
	if (j->rc < 0) {
		reply(s, "%s", j->why);
	} else {
		struct rcpt *p = realloc(s->rcpts, (s->nrcpts + 1) * sizeof(*p));
		if (p == NULL) {
			reply(s, "452 4.3.0 Out of memory");
		} else {
			s->rcpts = p;
			s->rcpts[s->nrcpts++] = j->r;
			reply(s, "250 2.1.5 Ok");
		}
	}
	free(j);
	if (s->closing) {
		conn_close(s->conn);
		return;
	}
	conn_resume_input(s->conn);
}

static void cmd_rcpt(struct lmtp_session *s, const struct lmtp_command *c)
{
	if (!s->has_from) {
		error_reply(s, "503 5.5.1 Send MAIL first");
		return;
	}
	if (s->nrcpts >= config_uint(s->env->config, "lmtp_max_recipients")) {
		reply(s, "452 4.5.3 Too many recipients");
		return;
	}
	for (unsigned i = 0; i < c->nparams; i++)
		if (strcmp(c->params[i].name, "NOTIFY") != 0 && strcmp(c->params[i].name, "ORCPT") != 0) {
			error_reply(s, "555 5.5.4 Unsupported RCPT parameter");
			return;
		}
	if (c->address[0] == '\0') {
		reply(s, "501 5.1.3 Empty recipient");
		return;
	}
	struct rcpt_job *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		reply(s, "452 4.3.0 Out of memory");
		return;
	}
	j->s = s;
	snprintf(j->addr, sizeof(j->addr), "%s", c->address);
	/* The lookup opens the user's index (and reads the quota): disk work,
	 * so it runs off the event loop like the delivery. */
	s->busy = true;
	conn_pause_input(s->conn);
	if (jobs_run(s->env->jobs, rcpt_work, rcpt_done, j) < 0) {
		rcpt_work(j);
		rcpt_done(j);
	}
}

static void cmd_data(struct lmtp_session *s)
{
	if (!s->has_from) {
		error_reply(s, "503 5.5.1 Send MAIL first");
		return;
	}
	if (s->nrcpts == 0) {
		error_reply(s, "503 5.5.1 No valid recipients");
		return;
	}
	if (s->stage != NULL) {
		error_reply(s, "503 5.5.1 BDAT in progress");
		return;
	}
	if (start_message(s) < 0)
		return;
	memset(&s->dot, 0, sizeof(s->dot));
	s->mode = MODE_DATA;
	reply(s, "354 Start mail input; end with <CRLF>.<CRLF>");
}

static void cmd_bdat(struct lmtp_session *s, const struct lmtp_command *c)
{
	if (!s->has_from || s->nrcpts == 0) {
		/* RFC 3030 2: the chunk must still be read and dropped. */
		s->bdat_left = c->chunk_size;
		s->bdat_last = false;
		s->mode = MODE_BDAT;
		s->stage_failed = true;
		snprintf(s->stage_err.text, sizeof(s->stage_err.text), "%s",
			 !s->has_from ? "503 5.5.1 Send MAIL first" : "503 5.5.1 No valid recipients");
		return;
	}
	if (s->stage == NULL && start_message(s) < 0)
		return;
	s->bdat_left = c->chunk_size;
	s->bdat_last = c->last;
	s->mode = MODE_BDAT;
}

static void bdat_chunk_done(struct lmtp_session *s)
{
	s->mode = MODE_CMD;
	if (s->stage == NULL) { /* a chunk without a transaction */
		error_reply(s, s->stage_err.text);
		s->stage_failed = false;
		return;
	}
	if (s->bdat_last) {
		end_of_message(s);
		return;
	}
	reply(s, "250 2.0.0 Chunk received");
}

static void handle_line(struct lmtp_session *s, const char *line, size_t len)
{
	struct lmtp_command *c = malloc(sizeof(*c));
	const char *why;
	if (c == NULL) {
		reply(s, "421 4.3.0 Out of memory");
		s->closing = true;
		return;
	}
	if (lmtp_parse_command(line, len, c, &why) < 0) {
		error_reply(s, why);
		free(c);
		return;
	}
	switch (c->verb) {
	case LMTP_LHLO: cmd_lhlo(s, c); break;
	case LMTP_MAIL: cmd_mail(s, c); break;
	case LMTP_RCPT: cmd_rcpt(s, c); break;
	case LMTP_DATA: cmd_data(s); break;
	case LMTP_BDAT: cmd_bdat(s, c); break;
	case LMTP_RSET:
		reset_transaction(s);
		reply(s, "250 2.0.0 Ok");
		break;
	case LMTP_NOOP: reply(s, "250 2.0.0 Ok"); break;
	case LMTP_QUIT:
		reply(s, "221 2.0.0 Bye");
		s->closing = true;
		break;
	case LMTP_VRFY: reply(s, "252 2.5.2 Cannot verify, but will try delivery"); break;
	case LMTP_HELP: reply(s, "214 2.0.0 See RFC 2033"); break;
	case LMTP_STARTTLS: error_reply(s, "502 5.5.1 STARTTLS is not offered on LMTP"); break;
	default: error_reply(s, "500 5.5.2 Command not recognized"); break;
	}
	free(c);
}

static void session_input(void *ctx)
{
	struct lmtp_session *s = ctx;
	char out[65536 + 1];

	while (!s->busy && !s->closing) {
		struct evbuffer *in = conn_input(s->conn);
		size_t avail = evbuffer_get_length(in);
		if (avail == 0)
			break;
		if (s->mode == MODE_DATA) {
			size_t take = avail < 65536 ? avail : 65536, olen, used;
			const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)take);
			bool end = lmtp_dot_feed(&s->dot, p, take, out, &olen, &used);
			add_body(s, out, olen);
			evbuffer_drain(in, used);
			if (end)
				end_of_message(s);
			continue;
		}
		if (s->mode == MODE_BDAT) {
			size_t take = avail < 65536 ? avail : 65536;
			if (take > s->bdat_left)
				take = (size_t)s->bdat_left;
			if (take > 0) {
				const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)take);
				if (s->stage != NULL)
					add_body(s, p, take);
				evbuffer_drain(in, take);
				s->bdat_left -= take;
			}
			if (s->bdat_left == 0)
				bdat_chunk_done(s);
			continue;
		}
		size_t eol_len = 0;
		struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
		if (eol.pos < 0) {
			if (avail > LMTP_MAX_LINE) {
				/* RFC 5321 4.5.3.1.4: too long. Drop what we have and
				 * the rest of the line, then answer once. */
				evbuffer_drain(in, avail);
				if (!s->discarding)
					error_reply(s, "500 5.5.2 Line too long");
				s->discarding = true;
			}
			break;
		}
		size_t linelen = (size_t)eol.pos;
		char *line = malloc(linelen + 1);
		if (line == NULL) {
			s->closing = true;
			break;
		}
		evbuffer_remove(in, line, linelen);
		evbuffer_drain(in, eol_len);
		if (linelen > 0 && line[linelen - 1] == '\r')
			linelen--;
		line[linelen] = '\0';
		if (s->discarding) {
			s->discarding = false; /* the tail of an overlong line */
		} else {
			handle_line(s, line, linelen);
		}
		free(line);
		if (conn_output_pending(s->conn) >= CONN_OUTPUT_HIGH) {
			conn_pause_input(s->conn);
			break;
		}
	}
	if (s->closing && !s->busy)
		conn_close(s->conn);
}

static void session_drained(void *ctx)
{
	struct lmtp_session *s = ctx;
	if (!s->busy && !s->closing)
		conn_resume_input(s->conn);
}

static void session_free(struct lmtp_session *s)
{
	reset_transaction(s);
	if (all_sessions == s)
		all_sessions = s->next;
	if (s->prev)
		s->prev->next = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->env->sessions--;
	free(s);
}

static void session_closed(void *ctx)
{
	struct lmtp_session *s = ctx;
	s->conn = NULL;
	if (s->busy)
		return; /* deliver_done frees it */
	session_free(s);
}

static void session_timeout(void *ctx)
{
	struct lmtp_session *s = ctx;
	if (s->busy)
		return;
	reply(s, "421 4.4.2 Timeout, closing connection");
	s->closing = true;
	conn_close(s->conn);
}

static const struct conn_handler handler = {
	session_input, session_drained, session_closed, session_timeout,
};

void lmtp_session_start(struct session_env *env, struct conn *c)
{
	static unsigned long counter;
	char host[256] = "localhost";
	struct lmtp_session *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		conn_abort(c);
		return;
	}
	s->env = env;
	s->conn = c;
	snprintf(s->id, sizeof(s->id), "L%lx%04lx", (unsigned long)getpid() & 0xffff,
		 ++counter & 0xffff);
	env->sessions++;
	s->next = all_sessions;
	if (all_sessions)
		all_sessions->prev = s;
	all_sessions = s;
	conn_set_handler(c, &handler, s);
	conn_set_idle_timeout(c, LMTP_TIMEOUT);
	gethostname(host, sizeof(host) - 1);
	reply(s, "220 %s mailroom LMTP ready", host);
}

void lmtp_shutdown_all(struct session_env *env)
{
	(void)env;
	for (struct lmtp_session *s = all_sessions; s != NULL; s = s->next) {
		if (s->conn == NULL || s->closing)
			continue;
		s->closing = true;
		if (!s->busy && s->mode == MODE_CMD && !s->has_from) {
			reply(s, "421 4.3.2 Server shutting down");
			conn_close(s->conn);
		}
	}
}
