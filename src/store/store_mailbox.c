/*
 * store_mailbox.c: the mailboxes of a user and an open mailbox.
 *
 * The set: create (a maildir made under a temporary name, then renamed into
 * place under the user-root lock, so it appears whole or not at all),
 * delete (renamed away in one step, then removed), list. RENAME, which needs
 * the message operations for INBOX, is store_mailbox_rename.c.
 *
 * An open mailbox (struct store_mailbox): its mailroom-box state (given a
 * UIDVALIDITY if another program made the maildir), its row in the index
 * (a row left by an earlier mailbox of the same name, with another
 * UIDVALIDITY, is dropped), its directory descriptors (store_fds.c),
 * keywords, STATUS figures, and the reads of its message rows that sessions
 * use to catch up: messages, changed since a modseq, expunged since one.
 * store_mailbox_open reconciles with the files first (store_sync.c).
 */
#include "store/store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fsx.h"

static const char *const special_uses[] = { "\\Drafts", "\\Sent",  "\\Trash",  "\\Junk",
					    "\\Archive", "\\All", "\\Flagged" };

int store_mailbox_name_normalize(const char *name, char **norm_r, struct error *err)
{
	return store_name_normalize(name, norm_r, err);
}

/* ---- create / delete ------------------------------------------------------- */

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
			 struct error *err)
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
		error_set(err, ERR_EXISTS, "mailbox already exists");
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
		error_errno(err, "cannot create the mailbox folder");
		goto cleanup;
	}
	fd = fsx_opendir_beneath(user->root_fd, tmpname);
	if (fd < 0 || store_box_write(fd, &box, err) < 0)
		goto cleanup;
	if (fsx_rename_noreplace(user->root_fd, tmpname, user->root_fd, dir) < 0) {
		if (errno == EEXIST)
			error_set(err, ERR_EXISTS, "mailbox already exists");
		else
			error_errno(err, "cannot create the mailbox");
		goto cleanup;
	}
	if (fsx_fsync(user->root_fd) < 0) {
		error_errno(err, "fsync");
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
			 struct error *err)
{
	if (special_use != NULL) {
		int ok = 0;
		for (size_t i = 0; i < sizeof(special_uses) / sizeof(special_uses[0]); i++)
			ok |= strcmp(special_use, special_uses[i]) == 0;
		if (!ok) {
			error_set(err, ERR_INVALID, "unknown special-use attribute");
			return -1;
		}
	}
	if (store_lock_user(user, err) < 0)
		return -1;
	int ret = create_locked(user, name, special_use, err);
	store_lock_user_release(user);
	return ret;
}

/* Forget a mailbox in the index, giving back its quota. */
static int index_forget(struct store_user *user, const char *name, struct error *err)
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

int store_mailbox_delete(struct store_user *user, const char *name, struct error *err)
{
	char *norm = NULL;
	char *dir = NULL;
	char tmpname[256];
	char base[200];
	int ret = -1;

	if (store_name_normalize(name, &norm, err) < 0)
		return -1;
	if (strcmp(norm, "INBOX") == 0) {
		error_set(err, ERR_INVALID, "INBOX cannot be deleted");
		free(norm);
		return -1;
	}
	if (store_name_to_dir(norm, &dir, err) < 0 || store_lock_user(user, err) < 0)
		goto out;
	int fd = fsx_opendir_beneath(user->root_fd, dir);
	if (fd < 0) {
		if (errno == ENOENT)
			error_set(err, ERR_NOTFOUND, "no such mailbox");
		else
			error_errno(err, "cannot open the mailbox");
		goto unlock;
	}
	/* Wait for writers of this mailbox, then make it vanish in one rename. */
	if (store_lock_wait(fd, user->store->lock_timeout, err) < 0) {
		close(fd);
		goto unlock;
	}
	store_unique_base(user->store, base, sizeof(base));
	snprintf(tmpname, sizeof(tmpname), "tmp-delete.%.200s", base);
	if (fsx_renameat(user->root_fd, dir, user->root_fd, tmpname) < 0) {
		error_errno(err, "cannot delete the mailbox");
		close(fd);
		goto unlock;
	}
	close(fd);
	if (fsx_fsync(user->root_fd) < 0) {
		error_errno(err, "fsync");
		goto unlock;
	}
	/* From here the mailbox is gone; leftovers of a failed removal are
	 * tmp-delete.* folders that `mailroom check --repair` removes. */
	store_remove_tree(user->root_fd, tmpname, 0);
	ret = index_forget(user, norm, err);
unlock:
	store_lock_user_release(user);
out:
	free(dir);
	free(norm);
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
		       struct error *err)
{
	struct list_entry *ents = NULL;
	size_t n = 0, cap = 0;
	int ret = -1;
	int fd = dup(user->root_fd);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);

	if (d == NULL) {
		error_errno(err, "cannot list mailboxes");
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
				error_set(err, ERR_TEMP, "out of memory");
				goto out;
			}
			ents = p;
		}
		ents[n].name = name;
		ents[n].special_use[0] = '\0';
		struct store_box box;
		struct error ignore;
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

/* ---- open / close / status / keywords --------------------------------------- */

/* Find or create the index row of mbox; a row whose UIDVALIDITY differs
 * belongs to an earlier mailbox of the same name and is dropped. */
static int index_row(struct store_mailbox *mbox, struct error *err)
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

/* Its mailroom-box: read, given a UIDVALIDITY if another program made the
 * maildir, or healed if it was lost or damaged (store_box.c). */
static int ensure_box(struct store_mailbox *mbox, struct error *err)
{
	return store_box_load(mbox, err);
}

/* The connection checked (store_index_verify) and the mailbox's row looked
 * up in the index it is now; once more if the index turned out damaged
 * (healed by the second verify). */
static int index_row_verified(struct store_mailbox *mbox, struct error *err)
{
	for (int attempt = 0;; attempt++) {
		if (store_index_verify(mbox->user, err) < 0)
			return -1;
		if (mbox->ix_epoch == mbox->user->ix_epoch && mbox->id != 0)
			return 0;
		if (index_row(mbox, err) == 0) {
			mbox->ix_epoch = mbox->user->ix_epoch;
			return 0;
		}
		if (!mbox->user->ix_damaged || attempt > 0)
			return -1;
	}
}

int store_mailbox_open_nosync(struct store_user *user, const char *name,
			      struct store_mailbox **mbox_r, struct error *err)
{
	struct store_mailbox *m = calloc(1, sizeof(*m));
	if (m == NULL) {
		error_set(err, ERR_TEMP, "out of memory");
		return -1;
	}
	m->user = user;
	m->dir_fd = m->cur_fd = m->new_fd = -1;
	if (store_name_normalize(name, &m->name, err) < 0 ||
	    store_name_to_dir(m->name, &m->dirname, err) < 0)
		goto fail;
	if (store_fds_open(m, err) < 0)
		goto fail;
	if (ensure_box(m, err) < 0 || index_row_verified(m, err) < 0)
		goto fail;
	*mbox_r = m;
	return 0;
fail:
	store_mailbox_close(&m);
	return -1;
}

int store_mailbox_open(struct store_user *user, const char *name, struct store_mailbox **mbox_r,
		       struct error *err)
{
	if (store_mailbox_open_nosync(user, name, mbox_r, err) < 0)
		return -1;
	if (store_mailbox_sync(*mbox_r, 0, err) < 0) {
		store_mailbox_close(mbox_r);
		return -1;
	}
	return 0;
}

void store_mailbox_release_fds(struct store_mailbox *mbox)
{
	store_fds_close(mbox);
}

static int sync_once(struct store_mailbox *mbox, int full, struct error *err)
{
	if (!full) {
		int need = store_sync_needed(mbox, err);
		if (need <= 0)
			return need;
	}
	if (store_lock_mailbox(mbox, err) < 0)
		return -1;
	int ret = store_sync_locked(mbox, full, err);
	store_lock_mailbox_release(mbox);
	return ret;
}

int store_mailbox_sync(struct store_mailbox *mbox, int full, struct error *err)
{
	if (store_fds_open(mbox, err) < 0)
		return -1;
	/* Every session command and every change passes here before it reads
	 * rows: the place to notice an index moved aside by another process,
	 * or found damaged by a statement (then healed, and the sync done once
	 * more on the rebuilt index). */
	for (int attempt = 0;; attempt++) {
		if (index_row_verified(mbox, err) < 0)
			return -1;
		if (sync_once(mbox, full, err) == 0)
			return 0;
		if (!mbox->user->ix_damaged || attempt > 0)
			return -1;
	}
}

void store_mailbox_close(struct store_mailbox **mbox)
{
	struct store_mailbox *m = *mbox;
	if (m == NULL)
		return;
	while (m->lock_depth > 0)
		store_lock_mailbox_release(m);
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

const char *store_mailbox_guid(const struct store_mailbox *mbox)
{
	return mbox->box.guid;
}

int store_mailbox_status(struct store_mailbox *mbox, struct store_status *st_r, struct error *err)
{
	if (store_fds_open(mbox, err) < 0)
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
				unsigned *idx_r, struct error *err)
{
	if (store_fds_open(mbox, err) < 0)
		return -1;
	/* Keywords are case-insensitive (RFC 9051 2.3.2). */
	for (unsigned i = 0; i < STORE_MAX_KEYWORDS; i++)
		if (mbox->box.keywords[i] != NULL && strcasecmp(mbox->box.keywords[i], keyword) == 0) {
			*idx_r = i;
			return 0;
		}
	if (!create) {
		error_set(err, ERR_NOTFOUND, "no such keyword");
		return -1;
	}
	if (store_lock_mailbox(mbox, err) < 0)
		return -1;
	/* Another process may have added keywords: reread under the lock. */
	int ret = -1;
	if (store_box_load(mbox, err) < 0)
		goto out;
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
			error_set(err, ERR_INVALID, "invalid keyword");
			goto out;
		}
		mbox->box.keywords[i] = strdup(keyword);
		if (mbox->box.keywords[i] == NULL || store_box_save(mbox, err) < 0) {
			free(mbox->box.keywords[i]);
			mbox->box.keywords[i] = NULL;
			if (err->code == ERR_OK)
				error_set(err, ERR_TEMP, "out of memory");
			goto out;
		}
		/* The index keeps a copy, for a mailroom-box that gets lost;
		 * failing to write it costs nothing now (the next full sync
		 * writes it again). */
		struct error ignore;
		(void)store_box_index_keywords(mbox, &ignore);
		*idx_r = i;
		ret = 0;
		goto out;
	}
	error_set(err, ERR_LIMIT, "too many keywords in this mailbox");
out:
	store_lock_mailbox_release(mbox);
	return ret;
}

/* ---- message rows ------------------------------------------------------------ */

/* Step a bound "SELECT uid, flags, keywords, modseq, size, internaldate,
 * fname" statement, calling cb for each row until it returns non-zero. */
static int walk_rows(struct store_mailbox *mbox, sqlite3_stmt *st,
		     int (*cb)(void *ctx, const struct store_msg *msg), void *ctx,
		     struct error *err)
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
	return store_index_done(mbox->user, st, rc, "messages", err);
}

int store_mailbox_messages(struct store_mailbox *mbox, uint32_t lo, uint32_t hi,
			   int (*cb)(void *ctx, const struct store_msg *msg), void *ctx,
			   struct error *err)
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

int store_mailbox_changed_since(struct store_mailbox *mbox, uint64_t modseq,
				int (*cb)(void *ctx, const struct store_msg *msg), void *ctx,
				struct error *err)
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
				 struct error *err)
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
	return store_index_done(mbox->user, st, rc, "expunged", err);
}

int store_mailbox_modseq(struct store_mailbox *mbox, uint32_t *uidvalidity_r,
			 uint64_t *highestmodseq_r, struct error *err)
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
