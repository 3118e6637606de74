/*
 * mime_param.c: MIME parameters (RFC 2045 5.1) and RFC 2231 continuations
 * and charsets.
 *
 * Design note
 * -----------
 * Two consumers want different things:
 *   - BODYSTRUCTURE shows parameters to clients. RFC 9051 only says
 *     "attribute/value pairs"; we follow Dovecot, whose output clients are
 *     used to: the continuations of one RFC 2231 parameter (name*0, name*1*,
 *     ...) are joined into one, named "name*" with the still-encoded
 *     charset'lang'%XX value if any piece was extended, plain "name"
 *     otherwise; pieces that are not extended but join extended ones are
 *     %-escaped so the value stays one RFC 2231 extended value. Plain
 *     parameters come first in message order, then the joined ones sorted by
 *     name. A parameter whose indexes have a gap is left as it was (the
 *     pieces are not RFC 2231 after all).
 *   - search and sort want the value in UTF-8: mime_param_get_utf8 decodes
 *     "name*" (RFC 2231 4) or an RFC 2047 "name" (not allowed by RFC 2047 5,
 *     but common enough that every client decodes it).
 * Parsing never fails on syntax: it stops at the first thing that is not a
 * parameter and keeps what it has.
 */
#include <stdlib.h>
#include <string.h>

#include "mime/mime_private.h"

struct raw_param {
	char *name, *value; /* malloc'd */
	size_t value_len;
	/* RFC 2231 */
	bool is2231, extended;
	unsigned int idx;
	size_t base_len; /* name length without the "*..." suffix */
	unsigned int order;
};

static void raw_free(struct raw_param *r, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		free(r[i].name);
		free(r[i].value);
	}
	free(r);
}

static bool is_attr_char(unsigned char c)
{
	/* RFC 2231 7 attribute-char: token chars except "*", "'", "%" */
	if (c <= ' ' || c >= 0x7f)
		return false;
	return strchr("()<>@,;:\\\"/[]?=*'%", c) == NULL;
}

static void escape_2231(struct mime_buf *out, const char *v, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)v[i];
		if (is_attr_char(c)) {
			mime_buf_putc(out, (char)c);
		} else {
			mime_buf_putc(out, '%');
			mime_buf_putc(out, hex[c >> 4]);
			mime_buf_putc(out, hex[c & 15]);
		}
	}
}

/* Splits "name*N*" / "name*N" / "name*" (RFC 2231 3, 4). */
static void classify(struct raw_param *r)
{
	char *star = strchr(r->name, '*');
	if (star == NULL)
		return;
	const char *q = star + 1;
	unsigned int idx = 0;
	bool digits = false;
	while (*q >= '0' && *q <= '9') {
		if (idx > 100000)
			return; /* absurd index: not RFC 2231 */
		idx = idx * 10 + (unsigned int)(*q - '0');
		q++;
		digits = true;
	}
	bool extended = false;
	if (*q == '*') {
		extended = true;
		q++;
	} else if (!digits) {
		return; /* "name*x" is just a strange name */
	}
	if (*q != '\0')
		return;
	r->is2231 = true;
	r->extended = extended;
	r->idx = idx;
	r->base_len = (size_t)(star - r->name);
}

static int cmp_2231(const void *a, const void *b)
{
	const struct raw_param *x = a, *y = b;
	size_t n = x->base_len < y->base_len ? x->base_len : y->base_len;
	int c = strncasecmp(x->name, y->name, n);
	if (c != 0)
		return c;
	if (x->base_len != y->base_len)
		return x->base_len < y->base_len ? -1 : 1;
	if (x->idx != y->idx)
		return x->idx < y->idx ? -1 : 1;
	return x->order < y->order ? -1 : (x->order > y->order);
}

static bool same_base(const struct raw_param *a, const struct raw_param *b)
{
	return a->base_len == b->base_len && strncasecmp(a->name, b->name, a->base_len) == 0;
}

int mime_param_parse_list(struct mime_arena *arena, const char **pos, const char *end,
			  struct mime_param **params_r, unsigned int *count_r)
{
	struct raw_param *raw = NULL;
	unsigned int n = 0, cap = 0;
	struct mime_buf val = { 0 };
	const char *p = *pos;
	int ret = -1;

	for (;;) {
		mime_lex_skip_cfws(&p, end, NULL);
		if (p >= end || *p != ';')
			break;
		p++;
		mime_lex_skip_cfws(&p, end, NULL);
		const char *name;
		size_t name_len = mime_lex_token(&p, end, &name);
		if (name_len == 0) {
			if (p < end && *p == ';')
				continue; /* ";;" : empty parameter, go on */
			break;
		}
		mime_lex_skip_cfws(&p, end, NULL);
		if (p >= end || *p != '=')
			break;
		p++;
		mime_lex_skip_cfws(&p, end, NULL);
		mime_buf_reset(&val);
		if (p < end && *p == '"') {
			mime_lex_quoted(&p, end, &val);
		} else if (p < end && *p == '=') {
			/* name==?utf-8?b?...?= : an unquoted encoded word,
			 * invalid but common; take it up to ; or whitespace */
			const char *s = p;
			while (p < end && *p != ';' && *p != ' ' && *p != '\t' && *p != '\r' &&
			       *p != '\n')
				p++;
			mime_buf_append(&val, s, (size_t)(p - s));
		} else {
			const char *t;
			size_t tl = mime_lex_token(&p, end, &t);
			mime_buf_append(&val, t, tl);
		}
		if (n == cap) {
			unsigned int ncap = cap ? cap * 2 : 8;
			struct raw_param *nr = realloc(raw, ncap * sizeof(*nr));
			if (nr == NULL)
				goto out;
			raw = nr;
			cap = ncap;
		}
		struct raw_param *r = &raw[n];
		memset(r, 0, sizeof(*r));
		r->name = strndup(name, name_len);
		r->value = val.failed ? NULL : malloc(val.len + 1);
		if (r->name == NULL || r->value == NULL) {
			free(r->name);
			free(r->value);
			goto out;
		}
		if (val.len > 0)
			memcpy(r->value, val.data, val.len);
		r->value[val.len] = '\0';
		r->value_len = val.len;
		r->order = n;
		classify(r);
		n++;
		if (n >= 10000)
			break; /* bounded anyway by the field size */
	}
	*pos = p;

	/* plain ones first, in order; then the RFC 2231 ones sorted */
	unsigned int nplain = 0;
	for (unsigned int i = 0; i < n; i++) {
		if (!raw[i].is2231) {
			struct raw_param t = raw[i];
			memmove(&raw[nplain + 1], &raw[nplain], (i - nplain) * sizeof(*raw));
			raw[nplain++] = t;
		}
	}
	if (n > nplain)
		qsort(raw + nplain, n - nplain, sizeof(*raw), cmp_2231);

	struct mime_param *out = mime_arena_alloc(arena, (n ? n : 1) * sizeof(*out));
	if (out == NULL)
		goto out;
	unsigned int nout = 0;
	for (unsigned int i = 0; i < nplain; i++) {
		out[nout].name = mime_arena_strndup(arena, raw[i].name, strlen(raw[i].name));
		out[nout].value = mime_arena_strndup(arena, raw[i].value, raw[i].value_len);
		out[nout].value_len = raw[i].value_len;
		if (out[nout].name == NULL || out[nout].value == NULL)
			goto out;
		nout++;
	}
	for (unsigned int i = nplain, j; i < n; i = j) {
		bool valid = true, have_ext = false;
		unsigned int next = 0;
		for (j = i; j < n && same_base(&raw[i], &raw[j]); j++) {
			if (raw[j].idx != next)
				valid = false;
			if (raw[j].extended)
				have_ext = true;
			next++;
		}
		if (!valid) {
			for (unsigned int k = i; k < j; k++) {
				out[nout].name = mime_arena_strndup(arena, raw[k].name,
								    strlen(raw[k].name));
				out[nout].value = mime_arena_strndup(arena, raw[k].value,
								     raw[k].value_len);
				out[nout].value_len = raw[k].value_len;
				if (out[nout].name == NULL || out[nout].value == NULL)
					goto out;
				nout++;
			}
			continue;
		}
		mime_buf_reset(&val);
		if (!raw[i].extended && have_ext)
			mime_buf_puts(&val, "''"); /* no charset, no language */
		for (unsigned int k = i; k < j; k++) {
			if (!raw[k].extended && have_ext)
				escape_2231(&val, raw[k].value, raw[k].value_len);
			else
				mime_buf_append(&val, raw[k].value, raw[k].value_len);
		}
		if (val.failed)
			goto out;
		struct mime_buf nm = { 0 };
		mime_buf_append(&nm, raw[i].name, raw[i].base_len);
		if (have_ext)
			mime_buf_putc(&nm, '*');
		out[nout].name = nm.failed ? NULL : mime_arena_strndup(arena, mime_buf_cstr(&nm), nm.len);
		mime_buf_free(&nm);
		out[nout].value = mime_arena_strndup(arena, mime_buf_cstr(&val), val.len);
		out[nout].value_len = val.len;
		if (out[nout].name == NULL || out[nout].value == NULL)
			goto out;
		nout++;
	}
	*params_r = out;
	*count_r = nout;
	ret = 0;
out:
	raw_free(raw, n);
	mime_buf_free(&val);
	return ret;
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

char *mime_param_get_utf8(const struct mime_param *params, unsigned int count, const char *name)
{
	size_t nlen = strlen(name);
	/* RFC 2231 4: name*=charset'language'%XX... wins over a plain one */
	for (unsigned int i = 0; i < count; i++) {
		const char *pn = params[i].name;
		size_t pl = strlen(pn);
		if (pl != nlen + 1 || pn[nlen] != '*' || strncasecmp(pn, name, nlen) != 0)
			continue;
		const char *v = params[i].value, *vend = v + params[i].value_len;
		const char *q1 = memchr(v, '\'', (size_t)(vend - v));
		const char *q2 = q1 == NULL ? NULL : memchr(q1 + 1, '\'', (size_t)(vend - q1 - 1));
		const char *data = q2 != NULL ? q2 + 1 : v;
		struct mime_buf raw = { 0 };
		for (const char *s = data; s < vend; s++) {
			int h, l;
			if (*s == '%' && vend - s >= 3 && (h = hexval((unsigned char)s[1])) >= 0 &&
			    (l = hexval((unsigned char)s[2])) >= 0) {
				mime_buf_putc(&raw, (char)(h * 16 + l));
				s += 2;
			} else {
				mime_buf_putc(&raw, *s);
			}
		}
		if (raw.failed) {
			mime_buf_free(&raw);
			return NULL;
		}
		char *out = NULL;
		size_t olen;
		char charset[64];
		size_t cl = q1 != NULL && q2 != NULL ? (size_t)(q1 - v) : 0;
		if (cl > 0 && cl < sizeof(charset)) {
			memcpy(charset, v, cl);
			charset[cl] = '\0';
			if (mime_charset_to_utf8(charset, mime_buf_cstr(&raw), raw.len, &out, &olen) < 0)
				out = NULL;
		}
		if (out == NULL)
			out = mime_charset_utf8_sanitize(mime_buf_cstr(&raw), raw.len, &olen);
		mime_buf_free(&raw);
		return out;
	}
	for (unsigned int i = 0; i < count; i++) {
		if (strcasecmp(params[i].name, name) == 0) {
			size_t olen;
			return mime_decode_header_utf8(params[i].value, params[i].value_len, &olen);
		}
	}
	return NULL;
}
