/*
 * store_notify.c: tell waiting sessions that a mailbox changed (IDLE push).
 *
 * Design note. Every change the store makes to a mailbox ends in a commit to
 * the user's index (its -wal file is written), and changes made by others
 * land in cur/ or new/. One inotify instance per process watches, for each
 * registered mailbox, its cur/ and new/ directories and its user's
 * index.sqlite-wal; the caller polls store_notify_fd() in its event loop and
 * calls store_notify_read(), which reports every owner whose mailbox may
 * have changed. The owner then syncs (cheap when nothing changed). No
 * polling loop anywhere; a watch costs the kernel about a kilobyte.
 *
 * store_notify_add_user() watches a user's root directory instead: one
 * watch sees the index and its WAL change (IN_MODIFY reports files inside a
 * watched directory), mailbox directories appear, go and get renamed, and
 * the subscriptions file be replaced. It is for NOTIFY (RFC 5465), which
 * follows all of a user's mailboxes: the kernel gives every registration
 * of the same directory on one inotify instance the same watch descriptor,
 * so all sessions of a user in a worker share one kernel watch, and each
 * registration costs only its watch_ent.
 *
 * Watching the WAL rather than cur/ alone matters: a delivery links the file
 * into cur/ before it commits the row, so a reader woken by the link could
 * look too early; the commit that follows writes the WAL and wakes it again.
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

struct watch_ent {
	unsigned id;
	int wd[3];
	void *owner;
	int fired; /* changed: its owner is to be told (store_notify_read) */
	int user;  /* a user's root directory (store_notify_add_user) */
	struct watch_ent *next;
};

struct store_notify {
	int fd;
	unsigned next_id;
	struct watch_ent *ents;
};

struct store_notify *store_notify_new(void)
{
	struct store_notify *n = calloc(1, sizeof(*n));
	if (n == NULL)
		return NULL;
	n->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (n->fd < 0) {
		free(n);
		return NULL;
	}
	return n;
}

void store_notify_free(struct store_notify **np)
{
	struct store_notify *n = *np;
	if (n == NULL)
		return;
	while (n->ents != NULL) {
		struct watch_ent *e = n->ents;
		n->ents = e->next;
		free(e);
	}
	close(n->fd);
	free(n);
	*np = NULL;
}

int store_notify_fd(const struct store_notify *n)
{
	return n->fd;
}

unsigned store_notify_add(struct store_notify *n, struct store_mailbox *mbox, void *owner)
{
	struct error err;
	if (store_fds_open(mbox, &err) < 0)
		return 0;
	char path[3][80];
	const uint32_t mask = IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_MODIFY;
	struct watch_ent *e = calloc(1, sizeof(*e));
	if (e == NULL)
		return 0;
	snprintf(path[0], sizeof(path[0]), "/proc/self/fd/%d", mbox->cur_fd);
	snprintf(path[1], sizeof(path[1]), "/proc/self/fd/%d", mbox->new_fd);
	snprintf(path[2], sizeof(path[2]), "/proc/self/fd/%d/index.sqlite-wal", mbox->user->root_fd);
	for (int i = 0; i < 3; i++) {
		e->wd[i] = inotify_add_watch(n->fd, path[i], i == 2 ? IN_MODIFY : mask);
		if (e->wd[i] < 0 && i < 2) {
			for (int j = 0; j < i; j++)
				if (e->wd[j] >= 0) {
					int shared = 0;
					for (struct watch_ent *o = n->ents; o; o = o->next)
						for (int k = 0; k < 3; k++)
							shared |= o->wd[k] == e->wd[j];
					if (!shared)
						inotify_rm_watch(n->fd, e->wd[j]);
				}
			free(e);
			return 0;
		}
	}
	if (++n->next_id == 0)
		n->next_id = 1;
	e->id = n->next_id;
	e->owner = owner;
	e->next = n->ents;
	n->ents = e;
	return e->id;
}

unsigned store_notify_add_user(struct store_notify *n, struct store_user *user, void *owner)
{
	char path[64];
	const uint32_t mask = IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_MODIFY;
	struct watch_ent *e = calloc(1, sizeof(*e));
	if (e == NULL)
		return 0;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", user->root_fd);
	e->wd[0] = inotify_add_watch(n->fd, path, mask);
	e->wd[1] = e->wd[2] = -1;
	e->user = 1;
	if (e->wd[0] < 0) {
		free(e);
		return 0;
	}
	if (++n->next_id == 0)
		n->next_id = 1;
	e->id = n->next_id;
	e->owner = owner;
	e->next = n->ents;
	n->ents = e;
	return e->id;
}

void store_notify_remove(struct store_notify *n, unsigned id)
{
	for (struct watch_ent **pp = &n->ents; *pp != NULL; pp = &(*pp)->next) {
		if ((*pp)->id != id)
			continue;
		struct watch_ent *e = *pp;
		*pp = e->next;
		/* A watch descriptor is shared by every owner of the same inode:
		 * remove it only when nobody else uses it. */
		for (int i = 0; i < 3; i++) {
			if (e->wd[i] < 0)
				continue;
			int shared = 0;
			for (struct watch_ent *o = n->ents; o != NULL && !shared; o = o->next)
				for (int k = 0; k < 3; k++)
					shared |= o->wd[k] == e->wd[i];
			if (!shared)
				inotify_rm_watch(n->fd, e->wd[i]);
		}
		free(e);
		return;
	}
}

/* Of what happens in a user's root directory, what is a change: a commit
 * (the WAL written), a mailbox directory created, removed or renamed, the
 * subscriptions replaced. Not the rest: a reader's checkpoint writes the
 * database and removes the WAL, and an owner that reads the index on every
 * wakeup would otherwise wake itself for ever. */
static int user_event_counts(const struct inotify_event *ev)
{
	if (ev->len == 0)
		return 0;
	if (ev->mask & IN_ISDIR)
		return 1;
	if (strcmp(ev->name, "index.sqlite-wal") == 0)
		return (ev->mask & IN_MODIFY) != 0;
	return strcmp(ev->name, "subscriptions") == 0 && (ev->mask & (IN_MOVED_TO | IN_DELETE));
}

void store_notify_read(struct store_notify *n, void (*cb)(void *owner))
{
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	for (;;) {
		ssize_t len = read(n->fd, buf, sizeof(buf));
		if (len <= 0)
			return;
		for (char *p = buf; p < buf + len;) {
			const struct inotify_event *ev = (const struct inotify_event *)(void *)p;
			p += sizeof(*ev) + ev->len;
			/* Mark every owner of this watch first, then call them: an
			 * owner may unregister (itself or others) inside cb. */
			for (struct watch_ent *e = n->ents; e != NULL; e = e->next)
				for (int i = 0; i < 3; i++)
					if (e->wd[i] == ev->wd && (!e->user || user_event_counts(ev)))
						e->fired = 1;
		}
		for (;;) {
			struct watch_ent *e = n->ents;
			while (e != NULL && !e->fired)
				e = e->next;
			if (e == NULL)
				break;
			e->fired = 0;
			cb(e->owner);
		}
	}
}
