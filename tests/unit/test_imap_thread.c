/*
 * test_imap_thread.c: unit tests for src/imap/imap_thread (RFC 5256 3).
 *
 * Expected thread lists are worked out by hand from the steps of RFC 5256
 * section 3 (REFERENCES 1-7, ORDEREDSUBJECT) and the thread-list grammar
 * of section 4; the hostile shapes (a 20,000-message reply chain, reference
 * loops, duplicate Message-IDs) must finish without deep recursion.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "imap/imap_thread.h"
#include "lib/buf.h"

static struct imap_thread_msg msg(uint32_t num, int64_t date, const char *base, bool reply,
				  const char *id, const char *refs, const char *irt)
{
	return (struct imap_thread_msg){ .num = num, .seq = num, .date = date, .base = base,
					 .is_reply = reply, .msgid = id, .refs = refs, .irt = irt };
}

static char *refs(const struct imap_thread_msg *m, size_t n)
{
	struct buf b = BUF_INIT;
	assert_int_equal(imap_thread_references(m, n, &b), 0);
	buf_puts(&b, "");
	return buf_steal(&b);
}

static void test_references_basic(void **state)
{
	(void)state;
	struct imap_thread_msg m[] = {
		msg(1, 100, "a", false, "<1@x>", NULL, NULL),
		msg(2, 300, "a", true, "<2@x>", "<1@x>", NULL),
		msg(3, 200, "a", true, "<3@x>", "<1@x>", NULL),
		msg(4, 150, "b", false, "<4@x>", NULL, "<3@x>"), /* In-Reply-To only */
		msg(5, 50, "c", false, "<5@x>", "<gone@x>", NULL),
		msg(6, 60, "d", false, "<6@x>", "<gone@x>", NULL),
	};
	/* 1 has children 3 (200) and 2 (300); 3 has child 4; 5 and 6 share a
	 * missing parent: a dummy with two children stays at the root (step
	 * 4B); roots by date: dummy (50), 1 (100) */
	char *s = refs(m, 6);
	assert_string_equal(s, "((5)(6))(1 (3 4)(2))");
	free(s);
}

static void test_references_subject_merge(void **state)
{
	(void)state;
	struct imap_thread_msg m[] = {
		msg(1, 100, "topic", false, "<1@x>", NULL, NULL),
		msg(2, 200, "topic", true, "<2@x>", NULL, NULL),
		msg(3, 300, "topic", false, "<3@x>", NULL, NULL),
		msg(4, 400, "", false, "<4@x>", NULL, NULL),
		msg(5, 500, "", false, "<5@x>", NULL, NULL),
	};
	/* step 6: 2 (a reply) goes under 1; 3 (not a reply) and 1 get a dummy
	 * parent; empty subjects are never merged */
	char *s = refs(m, 5);
	assert_string_equal(s, "((1 2)(3))(4)(5)");
	free(s);
}

static void test_references_merge_dummies(void **state)
{
	(void)state;
	struct imap_thread_msg m[] = {
		msg(1, 10, "alpha", false, "<1@x>", "<p1@x>", NULL),
		msg(2, 20, "beta", false, "<2@x>", "<p1@x>", NULL),
		msg(3, 30, "alpha", false, "<3@x>", "<p2@x>", NULL),
		msg(4, 40, "gamma", false, "<4@x>", "<p2@x>", NULL),
		msg(5, 50, "alpha", true, "<5@x>", NULL, NULL),
	};
	/* step 6C: the two dummies (subject "alpha": their first children)
	 * merge; 5 ("Re: alpha") then joins the merged dummy, whatever the
	 * merge did to the order of its children */
	char *s = refs(m, 5);
	assert_string_equal(s, "((1)(2)(3)(4)(5))");
	free(s);
}

static void test_references_hostile(void **state)
{
	(void)state;
	enum { N = 20000 };
	struct imap_thread_msg *m = calloc(N, sizeof(*m));
	char(*ids)[32] = calloc(N, 32);
	assert_non_null(m);
	assert_non_null(ids);
	for (int i = 0; i < N; i++) {
		snprintf(ids[i], 32, "<%d@x>", i);
		m[i] = msg((uint32_t)i + 1, i, "x", i > 0, ids[i], i > 0 ? ids[i - 1] : NULL, NULL);
	}
	struct buf b = BUF_INIT;
	assert_int_equal(imap_thread_references(m, N, &b), 0);
	buf_puts(&b, "");
	/* one chain: "(1 2 3 ... 20000)" */
	assert_true(strncmp(b.data, "(1 2 3 ", 7) == 0);
	assert_true(strcmp(b.data + b.len - 7, " 20000)") == 0);
	assert_null(strchr(b.data + 1, '('));
	buf_free(&b);
	/* a reference loop and duplicate IDs: every message once, no hang */
	struct imap_thread_msg l[] = {
		msg(1, 1, "a", false, "<a@x>", "<b@x>", NULL),
		msg(2, 2, "b", false, "<b@x>", "<a@x>", NULL),
		msg(3, 3, "c", false, "<a@x>", "<a@x> <a@x>", NULL),
		msg(4, 4, "d", false, NULL, "<c@x> <b@x> <c@x>", NULL),
	};
	char *s = refs(l, 4);
	for (int k = 1; k <= 4; k++) {
		char num[4];
		snprintf(num, sizeof(num), "%d", k);
		assert_non_null(strstr(s, num));
	}
	free(s);
	free(m);
	free(ids);
}

static void test_orderedsubject(void **state)
{
	(void)state;
	struct imap_thread_msg m[] = {
		msg(1, 300, "b", false, NULL, NULL, NULL), msg(2, 100, "a", false, NULL, NULL, NULL),
		msg(3, 200, "a", true, NULL, NULL, NULL),  msg(4, 150, "a", false, NULL, NULL, NULL),
		msg(5, 400, "b", false, NULL, NULL, NULL), msg(6, 50, "c", false, NULL, NULL, NULL),
	};
	struct buf b = BUF_INIT;
	assert_int_equal(imap_thread_orderedsubject(m, 6, &b), 0);
	buf_puts(&b, "");
	assert_string_equal(b.data, "(6)(2 (4)(3))(1 5)");
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_references_basic),
		cmocka_unit_test(test_references_subject_merge),
		cmocka_unit_test(test_references_merge_dummies),
		cmocka_unit_test(test_references_hostile),
		cmocka_unit_test(test_orderedsubject),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
