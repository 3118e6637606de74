/*
 * pop3_stream.c: byte-stuffing and line-ending normalisation for RETR and
 * TOP; see pop3_stream.h.
 *
 * One pass per byte with three facts remembered across chunks: whether the
 * next byte starts a line (for the "." stuffing), whether the last byte was
 * a CR (an LF after it is already a CRLF) and whether the current line is
 * blank so far (the end of the header, for TOP).
 */
#include "pop3/pop3_stream.h"

#include <string.h>

void pop3_stream_init(struct pop3_stream *st, bool top, uint64_t body_lines)
{
	memset(st, 0, sizeof(*st));
	st->line_start = true;
	st->blank = true;
	st->top = top;
	st->body_lines = body_lines;
}

bool pop3_stream_done(const struct pop3_stream *st)
{
	return st->done;
}

/* A line just ended (its LF was written). */
static void line_ended(struct pop3_stream *st)
{
	if (st->top) {
		if (st->in_body) {
			if (st->body_lines > 0)
				st->body_lines--;
			if (st->body_lines == 0)
				st->done = true;
		} else if (st->blank) {
			/* The header's end: RFC 1939 7 sends this blank line,
			 * then the body lines asked for (maybe none). */
			st->in_body = true;
			if (st->body_lines == 0)
				st->done = true;
		}
	}
	st->line_start = true;
	st->blank = true;
}

size_t pop3_stream_encode(struct pop3_stream *st, const void *in, size_t len, void *out,
			  size_t *used_r)
{
	const unsigned char *s = in;
	unsigned char *o = out;
	size_t n = 0, i = 0;
	while (i < len && !st->done) {
		unsigned char c = s[i++];
		if (c == '\n') {
			if (!st->prev_cr)
				o[n++] = '\r'; /* bare LF goes out as CRLF */
			o[n++] = '\n';
			st->prev_cr = false;
			line_ended(st);
			continue;
		}
		if (st->line_start && c == '.')
			o[n++] = '.'; /* RFC 1939 3: byte-stuff the termination octet */
		/* A CR is blank until something but an LF follows it; a CR
		 * after a CR makes the line not blank. */
		if (c != '\r' || st->prev_cr)
			st->blank = false;
		st->line_start = false;
		st->prev_cr = c == '\r';
		o[n++] = c;
	}
	*used_r = i;
	return n;
}

size_t pop3_stream_finish(struct pop3_stream *st, void *out)
{
	unsigned char *o = out;
	size_t n = 0;
	if (!st->line_start) {
		/* The last line has no LF: end it, but do not double a CR that
		 * was its last byte. */
		if (!st->prev_cr)
			o[n++] = '\r';
		o[n++] = '\n';
	}
	memcpy(o + n, ".\r\n", 3);
	n += 3;
	st->line_start = true;
	st->prev_cr = false;
	st->done = true;
	return n;
}
