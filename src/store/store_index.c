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
 *   msg_cache(mailbox, uid, envelope, body, bodystructure, mimetree, preview)  the
 *       parsed message (store_cache.c), written at delivery or on first use;
 *       deleted with its msg row
 *   expunged(mailbox, uid, modseq)  for QRESYNC VANISHED (RFC 7162)
 *
 *   keyword(mailbox, idx, name)   a copy of mailroom-box's keyword names,
 *       so that a lost mailroom-box keeps them (store_box.c)
 *   qfile(base, links)            how many done msg rows are links of the
 *       file with this unique base name; kept by triggers, which also keep
 *       meta quota_dup_bytes = the sum of (links - 1) * size, so that a file
 *       COPY linked into several mailboxes counts once (store_user.c)
 *
 * mailbox.rescan: 0 in step with the files; 1 rescan cur/ fully on next sync;
 * 2 also the modseqs can no longer be trusted (index rebuilt or rolled back),
 * so HIGHESTMODSEQ jumps to the reserve in mailroom-box.
 *
 * Self-healing. Because the files are the truth, a damaged index is never a
 * reason to refuse service. It is found on open (SQLite says "not a
 * database" or "malformed", or the file is another program's database:
 * another application_id, an unknown schema, or the index of another user)
 * or by the first statement that gets SQLITE_CORRUPT or SQLITE_NOTADB during
 * use (store_index_sqlerr marks the user's connection ix_damaged). Healing
 * then moves index.sqlite, its -wal and its -shm aside, kept for the admin as
 * index.sqlite.corrupt-<UTC time> (store_index_move_aside), logs one warning,
 * and opens a new, empty index; every mailbox is rebuilt from its files
 * (store_user.c syncs them all while meta "complete" is 0) with the UIDs and flags of the
 * file names and the UIDVALIDITY and keyword names of mailroom-box.
 *
 * Concurrency: every process of the user (workers, deliveries) may find the
 * damage at once. The one that moves the files holds flock(2) on the damaged
 * index.sqlite itself (store_lock_wait: waited for, with the store's lock
 * timeout); a process that gets the lock after the file was moved finds
 * another inode under the name and just reopens. The damaged file is never
 * moved by two processes, and nobody moves a healthy new index: flock on a
 * file that SQLite locks with fcntl(2) does not interfere with SQLite's own
 * locks on Linux. Connections that other processes hold to the moved file
 * notice it in store_index_verify (by inode: store_pool_conn_valid), which
 * store_mailbox_sync calls before it reads anything, and reopen; a mailbox
 * then looks its row up again (ix_epoch).
 *
 * What a rebuild cannot restore: modseqs (HIGHESTMODSEQ jumps above the
 * reserve in mailroom-box, so they never go backwards: clients resync
 * flags, not messages), the expunged table (QRESYNC clients get a full
 * resync), the cached parse of messages (recomputed on use).
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/fsx.h"
#include "lib/log.h"

/* 3: the keyword table, application_id and meta 'user'
 * 4: msg_cache.preview (RFC 8970 PREVIEW, store_cache.c)
 * 5: qfile and meta quota_dup_bytes (quota once per file) */
#define SCHEMA_VERSION 5
/* PRAGMA application_id of a mailroom index: "MlRm" */
#define APPLICATION_ID 0x4d6c526d

/* Quota once per file: every link of one file has the same base, the name
 * up to ",A=" (the save date, when the name has one) or ",S=" (store_fname.c). A row counts once it is done (pending=0). A
 * link that joins others adds its size to quota_dup_bytes; one that leaves
 * others behind takes it back. */
#define QFILE_BASE(row) STORE_FNAME_BASE_SQL(row ".fname")
#define QFILE_JOIN(row) \
	" INSERT INTO meta SELECT 'quota_dup_bytes', " row ".size WHERE EXISTS(SELECT 1 FROM qfile" \
	" WHERE base=" QFILE_BASE(row) ") ON CONFLICT(key) DO UPDATE SET value=value+excluded.value;" \
	" INSERT INTO qfile VALUES(" QFILE_BASE(row) ", 1)" \
	" ON CONFLICT(base) DO UPDATE SET links=links+1; END;"
#define QFILE_SCHEMA \
	"CREATE TABLE IF NOT EXISTS qfile(base TEXT PRIMARY KEY, links INTEGER NOT NULL)" \
	" WITHOUT ROWID;" \
	"CREATE TRIGGER IF NOT EXISTS qfile_ins AFTER INSERT ON msg WHEN new.pending=0 BEGIN" \
	QFILE_JOIN("new") \
	"CREATE TRIGGER IF NOT EXISTS qfile_done AFTER UPDATE OF pending ON msg" \
	" WHEN old.pending<>0 AND new.pending=0 BEGIN" QFILE_JOIN("new") \
	"CREATE TRIGGER IF NOT EXISTS qfile_del AFTER DELETE ON msg WHEN old.pending=0 BEGIN" \
	" UPDATE qfile SET links=links-1 WHERE base=" QFILE_BASE("old") ";" \
	" UPDATE meta SET value=max(0, value-old.size) WHERE key='quota_dup_bytes' AND" \
	" EXISTS(SELECT 1 FROM qfile WHERE base=" QFILE_BASE("old") " AND links>0);" \
	" DELETE FROM qfile WHERE base=" QFILE_BASE("old") " AND links<=0; END;"

/* Fill qfile and quota_dup_bytes from the msg rows: an index upgraded from
 * version 3, and `mailroom check --repair` (store_check.c). */
const char store_index_qfile_fill[] =
	"DELETE FROM qfile;"
	"INSERT INTO qfile SELECT " QFILE_BASE("msg") ", count(*) FROM msg WHERE pending=0 GROUP BY 1;"
	"INSERT OR REPLACE INTO meta SELECT 'quota_dup_bytes', coalesce(sum(size), 0) - coalesce(("
	"SELECT sum(s) FROM (SELECT max(size) AS s FROM msg WHERE pending=0"
	" GROUP BY " QFILE_BASE("msg") ")), 0) FROM msg WHERE pending=0;";

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
	" bodystructure TEXT, mimetree BLOB, preview TEXT, PRIMARY KEY(mailbox, uid));"
	"CREATE TRIGGER IF NOT EXISTS msg_cache_gc AFTER DELETE ON msg BEGIN"
	" DELETE FROM msg_cache WHERE mailbox=old.mailbox AND uid=old.uid; END;"
	"CREATE TABLE IF NOT EXISTS expunged("
	" mailbox INTEGER NOT NULL, uid INTEGER NOT NULL, modseq INTEGER NOT NULL,"
	" PRIMARY KEY(mailbox, uid)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS keyword("
	" mailbox INTEGER NOT NULL, idx INTEGER NOT NULL, name TEXT NOT NULL,"
	" PRIMARY KEY(mailbox, idx)) WITHOUT ROWID;"
	"CREATE TRIGGER IF NOT EXISTS keyword_gc AFTER DELETE ON mailbox BEGIN"
	" DELETE FROM keyword WHERE mailbox=old.id; END;"
	QFILE_SCHEMA;

/* Every column the store uses, so that a database that merely has tables
 * of these names (another program's) is not taken for an index. */
static const char probe[] =
	"SELECT m.id, m.name, m.uidvalidity, m.uidnext, m.highestmodseq, m.cur_mtime, m.rescan,"
	" g.uid, g.fname, g.size, g.flags, g.keywords, g.modseq, g.internaldate, g.pending,"
	" c.envelope, c.body, c.bodystructure, c.mimetree, c.preview, e.modseq, k.idx, k.name, t.key, t.value"
	" FROM mailbox m, msg g, msg_cache c, expunged e, keyword k, meta t LIMIT 0";

/* Does the last error of db say the file is damaged? A short read is a
 * truncated file: the database, or a WAL shorter than its -shm says. */
static int is_damage(sqlite3 *db)
{
	int code = sqlite3_errcode(db) & 0xff;
	return code == SQLITE_CORRUPT || code == SQLITE_NOTADB ||
	       sqlite3_extended_errcode(db) == SQLITE_IOERR_SHORT_READ;
}

void store_index_sqlerr(struct store_user *user, struct error *err, const char *what)
{
	int code = user->ix.db ? sqlite3_errcode(user->ix.db) : SQLITE_CANTOPEN;
	const char *msg = user->ix.db ? sqlite3_errmsg(user->ix.db) : "not open";
	if (code == SQLITE_BUSY || code == SQLITE_LOCKED) {
		error_set(err, ERR_TEMP, "%s: index is locked (timeout)", what);
		return;
	}
	if (user->ix.db != NULL && is_damage(user->ix.db)) {
		/* Healed by the next store_index_verify (the next command, sync
		 * or open of this user), see the note above. */
		user->ix_damaged = 1;
		snprintf(user->ix_damage, sizeof(user->ix_damage), "%s", msg);
		error_set(err, ERR_TEMP, "%s: index.sqlite is damaged (%s); it will be rebuilt", what,
			  msg);
		return;
	}
	if (code == SQLITE_FULL)
		error_set(err, ERR_NOSPACE, "%s: index: %s", what, msg);
	else
		error_set(err, ERR_TEMP, "%s: index: %s", what, msg);
}

static int index_open(struct store_user *user, struct error *err);

int store_index_acquire(struct store_user *user, struct error *err)
{
	if (user->ix.db != NULL)
		return 0;
	if (!store_pool_take(user->store->pool, user->name, user->root_fd, &user->ix) &&
	    index_open(user, err) < 0)
		return -1;
	/* Another file than this user had before (rebuilt, or replaced by
	 * hand): the mailbox ids its open mailboxes hold mean nothing here. */
	if (user->ix_seen_ino != 0 &&
	    (user->ix.ino != user->ix_seen_ino || user->ix.dev != user->ix_seen_dev))
		user->ix_epoch++;
	user->ix_seen_dev = user->ix.dev;
	user->ix_seen_ino = user->ix.ino;
	return 0;
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

/* OPEN_RETRY: an I/O error while opening, as when another process moves a
 * damaged index aside between our open of index.sqlite and of its -wal or
 * -shm; opening again finds the new files. */
enum open_result { OPEN_OK, OPEN_DAMAGED, OPEN_FAILED, OPEN_RETRY };

/* Who the index belongs to, and whether the machine rebooted since it was
 * last written. OPEN_DAMAGED (why says so) for another user's index. */
static int check_meta(struct store_user *user, char *why, size_t whysize, struct error *err)
{
	sqlite3_stmt *st = store_index_stmt(
		user, "SELECT key, value FROM meta WHERE key IN ('boot_id', 'user')", err);
	if (st == NULL)
		return OPEN_FAILED;
	int same = 0, owner = 0, rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *k = (const char *)sqlite3_column_text(st, 0);
		const char *v = (const char *)sqlite3_column_text(st, 1);
		if (k == NULL || v == NULL)
			continue;
		if (strcmp(k, "boot_id") == 0)
			same = strcmp(v, user->store->boot_id) == 0;
		else if (strcmp(v, user->name) == 0)
			owner = 1;
		else {
			snprintf(why, whysize, "it is the index of user %.64s", v);
			sqlite3_reset(st);
			return OPEN_DAMAGED;
		}
	}
	if (store_index_done(user, st, rc, "meta", err) < 0)
		return OPEN_FAILED;
	if (same && owner)
		return OPEN_OK;
	/* The machine rebooted since this index was last written: commits that
	 * were not yet on disk may be gone while the files they described are
	 * there. Rescan everything and stop trusting the modseqs. */
	if (store_index_begin(user, err) < 0)
		return OPEN_FAILED;
	if ((!same && (store_index_exec(user, err, "UPDATE mailbox SET rescan=2") < 0 ||
		       store_index_exec(user, err, "INSERT OR REPLACE INTO meta VALUES('boot_id', %Q)",
					user->store->boot_id) < 0)) ||
	    store_index_exec(user, err, "INSERT OR REPLACE INTO meta VALUES('user', %Q)",
			     user->name) < 0) {
		store_index_rollback(user);
		return OPEN_FAILED;
	}
	return store_index_commit(user, err) < 0 ? OPEN_FAILED : OPEN_OK;
}

/* user_version, application_id and the number of tables, read in one
 * statement so that they come from one snapshot (another process may be
 * creating the schema): 0, or -1 (the error is in db). */
static int schema_state(sqlite3 *db, int *version_r, int *app_r, int *tables_r)
{
	sqlite3_stmt *st = NULL;
	int ret = -1;
	if (sqlite3_prepare_v2(db,
			       "SELECT (SELECT user_version FROM pragma_user_version),"
			       " (SELECT application_id FROM pragma_application_id),"
			       " (SELECT count(*) FROM sqlite_master)",
			       -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW) {
		*version_r = sqlite3_column_int(st, 0);
		*app_r = sqlite3_column_int(st, 1);
		*tables_r = sqlite3_column_int(st, 2);
		ret = 0;
	}
	sqlite3_finalize(st);
	return ret;
}

/* Upgrade to 4: an older msg_cache gains the preview column (NULL in its
 * rows: a miss when asked for, store_cache.c). */
static int add_preview_column(struct store_user *user, struct error *err)
{
	sqlite3_stmt *st = NULL;
	int has = 0;
	if (sqlite3_prepare_v2(user->ix.db,
			       "SELECT count(*) FROM pragma_table_info('msg_cache') WHERE name='preview'",
			       -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		store_index_sqlerr(user, err, "schema");
		return -1;
	}
	has = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return has ? 0 : store_index_exec(user, err, "ALTER TABLE msg_cache ADD COLUMN preview TEXT");
}

/* The schema is created once per file (user_version marks it), so that
 * reopening a released index costs an open and one small read. A new file
 * gets it (and complete=0: every mailbox is to be rebuilt), an older index
 * of ours is upgraded; anything else is another program's database:
 * OPEN_DAMAGED. Decided again inside the write transaction, as several
 * processes may open a new index at once. */
static int setup_schema(struct store_user *user, char *why, size_t whysize, struct error *err)
{
	sqlite3 *db = user->ix.db;
	int version, app, tables;
	if (schema_state(db, &version, &app, &tables) < 0) {
		store_index_sqlerr(user, err, "cannot open index.sqlite");
		return OPEN_FAILED;
	}
	if (version == SCHEMA_VERSION && app == APPLICATION_ID)
		return OPEN_OK;
	if (store_index_begin(user, err) < 0)
		return OPEN_FAILED;
	if (schema_state(db, &version, &app, &tables) < 0) {
		store_index_sqlerr(user, err, "cannot open index.sqlite");
		store_index_rollback(user);
		return OPEN_FAILED;
	}
	if (version == SCHEMA_VERSION && app == APPLICATION_ID) {
		store_index_rollback(user); /* made meanwhile by another process */
		return OPEN_OK;
	}
	if ((app != 0 && app != APPLICATION_ID) || (version == 0 && tables > 0) ||
	    version > SCHEMA_VERSION) {
		store_index_rollback(user);
		snprintf(why, whysize,
			 "not a mailroom index (application_id %d, schema version %d, %d tables)", app,
			 version, tables);
		return OPEN_DAMAGED;
	}
	/* An upgraded index has no keyword copies yet: the next sync of each
	 * mailbox writes them (store_sync.c, on a full scan). */
	if (store_index_exec(user, err, "%s", schema) < 0 || add_preview_column(user, err) < 0 ||
	    (version != 0 && store_index_exec(user, err, "UPDATE mailbox SET rescan=max(rescan, 1)") < 0) ||
	    (version != 0 && store_index_exec(user, err, "%s", store_index_qfile_fill) < 0) ||
	    store_index_exec(user, err, "INSERT OR REPLACE INTO meta VALUES('user', %Q)", user->name) < 0 ||
	    store_index_exec(user, err, "INSERT OR REPLACE INTO meta VALUES('complete', %d)",
			     tables == 0 ? 0 : 1) < 0 ||
	    store_index_exec(user, err, "PRAGMA application_id=%d; PRAGMA user_version=%d",
			     APPLICATION_ID, SCHEMA_VERSION) < 0) {
		store_index_rollback(user);
		return OPEN_FAILED;
	}
	if (store_index_commit(user, err) < 0)
		return OPEN_FAILED;
	sqlite3_stmt *st = NULL;
	int ok = sqlite3_prepare_v2(db, probe, -1, &st, NULL) == SQLITE_OK;
	sqlite3_finalize(st);
	if (!ok) {
		snprintf(why, whysize, "not a mailroom index (%s)", sqlite3_errmsg(db));
		return OPEN_DAMAGED;
	}
	return OPEN_OK;
}

static ino_t inode_of(int dir_fd, const char *name)
{
	struct stat st;
	return fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 ? st.st_ino : 0;
}

/* SQLite opens index.sqlite, its -wal and -shm by name and would follow a
 * symbolic link planted in the user's folder into another user's index: any
 * of them that is not a plain file is foreign, healed like a damaged index. */
static const char *const index_files[] = { "index.sqlite", "index.sqlite-wal", "index.sqlite-shm",
					    "index.sqlite-journal" };

static int not_plain_file(int dir_fd, char *why, size_t whysize)
{
	for (size_t i = 0; i < sizeof(index_files) / sizeof(index_files[0]); i++) {
		struct stat st;
		if (fstatat(dir_fd, index_files[i], &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    !S_ISREG(st.st_mode)) {
			snprintf(why, whysize, "%s is not a plain file%s", index_files[i],
				 S_ISLNK(st.st_mode) ? " but a symbolic link" : "");
			return 1;
		}
	}
	return 0;
}

static int open_conn(struct store_user *user, char *why, size_t whysize, ino_t *seen_r,
		     struct error *err)
{
	char path[64];
	struct stat ix;
	int r = OPEN_FAILED;
	/* The connection gets its own descriptor of the folder: SQLite opens
	 * the -wal and -shm files by this path, and a pooled connection
	 * outlives the store_user that opened it. */
	user->ix.dir_fd = fcntl(user->root_fd, F_DUPFD_CLOEXEC, 0);
	if (user->ix.dir_fd < 0) {
		error_errno(err, "cannot open index.sqlite");
		return OPEN_FAILED;
	}
	/* The file this open judges (heal moves it aside only if it is
	 * still the one under the name). */
	*seen_r = inode_of(user->ix.dir_fd, "index.sqlite");
	if (not_plain_file(user->ix.dir_fd, why, whysize)) {
		r = OPEN_DAMAGED;
		goto fail;
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
	if ((r = setup_schema(user, why, whysize, err)) != OPEN_OK ||
	    (r = check_meta(user, why, whysize, err)) != OPEN_OK)
		goto fail;
	r = OPEN_FAILED;
	if (fstatat(user->ix.dir_fd, "index.sqlite", &ix, AT_SYMLINK_NOFOLLOW) < 0) {
		error_errno(err, "index.sqlite");
		goto fail;
	}
	user->ix.dev = ix.st_dev;
	user->ix.ino = ix.st_ino;
	user->ix.wal_ino = inode_of(user->ix.dir_fd, "index.sqlite-wal");
	user->ix.shm_ino = inode_of(user->ix.dir_fd, "index.sqlite-shm");
	return OPEN_OK;
fail:
	if (r != OPEN_DAMAGED && user->ix.db != NULL && is_damage(user->ix.db)) {
		snprintf(why, whysize, "%s", sqlite3_errmsg(user->ix.db));
		r = OPEN_DAMAGED;
	} else if (r == OPEN_FAILED && user->ix.db != NULL &&
		   (sqlite3_errcode(user->ix.db) & 0xff) == SQLITE_IOERR) {
		r = OPEN_RETRY;
	}
	user->in_txn = 0;
	store_pool_conn_close(&user->ix);
	return r;
}

int store_index_move_aside(int dir_fd, const char *name, char *aside_r, size_t size)
{
	char stamp[32], aside[300];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	for (int i = 1; i < 100; i++) {
		if (i == 1)
			snprintf(aside, sizeof(aside), "%.200s.corrupt-%s", name, stamp);
		else
			snprintf(aside, sizeof(aside), "%.200s.corrupt-%s-%d", name, stamp, i);
		if (fsx_rename_noreplace(dir_fd, name, dir_fd, aside) == 0) {
			if (aside_r != NULL)
				snprintf(aside_r, size, "%s", aside);
			return 0;
		}
		if (errno != EEXIST)
			return -1;
	}
	errno = EEXIST;
	return -1;
}

void store_index_note_heal(struct store_user *user, const char *fmt, ...)
{
	char line[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	log_warn("store %s: %s", user->name, line);
	if (user->store->heal_say != NULL)
		user->store->heal_say(user->store->heal_ctx, line);
}

/* Entries that are not plain files (not_plain_file) cannot be locked
 * without following them: move each aside by name (renaming a link moves
 * the link, never its target). 1: none found, 0: moved, -1: error. */
static int heal_foreign(struct store_user *user, const char *why, struct error *err)
{
	int moved = 0;
	for (size_t i = 0; i < sizeof(index_files) / sizeof(index_files[0]); i++) {
		struct stat st;
		if (fstatat(user->root_fd, index_files[i], &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    S_ISREG(st.st_mode))
			continue;
		if (store_index_move_aside(user->root_fd, index_files[i], NULL, 0) < 0 &&
		    errno != ENOENT) {
			error_errno(err, "cannot move a foreign index file aside");
			return -1;
		}
		moved = 1;
	}
	if (!moved)
		return 1;
	if (fsx_fsync(user->root_fd) < 0) {
		error_errno(err, "fsync");
		return -1;
	}
	store_index_note_heal(user, "%.150s: moved aside, index rebuilt from the files", why);
	return 0;
}

/* Move the damaged index and its -wal and -shm aside (see the note at the
 * top), unless another process did it first. Waits for flock(2) on the
 * damaged file itself without a timeout: whoever holds it only renames
 * three names and fsyncs the folder, and a crash releases it. */
static int heal(struct store_user *user, const char *why, ino_t damaged, struct error *err)
{
	char aside[300];
	struct stat a, b;
	int f = heal_foreign(user, why, err);
	if (f <= 0)
		return f;
	int fd = openat(user->root_fd, "index.sqlite", O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0; /* moved aside by another process already */
		error_errno(err, "cannot open index.sqlite");
		return -1;
	}
	while (flock(fd, LOCK_EX) < 0) {
		if (errno != EINTR) {
			error_errno(err, "cannot lock index.sqlite");
			close(fd);
			return -1;
		}
	}
	int ret = 0;
	if (fstat(fd, &a) < 0 || fstatat(user->root_fd, "index.sqlite", &b, AT_SYMLINK_NOFOLLOW) < 0 ||
	    a.st_dev != b.st_dev || a.st_ino != b.st_ino || (damaged != 0 && a.st_ino != damaged))
		goto out; /* another process moved it and made a new one */
	if ((store_index_move_aside(user->root_fd, "index.sqlite-wal", NULL, 0) < 0 && errno != ENOENT) ||
	    (store_index_move_aside(user->root_fd, "index.sqlite-shm", NULL, 0) < 0 && errno != ENOENT) ||
	    store_index_move_aside(user->root_fd, "index.sqlite", aside, sizeof(aside)) < 0 ||
	    fsx_fsync(user->root_fd) < 0) {
		error_errno(err, "cannot move the damaged index.sqlite aside");
		ret = -1;
		goto out;
	}
	store_index_note_heal(user,
			      "index.sqlite was damaged (%.120s): moved aside as %.60s (with its -wal"
			      " and -shm), rebuilt from the files",
			      why, aside);
out:
	flock(fd, LOCK_UN);
	close(fd);
	return ret;
}

/* What a `check` without --repair reports instead of healing. */
static int damage_found(struct store_user *user, const char *why, struct error *err)
{
	snprintf(user->store->damage, sizeof(user->store->damage), "index.sqlite is damaged (%.200s)",
		 why);
	error_set(err, ERR_TEMP, "index.sqlite is damaged (%.200s)", why);
	return -1;
}

static int index_open(struct store_user *user, struct error *err)
{
	for (int attempt = 0; attempt < 3; attempt++) {
		char why[200] = "";
		ino_t seen = 0;
		int r = open_conn(user, why, sizeof(why), &seen, err);
		if (r == OPEN_OK) {
			user->ix_damaged = 0;
			return 0;
		}
		if (r == OPEN_FAILED || (r == OPEN_RETRY && attempt == 2))
			return -1;
		if (r == OPEN_RETRY)
			continue;
		if (user->store->no_heal)
			return damage_found(user, why, err);
		if (heal(user, why, seen, err) < 0)
			return -1;
	}
	error_set(err, ERR_TEMP, "index.sqlite is still damaged after it was rebuilt");
	return -1;
}

int store_index_verify(struct store_user *user, struct error *err)
{
	if (user->in_txn)
		return 0;
	if (user->ix.db != NULL && !user->ix_damaged &&
	    store_pool_conn_valid(&user->ix, user->root_fd))
		return 0;
	int damaged = user->ix_damaged;
	int had = user->ix.db != NULL;
	ino_t ino = user->ix.ino;
	store_index_drop(user);
	/* The file it had is gone or replaced: a new one may reuse the freed
	 * inode number, so do not trust the acquire's inode comparison to tell
	 * open mailboxes to look their rows up again. */
	if (had)
		user->ix_epoch++;
	if (damaged) {
		/* A statement saw the damage; the file may still open fine (the
		 * damage is in pages the open does not read): heal it now. */
		if (user->store->no_heal)
			return damage_found(user, user->ix_damage, err);
		if (heal(user, user->ix_damage, ino, err) < 0)
			return -1;
		user->ix_damaged = 0;
	}
	return store_index_acquire(user, err);
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
