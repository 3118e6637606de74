/* strnum.c: overflow-checked number parsing; see strnum.h. */
#include "lib/strnum.h"

#include <string.h>

int strnum_u64(const char *s, size_t len, uint64_t max, uint64_t *v_r)
{
	uint64_t v = 0;
	if (len == 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (max - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*v_r = v;
	return 0;
}

int strnum_u64z(const char *s, uint64_t max, uint64_t *v_r)
{
	return strnum_u64(s, strlen(s), max, v_r);
}

int strnum_size(const char *s, uint64_t *v_r)
{
	size_t len = strlen(s);
	unsigned shift = 0;
	if (len > 0) {
		switch (s[len - 1]) {
		case 'k': case 'K': shift = 10; break;
		case 'm': case 'M': shift = 20; break;
		case 'g': case 'G': shift = 30; break;
		case 't': case 'T': shift = 40; break;
		default: break;
		}
		if (shift != 0)
			len--;
	}
	uint64_t v;
	if (strnum_u64(s, len, UINT64_MAX >> shift, &v) < 0)
		return -1;
	*v_r = v << shift;
	return 0;
}
