/*
 * fuzz_pop3.c: libFuzzer target for src/pop3 (the command-line parser and
 * the RETR/TOP encoder).
 *
 * Input layout: byte 0 seeds the slice sizes, byte 1 the TOP line count
 * (0xff: RETR); the rest is both what a client sends and a message file.
 *
 * Parser: the stream is run through a simulated server twice, fed whole
 * and in random slices, and the two transcripts must be identical. A line
 * whose verb is AUTH switches to line mode for one line, as the server does.
 * Invariants: NEED_MORE consumes everything; DONE/ERROR consume at most up
 * to the LF; a DONE verb is 1..40 non-space bytes, upper-case, and args
 * and lines hold no control character, NUL-terminated; every DONE line is
 * within its limit. Args are split and tried as numbers.
 *
 * Encoder: the rest is encoded whole and in random slices; the outputs must
 * be identical, hold no bare LF or bare CR-LF mix-ups (every LF preceded by
 * CR), end with CRLF "." CRLF, and decoding them (drop the terminator,
 * unstuff leading dots) must give back the input with bare LF turned into
 * CRLF (RETR), or a prefix of it (TOP).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "pop3/pop3_parser.h"
#include "pop3/pop3_stream.h"

static void check(int cond)
{
	if (!cond)
		abort();
}

static size_t next_slice(uint32_t *rng, size_t left)
{
	*rng = *rng * 1103515245u + 12345u;
	size_t n = 1 + (*rng >> 16) % 64;
	return n < left ? n : left;
}

static void parse_run(const uint8_t *d, size_t len, uint8_t seed, bool sliced, struct buf *out)
{
	static struct pop3_parser p;
	enum pop3_parser_mode mode = POP3_PARSER_COMMAND;
	uint32_t rng = seed;
	pop3_parser_init(&p, mode);
	size_t off = 0;
	while (off < len) {
		size_t end = off + (sliced ? next_slice(&rng, len - off) : len - off);
		while (off < end) {
			size_t used = 0;
			enum pop3_parser_result r = pop3_parser_feed(&p, d + off, end - off, &used);
			check(used <= end - off);
			if (r == POP3_PARSER_NEED_MORE) {
				check(used == end - off);
				off += used;
				break;
			}
			check(used > 0 && d[off + used - 1] == '\n');
			off += used;
			if (r == POP3_PARSER_ERROR) {
				buf_printf(out, "ERR %d\n", (int)pop3_parser_error(&p));
				mode = POP3_PARSER_COMMAND;
			} else {
				size_t l;
				const char *line = pop3_parser_line(&p, &l);
				check(line[l] == '\0');
				check(l + 1 <= (mode == POP3_PARSER_COMMAND ? POP3_PARSER_MAX_LINE
									    : POP3_PARSER_MAX_SASL_LINE));
				for (size_t i = 0; i < l; i++)
					check((unsigned char)line[i] >= 0x20 && line[i] != 0x7f);
				if (mode == POP3_PARSER_LINE) {
					buf_printf(out, "LINE %zu ", l);
					buf_append(out, line, l);
					buf_putc(out, '\n');
					mode = POP3_PARSER_COMMAND;
				} else {
					const char *verb = pop3_parser_verb(&p);
					size_t vl = strlen(verb);
					check(vl >= 1 && vl <= POP3_PARSER_MAX_VERB);
					for (size_t i = 0; i < vl; i++)
						check(verb[i] != ' ' && !(verb[i] >= 'a' && verb[i] <= 'z'));
					size_t al;
					char *args = pop3_parser_args(&p, &al);
					buf_printf(out, "CMD %s|", verb);
					if (args != NULL) {
						check(args[al] == '\0');
						buf_append(out, args, al);
						char *w[POP3_PARSER_MAX_WORDS];
						int n = pop3_parser_split(args, w, POP3_PARSER_MAX_WORDS);
						check(n >= -1 && n <= POP3_PARSER_MAX_WORDS);
						for (int i = 0; i < n; i++) {
							uint32_t v;
							check(w[i][0] != '\0' && strchr(w[i], ' ') == NULL);
							if (pop3_parser_number(w[i], UINT32_MAX, &v) == 0)
								buf_printf(out, " #%u", v);
						}
					}
					buf_putc(out, '\n');
					if (strcmp(verb, "AUTH") == 0)
						mode = POP3_PARSER_LINE;
				}
			}
			pop3_parser_reset(&p, mode);
		}
	}
}

static void encode_run(const uint8_t *d, size_t len, bool top, uint64_t lines, uint8_t seed,
		       bool sliced, struct buf *out)
{
	struct pop3_stream st;
	uint32_t rng = seed;
	unsigned char tmp[64 * POP3_STREAM_EXPANSION + POP3_STREAM_FINISH_MAX];
	pop3_stream_init(&st, top, lines);
	size_t off = 0;
	while (off < len && !pop3_stream_done(&st)) {
		size_t n = sliced ? next_slice(&rng, len - off) : (len - off < 64 ? len - off : 64);
		size_t used;
		size_t w = pop3_stream_encode(&st, d + off, n, tmp, &used);
		check(w <= n * POP3_STREAM_EXPANSION && used <= n);
		check(used == n || pop3_stream_done(&st));
		check(top || used == n);
		buf_append(out, tmp, w);
		off += used;
	}
	buf_append(out, tmp, pop3_stream_finish(&st, tmp));
}

/* Undo the encoding: the message bytes as sent, before stuffing. */
static void decode(const struct buf *enc, struct buf *out)
{
	const char *s = enc->data;
	size_t n = enc->len;
	check(n >= 3 && memcmp(s + n - 3, ".\r\n", 3) == 0);
	check(n == 3 || (n >= 5 && memcmp(s + n - 5, "\r\n", 2) == 0));
	n -= 3;
	bool line_start = true;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\n')
			check(i > 0 && s[i - 1] == '\r');
		if (line_start && s[i] == '.') {
			check(i + 1 < n && s[i + 1] == '.');
			i++;
		}
		buf_putc(out, s[i]);
		line_start = s[i] == '\n';
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	uint8_t seed = data[0];
	bool top = data[1] != 0xff;
	uint64_t lines = data[1] % 8;
	const uint8_t *d = data + 2;
	size_t len = size - 2;

	struct buf a = BUF_INIT, b = BUF_INIT;
	parse_run(d, len, seed, false, &a);
	parse_run(d, len, seed, true, &b);
	check(a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0));
	buf_free(&a);
	buf_free(&b);

	struct buf e1 = BUF_INIT, e2 = BUF_INIT, dec = BUF_INIT, want = BUF_INIT;
	encode_run(d, len, top, lines, seed, false, &e1);
	encode_run(d, len, top, lines, seed, true, &e2);
	check(!e1.failed && !e2.failed);
	check(e1.len == e2.len && memcmp(e1.data, e2.data, e1.len) == 0);
	decode(&e1, &dec);
	/* The expected bytes: bare LF -> CRLF; a missing final line end
	 * added (CRLF, or LF after a final CR). */
	for (size_t i = 0; i < len; i++) {
		if (d[i] == '\n' && (i == 0 || d[i - 1] != '\r'))
			buf_putc(&want, '\r');
		buf_putc(&want, (char)d[i]);
	}
	if (len > 0 && d[len - 1] != '\n') {
		if (d[len - 1] != '\r')
			buf_putc(&want, '\r');
		buf_putc(&want, '\n');
	}
	if (top)
		check(dec.len <= want.len + 2);
	else
		check(dec.len == want.len);
	/* TOP may end early, at a line end: a prefix of the wanted bytes,
	 * except for a final line ending the finish added. */
	size_t cmp = dec.len < want.len ? dec.len : want.len;
	check(cmp == 0 || memcmp(dec.data, want.data, cmp) == 0);
	buf_free(&e1);
	buf_free(&e2);
	buf_free(&dec);
	buf_free(&want);
	return 0;
}
