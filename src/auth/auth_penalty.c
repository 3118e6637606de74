/* auth_penalty.c: failure delays per (user, IP), a threshold per IP; see
 * auth_penalty.h. */
#include "auth/auth_penalty.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define WAYS 4
#define PAIR_SETS 4096 /* 16384 pairs, 24 bytes each */
#define IP_SETS 1024   /* 4096 addresses */
/* 2^k overflows nothing below this; max_ms caps long before. */
#define MAX_SHIFT 20

struct ent {
	uint64_t key;	 /* 0: free */
	time_t time;	 /* pair: last counted failure; IP: start of its window */
	uint32_t count;	 /* counted failures */
	uint32_t pwhash; /* pair: hash of its last wrong password */
};

struct auth_penalty {
	struct auth_penalty_settings set;
	uint64_t seed;
	struct ent pairs[PAIR_SETS][WAYS];
	struct ent ips[IP_SETS][WAYS];
};

/* FNV-1a, 64 bits, from a random offset: not a cryptographic MAC, but the
 * sets an attacker's names fall in are unknown to him. */
static uint64_t mix(uint64_t h, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* An IPv6 address counts by its first PENALTY_IPV6_BITS bits, as in
 * Dovecot's auth-penalty.c (PENALTY_IPV6_MASK_BITS 48: "we don't want IPv6
 * hosts being able to flood our penalty tracking with tons of different
 * IPs"); anything else by its text. */
#define PENALTY_IPV6_BITS 48

static uint64_t mix_ip(uint64_t h, const char *ip)
{
	struct in6_addr a;
	if (strchr(ip, ':') != NULL && inet_pton(AF_INET6, ip, &a) == 1) {
		memset(a.s6_addr + PENALTY_IPV6_BITS / 8, 0, 16 - PENALTY_IPV6_BITS / 8);
		return mix(h, (const char *)a.s6_addr, 16);
	}
	return mix(h, ip, strlen(ip) + 1);
}

static uint64_t key_of(const struct auth_penalty *p, const char *kind, const char *user,
		       const char *ip)
{
	uint64_t h = mix(p->seed, kind, strlen(kind) + 1);
	if (user != NULL)
		h = mix(h, user, strlen(user) + 1);
	h = mix_ip(h, ip);
	return h != 0 ? h : 1;
}

/* The entry for key in its set, or NULL; with create, a new one (zeroed)
 * in a free or stale slot, else in place of the oldest. */
static struct ent *find(struct ent *set, uint64_t key, bool create, time_t now, unsigned forget)
{
	struct ent *victim = NULL;
	for (int i = 0; i < WAYS; i++)
		if (set[i].key == key)
			return &set[i];
	if (!create)
		return NULL;
	for (int i = 0; i < WAYS && victim == NULL; i++)
		if (set[i].key == 0 || now - set[i].time >= (time_t)forget)
			victim = &set[i];
	if (victim == NULL) { /* all taken and fresh: the oldest failure goes */
		victim = &set[0];
		for (int i = 1; i < WAYS; i++)
			if (set[i].time < victim->time)
				victim = &set[i];
	}
	memset(victim, 0, sizeof(*victim));
	victim->key = key;
	victim->time = now;
	return victim;
}

static struct ent *pair_ent(struct auth_penalty *p, const char *user, const char *ip, bool create,
			    time_t now)
{
	uint64_t k = key_of(p, "pair", user, ip);
	struct ent *e = find(p->pairs[k % PAIR_SETS], k, create, now, p->set.forget_secs);
	if (e != NULL && e->count > 0 && now - e->time >= (time_t)p->set.forget_secs) {
		e->count = 0; /* forgotten */
		e->pwhash = 0;
	}
	return e;
}

static struct ent *ip_ent(struct auth_penalty *p, const char *ip, bool create, time_t now)
{
	uint64_t k = key_of(p, "ip", NULL, ip);
	struct ent *e = find(p->ips[k % IP_SETS], k, create, now, p->set.forget_secs);
	if (e != NULL && now - e->time >= (time_t)p->set.forget_secs) {
		e->count = 0; /* a new window */
		e->time = now;
	}
	return e;
}

/* d(k) of the header: base * 2^(k-1), at most max; 0 for k = 0. */
static unsigned delay_for(const struct auth_penalty *p, unsigned k)
{
	if (k == 0 || p->set.base_ms == 0)
		return 0;
	unsigned shift = k - 1 > MAX_SHIFT ? MAX_SHIFT : k - 1;
	uint64_t d = (uint64_t)p->set.base_ms << shift;
	unsigned max = p->set.max_ms > p->set.base_ms ? p->set.max_ms : p->set.base_ms;
	return d > max ? max : (unsigned)d;
}

static unsigned max_delay(const struct auth_penalty *p)
{
	return delay_for(p, MAX_SHIFT + 1);
}

static bool ip_over(struct auth_penalty *p, const char *ip, time_t now)
{
	if (p->set.ip_max_failures == 0)
		return false;
	struct ent *e = ip_ent(p, ip, false, now);
	return e != NULL && e->count >= p->set.ip_max_failures;
}

struct auth_penalty *auth_penalty_new(const struct auth_penalty_settings *set)
{
	struct auth_penalty *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	p->set = *set;
	if (p->set.forget_secs == 0)
		p->set.forget_secs = 1;
	if (getrandom(&p->seed, sizeof(p->seed), GRND_NONBLOCK) != (ssize_t)sizeof(p->seed))
		p->seed = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
	p->seed ^= 0xcbf29ce484222325ULL;
	return p;
}

void auth_penalty_free(struct auth_penalty **pp)
{
	free(*pp);
	*pp = NULL;
}

bool auth_penalty_check(struct auth_penalty *p, const char *user, const char *ip, time_t now,
			unsigned *delay_ms_r)
{
	struct ent *e = pair_ent(p, user, ip, false, now);
	unsigned k = e != NULL ? e->count : 0;
	*delay_ms_r = ip_over(p, ip, now) ? max_delay(p) : delay_for(p, k);
	return p->set.pair_max_failures != 0 && k >= p->set.pair_max_failures;
}

unsigned auth_penalty_failed(struct auth_penalty *p, const char *user, const char *ip,
			     const char *pass, time_t now)
{
	struct ent *e = pair_ent(p, user, ip, true, now);
	uint32_t pw = (uint32_t)(key_of(p, "pw", pass, "") >> 32) | 1;
	if (e->count == 0 || e->pwhash != pw) {
		if (e->count < UINT32_MAX)
			e->count++;
		e->pwhash = pw;
		e->time = now;
		struct ent *ie = ip_ent(p, ip, true, now);
		if (ie->count < UINT32_MAX)
			ie->count++;
	}
	unsigned d = delay_for(p, e->count);
	if (ip_over(p, ip, now))
		d = max_delay(p);
	return d;
}

void auth_penalty_succeeded(struct auth_penalty *p, const char *user, const char *ip, time_t now)
{
	struct ent *e = pair_ent(p, user, ip, false, now);
	if (e != NULL)
		memset(e, 0, sizeof(*e));
}
