/*
 * pop3_cmd.c: the POP3 commands: one function and one table row each.
 *
 * The dispatcher (pop3_session.c) runs a handler only in the states its
 * row allows, so handlers check arguments, not states. Argument errors
 * (missing, extra, not a number, a number above 2^32-1) are protocol errors
 * (pop3_error: counted); a well-formed request that cannot be met (no such
 * message, already deleted) is a plain -ERR.
 *
 * Not offered: APOP (RFC 1939 7; it needs the plaintext password on the
 * server) and LOGIN-DELAY (RFC 2449 6.5). Messages are not flagged \Seen by
 * RETR: POP3 leaves the IMAP state of a message alone.
 */
#include "pop3/pop3_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "session/conn.h"
#include "lib/log.h"

static void cmd_capa(struct pop3_session *s, char *args);
static void cmd_quit(struct pop3_session *s, char *args);
static void cmd_stls(struct pop3_session *s, char *args);
static void cmd_user(struct pop3_session *s, char *args);
static void cmd_pass(struct pop3_session *s, char *args);
static void cmd_auth(struct pop3_session *s, char *args);
static void cmd_stat(struct pop3_session *s, char *args);
static void cmd_list(struct pop3_session *s, char *args);
static void cmd_retr(struct pop3_session *s, char *args);
static void cmd_top(struct pop3_session *s, char *args);
static void cmd_dele(struct pop3_session *s, char *args);
static void cmd_noop(struct pop3_session *s, char *args);
static void cmd_rset(struct pop3_session *s, char *args);
static void cmd_uidl(struct pop3_session *s, char *args);

#define ANY (POP3_CMD_AUTHORIZATION | POP3_CMD_TRANSACTION)
#define AUTHZ POP3_CMD_AUTHORIZATION
#define TRANS POP3_CMD_TRANSACTION

static const struct pop3_cmd_def commands[] = {
	{ "CAPA", cmd_capa, ANY },   /* RFC 2449 5 */
	{ "QUIT", cmd_quit, ANY },   /* RFC 1939 4, 6 */
	{ "STLS", cmd_stls, AUTHZ }, /* RFC 2595 4 */
	{ "USER", cmd_user, AUTHZ }, /* RFC 1939 7 */
	{ "PASS", cmd_pass, AUTHZ }, /* RFC 1939 7 */
	{ "AUTH", cmd_auth, AUTHZ }, /* RFC 5034 4 */
	{ "STAT", cmd_stat, TRANS }, /* RFC 1939 5 */
	{ "LIST", cmd_list, TRANS },
	{ "RETR", cmd_retr, TRANS },
	{ "DELE", cmd_dele, TRANS },
	{ "NOOP", cmd_noop, TRANS },
	{ "RSET", cmd_rset, TRANS },
	{ "TOP", cmd_top, TRANS },   /* RFC 1939 7 */
	{ "UIDL", cmd_uidl, TRANS }, /* RFC 1939 7 */
};

const struct pop3_cmd_def *pop3_cmd_find(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

/* ---- arguments --------------------------------------------------------------- */

/* Split args into exactly between min and max words; -1 (answered) if not. */
static int words(struct pop3_session *s, char *args, char **w, int min, int max, const char *usage)
{
	int n = pop3_parser_split(args, w, max);
	if (n < min || n < 0) {
		pop3_error(s, "Usage: %s", usage);
		return -1;
	}
	return n;
}

/* A message number naming a message that is not deleted: its index in
 * *i_r. -1 (answered) if not. */
static int msg_arg(struct pop3_session *s, const char *word, size_t *i_r)
{
	uint32_t n;
	if (pop3_parser_number(word, UINT32_MAX, &n) < 0) {
		pop3_error(s, "Invalid message number");
		return -1;
	}
	if (n == 0 || n > s->nmsgs) {
		pop3_send(s, "-ERR No such message");
		return -1;
	}
	if (s->msgs[n - 1].deleted) {
		pop3_send(s, "-ERR Message %u already deleted", (unsigned)n);
		return -1;
	}
	*i_r = n - 1;
	return 0;
}

static void maildrop_totals(const struct pop3_session *s, size_t *count_r, uint64_t *size_r)
{
	size_t n = 0;
	uint64_t size = 0;
	for (size_t i = 0; i < s->nmsgs; i++)
		if (!s->msgs[i].deleted) {
			n++;
			size += s->msgs[i].size;
		}
	*count_r = n;
	*size_r = size;
}

/* ---- any state ------------------------------------------------------------------ */

static void cmd_capa(struct pop3_session *s, char *args)
{
	char *w[1];
	if (words(s, args, w, 0, 0, "CAPA") < 0)
		return;
	/* RFC 2449 5: what is available in AUTHORIZATION is announced in both
	 * states; the list does not depend on the state. */
	pop3_send(s, "+OK Capability list follows");
	pop3_send(s, "TOP");
	pop3_send(s, "UIDL");
	if (pop3_plaintext_ok(s)) {
		pop3_send(s, "USER");
		pop3_send(s, "SASL %s", sasl_mechanisms());
	}
	pop3_send(s, "RESP-CODES");
	pop3_send(s, "AUTH-RESP-CODE");
	pop3_send(s, "PIPELINING");
	if (s->env->tls != NULL && !conn_is_tls(s->conn))
		pop3_send(s, "STLS");
	pop3_send(s, "EXPIRE NEVER");
	pop3_send(s, "IMPLEMENTATION mailroom");
	pop3_send(s, ".");
}

static void cmd_quit(struct pop3_session *s, char *args)
{
	char *w[1];
	if (words(s, args, w, 0, 0, "QUIT") < 0)
		return;
	if (s->state == POP3_TRANSACTION) {
		pop3_session_update(s); /* RFC 1939 6 */
		return;
	}
	pop3_send(s, "+OK Logging out"); /* RFC 1939 4: no UPDATE state */
	s->closing = true;
}

/* ---- AUTHORIZATION -------------------------------------------------------------- */

static void cmd_stls(struct pop3_session *s, char *args)
{
	char *w[1];
	if (words(s, args, w, 0, 0, "STLS") < 0)
		return;
	if (conn_is_tls(s->conn)) {
		pop3_error(s, "TLS is already active");
		return;
	}
	if (s->env->tls == NULL) {
		pop3_send(s, "-ERR TLS is not available");
		return;
	}
	pop3_session_starttls(s);
}

static bool plaintext_refused(struct pop3_session *s)
{
	if (pop3_plaintext_ok(s))
		return false;
	/* RFC 2595 2.1 ("LOGINDISABLED" in IMAP terms): no password over an
	 * unencrypted connection from another host. */
	pop3_send(s, "-ERR [AUTH] Plaintext authentication is not allowed without TLS; use STLS");
	return true;
}

static void cmd_user(struct pop3_session *s, char *args)
{
	char *w[1];
	if (words(s, args, w, 1, 1, "USER name") < 0)
		return;
	if (plaintext_refused(s))
		return;
	free(s->user_arg);
	s->user_arg = strdup(w[0]);
	if (s->user_arg == NULL) {
		pop3_send(s, "-ERR [SYS/TEMP] Out of memory");
		return;
	}
	/* Whether the user exists is not revealed before PASS. */
	pop3_send(s, "+OK Send your password");
}

static void cmd_pass(struct pop3_session *s, char *args)
{
	/* RFC 1939 7: the argument is the rest of the line; a password may
	 * hold spaces. */
	if (args == NULL || *args == '\0') {
		pop3_error(s, "Usage: PASS password");
		return;
	}
	if (s->user_arg == NULL) {
		pop3_error(s, "USER first");
		return;
	}
	if (plaintext_refused(s))
		return;
	char *user = s->user_arg;
	s->user_arg = NULL; /* a failed PASS starts over with USER */
	pop3_session_login(s, user, args);
	free(user);
}

static void sasl_result(struct pop3_session *s, enum sasl_result r, const char *challenge,
			const char *why)
{
	switch (r) {
	case SASL_CONTINUE:
		/* RFC 5034 4: "+" SP base64 challenge. */
		s->authenticating = true;
		pop3_send(s, "+ %s", challenge);
		return;
	case SASL_DONE:
		s->authenticating = false;
		pop3_session_login(s, s->sasl.user, s->sasl.pass);
		sasl_clear(&s->sasl);
		return;
	case SASL_CANCEL:
		/* RFC 5034 4: "*" cancels; the server answers -ERR. */
		s->authenticating = false;
		sasl_clear(&s->sasl);
		pop3_send(s, "-ERR Authentication cancelled");
		return;
	case SASL_FAIL:
		s->authenticating = false;
		sasl_clear(&s->sasl);
		pop3_send(s, "-ERR [AUTH] Authentication failed: %s", why);
		return;
	}
}

static void cmd_auth(struct pop3_session *s, char *args)
{
	char *w[2];
	const char *challenge = "", *why = "failed";
	int n = words(s, args, w, 0, 2, "AUTH [mechanism [initial-response]]");
	if (n < 0)
		return;
	if (n == 0) {
		/* Not in RFC 5034, but clients (Outlook among them) send a bare
		 * AUTH to learn the mechanisms: the list, as a multi-line
		 * response. Empty when passwords may not travel here. */
		pop3_send(s, "+OK Mechanisms follow");
		if (pop3_plaintext_ok(s)) {
			pop3_send(s, "PLAIN");
			pop3_send(s, "LOGIN");
		}
		pop3_send(s, ".");
		return;
	}
	if (strcasecmp(w[0], "PLAIN") != 0 && strcasecmp(w[0], "LOGIN") != 0) {
		pop3_send(s, "-ERR [AUTH] Unsupported authentication mechanism");
		return;
	}
	if (plaintext_refused(s))
		return;
	free(s->user_arg);
	s->user_arg = NULL;
	/* RFC 5034 4: an initial response "=" is an empty one (sasl_start
	 * knows). */
	enum sasl_result r = sasl_start(&s->sasl, w[0], n == 2 ? w[1] : NULL, &challenge, &why);
	sasl_result(s, r, challenge, why);
}

void pop3_cmd_auth_line(struct pop3_session *s, const char *line, size_t len)
{
	const char *challenge = "", *why = "failed";
	enum sasl_result r = sasl_step(&s->sasl, line, len, &challenge, &why);
	sasl_result(s, r, challenge, why);
}

/* ---- TRANSACTION ------------------------------------------------------------------ */

static void cmd_stat(struct pop3_session *s, char *args)
{
	char *w[1];
	size_t n;
	uint64_t size;
	if (words(s, args, w, 0, 0, "STAT") < 0)
		return;
	maildrop_totals(s, &n, &size);
	/* RFC 1939 5: exactly "+OK nn mm". */
	pop3_send(s, "+OK %zu %llu", n, (unsigned long long)size);
}

static void cmd_list(struct pop3_session *s, char *args)
{
	char *w[1];
	size_t i, n;
	uint64_t size;
	int argc = words(s, args, w, 0, 1, "LIST [message]");
	if (argc < 0)
		return;
	if (argc == 1) {
		if (msg_arg(s, w[0], &i) == 0)
			pop3_send(s, "+OK %zu %llu", i + 1, (unsigned long long)s->msgs[i].size);
		return;
	}
	maildrop_totals(s, &n, &size);
	pop3_send(s, "+OK %zu messages (%llu octets)", n, (unsigned long long)size);
	pop3_session_list(s, POP3_OUT_LIST);
}

static void cmd_uidl(struct pop3_session *s, char *args)
{
	char *w[1];
	size_t i;
	int argc = words(s, args, w, 0, 1, "UIDL [message]");
	if (argc < 0)
		return;
	if (argc == 1) {
		if (msg_arg(s, w[0], &i) == 0) {
			char uidl[17];
			pop3_uidl(s, &s->msgs[i], uidl);
			pop3_send(s, "+OK %zu %s", i + 1, uidl);
		}
		return;
	}
	pop3_send(s, "+OK Unique-ID listing follows");
	pop3_session_list(s, POP3_OUT_UIDL);
}

/* Open message i and stream it (RETR, or TOP with body_lines). */
static void send_message(struct pop3_session *s, size_t i, bool top, uint64_t body_lines)
{
	int fd;
	uint64_t size;
	struct store_error err;
	if (store_message_open(s->mbox, s->msgs[i].uid, &fd, &size, &err) < 0) {
		if (err.code == STORE_ERR_NOTFOUND)
			pop3_send(s, "-ERR Message %zu was removed by another session", i + 1);
		else
			pop3_store_error(s, "Cannot read the message", &err);
		return;
	}
	if (top) {
		s->n_top++;
		pop3_send(s, "+OK Top of message follows");
	} else {
		s->n_retr++;
		pop3_send(s, "+OK %llu octets", (unsigned long long)s->msgs[i].size);
	}
	pop3_session_message(s, fd, top, body_lines);
}

static void cmd_retr(struct pop3_session *s, char *args)
{
	char *w[1];
	size_t i;
	if (words(s, args, w, 1, 1, "RETR message") < 0 || msg_arg(s, w[0], &i) < 0)
		return;
	send_message(s, i, false, 0);
}

static void cmd_top(struct pop3_session *s, char *args)
{
	char *w[2];
	size_t i;
	uint32_t lines;
	if (words(s, args, w, 2, 2, "TOP message lines") < 0)
		return;
	/* Check both arguments before looking the message up. */
	if (pop3_parser_number(w[1], UINT32_MAX, &lines) < 0) {
		pop3_error(s, "Invalid number of lines");
		return;
	}
	if (msg_arg(s, w[0], &i) < 0)
		return;
	send_message(s, i, true, lines);
}

static void cmd_dele(struct pop3_session *s, char *args)
{
	char *w[1];
	size_t i;
	if (words(s, args, w, 1, 1, "DELE message") < 0 || msg_arg(s, w[0], &i) < 0)
		return;
	/* RFC 1939 5: only marked; removed in the UPDATE state. */
	s->msgs[i].deleted = true;
	s->n_dele++;
	pop3_send(s, "+OK Message %zu deleted", i + 1);
}

static void cmd_noop(struct pop3_session *s, char *args)
{
	char *w[1];
	if (words(s, args, w, 0, 0, "NOOP") < 0)
		return;
	pop3_send(s, "+OK");
}

static void cmd_rset(struct pop3_session *s, char *args)
{
	char *w[1];
	size_t n;
	uint64_t size;
	if (words(s, args, w, 0, 0, "RSET") < 0)
		return;
	for (size_t i = 0; i < s->nmsgs; i++)
		s->msgs[i].deleted = false;
	s->n_dele = 0;
	maildrop_totals(s, &n, &size);
	pop3_send(s, "+OK Maildrop has %zu messages (%llu octets)", n, (unsigned long long)size);
}
