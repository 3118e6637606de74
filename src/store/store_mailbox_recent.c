/*
 * store_mailbox_recent.c: which messages are "recent" (RFC 3501 2.3.2,
 * the \Recent flag of IMAP4rev1; RFC 9051 removed it).
 *
 * Design note. A message is recent in exactly one session: the first
 * read-write session to learn of it after it arrived (SELECT, or a sync
 * while selected). As Dovecot does (first_recent_uid in its index header),
 * a mailbox keeps one number, its first recent UID: every message with a
 * UID at or above it is recent and not yet claimed by any session; below
 * it, each message is recent at most in the session that claimed it, which
 * remembers that by itself. A claim reads UIDNEXT and moves the first
 * recent UID there, so the claimer's share is [first recent, UIDNEXT).
 * Since UIDs only grow, the set of unclaimed messages is always such a
 * tail, and the whole state is one integer per mailbox.
 *
 * The claim runs under the mailbox lock, in one index transaction: the
 * delivery protocol (store_link.c) takes UIDNEXT, links and commits under
 * that lock, so at claim time every UID below UIDNEXT is a message whose
 * row is complete (or was dropped), never one still to come: a session
 * that claims [lo, hi) and then reads the mailbox sees each of them. A
 * claim that finds nothing new (first recent == UIDNEXT: the common NOOP)
 * takes no lock and writes nothing.
 *
 * Where it lives: the index (a row of table meta, key "recent <GUID>"),
 * not mailroom-box. mailroom-box holds what a client could notice losing
 * and is rewritten durably (write, fsync, rename) on change; a claim would
 * cost that on every SELECT after new mail. \Recent is advisory (RFC 3501
 * 2.3.2 lets a server treat it loosely, RFC 9051 dropped it): if the index
 * is lost the number is lost with it, and the mailbox's messages are all
 * recent once more for the next session, as when Dovecot's index is
 * rebuilt. Keyed by the mailbox GUID, so RENAME keeps it and a mailbox
 * deleted and created again under the same name starts afresh (the row of
 * a deleted mailbox stays behind, a few bytes, never read again). A missing
 * row means "nothing claimed yet": first recent UID 1.
 */
#include "store/store_int.h"

#include <stdio.h>

/* The meta key of mbox's first recent UID. */
static void recent_key(const struct store_mailbox *mbox, char *key, size_t size)
{
	if (mbox->box.guid[0] != '\0')
		snprintf(key, size, "recent %s", mbox->box.guid);
	else
		snprintf(key, size, "recent #%lld", (long long)mbox->id);
}

/* First recent UID and UIDNEXT as the index has them now. */
static int read_state(struct store_mailbox *mbox, uint32_t *first_r, uint32_t *next_r,
		      struct error *err)
{
	char key[64];
	int64_t first = 0;
	recent_key(mbox, key, sizeof(key));
	if (store_index_meta_get(mbox->user, key, &first) < 0) {
		store_index_sqlerr(mbox->user, err, "recent");
		return -1;
	}
	sqlite3_stmt *st =
		store_index_stmt(mbox->user, "SELECT uidnext FROM mailbox WHERE id=?", err);
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, mbox->id);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_reset(st);
		store_index_sqlerr(mbox->user, err, "uidnext");
		return -1;
	}
	int64_t next = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (first < 1)
		first = 1;
	if (first > next) /* UIDNEXT never goes back; only an odd index does */
		first = next;
	*first_r = (uint32_t)first;
	*next_r = (uint32_t)next;
	return 0;
}

int store_mailbox_recent(struct store_mailbox *mbox, int claim, uint32_t *lo_r, uint32_t *hi_r,
			 struct error *err)
{
	uint32_t first, next;
	if (read_state(mbox, &first, &next, err) < 0)
		return -1;
	if (!claim || first == next) {
		*lo_r = first;
		*hi_r = next;
		return 0;
	}
	if (store_lock_mailbox(mbox, err) < 0)
		return -1;
	char key[64];
	recent_key(mbox, key, sizeof(key));
	int ret = -1;
	if (store_index_begin(mbox->user, err) < 0)
		goto out;
	/* Again under the lock: another session may have claimed meanwhile. */
	if (read_state(mbox, &first, &next, err) < 0 ||
	    store_index_meta_set(mbox->user, key, next, err) < 0 ||
	    store_index_commit(mbox->user, err) < 0) {
		store_index_rollback(mbox->user);
		goto out;
	}
	*lo_r = first;
	*hi_r = next;
	ret = 0;
out:
	store_lock_mailbox_release(mbox);
	return ret;
}

int store_mailbox_recent_count(struct store_mailbox *mbox, uint32_t *count_r, struct error *err)
{
	uint32_t first, next;
	if (read_state(mbox, &first, &next, err) < 0)
		return -1;
	sqlite3_stmt *st = store_index_stmt(
		mbox->user, "SELECT count(*) FROM msg WHERE mailbox=? AND uid>=? AND pending=0", err);
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, mbox->id);
	sqlite3_bind_int64(st, 2, first);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_reset(st);
		store_index_sqlerr(mbox->user, err, "recent");
		return -1;
	}
	*count_r = (uint32_t)sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return 0;
}
