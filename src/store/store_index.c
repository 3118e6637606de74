/*
 * store_index.c: the per-user SQLite index (DATA/mail/USER/index.sqlite).
 *
 * Design note. The index is a cache plus state that the files also hold:
 * deleting it loses nothing a client can see (store_sync.c rebuilds it from
 * the file names and mailroom-box). That is why it runs in WAL mode with
 * synchronous=NORMAL: a commit does not fsync, and a power loss that rolls
 * the index back is detected (the boot id stored here differs from the
 * kernel's) and repaired by a full rescan of every mailbox of the user.
 *
 * The database is opened through /proc/self/fd/ROOTFD so that it is the file
 * in the directory we opened beneath DATA/mail, not whatever a path names now.
 *
 * Tables:
 *   meta(key, value)              boot_id, quota_bytes, quota_messages
 *   mailbox(id, name, uidvalidity, uidnext, highestmodseq, cur_mtime, rescan)
 *   msg(mailbox, uid, fname, size, flags, keywords, modseq, internaldate,
 *       pending)  narrow rows, so that counts and scans stay cheap
 *   msg_cache(mailbox, uid, envelope, body, bodystructure, mimetree)  the
 *       parsed message (store_cache.c), written at delivery or on first use;
 *       deleted with its msg row
 *   expunged(mailbox, uid, modseq)  for QRESYNC VANISHED (RFC 7162)
 *
 * mailbox.rescan: 0 in step with the files; 1 rescan cur/ fully on next sync;
 * 2 also the modseqs can no longer be trusted (index rebuilt or rolled back),
 * so HIGHESTMODSEQ jumps to the reserve in mailroom-box.
 */
#include "store/store_int.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SCHEMA_VERSION 2

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value);"
	"CREATE TABLE IF NOT EXISTS mailbox("
	" id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, uidvalidity INTEGER NOT NULL,"
	" uidnext INTEGER NOT NULL, highestmodseq INTEGER NOT NULL,"
	" cur_mtime INTEGER NOT NULL DEFAULT 0, rescan INTEGER NOT NULL DEFAULT 2);"
	"CREATE TABLE IF NOT EXISTS msg("
	" mailbox INTEGER NOT NULL, uid INTEGER NOT NULL, fname TEXT NOT NULL,"
	" size INTEGER NOT NULL, flags INTEGER NOT NULL, keywords INTEGER NOT NULL,"
	" modseq INTEGER NOT NULL, internaldate INTEGER NOT NULL,"
	" pending INTEGER NOT NULL DEFAULT 0,"
	" PRIMARY KEY(mailbox, uid)) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS msg_modseq ON msg(mailbox, modseq);"
	"CREATE INDEX IF NOT EXISTS msg_pending ON msg(mailbox) WHERE pending=1;"
	"CREATE TABLE IF NOT EXISTS msg_cache("
	" mailbox INTEGER NOT NULL, uid INTEGER NOT NULL, envelope TEXT, body TEXT,"
	" bodystructure TEXT, mimetree BLOB, PRIMARY KEY(mailbox, uid));"
	"CREATE TRIGGER IF NOT EXISTS msg_cache_gc AFTER DELETE ON msg BEGIN"
	" DELETE FROM msg_cache WHERE mailbox=old.mailbox AND uid=old.uid; END;"
	"CREATE TABLE IF NOT EXISTS expunged("
	" mailbox INTEGER NOT NULL, uid INTEGER NOT NULL, modseq INTEGER NOT NULL,"
	" PRIMARY KEY(mailbox, uid)) WITHOUT ROWID;";

void store_index_sqlerr(struct store_user *user, struct error *err, const char *what)
{
	int code = user->ix.db ? sqlite3_errcode(user->ix.db) : SQLITE_CANTOPEN;
	const char *msg = user->ix.db ? sqlite3_errmsg(user->ix.db) : "not open";
	if (code == SQLITE_BUSY || code == SQLITE_LOCKED)
		error_set(err, ERR_TEMP, "%s: index is locked (timeout)", what);
	else if (code == SQLITE_FULL)
		error_set(err, ERR_NOSPACE, "%s: index: %s", what, msg);
	else
		error_set(err, ERR_TEMP, "%s: index: %s", what, msg);
}

static int index_open(struct store_user *user, struct error *err);

int store_index_acquire(struct store_user *user, struct error *err)
{
	if (user->ix.db != NULL)
		return 0;
	if (store_pool_take(user->store->pool, user->name, user->root_fd, &user->ix))
		return 0;
	return index_open(user, err);
}

static int ensure_open(struct store_user *user, struct error *err)
{
	return store_index_acquire(user, err);
}

void store_index_drop(struct store_user *user)
{
	store_index_rollback(user);
	store_pool_conn_close(&user->ix);
}

void store_index_release(struct store_user *user)
{
	if (user->ix.db == NULL)
		return;
	if (user->in_txn) {
		/* a caller's bug: never hand a transaction to another user */
		store_index_rollback(user);
		store_pool_conn_close(&user->ix);
		return;
	}
	/* No statement may keep a read snapshot open while it waits. */
	for (sqlite3_stmt *st = sqlite3_next_stmt(user->ix.db, NULL); st != NULL;
	     st = sqlite3_next_stmt(user->ix.db, st))
		if (sqlite3_stmt_busy(st))
			sqlite3_reset(st);
	sqlite3_db_release_memory(user->ix.db);
	store_pool_give(user->store->pool, user->name, &user->ix);
}

int store_index_exec(struct store_user *user, struct error *err, const char *sql, ...)
{
	if (ensure_open(user, err) < 0)
		return -1;
	va_list ap;
	va_start(ap, sql);
	char *q = sqlite3_vmprintf(sql, ap);
	va_end(ap);
	if (q == NULL) {
		error_set(err, ERR_TEMP, "out of memory");
		return -1;
	}
	int rc = sqlite3_exec(user->ix.db, q, NULL, NULL, NULL);
	sqlite3_free(q);
	if (rc != SQLITE_OK) {
		store_index_sqlerr(user, err, "index");
		return -1;
	}
	return 0;
}

static int check_boot(struct store_user *user, struct error *err)
{
	sqlite3_stmt *st = store_index_stmt(user, "SELECT value FROM meta WHERE key='boot_id'", err);
	if (st == NULL)
		return -1;
	int same = 0;
	if (sqlite3_step(st) == SQLITE_ROW) {
		const unsigned char *v = sqlite3_column_text(st, 0);
		same = v != NULL && strcmp((const char *)v, user->store->boot_id) == 0;
	}
	sqlite3_reset(st);
	if (same)
		return 0;
	/* The machine rebooted since this index was last written: commits that
	 * were not yet on disk may be gone while the files they described are
	 * there. Rescan everything and stop trusting the modseqs. */
	if (store_index_begin(user, err) < 0)
		return -1;
	if (store_index_exec(user, err, "UPDATE mailbox SET rescan=2") < 0 ||
	    store_index_exec(user, err, "INSERT OR REPLACE INTO meta VALUES('boot_id', %Q)",
			     user->store->boot_id) < 0) {
		store_index_rollback(user);
		return -1;
	}
	return store_index_commit(user, err);
}

static int index_open(struct store_user *user, struct error *err)
{
	char path[64];
	struct stat ix;
	/* The connection gets its own descriptor of the folder: SQLite opens
	 * the -wal and -shm files by this path, and a pooled connection
	 * outlives the store_user that opened it. */
	user->ix.dir_fd = fcntl(user->root_fd, F_DUPFD_CLOEXEC, 0);
	if (user->ix.dir_fd < 0) {
		error_errno(err, "cannot open index.sqlite");
		return -1;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d/index.sqlite", user->ix.dir_fd);
	user->ix.stmts = calloc(STORE_STMT_CACHE, sizeof(*user->ix.stmts));
	if (user->ix.stmts == NULL) {
		error_set(err, ERR_TEMP, "out of memory");
		goto fail;
	}
	if (sqlite3_open_v2(path, &user->ix.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
					       SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		store_index_sqlerr(user, err, "cannot open index.sqlite");
		goto fail;
	}
	sqlite3_busy_timeout(user->ix.db, (int)user->store->lock_timeout * 1000);
	/* Keep the WAL file and skip the checkpoint when a connection closes:
	 * otherwise every short-lived process (a delivery) rewrites index pages
	 * and recreates the WAL, several times the bytes of a small message.
	 * Checkpoints still happen as the WAL grows (SQLite's auto-checkpoint).
	 * The persistent WAL is also what IDLE sessions watch (store_notify.c). */
	int one = 1;
	sqlite3_db_config(user->ix.db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, &one);
	sqlite3_file_control(user->ix.db, "main", SQLITE_FCNTL_PERSIST_WAL, &one);
	/* 2 KB pages (new indexes only; an existing file keeps its size): a
	 * delivery's two commits touch about a dozen pages, each written
	 * whole to the WAL and again at checkpoint. Measured with
	 * `ONLY=fanout,mailbox QUICK=1 NMSG=8000 bench/compare/run`: 2 MB to
	 * 100 recipients wrote 14.5 MB with 4 KB pages, 13.0 with 2 KB, 11.7
	 * with 1 KB; LOGIN+SELECT on 8,000 messages took 7.3, 7.9 and 9.1 ms
	 * (a new connection reads every page of the mailbox's rows), UID
	 * FETCH 1:* FLAGS 8.0, 7.9 and 9.5 ms. 2 KB is the middle.
	 * A short WAL: a process that opens the index with nobody else on it
	 * rebuilds the WAL's index by reading all of it, so it must stay
	 * small; checkpointing every 64 pages still writes each hot page once
	 * per many commits, not once per process as checkpoint-on-close did. */
	if (store_index_exec(user, err,
			     "PRAGMA page_size=2048; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
			     " PRAGMA wal_autocheckpoint=64; PRAGMA journal_size_limit=1048576;") < 0)
		goto fail;
	/* The schema is created once per file (user_version marks it), so that
	 * reopening a released index costs an open and two small reads. */
	sqlite3_stmt *uv = NULL;
	int version = 0;
	if (sqlite3_prepare_v2(user->ix.db, "PRAGMA user_version", -1, &uv, NULL) == SQLITE_OK &&
	    sqlite3_step(uv) == SQLITE_ROW)
		version = sqlite3_column_int(uv, 0);
	sqlite3_finalize(uv);
	if (version != SCHEMA_VERSION &&
	    (store_index_exec(user, err, "%s", schema) < 0 ||
	     store_index_exec(user, err, "PRAGMA user_version=%d", SCHEMA_VERSION) < 0))
		goto fail;
	if (check_boot(user, err) < 0)
		goto fail;
	if (fstatat(user->ix.dir_fd, "index.sqlite", &ix, AT_SYMLINK_NOFOLLOW) < 0) {
		error_errno(err, "index.sqlite");
		goto fail;
	}
	user->ix.dev = ix.st_dev;
	user->ix.ino = ix.st_ino;
	return 0;
fail:
	store_pool_conn_close(&user->ix);
	return -1;
}

sqlite3_stmt *store_index_stmt(struct store_user *user, const char *sql, struct error *err)
{
	int free_slot = -1;
	if (ensure_open(user, err) < 0)
		return NULL;
	for (int i = 0; i < STORE_STMT_CACHE; i++) {
		if (user->ix.stmts[i].sql == sql) {
			sqlite3_reset(user->ix.stmts[i].stmt);
			sqlite3_clear_bindings(user->ix.stmts[i].stmt);
			return user->ix.stmts[i].stmt;
		}
		if (user->ix.stmts[i].sql == NULL && free_slot < 0)
			free_slot = i;
	}
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(user->ix.db, sql, -1, &st, NULL) != SQLITE_OK) {
		store_index_sqlerr(user, err, "prepare");
		return NULL;
	}
	if (free_slot < 0) {
		/* Cache full: a programming error (too many distinct statements);
		 * still work, by replacing the last slot. */
		free_slot = STORE_STMT_CACHE - 1;
		sqlite3_finalize(user->ix.stmts[free_slot].stmt);
	}
	user->ix.stmts[free_slot].sql = sql;
	user->ix.stmts[free_slot].stmt = st;
	return st;
}

int store_index_done(struct store_user *user, sqlite3_stmt *st, int rc, const char *what,
		     struct error *err)
{
	sqlite3_reset(st);
	if (rc == SQLITE_DONE)
		return 0;
	store_index_sqlerr(user, err, what);
	return -1;
}

int store_index_begin(struct store_user *user, struct error *err)
{
	if (ensure_open(user, err) < 0)
		return -1;
	if (sqlite3_exec(user->ix.db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		store_index_sqlerr(user, err, "begin");
		return -1;
	}
	user->in_txn = 1;
	return 0;
}

int store_index_commit(struct store_user *user, struct error *err)
{
	if (sqlite3_exec(user->ix.db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		store_index_sqlerr(user, err, "commit");
		store_index_rollback(user);
		return -1;
	}
	user->in_txn = 0;
	return 0;
}

void store_index_rollback(struct store_user *user)
{
	if (user->in_txn)
		sqlite3_exec(user->ix.db, "ROLLBACK", NULL, NULL, NULL);
	user->in_txn = 0;
}

int store_index_meta_get(struct store_user *user, const char *key, int64_t *v_r)
{
	struct error err;
	sqlite3_stmt *st = store_index_stmt(user, "SELECT value FROM meta WHERE key=?", &err);
	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*v_r = sqlite3_column_int64(st, 0);
	else if (rc == SQLITE_DONE)
		*v_r = 0;
	sqlite3_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

int store_index_meta_set(struct store_user *user, const char *key, int64_t v, struct error *err)
{
	sqlite3_stmt *st = store_index_stmt(user, "INSERT OR REPLACE INTO meta VALUES(?, ?)", err);
	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, v);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		store_index_sqlerr(user, err, "meta");
		return -1;
	}
	return 0;
}

int store_index_quota_add(struct store_user *user, int64_t bytes, int64_t messages,
			  struct error *err)
{
	sqlite3_stmt *st = store_index_stmt(
		user,
		"INSERT INTO meta VALUES('quota_bytes', ?1) ON CONFLICT(key) DO UPDATE SET value=max(0, value+?1)",
		err);
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, bytes);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		goto fail;
	st = store_index_stmt(
		user,
		"INSERT INTO meta VALUES('quota_messages', ?1) ON CONFLICT(key) DO UPDATE SET value=max(0, value+?1)",
		err);
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, messages);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		goto fail;
	return 0;
fail:
	store_index_sqlerr(user, err, "quota");
	return -1;
}
