/*
 * imap_cmd_auth.c: logging in: STARTTLS, LOGIN and AUTHENTICATE (SASL
 * PLAIN and LOGIN, RFC 9051 6.2).
 *
 * Passwords never stay in this process longer than the request to the auth
 * process: both commands end in session_login (src/session), which verifies
 * with the auth process, answers only after its failure delay, and opens
 * the user's store; login_done turns its typed result into the tagged
 * reply. Plaintext logins on an unencrypted connection from another host
 * are refused unless plaintext_auth = yes (RFC 9051 6.2.3: LOGINDISABLED).
 */
#include "imap/imap_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/log.h"
#include "session/conn.h"

static int cmd_starttls(struct imap_session *s, const struct imap_command *cmd)
{
	if (conn_is_tls(s->base.conn)) {
		imap_send_tagged(s, cmd, "BAD", "TLS is already active");
		return 0;
	}
	if (s->base.env->tls == NULL) {
		imap_send_tagged(s, cmd, "NO", "TLS is not available");
		return 0;
	}
	imap_send_tagged(s, cmd, "OK", "Begin TLS negotiation now");
	/* Drops whatever the client pipelined after STARTTLS (CVE-2011-0411). */
	if (conn_starttls(s->base.conn, s->base.env->tls) < 0) {
		s->base.closing = true;
		return 0;
	}
	imap_parser_reset(s->parser);
	return 0;
}

static void login_done(struct session *base, enum session_login_result r, const char *user,
		       struct store_user *suser)
{
	struct imap_session *s = imap_session_of(base);
	switch (r) {
	case SESSION_LOGIN_OK:
		break;
	case SESSION_LOGIN_FAILED:
		imap_send_tagged(s, NULL, "NO", "[AUTHENTICATIONFAILED] Authentication failed");
		return;
	case SESSION_LOGIN_RATE_LIMITED:
		imap_send_tagged(s, NULL, "NO",
				 "[AUTHENTICATIONFAILED] Too many failures; try again later");
		return;
	case SESSION_LOGIN_AUTH_UNAVAILABLE:
		imap_send_tagged(s, NULL, "NO", "[UNAVAILABLE] Authentication service unavailable");
		return;
	case SESSION_LOGIN_STORE_UNAVAILABLE:
		imap_send_tagged(s, NULL, "NO", "[UNAVAILABLE] Mail store unavailable");
		return;
	case SESSION_LOGIN_TOO_MANY:
		/* RFC 5530 3: LIMIT, an implementation limit was hit; as
		 * Dovecot for mail_max_userip_connections. Not
		 * AUTHENTICATIONFAILED: the password was right. */
		imap_send_tagged(s, NULL, "NO",
				 "[LIMIT] Too many connections from this user and IP address");
		return;
	}
	s->user = strdup(user);
	if (s->user == NULL) {
		store_user_close(&suser);
		imap_send_tagged(s, NULL, "NO", "[SERVERBUG] Out of memory");
		return;
	}
	s->suser = suser;
	s->state = IMAP_AUTH;
	log_info("imap %s login user=%s ip=%s", s->base.id, user, conn_peer_ip(s->base.conn));
	/* The tagged OK carries the post-login capabilities (RFC 9051 6.2.3). */
	imap_send(s, "%s OK [", s->cmd_tag);
	imap_capability_send(s);
	imap_send(s, "] Logged in\r\n");
	imap_send_good(s);
}

static int cmd_login(struct imap_session *s, const struct imap_command *cmd)
{
	const char *user, *pass;
	size_t ulen, plen;
	if (cmd->argc != 2 || !imap_parser_arg_astring(&cmd->args[0], &user, &ulen) ||
	    !imap_parser_arg_astring(&cmd->args[1], &pass, &plen)) {
		imap_send_tagged(s, cmd, "BAD", "Usage: LOGIN user password");
		return 0;
	}
	if (!imap_capability_plaintext_ok(s)) {
		imap_send_tagged(s, cmd, "NO", "[PRIVACYREQUIRED] Use STARTTLS first");
		return 0;
	}
	if (memchr(user, '\0', ulen) != NULL || memchr(pass, '\0', plen) != NULL) {
		imap_send_tagged(s, cmd, "NO", "[AUTHENTICATIONFAILED] Authentication failed");
		return 0;
	}
	session_login(&s->base, user, pass, login_done);
	return 0;
}

static void sasl_result(struct imap_session *s, enum sasl_result r, const char *challenge,
			const struct error *why)
{
	switch (r) {
	case SASL_CONTINUE:
		s->authenticating = true;
		imap_send(s, "+ %s\r\n", challenge);
		return;
	case SASL_DONE:
		s->authenticating = false;
		session_login(&s->base, s->sasl.user, s->sasl.pass, login_done);
		sasl_clear(&s->sasl);
		return;
	case SASL_CANCEL:
		s->authenticating = false;
		sasl_clear(&s->sasl);
		imap_send_tagged(s, NULL, "BAD", "Authentication cancelled");
		break;
	case SASL_FAIL:
		s->authenticating = false;
		sasl_clear(&s->sasl);
		imap_send_tagged(s, NULL, "NO", "[AUTHENTICATIONFAILED] %s", why->text);
		break;
	}
	free(s->cmd_tag);
	s->cmd_tag = NULL;
}

static int cmd_authenticate(struct imap_session *s, const struct imap_command *cmd)
{
	const char *mech;
	size_t len;
	const char *ir = NULL, *challenge = "";
	struct error why = {ERR_INVALID, "failed"};
	if (cmd->argc < 1 || cmd->argc > 2 || cmd->args[0].type != IMAP_ARG_ATOM) {
		imap_send_tagged(s, cmd, "BAD", "Usage: AUTHENTICATE mechanism [initial-response]");
		return 0;
	}
	mech = cmd->args[0].str;
	if (cmd->argc == 2) {
		if (!imap_parser_arg_astring(&cmd->args[1], &ir, &len)) {
			imap_send_tagged(s, cmd, "BAD", "Invalid initial response");
			return 0;
		}
	}
	if (strcasecmp(mech, "PLAIN") != 0 && strcasecmp(mech, "LOGIN") != 0) {
		imap_send_tagged(s, cmd, "NO", "[CANNOT] Unsupported authentication mechanism");
		return 0;
	}
	if (!imap_capability_plaintext_ok(s)) {
		imap_send_tagged(s, cmd, "NO", "[PRIVACYREQUIRED] Use STARTTLS first");
		return 0;
	}
	enum sasl_result r = sasl_start(&s->sasl, mech, ir, &challenge, &why);
	sasl_result(s, r, challenge, &why);
	return 0;
}

void imap_cmd_auth_line(struct imap_session *s, const char *line, size_t len)
{
	const char *challenge = "";
	struct error why = {ERR_INVALID, "failed"};
	enum sasl_result r = sasl_step(&s->sasl, line, len, &challenge, &why);
	sasl_result(s, r, challenge, &why);
}

static const struct imap_cmd_def rows[] = {
	{ { "STARTTLS", IMAP_IN_NOT_AUTH }, cmd_starttls, 0 },
	{ { "LOGIN", IMAP_IN_NOT_AUTH }, cmd_login, 0 },
	{ { "AUTHENTICATE", IMAP_IN_NOT_AUTH }, cmd_authenticate, 0 },
};
const struct imap_cmd_family imap_cmd_auth = { rows, sizeof(rows) / sizeof(rows[0]) };
