/*
 * store_lock.c: the store's locks.
 *
 * Two kinds, both flock(2) on a directory, so they need no lock file, move
 * with a renamed mailbox and vanish with a crashed process:
 *  - the user's root directory: taken for changes to the set of mailboxes
 *    (create, delete, rename, subscriptions, UIDVALIDITY allocation, the
 *    healing of a damaged mailroom-box or mailroom-uidvalidity); it nests;
 *  - a mailbox directory: taken for any change to that mailbox's messages
 *    (UID and modseq allocation, link, rename, unlink, reconcile). Holding it
 *    across the link of a new message is what keeps UIDs appearing in
 *    ascending order to every reader. It nests (lock_depth): an operation
 *    that holds it may call another that takes it.
 * A lock is waited for up to lock_timeout seconds, then the operation fails
 * with ERR_TEMP ("lock timeout"). flock locks belong to an open file
 * description, so one process must not hold two store_mailbox objects of the
 * same mailbox locked at once (nothing in the store does).
 */
#include "store/store_int.h"

#include <errno.h>
#include <sys/file.h>
#include <time.h>

int store_lock_wait(int fd, unsigned timeout_s, struct error *err)
{
	struct timespec start, now;
	long delay_us = 100;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK && errno != EINTR) {
			error_errno(err, "lock");
			return -1;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		int64_t waited_ms = (int64_t)(now.tv_sec - start.tv_sec) * 1000 +
				    (now.tv_nsec - start.tv_nsec) / 1000000;
		if (waited_ms >= (int64_t)timeout_s * 1000) {
			error_set(err, ERR_TEMP, "lock timeout");
			return -1;
		}
		struct timespec ts = { 0, delay_us * 1000 };
		nanosleep(&ts, NULL);
		if (delay_us < 20000)
			delay_us *= 2;
	}
}

int store_lock_user(struct store_user *user, struct error *err)
{
	/* Nests like the mailbox lock: healing a mailroom-box (store_box.c)
	 * takes it, also below an operation that holds it already. */
	if (user->lock_depth > 0) {
		user->lock_depth++;
		return 0;
	}
	if (store_lock_wait(user->root_fd, user->store->lock_timeout, err) < 0)
		return -1;
	user->lock_depth = 1;
	return 0;
}

void store_lock_user_release(struct store_user *user)
{
	if (user->lock_depth > 0 && --user->lock_depth == 0)
		flock(user->root_fd, LOCK_UN);
}

int store_lock_mailbox(struct store_mailbox *mbox, struct error *err)
{
	if (store_fds_open(mbox, err) < 0)
		return -1;
	if (mbox->lock_depth > 0) {
		mbox->lock_depth++;
		return 0;
	}
	if (store_lock_wait(mbox->dir_fd, mbox->user->store->lock_timeout, err) < 0)
		return -1;
	mbox->lock_depth = 1;
	return 0;
}

void store_lock_mailbox_release(struct store_mailbox *mbox)
{
	if (mbox->lock_depth > 0 && --mbox->lock_depth == 0)
		flock(mbox->dir_fd, LOCK_UN);
}
