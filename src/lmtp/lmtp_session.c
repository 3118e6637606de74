/*
 * lmtp_session.c: one LMTP connection (RFC 2033, with RFC 5321 grammar,
 * PIPELINING RFC 2920, ENHANCEDSTATUSCODES RFC 2034, 8BITMIME RFC 6152,
 * SIZE RFC 1870, CHUNKING RFC 3030, SMTPUTF8 RFC 6531), as the session
 * core runs it (session.h: the connection's life is the core's).
 *
 * Design note. A transaction is MAIL, one or more RCPT, then DATA (or BDAT
 * chunks). Each RCPT is checked at once, on the job pool (lmtp_rcpt.c);
 * the message streams into a staging file and is delivered on the job
 * pool, with one reply per recipient (lmtp_txn.c). The files are listed in
 * lmtp_int.h.
 *
 * What the core does and what is left here:
 *  - start: the 220 greeting and the RFC 5321 idle timeout; timeout: the
 *    421 line (the core closes).
 *  - input: the core calls lmtp_input once per unit: a command line
 *    (lmtp_cmd.c), or a chunk of DATA or of a BDAT chunk. While an RCPT
 *    lookup or a delivery runs (session_async) the core reads nothing, so
 *    pipelined commands wait in the buffer and replies stay in order.
 *  - shutdown: a session holding nothing (no transaction, reading
 *    commands, nothing running) gets "421 4.3.2" and closes at once. One
 *    in a transaction goes on reading it, to the end of its message, and
 *    answers every recipient; it says 421 and closes as soon as it holds
 *    nothing (after the replies, or after RSET). The worker's grace period
 *    bounds a client that never finishes.
 *  - free: the transaction's staging file and recipients.
 */
#include "lmtp/lmtp_int.h"

#include <stdlib.h>
#include <unistd.h>

#include <event2/buffer.h>

#define LMTP_TIMEOUT 300   /* RFC 5321 4.5.3.2.7: 5 minutes between commands */
#define LMTP_CHUNK   65536 /* DATA/BDAT bytes handled per input unit */

static struct lmtp_session *lmtp(struct session *base)
{
	return (struct lmtp_session *)base;
}

/* Nothing would be lost by closing now. */
static bool holds_nothing(const struct lmtp_session *s)
{
	return !session_running(&s->base) && s->mode == LMTP_MODE_CMD && !s->has_from;
}

/* After the server was asked to shut down: go at the first point where
 * the session holds nothing (RFC 5321 3.8: 421 when the service closes). */
static void shut_down_if_idle(struct lmtp_session *s)
{
	if (!s->base.shut_down || s->base.closing || !holds_nothing(s))
		return;
	lmtp_reply(s, "421 4.3.2 Server shutting down");
	session_close(&s->base);
}

/* ---- one unit of input ------------------------------------------------- */

static void data_unit(struct lmtp_session *s, struct evbuffer *in)
{
	char out[LMTP_CHUNK + 1]; /* lmtp_dot_feed may add a held-back CR */
	size_t avail = evbuffer_get_length(in);
	size_t take = avail < LMTP_CHUNK ? avail : LMTP_CHUNK, olen, used;
	const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)take);
	bool end = lmtp_dot_feed(&s->dot, p, take, out, &olen, &used);
	lmtp_txn_write(s, out, olen);
	evbuffer_drain(in, used);
	if (end)
		lmtp_txn_deliver(s);
}

static void bdat_chunk_done(struct lmtp_session *s)
{
	s->mode = LMTP_MODE_CMD;
	if (s->stage == NULL) { /* a chunk without a transaction */
		lmtp_reply_error(s, s->stage_err.text);
		s->stage_failed = false;
		return;
	}
	if (s->bdat_last) {
		lmtp_txn_deliver(s);
		return;
	}
	lmtp_reply(s, "250 2.0.0 Chunk received");
}

static void bdat_unit(struct lmtp_session *s, struct evbuffer *in)
{
	size_t avail = evbuffer_get_length(in);
	size_t take = avail < LMTP_CHUNK ? avail : LMTP_CHUNK;
	if (take > s->bdat_left)
		take = (size_t)s->bdat_left;
	if (take > 0) {
		const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)take);
		if (s->stage != NULL)
			lmtp_txn_write(s, p, take);
		evbuffer_drain(in, take);
		s->bdat_left -= take;
	}
	if (s->bdat_left == 0)
		bdat_chunk_done(s);
}

static enum session_step line_unit(struct lmtp_session *s, struct evbuffer *in)
{
	size_t eol_len = 0;
	struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
	if (eol.pos < 0) {
		size_t avail = evbuffer_get_length(in);
		if (avail > LMTP_MAX_LINE) {
			/* RFC 5321 4.5.3.1.4: too long. Drop what we have and
			 * the rest of the line, then answer once. */
			evbuffer_drain(in, avail);
			if (!s->discarding)
				lmtp_reply_error(s, "500 5.5.2 Line too long");
			s->discarding = true;
		}
		return SESSION_WAIT;
	}
	size_t linelen = (size_t)eol.pos;
	char *line = malloc(linelen + 1);
	if (line == NULL) {
		session_close(&s->base);
		return SESSION_MORE;
	}
	evbuffer_remove(in, line, linelen);
	evbuffer_drain(in, eol_len);
	if (linelen > 0 && line[linelen - 1] == '\r')
		linelen--;
	line[linelen] = '\0';
	if (s->discarding)
		s->discarding = false; /* the tail of an overlong line */
	else
		lmtp_cmd_line(s, line, linelen);
	free(line);
	return SESSION_MORE;
}

/* ---- the protocol, as the core sees it ------------------------------------ */

static int lmtp_start(struct session *base)
{
	char host[256] = "localhost";
	session_set_timeout(base, LMTP_TIMEOUT);
	gethostname(host, sizeof(host) - 1);
	lmtp_reply(lmtp(base), "220 %s mailroom LMTP ready", host);
	return 0;
}

static enum session_step lmtp_input(struct session *base, struct evbuffer *in)
{
	struct lmtp_session *s = lmtp(base);
	enum session_step step = SESSION_MORE;
	switch (s->mode) {
	case LMTP_MODE_DATA:
		data_unit(s, in);
		break;
	case LMTP_MODE_BDAT:
		bdat_unit(s, in);
		break;
	case LMTP_MODE_CMD:
		step = line_unit(s, in);
		/* "BDAT 0": no byte will come to run the chunk's unit. */
		if (s->mode == LMTP_MODE_BDAT && s->bdat_left == 0)
			bdat_chunk_done(s);
		break;
	}
	shut_down_if_idle(s);
	return step;
}

static void lmtp_timeout(struct session *base)
{
	lmtp_reply(lmtp(base), "421 4.4.2 Timeout, closing connection");
}

static void lmtp_shutdown(struct session *base)
{
	shut_down_if_idle(lmtp(base));
}

static void lmtp_command_done(struct session *base)
{
	shut_down_if_idle(lmtp(base));
}

static void lmtp_free(struct session *base)
{
	lmtp_txn_reset(lmtp(base));
}

const struct session_proto lmtp_proto = {
	.name = "lmtp",
	.id_prefix = "L",
	.size = sizeof(struct lmtp_session),
	.start = lmtp_start,
	.input = lmtp_input,
	.timeout = lmtp_timeout,
	.shutdown = lmtp_shutdown,
	.disconnected = NULL,
	.command_done = lmtp_command_done,
	.free = lmtp_free,
};
