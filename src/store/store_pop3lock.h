/*
 * store_pop3lock.h: the POP3 maildrop lock (RFC 1939 4: "the POP3 server
 * then acquires an exclusive-access lock on the maildrop").
 *
 * One POP3 session per mailbox at a time, across every worker and process:
 * a second session's login is refused with [IN-USE] (RFC 2449 8.1.1) rather
 * than shown a maildrop whose message numbers another session is deleting.
 * IMAP sessions and deliveries do not take it: they go on as usual, and the
 * store's own mailbox lock (store_lock.c) still orders every change.
 *
 * The lock is flock(2) on the file "mailroom-pop3.lock" in the mailbox's
 * folder (created empty, mode 0600, when missing; never removed, so there is
 * no unlink/create race). flock locks belong to the open file description:
 * two sessions in one worker conflict as two processes do, and a crashed
 * process's lock vanishes with it. The file holds no data; `check` and
 * everything else ignore it.
 */
#ifndef MAILROOM_STORE_POP3LOCK_H
#define MAILROOM_STORE_POP3LOCK_H

#include "store/store.h"

#define STORE_POP3LOCK_FILE "mailroom-pop3.lock"

/* Try to take the lock, without waiting. 0: held, *fd_r is the lock (pass it
 * to store_pop3lock_release, or close it). -1: err->code ERR_EXISTS if
 * another session holds it; otherwise an error from the open or the flock
 * (ERR_TEMP for I/O errors, ERR_INVALID for a symlink in the lock
 * file's place; never EXISTS). */
int store_pop3lock_take(struct store_mailbox *mbox, int *fd_r, struct error *err);
/* Release (close) a lock taken above; *fd becomes -1. Safe on -1. */
void store_pop3lock_release(int *fd);

#endif
