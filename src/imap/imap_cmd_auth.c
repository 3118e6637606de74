/*
 * imap_cmd_auth.c: the commands around logging in and the session itself:
 * NOOP, LOGOUT, STARTTLS, LOGIN, AUTHENTICATE, ENABLE, ID.
 *
 * Passwords never stay in this process longer than the request to the auth
 * process (auth_client.h); a failed login is answered only when the auth
 * process answers, after its failure delay. Plaintext logins (LOGIN,
 * AUTHENTICATE PLAIN/LOGIN) on an unencrypted connection from another host
 * are refused unless plaintext_auth = yes (RFC 9051 6.2.3: LOGINDISABLED).
 */
#include "imap/imap_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/auth_client.h"
#include "lib/config.h"
#include "lib/conn.h"
#include "lib/log.h"

int imap_cmd_noop(struct imap_session *s, const struct imap_command *cmd)
{
	if (cmd->argc != 0) {
		imap_tagged(s, cmd, "BAD", "%s takes no arguments", cmd->name);
		return 0;
	}
	imap_view_sync(s, true);
	imap_tagged(s, cmd, "OK", "%s completed", cmd->name);
	return 0;
}

int imap_cmd_check(struct imap_session *s, const struct imap_command *cmd)
{
	return imap_cmd_noop(s, cmd);
}

int imap_cmd_logout(struct imap_session *s, const struct imap_command *cmd)
{
	imap_send(s, "* BYE Logging out\r\n");
	imap_tagged(s, cmd, "OK", "Logout completed");
	s->state = IMAP_LOGOUT;
	s->closing = true;
	return 0;
}

int imap_cmd_starttls(struct imap_session *s, const struct imap_command *cmd)
{
	if (conn_is_tls(s->conn)) {
		imap_tagged(s, cmd, "BAD", "TLS is already active");
		return 0;
	}
	if (s->env->tls == NULL) {
		imap_tagged(s, cmd, "NO", "TLS is not available");
		return 0;
	}
	imap_tagged(s, cmd, "OK", "Begin TLS negotiation now");
	/* Drops whatever the client pipelined after STARTTLS (CVE-2011-0411). */
	if (conn_starttls(s->conn, s->env->tls) < 0) {
		s->closing = true;
		return 0;
	}
	imap_parser_reset(s->parser);
	return 0;
}

static bool plaintext_allowed(struct imap_session *s)
{
	return conn_is_tls(s->conn) || conn_is_local(s->conn) ||
	       config_bool(s->env->config, "plaintext_auth");
}

static void login_done(void *ctx, const struct auth_client_reply *r)
{
	struct imap_session *s = ctx;
	struct store_error err;
	const char *text = r->user; /* the canonical name when ok */
	s->auth_id = 0;
	/* Only AUTH_CLIENT_OK logs in; no default, so that a new result is a
	 * compiler warning here. */
	const char *no = "[UNAVAILABLE] Authentication service unavailable";
	switch (r->result) {
	case AUTH_CLIENT_OK:
		no = NULL;
		break;
	case AUTH_CLIENT_FAILED:
		no = "[AUTHENTICATIONFAILED] Authentication failed";
		break;
	case AUTH_CLIENT_RATE_LIMITED:
		no = "[AUTHENTICATIONFAILED] Too many failures; try again later";
		break;
	case AUTH_CLIENT_TEMPFAIL:
		break;
	}
	if (no != NULL) {
		imap_tagged(s, NULL, "NO", "%s", no);
		imap_session_command_done(s);
		return;
	}
	if (store_user_open(s->env->store, text, &s->suser, &err) < 0 &&
	    err.code == STORE_ERR_NOUSER) {
		/* A user pasted into DATA/passwd without a mail folder yet. */
		if (store_user_create(s->env->store, text, &err) == 0 || err.code == STORE_ERR_EXISTS)
			store_user_open(s->env->store, text, &s->suser, &err);
	}
	if (s->suser == NULL) {
		log_error("imap %s: user %s: %s", s->id, text, err.text);
		imap_tagged(s, NULL, "NO", "[UNAVAILABLE] Mail store unavailable");
		imap_session_command_done(s);
		return;
	}
	s->user = strdup(text);
	s->state = IMAP_AUTH;
	log_info("imap %s login user=%s ip=%s", s->id, text, conn_peer_ip(s->conn));
	/* The tagged OK carries the post-login capabilities (RFC 9051 6.2.3). */
	imap_send(s, "%s OK [", s->cmd_tag);
	imap_send_capability_code(s);
	imap_send(s, "] Logged in\r\n");
	imap_session_command_done(s);
}

static void verify(struct imap_session *s, const char *user, const char *pass)
{
	/* A name the auth protocol cannot carry is no user of ours: a plain
	 * failure, not "try again later". */
	for (const char *p = user; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			imap_tagged(s, NULL, "NO", "[AUTHENTICATIONFAILED] Authentication failed");
			free(s->cmd_tag);
			s->cmd_tag = NULL;
			return;
		}
	s->busy = true;
	conn_pause_input(s->conn);
	s->auth_id = auth_client_verify(s->env->auth, conn_peer_ip(s->conn), user, pass, login_done, s);
	if (s->auth_id == 0) {
		s->busy = false;
		imap_tagged(s, NULL, "NO", "[UNAVAILABLE] Authentication service unavailable");
		imap_session_command_done(s);
	}
}

int imap_cmd_login(struct imap_session *s, const struct imap_command *cmd)
{
	const char *user, *pass;
	size_t ulen, plen;
	if (cmd->argc != 2 || !imap_parser_arg_astring(&cmd->args[0], &user, &ulen) ||
	    !imap_parser_arg_astring(&cmd->args[1], &pass, &plen)) {
		imap_tagged(s, cmd, "BAD", "Usage: LOGIN user password");
		return 0;
	}
	if (!plaintext_allowed(s)) {
		imap_tagged(s, cmd, "NO", "[PRIVACYREQUIRED] Use STARTTLS first");
		return 0;
	}
	if (memchr(user, '\0', ulen) != NULL || memchr(pass, '\0', plen) != NULL) {
		imap_tagged(s, cmd, "NO", "[AUTHENTICATIONFAILED] Authentication failed");
		return 0;
	}
	verify(s, user, pass);
	return 0;
}

static void sasl_result(struct imap_session *s, enum sasl_result r, const char *challenge,
			const char *why)
{
	switch (r) {
	case SASL_CONTINUE:
		s->authenticating = true;
		imap_send(s, "+ %s\r\n", challenge);
		return;
	case SASL_DONE:
		s->authenticating = false;
		verify(s, s->sasl.user, s->sasl.pass);
		sasl_clear(&s->sasl);
		return;
	case SASL_CANCEL:
		s->authenticating = false;
		sasl_clear(&s->sasl);
		imap_tagged(s, NULL, "BAD", "Authentication cancelled");
		break;
	case SASL_FAIL:
		s->authenticating = false;
		sasl_clear(&s->sasl);
		imap_tagged(s, NULL, "NO", "[AUTHENTICATIONFAILED] %s", why);
		break;
	}
	free(s->cmd_tag);
	s->cmd_tag = NULL;
}

int imap_cmd_authenticate(struct imap_session *s, const struct imap_command *cmd)
{
	const char *mech;
	size_t len;
	const char *ir = NULL, *challenge = "", *why = "failed";
	if (cmd->argc < 1 || cmd->argc > 2 || cmd->args[0].type != IMAP_ARG_ATOM) {
		imap_tagged(s, cmd, "BAD", "Usage: AUTHENTICATE mechanism [initial-response]");
		return 0;
	}
	mech = cmd->args[0].str;
	if (cmd->argc == 2) {
		if (!imap_parser_arg_astring(&cmd->args[1], &ir, &len)) {
			imap_tagged(s, cmd, "BAD", "Invalid initial response");
			return 0;
		}
	}
	if (strcasecmp(mech, "PLAIN") != 0 && strcasecmp(mech, "LOGIN") != 0) {
		imap_tagged(s, cmd, "NO", "[CANNOT] Unsupported authentication mechanism");
		return 0;
	}
	if (!plaintext_allowed(s)) {
		imap_tagged(s, cmd, "NO", "[PRIVACYREQUIRED] Use STARTTLS first");
		return 0;
	}
	enum sasl_result r = sasl_start(&s->sasl, mech, ir, &challenge, &why);
	sasl_result(s, r, challenge, why);
	return 0;
}

void imap_auth_line(struct imap_session *s, const char *line, size_t len)
{
	const char *challenge = "", *why = "failed";
	enum sasl_result r = sasl_step(&s->sasl, line, len, &challenge, &why);
	sasl_result(s, r, challenge, why);
}

int imap_cmd_enable(struct imap_session *s, const struct imap_command *cmd)
{
	char enabled[128] = "";
	if (cmd->argc == 0) {
		imap_tagged(s, cmd, "BAD", "Usage: ENABLE capability...");
		return 0;
	}
	for (size_t i = 0; i < cmd->argc; i++) {
		const struct imap_arg *a = &cmd->args[i];
		if (a->type != IMAP_ARG_ATOM) {
			imap_tagged(s, cmd, "BAD", "Invalid capability");
			return 0;
		}
		const char *add = NULL;
		if (strcasecmp(a->str, "CONDSTORE") == 0 && !s->condstore) {
			s->condstore = true;
			add = "CONDSTORE";
		} else if (strcasecmp(a->str, "QRESYNC") == 0 && !s->qresync) {
			/* RFC 7162 3.2.3: QRESYNC implies CONDSTORE. */
			s->qresync = s->condstore = true;
			add = "QRESYNC";
		} else if (strcasecmp(a->str, "IMAP4rev2") == 0 && !s->rev2) {
			/* RFC 9051 2.3: UTF-8 names come with it (5.1). */
			s->rev2 = s->utf8 = true;
			add = "IMAP4rev2";
		} else if (strcasecmp(a->str, "UTF8=ACCEPT") == 0 && !s->utf8) {
			s->utf8 = true;
			add = "UTF8=ACCEPT";
		}
		if (add != NULL && strlen(enabled) + strlen(add) + 2 < sizeof(enabled)) {
			strcat(enabled, " ");
			strcat(enabled, add);
		}
	}
	imap_send(s, "* ENABLED%s\r\n", enabled);
	imap_tagged(s, cmd, "OK", "Enabled");
	return 0;
}

int imap_cmd_id(struct imap_session *s, const struct imap_command *cmd)
{
	/* RFC 2971: a NIL or a list of at most 30 field/value pairs. */
	if (cmd->argc != 1 ||
	    (cmd->args[0].type != IMAP_ARG_NIL &&
	     (cmd->args[0].type != IMAP_ARG_LIST || cmd->args[0].count % 2 != 0 ||
	      cmd->args[0].count > 60))) {
		imap_tagged(s, cmd, "BAD", "Usage: ID NIL | ID (\"field\" \"value\" ...)");
		return 0;
	}
	imap_send(s, "* ID (\"name\" \"mailroom\" \"vendor\" \"mailroom\")\r\n");
	imap_tagged(s, cmd, "OK", "ID completed");
	return 0;
}
