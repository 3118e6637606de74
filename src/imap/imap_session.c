/*
 * imap_session.c: one IMAP connection: the input loop, the command table and
 * dispatcher, and the response writer.
 *
 * Design note. Input is handled in one place (session_input): while no
 * command is running, bytes go to the incremental parser (imap_parser.c);
 * in IDLE or AUTHENTICATE they are read as lines instead. A complete command
 * is looked up in `commands`, its state flags checked, and its handler run.
 * A handler either answers at once or goes asynchronous (disk work on the
 * job pool, or a password check in the auth process): then `busy` is set,
 * input is paused, and the completion answers and resumes. Output above
 * CONN_OUTPUT_HIGH also pauses input until the client reads (backpressure),
 * so a client that pipelines 10,000 FETCHes without reading costs bounded
 * memory.
 *
 * Untagged updates (EXISTS, EXPUNGE, FETCH FLAGS) are folded in before each
 * tagged OK (imap_view_sync), except that the non-UID FETCH, STORE and
 * SEARCH never get EXPUNGE (RFC 9051 7.5.1), and during IDLE they are pushed
 * as soon as the mailbox changes (imap_view_watch).
 */
#include "imap/imap_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "auth/auth_client.h"
#include "imap/imap_seqset.h"
#include "imap/imap_utf7.h"
#include "lib/buf.h"
#include "lib/config.h"
#include "session/conn.h"
#include "session/jobs.h"
#include "lib/log.h"

#define MAX_BAD_COMMANDS 20

static const struct imap_cmd_def commands[] = {
	{ "CAPABILITY", imap_cmd_capability, IMAP_CMD_NOT_AUTH | IMAP_CMD_AUTH | IMAP_CMD_SELECTED },
	{ "NOOP", imap_cmd_noop, IMAP_CMD_NOT_AUTH | IMAP_CMD_AUTH | IMAP_CMD_SELECTED },
	{ "LOGOUT", imap_cmd_logout, IMAP_CMD_NOT_AUTH | IMAP_CMD_AUTH | IMAP_CMD_SELECTED },
	{ "ID", imap_cmd_id, IMAP_CMD_NOT_AUTH | IMAP_CMD_AUTH | IMAP_CMD_SELECTED },
	{ "STARTTLS", imap_cmd_starttls, IMAP_CMD_NOT_AUTH },
	{ "LOGIN", imap_cmd_login, IMAP_CMD_NOT_AUTH },
	{ "AUTHENTICATE", imap_cmd_authenticate, IMAP_CMD_NOT_AUTH },
	{ "ENABLE", imap_cmd_enable, IMAP_CMD_AUTH | IMAP_CMD_SELECTED },
	{ "SELECT", imap_cmd_select, IMAP_CMD_AUTH | IMAP_CMD_SELECTED },
	{ "EXAMINE", imap_cmd_select, IMAP_CMD_AUTH | IMAP_CMD_SELECTED },
	{ "CREATE", imap_cmd_create, IMAP_CMD_AUTH | IMAP_CMD_SELECTED },
	{ "DELETE", imap_cmd_delete, IMAP_CMD_AUTH | IMAP_CMD_SELECTED },
	{ "RENAME", imap_cmd_rename, IMAP_CMD_AUTH | IMAP_CMD_SELECTED },
	{ "SUBSCRIBE", imap_cmd_subscribe, IMAP_CMD_AUTH | IMAP_CMD_SELECTED },
	{ "UNSUBSCRIBE", imap_cmd_subscribe, IMAP_CMD_AUTH | IMAP_CMD_SELECTED },
	{ "LIST", imap_cmd_list, IMAP_CMD_AUTH | IMAP_CMD_SELECTED },
	{ "LSUB", imap_cmd_list, IMAP_CMD_AUTH | IMAP_CMD_SELECTED },
	{ "NAMESPACE", imap_cmd_namespace, IMAP_CMD_AUTH | IMAP_CMD_SELECTED },
	{ "STATUS", imap_cmd_status, IMAP_CMD_AUTH | IMAP_CMD_SELECTED },
	{ "APPEND", imap_cmd_append, IMAP_CMD_AUTH | IMAP_CMD_SELECTED },
	{ "IDLE", imap_cmd_idle, IMAP_CMD_AUTH | IMAP_CMD_SELECTED },
	{ "CHECK", imap_cmd_check, IMAP_CMD_SELECTED },
	{ "CLOSE", imap_cmd_close, IMAP_CMD_SELECTED },
	{ "UNSELECT", imap_cmd_close, IMAP_CMD_SELECTED },
	{ "EXPUNGE", imap_cmd_expunge, IMAP_CMD_SELECTED | IMAP_CMD_UID },
	{ "COPY", imap_cmd_copy, IMAP_CMD_SELECTED | IMAP_CMD_UID },
	{ "MOVE", imap_cmd_copy, IMAP_CMD_SELECTED | IMAP_CMD_UID },
	{ "FETCH", imap_cmd_fetch, IMAP_CMD_SELECTED | IMAP_CMD_UID | IMAP_CMD_NO_EXPUNGE },
	{ "STORE", imap_cmd_store, IMAP_CMD_SELECTED | IMAP_CMD_UID | IMAP_CMD_NO_EXPUNGE },
	{ "SEARCH", imap_cmd_search, IMAP_CMD_SELECTED | IMAP_CMD_UID | IMAP_CMD_NO_EXPUNGE },
};

static void session_input(void *ctx);
static void session_free(struct imap_session *s);

/* Every session of this worker, for imap_shutdown_all. */
static struct imap_session *all_sessions;

/* ---- responses ------------------------------------------------------------ */

void imap_send(struct imap_session *s, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(buf)) {
		conn_write(s->conn, buf, (size_t)n);
		return;
	}
	char *big = malloc((size_t)n + 1);
	if (big == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	conn_write(s->conn, big, (size_t)n);
	free(big);
}

void imap_send_raw(struct imap_session *s, const void *data, size_t len)
{
	conn_write(s->conn, data, len);
}

void imap_tagged(struct imap_session *s, const struct imap_command *cmd, const char *status,
		 const char *fmt, ...)
{
	char *text = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&text, fmt, ap); /* no limit: a [MODIFIED set] can be long */
	va_end(ap);
	const char *tag = cmd != NULL ? cmd->tag : s->cmd_tag != NULL ? s->cmd_tag : "*";
	imap_send(s, "%s %s %s\r\n", tag, status, n >= 0 ? text : "");
	if (n >= 0)
		free(text);
	if (strcmp(status, "BAD") == 0 && ++s->bad_count > MAX_BAD_COMMANDS) {
		imap_send(s, "* BYE Too many invalid commands\r\n");
		s->closing = true;
	}
}

void imap_tagged_store_error(struct imap_session *s, const struct imap_command *cmd,
			     const struct store_error *err)
{
	const char *code = "[SERVERBUG]";
	switch (err->code) {
	case STORE_ERR_TEMP: code = "[UNAVAILABLE]"; break;
	case STORE_ERR_NOTFOUND: code = "[NONEXISTENT]"; break;
	case STORE_ERR_EXISTS: code = "[ALREADYEXISTS]"; break;
	case STORE_ERR_INVALID: code = "[CANNOT]"; break;
	case STORE_ERR_QUOTA: code = "[OVERQUOTA]"; break;
	case STORE_ERR_LIMIT: code = "[LIMIT]"; break;
	case STORE_ERR_NOUSER: code = "[UNAVAILABLE]"; break;
	default: break;
	}
	if (err->code == STORE_ERR_TEMP)
		log_warn("imap %s user=%s: %s", s->id, s->user ? s->user : "-", err->text);
	imap_tagged(s, cmd, "NO", "%s %s", code, err->text);
}

void imap_send_string(struct imap_session *s, const char *str, size_t len)
{
	bool quote = len < 1024;
	for (size_t i = 0; i < len && quote; i++) {
		unsigned char c = (unsigned char)str[i];
		if (c == '\r' || c == '\n' || c == '\0' || (c >= 0x80 && !s->utf8))
			quote = false;
	}
	if (!quote) {
		imap_send(s, "{%zu}\r\n", len);
		imap_send_raw(s, str, len);
		return;
	}
	char buf[2100];
	size_t o = 0;
	buf[o++] = '"';
	for (size_t i = 0; i < len; i++) {
		if (str[i] == '"' || str[i] == '\\')
			buf[o++] = '\\';
		buf[o++] = str[i];
	}
	buf[o++] = '"';
	imap_send_raw(s, buf, o);
}

void imap_send_mailbox(struct imap_session *s, const char *name)
{
	if (s->utf8) {
		imap_send_string(s, name, strlen(name));
		return;
	}
	struct buf m = BUF_INIT;
	const char *why;
	if (imap_utf7_encode(name, strlen(name), &m, &why) < 0 || m.failed)
		imap_send_string(s, name, strlen(name));
	else
		imap_send_string(s, buf_cstr(&m), m.len);
	buf_free(&m);
}

void imap_send_flags(struct imap_session *s, uint32_t flags, uint32_t keywords)
{
	static const struct {
		uint32_t bit;
		const char *name;
	} sys[] = {
		{ STORE_F_ANSWERED, "\\Answered" }, { STORE_F_FLAGGED, "\\Flagged" },
		{ STORE_F_DELETED, "\\Deleted" },   { STORE_F_SEEN, "\\Seen" },
		{ STORE_F_DRAFT, "\\Draft" },	    { STORE_F_PASSED, "$Forwarded" },
	};
	/* Sent for every message of a FETCH FLAGS: no printf here. */
	char buf[2048];
	size_t o = 0;
	buf[o++] = '(';
	for (size_t i = 0; i < sizeof(sys) / sizeof(sys[0]); i++) {
		if (!(flags & sys[i].bit))
			continue;
		size_t n = strlen(sys[i].name);
		if (o > 1)
			buf[o++] = ' ';
		memcpy(buf + o, sys[i].name, n);
		o += n;
	}
	for (unsigned k = 0; keywords != 0 && k < STORE_MAX_KEYWORDS && s->view != NULL; k++) {
		if (!(keywords & (1u << k)))
			continue;
		const char *kw = store_mailbox_keyword(s->view->mbox, k);
		size_t n = kw != NULL ? strlen(kw) : 0;
		if (n == 0 || o + n + 3 >= sizeof(buf))
			continue;
		if (o > 1)
			buf[o++] = ' ';
		memcpy(buf + o, kw, n);
		o += n;
	}
	buf[o++] = ')';
	imap_send_raw(s, buf, o);
}

/* ---- async ------------------------------------------------------------------ */

struct async_job {
	struct imap_session *s;
	void (*work)(void *arg);
	void (*done)(struct imap_session *s, void *arg);
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
	struct imap_session *s = j->s;
	j->done(s, j->arg);
	free(j);
	imap_session_command_done(s);
}

int imap_session_async(struct imap_session *s, void (*work)(void *arg),
		       void (*done)(struct imap_session *s, void *arg), void *arg)
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

void imap_session_command_done(struct imap_session *s)
{
	s->busy = false;
	if (s->conn == NULL) {
		session_free(s); /* the client left while the job ran */
		return;
	}
	free(s->cmd_tag);
	s->cmd_tag = NULL;
	if (s->closing && s->conn != NULL) {
		conn_close(s->conn);
		return;
	}
	if (s->conn != NULL && conn_output_pending(s->conn) < CONN_OUTPUT_HIGH)
		conn_resume_input(s->conn);
}

/* ---- arguments ----------------------------------------------------------------- */

char *imap_arg_mailbox(struct imap_session *s, const struct imap_command *cmd,
		       const struct imap_arg *arg)
{
	const char *str;
	size_t len;
	char *name = NULL;
	if (!imap_parser_arg_astring(arg, &str, &len) || memchr(str, '\0', len) != NULL) {
		imap_tagged(s, cmd, "BAD", "Expected a mailbox name");
		return NULL;
	}
	if (s->utf8) {
		name = strndup(str, len);
	} else {
		struct buf b = BUF_INIT;
		const char *why;
		if (imap_utf7_decode(str, len, &b, &why) < 0) {
			/* RFC 3501 5.1.3: names must be valid modified UTF-7. */
			buf_free(&b);
			imap_tagged(s, cmd, "NO", "[CANNOT] Mailbox name is not valid modified UTF-7");
			return NULL;
		}
		name = buf_steal(&b);
	}
	if (name == NULL)
		imap_tagged(s, cmd, "NO", "[SERVERBUG] Out of memory");
	return name;
}

int imap_arg_flags(struct imap_session *s, const struct imap_command *cmd,
		   const struct imap_arg *arg, struct store_mailbox *mbox, bool create,
		   uint32_t *flags_r, uint32_t *keywords_r)
{
	static const struct {
		const char *name;
		uint32_t bit;
	} sys[] = {
		{ "\\Answered", STORE_F_ANSWERED }, { "\\Flagged", STORE_F_FLAGGED },
		{ "\\Deleted", STORE_F_DELETED },   { "\\Seen", STORE_F_SEEN },
		{ "\\Draft", STORE_F_DRAFT },	    { "$Forwarded", STORE_F_PASSED },
	};
	const struct imap_arg *list = arg;
	size_t n = 1;
	uint32_t flags = 0, kws = 0;
	if (arg->type == IMAP_ARG_LIST) {
		list = arg->list;
		n = arg->count;
	}
	for (size_t i = 0; i < n; i++) {
		const struct imap_arg *a = &list[i];
		if (a->type != IMAP_ARG_ATOM) {
			imap_tagged(s, cmd, "BAD", "Invalid flag");
			return -1;
		}
		bool found = false;
		for (size_t k = 0; k < sizeof(sys) / sizeof(sys[0]); k++)
			if (strcasecmp(a->str, sys[k].name) == 0) {
				flags |= sys[k].bit;
				found = true;
			}
		if (found)
			continue;
		if (a->str[0] == '\\') {
			/* \Recent cannot be set (RFC 3501 2.3.2); other system
			 * flags are unknown to us. */
			imap_tagged(s, cmd, "BAD", "Invalid system flag %s", a->str);
			return -1;
		}
		if (mbox == NULL)
			continue; /* no mailbox yet (APPEND target checked later) */
		unsigned idx;
		struct store_error err;
		if (store_mailbox_keyword_index(mbox, a->str, create, &idx, &err) < 0) {
			if (!create && err.code == STORE_ERR_NOTFOUND)
				continue; /* removing a keyword nobody has: nothing to do */
			if (err.code == STORE_ERR_INVALID) {
				imap_tagged(s, cmd, "BAD", "Invalid keyword");
				return -1;
			}
			imap_tagged_store_error(s, cmd, &err);
			return -1;
		}
		kws |= 1u << idx;
	}
	*flags_r = flags;
	*keywords_r = kws;
	return 0;
}

/* ---- capability ------------------------------------------------------------ */

static bool plaintext_ok(struct imap_session *s)
{
	return conn_is_tls(s->conn) || conn_is_local(s->conn) ||
	       config_bool(s->env->config, "plaintext_auth");
}

static void capability_list(struct imap_session *s, char *buf, size_t size)
{
	int n = snprintf(buf, size, "IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE");
	if (s->state == IMAP_NOT_AUTH) {
		if (s->env->tls != NULL && !conn_is_tls(s->conn))
			n += snprintf(buf + n, size - (size_t)n, " STARTTLS");
		if (plaintext_ok(s))
			n += snprintf(buf + n, size - (size_t)n, " AUTH=PLAIN AUTH=LOGIN");
		else
			n += snprintf(buf + n, size - (size_t)n, " LOGINDISABLED");
		return;
	}
	snprintf(buf + n, size - (size_t)n,
		 " NAMESPACE UNSELECT UIDPLUS MOVE CHILDREN SPECIAL-USE CREATE-SPECIAL-USE"
		 " LIST-EXTENDED LIST-STATUS STATUS=SIZE ESEARCH SEARCHRES BINARY"
		 " CONDSTORE QRESYNC MULTIAPPEND UTF8=ACCEPT APPENDLIMIT=%llu",
		 (unsigned long long)config_uint(s->env->config, "message_size_limit"));
}

void imap_send_capability_code(struct imap_session *s)
{
	char caps[1024];
	capability_list(s, caps, sizeof(caps));
	imap_send(s, "CAPABILITY %s", caps);
}

int imap_cmd_capability(struct imap_session *s, const struct imap_command *cmd)
{
	char caps[1024];
	if (cmd->argc != 0) {
		imap_tagged(s, cmd, "BAD", "CAPABILITY takes no arguments");
		return 0;
	}
	capability_list(s, caps, sizeof(caps));
	imap_send(s, "* CAPABILITY %s\r\n", caps);
	imap_tagged(s, cmd, "OK", "Capability completed");
	return 0;
}

/* ---- the session ------------------------------------------------------------- */

static const struct imap_cmd_def *find_command(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static void dispatch(struct imap_session *s, const struct imap_command *cmd)
{
	const struct imap_cmd_def *def = find_command(cmd->name);
	if (def == NULL) {
		imap_tagged(s, cmd, "BAD", "Unknown command");
		return;
	}
	if (cmd->uid && !(def->flags & IMAP_CMD_UID)) {
		imap_tagged(s, cmd, "BAD", "No UID form of this command");
		return;
	}
	unsigned need = s->state == IMAP_NOT_AUTH ? IMAP_CMD_NOT_AUTH
			: s->state == IMAP_AUTH	  ? IMAP_CMD_AUTH
						  : IMAP_CMD_SELECTED | IMAP_CMD_AUTH;
	if (!(def->flags & need)) {
		imap_tagged(s, cmd, "BAD",
			    s->state == IMAP_NOT_AUTH ? "Log in first"
			    : s->state == IMAP_AUTH   ? "Select a mailbox first"
						      : "Command not valid in this state");
		return;
	}
	free(s->cmd_tag);
	s->cmd_tag = strdup(cmd->tag);
	def->handler(s, cmd);
}

static enum imap_literal_action literal_start(void *ctx, const char *name, size_t argc,
					      uint64_t size, bool is_sync, bool is_literal8)
{
	struct imap_session *s = ctx;
	if (strcmp(name, "APPEND") == 0 && s->state != IMAP_NOT_AUTH)
		return imap_append_literal_start(s, name, argc, size, is_sync, is_literal8);
	return size <= IMAP_PARSER_MAX_LITERAL_MEMORY ? IMAP_LITERAL_BUFFER : IMAP_LITERAL_REJECT;
}

static int literal_data(void *ctx, const void *data, size_t len)
{
	return imap_append_literal_data(ctx, data, len);
}

static void parser_error(struct imap_session *s)
{
	const struct imap_parser_error *e = imap_parser_error(s->parser);
	const char *code = e->kind == IMAP_PARSER_ERR_TOOBIG ? "[TOOBIG] " : "";
	imap_append_abort(s);
	if (e->fatal) {
		imap_send(s, "* BYE %s%s\r\n", code, e->msg);
		s->closing = true;
		return;
	}
	if (e->tag != NULL)
		imap_send(s, "%s %s %s%s\r\n", e->tag,
			  e->kind == IMAP_PARSER_ERR_TOOBIG ? "NO" : "BAD", code, e->msg);
	else
		imap_send(s, "* BAD %s%s\r\n", code, e->msg);
	if (++s->bad_count > MAX_BAD_COMMANDS) {
		imap_send(s, "* BYE Too many invalid commands\r\n");
		s->closing = true;
	}
	imap_parser_reset(s->parser);
}

static void session_input(void *ctx)
{
	struct imap_session *s = ctx;

	while (!s->busy && !s->closing) {
		/* Fetched anew each time: STARTTLS replaces the input buffer. */
		struct evbuffer *in = conn_input(s->conn);
		size_t avail = evbuffer_get_length(in);
		if (avail == 0)
			break;
		const unsigned char *data = evbuffer_pullup(in, (ev_ssize_t)avail);
		size_t used = 0;
		if (s->idling || s->authenticating) {
			const char *line;
			size_t len;
			enum imap_parser_result r =
				imap_parser_read_line(s->parser, data, avail, &used, &line, &len);
			evbuffer_drain(in, used);
			if (r == IMAP_PARSER_NEED_MORE)
				break;
			if (r == IMAP_PARSER_ERROR) {
				imap_parser_reset(s->parser);
				if (s->authenticating) {
					/* RFC 9051 6.2.2: a bad response ends the exchange. */
					s->authenticating = false;
					sasl_clear(&s->sasl);
					imap_tagged(s, NULL, "BAD", "Invalid authentication response");
					free(s->cmd_tag);
					s->cmd_tag = NULL;
				} else {
					imap_send(s, "* BAD Line too long or invalid\r\n");
				}
				continue;
			}
			char *copy = strndup(line, len);
			if (copy == NULL) {
				s->closing = true;
				break;
			}
			if (s->idling)
				imap_idle_line(s, copy, len);
			else
				imap_auth_line(s, copy, len);
			explicit_bzero(copy, len);
			free(copy);
			continue;
		}
		enum imap_parser_result r = imap_parser_feed(s->parser, data, avail, &used);
		evbuffer_drain(in, used);
		if (r == IMAP_PARSER_NEED_MORE)
			break;
		if (r == IMAP_PARSER_LITERAL) {
			imap_send(s, "+ Ready for literal data\r\n");
			continue;
		}
		if (r == IMAP_PARSER_ERROR) {
			parser_error(s);
			continue;
		}
		dispatch(s, imap_parser_command(s->parser));
		if (!s->busy && !s->authenticating && !s->idling) {
			free(s->cmd_tag);
			s->cmd_tag = NULL;
		}
		imap_parser_reset(s->parser);
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
	struct imap_session *s = ctx;
	if (!s->busy && !s->closing)
		conn_resume_input(s->conn);
}

static void session_timeout(void *ctx)
{
	struct imap_session *s = ctx;
	if (s->busy)
		return;
	/* RFC 9051 5.4: autologout after at least 30 minutes of inactivity;
	 * IDLE has its own, longer timer. */
	imap_send(s, "* BYE Autologout; idle for too long\r\n");
	s->closing = true;
	conn_close(s->conn);
}

static void session_closed(void *ctx)
{
	struct imap_session *s = ctx;
	unsigned long long bin, bout;
	conn_byte_counts(s->conn, &bin, &bout);
	log_info("imap %s disconnect user=%s ip=%s in=%llu out=%llu", s->id,
		 s->user ? s->user : "-", conn_peer_ip(s->conn), bin, bout);
	s->conn = NULL;
	if (s->busy) {
		/* A job still uses the session: it is freed when the job is done
		 * (imap_session_command_done sees conn == NULL). */
		s->closing = true;
		return;
	}
	session_free(s);
}

static const struct conn_handler handler = {
	session_input, session_drained, session_closed, session_timeout,
};

static void session_free(struct imap_session *s)
{
	struct session_env *env = s->env;
	if (s->auth_id != 0)
		auth_client_cancel(env->auth, s->auth_id);
	imap_append_abort(s);
	imap_view_close(s);
	store_user_close(&s->suser);
	imap_parser_free(&s->parser);
	sasl_clear(&s->sasl);
	free(s->user);
	free(s->cmd_tag);
	free(s->saved);
	if (all_sessions == s)
		all_sessions = s->next;
	if (s->prev)
		s->prev->next = s->next;
	if (s->next)
		s->next->prev = s->prev;
	env->sessions--;
	free(s);
}

void imap_session_start(struct session_env *env, struct conn *c)
{
	static unsigned long counter;
	struct imap_session *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		conn_abort(c);
		return;
	}
	struct imap_parser_callbacks cb = { literal_start, literal_data, s };
	s->parser = imap_parser_new(NULL, &cb);
	if (s->parser == NULL) {
		free(s);
		conn_abort(c);
		return;
	}
	s->env = env;
	s->conn = c;
	snprintf(s->id, sizeof(s->id), "%lx%04lx", (unsigned long)getpid() & 0xffff,
		 ++counter & 0xffff);
	env->sessions++;
	s->next = all_sessions;
	if (all_sessions)
		all_sessions->prev = s;
	all_sessions = s;
	conn_set_handler(c, &handler, s);
	conn_set_idle_timeout(c, (unsigned)config_uint(env->config, "imap_autologout"));
	char caps[1024];
	capability_list(s, caps, sizeof(caps));
	imap_send(s, "* OK [CAPABILITY %s] mailroom ready\r\n", caps);
	log_info("imap %s connect ip=%s%s", s->id, conn_peer_ip(c), conn_is_tls(c) ? " tls" : "");
}

void imap_shutdown_all(struct session_env *env)
{
	(void)env;
	for (struct imap_session *s = all_sessions; s != NULL; s = s->next) {
		if (s->conn == NULL || s->closing)
			continue;
		imap_send(s, "* BYE Server shutting down\r\n");
		s->closing = true;
		if (!s->busy)
			conn_close(s->conn);
	}
}

int imap_arg_uidset(struct imap_session *s, const struct imap_command *cmd,
		    const struct imap_arg *arg, bool uid, uint32_t **uids_r, size_t *n_r)
{
	struct imap_view *v = s->view;
	struct imap_seqset set = IMAP_SEQSET_INIT;
	const char *why;
	if (arg->type != IMAP_ARG_ATOM) {
		imap_tagged(s, cmd, "BAD", "Expected a sequence set");
		return -1;
	}
	uint32_t star = uid ? (v->n ? v->uids[v->n - 1] : 1) : (uint32_t)v->n;
	if (imap_seqset_parse(arg->str, arg->len, star, IMAP_SEQSET_ALLOW_SEARCHRES, &set, &why) < 0) {
		imap_tagged(s, cmd, "BAD", "Invalid sequence set: %s", why);
		return -1;
	}
	uint32_t *out = malloc((v->n ? v->n : 1) * sizeof(*out));
	size_t n = 0;
	if (out == NULL) {
		imap_seqset_free(&set);
		imap_tagged(s, cmd, "NO", "[SERVERBUG] Out of memory");
		return -1;
	}
	if (set.searchres) {
		/* RFC 5182: "$" is the last saved SEARCH result (UIDs), minus
		 * what has been expunged since. */
		for (size_t i = 0; i < s->nsaved && s->saved_valid; i++)
			if (imap_view_seq(v, s->saved[i]) != 0)
				out[n++] = s->saved[i];
	} else if (uid) {
		for (size_t i = 0; i < v->n; i++)
			if (imap_seqset_contains(&set, v->uids[i]))
				out[n++] = v->uids[i];
	} else {
		for (size_t r = 0; r < set.count; r++) {
			if (set.ranges[r].hi > v->n) {
				imap_seqset_free(&set);
				free(out);
				imap_tagged(s, cmd, "BAD", "Message sequence number out of range");
				return -1;
			}
			for (uint64_t q = set.ranges[r].lo; q <= set.ranges[r].hi; q++)
				out[n++] = v->uids[q - 1];
		}
	}
	imap_seqset_free(&set);
	*uids_r = out;
	*n_r = n;
	return 0;
}
