/* auth_proc.c: the auth process; see auth_proc.h. */
#include "auth/auth_proc.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "auth/auth_client.h"
#include "auth/auth_conns.h"
#include "auth/auth_penalty.h"
#include "auth/passwd.h"
#include "lib/log.h"
#include "lib/strnum.h"

/* What the last look at DATA/passwd found. users holds a table only in
 * DB_LOADED. */
enum db_state {
	DB_UNKNOWN,	/* not looked yet */
	DB_LOADED,	/* read whole; ino, size, mtime say which version */
	DB_MISSING,	/* no such file: no users */
	DB_UNREADABLE,	/* there but unreadable (or out of memory): tempfail */
};

struct user_ent {
	char *user;
	char *hash;
	size_t line; /* in the file, for the first-wins rule */
};

struct worker_sock {
	struct auth_proc *ap;
	int fd;
	struct event *ev;
	struct worker_sock *next;
};

struct delayed {
	struct worker_sock *ws;
	struct event *timer;
	char reply[AUTH_MAX_MSG + 1];
	size_t len;
	struct delayed *next;
};

struct auth_proc {
	struct event_base *base;
	struct auth_proc_settings set;
	int (*open_passwd)(void *ctx);
	void *ctx;
	struct user_ent *users;
	size_t nusers;
	time_t last_check;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	enum db_state db;
	struct auth_penalty *penalty;
	struct auth_conns *conns;
	struct worker_sock *workers;
	struct delayed *delayed;
};

static int user_cmp(const void *a, const void *b)
{
	return strcmp(((const struct user_ent *)a)->user, ((const struct user_ent *)b)->user);
}

/* By name, then by line: the first line of a name comes first. */
static int user_line_cmp(const void *a, const void *b)
{
	const struct user_ent *x = a, *y = b;
	int c = strcmp(x->user, y->user);
	if (c != 0)
		return c;
	return x->line < y->line ? -1 : x->line > y->line;
}

static void free_ent(struct user_ent *u)
{
	free(u->user);
	explicit_bzero(u->hash, strlen(u->hash));
	free(u->hash);
}

/* Sort users[0..n) and drop the later lines of a name listed twice, with a
 * warning each; returns the new count. */
static size_t sort_unique(struct user_ent *users, size_t n, const char *path)
{
	size_t out = 0;
	if (n > 1)
		qsort(users, n, sizeof(*users), user_line_cmp);
	for (size_t i = 0; i < n; i++) {
		if (out > 0 && strcmp(users[out - 1].user, users[i].user) == 0) {
			log_warn("auth: %s:%zu: user %s is listed already on line %zu; line skipped",
				 path, users[i].line, users[i].user, users[out - 1].line);
			free_ent(&users[i]);
			continue;
		}
		users[out++] = users[i];
	}
	return out;
}

static void free_users(struct auth_proc *ap)
{
	for (size_t i = 0; i < ap->nusers; i++)
		free_ent(&ap->users[i]);
	free(ap->users);
	ap->users = NULL;
	ap->nusers = 0;
}

/* Read the table from f (the file path, for warnings) into *users_r, *n_r
 * (sorted by name, one entry per name). A malformed line is skipped with a
 * warning naming path and line: one bad line must not lock out the other
 * users. Returns 0, or -1 with err set (ERR_TEMP) if the file cannot be
 * read to its end or memory runs out: half a table would turn the missing
 * users' logins into plain failures. */
static int load_users(FILE *f, const char *path, struct user_ent **users_r, size_t *n_r,
		      struct error *err)
{
	size_t lineno = 0;
	struct user_ent *users = NULL;
	size_t n = 0, cap = 0;
	char *line = NULL;
	size_t lcap = 0;
	ssize_t len;
	int ret = -1;
	struct passwd_entry *e = malloc(sizeof(*e));

	if (e == NULL) {
		error_set(err, ERR_TEMP, "out of memory");
		goto fail;
	}
	while ((len = getline(&line, &lcap, f)) >= 0) {
		struct error why;
		lineno++;
		if (passwd_line_parse(line, (size_t)len, e, &why) < 0) {
			if (why.code != ERR_NOTFOUND) /* not a comment or blank */
				log_warn("auth: %s:%zu: %s; line skipped", path, lineno, why.text);
			continue;
		}
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			struct user_ent *p = realloc(users, ncap * sizeof(*p));
			if (p == NULL) {
				error_set(err, ERR_TEMP, "out of memory");
				goto fail;
			}
			users = p;
			cap = ncap;
		}
		users[n].user = strdup(e->user);
		users[n].hash = strdup(e->hash);
		users[n].line = lineno;
		if (users[n].user == NULL || users[n].hash == NULL) {
			free(users[n].user);
			free(users[n].hash);
			error_set(err, ERR_TEMP, "out of memory");
			goto fail;
		}
		n++;
	}
	/* getline() is -1 at the end and on an error alike (EISDIR, EIO,
	 * ENOMEM): only ferror() tells them apart. */
	if (ferror(f)) {
		error_set(err, ERR_TEMP, "%s", errno == ENOMEM ? "out of memory" : strerror(errno));
		goto fail;
	}
	n = sort_unique(users, n, path);
	*users_r = users;
	*n_r = n;
	users = NULL;
	n = 0;
	ret = 0;
fail:
	for (size_t i = 0; i < n; i++)
		free_ent(&users[i]);
	free(users);
	if (line != NULL)
		explicit_bzero(line, lcap);
	free(line);
	if (e != NULL)
		explicit_bzero(e, sizeof(*e));
	free(e);
	return ret;
}

/* Move to state db, logging the change (not every request while it lasts).
 * Any state but DB_LOADED drops the table: it must not be used, and it will
 * be read again when the file comes back. */
static void set_db(struct auth_proc *ap, enum db_state db, const char *why)
{
	if (db != ap->db) {
		if (db == DB_MISSING)
			log_warn("auth: there is no passwd file; no user can log in");
		else if (db == DB_UNREADABLE)
			log_error("auth: cannot read the passwd file (%s); logins fail temporarily",
				  why);
		else if (ap->db != DB_UNKNOWN)
			log_info("auth: the passwd file is readable again");
	}
	if (db != DB_LOADED)
		free_users(ap);
	ap->db = db;
}

/* Bring the table up to date with DATA/passwd (asking for the file at most
 * once a second) and return the state that decides the answer. The file
 * missing is a state like any other (no users, as Dovecot's passwd-file
 * does); a file that is there but cannot be read is DB_UNREADABLE, answered
 * as a temporary failure, never as a wrong password. */
static enum db_state refresh(struct auth_proc *ap)
{
	time_t now = time(NULL);
	if (ap->db != DB_UNKNOWN && now == ap->last_check)
		return ap->db;
	ap->last_check = now;
	errno = 0;
	int fd = ap->open_passwd(ap->ctx);
	struct stat st;
	if (fd < 0) {
		if (errno == ENOENT)
			set_db(ap, DB_MISSING, NULL);
		else
			set_db(ap, DB_UNREADABLE, errno != 0 ? strerror(errno) : "cannot open");
		return ap->db;
	}
	const char *why = NULL;
	if (fstat(fd, &st) < 0)
		why = strerror(errno);
	else if (!S_ISREG(st.st_mode))
		why = "not a regular file"; /* a directory opens, then reads EISDIR */
	if (why != NULL) {
		close(fd);
		set_db(ap, DB_UNREADABLE, why);
		return ap->db;
	}
	if (ap->db == DB_LOADED && st.st_ino == ap->ino && st.st_size == ap->size &&
	    st.st_mtim.tv_sec == ap->mtime.tv_sec && st.st_mtim.tv_nsec == ap->mtime.tv_nsec) {
		close(fd);
		return ap->db;
	}
	FILE *f = fdopen(fd, "r");
	if (f == NULL) {
		close(fd);
		set_db(ap, DB_UNREADABLE, "out of memory");
		return ap->db;
	}
	struct user_ent *users;
	size_t n;
	struct error err;
	int r = load_users(f, ap->set.passwd_path, &users, &n, &err);
	fclose(f);
	if (r < 0) {
		set_db(ap, DB_UNREADABLE, err.text);
		return ap->db;
	}
	free_users(ap);
	ap->users = users;
	ap->nusers = n;
	ap->ino = st.st_ino;
	ap->size = st.st_size;
	ap->mtime = st.st_mtim;
	set_db(ap, DB_LOADED, NULL);
	return ap->db;
}

static const struct user_ent *lookup(struct auth_proc *ap, const char *user)
{
	struct user_ent key = { (char *)(uintptr_t)user, NULL, 0 };
	if (ap->nusers == 0)
		return NULL;
	return bsearch(&key, ap->users, ap->nusers, sizeof(key), user_cmp);
}

static int field_ok(const char *s, size_t len)
{
	if (len == 0)
		return 0;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 0;
	return 1;
}

static const char *result_name(enum auth_client_result r)
{
	switch (r) {
	case AUTH_CLIENT_OK: return "ok";
	case AUTH_CLIENT_FAILED: return "failed";
	case AUTH_CLIENT_RATE_LIMITED: return "rate limited";
	case AUTH_CLIENT_TEMPFAIL: return "temporary failure";
	case AUTH_CLIENT_LIMIT: return "too many connections";
	}
	return "?";
}

/* Check user's password: OK (with the canonical name), FAILED, or TEMPFAIL
 * when it cannot be checked. Only FAILED counts towards the penalty: a
 * temporary failure says nothing about the password. */
static enum auth_client_result check_password(struct auth_proc *ap, const char *user,
					      const char *pass, struct auth_client_reply *r)
{
	enum db_state db = refresh(ap);
	if (db == DB_UNREADABLE)
		return AUTH_CLIENT_TEMPFAIL;
	const struct user_ent *u = db == DB_LOADED ? lookup(ap, user) : NULL;
	if (u == NULL) {
		/* Spend the same effort for unknown users, so timing does
		 * not tell which users exist. */
		(void)passwd_verify("{SHA512-CRYPT}$6$mailroomdummy$", pass, 0);
		return AUTH_CLIENT_FAILED;
	}
	int v = passwd_verify(u->hash, pass, ap->set.allow_plain);
	if (v == 1 && strlen(u->user) <= AUTH_CLIENT_MAX_USER) {
		memcpy(r->user, u->user, strlen(u->user) + 1);
		return AUTH_CLIENT_OK;
	}
	if (v == -2) {
		log_error("auth: user=%s: out of memory checking the password", user);
		return AUTH_CLIENT_TEMPFAIL;
	}
	if (v == -1)
		log_warn("auth: user=%s has a password scheme that is not allowed", user);
	return AUTH_CLIENT_FAILED;
}

/* Split msg[0..len) at TABs into at most n fields (the last one takes the
 * rest, TABs and all). Returns the number of fields found. */
static int split(const char *msg, size_t len, int n, const char **f, size_t *flen)
{
	const char *p = msg, *end = msg + len;
	int i = 0;
	for (; i < n; i++) {
		const char *t = i < n - 1 ? memchr(p, '\t', (size_t)(end - p)) : NULL;
		f[i] = p;
		flen[i] = (size_t)((t != NULL ? t : end) - p);
		if (t == NULL)
			return i + 1;
		p = t + 1;
	}
	return i;
}

/* Copy field f[0..len) into buf (size bytes) as a string if it is a valid
 * name: 1..size-1 bytes, no control characters. */
static bool take(char *buf, size_t size, const char *f, size_t len)
{
	if (!field_ok(f, len) || len >= size)
		return false;
	memcpy(buf, f, len);
	buf[len] = '\0';
	return true;
}

/* V: verify a password; see auth_penalty.h for the delays and refusals,
 * auth_conns.h for the sessions. */
static void handle_verify(struct auth_proc *ap, const void *owner, unsigned id,
			  const char *rest, size_t len, struct auth_client_reply *r,
			  unsigned *delay_r)
{
	char service[32], ip[64], user[AUTH_CLIENT_MAX_USER + 1], pass[AUTH_MAX_MSG + 1];
	const char *f[4];
	size_t flen[4];
	/* service, ip, user, password (the rest). A user name too long for
	 * DATA/passwd (IMAP LOGIN takes any length) is simply no user. */
	if (split(rest, len, 4, f, flen) < 4 || memchr(rest, '\0', len) != NULL ||
	    !take(service, sizeof(service), f[0], flen[0]) || !take(ip, sizeof(ip), f[1], flen[1]) ||
	    !take(user, sizeof(user), f[2], flen[2])) {
		log_warn("auth: malformed or over-long request %u from a worker: failed", id);
		r->result = AUTH_CLIENT_FAILED;
		return;
	}
	memcpy(pass, f[3], flen[3]);
	pass[flen[3]] = '\0';

	time_t now = time(NULL);
	if (auth_penalty_check(ap->penalty, user, ip, now, delay_r)) {
		r->result = AUTH_CLIENT_RATE_LIMITED;
	} else {
		r->result = check_password(ap, user, pass, r);
		if (r->result == AUTH_CLIENT_FAILED)
			*delay_r = auth_penalty_failed(ap->penalty, user, ip, pass, now);
		else if (r->result == AUTH_CLIENT_OK)
			auth_penalty_succeeded(ap->penalty, user, ip, now);
	}
	explicit_bzero(pass, sizeof(pass));
	unsigned max = ap->set.max_userip_connections;
	if (r->result == AUTH_CLIENT_OK && max != 0) {
		/* Counted under the canonical name: "Alice" and "alice" are
		 * the same sessions if DATA/passwd says so. */
		if (auth_conns_count(ap->conns, service, r->user, ip) >= max) {
			r->result = AUTH_CLIENT_LIMIT;
			r->user[0] = '\0';
		} else if (auth_conns_add(ap->conns, owner, id, service, r->user, ip) < 0) {
			log_warn("auth: user=%s ip=%s: session not counted (table full or out of "
				 "memory)", user, ip);
		}
	}
	if (r->result == AUTH_CLIENT_TEMPFAIL)
		*delay_r = 0; /* nothing to slow down: the password was not checked */
	log_info("auth: user=%s ip=%s %s", user, ip, result_name(r->result));
}

/* U: is user in the database? No password, so no penalty either. */
static void handle_lookup(struct auth_proc *ap, unsigned id, const char *rest, size_t len,
			  struct auth_client_reply *r)
{
	char user[AUTH_CLIENT_MAX_USER + 1];
	if (!take(user, sizeof(user), rest, len)) {
		if (!field_ok(rest, len))
			log_warn("auth: malformed lookup %u from a worker: no such user", id);
		r->result = AUTH_CLIENT_FAILED; /* too long is no user either */
		return;
	}
	enum db_state db = refresh(ap);
	if (db == DB_UNREADABLE) {
		r->result = AUTH_CLIENT_TEMPFAIL;
		return;
	}
	const struct user_ent *u = db == DB_LOADED ? lookup(ap, user) : NULL;
	if (u == NULL || strlen(u->user) > AUTH_CLIENT_MAX_USER) {
		r->result = AUTH_CLIENT_FAILED;
		return;
	}
	memcpy(r->user, u->user, strlen(u->user) + 1);
	r->result = AUTH_CLIENT_OK;
}

int auth_proc_handle(struct auth_proc *ap, const void *owner, const char *msg, size_t len,
		     unsigned *id_r, struct auth_client_reply *reply_r, unsigned *delay_ms_r)
{
	uint64_t id;
	struct auth_client_reply r;
	unsigned delay = 0;
	/* type \t id [\t the rest] */
	if (len < 2 || len > AUTH_MAX_MSG || msg[1] != '\t' ||
	    (msg[0] != 'V' && msg[0] != 'U' && msg[0] != 'E'))
		return -1;
	const char *idp = msg + 2, *end = msg + len;
	const char *tab = memchr(idp, '\t', (size_t)(end - idp));
	size_t idlen = (size_t)((tab != NULL ? tab : end) - idp);
	if (strnum_u64(idp, idlen, UINT32_MAX, &id) < 0 || id == 0)
		return -1;
	if (msg[0] == 'E') {
		/* Nothing to answer; an E with more fields is not ours. */
		if (tab == NULL)
			auth_conns_remove(ap->conns, owner, (unsigned)id);
		return 1;
	}
	memset(&r, 0, sizeof(r));
	/* From here on the request has an id, so it gets an answer: a worker
	 * must never wait for one that does not come. */
	const char *rest = tab != NULL ? tab + 1 : end;
	size_t rlen = (size_t)(end - rest);
	if (tab == NULL) {
		log_warn("auth: malformed request %llu from a worker: failed",
			 (unsigned long long)id);
		r.result = AUTH_CLIENT_FAILED;
	} else if (msg[0] == 'V') {
		handle_verify(ap, owner, (unsigned)id, rest, rlen, &r, &delay);
	} else {
		handle_lookup(ap, (unsigned)id, rest, rlen, &r);
	}
	*id_r = (unsigned)id;
	*reply_r = r;
	*delay_ms_r = delay;
	return 0;
}

void auth_proc_drop_owner(struct auth_proc *ap, const void *owner)
{
	auth_conns_drop_owner(ap->conns, owner);
}

static void delayed_free(struct auth_proc *ap, struct delayed *d)
{
	for (struct delayed **pp = &ap->delayed; *pp != NULL; pp = &(*pp)->next)
		if (*pp == d) {
			*pp = d->next;
			break;
		}
	event_free(d->timer);
	free(d);
}

static void delayed_cb(evutil_socket_t fd, short what, void *arg)
{
	struct delayed *d = arg;
	(void)fd;
	(void)what;
	if (send(d->ws->fd, d->reply, d->len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		log_warn("auth: cannot answer a worker: %s", strerror(errno));
	delayed_free(d->ws->ap, d);
}

/* Send r, the answer to request id, to the worker after delay_ms (at once
 * if 0). Whatever goes wrong here, the worker gets an answer: a temporary
 * failure, at once, if the reply cannot be encoded or the delay cannot be
 * set up (out of memory). Never the answer itself without its delay, so
 * that a guesser gains nothing by exhausting memory. */
static void answer(struct auth_proc *ap, struct worker_sock *ws, unsigned id,
		   const struct auth_client_reply *r, unsigned delay_ms)
{
	static const struct auth_client_reply tempfail = { .result = AUTH_CLIENT_TEMPFAIL };
	struct delayed *d = calloc(1, sizeof(*d));
	char now[AUTH_MAX_MSG + 1];
	size_t len;

	if (d == NULL)
		goto tempfail;
	if (auth_client_reply_format(id, r, d->reply, sizeof(d->reply), &d->len) < 0) {
		log_error("auth: cannot encode the answer to request %u (user %s)", id, r->user);
		goto tempfail;
	}
	if (delay_ms == 0) {
		if (send(ws->fd, d->reply, d->len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			log_warn("auth: cannot answer a worker: %s", strerror(errno));
		free(d);
		return;
	}
	struct timeval tv = { (time_t)(delay_ms / 1000), (suseconds_t)(delay_ms % 1000) * 1000 };
	d->ws = ws;
	d->timer = evtimer_new(ap->base, delayed_cb, d);
	if (d->timer == NULL || evtimer_add(d->timer, &tv) < 0)
		goto tempfail;
	d->next = ap->delayed;
	ap->delayed = d;
	return;
tempfail:
	if (d != NULL && d->timer != NULL)
		event_free(d->timer);
	free(d);
	/* A registered session would stay counted: the worker never learns
	 * of it. */
	auth_conns_remove(ap->conns, ws, id);
	/* A temporary failure always encodes (id is never 0). */
	if (auth_client_reply_format(id, &tempfail, now, sizeof(now), &len) == 0 &&
	    send(ws->fd, now, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		log_warn("auth: cannot answer a worker: %s", strerror(errno));
}

/* The worker's connection closed (it exited or died): forget its
 * sessions and its waiting answers, and close the socket. */
static void worker_gone(struct auth_proc *ap, struct worker_sock *ws)
{
	auth_conns_drop_owner(ap->conns, ws);
	for (struct delayed *d = ap->delayed, *next; d != NULL; d = next) {
		next = d->next;
		if (d->ws == ws)
			delayed_free(ap, d);
	}
	for (struct worker_sock **pp = &ap->workers; *pp != NULL; pp = &(*pp)->next)
		if (*pp == ws) {
			*pp = ws->next;
			break;
		}
	event_free(ws->ev);
	close(ws->fd);
	free(ws);
}

static void worker_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker_sock *ws = arg;
	struct auth_proc *ap = ws->ap;
	char msg[AUTH_MAX_MSG + 1];
	struct auth_client_reply r;
	unsigned id, delay;
	(void)what;
	/* One byte more than a request may have: an over-long one is seen as
	 * such, not cut to a valid-looking prefix. */
	ssize_t n = recv(fd, msg, sizeof(msg), MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		worker_gone(ap, ws);
		return;
	}
	int ret = auth_proc_handle(ap, ws, msg, (size_t)n, &id, &r, &delay);
	explicit_bzero(msg, sizeof(msg));
	if (ret < 0) {
		log_warn("auth: malformed request from a worker (%zd bytes, no id to answer)", n);
		return;
	}
	if (ret == 0)
		answer(ap, ws, id, &r, delay);
}

struct auth_proc *auth_proc_new(struct event_base *base, const struct auth_proc_settings *set,
				int (*open_passwd)(void *ctx), void *ctx)
{
	struct auth_proc *ap = calloc(1, sizeof(*ap));
	if (ap == NULL)
		return NULL;
	struct auth_penalty_settings ps = {
		.base_ms = set->failure_delay_ms,
		.max_ms = set->failure_max_delay_ms,
		.forget_secs = set->failure_forget_secs,
		.pair_max_failures = set->max_failures,
		.ip_max_failures = set->ip_max_failures,
	};
	ap->base = base;
	ap->set = *set;
	if (ap->set.passwd_path == NULL)
		ap->set.passwd_path = "DATA/passwd";
	ap->open_passwd = open_passwd;
	ap->ctx = ctx;
	ap->penalty = auth_penalty_new(&ps);
	ap->conns = auth_conns_new();
	if (ap->penalty == NULL || ap->conns == NULL) {
		auth_proc_free(&ap);
		return NULL;
	}
	return ap;
}

int auth_proc_add_worker(struct auth_proc *ap, int fd)
{
	struct worker_sock *ws = calloc(1, sizeof(*ws));
	if (ws == NULL)
		return -1;
	ws->ap = ap;
	ws->fd = fd;
	ws->ev = event_new(ap->base, fd, EV_READ | EV_PERSIST, worker_cb, ws);
	if (ws->ev == NULL || event_add(ws->ev, NULL) < 0) {
		if (ws->ev)
			event_free(ws->ev);
		free(ws);
		return -1;
	}
	ws->next = ap->workers;
	ap->workers = ws;
	return 0;
}

void auth_proc_free(struct auth_proc **app)
{
	struct auth_proc *ap = *app;
	if (ap == NULL)
		return;
	while (ap->delayed != NULL)
		delayed_free(ap, ap->delayed);
	while (ap->workers != NULL) {
		struct worker_sock *ws = ap->workers;
		ap->workers = ws->next;
		event_free(ws->ev);
		close(ws->fd);
		free(ws);
	}
	free_users(ap);
	auth_penalty_free(&ap->penalty);
	auth_conns_free(&ap->conns);
	free(ap);
	*app = NULL;
}
