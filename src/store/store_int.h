/*
 * store_int.h: what the files of src/store share and nothing else sees.
 */
#ifndef MAILROOM_STORE_INT_H
#define MAILROOM_STORE_INT_H

#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/types.h>

#include "store/store.h"

/* Modseqs are reserved ahead in mailroom-box in steps of this many, so that
 * a rebuilt index can start above anything ever handed out. */
#define STORE_MODSEQ_CHUNK 4096

struct store {
	char *data_dir;
	int data_fd;
	int mail_fd;  /* DATA/mail */
	int spool_fd; /* DATA/spool/tmp */
	uint64_t quota_bytes;
	uint64_t quota_messages;
	int quota_tempfail;
	unsigned lock_timeout; /* seconds */
	uint64_t metadata_max_size;    /* bytes per value (RFC 5464) */
	uint64_t metadata_max_entries; /* entries per user */
	char boot_id[48];
	char host[64]; /* for unique file names, with '/', ':' and ',' escaped */
	unsigned long counter;
	struct store_pool *pool; /* index connections between uses */
	/* `check` without --repair: report a damaged index or mailroom-box
	 * (in damage) instead of moving it aside and rebuilding it. */
	int no_heal;
	char damage[300];
	/* Told of each heal (besides the log), for `check --repair`. */
	void (*heal_say)(void *ctx, const char *line);
	void *heal_ctx;
};

/* An open index connection (store_index.c opens it; store_pool.c keeps it
 * between users of it). The prepared-statement cache is keyed by the SQL
 * text's address: callers pass literals. */
#define STORE_STMT_CACHE 64
struct index_stmt {
	const char *sql;
	sqlite3_stmt *stmt;
};
struct store_index_conn {
	sqlite3 *db;		  /* NULL: none */
	struct index_stmt *stmts; /* STORE_STMT_CACHE long */
	int dir_fd;		  /* the user's folder it was opened through (its own fd) */
	dev_t dev;		  /* index.sqlite as opened */
	ino_t ino;
	ino_t wal_ino;		  /* its -wal and -shm as opened (0: none) */
	ino_t shm_ino;
};

struct store_user {
	struct store *store;
	char name[STORE_MAX_USERNAME + 1];
	int root_fd;
	struct store_index_conn ix; /* ix.db NULL until first use (store_index.c) */
	int in_txn;
	int lock_depth;	    /* the user-root lock nests (store_lock.c) */
	int ix_damaged;	    /* an index statement saw SQLITE_CORRUPT/NOTADB */
	char ix_damage[160]; /* what it said */
	int ix_fresh;	    /* rebuilding every mailbox into a new index (meta
			     * 'complete' is 0 until done; store_user.c) */
	unsigned ix_epoch;  /* bumped whenever ix is another file than before */
	dev_t ix_seen_dev;  /* the file of the last connection */
	ino_t ix_seen_ino;
	uint64_t quota_bytes;
	uint64_t quota_messages;
};

/* The mailroom-box file: the per-mailbox state that must survive the index. */
struct store_box {
	uint32_t uidvalidity;
	uint32_t uid_floor;	  /* UIDNEXT is never below this */
	uint64_t modseq_reserved; /* every modseq handed out is below this */
	char guid[33];
	char special_use[16];
	char *keywords[STORE_MAX_KEYWORDS];
};

struct store_mailbox {
	struct store_user *user;
	char *name;
	char *dirname;
	int dir_fd; /* these three are -1 after store_mailbox_release_fds() */
	int cur_fd;
	int new_fd;
	dev_t dir_dev; /* the directory opened first: a reopen must find it */
	ino_t dir_ino;
	int64_t id; /* row in the index's mailbox table */
	unsigned ix_epoch; /* user->ix_epoch when id was looked up */
	struct store_box box;
	int lock_depth;
};

/*
 * The files of src/store, from the bottom up. Each calls functions only of
 * files listed before it, so no two files call each other, however
 * indirectly; each exports only names that begin with its own name
 * (store.c: store_*, the DATA folder; store_subs.c: store_subscribe and
 * store_subscriptions):
 *   store_fname.c  store_name.c  store_flags.c  store_pool.c
 *   store_index.c
 *   store.c  store_fds.c  store_lock.c  store_box.c  store_sync.c
 *   store_mailbox.c  store_subs.c  store_metadata.c  store_rename.c  store_user.c  store_message.c
 *   store_cache.c  store_stage.c  store_link.c  store_mailbox_add.c
 *   store_mailbox_copy.c  store_mailbox_expunge.c  store_mailbox_set_flags.c
 *   store_mailbox_move.c  store_mailbox_rename.c  store_mailbox_recent.c  store_deliver.c
 *   store_import.c
 *   store_check.c  store_notify.c  store_pop3lock.c
 */

/* The unique base of a file name column in SQL: the name up to ",A=" (the
 * save date, when the name has one) or ",S="; every link of one file has it
 * (quota once per file: store_index.c, store_check.c). */
#define STORE_FNAME_BASE_SQL(col) \
	"substr(" col ", 1, CASE WHEN instr(" col ", ',A=') > 0 THEN instr(" col \
	", ',A=') ELSE instr(" col ", ',S=') END - 1)"

/* store_fname.c: maildir file names "<base>,A=<savedate>,S=<size>,U=<uid>:2,<flags>". */
struct store_fname {
	char base[200];
	uint64_t size;	/* 0 if no S= */
	uint32_t uid;	/* 0 if no U= */
	uint32_t flags;
	uint32_t keywords;
	int64_t savedate; /* 0 if no A= (RFC 8514 save date, Unix seconds) */
	int has_info;	/* ":2," present */
};
int store_fname_parse(const char *name, struct store_fname *f_r);
/* Build the name; returns -1 if it does not fit in outsize. */
int store_fname_build(const struct store_fname *f, char *out, size_t outsize);

/* store_name.c: IMAP mailbox name <-> directory name beneath the user root. */
/* The name checked and normalised (store_mailbox_name_normalize's contract). */
int store_name_normalize(const char *name, char **norm_r, struct error *err);
int store_name_to_dir(const char *name, char **dir_r, struct error *err);
int store_name_from_dir(const char *dir, char **name_r);

/* store_pool.c: index connections kept between uses, one per user. take:
 * 1 and *conn_r (the caller's now) if one of user's waits and is still the
 * index in root_fd, else 0. give: takes conn, keeps or closes it. */
struct store_pool;
struct store_pool *store_pool_new(unsigned max, unsigned ttl_seconds);
void store_pool_free(struct store_pool **pool);
int store_pool_take(struct store_pool *pool, const char *user, int root_fd,
		    struct store_index_conn *conn_r);
void store_pool_give(struct store_pool *pool, const char *user, struct store_index_conn *conn);
void store_pool_conn_close(struct store_index_conn *conn);
/* Is conn still the index (and -wal, -shm) in root_fd? */
int store_pool_conn_valid(const struct store_index_conn *conn, int root_fd);

/* store_index.c: the SQLite index. All take the user. acquire: the user's
 * connection, from the pool or opened (the others call it on first use);
 * release: give it back to the pool (no transaction may be open); drop:
 * close it. */
int store_index_acquire(struct store_user *user, struct error *err);
void store_index_release(struct store_user *user);
void store_index_drop(struct store_user *user);
int store_index_begin(struct store_user *user, struct error *err);
int store_index_commit(struct store_user *user, struct error *err);
void store_index_rollback(struct store_user *user);
/* Prepare (cached) and report SQLite errors as TEMP. */
sqlite3_stmt *store_index_stmt(struct store_user *user, const char *sql, struct error *err);
int store_index_exec(struct store_user *user, struct error *err, const char *sql, ...);
void store_index_sqlerr(struct store_user *user, struct error *err, const char *what);
/* After the last sqlite3_step of st returned rc: reset st; 0 if rc is
 * SQLITE_DONE (a walk of rows stopped on purpose passes SQLITE_DONE), else
 * -1 with err (what names the statement). */
int store_index_done(struct store_user *user, sqlite3_stmt *st, int rc, const char *what,
		     struct error *err);
int store_index_meta_get(struct store_user *user, const char *key, int64_t *v_r);
int store_index_meta_set(struct store_user *user, const char *key, int64_t v, struct error *err);
/* store_user_quota_check for one new link of the file with this base: its
 * bytes count only if the user has no other link of it (store_user.c). */
int store_user_quota_check_file(struct store_user *user, const char *base, uint64_t size,
				struct error *err);
/* SQL that refills qfile and meta quota_dup_bytes from msg (store_index.c). */
extern const char store_index_qfile_fill[];
int store_index_quota_add(struct store_user *user, int64_t bytes, int64_t messages,
			  struct error *err);
/* Make sure the user's connection is to the index that is in the user's
 * folder now and not known to be damaged: reopen it if another process
 * moved the file aside (or someone replaced it), heal it if a statement
 * found it damaged (see the note in store_index.c). Not in a transaction
 * (then a no-op). Afterwards ix_epoch tells whether mailbox ids changed. */
int store_index_verify(struct store_user *user, struct error *err);
/* Tell of a heal: one warning in the log, and store->heal_say. */
void store_index_note_heal(struct store_user *user, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Move dir_fd/name aside as "name.corrupt-<UTC time>" (kept for the admin);
 * aside_r (may be NULL) gets the new name. 0, or -1 with errno. */
int store_index_move_aside(int dir_fd, const char *name, char *aside_r, size_t size);

/* store.c */
/* A unique maildir base name: time.MusecPpidQn.host */
void store_unique_base(struct store *store, char *out, size_t outsize);
/* Remove dirfd/name and everything beneath it, never following symlinks. */
int store_remove_tree(int dirfd, const char *name, int depth);

/* store_fds.c */
/* Reopens the directory descriptors that store_fds_close gave back
 * (NOTFOUND if the mailbox's directory is no longer the one opened first:
 * deleted, or renamed and replaced). Every function that uses dir_fd,
 * cur_fd or new_fd calls it first; a no-op while they are open. */
int store_fds_open(struct store_mailbox *mbox, struct error *err);
/* Close them (not while the mailbox is locked: then a no-op). */
void store_fds_close(struct store_mailbox *mbox);

/* store_lock.c */
/* flock(fd, LOCK_EX), waiting up to timeout_s seconds (then TEMP). */
int store_lock_wait(int fd, unsigned timeout_s, struct error *err);
/* The user-root lock: changes to the set of mailboxes (nests). */
int store_lock_user(struct store_user *user, struct error *err);
void store_lock_user_release(struct store_user *user);
/* The mailbox lock (nests): changes to the mailbox's messages. */
int store_lock_mailbox(struct store_mailbox *mbox, struct error *err);
void store_lock_mailbox_release(struct store_mailbox *mbox);

/* store_box.c: the mailroom-box file. */
int store_box_read(int dir_fd, struct store_box *box_r, struct error *err);
/* Read mbox's mailroom-box into mbox->box, healing a missing or damaged one
 * (see the note in store_box.c): 0, or -1 with err. */
int store_box_load(struct store_mailbox *mbox, struct error *err);
/* Copy mbox->box's keyword names into the index (in the caller's
 * transaction, or in one of its own). */
int store_box_index_keywords(struct store_mailbox *mbox, struct error *err);
int store_box_write(int dir_fd, const struct store_box *box, struct error *err);
void store_box_clear(struct store_box *box);
void store_box_init(struct store_box *box, uint32_t uidvalidity);
/* Next UIDVALIDITY for a new mailbox of this user: above the last one given. */
int store_box_next_uidvalidity(struct store_user *user, uint32_t *uv_r, struct error *err);
/* Rewrite mailroom-box durably after changing mbox->box. */
int store_box_save(struct store_mailbox *mbox, struct error *err);
/* Hand out the next modseq (reserving ahead in mailroom-box as needed).
 * Caller holds the lock and an index transaction. */
int store_box_next_modseq(struct store_mailbox *mbox, uint64_t *modseq_r, struct error *err);

/* store_sync.c: reconcile with the files. */
/* 1 if the index may be behind the files (cheap), 0 if not, -1 on error. */
int store_sync_needed(struct store_mailbox *mbox, struct error *err);
/* Reread mailroom-box and reconcile; caller holds the lock. */
int store_sync_locked(struct store_mailbox *mbox, int full, struct error *err);
struct store_sync_report {
	int dry;     /* only report, change nothing... */
	int residue; /* ...but crash residue (pending rows): resolve it anyway */
	unsigned problems;
	unsigned recovered; /* crash residue resolved ("recovered: " lines) */
	void (*say)(void *ctx, const char *line);
	void *ctx;
};
/* The reconcile itself; rep (may be NULL) hears of every difference. */
int store_sync_run(struct store_mailbox *mbox, int full, struct store_sync_report *rep,
		   struct error *err);
/* Record the current mtime of cur/ in the index (caller in a transaction),
 * after a change of ours: the next sync need not rescan. */
int store_sync_note_mtime(struct store_mailbox *mbox, struct error *err);
/* After a failure half way through file operations: make the next sync
 * rescan cur/ in full, whatever its mtime says. */
void store_sync_mark_rescan(struct store_mailbox *mbox);

/* store_mailbox.c */
/* Open without reconciling (for `check`, which reports before it repairs). */
int store_mailbox_open_nosync(struct store_user *user, const char *name,
			      struct store_mailbox **mbox_r, struct error *err);

/* store_rename.c: RENAME of a mailbox other than INBOX with its children
 * (normalized names; from exists, to does not: checked here under the
 * user-root lock), journalled so that a crash leaves it done or not done;
 * recover finishes one that a crash interrupted (store_user_open calls it;
 * it logs and goes on if it cannot). is_child: name is beneath parent. */
int store_rename_folders(struct store_user *user, const char *from, const char *to,
			 struct error *err);
int store_rename_recover(struct store_user *user);
int store_name_is_child(const char *name, const char *parent);

/* store_message.c */
/* The index row of uid (pending rows excluded), its file name copied into
 * fname (msg_r->fname points there); NOTFOUND if there is none. */
int store_message_lookup(struct store_mailbox *mbox, uint32_t uid, struct store_msg *msg_r,
			 char *fname, size_t fname_size, struct error *err);

/* store_cache.c: a message's cache row as the index stores it, every field
 * malloc'ed or NULL. */
struct store_cache_row {
	struct store_parsed text; /* envelope, body, bodystructure, preview; its tree NULL */
	char *tree;		  /* the tree as mime_tree_serialize wrote it */
	size_t tree_len;
};
/* The row of a parsed message (all five fields: the preview is read from
 * fd, the message file; fd -1 leaves it NULL); -1 when out of memory (then
 * *row is empty). */
int store_cache_row_fill(struct store_cache_row *row, const struct mime_tree *tree, int fd);
void store_cache_row_clear(struct store_cache_row *row);
/* Write uid's row whole, if uid still has an index row. */
int store_cache_put(struct store_mailbox *mbox, uint32_t uid, const struct store_cache_row *row,
		    struct error *err);

/* store_stage.c */
/* The cache row computed while staging (after finish), or NULL. */
const struct store_cache_row *store_stage_cache(const struct store_stage *stage);
int store_stage_fd(const struct store_stage *stage);
const char *store_stage_name(const struct store_stage *stage);
int store_stage_is_finished(const struct store_stage *stage);

/* store_link.c: steps 2 and 4 of the delivery protocol for n messages
 * entering mbox (the caller holds its lock and links in between). */
struct store_link {
	uint32_t uid;	     /* set by store_link_reserve */
	char fname[512];     /* the final name in cur/, set by store_link_reserve */
	struct store_fname f; /* base, size, flags, keywords: set by the caller */
	int64_t internaldate;
	int linked;	     /* the caller linked it into cur/ */
};
/* Step 2: reserve UIDs for msgs[0..n) and commit pending rows for them. */
int store_link_reserve(struct store_mailbox *mbox, struct store_link *msgs, size_t n,
		       struct error *err);
/* Step 4: mark the linked ones done (modseq, quota, cur/'s mtime) and drop
 * the rows of those that were not linked. */
int store_link_complete(struct store_mailbox *mbox, struct store_link *msgs, size_t n,
			struct error *err);
/* After a failed step 3 or 4: take the links back (and fsync), so that the
 * failure the caller reports is true. */
void store_link_undo(struct store_mailbox *mbox, struct store_link *msgs, size_t n);
/* store_mailbox_expunge.c: raise mailroom-box's UIDNEXT floor above
 * max_uid (if it is not already) before files with UIDs up to it leave
 * cur/ (expunge, MOVE). */
int store_mailbox_raise_uid_floor(struct store_mailbox *mbox, uint32_t max_uid, struct error *err);

/* store_mailbox_copy.c: COPY (move == 0: link) or the first half of MOVE
 * (move != 0: rename out of src; store_mailbox_move then drops the rows). */
int store_mailbox_transfer(struct store_mailbox *src, const uint32_t *uids, size_t n,
			   struct store_mailbox *dst, uint32_t *dst_uids_r, int move,
			   struct error *err);

#endif
