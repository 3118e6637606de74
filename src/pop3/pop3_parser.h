/*
 * pop3_parser.h: incremental POP3 command-line reader (no I/O).
 *
 * POP3 commands are single lines (RFC 1939 3): a keyword, then arguments
 * separated by single spaces, ended by CRLF. The server feeds whatever bytes
 * arrived; the parser keeps its state in struct pop3_parser and answers:
 *
 *   NEED_MORE  every byte given was consumed; feed more.
 *   DONE       one line is complete: pop3_parser_verb() / _args() (command
 *              mode) or pop3_parser_line() (line mode). Bytes after the LF
 *              (pipelined commands, RFC 2449 6.6) were NOT consumed.
 *   ERROR      the line was bad (pop3_parser_error() says why) and has been
 *              consumed up to and including its LF, so the next line is a
 *              fresh command: answer -ERR and reset.
 * After DONE or ERROR, feeding again without pop3_parser_reset() consumes
 * nothing and returns the same result.
 *
 * Lines end with LF; a CR right before it is part of the line ending. A bare
 * LF is accepted as a line end (lenient, as most servers are). Limits and
 * refusals (each an ERROR for that line only; the parser never keeps more
 * than the limit whatever is sent, it discards the rest of an overlong line
 * up to its LF):
 *   - a line longer than its limit, the line ending included: 255 octets in
 *     command mode (RFC 2449 4), POP3_PARSER_MAX_SASL_LINE in line mode
 *     (SASL responses, RFC 5034 4, are longer than commands);
 *   - a NUL or any other control character (0x00-0x1F other than the line
 *     ending, and 0x7F), including a CR not followed by LF;
 *   - command mode: an empty line, or a keyword (the text before the first
 *     space) longer than POP3_PARSER_MAX_VERB (RFC 2449 4: 40 characters).
 * Bytes 0x80-0xFF are kept as they are (passwords may be UTF-8).
 */
#ifndef MAILROOM_POP3_PARSER_H
#define MAILROOM_POP3_PARSER_H

#include <stddef.h>
#include <stdint.h>

#define POP3_PARSER_MAX_LINE	  255  /* command line, CRLF included (RFC 2449 4) */
#define POP3_PARSER_MAX_SASL_LINE 4096 /* SASL response line, CRLF included */
#define POP3_PARSER_MAX_VERB	  40   /* keyword length (RFC 2449 4) */
#define POP3_PARSER_MAX_WORDS	  8    /* arguments pop3_parser_split() returns */

enum pop3_parser_result { POP3_PARSER_NEED_MORE, POP3_PARSER_DONE, POP3_PARSER_ERROR };

enum pop3_parser_mode {
	POP3_PARSER_COMMAND, /* "VERB args": split into keyword and arguments */
	POP3_PARSER_LINE,    /* a whole line (SASL continuation responses) */
};

enum pop3_parser_error {
	POP3_PARSER_ERR_NONE,
	POP3_PARSER_ERR_TOOLONG, /* over the line limit */
	POP3_PARSER_ERR_CHAR,	 /* NUL or another control character */
	POP3_PARSER_ERR_EMPTY,	 /* command mode: nothing before the line end */
	POP3_PARSER_ERR_VERB,	 /* command mode: keyword empty or too long */
};

/* The state; embed it, initialise with pop3_parser_init(). Fields are
 * private. */
struct pop3_parser {
	enum pop3_parser_mode mode;
	enum pop3_parser_result result; /* NEED_MORE until a line ends */
	enum pop3_parser_error error;
	size_t limit;	/* bytes a line may have, line ending included */
	size_t seen;	/* bytes of the current line so far (saturating) */
	size_t len;	/* bytes kept in line[] */
	int cr;		/* the last byte was a CR (not yet known to end the line) */
	char *args;	/* into line[], after DONE in command mode */
	size_t args_len;
	char verb[POP3_PARSER_MAX_VERB + 1];
	char line[POP3_PARSER_MAX_SASL_LINE + 1];
};

/* Start reading lines in mode (forgets everything). */
void pop3_parser_init(struct pop3_parser *p, enum pop3_parser_mode mode);
/* Ready for the next line, in mode. Call after DONE or ERROR (or to change
 * mode between lines: mid-line the partial line is dropped). */
void pop3_parser_reset(struct pop3_parser *p, enum pop3_parser_mode mode);
/* Feed len bytes; *used_r is how many were consumed (all of them on
 * NEED_MORE; up to and including the LF on DONE and ERROR). */
enum pop3_parser_result pop3_parser_feed(struct pop3_parser *p, const void *data, size_t len,
					 size_t *used_r);
/* After ERROR: why. */
enum pop3_parser_error pop3_parser_error(const struct pop3_parser *p);
/* After DONE in command mode: the keyword, upper-cased, NUL-terminated,
 * 1..POP3_PARSER_MAX_VERB bytes. Valid until the next reset. */
const char *pop3_parser_verb(const struct pop3_parser *p);
/* After DONE in command mode: everything after the first space (NULL if
 * there was no space; it may be "" or hold more spaces), NUL-terminated,
 * with no control characters. The caller may modify it (pop3_parser_split
 * does); valid until the next reset. */
char *pop3_parser_args(struct pop3_parser *p, size_t *len_r);
/* After DONE: the whole line without its line ending, NUL-terminated.
 * Valid until the next reset. */
const char *pop3_parser_line(const struct pop3_parser *p, size_t *len_r);

/* Split args (modified in place) into words separated by spaces, ignoring
 * empty words; words_r gets up to max pointers. Returns the word count, or
 * -1 if there are more than max words. args NULL: 0 words. */
int pop3_parser_split(char *args, char **words_r, int max);
/* Parse a word as a decimal number 0..max: digits only (leading zeros
 * allowed), no sign, no blanks, overflow checked. 0 with *v_r set, or -1. */
int pop3_parser_number(const char *word, uint32_t max, uint32_t *v_r);

#endif
