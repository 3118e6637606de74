/*
 * test_imap_seqset.c: unit tests for src/imap/imap_seqset.
 *
 * Expected sets are written by hand from RFC 9051 section 9 (sequence-set,
 * seq-range, seq-number and their comments: ranges in either order, "*"
 * the largest number in use, UIDNEXT in an empty mailbox for UIDs, an
 * error for sequence numbers), RFC 5182 ("$") and RFC 4315 (COPYUID text).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "imap/imap_seqset.h"
#include "lib/buf.h"

/* Parses s and returns the set formatted back, or "ERR" on error. */
static char *fmt(const char *s, uint32_t star, unsigned int flags)
{
	struct imap_seqset set = IMAP_SEQSET_INIT;
	struct error error = {ERR_OK, ""};
	struct buf out = BUF_INIT;
	if (imap_seqset_parse(s, strlen(s), star, flags, &set, &error) < 0) {
		assert_int_equal(error.code, ERR_INVALID);
		assert_true(error.text[0] != '\0');
		buf_puts(&out, "ERR");
	} else {
		if (set.searchres)
			buf_puts(&out, "$");
		imap_seqset_format(&set, &out);
		/* invariant: sorted, disjoint, non-adjacent */
		for (size_t i = 0; i < set.count; i++) {
			assert_true(set.ranges[i].lo <= set.ranges[i].hi);
			if (i > 0)
				assert_true((uint64_t)set.ranges[i - 1].hi + 1 < set.ranges[i].lo);
		}
		imap_seqset_free(&set);
	}
	char *r = buf_steal(&out);
	assert_non_null(r);
	return r;
}

static void check(const char *s, uint32_t star, const char *want)
{
	char *got = fmt(s, star, IMAP_SEQSET_ALLOW_SEARCHRES);
	assert_string_equal(got, want);
	free(got);
}

static void test_parse(void **state)
{
	(void)state;
	check("1", 10, "1");
	check("1:5", 10, "1:5");
	check("5:1", 10, "1:5"); /* "2:4 and 4:2 are equivalent" */
	check("1:5,7,10:*", 20, "1:5,7,10:20");
	check("*", 20, "20");
	check("*:*", 20, "20");
	check("*:3", 20, "3:20");
	/* n:* with n > max is max:n (RFC 9051 9: 3291:* includes the last UID) */
	check("3291:*", 3000, "3000:3291");
	/* merging: overlapping and adjacent ranges, any order */
	check("7,1:3,4,2", 10, "1:4,7");
	check("10:12,1:20", 30, "1:20");
	check("5,6,7,8", 10, "5:8");
	check("4294967295", 1, "4294967295");
	check("1:4294967295,4294967295", 1, "1:4294967295");
	check("4294967294,4294967295,1", 5, "1,4294967294:4294967295");
	/* numbers above star are kept; the handler checks them */
	check("50", 10, "50");
}

static void test_errors(void **state)
{
	(void)state;
	const char *bad[] = { "", "0", "0:5", "5:0", "01", "1:05", "-1", "+1", "1,", ",1", "1,,2",
			      "1:", ":1", "1::2", "1:2:3", "a", "1 ", " 1", "1, 2", "4294967296",
			      "99999999999999999999", "1:4294967296", "**", "*1", "1*", "$,1", "1,$",
			      "$$", "1.5", "1;2" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *got = fmt(bad[i], 10, IMAP_SEQSET_ALLOW_SEARCHRES);
		if (strcmp(got, "ERR") != 0)
			fail_msg("accepted \"%s\" as %s", bad[i], got);
		free(got);
	}
	/* "*" in an empty mailbox (sequence numbers: star 0) */
	check("*", 0, "ERR");
	check("1:*", 0, "ERR");
	check("1", 0, "1");
	/* set_r untouched on error */
	struct imap_seqset set = { (struct imap_seqrange *)&set, 42, 0, false };
	struct error error;
	assert_int_equal(imap_seqset_parse("1,x", 3, 5, 0, &set, &error), -1);
	assert_int_equal(set.count, 42);
	assert_string_equal(error.text, "Invalid sequence set");
	assert_int_equal(imap_seqset_parse("0", 1, 5, 0, &set, &error), -1);
	assert_string_equal(error.text, "Invalid number 0 in sequence set");
}

static void test_searchres(void **state)
{
	(void)state;
	check("$", 10, "$");
	char *got = fmt("$", 10, 0);
	assert_string_equal(got, "ERR");
	free(got);
}

static void test_limit(void **state)
{
	(void)state;
	struct buf in = BUF_INIT;
	for (unsigned int i = 0; i < IMAP_SEQSET_MAX_RANGES; i++)
		buf_printf(&in, "%s%u", i ? "," : "", 2 * i + 1);
	struct imap_seqset set = IMAP_SEQSET_INIT;
	struct error error;
	assert_int_equal(imap_seqset_parse(in.data, in.len, 5, 0, &set, &error), 0);
	assert_int_equal(set.count, IMAP_SEQSET_MAX_RANGES);
	imap_seqset_free(&set);
	buf_puts(&in, ",1");
	assert_int_equal(imap_seqset_parse(in.data, in.len, 5, 0, &set, &error), -1);
	assert_string_equal(error.text, "Too many ranges in sequence set");
	buf_free(&in);
}

static void test_contains_iter(void **state)
{
	(void)state;
	struct imap_seqset set = IMAP_SEQSET_INIT;
	struct error error;
	assert_int_equal(imap_seqset_parse("2:4,9,4294967295", 16, 5, 0, &set, &error), 0);
	uint32_t yes[] = { 2, 3, 4, 9, 4294967295u };
	uint32_t no[] = { 0, 1, 5, 8, 10, 4294967294u };
	for (size_t i = 0; i < 5; i++)
		assert_true(imap_seqset_contains(&set, yes[i]));
	for (size_t i = 0; i < 6; i++)
		assert_false(imap_seqset_contains(&set, no[i]));
	assert_int_equal(imap_seqset_count(&set), 5);
	struct imap_seqset_iter it;
	uint32_t n;
	size_t k = 0;
	imap_seqset_iter_init(&it, &set);
	while (imap_seqset_iter_next(&it, &n)) {
		assert_true(k < 5);
		assert_int_equal(n, yes[k]);
		k++;
	}
	assert_int_equal(k, 5);
	assert_false(imap_seqset_iter_next(&it, &n));
	imap_seqset_free(&set);
	assert_int_equal(imap_seqset_count(&set), 0);
	imap_seqset_iter_init(&it, &set);
	assert_false(imap_seqset_iter_next(&it, &n));
	assert_false(imap_seqset_contains(&set, 1));
	/* the whole UID space counts without overflow */
	assert_int_equal(imap_seqset_parse("1:*", 3, 4294967295u, 0, &set, &error), 0);
	assert_int_equal(imap_seqset_count(&set), 4294967295ull);
	imap_seqset_free(&set);
}

static void test_add_format(void **state)
{
	(void)state;
	struct imap_seqset set = IMAP_SEQSET_INIT;
	struct buf out = BUF_INIT;
	/* ascending, as when collecting VANISHED UIDs */
	uint32_t uids[] = { 1, 2, 3, 7, 9, 10, 11, 12 };
	for (size_t i = 0; i < 8; i++)
		assert_int_equal(imap_seqset_add(&set, uids[i], uids[i]), 0);
	imap_seqset_format(&set, &out);
	assert_string_equal(out.data, "1:3,7,9:12");
	assert_int_equal(set.count, 3);
	/* out of order and overlapping */
	assert_int_equal(imap_seqset_add(&set, 8, 5), 0);
	assert_int_equal(imap_seqset_add(&set, 20, 20), 0);
	assert_int_equal(imap_seqset_add(&set, 4294967295u, 4294967290u), 0);
	buf_truncate(&out, 0);
	imap_seqset_format(&set, &out);
	assert_string_equal(out.data, "1:3,5:12,20,4294967290:4294967295");
	assert_int_equal(imap_seqset_add(&set, 4, 4), 0);
	assert_int_equal(imap_seqset_add(&set, 13, 19), 0);
	buf_truncate(&out, 0);
	imap_seqset_format(&set, &out);
	assert_string_equal(out.data, "1:20,4294967290:4294967295");
	imap_seqset_free(&set);
	/* empty set: nothing */
	buf_truncate(&out, 0);
	imap_seqset_format(&set, &out);
	assert_int_equal(out.len, 0);
	buf_free(&out);
}

static void test_format_uids(void **state)
{
	(void)state;
	struct buf out = BUF_INIT;
	uint32_t a[] = { 4, 1, 2, 3, 9, 10, 8 };
	imap_seqset_format_uids(a, 7, &out);
	assert_string_equal(out.data, "4,1:3,9:10,8");
	buf_truncate(&out, 0);
	uint32_t b[] = { 4294967294u, 4294967295u, 1 };
	imap_seqset_format_uids(b, 3, &out);
	assert_string_equal(out.data, "4294967294:4294967295,1");
	buf_truncate(&out, 0);
	uint32_t c[] = { 5 };
	imap_seqset_format_uids(c, 1, &out);
	assert_string_equal(out.data, "5");
	buf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_searchres),
		cmocka_unit_test(test_limit),
		cmocka_unit_test(test_contains_iter),
		cmocka_unit_test(test_add_format),
		cmocka_unit_test(test_format_uids),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
