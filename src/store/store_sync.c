/*
 * store_sync.c: reconcile a mailbox's index with its files.
 *
 * Design note. The files are the truth: a message is in a mailbox exactly
 * when a file for it is in cur/ (or new/, waiting to be adopted), its UID is
 * the U= in its name and its flags are the letters after ":2,". The index is
 * brought in step with them here, under the mailbox lock, whenever one of
 * these says it may be behind:
 *
 *  - pending rows: store_link.c records a new message's row (pending=1) before
 *    it links the file, and clears the flag after. A pending row seen by the
 *    lock holder belongs to a process that died in between: if the file is
 *    there the message is adopted, if not the row is dropped. Its UID stays
 *    used (uidnext was committed with the row), so it is never handed out
 *    twice.
 *  - new/ has entries: another program (Postfix's maildir delivery, a user's
 *    script) dropped mail in. Each file gets the next UID and moves to cur/.
 *  - cur/'s mtime differs from the one recorded at our last change
 *    (store_sync_note_mtime), or the row is marked rescan (store_sync_mark_rescan,
 *    after an operation failed half way): someone added, renamed or removed files behind the
 *    index's back (or the index is new). Then cur/ is read in full: files are
 *    adopted with the UID in their name (a file without one, or with a UID
 *    another file already has, gets a new one), changed flags are taken from
 *    the names, and rows whose file is gone are expunged.
 *  - rescan = 2: the index was rebuilt, or the machine rebooted since it was
 *    written (store_index.c), so modseqs it lost may have been seen by clients.
 *    HIGHESTMODSEQ jumps to the reserve kept in mailroom-box, which is above
 *    every modseq ever handed out, so modseqs never go backwards.
 *
 * Known limit: mtimes have the kernel's clock-tick granularity. A change made
 * by hand to cur/ within the same tick as one of ours, after our stat, is not
 * noticed until the next change to cur/ or `mailroom check --repair`. Our own
 * processes never hit this: they change cur/ only under the lock and record
 * the result.
 */
#include "store/store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fsx.h"

struct file_ent {
	char *name;
	struct store_fname f;
	int64_t mtime;
	uint64_t size;
	int in_new;
};

struct file_list {
	struct file_ent *v;
	size_t n;
	size_t cap;
};

struct row {
	uint32_t uid;
	uint32_t flags;
	uint32_t keywords;
	uint64_t size;
	char *fname;
	int seen; /* matched by a file in this scan */
};

struct rows {
	struct row *v;
	size_t n;
	size_t cap;
};

static void say(struct store_sync_report *rep, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void say(struct store_sync_report *rep, const char *fmt, ...)
{
	char line[600];
	va_list ap;
	if (rep == NULL)
		return;
	rep->problems++;
	if (rep->say == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	rep->say(rep->ctx, line);
}

/* Crash residue resolved: not a problem, but said ("recovered: ..."). */
static void recovered(struct store_sync_report *rep, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void recovered(struct store_sync_report *rep, const char *fmt, ...)
{
	char line[600];
	va_list ap;
	if (rep == NULL)
		return;
	rep->recovered++;
	if (rep->say == NULL)
		return;
	va_start(ap, fmt);
	int n = snprintf(line, sizeof(line), "recovered: ");
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	rep->say(rep->ctx, line);
}

static void files_free(struct file_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].name);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static void rows_free(struct rows *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->v[i].fname);
	free(r->v);
	memset(r, 0, sizeof(*r));
}

/* Read the message files of dir_fd (cur/ or new/). */
static int read_files(int dir_fd, int in_new, struct file_list *l, struct error *err)
{
	int fd = dup(dir_fd);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		error_errno(err, "cannot read the mailbox folder");
		return -1;
	}
	rewinddir(d);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		struct store_fname f;
		struct stat st;
		if (de->d_name[0] == '.' || store_fname_parse(de->d_name, &f) < 0)
			continue;
		if (fstatat(dir_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue; /* gone meanwhile, or not a message (a symlink is never one) */
		if (l->n == l->cap) {
			size_t cap = l->cap ? l->cap * 2 : 256;
			struct file_ent *p = realloc(l->v, cap * sizeof(*p));
			if (p == NULL)
				goto oom;
			l->v = p;
			l->cap = cap;
		}
		struct file_ent *e = &l->v[l->n];
		e->name = strdup(de->d_name);
		if (e->name == NULL)
			goto oom;
		e->f = f;
		e->mtime = st.st_mtim.tv_sec;
		e->size = (uint64_t)st.st_size;
		e->in_new = in_new;
		if (in_new)
			e->f.uid = 0; /* a UID in a name in new/ was never ours to trust */
		l->n++;
	}
	closedir(d);
	return 0;
oom:
	closedir(d);
	error_set(err, ERR_TEMP, "out of memory");
	return -1;
}

static int file_cmp(const void *a, const void *b)
{
	const struct file_ent *x = a, *y = b;
	/* UID order, files without a UID last in arrival order. */
	uint64_t xu = x->f.uid ? x->f.uid : UINT64_MAX, yu = y->f.uid ? y->f.uid : UINT64_MAX;
	if (xu != yu)
		return xu < yu ? -1 : 1;
	if (x->mtime != y->mtime)
		return x->mtime < y->mtime ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int load_rows(struct store_mailbox *mbox, struct rows *r, struct error *err)
{
	sqlite3_stmt *st = store_index_stmt(
		mbox->user,
		"SELECT uid, flags, keywords, size, fname FROM msg WHERE mailbox=? AND pending=0 ORDER BY uid",
		err);
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, mbox->id);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (r->n == r->cap) {
			size_t cap = r->cap ? r->cap * 2 : 256;
			struct row *p = realloc(r->v, cap * sizeof(*p));
			if (p == NULL) {
				sqlite3_reset(st);
				error_set(err, ERR_TEMP, "out of memory");
				return -1;
			}
			r->v = p;
			r->cap = cap;
		}
		struct row *w = &r->v[r->n];
		w->uid = (uint32_t)sqlite3_column_int64(st, 0);
		w->flags = (uint32_t)sqlite3_column_int64(st, 1);
		w->keywords = (uint32_t)sqlite3_column_int64(st, 2);
		w->size = (uint64_t)sqlite3_column_int64(st, 3);
		w->fname = strdup((const char *)sqlite3_column_text(st, 4));
		w->seen = 0;
		if (w->fname == NULL) {
			sqlite3_reset(st);
			error_set(err, ERR_TEMP, "out of memory");
			return -1;
		}
		r->n++;
	}
	return store_index_done(mbox->user, st, rc, "load", err);
}

static struct row *find_row(struct rows *r, uint32_t uid)
{
	size_t lo = 0, hi = r->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (r->v[mid].uid == uid)
			return &r->v[mid];
		if (r->v[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int insert_msg(struct store_mailbox *mbox, uint32_t uid, const char *fname,
		      const struct file_ent *e, uint64_t modseq, struct error *err)
{
	sqlite3_stmt *st = store_index_stmt(
		mbox->user,
		"INSERT OR REPLACE INTO msg(mailbox, uid, fname, size, flags, keywords, modseq,"
		" internaldate, pending) VALUES(?, ?, ?, ?, ?, ?, ?, ?, 0)",
		err);
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, mbox->id);
	sqlite3_bind_int64(st, 2, uid);
	sqlite3_bind_text(st, 3, fname, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, (int64_t)e->size);
	sqlite3_bind_int64(st, 5, e->f.flags);
	sqlite3_bind_int64(st, 6, e->f.keywords);
	sqlite3_bind_int64(st, 7, (int64_t)modseq);
	sqlite3_bind_int64(st, 8, e->mtime);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		store_index_sqlerr(mbox->user, err, "insert");
		return -1;
	}
	/* A cache left by an earlier message of this UID (a rebuilt index,
	 * a replaced row) describes other bytes. */
	if (store_index_exec(mbox->user, err, "DELETE FROM msg_cache WHERE mailbox=%lld AND uid=%u",
			     (long long)mbox->id, uid) < 0)
		return -1;
	return store_index_quota_add(mbox->user, (int64_t)e->size, 1, err);
}

/* Resolve rows left pending by a process that died mid-delivery. */
static int resolve_pending(struct store_mailbox *mbox, struct store_sync_report *rep, int dry,
			   struct error *err)
{
	struct rows r = { 0 };
	sqlite3_stmt *st = store_index_stmt(
		mbox->user,
		/* INDEXED BY: without it SQLite walks the primary key, every row
		 * of the mailbox, on each open (no ANALYZE statistics here). */
		"SELECT uid, size, fname FROM msg INDEXED BY msg_pending WHERE mailbox=? AND pending=1",
		err);
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, mbox->id);
	while (sqlite3_step(st) == SQLITE_ROW) {
		struct row w = { 0 };
		w.uid = (uint32_t)sqlite3_column_int64(st, 0);
		w.size = (uint64_t)sqlite3_column_int64(st, 1);
		w.fname = strdup((const char *)sqlite3_column_text(st, 2));
		struct row *p = w.fname ? realloc(r.v, (r.n + 1) * sizeof(*p)) : NULL;
		if (p == NULL) {
			free(w.fname);
			sqlite3_reset(st);
			rows_free(&r);
			error_set(err, ERR_TEMP, "out of memory");
			return -1;
		}
		r.v = p;
		r.v[r.n++] = w;
	}
	sqlite3_reset(st);
	int ret = 0;
	for (size_t i = 0; i < r.n && ret == 0; i++) {
		int exists = faccessat(mbox->cur_fd, r.v[i].fname, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
		if (dry) {
			say(rep, "%s: UID %u: interrupted delivery, to be %s", mbox->name, r.v[i].uid,
			    exists ? "completed" : "dropped");
			continue;
		}
		recovered(rep, "%s: UID %u: interrupted delivery %s", mbox->name, r.v[i].uid,
			  exists ? "completed (its file was in cur/)" : "dropped (no file)");
		if (exists)
			ret = store_index_exec(mbox->user, err,
					       "UPDATE msg SET pending=0 WHERE mailbox=%lld AND uid=%u",
					       (long long)mbox->id, r.v[i].uid);
		else
			ret = store_index_exec(mbox->user, err,
					       "DELETE FROM msg WHERE mailbox=%lld AND uid=%u",
					       (long long)mbox->id, r.v[i].uid);
		if (ret == 0 && exists)
			ret = store_index_quota_add(mbox->user, (int64_t)r.v[i].size, 1, err);
	}
	rows_free(&r);
	return ret;
}

/* Give a file a new UID: rename it (from new/ or within cur/) to its final
 * name in cur/ and index it. */
static int adopt_new_uid(struct store_mailbox *mbox, struct file_ent *e, uint32_t *uidnext,
			 struct store_sync_report *rep, int dry, struct error *err)
{
	struct store_fname f = e->f;
	char newname[512];
	uint32_t uid = (*uidnext)++;
	uint64_t modseq = 0;

	say(rep, "%s: %s%s: new message, UID %u", mbox->name, e->in_new ? "new/" : "cur/",
	    e->name, uid);
	if (dry)
		return 0;
	f.uid = uid;
	f.size = e->size;
	if (f.savedate == 0) /* RFC 8514: it enters the mailbox now */
		f.savedate = (int64_t)time(NULL);
	if (store_fname_build(&f, newname, sizeof(newname)) < 0) {
		error_set(err, ERR_INVALID, "file name too long: %s", e->name);
		return -1;
	}
	if (fsx_renameat(e->in_new ? mbox->new_fd : mbox->cur_fd, e->name, mbox->cur_fd, newname) < 0) {
		if (errno == ENOENT)
			return 0; /* removed meanwhile */
		error_errno(err, "cannot move a new message into cur/");
		return -1;
	}
	if (store_box_next_modseq(mbox, &modseq, err) < 0)
		return -1;
	return insert_msg(mbox, uid, newname, e, modseq, err);
}

static int full_scan(struct store_mailbox *mbox, int trust_lost, uint32_t *uidnext,
		     struct store_sync_report *rep, int dry, struct error *err)
{
	struct file_list files = { 0 };
	struct rows rows = { 0 };
	int ret = -1;
	uint64_t base_modseq = 0;

	if (read_files(mbox->cur_fd, 0, &files, err) < 0 || load_rows(mbox, &rows, err) < 0)
		goto out;
	if (files.n > 1)
		qsort(files.v, files.n, sizeof(*files.v), file_cmp);
	if (trust_lost && !dry) {
		/* Jump above every modseq ever handed out (see the note above). */
		uint64_t hm = mbox->box.modseq_reserved;
		if (store_index_exec(mbox->user, err,
				     "UPDATE mailbox SET highestmodseq=max(highestmodseq, %llu) WHERE id=%lld",
				     (unsigned long long)hm, (long long)mbox->id) < 0 ||
		    store_box_next_modseq(mbox, &base_modseq, err) < 0)
			goto out;
	}
	for (size_t i = 0; i < files.n; i++) {
		struct file_ent *e = &files.v[i];
		if (e->f.uid != 0 && e->f.uid >= *uidnext)
			*uidnext = e->f.uid + 1;
	}
	uint32_t prev_uid = 0;
	for (size_t i = 0; i < files.n; i++) {
		struct file_ent *e = &files.v[i];
		if (e->f.uid == 0)
			break; /* the rest have no UID; handled below */
		if (e->f.uid == prev_uid) {
			e->f.uid = 0; /* a second file claiming a UID: it gets a new one */
			continue;
		}
		prev_uid = e->f.uid;
		int fixed_size = 0;
		if (e->f.size != 0 && e->f.size != e->size) {
			/* The file is not what was stored (truncated, or edited by
			 * hand): say so; repair gives it a name with its real size,
			 * so that what IMAP announces matches what it sends. */
			say(rep, "%s: UID %u: %s has %llu bytes, its name says %llu", mbox->name,
			    e->f.uid, e->name, (unsigned long long)e->size,
			    (unsigned long long)e->f.size);
			if (!dry) {
				char fixed[512];
				struct store_fname f = e->f;
				f.size = e->size;
				if (store_fname_build(&f, fixed, sizeof(fixed)) == 0 &&
				    fsx_renameat(mbox->cur_fd, e->name, mbox->cur_fd, fixed) == 0) {
					char *n = strdup(fixed);
					if (n != NULL) {
						free(e->name);
						e->name = n;
						e->f.size = e->size;
						fixed_size = 1;
					}
				}
			}
		}
		struct row *w = find_row(&rows, e->f.uid);
		if (w != NULL) {
			w->seen = 1;
			if (strcmp(w->fname, e->name) == 0)
				continue;
			if (w->flags != e->f.flags || w->keywords != e->f.keywords)
				say(rep, "%s: UID %u: flags changed on disk", mbox->name, w->uid);
			else if (!fixed_size)
				say(rep, "%s: UID %u: file renamed to %s", mbox->name, w->uid, e->name);
			if (dry)
				continue;
			uint64_t modseq;
			if (store_box_next_modseq(mbox, &modseq, err) < 0 ||
			    store_index_exec(mbox->user, err,
					     "UPDATE msg SET fname=%Q, flags=%u, keywords=%u, modseq=%llu,"
					     " size=%llu WHERE mailbox=%lld AND uid=%u",
					     e->name, e->f.flags, e->f.keywords,
					     (unsigned long long)modseq, (unsigned long long)e->size,
					     (long long)mbox->id, w->uid) < 0 ||
			    (w->size != e->size &&
			     store_index_exec(mbox->user, err,
					      "DELETE FROM msg_cache WHERE mailbox=%lld AND uid=%u",
					      (long long)mbox->id, w->uid) < 0) ||
			    (w->size != e->size &&
			     store_index_quota_add(mbox->user, (int64_t)e->size - (int64_t)w->size, 0,
						   err) < 0))
				goto out;
			continue;
		}
		say(rep, "%s: UID %u: message not in the index (%s)", mbox->name, e->f.uid, e->name);
		if (dry)
			continue;
		uint64_t modseq = base_modseq;
		if (modseq == 0 && store_box_next_modseq(mbox, &modseq, err) < 0)
			goto out;
		if (insert_msg(mbox, e->f.uid, e->name, e, modseq, err) < 0)
			goto out;
	}
	for (size_t i = 0; i < rows.n; i++) {
		struct row *w = &rows.v[i];
		if (w->seen)
			continue;
		say(rep, "%s: UID %u: file is gone, expunged", mbox->name, w->uid);
		if (dry)
			continue;
		uint64_t modseq;
		if (store_box_next_modseq(mbox, &modseq, err) < 0 ||
		    store_index_exec(mbox->user, err,
				     "DELETE FROM msg WHERE mailbox=%lld AND uid=%u;"
				     "INSERT OR REPLACE INTO expunged VALUES(%lld, %u, %llu)",
				     (long long)mbox->id, w->uid, (long long)mbox->id, w->uid,
				     (unsigned long long)modseq) < 0 ||
		    store_index_quota_add(mbox->user, -(int64_t)w->size, -1, err) < 0)
			goto out;
	}
	/* Files without a usable UID, oldest first. */
	if (files.n > 1)
		qsort(files.v, files.n, sizeof(*files.v), file_cmp);
	for (size_t i = 0; i < files.n; i++)
		if (files.v[i].f.uid == 0 &&
		    adopt_new_uid(mbox, &files.v[i], uidnext, rep, dry, err) < 0)
			goto out;
	ret = 0;
out:
	files_free(&files);
	rows_free(&rows);
	return ret;
}

/* The mailbox's row could not be read: an SQLite error, or no row (the
 * index was replaced under an open mailbox; SQLite's message would be "not
 * an error"). */
static void sync_row_missing(struct store_user *user, struct error *err)
{
	int code = user->ix.db != NULL ? sqlite3_errcode(user->ix.db) : SQLITE_OK;
	if (code == SQLITE_OK || code == SQLITE_DONE || code == SQLITE_ROW)
		error_set(err, ERR_TEMP, "sync: the mailbox is not in the index (it was replaced)");
	else
		store_index_sqlerr(user, err, "sync");
}

int store_sync_run(struct store_mailbox *mbox, int full, struct store_sync_report *rep,
		   struct error *err)
{
	if (store_fds_open(mbox, err) < 0)
		return -1;
	struct store_user *user = mbox->user;
	struct file_list fresh = { 0 };
	int dry = rep != NULL && rep->dry;
	int ret = -1;
	struct stat st;

	sqlite3_stmt *q = store_index_stmt(
		user, "SELECT uidnext, cur_mtime, rescan FROM mailbox WHERE id=?", err);
	if (q == NULL)
		return -1;
	sqlite3_bind_int64(q, 1, mbox->id);
	if (sqlite3_step(q) != SQLITE_ROW) {
		sqlite3_reset(q);
		sync_row_missing(user, err);
		return -1;
	}
	uint32_t uidnext = (uint32_t)sqlite3_column_int64(q, 0);
	int64_t cur_mtime = sqlite3_column_int64(q, 1);
	int rescan = sqlite3_column_int(q, 2);
	sqlite3_reset(q);
	if (uidnext < mbox->box.uid_floor)
		uidnext = mbox->box.uid_floor;
	if (fstat(mbox->cur_fd, &st) < 0) {
		error_errno(err, "stat cur");
		return -1;
	}
	int64_t mtime = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	if (rescan != 0 || mtime != cur_mtime)
		full = 1;

	if (dry && rep->residue) {
		/* What every open of the mailbox would do first: finish or drop
		 * the deliveries a crash interrupted (see the note above). */
		if (store_index_begin(user, err) < 0)
			return -1;
		if (resolve_pending(mbox, rep, 0, err) < 0) {
			store_index_rollback(user);
			return -1;
		}
		if (store_index_commit(user, err) < 0)
			return -1;
	}
	if (!dry && store_index_begin(user, err) < 0)
		return -1;
	if (!(dry && rep->residue) && resolve_pending(mbox, rep, dry, err) < 0)
		goto fail;
	if (full && full_scan(mbox, rescan == 2, &uidnext, rep, dry, err) < 0)
		goto fail;
	/* The keyword names, copied where a lost mailroom-box finds them. */
	if (full && !dry && store_box_index_keywords(mbox, err) < 0)
		goto fail;
	if (read_files(mbox->new_fd, 1, &fresh, err) < 0)
		goto fail;
	if (fresh.n > 1)
		qsort(fresh.v, fresh.n, sizeof(*fresh.v), file_cmp);
	for (size_t i = 0; i < fresh.n; i++)
		if (adopt_new_uid(mbox, &fresh.v[i], &uidnext, rep, dry, err) < 0)
			goto fail;
	if (dry) {
		ret = 0;
		goto out;
	}
	if (fresh.n > 0 && (fsx_fsync(mbox->cur_fd) < 0 || fsx_fsync(mbox->new_fd) < 0)) {
		error_errno(err, "fsync");
		goto fail;
	}
	if (store_index_exec(user, err, "UPDATE mailbox SET uidnext=max(uidnext, %u), rescan=0 WHERE id=%lld",
			     uidnext, (long long)mbox->id) < 0 ||
	    store_sync_note_mtime(mbox, err) < 0)
		goto fail;
	ret = store_index_commit(user, err);
	goto out;
fail:
	if (!dry)
		store_index_rollback(user);
out:
	files_free(&fresh);
	return ret;
}

int store_sync_locked(struct store_mailbox *mbox, int full, struct error *err)
{
	if (store_fds_open(mbox, err) < 0)
		return -1;
	/* Keywords may have been added by another process; a lost or
	 * damaged file is healed here (store_box.c). */
	if (store_box_load(mbox, err) < 0)
		return -1;
	return store_sync_run(mbox, full, NULL, err);
}

/* Is a sync needed? Cheap: one indexed query, one stat, one readdir of new/. */
int store_sync_needed(struct store_mailbox *mbox, struct error *err)
{
	struct stat st;
	sqlite3_stmt *q = store_index_stmt(
		mbox->user,
		"SELECT cur_mtime, rescan, EXISTS(SELECT 1 FROM msg INDEXED BY msg_pending WHERE mailbox=?1 AND pending=1)"
		" FROM mailbox WHERE id=?1",
		err);
	if (q == NULL)
		return -1;
	sqlite3_bind_int64(q, 1, mbox->id);
	if (sqlite3_step(q) != SQLITE_ROW) {
		sqlite3_reset(q);
		sync_row_missing(mbox->user, err);
		return -1;
	}
	int64_t cur_mtime = sqlite3_column_int64(q, 0);
	int need = sqlite3_column_int(q, 1) != 0 || sqlite3_column_int(q, 2) != 0;
	sqlite3_reset(q);
	if (fstat(mbox->cur_fd, &st) < 0) {
		error_errno(err, "stat cur");
		return -1;
	}
	if ((int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec != cur_mtime)
		need = 1;
	if (!need) {
		int fd = dup(mbox->new_fd);
		DIR *d = fd < 0 ? NULL : fdopendir(fd);
		if (d == NULL) {
			if (fd >= 0)
				close(fd);
			return 1;
		}
		rewinddir(d);
		struct dirent *de;
		while (!need && (de = readdir(d)) != NULL)
			need = de->d_name[0] != '.';
		closedir(d);
	}
	return need;
}

int store_sync_note_mtime(struct store_mailbox *mbox, struct error *err)
{
	if (store_fds_open(mbox, err) < 0)
		return -1;
	struct stat st;
	if (fstat(mbox->cur_fd, &st) < 0) {
		error_errno(err, "stat cur");
		return -1;
	}
	int64_t ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	return store_index_exec(mbox->user, err, "UPDATE mailbox SET cur_mtime=%lld WHERE id=%lld",
				(long long)ns, (long long)mbox->id);
}

void store_sync_mark_rescan(struct store_mailbox *mbox)
{
	struct error ignore;
	store_index_exec(mbox->user, &ignore, "UPDATE mailbox SET rescan=max(rescan, 1) WHERE id=%lld",
			 (long long)mbox->id);
}
