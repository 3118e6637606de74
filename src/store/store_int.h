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
	char boot_id[48];
	char host[64]; /* for unique file names, with '/', ':' and ',' escaped */
	unsigned long counter;
};

struct store_user {
	struct store *store;
	char name[STORE_MAX_USERNAME + 1];
	int root_fd;
	sqlite3 *db;
	struct index_stmt *stmts; /* prepared-statement cache, STORE_STMT_CACHE long */
	int in_txn;
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
	struct store_box box;
	int lock_depth;
};

/* Reopens the directory descriptors that store_mailbox_release_fds() gave
 * back (NOTFOUND if the mailbox's directory is no longer the one opened
 * first: deleted, or renamed and replaced). Every function that uses dir_fd,
 * cur_fd or new_fd calls it first; a no-op while they are open. */
int store_mailbox_fds(struct store_mailbox *mbox, struct store_error *err);

/* store.c */
void store_err(struct store_error *err, enum store_errcode code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Sets err from errno: ENOSPC, EIO and friends are TEMP. */
void store_err_errno(struct store_error *err, const char *what);
/* A unique maildir base name: time.MusecPpidQn.host */
void store_unique_base(struct store *store, char *out, size_t outsize);
/* Remove dirfd/name and everything beneath it, never following symlinks. */
int store_remove_tree(int dirfd, const char *name, int depth);

/* store_name.c: IMAP mailbox name <-> directory name beneath the user root. */
int store_name_to_dir(const char *name, char **dir_r, struct store_error *err);
int store_name_from_dir(const char *dir, char **name_r);

/* store_fname.c: maildir file names "<base>,S=<size>,U=<uid>:2,<flags>". */
struct store_fname {
	char base[200];
	uint64_t size;	/* 0 if no S= */
	uint32_t uid;	/* 0 if no U= */
	uint32_t flags;
	uint32_t keywords;
	int has_info;	/* ":2," present */
};
int store_fname_parse(const char *name, struct store_fname *f_r);
/* Build the name; returns -1 if it does not fit in outsize. */
int store_fname_build(const struct store_fname *f, char *out, size_t outsize);

/* store_box.c */
int store_box_read(int dir_fd, struct store_box *box_r, struct store_error *err);
int store_box_write(int dir_fd, const struct store_box *box, struct store_error *err);
void store_box_clear(struct store_box *box);
void store_box_init(struct store_box *box, uint32_t uidvalidity);
/* Next UIDVALIDITY for a new mailbox of this user: above the last one given. */
int store_box_next_uidvalidity(struct store_user *user, uint32_t *uv_r, struct store_error *err);

/* store_index.c: the SQLite index. All take the user. */
int store_index_open(struct store_user *user, struct store_error *err);
void store_index_close(struct store_user *user);
int store_index_begin(struct store_user *user, struct store_error *err);
int store_index_commit(struct store_user *user, struct store_error *err);
void store_index_rollback(struct store_user *user);
/* Prepare (cached) and report SQLite errors as TEMP. */
sqlite3_stmt *store_index_stmt(struct store_user *user, const char *sql, struct store_error *err);
int store_index_exec(struct store_user *user, struct store_error *err, const char *sql, ...);
void store_index_sqlerr(struct store_user *user, struct store_error *err, const char *what);
int store_index_meta_get(struct store_user *user, const char *key, int64_t *v_r);
int store_index_meta_set(struct store_user *user, const char *key, int64_t v,
			 struct store_error *err);
int store_index_quota_add(struct store_user *user, int64_t bytes, int64_t messages,
			  struct store_error *err);

/* store_mailbox.c */
/* Open without reconciling (for `check`, which reports before it repairs). */
int store_mailbox_open_nosync(struct store_user *user, const char *name,
			      struct store_mailbox **mbox_r, struct store_error *err);
/* After a failure half way through file operations: make the next sync
 * rescan cur/ in full, whatever its mtime says. */
void store_mailbox_mark_rescan(struct store_mailbox *mbox);
int store_mailbox_lock(struct store_mailbox *mbox, struct store_error *err);
void store_mailbox_unlock(struct store_mailbox *mbox);
/* Rewrite mailroom-box durably after changing mbox->box. */
int store_mailbox_save_box(struct store_mailbox *mbox, struct store_error *err);
/* Hand out the next modseq (reserving ahead in mailroom-box as needed).
 * Caller holds the lock and an index transaction. */
int store_mailbox_next_modseq(struct store_mailbox *mbox, uint64_t *modseq_r,
			      struct store_error *err);
/* Record the current mtime of cur/ in the index (caller in a transaction). */
int store_mailbox_note_mtime(struct store_mailbox *mbox, struct store_error *err);

/* store_sync.c: reconcile with the files; caller holds the lock. */
int store_sync_locked(struct store_mailbox *mbox, int full, struct store_error *err);
struct store_sync_report {
	int dry; /* only report, change nothing */
	unsigned problems;
	void (*say)(void *ctx, const char *line);
	void *ctx;
};
/* The reconcile itself; rep (may be NULL) hears of every difference. */
int store_sync_run(struct store_mailbox *mbox, int full, struct store_sync_report *rep,
		   struct store_error *err);

/* store_cache.c: a message's cache row as the index stores it (the tree
 * serialised by mime_tree_serialize), every field malloc'ed or NULL. */
struct store_cache_row {
	char *envelope;
	size_t envelope_len;
	char *body;
	size_t body_len;
	char *bodystructure;
	size_t bodystructure_len;
	char *tree;
	size_t tree_len;
};
/* The row of a parsed message (all four fields); -1 when out of memory
 * (then *row is empty). */
int store_cache_row_fill(struct store_cache_row *row, const struct mime_tree *tree);
void store_cache_row_clear(struct store_cache_row *row);
/* Write uid's row whole, if uid still has an index row. */
int store_cache_put(struct store_mailbox *mbox, uint32_t uid, const struct store_cache_row *row,
		    struct store_error *err);

/* store_stage.c */
/* The cache row computed while staging (after finish), or NULL. */
const struct store_cache_row *store_stage_cache(const struct store_stage *stage);
int store_stage_fd(const struct store_stage *stage);
const char *store_stage_name(const struct store_stage *stage);
int store_stage_is_finished(const struct store_stage *stage);

/* store_msg.c */
int store_msg_lookup(struct store_mailbox *mbox, uint32_t uid, struct store_msg *msg_r,
		     char *fname, size_t fname_size, struct store_error *err);

#endif
