/*
 * store_mailbox_copy.c: COPY (and the first half of MOVE): hard links into
 * the destination under the protocol of store_link.c, so a copy costs no
 * bytes; for MOVE, rename(2) instead of link(2), so that a crash leaves each
 * message in exactly one of the two mailboxes. Flags come along; keywords
 * are carried over by name (created in the destination as needed, dropped
 * when it has no room for more).
 */
#include "store/store_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/fsx.h"

/* Map src's keyword bits to dst's (creating keywords in dst as needed). */
static int map_keywords(struct store_mailbox *src, uint32_t kw, struct store_mailbox *dst,
			uint32_t *kw_r, struct error *err)
{
	uint32_t out = 0;
	for (unsigned k = 0; k < STORE_MAX_KEYWORDS; k++) {
		if (!(kw & (1u << k)) || src->box.keywords[k] == NULL)
			continue;
		unsigned idx;
		if (store_mailbox_keyword_index(dst, src->box.keywords[k], 1, &idx, err) < 0) {
			if (err->code == ERR_LIMIT)
				continue; /* dst is full of keywords: copy without this one */
			return -1;
		}
		out |= 1u << idx;
	}
	*kw_r = out;
	return 0;
}

/* A failed MOVE puts back what it had renamed into dst (a COPY's undo,
 * store_link_undo, would unlink the only name of those messages). */
static void move_undo(struct store_mailbox *src, struct store_mailbox *dst, struct store_link *msgs,
		      char (*srcnames)[512], size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (msgs[i].linked &&
		    fsx_rename_noreplace(dst->cur_fd, msgs[i].fname, src->cur_fd, srcnames[i]) == 0)
			msgs[i].linked = 0;
	fsx_fsync(src->cur_fd);
	fsx_fsync(dst->cur_fd);
}

int store_mailbox_copy(struct store_mailbox *src, const uint32_t *uids, size_t n,
		       struct store_mailbox *dst, uint32_t *dst_uids_r, struct error *err)
{
	return store_mailbox_transfer(src, uids, n, dst, dst_uids_r, 0, err);
}

int store_mailbox_transfer(struct store_mailbox *src, const uint32_t *uids, size_t n,
			   struct store_mailbox *dst, uint32_t *dst_uids_r, int move,
			   struct error *err)
{
	if (store_fds_open(src, err) < 0)
		return -1;
	if (store_fds_open(dst, err) < 0)
		return -1;
	struct store_link *msgs = NULL;
	char (*srcnames)[512] = NULL;
	size_t found = 0;
	int ret = -1;

	if (src->user != dst->user) {
		error_set(err, ERR_INVALID, "copy between users");
		return -1;
	}
	if (n == 0)
		return 0;
	msgs = calloc(n, sizeof(*msgs));
	srcnames = calloc(n, sizeof(*srcnames));
	if (msgs == NULL || srcnames == NULL) {
		error_set(err, ERR_TEMP, "out of memory");
		goto out_free;
	}
	if (store_mailbox_sync(src, 0, err) < 0)
		goto out_free;
	for (size_t i = 0; i < n; i++) {
		struct store_msg sm;
		struct store_fname f;
		dst_uids_r[i] = 0;
		if (store_message_lookup(src, uids[i], &sm, srcnames[found], sizeof(srcnames[found]), err) < 0) {
			if (err->code == ERR_NOTFOUND)
				continue;
			goto out_free;
		}
		if (store_fname_parse(srcnames[found], &f) < 0)
			continue;
		struct store_link *m = &msgs[found];
		memcpy(m->f.base, f.base, sizeof(m->f.base));
		m->f.size = sm.size;
		m->f.flags = sm.flags;
		m->internaldate = sm.internaldate;
		if (map_keywords(src, sm.keywords, dst, &m->f.keywords, err) < 0)
			goto out_free;
		m->uid = uids[i]; /* the source UID until store_link_reserve() replaces it */
		found++;
	}
	if (found == 0) {
		ret = 0;
		goto out_free;
	}
	/* Only the new messages count: the files are there already (links;
	 * quota counts a file's bytes once, store_user.c). A MOVE within the
	 * user takes as many away again: nothing to check (RFC 9208 4.3). */
	if (!(move && src->user == dst->user) &&
	    store_user_quota_check(dst->user, 0, found, err) < 0)
		goto out_free;
	uint32_t *src_uid = calloc(found, sizeof(*src_uid));
	if (src_uid == NULL) {
		error_set(err, ERR_TEMP, "out of memory");
		goto out_free;
	}
	for (size_t i = 0; i < found; i++)
		src_uid[i] = msgs[i].uid;
	if (store_lock_mailbox(dst, err) < 0)
		goto out_uids;
	if (store_mailbox_sync(dst, 0, err) < 0 || store_link_reserve(dst, msgs, found, err) < 0)
		goto out_unlock;
	int link_failed = 0;
	for (size_t i = 0; i < found && !link_failed; i++) {
		/* MOVE renames: a message is in src or in dst whenever the
		 * process dies, never in both or neither. */
		int rc = move ? fsx_rename_noreplace(src->cur_fd, srcnames[i], dst->cur_fd, msgs[i].fname)
			      : fsx_linkat(src->cur_fd, srcnames[i], dst->cur_fd, msgs[i].fname);
		if (rc == 0) {
			msgs[i].linked = 1;
		} else if (errno != ENOENT) {
			error_errno(err, move ? "cannot move the message" : "cannot link the message");
			link_failed = 1;
		}
		/* ENOENT: expunged or renamed by another session meanwhile; it
		 * is reported as not copied (dst UID 0). */
	}
	if (!link_failed && fsx_fsync(dst->cur_fd) < 0) {
		error_errno(err, "cannot fsync the mailbox");
		link_failed = 1;
	}
	if (link_failed) {
		if (move)
			move_undo(src, dst, msgs, srcnames, found);
		else
			store_link_undo(dst, msgs, found);
		struct error ignore;
		store_link_complete(dst, msgs, found, &ignore);
		goto out_unlock;
	}
	if (store_link_complete(dst, msgs, found, err) < 0) {
		if (move)
			move_undo(src, dst, msgs, srcnames, found);
		else
			store_link_undo(dst, msgs, found);
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
	store_lock_mailbox_release(dst);
out_uids:
	free(src_uid);
out_free:
	free(srcnames);
	free(msgs);
	return ret;
}
