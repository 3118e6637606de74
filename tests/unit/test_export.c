/*
 * test_export.c: unit tests for the mbox side of src/import/export_mbox.c:
 * the mboxrd quoting (RFC 4155 appendix, the mboxrd rule: a line matching
 * ^>*From  gets one more '>'), the message writer (CRLF to LF, the status
 * headers at the end of the header, the From_ line in asctime form, the
 * blank line after each message) and the From_ line's sender.
 *
 * Expected outputs are written by hand from those rules; every case runs
 * with the input given whole and one byte at a time (the state must carry
 * over any split).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "import/export.h"
#include "lib/buf.h"

static void quote_with(const char *in, size_t len, size_t step, struct buf *out)
{
	struct export_mboxrd q;
	export_mboxrd_init(&q);
	for (size_t i = 0; i < len; i += step)
		export_mboxrd_quote(&q, in + i, len - i < step ? len - i : step, out);
	export_mboxrd_flush(&q, out);
}

static void quoted(const char *in, const char *want)
{
	for (size_t step = 1; step <= strlen(in) + 1; step = step == 1 ? 3 : step * 4) {
		struct buf out = BUF_INIT;
		quote_with(in, strlen(in), step, &out);
		if (strcmp(buf_cstr(&out), want) != 0)
			fail_msg("quote \"%s\" (slices of %zu): got \"%s\", want \"%s\"", in, step,
				 buf_cstr(&out), want);
		buf_free(&out);
	}
}

static void test_quote_from_lines(void **state)
{
	(void)state;
	quoted("From x\n", ">From x\n");
	quoted(">From x\n", ">>From x\n");
	quoted(">>>From x\n", ">>>>From x\n");
	quoted("a\nFrom b\nc\n", "a\n>From b\nc\n");
	quoted("From \n", ">From \n");
	quoted("From ", ">From "); /* decided at the space, even at the end */
	quoted("\nFrom x", "\n>From x");
}

static void test_quote_leaves_other_lines(void **state)
{
	(void)state;
	quoted("", "");
	quoted("From\n", "From\n"); /* no space: not a From_ line */
	quoted("Fromage\n", "Fromage\n");
	quoted(" From x\n", " From x\n");
	quoted("FROM x\n", "FROM x\n"); /* the match is case-sensitive */
	quoted("from x\n", "from x\n");
	quoted("x From y\n", "x From y\n");
	quoted(">Fro\n", ">Fro\n");
	quoted(">>\n", ">>\n");
	quoted(">Fro", ">Fro"); /* held at the end: flushed as it was */
	quoted(">>", ">>");
	quoted("Subject: From x\n", "Subject: From x\n");
	quoted(">\n>From x\n>", ">\n>>From x\n>");
}

/* What a mboxrd reader does to each line: take one '>' off ^>+From . */
static void unquote(const char *in, struct buf *out)
{
	const char *p = in;
	while (*p != '\0') {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) + 1 : strlen(p);
		size_t gt = 0;
		while (gt < len && p[gt] == '>')
			gt++;
		if (gt > 0 && len - gt >= 5 && memcmp(p + gt, "From ", 5) == 0)
			buf_append(out, p + 1, len - 1);
		else
			buf_append(out, p, len);
		p += len;
	}
}

static void test_quote_round_trip(void **state)
{
	(void)state;
	static const char *const cases[] = {
		"From a\n>From b\n>>From c\nFrom\n>From\n> From x\n",
		">>>>>>>>>>>>>From deep\nplain\n\nFrom end",
		"\n\n\nFrom \n>\n>>\n",
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct buf q = BUF_INIT, back = BUF_INIT;
		quote_with(cases[i], strlen(cases[i]), 1, &q);
		unquote(buf_cstr(&q), &back);
		assert_string_equal(buf_cstr(&back), cases[i]);
		buf_free(&q);
		buf_free(&back);
	}
}

/* A line of 100,000 '>' before "From ": the count is held, not the bytes,
 * and exactly one '>' is added. */
static void test_quote_long_run(void **state)
{
	(void)state;
	size_t n = 100000;
	char *in = malloc(n + 8);
	assert_non_null(in);
	memset(in, '>', n);
	memcpy(in + n, "From x\n", 8);
	struct buf out = BUF_INIT;
	quote_with(in, n + 7, 4096, &out);
	assert_int_equal(out.len, n + 8);
	assert_int_equal(out.data[0], '>');
	assert_memory_equal(out.data + 1, in, n + 7);
	buf_free(&out);
	free(in);
}

static void message(const char *in, int64_t date, const char *extra, const char *want)
{
	for (size_t step = 1; step <= strlen(in) + 1; step = step == 1 ? 5 : step * 8) {
		struct buf out = BUF_INIT;
		struct export_mbox_msg m;
		export_mbox_msg_begin(&m, "MAILER-DAEMON", date, extra, &out);
		for (size_t i = 0; i < strlen(in); i += step)
			export_mbox_msg_feed(&m, in + i,
					     strlen(in) - i < step ? strlen(in) - i : step, &out);
		export_mbox_msg_end(&m, &out);
		if (strcmp(buf_cstr(&out), want) != 0)
			fail_msg("message (slices of %zu): got\n%s\nwant\n%s", step, buf_cstr(&out),
				 want);
		buf_free(&out);
	}
}

static void test_message(void **state)
{
	(void)state;
	/* 1700000000 is 2023-11-14 22:13:20 UTC, a Tuesday */
	message("Subject: a\r\nFrom: b\r\n\r\nFrom here\r\n>From there\r\nend\r\n", 1700000000,
		"Status: RO\nX-UID: 7\n",
		"From MAILER-DAEMON Tue Nov 14 22:13:20 2023\n"
		"Subject: a\nFrom: b\nStatus: RO\nX-UID: 7\n\n"
		">From here\n>>From there\nend\n\n");
	/* no header at all: ours are the header */
	message("\r\nbody\r\n", 0, "X-UID: 1\n",
		"From MAILER-DAEMON Thu Jan  1 00:00:00 1970\nX-UID: 1\n\nbody\n\n");
	/* all header, no final newline: one is added, then ours */
	message("Subject: x", 86400 * 3, "X-UID: 2\n",
		"From MAILER-DAEMON Sun Jan  4 00:00:00 1970\nSubject: x\nX-UID: 2\n\n");
	/* a body without its last newline; a bare CR is kept, LF-only input too */
	message("S: 1\n\na\rb\nc", 0, "X-UID: 3\n",
		"From MAILER-DAEMON Thu Jan  1 00:00:00 1970\nS: 1\nX-UID: 3\n\na\rb\nc\n\n");
	/* a CR at the very end */
	message("S: 1\r\n\r\nx\r", 0, "",
		"From MAILER-DAEMON Thu Jan  1 00:00:00 1970\nS: 1\n\nx\r\n\n");
	/* an empty message */
	message("", 0, "X-UID: 4\n", "From MAILER-DAEMON Thu Jan  1 00:00:00 1970\nX-UID: 4\n\n");
}

static void sender(const char *head, const char *want)
{
	char s[64];
	export_mbox_sender(head, strlen(head), s, sizeof(s));
	assert_string_equal(s, want);
}

static void test_sender(void **state)
{
	(void)state;
	sender("Return-Path: <bob@example.org>\r\nSubject: x\r\n\r\n", "bob@example.org");
	sender("Subject: x\nreturn-path:   <a@b>\n\n", "a@b");
	sender("Return-Path: a@b\n\n", "a@b");
	sender("Return-Path: <>\r\n\r\n", "MAILER-DAEMON");
	sender("Subject: x\r\n\r\nReturn-Path: <late@x>\r\n", "MAILER-DAEMON");
	sender("Return-Path: <a b@c>\n\n", "MAILER-DAEMON");
	sender("", "MAILER-DAEMON");
	sender("Return-Path: <b\xc3\xa4" "d@x>\n\n", "MAILER-DAEMON"); /* 8-bit: not in a From_ line */
	sender("Return-Path: <cut", "MAILER-DAEMON");
	/* longer than the buffer: not truncated into another address */
	sender("Return-Path: "
	       "<aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@x>\n\n",
	       "MAILER-DAEMON");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_quote_from_lines),
		cmocka_unit_test(test_quote_leaves_other_lines),
		cmocka_unit_test(test_quote_round_trip),
		cmocka_unit_test(test_quote_long_run),
		cmocka_unit_test(test_message),
		cmocka_unit_test(test_sender),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
