/*
 * imap_session.c: the IMAP protocol on the session core (src/session): how
 * bytes become commands, and the session's start and end.
 *
 * Design note. The core calls imap_input once per unit of input. While no
 * command runs, bytes go to the incremental parser (imap_parser.c); in
 * IDLE or AUTHENTICATE they are read as lines instead (imap_cmd_idle_line,
 * imap_cmd_auth_line). A complete command is looked up in the families'
 * tables (imap_cmd_*.c) with session_cmd_find, which checks the state it
 * needs; then its handler runs. A handler answers at once, or hands off to
 * the core (session_async, session_pump, session_login) and the tagged
 * reply comes from the completion: the core then reads no input until the
 * command is over, and imap_command_done forgets its tag. Backpressure
 * (output above CONN_OUTPUT_HIGH stops input), timeouts and shutdown are
 * the core's; this file only says what IMAP says at those points.
 *
 * Untagged updates (EXISTS, EXPUNGE, FETCH FLAGS) are folded in before each
 * tagged OK (imap_view_sync), except that the non-UID FETCH, STORE and
 * SEARCH never get EXPUNGE (RFC 9051 7.5.1), and during IDLE they are pushed
 * as soon as the mailbox changes (imap_cmd_idle.c).
 */
#include "imap/imap_int.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "lib/config.h"
#include "lib/log.h"
#include "session/conn.h"


static const struct imap_cmd_family *const families[] = {
	&imap_cmd_any,	 &imap_cmd_auth,  &imap_cmd_mailbox, &imap_cmd_status,
	&imap_cmd_list,	 &imap_cmd_append, &imap_cmd_idle,   &imap_cmd_msg,
	&imap_cmd_fetch, &imap_cmd_store, &imap_cmd_search, &imap_cmd_sort,
	&imap_cmd_unauth, &imap_cmd_metadata, &imap_cmd_notify,
	&imap_cmd_quota, &imap_cmd_compress,
};

static void dispatch(struct imap_session *s, const struct imap_command *cmd)
{
	const struct session_cmd *row = NULL;
	enum session_cmd_result r = SESSION_CMD_UNKNOWN;
	for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
		r = session_cmd_find(families[i]->rows, families[i]->n, sizeof(struct imap_cmd_def),
				     cmd->name, s->state, &row);
		if (r != SESSION_CMD_UNKNOWN)
			break;
	}
	if (r == SESSION_CMD_UNKNOWN) {
		imap_send_tagged(s, cmd, "BAD", "Unknown command");
		return;
	}
	const struct imap_cmd_def *def = (const struct imap_cmd_def *)(const void *)row;
	if (cmd->uid && !(def->flags & IMAP_CMD_UID)) {
		imap_send_tagged(s, cmd, "BAD", "No UID form of this command");
		return;
	}
	if (r == SESSION_CMD_BAD_STATE) {
		imap_send_tagged(s, cmd, "BAD",
				 s->state == IMAP_NOT_AUTH ? "Log in first"
				 : s->state == IMAP_AUTH   ? "Select a mailbox first"
							   : "Command not valid in this state");
		return;
	}
	/* RFC 9586 3.1: after ENABLE UIDONLY, the forms that take message
	 * sequence numbers are BAD [UIDREQUIRED]; EXPUNGE takes none. */
	if (s->uidonly && !cmd->uid && (def->flags & IMAP_CMD_UID) &&
	    strcmp(cmd->name, "EXPUNGE") != 0) {
		imap_send_tagged(s, cmd, "BAD", "[UIDREQUIRED] Use the UID form of %s with UIDONLY",
				 cmd->name);
		return;
	}
	free(s->cmd_tag);
	s->cmd_tag = strdup(cmd->tag);
	s->limit_hit = false;
	def->handler(s, cmd);
}

static enum imap_literal_action literal_start(void *ctx, const char *name, size_t argc,
					      uint64_t size, bool is_sync, bool is_literal8)
{
	struct imap_session *s = ctx;
	if ((strcmp(name, "APPEND") == 0 && s->state != IMAP_NOT_AUTH) ||
	    (strcmp(name, "REPLACE") == 0 && s->state == IMAP_SELECTED))
		return imap_cmd_append_literal_start(s, name, argc, size, is_sync, is_literal8);
	return size <= IMAP_PARSER_MAX_LITERAL_MEMORY ? IMAP_LITERAL_BUFFER : IMAP_LITERAL_REJECT;
}

static int literal_data(void *ctx, const void *data, size_t len)
{
	return imap_cmd_append_literal_data(ctx, data, len);
}

static void parser_error(struct imap_session *s)
{
	const struct imap_parser_error *e = imap_parser_error(s->parser);
	const char *code = e->kind == IMAP_PARSER_ERR_TOOBIG ? "[TOOBIG] " : "";
	imap_cmd_append_abort(s);
	if (e->fatal) {
		imap_send(s, "* BYE %s%s\r\n", code, e->msg);
		s->base.closing = true;
		return;
	}
	if (e->tag != NULL)
		imap_send(s, "%s %s %s%s\r\n", e->tag,
			  e->kind == IMAP_PARSER_ERR_TOOBIG ? "NO" : "BAD", code, e->msg);
	else
		imap_send(s, "* BAD %s%s\r\n", code, e->msg);
	if (session_error_limit(&s->base, IMAP_MAX_BAD_COMMANDS)) {
		imap_send(s, "* BYE Too many invalid commands\r\n");
		s->base.closing = true;
	}
	imap_parser_reset(s->parser);
}

/* A line while idling or authenticating. */
static enum session_step line_input(struct imap_session *s, struct evbuffer *in)
{
	size_t avail = evbuffer_get_length(in), used = 0, len;
	const unsigned char *data = evbuffer_pullup(in, (ev_ssize_t)avail);
	const char *line;
	enum imap_parser_result r = imap_parser_read_line(s->parser, data, avail, &used, &line, &len);
	evbuffer_drain(in, used);
	if (r == IMAP_PARSER_NEED_MORE)
		return SESSION_WAIT;
	if (r == IMAP_PARSER_ERROR) {
		imap_parser_reset(s->parser);
		if (s->authenticating) {
			/* RFC 9051 6.2.2: a bad response ends the exchange. */
			s->authenticating = false;
			sasl_clear(&s->sasl);
			imap_send_tagged(s, NULL, "BAD", "Invalid authentication response");
			free(s->cmd_tag);
			s->cmd_tag = NULL;
		} else {
			imap_send(s, "* BAD Line too long or invalid\r\n");
		}
		return SESSION_MORE;
	}
	char *copy = strndup(line, len);
	if (copy == NULL) {
		s->base.closing = true;
		return SESSION_MORE;
	}
	if (s->idling)
		imap_cmd_idle_line(s, copy, len);
	else
		imap_cmd_auth_line(s, copy, len);
	explicit_bzero(copy, len);
	free(copy);
	return SESSION_MORE;
}

static enum session_step imap_input(struct session *base, struct evbuffer *in)
{
	struct imap_session *s = imap_session_of(base);
	if (s->idling || s->authenticating)
		return line_input(s, in);
	size_t avail = evbuffer_get_length(in), used = 0;
	const unsigned char *data = evbuffer_pullup(in, (ev_ssize_t)avail);
	enum imap_parser_result r = imap_parser_feed(s->parser, data, avail, &used);
	evbuffer_drain(in, used);
	switch (r) {
	case IMAP_PARSER_NEED_MORE:
		return SESSION_WAIT;
	case IMAP_PARSER_LITERAL:
		imap_send(s, "+ Ready for literal data\r\n");
		return SESSION_MORE;
	case IMAP_PARSER_ERROR:
		parser_error(s);
		return SESSION_MORE;
	default:
		break;
	}
	dispatch(s, imap_parser_command(s->parser));
	imap_cmd_append_abort(s); /* literals staged for a command refused unrun */
	if (s->base.busy == 0 && s->base.pump.step == NULL && !s->authenticating && !s->idling) {
		free(s->cmd_tag);
		s->cmd_tag = NULL;
	}
	imap_parser_reset(s->parser);
	imap_cmd_notify_flush(s);
	return SESSION_MORE;
}

/* A command that went to the core (job, wait, pump) has ended. */
static void imap_command_done(struct session *base)
{
	struct imap_session *s = imap_session_of(base);
	if (s->authenticating || s->idling) {
		imap_cmd_notify_flush(s); /* a change that came during IDLE's sync */
		return;
	}
	free(s->cmd_tag);
	s->cmd_tag = NULL;
	imap_cmd_notify_flush(s);
}

static int imap_start(struct session *base)
{
	struct imap_session *s = imap_session_of(base);
	struct imap_parser_callbacks cb = { literal_start, literal_data, s };
	s->parser = imap_parser_new(NULL, &cb);
	if (s->parser == NULL)
		return -1;
	session_set_timeout(&s->base, (unsigned)config_uint(s->base.env->config, "imap_autologout"));
	imap_send(s, "* OK [");
	imap_capability_send(s);
	imap_send(s, "] mailroom ready\r\n");
	log_info("imap %s connect ip=%s%s", s->base.id, conn_peer_ip(s->base.conn),
		 conn_is_tls(s->base.conn) ? " tls" : "");
	return 0;
}

static void imap_timeout(struct session *base)
{
	/* RFC 9051 5.4: autologout after at least 30 minutes of inactivity;
	 * IDLE has its own, longer timeout (imap_cmd_idle.c). */
	imap_send(imap_session_of(base), "* BYE Autologout; idle for too long\r\n");
}

static void imap_shutdown(struct session *base)
{
	struct imap_session *s = imap_session_of(base);
	if (s->base.closing)
		return;
	imap_send(s, "* BYE Server shutting down\r\n");
	session_close(&s->base);
}

static void imap_overflow(struct session *base)
{
	imap_send(imap_session_of(base), "* BYE Too much output unread; closing\r\n");
}

static void imap_disconnected(struct session *base)
{
	struct imap_session *s = imap_session_of(base);
	unsigned long long bin, bout;
	conn_byte_counts(s->base.conn, &bin, &bout);
	log_info("imap %s disconnect user=%s ip=%s in=%llu out=%llu", s->base.id,
		 s->user ? s->user : "-", conn_peer_ip(s->base.conn), bin, bout);
}

static void imap_free(struct session *base)
{
	struct imap_session *s = imap_session_of(base);
	imap_cmd_append_abort(s);
	imap_cmd_idle_unwatch(s);
	imap_cmd_notify_free(s);
	imap_view_close(s);
	store_user_close(&s->suser);
	imap_parser_free(&s->parser);
	sasl_clear(&s->sasl);
	free(s->user);
	free(s->cmd_tag);
	free(s->saved);
}

const struct session_proto imap_proto = {
	.name = "imap",
	.id_prefix = "",
	.size = sizeof(struct imap_session),
	.start = imap_start,
	.input = imap_input,
	.timeout = imap_timeout,
	.shutdown = imap_shutdown,
	.disconnected = imap_disconnected,
	.command_done = imap_command_done,
	.free = imap_free,
	.overflow = imap_overflow,
};
