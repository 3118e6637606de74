/*
 * imapc_resp.h: the response reader of the IMAP import client
 * (import_imap.c): server responses (RFC 3501 section 7, RFC 9051 section 7)
 * parsed into a flat list of tokens.
 *
 * Design note. The parser is incremental: imapc_resp_feed() takes whatever
 * bytes have arrived, consumes them and says NEED_MORE, DONE (one whole
 * response is in the struct, the bytes after it are left unconsumed) or
 * ERROR (the stream cannot be followed any more: the connection must go).
 * It is fed one byte at a time or all at once with the same result.
 *
 * A response is its tag ("*", "+" or the command's tag) and its tokens:
 * atoms (including numbers, flags such as \Seen and section atoms such as
 * BODY[HEADER.FIELDS (FROM)]<0>), strings (quoted or literal, bytes as
 * sent, unescaped), NIL, and parenthesised lists. A list token's `end` is
 * the index one past its last descendant, so lists are walked without a
 * tree. A status response (OK, NO, BAD, BYE, PREAUTH) is the status atom,
 * then, when present, one CODE token holding the bracketed response code
 * as children ("[UIDVALIDITY 3]", "[CAPABILITY IMAP4rev1 ...]"), then one
 * TEXT token: the human-readable rest of the line as sent. A continuation
 * request ("+ ...") is a TEXT token only.
 *
 * Literals ({N}, {N+} and literal8 ~{N}) may stand anywhere a string may.
 * When hooks are set, literal_begin is asked before the bytes arrive and
 * may have them passed on (literal_data, then literal_end) instead of kept:
 * a 50 MB BODY[] goes through in pieces, never in memory. Such a literal
 * becomes a STREAMED token that records only its size.
 *
 * Limits: everything kept (tokens' text, kept literals) is at most
 * IMAPC_RESP_MAX_TEXT bytes per response, IMAPC_RESP_MAX_TOKENS tokens, lists
 * nested at most IMAPC_RESP_MAX_DEPTH deep; a literal's announced size is
 * checked against the limit before anything is allocated. Going over one is
 * ERROR. CRLF or a bare LF ends a line; repeated spaces are accepted.
 */
#ifndef MAILROOM_IMAPC_RESP_H
#define MAILROOM_IMAPC_RESP_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/error.h"

#define IMAPC_RESP_MAX_TEXT   (4u << 20)
#define IMAPC_RESP_MAX_TOKENS 100000u
#define IMAPC_RESP_MAX_DEPTH  32

enum imapc_resp_result {
	IMAPC_RESP_NEED_MORE,
	IMAPC_RESP_DONE,
	IMAPC_RESP_ERROR,
};

enum imapc_tok_type {
	IMAPC_TOK_ATOM,
	IMAPC_TOK_STRING, /* quoted or literal */
	IMAPC_TOK_NIL,
	IMAPC_TOK_LIST,	    /* children follow; end: one past the last */
	IMAPC_TOK_CODE,	    /* a status response's [code]: children as LIST */
	IMAPC_TOK_TEXT,	    /* the rest of a status or continuation line */
	IMAPC_TOK_STREAMED, /* a literal handed to the hooks: size only */
};

struct imapc_tok {
	enum imapc_tok_type type;
	uint32_t off; /* text in the response's arena (NUL-terminated) */
	uint32_t len;
	uint32_t end;  /* LIST, CODE: index one past its last descendant */
	uint64_t size; /* STREAMED: the literal's size */
};

struct imapc_resp;

struct imapc_resp_hooks {
	void *ctx;
	/* A literal of size bytes starts; the tokens before it are readable
	 * (imapc_resp_ntok, imapc_resp_depth...). Return 1 to have its bytes
	 * passed to literal_data instead of kept, 0 to keep them, -1 to stop
	 * (feed returns ERROR; the hook keeps its own reason). */
	int (*literal_begin)(void *ctx, const struct imapc_resp *r, uint64_t size);
	int (*literal_data)(void *ctx, const char *data, size_t len);
	int (*literal_end)(void *ctx);
};

struct imapc_resp {
	/* the response, valid after DONE until the next feed or reset */
	struct buf text; /* arena: the tag at offset 0, then token texts */
	struct imapc_tok *tok;
	size_t ntok, tokcap;
	struct imapc_resp_hooks hooks; /* may be set by the owner at any time */

	/* parser state */
	int state;
	size_t open[IMAPC_RESP_MAX_DEPTH]; /* indexes of the open lists */
	size_t depth;
	int status_line;   /* this response is a status response */
	int in_code;	   /* inside its [code] */
	int bracket;	   /* inside [...] of an atom */
	uint64_t lit_left; /* bytes of the current literal still to come */
	int lit_streamed;
	char lit_digits; /* a digit was seen in {N} */
	int oom;
	char errtext[160];
};

void imapc_resp_init(struct imapc_resp *r);
/* Forget the response and parse the next one from scratch (after DONE or to
 * start again after ERROR). Keeps the hooks. */
void imapc_resp_reset(struct imapc_resp *r);
void imapc_resp_free(struct imapc_resp *r);

/* Parse data[0..len). *used_r: bytes consumed (all of them on NEED_MORE; up
 * to and including the response's line end on DONE; on ERROR undefined).
 * After DONE or ERROR, reset before feeding again. On ERROR, err (if not
 * NULL) says why (ERR_INVALID: the server broke the protocol or a limit;
 * ERR_TEMP: out of memory; or the hook stopped it). */
enum imapc_resp_result imapc_resp_feed(struct imapc_resp *r, const char *data, size_t len,
				       size_t *used_r, struct error *err);

/* ---- reading a parsed response (valid after DONE, and inside hooks) ----- */

/* The tag: "*", "+" or the command's. */
const char *imapc_resp_tag(const struct imapc_resp *r);
size_t imapc_resp_ntok(const struct imapc_resp *r);
/* Lists open right now (inside literal_begin: how deep the literal is). */
size_t imapc_resp_depth(const struct imapc_resp *r);
const struct imapc_tok *imapc_resp_tok(const struct imapc_resp *r, size_t i);
/* The text of token i (NUL-terminated; strings may hold NULs: use len),
 * "" for NIL, lists and streamed literals. Valid as the response is. */
const char *imapc_resp_str(const struct imapc_resp *r, size_t i);
/* 1 if token i is an atom equal to s, ignoring ASCII case. */
int imapc_resp_is(const struct imapc_resp *r, size_t i, const char *s);
/* Token i as a number (an atom of 1..20 digits within UINT64): 0, or -1. */
int imapc_resp_num(const struct imapc_resp *r, size_t i, uint64_t *n_r);
/* The index after token i and all its descendants. */
size_t imapc_resp_next(const struct imapc_resp *r, size_t i);

#endif
