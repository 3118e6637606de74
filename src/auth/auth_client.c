/* auth_client.c: worker side of the auth protocol; see auth_client.h. */
#include "auth/auth_client.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "lib/log.h"
#include "lib/strnum.h"

struct pending {
	unsigned id;
	auth_client_cb *cb;
	void *ctx;
	struct pending *next;
};

struct auth_client {
	int fd;
	struct event *ev;
	unsigned next_id;
	struct pending *pending;
};

/* A field the protocol can carry: no control character (so no TAB, no NUL). */
static int field_ok(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

static const struct {
	char type;
	enum auth_client_result result;
} reply_types[] = {
	{ 'O', AUTH_CLIENT_OK },
	{ 'F', AUTH_CLIENT_FAILED },
	{ 'R', AUTH_CLIENT_RATE_LIMITED },
	{ 'T', AUTH_CLIENT_TEMPFAIL },
	{ 'L', AUTH_CLIENT_LIMIT },
};

int auth_client_reply_parse(const char *msg, size_t len, unsigned *id_r,
			    struct auth_client_reply *reply_r, struct error *err)
{
	size_t i;
	if (len > AUTH_MAX_MSG) {
		error_set(err, ERR_INVALID, "reply too long");
		return -1;
	}
	if (len < 3 || msg[1] != '\t') {
		error_set(err, ERR_INVALID, "reply without type and id");
		return -1;
	}
	for (i = 0; i < sizeof(reply_types) / sizeof(reply_types[0]); i++)
		if (reply_types[i].type == msg[0])
			break;
	if (i == sizeof(reply_types) / sizeof(reply_types[0])) {
		error_set(err, ERR_INVALID, "unknown reply type");
		return -1;
	}
	enum auth_client_result result = reply_types[i].result;
	const char *idp = msg + 2, *end = msg + len;
	const char *tab = memchr(idp, '\t', (size_t)(end - idp));
	size_t idlen = (size_t)((tab != NULL ? tab : end) - idp);
	uint64_t id;
	/* One spelling per id: no leading zeros (nor 0, which is no id). */
	if ((idlen > 1 && idp[0] == '0') || strnum_u64(idp, idlen, UINT32_MAX, &id) < 0 || id == 0) {
		error_set(err, ERR_INVALID, "bad id in reply");
		return -1;
	}
	const char *user = NULL;
	size_t ulen = 0;
	if (result == AUTH_CLIENT_OK) {
		if (tab == NULL) {
			error_set(err, ERR_INVALID, "ok reply without user");
			return -1;
		}
		user = tab + 1;
		ulen = (size_t)(end - user);
		if (ulen == 0 || ulen > AUTH_CLIENT_MAX_USER) {
			error_set(err, ERR_INVALID, "empty or too long user in reply");
			return -1;
		}
		for (const char *p = user; p < end; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f) {
				/* also TAB (an extra field) and NUL */
				error_set(err, ERR_INVALID, "control character in reply");
				return -1;
			}
	} else if (tab != NULL) {
		error_set(err, ERR_INVALID, "extra field in reply");
		return -1;
	}
	memset(reply_r, 0, sizeof(*reply_r));
	reply_r->result = result;
	if (user != NULL)
		memcpy(reply_r->user, user, ulen);
	*id_r = (unsigned)id;
	return 0;
}

int auth_client_reply_format(unsigned id, const struct auth_client_reply *r, char *buf, size_t size,
			     size_t *len_r)
{
	size_t i;
	int n;
	for (i = 0; i < sizeof(reply_types) / sizeof(reply_types[0]); i++)
		if (reply_types[i].result == r->result)
			break;
	if (id == 0 || i == sizeof(reply_types) / sizeof(reply_types[0]))
		return -1;
	if (r->result == AUTH_CLIENT_OK) {
		size_t ulen = strnlen(r->user, sizeof(r->user));
		if (ulen == 0 || ulen > AUTH_CLIENT_MAX_USER || !field_ok(r->user))
			return -1;
		n = snprintf(buf, size, "O\t%u\t%s", id, r->user);
	} else {
		n = snprintf(buf, size, "%c\t%u", reply_types[i].type, id);
	}
	if (n < 0 || (size_t)n >= size || n > AUTH_MAX_MSG)
		return -1;
	*len_r = (size_t)n;
	return 0;
}

/* Answer every waiting request with a temporary failure. One at a time from
 * the live list, so that a callback that cancels another request or starts a
 * new one finds the list consistent. */
static void fail_all(struct auth_client *ac)
{
	struct auth_client_reply r;
	memset(&r, 0, sizeof(r));
	r.result = AUTH_CLIENT_TEMPFAIL;
	while (ac->pending != NULL) {
		struct pending *p = ac->pending;
		ac->pending = p->next;
		p->cb(p->ctx, &r);
		free(p);
	}
}

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct auth_client *ac = arg;
	char msg[AUTH_MAX_MSG + 1];
	(void)what;
	for (;;) {
		/* One byte more than a reply may have, so that an over-long one
		 * is seen as such rather than cut to a valid-looking prefix. */
		ssize_t n = recv(fd, msg, sizeof(msg), MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
				log_error("auth process connection lost");
				event_del(ac->ev);
				/* Fail every waiting login rather than hang it. */
				fail_all(ac);
			}
			return;
		}
		struct auth_client_reply r;
		unsigned id;
		struct error why;
		if (auth_client_reply_parse(msg, (size_t)n, &id, &r, &why) < 0) {
			/* We cannot tell which request it answered, and one
			 * left waiting would hang its session for good: fail
			 * them all (late answers to them are ignored below). */
			log_error("auth process sent a malformed reply (%s)", why.text);
			fail_all(ac);
			continue;
		}
		struct pending **pp = &ac->pending;
		while (*pp != NULL && (*pp)->id != id)
			pp = &(*pp)->next;
		if (*pp != NULL) {
			struct pending *p = *pp;
			*pp = p->next;
			p->cb(p->ctx, &r);
			free(p);
		} else if (r.result == AUTH_CLIENT_OK) {
			/* Nobody waits for this login any more: end the
			 * session it registered (auth_client.h). */
			auth_client_logout(ac, id);
		}
	}
}

struct auth_client *auth_client_new(struct event_base *base, int fd)
{
	struct auth_client *ac = calloc(1, sizeof(*ac));
	if (ac == NULL)
		return NULL;
	ac->fd = fd;
	ac->ev = event_new(base, fd, EV_READ | EV_PERSIST, read_cb, ac);
	if (ac->ev == NULL || event_add(ac->ev, NULL) < 0) {
		if (ac->ev)
			event_free(ac->ev);
		free(ac);
		return NULL;
	}
	return ac;
}

void auth_client_free(struct auth_client **acp)
{
	struct auth_client *ac = *acp;
	if (ac == NULL)
		return;
	while (ac->pending != NULL) {
		struct pending *p = ac->pending;
		ac->pending = p->next;
		free(p);
	}
	event_free(ac->ev);
	close(ac->fd);
	free(ac);
	*acp = NULL;
}

/* Send msg[0..n) as request id with its callback; returns id, or 0. */
static unsigned send_request(struct auth_client *ac, unsigned id, const char *msg, int n,
			     auth_client_cb *cb, void *ctx)
{
	if (n < 0 || n > AUTH_MAX_MSG)
		return 0;
	struct pending *p = malloc(sizeof(*p));
	if (p == NULL)
		return 0;
	if (send(ac->fd, msg, (size_t)n, MSG_NOSIGNAL) != n) {
		free(p);
		return 0;
	}
	p->id = id;
	p->cb = cb;
	p->ctx = ctx;
	p->next = ac->pending;
	ac->pending = p;
	return id;
}

static unsigned next_id(struct auth_client *ac)
{
	if (++ac->next_id == 0)
		ac->next_id = 1;
	return ac->next_id;
}

/* A name the protocol carries as a field: not empty, no control character. */
static bool name_ok(const char *s)
{
	return *s != '\0' && field_ok(s);
}

unsigned auth_client_verify(struct auth_client *ac, const char *service, const char *ip,
			    const char *user, const char *pass, auth_client_cb *cb, void *ctx)
{
	char msg[AUTH_MAX_MSG + 1];
	if (!name_ok(service) || !name_ok(ip) || !name_ok(user))
		return 0;
	unsigned id = next_id(ac);
	int n = snprintf(msg, sizeof(msg), "V\t%u\t%s\t%s\t%s\t%s", id, service, ip, user, pass);
	unsigned ret = send_request(ac, id, msg, n, cb, ctx);
	explicit_bzero(msg, sizeof(msg));
	return ret;
}

unsigned auth_client_lookup(struct auth_client *ac, const char *user, auth_client_cb *cb,
			    void *ctx)
{
	char msg[AUTH_MAX_MSG + 1];
	if (!name_ok(user))
		return 0;
	unsigned id = next_id(ac);
	int n = snprintf(msg, sizeof(msg), "U\t%u\t%s", id, user);
	return send_request(ac, id, msg, n, cb, ctx);
}

void auth_client_logout(struct auth_client *ac, unsigned id)
{
	char msg[32];
	if (id == 0)
		return;
	int n = snprintf(msg, sizeof(msg), "E\t%u", id);
	/* Blocking like a request, so that a full socket buffer does not
	 * lose it. If it fails, the auth process is gone, and with it what it
	 * counted. */
	(void)send(ac->fd, msg, (size_t)n, MSG_NOSIGNAL);
}

void auth_client_cancel(struct auth_client *ac, unsigned id)
{
	for (struct pending **pp = &ac->pending; *pp != NULL; pp = &(*pp)->next) {
		if ((*pp)->id == id) {
			struct pending *p = *pp;
			*pp = p->next;
			free(p);
			return;
		}
	}
}
