/*
 * mime_address.c: address lists (RFC 5322 3.4, obs- forms of 4.4) for the
 * IMAP ENVELOPE and for SORT/SEARCH.
 *
 * Design note
 * -----------
 * The grammar is RFC 5322's; what to do with input that does not follow it is
 * not in any RFC, and clients only ever met Dovecot's answers, so the
 * recovery follows Dovecot's lib-mail (message-address.c) behaviour:
 *   - an addr-spec followed by a comment takes the comment as display name
 *     ("a@b (Joe)" -> name "Joe");
 *   - a lone word "foo" is the mailbox "foo" at host "MISSING_DOMAIN";
 *   - several words without "@" are a display name with mailbox
 *     "MISSING_MAILBOX" and host "MISSING_DOMAIN";
 *   - a broken angle-addr gets host "SYNTAX_ERROR";
 *   - an empty "<>" gets both placeholders.
 * RFC 9051 7.5.2 makes a NIL host mean "group syntax", so a missing host must
 * never be NIL; the placeholders keep clients from misreading the list.
 * Display names stay raw (RFC 2047 words undecoded), quoted strings are
 * unquoted, words of a phrase are joined by one space, CFWS is dropped.
 *
 * Every loop consumes at least one byte or stops, so the parser is linear in
 * the field length (which the MIME parser has already bounded).
 */
#include <stdlib.h>
#include <string.h>

#include "mime/mime_private.h"

struct actx {
	const char *p, *end;
	struct mime_buf str;
	struct mime_buf comment; /* last comment skipped */
	struct { char *name, *route, *mailbox, *host; } a;
	struct mime_address *head, **tail;
	bool failed;
};

static bool is_atext(unsigned char c)
{
	if (c >= 0x80)
		return true;
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* 1: data remains, 0: at end, -1: unterminated comment */
static int skip_lwsp(struct actx *c)
{
	while (c->p < c->end) {
		char ch = *c->p;
		if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
			c->p++;
			continue;
		}
		if (ch != '(')
			break;
		mime_buf_reset(&c->comment);
		int level = 1;
		c->p++;
		for (;;) {
			if (c->p >= c->end)
				return -1;
			ch = *c->p++;
			if (ch == '\\') {
				if (c->p >= c->end)
					return -1;
				mime_buf_putc(&c->comment, *c->p++);
				continue;
			}
			if (ch == '\r' || ch == '\n')
				continue;
			if (ch == '(')
				level++;
			else if (ch == ')' && --level == 0)
				break;
			mime_buf_putc(&c->comment, ch);
		}
	}
	return c->p < c->end ? 1 : 0;
}

static int parse_quoted(struct actx *c, struct mime_buf *out)
{
	c->p++; /* '"' */
	while (c->p < c->end) {
		char ch = *c->p++;
		if (ch == '"')
			return skip_lwsp(c);
		if (ch == '\r' || ch == '\n')
			continue;
		if (ch == '\\') {
			if (c->p >= c->end)
				return -1;
			ch = *c->p++;
		}
		mime_buf_putc(out, ch);
	}
	return -1; /* missing '"' */
}

static int parse_atom_or_dot(struct actx *c, struct mime_buf *out)
{
	const char *s = c->p;
	while (c->p < c->end && (is_atext((unsigned char)*c->p) || *c->p == '.'))
		c->p++;
	mime_buf_append(out, s, (size_t)(c->p - s));
	if (c->p >= c->end)
		return 0;
	return skip_lwsp(c);
}

/* phrase = 1*word / obs-phrase: words joined with one space */
static int parse_phrase(struct actx *c, struct mime_buf *out)
{
	if (c->p >= c->end)
		return 0;
	if (*c->p == '.')
		return -1;
	for (;;) {
		int ret = *c->p == '"' ? parse_quoted(c, out) : parse_atom_or_dot(c, out);
		if (ret <= 0)
			return ret;
		unsigned char ch = (unsigned char)*c->p;
		if (!is_atext(ch) && ch != '"' && ch != '.')
			break;
		mime_buf_putc(out, ' ');
	}
	return skip_lwsp(c);
}

/* dot-atom, with LWSP tolerated around dots (RFC 822 compatibility) */
static int parse_dot_atom(struct actx *c, struct mime_buf *out)
{
	if (c->p >= c->end || !is_atext((unsigned char)*c->p))
		return -1;
	for (;;) {
		const char *s = c->p;
		while (c->p < c->end && is_atext((unsigned char)*c->p))
			c->p++;
		mime_buf_append(out, s, (size_t)(c->p - s));
		if (c->p >= c->end)
			return 0;
		int ret = skip_lwsp(c);
		if (ret <= 0)
			return ret;
		if (*c->p != '.')
			return 1;
		c->p++;
		mime_buf_putc(out, '.');
		ret = skip_lwsp(c);
		if (ret <= 0)
			return ret;
	}
}

static char *dup_buf(struct actx *c, struct mime_buf *b)
{
	char *s = strndup(mime_buf_cstr(b), b->len);
	if (s == NULL || b->failed)
		c->failed = true;
	return s;
}

static void set_field(struct actx *c, char **field, char *value)
{
	free(*field);
	*field = value;
	(void)c;
}

static int parse_local_part(struct actx *c)
{
	/* local-part = dot-atom / quoted-string / obs-local-part */
	mime_buf_reset(&c->str);
	int ret;
	for (;;) {
		if (*c->p == '"')
			ret = parse_quoted(c, &c->str);
		else
			ret = parse_dot_atom(c, &c->str);
		if (ret <= 0 || *c->p != '.')
			break;
		c->p++;
		mime_buf_putc(&c->str, '.');
		ret = skip_lwsp(c);
		if (ret <= 0)
			break;
	}
	if (ret < 0)
		return -1;
	set_field(c, &c->a.mailbox, dup_buf(c, &c->str));
	return ret;
}

static int parse_domain(struct actx *c, struct mime_buf *out)
{
	c->p++; /* '@' */
	int ret = skip_lwsp(c);
	if (ret <= 0)
		return -1;
	if (*c->p == '[') {
		/* domain-literal, kept with its brackets */
		const char *s = c->p;
		while (c->p < c->end && *c->p != ']') {
			if (*c->p == '\\' && c->p + 1 < c->end)
				c->p++;
			c->p++;
		}
		if (c->p >= c->end)
			return -1;
		c->p++;
		for (const char *q = s; q < c->p; q++)
			if (*q != '\r' && *q != '\n')
				mime_buf_putc(out, *q);
		return skip_lwsp(c);
	}
	return parse_dot_atom(c, out);
}

static int parse_host(struct actx *c)
{
	mime_buf_reset(&c->str);
	int ret = parse_domain(c, &c->str);
	if (ret < 0)
		return -1;
	set_field(c, &c->a.host, dup_buf(c, &c->str));
	return ret;
}

static int parse_route(struct actx *c)
{
	/* obs-domain-list = "@" domain *(*(CFWS / ",") [CFWS] "@" domain) */
	mime_buf_reset(&c->str);
	for (;;) {
		if (c->p >= c->end)
			return 0;
		if (*c->p != '@')
			break;
		if (c->str.len > 0)
			mime_buf_putc(&c->str, ',');
		mime_buf_putc(&c->str, '@');
		int ret = parse_domain(c, &c->str);
		if (ret <= 0)
			return ret;
		while (skip_lwsp(c) > 0 && *c->p == ',')
			c->p++;
	}
	set_field(c, &c->a.route, dup_buf(c, &c->str));
	return 1;
}

static int parse_angle_addr(struct actx *c)
{
	c->p++; /* '<' */
	if (skip_lwsp(c) <= 0)
		return -1;
	if (*c->p == '@') {
		if (parse_route(c) > 0 && *c->p == ':') {
			c->p++;
		} else {
			set_field(c, &c->a.route, strdup("INVALID_ROUTE"));
			if (c->p >= c->end)
				return -1;
		}
		if (skip_lwsp(c) <= 0)
			return -1;
	}
	if (*c->p != '>') {
		if (parse_local_part(c) <= 0)
			return -1;
		if (*c->p == '@' && parse_host(c) <= 0)
			return -1;
	}
	if (*c->p != '>')
		return -1;
	c->p++;
	return skip_lwsp(c);
}

static int parse_name_addr(struct actx *c)
{
	mime_buf_reset(&c->str);
	if (parse_phrase(c, &c->str) <= 0 || *c->p != '<')
		return -1;
	if (c->str.len > 0)
		set_field(c, &c->a.name, dup_buf(c, &c->str));
	if (parse_angle_addr(c) < 0)
		set_field(c, &c->a.host, strdup("SYNTAX_ERROR"));
	return c->p < c->end ? 1 : 0;
}

static int parse_addr_spec(struct actx *c)
{
	int ret, ret2 = -2;
	mime_buf_reset(&c->comment);
	bool quoted = *c->p == '"';
	ret = parse_local_part(c);
	if (ret != 0 && c->p < c->end && *c->p == '@') {
		ret2 = parse_host(c);
		if (ret2 <= 0)
			ret = ret2;
	}
	if (c->comment.len > 0) {
		set_field(c, &c->a.name, dup_buf(c, &c->comment));
	} else if (ret2 == -2) {
		/* "user" alone is a mailbox; "user more words" a name */
		mime_buf_putc(&c->str, ' ');
		size_t orig = c->str.len;
		(void)parse_phrase(c, &c->str);
		if (c->str.len != orig) {
			set_field(c, &c->a.mailbox, NULL);
			set_field(c, &c->a.name, dup_buf(c, &c->str));
		} else if (!quoted) {
			set_field(c, &c->a.host, strdup(""));
		}
		ret = -1;
	}
	return ret;
}

static void add_address(struct actx *c)
{
	struct mime_address *a = calloc(1, sizeof(*a));
	if (a == NULL) {
		c->failed = true;
		free(c->a.name);
		free(c->a.route);
		free(c->a.mailbox);
		free(c->a.host);
	} else {
		a->name = c->a.name;
		a->route = c->a.route;
		a->mailbox = c->a.mailbox;
		a->host = c->a.host;
		*c->tail = a;
		c->tail = &a->next;
	}
	memset(&c->a, 0, sizeof(c->a));
}

static void add_fixed_address(struct actx *c)
{
	if (c->a.mailbox == NULL)
		c->a.mailbox = strdup("MISSING_MAILBOX");
	if (c->a.host == NULL || c->a.host[0] == '\0')
		set_field(c, &c->a.host, strdup("MISSING_DOMAIN"));
	if (c->a.mailbox == NULL || c->a.host == NULL)
		c->failed = true;
	add_address(c);
}

static int parse_mailbox(struct actx *c)
{
	const char *start = c->p;
	int ret = parse_name_addr(c);
	if (ret < 0) {
		c->p = start;
		set_field(c, &c->a.name, NULL);
		set_field(c, &c->a.route, NULL);
		set_field(c, &c->a.mailbox, NULL);
		set_field(c, &c->a.host, NULL);
		ret = parse_addr_spec(c);
	}
	add_fixed_address(c);
	return ret;
}

static int parse_group(struct actx *c)
{
	mime_buf_reset(&c->str);
	if (parse_phrase(c, &c->str) <= 0 || *c->p != ':')
		return -1;
	c->p++;
	int ret = skip_lwsp(c);
	set_field(c, &c->a.mailbox, dup_buf(c, &c->str));
	add_address(c); /* group start: (NIL NIL name NIL) */
	if (ret > 0 && *c->p != ';') {
		/* a broken member does not end the group while a "," follows
		 * (Dovecot keeps the later members inside the group too) */
		for (;;) {
			int r = parse_mailbox(c);
			if (r == 0) {
				ret = -1; /* end of input: no ";" */
				break;
			}
			if (c->p >= c->end || *c->p != ',') {
				if (r < 0)
					ret = -1;
				break;
			}
			c->p++;
			if (skip_lwsp(c) <= 0) {
				ret = -1;
				break;
			}
		}
	}
	if (ret >= 0) {
		if (c->p >= c->end || *c->p != ';') {
			ret = -1;
		} else {
			c->p++;
			ret = skip_lwsp(c);
		}
	}
	add_address(c); /* group end: (NIL NIL NIL NIL) */
	return ret == 0 ? 0 : 1;
}

int mime_address_parse(const char *value, size_t len, struct mime_address **list_r)
{
	struct actx c = { .p = value, .end = value + len };
	c.tail = &c.head;
	if (skip_lwsp(&c) > 0) {
		/* each round consumes input or stops; bound it anyway */
		for (size_t guard = 0; guard < len + 1; guard++) {
			const char *start = c.p;
			int ret = parse_group(&c);
			if (ret < 0) {
				c.p = start;
				set_field(&c, &c.a.mailbox, NULL);
				ret = parse_mailbox(&c);
			}
			if (ret == 0)
				break;
			if (c.p >= c.end || *c.p != ',')
				break;
			c.p++;
			ret = skip_lwsp(&c);
			if (ret <= 0) {
				if (ret < 0)
					add_fixed_address(&c);
				break;
			}
			if (c.p == start)
				break;
		}
	}
	free(c.a.name);
	free(c.a.route);
	free(c.a.mailbox);
	free(c.a.host);
	mime_buf_free(&c.str);
	mime_buf_free(&c.comment);
	if (c.failed) {
		mime_address_free(&c.head);
		return -1;
	}
	*list_r = c.head;
	return 0;
}

void mime_address_free(struct mime_address **list)
{
	struct mime_address *a = *list;
	while (a != NULL) {
		struct mime_address *next = a->next;
		free(a->name);
		free(a->route);
		free(a->mailbox);
		free(a->host);
		free(a);
		a = next;
	}
	*list = NULL;
}

char *mime_address_display_utf8(const struct mime_address *list)
{
	/* RFC 5957 (DISPLAYFROM): the display name, else the addr-spec */
	for (const struct mime_address *a = list; a != NULL; a = a->next) {
		if (a->host == NULL)
			continue; /* group start or end */
		size_t len;
		if (a->name != NULL && a->name[0] != '\0')
			return mime_decode_header_utf8(a->name, strlen(a->name), &len);
		struct mime_buf b = { 0 };
		mime_buf_puts(&b, a->mailbox != NULL ? a->mailbox : "");
		mime_buf_putc(&b, '@');
		mime_buf_puts(&b, a->host);
		char *s = mime_charset_utf8_sanitize(mime_buf_cstr(&b), b.len, &len);
		mime_buf_free(&b);
		return s;
	}
	return NULL;
}
