/*
 * imap_int.h: what the files of src/imap share: the session, the view of
 * the selected mailbox, the response writer, and the command table entry.
 *
 * A command handler is `int handler(struct imap_session *s, const struct
 * imap_command *cmd)`. It writes its untagged responses and its tagged
 * reply with the helpers below, and returns 0; or it starts work off the
 * event loop (imap_session_async) and the tagged reply comes from the
 * completion. The dispatcher has already checked the state the command
 * needs (the table's flags), so handlers don't re-check.
 */
#ifndef MAILROOM_IMAP_INT_H
#define MAILROOM_IMAP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/sasl.h"
#include "imap/imap.h"
#include "imap/imap_parser.h"
#include "store/store.h"

struct conn;
struct event;

enum imap_state { IMAP_NOT_AUTH, IMAP_AUTH, IMAP_SELECTED, IMAP_LOGOUT };

/* The selected mailbox as this session has told its client about it:
 * message sequence number i+1 is uids[i]. Changes by others are folded in
 * by imap_view_sync() at the points RFC 9051 allows (7.5.1). */
struct imap_view {
	struct store_mailbox *mbox;
	bool readonly;
	uint32_t uidvalidity;
	uint32_t *uids;
	uint32_t *flags;
	uint32_t *keywords;
	uint64_t *modseqs;
	size_t n;
	size_t cap;
	uint64_t seen_modseq;	 /* every change up to this is reflected */
	uint64_t expunge_modseq; /* every expunge up to this is reflected */
	unsigned nkeywords_announced; /* keywords listed in the last FLAGS */
};

struct imap_session {
	struct session_env *env;
	struct conn *conn;
	struct imap_parser *parser;
	enum imap_state state;
	char id[12]; /* for logs */
	char *user;
	struct store_user *suser;
	struct imap_view *view;
	bool rev2;	/* ENABLE IMAP4rev2 */
	bool utf8;	/* ENABLE UTF8=ACCEPT (or IMAP4rev2) */
	bool condstore; /* CONDSTORE enabled (ENABLE, or a command used it) */
	bool qresync;
	bool busy;	/* a command runs off the loop, or waits for auth */
	bool closing;
	unsigned auth_id; /* pending auth request */
	unsigned bad_count;
	/* AUTHENTICATE in progress */
	bool authenticating;
	struct sasl sasl;
	char *cmd_tag; /* tag of the command in progress (async or multi-line) */
	/* IDLE */
	bool idling;
	struct event *idle_timer;
	unsigned watch_id; /* store_notify registration while idling */
	/* APPEND streaming (imap_append.c) */
	struct imap_append *append;
	/* SEARCHRES (RFC 5182): the saved result, as UIDs */
	uint32_t *saved;
	size_t nsaved;
	bool saved_valid;
	struct imap_session *next, *prev;
};

/* One row of the command table (imap_session.c). */
#define IMAP_CMD_NOT_AUTH 0x01 /* allowed before login */
#define IMAP_CMD_AUTH	  0x02 /* allowed when logged in */
#define IMAP_CMD_SELECTED 0x04 /* allowed (only) with a mailbox selected */
#define IMAP_CMD_UID	  0x08 /* has a UID form */
#define IMAP_CMD_NO_EXPUNGE 0x10 /* non-UID form: no EXPUNGE responses (RFC 9051 7.5.1) */
struct imap_cmd_def {
	const char *name;
	int (*handler)(struct imap_session *s, const struct imap_command *cmd);
	unsigned flags;
};

/* ---- responses (imap_session.c) ---- */
void imap_send(struct imap_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void imap_send_raw(struct imap_session *s, const void *data, size_t len);
/* Tagged reply: status is "OK", "NO" or "BAD"; text may start with a
 * response code "[...]". */
void imap_tagged(struct imap_session *s, const struct imap_command *cmd, const char *status,
		 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Tagged NO for a store error: [SERVERBUG]/[UNAVAILABLE] for temporary ones,
 * [OVERQUOTA], [NONEXISTENT], [ALREADYEXISTS], [LIMIT], [CANNOT]. */
void imap_tagged_store_error(struct imap_session *s, const struct imap_command *cmd,
			     const struct store_error *err);
/* Write s as an IMAP string: quoted when it can be, else a literal. */
void imap_send_string(struct imap_session *s, const char *str, size_t len);
/* A mailbox name as the client expects it (mUTF-7 unless UTF-8 enabled). */
void imap_send_mailbox(struct imap_session *s, const char *name);
/* "CAPABILITY IMAP4rev1 ..." as for the current state (for a response code). */
void imap_send_capability_code(struct imap_session *s);
/* The flag list "(\Seen $Forwarded kw)" of a message. */
void imap_send_flags(struct imap_session *s, uint32_t flags, uint32_t keywords);

/* ---- async work (imap_session.c) ---- */
/* Run work(arg) off the loop; then done(s, arg) on it. Input is paused
 * meanwhile. */
int imap_session_async(struct imap_session *s, void (*work)(void *arg),
		       void (*done)(struct imap_session *s, void *arg), void *arg);
/* The handler finished a command whose reply came later (async/auth). */
void imap_session_command_done(struct imap_session *s);

/* ---- arguments ---- */
/* Decode a mailbox argument (astring, mUTF-7 unless UTF-8 enabled) into a
 * malloc'ed UTF-8 name, or NULL after sending a tagged BAD/NO. */
char *imap_arg_mailbox(struct imap_session *s, const struct imap_command *cmd,
		       const struct imap_arg *arg);
/* Flag list or single flag -> bits; keywords are looked up (created when
 * create) in the selected mailbox. -1 after a tagged BAD/NO. */
int imap_arg_flags(struct imap_session *s, const struct imap_command *cmd,
		   const struct imap_arg *arg, struct store_mailbox *mbox, bool create,
		   uint32_t *flags_r, uint32_t *keywords_r);
/* A sequence set (or UID set when uid) against the view; resolves "$".
 * Returns a malloc'ed ascending array of UIDs that exist, or -1 after a BAD. */
int imap_arg_uidset(struct imap_session *s, const struct imap_command *cmd,
		    const struct imap_arg *arg, bool uid, uint32_t **uids_r, size_t *n_r);

/* ---- the view (imap_view.c) ---- */
int imap_view_open(struct imap_session *s, const char *name, bool readonly,
		   struct store_error *err);
void imap_view_close(struct imap_session *s);
/* Fold in changes made elsewhere, sending EXISTS / EXPUNGE (or VANISHED) /
 * FETCH FLAGS. allow_expunge false during FETCH, STORE and SEARCH. */
int imap_view_sync(struct imap_session *s, bool allow_expunge);
/* Sequence number (1-based) of uid, or 0. */
uint32_t imap_view_seq(const struct imap_view *v, uint32_t uid);
/* After this session changed a message itself (STORE), so that the sync
 * does not report it back. */
void imap_view_update(struct imap_view *v, uint32_t uid, uint32_t flags, uint32_t keywords,
		      uint64_t modseq);
/* IDLE: start/stop watching the selected mailbox for changes; a change
 * calls imap_idle_wakeup(session). */
int imap_view_watch(struct imap_session *s);
void imap_view_unwatch(struct imap_session *s);
void imap_idle_wakeup(void *session);
/* "* FLAGS" and "* OK [PERMANENTFLAGS]" for the selected mailbox. */
void imap_view_send_flags(struct imap_session *s);

/* ---- command handlers (one file per family) ---- */
int imap_cmd_capability(struct imap_session *s, const struct imap_command *cmd);
int imap_cmd_noop(struct imap_session *s, const struct imap_command *cmd);
int imap_cmd_logout(struct imap_session *s, const struct imap_command *cmd);
int imap_cmd_starttls(struct imap_session *s, const struct imap_command *cmd);
int imap_cmd_login(struct imap_session *s, const struct imap_command *cmd);
int imap_cmd_authenticate(struct imap_session *s, const struct imap_command *cmd);
int imap_cmd_enable(struct imap_session *s, const struct imap_command *cmd);
int imap_cmd_id(struct imap_session *s, const struct imap_command *cmd);
int imap_cmd_select(struct imap_session *s, const struct imap_command *cmd);
int imap_cmd_create(struct imap_session *s, const struct imap_command *cmd);
int imap_cmd_delete(struct imap_session *s, const struct imap_command *cmd);
int imap_cmd_rename(struct imap_session *s, const struct imap_command *cmd);
int imap_cmd_subscribe(struct imap_session *s, const struct imap_command *cmd);
int imap_cmd_list(struct imap_session *s, const struct imap_command *cmd);
int imap_cmd_namespace(struct imap_session *s, const struct imap_command *cmd);
int imap_cmd_status(struct imap_session *s, const struct imap_command *cmd);
int imap_cmd_append(struct imap_session *s, const struct imap_command *cmd);
int imap_cmd_idle(struct imap_session *s, const struct imap_command *cmd);
int imap_cmd_check(struct imap_session *s, const struct imap_command *cmd);
int imap_cmd_close(struct imap_session *s, const struct imap_command *cmd);
int imap_cmd_expunge(struct imap_session *s, const struct imap_command *cmd);
int imap_cmd_copy(struct imap_session *s, const struct imap_command *cmd);
int imap_cmd_fetch(struct imap_session *s, const struct imap_command *cmd);
int imap_cmd_store(struct imap_session *s, const struct imap_command *cmd);
int imap_cmd_search(struct imap_session *s, const struct imap_command *cmd);

/* IDLE input (imap_idle in imap_cmd_mailbox.c): a line while idling. */
void imap_idle_line(struct imap_session *s, const char *line, size_t len);
/* AUTHENTICATE input: a continuation line. */
void imap_auth_line(struct imap_session *s, const char *line, size_t len);
/* APPEND literal streaming (imap_append.c), called by the parser. */
enum imap_literal_action imap_append_literal_start(struct imap_session *s, const char *name,
						   size_t argc, uint64_t size, bool is_sync,
						   bool is_literal8);
int imap_append_literal_data(struct imap_session *s, const void *data, size_t len);
void imap_append_abort(struct imap_session *s);

#endif
