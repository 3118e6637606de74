/*
 * store.h: the mail store's public API (src/store).
 *
 * The store keeps every user's mail under DATA/mail/USER as maildirs plus a
 * per-user SQLite index. Protocols (IMAP, POP3, LMTP) and the CLI call only
 * this header; none of them touches a path or an SQL statement. The design
 * notes (delivery protocol, UID and modseq allocation, reconcile) are at the
 * top of store_link.c and store_sync.c; each block below names the file
 * that implements it (store_int.h lists them all, bottom up).
 *
 * Errors: the tree's one convention, lib/error.h. Functions return 0 on
 * success and -1 on failure, with the reason in the struct error the caller
 * passes last. Its code keeps temporary and permanent failures apart all the
 * way up (LMTP 4xx vs 5xx, EX_TEMPFAIL vs EX_NOUSER, IMAP NO [UNAVAILABLE]
 * vs NO [OVERQUOTA]); the codes each function can give are noted below.
 *
 * Objects: a struct store (one DATA folder) owns nothing else; a struct
 * store_user (one user's root and index) must be closed before its store; a
 * struct store_mailbox (one open mailbox) before its user. None is
 * thread-safe: use one of each per thread.
 */
#ifndef MAILROOM_STORE_H
#define MAILROOM_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "lib/error.h"

struct config;
struct store;
struct store_user;
struct store_mailbox;
struct store_stage;

/* System flags, as bits. On disk they are the maildir info letters. */
#define STORE_F_DRAFT	  0x01u /* D  \Draft */
#define STORE_F_FLAGGED	  0x02u /* F  \Flagged */
#define STORE_F_PASSED	  0x04u /* P  $Forwarded */
#define STORE_F_ANSWERED  0x08u /* R  \Answered */
#define STORE_F_SEEN	  0x10u /* S  \Seen */
#define STORE_F_DELETED	  0x20u /* T  \Deleted */
#define STORE_F_ALL	  0x3fu

/* Keywords per mailbox: each is a letter a..z in file names. */
#define STORE_MAX_KEYWORDS 26
#define STORE_MAX_USERNAME 64
/* Longest IMAP mailbox name accepted (bytes of UTF-8). */
#define STORE_MAX_MAILBOX_NAME 200

/* ---- the DATA folder, store.c ------------------------------------------- */

/* Open DATA (creating mail/ and spool/tmp/ if missing). settings may be NULL
 * for defaults. The store keeps no pointer to settings. */
int store_open(const char *data_dir, const struct config *settings, struct store **store_r,
	       struct error *err);
void store_close(struct store **store);
/* Over-quota is reported as ERR_QUOTA either way; this says whether the
 * admin configured it as temporary (quota_full_tempfail). */
int store_quota_is_temporary(const struct store *store);

/* ---- users, store_user.c --------------------------------------------------- */

/* 0 if name is acceptable as a user name: 1..64 bytes, no '/', no control
 * characters, not "." or "..", no ':' (the passwd separator), no leading '.'. */
int store_username_valid(const char *name);

/* Create USER's root with INBOX and the special-use mailboxes Drafts, Sent,
 * Trash, Junk and Archive. ERR_EXISTS if the root exists. */
int store_user_create(struct store *store, const char *name, struct error *err);
/* Remove the user's root and everything in it. */
int store_user_purge(struct store *store, const char *name, struct error *err);
/* The mark `mailroom user del` (mail kept) leaves in the user's folder, a
 * file "mailroom-deleted": for `deliver` run without the right to read
 * DATA/passwd, which then goes by the folder and this mark. set: 1 make it,
 * 0 remove it (user add again). deleted: 1 marked, 0 not (or no folder). */
int store_user_mark_deleted(struct store *store, const char *name, int set, struct error *err);
int store_user_is_marked_deleted(struct store *store, const char *name);
/* Open an existing user; ERR_NOUSER if there is no root. */
int store_user_open(struct store *store, const char *name, struct store_user **user_r,
		    struct error *err);
void store_user_close(struct store_user **user);
const char *store_user_name(const struct store_user *user);
/* Bytes and messages held by the user, as quota counts them: the bytes of
 * each file once, however many links (COPY) it has in the user's
 * mailboxes; every message (link) in a mailbox as one message. One read of
 * the index's counters, not a walk of the messages. */
int store_user_quota_usage(struct store_user *user, uint64_t *bytes_r, uint64_t *messages_r,
			   struct error *err);
/* Close the user's index connection until it is next needed (it reopens by
 * itself): what an idle session holds shrinks to a few file descriptors. */
void store_user_release_index(struct store_user *user);
/* Would bytes/messages more go over the user's quota? 0 if not; -1 with
 * ERR_QUOTA if so (or another error if the usage cannot be read). */
int store_user_quota_check(struct store_user *user, uint64_t bytes, uint64_t messages,
			   struct error *err);
/* Per-user limits (0: none); default from the settings. */
void store_user_set_quota(struct store_user *user, uint64_t max_bytes, uint64_t max_messages);
/* The limits in force (0: none). */
void store_user_quota_limits(const struct store_user *user, uint64_t *max_bytes_r,
			     uint64_t *max_messages_r);

/* ---- mailboxes, store_mailbox.c (RENAME: store_mailbox_rename.c) ---------- */

struct store_mailbox_info {
	const char *name;	 /* IMAP name, UTF-8, '/' separated */
	const char *special_use; /* "\\Sent" etc., or NULL */
};

/* Call cb for every mailbox the user has, INBOX first, then sorted by name.
 * cb returning non-zero stops the walk (and store_mailbox_list returns 0). */
int store_mailbox_list(struct store_user *user,
		       int (*cb)(void *ctx, const struct store_mailbox_info *info), void *ctx,
		       struct error *err);
/* special_use: NULL or one of \Drafts \Sent \Trash \Junk \Archive \All \Flagged. */
int store_mailbox_create(struct store_user *user, const char *name, const char *special_use,
			 struct error *err);
/* Delete a mailbox and its messages (children are kept). INBOX: INVALID. */
int store_mailbox_delete(struct store_user *user, const char *name, struct error *err);
/* Rename a mailbox and its children. Renaming INBOX moves its messages to a
 * new mailbox and leaves INBOX empty (RFC 9051 6.3.6). */
int store_mailbox_rename(struct store_user *user, const char *from, const char *to,
			 struct error *err);
/* Normalise an IMAP mailbox name ("inbox/x" -> "INBOX/x"). Returns 0 and a
 * malloc'ed name, or -1 (INVALID) if it is not a name the store accepts. */
int store_mailbox_name_normalize(const char *name, char **norm_r, struct error *err);

/* Subscriptions (RFC 9051 6.3.7): a set of names, which need not exist.
 * store_subs.c. */
int store_subscribe(struct store_user *user, const char *name, int subscribe, struct error *err);
int store_subscriptions(struct store_user *user, int (*cb)(void *ctx, const char *name), void *ctx,
			struct error *err);

/* ---- metadata (RFC 5464), store_metadata.c ------------------------------
 * Entries of a mailbox (mailbox != NULL) or of the server (mailbox NULL),
 * each a name ("/private/..." or "/shared/...", checked by the caller) and a
 * value of any bytes. Kept only in a plain file, "mailroom-metadata" in the
 * mailbox's folder (the user's folder for server entries), replaced
 * atomically and durably on each change: RENAME moves it with the folder,
 * DELETE removes it, and the index has no copy to lose. */
struct store_metadata_entry {
	char *name;
	char *value; /* NUL-terminated too; may hold NULs (literal8) */
	size_t len;
};
/* All entries of the object, sorted by name (bytewise); *n_r 0 when none.
 * ERR_NOTFOUND if the mailbox does not exist. */
int store_metadata_get(struct store_user *user, const char *mailbox,
		       struct store_metadata_entry **entries_r, size_t *n_r, struct error *err);
void store_metadata_free(struct store_metadata_entry *entries, size_t n);
/* Set (value != NULL) or remove (value NULL) the n entries, all or none.
 * ERR_LIMIT if a value is over store_metadata_max_size() bytes or the
 * user would have more than store_metadata_max_entries() entries in all
 * (server and every mailbox); ERR_NOTFOUND for a missing mailbox. */
int store_metadata_set(struct store_user *user, const char *mailbox,
		       const struct store_metadata_entry *changes, size_t n, struct error *err);
uint64_t store_metadata_max_size(const struct store_user *user);
uint64_t store_metadata_max_entries(const struct store_user *user);

struct store_status {
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint32_t messages;
	uint32_t unseen;
	uint32_t deleted;
	uint64_t size;
	uint64_t highestmodseq;
};

/* Open a mailbox and reconcile it with the files (see store_sync.c). */
int store_mailbox_open(struct store_user *user, const char *name, struct store_mailbox **mbox_r,
		       struct error *err);
void store_mailbox_close(struct store_mailbox **mbox);
/* Close the mailbox's directory descriptors (not while locked); the next
 * operation reopens them. For sessions that wait (IDLE): three descriptors
 * less each, which is what lets one worker hold 10,000 of them. */
void store_mailbox_release_fds(struct store_mailbox *mbox);
const char *store_mailbox_name(const struct store_mailbox *mbox);
/* The MAILBOXID (RFC 8474 4): the mailbox's GUID from mailroom-box, 32 hex
 * digits, made when it is created and kept by RENAME (the file moves with
 * the folder) and by a rebuilt index. Valid while mbox is open. */
const char *store_mailbox_guid(const struct store_mailbox *mbox);
int store_mailbox_status(struct store_mailbox *mbox, struct store_status *st_r, struct error *err);
/* UIDVALIDITY and HIGHESTMODSEQ only: one indexed row, for sessions that
 * ask often whether anything changed. */
int store_mailbox_modseq(struct store_mailbox *mbox, uint32_t *uidvalidity_r,
			 uint64_t *highestmodseq_r, struct error *err);
/* Pick up changes made by other processes or by hand (files in new/, files
 * renamed or removed in cur/). full forces a complete rescan of cur/. */
int store_mailbox_sync(struct store_mailbox *mbox, int full, struct error *err);

/* \Recent (RFC 3501 2.3.2), store_mailbox_recent.c (its design note):
 * the messages with lo <= UID < hi are recent and claimed by nobody yet
 * (hi is UIDNEXT). claim = 1 (a read-write session that learns of them:
 * SELECT, or a sync while selected) makes them the caller's: no later
 * call returns them again. claim = 0 (EXAMINE) only looks. TEMP errors. */
int store_mailbox_recent(struct store_mailbox *mbox, int claim, uint32_t *lo_r, uint32_t *hi_r,
			 struct error *err);
/* Number of messages recent and not claimed (STATUS RECENT). */
int store_mailbox_recent_count(struct store_mailbox *mbox, uint32_t *count_r, struct error *err);

/* Keyword names of the mailbox, by bit index (NULL where unused). Valid until
 * the mailbox is closed or synced. */
const char *store_mailbox_keyword(const struct store_mailbox *mbox, unsigned idx);
/* Find (or with create = 1 add) a keyword; returns its bit index in *idx_r.
 * ERR_LIMIT when the mailbox has STORE_MAX_KEYWORDS already. */
int store_mailbox_keyword_index(struct store_mailbox *mbox, const char *keyword, int create,
				unsigned *idx_r, struct error *err);

/* ---- messages: rows (store_mailbox.c), files (store_message.c) ------------ */

struct store_msg {
	uint32_t uid;
	uint32_t flags;	   /* STORE_F_* */
	uint32_t keywords; /* bit i: store_mailbox_keyword(mbox, i) */
	uint64_t modseq;
	uint64_t size;	   /* bytes of the file: the message in wire form */
	int64_t internaldate;
	const char *fname; /* file name in cur/; valid during the callback only */
};

/* Call cb for each message with lo <= uid <= hi in UID order; cb non-zero
 * stops the walk. */
int store_mailbox_messages(struct store_mailbox *mbox, uint32_t lo, uint32_t hi,
			   int (*cb)(void *ctx, const struct store_msg *msg), void *ctx,
			   struct error *err);
/* Messages whose modseq is above modseq (new ones and changed flags), in UID
 * order: what a session that has seen everything up to modseq must learn. */
int store_mailbox_changed_since(struct store_mailbox *mbox, uint64_t modseq,
				int (*cb)(void *ctx, const struct store_msg *msg), void *ctx,
				struct error *err);
/* UIDs expunged with a modseq above modseq, ascending (QRESYNC VANISHED,
 * and sessions catching up). */
int store_mailbox_expunged_since(struct store_mailbox *mbox, uint64_t modseq,
				 int (*cb)(void *ctx, uint32_t uid, uint64_t modseq), void *ctx,
				 struct error *err);

/* Open the message file read-only; the caller closes *fd_r. NOTFOUND if the
 * UID is not (or no longer) in the mailbox. */
int store_message_open(struct store_mailbox *mbox, uint32_t uid, int *fd_r, uint64_t *size_r,
		       struct error *err);

/* What the name of a message file (store_msg.fname) says beyond UID and
 * flags, store_message.c. The save date (RFC 8514): when the message
 * entered this mailbox, Unix seconds; 0 if the name does not say (a file
 * from before the save date was kept, or put in cur/ by another program). */
int64_t store_message_savedate(const char *fname);
/* The EMAILID (RFC 8474 5.1) of the message whose file is fname, as a
 * NUL-terminated objectid in out: the same for every link of one file (COPY,
 * MOVE, flag changes) and after the index is rebuilt or the store copied
 * with rsync -aH; different for another user (see the note in
 * store_message.c). 0, or -1 if fname is not a message name. */
#define STORE_OBJECTID_SIZE 26
int store_message_emailid(const struct store_mailbox *mbox, const char *fname,
			  char out[STORE_OBJECTID_SIZE]);

/* ---- the parsed message, store_cache.c ------------------------------------- */

struct mime_tree;

/* What store_cache_get and store_cache_range are asked for (want). */
#define STORE_PARSED_ENVELOPE	   0x01u /* IMAP ENVELOPE (RFC 9051 7.5.2) */
#define STORE_PARSED_BODY	   0x02u /* IMAP BODY: BODYSTRUCTURE without extension data */
#define STORE_PARSED_BODYSTRUCTURE 0x04u /* IMAP BODYSTRUCTURE */
#define STORE_PARSED_TREE	   0x08u /* the MIME tree: where each part is, its size */
#define STORE_PARSED_PREVIEW	   0x10u /* RFC 8970 PREVIEW text (mime_preview) */
/* Not a field: store_cache_get gives only what the cache holds (the others
 * stay NULL) and never reads the file (PREVIEW (LAZY), RFC 8970 3.2). */
#define STORE_PARSED_CACHED	   0x100u

/* A message's parsed data, by name. Every pointer is malloc'ed and belongs to
 * whoever holds the struct (store_cache_parsed_clear frees them); a field not
 * asked for (or, from store_cache_range, not cached) is NULL. The strings are
 * NUL-terminated and exactly what mime_tree_cache_strings (mime.h) computes
 * for the message's bytes; the tree is always the one rebuilt from its
 * serialised form (mime_tree_deserialize: offsets, sizes, types, encodings
 * and charsets; no raw header fields), whether the cache was hit or not. */
struct store_parsed {
	char *envelope;
	size_t envelope_len;
	char *body;
	size_t body_len;
	char *bodystructure;
	size_t bodystructure_len;
	char *preview; /* UTF-8, at most 256 characters; "" for none */
	size_t preview_len;
	struct mime_tree *tree;
};

/* Fill the fields of *parsed that want names and that are still NULL (a
 * zeroed struct, or one holding what store_cache_range gave). They come from
 * the index's cache; on a miss (no row, a field missing, a cached tree that
 * does not deserialise) the message file is parsed, in bounded memory, and
 * the whole row written (a failed write is logged and costs a parse next
 * time, no more; a read that finds the index damaged is a miss too). 0 on success; -1 with err, *parsed unchanged: NOTFOUND if
 * the message is not cached and not (or no longer) in the mailbox, TEMP for
 * I/O, index and memory failures. Not from a store_cache_range callback. */
int store_cache_get(struct store_mailbox *mbox, uint32_t uid, unsigned want,
		    struct store_parsed *parsed, struct error *err);
/* The cached data of every message with lo <= uid <= hi that has a cache
 * row, in UID order, in one index query (FETCH of many messages: one lock
 * and one B-tree walk instead of a lookup per message). Nothing is parsed:
 * cb gets the fields of want that the row holds, the others NULL (for
 * store_cache_get to fill). cb may keep any field by moving its pointer out
 * and setting it to NULL; the rest is freed when cb returns. Non-zero from
 * cb stops the walk. */
int store_cache_range(struct store_mailbox *mbox, uint32_t lo, uint32_t hi, unsigned want,
		      int (*cb)(void *ctx, uint32_t uid, struct store_parsed *parsed), void *ctx,
		      struct error *err);
/* Free the fields of *parsed and zero it (a zeroed struct is fine). */
void store_cache_parsed_clear(struct store_parsed *parsed);

/* ---- changing messages: staging (store_stage.c), then one file per change:
 *      store_mailbox_add.c, _copy.c, _move.c, _set_flags.c, _expunge.c ---- */

/* A message being received: written once to a staging file (CRLF line
 * endings enforced), fsynced once, then linked into one or more mailboxes. */
int store_stage_new(struct store *store, struct store_stage **stage_r, struct error *err);
/* Append bytes. Bare LF becomes CRLF; bare CR is kept only before LF. */
int store_stage_write(struct store_stage *stage, const void *data, size_t len, struct error *err);
/* Give back the descriptor until the next write or finish (a client that
 * sends many messages in one command must not hold a file open for each). */
int store_stage_pause(struct store_stage *stage, struct error *err);
/* Set the internal date (default: the time of store_stage_finish). */
void store_stage_set_internaldate(struct store_stage *stage, time_t when);
/* Flush and fsync. After this, the staged message can be added. */
int store_stage_finish(struct store_stage *stage, struct error *err);
uint64_t store_stage_size(const struct store_stage *stage);
/* Remove the staging file (the mailboxes keep their links) and free. */
void store_stage_free(struct store_stage **stage);

/* Add the staged, finished message to mbox with the given flags and keyword
 * bits. On success *uid_r is its UID and the message is durable. */
int store_mailbox_add(struct store_mailbox *mbox, struct store_stage *stage, uint32_t flags,
		      uint32_t keywords, uint32_t *uid_r, struct error *err);

/* Copy messages (hard links). uids[] must be ascending; dst_uids_r[i] gets
 * the new UID of uids[i] (0 if that message had gone). Keywords are carried
 * over by name. */
int store_mailbox_copy(struct store_mailbox *src, const uint32_t *uids, size_t n,
		       struct store_mailbox *dst, uint32_t *dst_uids_r, struct error *err);
/* Rename into dst (a crash leaves each message in one of the two), then
 * expunge from src. */
int store_mailbox_move(struct store_mailbox *src, const uint32_t *uids, size_t n,
		       struct store_mailbox *dst, uint32_t *dst_uids_r, struct error *err);

enum store_flag_mode { STORE_FLAGS_SET, STORE_FLAGS_ADD, STORE_FLAGS_REMOVE };
/* What store_mailbox_set_flags makes of a message whose flags and keywords
 * are *flags_io and *keywords_io: the one copy of that arithmetic, for
 * callers that must predict it (IMAP .SILENT: what the client works out for
 * itself). store_flags.c. */
void store_flags_apply(enum store_flag_mode mode, uint32_t flags, uint32_t keywords,
		       uint32_t *flags_io, uint32_t *keywords_io);

/* One message of the set, as store_mailbox_set_flags left it. */
struct store_flag_report {
	uint32_t uid;
	uint32_t flags;	   /* STORE_F_*: its flags now */
	uint32_t keywords; /* its keyword bits now */
	uint64_t modseq;   /* its modseq now: a new one if changed */
	int changed;	   /* this call changed its flags or keywords */
	int modified;	   /* left alone: its modseq was above unchangedsince */
};
/* Change flags and keywords of the messages in uids[] (ascending) as
 * store_flags_apply says. A message whose modseq is above unchangedsince
 * (when non-zero) is left alone (CONDSTORE, RFC 7162 3.1.3). Each changed
 * message gets a new modseq. On success report (may be NULL) hears of each
 * message of uids[] that is in the mailbox, in that order, once the change
 * is committed and the mailbox unlocked; on failure it hears nothing. */
int store_mailbox_set_flags(struct store_mailbox *mbox, const uint32_t *uids, size_t n,
			    enum store_flag_mode mode, uint32_t flags, uint32_t keywords,
			    uint64_t unchangedsince,
			    void (*report)(void *ctx, const struct store_flag_report *r), void *ctx,
			    struct error *err);
/* Remove messages (unlink). Missing UIDs are ignored. */
int store_mailbox_expunge(struct store_mailbox *mbox, const uint32_t *uids, size_t n,
			  struct error *err);

/* ---- change notification (IDLE), store_notify.c ---------------------------- */

struct store_notify;
struct store_notify *store_notify_new(void);
void store_notify_free(struct store_notify **n);
/* Poll this fd for reading in the event loop. */
int store_notify_fd(const struct store_notify *n);
/* Watch mbox for owner; returns an id (0 on failure). The mailbox must stay
 * open while watched. */
unsigned store_notify_add(struct store_notify *n, struct store_mailbox *mbox, void *owner);
void store_notify_remove(struct store_notify *n, unsigned id);
/* Watch all of a user's mailboxes at once (its root directory: the index,
 * mailbox directories, subscriptions). Same contract as store_notify_add;
 * registrations of one user share one kernel watch. */
unsigned store_notify_add_user(struct store_notify *n, struct store_user *user, void *owner);
/* After the fd became readable: cb(owner) for each owner whose mailbox may
 * have changed (possibly more than once; cb may remove watches). */
void store_notify_read(struct store_notify *n, void (*cb)(void *owner));

/* ---- delivery (LMTP, `mailroom deliver`) ---------------------------------- */

struct store_rcpt {
	const char *user;
	const char *mailbox; /* NULL: INBOX; a missing mailbox falls back to INBOX */
	struct error result;
	uint32_t uid;
};
/* Link one finished staged message into every recipient's mailbox (single
 * instance: one inode, n links). Each rcpt gets its own result; returns the
 * number of recipients that failed. */
size_t store_deliver(struct store *store, struct store_stage *stage, uint32_t flags,
		     struct store_rcpt *rcpts, size_t n);

/* ---- import from another store (`mailroom import`), store_import.c -------
 *
 * Messages enter a mailbox with the UIDs the old server gave them, in
 * batches: hard links (or copies) into cur/ under their final names, one
 * fsync of cur/ and one index transaction per batch, under the mailbox lock
 * (the design note is at the top of store_import.c). */

struct store_import;

/* What store_import_begin found. */
enum store_import_state {
	STORE_IMPORT_CREATED,	/* made now, with the source's UIDVALIDITY */
	STORE_IMPORT_ADOPTED,	/* it existed but never held a message (a new user's
				 * INBOX): it now has the source's UIDVALIDITY */
	STORE_IMPORT_RERUN,	/* it has the source's UIDVALIDITY: UIDs it holds are skipped */
	STORE_IMPORT_APPEND,	/* it holds mail under another UIDVALIDITY (or the source
				 * gave none): messages get new UIDs */
};

/* Open mailbox name of user for an import of a folder whose UIDVALIDITY
 * and UIDNEXT are given (0: unknown). Creates it if missing (parents are
 * implicit in this store; special_use is set if it is one the store knows),
 * gives a mailbox that never held a message the source's UIDVALIDITY, and,
 * unless appending, raises its UIDNEXT floor to uidnext so that no later
 * delivery takes a UID of the source. Errors: INVALID (bad name), TEMP,
 * NOSPACE. */
int store_import_begin(struct store_user *user, const char *name, const char *special_use,
		       uint32_t uidvalidity, uint32_t uidnext, struct store_import **imp_r,
		       enum store_import_state *state_r, struct error *err);
/* Run as root on a store `mailroom serve` has not yet handed to its
 * run_user (DATA/mail owned by root), a linked file would be chowned by the
 * hand-over; so then only files already owned by uid:gid (run_user and its
 * group) are linked, and without this call none. */
void store_import_set_owner(struct store_import *imp, uid_t uid, gid_t gid);
/* The open mailbox (borrowed, valid until end/abort). */
struct store_mailbox *store_import_mailbox(struct store_import *imp);
/* 1 if the mailbox holds uid already, or a client was told it was expunged
 * (a re-run skips it), 0 if not (always 0 when appending). From memory (the
 * UIDs are read when the folder opens and at each batch): no error today,
 * -1 with err reserved for one. */
int store_import_has_uid(struct store_import *imp, uint32_t uid, struct error *err);

struct store_import_msg {
	uint32_t uid;		     /* 0 (and always when appending): the next free UID */
	uint32_t flags;		     /* STORE_F_* */
	const char *const *keywords; /* names; mapped to the mailbox's letters, added as needed */
	size_t nkeywords;
	int64_t internaldate;	     /* -1: the file's mtime (store_import_file) */
};

enum store_import_how { STORE_IMPORT_LINKED, STORE_IMPORT_COPIED, STORE_IMPORT_STREAMED };
/* Why a file was copied rather than linked. */
enum store_import_why {
	STORE_IMPORT_WHY_NONE,
	STORE_IMPORT_WHY_XDEV,	    /* another file system */
	STORE_IMPORT_WHY_PROTECTED, /* link refused (EPERM): fs.protected_hardlinks lets the
				     * store owner link only files it owns or may write */
	STORE_IMPORT_WHY_DATE,	    /* INTERNALDATE is not the file's mtime, and a link cannot
				     * change it without changing the source */
	STORE_IMPORT_WHY_MLINK,	    /* the source file has the most links its file system allows */
	STORE_IMPORT_WHY_NOT_HANDED_OVER, /* running as root on a store `mailroom serve` has not
					   * yet handed to its run_user: that chowns everything
					   * in it not run_user's, a linked source file too */
};
struct store_import_result {
	uint32_t uid;
	enum store_import_how how;
	enum store_import_why why;
	uint64_t size;		   /* bytes of the file in cur/ */
	unsigned keywords_dropped; /* invalid names, or over STORE_MAX_KEYWORDS */
};

/* Add the message that is the file path (relative to dirfd, or absolute):
 * a hard link into cur/ when it can be (the source is never changed: no
 * chmod, chown or utime of a linked inode, now or later; see
 * STORE_IMPORT_WHY_NOT_HANDED_OVER), otherwise a copy of its bytes
 * as they are, with mtime = INTERNALDATE. Durable and visible after the
 * batch's flush (every 1000 messages, store_import_flush, store_import_end).
 * Errors for this message only (the caller reports it and goes on):
 * NOTFOUND (no such file), DATA (not a regular file, not readable by the
 * store owner, changed while read), EXISTS (the UID is there already, or
 * was expunged: what store_import_has_uid says). Others (TEMP, NOSPACE, LIMIT: out of
 * UIDs) are the mailbox's. */
int store_import_file(struct store_import *imp, const struct store_import_msg *m, int dirfd,
		      const char *path, struct store_import_result *res_r, struct error *err);
/* Add a staged, finished message (store_stage_*: the internal date is the
 * stage's, store_stage_set_internaldate). Errors as store_import_file. */
int store_import_stage(struct store_import *imp, const struct store_import_msg *m,
		       struct store_stage *stage, struct store_import_result *res_r,
		       struct error *err);
/* Make the batch so far durable and visible, and let the mailbox lock go.
 * TEMP, NOSPACE (the files stay in cur/: the next open adopts them). */
int store_import_flush(struct store_import *imp, struct error *err);
/* Remember uidl as the POP3 UIDL of uid (written at store_import_end into
 * the mailbox's mailroom-pop3-uidl, merged with what is there). INVALID if
 * it is not 1-70 characters 0x21-0x7E (RFC 1939 7); TEMP. */
int store_import_pop3_uidl(struct store_import *imp, uint32_t uid, const char *uidl,
			   struct error *err);
/* 0 if uidl is a valid POP3 UIDL (RFC 1939 7), -1 if not. */
int store_import_uidl_valid(const char *uidl);
/* Flush, write the UIDLs, close; *imp is NULL afterwards either way.
 * TEMP, NOSPACE. */
int store_import_end(struct store_import **imp, struct error *err);
/* Stop: what was added is kept (committed now if possible, or adopted with
 * its UIDs at the next open); *imp is NULL afterwards. */
void store_import_abort(struct store_import **imp);

/* The POP3 UIDLs imported into mbox: cb for each (UID, UIDL), in UID order;
 * nothing if none. cb non-zero stops. TEMP if the file cannot be read. */
int store_import_uidls(struct store_mailbox *mbox,
		       int (*cb)(void *ctx, uint32_t uid, const char *uidl), void *ctx,
		       struct error *err);

/* What a mailbox is now, read without changing anything (for --dry-run):
 * no index opened, no lock taken. INVALID for a bad name. */
struct store_import_peek {
	int user_exists;
	int exists;
	uint32_t uidvalidity; /* from mailroom-box (0: unreadable) */
	uint32_t uid_floor;
	uint32_t messages;    /* message files in cur/ */
	uint32_t max_uid;     /* highest U= among them */
	uint32_t *uids;	      /* their U=, ascending (malloc'ed; store_import_peek_clear) */
	size_t nuids;
};
int store_import_peek(struct store *store, const char *user, const char *name,
		      struct store_import_peek *peek_r, struct error *err);
/* 1 if peek saw a file with U=uid in cur/. */
int store_import_peek_has(const struct store_import_peek *peek, uint32_t uid);
void store_import_peek_clear(struct store_import_peek *peek);
/* The device of DATA/mail (a source on another one is copied) and its
 * owner (root: not handed to the server's user yet): 0, -1 errno. */
int store_import_dev(struct store *store, dev_t *dev_r, uid_t *uid_r);

/* ---- consistency check and repair (`mailroom check`) ---------------------- */

/* Compare the user's index with the files; report each difference through
 * say(). Crash residue (a delivery interrupted between its link and its
 * last commit, leftovers of interrupted mailbox operations) is resolved in
 * either mode, as every open of the mailbox does, and said in lines that
 * begin "recovered: "; it is not counted. Everything else is damage: without
 * repair it is only reported (a damaged index.sqlite or mailroom-box is not
 * moved aside), with repair it is fixed (a missing or damaged index moved
 * aside and rebuilt from the files, a lost mailroom-box rebuilt, see
 * store_index.c and store_box.c) and reported as it is fixed.
 * *problems_r counts the damage found. */
int store_check_user(struct store *store, const char *user, int repair,
		     void (*say)(void *ctx, const char *line), void *ctx, unsigned *problems_r,
		     struct error *err);

/* Leftover staging files in DATA/spool/tmp (older than 36 hours and held by
 * no process): crash residue, removed with or without repair ("recovered: "
 * lines). *problems_r counts those that could not be removed. */
int store_check_spool(struct store *store, int repair, void (*say)(void *ctx, const char *line),
		      void *ctx, unsigned *problems_r, struct error *err);

#endif
