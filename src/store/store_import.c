/*
 * store_import.c: mail moved in from another store (`mailroom import`),
 * keeping UIDVALIDITY and UIDs, so that no client downloads a message again.
 *
 * Design note. The import is a delivery in bulk, with UIDs chosen by the
 * caller instead of taken from UIDNEXT, and the same rule as every change:
 * the files are the truth (store_sync.c). A message enters cur/ under its
 * final name "<base>,S=<size>,U=<uid>:2,<flags>", so once the name is there
 * the message is in the mailbox with its UID and flags whatever happens to
 * the index.
 *
 * Write once, fsync once. Messages are added in batches (IMPORT_BATCH, and
 * the folder's end): under the mailbox lock, each message is hard-linked
 * into cur/ (a file of the source on the same file system: no byte copied,
 * the source's inode and its mtime, which is INTERNALDATE here as in
 * Dovecot, untouched) or copied (another file system; a file that
 * fs.protected_hardlinks does not let the store owner link; an INTERNALDATE
 * that is not the file's mtime, which a link cannot change without touching
 * the source), then cur/ is fsynced once and the index rows of the whole
 * batch are written in one transaction, which also records cur/'s mtime.
 * Running as root on a store that `mailroom serve` has not handed to its
 * run_user yet (DATA/mail owned by root), a file is linked only if it is
 * owned by run_user and its group already (store_import_set_owner): the
 * hand-over chowns everything else under DATA/mail (src/server/master.c), a
 * linked source file with it. Others are copied, and the report says so.
 *
 * A crash between the links and that commit leaves files with U= names in
 * cur/ and a cur/ mtime the index does not know: the next open of the
 * mailbox rescans cur/ and adopts them with their UIDs and flags. No
 * pending rows are needed for that: the UIDs are not handed out by the
 * index, and UIDNEXT is raised in the same commit (and, before anything,
 * the UIDNEXT floor in mailroom-box to the source's UIDNEXT, so no later
 * delivery reuses an old UID even if the index is lost).
 *
 * Copies keep the bytes as they are (a bare-LF file is served as CRLF with
 * the CRLF size, as the old server did); a stream (IMAP, mbox) comes staged
 * (store_stage.c: normalised to CRLF, fsynced) and is linked from the spool.
 *
 * The lock is held for one batch at a time, so sessions and deliveries go on
 * between batches and see the new messages at their next sync; a session
 * that waits for the lock waits for at most one batch.
 *
 * Which UIDs the mailbox holds (or has expunged: those stay gone) is read
 * once when the folder opens and kept in memory, then brought up to date at
 * the start of each batch, under the lock, with the rows whose modseq is
 * above the highest seen: has_uid costs no query, and a re-run of 100,000
 * messages is one pass over them.
 *
 * POP3 UIDLs kept from the old server: mailroom-pop3-uidl in the mailbox's
 * folder, lines "UID UIDL", replaced atomically at the end of each folder
 * (merged with what is there), so that the loss of the index keeps them.
 * POP3 reads it through store_import_uidls.
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

#include "lib/buf.h"
#include "lib/fsx.h"
#include "lib/log.h"
#include "lib/strnum.h"

#define IMPORT_BATCH 1000
#define UIDL_FILE "mailroom-pop3-uidl"
#define UIDL_MAX_FILE (64u << 20)

struct import_ent {
	uint32_t uid;
	uint32_t flags;
	uint32_t keywords;
	uint64_t size;
	int64_t mtime;
	char fname[512];
};

struct import_uidl {
	uint32_t uid;
	char *uidl;
};

struct store_import {
	struct store_mailbox *mbox;
	enum store_import_state state;
	int locked;
	uint32_t next_uid; /* for messages without a UID, and UIDNEXT after the batch */
	struct import_ent *batch;
	size_t n;
	uint32_t batch_max_uid;
	struct import_uidl *uidls;
	size_t nuidls;
	size_t cap_uidls;
	/* the UIDs the mailbox holds or has expunged (see the note above) */
	uint32_t *uids;
	size_t nuids, cap_uids;
	int uids_sorted;
	int uids_loaded;
	uint64_t seen_modseq;
	dev_t cur_dev;
	int no_links; /* root, and the store not handed over yet (see the note) */
	uid_t owner_uid; /* ...but files of the owner-to-be may be linked */
	gid_t owner_gid;
	int owner_known;
};

static int uid_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static int uids_add(struct store_import *imp, uint32_t uid)
{
	if (imp->nuids == imp->cap_uids) {
		size_t cap = imp->cap_uids ? imp->cap_uids * 2 : 1024;
		uint32_t *p = realloc(imp->uids, cap * sizeof(*p));
		if (p == NULL)
			return -1;
		imp->uids = p;
		imp->cap_uids = cap;
	}
	if (imp->nuids > 0 && uid <= imp->uids[imp->nuids - 1])
		imp->uids_sorted = 0;
	imp->uids[imp->nuids++] = uid;
	return 0;
}

/* Add the UIDs of rows (held or expunged) with a modseq above seen_modseq;
 * caller holds the mailbox lock, after a sync. */
static int uids_refresh(struct store_import *imp, struct error *err)
{
	struct store_user *user = imp->mbox->user;
	uint32_t uv;
	uint64_t hms;
	if (store_mailbox_modseq(imp->mbox, &uv, &hms, err) < 0)
		return -1;
	if (imp->uids_loaded && hms <= imp->seen_modseq)
		return 0;
	sqlite3_stmt *st = store_index_stmt(
		user,
		"SELECT uid FROM msg WHERE mailbox=?1 AND modseq>?2"
		" UNION ALL SELECT uid FROM expunged WHERE mailbox=?1 AND modseq>?2",
		err);
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, imp->mbox->id);
	/* the first time every row: one that a crash left pending and a sync
	 * adopted keeps modseq 0 */
	sqlite3_bind_int64(st, 2, imp->uids_loaded ? (int64_t)imp->seen_modseq : -1);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		if (uids_add(imp, (uint32_t)sqlite3_column_int64(st, 0)) < 0) {
			sqlite3_reset(st);
			error_set(err, ERR_TEMP, "out of memory");
			return -1;
		}
	if (store_index_done(user, st, rc, "import uids", err) < 0)
		return -1;
	imp->seen_modseq = hms;
	imp->uids_loaded = 1;
	return 0;
}

/* ---- open ------------------------------------------------------------------- */

/* 1 if cur/ and new/ hold no message file. */
static int maildir_empty(struct store_mailbox *mbox)
{
	int fds[2] = { mbox->cur_fd, mbox->new_fd };
	for (int i = 0; i < 2; i++) {
		int fd = dup(fds[i]);
		DIR *d = fd < 0 ? NULL : fdopendir(fd);
		if (d == NULL) {
			if (fd >= 0)
				close(fd);
			return 0;
		}
		rewinddir(d);
		struct dirent *de;
		int empty = 1;
		while (empty && (de = readdir(d)) != NULL)
			empty = de->d_name[0] == '.';
		closedir(d);
		if (!empty)
			return 0;
	}
	return 1;
}

/* Under the mailbox lock: decide what the import does with the mailbox,
 * give it the source's UIDVALIDITY if it never held a message, and raise
 * its UIDNEXT floor to the source's UIDNEXT. */
static int settle_box(struct store_import *imp, uint32_t uidvalidity, uint32_t uidnext,
		      struct error *err)
{
	struct store_mailbox *mbox = imp->mbox;
	struct store_status s;
	if (store_mailbox_sync(mbox, 0, err) < 0 || store_mailbox_status(mbox, &s, err) < 0)
		return -1;
	int virgin = s.messages == 0 && s.uidnext <= 1 && mbox->box.uid_floor <= 1 &&
		     maildir_empty(mbox);
	if (uidvalidity == 0 || uidvalidity == mbox->box.uidvalidity) {
		/* No UIDVALIDITY from the source: its UIDs mean nothing to
		 * clients of ours unless the mailbox starts empty. */
		if (uidvalidity == 0 && !virgin)
			imp->state = STORE_IMPORT_APPEND;
		else if (imp->state != STORE_IMPORT_CREATED)
			imp->state = virgin ? STORE_IMPORT_ADOPTED : STORE_IMPORT_RERUN;
	} else if (virgin) {
		if (imp->state != STORE_IMPORT_CREATED)
			imp->state = STORE_IMPORT_ADOPTED;
		uint32_t old = mbox->box.uidvalidity;
		mbox->box.uidvalidity = uidvalidity;
		if (store_box_save(mbox, err) < 0) {
			mbox->box.uidvalidity = old;
			return -1;
		}
		/* The row keeps its id (sessions that have the mailbox open
		 * hold it); a crash before this leaves a row whose UIDVALIDITY
		 * differs, which the next open replaces (store_mailbox.c). */
		if (store_index_exec(mbox->user, err, "UPDATE mailbox SET uidvalidity=%u WHERE id=%lld",
				     uidvalidity, (long long)mbox->id) < 0)
			return -1;
	} else {
		imp->state = STORE_IMPORT_APPEND;
	}
	if (imp->state != STORE_IMPORT_APPEND && uidnext > mbox->box.uid_floor) {
		uint32_t old = mbox->box.uid_floor;
		mbox->box.uid_floor = uidnext;
		if (store_box_save(mbox, err) < 0) {
			mbox->box.uid_floor = old;
			return -1;
		}
		if (store_index_exec(mbox->user, err,
				     "UPDATE mailbox SET uidnext=max(uidnext, %u) WHERE id=%lld", uidnext,
				     (long long)mbox->id) < 0)
			return -1;
	}
	return 0;
}

static int valid_special_use(const char *su)
{
	static const char *const known[] = { "\\Drafts", "\\Sent",    "\\Trash", "\\Junk",
					     "\\Archive", "\\All", "\\Flagged" };
	for (size_t i = 0; su != NULL && i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(su, known[i]) == 0)
			return 1;
	return 0;
}

int store_import_begin(struct store_user *user, const char *name, const char *special_use,
		       uint32_t uidvalidity, uint32_t uidnext, struct store_import **imp_r,
		       enum store_import_state *state_r, struct error *err)
{
	struct store_import *imp = calloc(1, sizeof(*imp));
	if (imp == NULL) {
		error_set(err, ERR_TEMP, "out of memory");
		return -1;
	}
	imp->state = STORE_IMPORT_RERUN;
	if (store_mailbox_create(user, name, valid_special_use(special_use) ? special_use : NULL,
				 err) == 0)
		imp->state = STORE_IMPORT_CREATED;
	else if (err->code != ERR_EXISTS)
		goto fail;
	if (store_mailbox_open(user, name, &imp->mbox, err) < 0)
		goto fail;
	if (store_lock_mailbox(imp->mbox, err) < 0)
		goto fail;
	imp->uids_sorted = 1;
	int r = settle_box(imp, uidvalidity, uidnext, err);
	if (r == 0)
		r = uids_refresh(imp, err);
	store_lock_mailbox_release(imp->mbox);
	if (r < 0)
		goto fail;
	*imp_r = imp;
	*state_r = imp->state;
	return 0;
fail:
	store_mailbox_close(&imp->mbox);
	free(imp->uids);
	free(imp);
	return -1;
}

void store_import_set_owner(struct store_import *imp, uid_t uid, gid_t gid)
{
	imp->owner_uid = uid;
	imp->owner_gid = gid;
	imp->owner_known = 1;
}

struct store_mailbox *store_import_mailbox(struct store_import *imp)
{
	return imp->mbox;
}

/* ---- has_uid ------------------------------------------------------------------ */

int store_import_has_uid(struct store_import *imp, uint32_t uid, struct error *err)
{
	if (imp->state == STORE_IMPORT_APPEND || uid == 0)
		return 0; /* the source's UIDs are not ours */
	if (uid <= imp->batch_max_uid)
		for (size_t i = 0; i < imp->n; i++)
			if (imp->batch[i].uid == uid)
				return 1;
	/* A UID expunged here since the last run stays expunged: a client
	 * was told it is gone (the set holds those too). */
	if (imp->nuids == 0)
		return 0;
	if (!imp->uids_sorted) {
		qsort(imp->uids, imp->nuids, sizeof(*imp->uids), uid_cmp);
		imp->uids_sorted = 1;
	}
	(void)err;
	return bsearch(&uid, imp->uids, imp->nuids, sizeof(uid), uid_cmp) != NULL;
}

/* ---- batches ------------------------------------------------------------------ */

/* The mailbox's UIDNEXT in the index (one row, not store_mailbox_status's
 * pass over every message). */
static int index_uidnext(struct store_mailbox *mbox, uint32_t *uidnext_r, struct error *err)
{
	sqlite3_stmt *st = store_index_stmt(mbox->user, "SELECT uidnext FROM mailbox WHERE id=?", err);
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, mbox->id);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*uidnext_r = (uint32_t)sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (rc != SQLITE_ROW) {
		store_index_sqlerr(mbox->user, err, "uidnext");
		return -1;
	}
	return 0;
}

/* Take the lock for a new batch and learn where UIDs continue. */
static int batch_start(struct store_import *imp, struct error *err)
{
	struct store_mailbox *mbox = imp->mbox;
	if (imp->locked)
		return 0;
	if (store_lock_mailbox(mbox, err) < 0)
		return -1;
	uint32_t uidnext;
	if (store_mailbox_sync(mbox, 0, err) < 0 || index_uidnext(mbox, &uidnext, err) < 0) {
		store_lock_mailbox_release(mbox);
		return -1;
	}
	if (uids_refresh(imp, err) < 0) {
		store_lock_mailbox_release(mbox);
		return -1;
	}
	struct stat cst;
	if (fstat(mbox->cur_fd, &cst) < 0) {
		error_errno(err, "stat cur");
		store_lock_mailbox_release(mbox);
		return -1;
	}
	imp->cur_dev = cst.st_dev;
	struct stat mst;
	imp->no_links = geteuid() == 0 &&
			(fstat(mbox->user->store->mail_fd, &mst) < 0 || mst.st_uid == 0);
	imp->next_uid = uidnext > mbox->box.uid_floor ? uidnext : mbox->box.uid_floor;
	if (imp->next_uid == 0)
		imp->next_uid = 1;
	if (imp->batch == NULL) {
		imp->batch = malloc(IMPORT_BATCH * sizeof(*imp->batch));
		if (imp->batch == NULL) {
			store_lock_mailbox_release(mbox);
			error_set(err, ERR_TEMP, "out of memory");
			return -1;
		}
	}
	imp->locked = 1;
	imp->n = 0;
	imp->batch_max_uid = 0;
	return 0;
}

static int index_batch(struct store_import *imp, struct error *err)
{
	struct store_mailbox *mbox = imp->mbox;
	struct store_user *user = mbox->user;
	int64_t bytes = 0;
	if (store_index_begin(user, err) < 0)
		return -1;
	for (size_t i = 0; i < imp->n; i++) {
		struct import_ent *e = &imp->batch[i];
		uint64_t modseq;
		if (store_box_next_modseq(mbox, &modseq, err) < 0)
			goto fail;
		sqlite3_stmt *st = store_index_stmt(
			user,
			"INSERT OR REPLACE INTO msg(mailbox, uid, fname, size, flags, keywords, modseq,"
			" internaldate, pending) VALUES(?, ?, ?, ?, ?, ?, ?, ?, 0)",
			err);
		if (st == NULL)
			goto fail;
		sqlite3_bind_int64(st, 1, mbox->id);
		sqlite3_bind_int64(st, 2, e->uid);
		sqlite3_bind_text(st, 3, e->fname, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, (int64_t)e->size);
		sqlite3_bind_int64(st, 5, e->flags);
		sqlite3_bind_int64(st, 6, e->keywords);
		sqlite3_bind_int64(st, 7, (int64_t)modseq);
		sqlite3_bind_int64(st, 8, e->mtime);
		int rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc != SQLITE_DONE) {
			store_index_sqlerr(user, err, "import");
			goto fail;
		}
		bytes += (int64_t)e->size;
	}
	if (store_index_quota_add(user, bytes, (int64_t)imp->n, err) < 0 ||
	    store_index_exec(user, err, "UPDATE mailbox SET uidnext=max(uidnext, %u) WHERE id=%lld",
			     imp->next_uid, (long long)mbox->id) < 0 ||
	    store_sync_note_mtime(mbox, err) < 0)
		goto fail;
	return store_index_commit(user, err);
fail:
	store_index_rollback(user);
	return -1;
}

int store_import_flush(struct store_import *imp, struct error *err)
{
	struct store_mailbox *mbox = imp->mbox;
	if (!imp->locked)
		return 0;
	int ret = 0;
	if (imp->n > 0) {
		if (fsx_fsync(mbox->cur_fd) < 0) {
			error_errno(err, "cannot fsync the mailbox");
			ret = -1;
		} else if (index_batch(imp, err) < 0) {
			ret = -1;
		}
		if (ret < 0) /* the files are there: the next open adopts them */
			store_sync_mark_rescan(mbox);
		/* they are in the mailbox either way */
		for (size_t i = 0; i < imp->n; i++)
			if (uids_add(imp, imp->batch[i].uid) < 0 && ret == 0) {
				error_set(err, ERR_TEMP, "out of memory");
				ret = -1;
			}
	}
	imp->n = 0;
	imp->batch_max_uid = 0;
	imp->locked = 0;
	store_lock_mailbox_release(mbox);
	return ret;
}

/* ---- one message ---------------------------------------------------------------- */

static int keyword_bits(struct store_import *imp, const struct store_import_msg *m,
			uint32_t *bits_r, unsigned *dropped_r, struct error *err)
{
	uint32_t bits = 0;
	unsigned dropped = 0;
	for (size_t i = 0; i < m->nkeywords; i++) {
		unsigned idx;
		struct error kerr;
		if (store_mailbox_keyword_index(imp->mbox, m->keywords[i], 1, &idx, &kerr) == 0) {
			bits |= 1u << idx;
		} else if (kerr.code == ERR_LIMIT || kerr.code == ERR_INVALID) {
			dropped++;
		} else {
			*err = kerr;
			return -1;
		}
	}
	*bits_r = bits;
	*dropped_r = dropped;
	return 0;
}

/* Fill e (UID, name) for a message about to enter cur/. */
static int prepare(struct store_import *imp, const struct store_import_msg *m, uint64_t size,
		   struct import_ent *e, struct store_import_result *res, struct error *err)
{
	struct store_fname f;
	memset(e, 0, sizeof(*e));
	memset(&f, 0, sizeof(f));
	uint32_t uid = imp->state == STORE_IMPORT_APPEND ? 0 : m->uid;
	if (uid != 0) {
		/* Two files with one UID would leave the second to the next
		 * rescan, under a new UID: refuse it here, whatever the caller
		 * asked has_uid. */
		int has = store_import_has_uid(imp, uid, err);
		if (has < 0)
			return -1;
		if (has) {
			error_set(err, ERR_EXISTS, "UID %u is in the mailbox already", uid);
			return -1;
		}
	}
	if (uid == 0) {
		if (imp->next_uid == UINT32_MAX) {
			error_set(err, ERR_LIMIT, "mailbox has run out of UIDs");
			return -1;
		}
		uid = imp->next_uid;
	}
	if (uid >= imp->next_uid)
		imp->next_uid = uid + 1;
	if (keyword_bits(imp, m, &e->keywords, &res->keywords_dropped, err) < 0)
		return -1;
	store_unique_base(imp->mbox->user->store, f.base, sizeof(f.base));
	f.size = size;
	f.uid = uid;
	f.savedate = (int64_t)time(NULL); /* RFC 8514: saved here now (store_fname.c) */
	f.flags = m->flags & STORE_F_ALL;
	f.keywords = e->keywords;
	if (store_fname_build(&f, e->fname, sizeof(e->fname)) < 0) {
		error_set(err, ERR_INVALID, "file name too long");
		return -1;
	}
	e->uid = uid;
	e->flags = f.flags;
	e->size = size;
	res->uid = uid;
	return 0;
}

static void batch_push(struct store_import *imp, const struct import_ent *e)
{
	imp->batch[imp->n++] = *e;
	if (e->uid > imp->batch_max_uid)
		imp->batch_max_uid = e->uid;
}

/* Copy the source's bytes as they are to tmp/, with mtime = when, fsynced;
 * then renamed into cur/ under e->fname. */
static int copy_in(struct store_import *imp, int src_fd, int64_t when, struct import_ent *e,
		   struct error *err)
{
	struct store_mailbox *mbox = imp->mbox;
	char tmpname[600];
	char buf[65536];
	snprintf(tmpname, sizeof(tmpname), "tmp/%s", e->fname);
	int fd = fsx_open_beneath(mbox->dir_fd, tmpname, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0) {
		error_errno(err, "cannot create a file in the mailbox");
		return -1;
	}
	uint64_t total = 0;
	for (;;) {
		ssize_t r = read(src_fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			error_errno(err, "cannot read the message");
			err->code = ERR_DATA; /* this message only */
			goto fail;
		}
		if (r == 0)
			break;
		if (fsx_write_all(fd, buf, (size_t)r) < 0) {
			error_errno(err, "cannot write the message");
			goto fail;
		}
		total += (uint64_t)r;
	}
	if (total != e->size) {
		error_set(err, ERR_DATA, "the message changed while it was copied");
		goto fail;
	}
	struct timespec ts[2] = { { when, 0 }, { when, 0 } };
	if (futimens(fd, ts) < 0) {
		error_errno(err, "cannot set the internal date");
		goto fail;
	}
	if (fsx_fsync(fd) < 0) {
		error_errno(err, "cannot fsync the message");
		goto fail;
	}
	close(fd);
	fd = -1;
	if (fsx_renameat(mbox->dir_fd, tmpname, mbox->cur_fd, e->fname) < 0) {
		error_errno(err, "cannot move the message into cur/");
		goto fail;
	}
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlinkat(mbox->dir_fd, tmpname, 0);
	return -1;
}

static int add_file_locked(struct store_import *imp, const struct store_import_msg *m, int dirfd,
			   const char *path, struct store_import_result *res, struct error *err)
{
	struct store_mailbox *mbox = imp->mbox;
	struct stat st;
	struct import_ent e;
	if (fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		error_errno(err, "cannot stat the message");
		err->code = ERR_NOTFOUND;
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		error_set(err, ERR_DATA, "not a regular file");
		return -1;
	}
	if (faccessat(dirfd, path, R_OK, AT_EACCESS | AT_SYMLINK_NOFOLLOW) < 0) {
		error_set(err, ERR_DATA, "not readable by the store owner (uid %ld)", (long)geteuid());
		return -1;
	}
	if (prepare(imp, m, (uint64_t)st.st_size, &e, res, err) < 0)
		return -1;
	int64_t when = m->internaldate >= 0 ? m->internaldate : (int64_t)st.st_mtim.tv_sec;
	res->how = STORE_IMPORT_LINKED;
	res->why = STORE_IMPORT_WHY_NONE;
	if (st.st_dev != imp->cur_dev)
		res->why = STORE_IMPORT_WHY_XDEV;
	else if (imp->no_links && !(imp->owner_known && st.st_uid == imp->owner_uid &&
				     st.st_gid == imp->owner_gid))
		res->why = STORE_IMPORT_WHY_NOT_HANDED_OVER;
	else if (when != (int64_t)st.st_mtim.tv_sec)
		res->why = STORE_IMPORT_WHY_DATE;
	else if (fsx_linkat(dirfd, path, mbox->cur_fd, e.fname) < 0) {
		if (errno == EXDEV)
			res->why = STORE_IMPORT_WHY_XDEV;
		else if (errno == EPERM)
			res->why = STORE_IMPORT_WHY_PROTECTED;
		else if (errno == EMLINK)
			res->why = STORE_IMPORT_WHY_MLINK;
		else {
			error_errno(err, "cannot link the message into the mailbox");
			return -1;
		}
	}
	if (res->why == STORE_IMPORT_WHY_NONE) {
		/* The name linked must be the file stat'ed (its size is in the name). */
		struct stat ln;
		if (fstatat(mbox->cur_fd, e.fname, &ln, AT_SYMLINK_NOFOLLOW) < 0 ||
		    ln.st_ino != st.st_ino || ln.st_size != st.st_size) {
			unlinkat(mbox->cur_fd, e.fname, 0);
			error_set(err, ERR_DATA, "the message changed while it was linked");
			return -1;
		}
	} else {
		res->how = STORE_IMPORT_COPIED;
		int fd = openat(dirfd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			error_errno(err, "cannot open the message");
			err->code = ERR_DATA;
			return -1;
		}
		int r = copy_in(imp, fd, when, &e, err);
		close(fd);
		if (r < 0)
			return -1;
	}
	e.mtime = when;
	res->size = e.size;
	batch_push(imp, &e);
	return 0;
}

/* The common frame of an add: the batch's lock, and its end. */
static int after_add(struct store_import *imp, int r, struct error *err)
{
	if (r == 0 && imp->n >= IMPORT_BATCH)
		return store_import_flush(imp, err);
	return r;
}

int store_import_file(struct store_import *imp, const struct store_import_msg *m, int dirfd,
		      const char *path, struct store_import_result *res_r, struct error *err)
{
	struct store_import_result res;
	memset(&res, 0, sizeof(res));
	if (batch_start(imp, err) < 0)
		return -1;
	int r = add_file_locked(imp, m, dirfd, path, &res, err);
	if (r == 0)
		*res_r = res;
	return after_add(imp, r, err);
}

int store_import_stage(struct store_import *imp, const struct store_import_msg *m,
		       struct store_stage *stage, struct store_import_result *res_r,
		       struct error *err)
{
	struct store_import_result res;
	struct import_ent e;
	struct stat st;
	memset(&res, 0, sizeof(res));
	if (!store_stage_is_finished(stage)) {
		error_set(err, ERR_TEMP, "message not finished");
		return -1;
	}
	if (fstat(store_stage_fd(stage), &st) < 0) {
		error_errno(err, "stat staged message");
		return -1;
	}
	if (batch_start(imp, err) < 0)
		return -1;
	int r = prepare(imp, m, (uint64_t)st.st_size, &e, &res, err);
	if (r == 0 && fsx_linkat(imp->mbox->user->store->spool_fd, store_stage_name(stage),
				 imp->mbox->cur_fd, e.fname) < 0) {
		error_errno(err, "cannot link the message into the mailbox");
		r = -1;
	}
	if (r == 0) {
		e.mtime = (int64_t)st.st_mtim.tv_sec;
		res.how = STORE_IMPORT_STREAMED;
		res.size = e.size;
		batch_push(imp, &e);
		*res_r = res;
	}
	return after_add(imp, r, err);
}

/* ---- POP3 UIDLs ------------------------------------------------------------------- */

int store_import_uidl_valid(const char *uidl)
{
	size_t n = 0;
	/* RFC 1939 7: 1 to 70 characters in the range 0x21 to 0x7E. */
	for (const unsigned char *p = (const unsigned char *)uidl; *p != '\0'; p++, n++)
		if (*p < 0x21 || *p > 0x7e)
			return -1;
	return n >= 1 && n <= 70 ? 0 : -1;
}

int store_import_pop3_uidl(struct store_import *imp, uint32_t uid, const char *uidl,
			   struct error *err)
{
	if (store_import_uidl_valid(uidl) < 0) {
		error_set(err, ERR_INVALID, "not a POP3 UIDL (RFC 1939 7: 1-70 characters 0x21-0x7E)");
		return -1;
	}
	if (imp->nuidls == imp->cap_uidls) {
		size_t cap = imp->cap_uidls ? imp->cap_uidls * 2 : 64;
		struct import_uidl *p = realloc(imp->uidls, cap * sizeof(*p));
		if (p == NULL) {
			error_set(err, ERR_TEMP, "out of memory");
			return -1;
		}
		imp->uidls = p;
		imp->cap_uidls = cap;
	}
	char *copy = strdup(uidl);
	if (copy == NULL) {
		error_set(err, ERR_TEMP, "out of memory");
		return -1;
	}
	imp->uidls[imp->nuidls].uid = uid;
	imp->uidls[imp->nuidls].uidl = copy;
	imp->nuidls++;
	return 0;
}

/* Parse the file's lines; cb for each valid one. */
static int uidl_parse(const char *data, int (*cb)(void *ctx, uint32_t uid, const char *uidl),
		      void *ctx)
{
	const char *p = data;
	while (*p != '\0') {
		const char *nl = strchr(p, '\n');
		if (nl == NULL)
			break; /* a last line without its newline is cut: not used */
		const char *sp = memchr(p, ' ', (size_t)(nl - p));
		uint64_t uid;
		char uidl[71];
		size_t len = sp ? (size_t)(nl - sp - 1) : 0;
		if (sp != NULL && strnum_u64(p, (size_t)(sp - p), UINT32_MAX, &uid) == 0 && uid > 0 &&
		    len >= 1 && len <= 70) {
			memcpy(uidl, sp + 1, len);
			uidl[len] = '\0';
			if (store_import_uidl_valid(uidl) == 0) {
				int r = cb(ctx, (uint32_t)uid, uidl);
				if (r != 0)
					return r;
			}
		}
		p = nl + 1;
	}
	return 0;
}

int store_import_uidls(struct store_mailbox *mbox,
		       int (*cb)(void *ctx, uint32_t uid, const char *uidl), void *ctx,
		       struct error *err)
{
	if (store_fds_open(mbox, err) < 0)
		return -1;
	char *data = NULL;
	size_t len;
	if (fsx_read_file(mbox->dir_fd, UIDL_FILE, UIDL_MAX_FILE, &data, &len) < 0) {
		if (errno == ENOENT)
			return 0;
		error_errno(err, "cannot read " UIDL_FILE);
		return -1;
	}
	uidl_parse(data, cb, ctx);
	free(data);
	return 0;
}

static int uidl_cmp(const void *a, const void *b)
{
	const struct import_uidl *x = a, *y = b;
	return x->uid < y->uid ? -1 : x->uid > y->uid;
}

struct uidl_merge {
	struct store_import *imp;
	size_t mine; /* this run's entries, sorted, come first */
};

static int uidl_keep_old(void *ctx, uint32_t uid, const char *uidl)
{
	struct uidl_merge *mg = ctx;
	struct import_uidl key = { uid, NULL };
	if (bsearch(&key, mg->imp->uidls, mg->mine, sizeof(key), uidl_cmp) != NULL)
		return 0; /* this run gave one for the UID: it wins */
	struct error ignore;
	return store_import_pop3_uidl(mg->imp, uid, uidl, &ignore) < 0 ? -1 : 0;
}

/* Merge this run's UIDLs with the file's and replace it (caller holds the
 * mailbox lock). */
static int uidl_write(struct store_import *imp, struct error *err)
{
	if (imp->nuidls == 0)
		return 0;
	qsort(imp->uidls, imp->nuidls, sizeof(*imp->uidls), uidl_cmp);
	char *data = NULL;
	size_t len;
	if (fsx_read_file(imp->mbox->dir_fd, UIDL_FILE, UIDL_MAX_FILE, &data, &len) == 0) {
		struct uidl_merge mg = { imp, imp->nuidls };
		int r = uidl_parse(data, uidl_keep_old, &mg);
		free(data);
		if (r != 0) {
			error_set(err, ERR_TEMP, "out of memory");
			return -1;
		}
		qsort(imp->uidls, imp->nuidls, sizeof(*imp->uidls), uidl_cmp);
	} else if (errno != ENOENT) {
		error_errno(err, "cannot read " UIDL_FILE);
		return -1;
	}
	struct buf b = BUF_INIT;
	for (size_t i = 0; i < imp->nuidls; i++)
		buf_printf(&b, "%u %s\n", imp->uidls[i].uid, imp->uidls[i].uidl);
	int r = -1;
	if (b.failed)
		error_set(err, ERR_TEMP, "out of memory");
	else if ((r = fsx_write_file_atomic(imp->mbox->dir_fd, UIDL_FILE, b.data, b.len)) < 0)
		error_errno(err, "cannot write " UIDL_FILE);
	buf_free(&b);
	for (size_t i = 0; i < imp->nuidls; i++)
		free(imp->uidls[i].uidl);
	imp->nuidls = 0;
	return r;
}

/* ---- end ----------------------------------------------------------------------------- */

static void import_free(struct store_import **imp_p)
{
	struct store_import *imp = *imp_p;
	for (size_t i = 0; i < imp->nuidls; i++)
		free(imp->uidls[i].uidl);
	free(imp->uidls);
	free(imp->uids);
	free(imp->batch);
	store_mailbox_close(&imp->mbox);
	free(imp);
	*imp_p = NULL;
}

int store_import_end(struct store_import **imp_p, struct error *err)
{
	struct store_import *imp = *imp_p;
	if (imp == NULL)
		return 0;
	int ret = store_import_flush(imp, err);
	if (ret == 0) {
		if (store_lock_mailbox(imp->mbox, err) < 0) {
			ret = -1;
		} else {
			ret = uidl_write(imp, err);
			store_lock_mailbox_release(imp->mbox);
		}
	}
	/* Mail moved in is not new mail: the old server showed it without
	 * \Recent (Dovecot and Courier: a message in cur/ is not recent), so
	 * the import claims it for no session (store_mailbox_recent.c). */
	uint32_t lo, hi;
	if (ret == 0 && store_mailbox_recent(imp->mbox, 1, &lo, &hi, err) < 0)
		ret = -1;
	import_free(imp_p);
	return ret;
}

void store_import_abort(struct store_import **imp_p)
{
	struct error ignore;
	if (*imp_p == NULL)
		return;
	/* What is linked stays: committed now, or adopted at the next open. */
	(void)store_import_flush(*imp_p, &ignore);
	import_free(imp_p);
}

/* ---- looking without changing (dry run) ----------------------------------------------- */

int store_import_peek(struct store *store, const char *user, const char *name,
		      struct store_import_peek *peek_r, struct error *err)
{
	struct store_import_peek p;
	memset(&p, 0, sizeof(p));
	char *norm = NULL, *dir = NULL;
	int ufd = -1, mfd = -1, ret = -1;
	if (store_name_normalize(name, &norm, err) < 0 || store_name_to_dir(norm, &dir, err) < 0)
		goto out;
	ufd = fsx_opendir_beneath(store->mail_fd, user);
	if (ufd >= 0)
		p.user_exists = 1;
	mfd = ufd >= 0 ? fsx_opendir_beneath(ufd, dir) : -1;
	if (mfd >= 0) {
		struct store_box box;
		p.exists = 1;
		if (store_box_read(mfd, &box, err) == 0) {
			p.uidvalidity = box.uidvalidity;
			p.uid_floor = box.uid_floor;
			store_box_clear(&box);
		}
		size_t cap = 0;
		int cfd = fsx_opendir_beneath(mfd, "cur");
		DIR *d = cfd >= 0 ? fdopendir(cfd) : NULL;
		if (d == NULL && cfd >= 0)
			close(cfd);
		struct dirent *de;
		while (d != NULL && (de = readdir(d)) != NULL) {
			struct store_fname f;
			if (de->d_name[0] == '.' || store_fname_parse(de->d_name, &f) < 0)
				continue;
			p.messages++;
			if (f.uid >= p.max_uid)
				p.max_uid = f.uid;
			if (f.uid != 0 && p.nuids == cap) {
				cap = cap ? cap * 2 : 256;
				uint32_t *v = realloc(p.uids, cap * sizeof(*v));
				if (v == NULL) {
					closedir(d);
					free(p.uids);
					error_set(err, ERR_TEMP, "out of memory");
					goto out;
				}
				p.uids = v;
			}
			if (f.uid != 0)
				p.uids[p.nuids++] = f.uid;
		}
		if (d != NULL)
			closedir(d);
		if (p.nuids > 1)
			qsort(p.uids, p.nuids, sizeof(*p.uids), uid_cmp);
	}
	*peek_r = p;
	ret = 0;
out:
	if (mfd >= 0)
		close(mfd);
	if (ufd >= 0)
		close(ufd);
	free(norm);
	free(dir);
	return ret;
}

int store_import_peek_has(const struct store_import_peek *peek, uint32_t uid)
{
	if (peek->nuids == 0)
		return 0;
	return bsearch(&uid, peek->uids, peek->nuids, sizeof(uid), uid_cmp) != NULL;
}

void store_import_peek_clear(struct store_import_peek *peek)
{
	free(peek->uids);
	memset(peek, 0, sizeof(*peek));
}

int store_import_dev(struct store *store, dev_t *dev_r, uid_t *uid_r)
{
	struct stat st;
	if (fstat(store->mail_fd, &st) < 0)
		return -1;
	*dev_r = st.st_dev;
	*uid_r = st.st_uid;
	return 0;
}
