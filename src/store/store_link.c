/*
 * store_link.c: the delivery protocol, steps 2 and 4: how a message (new, or
 * copied from another mailbox) enters a mailbox with a UID.
 *
 * Design note: the delivery protocol (DESIGN.md, "Delivery").
 *  1. The message is staged and fsynced once (store_stage.c).
 *  2. Under the mailbox lock: reconcile if needed (store_sync.c); take
 *     UIDNEXT; commit a pending row for the UID and the final file name
 *     together with UIDNEXT+1 (no fsync: see store_index.c).
 *     store_link_reserve.
 *  3. link() the staged file into cur/ under "<base>,A=<t>,S=<size>,U=<uid>:2,<flags>";
 *     fsync cur/. From here the message survives a crash, with its UID.
 *     (The caller: store_mailbox_add.c, store_mailbox_copy.c.)
 *  4. Commit the row as done (modseq, quota, cur/'s new mtime); unlock; only
 *     now the caller acknowledges (LMTP 250, APPEND OK, exit 0).
 *     store_link_complete; after a failure there, store_link_undo takes the
 *     links back so that the failure the caller reports is true.
 * A crash between 2 and 4 leaves a pending row that the next lock holder
 * resolves (store_sync.c): adopted if the file is there, dropped if not. The
 * UID is never reused either way. A crash before 3 loses a message nobody was
 * told about; after 3 it is delivered, possibly without having been
 * acknowledged (the MTA then delivers it again: at-least-once, as with every
 * mail store).
 *
 * The other changes follow the same rule, each in its file: expunge is
 * unlink() (after raising the UIDNEXT floor in mailroom-box when the highest
 * UIDs go, so a rebuilt index cannot hand them out again); a flag change is
 * rename() to a name with the new letters. Each changed message gets a new
 * modseq. Every file operation happens under the mailbox lock, after a sync,
 * so the names the index holds are the names on disk.
 */
#include "store/store_int.h"

#include <time.h>
#include <unistd.h>

int store_link_reserve(struct store_mailbox *mbox, struct store_link *msgs, size_t n,
		       struct error *err)
{
	struct store_user *user = mbox->user;
	if (store_index_begin(user, err) < 0)
		return -1;
	sqlite3_stmt *st = store_index_stmt(
		user, "UPDATE mailbox SET uidnext=uidnext+? WHERE id=? RETURNING uidnext", err);
	if (st == NULL)
		goto fail;
	sqlite3_bind_int64(st, 1, (int64_t)n);
	sqlite3_bind_int64(st, 2, mbox->id);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_reset(st);
		store_index_sqlerr(user, err, "uidnext");
		goto fail;
	}
	int64_t next = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (next > (int64_t)UINT32_MAX) {
		error_set(err, ERR_LIMIT, "mailbox has run out of UIDs");
		goto fail;
	}
	uint32_t first = (uint32_t)(next - (int64_t)n);
	/* RFC 8514: the save date is when the message entered this mailbox,
	 * whichever way (delivery, APPEND, COPY, MOVE): in the name (see
	 * store_fname.c for why there). */
	int64_t now = (int64_t)time(NULL);
	for (size_t i = 0; i < n; i++) {
		msgs[i].uid = first + (uint32_t)i;
		msgs[i].f.uid = msgs[i].uid;
		msgs[i].f.savedate = now;
		if (store_fname_build(&msgs[i].f, msgs[i].fname, sizeof(msgs[i].fname)) < 0) {
			error_set(err, ERR_INVALID, "file name too long");
			goto fail;
		}
		st = store_index_stmt(user,
				      "INSERT OR REPLACE INTO msg(mailbox, uid, fname, size, flags, keywords,"
				      " modseq, internaldate, pending) VALUES(?, ?, ?, ?, ?, ?, 0, ?, 1)",
				      err);
		if (st == NULL)
			goto fail;
		sqlite3_bind_int64(st, 1, mbox->id);
		sqlite3_bind_int64(st, 2, msgs[i].uid);
		sqlite3_bind_text(st, 3, msgs[i].fname, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, (int64_t)msgs[i].f.size);
		sqlite3_bind_int64(st, 5, msgs[i].f.flags);
		sqlite3_bind_int64(st, 6, msgs[i].f.keywords);
		sqlite3_bind_int64(st, 7, msgs[i].internaldate);
		int rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc != SQLITE_DONE) {
			store_index_sqlerr(user, err, "reserve");
			goto fail;
		}
	}
	return store_index_commit(user, err);
fail:
	store_index_rollback(user);
	return -1;
}

int store_link_complete(struct store_mailbox *mbox, struct store_link *msgs, size_t n,
			struct error *err)
{
	struct store_user *user = mbox->user;
	int64_t bytes = 0, count = 0;
	if (store_index_begin(user, err) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!msgs[i].linked) {
			if (store_index_exec(user, err, "DELETE FROM msg WHERE mailbox=%lld AND uid=%u",
					     (long long)mbox->id, msgs[i].uid) < 0)
				goto fail;
			continue;
		}
		uint64_t modseq;
		if (store_box_next_modseq(mbox, &modseq, err) < 0 ||
		    store_index_exec(user, err,
				     "UPDATE msg SET pending=0, modseq=%llu WHERE mailbox=%lld AND uid=%u",
				     (unsigned long long)modseq, (long long)mbox->id, msgs[i].uid) < 0)
			goto fail;
		bytes += (int64_t)msgs[i].f.size;
		count++;
	}
	if (store_index_quota_add(user, bytes, count, err) < 0 ||
	    store_sync_note_mtime(mbox, err) < 0)
		goto fail;
	return store_index_commit(user, err);
fail:
	store_index_rollback(user);
	return -1;
}

void store_link_undo(struct store_mailbox *mbox, struct store_link *msgs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (msgs[i].linked && unlinkat(mbox->cur_fd, msgs[i].fname, 0) == 0)
			msgs[i].linked = 0;
	fsync(mbox->cur_fd);
}
