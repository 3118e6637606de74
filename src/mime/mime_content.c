/*
 * mime_content.c: a part's MIME fields, parsed once its header is complete.
 *
 * Design note: the parser keeps the raw fields (first occurrence of each);
 * this file turns them into the typed members of struct mime_part. Syntax
 * errors never fail: an unparsable Content-Type gives the RFC 2045 5.2
 * default (text/plain; charset=us-ascii), or message/rfc822 for a part of a
 * multipart/digest (RFC 2046 5.1.5), and MIME_PART_DEFAULT_TYPE.
 */
#include <string.h>

#include "mime/mime_private.h"

static const struct mime_param default_charset = {
	.name = "charset",
	.value = "us-ascii",
	.value_len = 8,
};

static bool ieq(const char *s, size_t len, const char *lit)
{
	return mime_ascii_ieq(s, len, lit);
}

static void parse_content_type(struct mime_arena *arena, struct mime_part *part,
			       bool digest_child, bool *failed_r)
{
	const char *v = part->field[MIME_FIELD_CONTENT_TYPE];
	if (v != NULL) {
		const char *p = v, *end = v + part->field_len[MIME_FIELD_CONTENT_TYPE];
		const char *t, *s;
		size_t tl, sl;
		/* RFC 2045 5.1: type "/" subtype *(";" parameter), CFWS between */
		mime_lex_skip_cfws(&p, end, NULL);
		tl = mime_lex_token(&p, end, &t);
		mime_lex_skip_cfws(&p, end, NULL);
		if (tl > 0 && p < end && *p == '/') {
			p++;
			mime_lex_skip_cfws(&p, end, NULL);
			sl = mime_lex_token(&p, end, &s);
			if (sl > 0) {
				part->type = mime_arena_strndup(arena, t, tl);
				part->subtype = mime_arena_strndup(arena, s, sl);
				struct mime_param *params = NULL;
				unsigned int n = 0;
				if (part->type == NULL || part->subtype == NULL ||
				    mime_param_parse_list(arena, &p, end, &params, &n) < 0) {
					*failed_r = true;
					return;
				}
				part->params = params;
				part->param_count = n;
				if (ieq(t, tl, "text"))
					part->flags |= MIME_PART_TEXT;
				return;
			}
		}
	}
	part->flags |= MIME_PART_DEFAULT_TYPE;
	if (digest_child) {
		/* RFC 2046 5.1.5 */
		part->type = "message";
		part->subtype = "rfc822";
		return;
	}
	/* RFC 2045 5.2 */
	part->type = "text";
	part->subtype = "plain";
	part->params = &default_charset;
	part->param_count = 1;
	part->flags |= MIME_PART_TEXT;
}

static void parse_disposition(struct mime_arena *arena, struct mime_part *part, bool *failed_r)
{
	const char *v = part->field[MIME_FIELD_CONTENT_DISPOSITION];
	if (v == NULL)
		return;
	const char *p = v, *end = v + part->field_len[MIME_FIELD_CONTENT_DISPOSITION], *t;
	/* RFC 2183 2: disposition-type *(";" disposition-parm) */
	mime_lex_skip_cfws(&p, end, NULL);
	size_t tl = mime_lex_token(&p, end, &t);
	if (tl == 0)
		return;
	part->disposition = mime_arena_strndup(arena, t, tl);
	struct mime_param *params = NULL;
	unsigned int n = 0;
	if (part->disposition == NULL || mime_param_parse_list(arena, &p, end, &params, &n) < 0) {
		*failed_r = true;
		return;
	}
	part->disp_params = params;
	part->disp_param_count = n;
}

static void parse_language(struct mime_arena *arena, struct mime_part *part, bool *failed_r)
{
	const char *v = part->field[MIME_FIELD_CONTENT_LANGUAGE];
	if (v == NULL)
		return;
	const char *end = v + part->field_len[MIME_FIELD_CONTENT_LANGUAGE];
	/* RFC 3282 2: 1#Language-tag, a tag is ALPHA/DIGIT and "-" (tokens
	 * here, so we do not lose anything a client might want to see) */
	unsigned int n = 0, cap = 0;
	const char **langs = NULL;
	const char *p = v;
	for (;;) {
		mime_lex_skip_cfws(&p, end, NULL);
		while (p < end && *p == ',') {
			p++;
			mime_lex_skip_cfws(&p, end, NULL);
		}
		const char *t;
		size_t tl = mime_lex_token(&p, end, &t);
		if (tl == 0)
			break;
		if (n == cap) {
			unsigned int ncap = cap ? cap * 2 : 4;
			const char **nl = mime_arena_alloc(arena, ncap * sizeof(*nl));
			if (nl == NULL) {
				*failed_r = true;
				return;
			}
			if (n > 0)
				memcpy(nl, langs, n * sizeof(*nl));
			langs = nl;
			cap = ncap;
		}
		langs[n] = mime_arena_strndup(arena, t, tl);
		if (langs[n] == NULL) {
			*failed_r = true;
			return;
		}
		n++;
	}
	part->languages = langs;
	part->language_count = n;
}

void mime_content_parse(struct mime_arena *arena, struct mime_part *part, bool digest_child,
			bool *failed_r)
{
	parse_content_type(arena, part, digest_child, failed_r);
	const char *cte = part->field[MIME_FIELD_CONTENT_TRANSFER_ENCODING];
	if (cte != NULL) {
		const char *p = cte, *end = cte + part->field_len[MIME_FIELD_CONTENT_TRANSFER_ENCODING];
		const char *t;
		mime_lex_skip_cfws(&p, end, NULL);
		size_t tl = mime_lex_token(&p, end, &t);
		if (tl > 0) {
			part->cte_name = mime_arena_strndup(arena, t, tl);
			if (part->cte_name == NULL)
				*failed_r = true;
			part->cte = mime_decode_cte(t, tl);
		}
	}
	parse_disposition(arena, part, failed_r);
	parse_language(arena, part, failed_r);
}
