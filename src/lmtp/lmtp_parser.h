/*
 * lmtp_parser.h: LMTP (RFC 2033) input, without I/O: command lines and the
 * DATA stream. Pure functions over bytes, so they are fuzzed and unit-tested
 * on their own.
 *
 * Commands: lmtp_parse_command() takes one line (without its CRLF or LF)
 * and splits it into a verb and, for MAIL and RCPT, the path and the
 * ESMTP parameters (RFC 5321 4.1.2). Addresses are kept as sent, bounded,
 * with the angle brackets removed; "<>" is the null sender.
 *
 * DATA: struct lmtp_dot is a resumable decoder for the text after DATA
 * (RFC 5321 4.5.2): fed any slices, it removes the leading dot of stuffed
 * lines and finds the terminating "." line, accepting a bare LF wherever
 * CRLF belongs (what a lenient server must do). The output is the message
 * with its line endings as sent; the store normalises them to CRLF.
 */
#ifndef MAILROOM_LMTP_PARSER_H
#define MAILROOM_LMTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/error.h"

#define LMTP_MAX_LINE 4096   /* command line (RFC 5321 4.5.3.1.4 says 512; we are lenient) */
#define LMTP_MAX_ADDRESS 512 /* path, brackets excluded */
#define LMTP_MAX_PARAMS 16

enum lmtp_verb {
	LMTP_LHLO, LMTP_MAIL, LMTP_RCPT, LMTP_DATA, LMTP_BDAT, LMTP_RSET, LMTP_NOOP,
	LMTP_QUIT, LMTP_VRFY, LMTP_HELP, LMTP_STARTTLS, LMTP_UNKNOWN,
};

struct lmtp_param {
	char name[32];	/* upper-cased */
	char value[128]; /* "" when the parameter has none */
};

struct lmtp_command {
	enum lmtp_verb verb;
	char arg[LMTP_MAX_LINE]; /* LHLO domain, VRFY argument, BDAT arguments */
	char address[LMTP_MAX_ADDRESS + 1]; /* MAIL/RCPT path without < > */
	struct lmtp_param params[LMTP_MAX_PARAMS];
	unsigned nparams;
	/* BDAT */
	uint64_t chunk_size;
	bool last;
};

/* Parse one command line. Returns 0, or -1 with err set: code ERR_INVALID,
 * text the SMTP reply to send ("501 5.5.4 ..." / "500 5.5.2 ...") without
 * CRLF. */
int lmtp_parse_command(const char *line, size_t len, struct lmtp_command *cmd, struct error *err);

/* Split an address into local part and domain (after the last '@' outside
 * quotes). local_r is unquoted. Returns 0, or -1 if it is not an address. */
int lmtp_split_address(const char *addr, char *local_r, size_t local_size, char *domain_r,
		       size_t domain_size);

enum lmtp_dot_state { LMTP_DOT_LS, LMTP_DOT_DOT, LMTP_DOT_DOTCR, LMTP_DOT_MID, LMTP_DOT_CR,
		      LMTP_DOT_END };

struct lmtp_dot {
	enum lmtp_dot_state state;
};

/* Decode in[0..len): append the message bytes to out (at most len + 1 bytes
 * are written: a CR held back from the previous call may come first) and set
 * *out_len_r; *consumed_r is how much of in was used (less than len only
 * when the end of data was found: the rest belongs to the next command).
 * Returns true once the terminating line has been seen. */
bool lmtp_dot_feed(struct lmtp_dot *d, const char *in, size_t len, char *out, size_t *out_len_r,
		   size_t *consumed_r);

#endif
