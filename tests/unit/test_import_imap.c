/*
 * test_import_imap.c: unit tests for the IMAP import client's response
 * parser (src/import/imapc_resp). Canned server responses, each fed whole
 * and one byte at a time (the two must agree), are dumped as text and
 * compared with what RFC 3501 section 9's grammar says they are (and the
 * INTERNALDATE reader, import_imap_fetch_date, against instants worked out
 * by hand with the zone applied):
 *
 *   a:ATOM  s:"string"  nil  ( ... )  [ ... ] (a response code)
 *   t:"text"  lit:N (a literal handed to the hooks)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* before cmocka.h, which defines a macro skip() */
#include "import/imapc_resp.h"
#include "import/import_imap_int.h"
#include "lib/buf.h"

#include <cmocka.h>

/* ---- dumping ---------------------------------------------------------------- */

static void dump_str(struct buf *out, const char *s, size_t len)
{
	buf_putc(out, '"');
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == '"' || c == '\\' || c >= 0x7f)
			buf_printf(out, "\\x%02x", c);
		else
			buf_putc(out, (char)c);
	}
	buf_putc(out, '"');
}

static void dump_range(const struct imapc_resp *r, size_t from, size_t to, struct buf *out)
{
	for (size_t i = from; i < to; i = imapc_resp_next(r, i)) {
		const struct imapc_tok *t = imapc_resp_tok(r, i);
		buf_putc(out, ' ');
		switch (t->type) {
		case IMAPC_TOK_ATOM:
			buf_printf(out, "a:%s", imapc_resp_str(r, i));
			break;
		case IMAPC_TOK_STRING:
			buf_puts(out, "s:");
			dump_str(out, imapc_resp_str(r, i), t->len);
			break;
		case IMAPC_TOK_NIL:
			buf_puts(out, "nil");
			break;
		case IMAPC_TOK_TEXT:
			buf_puts(out, "t:");
			dump_str(out, imapc_resp_str(r, i), t->len);
			break;
		case IMAPC_TOK_STREAMED:
			buf_printf(out, "lit:%llu", (unsigned long long)t->size);
			break;
		case IMAPC_TOK_LIST:
		case IMAPC_TOK_CODE:
			buf_puts(out, t->type == IMAPC_TOK_LIST ? "(" : "[");
			dump_range(r, i + 1, t->end, out);
			buf_puts(out, t->type == IMAPC_TOK_LIST ? " )" : " ]");
			break;
		}
	}
}

static char *dump(const struct imapc_resp *r)
{
	struct buf out = BUF_INIT;
	buf_printf(&out, "%s:", imapc_resp_tag(r));
	dump_range(r, 0, imapc_resp_ntok(r), &out);
	return buf_steal(&out);
}

/* ---- streaming hooks: literals after BODY[] go to `streamed` ------------------ */

struct sink {
	struct buf streamed;
	int begins, ends;
	size_t depth_at_begin;
	int fail_data;
};

static int h_begin(void *ctx, const struct imapc_resp *r, uint64_t size)
{
	struct sink *s = ctx;
	(void)size;
	size_t n = imapc_resp_ntok(r);
	if (n == 0 || !imapc_resp_is(r, n - 1, "BODY[]"))
		return 0;
	s->begins++;
	s->depth_at_begin = imapc_resp_depth(r);
	return 1;
}

static int h_data(void *ctx, const char *data, size_t len)
{
	struct sink *s = ctx;
	if (s->fail_data)
		return -1;
	buf_append(&s->streamed, data, len);
	return 0;
}

static int h_end(void *ctx)
{
	struct sink *s = ctx;
	s->ends++;
	return 0;
}

/* ---- feeding ------------------------------------------------------------------ */

/* Parses in (len bytes) with slices of `step` bytes (0: all at once).
 * Returns the result; *used_r the bytes consumed in all. */
static enum imapc_resp_result feed(struct imapc_resp *r, const char *in, size_t len, size_t step,
				   size_t *used_r, struct error *err)
{
	size_t pos = 0;
	enum imapc_resp_result res = IMAPC_RESP_NEED_MORE;
	while (pos < len) {
		size_t n = step ? (len - pos < step ? len - pos : step) : len - pos;
		size_t used = 0;
		res = imapc_resp_feed(r, in + pos, n, &used, err);
		if (res == IMAPC_RESP_ERROR) {
			*used_r = pos + used;
			return res;
		}
		assert_true(used <= n);
		pos += used;
		if (res == IMAPC_RESP_DONE)
			break;
		assert_int_equal(used, n);
	}
	*used_r = pos;
	return res;
}

/* One response, whole and byte by byte: the dump must be `want` both ways
 * and all of `in` consumed. */
static void okn(const char *in, size_t len, const char *want)
{
	size_t steps[] = {0, 1, 2, 7};
	for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
		struct imapc_resp r;
		struct error err = {ERR_OK, ""};
		size_t used = 0;
		imapc_resp_init(&r);
		enum imapc_resp_result res = feed(&r, in, len, steps[k], &used, &err);
		if (res != IMAPC_RESP_DONE)
			fail_msg("\"%s\" (step %zu): result %d: %s", in, steps[k], res, err.text);
		assert_int_equal(used, len);
		char *d = dump(&r);
		if (strcmp(d, want) != 0)
			fail_msg("\"%s\" (step %zu):\n got  %s\n want %s", in, steps[k], d, want);
		free(d);
		imapc_resp_free(&r);
	}
}

static void ok(const char *in, const char *want)
{
	okn(in, strlen(in), want);
}

static void bad(const char *in, size_t len)
{
	size_t steps[] = {0, 1};
	for (size_t k = 0; k < 2; k++) {
		struct imapc_resp r;
		struct error err = {ERR_OK, ""};
		size_t used = 0;
		imapc_resp_init(&r);
		enum imapc_resp_result res = feed(&r, in, len, steps[k], &used, &err);
		if (res != IMAPC_RESP_ERROR)
			fail_msg("accepted \"%.*s\" (step %zu)", (int)len, in, steps[k]);
		assert_int_equal(err.code, ERR_INVALID);
		assert_true(err.text[0] != '\0');
		imapc_resp_free(&r);
	}
}

/* ---- tests -------------------------------------------------------------------- */

static void test_status(void **state)
{
	(void)state;
	ok("* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR AUTH=PLAIN] Dovecot ready.\r\n",
	   "*: a:OK [ a:CAPABILITY a:IMAP4rev1 a:LITERAL+ a:SASL-IR a:AUTH=PLAIN ] t:\"Dovecot "
	   "ready.\"");
	ok("m1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
	   "m1: a:NO [ a:AUTHENTICATIONFAILED ] t:\"Authentication failed.\"");
	ok("* OK [PERMANENTFLAGS (\\Answered \\Seen \\*)] Flags permitted.\r\n",
	   "*: a:OK [ a:PERMANENTFLAGS ( a:\\Answered a:\\Seen a:\\* ) ] t:\"Flags permitted.\"");
	ok("* OK [UIDVALIDITY 1700000000] UIDs valid\r\n",
	   "*: a:OK [ a:UIDVALIDITY a:1700000000 ] t:\"UIDs valid\"");
	ok("m7 ok [READ-ONLY] Examine completed (0.001 + 0.000 secs).\r\n",
	   "m7: a:ok [ a:READ-ONLY ] t:\"Examine completed (0.001 + 0.000 secs).\"");
	/* the text is free: quotes, brackets and parentheses mean nothing in it */
	ok("* BYE \"unbalanced ( text ] {5}\r\n", "*: a:BYE t:\"\\x22unbalanced ( text ] {5}\"");
	ok("* OK\r\n", "*: a:OK");
	ok("* OK \r\n", "*: a:OK t:\"\"");
	ok("* OK [ALERT]\r\n", "*: a:OK [ a:ALERT ]");
	ok("* PREAUTH [CAPABILITY IMAP4rev2] hi\n",
	   "*: a:PREAUTH [ a:CAPABILITY a:IMAP4rev2 ] t:\"hi\"");
	ok("* OK [HIGHESTMODSEQ 5]text\r\n", "*: a:OK [ a:HIGHESTMODSEQ a:5 ] t:\"text\"");
	/* OK that is not the first word is an atom like any other */
	ok("* 3 OK\r\n", "*: a:3 a:OK");
}

static void test_continuation(void **state)
{
	(void)state;
	ok("+ \r\n", "+: t:\"\"");
	ok("+\r\n", "+: t:\"\"");
	ok("+ YWJj\r\n", "+: t:\"YWJj\"");
	ok("+ Ready for literal data\n", "+: t:\"Ready for literal data\"");
}

static void test_list(void **state)
{
	(void)state;
	ok("* LIST (\\HasNoChildren \\Sent) \".\" Sent\r\n",
	   "*: a:LIST ( a:\\HasNoChildren a:\\Sent ) s:\".\" a:Sent");
	ok("* LIST (\\Noselect) NIL \"\"\r\n", "*: a:LIST ( a:\\Noselect ) nil s:\"\"");
	ok("* LIST () nil INBOX\r\n", "*: a:LIST ( ) nil a:INBOX");
	/* a literal in the name, holding what a quoted string cannot */
	ok("* LIST () \"/\" {11}\r\nname \"with\"\r\n",
	   "*: a:LIST ( ) s:\"/\" s:\"name \\x22with\\x22\"");
	ok("* LIST (\\Marked) \".\" {4}\r\na\r\nb\r\n",
	   "*: a:LIST ( a:\\Marked ) s:\".\" s:\"a\\x0d\\x0ab\"");
	/* quoted specials: \" and \\ */
	ok("* LIST () \"\\\\\" \"a\\\"b\\\\c\"\r\n",
	   "*: a:LIST ( ) s:\"\\x5c\" s:\"a\\x22b\\x5cc\"");
	/* modified UTF-7 and 8-bit (UTF8=ACCEPT) names pass as they are */
	ok("* LIST () \".\" Entw&APw-rfe\r\n", "*: a:LIST ( ) s:\".\" a:Entw&APw-rfe");
	ok("* LIST () \".\" \"Entw\xc3\xbcrfe\"\r\n",
	   "*: a:LIST ( ) s:\".\" s:\"Entw\\xc3\\xbcrfe\"");
	/* an astring atom may hold ']' */
	ok("* LSUB () \".\" a]b\r\n", "*: a:LSUB ( ) s:\".\" a:a]b");
	/* LIST-EXTENDED's extended items */
	ok("* LIST (\\Subscribed) \"/\" x (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n",
	   "*: a:LIST ( a:\\Subscribed ) s:\"/\" a:x ( s:\"CHILDINFO\" ( s:\"SUBSCRIBED\" ) )");
}

static void test_spacing(void **state)
{
	(void)state;
	ok("*  3   EXISTS\r\n", "*: a:3 a:EXISTS");
	ok("* LIST  ( \\Noselect )  NIL  \"\" \r\n", "*: a:LIST ( a:\\Noselect ) nil s:\"\"");
	ok("* 1 FETCH (FLAGS())\r\n", "*: a:1 a:FETCH ( a:FLAGS ( ) )");
	ok("* 1 FETCH (FLAGS(\\Seen)UID 4)\r\n",
	   "*: a:1 a:FETCH ( a:FLAGS ( a:\\Seen ) a:UID a:4 )");
}

static void test_fetch(void **state)
{
	(void)state;
	ok("* 12 FETCH (UID 7 FLAGS (\\Seen $Forwarded) INTERNALDATE \"17-Jul-1996 02:44:25 "
	   "-0700\" "
	   "RFC822.SIZE 44 BODY[] {5}\r\nhello)\r\n",
	   "*: a:12 a:FETCH ( a:UID a:7 a:FLAGS ( a:\\Seen a:$Forwarded ) a:INTERNALDATE "
	   "s:\"17-Jul-1996 02:44:25 -0700\" a:RFC822.SIZE a:44 a:BODY[] s:\"hello\" )");
	/* a section with spaces and parentheses is one atom */
	ok("* 1 FETCH (BODY[HEADER.FIELDS (FROM TO)] {3}\r\nab\n)\r\n",
	   "*: a:1 a:FETCH ( a:BODY[HEADER.FIELDS (FROM TO)] s:\"ab\\x0a\" )");
	ok("* 1 FETCH (BODY[]<0> \"x\")\r\n", "*: a:1 a:FETCH ( a:BODY[]<0> s:\"x\" )");
	/* literal8 (RFC 3516), a zero-length literal, LITERAL+ syntax, NIL body */
	okn("* 1 FETCH (BINARY[] ~{3}\r\na\0c)\r\n", 32,
	    "*: a:1 a:FETCH ( a:BINARY[] s:\"a\\x00c\" )");
	ok("* 1 FETCH (BODY[] {0}\r\n)\r\n", "*: a:1 a:FETCH ( a:BODY[] s:\"\" )");
	ok("* 1 FETCH (BODY[] {2+}\r\nab)\r\n", "*: a:1 a:FETCH ( a:BODY[] s:\"ab\" )");
	ok("* 1 FETCH (BODY[] NIL UID 3)\r\n", "*: a:1 a:FETCH ( a:BODY[] nil a:UID a:3 )");
	ok("* 2 FETCH (ENVELOPE (NIL \"s\" ((\"A\" NIL \"a\" \"b.c\")) NIL))\r\n",
	   "*: a:2 a:FETCH ( a:ENVELOPE ( nil s:\"s\" ( ( s:\"A\" nil s:\"a\" s:\"b.c\" ) ) nil ) "
	   ")");
}

static void test_numbers(void **state)
{
	(void)state;
	struct imapc_resp r;
	struct error err = {ERR_OK, ""};
	size_t used;
	const char *in = "* 4294967295 EXISTS 18446744073709551615 18446744073709551616 12a\r\n";
	imapc_resp_init(&r);
	assert_int_equal(imapc_resp_feed(&r, in, strlen(in), &used, &err), IMAPC_RESP_DONE);
	uint64_t n = 0;
	assert_int_equal(imapc_resp_num(&r, 0, &n), 0);
	assert_true(n == 4294967295u);
	assert_int_equal(imapc_resp_num(&r, 1, &n), -1);
	assert_int_equal(imapc_resp_num(&r, 2, &n), 0);
	assert_true(n == UINT64_MAX);
	assert_int_equal(imapc_resp_num(&r, 3, &n), -1);
	assert_int_equal(imapc_resp_num(&r, 4, &n), -1);
	assert_int_equal(imapc_resp_num(&r, 99, &n), -1);
	assert_true(imapc_resp_is(&r, 1, "exists"));
	assert_string_equal(imapc_resp_str(&r, 99), "");
	imapc_resp_free(&r);
}

/* Two responses in one read: DONE stops after the first; after a reset the
 * rest parses. */
static void test_pipelined(void **state)
{
	(void)state;
	struct imapc_resp r;
	struct error err = {ERR_OK, ""};
	const char *in = "* 2 EXISTS\r\n* 1 RECENT\r\nm3 OK done\r\n";
	size_t pos = 0, used;
	const char *want[] = {"*: a:2 a:EXISTS", "*: a:1 a:RECENT", "m3: a:OK t:\"done\""};
	imapc_resp_init(&r);
	for (int k = 0; k < 3; k++) {
		imapc_resp_reset(&r);
		assert_int_equal(imapc_resp_feed(&r, in + pos, strlen(in) - pos, &used, &err),
				 IMAPC_RESP_DONE);
		pos += used;
		char *d = dump(&r);
		assert_string_equal(d, want[k]);
		free(d);
	}
	assert_int_equal(pos, strlen(in));
	imapc_resp_free(&r);
}

static void test_errors(void **state)
{
	(void)state;
	bad("* LIST (a\r\n", 11);
	bad("* 1 FETCH (a))\r\n", 16);
	bad("* x {x}\r\n", 9);
	bad("* x {}\r\n", 8);
	bad("* x {3+4}\r\nabc\r\n", 16);
	bad("* x {3} \r\nabc\r\n", 15);
	bad("* x\ry\r\n", 7);
	bad("* x \"a\r\nb\"\r\n", 12);
	bad("* x \"a\0b\"\r\n", 11);
	bad("* x a\x01 b\r\n", 10);
	bad("* \x02\r\n", 5);
	bad("\r\n", 2);
	bad(" * OK\r\n", 7);
	bad("*\r\n", 3);
	bad("* \r\n", 4);
	bad("* OK [ALERT\r\n", 13);
	bad("* OK(x)\r\n", 9);
	bad("* x {18446744073709551616}\r\n", 28);
	/* a literal over the limit is refused from its size, before any byte */
	bad("* x {999999999}\r\n", 17);
	char deep[200];
	strcpy(deep, "* x ");
	for (int i = 0; i < IMAPC_RESP_MAX_DEPTH + 1; i++)
		strcat(deep, "(");
	strcat(deep, "\r\n");
	bad(deep, strlen(deep));
	char longtag[100];
	memset(longtag, 'a', 80);
	strcpy(longtag + 80, " OK\r\n");
	bad(longtag, strlen(longtag));
}

/* The kept text is bounded: a response just over the limit is refused. */
static void test_limit(void **state)
{
	(void)state;
	size_t n = IMAPC_RESP_MAX_TEXT + 16;
	char *in = malloc(n + 8);
	assert_non_null(in);
	memcpy(in, "* x ", 4);
	memset(in + 4, 'a', n - 4);
	memcpy(in + n, "\r\n", 2);
	struct imapc_resp r;
	struct error err = {ERR_OK, ""};
	size_t used;
	imapc_resp_init(&r);
	assert_int_equal(imapc_resp_feed(&r, in, n + 2, &used, &err), IMAPC_RESP_ERROR);
	assert_int_equal(err.code, ERR_INVALID);
	imapc_resp_free(&r);
	free(in);
}

/* A BODY[] literal goes to the hooks in pieces and is not kept: the same
 * bytes whatever the slicing, a STREAMED token with its size. */
static void test_streaming(void **state)
{
	(void)state;
	size_t body_len = 3 * 65536 + 17;
	char *body = malloc(body_len);
	assert_non_null(body);
	for (size_t i = 0; i < body_len; i++)
		body[i] = (char)(i % 251); /* NUL, CR, LF, 8-bit: all of them */
	struct buf in = BUF_INIT;
	buf_printf(&in, "* 3 FETCH (UID 9 BODY[] {%zu}\r\n", body_len);
	buf_append(&in, body, body_len);
	buf_puts(&in, " FLAGS (x))\r\n");
	size_t steps[] = {0, 1, 4096, 65537};
	for (size_t k = 0; k < 4; k++) {
		struct sink s = {BUF_INIT, 0, 0, 0, 0};
		struct imapc_resp r;
		struct error err = {ERR_OK, ""};
		size_t used;
		imapc_resp_init(&r);
		r.hooks = (struct imapc_resp_hooks){&s, h_begin, h_data, h_end};
		assert_int_equal(feed(&r, in.data, in.len, steps[k], &used, &err), IMAPC_RESP_DONE);
		assert_int_equal(used, in.len);
		assert_int_equal(s.begins, 1);
		assert_int_equal(s.ends, 1);
		assert_int_equal(s.depth_at_begin, 1);
		assert_int_equal(s.streamed.len, body_len);
		assert_memory_equal(s.streamed.data, body, body_len);
		assert_true(r.text.len < 200); /* the body was not kept */
		char *d = dump(&r);
		char want[128];
		snprintf(want, sizeof(want),
			 "*: a:3 a:FETCH ( a:UID a:9 a:BODY[] lit:%zu a:FLAGS ( a:x ) )", body_len);
		assert_string_equal(d, want);
		free(d);
		buf_free(&s.streamed);
		imapc_resp_free(&r);
	}
	/* a hook that fails stops the parse */
	struct sink s = {BUF_INIT, 0, 0, 0, 1};
	struct imapc_resp r;
	struct error err = {ERR_OK, ""};
	size_t used;
	imapc_resp_init(&r);
	r.hooks = (struct imapc_resp_hooks){&s, h_begin, h_data, h_end};
	assert_int_equal(imapc_resp_feed(&r, in.data, in.len, &used, &err), IMAPC_RESP_ERROR);
	assert_int_equal(s.ends, 0);
	imapc_resp_free(&r);
	buf_free(&in);
	free(body);
}

static void test_date(void **state)
{
	(void)state;
	assert_true(import_imap_fetch_date("17-Jul-1996 02:44:25 -0700") == 837596665);
	assert_true(import_imap_fetch_date("29-Feb-2024 23:59:59 +1400") == 1709200799);
	assert_true(import_imap_fetch_date("01-Jan-1970 00:00:00 +0000") == 0);
	assert_true(import_imap_fetch_date(" 7-Jan-2001 10:00:00 -1200") == 978904800);
	assert_true(import_imap_fetch_date("7-jan-2001 10:00:00 -1200") == 978904800);
	const char *bad_dates[] = {"",
				   " ",
				   "17-Jux-1996 02:44:25 -0700",
				   "17-Jul-1996 02:44:25",
				   "17-Jul-1996 02:44:25 0700",
				   "17-Jul-1996 24:00:00 +0000",
				   "32-Jul-1996 02:44:25 -0700",
				   "17-Jul-1996 02:44:25 -0700x",
				   "17-Jul-96 02:44:25 -0700",
				   "17-Jul-1996 2:44:25 -0700",
				   "1"};
	for (size_t i = 0; i < sizeof(bad_dates) / sizeof(bad_dates[0]); i++)
		if (import_imap_fetch_date(bad_dates[i]) != -1)
			fail_msg("accepted date \"%s\"", bad_dates[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status),	  cmocka_unit_test(test_continuation),
		cmocka_unit_test(test_list),	  cmocka_unit_test(test_spacing),
		cmocka_unit_test(test_fetch),	  cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_pipelined), cmocka_unit_test(test_errors),
		cmocka_unit_test(test_limit),	  cmocka_unit_test(test_streaming),
		cmocka_unit_test(test_date),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
