/*
 * store_msg.c: messages: add (delivery, APPEND), copy, move, flags, expunge,
 * listing and opening.
 *
 * Design note: the delivery protocol (DESIGN.md, "Delivery").
 *  1. The message is staged and fsynced once (store_stage.c).
 *  2. Under the mailbox lock: reconcile if needed (store_sync.c); take
 *     UIDNEXT; commit a pending row for the UID and the final file name
 *     together with UIDNEXT+1 (no fsync: see store_index.c).
 *  3. link() the staged file into cur/ under "<base>,S=<size>,U=<uid>:2,<flags>";
 *     fsync cur/. From here the message survives a crash, with its UID.
 *  4. Commit the row as done (modseq, quota, cur/'s new mtime); unlock; only
 *     now the caller acknowledges (LMTP 250, APPEND OK, exit 0).
 * A crash between 2 and 4 leaves a pending row that the next lock holder
 * resolves (store_sync.c): adopted if the file is there, dropped if not. The
 * UID is never reused either way. A crash before 3 loses a message nobody was
 * told about; after 3 it is delivered, possibly without having been
 * acknowledged (the MTA then delivers it again: at-least-once, as with every
 * mail store).
 *
 * Copy is link() into the destination under the same protocol; expunge is
 * unlink() (after raising the UIDNEXT floor in mailroom-box when the highest
 * UIDs go, so a rebuilt index cannot hand them out again); a flag change is
 * rename() to a name with the new letters. Each changed message gets a new
 * modseq. Every file operation happens under the mailbox lock, after a sync,
 * so the names the index holds are the names on disk.
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fsx.h"
#include "lib/log.h"

int store_msg_lookup(struct store_mailbox *mbox, uint32_t uid, struct store_msg *msg_r,
		     char *fname, size_t fname_size, struct store_error *err)
{
	sqlite3_stmt *st = store_index_stmt(
		mbox->user,
		"SELECT flags, keywords, modseq, size, internaldate, fname FROM msg"
		" WHERE mailbox=? AND uid=? AND pending=0",
		err);
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, mbox->id);
	sqlite3_bind_int64(st, 2, uid);
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(st);
		if (rc == SQLITE_DONE)
			store_err(err, STORE_ERR_NOTFOUND, "no message with UID %u", uid);
		else
			store_index_sqlerr(mbox->user, err, "lookup");
		return -1;
	}
	struct store_msg m;
	m.uid = uid;
	m.flags = (uint32_t)sqlite3_column_int64(st, 0);
	m.keywords = (uint32_t)sqlite3_column_int64(st, 1);
	m.modseq = (uint64_t)sqlite3_column_int64(st, 2);
	m.size = (uint64_t)sqlite3_column_int64(st, 3);
	m.internaldate = sqlite3_column_int64(st, 4);
	snprintf(fname, fname_size, "%s", (const char *)sqlite3_column_text(st, 5));
	m.fname = fname;
	sqlite3_reset(st);
	*msg_r = m;
	return 0;
}

/* Step a bound "SELECT uid, flags, keywords, modseq, size, internaldate,
 * fname" statement, calling cb for each row until it returns non-zero. */
static int walk_rows(struct store_mailbox *mbox, sqlite3_stmt *st,
		     int (*cb)(void *ctx, const struct store_msg *msg), void *ctx,
		     struct store_error *err)
{
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_msg m;
		m.uid = (uint32_t)sqlite3_column_int64(st, 0);
		m.flags = (uint32_t)sqlite3_column_int64(st, 1);
		m.keywords = (uint32_t)sqlite3_column_int64(st, 2);
		m.modseq = (uint64_t)sqlite3_column_int64(st, 3);
		m.size = (uint64_t)sqlite3_column_int64(st, 4);
		m.internaldate = sqlite3_column_int64(st, 5);
		m.fname = (const char *)sqlite3_column_text(st, 6);
		if (cb(ctx, &m) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		store_index_sqlerr(mbox->user, err, "messages");
		return -1;
	}
	return 0;
}

int store_mailbox_messages(struct store_mailbox *mbox, uint32_t lo, uint32_t hi,
			   int (*cb)(void *ctx, const struct store_msg *msg), void *ctx,
			   struct store_error *err)
{
	sqlite3_stmt *st = store_index_stmt(
		mbox->user,
		"SELECT uid, flags, keywords, modseq, size, internaldate, fname FROM msg"
		" WHERE mailbox=? AND pending=0 AND uid BETWEEN ? AND ? ORDER BY uid",
		err);
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, mbox->id);
	sqlite3_bind_int64(st, 2, lo);
	sqlite3_bind_int64(st, 3, hi);
	return walk_rows(mbox, st, cb, ctx, err);
}

int store_message_open(struct store_mailbox *mbox, uint32_t uid, int *fd_r, uint64_t *size_r,
		       struct store_error *err)
{
	if (store_mailbox_fds(mbox, err) < 0)
		return -1;
	char fname[512];
	struct store_msg m;
	for (int attempt = 0; attempt < 2; attempt++) {
		if (store_msg_lookup(mbox, uid, &m, fname, sizeof(fname), err) < 0)
			return -1;
		int fd = fsx_open_beneath(mbox->cur_fd, fname, O_RDONLY, 0);
		if (fd >= 0) {
			struct stat st;
			if (fstat(fd, &st) < 0) {
				store_err_errno(err, "stat message");
				close(fd);
				return -1;
			}
			*fd_r = fd;
			*size_r = (uint64_t)st.st_size;
			return 0;
		}
		if (errno != ENOENT) {
			store_err_errno(err, "cannot open the message");
			return -1;
		}
		/* Renamed (flags) or removed by another process: catch up. */
		if (store_mailbox_sync(mbox, 1, err) < 0)
			return -1;
	}
	store_err(err, STORE_ERR_NOTFOUND, "message %u is gone", uid);
	return -1;
}

int store_user_quota_check(struct store_user *user, uint64_t bytes, uint64_t messages,
			   struct store_error *err)
{
	uint64_t used_b, used_m;
	if (user->quota_bytes == 0 && user->quota_messages == 0)
		return 0;
	if (store_user_quota_usage(user, &used_b, &used_m, err) < 0)
		return -1;
	if ((user->quota_bytes != 0 && used_b + bytes > user->quota_bytes) ||
	    (user->quota_messages != 0 && used_m + messages > user->quota_messages)) {
		store_err(err, STORE_ERR_QUOTA, "mailbox is full (quota exceeded)");
		return -1;
	}
	return 0;
}

/* Step 2 of the protocol for n new messages: reserve UIDs first..first+n-1
 * with pending rows named fnames[i]. */
struct new_msg {
	uint32_t uid;
	char fname[512];
	struct store_fname f;
	int64_t internaldate;
	int linked;
};

static int reserve(struct store_mailbox *mbox, struct new_msg *msgs, size_t n,
		   struct store_error *err)
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
		store_err(err, STORE_ERR_LIMIT, "mailbox has run out of UIDs");
		goto fail;
	}
	uint32_t first = (uint32_t)(next - (int64_t)n);
	for (size_t i = 0; i < n; i++) {
		msgs[i].uid = first + (uint32_t)i;
		msgs[i].f.uid = msgs[i].uid;
		if (store_fname_build(&msgs[i].f, msgs[i].fname, sizeof(msgs[i].fname)) < 0) {
			store_err(err, STORE_ERR_INVALID, "file name too long");
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

/* Step 4: mark the linked ones done and drop the rows of those that failed. */
static int complete(struct store_mailbox *mbox, struct new_msg *msgs, size_t n,
		    struct store_error *err)
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
		if (store_mailbox_next_modseq(mbox, &modseq, err) < 0 ||
		    store_index_exec(user, err,
				     "UPDATE msg SET pending=0, modseq=%llu WHERE mailbox=%lld AND uid=%u",
				     (unsigned long long)modseq, (long long)mbox->id, msgs[i].uid) < 0)
			goto fail;
		bytes += (int64_t)msgs[i].f.size;
		count++;
	}
	if (store_index_quota_add(user, bytes, count, err) < 0 ||
	    store_mailbox_note_mtime(mbox, err) < 0)
		goto fail;
	return store_index_commit(user, err);
fail:
	store_index_rollback(user);
	return -1;
}

/* After a failed step 4, take the links back so that the caller's failure
 * report is true; the pending rows are dropped by the next sync. */
static void unlink_linked(struct store_mailbox *mbox, struct new_msg *msgs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (msgs[i].linked && unlinkat(mbox->cur_fd, msgs[i].fname, 0) == 0)
			msgs[i].linked = 0;
	fsync(mbox->cur_fd);
}

/* Store what staging parsed, so the first FETCH reads no file. A failure
 * only costs a parse later. */
static void cache_from_stage(struct store_mailbox *mbox, uint32_t uid,
			     const struct store_stage *stage)
{
	const struct store_cache_row *row = store_stage_cache(stage);
	struct store_error err;
	if (row != NULL && store_cache_put(mbox, uid, row, &err) < 0)
		log_warn("store %s/%s: cache of uid %u: %s", mbox->user->name, mbox->name, uid,
			 err.text);
}

int store_mailbox_add(struct store_mailbox *mbox, struct store_stage *stage, uint32_t flags,
		      uint32_t keywords, uint32_t *uid_r, struct store_error *err)
{
	if (store_mailbox_fds(mbox, err) < 0)
		return -1;
	struct new_msg m;
	struct stat st;
	int ret = -1;

	if (!store_stage_is_finished(stage)) {
		store_err(err, STORE_ERR_TEMP, "message not finished");
		return -1;
	}
	if (fstat(store_stage_fd(stage), &st) < 0) {
		store_err_errno(err, "stat staged message");
		return -1;
	}
	memset(&m, 0, sizeof(m));
	char base[200];
	snprintf(base, sizeof(base), "%s", store_stage_name(stage));
	memcpy(m.f.base, base, sizeof(m.f.base));
	m.f.size = (uint64_t)st.st_size;
	m.f.flags = flags & STORE_F_ALL;
	m.f.keywords = keywords;
	m.internaldate = st.st_mtim.tv_sec;
	for (unsigned k = 0; k < STORE_MAX_KEYWORDS; k++)
		if ((keywords & (1u << k)) && mbox->box.keywords[k] == NULL) {
			store_err(err, STORE_ERR_INVALID, "unknown keyword index");
			return -1;
		}
	if (store_user_quota_check(mbox->user, m.f.size, 1, err) < 0)
		return -1;
	if (store_mailbox_lock(mbox, err) < 0)
		return -1;
	if (store_mailbox_sync(mbox, 0, err) < 0 || reserve(mbox, &m, 1, err) < 0)
		goto out;
	if (fsx_linkat(mbox->user->store->spool_fd, store_stage_name(stage), mbox->cur_fd,
		       m.fname) < 0) {
		store_err_errno(err, "cannot link the message into the mailbox");
		complete(mbox, &m, 1, err); /* drops the pending row; keeps err */
		goto out;
	}
	m.linked = 1;
	if (fsx_fsync(mbox->cur_fd) < 0) {
		store_err_errno(err, "cannot fsync the mailbox");
		unlink_linked(mbox, &m, 1);
		struct store_error ignore;
		complete(mbox, &m, 1, &ignore);
		goto out;
	}
	if (complete(mbox, &m, 1, err) < 0) {
		unlink_linked(mbox, &m, 1);
		goto out;
	}
	*uid_r = m.uid;
	ret = 0;
	cache_from_stage(mbox, m.uid, stage);
out:
	store_mailbox_unlock(mbox);
	return ret;
}

/* Map src's keyword bits to dst's (creating keywords in dst as needed). */
static int map_keywords(struct store_mailbox *src, uint32_t kw, struct store_mailbox *dst,
			uint32_t *kw_r, struct store_error *err)
{
	uint32_t out = 0;
	for (unsigned k = 0; k < STORE_MAX_KEYWORDS; k++) {
		if (!(kw & (1u << k)) || src->box.keywords[k] == NULL)
			continue;
		unsigned idx;
		if (store_mailbox_keyword_index(dst, src->box.keywords[k], 1, &idx, err) < 0) {
			if (err->code == STORE_ERR_LIMIT)
				continue; /* dst is full of keywords: copy without this one */
			return -1;
		}
		out |= 1u << idx;
	}
	*kw_r = out;
	return 0;
}

int store_mailbox_copy(struct store_mailbox *src, const uint32_t *uids, size_t n,
		       struct store_mailbox *dst, uint32_t *dst_uids_r, struct store_error *err)
{
	if (store_mailbox_fds(src, err) < 0)
		return -1;
	if (store_mailbox_fds(dst, err) < 0)
		return -1;
	struct new_msg *msgs = NULL;
	char (*srcnames)[512] = NULL;
	size_t found = 0;
	int ret = -1;

	if (src->user != dst->user) {
		store_err(err, STORE_ERR_INVALID, "copy between users");
		return -1;
	}
	if (n == 0)
		return 0;
	msgs = calloc(n, sizeof(*msgs));
	srcnames = calloc(n, sizeof(*srcnames));
	if (msgs == NULL || srcnames == NULL) {
		store_err(err, STORE_ERR_TEMP, "out of memory");
		goto out_free;
	}
	if (store_mailbox_sync(src, 0, err) < 0)
		goto out_free;
	for (size_t i = 0; i < n; i++) {
		struct store_msg sm;
		struct store_fname f;
		dst_uids_r[i] = 0;
		if (store_msg_lookup(src, uids[i], &sm, srcnames[found], sizeof(srcnames[found]), err) < 0) {
			if (err->code == STORE_ERR_NOTFOUND)
				continue;
			goto out_free;
		}
		if (store_fname_parse(srcnames[found], &f) < 0)
			continue;
		struct new_msg *m = &msgs[found];
		memcpy(m->f.base, f.base, sizeof(m->f.base));
		m->f.size = sm.size;
		m->f.flags = sm.flags;
		m->internaldate = sm.internaldate;
		if (map_keywords(src, sm.keywords, dst, &m->f.keywords, err) < 0)
			goto out_free;
		m->uid = uids[i]; /* the source UID until reserve() replaces it */
		found++;
	}
	if (found == 0) {
		ret = 0;
		goto out_free;
	}
	if (store_user_quota_check(dst->user, 0, found, err) < 0)
		goto out_free;
	uint32_t *src_uid = calloc(found, sizeof(*src_uid));
	if (src_uid == NULL) {
		store_err(err, STORE_ERR_TEMP, "out of memory");
		goto out_free;
	}
	for (size_t i = 0; i < found; i++)
		src_uid[i] = msgs[i].uid;
	if (store_mailbox_lock(dst, err) < 0)
		goto out_uids;
	if (store_mailbox_sync(dst, 0, err) < 0 || reserve(dst, msgs, found, err) < 0)
		goto out_unlock;
	int link_failed = 0;
	for (size_t i = 0; i < found && !link_failed; i++) {
		if (fsx_linkat(src->cur_fd, srcnames[i], dst->cur_fd, msgs[i].fname) == 0) {
			msgs[i].linked = 1;
		} else if (errno != ENOENT) {
			store_err_errno(err, "cannot link the message");
			link_failed = 1;
		}
		/* ENOENT: expunged or renamed by another session meanwhile; it
		 * is reported as not copied (dst UID 0). */
	}
	if (!link_failed && fsx_fsync(dst->cur_fd) < 0) {
		store_err_errno(err, "cannot fsync the mailbox");
		link_failed = 1;
	}
	if (link_failed) {
		unlink_linked(dst, msgs, found);
		struct store_error ignore;
		complete(dst, msgs, found, &ignore);
		goto out_unlock;
	}
	if (complete(dst, msgs, found, err) < 0) {
		unlink_linked(dst, msgs, found);
		goto out_unlock;
	}
	for (size_t i = 0, j = 0; i < n && j < found; i++) {
		if (uids[i] == src_uid[j]) {
			dst_uids_r[i] = msgs[j].linked ? msgs[j].uid : 0;
			j++;
		}
	}
	ret = 0;
out_unlock:
	store_mailbox_unlock(dst);
out_uids:
	free(src_uid);
out_free:
	free(srcnames);
	free(msgs);
	return ret;
}

int store_mailbox_move(struct store_mailbox *src, const uint32_t *uids, size_t n,
		       struct store_mailbox *dst, uint32_t *dst_uids_r, struct store_error *err)
{
	if (store_mailbox_copy(src, uids, n, dst, dst_uids_r, err) < 0)
		return -1;
	/* Expunge only what reached dst: a message that could not be copied
	 * stays where it was. */
	uint32_t *moved = calloc(n ? n : 1, sizeof(*moved));
	size_t k = 0;
	if (moved == NULL) {
		store_err(err, STORE_ERR_TEMP, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		if (dst_uids_r[i] != 0)
			moved[k++] = uids[i];
	int ret = store_mailbox_expunge(src, moved, k, err);
	free(moved);
	return ret;
}

int store_mailbox_expunge(struct store_mailbox *mbox, const uint32_t *uids, size_t n,
			  struct store_error *err)
{
	if (store_mailbox_fds(mbox, err) < 0)
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
		store_err(err, STORE_ERR_TEMP, "out of memory");
		goto out_free;
	}
	if (store_mailbox_lock(mbox, err) < 0)
		goto out_free;
	if (store_mailbox_sync(mbox, 0, err) < 0)
		goto out;
	uint32_t max_uid = 0;
	for (size_t i = 0; i < n; i++) {
		struct store_msg m;
		if (store_msg_lookup(mbox, uids[i], &m, names[nfound], sizeof(names[nfound]), err) < 0) {
			if (err->code == STORE_ERR_NOTFOUND)
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
	/* Raise the UIDNEXT floor before the highest UIDs' files vanish, so
	 * that an index rebuilt from the files cannot give them out again. */
	if (max_uid >= mbox->box.uid_floor) {
		struct store_status s;
		if (store_mailbox_status(mbox, &s, err) < 0)
			goto out;
		uint32_t old = mbox->box.uid_floor;
		mbox->box.uid_floor = s.uidnext;
		if (store_mailbox_save_box(mbox, err) < 0) {
			mbox->box.uid_floor = old;
			goto out;
		}
	}
	int unlink_failed = 0;
	for (size_t i = 0; i < nfound; i++) {
		if (fsx_unlinkat(mbox->cur_fd, names[i], 0) == 0 || errno == ENOENT) {
			gone[ngone] = gone[i];
			sizes[ngone] = sizes[i];
			ngone++;
		} else if (!unlink_failed) {
			store_err_errno(err, "cannot remove the message");
			unlink_failed = 1;
		}
	}
	if (fsx_fsync(mbox->cur_fd) < 0 && !unlink_failed) {
		/* The unlinks happened; only their durability is in doubt. The
		 * index follows the directory either way. */
		store_err_errno(err, "cannot fsync the mailbox");
		unlink_failed = 1;
	}
	struct store_error ierr;
	struct store_error *e = unlink_failed ? &ierr : err;
	if (store_index_begin(user, e) < 0) {
		store_mailbox_mark_rescan(mbox);
		goto out;
	}
	int64_t bytes = 0;
	for (size_t i = 0; i < ngone; i++) {
		uint64_t modseq;
		if (store_mailbox_next_modseq(mbox, &modseq, e) < 0 ||
		    store_index_exec(user, e,
				     "DELETE FROM msg WHERE mailbox=%lld AND uid=%u;"
				     "INSERT OR REPLACE INTO expunged VALUES(%lld, %u, %llu)",
				     (long long)mbox->id, gone[i], (long long)mbox->id, gone[i],
				     (unsigned long long)modseq) < 0) {
			store_index_rollback(user);
			store_mailbox_mark_rescan(mbox);
			goto out;
		}
		bytes += (int64_t)sizes[i];
	}
	if (store_index_quota_add(user, -bytes, -(int64_t)ngone, e) < 0 ||
	    store_mailbox_note_mtime(mbox, e) < 0) {
		store_index_rollback(user);
		store_mailbox_mark_rescan(mbox);
		goto out;
	}
	if (store_index_commit(user, e) < 0) {
		store_mailbox_mark_rescan(mbox);
		goto out;
	}
	ret = unlink_failed ? -1 : 0;
out:
	store_mailbox_unlock(mbox);
out_free:
	free(names);
	free(gone);
	free(sizes);
	return ret;
}

int store_mailbox_set_flags(struct store_mailbox *mbox, const uint32_t *uids, size_t n,
			    enum store_flag_mode mode, uint32_t flags, uint32_t keywords,
			    uint64_t unchangedsince,
			    void (*report)(void *ctx, const struct store_flag_report *r), void *ctx,
			    struct store_error *err)
{
	if (store_mailbox_fds(mbox, err) < 0)
		return -1;
	struct store_user *user = mbox->user;
	struct store_flag_report *reps = NULL;
	size_t nreps = 0;
	int ret = -1;
	int in_txn = 0;

	flags &= STORE_F_ALL;
	/* Reported only once committed: a failure half way must not have
	 * told the caller of changes it then answers as failed. */
	if (report != NULL && n > 0 && (reps = calloc(n, sizeof(*reps))) == NULL) {
		store_err(err, STORE_ERR_TEMP, "out of memory");
		return -1;
	}
	if (store_mailbox_lock(mbox, err) < 0)
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
		if (store_msg_lookup(mbox, uids[i], &m, oldname, sizeof(oldname), err) < 0) {
			if (err->code == STORE_ERR_NOTFOUND)
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
			store_err(err, STORE_ERR_TEMP, "unparsable file name %s", oldname);
			goto out;
		}
		f.flags = r->flags;
		f.keywords = r->keywords;
		if (store_fname_build(&f, newname, sizeof(newname)) < 0) {
			store_err(err, STORE_ERR_INVALID, "file name too long");
			goto out;
		}
		if (fsx_renameat(mbox->cur_fd, oldname, mbox->cur_fd, newname) < 0) {
			store_err_errno(err, "cannot change the message's flags");
			/* Keep the renames done so far: commit them. */
			struct store_error ignore;
			store_mailbox_note_mtime(mbox, &ignore);
			store_index_commit(user, &ignore);
			in_txn = 0;
			goto out;
		}
		if (store_mailbox_next_modseq(mbox, &r->modseq, err) < 0 ||
		    store_index_exec(user, err,
				     "UPDATE msg SET flags=%u, keywords=%u, fname=%Q, modseq=%llu"
				     " WHERE mailbox=%lld AND uid=%u",
				     r->flags, r->keywords, newname, (unsigned long long)r->modseq,
				     (long long)mbox->id, uids[i]) < 0)
			goto out;
		r->changed = 1;
	}
	if (store_mailbox_note_mtime(mbox, err) < 0)
		goto out;
	in_txn = 0;
	if (store_index_commit(user, err) < 0)
		goto out;
	ret = 0;
out:
	if (in_txn) {
		store_index_rollback(user);
		store_mailbox_mark_rescan(mbox); /* adopts the files renamed so far */
	}
	store_mailbox_unlock(mbox);
	for (size_t i = 0; ret == 0 && i < nreps; i++)
		report(ctx, &reps[i]);
out_free:
	free(reps);
	return ret;
}

int store_mailbox_changed_since(struct store_mailbox *mbox, uint64_t modseq,
				int (*cb)(void *ctx, const struct store_msg *msg), void *ctx,
				struct store_error *err)
{
	sqlite3_stmt *st = store_index_stmt(
		mbox->user,
		"SELECT uid, flags, keywords, modseq, size, internaldate, fname FROM msg"
		" WHERE mailbox=? AND pending=0 AND modseq>? ORDER BY uid",
		err);
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, mbox->id);
	sqlite3_bind_int64(st, 2, (int64_t)modseq);
	return walk_rows(mbox, st, cb, ctx, err);
}

int store_mailbox_expunged_since(struct store_mailbox *mbox, uint64_t modseq,
				 int (*cb)(void *ctx, uint32_t uid, uint64_t modseq), void *ctx,
				 struct store_error *err)
{
	sqlite3_stmt *st = store_index_stmt(
		mbox->user, "SELECT uid, modseq FROM expunged WHERE mailbox=? AND modseq>? ORDER BY uid",
		err);
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, mbox->id);
	sqlite3_bind_int64(st, 2, (int64_t)modseq);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		if (cb(ctx, (uint32_t)sqlite3_column_int64(st, 0),
		       (uint64_t)sqlite3_column_int64(st, 1)) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		store_index_sqlerr(mbox->user, err, "expunged");
		return -1;
	}
	return 0;
}

int store_mailbox_modseq(struct store_mailbox *mbox, uint32_t *uidvalidity_r,
			 uint64_t *highestmodseq_r, struct store_error *err)
{
	sqlite3_stmt *st = store_index_stmt(
		mbox->user, "SELECT uidvalidity, highestmodseq FROM mailbox WHERE id=?", err);
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, mbox->id);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_reset(st);
		store_index_sqlerr(mbox->user, err, "modseq");
		return -1;
	}
	*uidvalidity_r = (uint32_t)sqlite3_column_int64(st, 0);
	*highestmodseq_r = (uint64_t)sqlite3_column_int64(st, 1);
	sqlite3_reset(st);
	return 0;
}
