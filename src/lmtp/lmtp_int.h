/*
 * lmtp_int.h: what the files of src/lmtp share and nothing else sees: the
 * session struct and the functions each file exports to the ones above it.
 *
 * Files, each calling only the ones listed after it (no cycles):
 *   lmtp_session.c  the protocol as the session core sees it: greeting,
 *                   one unit of input (a command line, a chunk of DATA or
 *                   BDAT), timeout, shutdown
 *   lmtp_cmd.c      the command table and one handler per verb
 *   lmtp_rcpt.c     RCPT: which store user (and mailbox) an address means
 *   lmtp_txn.c      the transaction: staging the message, delivering it,
 *                   one reply per recipient
 *   lmtp_reply.c    reply lines and the error count
 */
#ifndef MAILROOM_LMTP_INT_H
#define MAILROOM_LMTP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lmtp/lmtp.h"
#include "lmtp/lmtp_parser.h"
#include "session/session.h"
#include "store/store.h"

/* Protocol errors (bad or out-of-order commands) before "421 ... Too many
 * errors" and a disconnect. */
#define LMTP_MAX_ERRORS 20

/* What the next input bytes are: command lines, dot-stuffed DATA, or the
 * rest of a BDAT chunk (bdat_left bytes, RFC 3030 2). */
enum lmtp_mode { LMTP_MODE_CMD, LMTP_MODE_DATA, LMTP_MODE_BDAT };

/* An accepted recipient, resolved at RCPT time (lmtp_rcpt.c). */
struct lmtp_rcpt {
	char addr[LMTP_MAX_ADDRESS + 1]; /* as the client sent it: for replies */
	char user[STORE_MAX_USERNAME + 1];
	char mailbox[STORE_MAX_MAILBOX_NAME + 1]; /* "" for INBOX */
};

struct lmtp_session {
	struct session base; /* first: the core's part (conn, id, busy, ...) */
	char helo[256];	     /* LHLO argument, control characters replaced */
	bool lhlo;
	bool discarding; /* an overlong command line is being skipped */
	enum lmtp_mode mode;

	/* The transaction, from MAIL to the replies after the message
	 * (lmtp_txn_reset clears it). */
	bool has_from;
	char from[LMTP_MAX_ADDRESS + 1];
	struct lmtp_rcpt *rcpts;
	size_t nrcpts;
	struct lmtp_dot dot;	   /* DATA: the dot-unstuffing decoder */
	uint64_t bdat_left;	   /* BDAT: bytes of the chunk still to read */
	bool bdat_last;		   /* BDAT: the chunk is the LAST one */
	struct store_stage *stage; /* the message so far; NULL before DATA/BDAT */
	bool too_big;		   /* past message_size_limit: the rest is dropped */
	bool stage_failed;	   /* writing the stage failed: stage_err says why */
	struct error stage_err;
};

/* lmtp_reply.c */
/* Send one reply line; CRLF is added. Nothing is sent once the client is
 * gone. */
void lmtp_reply(struct lmtp_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Send text (a whole reply line) for a protocol error: counted, and past
 * LMTP_MAX_ERRORS "421 4.7.0" follows and the session closes. */
void lmtp_reply_error(struct lmtp_session *s, const char *text);

/* lmtp_txn.c */
/* Forget the transaction (sender, recipients, staged message) and return
 * to command mode. */
void lmtp_txn_reset(struct lmtp_session *s);
/* Open the stage and write Return-Path and Received. 0, or -1 after
 * answering 451 (the transaction is unchanged). */
int lmtp_txn_start_message(struct lmtp_session *s);
/* Append message bytes; past message_size_limit or after a write error they
 * are dropped and the failure is answered at the end. */
void lmtp_txn_write(struct lmtp_session *s, const void *data, size_t len);
/* The message is complete: deliver it on the job pool and answer once per
 * recipient in RCPT order (RFC 2033 4.2), then reset the transaction. */
void lmtp_txn_deliver(struct lmtp_session *s);

/* lmtp_rcpt.c */
/* RCPT TO:<addr>: resolve the address on the job pool and answer; an
 * accepted recipient is appended to s->rcpts. */
void lmtp_rcpt_lookup(struct lmtp_session *s, const char *addr);

/* lmtp_cmd.c */
/* Parse and run one command line (without its line ending). */
void lmtp_cmd_line(struct lmtp_session *s, const char *line, size_t len);

#endif
