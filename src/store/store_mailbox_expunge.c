/*
 * store_mailbox_expunge.c: EXPUNGE: unlink(2) the files, then drop the rows
 * and record each UID in the expunged table with a new modseq (QRESYNC
 * VANISHED). The UIDNEXT floor in mailroom-box is raised first when the
 * highest UIDs go, so an index rebuilt from the files cannot give them out
 * again. The index follows the directory even when an unlink or the fsync
 * fails: what is gone is gone.
 */
#include "store/store_int.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "lib/fsx.h"

/* Raise the UIDNEXT floor before the highest UIDs' files vanish, so that an
 * index rebuilt from the files cannot give them out again. */
int store_mailbox_raise_uid_floor(struct store_mailbox *mbox, uint32_t max_uid, struct error *err)
{
	if (max_uid < mbox->box.uid_floor)
		return 0;
	struct store_status s;
	if (store_mailbox_status(mbox, &s, err) < 0)
		return -1;
	uint32_t old = mbox->box.uid_floor;
	mbox->box.uid_floor = s.uidnext;
	if (store_box_save(mbox, err) < 0) {
		mbox->box.uid_floor = old;
		return -1;
	}
	return 0;
}

int store_mailbox_expunge(struct store_mailbox *mbox, const uint32_t *uids, size_t n,
			  struct error *err)
{
	if (store_fds_open(mbox, err) < 0)
		return -1;
	struct store_user *user = mbox->user;
	char (*names)[512] = NULL;
	uint32_t *gone = NULL;
	uint64_t *sizes = NULL;
	size_t ngone = 0, nfound = 0;
	int ret = -1;

	if (n == 0)
		return 0;
	names = calloc(n, sizeof(*names));
	gone = calloc(n, sizeof(*gone));
	sizes = calloc(n, sizeof(*sizes));
	if (names == NULL || gone == NULL || sizes == NULL) {
		error_set(err, ERR_TEMP, "out of memory");
		goto out_free;
	}
	if (store_lock_mailbox(mbox, err) < 0)
		goto out_free;
	if (store_mailbox_sync(mbox, 0, err) < 0)
		goto out;
	uint32_t max_uid = 0;
	for (size_t i = 0; i < n; i++) {
		struct store_msg m;
		if (store_message_lookup(mbox, uids[i], &m, names[nfound], sizeof(names[nfound]), err) < 0) {
			if (err->code == ERR_NOTFOUND)
				continue;
			goto out;
		}
		gone[nfound] = uids[i];
		sizes[nfound] = m.size;
		if (uids[i] > max_uid)
			max_uid = uids[i];
		nfound++;
	}
	if (nfound == 0) {
		ret = 0;
		goto out;
	}
	if (store_mailbox_raise_uid_floor(mbox, max_uid, err) < 0)
		goto out;
	int unlink_failed = 0;
	for (size_t i = 0; i < nfound; i++) {
		if (fsx_unlinkat(mbox->cur_fd, names[i], 0) == 0 || errno == ENOENT) {
			gone[ngone] = gone[i];
			sizes[ngone] = sizes[i];
			ngone++;
		} else if (!unlink_failed) {
			error_errno(err, "cannot remove the message");
			unlink_failed = 1;
		}
	}
	if (fsx_fsync(mbox->cur_fd) < 0 && !unlink_failed) {
		/* The unlinks happened; only their durability is in doubt. The
		 * index follows the directory either way. */
		error_errno(err, "cannot fsync the mailbox");
		unlink_failed = 1;
	}
	struct error ierr;
	struct error *e = unlink_failed ? &ierr : err;
	if (store_index_begin(user, e) < 0) {
		store_sync_mark_rescan(mbox);
		goto out;
	}
	int64_t bytes = 0;
	for (size_t i = 0; i < ngone; i++) {
		uint64_t modseq;
		if (store_box_next_modseq(mbox, &modseq, e) < 0 ||
		    store_index_exec(user, e,
				     "DELETE FROM msg WHERE mailbox=%lld AND uid=%u;"
				     "INSERT OR REPLACE INTO expunged VALUES(%lld, %u, %llu)",
				     (long long)mbox->id, gone[i], (long long)mbox->id, gone[i],
				     (unsigned long long)modseq) < 0) {
			store_index_rollback(user);
			store_sync_mark_rescan(mbox);
			goto out;
		}
		bytes += (int64_t)sizes[i];
	}
	if (store_index_quota_add(user, -bytes, -(int64_t)ngone, e) < 0 ||
	    store_sync_note_mtime(mbox, e) < 0) {
		store_index_rollback(user);
		store_sync_mark_rescan(mbox);
		goto out;
	}
	if (store_index_commit(user, e) < 0) {
		store_sync_mark_rescan(mbox);
		goto out;
	}
	ret = unlink_failed ? -1 : 0;
out:
	store_lock_mailbox_release(mbox);
out_free:
	free(names);
	free(gone);
	free(sizes);
	return ret;
}
