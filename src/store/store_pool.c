/*
 * store_pool.c: the index connections a process keeps open between uses,
 * one per user at most: what lets a worker's sessions and deliveries of
 * one user share one SQLite connection instead of each opening its own.
 *
 * Design note. Opening a user's index costs more than the work most
 * deliveries do with it: the schema is read, and the first connection to a
 * WAL database in any process rebuilds its wal-index (-shm) by reading the
 * whole WAL. An LMTP transaction to 100 users opened every index twice
 * (RCPT's quota check, then the delivery), and a login right after a
 * delivery opened it once more. So a connection that its store_user no
 * longer needs (store_user_close) comes here instead of being closed, and
 * the next store_user of that user takes it (store_index.c, on first use).
 * A session that waits in IDLE closes its connection instead
 * (store_user_release_index): it may wait for hours, and a user has many
 * such sessions, which would fill the pool with what nobody needs soon.
 *
 * A connection is used by one store_user, hence one thread, at a time: a
 * connection in use is not in the pool, so two sessions of one user that
 * run at the same moment still have two (the second is closed when given
 * back while the first waits here: one per user). What comes back has no
 * transaction and no statement in progress (store_index_release resets
 * them) and has given back its page cache (sqlite3_db_release_memory), so
 * an idle connection costs little memory.
 *
 * The disk stays the truth: a connection is taken only if the user's folder
 * is still the directory it was opened through and index.sqlite, its -wal
 * and -shm are still the files it has open (an admin who deleted or replaced
 * the index, a process that moved a damaged one aside, or the user, gets a
 * fresh connection, as with no pool). At most `max`
 * connections wait, the least recently used are closed first, and none
 * waits longer than `ttl` seconds (checked whenever the pool is used).
 *
 * Threads: the job threads of a worker take and give concurrently; one
 * mutex guards the list, and connections are closed outside it.
 */
#include "store/store_int.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct pooled {
	char user[STORE_MAX_USERNAME + 1];
	struct store_index_conn conn;
	time_t since;
	struct pooled *prev, *next; /* most recently given first */
};

struct store_pool {
	pthread_mutex_t lock;
	struct pooled *head, *tail;
	unsigned n, max, ttl;
};

void store_pool_conn_close(struct store_index_conn *c)
{
	if (c->stmts != NULL) {
		for (int i = 0; i < STORE_STMT_CACHE; i++)
			sqlite3_finalize(c->stmts[i].stmt);
		free(c->stmts);
	}
	if (c->db != NULL)
		sqlite3_close(c->db);
	if (c->dir_fd >= 0)
		close(c->dir_fd);
	memset(c, 0, sizeof(*c));
	c->dir_fd = -1;
}

struct store_pool *store_pool_new(unsigned max, unsigned ttl)
{
	struct store_pool *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	pthread_mutex_init(&p->lock, NULL);
	p->max = max;
	p->ttl = ttl;
	return p;
}

static void unlink_entry(struct store_pool *p, struct pooled *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		p->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		p->tail = e->prev;
	p->n--;
}

static void close_list(struct pooled *list)
{
	while (list != NULL) {
		struct pooled *next = list->next;
		store_pool_conn_close(&list->conn);
		free(list);
		list = next;
	}
}

/* Under the lock: take out what is over max or older than ttl; the caller
 * closes the returned list after unlocking. */
static struct pooled *expire(struct store_pool *p, time_t now)
{
	struct pooled *out = NULL;
	while (p->tail != NULL &&
	       (p->n > p->max || now - p->tail->since > (time_t)p->ttl)) {
		struct pooled *e = p->tail;
		unlink_entry(p, e);
		e->next = out;
		out = e;
	}
	return out;
}

/* Is the file name in root_fd still inode ino (0: not recorded, any)? */
static bool same_file(int root_fd, const char *name, dev_t dev, ino_t ino)
{
	struct stat st;
	if (ino == 0)
		return true;
	return fstatat(root_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == dev &&
	       st.st_ino == ino;
}

/* Is c still the index of the user whose folder is root_fd? The -wal and
 * -shm count too: a connection that kept a -wal or -shm that was deleted or
 * moved aside (store_index.c heals by moving all three) would write where
 * no other connection looks. */
int store_pool_conn_valid(const struct store_index_conn *c, int root_fd)
{
	struct stat a, b;
	if (fstat(c->dir_fd, &a) < 0 || fstat(root_fd, &b) < 0 || a.st_dev != b.st_dev ||
	    a.st_ino != b.st_ino)
		return 0;
	return c->ino != 0 && same_file(root_fd, "index.sqlite", c->dev, c->ino) &&
	       same_file(root_fd, "index.sqlite-wal", c->dev, c->wal_ino) &&
	       same_file(root_fd, "index.sqlite-shm", c->dev, c->shm_ino);
}

int store_pool_take(struct store_pool *p, const char *user, int root_fd,
		    struct store_index_conn *conn_r)
{
	struct pooled *found = NULL;
	time_t now = time(NULL);
	pthread_mutex_lock(&p->lock);
	struct pooled *old = expire(p, now);
	for (struct pooled *e = p->head; e != NULL; e = e->next)
		if (strcmp(e->user, user) == 0) {
			unlink_entry(p, e);
			e->next = NULL;
			found = e;
			break;
		}
	pthread_mutex_unlock(&p->lock);
	close_list(old);
	if (found == NULL)
		return 0;
	if (!store_pool_conn_valid(&found->conn, root_fd)) {
		close_list(found);
		return 0;
	}
	*conn_r = found->conn;
	free(found);
	return 1;
}

void store_pool_give(struct store_pool *p, const char *user, struct store_index_conn *conn)
{
	struct pooled *e = p->max > 0 ? calloc(1, sizeof(*e)) : NULL;
	if (e == NULL) {
		store_pool_conn_close(conn);
		return;
	}
	snprintf(e->user, sizeof(e->user), "%s", user);
	e->conn = *conn;
	e->since = time(NULL);
	memset(conn, 0, sizeof(*conn));
	conn->dir_fd = -1;
	pthread_mutex_lock(&p->lock);
	struct pooled *dup = NULL;
	for (struct pooled *x = p->head; x != NULL; x = x->next)
		if (strcmp(x->user, user) == 0) {
			dup = x; /* one per user: the older one goes */
			unlink_entry(p, x);
			dup->next = NULL;
			break;
		}
	e->prev = NULL;
	e->next = p->head;
	if (p->head)
		p->head->prev = e;
	p->head = e;
	if (p->tail == NULL)
		p->tail = e;
	p->n++;
	struct pooled *old = expire(p, e->since);
	pthread_mutex_unlock(&p->lock);
	close_list(dup);
	close_list(old);
}

void store_pool_free(struct store_pool **pp)
{
	struct store_pool *p = *pp;
	if (p == NULL)
		return;
	close_list(p->head);
	pthread_mutex_destroy(&p->lock);
	free(p);
	*pp = NULL;
}
