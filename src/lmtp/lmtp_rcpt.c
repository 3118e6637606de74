/*
 * lmtp_rcpt.c: RCPT TO, which store user an address means (lmtp_int.h).
 *
 * "user@any.domain" is the user "user", unless a user named by the whole
 * address exists (passwd lines with full addresses); with
 * lmtp_local_domains set, other domains get 550. "user+detail"
 * (recipient_delimiter) delivers to the mailbox "detail" when it exists,
 * else to INBOX (the store falls back). The user must have a mail folder
 * (550 5.1.1) and be under quota (452 4.2.2 or 552 5.2.2, per
 * quota_full_tempfail). The lookup opens the user's index and reads the
 * quota: disk work, so it runs on the job pool like the delivery.
 */
#include "lmtp/lmtp_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

/* Find the store user for an address; 0 and r filled, or -1 with the reply
 * to send in *why. Runs on a job thread: uses only env's shared objects. */
static int resolve(const struct session_env *env, const char *addr, struct lmtp_rcpt *r,
		   const char **why)
{
	char local[LMTP_MAX_ADDRESS + 1], domain[LMTP_MAX_ADDRESS + 1];
	struct store_user *u = NULL;
	struct error err;

	memset(r, 0, sizeof(*r));
	snprintf(r->addr, sizeof(r->addr), "%s", addr);
	if (lmtp_split_address(addr, local, sizeof(local), domain, sizeof(domain)) < 0) {
		*why = "501 5.1.3 Bad recipient address syntax";
		return -1;
	}
	if (domain[0] != '\0' && !domain_is_local(env->config, domain)) {
		*why = "550 5.1.2 Domain not handled here";
		return -1;
	}
	/* Candidates in order: the whole address, the local part without its
	 * detail, the same in lower case. */
	const char *cands[4];
	char lower[sizeof(local)], base[sizeof(local)], detail[sizeof(local)] = "";
	size_t nc = 0;
	if (domain[0] != '\0' && store_username_valid(addr) == 0)
		cands[nc++] = addr;
	snprintf(base, sizeof(base), "%s", local);
	const char *delim = config_str(env->config, "recipient_delimiter");
	if (delim[0] != '\0') {
		char *d = strstr(base, delim);
		if (d != NULL && d != base) {
			snprintf(detail, sizeof(detail), "%s", d + strlen(delim));
			*d = '\0';
		}
	}
	cands[nc++] = base;
	for (size_t i = 0; base[i] != '\0' && i < sizeof(lower) - 1; i++)
		lower[i] = (char)tolower((unsigned char)base[i]);
	lower[strlen(base)] = '\0';
	if (strcmp(lower, base) != 0)
		cands[nc++] = lower;
	size_t matched = nc;
	for (size_t i = 0; i < nc; i++) {
		if (store_username_valid(cands[i]) < 0)
			continue;
		if (store_user_open(env->store, cands[i], &u, &err) == 0) {
			snprintf(r->user, sizeof(r->user), "%s", cands[i]);
			matched = i;
			break;
		}
		if (err.code != ERR_NOUSER) {
			*why = "451 4.3.0 Temporary failure looking up the recipient";
			return -1;
		}
	}
	if (u == NULL) {
		*why = "550 5.1.1 No such user here";
		return -1;
	}
	if (detail[0] != '\0' && cands[matched] != addr)
		snprintf(r->mailbox, sizeof(r->mailbox), "%s", detail);
	int ret = 0;
	if (store_user_quota_check(u, 0, 1, &err) < 0) {
		if (err.code == ERR_QUOTA)
			*why = store_quota_is_temporary(env->store) ? "452 4.2.2 Mailbox is full"
								    : "552 5.2.2 Mailbox is full";
		else
			*why = "451 4.3.0 Temporary failure reading the quota";
		ret = -1;
	}
	store_user_close(&u);
	return ret;
}

struct rcpt_job {
	const struct session_env *env;
	char addr[LMTP_MAX_ADDRESS + 1];
	struct lmtp_rcpt r;
	const char *why;
	int rc;
};

static void rcpt_work(void *arg)
{
	struct rcpt_job *j = arg;
	j->rc = resolve(j->env, j->addr, &j->r, &j->why);
}

static void rcpt_done(struct session *base, void *arg)
{
	struct lmtp_session *s = (struct lmtp_session *)base;
	struct rcpt_job *j = arg;
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

void lmtp_rcpt_lookup(struct lmtp_session *s, const char *addr)
{
	struct rcpt_job *j = calloc(1, sizeof(*j));
	if (j == NULL)
		goto fail;
	j->env = s->base.env;
	snprintf(j->addr, sizeof(j->addr), "%s", addr);
	if (session_async(&s->base, rcpt_work, rcpt_done, j) < 0)
		goto fail;
	return;
fail:
	free(j);
	lmtp_reply(s, "452 4.3.0 Out of memory");
}
