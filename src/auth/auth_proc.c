/* auth_proc.c: the auth process; see auth_proc.h. */
#include "auth/auth_proc.h"

#include <errno.h>
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
#include "auth/passwd.h"
#include "lib/log.h"
#include "lib/strnum.h"

#define RATE_SLOTS 4096
#define RATE_WINDOW 60

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
};

struct rate_slot {
	unsigned long key;
	time_t start;
	unsigned count;
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
	struct rate_slot rate[RATE_SLOTS];
	struct worker_sock *workers;
	struct delayed *delayed;
};

static int user_cmp(const void *a, const void *b)
{
	return strcmp(((const struct user_ent *)a)->user, ((const struct user_ent *)b)->user);
}

static void free_users(struct auth_proc *ap)
{
	for (size_t i = 0; i < ap->nusers; i++) {
		free(ap->users[i].user);
		explicit_bzero(ap->users[i].hash, strlen(ap->users[i].hash));
		free(ap->users[i].hash);
	}
	free(ap->users);
	ap->users = NULL;
	ap->nusers = 0;
}

/* Read the table from f into *users_r, *n_r (sorted by name). Returns 0, or
 * -1 with err set (ERR_TEMP) if the file cannot be read to its end or memory
 * runs out: half a table would turn the missing users' logins into plain
 * failures. */
static int load_users(FILE *f, struct user_ent **users_r, size_t *n_r, struct error *err)
{
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
		if (passwd_line_parse(line, (size_t)len, e, &why) < 0)
			continue;
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
	if (n > 1)
		qsort(users, n, sizeof(*users), user_cmp);
	*users_r = users;
	*n_r = n;
	users = NULL;
	n = 0;
	ret = 0;
fail:
	for (size_t i = 0; i < n; i++) {
		free(users[i].user);
		explicit_bzero(users[i].hash, strlen(users[i].hash));
		free(users[i].hash);
	}
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
	int r = load_users(f, &users, &n, &err);
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
	struct user_ent key = { (char *)(uintptr_t)user, NULL };
	if (ap->nusers == 0)
		return NULL;
	return bsearch(&key, ap->users, ap->nusers, sizeof(key), user_cmp);
}

static unsigned long hash_key(const char *kind, const char *s)
{
	unsigned long h = 5381;
	for (const char *p = kind; *p; p++)
		h = h * 33 + (unsigned char)*p;
	for (const char *p = s; *p; p++)
		h = h * 33 + (unsigned char)*p;
	return h ? h : 1;
}

static struct rate_slot *rate_slot(struct auth_proc *ap, const char *kind, const char *s)
{
	unsigned long k = hash_key(kind, s);
	struct rate_slot *slot = &ap->rate[k % RATE_SLOTS];
	time_t now = time(NULL);
	if (slot->key != k || now - slot->start >= RATE_WINDOW) {
		slot->key = k;
		slot->start = now;
		slot->count = 0;
	}
	return slot;
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
	}
	return "?";
}

/* Check user's password: OK (with the canonical name), FAILED, or TEMPFAIL
 * when it cannot be checked. Only FAILED counts towards the rate limit: a
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

int auth_proc_handle(struct auth_proc *ap, const char *msg, size_t len, unsigned *id_r,
		     struct auth_client_reply *reply_r)
{
	char ip[64], user[AUTH_CLIENT_MAX_USER + 1], pass[AUTH_MAX_MSG + 1];
	uint64_t id;
	struct auth_client_reply r;
	/* V \t id \t ip \t user \t password */
	if (len < 2 || len > AUTH_MAX_MSG || msg[0] != 'V' || msg[1] != '\t')
		return -1;
	/* f[i], flen[i]: id, ip, user; f[3]: the password, to the end. nf
	 * counts the fields followed by a TAB. */
	const char *f[4], *end = msg + len;
	size_t flen[3];
	int nf = 0;
	f[0] = msg + 2;
	for (; nf < 3; nf++) {
		const char *t = memchr(f[nf], '\t', (size_t)(end - f[nf]));
		flen[nf] = (size_t)((t != NULL ? t : end) - f[nf]);
		if (t == NULL)
			break;
		f[nf + 1] = t + 1;
	}
	if (strnum_u64(f[0], flen[0], UINT32_MAX, &id) < 0 || id == 0)
		return -1;
	memset(&r, 0, sizeof(r));
	/* From here on the request has an id, so it gets an answer: a worker
	 * must never wait for one that does not come. A user name too long
	 * for DATA/passwd (IMAP LOGIN takes any length) is simply no user. */
	if (nf < 3 || memchr(msg, '\0', len) != NULL || !field_ok(f[1], flen[1]) ||
	    flen[1] >= sizeof(ip) || !field_ok(f[2], flen[2]) || flen[2] >= sizeof(user)) {
		log_warn("auth: malformed or over-long request %llu from a worker: failed",
			 (unsigned long long)id);
		r.result = AUTH_CLIENT_FAILED;
		goto out;
	}
	memcpy(ip, f[1], flen[1]);
	ip[flen[1]] = '\0';
	memcpy(user, f[2], flen[2]);
	user[flen[2]] = '\0';
	size_t plen = len - (size_t)(f[3] - msg);
	memcpy(pass, f[3], plen);
	pass[plen] = '\0';

	struct rate_slot *by_ip = rate_slot(ap, "ip:", ip);
	struct rate_slot *by_user = rate_slot(ap, "user:", user);
	if (ap->set.max_failures != 0 &&
	    (by_ip->count >= ap->set.max_failures || by_user->count >= ap->set.max_failures)) {
		r.result = AUTH_CLIENT_RATE_LIMITED;
	} else {
		r.result = check_password(ap, user, pass, &r);
		if (r.result == AUTH_CLIENT_FAILED) {
			by_ip->count++;
			by_user->count++;
		}
	}
	explicit_bzero(pass, sizeof(pass));
	log_info("auth: user=%s ip=%s %s", user, ip, result_name(r.result));
out:
	*id_r = (unsigned)id;
	*reply_r = r;
	return 0;
}

static void delayed_cb(evutil_socket_t fd, short what, void *arg)
{
	struct delayed *d = arg;
	struct auth_proc *ap = d->ws->ap;
	(void)fd;
	(void)what;
	if (send(d->ws->fd, d->reply, d->len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		log_warn("auth: cannot answer a worker: %s", strerror(errno));
	for (struct delayed **pp = &ap->delayed; *pp != NULL; pp = &(*pp)->next)
		if (*pp == d) {
			*pp = d->next;
			break;
		}
	event_free(d->timer);
	free(d);
}

/* Send r, the answer to request id, to the worker: at once when it is ok (or
 * there is no delay), else after failure_delay_ms. Whatever goes wrong here,
 * the worker gets an answer: a temporary failure, at once, if the reply
 * cannot be encoded or the delay cannot be set up (out of memory). Never the
 * failure itself without its delay, so that a guesser gains nothing by
 * exhausting memory. */
static void answer(struct auth_proc *ap, struct worker_sock *ws, unsigned id,
		   const struct auth_client_reply *r)
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
	if (r->result == AUTH_CLIENT_OK || ap->set.failure_delay_ms == 0) {
		if (send(ws->fd, d->reply, d->len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			log_warn("auth: cannot answer a worker: %s", strerror(errno));
		free(d);
		return;
	}
	struct timeval tv = { (time_t)(ap->set.failure_delay_ms / 1000),
			      (suseconds_t)(ap->set.failure_delay_ms % 1000) * 1000 };
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
	/* A temporary failure always encodes (id is never 0). */
	if (auth_client_reply_format(id, &tempfail, now, sizeof(now), &len) == 0 &&
	    send(ws->fd, now, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		log_warn("auth: cannot answer a worker: %s", strerror(errno));
}

static void worker_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker_sock *ws = arg;
	struct auth_proc *ap = ws->ap;
	char msg[AUTH_MAX_MSG + 1];
	struct auth_client_reply r;
	unsigned id;
	(void)what;
	/* One byte more than a request may have: an over-long one is seen as
	 * such, not cut to a valid-looking prefix. */
	ssize_t n = recv(fd, msg, sizeof(msg), MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		event_del(ws->ev); /* worker gone; its socket stays until free */
		return;
	}
	int ret = auth_proc_handle(ap, msg, (size_t)n, &id, &r);
	explicit_bzero(msg, sizeof(msg));
	if (ret < 0) {
		log_warn("auth: malformed request from a worker (%zd bytes, no id to answer)", n);
		return;
	}
	answer(ap, ws, id, &r);
}

struct auth_proc *auth_proc_new(struct event_base *base, const struct auth_proc_settings *set,
				int (*open_passwd)(void *ctx), void *ctx)
{
	struct auth_proc *ap = calloc(1, sizeof(*ap));
	if (ap == NULL)
		return NULL;
	ap->base = base;
	ap->set = *set;
	ap->open_passwd = open_passwd;
	ap->ctx = ctx;
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
	while (ap->delayed != NULL) {
		struct delayed *d = ap->delayed;
		ap->delayed = d->next;
		event_free(d->timer);
		free(d);
	}
	while (ap->workers != NULL) {
		struct worker_sock *ws = ap->workers;
		ap->workers = ws->next;
		event_free(ws->ev);
		close(ws->fd);
		free(ws);
	}
	free_users(ap);
	free(ap);
	*app = NULL;
}
