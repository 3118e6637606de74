/* auth_client.c: worker side of the auth protocol; see auth_client.h. */
#include "auth/auth_client.h"

#include <errno.h>
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

static int field_ok(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct auth_client *ac = arg;
	char msg[AUTH_MAX_MSG + 1];
	(void)what;
	for (;;) {
		ssize_t n = recv(fd, msg, AUTH_MAX_MSG, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
				log_error("auth process connection lost");
				event_del(ac->ev);
				/* Fail every waiting login rather than hang it. */
				while (ac->pending != NULL) {
					struct pending *p = ac->pending;
					ac->pending = p->next;
					p->cb(p->ctx, 0, "authentication service unavailable");
					free(p);
				}
			}
			return;
		}
		msg[n] = '\0';
		/* "O\tid\tuser" or "F\tid\treason" */
		char *t1 = strchr(msg, '\t');
		char *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
		uint64_t id;
		if ((msg[0] != 'O' && msg[0] != 'F') || t1 != msg + 1 || t2 == NULL ||
		    strnum_u64(t1 + 1, (size_t)(t2 - t1 - 1), UINT32_MAX, &id) < 0 ||
		    !field_ok(t2 + 1)) {
			log_error("auth process sent a malformed reply");
			continue;
		}
		for (struct pending **pp = &ac->pending; *pp != NULL; pp = &(*pp)->next) {
			if ((*pp)->id != id)
				continue;
			struct pending *p = *pp;
			*pp = p->next;
			p->cb(p->ctx, msg[0] == 'O', t2 + 1);
			free(p);
			break;
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

unsigned auth_client_verify(struct auth_client *ac, const char *ip, const char *user,
			    const char *pass, auth_client_cb *cb, void *ctx)
{
	char msg[AUTH_MAX_MSG + 1];
	if (!field_ok(ip) || !field_ok(user) || strchr(user, '\t') != NULL || *user == '\0')
		return 0;
	if (++ac->next_id == 0)
		ac->next_id = 1;
	unsigned id = ac->next_id;
	int n = snprintf(msg, sizeof(msg), "V\t%u\t%s\t%s\t%s", id, ip, user, pass);
	if (n < 0 || n > AUTH_MAX_MSG)
		return 0;
	struct pending *p = malloc(sizeof(*p));
	if (p == NULL)
		return 0;
	ssize_t w = send(ac->fd, msg, (size_t)n, MSG_NOSIGNAL);
	explicit_bzero(msg, sizeof(msg));
	if (w != n) {
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
