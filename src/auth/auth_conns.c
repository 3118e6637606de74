/* auth_conns.c: logged-in sessions per (service, user, IP); see
 * auth_conns.h. Two chained hash tables of fixed width: the counters by
 * their key, the sessions by (owner, id). */
#include "auth/auth_conns.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS 8192

struct counter {
	char *key; /* service \0 user \0 ip \0 */
	size_t keylen;
	unsigned n;
	struct counter *next;
};

struct sess {
	const void *owner;
	unsigned id;
	struct counter *c;
	struct sess *next;
};

struct auth_conns {
	struct counter *counters[BUCKETS];
	struct sess *sessions[BUCKETS];
	unsigned total;
};

static uint64_t fnv(const void *data, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	const unsigned char *p = data;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* The key in buf (size bytes); its length, or 0 if it does not fit. */
static size_t make_key(char *buf, size_t size, const char *service, const char *user,
		       const char *ip)
{
	size_t a = strlen(service) + 1, b = strlen(user) + 1, c = strlen(ip) + 1;
	if (a + b + c > size)
		return 0;
	memcpy(buf, service, a);
	memcpy(buf + a, user, b);
	memcpy(buf + a + b, ip, c);
	return a + b + c;
}

static struct counter **counter_slot(struct auth_conns *t, const char *key, size_t len)
{
	struct counter **pp = &t->counters[fnv(key, len) % BUCKETS];
	for (; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->keylen == len && memcmp((*pp)->key, key, len) == 0)
			break;
	return pp;
}

static struct sess **sess_slot(struct auth_conns *t, const void *owner, unsigned id)
{
	uintptr_t o = (uintptr_t)owner;
	uint64_t h = fnv(&o, sizeof(o)) ^ (id * 0x9e3779b97f4a7c15ULL);
	struct sess **pp = &t->sessions[h % BUCKETS];
	for (; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->owner == owner && (*pp)->id == id)
			break;
	return pp;
}

struct auth_conns *auth_conns_new(void)
{
	return calloc(1, sizeof(struct auth_conns));
}

static void unlink_sess(struct auth_conns *t, struct sess **pp)
{
	struct sess *s = *pp;
	struct counter *c = s->c;
	*pp = s->next;
	free(s);
	t->total--;
	if (--c->n == 0) {
		struct counter **cp = counter_slot(t, c->key, c->keylen);
		*cp = c->next;
		free(c->key);
		free(c);
	}
}

void auth_conns_free(struct auth_conns **tp)
{
	struct auth_conns *t = *tp;
	if (t == NULL)
		return;
	for (size_t i = 0; i < BUCKETS; i++)
		while (t->sessions[i] != NULL)
			unlink_sess(t, &t->sessions[i]);
	free(t);
	*tp = NULL;
}

unsigned auth_conns_count(const struct auth_conns *t, const char *service, const char *user,
			  const char *ip)
{
	char key[1024];
	size_t len = make_key(key, sizeof(key), service, user, ip);
	if (len == 0)
		return 0;
	struct counter **pp = counter_slot((struct auth_conns *)(uintptr_t)t, key, len);
	return *pp != NULL ? (*pp)->n : 0;
}

int auth_conns_add(struct auth_conns *t, const void *owner, unsigned id, const char *service,
		   const char *user, const char *ip)
{
	char key[1024];
	size_t len = make_key(key, sizeof(key), service, user, ip);
	if (len == 0 || t->total >= AUTH_CONNS_MAX)
		return -1;
	struct sess **sp = sess_slot(t, owner, id);
	if (*sp != NULL)
		return -1;
	struct sess *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -1;
	struct counter **cp = counter_slot(t, key, len);
	if (*cp == NULL) {
		struct counter *c = calloc(1, sizeof(*c));
		char *k = malloc(len);
		if (c == NULL || k == NULL) {
			free(c);
			free(k);
			free(s);
			return -1;
		}
		memcpy(k, key, len);
		c->key = k;
		c->keylen = len;
		*cp = c;
	}
	s->owner = owner;
	s->id = id;
	s->c = *cp;
	s->c->n++;
	*sp = s;
	t->total++;
	return 0;
}

void auth_conns_remove(struct auth_conns *t, const void *owner, unsigned id)
{
	struct sess **sp = sess_slot(t, owner, id);
	if (*sp != NULL)
		unlink_sess(t, sp);
}

void auth_conns_drop_owner(struct auth_conns *t, const void *owner)
{
	for (size_t i = 0; i < BUCKETS; i++) {
		struct sess **pp = &t->sessions[i];
		while (*pp != NULL) {
			if ((*pp)->owner == owner)
				unlink_sess(t, pp);
			else
				pp = &(*pp)->next;
		}
	}
}

unsigned auth_conns_total(const struct auth_conns *t)
{
	return t->total;
}
