/*
 * lmtp_rcpt.c: RCPT TO, which store user an address means (lmtp_int.h).
 *
 * "user@any.domain" is the user "user", unless a user named by the whole
 * address exists (passwd lines with full addresses); with
 * lmtp_local_domains set, other domains get 550. "user+detail"
 * (recipient_delimiter) delivers to the mailbox "detail" when it exists,
 * else to INBOX (the store falls back).
 *
 * A recipient is a user only if the user database says so: each candidate
 * name is asked of the auth process (auth_client_lookup; workers never read
 * DATA/passwd), in order, and the first it knows wins under its canonical
 * name. None known is 550 5.1.1; a database that cannot be read is 451
 * 4.3.0, never a 550 that would bounce mail for a user who exists. A mail
 * folder alone (a user deleted with `mailroom user del`, mail kept) is not
 * a recipient. A user in the database must also have a mail folder, as
 * before (`mailroom user add` makes it; a user pasted into DATA/passwd gets
 * it at the first login): 550 5.1.1 until then. And be under quota (452
 * 4.2.2 or 552 5.2.2, per quota_full_tempfail). The store part opens the
 * user's index and reads the quota: disk work, so it runs on the job pool
 * like the delivery.
 */
#include "lmtp/lmtp_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/auth_client.h"
#include "lib/config.h"

static bool domain_is_local(const struct config *config, const char *domain)
{
	const char *list = config_str(config, "lmtp_local_domains");
	if (list[0] == '\0')
		return true;
	size_t dlen = strlen(domain);
	for (const char *p = list; *p != '\0';) {
		while (*p == ' ' || *p == ',')
			p++;
		const char *e = p;
		while (*e != '\0' && *e != ',' && *e != ' ')
			e++;
		if ((size_t)(e - p) == dlen && dlen > 0 && strncasecmp(p, domain, dlen) == 0)
			return true;
		p = e;
	}
	return false;
}

/* One RCPT in progress: the candidate names, which one the auth process
 * is asked about, then the store job's result. */
struct rcpt_job {
	struct lmtp_session *s;
	char cands[3][LMTP_MAX_ADDRESS + 1];
	size_t nc, next;	   /* candidates; the one being asked */
	bool whole_addr;	   /* cands[0] is the whole address */
	char detail[LMTP_MAX_ADDRESS + 1];
	struct lmtp_rcpt r;
	const char *why;
	int rc;
};

/* Fill j's candidates for addr, in order: the whole address, the local
 * part without its detail, the same in lower case. 0, or -1 with the reply
 * in j->why. */
static int candidates(const struct config *config, const char *addr, struct rcpt_job *j)
{
	char local[LMTP_MAX_ADDRESS + 1], domain[LMTP_MAX_ADDRESS + 1];
	char base[LMTP_MAX_ADDRESS + 1], lower[LMTP_MAX_ADDRESS + 1];

	snprintf(j->r.addr, sizeof(j->r.addr), "%s", addr);
	if (lmtp_split_address(addr, local, sizeof(local), domain, sizeof(domain)) < 0) {
		j->why = "501 5.1.3 Bad recipient address syntax";
		return -1;
	}
	if (domain[0] != '\0' && !domain_is_local(config, domain)) {
		j->why = "550 5.1.2 Domain not handled here";
		return -1;
	}
	if (domain[0] != '\0' && store_username_valid(addr) == 0) {
		snprintf(j->cands[j->nc++], sizeof(j->cands[0]), "%s", addr);
		j->whole_addr = true;
	}
	snprintf(base, sizeof(base), "%s", local);
	const char *delim = config_str(config, "recipient_delimiter");
	if (delim[0] != '\0') {
		char *d = strstr(base, delim);
		if (d != NULL && d != base) {
			snprintf(j->detail, sizeof(j->detail), "%s", d + strlen(delim));
			*d = '\0';
		}
	}
	size_t i;
	for (i = 0; base[i] != '\0' && i < sizeof(lower) - 1; i++)
		lower[i] = (char)tolower((unsigned char)base[i]);
	lower[i] = '\0';
	if (store_username_valid(base) == 0)
		snprintf(j->cands[j->nc++], sizeof(j->cands[0]), "%s", base);
	if (strcmp(lower, base) != 0 && store_username_valid(lower) == 0)
		snprintf(j->cands[j->nc++], sizeof(j->cands[0]), "%s", lower);
	return 0;
}

/* On a job thread: the store side of a user the database knows (r.user).
 * Uses only the session's shared objects. */
static void rcpt_work(void *arg)
{
	struct rcpt_job *j = arg;
	const struct session_env *env = j->s->base.env;
	struct store_user *u = NULL;
	struct error err;

	j->rc = -1;
	if (store_user_open(env->store, j->r.user, &u, &err) < 0) {
		j->why = err.code == ERR_NOUSER ? "550 5.1.1 No such user here"
						: "451 4.3.0 Temporary failure looking up the recipient";
		return;
	}
	if (store_user_quota_check(u, 0, 1, &err) < 0) {
		if (err.code == ERR_QUOTA)
			j->why = store_quota_is_temporary(env->store) ? "452 4.2.2 Mailbox is full"
								      : "552 5.2.2 Mailbox is full";
		else
			j->why = "451 4.3.0 Temporary failure reading the quota";
	} else {
		j->rc = 0;
	}
	store_user_close(&u);
}

static void rcpt_answer(struct lmtp_session *s, struct rcpt_job *j)
{
	if (j->rc < 0) {
		lmtp_reply(s, "%s", j->why);
	} else {
		struct lmtp_rcpt *p = realloc(s->rcpts, (s->nrcpts + 1) * sizeof(*p));
		if (p == NULL) {
			lmtp_reply(s, "452 4.3.0 Out of memory");
		} else {
			s->rcpts = p;
			s->rcpts[s->nrcpts++] = j->r;
			lmtp_reply(s, "250 2.1.5 Ok");
		}
	}
	free(j);
}

static void rcpt_done(struct session *base, void *arg)
{
	(void)base;
	struct rcpt_job *j = arg;
	rcpt_answer(j->s, j);
}

static bool ask_next(struct rcpt_job *j);

/* src into dst (size bytes), cut if longer; false if it was cut. */
static bool copy(char *dst, size_t size, const char *src)
{
	size_t n = strnlen(src, size);
	bool whole = n < size;
	if (!whole)
		n = size - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
	return whole;
}

/* The auth process's answer about j->cands[j->next - 1]. Ends the wait
 * that ask_next began (session_resume), after starting what comes next. */
static void lookup_done(void *ctx, const struct auth_client_reply *r)
{
	struct rcpt_job *j = ctx;
	struct lmtp_session *s = j->s;
	if (s->base.conn == NULL) { /* the client left: nothing to answer */
		free(j);
		session_resume(&s->base);
		return;
	}
	switch (r->result) {
	case AUTH_CLIENT_OK:
		if (j->detail[0] != '\0' && !(j->whole_addr && j->next == 1))
			copy(j->r.mailbox, sizeof(j->r.mailbox), j->detail);
		if (!copy(j->r.user, sizeof(j->r.user), r->user) ||
		    store_username_valid(j->r.user) < 0) {
			j->rc = -1; /* a database name the store cannot take */
			j->why = "550 5.1.1 No such user here";
			break;
		}
		if (session_async(&s->base, rcpt_work, rcpt_done, j) == 0) {
			session_resume(&s->base); /* the job keeps the session busy */
			return;
		}
		j->rc = -1;
		j->why = "452 4.3.0 Out of memory";
		break;
	case AUTH_CLIENT_FAILED:
		if (ask_next(j)) {
			session_resume(&s->base); /* the next lookup waits now */
			return;
		}
		break; /* ask_next set the answer */
	default:
		j->rc = -1;
		j->why = "451 4.3.0 Temporary failure looking up the recipient";
		break;
	}
	rcpt_answer(s, j);
	session_resume(&s->base);
}

/* Ask the auth process about the next candidate (the session waits for the
 * answer: session_wait). false with j's answer set when there is none left
 * (550) or it cannot be asked (451). */
static bool ask_next(struct rcpt_job *j)
{
	struct lmtp_session *s = j->s;
	j->rc = -1;
	if (j->next >= j->nc) {
		j->why = "550 5.1.1 No such user here";
		return false;
	}
	const char *name = j->cands[j->next++];
	/* The answer never comes before this returns: wait after asking. */
	if (auth_client_lookup(s->base.env->auth, name, lookup_done, j) == 0) {
		j->why = "451 4.3.0 Temporary failure looking up the recipient";
		return false;
	}
	session_wait(&s->base);
	return true;
}

void lmtp_rcpt_lookup(struct lmtp_session *s, const char *addr)
{
	struct rcpt_job *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		lmtp_reply(s, "452 4.3.0 Out of memory");
		return;
	}
	j->s = s;
	j->rc = -1;
	if (candidates(s->base.env->config, addr, j) < 0 || !ask_next(j))
		rcpt_answer(s, j);
}
