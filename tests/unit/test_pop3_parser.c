/*
 * test_pop3_parser.c: unit tests for src/pop3/pop3_parser.
 *
 * Every input runs through a small simulated server (run()): it feeds the
 * bytes, records each DONE or ERROR in a transcript and resets, and ends
 * with whether a line was left half read. Each input is fed whole, one byte
 * at a time and in random slices (several seeds); every transcript must be
 * the same before it is compared with the expected text, written by hand
 * from RFC 1939 3 (keyword, single-space-separated arguments, CRLF) and
 * RFC 2449 4 (255 octets per command line, CRLF included).
 *
 * Transcript lines:
 *   CMD <VERB> [<args>|-]   args as given ("-": no space after the verb);
 *                           bytes outside 0x20-0x7e as \xNN
 *   LINE <text>             line mode
 *   ERR <toolong|char|empty|verb>
 *   END <idle|pending>
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/buf.h"
#include "pop3/pop3_parser.h"

static void put_bytes(struct buf *out, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c > 0x7e)
			buf_printf(out, "\\x%02X", c);
		else
			buf_putc(out, (char)c);
	}
}

static const char *err_name(enum pop3_parser_error e)
{
	switch (e) {
	case POP3_PARSER_ERR_TOOLONG: return "toolong";
	case POP3_PARSER_ERR_CHAR: return "char";
	case POP3_PARSER_ERR_EMPTY: return "empty";
	case POP3_PARSER_ERR_VERB: return "verb";
	case POP3_PARSER_ERR_NONE: break;
	}
	return "none";
}

/* Feed data in slices of the sizes slice() picks; write the transcript. A
 * line whose verb is "AUTH" switches to line mode for one line, as the
 * server does during a SASL exchange. */
static void run_sliced(const char *data, size_t len, unsigned seed, struct buf *out)
{
	struct pop3_parser p;
	enum pop3_parser_mode mode = POP3_PARSER_COMMAND;
	pop3_parser_init(&p, mode);
	size_t off = 0;
	srand(seed);
	bool pending = false;
	while (off < len) {
		size_t n = len - off;
		if (seed == 1)
			n = 1;
		else if (seed > 1)
			n = 1 + (size_t)rand() % (n < 300 ? n : 300);
		/* Feed the slice until the parser has consumed all of it. */
		size_t end = off + n;
		while (off < end) {
			size_t used = 0;
			enum pop3_parser_result r = pop3_parser_feed(&p, data + off, end - off, &used);
			assert_true(used <= end - off);
			off += used;
			if (r == POP3_PARSER_NEED_MORE) {
				assert_int_equal(off, end);
				pending = true;
				break;
			}
			pending = false;
			/* Feeding again without a reset consumes nothing. */
			size_t again = 99;
			assert_int_equal(pop3_parser_feed(&p, "X\n", 2, &again), r);
			assert_int_equal(again, 0);
			if (r == POP3_PARSER_ERROR) {
				buf_printf(out, "ERR %s\n", err_name(pop3_parser_error(&p)));
				mode = POP3_PARSER_COMMAND;
			} else if (mode == POP3_PARSER_LINE) {
				size_t l;
				const char *line = pop3_parser_line(&p, &l);
				assert_int_equal(line[l], '\0');
				buf_puts(out, "LINE ");
				put_bytes(out, line, l);
				buf_putc(out, '\n');
				mode = POP3_PARSER_COMMAND;
			} else {
				size_t alen;
				char *args = pop3_parser_args(&p, &alen);
				buf_printf(out, "CMD %s ", pop3_parser_verb(&p));
				if (args == NULL) {
					buf_puts(out, "-");
				} else {
					assert_int_equal(args[alen], '\0');
					put_bytes(out, args, alen);
				}
				buf_putc(out, '\n');
				if (strcmp(pop3_parser_verb(&p), "AUTH") == 0)
					mode = POP3_PARSER_LINE;
			}
			pop3_parser_reset(&p, mode);
		}
	}
	buf_printf(out, "END %s\n", pending ? "pending" : "idle");
}

static void check_run(const char *data, size_t len, const char *expected)
{
	struct buf first = BUF_INIT;
	run_sliced(data, len, 0, &first);
	for (unsigned seed = 1; seed < 12; seed++) {
		struct buf other = BUF_INIT;
		run_sliced(data, len, seed, &other);
		assert_string_equal(buf_cstr(&other), buf_cstr(&first));
		buf_free(&other);
	}
	assert_string_equal(buf_cstr(&first), expected);
	buf_free(&first);
}

#define CHECK(lit, expected) check_run(lit, sizeof(lit) - 1, expected)

static void test_commands(void **state)
{
	(void)state;
	CHECK("USER alice\r\n", "CMD USER alice\nEND idle\n");
	/* Keywords are case-insensitive (RFC 1939 3); arguments are kept. */
	CHECK("user Alice\r\nsTaT\r\n", "CMD USER Alice\nCMD STAT -\nEND idle\n");
	/* Pipelined (RFC 2449 6.6): each line on its own. */
	CHECK("LIST\r\nRETR 1\r\nQUIT\r\n", "CMD LIST -\nCMD RETR 1\nCMD QUIT -\nEND idle\n");
	/* PASS keeps spaces: everything after the first space. */
	CHECK("PASS  two  spaces \r\n", "CMD PASS  two  spaces \nEND idle\n");
	/* "STAT " has an empty argument string, not none. */
	CHECK("STAT \r\n", "CMD STAT \nEND idle\n");
	/* Bare LF is accepted as a line end. */
	CHECK("NOOP\nNOOP\r\n", "CMD NOOP -\nCMD NOOP -\nEND idle\n");
	/* 8-bit bytes are kept (UTF-8 passwords). */
	CHECK("PASS p\xc3\xa4ss\r\n", "CMD PASS p\\xC3\\xA4ss\nEND idle\n");
	/* A half line stays pending. */
	CHECK("NOOP\r\nLIS", "CMD NOOP -\nEND pending\n");
	CHECK("NOOP\r", "END pending\n");
}

static void test_errors(void **state)
{
	(void)state;
	CHECK("\r\n", "ERR empty\nEND idle\n");
	CHECK(" LIST\r\n", "ERR verb\nEND idle\n");
	/* NUL anywhere: the line is refused, the next one is fine. */
	CHECK("US\0ER a\r\nNOOP\r\n", "ERR char\nCMD NOOP -\nEND idle\n");
	CHECK("RETR 1\0\r\n", "ERR char\nEND idle\n");
	/* Other control characters, a CR not before LF, DEL. */
	CHECK("NOOP\x01\r\n", "ERR char\nEND idle\n");
	CHECK("NO\rOP\r\nSTAT\r\n", "ERR char\nCMD STAT -\nEND idle\n");
	CHECK("NOOP\r\r\n", "ERR char\nEND idle\n");
	CHECK("NOOP\x7f\r\n", "ERR char\nEND idle\n");
	CHECK("LIST\t1\r\n", "ERR char\nEND idle\n");
	/* A keyword of 40 characters is a keyword; 41 is not (RFC 2449 4). */
	CHECK("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA x\r\n",
	      "CMD AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA x\nEND idle\n");
	CHECK("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA x\r\n", "ERR verb\nEND idle\n");
}

/* A command line of exactly n octets, CRLF included: "USER xxx...\r\n". */
static char *line_of(size_t n, const char *tail)
{
	size_t tl = strlen(tail);
	char *s = malloc(n + tl + 1);
	assert_non_null(s);
	memcpy(s, "USER ", 5);
	memset(s + 5, 'x', n - 7);
	memcpy(s + n - 2, "\r\n", 2);
	memcpy(s + n, tail, tl + 1);
	return s;
}

static void test_limits(void **state)
{
	(void)state;
	/* RFC 2449 4: 255 octets including CRLF is the longest command. */
	char *ok = line_of(255, "NOOP\r\n");
	struct buf exp = BUF_INIT;
	buf_printf(&exp, "CMD USER %.*s\nCMD NOOP -\nEND idle\n", 248, ok + 5);
	check_run(ok, strlen(ok), buf_cstr(&exp));
	buf_free(&exp);
	free(ok);

	char *over = line_of(256, "NOOP\r\n");
	check_run(over, strlen(over), "ERR toolong\nCMD NOOP -\nEND idle\n");
	free(over);

	/* 254 bytes and a bare LF: 255 octets, accepted. */
	char *bare = line_of(255, "");
	bare[253] = 'x';
	bare[254] = '\n';
	struct buf exp2 = BUF_INIT;
	buf_printf(&exp2, "CMD USER %.*s\nEND idle\n", 249, bare + 5);
	check_run(bare, 255, buf_cstr(&exp2));
	buf_free(&exp2);
	free(bare);

	/* A megabyte without LF: memory stays bounded (the struct), the line
	 * is reported once it ends, and the stream resynchronises. */
	size_t big = 1024 * 1024;
	char *huge = malloc(big + 16);
	assert_non_null(huge);
	memset(huge, 'A', big);
	memcpy(huge + big, "\r\nSTAT\r\n", 8);
	check_run(huge, big + 8, "ERR toolong\nCMD STAT -\nEND idle\n");
	/* Too long wins over a bad character seen first. */
	huge[3] = '\0';
	check_run(huge, big + 8, "ERR toolong\nCMD STAT -\nEND idle\n");
	free(huge);
}

static void test_line_mode(void **state)
{
	(void)state;
	/* SASL responses: whole lines, longer than commands allow. */
	CHECK("AUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\nSTAT\r\n",
	      "CMD AUTH PLAIN\nLINE AGFsaWNlAHNlY3JldA==\nCMD STAT -\nEND idle\n");
	CHECK("AUTH LOGIN\r\n*\r\n", "CMD AUTH LOGIN\nLINE *\nEND idle\n");
	CHECK("AUTH LOGIN\r\n\r\n", "CMD AUTH LOGIN\nLINE \nEND idle\n");
	/* 4096 octets with CRLF fit; 4097 do not. */
	size_t n = 4096;
	char *s = malloc(11 + n + 1);
	assert_non_null(s);
	memcpy(s, "AUTH PLAIN\n", 11);
	memset(s + 11, 'Q', n - 2);
	memcpy(s + 11 + n - 2, "\r\n", 2);
	struct buf exp = BUF_INIT;
	buf_printf(&exp, "CMD AUTH PLAIN\nLINE %.*s\nEND idle\n", (int)(n - 2), s + 11);
	check_run(s, 11 + n, buf_cstr(&exp));
	buf_free(&exp);
	free(s);
	s = malloc(11 + n + 2);
	assert_non_null(s);
	memcpy(s, "AUTH PLAIN\n", 11);
	memset(s + 11, 'Q', n - 1);
	memcpy(s + 11 + n - 1, "\r\n", 2);
	check_run(s, 11 + n + 1, "CMD AUTH PLAIN\nERR toolong\nEND idle\n");
	free(s);
	/* NUL in a SASL line is refused too. */
	CHECK("AUTH PLAIN\r\nAA\0A\r\n", "CMD AUTH PLAIN\nERR char\nEND idle\n");
}

static void test_split(void **state)
{
	(void)state;
	char *w[POP3_PARSER_MAX_WORDS];
	char a[] = "1  2 ";
	assert_int_equal(pop3_parser_split(a, w, 2), 2);
	assert_string_equal(w[0], "1");
	assert_string_equal(w[1], "2");
	char b[] = "1 2 3";
	assert_int_equal(pop3_parser_split(b, w, 2), -1);
	char c[] = "   ";
	assert_int_equal(pop3_parser_split(c, w, 2), 0);
	assert_int_equal(pop3_parser_split(NULL, w, 2), 0);
	char d[] = "x";
	assert_int_equal(pop3_parser_split(d, w, 0), -1);
	char e[] = "";
	assert_int_equal(pop3_parser_split(e, w, 0), 0);
}

static void test_number(void **state)
{
	(void)state;
	uint32_t v = 7;
	assert_int_equal(pop3_parser_number("0", UINT32_MAX, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(pop3_parser_number("4294967295", UINT32_MAX, &v), 0);
	assert_int_equal(v, 4294967295u);
	assert_int_equal(pop3_parser_number("0001", UINT32_MAX, &v), 0);
	assert_int_equal(v, 1);
	v = 7;
	assert_int_equal(pop3_parser_number("4294967296", UINT32_MAX, &v), -1);
	assert_int_equal(pop3_parser_number("99999999999999999999999999", UINT32_MAX, &v), -1);
	assert_int_equal(pop3_parser_number("-1", UINT32_MAX, &v), -1);
	assert_int_equal(pop3_parser_number("+1", UINT32_MAX, &v), -1);
	assert_int_equal(pop3_parser_number("1a", UINT32_MAX, &v), -1);
	assert_int_equal(pop3_parser_number("", UINT32_MAX, &v), -1);
	assert_int_equal(pop3_parser_number("0x10", UINT32_MAX, &v), -1);
	assert_int_equal(pop3_parser_number(NULL, UINT32_MAX, &v), -1);
	assert_int_equal(pop3_parser_number("11", 10, &v), -1);
	assert_int_equal(v, 7); /* untouched on failure */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_commands), cmocka_unit_test(test_errors),
		cmocka_unit_test(test_limits),	 cmocka_unit_test(test_line_mode),
		cmocka_unit_test(test_split),	 cmocka_unit_test(test_number),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
