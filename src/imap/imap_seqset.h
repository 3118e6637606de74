/*
 * imap_seqset.h: IMAP sequence sets (RFC 9051 section 9, sequence-set).
 *
 * A set is a sorted list of disjoint, non-adjacent ranges of uint32
 * numbers (message sequence numbers or UIDs). Parsing resolves "*" with a
 * value given by the caller, puts each range's ends in order (RFC 9051 9:
 * "2:4 and 4:2 are equivalent", so "n:*" with n > max is max:n) and merges
 * them (the order of ranges is unimportant). Building sets by hand and
 * formatting them back to compact text serves COPYUID/APPENDUID (RFC 4315),
 * ESEARCH (RFC 4731) and VANISHED (RFC 7162).
 */
#ifndef MAILROOM_IMAP_SEQSET_H
#define MAILROOM_IMAP_SEQSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/error.h"

struct buf;

/* Most comma-separated elements accepted in one set. */
#define IMAP_SEQSET_MAX_RANGES 65536

/* imap_seqset_parse() flags */
#define IMAP_SEQSET_ALLOW_SEARCHRES 0x1 /* accept "$" (RFC 5182) */

struct imap_seqrange {
	uint32_t lo, hi; /* lo <= hi */
};

struct imap_seqset {
	struct imap_seqrange *ranges; /* sorted, disjoint, non-adjacent */
	size_t count;
	size_t cap;
	bool searchres; /* the set was "$": the saved search result (no ranges) */
};

#define IMAP_SEQSET_INIT { NULL, 0, 0, false }

struct imap_seqset_iter {
	const struct imap_seqset *set;
	size_t i;
	uint64_t next;
};

/*
 * Parses s[0..len) as a sequence-set. star is the value of "*": the number
 * of messages (sequence numbers) or the highest UID, or UIDNEXT in an empty
 * mailbox (UIDs); star == 0 (an empty mailbox with sequence numbers) makes
 * any "*" an error, which the caller answers with BAD (RFC 9051 9,
 * seq-number). Numbers are nz-number: no 0, no leading zero, at most
 * 4294967295. "$" alone is accepted with IMAP_SEQSET_ALLOW_SEARCHRES and
 * gives searchres = true and no ranges. Returns 0 and fills *set_r (its
 * previous content is ignored: free it first), or -1 with err set
 * (ERR_INVALID for bad input, ERR_TEMP when out of memory) and *set_r
 * untouched. Numbers above star are kept:
 * checking them against the mailbox is the caller's business.
 */
int imap_seqset_parse(const char *s, size_t len, uint32_t star, unsigned int flags,
		      struct imap_seqset *set_r, struct error *err);

/* Adds lo..hi (either order) and keeps the set sorted and merged. Returns
 * 0, or -1 when out of memory (the set is unchanged). Appending in
 * ascending order is O(1). */
int imap_seqset_add(struct imap_seqset *set, uint32_t lo, uint32_t hi);

/* Frees the ranges; the set is left empty and reusable. */
void imap_seqset_free(struct imap_seqset *set);

/* True when n is in the set (binary search). */
bool imap_seqset_contains(const struct imap_seqset *set, uint32_t n);

/* Number of values in the set. */
uint64_t imap_seqset_count(const struct imap_seqset *set);

/* Iteration in ascending order: init, then next() until it returns false.
 * The set must not change meanwhile. */
void imap_seqset_iter_init(struct imap_seqset_iter *it, const struct imap_seqset *set);
bool imap_seqset_iter_next(struct imap_seqset_iter *it, uint32_t *n_r);

/* Appends the set as compact text ("1:3,7,9:12"; nothing for an empty
 * set) to out (check out->failed). */
void imap_seqset_format(const struct imap_seqset *set, struct buf *out);

/* Appends uids[0..n) in the given order, runs of consecutive ascending
 * values written a:b ("4,1:3,9"): the order COPYUID needs (RFC 4315 3:
 * source and destination sets correspond element by element). */
void imap_seqset_format_uids(const uint32_t *uids, size_t n, struct buf *out);

#endif
