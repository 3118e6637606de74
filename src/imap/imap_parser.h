/*
 * imap_parser.h: incremental IMAP command parser (no I/O).
 *
 * The server feeds whatever bytes arrived; the parser answers with one of
 * four results and keeps all its state in struct imap_parser:
 *
 *   NEED_MORE  every byte given was consumed; feed more.
 *   DONE       one complete command (tag, name, argument tree) is ready:
 *              imap_parser_command(). Bytes after its line end (pipelined
 *              commands) were NOT consumed. Answer it, then call
 *              imap_parser_reset() and feed the rest.
 *   LITERAL    the client announced a synchronizing literal {n} (RFC 9051
 *              4.3, 7.5) that literal_start() accepted: imap_parser_literal()
 *              says its size. Send "+ ..." and keep feeding; or refuse it
 *              with a tagged NO/BAD and call imap_parser_reset() (the client
 *              sends no literal bytes then, so nothing is skipped).
 *   ERROR      the command is bad: imap_parser_error() gives a message for
 *              a tagged BAD/NO (untagged "* BAD" when the tag is NULL), and
 *              whether the connection must be closed. Reply, then call
 *              imap_parser_reset() and feed on: the parser first discards
 *              what the client still sends of the bad command (see
 *              "Error recovery" in imap_parser.c and below).
 *
 * After DONE, ERROR or LITERAL, feeding again without a reset consumes
 * nothing and returns the same result (LITERAL excepted: feeding after
 * LITERAL means "the continuation was sent" and reads the literal). The
 * bytes consumed with an ERROR include the byte where it was found. The
 * server should count errors and close after too many (the parser never
 * does, apart from the fatal cases below).
 *
 * Error recovery, what the next feed after imap_parser_reset() discards:
 *   - an error found on the byte that ended the line (LF): nothing;
 *   - an error found mid-line: the rest of the line up to LF; if that line
 *     ends with a non-synchronizing literal {n+} / ~{n+} its n bytes are
 *     skipped too and discarding continues on the line after them (RFC 7888
 *     section 4: the server reads and discards them); a line ending with a
 *     synchronizing {n} ends the discarding (the client waits for a "+"
 *     that never comes and sees our tagged reply instead);
 *   - a literal refused at its announcement (ERR_TOOBIG): synchronizing:
 *     nothing (the client sends no bytes); non-synchronizing: its n bytes,
 *     then the rest of the command as above;
 *   - literal_data() failed, or a NUL in a non-literal8 literal: the rest of
 *     that literal, then the rest of the command as above (of a STREAM
 *     literal, the bytes before the error were given to literal_data():
 *     the server drops what it stored).
 * A reset while a command is half read (server shutting a command down)
 * discards the rest of it the same way.
 * A non-synchronizing literal whose size cannot be known (over UINT32_MAX,
 * or unreadable) makes the error fatal: there is no way to resynchronise.
 *
 * Pointers returned by imap_parser_command() / _error() / _literal() and
 * every string and argument they reach live in the parser's arena: valid
 * until the next imap_parser_reset() or imap_parser_free().
 */
#ifndef MAILROOM_IMAP_PARSER_H
#define MAILROOM_IMAP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Default limits (struct imap_parser_limits; 0 in a field means default). */
#define IMAP_PARSER_MAX_LINE		(64 * 1024)	/* command bytes, literals excluded */
#define IMAP_PARSER_MAX_LITERAL_MEMORY	(1024 * 1024)	/* buffered literal bytes per command */
#define IMAP_PARSER_MAX_LITERAL_SIZE	UINT32_MAX	/* largest literal announced, any mode */
#define IMAP_PARSER_MAX_NONSYNC		UINT32_MAX	/* largest {n+}; 4096 for LITERAL- */
#define IMAP_PARSER_MAX_DEPTH		32		/* nested parenthesised lists */
#define IMAP_PARSER_MAX_ARGS		10000		/* argument nodes per command, all depths */
#define IMAP_PARSER_MAX_TAG		64		/* tag bytes */
#define IMAP_PARSER_HARD_MAX_DEPTH	1000		/* depth limit may not exceed this */

struct imap_parser_limits {
	size_t max_line;
	size_t max_literal_memory;
	uint64_t max_literal_size;	/* clamped to UINT32_MAX */
	uint64_t max_nonsync;		/* clamped to max_literal_size */
	unsigned int max_depth;		/* clamped to IMAP_PARSER_HARD_MAX_DEPTH */
	unsigned int max_args;
	unsigned int max_tag;
};

enum imap_parser_result {
	IMAP_PARSER_NEED_MORE,
	IMAP_PARSER_DONE,
	IMAP_PARSER_LITERAL,
	IMAP_PARSER_ERROR,
};

enum imap_arg_type {
	IMAP_ARG_ATOM,	   /* atom, number, sequence set, flag, fetch att with [...] */
	IMAP_ARG_NIL,	   /* the bare atom NIL (any case); str holds it as sent */
	IMAP_ARG_STRING,   /* quoted string, unescaped */
	IMAP_ARG_LITERAL,  /* literal or literal8 held in memory */
	IMAP_ARG_STREAMED, /* literal given to literal_data(); len = its size */
	IMAP_ARG_LIST,	   /* parenthesised list */
};

/*
 * One argument. ATOM, NIL, STRING, LITERAL: str/len are the bytes, and
 * str[len] == '\0'; only a literal8 (~{n}, RFC 3516) may contain NUL bytes.
 * An atom holding '[' runs to its matching ']' and may contain spaces,
 * lists and quoted strings there, kept raw (BODY.PEEK[HEADER.FIELDS (A "B")]<0.9>
 * is one ATOM, str exactly as sent; a literal inside [] is not supported:
 * its "{" is a plain byte there). NIL is its own type so a handler that
 * wants nstring can tell it from "NIL"; one that wants an astring (a
 * mailbox called NIL) reads str like an atom's. LIST: list/count.
 */
struct imap_arg {
	enum imap_arg_type type;
	bool literal8; /* LITERAL, STREAMED: announced as ~{n} */
	bool nonsync;  /* LITERAL, STREAMED: announced as {n+} */
	const char *str;
	size_t len;
	const struct imap_arg *list;
	size_t count;
};

struct imap_command {
	const char *tag;  /* as sent */
	const char *name; /* upper-cased: "FETCH" for "UID FETCH" */
	bool uid;	  /* sent as "UID <name>" */
	const struct imap_arg *args;
	size_t argc;
};

enum imap_parser_error_kind {
	IMAP_PARSER_ERR_SYNTAX,	  /* reply BAD */
	IMAP_PARSER_ERR_LIMIT,	  /* line, depth, argument or tag limit hit: reply BAD */
	IMAP_PARSER_ERR_TOOBIG,	  /* literal refused: NO [TOOBIG] or BAD [TOOBIG] (RFC 7888 4, RFC 9051 7.1) */
	IMAP_PARSER_ERR_CALLBACK, /* literal_data() returned -1: the server knows why */
};

struct imap_parser_error {
	enum imap_parser_error_kind kind;
	const char *msg; /* static printable ASCII, no CRLF, no response code */
	const char *tag; /* NULL when the tag was not (validly) read: use "* BAD" */
	bool fatal;	 /* the connection cannot be resynchronised: BYE and close */
};

/* The literal announced when IMAP_PARSER_LITERAL was returned. */
struct imap_parser_literal {
	uint64_t size;
	bool literal8;
	bool streamed; /* literal_start() answered STREAM */
};

enum imap_literal_action {
	IMAP_LITERAL_BUFFER, /* keep in memory (refused if over max_literal_memory) */
	IMAP_LITERAL_STREAM, /* pass the bytes to literal_data() */
	IMAP_LITERAL_REJECT, /* refuse: ERR_TOOBIG */
};

struct imap_parser_callbacks {
	/* Called once per literal, after its announcement line was read and
	 * the size checked against the limits, before any byte of it: name is
	 * the upper-cased command name (without "UID "), argc the number of
	 * complete top-level arguments before it (so APPEND box {n} gives 1).
	 * NULL callback: BUFFER if it fits in memory, else REJECT. */
	enum imap_literal_action (*literal_start)(void *ctx, const char *name, size_t argc,
						  uint64_t size, bool is_sync, bool is_literal8);
	/* STREAM literals: called with consecutive slices (len > 0) of the
	 * literal, exactly `size` bytes in all, then the next literal_start()
	 * or the command's DONE/ERROR follows (an ERROR may come after only
	 * part of it). Return 0, or -1 to abort the command (ERR_CALLBACK;
	 * the rest of the literal is discarded). */
	int (*literal_data)(void *ctx, const void *data, size_t len);
	void *ctx;
};

struct imap_parser;

/* Creates a parser. limits and cb are copied; NULL means defaults / no
 * callbacks. Returns NULL only when out of memory. Free with
 * imap_parser_free(). */
struct imap_parser *imap_parser_new(const struct imap_parser_limits *limits,
				    const struct imap_parser_callbacks *cb);
/* Frees the parser and everything it returned; *p becomes NULL. NULL ok. */
void imap_parser_free(struct imap_parser **p);

/* Parses data[0..len). *consumed_r (always set) is how many bytes were
 * used; the caller keeps the others and gives them again later. Returns
 * NEED_MORE (consumed == len), DONE, LITERAL or ERROR as described above.
 * Out of memory is a fatal ERROR. */
enum imap_parser_result imap_parser_feed(struct imap_parser *p, const void *data, size_t len,
					 size_t *consumed_r);

/* After DONE: the command; otherwise NULL. Valid until reset/free. */
const struct imap_command *imap_parser_command(const struct imap_parser *p);
/* After ERROR: the error; otherwise NULL. Valid until reset/free. */
const struct imap_parser_error *imap_parser_error(const struct imap_parser *p);
/* After LITERAL: the announced literal; otherwise NULL. */
const struct imap_parser_literal *imap_parser_literal(const struct imap_parser *p);

/* Ends the current command, whatever its state: releases the arena (every
 * pointer returned so far becomes invalid) and, after an ERROR, arms the
 * discarding described above. After LITERAL it means "the literal was
 * refused": nothing is discarded (if literal_start() had answered STREAM,
 * the server drops that stream). After a fatal ERROR the parser stays in
 * error. Keeps at most a small buffer for reuse. */
void imap_parser_reset(struct imap_parser *p);

/* True when no byte of a command is pending and nothing is being
 * discarded: the next byte starts a new command. */
bool imap_parser_idle(const struct imap_parser *p);

/*
 * Line mode, for AUTHENTICATE continuation lines (RFC 9051 6.2.2) and the
 * DONE of IDLE (RFC 9051 6.3.13): reads one line ending in CRLF or bare LF,
 * at most max_line bytes. DONE: *line_r / *line_len_r are the line without
 * its ending (NUL-terminated, no NUL inside), valid until the next call of
 * any imap_parser_* function; bytes after the line are not consumed.
 * NEED_MORE: all consumed. ERROR (too long, NUL or stray CR): reply, call
 * imap_parser_reset(); the rest of that line is discarded by the next call.
 * Only when the parser is between commands (imap_parser_idle() or right
 * after a reset); otherwise ERROR. Pending discarding is done first.
 */
enum imap_parser_result imap_parser_read_line(struct imap_parser *p, const void *data, size_t len,
					      size_t *consumed_r, const char **line_r,
					      size_t *line_len_r);

/* Argument helpers. Each returns true and sets its out-params when arg has
 * the named shape, false otherwise. */
/* astring (RFC 9051 9): ATOM, NIL (as the atom "NIL"), STRING, LITERAL
 * without NUL. Note: an ATOM holding '[' or '*'/'%' is not an astring. */
bool imap_parser_arg_astring(const struct imap_arg *arg, const char **str_r, size_t *len_r);
/* nstring: NIL gives *str_r = NULL; else STRING or LITERAL without NUL. */
bool imap_parser_arg_nstring(const struct imap_arg *arg, const char **str_r, size_t *len_r);
/* string: STRING or LITERAL without NUL. */
bool imap_parser_arg_string(const struct imap_arg *arg, const char **str_r, size_t *len_r);
/* ATOM whose bytes match s case-insensitively (NIL matches "NIL"). */
bool imap_parser_arg_atom_eq(const struct imap_arg *arg, const char *s);
/* number (RFC 9051 9): an ATOM of 1..10 digits <= UINT32_MAX. */
bool imap_parser_arg_number(const struct imap_arg *arg, uint32_t *n_r);
/* number64: an ATOM of digits <= 2^63-1. */
bool imap_parser_arg_number64(const struct imap_arg *arg, uint64_t *n_r);

#endif
