/*
 * auth_conns.h: the logged-in sessions the auth process knows of, counted
 * per (service, user, IP), for max_userip_connections (Dovecot's
 * mail_max_userip_connections, which its anvil process counts per service,
 * user and IP; default 10 in both).
 *
 * Design note. Workers accept connections themselves, so the connections
 * of one address spread over several worker processes; only the auth
 * process sees every login. A session is registered when the auth process
 * answers a login "ok", under its owner (the worker connection it came on)
 * and the request id, and forgotten when the worker says the session ended
 * (auth_client_logout), or all at once when the worker's connection closes
 * (the worker exited or died). Sessions of a worker whose connection was
 * lost before (the auth process restarted under it) are not known to the
 * new auth process: they do not count, so the limit errs towards letting
 * users in. The table holds at most AUTH_CONNS_MAX sessions; past that a
 * login is not registered (nor refused).
 */
#ifndef MAILROOM_AUTH_CONNS_H
#define MAILROOM_AUTH_CONNS_H

#define AUTH_CONNS_MAX (1u << 20)

struct auth_conns;

/* NULL if out of memory. */
struct auth_conns *auth_conns_new(void);
/* *t is NULL afterwards; NULL is a no-op. */
void auth_conns_free(struct auth_conns **t);

/* Sessions registered for (service, user, ip). */
unsigned auth_conns_count(const struct auth_conns *t, const char *service, const char *user,
			  const char *ip);
/* Register session id of owner for (service, user, ip). 0, or -1 if out of
 * memory, the table is full or (owner, id) is registered already (nothing
 * changed then). */
int auth_conns_add(struct auth_conns *t, const void *owner, unsigned id, const char *service,
		   const char *user, const char *ip);
/* Forget session id of owner; one not registered is ignored. */
void auth_conns_remove(struct auth_conns *t, const void *owner, unsigned id);
/* Forget every session of owner. */
void auth_conns_drop_owner(struct auth_conns *t, const void *owner);
/* Sessions registered in all (for tests and the log). */
unsigned auth_conns_total(const struct auth_conns *t);

#endif
