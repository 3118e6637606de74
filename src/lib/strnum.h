/*
 * strnum.h: parsing numbers from untrusted text, with overflow checks.
 * Never trust a length: every parser here refuses signs, blanks, empty
 * strings and values above max, instead of wrapping.
 */
#ifndef MAILROOM_STRNUM_H
#define MAILROOM_STRNUM_H

#include <stddef.h>
#include <stdint.h>

/* Parse all of s[0..len) as decimal digits into *v_r (<= max).
 * Returns 0, or -1 if empty, not all digits, or above max. */
int strnum_u64(const char *s, size_t len, uint64_t max, uint64_t *v_r);
/* Same for a NUL-terminated string. */
int strnum_u64z(const char *s, uint64_t max, uint64_t *v_r);
/* Parse a size with an optional K/M/G/T suffix (powers of 1024). */
int strnum_size(const char *s, uint64_t *v_r);

#endif
