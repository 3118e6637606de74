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
	int loaded;
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

/* Reread DATA/passwd if it changed; keep the old table if it cannot be read. */
static void refresh(struct auth_proc *ap)
{
	time_t now = time(NULL);
	if (ap->loaded && now == ap->last_check)
		return;
	ap->last_check = now;
	int fd = ap->open_passwd(ap->ctx);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		if (fd >= 0)
			close(fd);
		if (!ap->loaded)
			log_warn("auth: cannot open the passwd file; no user can log in");
		return;
	}
	if (ap->loaded && st.st_ino == ap->ino && st.st_size == ap->size &&
	    st.st_mtim.tv_sec == ap->mtime.tv_sec && st.st_mtim.tv_nsec == ap->mtime.tv_nsec) {
		close(fd);
		return;
	}
	FILE *f = fdopen(fd, "r");
	if (f == NULL) {
		close(fd);
		return;
	}
	struct user_ent *users = NULL;
	size_t n = 0, cap = 0;
	char *line = NULL;
	size_t lcap = 0;
	ssize_t len;
	struct passwd_entry *e = malloc(sizeof(*e));
	while (e != NULL && (len = getline(&line, &lcap, f)) >= 0) {
		const char *why;
		if (passwd_line_parse(line, (size_t)len, e, &why) < 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			struct user_ent *p = realloc(users, cap * sizeof(*p));
			if (p == NULL)
				break;
			users = p;
		}
		users[n].user = strdup(e->user);
		users[n].hash = strdup(e->hash);
		if (users[n].user == NULL || users[n].hash == NULL) {
			free(users[n].user);
			free(users[n].hash);
			break;
		}
		n++;
	}
	if (e != NULL)
		explicit_bzero(e, sizeof(*e));
	free(e);
	free(line);
	fclose(f);
	if (n > 1)
		qsort(users, n, sizeof(*users), user_cmp);
	free_users(ap);
	ap->users = users;
	ap->nusers = n;
	ap->ino = st.st_ino;
	ap->size = st.st_size;
	ap->mtime = st.st_mtim;
	ap->loaded = 1;
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

int auth_proc_handle(struct auth_proc *ap, const char *msg, unsigned long len, char *reply,
		     int *ok_r)
{
	char ip[64], user[256];
	uint64_t id;
	/* V \t id \t ip \t user \t password */
	if (len < 2 || len > AUTH_MAX_MSG || msg[0] != 'V' || msg[1] != '\t' ||
	    memchr(msg, '\0', len) != NULL)
		return -1;
	const char *f[4];
	size_t flen[3];
	f[0] = msg + 2;
	for (int i = 0; i < 3; i++) {
		const char *t = memchr(f[i], '\t', len - (size_t)(f[i] - msg));
		if (t == NULL)
			return -1;
		flen[i] = (size_t)(t - f[i]);
		f[i + 1] = t + 1;
	}
	size_t plen = len - (size_t)(f[3] - msg);
	if (strnum_u64(f[0], flen[0], UINT32_MAX, &id) < 0 || !field_ok(f[1], flen[1]) ||
	    flen[1] >= sizeof(ip) || !field_ok(f[2], flen[2]) || flen[2] >= sizeof(user))
		return -1;
	memcpy(ip, f[1], flen[1]);
	ip[flen[1]] = '\0';
	memcpy(user, f[2], flen[2]);
	user[flen[2]] = '\0';
	char pass[AUTH_MAX_MSG + 1];
	memcpy(pass, f[3], plen);
	pass[plen] = '\0';

	const char *reason = "authentication failed";
	int ok = 0;
	struct rate_slot *by_ip = rate_slot(ap, "ip:", ip);
	struct rate_slot *by_user = rate_slot(ap, "user:", user);
	if (ap->set.max_failures != 0 &&
	    (by_ip->count >= ap->set.max_failures || by_user->count >= ap->set.max_failures)) {
		reason = "too many failures, try again later";
	} else {
		refresh(ap);
		const struct user_ent *u = lookup(ap, user);
		if (u != NULL) {
			int v = passwd_verify(u->hash, pass, ap->set.allow_plain);
			if (v == 1)
				ok = 1;
			else if (v < 0)
				log_warn("auth: user=%s has a password scheme that is not allowed", user);
		} else {
			/* Spend the same effort for unknown users, so timing does
			 * not tell which users exist. */
			(void)passwd_verify("{SHA512-CRYPT}$6$mailroomdummy$", pass, 0);
		}
		if (!ok) {
			by_ip->count++;
			by_user->count++;
		}
	}
	explicit_bzero(pass, sizeof(pass));
	log_info("auth: user=%s ip=%s %s", user, ip, ok ? "ok" : reason);
	snprintf(reply, AUTH_MAX_MSG + 1, "%c\t%llu\t%s", ok ? 'O' : 'F', (unsigned long long)id,
		 ok ? user : reason);
	*ok_r = ok;
	return 0;
}

static void delayed_cb(evutil_socket_t fd, short what, void *arg)
{
	struct delayed *d = arg;
	struct auth_proc *ap = d->ws->ap;
	(void)fd;
	(void)what;
	send(d->ws->fd, d->reply, d->len, MSG_NOSIGNAL | MSG_DONTWAIT);
	for (struct delayed **pp = &ap->delayed; *pp != NULL; pp = &(*pp)->next)
		if (*pp == d) {
			*pp = d->next;
			break;
		}
	event_free(d->timer);
	free(d);
}

static void worker_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker_sock *ws = arg;
	struct auth_proc *ap = ws->ap;
	char msg[AUTH_MAX_MSG + 1];
	(void)what;
	ssize_t n = recv(fd, msg, sizeof(msg), MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		event_del(ws->ev); /* worker gone; its socket stays until free */
		return;
	}
	struct delayed *d = calloc(1, sizeof(*d));
	int ok = 0;
	if (d == NULL)
		return;
	if (n > AUTH_MAX_MSG || auth_proc_handle(ap, msg, (unsigned long)n, d->reply, &ok) < 0) {
		log_warn("auth: malformed request from a worker (%zd bytes)", n);
		explicit_bzero(msg, sizeof(msg));
		free(d);
		return;
	}
	explicit_bzero(msg, sizeof(msg));
	d->len = strlen(d->reply);
	d->ws = ws;
	if (ok || ap->set.failure_delay_ms == 0) {
		send(fd, d->reply, d->len, MSG_NOSIGNAL | MSG_DONTWAIT);
		free(d);
		return;
	}
	struct timeval tv = { (time_t)(ap->set.failure_delay_ms / 1000),
			      (suseconds_t)(ap->set.failure_delay_ms % 1000) * 1000 };
	d->timer = evtimer_new(ap->base, delayed_cb, d);
	if (d->timer == NULL) {
		free(d);
		return;
	}
	d->next = ap->delayed;
	ap->delayed = d;
	evtimer_add(d->timer, &tv);
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
