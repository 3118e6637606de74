/*
 * fuzz_import_imap.c: libFuzzer target for the IMAP import client's
 * response parser (src/import/imapc_resp), which reads whatever a remote
 * server sends.
 *
 * Input layout: byte 0 seeds the slice sizes; the rest is the server's
 * stream. It is parsed twice, fed whole and in random slices, response
 * after response (reset after each DONE, stop at the first ERROR); a
 * literal that follows an atom BODY[] is streamed through the hooks as
 * import_imap.c does. The two transcripts (every response dumped, streamed
 * bytes included) must be identical.
 *
 * Invariants on each response: DONE consumes at most what it was given and
 * NEED_MORE all of it; every token lies inside the arena and its text is
 * NUL-terminated at its length; a list's end is after it and within the
 * response, nested lists end within their parent; the kept text never
 * passes IMAPC_RESP_MAX_TEXT; hooks are begun and ended in pairs.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "import/imapc_resp.h"
#include "lib/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
	if (!cond)
		abort();
}

struct run {
	struct buf out;
	int open; /* a streamed literal is between begin and end */
};

static int h_begin(void *ctx, const struct imapc_resp *r, uint64_t size)
{
	struct run *u = ctx;
	size_t n = imapc_resp_ntok(r);
	check(!u->open);
	if (n == 0 || !imapc_resp_is(r, n - 1, "BODY[]"))
		return 0;
	buf_printf(&u->out, "<begin %llu>", (unsigned long long)size);
	u->open = 1;
	return 1;
}

static int h_data(void *ctx, const char *d, size_t len)
{
	struct run *u = ctx;
	check(u->open && len > 0);
	buf_append(&u->out, d, len);
	return 0;
}

static int h_end(void *ctx)
{
	struct run *u = ctx;
	check(u->open);
	u->open = 0;
	buf_puts(&u->out, "<end>");
	return 0;
}

static void check_tokens(const struct imapc_resp *r, size_t from, size_t to)
{
	for (size_t i = from; i < to; i = imapc_resp_next(r, i)) {
		const struct imapc_tok *t = imapc_resp_tok(r, i);
		check(t != NULL);
		if (t->type == IMAPC_TOK_LIST || t->type == IMAPC_TOK_CODE) {
			check(t->end > i && t->end <= to);
			check_tokens(r, i + 1, t->end);
			continue;
		}
		if (t->type == IMAPC_TOK_ATOM || t->type == IMAPC_TOK_STRING ||
		    t->type == IMAPC_TOK_TEXT) {
			check((size_t)t->off + t->len < r->text.len);
			check(imapc_resp_str(r, i)[t->len] == '\0');
		}
	}
}

static void dump(const struct imapc_resp *r, struct buf *out)
{
	buf_printf(out, "[%s]", imapc_resp_tag(r));
	for (size_t i = 0; i < imapc_resp_ntok(r); i++) {
		const struct imapc_tok *t = imapc_resp_tok(r, i);
		buf_printf(out, " %d/%u/%llu:", (int)t->type, t->end, (unsigned long long)t->size);
		buf_append(out, imapc_resp_str(r, i), t->len);
	}
	buf_putc(out, '\n');
}

static void parse(const uint8_t *d, size_t len, uint8_t seed, int sliced, struct run *u)
{
	struct imapc_resp r;
	uint32_t rng = seed;
	size_t pos = 0;
	imapc_resp_init(&r);
	r.hooks = (struct imapc_resp_hooks){u, h_begin, h_data, h_end};
	while (pos < len) {
		size_t n = len - pos;
		if (sliced) {
			rng = rng * 1103515245u + 12345u;
			size_t k = 1 + (rng >> 16) % 97;
			n = k < n ? k : n;
		}
		size_t used = 0;
		struct error err = {ERR_OK, ""};
		enum imapc_resp_result res =
			imapc_resp_feed(&r, (const char *)d + pos, n, &used, &err);
		check(r.text.len <= IMAPC_RESP_MAX_TEXT);
		if (res == IMAPC_RESP_ERROR) {
			check(err.code != ERR_OK && err.text[0] != '\0');
			buf_puts(&u->out, "ERROR\n");
			break;
		}
		check(used <= n);
		pos += used;
		if (res == IMAPC_RESP_NEED_MORE) {
			check(used == n);
			continue;
		}
		check(!u->open);
		check(imapc_resp_depth(&r) == 0);
		check_tokens(&r, 0, imapc_resp_ntok(&r));
		dump(&r, &u->out);
		imapc_resp_reset(&r);
	}
	imapc_resp_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	struct run whole = {BUF_INIT, 0}, sliced = {BUF_INIT, 0};
	parse(data + 1, size - 1, data[0], 0, &whole);
	parse(data + 1, size - 1, data[0], 1, &sliced);
	check(whole.out.len == sliced.out.len);
	check(whole.out.len == 0 || memcmp(whole.out.data, sliced.out.data, whole.out.len) == 0);
	buf_free(&whole.out);
	buf_free(&sliced.out);
	return 0;
}
