/*
 * mime_bodystructure.c: IMAP BODY and BODYSTRUCTURE (RFC 9051 7.5.2 and its
 * `body` grammar, RFC 3501 7.4.2).
 *
 *   body            = "(" (body-type-1part / body-type-mpart) ")"
 *   body-type-1part = (body-type-basic / body-type-msg / body-type-text)
 *                     [SP body-ext-1part]
 *   body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]
 *   body-fields     = body-fld-param SP body-fld-id SP body-fld-desc SP
 *                     body-fld-enc SP body-fld-octets
 *
 * Design note
 * -----------
 * Sizes are virtual (bare LF counted as CRLF), as FETCH BODY[n] would send.
 * Choices the grammar leaves open are made as Dovecot makes them, so that
 * clients see what they already know:
 *   - body-ext data always has all four members (md5, dsp, lang, loc),
 *     NIL where absent; body-fld-lang is always a parenthesised list;
 *   - a text part without a charset parameter gets ("charset" "us-ascii")
 *     (RFC 2046 4.1.2 makes US-ASCII the default);
 *   - a multipart in which no body part was found is given one empty
 *     text/plain part: RFC 3501 7.4.2 (and RFC 9051 7.5.2) body-type-mpart
 *     is "1*body SP media-subtype", so it needs one, and Dovecot does the
 *     same; FETCH BODY[n.1] of it is "" (mime_tree_find's placeholder);
 *   - the encoding is the field's token as written, "7bit" when absent.
 * Parts the parser left opaque because of a limit are written as
 * body-type-basic; an opaque message/rfc822 would break body-type-msg (it
 * needs an envelope and a body), so it is written as application/octet-stream.
 * Recursion depth is bounded by MIME_MAX_DEPTH.
 */
#include <stdlib.h>
#include <string.h>

#include "mime/mime_private.h"

#define EMPTY_BODY "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)"
#define EMPTY_BODYSTRUCTURE \
	"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)"

static void str(struct mime_buf *out, const char *s)
{
	mime_imap_string(out, s, strlen(s));
}

static void nstr_field(struct mime_buf *out, const struct mime_part *part, enum mime_field f)
{
	mime_imap_nstring(out, part->field[f], part->field_len[f]);
}

static void write_params(struct mime_buf *out, const struct mime_param *params, unsigned int count,
			 bool default_charset)
{
	if (count == 0 && !default_charset) {
		mime_buf_puts(out, "NIL");
		return;
	}
	bool seen_charset = false;
	mime_buf_putc(out, '(');
	for (unsigned int i = 0; i < count; i++) {
		if (i > 0)
			mime_buf_putc(out, ' ');
		if (mime_ascii_ieq(params[i].name, strlen(params[i].name), "charset"))
			seen_charset = true;
		str(out, params[i].name);
		mime_buf_putc(out, ' ');
		mime_imap_string(out, params[i].value, params[i].value_len);
	}
	if (default_charset && !seen_charset) {
		if (count > 0)
			mime_buf_putc(out, ' ');
		mime_buf_puts(out, "\"charset\" \"us-ascii\"");
	}
	mime_buf_putc(out, ')');
}

static void write_common_ext(struct mime_buf *out, const struct mime_part *part)
{
	mime_buf_putc(out, ' ');
	if (part->disposition == NULL) {
		mime_buf_puts(out, "NIL");
	} else {
		mime_buf_putc(out, '(');
		str(out, part->disposition);
		mime_buf_putc(out, ' ');
		write_params(out, part->disp_params, part->disp_param_count, false);
		mime_buf_putc(out, ')');
	}
	mime_buf_putc(out, ' ');
	if (part->language_count == 0) {
		mime_buf_puts(out, "NIL");
	} else {
		mime_buf_putc(out, '(');
		for (unsigned int i = 0; i < part->language_count; i++) {
			if (i > 0)
				mime_buf_putc(out, ' ');
			str(out, part->languages[i]);
		}
		mime_buf_putc(out, ')');
	}
	mime_buf_putc(out, ' ');
	nstr_field(out, part, MIME_FIELD_CONTENT_LOCATION);
}

static void write_part(struct mime_buf *out, const struct mime_part *part, bool extended);

static void write_multipart(struct mime_buf *out, const struct mime_part *part, bool extended)
{
	if (part->children == NULL)
		mime_buf_puts(out, extended ? EMPTY_BODYSTRUCTURE : EMPTY_BODY);
	for (const struct mime_part *c = part->children; c != NULL; c = c->next)
		write_part(out, c, extended);
	mime_buf_putc(out, ' ');
	str(out, part->subtype);
	if (!extended)
		return;
	mime_buf_putc(out, ' ');
	write_params(out, part->params, part->param_count, false);
	write_common_ext(out, part);
}

static void write_single(struct mime_buf *out, const struct mime_part *part, bool extended)
{
	bool text = (part->flags & MIME_PART_TEXT) != 0;
	bool message = (part->flags & MIME_PART_MESSAGE) != 0 && part->children != NULL;
	bool opaque_message = !message && mime_ascii_ieq(part->type, strlen(part->type), "message") &&
			      (mime_ascii_ieq(part->subtype, strlen(part->subtype), "rfc822") ||
			       mime_ascii_ieq(part->subtype, strlen(part->subtype), "global")) &&
			      (part->flags & MIME_PART_OPAQUE) != 0;
	if (opaque_message) {
		mime_buf_puts(out, "\"application\" \"octet-stream\" NIL");
	} else {
		str(out, part->type);
		mime_buf_putc(out, ' ');
		str(out, part->subtype);
		mime_buf_putc(out, ' ');
		write_params(out, part->params, part->param_count, text);
	}
	mime_buf_putc(out, ' ');
	nstr_field(out, part, MIME_FIELD_CONTENT_ID);
	mime_buf_putc(out, ' ');
	nstr_field(out, part, MIME_FIELD_CONTENT_DESCRIPTION);
	mime_buf_putc(out, ' ');
	if (part->cte_name != NULL)
		str(out, part->cte_name);
	else
		mime_buf_puts(out, "\"7bit\"");
	mime_buf_printf(out, " %llu", (unsigned long long)part->body_vsize);
	if (text) {
		mime_buf_printf(out, " %llu", (unsigned long long)part->body_lines);
	} else if (message) {
		size_t len;
		char *env = mime_envelope_imap(part->children, &len);
		mime_buf_putc(out, ' ');
		if (env == NULL)
			out->failed = true;
		else
			mime_buf_append(out, env, len);
		free(env);
		mime_buf_putc(out, ' ');
		write_part(out, part->children, extended);
		mime_buf_printf(out, " %llu", (unsigned long long)part->body_lines);
	}
	if (!extended)
		return;
	mime_buf_putc(out, ' ');
	nstr_field(out, part, MIME_FIELD_CONTENT_MD5);
	write_common_ext(out, part);
}

static void write_part(struct mime_buf *out, const struct mime_part *part, bool extended)
{
	mime_buf_putc(out, '(');
	if (part->flags & MIME_PART_MULTIPART)
		write_multipart(out, part, extended);
	else
		write_single(out, part, extended);
	mime_buf_putc(out, ')');
}

char *mime_bodystructure_imap(const struct mime_tree *tree, bool extended, size_t *len_r)
{
	struct mime_buf out = { 0 };
	write_part(&out, tree->root, extended);
	return mime_buf_steal(&out, len_r);
}
