/* fuzz_lmtp.c: LMTP command lines and the DATA dot-decoder take any bytes.
 * The first byte picks the slice size for the decoder; the result must not
 * depend on it (checked against a one-shot decode). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lmtp/lmtp_parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t decode(const char *in, size_t len, size_t step, char *out, size_t *rest)
{
	struct lmtp_dot d = { LMTP_DOT_LS };
	size_t o = 0, i = 0;
	*rest = 0;
	while (i < len) {
		size_t n = step == 0 || step > len - i ? len - i : step;
		size_t olen, used;
		bool end = lmtp_dot_feed(&d, in + i, n, out + o, &olen, &used);
		o += olen;
		i += used;
		if (end) {
			*rest = len - i;
			break;
		}
	}
	return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	size_t step = data[0] % 17;
	const char *in = (const char *)data + 1;
	size_t len = size - 1;

	static struct lmtp_command cmd;
	struct error why;
	const char *nl = memchr(in, '\n', len);
	size_t llen = nl ? (size_t)(nl - in) : len;
	if (lmtp_parse_command(in, llen, &cmd, &why) == 0) {
		if (strlen(cmd.address) > LMTP_MAX_ADDRESS || cmd.nparams > LMTP_MAX_PARAMS)
			abort();
		char l[LMTP_MAX_ADDRESS + 1], d[LMTP_MAX_ADDRESS + 1];
		(void)lmtp_split_address(cmd.address, l, sizeof(l), d, sizeof(d));
	} else if (why.code != ERR_INVALID || strlen(why.text) < 4) {
		abort();
	}

	char *a = malloc(len * 2 + 2), *b = malloc(len * 2 + 2);
	size_t ra, rb;
	size_t la = decode(in, len, 0, a, &ra);
	size_t lb = decode(in, len, step, b, &rb);
	if (la != lb || ra != rb || memcmp(a, b, la) != 0 || la > len)
		abort();
	free(a);
	free(b);
	return 0;
}
