/*
 * pop3_parser.c: the POP3 command-line reader; see pop3_parser.h.
 *
 * Design note. One pass per byte, no lookahead beyond one CR: a CR is held
 * back (p->cr) until the next byte says whether it ends the line (LF) or is
 * a stray control character. Bytes are stored only while the line is within
 * its limit; past it the parser just counts and waits for the LF, so an
 * endless line costs nothing but time. Keyword and argument splitting happen
 * once, at the LF, on the stored bytes; the result therefore never depends
 * on how the input was sliced.
 */
#include "pop3/pop3_parser.h"

#include <string.h>

#include "lib/strnum.h"

void pop3_parser_init(struct pop3_parser *p, enum pop3_parser_mode mode)
{
	memset(p, 0, sizeof(*p));
	pop3_parser_reset(p, mode);
}

void pop3_parser_reset(struct pop3_parser *p, enum pop3_parser_mode mode)
{
	p->mode = mode;
	p->result = POP3_PARSER_NEED_MORE;
	p->error = POP3_PARSER_ERR_NONE;
	p->limit = mode == POP3_PARSER_COMMAND ? POP3_PARSER_MAX_LINE : POP3_PARSER_MAX_SASL_LINE;
	p->seen = 0;
	p->len = 0;
	p->cr = 0;
	p->args = NULL;
	p->args_len = 0;
	p->verb[0] = '\0';
	p->line[0] = '\0';
}

static void set_error(struct pop3_parser *p, enum pop3_parser_error e)
{
	/* The first reason found wins, except that an overlong line is always
	 * reported as such (it is what the client most needs to know). */
	if (p->error == POP3_PARSER_ERR_NONE || e == POP3_PARSER_ERR_TOOLONG)
		p->error = e;
}

static void count(struct pop3_parser *p)
{
	if (p->seen < p->limit + 1)
		p->seen++;
	if (p->seen > p->limit)
		set_error(p, POP3_PARSER_ERR_TOOLONG);
}

static void keep(struct pop3_parser *p, unsigned char c)
{
	if (p->error == POP3_PARSER_ERR_NONE && p->len < sizeof(p->line) - 1)
		p->line[p->len++] = (char)c;
}

/* The line ended: check and split it. */
static void line_end(struct pop3_parser *p)
{
	p->line[p->len] = '\0';
	if (p->error != POP3_PARSER_ERR_NONE) {
		p->result = POP3_PARSER_ERROR;
		return;
	}
	if (p->mode == POP3_PARSER_LINE) {
		p->result = POP3_PARSER_DONE;
		return;
	}
	if (p->len == 0) {
		p->error = POP3_PARSER_ERR_EMPTY;
		p->result = POP3_PARSER_ERROR;
		return;
	}
	char *sp = memchr(p->line, ' ', p->len);
	size_t vlen = sp != NULL ? (size_t)(sp - p->line) : p->len;
	if (vlen == 0 || vlen > POP3_PARSER_MAX_VERB) {
		p->error = POP3_PARSER_ERR_VERB;
		p->result = POP3_PARSER_ERROR;
		return;
	}
	for (size_t i = 0; i < vlen; i++) {
		char c = p->line[i];
		p->verb[i] = c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
	}
	p->verb[vlen] = '\0';
	if (sp != NULL) {
		p->args = sp + 1;
		p->args_len = p->len - vlen - 1;
	}
	p->result = POP3_PARSER_DONE;
}

enum pop3_parser_result pop3_parser_feed(struct pop3_parser *p, const void *data, size_t len,
					 size_t *used_r)
{
	const unsigned char *d = data;
	size_t i = 0;
	if (p->result != POP3_PARSER_NEED_MORE) {
		*used_r = 0;
		return p->result;
	}
	while (i < len) {
		unsigned char c = d[i++];
		count(p);
		if (c == '\n') {
			p->cr = 0;
			line_end(p);
			*used_r = i;
			return p->result;
		}
		if (p->cr) {
			/* The CR held back was not part of a line ending. */
			p->cr = 0;
			set_error(p, POP3_PARSER_ERR_CHAR);
		}
		if (c == '\r') {
			p->cr = 1;
			continue;
		}
		if (c < 0x20 || c == 0x7f) {
			set_error(p, POP3_PARSER_ERR_CHAR);
			continue;
		}
		keep(p, c);
	}
	*used_r = i;
	return POP3_PARSER_NEED_MORE;
}

enum pop3_parser_error pop3_parser_error(const struct pop3_parser *p)
{
	return p->error;
}

const char *pop3_parser_verb(const struct pop3_parser *p)
{
	return p->verb;
}

char *pop3_parser_args(struct pop3_parser *p, size_t *len_r)
{
	if (len_r != NULL)
		*len_r = p->args_len;
	return p->args;
}

const char *pop3_parser_line(const struct pop3_parser *p, size_t *len_r)
{
	if (len_r != NULL)
		*len_r = p->len;
	return p->line;
}

int pop3_parser_split(char *args, char **words_r, int max)
{
	int n = 0;
	if (args == NULL)
		return 0;
	char *s = args;
	for (;;) {
		while (*s == ' ')
			s++;
		if (*s == '\0')
			return n;
		if (n == max)
			return -1;
		words_r[n++] = s;
		while (*s != ' ' && *s != '\0')
			s++;
		if (*s == '\0')
			return n;
		*s++ = '\0';
	}
}

int pop3_parser_number(const char *word, uint32_t max, uint32_t *v_r)
{
	uint64_t v;
	if (word == NULL || strnum_u64z(word, max, &v) < 0)
		return -1;
	*v_r = (uint32_t)v;
	return 0;
}
