/*
 * pop3_int.h: what the files of src/pop3 share and nothing else sees: the
 * session, the command table's shape, and the helpers handlers call.
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

struct conn;

/* RFC 1939 3: the autologout timer "MUST be of at least 10 minutes". A
 * fixed constant (no config key): ten minutes of silence end a session,
 * without entering the UPDATE state. */
#define POP3_AUTOLOGOUT_SECONDS 600
/* Protocol errors (bad lines, unknown commands, commands in the wrong
 * state, bad arguments) a session may make before it is closed. */
#define POP3_MAX_ERRORS 20

/* RFC 1939 3: the states of a session. */
enum pop3_state { POP3_AUTHORIZATION, POP3_TRANSACTION, POP3_UPDATE };

/* One message of the maildrop, as fixed at login (RFC 1939 5: message
 * numbers do not change during a session). */
struct pop3_msg {
	uint32_t uid;
	bool deleted; /* DELE'd in this session */
	uint64_t size; /* octets as sent (bare LF counted as CRLF), unstuffed */
};

/* A multi-line response being written (pop3_session.c). */
enum pop3_out_kind { POP3_OUT_NONE, POP3_OUT_LIST, POP3_OUT_UIDL, POP3_OUT_MESSAGE };

struct pop3_session {
	struct pop3_session *prev, *next;
	struct session_env *env;
	struct conn *conn; /* NULL once the client is gone */
	struct pop3_parser parser;
	enum pop3_state state;
	char id[16];
	unsigned errors;

	/* A command waits for the auth process or runs on the job pool: input
	 * is paused and the session is not freed until it completes. */
	bool busy;
	bool closing; /* close once the current command or transfer ends */

	/* AUTHORIZATION */
	char *user_arg;	     /* USER's argument, until PASS */
	bool authenticating; /* AUTH: the next line is a SASL response */
	struct sasl sasl;
	unsigned auth_id;

	/* TRANSACTION: the maildrop */
	char *user; /* canonical user name */
	struct store_user *suser;
	struct store_mailbox *mbox;
	int lock_fd; /* store_pop3lock */
	uint32_t uidvalidity;
	struct pop3_msg *msgs;
	size_t nmsgs;

	/* The multi-line response being written, with backpressure. */
	struct {
		enum pop3_out_kind kind;
		size_t next; /* LIST/UIDL: next message index */
		int fd;	     /* MESSAGE: the file */
		uint64_t offset;
		struct pop3_stream stream;
	} out;

	/* For the logout log line. */
	unsigned n_retr, n_top, n_dele;
	uint64_t retr_bytes;
};

/* A row of the command table (pop3_cmd.c): the dispatcher runs handler only
 * in the states flags allow. args is the text after the keyword (NULL if
 * none), modifiable, valid during the call. */
#define POP3_CMD_AUTHORIZATION 0x1u
#define POP3_CMD_TRANSACTION 0x2u

struct pop3_cmd_def {
	const char *name;
	void (*handler)(struct pop3_session *s, char *args);
	unsigned flags;
};

/* pop3_cmd.c */
/* The table row for an upper-case keyword, or NULL. */
const struct pop3_cmd_def *pop3_cmd_find(const char *name);
/* One SASL response line while authenticating. */
void pop3_cmd_auth_line(struct pop3_session *s, const char *line, size_t len);

/* pop3_session.c: responses */
/* Send one response line; CRLF is added. */
void pop3_send(struct pop3_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "-ERR text" for a protocol error: counted, and the session closes after
 * POP3_MAX_ERRORS of them. */
void pop3_error(struct pop3_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "-ERR [SYS/TEMP] ..." or "[SYS/PERM]" for a store failure (logged). */
void pop3_store_error(struct pop3_session *s, const char *what, const struct store_error *err);
/* May passwords travel on this connection (TLS, loopback, or configured)? */
bool pop3_plaintext_ok(const struct pop3_session *s);

/* pop3_session.c: the rest of a command */
/* Check user and password with the auth process, then open the maildrop;
 * answers the command itself. */
void pop3_session_login(struct pop3_session *s, const char *user, const char *pass);
/* Run work(arg) on the job pool, then done(s, arg) on the loop; the command
 * is finished after done (input resumes). 0, or -1 if it could not be
 * queued (nothing was run). */
int pop3_session_async(struct pop3_session *s, void (*work)(void *arg),
		       void (*done)(struct pop3_session *s, void *arg), void *arg);
/* Start a multi-line response: LIST or UIDL of every message, or RETR/TOP
 * of message index i from fd (taken; closed when done). The first line
 * ("+OK ...") must have been sent. */
void pop3_session_list(struct pop3_session *s, enum pop3_out_kind kind);
void pop3_session_message(struct pop3_session *s, int fd, bool top, uint64_t body_lines);
/* STLS: switch to TLS after the +OK (drops pipelined plaintext). */
void pop3_session_starttls(struct pop3_session *s);
/* QUIT in TRANSACTION: the UPDATE state (expunge what was DELE'd), answer
 * and close. */
void pop3_session_update(struct pop3_session *s);
/* Format the UIDL of a message (RFC 1939 7) into out (17 bytes). */
void pop3_uidl(const struct pop3_session *s, const struct pop3_msg *m, char out[17]);

#endif
