/*
 * pop3_cmd.c: the POP3 commands: one function and one table row each.
 *
 * The dispatcher (pop3_session.c, through session_cmd_find) runs a handler
 * only in the states its row allows, so handlers check arguments, not
 * states. Handlers answer with pop3_resp.c; what outlasts the call (login,
 * UPDATE, multi-line responses) is started in pop3_maildrop.c and
 * pop3_transfer.c, and the session core keeps the input paused until it
 * ends.
 *
 * Argument errors (missing, extra, not a number, a number above 2^32-1) are
 * protocol errors (pop3_resp_error: counted); a well-formed request that
 * cannot be met (no such message, already deleted) is a plain -ERR.
 *
 * Not offered: APOP (RFC 1939 7; it needs the plaintext password on the
 * server) and LOGIN-DELAY (RFC 2449 6.5). Messages are not flagged \Seen by
 * RETR: POP3 leaves the IMAP state of a message alone.
 */
#include "pop3/pop3_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/config.h"
#include "session/conn.h"

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

#define AUTHZ (1u << POP3_AUTHORIZATION)
#define TRANS (1u << POP3_TRANSACTION)
#define ANY   (AUTHZ | TRANS)

/* clang-format off */
const struct pop3_cmd pop3_cmd_table[] = {
	{ { "CAPA", ANY },   cmd_capa }, /* RFC 2449 5 */
	{ { "QUIT", ANY },   cmd_quit }, /* RFC 1939 4, 6 */
	{ { "STLS", AUTHZ }, cmd_stls }, /* RFC 2595 4 */
	{ { "USER", AUTHZ }, cmd_user }, /* RFC 1939 7 */
	{ { "PASS", AUTHZ }, cmd_pass }, /* RFC 1939 7 */
	{ { "AUTH", AUTHZ }, cmd_auth }, /* RFC 5034 4 */
	{ { "STAT", TRANS }, cmd_stat }, /* RFC 1939 5 */
	{ { "LIST", TRANS }, cmd_list },
	{ { "RETR", TRANS }, cmd_retr },
	{ { "DELE", TRANS }, cmd_dele },
	{ { "NOOP", TRANS }, cmd_noop },
	{ { "RSET", TRANS }, cmd_rset },
	{ { "TOP",  TRANS }, cmd_top },  /* RFC 1939 7 */
	{ { "UIDL", TRANS }, cmd_uidl }, /* RFC 1939 7 */
};
/* clang-format on */
const size_t pop3_cmd_count = sizeof(pop3_cmd_table) / sizeof(pop3_cmd_table[0]);

/* ---- arguments --------------------------------------------------------------- */

/* Split args into exactly between min and max words; -1 (answered) if not. */
static int words(struct pop3_session *s, char *args, char **w, int min, int max, const char *usage)
{
	int n = pop3_parser_split(args, w, max);
	if (n < min || n < 0) {
		pop3_resp_error(s, "Usage: %s", usage);
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
		pop3_resp_error(s, "Invalid message number");
		return -1;
	}
	if (n == 0 || n > s->nmsgs) {
		pop3_resp_send(s, "-ERR No such message");
		return -1;
	}
	if (s->msgs[n - 1].deleted) {
		pop3_resp_send(s, "-ERR Message %u already deleted", (unsigned)n);
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

/* May passwords travel on this connection (TLS, loopback, or configured)? */
static bool plaintext_ok(const struct pop3_session *s)
{
	return conn_is_tls(s->base.conn) || conn_is_local(s->base.conn) ||
	       config_bool(s->base.env->config, "plaintext_auth");
}

/* ---- any state ------------------------------------------------------------------ */

static void cmd_capa(struct pop3_session *s, char *args)
{
	char *w[1];
	if (words(s, args, w, 0, 0, "CAPA") < 0)
		return;
	/* RFC 2449 5: what is available in AUTHORIZATION is announced in both
	 * states; the list does not depend on the state. */
	pop3_resp_send(s, "+OK Capability list follows");
	pop3_resp_send(s, "TOP");
	pop3_resp_send(s, "UIDL");
	if (plaintext_ok(s)) {
		pop3_resp_send(s, "USER");
		pop3_resp_send(s, "SASL %s", sasl_mechanisms());
	}
	pop3_resp_send(s, "RESP-CODES");
	pop3_resp_send(s, "AUTH-RESP-CODE");
	pop3_resp_send(s, "PIPELINING");
	if (s->base.env->tls != NULL && !conn_is_tls(s->base.conn))
		pop3_resp_send(s, "STLS");
	pop3_resp_send(s, "EXPIRE NEVER");
	pop3_resp_send(s, "IMPLEMENTATION mailroom");
	pop3_resp_send(s, ".");
}

static void cmd_quit(struct pop3_session *s, char *args)
{
	char *w[1];
	if (words(s, args, w, 0, 0, "QUIT") < 0)
		return;
	if (s->state == POP3_TRANSACTION) {
		pop3_maildrop_update(s); /* RFC 1939 6 */
		return;
	}
	pop3_resp_send(s, "+OK Logging out"); /* RFC 1939 4: no UPDATE state */
	session_close(&s->base);
}

/* ---- AUTHORIZATION -------------------------------------------------------------- */

static void cmd_stls(struct pop3_session *s, char *args)
{
	char *w[1];
	if (words(s, args, w, 0, 0, "STLS") < 0)
		return;
	if (conn_is_tls(s->base.conn)) {
		pop3_resp_error(s, "TLS is already active");
		return;
	}
	if (s->base.env->tls == NULL) {
		pop3_resp_send(s, "-ERR TLS is not available");
		return;
	}
	pop3_resp_send(s, "+OK Begin TLS negotiation now");
	/* RFC 2595 4: forget what the client said in plaintext. */
	free(s->user_arg);
	s->user_arg = NULL;
	/* Drops whatever the client pipelined after STLS (CVE-2011-0411);
	 * the parser starts afresh after every line anyway. */
	if (conn_starttls(s->base.conn, s->base.env->tls) < 0)
		session_close(&s->base);
}

static bool plaintext_refused(struct pop3_session *s)
{
	if (plaintext_ok(s))
		return false;
	/* RFC 2595 2.1 ("LOGINDISABLED" in IMAP terms): no password over an
	 * unencrypted connection from another host. */
	pop3_resp_send(s,
		       "-ERR [AUTH] Plaintext authentication is not allowed without TLS; use STLS");
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
		pop3_resp_send(s, "-ERR [SYS/TEMP] Out of memory");
		return;
	}
	/* Whether the user exists is not revealed before PASS. */
	pop3_resp_send(s, "+OK Send your password");
}

static void cmd_pass(struct pop3_session *s, char *args)
{
	/* RFC 1939 7: the argument is the rest of the line; a password may
	 * hold spaces. */
	if (args == NULL || *args == '\0') {
		pop3_resp_error(s, "Usage: PASS password");
		return;
	}
	if (s->user_arg == NULL) {
		pop3_resp_error(s, "USER first");
		return;
	}
	if (plaintext_refused(s))
		return;
	char *user = s->user_arg;
	s->user_arg = NULL; /* a failed PASS starts over with USER */
	pop3_maildrop_login(s, user, args);
	free(user);
}

static void sasl_result(struct pop3_session *s, enum sasl_result r, const char *challenge,
			const struct error *why)
{
	switch (r) {
	case SASL_CONTINUE:
		/* RFC 5034 4: "+" SP base64 challenge. */
		s->authenticating = true;
		pop3_resp_send(s, "+ %s", challenge);
		return;
	case SASL_DONE:
		s->authenticating = false;
		pop3_maildrop_login(s, s->sasl.user, s->sasl.pass);
		sasl_clear(&s->sasl);
		return;
	case SASL_CANCEL:
		/* RFC 5034 4: "*" cancels; the server answers -ERR. */
		s->authenticating = false;
		sasl_clear(&s->sasl);
		pop3_resp_send(s, "-ERR Authentication cancelled");
		return;
	case SASL_FAIL:
		s->authenticating = false;
		sasl_clear(&s->sasl);
		pop3_resp_send(s, "-ERR [AUTH] Authentication failed: %s", why->text);
		return;
	}
}

static void cmd_auth(struct pop3_session *s, char *args)
{
	char *w[2];
	const char *challenge = "";
	struct error why = {ERR_INVALID, "failed"};
	int n = words(s, args, w, 0, 2, "AUTH [mechanism [initial-response]]");
	if (n < 0)
		return;
	if (n == 0) {
		/* Not in RFC 5034, but clients (Outlook among them) send a bare
		 * AUTH to learn the mechanisms: the list, as a multi-line
		 * response. Empty when passwords may not travel here. */
		pop3_resp_send(s, "+OK Mechanisms follow");
		if (plaintext_ok(s)) {
			pop3_resp_send(s, "PLAIN");
			pop3_resp_send(s, "LOGIN");
		}
		pop3_resp_send(s, ".");
		return;
	}
	if (strcasecmp(w[0], "PLAIN") != 0 && strcasecmp(w[0], "LOGIN") != 0) {
		pop3_resp_send(s, "-ERR [AUTH] Unsupported authentication mechanism");
		return;
	}
	if (plaintext_refused(s))
		return;
	free(s->user_arg);
	s->user_arg = NULL;
	/* RFC 5034 4: an initial response "=" is an empty one (sasl_start
	 * knows). */
	enum sasl_result r = sasl_start(&s->sasl, w[0], n == 2 ? w[1] : NULL, &challenge, &why);
	sasl_result(s, r, challenge, &why);
}

void pop3_cmd_auth_line(struct pop3_session *s, const char *line, size_t len)
{
	const char *challenge = "";
	struct error why = {ERR_INVALID, "failed"};
	enum sasl_result r = sasl_step(&s->sasl, line, len, &challenge, &why);
	sasl_result(s, r, challenge, &why);
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
	pop3_resp_send(s, "+OK %zu %llu", n, (unsigned long long)size);
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
			pop3_resp_send(s, "+OK %zu %llu", i + 1,
				       (unsigned long long)s->msgs[i].size);
		return;
	}
	maildrop_totals(s, &n, &size);
	pop3_resp_send(s, "+OK %zu messages (%llu octets)", n, (unsigned long long)size);
	pop3_transfer_list(s);
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
			char uidl[POP3_UIDL_SIZE];
			pop3_resp_uidl(s, &s->msgs[i], uidl);
			pop3_resp_send(s, "+OK %zu %s", i + 1, uidl);
		}
		return;
	}
	pop3_resp_send(s, "+OK Unique-ID listing follows");
	pop3_transfer_uidl(s);
}

/* Open message i and stream it (RETR, or TOP with body_lines). */
static void send_message(struct pop3_session *s, size_t i, bool top, uint64_t body_lines)
{
	int fd;
	uint64_t size;
	struct error err;
	if (store_message_open(s->mbox, s->msgs[i].uid, &fd, &size, &err) < 0) {
		if (err.code == ERR_NOTFOUND)
			pop3_resp_send(s, "-ERR Message %zu was removed by another session", i + 1);
		else
			pop3_resp_store_error(s, "Cannot read the message", &err);
		return;
	}
	if (top) {
		s->n_top++;
		pop3_resp_send(s, "+OK Top of message follows");
	} else {
		s->n_retr++;
		pop3_resp_send(s, "+OK %llu octets", (unsigned long long)s->msgs[i].size);
	}
	pop3_transfer_message(s, fd, top, body_lines);
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
		pop3_resp_error(s, "Invalid number of lines");
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
	pop3_resp_send(s, "+OK Message %zu deleted", i + 1);
}

static void cmd_noop(struct pop3_session *s, char *args)
{
	char *w[1];
	if (words(s, args, w, 0, 0, "NOOP") < 0)
		return;
	pop3_resp_send(s, "+OK");
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
	pop3_resp_send(s, "+OK Maildrop has %zu messages (%llu octets)", n,
		       (unsigned long long)size);
}
