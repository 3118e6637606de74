/*
 * lmtp_cmd.c: LMTP commands (lmtp_int.h), one handler per verb and one
 * table row each.
 *
 * LMTP has one state as far as the table is concerned: every verb may come
 * at any time, and the order of a transaction (LHLO, MAIL, RCPT, then DATA
 * or BDAT) is the handlers' to check, because each order error has its own
 * reply ("503 5.5.1 Send MAIL first", RFC 5321 4.1.4).
 */
#include "lmtp/lmtp_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "lib/config.h"
#include "lib/strnum.h"

#define LMTP_STATE 0u /* the one state */

/* A row: a handler, or (run == NULL) the fixed reply of a command that
 * changes nothing. */
struct lmtp_cmd_row {
	struct session_cmd cmd; /* first: what session_cmd_find reads */
	void (*run)(struct lmtp_session *s, const struct lmtp_command *c);
	const char *reply;
};

static void cmd_lhlo(struct lmtp_session *s, const struct lmtp_command *c)
{
	char host[256] = "localhost";
	lmtp_txn_reset(s);
	size_t hl = strnlen(c->arg, sizeof(s->helo) - 1);
	memcpy(s->helo, c->arg, hl);
	s->helo[hl] = '\0';
	for (char *p = s->helo; *p != '\0'; p++)
		if ((unsigned char)*p < 0x21 || *p == 0x7f)
			*p = '?';
	s->lhlo = true;
	gethostname(host, sizeof(host) - 1);
	lmtp_reply(s, "250-%s", host);
	lmtp_reply(s, "250-PIPELINING");
	lmtp_reply(s, "250-ENHANCEDSTATUSCODES");
	lmtp_reply(s, "250-8BITMIME");
	lmtp_reply(s, "250-SMTPUTF8");
	lmtp_reply(s, "250-CHUNKING");
	lmtp_reply(s, "250 SIZE %llu",
		   (unsigned long long)config_uint(s->base.env->config, "message_size_limit"));
}

static void cmd_mail(struct lmtp_session *s, const struct lmtp_command *c)
{
	if (!s->lhlo) {
		lmtp_reply_error(s, "503 5.5.1 Send LHLO first");
		return;
	}
	if (s->has_from) {
		lmtp_reply_error(s, "503 5.5.1 Nested MAIL command");
		return;
	}
	uint64_t limit = config_uint(s->base.env->config, "message_size_limit");
	for (unsigned i = 0; i < c->nparams; i++) {
		const struct lmtp_param *p = &c->params[i];
		uint64_t size;
		if (strcmp(p->name, "SIZE") == 0) {
			if (strnum_u64z(p->value, UINT64_MAX, &size) < 0) {
				lmtp_reply_error(s, "501 5.5.4 Invalid SIZE");
				return;
			}
			if (limit != 0 && size > limit) {
				lmtp_reply(s, "552 5.3.4 Message size exceeds the limit");
				return;
			}
		} else if (strcmp(p->name, "BODY") == 0) {
			if (strcasecmp(p->value, "7BIT") != 0 &&
			    strcasecmp(p->value, "8BITMIME") != 0) {
				lmtp_reply_error(s, "555 5.5.4 Unsupported BODY type");
				return;
			}
		} else if (strcmp(p->name, "SMTPUTF8") != 0 && strcmp(p->name, "AUTH") != 0 &&
			   strcmp(p->name, "ENVID") != 0 && strcmp(p->name, "RET") != 0) {
			lmtp_reply_error(s, "555 5.5.4 Unsupported MAIL parameter");
			return;
		}
	}
	for (const char *q = c->address; *q != '\0'; q++)
		if ((unsigned char)*q < 0x20 || *q == 0x7f) {
			lmtp_reply_error(s, "501 5.1.7 Bad sender address");
			return;
		}
	snprintf(s->from, sizeof(s->from), "%s", c->address);
	s->has_from = true;
	lmtp_reply(s, "250 2.1.0 Ok");
}

static void cmd_rcpt(struct lmtp_session *s, const struct lmtp_command *c)
{
	if (!s->has_from) {
		lmtp_reply_error(s, "503 5.5.1 Send MAIL first");
		return;
	}
	if (s->nrcpts >= config_uint(s->base.env->config, "lmtp_max_recipients")) {
		lmtp_reply(s, "452 4.5.3 Too many recipients");
		return;
	}
	for (unsigned i = 0; i < c->nparams; i++)
		if (strcmp(c->params[i].name, "NOTIFY") != 0 &&
		    strcmp(c->params[i].name, "ORCPT") != 0) {
			lmtp_reply_error(s, "555 5.5.4 Unsupported RCPT parameter");
			return;
		}
	if (c->address[0] == '\0') {
		lmtp_reply(s, "501 5.1.3 Empty recipient");
		return;
	}
	lmtp_rcpt_lookup(s, c->address);
}

static void cmd_data(struct lmtp_session *s, const struct lmtp_command *c)
{
	(void)c;
	if (!s->has_from) {
		lmtp_reply_error(s, "503 5.5.1 Send MAIL first");
		return;
	}
	if (s->nrcpts == 0) {
		lmtp_reply_error(s, "503 5.5.1 No valid recipients");
		return;
	}
	if (s->stage != NULL) {
		lmtp_reply_error(s, "503 5.5.1 BDAT in progress");
		return;
	}
	if (lmtp_txn_start_message(s) < 0)
		return;
	memset(&s->dot, 0, sizeof(s->dot));
	s->mode = LMTP_MODE_DATA;
	lmtp_reply(s, "354 Start mail input; end with <CRLF>.<CRLF>");
}

/* The chunk itself is read by lmtp_session.c in LMTP_MODE_BDAT. */
static void cmd_bdat(struct lmtp_session *s, const struct lmtp_command *c)
{
	if (!s->has_from || s->nrcpts == 0) {
		/* RFC 3030 2: the chunk must still be read and dropped. */
		s->bdat_left = c->chunk_size;
		s->bdat_last = false;
		s->mode = LMTP_MODE_BDAT;
		s->stage_failed = true;
		snprintf(s->stage_err.text, sizeof(s->stage_err.text), "%s",
			 !s->has_from ? "503 5.5.1 Send MAIL first"
				      : "503 5.5.1 No valid recipients");
		return;
	}
	if (s->stage == NULL && lmtp_txn_start_message(s) < 0)
		return;
	s->bdat_left = c->chunk_size;
	s->bdat_last = c->last;
	s->mode = LMTP_MODE_BDAT;
}

static void cmd_rset(struct lmtp_session *s, const struct lmtp_command *c)
{
	(void)c;
	lmtp_txn_reset(s);
	lmtp_reply(s, "250 2.0.0 Ok");
}

static void cmd_quit(struct lmtp_session *s, const struct lmtp_command *c)
{
	(void)c;
	lmtp_reply(s, "221 2.0.0 Bye");
	session_close(&s->base);
}

static void cmd_starttls(struct lmtp_session *s, const struct lmtp_command *c)
{
	(void)c;
	lmtp_reply_error(s, "502 5.5.1 STARTTLS is not offered on LMTP");
}

#define ANY (1u << LMTP_STATE)

static const struct lmtp_cmd_row commands[] = {
	{{"LHLO", ANY}, cmd_lhlo, NULL},       /* RFC 2033 4.1 */
	{{"MAIL", ANY}, cmd_mail, NULL},       /* RFC 5321 4.1.1.2 */
	{{"RCPT", ANY}, cmd_rcpt, NULL},       /* RFC 5321 4.1.1.3 */
	{{"DATA", ANY}, cmd_data, NULL},       /* RFC 2033 4.2 */
	{{"BDAT", ANY}, cmd_bdat, NULL},       /* RFC 3030 2 */
	{{"RSET", ANY}, cmd_rset, NULL},       /* RFC 5321 4.1.1.5 */
	{{"NOOP", ANY}, NULL, "250 2.0.0 Ok"}, /* RFC 5321 4.1.1.9 */
	{{"QUIT", ANY}, cmd_quit, NULL},       /* RFC 5321 4.1.1.10 */
	/* RFC 5321 3.5.3 */
	{{"VRFY", ANY}, NULL, "252 2.5.2 Cannot verify, but will try delivery"},
	{{"HELP", ANY}, NULL, "214 2.0.0 See RFC 2033"}, /* RFC 5321 4.1.1.8 */
	{{"STARTTLS", ANY}, cmd_starttls, NULL},	 /* RFC 3207: not offered */
};

void lmtp_cmd_line(struct lmtp_session *s, const char *line, size_t len)
{
	struct lmtp_command *c = malloc(sizeof(*c));
	const struct session_cmd *row;
	struct error why;
	char verb[16];
	if (c == NULL) {
		lmtp_reply(s, "421 4.3.0 Out of memory");
		session_close(&s->base);
		return;
	}
	if (lmtp_parse_command(line, len, c, &why) < 0) {
		lmtp_reply_error(s, why.text);
		goto done;
	}
	/* The parser knows the verb: it is the line's first word. */
	size_t vlen = strcspn(line, " ");
	snprintf(verb, sizeof(verb), "%.*s", (int)vlen, line);
	if (session_cmd_find(commands, sizeof(commands) / sizeof(commands[0]), sizeof(commands[0]),
			     verb, LMTP_STATE, &row) != SESSION_CMD_OK) {
		lmtp_reply_error(s, "500 5.5.2 Command not recognized");
		goto done;
	}
	const struct lmtp_cmd_row *r = (const struct lmtp_cmd_row *)(const void *)row;
	if (r->run != NULL)
		r->run(s, c);
	else
		lmtp_reply(s, "%s", r->reply);
done:
	free(c);
}
