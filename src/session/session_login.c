/* session_login.c: the login path every protocol shares; see session.h. */
#include "session/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth_client.h"
#include "lib/log.h"
#include "session/conn.h"
#include "store/store.h"

struct login {
	struct session *s;
	session_login_cb *done;
	enum session_login_result result;
	char user[AUTH_CLIENT_MAX_USER + 1];
	struct store_user *suser;
	struct error err;
	unsigned id;	 /* the auth request */
	bool registered; /* the auth process counts a session under id */
};

/* What the auth protocol can carry as a user name: no control characters
 * (TAB included). Anything else cannot be one of our users. */
static bool user_ok(const char *user)
{
	size_t n = strlen(user);
	if (n == 0 || n > AUTH_CLIENT_MAX_USER)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)user[i] < 0x20 || user[i] == 0x7f)
			return false;
	return true;
}

/* On a job thread: open the user's store. */
static void open_work(void *arg)
{
	struct login *l = arg;
	struct store *store = l->s->env->store;
	if (store_user_open(store, l->user, &l->suser, &l->err) < 0 && l->err.code == ERR_NOUSER) {
		/* A user pasted into DATA/passwd without a mail folder yet. */
		if (store_user_create(store, l->user, &l->err) == 0 || l->err.code == ERR_EXISTS)
			store_user_open(store, l->user, &l->suser, &l->err);
	}
	if (l->suser == NULL)
		l->result = SESSION_LOGIN_STORE_UNAVAILABLE;
}

/* The session the auth process counted for this login: the session's now
 * (ended in the core's close path), or ended at once if the login did not
 * come through. */
static void keep_or_end(struct session *s, struct login *l)
{
	if (!l->registered)
		return;
	if (l->result != SESSION_LOGIN_OK || s->conn == NULL) {
		auth_client_logout(s->env->auth, l->id);
		return;
	}
	if (s->auth_login != 0) /* a second login on one connection */
		auth_client_logout(s->env->auth, s->auth_login);
	s->auth_login = l->id;
}

static void finish(struct session *s, struct login *l)
{
	keep_or_end(s, l);
	if (s->conn != NULL) {
		l->done(s, l->result, l->user, l->suser);
		l->suser = NULL;
	}
	store_user_close(&l->suser);
	explicit_bzero(l, sizeof(*l));
	free(l);
}

static void open_done(struct session *s, void *arg)
{
	struct login *l = arg;
	if (l->result == SESSION_LOGIN_STORE_UNAVAILABLE)
		log_error("%s %s: user %s: %s", s->proto->name, s->id, l->user, l->err.text);
	finish(s, l);
}

static void auth_done(void *ctx, const struct auth_client_reply *r)
{
	struct login *l = ctx;
	struct session *s = l->s;
	switch (r->result) {
	case AUTH_CLIENT_OK:
		l->result = SESSION_LOGIN_OK;
		l->registered = true;
		snprintf(l->user, sizeof(l->user), "%s", r->user);
		break;
	case AUTH_CLIENT_LIMIT:
		l->result = SESSION_LOGIN_TOO_MANY;
		break;
	case AUTH_CLIENT_FAILED:
		l->result = SESSION_LOGIN_FAILED;
		break;
	case AUTH_CLIENT_RATE_LIMITED:
		l->result = SESSION_LOGIN_RATE_LIMITED;
		break;
	case AUTH_CLIENT_TEMPFAIL:
		l->result = SESSION_LOGIN_AUTH_UNAVAILABLE;
		break;
	}
	bool going = s->closing || s->shut_down; /* do not open only to close */
	if (l->result == SESSION_LOGIN_OK && !going &&
	    session_async(s, open_work, open_done, l) == 0) {
		session_resume(s); /* the job keeps the session busy */
		return;
	}
	if (l->result == SESSION_LOGIN_OK && !going)
		l->result = SESSION_LOGIN_STORE_UNAVAILABLE; /* no job could be queued */
	else if (l->result == SESSION_LOGIN_OK)
		l->result = SESSION_LOGIN_AUTH_UNAVAILABLE; /* shutting down: do not open */
	finish(s, l);
	session_resume(s);
}

void session_login(struct session *s, const char *user, const char *pass, session_login_cb *done)
{
	if (!user_ok(user)) {
		done(s, SESSION_LOGIN_FAILED, NULL, NULL);
		return;
	}
	struct login *l = calloc(1, sizeof(*l));
	if (l == NULL) {
		done(s, SESSION_LOGIN_AUTH_UNAVAILABLE, NULL, NULL);
		return;
	}
	l->s = s;
	l->done = done;
	/* The request is not cancelled if the client leaves: the reply frees l
	 * and, the client being gone, the session (finish, session_resume). */
	session_wait(s);
	l->id = auth_client_verify(s->env->auth, s->proto->name, conn_peer_ip(s->conn), user, pass,
				   auth_done, l);
	if (l->id == 0) {
		l->result = SESSION_LOGIN_AUTH_UNAVAILABLE;
		finish(s, l);
		session_resume(s);
	}
}

void session_logout(struct session *s)
{
	if (s->auth_login != 0)
		auth_client_logout(s->env->auth, s->auth_login);
	s->auth_login = 0;
}
