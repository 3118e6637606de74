/*
 * pop3_int.h: what the files of src/pop3 share and nothing else sees: the
 * session, the command table's shape, and what each file exports.
 *
 * The files, from the top down; each calls only files below it:
 *
 *   pop3_session.c   the protocol as the session core sees it (pop3_proto):
 *                    greeting, input, dispatch, timeout, shutdown, logs
 *   pop3_cmd.c       the command table: one row and one handler a command
 *   pop3_maildrop.c  login (auth process, then the snapshot job), UPDATE
 *   pop3_transfer.c  multi-line responses (LIST, UIDL, RETR, TOP) as pump
 *                    steps
 *   pop3_resp.c      response lines, protocol error counting, UIDL format
 *   pop3_parser.c, pop3_stream.c: no I/O, their own headers
 */
#ifndef MAILROOM_POP3_INT_H
#define MAILROOM_POP3_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/sasl.h"
#include "session/session.h"
#include "pop3/pop3.h"
#include "pop3/pop3_parser.h"
#include "pop3/pop3_stream.h"
#include "store/store.h"

/* RFC 1939 3: the autologout timer "MUST be of at least 10 minutes". A
 * fixed constant (no config key): ten minutes of silence end a session,
 * without entering the UPDATE state. */
#define POP3_AUTOLOGOUT_SECONDS 600
/* Protocol errors (bad lines, unknown commands, commands in the wrong
 * state, bad arguments) a session may make: the last of them is answered,
 * then the session is closed. */
#define POP3_MAX_ERRORS 20

/* RFC 1939 3: the states of a session. */
enum pop3_state { POP3_AUTHORIZATION, POP3_TRANSACTION, POP3_UPDATE };

/* One message of the maildrop, as fixed at login (RFC 1939 5: message
 * numbers do not change during a session). */
struct pop3_msg {
	uint32_t uid;
	bool deleted;  /* DELE'd in this session */
	uint64_t size; /* octets as sent (bare LF counted as CRLF), unstuffed */
	char *uidl;    /* kept from the old server by `mailroom import`, or NULL */
};

struct pop3_session {
	struct session base; /* first: the core's part (conn, id, busy, ...) */
	struct pop3_parser parser;
	enum pop3_state state;

	/* AUTHORIZATION */
	char *user_arg;	     /* USER's argument, until PASS */
	bool authenticating; /* AUTH: the next line is a SASL response */
	struct sasl sasl;

	/* TRANSACTION: the maildrop (pop3_maildrop.c) */
	char *user; /* canonical user name */
	struct store_user *suser;
	struct store_mailbox *mbox;
	int lock_fd; /* store_pop3lock */
	uint32_t uidvalidity;
	struct pop3_msg *msgs;
	size_t nmsgs;

	/* The multi-line response being pumped (pop3_transfer.c). */
	struct {
		bool uidl;   /* LIST or UIDL */
		size_t next; /* LIST/UIDL: next message index */
		int fd;	     /* RETR/TOP: the file; -1 when none is open */
		uint64_t offset;
		struct pop3_stream stream;
	} out;

	/* For the logout log line. */
	unsigned n_retr, n_top, n_dele;
	uint64_t retr_bytes;
};

/* ---- pop3_cmd.c -------------------------------------------------------- */

/* A row of the command table. cmd.states holds (1u << state) for each
 * enum pop3_state the command runs in; the dispatcher (session_cmd_find)
 * enforces it. args is the text after the keyword (NULL if none),
 * modifiable, valid during the call. */
struct pop3_cmd {
	struct session_cmd cmd;
	void (*handler)(struct pop3_session *s, char *args);
};
extern const struct pop3_cmd pop3_cmd_table[];
extern const size_t pop3_cmd_count;
/* One SASL response line while s->authenticating. */
void pop3_cmd_auth_line(struct pop3_session *s, const char *line, size_t len);

/* ---- pop3_maildrop.c --------------------------------------------------- */

/* Check user and password with the auth process, then open the maildrop;
 * answers the command itself (the session waits meanwhile). */
void pop3_maildrop_login(struct pop3_session *s, const char *user, const char *pass);
/* QUIT in TRANSACTION: the UPDATE state (expunge what was DELE'd), answer
 * and close. */
void pop3_maildrop_update(struct pop3_session *s);
/* Release the maildrop and the user (at the end of the session, or a login
 * that failed half way). Idempotent. */
void pop3_maildrop_close(struct pop3_session *s);

/* ---- pop3_transfer.c --------------------------------------------------- */

/* Start a multi-line response, after its "+OK" line: the LIST or UIDL of
 * every message not deleted, or RETR/TOP of the message file fd (taken;
 * closed when the response ends or the client leaves). */
void pop3_transfer_list(struct pop3_session *s);
void pop3_transfer_uidl(struct pop3_session *s);
void pop3_transfer_message(struct pop3_session *s, int fd, bool top, uint64_t body_lines);

/* ---- pop3_resp.c ------------------------------------------------------- */

/* Send one response line; CRLF is added. Nothing once the client left. */
void pop3_resp_send(struct pop3_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* "-ERR text" for a protocol error: counted, and the session closes after
 * answering the POP3_MAX_ERRORS-th. */
void pop3_resp_error(struct pop3_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* "-ERR [SYS/TEMP] what" or "[SYS/PERM]" for a store failure (logged). */
void pop3_resp_store_error(struct pop3_session *s, const char *what, const struct error *err);
/* Format the UIDL of a message (RFC 1939 7: at most 70 characters) into
 * out (POP3_UIDL_SIZE bytes). */
#define POP3_UIDL_SIZE 71
void pop3_resp_uidl(const struct pop3_session *s, const struct pop3_msg *m,
		    char out[POP3_UIDL_SIZE]);

#endif
