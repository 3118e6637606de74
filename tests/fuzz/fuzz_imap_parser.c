/*
 * fuzz_imap_parser.c: libFuzzer target for src/imap (parser, seqset, utf7).
 *
 * Input layout: byte 0 picks limits (small ones reach the limit paths),
 * byte 1 seeds the callback answers (BUFFER / STREAM / REJECT per literal,
 * refusing synchronizing literals, failing literal_data()), bytes 2-3 seed
 * the slice sizes; the rest is what a client sends.
 *
 * The stream is run through a simulated server twice, fed whole and in
 * random slices, and the two transcripts must be identical: slicing must
 * never change a result. Invariants checked on the way: NEED_MORE consumes
 * everything; every DONE tree is well formed (types, NUL terminators, no
 * NUL outside literal8, depth and count within the limits); streamed bytes
 * add up to the STREAMED sizes. A command named IDLE or AUTHENTICATE puts
 * the server in line mode for one line (imap_parser_read_line()).
 *
 * Every atom, string and literal of a DONE command is also tried as a
 * sequence set (output sorted, disjoint, non-adjacent; formatting and
 * parsing again gives the same set; every range end is a member) and as a
 * mailbox name in both directions of modified UTF-7 (a decoded name encodes
 * back to the same bytes; valid UTF-8 encodes and decodes back).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap_parser.h"
#include "imap/imap_seqset.h"
#include "imap/imap_utf7.h"
#include "lib/buf.h"

static void check(int cond)
{
	if (!cond)
		abort();
}

struct sim {
	struct buf out;
	uint8_t answers;
	unsigned int nlit;
	uint64_t streamed;   /* bytes given to literal_data() this command */
	uint64_t stream_cap; /* sum of sizes of STREAM literals this command */
	bool fail_next;
	unsigned int max_depth;
};

static enum imap_literal_action cb_start(void *ctx, const char *name, size_t argc, uint64_t size,
					 bool is_sync, bool is_literal8)
{
	struct sim *s = ctx;
	check(name != NULL);
	check(size <= UINT32_MAX);
	buf_printf(&s->out, "START %s %zu %llu %d %d\n", name, argc, (unsigned long long)size,
		   is_sync, is_literal8);
	unsigned int k = (s->answers >> (s->nlit++ % 4 * 2)) & 3;
	s->fail_next = (s->answers & 0x80) && k == 1;
	if (k == 1) {
		s->stream_cap += size;
		return IMAP_LITERAL_STREAM;
	}
	return k == 3 ? IMAP_LITERAL_REJECT : IMAP_LITERAL_BUFFER;
}

static int cb_data(void *ctx, const void *data, size_t len)
{
	struct sim *s = ctx;
	check(len > 0);
	volatile unsigned char sink = 0;
	for (size_t i = 0; i < len; i++)
		sink ^= ((const unsigned char *)data)[i];
	(void)sink;
	if (s->fail_next)
		return -1;
	s->streamed += len;
	check(s->streamed <= s->stream_cap);
	return 0;
}

/* ------------------------------------------------------------------ */
/* seqset and utf7 on argument bytes                                   */

static void try_seqset(const char *str, size_t len, uint32_t star)
{
	struct imap_seqset set = IMAP_SEQSET_INIT, again = IMAP_SEQSET_INIT;
	struct error error;
	if (imap_seqset_parse(str, len, star, IMAP_SEQSET_ALLOW_SEARCHRES, &set, &error) < 0)
		return;
	for (size_t i = 0; i < set.count; i++) {
		check(set.ranges[i].lo <= set.ranges[i].hi);
		check(set.ranges[i].lo > 0);
		if (i > 0)
			check((uint64_t)set.ranges[i - 1].hi + 1 < set.ranges[i].lo);
		check(imap_seqset_contains(&set, set.ranges[i].lo));
		check(imap_seqset_contains(&set, set.ranges[i].hi));
		if (set.ranges[i].lo > 1)
			check(!imap_seqset_contains(&set, set.ranges[i].lo - 1));
	}
	if (!set.searchres) {
		struct buf text = BUF_INIT;
		imap_seqset_format(&set, &text);
		check(!text.failed);
		check(imap_seqset_parse(text.data, text.len, star, 0, &again, &error) == 0);
		check(again.count == set.count);
		check(set.count == 0 ||
		      memcmp(again.ranges, set.ranges, set.count * sizeof(set.ranges[0])) == 0);
		/* rebuilding by imap_seqset_add in reverse gives the same */
		struct imap_seqset built = IMAP_SEQSET_INIT;
		for (size_t i = set.count; i-- > 0;)
			check(imap_seqset_add(&built, set.ranges[i].hi, set.ranges[i].lo) == 0);
		check(built.count == set.count);
		check(set.count == 0 ||
		      memcmp(built.ranges, set.ranges, set.count * sizeof(set.ranges[0])) == 0);
		imap_seqset_free(&built);
		imap_seqset_free(&again);
		buf_free(&text);
	}
	imap_seqset_free(&set);
}

static void try_utf7(const char *str, size_t len)
{
	struct buf a = BUF_INIT, b = BUF_INIT;
	struct error error;
	if (imap_utf7_decode(str, len, &a, &error) == 0) {
		check(imap_utf7_utf8_check(a.data ? a.data : "", a.len, &error) == 0);
		check(imap_utf7_encode(a.data ? a.data : "", a.len, &b, &error) == 0);
		check(b.len == len && (len == 0 || memcmp(b.data, str, len) == 0));
	}
	buf_free(&a);
	buf_free(&b);
	if (imap_utf7_encode(str, len, &a, &error) == 0) {
		check(imap_utf7_utf8_check(str, len, &error) == 0);
		check(imap_utf7_decode(a.data ? a.data : "", a.len, &b, &error) == 0);
		check(b.len == len && (len == 0 || memcmp(b.data, str, len) == 0));
	} else {
		check(imap_utf7_utf8_check(str, len, &error) < 0);
	}
	buf_free(&a);
	buf_free(&b);
}

/* ------------------------------------------------------------------ */
/* tree invariants                                                     */

static void walk(struct sim *s, const struct imap_arg *args, size_t n, unsigned int depth,
		 size_t *nodes, uint64_t *streamed, uint32_t star)
{
	check(depth <= s->max_depth);
	check(n == 0 || args != NULL);
	for (size_t i = 0; i < n; i++) {
		const struct imap_arg *a = &args[i];
		(*nodes)++;
		switch (a->type) {
		case IMAP_ARG_ATOM:
		case IMAP_ARG_NIL:
			check(a->len > 0);
			check(memchr(a->str, '\0', a->len) == NULL);
			/* fall through */
		case IMAP_ARG_STRING:
		case IMAP_ARG_LITERAL:
			check(a->str != NULL && a->str[a->len] == '\0');
			if (a->type != IMAP_ARG_LITERAL || !a->literal8)
				check(memchr(a->str, '\0', a->len) == NULL);
			if (a->type == IMAP_ARG_NIL)
				check(a->len == 3);
			if (a->len < 4096) {
				try_seqset(a->str, a->len, star);
				try_utf7(a->str, a->len);
			}
			buf_printf(&s->out, " %d:%zu:", (int)a->type, a->len);
			buf_append(&s->out, a->str, a->len);
			break;
		case IMAP_ARG_STREAMED:
			check(a->str == NULL);
			*streamed += a->len;
			buf_printf(&s->out, " S%zu", a->len);
			break;
		case IMAP_ARG_LIST:
			buf_puts(&s->out, " (");
			walk(s, a->list, a->count, depth + 1, nodes, streamed, star);
			buf_puts(&s->out, ")");
			break;
		default:
			check(0);
		}
	}
}

/* ------------------------------------------------------------------ */

static uint32_t rng_next(uint32_t *r)
{
	*r = *r * 1103515245u + 12345u;
	return *r >> 8;
}

static char *run(const uint8_t *data, size_t size, const struct imap_parser_limits *lim,
		 unsigned int max_depth, uint8_t answers, uint32_t slice_seed, bool sliced)
{
	struct sim s = { .answers = answers, .max_depth = max_depth };
	struct imap_parser_callbacks cb = { cb_start, cb_data, &s };
	struct imap_parser *p = imap_parser_new(lim, &cb);
	check(p != NULL);
	uint32_t rng = slice_seed;
	size_t pos = 0;
	bool line_mode = false;
	uint32_t star = answers & 0x40 ? 0 : 1 + (answers & 0x3f) * 3;

	while (pos < size) {
		size_t n = size - pos;
		if (sliced) {
			uint32_t r = rng_next(&rng);
			size_t k = (r & 3) == 0 ? 1 : 1 + (r >> 4) % 64;
			n = k < n ? k : n;
		}
		size_t used = SIZE_MAX;
		enum imap_parser_result r;
		if (line_mode) {
			const char *line = NULL;
			size_t len = SIZE_MAX;
			r = imap_parser_read_line(p, data + pos, n, &used, &line, &len);
			check(used <= n);
			pos += used;
			if (r == IMAP_PARSER_DONE) {
				check(line != NULL && line[len] == '\0' && memchr(line, '\0', len) == NULL);
				buf_puts(&s.out, "LINE ");
				buf_append(&s.out, line, len);
				buf_putc(&s.out, '\n');
				line_mode = false;
				continue;
			}
		} else {
			r = imap_parser_feed(p, data + pos, n, &used);
			check(used <= n);
			pos += used;
		}
		if (r == IMAP_PARSER_NEED_MORE) {
			check(used == n);
			continue;
		}
		if (r == IMAP_PARSER_DONE) {
			const struct imap_command *c = imap_parser_command(p);
			check(c != NULL && c->tag != NULL && c->name != NULL);
			check(c->tag[0] != '\0' && c->name[0] != '\0');
			buf_printf(&s.out, "CMD %s %d %s", c->tag, c->uid, c->name);
			size_t nodes = 0;
			uint64_t streamed = 0;
			walk(&s, c->args, c->argc, 0, &nodes, &streamed, star);
			check(nodes <= lim->max_args);
			check(streamed == s.streamed);
			buf_putc(&s.out, '\n');
			line_mode = strcmp(c->name, "IDLE") == 0 || strcmp(c->name, "AUTHENTICATE") == 0;
			imap_parser_reset(p);
			check(imap_parser_idle(p));
		} else if (r == IMAP_PARSER_ERROR) {
			const struct imap_parser_error *e = imap_parser_error(p);
			check(e != NULL && e->msg != NULL);
			buf_printf(&s.out, "ERR %d %s %d %s\n", (int)e->kind, e->tag ? e->tag : "-",
				   e->fatal, e->msg);
			imap_parser_reset(p);
			line_mode = false;
			if (e->fatal)
				break;
		} else {
			const struct imap_parser_literal *l = imap_parser_literal(p);
			check(l != NULL && l->size <= lim->max_literal_size);
			buf_printf(&s.out, "LIT %llu %d %d\n", (unsigned long long)l->size, l->literal8,
				   l->streamed);
			if (!(answers & 0x20))
				continue; /* "+ go ahead": the command goes on */
			buf_puts(&s.out, "REFUSED\n");
			imap_parser_reset(p);
		}
		/* the command ended */
		s.streamed = 0;
		s.stream_cap = 0;
		s.fail_next = false;
	}
	buf_printf(&s.out, "END %d\n", imap_parser_idle(p));
	imap_parser_free(&p);
	check(!s.out.failed);
	return buf_steal(&s.out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	uint8_t mode = data[0], answers = data[1];
	uint32_t seed = (uint32_t)data[2] << 8 | data[3];
	data += 4;
	size -= 4;

	struct imap_parser_limits lim = { 0 };
	unsigned int max_depth = IMAP_PARSER_MAX_DEPTH;
	if (mode & 1) {
		lim.max_line = 16 + (mode >> 4) * 8;
		lim.max_literal_memory = 1 + (mode >> 4) * 5;
		lim.max_depth = max_depth = 1 + (mode >> 5);
		lim.max_args = 2 + (mode >> 3);
		lim.max_tag = 1 + (mode >> 6);
		lim.max_nonsync = (mode & 2) ? 8 : 0;
	}
	if (lim.max_args == 0)
		lim.max_args = IMAP_PARSER_MAX_ARGS;
	lim.max_literal_size = IMAP_PARSER_MAX_LITERAL_SIZE;

	char *whole = run(data, size, &lim, max_depth, answers, seed, false);
	char *sliced = run(data, size, &lim, max_depth, answers, seed, true);
	if (strcmp(whole, sliced) != 0) {
		fprintf(stderr, "whole:\n%s\nsliced:\n%s\n", whole, sliced);
		abort();
	}
	free(whole);
	free(sliced);

	/* the raw input as a sequence set and as a mailbox name */
	if (size < 4096) {
		try_seqset((const char *)data, size, (uint32_t)seed * 65537u);
		try_utf7((const char *)data, size);
	}
	return 0;
}
