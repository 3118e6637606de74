/*
 * store_mailbox.c: mailboxes of a user: create, delete, rename, list,
 * subscriptions, open/close, locks, keywords and status.
 *
 * Locks. Two kinds, both flock(2) on a directory, so they need no lock file,
 * move with a renamed mailbox and vanish with a crashed process:
 *  - the user's root directory: taken for changes to the set of mailboxes
 *    (create, delete, rename, subscriptions, UIDVALIDITY allocation);
 *  - a mailbox directory: taken for any change to that mailbox's messages
 *    (UID and modseq allocation, link, rename, unlink, reconcile). Holding it
 *    across the link of a new message is what keeps UIDs appearing in
 *    ascending order to every reader.
 * A lock is waited for up to lock_timeout seconds, then the operation fails
 * with STORE_ERR_TEMP ("lock timeout"). flock locks belong to an open file
 * description, so one process must not hold two store_mailbox objects of the
 * same mailbox locked at once (nothing in the store does).
 */
#include "store/store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/fsx.h"

#define SUBSCRIPTIONS_FILE "subscriptions"

static const char *const special_uses[] = { "\\Drafts", "\\Sent",  "\\Trash",  "\\Junk",
					    "\\Archive", "\\All", "\\Flagged" };

static int flock_wait(int fd, unsigned timeout_s, struct store_error *err)
{
	struct timespec start, now;
	long delay_us = 100;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK && errno != EINTR) {
			store_err_errno(err, "lock");
			return -1;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		int64_t waited_ms = (int64_t)(now.tv_sec - start.tv_sec) * 1000 +
				    (now.tv_nsec - start.tv_nsec) / 1000000;
		if (waited_ms >= (int64_t)timeout_s * 1000) {
			store_err(err, STORE_ERR_TEMP, "lock timeout");
			return -1;
		}
		struct timespec ts = { 0, delay_us * 1000 };
		nanosleep(&ts, NULL);
		if (delay_us < 20000)
			delay_us *= 2;
	}
}

static int root_lock(struct store_user *user, struct store_error *err)
{
	return flock_wait(user->root_fd, user->store->lock_timeout, err);
}

static void root_unlock(struct store_user *user)
{
	flock(user->root_fd, LOCK_UN);
}

int store_mailbox_lock(struct store_mailbox *mbox, struct store_error *err)
{
	if (store_mailbox_fds(mbox, err) < 0)
		return -1;
	if (mbox->lock_depth > 0) {
		mbox->lock_depth++;
		return 0;
	}
	if (flock_wait(mbox->dir_fd, mbox->user->store->lock_timeout, err) < 0)
		return -1;
	mbox->lock_depth = 1;
	return 0;
}

void store_mailbox_unlock(struct store_mailbox *mbox)
{
	if (mbox->lock_depth > 0 && --mbox->lock_depth == 0)
		flock(mbox->dir_fd, LOCK_UN);
}

int store_mailbox_save_box(struct store_mailbox *mbox, struct store_error *err)
{
	return store_box_write(mbox->dir_fd, &mbox->box, err);
}

int store_mailbox_next_modseq(struct store_mailbox *mbox, uint64_t *modseq_r,
			      struct store_error *err)
{
	struct store_user *user = mbox->user;
	sqlite3_stmt *st = store_index_stmt(
		user, "UPDATE mailbox SET highestmodseq=highestmodseq+1 WHERE id=? RETURNING highestmodseq",
		err);
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, mbox->id);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_reset(st);
		store_index_sqlerr(user, err, "modseq");
		return -1;
	}
	uint64_t m = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (m >= mbox->box.modseq_reserved) {
		/* Reserve ahead, durably, before handing this one out. */
		uint64_t old = mbox->box.modseq_reserved;
		mbox->box.modseq_reserved = m + STORE_MODSEQ_CHUNK;
		if (store_mailbox_save_box(mbox, err) < 0) {
			mbox->box.modseq_reserved = old;
			return -1;
		}
	}
	*modseq_r = m;
	return 0;
}

int store_mailbox_note_mtime(struct store_mailbox *mbox, struct store_error *err)
{
	if (store_mailbox_fds(mbox, err) < 0)
		return -1;
	struct stat st;
	if (fstat(mbox->cur_fd, &st) < 0) {
		store_err_errno(err, "stat cur");
		return -1;
	}
	int64_t ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	return store_index_exec(mbox->user, err, "UPDATE mailbox SET cur_mtime=%lld WHERE id=%lld",
				(long long)ns, (long long)mbox->id);
}

/* ---- create / delete / rename -------------------------------------------- */

static int make_maildir(int root_fd, const char *tmpname)
{
	if (mkdirat(root_fd, tmpname, 0700) < 0)
		return -1;
	int fd = fsx_opendir_beneath(root_fd, tmpname);
	if (fd < 0)
		return -1;
	int ret = 0;
	if (mkdirat(fd, "tmp", 0700) < 0 || mkdirat(fd, "new", 0700) < 0 ||
	    mkdirat(fd, "cur", 0700) < 0)
		ret = -1;
	close(fd);
	return ret;
}

static int create_locked(struct store_user *user, const char *name, const char *special_use,
			 struct store_error *err)
{
	char *dir = NULL;
	char tmpname[256];
	char base[200];
	struct store_box box;
	int fd = -1;
	int ret = -1;
	struct stat st;

	memset(&box, 0, sizeof(box));
	if (store_name_to_dir(name, &dir, err) < 0)
		return -1;
	if (fstatat(user->root_fd, dir, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		store_err(err, STORE_ERR_EXISTS, "mailbox already exists");
		goto out;
	}
	store_unique_base(user->store, base, sizeof(base));
	snprintf(tmpname, sizeof(tmpname), "tmp-create.%.200s", base);
	uint32_t uv;
	if (store_box_next_uidvalidity(user, &uv, err) < 0)
		goto out;
	store_box_init(&box, uv);
	if (special_use != NULL)
		snprintf(box.special_use, sizeof(box.special_use), "%s", special_use);
	if (make_maildir(user->root_fd, tmpname) < 0) {
		store_err_errno(err, "cannot create the mailbox folder");
		goto cleanup;
	}
	fd = fsx_opendir_beneath(user->root_fd, tmpname);
	if (fd < 0 || store_box_write(fd, &box, err) < 0)
		goto cleanup;
	if (fsx_rename_noreplace(user->root_fd, tmpname, user->root_fd, dir) < 0) {
		if (errno == EEXIST)
			store_err(err, STORE_ERR_EXISTS, "mailbox already exists");
		else
			store_err_errno(err, "cannot create the mailbox");
		goto cleanup;
	}
	if (fsx_fsync(user->root_fd) < 0) {
		store_err_errno(err, "fsync");
		goto out;
	}
	ret = 0;
	goto out;
cleanup:
	store_remove_tree(user->root_fd, tmpname, 0);
out:
	if (fd >= 0)
		close(fd);
	store_box_clear(&box);
	free(dir);
	return ret;
}

int store_mailbox_create(struct store_user *user, const char *name, const char *special_use,
			 struct store_error *err)
{
	if (special_use != NULL) {
		int ok = 0;
		for (size_t i = 0; i < sizeof(special_uses) / sizeof(special_uses[0]); i++)
			ok |= strcmp(special_use, special_uses[i]) == 0;
		if (!ok) {
			store_err(err, STORE_ERR_INVALID, "unknown special-use attribute");
			return -1;
		}
	}
	if (root_lock(user, err) < 0)
		return -1;
	int ret = create_locked(user, name, special_use, err);
	root_unlock(user);
	return ret;
}

/* Forget a mailbox in the index, giving back its quota. */
static int index_forget(struct store_user *user, const char *name, struct store_error *err)
{
	if (store_index_begin(user, err) < 0)
		return -1;
	if (store_index_exec(user, err,
			     "UPDATE meta SET value=max(0, value-(SELECT coalesce(sum(size),0) FROM msg"
			     " WHERE pending=0 AND mailbox=(SELECT id FROM mailbox WHERE name=%Q)))"
			     " WHERE key='quota_bytes'",
			     name) < 0 ||
	    store_index_exec(user, err,
			     "UPDATE meta SET value=max(0, value-(SELECT count(*) FROM msg"
			     " WHERE pending=0 AND mailbox=(SELECT id FROM mailbox WHERE name=%Q)))"
			     " WHERE key='quota_messages'",
			     name) < 0 ||
	    store_index_exec(user, err,
			     "DELETE FROM msg WHERE mailbox=(SELECT id FROM mailbox WHERE name=%Q);"
			     "DELETE FROM expunged WHERE mailbox=(SELECT id FROM mailbox WHERE name=%Q);"
			     "DELETE FROM mailbox WHERE name=%Q",
			     name, name, name) < 0) {
		store_index_rollback(user);
		return -1;
	}
	return store_index_commit(user, err);
}

int store_mailbox_delete(struct store_user *user, const char *name, struct store_error *err)
{
	char *norm = NULL;
	char *dir = NULL;
	char tmpname[256];
	char base[200];
	int ret = -1;

	if (store_mailbox_name_normalize(name, &norm, err) < 0)
		return -1;
	if (strcmp(norm, "INBOX") == 0) {
		store_err(err, STORE_ERR_INVALID, "INBOX cannot be deleted");
		free(norm);
		return -1;
	}
	if (store_name_to_dir(norm, &dir, err) < 0 || root_lock(user, err) < 0)
		goto out;
	int fd = fsx_opendir_beneath(user->root_fd, dir);
	if (fd < 0) {
		if (errno == ENOENT)
			store_err(err, STORE_ERR_NOTFOUND, "no such mailbox");
		else
			store_err_errno(err, "cannot open the mailbox");
		goto unlock;
	}
	/* Wait for writers of this mailbox, then make it vanish in one rename. */
	if (flock_wait(fd, user->store->lock_timeout, err) < 0) {
		close(fd);
		goto unlock;
	}
	store_unique_base(user->store, base, sizeof(base));
	snprintf(tmpname, sizeof(tmpname), "tmp-delete.%.200s", base);
	if (fsx_renameat(user->root_fd, dir, user->root_fd, tmpname) < 0) {
		store_err_errno(err, "cannot delete the mailbox");
		close(fd);
		goto unlock;
	}
	close(fd);
	if (fsx_fsync(user->root_fd) < 0) {
		store_err_errno(err, "fsync");
		goto unlock;
	}
	/* From here the mailbox is gone; leftovers of a failed removal are
	 * tmp-delete.* folders that `mailroom check --repair` removes. */
	store_remove_tree(user->root_fd, tmpname, 0);
	ret = index_forget(user, norm, err);
unlock:
	root_unlock(user);
out:
	free(dir);
	free(norm);
	return ret;
}

struct name_list {
	char **names;
	size_t n;
	size_t cap;
};

static int collect_name(void *ctx, const struct store_mailbox_info *info)
{
	struct name_list *l = ctx;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		char **p = realloc(l->names, cap * sizeof(*p));
		if (p == NULL)
			return -1;
		l->names = p;
		l->cap = cap;
	}
	l->names[l->n] = strdup(info->name);
	if (l->names[l->n] == NULL)
		return -1;
	l->n++;
	return 0;
}

static void name_list_free(struct name_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->names[i]);
	free(l->names);
	memset(l, 0, sizeof(*l));
}

static int is_child_of(const char *name, const char *parent)
{
	size_t n = strlen(parent);
	return strncmp(name, parent, n) == 0 && name[n] == '/';
}

static int rename_inbox(struct store_user *user, const char *to, struct store_error *err);

int store_mailbox_rename(struct store_user *user, const char *from, const char *to,
			 struct store_error *err)
{
	char *nfrom = NULL, *nto = NULL;
	struct name_list all = { 0 };
	int ret = -1;

	if (store_mailbox_name_normalize(from, &nfrom, err) < 0 ||
	    store_mailbox_name_normalize(to, &nto, err) < 0)
		goto out;
	if (strcmp(nto, "INBOX") == 0 || is_child_of(nto, nfrom) || strcmp(nto, nfrom) == 0) {
		store_err(err, STORE_ERR_INVALID, "cannot rename a mailbox to INBOX, itself or its child");
		goto out;
	}
	if (strcmp(nfrom, "INBOX") == 0) {
		ret = rename_inbox(user, nto, err);
		goto out;
	}
	if (root_lock(user, err) < 0)
		goto out;
	if (store_mailbox_list(user, collect_name, &all, err) < 0)
		goto unlock;
	int found = 0;
	for (size_t i = 0; i < all.n; i++) {
		if (strcmp(all.names[i], nto) == 0 || is_child_of(all.names[i], nto)) {
			store_err(err, STORE_ERR_EXISTS, "target mailbox already exists");
			goto unlock;
		}
		found |= strcmp(all.names[i], nfrom) == 0;
	}
	if (!found) {
		store_err(err, STORE_ERR_NOTFOUND, "no such mailbox");
		goto unlock;
	}
	/* The mailbox first, then each child: every step is one atomic rename,
	 * and a failure half way leaves valid mailboxes under either name. */
	for (size_t i = 0; i < all.n; i++) {
		const char *old = all.names[i];
		if (strcmp(old, nfrom) != 0 && !is_child_of(old, nfrom))
			continue;
		char *newname = NULL, *olddir = NULL, *newdir = NULL;
		if (asprintf(&newname, "%s%s", nto, old + strlen(nfrom)) < 0) {
			store_err(err, STORE_ERR_TEMP, "out of memory");
			goto unlock;
		}
		int rc = -1;
		if (store_name_to_dir(old, &olddir, err) == 0 &&
		    store_name_to_dir(newname, &newdir, err) == 0) {
			if (fsx_rename_noreplace(user->root_fd, olddir, user->root_fd, newdir) < 0)
				store_err_errno(err, "cannot rename the mailbox");
			else if (store_index_exec(user, err,
						  "DELETE FROM msg WHERE mailbox IN (SELECT id FROM mailbox WHERE name=%Q);"
						  "DELETE FROM mailbox WHERE name=%Q;"
						  "UPDATE mailbox SET name=%Q WHERE name=%Q",
						  newname, newname, newname, old) == 0)
				rc = 0;
		}
		free(newname);
		free(olddir);
		free(newdir);
		if (rc < 0)
			goto unlock;
	}
	if (fsx_fsync(user->root_fd) < 0) {
		store_err_errno(err, "fsync");
		goto unlock;
	}
	ret = 0;
unlock:
	root_unlock(user);
out:
	name_list_free(&all);
	free(nfrom);
	free(nto);
	return ret;
}

struct uid_list {
	uint32_t *uids;
	size_t n;
	size_t cap;
};

static int collect_uid(void *ctx, const struct store_msg *msg)
{
	struct uid_list *l = ctx;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 256;
		uint32_t *p = realloc(l->uids, cap * sizeof(*p));
		if (p == NULL)
			return -1;
		l->uids = p;
		l->cap = cap;
	}
	l->uids[l->n++] = msg->uid;
	return 0;
}

/* RFC 9051 6.3.6: renaming INBOX moves all its messages to a new mailbox of
 * the new name and leaves INBOX empty; INBOX's children are not renamed. */
static int rename_inbox(struct store_user *user, const char *to, struct store_error *err)
{
	struct store_mailbox *src = NULL, *dst = NULL;
	struct uid_list l = { 0 };
	uint32_t *dst_uids = NULL;
	int ret = -1;

	if (store_mailbox_create(user, to, NULL, err) < 0)
		return -1;
	if (store_mailbox_open(user, "INBOX", &src, err) < 0 ||
	    store_mailbox_open(user, to, &dst, err) < 0)
		goto out;
	if (store_mailbox_messages(src, 1, UINT32_MAX, collect_uid, &l, err) < 0)
		goto out;
	if (l.n > 0) {
		dst_uids = calloc(l.n, sizeof(*dst_uids));
		if (dst_uids == NULL) {
			store_err(err, STORE_ERR_TEMP, "out of memory");
			goto out;
		}
		if (store_mailbox_move(src, l.uids, l.n, dst, dst_uids, err) < 0)
			goto out;
	}
	ret = 0;
out:
	free(dst_uids);
	free(l.uids);
	store_mailbox_close(&dst);
	store_mailbox_close(&src);
	return ret;
}

/* ---- list ----------------------------------------------------------------- */

struct list_entry {
	char *name;
	char special_use[16];
};

static int entry_cmp(const void *a, const void *b)
{
	const struct list_entry *x = a, *y = b;
	int xi = strcmp(x->name, "INBOX") == 0, yi = strcmp(y->name, "INBOX") == 0;
	if (xi != yi)
		return yi - xi;
	return strcmp(x->name, y->name);
}

int store_mailbox_list(struct store_user *user,
		       int (*cb)(void *ctx, const struct store_mailbox_info *info), void *ctx,
		       struct store_error *err)
{
	struct list_entry *ents = NULL;
	size_t n = 0, cap = 0;
	int ret = -1;
	int fd = dup(user->root_fd);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);

	if (d == NULL) {
		store_err_errno(err, "cannot list mailboxes");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	rewinddir(d);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		char *name;
		if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
			continue;
		if (store_name_from_dir(de->d_name, &name) < 0)
			continue;
		int mfd = fsx_opendir_beneath(user->root_fd, de->d_name);
		if (mfd < 0) {
			free(name);
			continue;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			struct list_entry *p = realloc(ents, cap * sizeof(*p));
			if (p == NULL) {
				close(mfd);
				free(name);
				store_err(err, STORE_ERR_TEMP, "out of memory");
				goto out;
			}
			ents = p;
		}
		ents[n].name = name;
		ents[n].special_use[0] = '\0';
		struct store_box box;
		struct store_error ignore;
		if (store_box_read(mfd, &box, &ignore) == 0) {
			memcpy(ents[n].special_use, box.special_use, sizeof(box.special_use));
			store_box_clear(&box);
		}
		close(mfd);
		n++;
	}
	if (n > 1)
		qsort(ents, n, sizeof(*ents), entry_cmp);
	for (size_t i = 0; i < n; i++) {
		struct store_mailbox_info info = {
			ents[i].name, ents[i].special_use[0] ? ents[i].special_use : NULL
		};
		if (cb(ctx, &info) != 0)
			break;
	}
	ret = 0;
out:
	for (size_t i = 0; i < n; i++)
		free(ents[i].name);
	free(ents);
	closedir(d);
	return ret;
}

/* ---- subscriptions ------------------------------------------------------- */

int store_subscriptions(struct store_user *user, int (*cb)(void *ctx, const char *name),
			void *ctx, struct store_error *err)
{
	char *data;
	size_t len;
	if (fsx_read_file(user->root_fd, SUBSCRIPTIONS_FILE, 1 << 20, &data, &len) < 0) {
		if (errno == ENOENT)
			return 0;
		store_err_errno(err, "cannot read subscriptions");
		return -1;
	}
	char *save = NULL;
	for (char *line = strtok_r(data, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save))
		if (*line != '\0' && cb(ctx, line) != 0)
			break;
	free(data);
	return 0;
}

struct subs_edit {
	struct buf out;
	const char *name;
	int found;
	int subscribe;
};

static int subs_copy(void *ctx, const char *name)
{
	struct subs_edit *e = ctx;
	if (strcmp(name, e->name) == 0) {
		e->found = 1;
		if (!e->subscribe)
			return 0;
	}
	buf_printf(&e->out, "%s\n", name);
	return 0;
}

int store_subscribe(struct store_user *user, const char *name, int subscribe,
		    struct store_error *err)
{
	char *norm;
	struct subs_edit e = { BUF_INIT, NULL, 0, subscribe };
	int ret = -1;

	if (store_mailbox_name_normalize(name, &norm, err) < 0)
		return -1;
	e.name = norm;
	if (root_lock(user, err) < 0)
		goto out;
	if (store_subscriptions(user, subs_copy, &e, err) < 0)
		goto unlock;
	if (e.found == subscribe) {
		ret = 0; /* nothing to change */
		goto unlock;
	}
	if (subscribe)
		buf_printf(&e.out, "%s\n", norm);
	if (e.out.failed) {
		store_err(err, STORE_ERR_TEMP, "out of memory");
		goto unlock;
	}
	if (fsx_write_file_atomic(user->root_fd, SUBSCRIPTIONS_FILE, buf_cstr(&e.out), e.out.len) < 0) {
		store_err_errno(err, "cannot write subscriptions");
		goto unlock;
	}
	ret = 0;
unlock:
	root_unlock(user);
out:
	buf_free(&e.out);
	free(norm);
	return ret;
}

/* ---- open / close / status / keywords --------------------------------------- */

/* Find or create the index row of mbox; a row whose UIDVALIDITY differs
 * belongs to an earlier mailbox of the same name and is dropped. */
static int index_row(struct store_mailbox *mbox, struct store_error *err)
{
	struct store_user *user = mbox->user;
	sqlite3_stmt *st =
		store_index_stmt(user, "SELECT id, uidvalidity FROM mailbox WHERE name=?", err);
	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, mbox->name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && (uint32_t)sqlite3_column_int64(st, 1) == mbox->box.uidvalidity) {
		mbox->id = sqlite3_column_int64(st, 0);
		sqlite3_reset(st);
		return 0;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		store_index_sqlerr(user, err, "mailbox");
		return -1;
	}
	if (rc == SQLITE_ROW && index_forget(user, mbox->name, err) < 0)
		return -1;
	if (store_index_exec(user, err,
			     "INSERT OR IGNORE INTO mailbox(name, uidvalidity, uidnext, highestmodseq,"
			     " cur_mtime, rescan) VALUES(%Q, %u, %u, 0, 0, 2)",
			     mbox->name, mbox->box.uidvalidity, mbox->box.uid_floor) < 0)
		return -1;
	return index_row(mbox, err);
}

static int ensure_box(struct store_mailbox *mbox, struct store_error *err)
{
	if (store_box_read(mbox->dir_fd, &mbox->box, err) == 0)
		return 0;
	if (err->code != STORE_ERR_NOTFOUND)
		return -1;
	/* A maildir made by another program: give it a UIDVALIDITY. */
	if (root_lock(mbox->user, err) < 0)
		return -1;
	int ret = store_box_read(mbox->dir_fd, &mbox->box, err);
	if (ret < 0 && err->code == STORE_ERR_NOTFOUND) {
		uint32_t uv;
		ret = store_box_next_uidvalidity(mbox->user, &uv, err);
		if (ret == 0) {
			store_box_init(&mbox->box, uv);
			ret = store_box_write(mbox->dir_fd, &mbox->box, err);
		}
	}
	root_unlock(mbox->user);
	return ret;
}

static int open_subdir(int dir_fd, const char *name)
{
	int fd = fsx_opendir_beneath(dir_fd, name);
	if (fd < 0 && errno == ENOENT && mkdirat(dir_fd, name, 0700) == 0)
		fd = fsx_opendir_beneath(dir_fd, name);
	return fd;
}

static int open_fds(struct store_mailbox *m, struct store_error *err)
{
	m->dir_fd = fsx_opendir_beneath(m->user->root_fd, m->dirname);
	if (m->dir_fd < 0) {
		if (errno == ENOENT)
			store_err(err, STORE_ERR_NOTFOUND, "no such mailbox");
		else
			store_err_errno(err, "cannot open the mailbox");
		return -1;
	}
	struct stat st;
	if (fstat(m->dir_fd, &st) < 0) {
		store_err_errno(err, "cannot stat the mailbox");
		goto fail;
	}
	if (m->dir_ino == 0) {
		m->dir_dev = st.st_dev;
		m->dir_ino = st.st_ino;
	} else if (m->dir_dev != st.st_dev || m->dir_ino != st.st_ino) {
		store_err(err, STORE_ERR_NOTFOUND, "the mailbox was deleted or renamed");
		goto fail;
	}
	m->cur_fd = open_subdir(m->dir_fd, "cur");
	m->new_fd = open_subdir(m->dir_fd, "new");
	if (m->cur_fd < 0 || m->new_fd < 0) {
		store_err_errno(err, "cannot open the mailbox's cur/ or new/");
		goto fail;
	}
	return 0;
fail:
	store_mailbox_release_fds(m);
	return -1;
}

int store_mailbox_fds(struct store_mailbox *mbox, struct store_error *err)
{
	if (mbox->dir_fd >= 0 && mbox->cur_fd >= 0 && mbox->new_fd >= 0)
		return 0;
	store_mailbox_release_fds(mbox);
	return open_fds(mbox, err);
}

void store_mailbox_release_fds(struct store_mailbox *mbox)
{
	if (mbox->lock_depth > 0)
		return; /* the lock is held on dir_fd */
	int *fds[3] = { &mbox->new_fd, &mbox->cur_fd, &mbox->dir_fd };
	for (int i = 0; i < 3; i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
}

int store_mailbox_open_nosync(struct store_user *user, const char *name,
			      struct store_mailbox **mbox_r, struct store_error *err)
{
	struct store_mailbox *m = calloc(1, sizeof(*m));
	if (m == NULL) {
		store_err(err, STORE_ERR_TEMP, "out of memory");
		return -1;
	}
	m->user = user;
	m->dir_fd = m->cur_fd = m->new_fd = -1;
	if (store_mailbox_name_normalize(name, &m->name, err) < 0 ||
	    store_name_to_dir(m->name, &m->dirname, err) < 0)
		goto fail;
	if (open_fds(m, err) < 0)
		goto fail;
	if (ensure_box(m, err) < 0 || index_row(m, err) < 0)
		goto fail;
	*mbox_r = m;
	return 0;
fail:
	store_mailbox_close(&m);
	return -1;
}

int store_mailbox_open(struct store_user *user, const char *name, struct store_mailbox **mbox_r,
		       struct store_error *err)
{
	if (store_mailbox_open_nosync(user, name, mbox_r, err) < 0)
		return -1;
	if (store_mailbox_sync(*mbox_r, 0, err) < 0) {
		store_mailbox_close(mbox_r);
		return -1;
	}
	return 0;
}

void store_mailbox_mark_rescan(struct store_mailbox *mbox)
{
	struct store_error ignore;
	store_index_exec(mbox->user, &ignore, "UPDATE mailbox SET rescan=max(rescan, 1) WHERE id=%lld",
			 (long long)mbox->id);
}

void store_mailbox_close(struct store_mailbox **mbox)
{
	struct store_mailbox *m = *mbox;
	if (m == NULL)
		return;
	while (m->lock_depth > 0)
		store_mailbox_unlock(m);
	store_mailbox_release_fds(m);
	store_box_clear(&m->box);
	free(m->name);
	free(m->dirname);
	free(m);
	*mbox = NULL;
}

const char *store_mailbox_name(const struct store_mailbox *mbox)
{
	return mbox->name;
}

int store_mailbox_status(struct store_mailbox *mbox, struct store_status *st_r,
			 struct store_error *err)
{
	if (store_mailbox_fds(mbox, err) < 0)
		return -1;
	struct store_user *user = mbox->user;
	struct store_status s;
	memset(&s, 0, sizeof(s));
	sqlite3_stmt *st = store_index_stmt(
		user,
		/* one pass over the mailbox's rows for all four figures */
		"SELECT m.uidvalidity, m.uidnext, m.highestmodseq, count(g.uid),"
		" coalesce(sum((g.flags & 16)=0),0), coalesce(sum((g.flags & 32)!=0),0),"
		" coalesce(sum(g.size),0)"
		" FROM mailbox m LEFT JOIN msg g ON g.mailbox=m.id AND g.pending=0"
		" WHERE m.id=? GROUP BY m.id",
		err);
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, mbox->id);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_reset(st);
		store_index_sqlerr(user, err, "status");
		return -1;
	}
	s.uidvalidity = (uint32_t)sqlite3_column_int64(st, 0);
	s.uidnext = (uint32_t)sqlite3_column_int64(st, 1);
	s.highestmodseq = (uint64_t)sqlite3_column_int64(st, 2);
	s.messages = (uint32_t)sqlite3_column_int64(st, 3);
	s.unseen = (uint32_t)sqlite3_column_int64(st, 4);
	s.deleted = (uint32_t)sqlite3_column_int64(st, 5);
	s.size = (uint64_t)sqlite3_column_int64(st, 6);
	sqlite3_reset(st);
	*st_r = s;
	return 0;
}

const char *store_mailbox_keyword(const struct store_mailbox *mbox, unsigned idx)
{
	return idx < STORE_MAX_KEYWORDS ? mbox->box.keywords[idx] : NULL;
}

int store_mailbox_keyword_index(struct store_mailbox *mbox, const char *keyword, int create,
				unsigned *idx_r, struct store_error *err)
{
	if (store_mailbox_fds(mbox, err) < 0)
		return -1;
	/* Keywords are case-insensitive (RFC 9051 2.3.2). */
	for (unsigned i = 0; i < STORE_MAX_KEYWORDS; i++)
		if (mbox->box.keywords[i] != NULL && strcasecmp(mbox->box.keywords[i], keyword) == 0) {
			*idx_r = i;
			return 0;
		}
	if (!create) {
		store_err(err, STORE_ERR_NOTFOUND, "no such keyword");
		return -1;
	}
	if (store_mailbox_lock(mbox, err) < 0)
		return -1;
	/* Another process may have added keywords: reread under the lock. */
	struct store_box fresh;
	int ret = -1;
	if (store_box_read(mbox->dir_fd, &fresh, err) < 0)
		goto out;
	store_box_clear(&mbox->box);
	mbox->box = fresh;
	for (unsigned i = 0; i < STORE_MAX_KEYWORDS; i++)
		if (mbox->box.keywords[i] != NULL && strcasecmp(mbox->box.keywords[i], keyword) == 0) {
			*idx_r = i;
			ret = 0;
			goto out;
		}
	for (unsigned i = 0; i < STORE_MAX_KEYWORDS; i++) {
		if (mbox->box.keywords[i] != NULL)
			continue;
		if (*keyword == '\0' || strlen(keyword) > 100 || strpbrk(keyword, "(){%*\"\\] \t\r\n")) {
			store_err(err, STORE_ERR_INVALID, "invalid keyword");
			goto out;
		}
		mbox->box.keywords[i] = strdup(keyword);
		if (mbox->box.keywords[i] == NULL || store_mailbox_save_box(mbox, err) < 0) {
			free(mbox->box.keywords[i]);
			mbox->box.keywords[i] = NULL;
			if (err->code == STORE_OK)
				store_err(err, STORE_ERR_TEMP, "out of memory");
			goto out;
		}
		*idx_r = i;
		ret = 0;
		goto out;
	}
	store_err(err, STORE_ERR_LIMIT, "too many keywords in this mailbox");
out:
	store_mailbox_unlock(mbox);
	return ret;
}
