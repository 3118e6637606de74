/*
 * store_mailbox_add.c: a staged message enters a mailbox (delivery, APPEND),
 * by the protocol of store_link.c: reserve a UID, link the staged file into
 * cur/, fsync, complete. What staging parsed is cached with it
 * (store_cache.c), so the first FETCH reads no file. One that finds the
 * index damaged is tried once more on the healed index.
 */
#include "store/store_int.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/fsx.h"
#include "lib/log.h"

/* Store what staging parsed, so the first FETCH reads no file. A failure
 * only costs a parse later. */
static void cache_from_stage(struct store_mailbox *mbox, uint32_t uid,
			     const struct store_stage *stage)
{
	const struct store_cache_row *row = store_stage_cache(stage);
	struct error err;
	if (row != NULL && store_cache_put(mbox, uid, row, &err) < 0)
		log_warn("store %s/%s: cache of uid %u: %s", mbox->user->name, mbox->name, uid,
			 err.text);
}

static int add_once(struct store_mailbox *mbox, struct store_stage *stage, uint32_t flags,
		    uint32_t keywords, uint32_t *uid_r, struct error *err)
{
	if (store_fds_open(mbox, err) < 0)
		return -1;
	struct store_link m;
	struct stat st;
	int ret = -1;

	if (!store_stage_is_finished(stage)) {
		error_set(err, ERR_TEMP, "message not finished");
		return -1;
	}
	if (fstat(store_stage_fd(stage), &st) < 0) {
		error_errno(err, "stat staged message");
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
			error_set(err, ERR_INVALID, "unknown keyword index");
			return -1;
		}
	if (store_user_quota_check_file(mbox->user, m.f.base, m.f.size, err) < 0)
		return -1;
	if (store_lock_mailbox(mbox, err) < 0)
		return -1;
	if (store_mailbox_sync(mbox, 0, err) < 0 || store_link_reserve(mbox, &m, 1, err) < 0)
		goto out;
	if (fsx_linkat(mbox->user->store->spool_fd, store_stage_name(stage), mbox->cur_fd,
		       m.fname) < 0) {
		error_errno(err, "cannot link the message into the mailbox");
		store_link_complete(mbox, &m, 1, err); /* drops the pending row; keeps err */
		goto out;
	}
	m.linked = 1;
	if (fsx_fsync(mbox->cur_fd) < 0) {
		error_errno(err, "cannot fsync the mailbox");
		store_link_undo(mbox, &m, 1);
		struct error ignore;
		store_link_complete(mbox, &m, 1, &ignore);
		goto out;
	}
	if (store_link_complete(mbox, &m, 1, err) < 0) {
		store_link_undo(mbox, &m, 1);
		goto out;
	}
	*uid_r = m.uid;
	ret = 0;
	cache_from_stage(mbox, m.uid, stage);
out:
	store_lock_mailbox_release(mbox);
	return ret;
}

int store_mailbox_add(struct store_mailbox *mbox, struct store_stage *stage, uint32_t flags,
		      uint32_t keywords, uint32_t *uid_r, struct error *err)
{
	int ret = add_once(mbox, stage, flags, keywords, uid_r, err);
	/* A damaged index found half way: the link was taken back, so the
	 * message is in no state a client can see; the sync at the start of
	 * the second try heals the index (store_index.c), and the delivery
	 * goes on instead of failing until an admin steps in. */
	if (ret < 0 && mbox->user->ix_damaged)
		ret = add_once(mbox, stage, flags, keywords, uid_r, err);
	return ret;
}
