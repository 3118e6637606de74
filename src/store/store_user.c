/*
 * store_user.c: a user of the store: create (the root DATA/mail/USER with
 * INBOX, the special-use mailboxes and their subscriptions), purge, open
 * and close (the root's directory fd and the index connection), quota.
 *
 * Quota is counted in the index (store_index_quota_add at every delivery,
 * copy and expunge), so checking it is one read, not a walk of the files;
 * `mailroom check` compares the counters with the messages. Bytes count
 * once per file: a file with several links in this user's mailboxes (COPY
 * makes hard links) is one file on disk. The counter quota_bytes adds every
 * link; triggers on msg keep quota_dup_bytes, the bytes of the extra links
 * (store_index.c, table qfile), and usage is the difference. Messages count
 * per link: RFC 9208 5.2 counts the messages in the mailboxes.
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fsx.h"
#include "lib/log.h"

static const struct {
	const char *name;
	const char *special_use;
} default_mailboxes[] = {
	{ "Drafts", "\\Drafts" }, { "Sent", "\\Sent" },	      { "Trash", "\\Trash" },
	{ "Junk", "\\Junk" },	  { "Archive", "\\Archive" },
};

int store_user_create(struct store *store, const char *name, struct error *err)
{
	struct store_user *user = NULL;
	if (store_username_valid(name) < 0) {
		error_set(err, ERR_INVALID, "invalid user name");
		return -1;
	}
	if (mkdirat(store->mail_fd, name, 0700) < 0) {
		if (errno == EEXIST)
			error_set(err, ERR_EXISTS, "user %s already has a mail folder", name);
		else
			error_errno(err, "cannot create the user's folder");
		return -1;
	}
	if (fsx_fsync(store->mail_fd) < 0) {
		error_errno(err, "fsync DATA/mail");
		return -1;
	}
	if (store_user_open(store, name, &user, err) < 0)
		return -1;
	if (store_mailbox_create(user, "INBOX", NULL, err) < 0 && err->code != ERR_EXISTS)
		goto fail;
	for (size_t i = 0; i < sizeof(default_mailboxes) / sizeof(default_mailboxes[0]); i++) {
		if (store_mailbox_create(user, default_mailboxes[i].name,
					 default_mailboxes[i].special_use, err) < 0 &&
		    err->code != ERR_EXISTS)
			goto fail;
		if (store_subscribe(user, default_mailboxes[i].name, 1, err) < 0)
			goto fail;
	}
	if (store_subscribe(user, "INBOX", 1, err) < 0)
		goto fail;
	store_user_close(&user);
	return 0;
fail:
	store_user_close(&user);
	return -1;
}

#define DELETED_MARK "mailroom-deleted"

int store_user_mark_deleted(struct store *store, const char *name, int set, struct error *err)
{
	if (store_username_valid(name) < 0) {
		error_set(err, ERR_INVALID, "invalid user name");
		return -1;
	}
	int root = fsx_opendir_beneath(store->mail_fd, name);
	if (root < 0) {
		if (errno == ENOENT)
			return 0; /* no folder: nothing to mark */
		error_errno(err, "cannot open the user's folder");
		return -1;
	}
	int rc;
	if (set) {
		rc = fsx_write_file_atomic(root, DELETED_MARK, "", 0); /* fsyncs the folder */
		if (rc < 0)
			error_errno(err, "cannot mark the user deleted");
	} else {
		rc = fsx_unlinkat(root, DELETED_MARK, 0);
		if (rc < 0 && errno == ENOENT)
			rc = 1; /* not marked: nothing to do */
		else if (rc < 0)
			error_errno(err, "cannot remove the deleted mark");
		else if ((rc = fsx_fsync(root)) < 0)
			error_errno(err, "fsync");
	}
	close(root);
	return rc < 0 ? -1 : 0;
}

int store_user_is_marked_deleted(struct store *store, const char *name)
{
	struct stat st;
	if (store_username_valid(name) < 0)
		return 0;
	int root = fsx_opendir_beneath(store->mail_fd, name);
	if (root < 0)
		return 0;
	int r = fstatat(root, DELETED_MARK, &st, AT_SYMLINK_NOFOLLOW) == 0;
	close(root);
	return r;
}

int store_user_purge(struct store *store, const char *name, struct error *err)
{
	if (store_username_valid(name) < 0) {
		error_set(err, ERR_INVALID, "invalid user name");
		return -1;
	}
	if (store_remove_tree(store->mail_fd, name, 0) < 0) {
		if (errno == ENOENT)
			error_set(err, ERR_NOUSER, "user %s has no mail folder", name);
		else
			error_errno(err, "cannot remove the user's folder");
		return -1;
	}
	return 0;
}

static int rebuild_one(void *ctx, const struct store_mailbox_info *info)
{
	struct store_user *u = ctx;
	struct store_mailbox *mbox = NULL;
	struct error err;
	if (store_mailbox_open(u, info->name, &mbox, &err) < 0) {
		log_warn("store %s: rebuilding the index of mailbox %s: %s", u->name, info->name,
			 err.text);
		u->ix_fresh = -1; /* not complete */
		return 0;
	}
	store_mailbox_close(&mbox);
	return 0;
}

/* A new index (deleted, or a damaged one moved aside): rebuild every
 * mailbox now rather than as each is opened, so that the quota counters
 * (and STATUS of mailboxes nobody selects) are right from the start. */
static void rebuild_all(struct store_user *u)
{
	struct error err;
	if (store_mailbox_list(u, rebuild_one, u, &err) < 0) {
		log_warn("store %s: rebuilding the index: %s", u->name, err.text);
		return;
	}
	if (u->ix_fresh == 1 && store_index_meta_set(u, "complete", 1, &err) < 0)
		log_warn("store %s: rebuilding the index: %s", u->name, err.text);
	u->ix_fresh = 0;
}

int store_user_open(struct store *store, const char *name, struct store_user **user_r,
		    struct error *err)
{
	if (store_username_valid(name) < 0) {
		error_set(err, ERR_NOUSER, "invalid user name");
		return -1;
	}
	struct store_user *u = calloc(1, sizeof(*u));
	if (u == NULL) {
		error_set(err, ERR_TEMP, "out of memory");
		return -1;
	}
	u->store = store;
	snprintf(u->name, sizeof(u->name), "%s", name);
	u->quota_bytes = store->quota_bytes;
	u->quota_messages = store->quota_messages;
	u->root_fd = fsx_opendir_beneath(store->mail_fd, name);
	if (u->root_fd < 0) {
		if (errno == ENOENT)
			error_set(err, ERR_NOUSER, "no such user: %s", name);
		else
			error_errno(err, "cannot open the user's folder");
		free(u);
		return -1;
	}
	u->ix.dir_fd = -1;
	if (store_index_acquire(u, err) < 0) {
		close(u->root_fd);
		free(u);
		return -1;
	}
	store_rename_recover(u); /* a RENAME a crash interrupted (store_rename.c) */
	/* 'complete' is 0 in an index made new until every mailbox is in it
	 * (whichever process made it: a heal can happen in any session). */
	int64_t complete = 1;
	if (!store->no_heal && store->heal_say == NULL &&
	    store_index_meta_get(u, "complete", &complete) == 0 && complete == 0) {
		/* (`check --repair`, heal_say set, rebuilds and reports itself) */
		u->ix_fresh = 1;
		rebuild_all(u);
	}
	*user_r = u;
	return 0;
}

void store_user_close(struct store_user **user)
{
	struct store_user *u = *user;
	if (u == NULL)
		return;
	store_index_release(u);
	close(u->root_fd);
	free(u);
	*user = NULL;
}

const char *store_user_name(const struct store_user *user)
{
	return user->name;
}

void store_user_set_quota(struct store_user *user, uint64_t max_bytes, uint64_t max_messages)
{
	user->quota_bytes = max_bytes;
	user->quota_messages = max_messages;
}

void store_user_quota_limits(const struct store_user *user, uint64_t *max_bytes_r,
			     uint64_t *max_messages_r)
{
	*max_bytes_r = user->quota_bytes;
	*max_messages_r = user->quota_messages;
}

int store_user_quota_usage(struct store_user *user, uint64_t *bytes_r, uint64_t *messages_r,
			   struct error *err)
{
	int64_t b = 0, m = 0, dup = 0;
	for (int attempt = 0;; attempt++) {
		if (store_index_verify(user, err) < 0)
			return -1;
		if (store_index_meta_get(user, "quota_bytes", &b) == 0 &&
		    store_index_meta_get(user, "quota_messages", &m) == 0 &&
		    store_index_meta_get(user, "quota_dup_bytes", &dup) == 0)
			break;
		store_index_sqlerr(user, err, "quota");
		if (!user->ix_damaged || attempt > 0)
			return -1;
	}
	b -= dup;
	*bytes_r = b < 0 ? 0 : (uint64_t)b;
	*messages_r = m < 0 ? 0 : (uint64_t)m;
	return 0;
}
int store_user_quota_check(struct store_user *user, uint64_t bytes, uint64_t messages,
			   struct error *err)
{
	uint64_t used_b, used_m;
	if (user->quota_bytes == 0 && user->quota_messages == 0)
		return 0;
	if (store_user_quota_usage(user, &used_b, &used_m, err) < 0)
		return -1;
	if ((user->quota_bytes != 0 && used_b + bytes > user->quota_bytes) ||
	    (user->quota_messages != 0 && used_m + messages > user->quota_messages)) {
		error_set(err, ERR_QUOTA, "mailbox is full (quota exceeded)");
		return -1;
	}
	return 0;
}

int store_user_quota_check_file(struct store_user *user, const char *base, uint64_t size,
				struct error *err)
{
	if (user->quota_bytes == 0 && user->quota_messages == 0)
		return 0;
	/* Another link of this file in the user's mailboxes: its bytes are
	 * counted already (one delivery to two of the user's mailboxes). */
	if (store_index_verify(user, err) < 0)
		return -1;
	sqlite3_stmt *st = store_index_stmt(user, "SELECT 1 FROM qfile WHERE base=?", err);
	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, base, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		store_index_sqlerr(user, err, "quota");
		return -1;
	}
	return store_user_quota_check(user, rc == SQLITE_ROW ? 0 : size, 1, err);
}

void store_user_release_index(struct store_user *user)
{
	/* Closed, not pooled: a session that waits (IDLE) may wait for hours,
	 * and a user has many of them; the pool is for what comes back soon. */
	if (!user->in_txn)
		store_index_drop(user);
}
