/*
 * test_throttle.c: src/server/throttle.c: the restart back-off of the
 * master's children (1 s doubling to 60 s, reset once a child has run
 * restart_min_uptime seconds), driven with made-up clocks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "server/server.h"

#define S 1000 /* one second in the throttle's milliseconds */

static void test_next_delay(void **state)
{
	(void)state;
	unsigned want[] = { 1, 2, 4, 8, 16, 32, 60, 60, 60 };
	unsigned d = 0;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		d = throttle_next_delay(d);
		assert_int_equal(d, want[i]);
	}
	assert_int_equal(throttle_next_delay(59), 60);
	assert_int_equal(throttle_next_delay(30), 60);
	assert_int_equal(throttle_next_delay(29), 58);
}

/* A child that dies at once, every time it is started when the back-off
 * ends: the delays double up to 60 s, one BEGIN per death. */
static void test_dies_at_start(void **state)
{
	(void)state;
	struct throttle t;
	memset(&t, 0, sizeof(t));
	int64_t now = 1000 * S;
	unsigned want[] = { 1, 2, 4, 8, 16, 32, 60, 60 };
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		int64_t started = now;
		now += 5; /* dies 5 ms after its start */
		assert_int_equal(throttle_death(&t, started, now, 10), THROTTLE_BEGIN);
		assert_int_equal(t.delay, want[i]);
		assert_int_equal(t.early, i + 1);
		assert_true(throttle_blocked(&t, now));
		assert_true(throttle_blocked(&t, now + (int64_t)want[i] * S - 1));
		assert_false(throttle_blocked(&t, now + (int64_t)want[i] * S));
		now += (int64_t)want[i] * S; /* the next one starts when it may */
	}
}

/* Deaths during a running back-off are counted, do not lengthen it. */
static void test_deaths_during_a_backoff(void **state)
{
	(void)state;
	struct throttle t;
	memset(&t, 0, sizeof(t));
	int64_t now = 1000 * S;
	assert_int_equal(throttle_death(&t, now - 10, now, 10), THROTTLE_BEGIN);
	assert_int_equal(throttle_death(&t, now - 10, now + 1, 10), THROTTLE_RUNNING);
	assert_int_equal(t.early, 2);
	assert_int_equal(t.delay, 1);
	assert_false(throttle_blocked(&t, now + S));
	assert_int_equal(throttle_death(&t, now + S, now + S + 3, 10), THROTTLE_BEGIN);
	assert_int_equal(t.early, 3);
	assert_int_equal(t.delay, 2);
}

/* A death after min_uptime: at once, and the back-off starts over; so does
 * an early death that comes min_uptime after the last back-off ended. */
static void test_reset(void **state)
{
	(void)state;
	struct throttle t;
	memset(&t, 0, sizeof(t));
	int64_t now = 1000 * S;
	for (int i = 0; i < 4; i++) {
		assert_int_equal(throttle_death(&t, now, now + 1, 10), THROTTLE_BEGIN);
		now = t.until_ms;
	}
	assert_int_equal(t.delay, 8);
	/* started when the back-off ended, ran 10 s: a late death */
	assert_int_equal(throttle_death(&t, now, now + 10 * S, 10), THROTTLE_NONE);
	assert_int_equal(t.delay, 0);
	assert_int_equal(t.early, 0);
	assert_false(throttle_blocked(&t, now + 10 * S));

	for (int i = 0; i < 3; i++) {
		assert_int_equal(throttle_death(&t, now, now + 1, 10), THROTTLE_BEGIN);
		now = t.until_ms;
	}
	assert_int_equal(t.delay, 4);
	/* another child, started 9.99 s after the back-off ended, dies young:
	 * the one started then ran 9.99 s, not enough: 8 s */
	assert_int_equal(throttle_death(&t, now + 9990, now + 9995, 10), THROTTLE_BEGIN);
	assert_int_equal(t.delay, 8);
	now = t.until_ms;
	/* 10 s after it ended: the kind ran, back to 1 s */
	assert_int_equal(throttle_death(&t, now + 10 * S - 5, now + 10 * S, 10), THROTTLE_BEGIN);
	assert_int_equal(t.delay, 1);
	assert_int_equal(t.early, 1);
}

/* restart_min_uptime 0: never throttled. */
static void test_off(void **state)
{
	(void)state;
	struct throttle t;
	memset(&t, 0, sizeof(t));
	for (int i = 0; i < 100; i++)
		assert_int_equal(throttle_death(&t, 1000 * S, 1000 * S, 0), THROTTLE_NONE);
	assert_false(throttle_blocked(&t, 1000 * S));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_next_delay),	    cmocka_unit_test(test_dies_at_start),
		cmocka_unit_test(test_deaths_during_a_backoff), cmocka_unit_test(test_reset),
		cmocka_unit_test(test_off),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
