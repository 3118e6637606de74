/*
 * test_imap_parser.c: unit tests for src/imap/imap_parser.
 *
 * Every input is run through a small simulated server (run()): it feeds
 * the bytes, answers LITERAL with "+" (or refuses), resets after DONE and
 * ERROR, and writes a transcript of what it saw. Each input is fed whole,
 * one byte at a time and in random slices (several seeds); all transcripts
 * must be identical before the transcript is compared with the expected
 * text, which is written by hand from the RFC 9051 section 9 grammar (and
 * RFC 7888 for {n+}, RFC 3516 for ~{n}).
 *
 * Transcript lines:
 *   CMD <tag> [UID ]<NAME> <args>   args: atom as is, <NIL>, "string",
 *                                   {n}bytes / {n+}bytes / ~{n}bytes for
 *                                   literals, [stream n] for STREAMED,
 *                                   (list); bytes outside 0x20-0x7e as \xNN
 *   ERR <kind> <tag|-> <fatal|ok> <message>
 *   LIT <size> [8] [stream]          a synchronizing literal was announced
 *   REFUSED                          ...and the server refused it (reset)
 *   START <name> <argc> <size> <sync|nonsync> [8]   literal_start()
 *   DATA <bytes>                     literal_data(), concatenated
 *   END <idle|pending>               after the last byte
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "imap/imap_parser.h"
#include "lib/buf.h"

/* ------------------------------------------------------------------ */
/* simulated server                                                    */

struct srv {
	bool stream_append;   /* STREAM literals of APPEND, BUFFER others */
	uint64_t reject_over; /* REJECT literals bigger than this (0: never) */
	bool refuse_sync;     /* refuse every LITERAL by resetting */
	bool fail_data;	      /* literal_data() fails */
	bool no_callbacks;
	struct buf *out;
	bool in_data;
};

static void put_bytes(struct buf *out, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c > 0x7e)
			buf_printf(out, "\\x%02X", c);
		else
			buf_putc(out, (char)c);
	}
}

static void end_data(struct srv *s)
{
	if (s->in_data) {
		buf_putc(s->out, '\n');
		s->in_data = false;
	}
}

static enum imap_literal_action cb_start(void *ctx, const char *name, size_t argc, uint64_t size,
					 bool is_sync, bool is_literal8)
{
	struct srv *s = ctx;
	end_data(s);
	buf_printf(s->out, "START %s %zu %llu %s%s\n", name, argc, (unsigned long long)size,
		   is_sync ? "sync" : "nonsync", is_literal8 ? " 8" : "");
	if (s->reject_over != 0 && size > s->reject_over)
		return IMAP_LITERAL_REJECT;
	if (s->stream_append && strcmp(name, "APPEND") == 0)
		return IMAP_LITERAL_STREAM;
	return IMAP_LITERAL_BUFFER;
}

static int cb_data(void *ctx, const void *data, size_t len)
{
	struct srv *s = ctx;
	assert_true(len > 0);
	if (s->fail_data)
		return -1;
	if (!s->in_data) {
		buf_puts(s->out, "DATA ");
		s->in_data = true;
	}
	put_bytes(s->out, data, len);
	return 0;
}

static void put_args(struct buf *out, const struct imap_arg *args, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct imap_arg *a = &args[i];
		if (i > 0)
			buf_putc(out, ' ');
		switch (a->type) {
		case IMAP_ARG_ATOM:
			assert_int_equal(a->str[a->len], '\0');
			put_bytes(out, a->str, a->len);
			break;
		case IMAP_ARG_NIL:
			assert_int_equal(a->len, 3);
			buf_puts(out, "<NIL>");
			break;
		case IMAP_ARG_STRING:
			assert_int_equal(a->str[a->len], '\0');
			buf_putc(out, '"');
			put_bytes(out, a->str, a->len);
			buf_putc(out, '"');
			break;
		case IMAP_ARG_LITERAL:
			assert_int_equal(a->str[a->len], '\0');
			buf_printf(out, "%s{%zu%s}", a->literal8 ? "~" : "", a->len, a->nonsync ? "+" : "");
			put_bytes(out, a->str, a->len);
			break;
		case IMAP_ARG_STREAMED:
			buf_printf(out, "[stream %zu%s%s]", a->len, a->literal8 ? " 8" : "",
				   a->nonsync ? " +" : "");
			break;
		case IMAP_ARG_LIST:
			buf_putc(out, '(');
			put_args(out, a->list, a->count);
			buf_putc(out, ')');
			break;
		}
	}
}

static const char *kind_name(enum imap_parser_error_kind k)
{
	switch (k) {
	case IMAP_PARSER_ERR_SYNTAX:
		return "SYNTAX";
	case IMAP_PARSER_ERR_LIMIT:
		return "LIMIT";
	case IMAP_PARSER_ERR_TOOBIG:
		return "TOOBIG";
	case IMAP_PARSER_ERR_CALLBACK:
		return "CALLBACK";
	}
	return "?";
}

/* slicing: 0 = whole, 1 = byte by byte, else random with that seed */
static size_t next_slice(unsigned int mode, uint32_t *rng, size_t left)
{
	if (mode == 0)
		return left;
	if (mode == 1)
		return left ? 1 : 0;
	*rng = *rng * 1103515245u + 12345u;
	size_t n = 1 + (*rng >> 16) % 13;
	return n < left ? n : left;
}

static char *run_mode(const char *in, size_t len, const struct imap_parser_limits *lim,
		      const struct srv *cfg, unsigned int mode)
{
	struct buf out = BUF_INIT;
	struct srv s = *cfg;
	s.out = &out;
	s.in_data = false;
	struct imap_parser_callbacks cb = { cb_start, cb_data, &s };
	struct imap_parser *p = imap_parser_new(lim, s.no_callbacks ? NULL : &cb);
	assert_non_null(p);
	uint32_t rng = mode;
	size_t pos = 0;
	bool closed = false;

	while (pos < len && !closed) {
		size_t n = next_slice(mode, &rng, len - pos);
		size_t used = 12345;
		enum imap_parser_result r = imap_parser_feed(p, in + pos, n, &used);
		assert_true(used <= n);
		pos += used;
		if (r == IMAP_PARSER_NEED_MORE) {
			assert_int_equal(used, n);
			assert_null(imap_parser_command(p));
			assert_null(imap_parser_error(p));
			continue;
		}
		end_data(&s);
		if (r == IMAP_PARSER_DONE) {
			const struct imap_command *c = imap_parser_command(p);
			assert_non_null(c);
			/* fed again without a reset: nothing more happens */
			size_t u2 = 1;
			assert_int_equal(imap_parser_feed(p, "x", 1, &u2), IMAP_PARSER_DONE);
			assert_int_equal(u2, 0);
			buf_printf(&out, "CMD %s %s%s", c->tag, c->uid ? "UID " : "", c->name);
			if (c->argc > 0)
				buf_putc(&out, ' ');
			put_args(&out, c->args, c->argc);
			buf_putc(&out, '\n');
			imap_parser_reset(p);
		} else if (r == IMAP_PARSER_ERROR) {
			const struct imap_parser_error *e = imap_parser_error(p);
			assert_non_null(e);
			assert_non_null(e->msg);
			buf_printf(&out, "ERR %s %s %s %s\n", kind_name(e->kind), e->tag ? e->tag : "-",
				   e->fatal ? "fatal" : "ok", e->msg);
			if (e->fatal)
				closed = true;
			imap_parser_reset(p);
		} else {
			const struct imap_parser_literal *l = imap_parser_literal(p);
			assert_non_null(l);
			buf_printf(&out, "LIT %llu%s%s\n", (unsigned long long)l->size,
				   l->literal8 ? " 8" : "", l->streamed ? " stream" : "");
			if (s.refuse_sync) {
				buf_puts(&out, "REFUSED\n");
				imap_parser_reset(p);
			}
		}
	}
	end_data(&s);
	if (closed)
		buf_puts(&out, "CLOSED\n");
	else
		buf_printf(&out, "END %s\n", imap_parser_idle(p) ? "idle" : "pending");
	imap_parser_free(&p);
	assert_null(p);
	assert_false(out.failed);
	return buf_steal(&out);
}

/* Runs whole, byte by byte and in random slices; all must agree. */
static char *run_n(const char *in, size_t len, const struct imap_parser_limits *lim,
		   const struct srv *cfg)
{
	static const struct srv defcfg;
	if (cfg == NULL)
		cfg = &defcfg;
	char *whole = run_mode(in, len, lim, cfg, 0);
	unsigned int modes[] = { 1, 2, 3, 7, 11, 1000 };
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		char *t = run_mode(in, len, lim, cfg, modes[i]);
		assert_string_equal(whole, t);
		free(t);
	}
	return whole;
}

static void expect_n(const char *in, size_t len, const struct imap_parser_limits *lim,
		     const struct srv *cfg, const char *expected)
{
	char *t = run_n(in, len, lim, cfg);
	assert_string_equal(t, expected);
	free(t);
}

static void expect(const char *in, const char *expected)
{
	expect_n(in, strlen(in), NULL, NULL, expected);
}

static void expect_cfg(const char *in, const struct imap_parser_limits *lim, const struct srv *cfg,
		       const char *expected)
{
	expect_n(in, strlen(in), lim, cfg, expected);
}

/* ------------------------------------------------------------------ */
/* argument types                                                      */

static void test_simple(void **state)
{
	(void)state;
	expect("a1 NOOP\r\n", "CMD a1 NOOP\nEND idle\n");
	expect("a1 noop\r\n", "CMD a1 NOOP\nEND idle\n");
	expect("x.y-z]! Capability\r\n", "CMD x.y-z]! CAPABILITY\nEND idle\n");
	expect("a1 NOOP", "END pending\n");
	expect("", "END idle\n");
}

static void test_atoms_strings(void **state)
{
	(void)state;
	/* quoted: \" and \\ unescaped (RFC 9051 9, quoted-specials) */
	expect("a LOGIN user \"p\\\"a\\\\ss\"\r\n", "CMD a LOGIN user \"p\"a\\ss\"\nEND idle\n");
	expect("a LOGIN \"\" \"\"\r\n", "CMD a LOGIN \"\" \"\"\nEND idle\n");
	/* list-wildcards, flags, sequence sets are atoms */
	expect("a LIST \"\" %/*\r\n", "CMD a LIST \"\" %/*\nEND idle\n");
	expect("a STORE 1:3,5,7:* +FLAGS.SILENT (\\Seen $Junk)\r\n",
	       "CMD a STORE 1:3,5,7:* +FLAGS.SILENT (\\Seen $Junk)\nEND idle\n");
	/* "~" not followed by "{" is an atom byte */
	expect("a X ~abc ~ a~\r\n", "CMD a X ~abc ~ a~\nEND idle\n");
	/* 8-bit in a quoted string is kept (RFC 9051 utf8-quoted) */
	expect("a SELECT \"caf\xc3\xa9\"\r\n", "CMD a SELECT \"caf\\xC3\\xA9\"\nEND idle\n");
	/* a quoted string may hold CTLs other than CR, LF and NUL */
	expect("a X \"a\tb\"\r\n", "CMD a X \"a\\x09b\"\nEND idle\n");
}

static void test_nil(void **state)
{
	(void)state;
	expect("a X NIL nil Nil \"NIL\" (NIL) NILS\r\n",
	       "CMD a X <NIL> <NIL> <NIL> \"NIL\" (<NIL>) NILS\nEND idle\n");

	/* NIL keeps its spelling, and the helpers treat it per grammar */
	struct imap_parser *p = imap_parser_new(NULL, NULL);
	size_t used;
	const char *in = "a SELECT nil\r\n";
	assert_int_equal(imap_parser_feed(p, in, strlen(in), &used), IMAP_PARSER_DONE);
	const struct imap_command *c = imap_parser_command(p);
	assert_int_equal(c->argc, 1);
	assert_int_equal(c->args[0].type, IMAP_ARG_NIL);
	assert_string_equal(c->args[0].str, "nil");
	const char *s;
	size_t len;
	assert_true(imap_parser_arg_astring(&c->args[0], &s, &len));
	assert_string_equal(s, "nil");
	assert_true(imap_parser_arg_nstring(&c->args[0], &s, &len));
	assert_null(s);
	assert_false(imap_parser_arg_string(&c->args[0], &s, &len));
	assert_true(imap_parser_arg_atom_eq(&c->args[0], "NIL"));
	imap_parser_free(&p);
}

static void test_lists(void **state)
{
	(void)state;
	expect("a X () (()) (a (b (c)) d) (\"x\" NIL)\r\n",
	       "CMD a X () (()) (a (b (c)) d) (\"x\" <NIL>)\nEND idle\n");
	expect("a FETCH 1:* (FLAGS UID)\r\n", "CMD a FETCH 1:* (FLAGS UID)\nEND idle\n");
	/* counts and nesting as seen by a handler */
	struct imap_parser *p = imap_parser_new(NULL, NULL);
	size_t used;
	const char *in = "t X (a (b c) ()) d\r\n";
	assert_int_equal(imap_parser_feed(p, in, strlen(in), &used), IMAP_PARSER_DONE);
	assert_int_equal(used, strlen(in));
	const struct imap_command *c = imap_parser_command(p);
	assert_int_equal(c->argc, 2);
	assert_int_equal(c->args[0].type, IMAP_ARG_LIST);
	assert_int_equal(c->args[0].count, 3);
	assert_int_equal(c->args[0].list[1].type, IMAP_ARG_LIST);
	assert_int_equal(c->args[0].list[1].count, 2);
	assert_string_equal(c->args[0].list[1].list[1].str, "c");
	assert_int_equal(c->args[0].list[2].count, 0);
	assert_string_equal(c->args[1].str, "d");
	imap_parser_free(&p);
}

static void test_uid(void **state)
{
	(void)state;
	expect("a1 uid fetch 1:* (FLAGS)\r\n", "CMD a1 UID FETCH 1:* (FLAGS)\nEND idle\n");
	expect("a1 UID EXPUNGE 3\r\n", "CMD a1 UID EXPUNGE 3\nEND idle\n");
	expect("a1 UID\r\nb NOOP\r\n",
	       "ERR SYNTAX a1 ok Missing command after UID\nCMD b NOOP\nEND idle\n");
	expect("a1 UID \r\nb NOOP\r\n",
	       "ERR SYNTAX a1 ok Missing command name\nCMD b NOOP\nEND idle\n");
	/* "UID" as an argument is just an atom */
	expect("a FETCH 1 UID\r\n", "CMD a FETCH 1 UID\nEND idle\n");
}

static void test_brackets(void **state)
{
	(void)state;
	expect("a FETCH 1 (BODY.PEEK[HEADER.FIELDS (From \"Subject\")]<0.100> BODY[])\r\n",
	       "CMD a FETCH 1 (BODY.PEEK[HEADER.FIELDS (From \"Subject\")]<0.100> BODY[])\nEND idle\n");
	/* raw text kept: escapes inside brackets are not undone */
	expect("a FETCH 1 BODY[HEADER.FIELDS (\"a]b\" \"c\\\"d\")]\r\n",
	       "CMD a FETCH 1 BODY[HEADER.FIELDS (\"a]b\" \"c\\\"d\")]\nEND idle\n");
	expect("a FETCH 1 BINARY.PEEK[1.2]<0.10> BODY[1.MIME] x[a[b]c]y\r\n",
	       "CMD a FETCH 1 BINARY.PEEK[1.2]<0.10> BODY[1.MIME] x[a[b]c]y\nEND idle\n");
	/* a "]" outside brackets is an ASTRING-CHAR */
	expect("a X a]b\r\n", "CMD a X a]b\nEND idle\n");
	/* A '[' that is not closed by the end of the line opened no section:
	 * it is an ASTRING-CHAR (RFC 3501 9), as in a mailbox "a[b"; the bytes
	 * after it are read again as plain arguments (FETCH answers BAD for
	 * BODY[HEADER itself). */
	expect("a FETCH 1 BODY[HEADER\r\nb NOOP\r\n",
	       "CMD a FETCH 1 BODY[HEADER\nCMD b NOOP\nEND idle\n");
	expect("a SELECT !#$&-'+,-.0123456789:;<=>?@^_`|[}\r\n",
	       "CMD a SELECT !#$&-'+,-.0123456789:;<=>?@^_`|[}\nEND idle\n");
	expect("a LIST \"\" a[b% (x[y z)\r\n", "CMD a LIST \"\" a[b% (x[y z)\nEND idle\n");
	expect("a RENAME a[b c[d]e\r\n", "CMD a RENAME a[b c[d]e\nEND idle\n");
	expect("a FETCH 1 BODY[\"x]\r\nb NOOP\r\n",
	       "ERR SYNTAX a ok Unterminated quoted string\nCMD b NOOP\nEND idle\n");
	expect("a X a[b\"c\"\r\nb NOOP\r\n",
	       "ERR SYNTAX a ok Invalid character in atom\nCMD b NOOP\nEND idle\n");
	/* a non-synchronizing literal announced after an unclosed [ is a
	 * literal like any other: its bytes never run as a command */
	expect("a FETCH 1 BODY[HEADER.FIELDS {5+}\r\nb BAD\r\nc NOOP\r\n",
	       "START FETCH 2 5 nonsync\nCMD a FETCH 1 BODY[HEADER.FIELDS {5+}b BAD\nCMD c NOOP\n"
	       "END idle\n");
}

static void test_pipelined(void **state)
{
	(void)state;
	expect("a NOOP\r\nb LOGIN x y\r\nc CHECK\r\n",
	       "CMD a NOOP\nCMD b LOGIN x y\nCMD c CHECK\nEND idle\n");
	/* DONE leaves the next command's bytes unconsumed */
	struct imap_parser *p = imap_parser_new(NULL, NULL);
	size_t used;
	const char *in = "a NOOP\r\nb NO";
	assert_int_equal(imap_parser_feed(p, in, strlen(in), &used), IMAP_PARSER_DONE);
	assert_int_equal(used, 8);
	imap_parser_reset(p);
	assert_true(imap_parser_idle(p));
	assert_int_equal(imap_parser_feed(p, in + 8, strlen(in) - 8, &used), IMAP_PARSER_NEED_MORE);
	assert_int_equal(used, strlen(in) - 8);
	assert_false(imap_parser_idle(p));
	assert_int_equal(imap_parser_feed(p, "OP\n", 3, &used), IMAP_PARSER_DONE);
	assert_string_equal(imap_parser_command(p)->tag, "b");
	imap_parser_free(&p);
}

static void test_line_endings(void **state)
{
	(void)state;
	expect("a NOOP\nb LOGIN x \"y\"\n", "CMD a NOOP\nCMD b LOGIN x \"y\"\nEND idle\n");
	/* empty lines between commands are ignored */
	expect("\r\n\n\r\na NOOP\r\n\r\n", "CMD a NOOP\nEND idle\n");
	/* CR must be followed by LF */
	expect("a NOOP\rb\r\nc NOOP\r\n",
	       "ERR SYNTAX a ok CR not followed by LF\nCMD c NOOP\nEND idle\n");
	expect("\rx\nc NOOP\r\n", "ERR SYNTAX - ok CR not followed by LF\nCMD c NOOP\nEND idle\n");
	expect("a X \"b\rc\"\r\nc NOOP\r\n",
	       "ERR SYNTAX a ok Unterminated quoted string\nCMD c NOOP\nEND idle\n");
}

/* ------------------------------------------------------------------ */
/* literals                                                            */

static void test_literal_sync(void **state)
{
	(void)state;
	expect("a LOGIN {4}\r\nuser {4}\r\npass\r\n",
	       "START LOGIN 0 4 sync\nLIT 4\nSTART LOGIN 1 4 sync\nLIT 4\n"
	       "CMD a LOGIN {4}user {4}pass\nEND idle\n");
	/* bare LF after the announcement; CRLF bytes inside the literal */
	expect("a X {5}\nab\r\nc (d)\n",
	       "START X 0 5 sync\nLIT 5\nCMD a X {5}ab\\x0D\\x0Ac (d)\nEND idle\n");
	/* literal inside a list, leading zeros */
	expect("a X (b {003}\r\nxyz)\r\n",
	       "START X 0 3 sync\nLIT 3\nCMD a X (b {3}xyz)\nEND idle\n");
	/* zero-length literals */
	expect("a LOGIN {0}\r\n {0+}\r\n\r\n",
	       "START LOGIN 0 0 sync\nLIT 0\nSTART LOGIN 1 0 nonsync\nCMD a LOGIN {0} {0+}\nEND idle\n");
	/* waiting for literal bytes */
	expect("a LOGIN {4}\r\nus", "START LOGIN 0 4 sync\nLIT 4\nEND pending\n");
}

static void test_literal_nonsync(void **state)
{
	(void)state;
	expect("a LOGIN {4+}\r\nuser pass\r\n",
	       "START LOGIN 0 4 nonsync\nCMD a LOGIN {4+}user pass\nEND idle\n");
	expect("a LOGIN {4+}\r\nuser {4+}\r\npass\r\nb NOOP\r\n",
	       "START LOGIN 0 4 nonsync\nSTART LOGIN 1 4 nonsync\nCMD a LOGIN {4+}user {4+}pass\n"
	       "CMD b NOOP\nEND idle\n");
	/* the announcement must end the line */
	expect("a LOGIN {4+} x\r\nb NOOP\r\n",
	       "ERR SYNTAX a ok Literal must end the line\nCMD b NOOP\nEND idle\n");
}

static void test_literal8(void **state)
{
	(void)state;
	/* RFC 3516: literal8 may carry NUL */
	expect_n("a APPEND box ~{5}\r\na\0b\0c\r\n", 26, NULL, NULL,
		 "START APPEND 1 5 sync 8\nLIT 5 8\nCMD a APPEND box ~{5}a\\x00b\\x00c\nEND idle\n");
	expect_n("a APPEND box ~{3+}\r\n\0\0\0 x\r\n", 27, NULL, NULL,
		 "START APPEND 1 3 nonsync 8\nCMD a APPEND box ~{3+}\\x00\\x00\\x00 x\nEND idle\n");
	/* a NUL in a plain literal is an error; the rest is skipped */
	expect_n("a LOGIN {3+}\r\na\0b x\r\nb NOOP\r\n", 29, NULL, NULL,
		 "START LOGIN 0 3 nonsync\nERR SYNTAX a ok NUL byte in literal (use literal8)\n"
		 "CMD b NOOP\nEND idle\n");
	expect_n("a LOGIN {3}\r\n\0bc x\r\nb NOOP\r\n", 28, NULL, NULL,
		 "START LOGIN 0 3 sync\nLIT 3\nERR SYNTAX a ok NUL byte in literal (use literal8)\n"
		 "CMD b NOOP\nEND idle\n");
	/* "~" then garbage */
	expect("a X ~{x}\r\nb NOOP\r\n", "ERR SYNTAX a ok Invalid literal size\nCMD b NOOP\nEND idle\n");
}

static void test_streaming(void **state)
{
	(void)state;
	struct srv s = { .stream_append = true };
	expect_cfg("a APPEND INBOX (\\Seen) {11}\r\nhello world\r\n", NULL, &s,
		   "START APPEND 2 11 sync\nLIT 11 stream\nDATA hello world\n"
		   "CMD a APPEND INBOX (\\Seen) [stream 11]\nEND idle\n");
	/* MULTIAPPEND (RFC 3502): two messages, the second non-synchronizing */
	expect_cfg("a APPEND INBOX {3}\r\nabc (\\Seen) \"date\" {2+}\r\nde\r\nb NOOP\r\n", NULL, &s,
		   "START APPEND 1 3 sync\nLIT 3 stream\nDATA abc\nSTART APPEND 4 2 nonsync\nDATA de\n"
		   "CMD a APPEND INBOX [stream 3] (\\Seen) \"date\" [stream 2 +]\nCMD b NOOP\nEND idle\n");
	/* literal8 streamed */
	expect_n("a APPEND INBOX ~{2}\r\n\0\0\r\n", 25, NULL, &s,
		 "START APPEND 1 2 sync 8\nLIT 2 8 stream\nDATA \\x00\\x00\n"
		 "CMD a APPEND INBOX [stream 2 8]\nEND idle\n");
	/* other commands still buffer */
	expect_cfg("a LOGIN {1+}\r\nx y\r\n", NULL, &s,
		   "START LOGIN 0 1 nonsync\nCMD a LOGIN {1+}x y\nEND idle\n");
	/* literal_data() failing ends the command; the rest is discarded */
	struct srv f = { .stream_append = true, .fail_data = true };
	expect_cfg("a APPEND INBOX {5+}\r\nhello {2+}\r\nxy\r\nb NOOP\r\n", NULL, &f,
		   "START APPEND 1 5 nonsync\nERR CALLBACK a ok Failed to store literal\n"
		   "CMD b NOOP\nEND idle\n");
}

static void test_streaming_memory(void **state)
{
	(void)state;
	/* a 50 MB APPEND streams through a parser allowed 1 KiB of memory */
	struct imap_parser_limits lim = { .max_literal_memory = 1024 };
	struct srv s = { .stream_append = true };
	struct buf out = BUF_INIT;
	s.out = &out;
	struct imap_parser_callbacks cb = { cb_start, NULL, &s };
	struct imap_parser *p = imap_parser_new(&lim, &cb);
	size_t used;
	const char *hdr = "a APPEND INBOX {50000000}\r\n";
	assert_int_equal(imap_parser_feed(p, hdr, strlen(hdr), &used), IMAP_PARSER_LITERAL);
	assert_int_equal(imap_parser_literal(p)->size, 50000000);
	assert_true(imap_parser_literal(p)->streamed);
	static char chunk[65536];
	memset(chunk, 'x', sizeof(chunk));
	size_t left = 50000000;
	while (left > 0) {
		size_t n = left < sizeof(chunk) ? left : sizeof(chunk);
		assert_int_equal(imap_parser_feed(p, chunk, n, &used), IMAP_PARSER_NEED_MORE);
		left -= n;
	}
	assert_int_equal(imap_parser_feed(p, "\r\n", 2, &used), IMAP_PARSER_DONE);
	const struct imap_command *c = imap_parser_command(p);
	assert_int_equal(c->args[1].type, IMAP_ARG_STREAMED);
	assert_int_equal(c->args[1].len, 50000000);
	assert_null(c->args[1].str);
	imap_parser_free(&p);
	buf_free(&out);
}

static void test_reject(void **state)
{
	(void)state;
	struct srv s = { .reject_over = 10 };
	/* synchronizing: the client sends nothing, the next line is a command */
	expect_cfg("a APPEND INBOX {100}\r\nb NOOP\r\n", NULL, &s,
		   "START APPEND 1 100 sync\nERR TOOBIG a ok Literal too large\nCMD b NOOP\nEND idle\n");
	/* non-synchronizing: its bytes and the rest of the command are read
	 * and discarded (RFC 7888 section 4) */
	expect_cfg("a APPEND INBOX {11+}\r\nhello world more\r\nb NOOP\r\n", NULL, &s,
		   "START APPEND 1 11 nonsync\nERR TOOBIG a ok Literal too large\nCMD b NOOP\nEND idle\n");
	/* ...including further non-synchronizing literals of that command */
	expect_cfg("a APPEND INBOX {11+}\r\nhello world {3+}\r\nb X\r\nc NOOP\r\n", NULL, &s,
		   "START APPEND 1 11 nonsync\nERR TOOBIG a ok Literal too large\nCMD c NOOP\nEND idle\n");
	/* ...but not past a synchronizing one: the client waits for "+" */
	expect_cfg("a APPEND INBOX {11+}\r\nhello world {3}\r\nb NOOP\r\n", NULL, &s,
		   "START APPEND 1 11 nonsync\nERR TOOBIG a ok Literal too large\nCMD b NOOP\nEND idle\n");
	/* the server refuses at LITERAL (after literal_start said BUFFER) */
	struct srv r = { .refuse_sync = true };
	expect_cfg("a LOGIN {4}\r\nb NOOP\r\n", NULL, &r,
		   "START LOGIN 0 4 sync\nLIT 4\nREFUSED\nCMD b NOOP\nEND idle\n");
	/* LITERAL- (RFC 7888 section 4): {n+} over 4096 refused, bytes skipped */
	struct imap_parser_limits lim = { .max_nonsync = 4096 };
	char big[5200];
	int n = snprintf(big, sizeof(big), "a APPEND INBOX {5000+}\r\n");
	memset(big + n, 'z', 5000);
	memcpy(big + n + 5000, "\r\nb NOOP\r\n", 10);
	expect_n(big, (size_t)n + 5010, &lim, NULL,
		 "ERR TOOBIG a ok Literal too large\nCMD b NOOP\nEND idle\n");
	/* in-memory total: no callback, 10 bytes allowed per command */
	struct imap_parser_limits mem = { .max_literal_memory = 10 };
	struct srv nocb = { .no_callbacks = true };
	expect_cfg("a X {6+}\r\nabcdef {6+}\r\nghijkl\r\nb X {4+}\r\nabcd {6+}\r\nabcdef\r\n", &mem,
		   &nocb, "ERR TOOBIG a ok Literal too large\nCMD b X {4+}abcd {6+}abcdef\nEND idle\n");
}

static void test_huge_literals(void **state)
{
	(void)state;
	/* 4 GiB: over 2^32-1, refused without allocating; the client waits */
	expect("a APPEND INBOX {4294967296}\r\nb NOOP\r\n",
	       "ERR TOOBIG a ok Literal too large\nCMD b NOOP\nEND idle\n");
	/* 2^32-1: a valid number, but no callback means BUFFER, over memory */
	expect("a APPEND INBOX {4294967295}\r\nb NOOP\r\n",
	       "START APPEND 1 4294967295 sync\nERR TOOBIG a ok Literal too large\nCMD b NOOP\nEND idle\n");
	expect("a APPEND INBOX {99999999999999999999999999}\r\nb NOOP\r\n",
	       "ERR TOOBIG a ok Literal too large\nCMD b NOOP\nEND idle\n");
	/* a {n+} that large cannot be skipped: close */
	expect("a APPEND INBOX {4294967296+}\r\nb NOOP\r\n",
	       "ERR SYNTAX a fatal Literal size out of range\nCLOSED\n");
	expect("a APPEND INBOX {18446744073709551616+}\r\nb NOOP\r\n",
	       "ERR SYNTAX a fatal Literal size out of range\nCLOSED\n");
	/* a 2^32-1 non-synchronizing literal is skipped byte by byte: check
	 * the state only (4 GiB of input is not fed here) */
	struct imap_parser *p = imap_parser_new(NULL, NULL);
	size_t used;
	const char *in = "a X {4294967295+}\r\nabc";
	assert_int_equal(imap_parser_feed(p, in, strlen(in), &used), IMAP_PARSER_ERROR);
	assert_int_equal(imap_parser_error(p)->kind, IMAP_PARSER_ERR_TOOBIG);
	assert_false(imap_parser_error(p)->fatal);
	imap_parser_reset(p);
	assert_int_equal(imap_parser_feed(p, in + used, strlen(in) - used, &used),
			 IMAP_PARSER_NEED_MORE);
	assert_int_equal(imap_parser_feed(p, "b NOOP\r\n", 8, &used), IMAP_PARSER_NEED_MORE);
	assert_false(imap_parser_idle(p));
	imap_parser_free(&p);
}

static void test_bad_numbers(void **state)
{
	(void)state;
	expect("a LOGIN {-1}\r\nb NOOP\r\n", "ERR SYNTAX a ok Invalid literal size\nCMD b NOOP\nEND idle\n");
	expect("a LOGIN {}\r\nb NOOP\r\n", "ERR SYNTAX a ok Invalid literal size\nCMD b NOOP\nEND idle\n");
	expect("a LOGIN {+}\r\nb NOOP\r\n", "ERR SYNTAX a ok Invalid literal size\nCMD b NOOP\nEND idle\n");
	expect("a LOGIN {1a}\r\nb NOOP\r\n", "ERR SYNTAX a ok Invalid literal size\nCMD b NOOP\nEND idle\n");
	expect("a LOGIN {5 }\r\nb NOOP\r\n", "ERR SYNTAX a ok Invalid literal size\nCMD b NOOP\nEND idle\n");
	expect("a LOGIN {5++}\r\nb NOOP\r\n", "ERR SYNTAX a ok Invalid literal size\nCMD b NOOP\nEND idle\n");
	expect("a LOGIN {0x10}\r\nb NOOP\r\n", "ERR SYNTAX a ok Invalid literal size\nCMD b NOOP\nEND idle\n");
	/* "{5+}x": not an announcement, so nothing is skipped after the line */
	expect("a LOGIN {5+}x\r\nb NOOP\r\n",
	       "ERR SYNTAX a ok Literal must end the line\nCMD b NOOP\nEND idle\n");
	/* a literal in the middle of an atom */
	expect("a LOGIN ab{5+}\r\nhello\r\nb NOOP\r\n",
	       "ERR SYNTAX a ok Invalid character in atom\nCMD b NOOP\nEND idle\n");
	/* number helpers */
	struct imap_parser *p = imap_parser_new(NULL, NULL);
	size_t used;
	const char *in = "a X 0 4294967295 4294967296 007 -1 9223372036854775807 9223372036854775808\r\n";
	assert_int_equal(imap_parser_feed(p, in, strlen(in), &used), IMAP_PARSER_DONE);
	const struct imap_arg *a = imap_parser_command(p)->args;
	uint32_t n;
	uint64_t n64;
	assert_true(imap_parser_arg_number(&a[0], &n));
	assert_int_equal(n, 0);
	assert_true(imap_parser_arg_number(&a[1], &n));
	assert_int_equal(n, 4294967295u);
	assert_false(imap_parser_arg_number(&a[2], &n));
	assert_true(imap_parser_arg_number64(&a[2], &n64));
	assert_int_equal(n64, 4294967296ull);
	assert_true(imap_parser_arg_number(&a[3], &n));
	assert_int_equal(n, 7);
	assert_false(imap_parser_arg_number(&a[4], &n));
	assert_true(imap_parser_arg_number64(&a[5], &n64));
	assert_false(imap_parser_arg_number64(&a[6], &n64));
	imap_parser_free(&p);
}

/* ------------------------------------------------------------------ */
/* errors and limits                                                   */

static void test_nul_in_line(void **state)
{
	(void)state;
	expect_n("a LOGIN x\0y z\r\nb NOOP\r\n", 23, NULL, NULL,
		 "ERR SYNTAX a ok NUL byte in command line\nCMD b NOOP\nEND idle\n");
	expect_n("\0a NOOP\r\nb NOOP\r\n", 17, NULL, NULL,
		 "ERR SYNTAX - ok NUL byte in command line\nCMD b NOOP\nEND idle\n");
	expect_n("a X \"\0\"\r\nb NOOP\r\n", 17, NULL, NULL,
		 "ERR SYNTAX a ok NUL byte in command line\nCMD b NOOP\nEND idle\n");
}

static void test_line_limit(void **state)
{
	(void)state;
	struct imap_parser_limits lim = { .max_line = 32 };
	/* 32 bytes with the CRLF: accepted */
	expect_cfg("a LOGIN aaaaaaaaaa bbbbbbbbbbb\r\n", &lim, NULL,
		   "CMD a LOGIN aaaaaaaaaa bbbbbbbbbbb\nEND idle\n");
	expect_cfg("a LOGIN aaaaaaaaaa bbbbbbbbbbbbb\r\nb NOOP\r\n", &lim, NULL,
		   "ERR LIMIT a ok Command line too long\nCMD b NOOP\nEND idle\n");
	/* a long line: discarded to its end, the next command is fine */
	char in[300];
	memset(in, 'x', sizeof(in));
	memcpy(in, "a X ", 4);
	memcpy(in + 200, "\r\nb NOOP\r\n", 10);
	expect_n(in, 210, &lim, NULL, "ERR LIMIT a ok Command line too long\nCMD b NOOP\nEND idle\n");
	/* ...ending with {n+}: n bytes skipped too */
	memcpy(in + 200, " {5+}\r\nhello\r\nb NOOP\r\n", 22);
	expect_n(in, 222, &lim, NULL, "ERR LIMIT a ok Command line too long\nCMD b NOOP\nEND idle\n");
	/* literal bytes do not count; the lines around them do */
	expect_cfg("a LOGIN {40+}\r\n0123456789012345678901234567890123456789 x\r\n", &lim, NULL,
		   "START LOGIN 0 40 nonsync\nCMD a LOGIN {40+}0123456789012345678901234567890123456789 x\n"
		   "END idle\n");
	expect_cfg("a LOGIN {1+}\r\nx bbbbbbbbbbbbbbbbbbb\r\nb NOOP\r\n", &lim, NULL,
		   "START LOGIN 0 1 nonsync\nERR LIMIT a ok Command line too long\nCMD b NOOP\nEND idle\n");
}

static void test_depth(void **state)
{
	(void)state;
	struct imap_parser_limits lim = { .max_depth = 3 };
	expect_cfg("a X (((x)))\r\n", &lim, NULL, "CMD a X (((x)))\nEND idle\n");
	expect_cfg("a X ((((x))))\r\nb NOOP\r\n", &lim, NULL,
		   "ERR LIMIT a ok Too deeply nested parentheses\nCMD b NOOP\nEND idle\n");
	/* default 32 */
	char in[200];
	size_t n = 0;
	n += (size_t)sprintf(in, "a X ");
	for (int i = 0; i < 33; i++)
		in[n++] = '(';
	for (int i = 0; i < 33; i++)
		in[n++] = ')';
	memcpy(in + n, "\r\nb NOOP\r\n", 10);
	expect_n(in, n + 10, NULL, NULL,
		 "ERR LIMIT a ok Too deeply nested parentheses\nCMD b NOOP\nEND idle\n");
	/* 32 levels are fine */
	n = (size_t)sprintf(in, "a X ");
	for (int i = 0; i < 32; i++)
		in[n++] = '(';
	for (int i = 0; i < 32; i++)
		in[n++] = ')';
	memcpy(in + n, "\r\n", 2);
	char want[200];
	memcpy(want, "CMD ", 4);
	memcpy(want + 4, in, n);
	strcpy(want + 4 + n, "\nEND idle\n");
	char *t = run_n(in, n + 2, NULL, NULL);
	assert_string_equal(t, want);
	free(t);
	expect("a X (a))\r\nb NOOP\r\n", "ERR SYNTAX a ok Unexpected ')'\nCMD b NOOP\nEND idle\n");
	expect("a X )\r\nb NOOP\r\n", "ERR SYNTAX a ok Invalid character in argument\nCMD b NOOP\nEND idle\n");
	expect("a X ((a)\r\nb NOOP\r\n", "ERR SYNTAX a ok Missing ')'\nCMD b NOOP\nEND idle\n");
	expect("a X (a )\r\nb NOOP\r\n", "ERR SYNTAX a ok Invalid character in argument\nCMD b NOOP\nEND idle\n");
	expect("a X ( a)\r\nb NOOP\r\n", "ERR SYNTAX a ok Unexpected space\nCMD b NOOP\nEND idle\n");
	expect("a X (a)(b)\r\nb NOOP\r\n",
	       "ERR SYNTAX a ok Missing space between arguments\nCMD b NOOP\nEND idle\n");
}

static void test_arg_limit(void **state)
{
	(void)state;
	struct imap_parser_limits lim = { .max_args = 3 };
	expect_cfg("a X a (b)\r\n", &lim, NULL, "CMD a X a (b)\nEND idle\n");
	expect_cfg("a X a (b) c\r\nb NOOP\r\n", &lim, NULL,
		   "ERR LIMIT a ok Too many arguments\nCMD b NOOP\nEND idle\n");
	expect_cfg("a X a b c {1+}\r\nx\r\nb NOOP\r\n", &lim, NULL,
		   "ERR LIMIT a ok Too many arguments\nCMD b NOOP\nEND idle\n");
}

static void test_quotes(void **state)
{
	(void)state;
	expect("a LOGIN \"abc\r\nb NOOP\r\n",
	       "ERR SYNTAX a ok Unterminated quoted string\nCMD b NOOP\nEND idle\n");
	expect("a LOGIN \"abc\nb NOOP\r\n",
	       "ERR SYNTAX a ok Unterminated quoted string\nCMD b NOOP\nEND idle\n");
	expect("a LOGIN \"a\\x\" b\r\nb NOOP\r\n",
	       "ERR SYNTAX a ok Invalid escape in quoted string\nCMD b NOOP\nEND idle\n");
	expect("a LOGIN \"a\"\"b\"\r\nb NOOP\r\n",
	       "ERR SYNTAX a ok Missing space between arguments\nCMD b NOOP\nEND idle\n");
	expect("a LOGIN a\"b\"\r\nb NOOP\r\n",
	       "ERR SYNTAX a ok Invalid character in atom\nCMD b NOOP\nEND idle\n");
}

static void test_tags_and_names(void **state)
{
	(void)state;
	expect("+ NOOP\r\nb NOOP\r\n", "ERR SYNTAX - ok Invalid character in tag\nCMD b NOOP\nEND idle\n");
	expect("* NOOP\r\nb NOOP\r\n", "ERR SYNTAX - ok Invalid character in tag\nCMD b NOOP\nEND idle\n");
	expect("a\"b NOOP\r\nb NOOP\r\n", "ERR SYNTAX - ok Invalid character in tag\nCMD b NOOP\nEND idle\n");
	expect(" NOOP\r\nb NOOP\r\n", "ERR SYNTAX - ok Missing tag\nCMD b NOOP\nEND idle\n");
	expect("a\r\nb NOOP\r\n", "ERR SYNTAX a ok Missing command name\nCMD b NOOP\nEND idle\n");
	expect("a \r\nb NOOP\r\n", "ERR SYNTAX a ok Missing command name\nCMD b NOOP\nEND idle\n");
	expect("a  NOOP\r\nb NOOP\r\n", "ERR SYNTAX a ok Missing command name\nCMD b NOOP\nEND idle\n");
	expect("a NOOP \r\nb NOOP\r\n", "ERR SYNTAX a ok Missing argument\nCMD b NOOP\nEND idle\n");
	expect("a NO[OP\r\nb NOOP\r\n",
	       "ERR SYNTAX a ok Invalid character in command name\nCMD b NOOP\nEND idle\n");
	expect("a NOOP(x)\r\nb NOOP\r\n",
	       "ERR SYNTAX a ok Invalid character in command name\nCMD b NOOP\nEND idle\n");
	expect("a ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFG\r\nb NOOP\r\n",
	       "ERR SYNTAX a ok Command name too long\nCMD b NOOP\nEND idle\n");
	struct imap_parser_limits lim = { .max_tag = 4 };
	expect_cfg("abcd NOOP\r\nabcde NOOP\r\nb NOOP\r\n", &lim, NULL,
		   "CMD abcd NOOP\nERR LIMIT - ok Tag too long\nCMD b NOOP\nEND idle\n");
	/* TLS handshake bytes on a plain port: errors, never a crash */
	expect_n("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\nb NOOP\r\n", 21, NULL, NULL,
		 "ERR SYNTAX - ok Invalid character in tag\nCMD b NOOP\nEND idle\n");
}

static void test_recovery(void **state)
{
	(void)state;
	/* a bad line ending with {n+}: its n bytes are not a command */
	expect("a X \x01 {8+}\r\nb LOGOUT\r\nc NOOP\r\n",
	       "ERR SYNTAX a ok Invalid character in argument\nCMD c NOOP\nEND idle\n");
	expect("a X \x01 ~{8+}\r\nb LOGOUT\r\nc NOOP\r\n",
	       "ERR SYNTAX a ok Invalid character in argument\nCMD c NOOP\nEND idle\n");
	/* chained: the line after the skipped literal is still the bad command */
	expect("a X \x01 {2+}\r\nxy {3+}\r\nabc\r\nc NOOP\r\n",
	       "ERR SYNTAX a ok Invalid character in argument\nCMD c NOOP\nEND idle\n");
	/* {n}: synchronizing, the client waits; the next line is a command */
	expect("a X \x01 {9}\r\nc NOOP\r\n",
	       "ERR SYNTAX a ok Invalid character in argument\nCMD c NOOP\nEND idle\n");
	/* an error found on the LF itself, with {n+} before it */
	expect("a X \"q {3+}\r\nabc\r\nc NOOP\r\n",
	       "ERR SYNTAX a ok Unterminated quoted string\nCMD c NOOP\nEND idle\n");
	/* the same with bare LF: the error is found on the LF itself */
	expect("a X \"q {3+}\nabc\nc NOOP\n",
	       "ERR SYNTAX a ok Unterminated quoted string\nCMD c NOOP\nEND idle\n");
	expect("a X \"q {0+}\n\nc NOOP\n",
	       "ERR SYNTAX a ok Unterminated quoted string\nCMD c NOOP\nEND idle\n");
	expect("a X \"q {3}\nc NOOP\n",
	       "ERR SYNTAX a ok Unterminated quoted string\nCMD c NOOP\nEND idle\n");
	expect("a X \"q {4294967296+}\nc NOOP\n",
	       "ERR SYNTAX a ok Unterminated quoted string\nERR SYNTAX - fatal Literal size out of range\n"
	       "CLOSED\n");
	/* the end-of-line check has no window: 70 leading zeros */
	char in[200];
	memcpy(in, "a X \x01 {", 7);
	memset(in + 7, '0', 70);
	memcpy(in + 77, "5+}\r\nhello\r\nc NOOP\r\n", 20);
	expect_n(in, 97, NULL, NULL,
		 "ERR SYNTAX a ok Invalid character in argument\nCMD c NOOP\nEND idle\n");
	/* found by the fuzzer: a long run of digits without "{" is no literal,
	 * whether the discarded line arrives in one piece or in many */
	memcpy(in, "a X \x01 {1+}\r\nZ", 14);
	memset(in + 14, '8', 70);
	memcpy(in + 84, "+}\r\nc NOOP\r\n", 12);
	expect_n(in, 96, NULL, NULL,
		 "ERR SYNTAX a ok Invalid character in argument\nCMD c NOOP\nEND idle\n");
	/* a {n+} over UINT32_MAX while discarding: no way to resynchronise */
	expect("a X \x01 {4294967296+}\r\nc NOOP\r\n",
	       "ERR SYNTAX a ok Invalid character in argument\nERR SYNTAX - fatal Literal size out of range\n"
	       "CLOSED\n");
	expect("a X \x01 {4294967295+}\r\n", "ERR SYNTAX a ok Invalid character in argument\nEND pending\n");
	/* "{5+}" not at the end of the line, or broken, is no literal */
	expect("a X \x01 {5+} \r\nc NOOP\r\n",
	       "ERR SYNTAX a ok Invalid character in argument\nCMD c NOOP\nEND idle\n");
	expect("a X \x01 {5+\r\nc NOOP\r\n",
	       "ERR SYNTAX a ok Invalid character in argument\nCMD c NOOP\nEND idle\n");
	expect("a X \x01 {+}\r\nc NOOP\r\n",
	       "ERR SYNTAX a ok Invalid character in argument\nCMD c NOOP\nEND idle\n");
	expect("a X \x01 {{5+}\r\nhello\r\nc NOOP\r\n",
	       "ERR SYNTAX a ok Invalid character in argument\nCMD c NOOP\nEND idle\n");
	/* a rejected literal inside an accepted command line, then more errors */
	struct srv s = { .reject_over = 2 };
	expect_cfg("a X {3+}\r\nabc\r\nb Y {1+}\r\nz (\r\nc NOOP\r\n", NULL, &s,
		   "START X 0 3 nonsync\nERR TOOBIG a ok Literal too large\nSTART Y 0 1 nonsync\n"
		   "ERR SYNTAX b ok Missing argument\nCMD c NOOP\nEND idle\n");
	/* fatal errors stay fatal after a reset */
	struct imap_parser *p = imap_parser_new(NULL, NULL);
	size_t used;
	const char *f = "a X {99999999999+}\r\nb NOOP\r\n";
	assert_int_equal(imap_parser_feed(p, f, strlen(f), &used), IMAP_PARSER_ERROR);
	assert_true(imap_parser_error(p)->fatal);
	imap_parser_reset(p);
	assert_int_equal(imap_parser_feed(p, f + used, strlen(f) - used, &used), IMAP_PARSER_ERROR);
	assert_int_equal(used, 0);
	assert_true(imap_parser_error(p)->fatal);
	assert_null(imap_parser_error(p)->tag);
	imap_parser_free(&p);
}

static void test_reset_midway(void **state)
{
	(void)state;
	/* a reset in the middle of a command discards the rest of its line */
	struct imap_parser *p = imap_parser_new(NULL, NULL);
	size_t used;
	assert_int_equal(imap_parser_feed(p, "a LOGIN x", 9, &used), IMAP_PARSER_NEED_MORE);
	imap_parser_reset(p);
	const char *in = " y\r\nb NOOP\r\n";
	assert_int_equal(imap_parser_feed(p, in, strlen(in), &used), IMAP_PARSER_DONE);
	assert_string_equal(imap_parser_command(p)->tag, "b");
	imap_parser_reset(p);
	/* ...and in a literal, the rest of the literal too */
	in = "a X {10+}\r\nabc";
	assert_int_equal(imap_parser_feed(p, in, strlen(in), &used), IMAP_PARSER_NEED_MORE);
	imap_parser_reset(p);
	in = "defghij z\r\nb NOOP\r\n";
	assert_int_equal(imap_parser_feed(p, in, strlen(in), &used), IMAP_PARSER_DONE);
	assert_string_equal(imap_parser_command(p)->tag, "b");
	imap_parser_free(&p);
}

static void test_callback_args(void **state)
{
	(void)state;
	/* argc counts complete top-level arguments before the literal */
	expect("a X (a {1+}\r\nb) c {1+}\r\nd\r\n",
	       "START X 0 1 nonsync\nSTART X 2 1 nonsync\nCMD a X (a {1+}b) c {1+}d\nEND idle\n");
	expect("a UID X {1+}\r\nd\r\n", "START X 0 1 nonsync\nCMD a UID X {1+}d\nEND idle\n");
}

static void test_large_tokens(void **state)
{
	(void)state;
	/* a large buffered literal and a large atom (adopted buffers) */
	size_t n = 100000;
	char *in = malloc(n + 100);
	int h = sprintf(in, "a X {%zu+}\r\n", n);
	for (size_t i = 0; i < n; i++)
		in[h + i] = (char)('a' + i % 26);
	memcpy(in + h + n, " y\r\n", 4);
	struct imap_parser *p = imap_parser_new(NULL, NULL);
	size_t used;
	assert_int_equal(imap_parser_feed(p, in, (size_t)h + n + 4, &used), IMAP_PARSER_DONE);
	const struct imap_command *c = imap_parser_command(p);
	assert_int_equal(c->args[0].type, IMAP_ARG_LITERAL);
	assert_int_equal(c->args[0].len, n);
	assert_memory_equal(c->args[0].str, in + h, n);
	assert_string_equal(c->args[1].str, "y");
	imap_parser_reset(p);
	memset(in, 'q', 60000);
	memcpy(in, "a X ", 4);
	memcpy(in + 60000, "\r\n", 2);
	assert_int_equal(imap_parser_feed(p, in, 60002, &used), IMAP_PARSER_DONE);
	c = imap_parser_command(p);
	assert_int_equal(c->args[0].len, 59996);
	imap_parser_free(&p);
	free(in);
}

static void test_arg_helpers(void **state)
{
	(void)state;
	struct imap_parser *p = imap_parser_new(NULL, NULL);
	size_t used;
	const char *in = "a X abc \"q s\" {2+}\r\nlt ~{3+}\r\na\0b 1:* a%b BODY[] (x)\r\n";
	assert_int_equal(imap_parser_feed(p, in, 54, &used), IMAP_PARSER_DONE);
	const struct imap_command *c = imap_parser_command(p);
	const struct imap_arg *a = c->args;
	assert_int_equal(c->argc, 8);
	const char *s;
	size_t len;
	/* atom */
	assert_true(imap_parser_arg_astring(&a[0], &s, &len));
	assert_int_equal(len, 3);
	assert_false(imap_parser_arg_string(&a[0], &s, &len));
	assert_false(imap_parser_arg_nstring(&a[0], &s, &len));
	assert_true(imap_parser_arg_atom_eq(&a[0], "ABC"));
	assert_false(imap_parser_arg_atom_eq(&a[0], "ab"));
	/* quoted */
	assert_true(imap_parser_arg_string(&a[1], &s, &len));
	assert_string_equal(s, "q s");
	assert_true(imap_parser_arg_nstring(&a[1], &s, &len));
	assert_true(imap_parser_arg_astring(&a[1], &s, &len));
	assert_false(imap_parser_arg_atom_eq(&a[1], "q s"));
	/* literal; literal8 with NUL is no string */
	assert_true(imap_parser_arg_astring(&a[2], &s, &len));
	assert_string_equal(s, "lt");
	assert_int_equal(a[3].type, IMAP_ARG_LITERAL);
	assert_true(a[3].literal8);
	assert_false(imap_parser_arg_string(&a[3], &s, &len));
	assert_false(imap_parser_arg_astring(&a[3], &s, &len));
	/* "*", "%" and "[" atoms are not astrings (RFC 9051 9, ASTRING-CHAR) */
	assert_false(imap_parser_arg_astring(&a[4], &s, &len));
	assert_false(imap_parser_arg_astring(&a[5], &s, &len));
	assert_true(imap_parser_arg_astring(&a[6], &s, &len)); /* "[" is an ATOM-CHAR */
	/* list */
	assert_false(imap_parser_arg_astring(&a[7], &s, &len));
	assert_false(imap_parser_arg_atom_eq(&a[7], "x"));
	uint32_t n;
	assert_false(imap_parser_arg_number(&a[7], &n));
	imap_parser_free(&p);
}

/* ------------------------------------------------------------------ */
/* line mode                                                           */

static void test_read_line(void **state)
{
	(void)state;
	struct imap_parser_limits lim = { .max_line = 8 };
	struct imap_parser *p = imap_parser_new(&lim, NULL);
	const char *line;
	size_t len, used;

	/* IDLE: "DONE" split over feeds, then a pipelined command */
	assert_int_equal(imap_parser_read_line(p, "DO", 2, &used, &line, &len), IMAP_PARSER_NEED_MORE);
	assert_int_equal(used, 2);
	assert_int_equal(imap_parser_read_line(p, "NE\r\nb NOOP\r\n", 12, &used, &line, &len),
			 IMAP_PARSER_DONE);
	assert_int_equal(used, 4);
	assert_string_equal(line, "DONE");
	assert_int_equal(len, 4);
	assert_true(imap_parser_idle(p));
	assert_int_equal(imap_parser_feed(p, "b NOOP\r\n", 8, &used), IMAP_PARSER_DONE);
	imap_parser_reset(p);

	/* bare LF, empty line */
	assert_int_equal(imap_parser_read_line(p, "abc\n\n", 5, &used, &line, &len), IMAP_PARSER_DONE);
	assert_int_equal(used, 4);
	assert_string_equal(line, "abc");
	assert_int_equal(imap_parser_read_line(p, "\n", 1, &used, &line, &len), IMAP_PARSER_DONE);
	assert_int_equal(len, 0);

	/* byte by byte */
	const char *in = "dGVzdA==\r\n";
	size_t i;
	for (i = 0; i < strlen(in); i++) {
		enum imap_parser_result r = imap_parser_read_line(p, in + i, 1, &used, &line, &len);
		assert_int_equal(used, 1);
		if (r == IMAP_PARSER_DONE)
			break;
		assert_int_equal(r, IMAP_PARSER_NEED_MORE);
	}
	assert_int_equal(i, strlen(in) - 1);
	assert_string_equal(line, "dGVzdA==");

	/* too long: ERROR, then the rest of that line is discarded */
	assert_int_equal(imap_parser_read_line(p, "123456789", 9, &used, &line, &len), IMAP_PARSER_ERROR);
	assert_int_equal(imap_parser_error(p)->kind, IMAP_PARSER_ERR_LIMIT);
	assert_false(imap_parser_error(p)->fatal);
	imap_parser_reset(p);
	assert_int_equal(imap_parser_read_line(p, "0 {5+}\r\n*\r\n", 11, &used, &line, &len),
			 IMAP_PARSER_DONE);
	assert_string_equal(line, "*");

	/* NUL and stray CR */
	assert_int_equal(imap_parser_read_line(p, "a\0b\r\n*\r\n", 8, &used, &line, &len),
			 IMAP_PARSER_ERROR);
	imap_parser_reset(p);
	assert_int_equal(imap_parser_read_line(p, "a\0b\r\n*\r\n" + used, 8 - used, &used, &line, &len),
			 IMAP_PARSER_DONE);
	assert_string_equal(line, "*");
	assert_int_equal(imap_parser_read_line(p, "a\rb\n", 4, &used, &line, &len), IMAP_PARSER_ERROR);
	assert_int_equal(used, 3);
	imap_parser_reset(p);

	/* not between commands: refused */
	assert_int_equal(imap_parser_feed(p, "\na NO", 5, &used), IMAP_PARSER_NEED_MORE);
	assert_int_equal(imap_parser_read_line(p, "x\r\n", 3, &used, &line, &len), IMAP_PARSER_ERROR);
	assert_true(imap_parser_error(p)->fatal);
	imap_parser_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple),
		cmocka_unit_test(test_atoms_strings),
		cmocka_unit_test(test_nil),
		cmocka_unit_test(test_lists),
		cmocka_unit_test(test_uid),
		cmocka_unit_test(test_brackets),
		cmocka_unit_test(test_pipelined),
		cmocka_unit_test(test_line_endings),
		cmocka_unit_test(test_literal_sync),
		cmocka_unit_test(test_literal_nonsync),
		cmocka_unit_test(test_literal8),
		cmocka_unit_test(test_streaming),
		cmocka_unit_test(test_streaming_memory),
		cmocka_unit_test(test_reject),
		cmocka_unit_test(test_huge_literals),
		cmocka_unit_test(test_bad_numbers),
		cmocka_unit_test(test_nul_in_line),
		cmocka_unit_test(test_line_limit),
		cmocka_unit_test(test_depth),
		cmocka_unit_test(test_arg_limit),
		cmocka_unit_test(test_quotes),
		cmocka_unit_test(test_tags_and_names),
		cmocka_unit_test(test_recovery),
		cmocka_unit_test(test_reset_midway),
		cmocka_unit_test(test_callback_args),
		cmocka_unit_test(test_large_tokens),
		cmocka_unit_test(test_arg_helpers),
		cmocka_unit_test(test_read_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
