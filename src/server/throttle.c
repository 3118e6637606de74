/*
 * throttle.c: restart throttling for the master's children (see server.h).
 *
 * Design note. A child (the auth process, or one of the workers: each kind
 * has its own struct throttle) that dies within restart_min_uptime seconds
 * of its start is an "early" death: whatever killed it will most likely kill
 * the next one too (an unreadable DATA, a missing library, a bad setting the
 * start-up check cannot see). Restarting it at once is a fork bomb with a
 * log to match, so the kind is throttled, as Dovecot's master does it
 * (service_throttle(), "command startup failed, throttling for N secs"): no
 * child of that kind starts for 1 s, then 2, 4, ... up to 60 s, and the
 * master logs one line per back-off, not one per death.
 *
 * The back-off is reset when the kind has shown that it runs: a child that
 * dies after restart_min_uptime seconds (an admin's kill -9, a crash under
 * load) is restarted at once, and so is an early death that comes at least
 * restart_min_uptime seconds after the last back-off ended (the child that
 * was started then ran that long, or died late: either way it ran).
 *
 * Deaths that come while a back-off is already running (two workers started
 * together that both die) are counted in the next back-off's line; they do
 * not lengthen the back-off.
 *
 * Times are milliseconds of CLOCK_MONOTONIC, passed in: the functions here
 * read no clock, so the unit tests drive them.
 */
#include "server/server.h"

unsigned throttle_next_delay(unsigned delay)
{
	if (delay < THROTTLE_MIN_DELAY)
		return THROTTLE_MIN_DELAY;
	if (delay >= THROTTLE_MAX_DELAY / 2)
		return THROTTLE_MAX_DELAY;
	return delay * 2;
}

int throttle_death(struct throttle *t, int64_t started_ms, int64_t now_ms, unsigned min_uptime_s)
{
	int64_t min_ms = (int64_t)min_uptime_s * 1000;
	if (now_ms - started_ms >= min_ms) {
		t->delay = 0;
		t->early = 0;
		return THROTTLE_NONE;
	}
	if (now_ms - t->until_ms >= min_ms) {
		/* It ran since the last back-off ended: start over at 1 s. */
		t->delay = 0;
		t->early = 0;
	}
	t->early++;
	if (now_ms < t->until_ms)
		return THROTTLE_RUNNING;
	t->delay = throttle_next_delay(t->delay);
	t->until_ms = now_ms + (int64_t)t->delay * 1000;
	return THROTTLE_BEGIN;
}

int throttle_blocked(const struct throttle *t, int64_t now_ms)
{
	return now_ms < t->until_ms;
}
