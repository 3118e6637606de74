/*
 * imap_seqset.c: sequence sets; see imap_seqset.h.
 *
 * Design note
 * -----------
 * Parsing is one left-to-right pass over "elem *("," elem)" with elem =
 * seq-number [":" seq-number] (RFC 9051 section 9). Each element becomes a
 * range with its ends ordered, appended unsorted; one qsort and a merge
 * pass at the end give the canonical form: sorted, disjoint and
 * non-adjacent (5:7,8 becomes 5:8). The number of elements is capped
 * (IMAP_SEQSET_MAX_RANGES) before the array grows, so memory is bounded by
 * the cap whatever the client sends. imap_seqset_add() keeps the canonical
 * form at every step, merging in place when the range lands at the end
 * (the common case when building a set from ascending UIDs).
 *
 * Invariant between calls: ranges[i].lo <= ranges[i].hi and
 * ranges[i].hi + 1 < ranges[i+1].lo (computed in 64 bits).
 */
#include "imap/imap_seqset.h"

#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"

static int reserve(struct imap_seqset *set, size_t n)
{
	if (set->cap - set->count >= n)
		return 0;
	if (n > SIZE_MAX / sizeof(struct imap_seqrange) / 2 - set->count)
		return -1;
	size_t cap = set->cap == 0 ? 8 : set->cap;
	while (cap - set->count < n)
		cap *= 2;
	struct imap_seqrange *r = realloc(set->ranges, cap * sizeof(*r));
	if (r == NULL)
		return -1;
	set->ranges = r;
	set->cap = cap;
	return 0;
}

static int cmp_range(const void *a, const void *b)
{
	const struct imap_seqrange *x = a, *y = b;
	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	if (x->hi != y->hi)
		return x->hi < y->hi ? -1 : 1;
	return 0;
}

/* Sorts and merges overlapping or adjacent ranges. */
static void normalize(struct imap_seqset *set)
{
	if (set->count < 2)
		return;
	qsort(set->ranges, set->count, sizeof(set->ranges[0]), cmp_range);
	size_t out = 0;
	for (size_t i = 1; i < set->count; i++) {
		struct imap_seqrange *last = &set->ranges[out];
		const struct imap_seqrange *r = &set->ranges[i];
		if ((uint64_t)r->lo <= (uint64_t)last->hi + 1) {
			if (r->hi > last->hi)
				last->hi = r->hi;
		} else {
			set->ranges[++out] = *r;
		}
	}
	set->count = out + 1;
}

/* seq-number = nz-number / "*" at s[*pos]; advances *pos. */
static int parse_number(const char *s, size_t len, size_t *pos, uint32_t star, uint32_t *n_r,
			struct error *err)
{
	size_t i = *pos;
	if (i < len && s[i] == '*') {
		if (star == 0) {
			/* RFC 9051 9: "*" in an empty mailbox is an error */
			error_set(err, ERR_INVALID, "'*' used in an empty mailbox");
			return -1;
		}
		*n_r = star;
		*pos = i + 1;
		return 0;
	}
	if (i >= len || s[i] < '1' || s[i] > '9') {
		error_set(err, ERR_INVALID, "%s",
			  i < len && s[i] == '0' ? "Invalid number 0 in sequence set"
						 : "Invalid sequence set");
		return -1;
	}
	uint64_t v = 0;
	while (i < len && s[i] >= '0' && s[i] <= '9') {
		v = v * 10 + (uint64_t)(s[i] - '0');
		if (v > UINT32_MAX) {
			error_set(err, ERR_INVALID, "Number too large in sequence set");
			return -1;
		}
		i++;
	}
	*n_r = (uint32_t)v;
	*pos = i;
	return 0;
}

int imap_seqset_parse(const char *s, size_t len, uint32_t star, unsigned int flags,
		      struct imap_seqset *set_r, struct error *err)
{
	struct imap_seqset set = IMAP_SEQSET_INIT;
	size_t pos = 0;

	if (len == 1 && s[0] == '$') {
		if ((flags & IMAP_SEQSET_ALLOW_SEARCHRES) == 0) {
			error_set(err, ERR_INVALID, "'$' not allowed here");
			return -1;
		}
		set.searchres = true;
		*set_r = set;
		return 0;
	}
	for (;;) {
		uint32_t lo, hi;
		if (parse_number(s, len, &pos, star, &lo, err) < 0)
			goto fail;
		hi = lo;
		if (pos < len && s[pos] == ':') {
			pos++;
			if (parse_number(s, len, &pos, star, &hi, err) < 0)
				goto fail;
		}
		if (set.count >= IMAP_SEQSET_MAX_RANGES) {
			error_set(err, ERR_INVALID, "Too many ranges in sequence set");
			goto fail;
		}
		if (reserve(&set, 1) < 0) {
			error_set(err, ERR_TEMP, "Out of memory");
			goto fail;
		}
		set.ranges[set.count].lo = lo < hi ? lo : hi;
		set.ranges[set.count].hi = lo < hi ? hi : lo;
		set.count++;
		if (pos == len)
			break;
		if (s[pos] != ',') {
			error_set(err, ERR_INVALID, "Invalid sequence set");
			goto fail;
		}
		pos++;
	}
	normalize(&set);
	*set_r = set;
	return 0;
fail:
	free(set.ranges);
	return -1;
}

int imap_seqset_add(struct imap_seqset *set, uint32_t lo, uint32_t hi)
{
	if (lo > hi) {
		uint32_t t = lo;
		lo = hi;
		hi = t;
	}
	if (set->count > 0) {
		struct imap_seqrange *last = &set->ranges[set->count - 1];
		if (lo >= last->lo && (uint64_t)lo <= (uint64_t)last->hi + 1) {
			if (hi > last->hi)
				last->hi = hi;
			return 0;
		}
	}
	if (reserve(set, 1) < 0)
		return -1;
	set->ranges[set->count].lo = lo;
	set->ranges[set->count].hi = hi;
	set->count++;
	if (set->count > 1 && lo <= set->ranges[set->count - 2].hi)
		normalize(set);
	else if (set->count > 1 && lo < set->ranges[set->count - 2].lo)
		normalize(set);
	return 0;
}

void imap_seqset_free(struct imap_seqset *set)
{
	free(set->ranges);
	set->ranges = NULL;
	set->count = 0;
	set->cap = 0;
	set->searchres = false;
}

bool imap_seqset_contains(const struct imap_seqset *set, uint32_t n)
{
	size_t lo = 0, hi = set->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct imap_seqrange *r = &set->ranges[mid];
		if (n < r->lo)
			hi = mid;
		else if (n > r->hi)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

uint64_t imap_seqset_count(const struct imap_seqset *set)
{
	uint64_t total = 0;
	for (size_t i = 0; i < set->count; i++)
		total += (uint64_t)set->ranges[i].hi - set->ranges[i].lo + 1;
	return total;
}

void imap_seqset_iter_init(struct imap_seqset_iter *it, const struct imap_seqset *set)
{
	it->set = set;
	it->i = 0;
	it->next = set->count > 0 ? set->ranges[0].lo : 0;
}

bool imap_seqset_iter_next(struct imap_seqset_iter *it, uint32_t *n_r)
{
	const struct imap_seqset *set = it->set;
	if (it->i >= set->count)
		return false;
	*n_r = (uint32_t)it->next;
	if (it->next >= set->ranges[it->i].hi) {
		it->i++;
		if (it->i < set->count)
			it->next = set->ranges[it->i].lo;
	} else {
		it->next++;
	}
	return true;
}

void imap_seqset_format(const struct imap_seqset *set, struct buf *out)
{
	for (size_t i = 0; i < set->count; i++) {
		const struct imap_seqrange *r = &set->ranges[i];
		if (r->lo == r->hi)
			buf_printf(out, "%s%u", i > 0 ? "," : "", (unsigned)r->lo);
		else
			buf_printf(out, "%s%u:%u", i > 0 ? "," : "", (unsigned)r->lo, (unsigned)r->hi);
	}
}

void imap_seqset_format_uids(const uint32_t *uids, size_t n, struct buf *out)
{
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		while (j + 1 < n && uids[j] != UINT32_MAX && uids[j + 1] == uids[j] + 1)
			j++;
		if (j == i)
			buf_printf(out, "%s%u", i > 0 ? "," : "", (unsigned)uids[i]);
		else
			buf_printf(out, "%s%u:%u", i > 0 ? "," : "", (unsigned)uids[i], (unsigned)uids[j]);
		i = j + 1;
	}
}
