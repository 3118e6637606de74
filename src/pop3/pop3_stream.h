/*
 * pop3_stream.h: turning message file bytes into a POP3 multi-line response
 * body (RETR and TOP), incrementally and with no I/O.
 *
 * RFC 1939 3: each line of a multi-line response ends with CRLF; a line that
 * begins with "." gets another "." before it (byte-stuffing); the response
 * ends with a line holding only ".". The message files in the store have
 * CRLF line endings, but one dropped into new/ by another program may have
 * bare LF: every LF without a CR before it goes out as CRLF, so the bytes
 * sent (before stuffing) are what RFC822.SIZE and LIST count: the file size
 * plus one per bare LF (the mime module's `vsize`). A CR not followed by LF
 * is sent as it is and does not end a line.
 *
 * TOP n m (RFC 1939 7): the header, the blank line that ends it, and the
 * first m lines of the body. A line is blank when it holds nothing before
 * its LF but an optional CR. A message without a blank line is all header
 * and is sent whole; a body shorter than m lines is sent whole.
 *
 * The state is a few flags, so a message of any size streams through a
 * fixed buffer: feed chunks in order to pop3_stream_encode() until it says
 * the response is complete (TOP) or the file ends, then
 * pop3_stream_finish() writes the end of the response.
 */
#ifndef MAILROOM_POP3_STREAM_H
#define MAILROOM_POP3_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Output room pop3_stream_encode needs per input byte (worst case: every
 * byte a bare LF, or a "." starting a line). */
#define POP3_STREAM_EXPANSION 2
/* Output room pop3_stream_finish needs: CRLF "." CRLF. */
#define POP3_STREAM_FINISH_MAX 5

struct pop3_stream {
	bool line_start; /* the next byte begins a line */
	bool prev_cr;	 /* the last byte was a CR */
	bool blank;	 /* the current line has held nothing but an optional CR */
	bool in_body;	 /* past the blank line after the header */
	bool top;	 /* a TOP: stop after body_lines body lines */
	bool done;	 /* nothing more to send (TOP reached its count) */
	uint64_t body_lines;
};

/* A RETR (top false: everything) or a TOP with body_lines lines of body. */
void pop3_stream_init(struct pop3_stream *st, bool top, uint64_t body_lines);
/* Encode in[0..len) into out, which has room for len * POP3_STREAM_EXPANSION
 * bytes. Returns the bytes written; *used_r is the input consumed: all of it,
 * unless the response became complete (pop3_stream_done()) part way. */
size_t pop3_stream_encode(struct pop3_stream *st, const void *in, size_t len, void *out,
			  size_t *used_r);
/* True once a TOP has sent all it must: stop reading the file. */
bool pop3_stream_done(const struct pop3_stream *st);
/* Write the end of the response to out (room for POP3_STREAM_FINISH_MAX):
 * a CRLF if the last line had no line ending, then ".\r\n". Returns bytes
 * written. */
size_t pop3_stream_finish(struct pop3_stream *st, void *out);

#endif
