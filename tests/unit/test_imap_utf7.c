/*
 * test_imap_utf7.c: unit tests for src/imap/imap_utf7.
 *
 * Encodings are worked out by hand from RFC 3501 section 5.1.3 (and its
 * example "~peter/mail/&U,BTFw-/&ZeVnLIqe-" = ~peter/mail/台北/日本語) and
 * RFC 2152's BASE64 of UTF-16BE.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "imap/imap_utf7.h"
#include "lib/buf.h"

/* Both directions: utf7 <-> utf8. */
static void pair(const char *utf7, const char *utf8)
{
	struct buf out = BUF_INIT;
	struct error error = {ERR_OK, ""};
	if (imap_utf7_decode(utf7, strlen(utf7), &out, &error) < 0)
		fail_msg("decode \"%s\": %s", utf7, error.text);
	assert_string_equal(buf_cstr(&out), utf8);
	buf_truncate(&out, 0);
	if (imap_utf7_encode(utf8, strlen(utf8), &out, &error) < 0)
		fail_msg("encode \"%s\": %s", utf8, error.text);
	assert_string_equal(buf_cstr(&out), utf7);
	buf_free(&out);
}

static void bad_utf7(const char *utf7)
{
	struct buf out = BUF_INIT;
	buf_puts(&out, "keep");
	struct error error = {ERR_OK, ""};
	if (imap_utf7_decode(utf7, strlen(utf7), &out, &error) == 0)
		fail_msg("decode accepted \"%s\" as \"%s\"", utf7, buf_cstr(&out));
	assert_int_equal(error.code, ERR_INVALID);
	assert_string_equal(buf_cstr(&out), "keep");
	buf_free(&out);
}

static void bad_utf8(const char *s, size_t len)
{
	struct buf out = BUF_INIT;
	struct error error = {ERR_OK, ""};
	assert_int_equal(imap_utf7_encode(s, len, &out, &error), -1);
	assert_int_equal(error.code, ERR_INVALID);
	assert_int_equal(out.len, 0);
	assert_int_equal(imap_utf7_utf8_check(s, len, &error), -1);
	buf_free(&out);
}

static void test_pairs(void **state)
{
	(void)state;
	pair("", "");
	pair("INBOX", "INBOX");
	pair("a b~c", "a b~c");
	pair("&-", "&");
	pair("Tom &- Jerry", "Tom & Jerry");
	pair("&-&-", "&&");
	/* RFC 3501 5.1.3 example */
	pair("~peter/mail/&U,BTFw-/&ZeVnLIqe-", "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e");
	/* é U+00E9: 00 E9 -> AOk */
	pair("caf&AOk-", "caf\xc3\xa9");
	/* two non-ASCII in one shift: é é -> 00E9 00E9 -> AOkA6Q */
	pair("&AOkA6Q-", "\xc3\xa9\xc3\xa9");
	/* shift then "&" */
	pair("&AOk-&-", "\xc3\xa9&");
	/* U+1F600 as a surrogate pair D83D DE00 -> 2D3eAA */
	pair("&2D3eAA-", "\xf0\x9f\x98\x80");
	/* control characters are encoded (TAB U+0009 -> AAk) */
	pair("a&AAk-b", "a\tb");
	/* DEL U+007F -> AH8 */
	pair("&AH8-", "\x7f");
	/* U+FFFF */
	pair("&,,8-", "\xef\xbf\xbf");
	/* "-" after a shift is a plain character */
	pair("&AOk--", "\xc3\xa9-");
}

static void test_bad_utf7(void **state)
{
	(void)state;
	bad_utf7("&");		  /* unterminated */
	bad_utf7("&AOk");	  /* unterminated */
	bad_utf7("&AOk-&AOk-");	  /* adjacent shifts: canonical is &AOkA6Q- */
	bad_utf7("&AGE-");	  /* "a" must represent itself */
	bad_utf7("&ACY-");	  /* "&" must be &- */
	bad_utf7("&AAA-");	  /* U+0000 */
	bad_utf7("&AO-");	  /* 12 bits: no whole UTF-16 unit */
	bad_utf7("&AOl-");	  /* non-zero leftover bits */
	bad_utf7("&AOkA-");	  /* 6 leftover bits: one char too many */
	bad_utf7("&AOk=-");	  /* padding not allowed */
	bad_utf7("&AO/-");	  /* "/" is "," in modified BASE64 */
	bad_utf7("&2D0-");	  /* high surrogate alone */
	bad_utf7("&2D0AQQ-");	  /* high surrogate followed by non-low */
	bad_utf7("&3gA-");	  /* low surrogate alone */
	bad_utf7("&2D0-&3gA-");	  /* a pair split across shifts */
	bad_utf7("caf\xc3\xa9");  /* raw 8-bit */
	bad_utf7("a\tb");	  /* raw control */
	bad_utf7("a\x7f");
	bad_utf7("&Jjo!-");	  /* "!" inside a shift */
}

static void test_bad_utf8(void **state)
{
	(void)state;
	bad_utf8("\xc3", 1);		     /* truncated */
	bad_utf8("\xc3(", 2);		     /* bad continuation */
	bad_utf8("\xc0\xaf", 2);	     /* overlong "/" */
	bad_utf8("\xe0\x80\xaf", 3);	     /* overlong */
	bad_utf8("\xed\xa0\x80", 3);	     /* surrogate U+D800 */
	bad_utf8("\xf4\x90\x80\x80", 4);     /* above U+10FFFF */
	bad_utf8("\xff", 1);
	bad_utf8("\x80", 1);
	bad_utf8("a\0b", 3);		     /* NUL */
	struct error error;
	assert_int_equal(imap_utf7_utf8_check("\xf0\x9f\x98\x80 ok", 7, &error), 0);
}

static void test_long(void **state)
{
	(void)state;
	/* a long run of non-ASCII crosses the encoder's internal pieces */
	struct buf u8 = BUF_INIT, u7 = BUF_INIT, back = BUF_INIT;
	for (int i = 0; i < 300; i++) {
		buf_puts(&u8, "\xe6\x97\xa5"); /* 日 */
		if (i % 97 == 0)
			buf_puts(&u8, "\xf0\x9f\x98\x80");
	}
	buf_puts(&u8, "x&y");
	struct error error;
	assert_int_equal(imap_utf7_encode(u8.data, u8.len, &u7, &error), 0);
	/* one shift, then "x&-y" */
	assert_int_equal(u7.data[0], '&');
	assert_ptr_equal(strchr(u7.data + 1, '&'), u7.data + u7.len - 3);
	assert_string_equal(u7.data + u7.len - 5, "-x&-y");
	assert_int_equal(imap_utf7_decode(u7.data, u7.len, &back, &error), 0);
	assert_int_equal(back.len, u8.len);
	assert_memory_equal(back.data, u8.data, u8.len);
	buf_free(&u8);
	buf_free(&u7);
	buf_free(&back);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pairs),
		cmocka_unit_test(test_bad_utf7),
		cmocka_unit_test(test_bad_utf8),
		cmocka_unit_test(test_long),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
