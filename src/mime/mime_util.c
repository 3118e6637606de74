/*
 * mime_util.c: the private helpers of src/mime (mime_private.h): a growable
 * buffer, an arena for parse trees and RFC 5322/2045 lexical scanning.
 *
 * Design note: the arena makes a parse tree one allocation chain that
 * mime_tree_free releases in one walk, whatever the number of parts; the
 * buffer records allocation failures instead of returning them so that
 * byte-level code stays linear (callers check `failed` once).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mime/mime_private.h"

/* ---------------- buffer ---------------- */

static bool buf_reserve(struct mime_buf *b, size_t extra)
{
	if (b->failed)
		return false;
	if (extra > SIZE_MAX - b->len - 1) {
		b->failed = true;
		return false;
	}
	size_t need = b->len + extra + 1;
	if (need <= b->cap)
		return true;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	char *d = realloc(b->data, cap);
	if (d == NULL) {
		b->failed = true;
		return false;
	}
	b->data = d;
	b->cap = cap;
	return true;
}

void mime_buf_append(struct mime_buf *b, const void *data, size_t len)
{
	if (len == 0 || !buf_reserve(b, len))
		return;
	memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
}

void mime_buf_putc(struct mime_buf *b, char c)
{
	if (!buf_reserve(b, 1))
		return;
	b->data[b->len++] = c;
	b->data[b->len] = '\0';
}

void mime_buf_puts(struct mime_buf *b, const char *s)
{
	mime_buf_append(b, s, strlen(s));
}

void mime_buf_printf(struct mime_buf *b, const char *fmt, ...)
{
	char tmp[128];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = true;
		return;
	}
	if ((size_t)n < sizeof(tmp)) {
		mime_buf_append(b, tmp, (size_t)n);
		return;
	}
	if (!buf_reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

const char *mime_buf_cstr(struct mime_buf *b)
{
	if (b->data == NULL || b->failed)
		return "";
	return b->data;
}

char *mime_buf_steal(struct mime_buf *b, size_t *len_r)
{
	if (b->failed) {
		mime_buf_free(b);
		return NULL;
	}
	if (b->data == NULL && !buf_reserve(b, 0)) {
		mime_buf_free(b);
		return NULL;
	}
	b->data[b->len] = '\0';
	char *d = b->data;
	if (len_r != NULL)
		*len_r = b->len;
	b->data = NULL;
	b->len = b->cap = 0;
	return d;
}

void mime_buf_reset(struct mime_buf *b)
{
	b->len = 0;
	b->failed = false;
	if (b->data != NULL)
		b->data[0] = '\0';
}

void mime_buf_free(struct mime_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
	b->failed = false;
}

/* ---------------- arena ---------------- */

struct arena_chunk {
	struct arena_chunk *prev;
	size_t size, used;
	max_align_t data[];
};

struct mime_arena {
	struct arena_chunk *cur;
	size_t total;
};

#define ARENA_CHUNK (16 * 1024)

struct mime_arena *mime_arena_new(void)
{
	return calloc(1, sizeof(struct mime_arena));
}

void *mime_arena_alloc(struct mime_arena *a, size_t size)
{
	const size_t align = sizeof(max_align_t);
	if (size > SIZE_MAX / 2)
		return NULL;
	size = (size + align - 1) & ~(align - 1);
	if (size == 0)
		size = align;
	struct arena_chunk *c = a->cur;
	if (c == NULL || c->size - c->used < size) {
		size_t csize = size > ARENA_CHUNK / 4 ? size : ARENA_CHUNK;
		c = malloc(sizeof(*c) + csize);
		if (c == NULL)
			return NULL;
		c->size = csize;
		c->used = 0;
		if (size > ARENA_CHUNK / 4 && a->cur != NULL) {
			/* a big block gets its own chunk behind the current one
			 * so the current one keeps serving small allocations */
			c->prev = a->cur->prev;
			a->cur->prev = c;
		} else {
			c->prev = a->cur;
			a->cur = c;
		}
		a->total += sizeof(*c) + csize;
	}
	void *p = (char *)c->data + c->used;
	c->used += size;
	memset(p, 0, size);
	return p;
}

char *mime_arena_strndup(struct mime_arena *a, const char *s, size_t len)
{
	if (len == SIZE_MAX)
		return NULL;
	char *d = mime_arena_alloc(a, len + 1);
	if (d == NULL)
		return NULL;
	if (len > 0)
		memcpy(d, s, len);
	d[len] = '\0';
	return d;
}

size_t mime_arena_used(const struct mime_arena *a)
{
	return a->total;
}

void mime_arena_free(struct mime_arena **ap)
{
	struct mime_arena *a = *ap;
	if (a == NULL)
		return;
	struct arena_chunk *c = a->cur;
	while (c != NULL) {
		struct arena_chunk *prev = c->prev;
		free(c);
		c = prev;
	}
	free(a);
	*ap = NULL;
}

/* ---------------- lexical helpers ---------------- */

static bool is_wsp_or_nl(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

void mime_lex_skip_cfws(const char **pos, const char *end, struct mime_buf *comment_r)
{
	const char *p = *pos;
	while (p < end) {
		if (is_wsp_or_nl((unsigned char)*p)) {
			p++;
			continue;
		}
		if (*p != '(')
			break;
		/* RFC 5322 3.2.2: comments nest; quoted-pairs inside */
		unsigned int level = 0;
		if (comment_r != NULL)
			mime_buf_reset(comment_r);
		while (p < end) {
			char c = *p++;
			if (c == '\\' && p < end) {
				if (comment_r != NULL && level > 0)
					mime_buf_putc(comment_r, *p);
				p++;
				continue;
			}
			if (c == '(') {
				if (level++ == 0)
					continue;
			} else if (c == ')') {
				if (--level == 0)
					break;
			} else if (c == '\r' || c == '\n') {
				continue;
			}
			if (comment_r != NULL)
				mime_buf_putc(comment_r, c);
		}
	}
	*pos = p;
}

static bool is_tspecial(unsigned char c)
{
	/* RFC 2045 5.1 */
	return strchr("()<>@,;:\\\"/[]?=", c) != NULL && c != '\0';
}

size_t mime_lex_token(const char **pos, const char *end, const char **start_r)
{
	const char *p = *pos;
	*start_r = p;
	while (p < end) {
		unsigned char c = (unsigned char)*p;
		/* 8-bit bytes are accepted, as Dovecot does: RFC 6532 lets
		 * UTF-8 into header fields, and losing the rest of a raw UTF-8
		 * filename helps nobody */
		if (c <= ' ' || c == 0x7f || is_tspecial(c))
			break;
		p++;
	}
	*pos = p;
	return (size_t)(p - *start_r);
}

static bool is_atext(unsigned char c)
{
	/* RFC 5322 3.2.3, plus 8-bit (RFC 6532 3.2) */
	if (c >= 0x80)
		return true;
	if (c >= 'a' && c <= 'z')
		return true;
	if (c >= 'A' && c <= 'Z')
		return true;
	if (c >= '0' && c <= '9')
		return true;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

size_t mime_lex_atom(const char **pos, const char *end, const char **start_r)
{
	const char *p = *pos;
	*start_r = p;
	while (p < end && is_atext((unsigned char)*p))
		p++;
	*pos = p;
	return (size_t)(p - *start_r);
}

void mime_lex_quoted(const char **pos, const char *end, struct mime_buf *out)
{
	const char *p = *pos;
	if (p < end && *p == '"')
		p++;
	while (p < end) {
		char c = *p++;
		if (c == '"')
			break;
		if (c == '\\' && p < end) {
			mime_buf_putc(out, *p++);
			continue;
		}
		if (c == '\r' || c == '\n')
			continue;
		mime_buf_putc(out, c);
	}
	*pos = p;
}

void mime_unfold(struct mime_buf *out, const char *value, size_t len, bool trim)
{
	size_t start = 0, end = len;
	if (trim) {
		while (start < end && is_wsp_or_nl((unsigned char)value[start]))
			start++;
		while (end > start && is_wsp_or_nl((unsigned char)value[end - 1]))
			end--;
	}
	size_t run = start;
	for (size_t i = start; i < end; i++) {
		unsigned char c = (unsigned char)value[i];
		if (c == '\r' || c == '\n' || c == '\0') {
			mime_buf_append(out, value + run, i - run);
			if (c == '\0')
				mime_buf_putc(out, (char)0x80);
			else if (c == '\r' && (i + 1 >= len || value[i + 1] != '\n'))
				mime_buf_putc(out, ' ');
			run = i + 1;
		}
	}
	mime_buf_append(out, value + run, end - run);
}

bool mime_ascii_ieq(const char *a, size_t alen, const char *b)
{
	size_t blen = strlen(b);
	if (alen != blen)
		return false;
	for (size_t i = 0; i < alen; i++) {
		unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
		if (x >= 'A' && x <= 'Z')
			x += 32;
		if (y >= 'A' && y <= 'Z')
			y += 32;
		if (x != y)
			return false;
	}
	return true;
}
