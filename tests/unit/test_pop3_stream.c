/*
 * test_pop3_stream.c: unit tests for src/pop3/pop3_stream (RETR/TOP body
 * encoding).
 *
 * Expected outputs are written by hand from RFC 1939 3 (CRLF line endings,
 * a leading "." doubled, the response ended by CRLF "." CRLF) and 7 (TOP:
 * header, blank line, n body lines). Random messages are also checked
 * against a second, deliberately naive encoder in this file (split the whole
 * message into lines, then fix each line), fed whole, one byte at a time and
 * in random slices.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/buf.h"
#include "pop3/pop3_stream.h"

/* Encode msg with the incremental encoder in slices (0: whole, 1: bytes,
 * else random); the whole response body including the terminator. */
static void encode(const char *msg, size_t len, bool top, uint64_t lines, unsigned seed,
		   struct buf *out)
{
	struct pop3_stream st;
	pop3_stream_init(&st, top, lines);
	srand(seed);
	size_t off = 0;
	unsigned char *o = malloc(len * POP3_STREAM_EXPANSION + POP3_STREAM_FINISH_MAX + 1);
	assert_non_null(o);
	while (off < len && !pop3_stream_done(&st)) {
		size_t n = len - off;
		if (seed == 1)
			n = 1;
		else if (seed > 1)
			n = 1 + (size_t)rand() % (n < 40 ? n : 40);
		size_t used;
		size_t w = pop3_stream_encode(&st, msg + off, n, o, &used);
		assert_true(w <= n * POP3_STREAM_EXPANSION);
		assert_true(used <= n);
		if (used < n)
			assert_true(pop3_stream_done(&st));
		off += used;
		buf_append(out, o, w);
	}
	size_t w = pop3_stream_finish(&st, o);
	assert_true(w <= POP3_STREAM_FINISH_MAX);
	buf_append(out, o, w);
	free(o);
}

static void check_all(const char *msg, size_t len, bool top, uint64_t lines, const char *exp,
		      size_t exp_len)
{
	for (unsigned seed = 0; seed < 10; seed++) {
		struct buf out = BUF_INIT;
		encode(msg, len, top, lines, seed, &out);
		assert_int_equal(out.len, exp_len);
		assert_memory_equal(out.data, exp, exp_len);
		buf_free(&out);
	}
}

#define RETR(m, e) check_all(m, sizeof(m) - 1, false, 0, e, sizeof(e) - 1)
#define TOP(m, n, e) check_all(m, sizeof(m) - 1, true, n, e, sizeof(e) - 1)

static void test_retr(void **state)
{
	(void)state;
	RETR("Subject: a\r\n\r\nbody\r\n", "Subject: a\r\n\r\nbody\r\n.\r\n");
	/* Byte-stuffing: only a "." that starts a line. */
	RETR("S: a\r\n\r\n.\r\n..x\r\na.b\r\n.", "S: a\r\n\r\n..\r\n...x\r\na.b\r\n..\r\n.\r\n");
	RETR(".first\r\n", "..first\r\n.\r\n");
	/* Bare LF becomes CRLF; stuffing still applies after it. */
	RETR("S: a\n\n.dot\nx\n", "S: a\r\n\r\n..dot\r\nx\r\n.\r\n");
	/* No final line ending: one is added before the terminator. */
	RETR("S: a\r\n\r\nno eol", "S: a\r\n\r\nno eol\r\n.\r\n");
	RETR("S: a\r\n\r\nends in CR\r", "S: a\r\n\r\nends in CR\r\n.\r\n");
	/* A lone CR is data: it neither ends a line nor enables stuffing. */
	RETR("a\r.b\r\n", "a\r.b\r\n.\r\n");
	/* Empty message. */
	RETR("", ".\r\n");
	/* NUL bytes are data. */
	check_all("a\0b\n", 4, false, 0, "a\0b\r\n.\r\n", 8);
}

static void test_top(void **state)
{
	(void)state;
	const char m[] = "From: x\r\nSubject: y\r\n\r\nl1\r\n.l2\r\nl3\r\n";
	TOP(m, 0, "From: x\r\nSubject: y\r\n\r\n.\r\n");
	TOP(m, 1, "From: x\r\nSubject: y\r\n\r\nl1\r\n.\r\n");
	TOP(m, 2, "From: x\r\nSubject: y\r\n\r\nl1\r\n..l2\r\n.\r\n");
	TOP(m, 3, "From: x\r\nSubject: y\r\n\r\nl1\r\n..l2\r\nl3\r\n.\r\n");
	TOP(m, 4294967295u, "From: x\r\nSubject: y\r\n\r\nl1\r\n..l2\r\nl3\r\n.\r\n");
	/* Bare LF header end. */
	TOP("A: 1\nB: 2\n\nb1\nb2\n", 1, "A: 1\r\nB: 2\r\n\r\nb1\r\n.\r\n");
	/* No blank line: all header, sent whole. */
	TOP("A: 1\r\nB: 2\r\n", 0, "A: 1\r\nB: 2\r\n.\r\n");
	TOP("A: 1\r\nB: 2", 5, "A: 1\r\nB: 2\r\n.\r\n");
	/* A line of spaces is not blank; "\r\r\n" is not blank either. */
	TOP("A: 1\r\n \r\nB\r\n\r\nbody\r\n", 0, "A: 1\r\n \r\nB\r\n\r\n.\r\n");
	TOP("A: 1\r\n\r\r\nB\r\n\r\nbody\r\n", 0, "A: 1\r\n\r\r\nB\r\n\r\n.\r\n");
	/* Body's last line without LF. */
	TOP("A: 1\r\n\r\nx", 3, "A: 1\r\n\r\nx\r\n.\r\n");
	/* Header-only message that ends with the blank line. */
	TOP("A: 1\r\n\r\n", 2, "A: 1\r\n\r\n.\r\n");
}

/* The naive reference: whole-message, line by line. */
static void reference(const unsigned char *m, size_t len, bool top, uint64_t lines, struct buf *out)
{
	size_t i = 0;
	bool in_body = false;
	uint64_t body = 0;
	while (i < len) {
		const unsigned char *lf = memchr(m + i, '\n', len - i);
		size_t end = lf ? (size_t)(lf - m) : len; /* content end (exclusive) */
		size_t content = end - i;
		bool had_cr = lf && content > 0 && m[end - 1] == '\r';
		if (had_cr)
			content--;
		if (top && in_body && body >= lines)
			break;
		if (content > 0 && m[i] == '.')
			buf_putc(out, '.');
		buf_append(out, m + i, content);
		if (lf == NULL) {
			/* last line without LF: the finish adds CRLF unless it
			 * ends with CR, which then gets only the LF */
			if (content > 0 && m[end - 1] == '\r')
				buf_putc(out, '\n');
			else
				buf_append(out, "\r\n", 2);
			i = len;
			break;
		}
		buf_append(out, "\r\n", 2);
		bool blank = content == 0;
		if (top && in_body)
			body++;
		else if (top && blank)
			in_body = true;
		i = end + 1;
	}
	buf_append(out, ".\r\n", 3);
}

static void test_random(void **state)
{
	(void)state;
	static const char alphabet[] = "..\r\n\n\nab: ";
	unsigned char m[300];
	for (unsigned iter = 0; iter < 3000; iter++) {
		srand(iter);
		size_t len = (size_t)rand() % sizeof(m);
		for (size_t i = 0; i < len; i++)
			m[i] = (unsigned char)alphabet[rand() % (int)(sizeof(alphabet) - 1)];
		bool top = iter % 2 == 1;
		uint64_t lines = (uint64_t)(rand() % 5);
		struct buf exp = BUF_INIT;
		reference(m, len, top, lines, &exp);
		check_all((const char *)m, len, top, lines, exp.data, exp.len);
		buf_free(&exp);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_retr),
		cmocka_unit_test(test_top),
		cmocka_unit_test(test_random),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
