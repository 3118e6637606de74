/*
 * lmtp_txn.c: the transaction after RCPT (lmtp_int.h): the message and its
 * delivery.
 *
 * The message streams into one staging file as it arrives (DATA is
 * dot-unstuffed by lmtp_parser.c; never whole in memory) with Return-Path
 * and Received prepended; past message_size_limit the rest is read and
 * dropped and every recipient gets 552. At the end, on the job pool, the
 * file is fsynced once and hard-linked into every recipient's mailbox
 * (store_deliver); only then is the one reply per recipient sent, in RCPT
 * order (RFC 2033 4.2), each saying whether that copy is durable.
 *
 * A full file system (ERR_NOSPACE) is "452 4.3.1": RFC 5321 4.2.2's 452
 * "insufficient system storage" with RFC 3463's X.3.1 "mail system full",
 * a temporary failure the MTA retries; other temporary failures are
 * "451 4.3.0".
 */
#include "lmtp/lmtp_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/config.h"
#include "lib/log.h"
#include "session/conn.h"

void lmtp_txn_reset(struct lmtp_session *s)
{
	s->has_from = false;
	s->from[0] = '\0';
	free(s->rcpts);
	s->rcpts = NULL;
	s->nrcpts = 0;
	store_stage_free(&s->stage);
	s->too_big = s->stage_failed = false;
	s->mode = LMTP_MODE_CMD;
	s->bdat_left = 0;
	s->bdat_last = false;
}

/* Return-Path and Received (RFC 5321 4.4), then the message. */
int lmtp_txn_start_message(struct lmtp_session *s)
{
	struct error err;
	char host[256] = "localhost", date[64], hdr[2048];
	time_t now = time(NULL);
	struct tm tm;
	if (store_stage_new(s->base.env->store, &s->stage, &err) < 0) {
		lmtp_reply(s, "%s %s", err.code == ERR_NOSPACE ? "452 4.3.1" : "451 4.3.0", err.text);
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
			 s->from, s->helo, conn_peer_ip(s->base.conn), host, s->base.id,
			 s->nrcpts == 1 ? "\r\n\tfor <" : "",
			 s->nrcpts == 1 ? s->rcpts[0].addr : "", s->nrcpts == 1 ? ">" : "", date);
	if (n < 0 || (size_t)n >= sizeof(hdr) ||
	    store_stage_write(s->stage, hdr, (size_t)n, &s->stage_err) < 0) {
		s->stage_failed = true;
		if (n < 0 || (size_t)n >= sizeof(hdr))
			snprintf(s->stage_err.text, sizeof(s->stage_err.text), "header too long");
	}
	return 0;
}

void lmtp_txn_write(struct lmtp_session *s, const void *data, size_t len)
{
	if (s->too_big || s->stage_failed || len == 0)
		return;
	uint64_t limit = config_uint(s->base.env->config, "message_size_limit");
	if (limit != 0 && store_stage_size(s->stage) + len > limit) {
		s->too_big = true;
		return;
	}
	if (store_stage_write(s->stage, data, len, &s->stage_err) < 0)
		s->stage_failed = true;
}

/* ---- the end of a message: deliver off the loop, then one reply each --- */

/* What the job thread uses: the stage and the recipients' names are the
 * session's, borrowed (the core keeps the session while the job runs and
 * the loop does not touch them meanwhile); the rest is the job's own. */
struct deliver_job {
	struct store *store;
	struct store_stage *stage;
	struct store_rcpt *r;
	size_t n;
	bool skip;   /* too big or a failed stage: nothing to deliver */
	bool failed; /* store_stage_finish failed: err says why */
	struct error err;
};

static void deliver_work(void *arg)
{
	struct deliver_job *j = arg;
	if (j->skip)
		return;
	if (store_stage_finish(j->stage, &j->err) < 0) {
		j->failed = true;
		return;
	}
	store_deliver(j->store, j->stage, 0, j->r, j->n);
}

/* One recipient's reply; true if its copy is stored. */
static bool reply_rcpt(struct lmtp_session *s, const char *addr, const struct store_rcpt *r)
{
	if (s->too_big) {
		lmtp_reply(s, "552 5.3.4 <%s> Message too big", addr);
		return false;
	}
	if (s->stage_failed) {
		lmtp_reply(s, "%s <%s> %s", s->stage_err.code == ERR_NOSPACE ? "452 4.3.1" : "451 4.3.0",
			   addr, s->stage_err.text);
		return false;
	}
	switch (r->result.code) {
	case ERR_OK:
		lmtp_reply(s, "250 2.0.0 <%s> %u Saved", addr, r->uid);
		return true;
	case ERR_NOUSER:
		lmtp_reply(s, "550 5.1.1 <%s> No such user here", addr);
		return false;
	case ERR_QUOTA:
		lmtp_reply(s,
			   store_quota_is_temporary(s->base.env->store)
				   ? "452 4.2.2 <%s> Mailbox is full"
				   : "552 5.2.2 <%s> Mailbox is full",
			   addr);
		return false;
	case ERR_NOSPACE:
		lmtp_reply(s, "452 4.3.1 <%s> Insufficient system storage: %s", addr, r->result.text);
		return false;
	case ERR_LIMIT:
	case ERR_DATA:
		lmtp_reply(s, "554 5.6.0 <%s> %s", addr, r->result.text);
		return false;
	default:
		lmtp_reply(s, "451 4.3.0 <%s> Temporary failure: %s", addr, r->result.text);
		return false;
	}
}

static void deliver_done(struct session *base, void *arg)
{
	struct lmtp_session *s = (struct lmtp_session *)base;
	struct deliver_job *j = arg;
	if (j->failed) {
		s->stage_failed = true;
		s->stage_err = j->err;
	}
	unsigned ok = 0;
	for (size_t i = 0; i < j->n; i++)
		if (reply_rcpt(s, s->rcpts[i].addr, &j->r[i]))
			ok++;
	log_info("lmtp %s from=<%s> rcpts=%zu delivered=%u size=%llu", s->base.id, s->from, j->n,
		 ok, (unsigned long long)(s->stage ? store_stage_size(s->stage) : 0));
	free(j->r);
	free(j);
	lmtp_txn_reset(s);
}

void lmtp_txn_deliver(struct lmtp_session *s)
{
	struct deliver_job *j = calloc(1, sizeof(*j));
	struct store_rcpt *r = calloc(s->nrcpts, sizeof(*r));
	if (j == NULL || r == NULL)
		goto fail;
	for (size_t i = 0; i < s->nrcpts; i++) {
		r[i].user = s->rcpts[i].user;
		r[i].mailbox = s->rcpts[i].mailbox[0] ? s->rcpts[i].mailbox : NULL;
	}
	j->store = s->base.env->store;
	j->stage = s->stage;
	j->r = r;
	j->n = s->nrcpts;
	j->skip = s->too_big || s->stage_failed;
	s->mode = LMTP_MODE_CMD;
	if (session_async(&s->base, deliver_work, deliver_done, j) < 0)
		goto fail;
	return;
fail:
	free(j);
	free(r);
	for (size_t i = 0; i < s->nrcpts; i++)
		lmtp_reply(s, "451 4.3.0 <%s> Out of memory", s->rcpts[i].addr);
	lmtp_txn_reset(s);
}
