/*
 * imap_int.h: what the files of src/imap share: the session, the view of
 * the selected mailbox, and each file's exports, in reading order.
 *
 * A command handler is `int handler(struct imap_session *s, const struct
 * imap_command *cmd)`, static in its family's file (imap_cmd_*.c), which
 * exports the family's table rows. The dispatcher (imap_session.c) has
 * already checked the state the command needs (the row's states), so
 * handlers don't re-check. A handler writes its untagged responses and its
 * tagged reply with imap_send*() and returns 0; or it hands off to the
 * session core (session_async for disk work, session_pump for a long
 * response, session_login) and the tagged reply comes from the completion,
 * with cmd == NULL (the tag is kept in s->cmd_tag).
 *
 * Files, from the bottom: imap_send.c (responses), imap_capability.c,
 * imap_arg.c (shared argument forms), imap_view.c (the selected mailbox),
 * the command families, imap_session.c (the protocol on the session core).
 * Calls only go that way: no file calls one above it.
 */
#ifndef MAILROOM_IMAP_INT_H
#define MAILROOM_IMAP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/sasl.h"
#include "imap/imap.h"
#include "imap/imap_parser.h"
#include "session/session.h"
#include "store/store.h"

enum imap_state { IMAP_NOT_AUTH, IMAP_AUTH, IMAP_SELECTED, IMAP_LOGOUT };

/* Consecutive invalid commands (BAD) a session may send before it gets
 * BYE: the next one closes. RFC 3501 and RFC 9051 set no limit; Dovecot
 * allows 20 in a row (CLIENT_MAX_BAD_COMMANDS) and so do we. A command
 * answered OK or NO starts the count again (imap_send_good): clients and
 * test tools that probe with odd but valid commands get BADs now and then
 * over a long session, and must not be cut off for their sum. */
#define IMAP_MAX_BAD_COMMANDS 20

/* The selected mailbox as this session has told its client about it:
 * message sequence number i+1 is uids[i]. Changes by others are folded in
 * by imap_view_sync() at the points RFC 9051 allows (7.5.1). */
/* In imap_view.flags and in the flags given to imap_send_flags, beside the
 * STORE_F_* bits: \Recent (RFC 3501 2.3.2), which this session holds for
 * the message. Never a store flag: clients cannot set it. */
#define IMAP_FLAG_RECENT 0x80000000u

struct imap_view {
	struct store_mailbox *mbox;
	bool readonly;
	uint32_t uidvalidity;
	uint32_t *uids;
	uint32_t *flags; /* STORE_F_*, and IMAP_FLAG_RECENT */
	uint32_t *keywords;
	uint64_t *modseqs;
	size_t n;
	size_t cap;
	uint64_t seen_modseq;	 /* every change up to this is reflected */
	uint64_t expunge_modseq; /* every expunge up to this is reflected */
	unsigned nkeywords_announced; /* keywords listed in the last FLAGS */
	/* The UIDs [recent_lo, recent_hi) are recent in this session (the
	 * last claim, store_mailbox_recent): messages that enter the view in
	 * that range get IMAP_FLAG_RECENT. */
	uint32_t recent_lo, recent_hi;
};

struct imap_session {
	struct session base; /* the core's part: conn, env, id, busy, closing */
	struct imap_parser *parser;
	enum imap_state state;
	char *user;
	struct store_user *suser;
	struct imap_view *view;
	bool rev2;	/* ENABLE IMAP4rev2 */
	bool utf8;	/* ENABLE UTF8=ACCEPT (or IMAP4rev2) */
	bool condstore; /* CONDSTORE enabled (ENABLE, or a command used it) */
	bool qresync;
	bool uidonly;	/* ENABLE UIDONLY (RFC 9586) */
	bool limit_hit; /* this command did only imap_message_limit messages */
	/* AUTHENTICATE in progress */
	bool authenticating;
	struct sasl sasl;
	char *cmd_tag; /* tag of the command in progress (async or multi-line) */
	/* IDLE */
	bool idling;
	bool idle_again; /* a change came while a sync ran */
	unsigned watch_id; /* store_notify registration while idling */
	/* NOTIFY (imap_cmd_notify.c): NULL when off; and what MessageNew
	 * fetches for the selected mailbox (IMAP_NOTIFY_FETCH_*, imap_view.c) */
	struct imap_notify *notify;
	unsigned notify_fetch;
	/* APPEND streaming (imap_cmd_append.c) */
	struct imap_append *append;
	/* SEARCHRES (RFC 5182): the saved result, as UIDs */
	uint32_t *saved;
	size_t nsaved;
	bool saved_valid;
	/* LIST RETURN (METADATA (entries)) in progress (imap_cmd_list.c) */
	const struct imap_arg *list_metadata;
};

#define IMAP_NOTIFY_FETCH_UID    1
#define IMAP_NOTIFY_FETCH_FLAGS  2
#define IMAP_NOTIFY_FETCH_MODSEQ 4

/* The IMAP session of a core session (struct session is its first member). */
static inline struct imap_session *imap_session_of(struct session *base)
{
	return (struct imap_session *)(void *)base;
}

/* A command table row. states: where it runs (IMAP_IN_*); flags: */
#define IMAP_CMD_UID	    0x01 /* has a UID form */
#define IMAP_CMD_NO_EXPUNGE 0x02 /* non-UID form: no EXPUNGE responses (RFC 9051 7.5.1) */
#define IMAP_IN_NOT_AUTH (1u << IMAP_NOT_AUTH)
#define IMAP_IN_SELECTED (1u << IMAP_SELECTED)
#define IMAP_IN_AUTH	 ((1u << IMAP_AUTH) | IMAP_IN_SELECTED) /* logged in */
#define IMAP_IN_ANY	 (IMAP_IN_NOT_AUTH | IMAP_IN_AUTH)
struct imap_cmd_def {
	struct session_cmd base; /* name, states */
	int (*handler)(struct imap_session *s, const struct imap_command *cmd);
	unsigned flags;
};
struct imap_cmd_family {
	const struct imap_cmd_def *rows;
	size_t n;
};

/* ---- responses (imap_send.c) ---- */
void imap_send(struct imap_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void imap_send_raw(struct imap_session *s, const void *data, size_t len);
/* Tagged reply: status is "OK", "NO" or "BAD"; text may start with a
 * response code "[...]". cmd NULL: the command in progress (s->cmd_tag).
 * After too many BADs the session says BYE and closes. */
void imap_send_tagged(struct imap_session *s, const struct imap_command *cmd, const char *status,
		      const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* A tagged OK or NO was written without imap_send_tagged: the run of
 * BADs (IMAP_MAX_BAD_COMMANDS) is over. imap_send_tagged calls it itself. */
void imap_send_good(struct imap_session *s);
/* Tagged NO for a store error: [SERVERBUG]/[UNAVAILABLE] for temporary ones,
 * [OVERQUOTA], [NONEXISTENT], [ALREADYEXISTS], [LIMIT], [CANNOT]. */
void imap_send_store_error(struct imap_session *s, const struct imap_command *cmd,
			   const struct error *err);
/* The start of a FETCH response: "* seq FETCH (", or after ENABLE
 * UIDONLY "* uid UIDFETCH (" (RFC 9586 3.3), whose number is the UID and
 * which then carries no UID item of its own. */
void imap_send_fetch_open(struct imap_session *s, uint32_t seq, uint32_t uid);
/* Write s as an IMAP string: quoted when it can be, else a literal. */
void imap_send_string(struct imap_session *s, const char *str, size_t len);
/* A mailbox name as the client expects it (mUTF-7 unless UTF-8 enabled). */
void imap_send_mailbox(struct imap_session *s, const char *name);
/* The flag list "(\Seen $Forwarded kw)" of a message; flags may hold
 * IMAP_FLAG_RECENT (see imap_view_recent). */
void imap_send_flags(struct imap_session *s, uint32_t flags, uint32_t keywords);

/* ---- capabilities (imap_capability.c) ---- */
/* Write "CAPABILITY IMAP4rev1 ..." as for the current state (no "* ", no
 * CRLF: for the untagged response and the response code alike). */
void imap_capability_send(struct imap_session *s);
/* May passwords travel on this connection (TLS, loopback, or configured)? */
bool imap_capability_plaintext_ok(struct imap_session *s);

/* ---- arguments (imap_arg.c) ---- */
/* Decode a mailbox argument (astring, mUTF-7 unless UTF-8 enabled) into a
 * malloc'ed UTF-8 name, or NULL after sending a tagged BAD/NO. */
char *imap_arg_mailbox(struct imap_session *s, const struct imap_command *cmd,
		       const struct imap_arg *arg);
/* A system flag's bit (\Seen and the others, $Forwarded), or false. */
bool imap_arg_system_flag(const char *name, uint32_t *bit_r);
/* Flag list or single flag -> bits; keywords are looked up (created when
 * create) in the selected mailbox. -1 after a tagged BAD/NO. */
int imap_arg_flags(struct imap_session *s, const struct imap_command *cmd,
		   const struct imap_arg *arg, struct store_mailbox *mbox, bool create,
		   uint32_t *flags_r, uint32_t *keywords_r);
/* A sequence set (or UID set when uid) against the view; resolves "$".
 * Returns a malloc'ed ascending array of UIDs that exist, or -1 after a BAD. */
int imap_arg_uidset(struct imap_session *s, const struct imap_command *cmd,
		    const struct imap_arg *arg, bool uid, uint32_t **uids_r, size_t *n_r);
/* The same for a sequence set that is a SEARCH key: numbers beyond the
 * mailbox name no message instead of being BAD. RFC 9051 6.4.4 lets a
 * server answer either way; Dovecot and Cyrus answer OK with no match for
 * SEARCH 1000 and so do we (a client's idea of the mailbox may be stale). */
int imap_arg_uidset_search(struct imap_session *s, const struct imap_command *cmd,
			   const struct imap_arg *arg, uint32_t **uids_r, size_t *n_r);
/* PARTIAL (RFC 9394): a range of positions in a result, 1:100 from the
 * first or -1:-100 from the last; text is the range as the client wrote
 * it, for the response. imap_arg_partial: -1 if arg is no partial-range.
 * imap_partial_slice: the results [first, first + count) of n. */
struct imap_partial {
	bool last;
	uint32_t lo, hi;
	char text[24];
};
int imap_arg_partial(const struct imap_arg *arg, struct imap_partial *p);
void imap_partial_slice(const struct imap_partial *p, size_t n, size_t *first_r, size_t *count_r);
/* MESSAGELIMIT (RFC 9738): a set of n messages (ascending UIDs) against
 * imap_message_limit. Within it, or no limit: 0. Over it: a UID command
 * keeps the n lowest UIDs (*n = limit) and its tagged OK will carry
 * [LIMIT] (s->limit_hit), so the client goes on from the last UID it got;
 * a command with sequence numbers does nothing: -1 after NO [LIMIT]. */
int imap_arg_limit(struct imap_session *s, const struct imap_command *cmd, size_t *n);

/* ---- the view (imap_view.c) ---- */
int imap_view_open(struct imap_session *s, const char *name, bool readonly, struct error *err);
void imap_view_close(struct imap_session *s);
/* Fold in changes made elsewhere, sending EXISTS / EXPUNGE (or VANISHED) /
 * FETCH FLAGS. allow_expunge false during FETCH, STORE and SEARCH. */
int imap_view_sync(struct imap_session *s, bool allow_expunge);
/* imap_view_sync in two halves, for IDLE: _read asks the store what
 * changed (it neither changes the view nor writes, so it may run on a job
 * thread while the session waits); _apply folds that into the view and
 * tells the client, on the loop. -1 from _read: err set; from _apply: the
 * session is closing (UIDVALIDITY changed) or out of memory. */
struct imap_view_changes {
	uint32_t uidvalidity;
	uint64_t highestmodseq;
	bool with_expunges;
	bool oom;
	uint32_t *expunged; /* UIDs */
	size_t nexpunged, cap_expunged;
	struct store_msg *changed; /* fname NULL */
	size_t nchanged, cap_changed;
	bool recent_read; /* recent_lo/hi were read (claimed if read-write) */
	uint32_t recent_lo, recent_hi;
};
int imap_view_changes_read(const struct imap_view *v, bool with_expunges,
			   struct imap_view_changes *c, struct error *err);
int imap_view_changes_apply(struct imap_session *s, const struct imap_view_changes *c);
void imap_view_changes_free(struct imap_view_changes *c);
/* IMAP_FLAG_RECENT if uid is recent in this session and the session shows
 * \Recent (not after ENABLE IMAP4rev2: RFC 9051 removed it), else 0: to
 * OR into the flags given to imap_send_flags. */
uint32_t imap_view_recent(const struct imap_session *s, uint32_t uid);
/* The number of messages recent in this session (the RECENT response). */
size_t imap_view_recent_count(const struct imap_view *v);
/* Sequence number (1-based) of uid, or 0. */
uint32_t imap_view_seq(const struct imap_view *v, uint32_t uid);
/* After this session changed a message itself (STORE), so that the sync
 * does not report it back. */
void imap_view_update(struct imap_view *v, uint32_t uid, uint32_t flags, uint32_t keywords,
		      uint64_t modseq);
/* A CONDSTORE-enabling command (RFC 7162 3.1: ENABLE, FETCH MODSEQ or
 * CHANGEDSINCE, SEARCH MODSEQ, STORE UNCHANGEDSINCE, STATUS HIGHESTMODSEQ)
 * ran: enable it, and the first time with a mailbox selected send
 * "* OK [HIGHESTMODSEQ n]". */
void imap_view_enable_condstore(struct imap_session *s);
/* "* FLAGS" and "* OK [PERMANENTFLAGS]" for the selected mailbox. */
void imap_view_send_flags(struct imap_session *s);

/* ---- command families (imap_cmd_*.c), in the order they are searched ---- */
extern const struct imap_cmd_family imap_cmd_any;     /* CAPABILITY NOOP CHECK LOGOUT ID ENABLE */
extern const struct imap_cmd_family imap_cmd_auth;    /* STARTTLS LOGIN AUTHENTICATE */
extern const struct imap_cmd_family imap_cmd_mailbox; /* SELECT EXAMINE CREATE DELETE RENAME ... */
extern const struct imap_cmd_family imap_cmd_status;  /* STATUS */
extern const struct imap_cmd_family imap_cmd_list;    /* LIST LSUB */
extern const struct imap_cmd_family imap_cmd_append;  /* APPEND REPLACE */
extern const struct imap_cmd_family imap_cmd_idle;    /* IDLE */
extern const struct imap_cmd_family imap_cmd_msg;     /* CLOSE UNSELECT EXPUNGE COPY MOVE */
extern const struct imap_cmd_family imap_cmd_fetch;   /* FETCH */
extern const struct imap_cmd_family imap_cmd_store;   /* STORE */
extern const struct imap_cmd_family imap_cmd_search;  /* SEARCH */
extern const struct imap_cmd_family imap_cmd_unauth;  /* UNAUTHENTICATE */
extern const struct imap_cmd_family imap_cmd_metadata; /* GETMETADATA SETMETADATA */
extern const struct imap_cmd_family imap_cmd_notify;  /* NOTIFY */
extern const struct imap_cmd_family imap_cmd_quota;   /* GETQUOTA GETQUOTAROOT SETQUOTA */
extern const struct imap_cmd_family imap_cmd_compress; /* COMPRESS */
extern const struct imap_cmd_family imap_cmd_sort;    /* SORT THREAD */

/* Parse and run a search program (imap_cmd_search.c) for SORT and THREAD:
 * 0 and the matching UIDs ascending (malloc'ed), or -1 after a tagged reply. */
int imap_search_uids(struct imap_session *s, const struct imap_command *cmd,
		     const struct imap_arg *args, size_t argc, uint32_t **uids_r, size_t *n_r);

/* AUTHENTICATE input: a continuation line (imap_cmd_auth.c). */
void imap_cmd_auth_line(struct imap_session *s, const char *line, size_t len);
/* IDLE input: a line while idling (imap_cmd_idle.c); and stop watching the
 * mailbox (a session that goes away while idling). */
void imap_cmd_idle_line(struct imap_session *s, const char *line, size_t len);
void imap_cmd_idle_unwatch(struct imap_session *s);
/* NOTIFY (imap_cmd_notify.c): send what changed while a command ran (call
 * when a command has ended); and turn NOTIFY off (NOTIFY NONE, logout). */
void imap_cmd_notify_flush(struct imap_session *s);
void imap_cmd_notify_free(struct imap_session *s);
/* STATUS items list -> bits, and one "* STATUS" line (imap_cmd_status.c,
 * also for LIST-STATUS). The line: -1 with err if the mailbox can't be read. */
enum { IMAP_STATUS_MESSAGES = 1, IMAP_STATUS_UIDNEXT = 2, IMAP_STATUS_UIDVALIDITY = 4, IMAP_STATUS_UNSEEN = 8, IMAP_STATUS_DELETED = 16,
       IMAP_STATUS_SIZE = 32, IMAP_STATUS_HIGHESTMODSEQ = 64, IMAP_STATUS_RECENT = 128,
       IMAP_STATUS_MAILBOXID = 256 };
int imap_cmd_status_items(const struct imap_arg *list, unsigned *items_r);
int imap_cmd_status_send(struct imap_session *s, const char *name, unsigned items,
			 struct error *err);
/* The MAILBOXID (RFC 8474 4) of an open mailbox, or NULL if its GUID is not
 * a valid objectid (a hand-edited mailroom-box): valid while m is open. */
const char *imap_cmd_status_mailboxid(const struct store_mailbox *m);
/* LIST RETURN (METADATA (entries)) (RFC 9590, imap_cmd_metadata.c): are
 * the entries valid names (0, else -1), and the "* METADATA" line of one
 * mailbox (nothing when it has none of them or cannot be read). */
int imap_cmd_metadata_list_check(const struct imap_arg *entries);
void imap_cmd_metadata_list_send(struct imap_session *s, const char *name,
				 const struct imap_arg *entries);
/* APPEND literal streaming (imap_cmd_append.c), called by the parser. */
enum imap_literal_action imap_cmd_append_literal_start(struct imap_session *s, const char *name,
						       size_t argc, uint64_t size, bool is_sync,
						       bool is_literal8);
int imap_cmd_append_literal_data(struct imap_session *s, const void *data, size_t len);
void imap_cmd_append_abort(struct imap_session *s);

#endif
