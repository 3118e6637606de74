/*
 * auth_penalty.h: how long the auth process holds back an answer, and when
 * it refuses one, after failed logins. Pure bookkeeping: the caller passes
 * the time, so the unit tests need no clock.
 *
 * Design note. This follows Dovecot's auth_penalty (src/auth/auth-penalty.c:
 * a delay of AUTH_PENALTY_INIT_SECS = 2 s doubling with each failure up to
 * AUTH_PENALTY_MAX_SECS = 15 s, applied to the next requests, a repeat of
 * the same wrong password not counted, a success forgetting the penalty),
 * with one change: Dovecot keys the penalty by IP address alone, so ten
 * wrong passwords of one user slow down every user behind the same address
 * (webmail, NAT, a school). Here the growing delay belongs to the pair
 * (user, IP):
 *
 *  - a pair with k counted failures (k >= 1) has every answer held back
 *    d(k) = min(base * 2^(k-1), max): 2, 4, 8, 15, 15 ... s with the
 *    defaults; a failure that makes it k + 1 is answered after d(k + 1)
 *    (the first failure after base). A right password at k = 0 is answered
 *    at once. So a guesser of one account gets one guess per d(k) per
 *    connection, and a user who mistyped once waits 2 s for the next try;
 *  - the same wrong password again (a phone with a stale password) is not
 *    counted: it says nothing new (Dovecot compares a CRC32 of it; we keep
 *    a keyed 32-bit hash);
 *  - after pair_max_failures counted failures the pair is refused (RATE_
 *    LIMITED, password not checked, answered after d(k) like the pair's
 *    other answers) until it is forgotten. Dovecot never refuses; we keep mailroom's refusal because
 *    delays alone let many parallel connections guess max_connections /
 *    15 s times, but only for the pair: user A's right password is never
 *    refused because of user B's failures from the same address;
 *  - separately, every IP counts its failures for all users; past
 *    ip_max_failures within one window of forget_secs, every answer to that
 *    IP (right passwords too, so that a guesser cannot read success from
 *    an early answer) is held back max. It slows a sweep over many users
 *    down without refusing anybody;
 *  - a pair is forgotten forget_secs after its last counted failure, and
 *    on a success; an IP's count starts again after forget_secs;
 *  - an IPv6 address counts by its /48, as in Dovecot: an attacker with a
 *    prefix of his own cannot start afresh from each of its addresses.
 *
 * Memory is bounded: both tables are fixed, 4-way set-associative arrays
 * indexed by a hash seeded at random on creation (so an attacker cannot aim
 * at the set of someone else's entry); a full set gives up its entry with
 * the oldest failure. Filling the tables costs a guesser failures, which
 * put its IP over ip_max_failures long before an entry of another address
 * is lost.
 */
#ifndef MAILROOM_AUTH_PENALTY_H
#define MAILROOM_AUTH_PENALTY_H

#include <stdbool.h>
#include <time.h>

struct auth_penalty_settings {
	unsigned base_ms;	    /* first delay after a failure (0: no delays) */
	unsigned max_ms;	    /* the longest delay */
	unsigned forget_secs;	    /* forget a pair, restart an IP's count */
	unsigned pair_max_failures; /* refuse the pair past this many (0: never) */
	unsigned ip_max_failures;   /* slow the IP down past this many (0: never) */
};

struct auth_penalty;

/* NULL if out of memory. */
struct auth_penalty *auth_penalty_new(const struct auth_penalty_settings *set);
/* *p is NULL afterwards; NULL is a no-op. */
void auth_penalty_free(struct auth_penalty **p);

/* Before checking a password of user from ip at now: true if the pair is
 * refused (do not check; answer RATE_LIMITED after *delay_ms_r), else false
 * with *delay_ms_r the least delay of any answer to this attempt. */
bool auth_penalty_check(struct auth_penalty *p, const char *user, const char *ip, time_t now,
			unsigned *delay_ms_r);
/* The password pass was wrong: count it (unless it is the pair's last wrong
 * password again) and return how long to hold back this failure. */
unsigned auth_penalty_failed(struct auth_penalty *p, const char *user, const char *ip,
			     const char *pass, time_t now);
/* The password was right: forget the pair's failures. */
void auth_penalty_succeeded(struct auth_penalty *p, const char *user, const char *ip,
			    time_t now);

#endif
