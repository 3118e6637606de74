/*
 * pop3_session.c: POP3 as the session core runs it (pop3_proto): greeting,
 * input, dispatch, autologout, shutdown and the logout log line.
 *
 * Design note. The core (session/session.h) does the lifecycle: the session
 * list, busy and closing, jobs and waits, the pump, the idle timer, the
 * input loop, freeing. This file supplies only what is POP3's.
 *
 * States (RFC 1939 3). AUTHORIZATION until a login succeeds (USER/PASS or
 * AUTH, then the maildrop snapshot: pop3_maildrop.c), TRANSACTION until
 * QUIT, which enters UPDATE (expunge what was DELE'd) and closes. The
 * command table (pop3_cmd.c) says per row in which states a command runs;
 * the dispatcher here enforces it with session_cmd_find, so handlers never
 * re-check the state. A session that ends any other way never enters
 * UPDATE and deletes nothing.
 *
 * Input. The core calls on_input() with bytes waiting; it feeds them to the
 * incremental parser (pop3_parser.h) and runs at most one complete line,
 * so pipelined commands (RFC 2449 6.6) are answered in order. A SASL
 * exchange reads its response lines in the parser's line mode. Protocol
 * errors are counted (pop3_resp_error); the POP3_MAX_ERRORS-th closes.
 *
 * Waiting. A login waits for the auth process (session_wait) and then for
 * the snapshot job (session_async); QUIT waits for the expunge job. The
 * core reads no input meanwhile and keeps the session until the job is
 * done, even if the client left (a job still uses its store objects).
 *
 * Output. Single-line answers are written at once. Multi-line responses
 * (LIST, UIDL, RETR, TOP) are session_pump steps (pop3_transfer.c) that the
 * core runs as the client reads, so memory stays bounded whatever the
 * client pipelines.
 *
 * Ending. The autologout timer (RFC 1939 3) closes without a response and
 * without UPDATE. A server shutdown answers "-ERR [SYS/TEMP] Server
 * shutting down" (RFC 3206 5: the client may come back) and closes if no
 * command runs; otherwise the current command or transfer finishes and the
 * session closes after it, without that line. A login
 * still waiting for the auth process answers with that line instead of
 * opening the maildrop (pop3_maildrop.c).
 */
#include "pop3/pop3_int.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "lib/log.h"
#include "session/conn.h"

static struct pop3_session *pop3(struct session *base)
{
	return (struct pop3_session *)base;
}

/* ---- input -------------------------------------------------------------------- */

static void parser_error(struct pop3_session *s)
{
	const char *why = "Invalid command";
	switch (pop3_parser_error(&s->parser)) {
	case POP3_PARSER_ERR_TOOLONG:
		why = s->authenticating ? "Line too long" : "Line too long (RFC 2449: 255 octets)";
		break;
	case POP3_PARSER_ERR_CHAR:
		why = "Invalid character (NUL or control) in line";
		break;
	case POP3_PARSER_ERR_EMPTY:
		why = "Empty command";
		break;
	case POP3_PARSER_ERR_VERB:
		why = "Unknown command";
		break;
	case POP3_PARSER_ERR_NONE:
		break;
	}
	if (s->authenticating) {
		s->authenticating = false;
		sasl_clear(&s->sasl);
		pop3_resp_error(s, "[AUTH] %s; authentication aborted", why);
		return;
	}
	pop3_resp_error(s, "%s", why);
}

static void dispatch(struct pop3_session *s)
{
	const struct session_cmd *row;
	switch (session_cmd_find(pop3_cmd_table, pop3_cmd_count, sizeof(pop3_cmd_table[0]),
				 pop3_parser_verb(&s->parser), s->state, &row)) {
	case SESSION_CMD_UNKNOWN:
		pop3_resp_error(s, "Unknown command");
		return;
	case SESSION_CMD_BAD_STATE:
		pop3_resp_error(s, "%s",
				s->state == POP3_AUTHORIZATION ? "Not logged in; authenticate first"
							       : "Not allowed after login");
		return;
	case SESSION_CMD_OK:
		break;
	}
	const struct pop3_cmd *cmd = (const struct pop3_cmd *)(const void *)row;
	cmd->handler(s, pop3_parser_args(&s->parser, NULL));
}

static enum session_step on_input(struct session *base, struct evbuffer *in)
{
	struct pop3_session *s = pop3(base);
	struct evbuffer_iovec v;
	if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
		return SESSION_WAIT;
	size_t used;
	enum pop3_parser_result r = pop3_parser_feed(&s->parser, v.iov_base, v.iov_len, &used);
	/* Drained before the command runs: STLS replaces the buffer. */
	evbuffer_drain(in, used);
	if (r == POP3_PARSER_NEED_MORE)
		return evbuffer_get_length(in) > 0 ? SESSION_MORE : SESSION_WAIT;
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
	pop3_parser_reset(&s->parser, s->authenticating ? POP3_PARSER_LINE : POP3_PARSER_COMMAND);
	return SESSION_MORE;
}

/* ---- lifecycle ------------------------------------------------------------------ */

static int on_start(struct session *base)
{
	struct pop3_session *s = pop3(base);
	s->lock_fd = -1;
	s->out.fd = -1;
	s->state = POP3_AUTHORIZATION;
	pop3_parser_init(&s->parser, POP3_PARSER_COMMAND);
	session_set_timeout(base, POP3_AUTOLOGOUT_SECONDS);
	/* No APOP timestamp: APOP is not offered (it needs the plaintext
	 * password on the server). */
	pop3_resp_send(s, "+OK mailroom POP3 ready");
	log_info("pop3 %s connect ip=%s%s", base->id, conn_peer_ip(base->conn),
		 conn_is_tls(base->conn) ? " tls" : "");
	return 0;
}

static void on_timeout(struct session *base)
{
	struct pop3_session *s = pop3(base);
	/* RFC 1939 3: on autologout the session does not enter UPDATE and the
	 * server closes "without ... sending any response". */
	log_info("pop3 %s autologout user=%s ip=%s", base->id, s->user ? s->user : "-",
		 conn_peer_ip(base->conn));
}

static void on_shutdown(struct session *base)
{
	if (base->closing)
		return; /* already saying goodbye (QUIT, too many errors) */
	/* A running command or transfer finishes first (the core closes
	 * after it), without the line: it would land inside its answer. */
	if (!session_running(base))
		pop3_resp_send(pop3(base), "-ERR [SYS/TEMP] Server shutting down");
	session_close(base);
}

static void on_disconnected(struct session *base)
{
	struct pop3_session *s = pop3(base);
	unsigned long long bin, bout;
	conn_byte_counts(base->conn, &bin, &bout);
	log_info("pop3 %s disconnect user=%s ip=%s in=%llu out=%llu retr=%u/%llu top=%u del=%u%s",
		 base->id, s->user ? s->user : "-", conn_peer_ip(base->conn), bin, bout, s->n_retr,
		 (unsigned long long)s->retr_bytes, s->n_top, s->n_dele,
		 s->state == POP3_UPDATE ? " quit" : "");
}

static void on_free(struct session *base)
{
	struct pop3_session *s = pop3(base);
	pop3_maildrop_close(s);
	sasl_clear(&s->sasl);
	explicit_bzero(&s->parser, sizeof(s->parser));
	free(s->user_arg);
}

const struct session_proto pop3_proto = {
	.name = "pop3",
	.id_prefix = "",
	.size = sizeof(struct pop3_session),
	.start = on_start,
	.input = on_input,
	.timeout = on_timeout,
	.shutdown = on_shutdown,
	.disconnected = on_disconnected,
	.free = on_free,
};
