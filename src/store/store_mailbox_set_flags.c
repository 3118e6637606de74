/*
 * store_mailbox_set_flags.c: STORE: a flag change is a rename(2) of each
 * message's file to a name with the new letters, and a new modseq, under
 * the mailbox lock in one index transaction. The arithmetic is
 * store_flags_apply (store_flags.c). The renames are made durable (fsync of
 * cur/) before the commit and the answer: the index is not fsynced
 * (store_index.c), so without it a power cut after the answer brings the old
 * names, and the old flags, back. What each message of the set became is
 * reported only after the commit, so a caller never answers a change that
 * then failed.
 */
#include "store/store_int.h"

#include <stdlib.h>

#include "lib/fsx.h"

int store_mailbox_set_flags(struct store_mailbox *mbox, const uint32_t *uids, size_t n,
			    enum store_flag_mode mode, uint32_t flags, uint32_t keywords,
			    uint64_t unchangedsince,
			    void (*report)(void *ctx, const struct store_flag_report *r), void *ctx,
			    struct error *err)
{
	if (store_fds_open(mbox, err) < 0)
		return -1;
	struct store_user *user = mbox->user;
	struct store_flag_report *reps = NULL;
	size_t nreps = 0;
	int ret = -1;
	int in_txn = 0;
	size_t renamed = 0;

	flags &= STORE_F_ALL;
	/* Reported only once committed: a failure half way must not have
	 * told the caller of changes it then answers as failed. */
	if (report != NULL && n > 0 && (reps = calloc(n, sizeof(*reps))) == NULL) {
		error_set(err, ERR_TEMP, "out of memory");
		return -1;
	}
	if (store_lock_mailbox(mbox, err) < 0)
		goto out_free;
	if (store_mailbox_sync(mbox, 0, err) < 0)
		goto out;
	if (store_index_begin(user, err) < 0)
		goto out;
	in_txn = 1;
	for (size_t i = 0; i < n; i++) {
		struct store_msg m;
		char oldname[512], newname[512];
		struct store_fname f;
		if (store_message_lookup(mbox, uids[i], &m, oldname, sizeof(oldname), err) < 0) {
			if (err->code == ERR_NOTFOUND)
				continue;
			goto out;
		}
		struct store_flag_report one, *r = reps != NULL ? &reps[nreps++] : &one;
		*r = (struct store_flag_report){ uids[i], m.flags, m.keywords, m.modseq, 0, 0 };
		if (unchangedsince != 0 && m.modseq > unchangedsince) {
			r->modified = 1;
			continue;
		}
		store_flags_apply(mode, flags, keywords, &r->flags, &r->keywords);
		if (r->flags == m.flags && r->keywords == m.keywords)
			continue;
		if (store_fname_parse(oldname, &f) < 0) {
			error_set(err, ERR_TEMP, "unparsable file name %s", oldname);
			goto out;
		}
		f.flags = r->flags;
		f.keywords = r->keywords;
		if (store_fname_build(&f, newname, sizeof(newname)) < 0) {
			error_set(err, ERR_INVALID, "file name too long");
			goto out;
		}
		if (fsx_renameat(mbox->cur_fd, oldname, mbox->cur_fd, newname) < 0) {
			error_errno(err, "cannot change the message's flags");
			/* Keep the renames done so far: commit them. */
			struct error ignore;
			store_sync_note_mtime(mbox, &ignore);
			store_index_commit(user, &ignore);
			in_txn = 0;
			goto out;
		}
		renamed++;
		if (store_box_next_modseq(mbox, &r->modseq, err) < 0 ||
		    store_index_exec(user, err,
				     "UPDATE msg SET flags=%u, keywords=%u, fname=%Q, modseq=%llu"
				     " WHERE mailbox=%lld AND uid=%u",
				     r->flags, r->keywords, newname, (unsigned long long)r->modseq,
				     (long long)mbox->id, uids[i]) < 0)
			goto out;
		r->changed = 1;
	}
	if (renamed > 0 && fsx_fsync(mbox->cur_fd) < 0) {
		/* The renames happened; only their durability is in doubt. As
		 * for expunge, the index follows the directory; the caller is
		 * told the change failed. */
		error_errno(err, "cannot fsync the mailbox");
		struct error ignore;
		store_sync_note_mtime(mbox, &ignore);
		store_index_commit(user, &ignore);
		in_txn = 0;
		goto out;
	}
	if (store_sync_note_mtime(mbox, err) < 0)
		goto out;
	in_txn = 0;
	if (store_index_commit(user, err) < 0)
		goto out;
	ret = 0;
out:
	if (in_txn) {
		store_index_rollback(user);
		store_sync_mark_rescan(mbox); /* adopts the files renamed so far */
	}
	store_lock_mailbox_release(mbox);
	for (size_t i = 0; ret == 0 && i < nreps; i++)
		report(ctx, &reps[i]);
out_free:
	free(reps);
	return ret;
}
