/*
 * imapc_resp.c: the IMAP client's response parser (see imapc_resp.h).
 *
 * A byte-level state machine: one state per place in the grammar, the
 * current token's text appended to the arena as it comes. Literal bodies
 * are taken in bulk (or handed to the hooks), everything else a byte at a
 * time; responses other than literals are short.
 */
#include "import/imapc_resp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum state {
	S_TAG,
	S_SEP, /* between tokens */
	S_ATOM,
	S_QUOTED,
	S_QUOTED_ESC,
	S_LIT_HDR, /* inside {N} */
	S_LIT_CR,  /* after }: CR LF or LF */
	S_LIT_LF,
	S_LIT_BODY,
	S_STATUS_SP,   /* after OK/NO/BAD/BYE/PREAUTH */
	S_STATUS_CODE, /* after its space: a [code] or the text */
	S_AFTER_CODE,
	S_TEXT,
	S_CR, /* a CR that ends the line: LF must follow */
	S_DONE,
};

#define MAX_TAG 64

void imapc_resp_init(struct imapc_resp *r)
{
	memset(r, 0, sizeof(*r));
	imapc_resp_reset(r);
}

void imapc_resp_reset(struct imapc_resp *r)
{
	buf_truncate(&r->text, 0);
	r->text.failed = 0;
	r->ntok = 0;
	r->state = S_TAG;
	r->depth = 0;
	r->status_line = 0;
	r->in_code = 0;
	r->bracket = 0;
	r->lit_left = 0;
	r->lit_streamed = 0;
	r->lit_digits = 0;
	r->errtext[0] = '\0';
	r->oom = 0;
}

void imapc_resp_free(struct imapc_resp *r)
{
	buf_free(&r->text);
	free(r->tok);
	r->tok = NULL;
	r->ntok = r->tokcap = 0;
}

/* ---- building ------------------------------------------------------------- */

static int fail(struct imapc_resp *r, const char *why)
{
	if (r->errtext[0] == '\0')
		snprintf(r->errtext, sizeof(r->errtext), "%s", why);
	return -1;
}

static int oom(struct imapc_resp *r)
{
	r->oom = 1;
	return fail(r, "out of memory");
}

static int put(struct imapc_resp *r, const char *s, size_t n)
{
	if (r->text.len + n + 1 > IMAPC_RESP_MAX_TEXT)
		return fail(r, "response too long");
	buf_append(&r->text, s, n);
	if (r->text.failed)
		return oom(r);
	return 0;
}

static struct imapc_tok *cur(struct imapc_resp *r)
{
	return &r->tok[r->ntok - 1];
}

static int tok_add(struct imapc_resp *r, enum imapc_tok_type type)
{
	if (r->ntok >= IMAPC_RESP_MAX_TOKENS)
		return fail(r, "too many tokens in one response");
	if (r->ntok == r->tokcap) {
		size_t cap = r->tokcap ? r->tokcap * 2 : 64;
		struct imapc_tok *t = realloc(r->tok, cap * sizeof(*t));
		if (t == NULL)
			return oom(r);
		r->tok = t;
		r->tokcap = cap;
	}
	struct imapc_tok *t = &r->tok[r->ntok++];
	memset(t, 0, sizeof(*t));
	t->type = type;
	t->off = (uint32_t)r->text.len;
	return 0;
}

/* Ends the text of the current token (atom, string, text). */
static int tok_close(struct imapc_resp *r)
{
	struct imapc_tok *t = cur(r);
	t->len = (uint32_t)(r->text.len - t->off);
	return put(r, "", 1); /* the NUL that ends it */
}

static int list_open(struct imapc_resp *r, enum imapc_tok_type type)
{
	if (r->depth >= IMAPC_RESP_MAX_DEPTH)
		return fail(r, "lists nested too deep");
	if (tok_add(r, type) < 0)
		return -1;
	r->open[r->depth++] = r->ntok - 1;
	return 0;
}

static int list_close(struct imapc_resp *r, enum imapc_tok_type type)
{
	if (r->depth == 0 || r->tok[r->open[r->depth - 1]].type != type)
		return fail(r, type == IMAPC_TOK_LIST ? "unbalanced \")\"" : "unbalanced \"]\"");
	r->tok[r->open[--r->depth]].end = (uint32_t)r->ntok;
	return 0;
}

static int is_status_word(const char *s)
{
	static const char *const words[] = {"OK", "NO", "BAD", "BYE", "PREAUTH"};
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strcasecmp(s, words[i]) == 0)
			return 1;
	return 0;
}

static int atom_end(struct imapc_resp *r)
{
	if (tok_close(r) < 0)
		return -1;
	struct imapc_tok *t = cur(r);
	const char *s = r->text.data + t->off;
	if (r->bracket)
		r->bracket = 0; /* a line that ends inside [...]: taken as it is */
	if (strcasecmp(s, "NIL") == 0) {
		t->type = IMAPC_TOK_NIL;
		t->len = 0; /* its text is "" (imapc_resp_str) */
		return 0;
	}
	if (r->ntok == 1 && !r->in_code && is_status_word(s)) {
		r->status_line = 1;
		r->state = S_STATUS_SP;
	}
	return 0;
}

/* ---- literals --------------------------------------------------------------- */

static int lit_start(struct imapc_resp *r)
{
	uint64_t size = r->lit_left;
	int stream = 0;
	if (r->hooks.literal_begin != NULL) {
		stream = r->hooks.literal_begin(r->hooks.ctx, r, size);
		if (stream < 0)
			return fail(r, "stopped by the reader");
	}
	if (!stream && r->text.len + size + 1 > IMAPC_RESP_MAX_TEXT)
		return fail(r, "literal over the size limit");
	if (tok_add(r, stream ? IMAPC_TOK_STREAMED : IMAPC_TOK_STRING) < 0)
		return -1;
	cur(r)->size = size;
	r->lit_streamed = stream;
	r->state = S_LIT_BODY;
	return 0;
}

static int lit_done(struct imapc_resp *r)
{
	if (r->lit_streamed) {
		if (r->hooks.literal_end != NULL && r->hooks.literal_end(r->hooks.ctx) < 0)
			return fail(r, "stopped by the reader");
		return 0;
	}
	return tok_close(r);
}

/* Takes up to n bytes of the literal body; returns how many, or -1. */
static long lit_body(struct imapc_resp *r, const char *d, size_t n)
{
	size_t take = r->lit_left < n ? (size_t)r->lit_left : n;
	if (take > 0) {
		if (r->lit_streamed) {
			if (r->hooks.literal_data != NULL &&
			    r->hooks.literal_data(r->hooks.ctx, d, take) < 0)
				return fail(r, "stopped by the reader");
		} else if (put(r, d, take) < 0) {
			return -1;
		}
	}
	r->lit_left -= take;
	if (r->lit_left == 0) {
		if (lit_done(r) < 0)
			return -1;
		r->state = S_SEP;
	}
	return (long)take;
}

static int lit_hdr(struct imapc_resp *r, char c)
{
	if (c >= '0' && c <= '9' && r->lit_digits != '+') {
		uint64_t d = (uint64_t)(c - '0');
		if (r->lit_left > (UINT64_MAX - d) / 10)
			return fail(r, "literal size overflows");
		r->lit_left = r->lit_left * 10 + d;
		r->lit_digits = 1;
		return 0;
	}
	if (c == '+' && r->lit_digits == 1) {
		r->lit_digits = '+';
		return 0;
	}
	if (c == '}' && r->lit_digits) {
		r->state = S_LIT_CR;
		return 0;
	}
	return fail(r, "bad literal size");
}

/* ---- one byte --------------------------------------------------------------- */

static int line_end(struct imapc_resp *r)
{
	if (r->depth > 0)
		return fail(r, r->in_code ? "response code without \"]\"" : "unbalanced \"(\"");
	if (r->ntok == 0 && strcmp(r->text.data, "+") != 0)
		return fail(r, "response without data");
	r->state = S_DONE;
	return 0;
}

static int eol(struct imapc_resp *r, char c)
{
	if (c == '\n')
		return line_end(r);
	r->state = S_CR;
	return 0;
}

static int text_start(struct imapc_resp *r)
{
	r->state = S_TEXT;
	return tok_add(r, IMAPC_TOK_TEXT);
}

static int on_tag(struct imapc_resp *r, char c)
{
	if (c == ' ' || c == '\r' || c == '\n') {
		if (r->text.len == 0)
			return fail(r, "response without tag");
		if (put(r, "", 1) < 0)
			return -1;
		if (strcmp(r->text.data, "+") == 0) {
			/* continuation request: the rest is text (RFC 3501 7.5) */
			if (text_start(r) < 0)
				return -1;
			return c == ' ' ? 0 : (tok_close(r) < 0 ? -1 : eol(r, c));
		}
		if (c != ' ')
			return fail(r, "response without data");
		r->state = S_SEP;
		return 0;
	}
	if ((unsigned char)c <= 0x20 || c == 0x7f || r->text.len >= MAX_TAG)
		return fail(r, "bad tag");
	return put(r, &c, 1);
}

/* A byte that starts a token, separates tokens or ends a list or the line. */
static int on_sep(struct imapc_resp *r, char c)
{
	switch (c) {
	case ' ':
		return 0;
	case '\r':
	case '\n':
		return eol(r, c);
	case '(':
		return list_open(r, IMAPC_TOK_LIST);
	case ')':
		return list_close(r, IMAPC_TOK_LIST);
	case '"':
		r->state = S_QUOTED;
		return tok_add(r, IMAPC_TOK_STRING);
	case '{':
		r->state = S_LIT_HDR;
		r->lit_left = 0;
		r->lit_digits = 0;
		return 0;
	case ']':
		if (r->in_code && r->depth > 0 &&
		    r->tok[r->open[r->depth - 1]].type == IMAPC_TOK_CODE) {
			r->in_code = 0;
			r->state = S_AFTER_CODE;
			return list_close(r, IMAPC_TOK_CODE);
		}
		break;
	default:
		break;
	}
	if ((unsigned char)c < 0x20 || c == 0x7f)
		return fail(r, "control character in a response");
	r->state = S_ATOM;
	r->bracket = 0;
	if (tok_add(r, IMAPC_TOK_ATOM) < 0)
		return -1;
	if (c == '[' && !r->in_code)
		r->bracket = 1;
	return put(r, &c, 1);
}

/* Returns 1 if c ended the atom and must be looked at again. */
static int on_atom(struct imapc_resp *r, char c)
{
	if (r->bracket) {
		if (c == ']')
			r->bracket = 0;
		else if (c == '\r' || c == '\n')
			goto end;
		return put(r, &c, 1);
	}
	switch (c) {
	case ' ':
	case '(':
	case ')':
	case '\r':
	case '\n':
		goto end;
	case ']':
		if (r->in_code)
			goto end;
		break;
	case '[':
		if (!r->in_code)
			r->bracket = 1;
		break;
	case '{':
		if (r->text.len - cur(r)->off == 1 && r->text.data[cur(r)->off] == '~') {
			/* literal8 (RFC 3516): ~{N} */
			buf_truncate(&r->text, cur(r)->off);
			r->ntok--;
			r->state = S_LIT_HDR;
			r->lit_left = 0;
			r->lit_digits = 0;
			return 0;
		}
		break;
	default:
		if ((unsigned char)c < 0x20 || c == 0x7f)
			return fail(r, "control character in an atom");
		break;
	}
	return put(r, &c, 1);
end:
	r->state = S_SEP;
	if (atom_end(r) < 0)
		return -1;
	return 1;
}

static int on_quoted(struct imapc_resp *r, char c)
{
	if (c == '\r' || c == '\n' || c == '\0')
		return fail(r, "line break in a quoted string");
	if (r->state == S_QUOTED_ESC) {
		r->state = S_QUOTED;
		return put(r, &c, 1);
	}
	if (c == '\\') {
		r->state = S_QUOTED_ESC;
		return 0;
	}
	if (c == '"') {
		r->state = S_SEP;
		return tok_close(r);
	}
	return put(r, &c, 1);
}

/* After a status word: " [code] text", " text" or the line's end. */
static int on_status(struct imapc_resp *r, char c)
{
	if (r->state == S_STATUS_SP) {
		if (c == ' ') {
			r->state = S_STATUS_CODE;
			return 0;
		}
		if (c == '\r' || c == '\n')
			return eol(r, c);
		return fail(r, "no space after the status");
	}
	if (c == '[') {
		r->in_code = 1;
		r->state = S_SEP;
		return list_open(r, IMAPC_TOK_CODE);
	}
	if (text_start(r) < 0)
		return -1;
	return 1;
}

static int on_text(struct imapc_resp *r, char c)
{
	if (c == '\r' || c == '\n') {
		if (tok_close(r) < 0)
			return -1;
		return eol(r, c);
	}
	return put(r, &c, 1);
}

static int step(struct imapc_resp *r, char c)
{
	switch (r->state) {
	case S_TAG:
		return on_tag(r, c);
	case S_SEP:
		return on_sep(r, c);
	case S_ATOM:
		return on_atom(r, c);
	case S_QUOTED:
	case S_QUOTED_ESC:
		return on_quoted(r, c);
	case S_LIT_HDR:
		return lit_hdr(r, c);
	case S_LIT_CR:
		if (c == '\n')
			return lit_start(r);
		if (c != '\r')
			return fail(r, "no line end after a literal's size");
		r->state = S_LIT_LF;
		return 0;
	case S_LIT_LF:
		if (c != '\n')
			return fail(r, "no line end after a literal's size");
		return lit_start(r);
	case S_STATUS_SP:
	case S_STATUS_CODE:
		return on_status(r, c);
	case S_AFTER_CODE:
		if (c == '\r' || c == '\n')
			return eol(r, c);
		if (text_start(r) < 0)
			return -1;
		return c == ' ' ? 0 : 1;
	case S_TEXT:
		return on_text(r, c);
	case S_CR:
		if (c != '\n')
			return fail(r, "CR without LF");
		return line_end(r);
	default:
		return fail(r, "fed after the end");
	}
}

enum imapc_resp_result imapc_resp_feed(struct imapc_resp *r, const char *data, size_t len,
				       size_t *used_r, struct error *err)
{
	size_t i = 0;
	while (i < len) {
		if (r->state == S_LIT_BODY) {
			long n = lit_body(r, data + i, len - i);
			if (n < 0)
				goto error;
			i += (size_t)n;
			continue;
		}
		int rc = step(r, data[i]);
		if (rc < 0)
			goto error;
		if (rc == 1)
			continue; /* the byte ended a token: look at it again */
		i++;
		if (r->state == S_DONE) {
			*used_r = i;
			return IMAPC_RESP_DONE;
		}
	}
	/* a zero-length literal is complete as soon as its header is */
	if (r->state == S_LIT_BODY && r->lit_left == 0 && lit_body(r, data, 0) < 0)
		goto error;
	*used_r = len;
	return IMAPC_RESP_NEED_MORE;
error:
	*used_r = i;
	if (err != NULL)
		error_set(err, r->oom ? ERR_TEMP : ERR_INVALID, "IMAP response: %s",
			  r->errtext[0] ? r->errtext : "bad syntax");
	return IMAPC_RESP_ERROR;
}

/* ---- reading ---------------------------------------------------------------- */

const char *imapc_resp_tag(const struct imapc_resp *r)
{
	return buf_cstr(&r->text);
}

size_t imapc_resp_ntok(const struct imapc_resp *r)
{
	return r->ntok;
}

size_t imapc_resp_depth(const struct imapc_resp *r)
{
	return r->depth;
}

const struct imapc_tok *imapc_resp_tok(const struct imapc_resp *r, size_t i)
{
	return i < r->ntok ? &r->tok[i] : NULL;
}

const char *imapc_resp_str(const struct imapc_resp *r, size_t i)
{
	if (i >= r->ntok)
		return "";
	switch (r->tok[i].type) {
	case IMAPC_TOK_ATOM:
	case IMAPC_TOK_STRING:
	case IMAPC_TOK_TEXT:
		return r->text.data + r->tok[i].off;
	default:
		return "";
	}
}

int imapc_resp_is(const struct imapc_resp *r, size_t i, const char *s)
{
	return i < r->ntok && r->tok[i].type == IMAPC_TOK_ATOM &&
	       strcasecmp(r->text.data + r->tok[i].off, s) == 0;
}

int imapc_resp_num(const struct imapc_resp *r, size_t i, uint64_t *n_r)
{
	if (i >= r->ntok || r->tok[i].type != IMAPC_TOK_ATOM)
		return -1;
	const char *s = r->text.data + r->tok[i].off;
	size_t len = r->tok[i].len;
	if (len == 0 || len > 20)
		return -1;
	uint64_t n = 0;
	for (size_t k = 0; k < len; k++) {
		if (s[k] < '0' || s[k] > '9')
			return -1;
		uint64_t d = (uint64_t)(s[k] - '0');
		if (n > (UINT64_MAX - d) / 10)
			return -1;
		n = n * 10 + d;
	}
	*n_r = n;
	return 0;
}

size_t imapc_resp_next(const struct imapc_resp *r, size_t i)
{
	if (i >= r->ntok)
		return r->ntok;
	if (r->tok[i].type == IMAPC_TOK_LIST || r->tok[i].type == IMAPC_TOK_CODE)
		return r->tok[i].end > i ? r->tok[i].end : i + 1;
	return i + 1;
}
