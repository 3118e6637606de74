/*
 * test_mime.c: unit tests for src/mime.
 *
 * Expectations are written by hand from the RFC grammars (RFC 9051 7.5.2,
 * RFC 2045/2046/2047/2231, RFC 5256, RFC 5322), never produced by the code
 * under test. Every message is parsed three ways (whole, one byte at a time,
 * odd-sized slices) and the three trees must agree exactly before anything
 * else is checked (STYLE.md: every parser test is also fed byte by byte).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mime/mime.h"

/* ------------------------------------------------------------------ */
/* helpers                                                             */

static struct mime_tree *parse_sliced(const char *msg, size_t len, size_t slice)
{
	struct mime_parser *p = mime_parser_new(NULL);
	assert_non_null(p);
	for (size_t i = 0; i < len; i += slice) {
		size_t n = len - i < slice ? len - i : slice;
		assert_int_equal(mime_parser_feed(p, msg + i, n), MIME_NEED_MORE);
	}
	struct mime_tree *t = NULL;
	struct error error;
	assert_int_equal(mime_parser_finish(&p, &t, &error), 0);
	assert_null(p);
	return t;
}

static char *describe(const struct mime_tree *t)
{
	size_t l1, l2, l3, l4;
	char *a = mime_tree_serialize(t, &l1);
	char *b = mime_bodystructure_imap(t, true, &l2);
	char *c = mime_envelope_imap(t->root, &l3);
	char *d = mime_bodystructure_imap(t, false, &l4);
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(c);
	assert_non_null(d);
	char *all = malloc(l1 + l2 + l3 + l4 + 4);
	assert_non_null(all);
	sprintf(all, "%s\n%s\n%s\n%s", a, b, c, d);
	free(a);
	free(b);
	free(c);
	free(d);
	return all;
}

/* Parses whole, byte by byte and in 7-byte slices; asserts all agree. */
static struct mime_tree *parse_n(const char *msg, size_t len)
{
	struct mime_tree *whole = parse_sliced(msg, len, len ? len : 1);
	char *w = describe(whole);
	size_t slices[] = { 1, 7 };
	for (unsigned int i = 0; i < 2; i++) {
		struct mime_tree *t = parse_sliced(msg, len, slices[i]);
		char *d = describe(t);
		assert_string_equal(w, d);
		free(d);
		mime_tree_free(&t);
	}
	free(w);
	return whole;
}

static struct mime_tree *parse(const char *msg)
{
	return parse_n(msg, strlen(msg));
}

static void assert_bodystructure(const struct mime_tree *t, bool ext, const char *expected)
{
	size_t len;
	char *s = mime_bodystructure_imap(t, ext, &len);
	assert_non_null(s);
	assert_string_equal(s, expected);
	assert_int_equal(len, strlen(expected));
	free(s);
}

static void assert_envelope(const struct mime_tree *t, const char *expected)
{
	size_t len;
	char *s = mime_envelope_imap(t->root, &len);
	assert_non_null(s);
	assert_string_equal(s, expected);
	free(s);
}

static int collect(void *ctx, const void *data, size_t len)
{
	char **buf = ctx;
	size_t old = *buf ? strlen(*buf) : 0;
	char *n = realloc(*buf, old + len + 1);
	assert_non_null(n);
	memcpy(n + old, data, len);
	n[old + len] = '\0';
	*buf = n;
	return 0;
}

/* BODY[spec]<origin.count> as a string (data without NUL). */
static char *section(const struct mime_tree *t, const char *msg, const char *spec, uint64_t origin,
		     uint64_t count)
{
	struct mime_mem_source mem = { msg, strlen(msg) };
	struct mime_source src = { mime_source_mem_pread, &mem };
	struct mime_section s;
	struct mime_section_result r;
	struct error error;
	if (mime_section_parse(spec, strlen(spec), &s, &error) < 0)
		return NULL;
	int ret = mime_section_resolve(t, &s, &src, &r, &error);
	mime_section_clear(&s);
	if (ret < 0)
		return NULL;
	char *out = calloc(1, 1);
	assert_int_equal(mime_section_copy(&r, &src, origin, count, collect, &out, &error), 0);
	/* the announced size is what copy produced (before any partial) */
	if (origin == 0 && count == UINT64_MAX)
		assert_int_equal(r.vsize, strlen(out));
	mime_section_result_free(&r);
	return out;
}

static void assert_section(const struct mime_tree *t, const char *msg, const char *spec,
			   const char *expected)
{
	char *s = section(t, msg, spec, 0, UINT64_MAX);
	assert_non_null(s);
	assert_string_equal(s, expected);
	free(s);
}

static char *binary(const struct mime_tree *t, const char *msg, const unsigned int *path,
		    unsigned int plen, bool *unknown)
{
	struct mime_mem_source mem = { msg, strlen(msg) };
	struct mime_source src = { mime_source_mem_pread, &mem };
	char *out = calloc(1, 1);
	uint64_t size, size2;
	struct error error;
	if (mime_section_binary(t, path, plen, &src, collect, &out, &size, unknown, &error) < 0) {
		free(out);
		return NULL;
	}
	assert_int_equal(size, strlen(out));
	assert_int_equal(mime_section_binary(t, path, plen, &src, NULL, NULL, &size2, unknown, &error), 0);
	assert_int_equal(size, size2);
	return out;
}

/* ------------------------------------------------------------------ */
/* structure                                                           */

static void test_simple_message(void **state)
{
	(void)state;
	const char *m = "From: Fred Foobar <foobar@Blurdybloop.example>\r\n"
			"Subject: afternoon meeting\r\n"
			"To: mooch@owatagu.siam.edu.example\r\n"
			"Message-Id: <B27397-0100000@Blurdybloop.example>\r\n"
			"MIME-Version: 1.0\r\n"
			"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
			"\r\n"
			"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n";
	struct mime_tree *t = parse(m);
	assert_int_equal(t->size, strlen(m));
	assert_int_equal(t->vsize, strlen(m));
	assert_int_equal(t->part_count, 1);
	/* the header is everything up to and including the blank line */
	const char *body = strstr(m, "\r\n\r\n") + 4;
	assert_int_equal(t->root->header_offset, 0);
	assert_int_equal(t->root->header_size, (size_t)(body - m));
	assert_int_equal(t->root->body_offset, (size_t)(body - m));
	assert_int_equal(t->root->body_size, 55);
	assert_int_equal(t->root->body_lines, 1);
	assert_int_equal(t->root->header_lines, 7);
	assert_envelope(t, "(NIL \"afternoon meeting\" ((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\"))"
			   " ((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\"))"
			   " ((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\"))"
			   " ((NIL NIL \"mooch\" \"owatagu.siam.edu.example\")) NIL NIL NIL"
			   " \"<B27397-0100000@Blurdybloop.example>\")");
	assert_bodystructure(t, false, "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7bit\" 55 1)");
	assert_bodystructure(t, true,
			     "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7bit\" 55 1 NIL NIL NIL NIL)");
	assert_section(t, m, "1", "Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n");
	assert_section(t, m, "TEXT", "Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n");
	assert_section(t, m, "", m);
	assert_null(section(t, m, "2", 0, UINT64_MAX));
	assert_null(section(t, m, "1.1", 0, UINT64_MAX)); /* a single-part message has only 1 */
	assert_null(section(t, m, "1.HEADER", 0, UINT64_MAX)); /* not a message/rfc822 */
	mime_tree_free(&t);
}

static void test_default_content_type(void **state)
{
	(void)state;
	/* RFC 2045 5.2: no Content-Type means text/plain; charset=us-ascii */
	const char *m = "Subject: x\r\n\r\nline1\r\nline2\r\n";
	struct mime_tree *t = parse(m);
	assert_true(t->root->flags & MIME_PART_DEFAULT_TYPE);
	assert_bodystructure(t, true,
			     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 14 2 NIL NIL NIL NIL)");
	mime_tree_free(&t);
	/* an unparsable one too */
	t = parse("Content-Type: garbage\r\n\r\nx");
	assert_bodystructure(t, false, "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0)");
	mime_tree_free(&t);
	/* text without charset gets the RFC 2046 4.1.2 default */
	t = parse("Content-Type: text/html\r\n\r\nx");
	assert_bodystructure(t, false, "(\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0)");
	mime_tree_free(&t);
	/* non-text without parameters: NIL */
	t = parse("Content-Type: image/png (a comment)\r\nContent-Transfer-Encoding: Base64\r\n\r\nAAAA\r\n");
	assert_bodystructure(t, false, "(\"image\" \"png\" NIL NIL NIL \"Base64\" 6)");
	mime_tree_free(&t);
}

static const char multipart_msg[] =
	"Content-Type: multipart/mixed; boundary=\"x y\"\r\n"
	"\r\n"
	"preamble\r\n"
	"--x y\r\n"
	"\r\n"
	"A\r\n"
	"--x y  \t\r\n" /* transport padding */
	"Content-Type: text/html; charset=utf-8\r\n"
	"Content-ID: <id1@x>\r\n"
	"Content-Description: the \"html\"\r\n"
	"Content-Language: en, de\r\n"
	"Content-Location: http://x/y\r\n"
	"Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n"
	"Content-Disposition: inline; filename=a.html\r\n"
	"\r\n"
	"<b>B</b>\r\n"
	"\r\n"
	"--x yz\r\n" /* not a delimiter: another boundary */
	"--x y--\r\n"
	"epilogue\r\n";

static void test_multipart(void **state)
{
	(void)state;
	const char *m = multipart_msg;
	struct mime_tree *t = parse(m);
	assert_int_equal(t->part_count, 3);
	const struct mime_part *p1 = t->root->children, *p2 = p1->next;
	assert_non_null(p2);
	assert_null(p2->next);
	/* part 1: header is the empty line only, body "A" (the CRLF before
	 * the delimiter belongs to the delimiter, RFC 2046 5.1.1) */
	assert_int_equal(p1->header_offset, (size_t)(strstr(m, "--x y\r\n") - m) + 7);
	assert_int_equal(p1->header_size, 2);
	assert_int_equal(p1->body_size, 1);
	assert_int_equal(p1->body_lines, 0);
	/* part 2 body: "<b>B</b>\r\n\r\n--x yz" = 8 + 2 + 2 + 6 */
	assert_int_equal(p2->body_size, 18);
	assert_int_equal(p2->body_lines, 2);
	assert_section(t, m, "1", "A");
	assert_section(t, m, "2", "<b>B</b>\r\n\r\n--x yz");
	assert_section(t, m, "1.MIME", "\r\n");
	assert_section(t, m, "TEXT", strstr(m, "preamble"));
	assert_bodystructure(t, true,
			     "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0 NIL NIL NIL NIL)"
			     "(\"text\" \"html\" (\"charset\" \"utf-8\") \"<id1@x>\" \"the \\\"html\\\"\" \"7bit\" 18 2"
			     " \"Q2hlY2sgSW50ZWdyaXR5IQ==\" (\"inline\" (\"filename\" \"a.html\")) (\"en\" \"de\")"
			     " \"http://x/y\") \"mixed\" (\"boundary\" \"x y\") NIL NIL NIL)");
	assert_bodystructure(t, false,
			     "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0)"
			     "(\"text\" \"html\" (\"charset\" \"utf-8\") \"<id1@x>\" \"the \\\"html\\\"\" \"7bit\" 18 2)"
			     " \"mixed\")");
	assert_false(t->flags & MIME_TREE_NO_FINAL_BOUNDARY);
	mime_tree_free(&t);
}

static void test_boundary_prefixes(void **state)
{
	(void)state;
	/* inner boundary extends the outer one */
	const char *m1 = "Content-Type: multipart/mixed; boundary=abc\r\n\r\n"
			 "--abc\r\nContent-Type: multipart/alternative; boundary=abcdef\r\n\r\n"
			 "--abcdef\r\n\r\nI1\r\n--abcdef\r\n\r\nI2\r\n--abcdef--\r\n"
			 "--abc\r\n\r\nO2\r\n--abc--\r\n";
	struct mime_tree *t = parse(m1);
	assert_int_equal(t->part_count, 5);
	assert_section(t, m1, "1.1", "I1");
	assert_section(t, m1, "1.2", "I2");
	assert_section(t, m1, "2", "O2");
	mime_tree_free(&t);
	/* outer boundary extends the inner one: "--abcdef" must close the
	 * inner part as the outer delimiter, not be read as "--abc" + junk */
	const char *m2 = "Content-Type: multipart/mixed; boundary=abcdef\r\n\r\n"
			 "--abcdef\r\nContent-Type: multipart/alternative; boundary=abc\r\n\r\n"
			 "--abc\r\n\r\nI1\r\n--abcdef\r\n\r\nO2\r\n--abcdef--\r\n";
	t = parse(m2);
	assert_int_equal(t->part_count, 4);
	assert_section(t, m2, "1.1", "I1");
	assert_section(t, m2, "2", "O2");
	assert_true(t->root->children->flags & MIME_PART_MULTIPART);
	mime_tree_free(&t);
}

static void test_missing_final_boundary(void **state)
{
	(void)state;
	const char *m = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nbody one\r\n--b\r\n\r\nlast";
	struct mime_tree *t = parse(m);
	assert_true(t->flags & MIME_TREE_NO_FINAL_BOUNDARY);
	assert_true(t->root->flags & MIME_PART_NO_FINAL_BOUNDARY);
	assert_section(t, m, "1", "body one");
	assert_section(t, m, "2", "last");
	mime_tree_free(&t);
	/* no boundary at all: a multipart with no parts gets one empty
	 * text/plain in BODYSTRUCTURE (1*body) */
	t = parse("Content-Type: multipart/mixed; boundary=zz\r\n\r\nnothing here\r\n");
	assert_bodystructure(t, false,
			     "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0) \"mixed\")");
	mime_tree_free(&t);
}

static void test_header_cut_by_boundary(void **state)
{
	(void)state;
	const char *m = "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
			"--b\r\nContent-Type: text/x-cut\r\n--b\r\n\r\nsecond\r\n--b--\r\n";
	struct mime_tree *t = parse(m);
	const struct mime_part *p1 = t->root->children;
	assert_string_equal(p1->subtype, "x-cut");
	assert_true(p1->flags & MIME_PART_HEADER_UNTERMINATED);
	assert_int_equal(p1->body_size, 0);
	assert_section(t, m, "2", "second");
	mime_tree_free(&t);
}

static const char rfc822_msg[] =
	"From: outer@example.com\r\n"
	"Subject: fwd\r\n"
	"Content-Type: multipart/mixed; boundary=\"=_outer\"\r\n"
	"\r\n"
	"--=_outer\r\n"
	"Content-Type: text/plain\r\n"
	"\r\n"
	"see attached\r\n"
	"--=_outer\r\n"
	"Content-Type: message/rfc822\r\n"
	"\r\n"
	"From: inner@example.com\r\n"
	"Subject: inner\r\n"
	"Content-Type: multipart/alternative; boundary=in\r\n"
	"\r\n"
	"--in\r\n"
	"\r\n"
	"plain\r\n"
	"--in\r\n"
	"Content-Type: text/html\r\n"
	"\r\n"
	"<p>html</p>\r\n"
	"--in--\r\n"
	"\r\n"
	"--=_outer--\r\n";

static void test_message_rfc822(void **state)
{
	(void)state;
	const char *m = rfc822_msg;
	struct mime_tree *t = parse(m);
	assert_int_equal(t->part_count, 6);
	assert_section(t, m, "2.1", "plain");
	assert_section(t, m, "2.2", "<p>html</p>");
	assert_section(t, m, "2.HEADER",
		       "From: inner@example.com\r\nSubject: inner\r\n"
		       "Content-Type: multipart/alternative; boundary=in\r\n\r\n");
	assert_section(t, m, "2.TEXT",
		       "--in\r\n\r\nplain\r\n--in\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--in--\r\n");
	assert_section(t, m, "2.1.MIME", "\r\n");
	assert_section(t, m, "2.2.MIME", "Content-Type: text/html\r\n\r\n");
	assert_section(t, m, "2.MIME", "Content-Type: message/rfc822\r\n\r\n");
	assert_section(t, m, "2.HEADER.FIELDS (SUBJECT)", "Subject: inner\r\n\r\n");
	assert_null(section(t, m, "2.3", 0, UINT64_MAX));
	assert_section(t, m, "1.1", "see attached"); /* n.1 of a leaf: itself */
	assert_null(section(t, m, "1.1.1", 0, UINT64_MAX));
	assert_null(section(t, m, "1.2", 0, UINT64_MAX));
	/* body of part 2: the inner message, 25+16+50+2+6+2+7+6+25+2+13+8 =
	 * 162 bytes, 12 LFs (the CRLF before "--=_outer--" is the delimiter's) */
	const char *inner = strstr(m, "From: inner");
	const char *end = strstr(m, "\r\n--=_outer--");
	assert_int_equal(t->root->children->next->body_size, (size_t)(end - inner));
	assert_bodystructure(t, false,
			     "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 12 0)"
			     "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 162"
			     " (NIL \"inner\" ((NIL NIL \"inner\" \"example.com\")) ((NIL NIL \"inner\" \"example.com\"))"
			     " ((NIL NIL \"inner\" \"example.com\")) NIL NIL NIL NIL NIL)"
			     " ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 0)"
			     "(\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 11 0) \"alternative\")"
			     " 12) \"mixed\")");
	mime_tree_free(&t);
}

static void test_digest_default(void **state)
{
	(void)state;
	/* RFC 2046 5.1.5: in multipart/digest the default is message/rfc822 */
	const char *m = "Content-Type: multipart/digest; boundary=d\r\n\r\n"
			"--d\r\n\r\nSubject: one\r\n\r\nbody\r\n--d--\r\n";
	struct mime_tree *t = parse(m);
	const struct mime_part *p = t->root->children;
	assert_string_equal(p->type, "message");
	assert_string_equal(p->subtype, "rfc822");
	assert_true(p->flags & MIME_PART_MESSAGE);
	assert_section(t, m, "1.TEXT", "body");
	mime_tree_free(&t);
}

static void test_bare_lf(void **state)
{
	(void)state;
	const char *m = "Subject: lf\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\nline1\nline2\n--b--\n";
	struct mime_tree *t = parse(m);
	assert_true(t->flags & MIME_TREE_BARE_LF);
	assert_int_equal(t->size, strlen(m));
	assert_int_equal(t->vsize, strlen(m) + 8); /* 8 LFs */
	const struct mime_part *p1 = t->root->children;
	assert_int_equal(p1->body_size, 11);
	assert_int_equal(p1->body_vsize, 12);
	assert_int_equal(p1->body_lines, 1);
	assert_section(t, m, "1", "line1\r\nline2");
	assert_section(t, m, "HEADER", "Subject: lf\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n");
	assert_section(t, m, "HEADER.FIELDS (subject)", "Subject: lf\r\n\r\n");
	/* partial across a converted LF: bytes 4..8 of "line1\r\nline2" */
	char *s = section(t, m, "1", 4, 5);
	assert_string_equal(s, "1\r\nli");
	free(s);
	assert_bodystructure(t, false,
			     "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 12 1) \"mixed\")");
	mime_tree_free(&t);
}

static void test_partial_ranges(void **state)
{
	(void)state;
	const char *m = multipart_msg;
	struct mime_tree *t = parse(m);
	struct mime_mem_source mem = { m, strlen(m) };
	struct mime_source src = { mime_source_mem_pread, &mem };
	struct mime_section s;
	struct mime_section_result r;
	struct error error;
	assert_int_equal(mime_section_parse("2", 1, &s, &error), 0);
	assert_int_equal(mime_section_resolve(t, &s, &src, &r, &error), 0);
	assert_int_equal(r.count, 1);
	uint64_t off = r.ranges[0].offset;
	assert_int_equal(mime_section_result_partial(&r, 3, 5), 0);
	assert_int_equal(r.count, 1);
	assert_int_equal(r.ranges[0].offset, off + 3);
	assert_int_equal(r.ranges[0].size, 5);
	assert_int_equal(r.vsize, 5);
	mime_section_result_free(&r);
	/* origin past the end: empty */
	assert_int_equal(mime_section_resolve(t, &s, &src, &r, &error), 0);
	assert_int_equal(mime_section_result_partial(&r, 1000, 5), 0);
	assert_int_equal(r.count, 0);
	assert_int_equal(r.vsize, 0);
	mime_section_result_free(&r);
	mime_section_clear(&s);
	/* HEADER.FIELDS partial: fields + the blank line */
	char *x = section(t, m, "2.MIME", 0, UINT64_MAX);
	assert_non_null(x);
	free(x);
	mime_tree_free(&t);
}

static void test_header_fields(void **state)
{
	(void)state;
	const char *m = "Subject: one\r\n"
			"X-A: a\r\n"
			"\tfolded\r\n"
			"From: f@x\r\n"
			"x-a: second\r\n"
			"NoColonLine\r\n"
			"\r\n"
			"body\r\n";
	struct mime_tree *t = parse(m);
	assert_section(t, m, "HEADER.FIELDS (X-A)", "X-A: a\r\n\tfolded\r\nx-a: second\r\n\r\n");
	assert_section(t, m, "HEADER.FIELDS (\"from\" subject)", "Subject: one\r\nFrom: f@x\r\n\r\n");
	assert_section(t, m, "HEADER.FIELDS.NOT (X-A Subject)", "From: f@x\r\nNoColonLine\r\n\r\n");
	assert_section(t, m, "HEADER.FIELDS (Nothing)", "\r\n");
	char *s = section(t, m, "HEADER.FIELDS (X-A)", 5, 10);
	assert_string_equal(s, "a\r\n\tfolded");
	free(s);
	s = section(t, m, "HEADER.FIELDS (From)", 9, 100);
	assert_string_equal(s, "\r\n\r\n");
	free(s);
	mime_tree_free(&t);
}

static void test_section_parse(void **state)
{
	(void)state;
	struct mime_section s;
	struct error error;
	assert_int_equal(mime_section_parse("1.2.3", 5, &s, &error), 0);
	assert_int_equal(s.path_len, 3);
	assert_int_equal(s.path[2], 3);
	assert_int_equal(s.kind, MIME_SECTION_ALL);
	assert_int_equal(mime_section_parse("4.header.fields.not (a \"b c\")", 29, &s, &error), 0);
	assert_int_equal(s.kind, MIME_SECTION_HEADER_FIELDS_NOT);
	assert_int_equal(s.field_count, 2);
	assert_string_equal(s.fields[1], "b c");
	mime_section_clear(&s);
	const char *bad[] = { "0", "1.", ".1", "MIME", "1.FOO", "HEADER.FIELDS", "HEADER.FIELDS ()",
			      "TEXT.1", "1..2", "99999999999", "HEADER.FIELDS (a" };
	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(mime_section_parse(bad[i], strlen(bad[i]), &s, &error), -1);
}

/* ------------------------------------------------------------------ */
/* ENVELOPE                                                            */

static void test_envelope_fields(void **state)
{
	(void)state;
	const char *m = "Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
			"From: Fred <fred@example.com>\r\n"
			"Sender: \r\n"
			"Reply-To: a@b.c (Comment Name)\r\n"
			"To: A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;\r\n"
			"Cc: Undisclosed recipients:;\r\n"
			"Bcc: <@r1.test,@r2.test:j@x.test>\r\n"
			"Subject: \r\n"
			"In-Reply-To: <a\"b@c>\r\n"
			"Message-ID: <id@x>\r\n"
			"\r\n";
	struct mime_tree *t = parse(m);
	/* Sender present but empty: defaults to From (RFC 9051 7.5.2);
	 * present-but-empty Subject is "" not NIL */
	assert_envelope(t, "(\"Mon, 7 Feb 1994 21:52:25 -0800 (PST)\" \"\""
			   " ((\"Fred\" NIL \"fred\" \"example.com\"))"
			   " ((\"Fred\" NIL \"fred\" \"example.com\"))"
			   " ((\"Comment Name\" NIL \"a\" \"b.c\"))"
			   " ((NIL NIL \"A Group\" NIL)(\"Ed Jones\" NIL \"c\" \"a.test\")(NIL NIL \"joe\" \"where.test\")"
			   "(\"John\" NIL \"jdoe\" \"one.test\")(NIL NIL NIL NIL))"
			   " ((NIL NIL \"Undisclosed recipients\" NIL)(NIL NIL NIL NIL))"
			   " ((NIL \"@r1.test,@r2.test\" \"j\" \"x.test\"))"
			   " \"<a\\\"b@c>\" \"<id@x>\")");
	mime_tree_free(&t);
	/* nothing at all */
	t = parse("");
	assert_envelope(t, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
	mime_tree_free(&t);
}

static void test_envelope_quoting(void **state)
{
	(void)state;
	/* 8-bit and quotes in a subject: literal; folding: unfolded only */
	const char *m = "Subject: caf\xc3\xa9\r\n"
			"From: \"Q \\\"x\\\"\" <q@x>\r\n"
			"To: \"a\\\\b\" <ab@x>\r\n"
			"Date: a\r\n  b\r\n"
			"\r\n";
	struct mime_tree *t = parse(m);
	assert_envelope(t, "(\"a  b\" {5}\r\ncaf\xc3\xa9"
			   " (({5}\r\nQ \"x\" NIL \"q\" \"x\")) (({5}\r\nQ \"x\" NIL \"q\" \"x\"))"
			   " (({5}\r\nQ \"x\" NIL \"q\" \"x\")) (({3}\r\na\\b NIL \"ab\" \"x\")) NIL NIL NIL NIL)");
	mime_tree_free(&t);
	/* NUL in a header goes out as 0x80 in a literal */
	static const char nul[] = "Subject: a\0b\r\n\r\n";
	t = parse_n(nul, sizeof(nul) - 1);
	assert_true(t->flags & MIME_TREE_NUL);
	size_t len;
	char *e = mime_envelope_imap(t->root, &len);
	assert_memory_equal(e, "(NIL {3}\r\na\x80" "b NIL", 14);
	free(e);
	mime_tree_free(&t);
}

static void test_addresses_broken(void **state)
{
	(void)state;
	struct {
		const char *in, *out;
	} cases[] = {
		{ "foo", "(NIL NIL foo MISSING_DOMAIN)" },
		{ "John Smith", "(John Smith NIL MISSING_MAILBOX MISSING_DOMAIN)" },
		{ "Joe <>", "(Joe NIL MISSING_MAILBOX MISSING_DOMAIN)" },
		{ "a@b, c@d", "(NIL NIL a b)(NIL NIL c d)" },
		{ "\"last, first\" <lf@x> (c)", "(last, first NIL lf x)" },
		{ "x@[1.2.3.4]", "(NIL NIL x [1.2.3.4])" },
		{ "g: ;", "(NIL NIL g NIL)(NIL NIL NIL NIL)" },
		{ "", "" },
	};
	for (unsigned int i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mime_address *list;
		assert_int_equal(mime_address_parse(cases[i].in, strlen(cases[i].in), &list), 0);
		char buf[512] = "";
		for (struct mime_address *a = list; a != NULL; a = a->next) {
			char one[200];
			snprintf(one, sizeof(one), "(%s %s %s %s)", a->name ? a->name : "NIL",
				 a->route ? a->route : "NIL", a->mailbox ? a->mailbox : "NIL",
				 a->host ? a->host : "NIL");
			strcat(buf, one);
		}
		assert_string_equal(buf, cases[i].out);
		mime_address_free(&list);
	}
	struct mime_address *list;
	const char *v = "=?utf-8?q?J=C3=B6rg?= <j@x>";
	assert_int_equal(mime_address_parse(v, strlen(v), &list), 0);
	char *d = mime_address_display_utf8(list);
	assert_string_equal(d, "J\xc3\xb6rg");
	free(d);
	mime_address_free(&list);
}

/* ------------------------------------------------------------------ */
/* parameters, RFC 2231                                                */

static void test_rfc2231(void **state)
{
	(void)state;
	const char *m = "Content-Type: application/x-stuff;\r\n"
			" title*1*=%2A%2A%2Afun%2A%2A%2A%20;\r\n"
			" title*0*=us-ascii'en'This%20is%20even%20more%20;\r\n"
			" title*2=\"isn't it!\"; other=1\r\n"
			"Content-Disposition: attachment; filename*=iso-8859-1''caf%E9.txt\r\n"
			"\r\n";
	struct mime_tree *t = parse(m);
	/* joined, still encoded; the plain piece %-escaped (see mime_param.c) */
	assert_bodystructure(t, false,
			     "(\"application\" \"x-stuff\" (\"other\" \"1\" \"title*\""
			     " \"us-ascii'en'This%20is%20even%20more%20%2A%2A%2Afun%2A%2A%2A%20isn%27t%20it!\")"
			     " NIL NIL \"7bit\" 0)");
	char *v = mime_param_get_utf8(t->root->params, t->root->param_count, "TITLE");
	assert_string_equal(v, "This is even more ***fun*** isn't it!");
	free(v);
	v = mime_param_get_utf8(t->root->disp_params, t->root->disp_param_count, "filename");
	assert_string_equal(v, "caf\xc3\xa9.txt");
	free(v);
	assert_null(mime_param_get_utf8(t->root->params, t->root->param_count, "missing"));
	mime_tree_free(&t);
	/* a gap in the indexes: left alone */
	t = parse("Content-Type: a/b; n*0=x; n*2=y\r\n\r\n");
	assert_bodystructure(t, false, "(\"a\" \"b\" (\"n*0\" \"x\" \"n*2\" \"y\") NIL NIL \"7bit\" 0)");
	mime_tree_free(&t);
	/* non-extended continuations: plain name */
	t = parse("Content-Type: a/b; n*1=\"def\"; n*0=abc\r\n\r\n");
	assert_bodystructure(t, false, "(\"a\" \"b\" (\"n\" \"abcdef\") NIL NIL \"7bit\" 0)");
	mime_tree_free(&t);
	/* RFC 2047 in a parameter (not allowed, but decoded for search) */
	t = parse("Content-Type: a/b; name=\"=?utf-8?b?w6k=?=\"\r\n\r\n");
	v = mime_param_get_utf8(t->root->params, t->root->param_count, "name");
	assert_string_equal(v, "\xc3\xa9");
	free(v);
	mime_tree_free(&t);
}

/* ------------------------------------------------------------------ */
/* decoding                                                            */

static char *decode_all(enum mime_cte cte, const char *in, size_t slice)
{
	struct mime_decoder *d = mime_decoder_new(cte);
	assert_non_null(d);
	char *out = calloc(1, 1);
	size_t len = strlen(in);
	for (size_t i = 0; i < len; i += slice)
		assert_int_equal(mime_decoder_feed(d, in + i, len - i < slice ? len - i : slice,
						   collect, &out), 0);
	assert_int_equal(mime_decoder_finish(d, collect, &out), 0);
	mime_decoder_free(&d);
	return out;
}

static void assert_decodes(enum mime_cte cte, const char *in, const char *expected)
{
	size_t slices[] = { 1, 2, 3, 1000 };
	for (unsigned int i = 0; i < 4; i++) {
		char *s = decode_all(cte, in, slices[i]);
		assert_string_equal(s, expected);
		free(s);
	}
}

static void test_base64(void **state)
{
	(void)state;
	assert_decodes(MIME_CTE_BASE64, "aGVsbG8gd29ybGQ=\r\n", "hello world");
	assert_decodes(MIME_CTE_BASE64, "aGVs\r\nbG8=", "hello");
	assert_decodes(MIME_CTE_BASE64, "YQ==", "a");
	assert_decodes(MIME_CTE_BASE64, "Y W*J j", "abc"); /* RFC 2045 6.8: junk ignored */
	assert_decodes(MIME_CTE_BASE64, "YQ==YWJj", "a");  /* data after padding ends it */
	assert_decodes(MIME_CTE_BASE64, "YWI", "ab");      /* missing padding */
	assert_decodes(MIME_CTE_BASE64, "", "");
	assert_int_equal(mime_decode_cte("BASE64", 6), MIME_CTE_BASE64);
	assert_int_equal(mime_decode_cte("x-uuencode", 10), MIME_CTE_UNKNOWN);
	assert_int_equal(mime_decode_cte(NULL, 0), MIME_CTE_7BIT);
	assert_null(mime_decoder_new(MIME_CTE_UNKNOWN));
}

static void test_quoted_printable(void **state)
{
	(void)state;
	assert_decodes(MIME_CTE_QP, "caf=C3=A9\r\n", "caf\xc3\xa9\r\n");
	assert_decodes(MIME_CTE_QP, "soft=\r\nbreak", "softbreak");
	assert_decodes(MIME_CTE_QP, "soft= \t\r\nbreak", "softbreak"); /* padding after = */
	assert_decodes(MIME_CTE_QP, "trail   \r\nx\t\r\n", "trail\r\nx\r\n");
	assert_decodes(MIME_CTE_QP, "a=3d=3Db", "a==b");
	assert_decodes(MIME_CTE_QP, "bad=ZZ=4", "bad=ZZ=4");
	assert_decodes(MIME_CTE_QP, "lf=\nx\n", "lfx\n");
	assert_decodes(MIME_CTE_QP, "a b", "a b");
	assert_decodes(MIME_CTE_QP, "cr\ronly", "cr\ronly");
}

static void test_binary_section(void **state)
{
	(void)state;
	const char *m = "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
			"--b\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n"
			"--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nx=3Dy=\r\nz\r\n"
			"--b\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n"
			"--b\r\n\r\nplain\r\n--b--\r\n";
	struct mime_tree *t = parse(m);
	unsigned int p1[] = { 1 }, p2[] = { 2 }, p3[] = { 3 }, p4[] = { 4 }, p9[] = { 9 };
	bool unknown;
	char *s = binary(t, m, p1, 1, &unknown);
	assert_string_equal(s, "hello");
	free(s);
	s = binary(t, m, p2, 1, &unknown);
	assert_string_equal(s, "x=yz");
	free(s);
	s = binary(t, m, p4, 1, &unknown);
	assert_string_equal(s, "plain");
	free(s);
	assert_null(binary(t, m, p3, 1, &unknown));
	assert_true(unknown);
	assert_null(binary(t, m, p9, 1, &unknown));
	assert_false(unknown);
	s = binary(t, m, NULL, 0, &unknown);
	assert_string_equal(s, m);
	free(s);
	mime_tree_free(&t);
}

static void test_rfc2047(void **state)
{
	(void)state;
	struct {
		const char *in, *out;
	} cases[] = {
		/* RFC 2047 8 examples */
		{ "(=?ISO-8859-1?Q?a?=)", "(a)" },
		{ "(=?ISO-8859-1?Q?a?= b)", "(a b)" },
		{ "(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)", "(ab)" },
		{ "(=?ISO-8859-1?Q?a?=  =?ISO-8859-1?Q?b?=)", "(ab)" },
		{ "(=?ISO-8859-1?Q?a?=\r\n    =?ISO-8859-1?Q?b?=)", "(ab)" },
		{ "(=?ISO-8859-1?Q?a_b?=)", "(a b)" },
		{ "(=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=)", "(a b)" },
		{ "=?US-ASCII?Q?Keith_Moore?= <moore@cs.utk.edu>", "Keith Moore <moore@cs.utk.edu>" },
		{ "=?ISO-8859-1?Q?Andr=E9?= Pirard", "Andr\xc3\xa9 Pirard" },
		{ "=?iso-8859-1?b?Y2Fm6Q==?=", "caf\xc3\xa9" },
		/* a UTF-8 character split across two words */
		{ "=?utf-8?b?4oI=?= =?utf-8?b?rA==?=", "\xe2\x82\xac" },
		/* RFC 2231 5 language suffix */
		{ "=?US-ASCII*EN?Q?Keith?=", "Keith" },
		/* unknown charset: the word stays */
		{ "x =?x-nonesuch?q?abc?= y", "x =?x-nonesuch?q?abc?= y" },
		/* not an encoded word */
		{ "=?utf-8?q?a b?=", "=?utf-8?q?a b?=" },
		/* invalid bytes become U+FFFD */
		{ "a\xff" "b", "a\xef\xbf\xbd" "b" },
		{ "=?utf-8?q?=FF?=", "\xef\xbf\xbd" },
		{ "=?iso-2022-jp?b?GyRCJEgbKEI=?=", "\xe3\x81\xa8" },
		{ "=?koi8-r?b?8NLJ18XU?=", "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82" },
		{ "", "" },
	};
	for (unsigned int i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len;
		char *s = mime_decode_header_utf8(cases[i].in, strlen(cases[i].in), &len);
		assert_non_null(s);
		assert_string_equal(s, cases[i].out);
		assert_int_equal(len, strlen(cases[i].out));
		free(s);
	}
}

static void test_charset(void **state)
{
	(void)state;
	char *out;
	size_t len;
	assert_int_equal(mime_charset_to_utf8("windows-1252", "\x80", 1, &out, &len), 0);
	assert_string_equal(out, "\xe2\x82\xac");
	free(out);
	/* invalid sequence in a multibyte charset: replaced, the rest kept */
	assert_int_equal(mime_charset_to_utf8("euc-jp", "a\xa1" "b", 3, &out, &len), 0);
	assert_non_null(strstr(out, "\xef\xbf\xbd"));
	assert_int_equal(out[0], 'a');
	free(out);
	/* truncated at the end */
	assert_int_equal(mime_charset_to_utf8("utf-16le", "a\0b", 3, &out, &len), 0);
	assert_string_equal(out, "a\xef\xbf\xbd");
	free(out);
	assert_int_equal(mime_charset_to_utf8("no-such-charset", "x", 1, &out, &len), -1);
	assert_int_equal(mime_charset_to_utf8("../../etc/passwd", "x", 1, &out, &len), -1);
	/* overlong and surrogates are invalid UTF-8 (RFC 3629) */
	out = mime_charset_utf8_sanitize("\xc0\xaf\xed\xa0\x80", 5, &len);
	assert_string_equal(out, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	free(out);
}

static void test_base_subject(void **state)
{
	(void)state;
	struct {
		const char *in, *out;
		bool reply;
	} cases[] = {
		{ "Re: hello", "hello", true },
		{ "RE: re:  Fwd: hello  (fwd)", "hello", true },
		{ "[list] Re: [other] topic", "topic", true },
		{ "[fwd: the thing]", "the thing", true },
		{ "[list]", "[list]", false },
		{ "  plain   words\t here ", "plain words here", false },
		{ "Re: =?utf-8?q?caf=C3=A9?=", "caf\xc3\xa9", true },
		{ "Re:", "", true },
		{ "", "", false },
	};
	for (unsigned int i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool reply;
		char *s = mime_subject_base(cases[i].in, strlen(cases[i].in), &reply);
		assert_non_null(s);
		assert_string_equal(s, cases[i].out);
		assert_int_equal(reply, cases[i].reply);
		free(s);
	}
}

/* ------------------------------------------------------------------ */
/* index serialisation                                                 */

static void test_tree_roundtrip(void **state)
{
	(void)state;
	const char *m = rfc822_msg;
	struct mime_tree *t = parse(m);
	size_t len;
	char *ser = mime_tree_serialize(t, &len);
	struct mime_tree *t2;
	struct error error;
	assert_int_equal(mime_tree_deserialize(ser, len, &t2, &error), 0);
	size_t len2;
	char *ser2 = mime_tree_serialize(t2, &len2);
	assert_string_equal(ser, ser2);
	/* the charset of a text part survives (SEARCH decodes bodies with it) */
	struct mime_tree *tc = parse("Content-Type: text/plain; charset=\"ISO-8859-1\"\r\n\r\nx\r\n");
	size_t lc;
	char *sc = mime_tree_serialize(tc, &lc);
	struct mime_tree *tc2;
	assert_int_equal(mime_tree_deserialize(sc, lc, &tc2, &error), 0);
	assert_int_equal(tc2->root->param_count, 1);
	assert_string_equal(tc2->root->params[0].name, "charset");
	assert_string_equal(tc2->root->params[0].value, "ISO-8859-1");
	free(sc);
	mime_tree_free(&tc);
	mime_tree_free(&tc2);
	/* sections resolve the same from the deserialised tree */
	const char *specs[] = { "1", "2", "2.1", "2.2", "2.HEADER", "2.TEXT", "2.2.MIME", "HEADER",
				"2.HEADER.FIELDS (subject)" };
	for (unsigned int i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		char *a = section(t, m, specs[i], 0, UINT64_MAX);
		char *b = section(t2, m, specs[i], 0, UINT64_MAX);
		assert_non_null(a);
		assert_non_null(b);
		assert_string_equal(a, b);
		free(a);
		free(b);
	}
	/* corrupt input is refused, never trusted */
	const char *bad[] = {
		"",
		"mime-tree 1 0 1 10 10\n",
		"mime-tree 1 0 1 10 10\n0 0 0 5 5 1 5 99 99 0 0 text plain\n",
		"mime-tree 1 0 2 10 10\n0 0 0 5 5 1 5 5 5 0 0 text plain\n1 0 5 0 0 0 5 5 5 0 0 a b\n",
		"mime-tree 1 0 1 10 10\n0 0 0 5 5 1 5 5 5 0 9 text plain\n",
		"mime-tree 1 0 1 10 10\n0 0 0 5 5 1 5 5 5 0 0 text\n",
	};
	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(mime_tree_deserialize(bad[i], strlen(bad[i]), &t2, &error) == 0 ? 0 : -1,
				 -1);
	free(ser);
	free(ser2);
	mime_tree_free(&t2);
	mime_tree_free(&t);
}

/* ------------------------------------------------------------------ */
/* hostile input                                                       */

static void test_empty_and_tiny(void **state)
{
	(void)state;
	struct mime_tree *t = parse("");
	assert_int_equal(t->size, 0);
	assert_int_equal(t->part_count, 1);
	assert_bodystructure(t, false, "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)");
	assert_section(t, "", "", "");
	assert_section(t, "", "HEADER", "");
	assert_section(t, "", "HEADER.FIELDS (a)", "\r\n");
	mime_tree_free(&t);
	/* no blank line: everything is header */
	t = parse("Subject: only a header");
	assert_true(t->root->flags & MIME_PART_HEADER_UNTERMINATED);
	assert_int_equal(t->root->header_size, 22);
	assert_int_equal(t->root->body_size, 0);
	assert_envelope(t, "(NIL \"only a header\" NIL NIL NIL NIL NIL NIL NIL NIL)");
	mime_tree_free(&t);
	const char *tiny[] = { "\n", "\r\n", "\r", "\r\n\r\n", "-", "--", ":", " x", "\n\n\n" };
	for (unsigned int i = 0; i < sizeof(tiny) / sizeof(tiny[0]); i++) {
		t = parse(tiny[i]);
		assert_int_equal(t->size, strlen(tiny[i]));
		mime_tree_free(&t);
	}
}

static void test_nul_and_bare_cr(void **state)
{
	(void)state;
	static const char m[] = "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
				"--b\r\n\r\na\0b\rc\r\n--b\r\n\r\n\0\0\r\n--b--\r\n";
	struct mime_tree *t = parse_n(m, sizeof(m) - 1);
	assert_int_equal(t->part_count, 3);
	assert_int_equal(t->root->children->body_size, 5);
	assert_int_equal(t->root->children->next->body_size, 2);
	mime_tree_free(&t);
}

static void test_huge_header_line(void **state)
{
	(void)state;
	size_t n = 1024 * 1024;
	char *m = malloc(n + 64);
	strcpy(m, "Subject: ");
	memset(m + 9, 'x', n);
	strcpy(m + 9 + n, "\r\nTo: a@b\r\n\r\nbody");
	struct mime_tree *t = parse_sliced(m, strlen(m), 4096);
	assert_true(t->flags & MIME_TREE_FIELD_TRUNCATED);
	assert_int_equal(t->root->field_len[MIME_FIELD_SUBJECT], MIME_MAX_FIELD_SIZE - 9);
	assert_non_null(t->root->field[MIME_FIELD_TO]);
	assert_int_equal(t->root->body_size, 4);
	mime_tree_free(&t);
	free(m);
}

static void test_many_header_fields(void **state)
{
	(void)state;
	size_t count = MIME_MAX_HEADER_FIELDS + 50000;
	size_t n = count * 6 + 64;
	char *m = malloc(n);
	char *p = m;
	for (size_t i = 0; i < count; i++) {
		memcpy(p, "X: y\r\n", 6);
		p += 6;
	}
	strcpy(p, "Subject: late\r\n\r\nbody");
	struct mime_tree *t = parse_sliced(m, strlen(m), 65536);
	assert_true(t->flags & MIME_TREE_FIELDS_LIMIT);
	assert_null(t->root->field[MIME_FIELD_SUBJECT]); /* past the limit: ignored */
	assert_int_equal(t->root->body_size, 4);           /* but the header still ends right */
	mime_tree_free(&t);
	free(m);
}

static void test_deep_nesting(void **state)
{
	(void)state;
	/* 10,000 nested multiparts, each with its own boundary, never closed */
	size_t depth = 10000;
	char *m = malloc(depth * 80 + 64);
	char *p = m;
	for (size_t i = 0; i < depth; i++)
		p += sprintf(p, "Content-Type: multipart/mixed; boundary=b%zu\r\n\r\n--b%zu\r\n", i, i);
	strcpy(p, "\r\nleaf\r\n");
	struct mime_tree *t = parse_sliced(m, strlen(m), 1);
	assert_true(t->flags & MIME_TREE_DEPTH_LIMIT);
	assert_true(t->flags & MIME_TREE_NO_FINAL_BOUNDARY);
	unsigned int path[MIME_MAX_DEPTH + 2];
	for (unsigned int i = 0; i <= MIME_MAX_DEPTH + 1; i++)
		path[i] = 1;
	/* depth is capped: the innermost part reached is opaque */
	const struct mime_part *deepest = mime_tree_find(t, path, MIME_MAX_DEPTH);
	assert_non_null(deepest);
	assert_int_equal(deepest->depth, MIME_MAX_DEPTH);
	assert_true(deepest->flags & MIME_PART_OPAQUE);
	/* opaque: a multipart without parts, whose one part (RFC 3501 7.4.2
	 * 1*body, as BODYSTRUCTURE shows it) is the empty placeholder */
	const struct mime_part *ph = mime_tree_find(t, path, MIME_MAX_DEPTH + 1);
	assert_non_null(ph);
	assert_true(mime_part_is_placeholder(ph));
	assert_int_equal(ph->body_size, 0);
	assert_ptr_equal(mime_tree_find(t, path, MIME_MAX_DEPTH + 2), ph); /* n.1 of a leaf */
	size_t len;
	char *bs = mime_bodystructure_imap(t, true, &len);
	assert_non_null(bs);
	free(bs);
	mime_tree_free(&t);
	/* 10,000 nested message/rfc822 */
	p = m;
	for (size_t i = 0; i < depth; i++)
		p += sprintf(p, "Content-Type: message/rfc822\r\n\r\n");
	t = parse_sliced(m, strlen(m), 1000);
	assert_true(t->flags & MIME_TREE_DEPTH_LIMIT);
	assert_int_equal(t->part_count, MIME_MAX_DEPTH + 1);
	bs = mime_bodystructure_imap(t, true, &len);
	assert_non_null(bs);
	/* the opaque message/rfc822 at the bottom is written as a basic part */
	assert_non_null(strstr(bs, "(\"application\" \"octet-stream\" NIL NIL NIL \"7bit\" "));
	assert_null(strstr(bs, "\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 33 NIL"));
	free(bs);
	mime_tree_free(&t);
	free(m);
}

static void test_parts_limit(void **state)
{
	(void)state;
	size_t parts = MIME_MAX_PARTS + 100;
	char *m = malloc(parts * 12 + 128);
	char *p = m + sprintf(m, "Content-Type: multipart/mixed; boundary=b\r\n\r\n");
	for (size_t i = 0; i < parts; i++)
		p += sprintf(p, "--b\r\n\r\nx\r\n");
	strcpy(p, "--b--\r\n");
	struct mime_tree *t = parse_sliced(m, strlen(m), 65536);
	assert_true(t->flags & MIME_TREE_PARTS_LIMIT);
	assert_int_equal(t->part_count, MIME_MAX_PARTS);
	/* the last part holds the rest of the message */
	unsigned int path[] = { MIME_MAX_PARTS - 1 };
	const struct mime_part *last = mime_tree_find(t, path, 1);
	assert_non_null(last);
	assert_int_equal(last->body_offset + last->body_size, strlen(m));
	mime_tree_free(&t);
	free(m);
}

static void test_long_boundary_and_padding(void **state)
{
	(void)state;
	char b[MIME_MAX_BOUNDARY_LEN + 2];
	memset(b, 'q', sizeof(b) - 1);
	b[sizeof(b) - 1] = '\0';
	char m[1024];
	snprintf(m, sizeof(m), "Content-Type: multipart/mixed; boundary=%s\r\n\r\n--%s\r\n\r\nx\r\n", b, b);
	struct mime_tree *t = parse(m);
	assert_true(t->flags & MIME_TREE_BOUNDARY_TOO_LONG);
	assert_true(t->root->flags & MIME_PART_OPAQUE);
	mime_tree_free(&t);
	/* a delimiter followed by a lot of padding is still one */
	char *big = malloc(4096);
	char *p = big + sprintf(big, "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b");
	memset(p, ' ', 3000);
	strcpy(p + 3000, "\r\n\r\none\r\n--b--\r\n");
	t = parse(big);
	assert_int_equal(t->part_count, 2);
	assert_section(t, big, "1", "one");
	mime_tree_free(&t);
	/* and padding followed by junk makes it not one */
	p[2000] = 'x';
	t = parse(big);
	assert_int_equal(t->part_count, 1);
	mime_tree_free(&t);
	free(big);
}

static int count_fields;
static void header_cb(void *ctx, const struct mime_part *part, const struct mime_header_field *f)
{
	(void)ctx;
	(void)part;
	if (f->name_len == 7 && memcmp(f->name, "Subject", 7) == 0) {
		assert_int_equal(f->value_len, 8);
		assert_memory_equal(f->value, "a\r\n\tb  c", 8);
		assert_int_equal(f->offset, 6);
		assert_int_equal(f->size, 19);
	}
	count_fields++;
}

static void test_header_callback(void **state)
{
	(void)state;
	const char *m = "X: 1\r\nSubject: a\r\n\tb  c\r\nY:\r\n\r\n";
	struct mime_parser_settings set = { .header_cb = header_cb };
	for (size_t slice = 1; slice < 4; slice++) {
		struct mime_parser *p = mime_parser_new(&set);
		count_fields = 0;
		for (size_t i = 0; i < strlen(m); i += slice)
			mime_parser_feed(p, m + i, strlen(m) - i < slice ? strlen(m) - i : slice);
		struct mime_tree *t;
		struct error error;
		assert_int_equal(mime_parser_finish(&p, &t, &error), 0);
		assert_int_equal(count_fields, 3);
		/* kept value: unfolded, whitespace inside kept */
		assert_string_equal(t->root->field[MIME_FIELD_SUBJECT], "a\tb  c");
		mime_tree_free(&t);
	}
}

/* ------------------------------------------------------------------ */
/* issue 10: MIME cases from real mail (each also in the Dovecot corpus) */

/* An existing part with no content is "" (RFC 9051 7.5.2: NIL means no such
 * part), its BINARY is "" and its BINARY.SIZE 0. */
static void test_empty_part_is_empty_string(void **state)
{
	(void)state;
	static const char m[] = "Content-Type: multipart/mixed; boundary=X\r\n\r\n"
				"--X\r\nContent-Type: text/plain\r\n\r\n\r\n"
				"--X\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
				"--X--\r\n";
	struct mime_tree *t = parse(m);
	assert_section(t, m, "1", "");
	assert_section(t, m, "2", "");
	assert_section(t, m, "1.MIME", "Content-Type: text/plain\r\n\r\n");
	/* part 2's only CRLF after its header is the delimiter's (RFC 2046
	 * 5.1.1; body-part := MIME-part-headers [CRLF *OCTET]): its header
	 * has no blank line, as in Dovecot */
	assert_section(t, m, "2.MIME",
		       "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n");
	unsigned int p2[] = { 2 }, p3[] = { 3 };
	char *b = binary(t, m, p2, 1, NULL); /* also checks BINARY.SIZE == bytes */
	assert_non_null(b);
	assert_string_equal(b, "");
	free(b);
	assert_null(binary(t, m, p3, 1, NULL));
	assert_null(section(t, m, "3", 0, UINT64_MAX));
	mime_tree_free(&t);
}

/* BINARY.SIZE is the decoded size (RFC 3516 4.2): binary() asserts that
 * the size reported with and without output equals the bytes written. */
static void test_binary_size_is_decoded_size(void **state)
{
	(void)state;
	static const char m[] = "Content-Type: multipart/mixed; boundary=X\r\n\r\n"
				"--X\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8g\r\nd29ybGQ=\r\n"
				"--X\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nab=3Dc=\r\nd \r\n"
				"--X--\r\n";
	struct mime_tree *t = parse(m);
	unsigned int p1[] = { 1 }, p2[] = { 2 };
	char *b = binary(t, m, p1, 1, NULL);
	assert_string_equal(b, "hello world");
	free(b);
	b = binary(t, m, p2, 1, NULL);
	assert_string_equal(b, "ab=cd");
	free(b);
	mime_tree_free(&t);
}

/* RFC 2046 5.1.1: the CRLF before a delimiter belongs to the delimiter; the
 * end of a single-part body is the end of the message. */
static void test_final_crlf(void **state)
{
	(void)state;
	static const char single[] = "Subject: s\r\n\r\nline1\r\nline2\r\n";
	struct mime_tree *t = parse(single);
	assert_section(t, single, "1", "line1\r\nline2\r\n");
	assert_section(t, single, "TEXT", "line1\r\nline2\r\n");
	mime_tree_free(&t);
	static const char mp[] = "Content-Type: multipart/mixed; boundary=X\r\n\r\n"
				 "--X\r\n\r\nA\r\n--X\r\n\r\nB\r\n\r\n--X--\r\n";
	t = parse(mp);
	assert_section(t, mp, "1", "A");
	assert_section(t, mp, "2", "B\r\n"); /* one CRLF is the close-delimiter's */
	mime_tree_free(&t);
	/* A close-delimiter directly followed by the outer one: the single CRLF
	 * between them starts the outer delimiter (RFC 2046 grammar: delimiter
	 * := CRLF dash-boundary), so the inner multipart ends at "--Y--".
	 * Dovecot counts it in the inner part (NESTED-CLOSE-CRLF in
	 * mime_known_deviations.txt). */
	static const char nested[] = "Content-Type: multipart/mixed; boundary=X\r\n\r\n"
				     "--X\r\nContent-Type: message/rfc822\r\n\r\n"
				     "Subject: in\r\nContent-Type: multipart/mixed; boundary=Y\r\n\r\n"
				     "--Y\r\n\r\ninner\r\n--Y--\r\n--X--\r\n";
	t = parse(nested);
	assert_section(t, nested, "1.TEXT", "--Y\r\n\r\ninner\r\n--Y--");
	assert_section(t, nested, "1.1", "inner");
	assert_int_equal(t->root->children->body_size,
			 strlen("Subject: in\r\nContent-Type: multipart/mixed; boundary=Y\r\n\r\n"
				"--Y\r\n\r\ninner\r\n--Y--"));
	mime_tree_free(&t);
}

/* A bare CR (or CR CR LF) in a header does not glue the next header's text
 * to a parameter; offsets and sizes are those of the bytes. */
static void test_bare_cr_in_header(void **state)
{
	(void)state;
	static const char cr[] = "From: a@b.c\r\n"
				 "Content-Type: text/plain; charset=UTF-8\rReturn-Path: <x@y>\r\n"
				 "Content-ID: <a\rb@c>\r\nSubject: s\r\n\r\nbody\r\n";
	struct mime_tree *t = parse(cr);
	assert_bodystructure(t, true,
			     "(\"text\" \"plain\" (\"charset\" \"UTF-8\") \"<a b@c>\" NIL \"7bit\" 6 1"
			     " NIL NIL NIL NIL)");
	assert_int_equal(t->root->header_size, strlen(cr) - strlen("body\r\n"));
	assert_int_equal(t->root->header_lines, 5);
	assert_section(t, cr, "1", "body\r\n");
	mime_tree_free(&t);
	static const char crcrlf[] = "Subject: s\r\r\n"
				     "Content-Type: text/plain; charset=UTF-8\r\r\n\r\nbody\r\n";
	t = parse(crcrlf);
	assert_bodystructure(t, false, "(\"text\" \"plain\" (\"charset\" \"UTF-8\") NIL NIL \"7bit\" 6 1)");
	assert_section(t, crcrlf, "HEADER", "Subject: s\r\r\nContent-Type: text/plain; charset=UTF-8\r\r\n\r\n");
	mime_tree_free(&t);
	/* in a part header: the text after the CR is not a field of its own
	 * (lines end at LF, as in Dovecot), so no disposition */
	static const char part[] = "Content-Type: multipart/mixed; boundary=X\r\n\r\n"
				   "--X\r\nContent-Type: text/plain; charset=UTF-8\r"
				   "Content-Disposition: inline\r\n\r\nA\r\n--X--\r\n";
	t = parse(part);
	assert_bodystructure(t, true,
			     "((\"text\" \"plain\" (\"charset\" \"UTF-8\") NIL NIL \"7bit\" 1 0 NIL NIL NIL"
			     " NIL) \"mixed\" (\"boundary\" \"X\") NIL NIL NIL)");
	mime_tree_free(&t);
}

/* A multipart without parts still has one (RFC 3501 7.4.2 1*body): an empty
 * text/plain in BODYSTRUCTURE, "" for BODY[1], BODY[1.MIME], BINARY[1]. */
static void test_multipart_without_parts(void **state)
{
	(void)state;
	static const char *const msgs[] = {
		"Content-Type: multipart/mixed; boundary=X\r\n\r\njust text\r\n",
		"Content-Type: multipart/mixed; boundary=X\r\n\r\npre\r\n--X--\r\nepi\r\n",
		"Content-Type: multipart/mixed; boundary=X\r\n\r\n",
		"Content-Type: multipart/mixed\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n",
	};
	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		const char *m = msgs[i];
		struct mime_tree *t = parse(m);
		assert_true(t->root->flags & MIME_PART_MULTIPART);
		assert_null(t->root->children);
		size_t len;
		char *bs = mime_bodystructure_imap(t, false, &len);
		assert_non_null(bs);
		assert_true(strncmp(bs, "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)"
					" \"mixed\"", 66) == 0);
		free(bs);
		assert_section(t, m, "1", "");
		assert_section(t, m, "1.MIME", "");
		assert_section(t, m, "1.1", "");
		assert_null(section(t, m, "2", 0, UINT64_MAX));
		unsigned int p1[] = { 1 }, p2[] = { 2 };
		char *b = binary(t, m, p1, 1, NULL);
		assert_non_null(b);
		assert_string_equal(b, "");
		free(b);
		assert_null(binary(t, m, p2, 1, NULL));
		/* the same after the index round trip */
		size_t sl;
		char *ser = mime_tree_serialize(t, &sl);
		struct mime_tree *d = NULL;
		struct error error;
		assert_int_equal(mime_tree_deserialize(ser, sl, &d, &error), 0);
		assert_section(d, m, "1", "");
		assert_true(mime_part_is_placeholder(mime_tree_find(d, p1, 1)));
		mime_tree_free(&d);
		free(ser);
		mime_tree_free(&t);
	}
}

/* Two Content-Disposition (or Content-Type) fields: the first wins (see
 * field_dispatch in mime_parser.c; Dovecot differs when the first has no
 * parameters: DISP-FIRST in mime_known_deviations.txt). */
static void test_duplicate_content_fields(void **state)
{
	(void)state;
	static const char d1[] = "Content-Type: text/plain\r\n"
				 "Content-Disposition: inline\r\n"
				 "Content-Disposition: attachment; filename=a.txt\r\n\r\nA";
	struct mime_tree *t = parse(d1);
	assert_string_equal(t->root->disposition, "inline");
	assert_int_equal(t->root->disp_param_count, 0);
	mime_tree_free(&t);
	static const char d2[] = "Content-Type: text/plain\r\n"
				 "Content-Disposition: attachment; filename=a.txt\r\n"
				 "Content-Disposition: inline; filename=b.txt\r\n\r\nA";
	t = parse(d2);
	assert_string_equal(t->root->disposition, "attachment");
	assert_string_equal(t->root->disp_params[0].value, "a.txt");
	mime_tree_free(&t);
	static const char c2[] = "Content-Type: text/html\r\n"
				 "Content-Type: text/plain; charset=utf-8\r\n\r\nA";
	t = parse(c2);
	assert_bodystructure(t, false, "(\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0)");
	mime_tree_free(&t);
}

/* The cache version: a tree of the current MIME_TREE_FORMAT says so, an
 * older one does not (and still deserialises). */
static void test_tree_format_version(void **state)
{
	(void)state;
	struct mime_tree *t = parse("Subject: x\r\n\r\nbody\r\n");
	size_t len;
	char *ser = mime_tree_serialize(t, &len);
	assert_true(mime_tree_blob_current(ser, len));
	char head[32];
	snprintf(head, sizeof(head), "mime-tree %d ", MIME_TREE_FORMAT);
	assert_true(strncmp(ser, head, strlen(head)) == 0);
	ser[10] = '2';
	assert_false(mime_tree_blob_current(ser, len));
	assert_false(mime_tree_blob_current(NULL, 0));
	assert_false(mime_tree_blob_current("mime-tree", 9));
	struct mime_tree *d = NULL;
	struct error error;
	assert_int_equal(mime_tree_deserialize(ser, len, &d, &error), 0);
	mime_tree_free(&d);
	free(ser);
	mime_tree_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple_message),
		cmocka_unit_test(test_default_content_type),
		cmocka_unit_test(test_multipart),
		cmocka_unit_test(test_boundary_prefixes),
		cmocka_unit_test(test_missing_final_boundary),
		cmocka_unit_test(test_header_cut_by_boundary),
		cmocka_unit_test(test_message_rfc822),
		cmocka_unit_test(test_digest_default),
		cmocka_unit_test(test_bare_lf),
		cmocka_unit_test(test_partial_ranges),
		cmocka_unit_test(test_header_fields),
		cmocka_unit_test(test_section_parse),
		cmocka_unit_test(test_envelope_fields),
		cmocka_unit_test(test_envelope_quoting),
		cmocka_unit_test(test_addresses_broken),
		cmocka_unit_test(test_rfc2231),
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_quoted_printable),
		cmocka_unit_test(test_binary_section),
		cmocka_unit_test(test_rfc2047),
		cmocka_unit_test(test_charset),
		cmocka_unit_test(test_base_subject),
		cmocka_unit_test(test_tree_roundtrip),
		cmocka_unit_test(test_empty_and_tiny),
		cmocka_unit_test(test_nul_and_bare_cr),
		cmocka_unit_test(test_huge_header_line),
		cmocka_unit_test(test_many_header_fields),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_parts_limit),
		cmocka_unit_test(test_long_boundary_and_padding),
		cmocka_unit_test(test_header_callback),
		cmocka_unit_test(test_empty_part_is_empty_string),
		cmocka_unit_test(test_binary_size_is_decoded_size),
		cmocka_unit_test(test_final_crlf),
		cmocka_unit_test(test_bare_cr_in_header),
		cmocka_unit_test(test_multipart_without_parts),
		cmocka_unit_test(test_duplicate_content_fields),
		cmocka_unit_test(test_tree_format_version),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
