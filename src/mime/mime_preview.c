/*
 * mime_preview.c: the PREVIEW of a message (RFC 8970): a short plain-text
 * rendering of the start of its text, for clients' message lists.
 *
 * Design note. The store computes it once per message (at delivery, or when
 * it parses a file on a cache miss) and keeps it in its cache, so FETCH
 * PREVIEW reads no file; this file only computes it:
 *  - the part: the first text/plain or text/html part in a depth-first walk
 *    that is not an attachment (Content-Disposition: attachment), not
 *    inside an attached message (message/rfc822 is another message), and in
 *    a multipart/alternative the text/plain one if there is one (it says the
 *    same as the html one, without markup);
 *  - its content: at most PREVIEW_READ bytes of the body read (enough for
 *    256 characters after any html head, style and markup), decoded from its
 *    transfer encoding (base64, quoted-printable) and converted from its
 *    charset to UTF-8 (mime_charset_to_utf8; an unknown charset is taken as
 *    UTF-8 with invalid bytes replaced);
 *  - html: tags removed, the content of <head>, <style> and <script>
 *    dropped, the common entities (&amp; &lt; &gt; &quot; &apos; &nbsp;
 *    &#n; &#xn;) decoded;
 *  - then every run of whitespace and control characters becomes one space,
 *    the ends are trimmed, and the text is cut to MIME_PREVIEW_MAX
 *    characters (RFC 8970 3.1: at most 256 characters) on a character
 *    boundary.
 * A message without such a part (or with nothing in it) has the empty
 * preview "" (RFC 8970 3.1: the server returns an empty string when no
 * preview can be made). What it gives for a message depends on this code:
 * change it and MIME_TREE_FORMAT must be bumped, so that previews the store
 * cached before are computed again.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mime/mime_private.h"

/* Bytes of the part's (encoded) body read at most. */
#define PREVIEW_READ (64 * 1024)

static bool is_attachment(const struct mime_part *p)
{
	return p->disposition != NULL && strcasecmp(p->disposition, "attachment") == 0;
}

static bool is_text(const struct mime_part *p, const char *sub)
{
	return !(p->flags & (MIME_PART_MULTIPART | MIME_PART_MESSAGE)) && p->type != NULL &&
	       p->subtype != NULL && strcasecmp(p->type, "text") == 0 &&
	       strcasecmp(p->subtype, sub) == 0 && !is_attachment(p);
}

/* The part whose text is the preview, or NULL. */
static const struct mime_part *find_part(const struct mime_part *p, unsigned depth)
{
	if (depth > MIME_MAX_DEPTH || is_attachment(p))
		return NULL;
	if (is_text(p, "plain") || is_text(p, "html"))
		return p;
	if (!(p->flags & MIME_PART_MULTIPART))
		return NULL; /* a leaf of another type, or an attached message */
	if (p->subtype != NULL && strcasecmp(p->subtype, "alternative") == 0)
		for (const struct mime_part *c = p->children; c != NULL; c = c->next)
			if (is_text(c, "plain"))
				return c;
	for (const struct mime_part *c = p->children; c != NULL; c = c->next) {
		const struct mime_part *t = find_part(c, depth + 1);
		if (t != NULL)
			return t;
	}
	return NULL;
}

static const char *part_charset(const struct mime_part *p)
{
	for (unsigned i = 0; i < p->param_count; i++)
		if (strcasecmp(p->params[i].name, "charset") == 0 && p->params[i].value_len > 0)
			return p->params[i].value;
	return "us-ascii";
}

static int buf_out(void *ctx, const void *data, size_t len)
{
	mime_buf_append(ctx, data, len);
	return 0;
}

/* The part's body, decoded (transfer encoding only), at most PREVIEW_READ
 * bytes of it read. -1 if it cannot be read. */
static int read_decoded(const struct mime_part *p, const struct mime_source *src,
			struct mime_buf *out)
{
	uint64_t want = p->body_size < PREVIEW_READ ? p->body_size : PREVIEW_READ;
	char *raw = malloc(want + 1);
	struct mime_decoder *d = mime_decoder_new(p->cte == MIME_CTE_UNKNOWN ? MIME_CTE_8BIT : p->cte);
	int ret = -1;
	if (raw == NULL || d == NULL)
		goto out;
	uint64_t got = 0;
	while (got < want) {
		int64_t n = src->pread(src->ctx, raw + got, (size_t)(want - got), p->body_offset + got);
		if (n < 0)
			goto out;
		if (n == 0)
			break;
		got += (uint64_t)n;
	}
	if (mime_decoder_feed(d, raw, (size_t)got, buf_out, out) == 0 &&
	    mime_decoder_finish(d, buf_out, out) == 0)
		ret = 0;
out:
	mime_decoder_free(&d);
	free(raw);
	return ret;
}

static const struct {
	const char *name;
	const char *utf8;
} entities[] = {
	{ "amp", "&" }, { "lt", "<" }, { "gt", ">" }, { "quot", "\"" }, { "apos", "'" },
	{ "nbsp", " " },
};

/* Appends code point cp as UTF-8 (nothing for invalid ones). */
static void put_utf8(struct mime_buf *b, unsigned long cp)
{
	char u[4];
	if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return;
	if (cp < 0x80) {
		mime_buf_putc(b, (char)cp);
		return;
	}
	if (cp < 0x800) {
		u[0] = (char)(0xc0 | cp >> 6);
		u[1] = (char)(0x80 | (cp & 0x3f));
		mime_buf_append(b, u, 2);
	} else if (cp < 0x10000) {
		u[0] = (char)(0xe0 | cp >> 12);
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		mime_buf_append(b, u, 3);
	} else {
		u[0] = (char)(0xf0 | cp >> 18);
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (char)(0x80 | (cp & 0x3f));
		mime_buf_append(b, u, 4);
	}
}

/* An entity at s (after '&'): appended to out; returns the bytes it took
 * after the '&', or 0 if it is none (the '&' is then text). */
static size_t entity(const char *s, size_t len, struct mime_buf *out)
{
	const char *semi = memchr(s, ';', len < 12 ? len : 12);
	if (semi == NULL)
		return 0;
	size_t n = (size_t)(semi - s);
	if (n >= 2 && s[0] == '#') {
		bool hex = s[1] == 'x' || s[1] == 'X';
		char *end;
		char num[12];
		memcpy(num, s + 1 + hex, n - 1 - hex);
		num[n - 1 - hex] = '\0';
		unsigned long cp = strtoul(num, &end, hex ? 16 : 10);
		if (*end != '\0' || num[0] == '\0')
			return 0;
		put_utf8(out, cp);
		return n + 1;
	}
	for (size_t i = 0; i < sizeof(entities) / sizeof(entities[0]); i++)
		if (strlen(entities[i].name) == n && strncasecmp(s, entities[i].name, n) == 0) {
			mime_buf_puts(out, entities[i].utf8);
			return n + 1;
		}
	return 0;
}

/* Is the tag at s (after '<') named name (followed by space, '>' or '/')? */
static bool tag_is(const char *s, size_t len, const char *name)
{
	size_t n = strlen(name);
	return len > n && strncasecmp(s, name, n) == 0 &&
	       (s[n] == '>' || s[n] == '/' || s[n] == ' ' || s[n] == '\t' || s[n] == '\r' ||
		s[n] == '\n');
}

/* html (UTF-8) to text: tags out (a tag is a space), head/style/script
 * content out, entities decoded. */
static void strip_html(const char *s, size_t len, struct mime_buf *out)
{
	static const char *const skipped[] = { "head", "style", "script" };
	const char *skip_until = NULL; /* inside one of those: its closing tag */
	for (size_t i = 0; i < len;) {
		if (s[i] == '<') {
			const char *gt = memchr(s + i, '>', len - i);
			size_t tl = gt != NULL ? (size_t)(gt - s - i) : len - i;
			const char *t = s + i + 1;
			size_t rest = len - i - 1;
			if (skip_until == NULL) {
				for (size_t k = 0; k < sizeof(skipped) / sizeof(skipped[0]); k++)
					if (tag_is(t, rest, skipped[k]))
						skip_until = skipped[k];
				mime_buf_putc(out, ' ');
			} else if (rest > 0 && t[0] == '/' && tag_is(t + 1, rest - 1, skip_until)) {
				skip_until = NULL;
			}
			if (rest >= 3 && strncmp(t, "!--", 3) == 0) { /* a comment: to "-->" */
				const char *e = memmem(t + 3, rest - 3, "-->", 3);
				tl = e != NULL ? (size_t)(e + 2 - s - i) : len - i;
			}
			i += tl + 1;
			continue;
		}
		if (skip_until != NULL) {
			i++;
			continue;
		}
		if (s[i] == '&') {
			size_t n = entity(s + i + 1, len - i - 1, out);
			if (n > 0) {
				i += n + 1;
				continue;
			}
		}
		mime_buf_putc(out, s[i]);
		i++;
	}
}

/* Whitespace and controls collapsed to one space, ends trimmed, at most
 * MIME_PREVIEW_MAX characters (UTF-8 sequences kept whole). */
static void collapse(const char *s, size_t len, struct mime_buf *out)
{
	size_t chars = 0;
	bool space = false;
	for (size_t i = 0; i < len && chars < MIME_PREVIEW_MAX;) {
		unsigned char c = (unsigned char)s[i];
		if (c <= 0x20 || c == 0x7f) {
			space = out->len > 0;
			i++;
			continue;
		}
		size_t n = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
		if (n > len - i)
			break; /* a sequence cut by the read limit */
		if (space) {
			if (chars + 1 >= MIME_PREVIEW_MAX)
				break; /* no room for a character after it: no trailing space */
			mime_buf_putc(out, ' ');
			space = false;
			chars++;
		}
		mime_buf_append(out, s + i, n);
		chars++;
		i += n;
	}
}

int mime_preview(const struct mime_tree *tree, const struct mime_source *src, char **out_r,
		 size_t *len_r)
{
	struct mime_buf raw = { 0 }, html = { 0 }, out = { 0 };
	char *utf8 = NULL;
	size_t ulen = 0;
	int ret = -1;
	const struct mime_part *p = find_part(tree->root, 0);
	if (p != NULL) {
		if (read_decoded(p, src, &raw) < 0 || raw.failed)
			goto out;
		if (mime_charset_to_utf8(part_charset(p), raw.data != NULL ? raw.data : "", raw.len,
					 &utf8, &ulen) < 0) {
			utf8 = mime_charset_utf8_sanitize(raw.data != NULL ? raw.data : "", raw.len,
							  &ulen);
			if (utf8 == NULL)
				goto out;
		}
		if (strcasecmp(p->subtype, "html") == 0) {
			strip_html(utf8, ulen, &html);
			if (html.failed)
				goto out;
			collapse(html.data != NULL ? html.data : "", html.len, &out);
		} else {
			collapse(utf8, ulen, &out);
		}
	}
	*out_r = mime_buf_steal(&out, len_r); /* "" when empty, NULL if it failed */
	ret = *out_r != NULL ? 0 : -1;
out:
	free(utf8);
	mime_buf_free(&raw);
	mime_buf_free(&html);
	mime_buf_free(&out);
	return ret;
}
