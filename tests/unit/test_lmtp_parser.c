/*
 * test_lmtp_parser.c: LMTP command lines (RFC 5321 4.1 grammar as RFC 2033
 * uses it) and DATA dot-decoding (RFC 5321 4.5.2), the decoder fed whole,
 * one byte at a time and in every two-way split.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "lmtp/lmtp_parser.h"

static struct lmtp_command cmd;

static int parse(const char *line, struct error *why)
{
	return lmtp_parse_command(line, strlen(line), &cmd, why);
}

static void test_commands(void **state)
{
	(void)state;
	struct error why;
	assert_int_equal(parse("LHLO mta.example.org", &why), 0);
	assert_int_equal(cmd.verb, LMTP_LHLO);
	assert_string_equal(cmd.arg, "mta.example.org");
	assert_int_equal(parse("lhlo", &why), -1);
	assert_memory_equal(why.text, "501", 3);
	assert_int_equal(why.code, ERR_INVALID);
	assert_int_equal(parse("MAIL FROM:<a@b.c> SIZE=1000 BODY=8BITMIME", &why), 0);
	assert_int_equal(cmd.verb, LMTP_MAIL);
	assert_string_equal(cmd.address, "a@b.c");
	assert_int_equal(cmd.nparams, 2);
	assert_string_equal(cmd.params[0].name, "SIZE");
	assert_string_equal(cmd.params[0].value, "1000");
	assert_string_equal(cmd.params[1].value, "8BITMIME");
	assert_int_equal(parse("mail from:<>", &why), 0);
	assert_string_equal(cmd.address, "");
	assert_int_equal(parse("MAIL FROM: <x@y>", &why), 0); /* space tolerated */
	assert_string_equal(cmd.address, "x@y");
	assert_int_equal(parse("RCPT TO:<@relay1,@relay2:user@host>", &why), 0);
	assert_string_equal(cmd.address, "user@host"); /* source route dropped */
	assert_int_equal(parse("RCPT TO:<\"odd >name\"@host>", &why), 0);
	assert_string_equal(cmd.address, "\"odd >name\"@host");
	assert_int_equal(parse("RCPT TO:user@host", &why), -1);
	assert_int_equal(parse("RCPT TO:<user@host", &why), -1);
	assert_int_equal(parse("RCPT FROM:<user@host>", &why), -1);
	assert_int_equal(parse("BDAT 1234 LAST", &why), 0);
	assert_int_equal(cmd.chunk_size, 1234);
	assert_true(cmd.last);
	assert_int_equal(parse("BDAT 10", &why), 0);
	assert_false(cmd.last);
	assert_int_equal(parse("BDAT -1", &why), -1);
	assert_int_equal(parse("BDAT 99999999999999999999999", &why), -1);
	assert_int_equal(parse("BDAT 5 FIRST", &why), -1);
	assert_int_equal(parse("DATA x", &why), -1);
	assert_int_equal(parse("QUIT", &why), 0);
	assert_int_equal(parse("XYZZY", &why), -1);
	assert_memory_equal(why.text, "500", 3);
	char nul[] = "NOOP\0x";
	assert_int_equal(lmtp_parse_command(nul, 6, &cmd, &why), -1);
	char *long_line = malloc(LMTP_MAX_LINE + 10);
	memset(long_line, 'a', LMTP_MAX_LINE + 9);
	long_line[LMTP_MAX_LINE + 9] = '\0';
	assert_int_equal(parse(long_line, &why), -1);
	free(long_line);
	char big[LMTP_MAX_ADDRESS + 32] = "RCPT TO:<";
	memset(big + 9, 'x', LMTP_MAX_ADDRESS + 5);
	strcpy(big + 9 + LMTP_MAX_ADDRESS + 5, ">");
	assert_int_equal(parse(big, &why), -1);
	char params[600] = "MAIL FROM:<a@b>";
	for (int i = 0; i < 20; i++)
		strcat(params, " X=1");
	assert_int_equal(parse(params, &why), -1); /* too many parameters */
}

static void test_split_address(void **state)
{
	(void)state;
	char l[64], d[64];
	assert_int_equal(lmtp_split_address("alice@example.org", l, sizeof(l), d, sizeof(d)), 0);
	assert_string_equal(l, "alice");
	assert_string_equal(d, "example.org");
	assert_int_equal(lmtp_split_address("\"a@b\"@c", l, sizeof(l), d, sizeof(d)), 0);
	assert_string_equal(l, "a@b");
	assert_string_equal(d, "c");
	assert_int_equal(lmtp_split_address("postmaster", l, sizeof(l), d, sizeof(d)), 0);
	assert_string_equal(d, "");
	assert_int_equal(lmtp_split_address("@host", l, sizeof(l), d, sizeof(d)), -1);
}

/* Decode all of in, in slices of `step` bytes (0: all at once). */
static char *decode(const char *in, size_t len, size_t step, size_t *outlen, size_t *rest)
{
	struct lmtp_dot d = { LMTP_DOT_LS };
	char *out = malloc(len * 2 + 8);
	size_t o = 0, i = 0;
	*rest = 0;
	while (i < len) {
		size_t n = step == 0 || step > len - i ? len - i : step;
		size_t olen, used;
		bool end = lmtp_dot_feed(&d, in + i, n, out + o, &olen, &used);
		o += olen;
		i += used;
		if (end) {
			*rest = len - i;
			break;
		}
	}
	*outlen = o;
	return out;
}

static void check_decode(const char *in, const char *expect, size_t expect_rest)
{
	size_t len = strlen(in), elen = strlen(expect);
	for (size_t step = 0; step <= len; step++) {
		size_t olen, rest;
		char *out = decode(in, len, step, &olen, &rest);
		assert_int_equal(olen, elen);
		assert_memory_equal(out, expect, elen);
		assert_int_equal(rest, expect_rest);
		free(out);
	}
}

static void test_dot_decoding(void **state)
{
	(void)state;
	check_decode("Subject: a\r\n\r\nbody\r\n.\r\n", "Subject: a\r\n\r\nbody\r\n", 0);
	/* stuffed lines lose one dot */
	check_decode("..one\r\n...two\r\n.\r\n", ".one\r\n..two\r\n", 0);
	/* the terminator may be followed by the next command (pipelining) */
	check_decode("x\r\n.\r\nQUIT\r\n", "x\r\n", 6);
	/* bare LF line ends, and the bare-LF terminator */
	check_decode("a\nb\n.\n", "a\nb\n", 0);
	/* a dot not at a line start is data */
	check_decode("a.b\r\n x.\r\n.\r\n", "a.b\r\n x.\r\n", 0);
	/* ".\rX" is not the end */
	check_decode("a\r\n.\rX\r\n.\r\n", "a\r\n\rX\r\n", 0);
	/* the empty message */
	check_decode(".\r\n", "", 0);
	/* never ends: everything is data */
	check_decode("no end\r\n.. still\r\n", "no end\r\n. still\r\n", 0);
}

static void test_dot_unfinished_cr_split(void **state)
{
	(void)state;
	/* ".\r" at the end of one call and "X" in the next: the held CR comes
	 * out first (the +1 byte the header allows). */
	struct lmtp_dot d = { LMTP_DOT_LS };
	char out[8];
	size_t olen, used;
	assert_false(lmtp_dot_feed(&d, ".\r", 2, out, &olen, &used));
	assert_int_equal(olen, 0);
	assert_false(lmtp_dot_feed(&d, "X", 1, out, &olen, &used));
	assert_int_equal(olen, 2);
	assert_memory_equal(out, "\rX", 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_commands),
		cmocka_unit_test(test_split_address),
		cmocka_unit_test(test_dot_decoding),
		cmocka_unit_test(test_dot_unfinished_cr_split),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
