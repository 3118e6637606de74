/*
 * imap_parser.c: incremental IMAP command parser; see imap_parser.h.
 *
 * Design note
 * -----------
 * A byte-level state machine in the manner of nginx's HTTP parser. Every
 * byte of the command line goes through step() exactly once, whatever the
 * slicing of the input, so feeding one byte at a time and feeding all at
 * once give the same result. Literal bytes bypass step(): they are copied
 * (or handed to literal_data()) in bulk.
 *
 * Grammar (RFC 9051 section 9, with RFC 3501, RFC 7888, RFC 3516):
 *   command  = tag SP name [SP args] CRLF       ; "UID" SP name as one name
 *   tag      = 1*<ASTRING-CHAR except "+">
 *   args     = arg *(SP arg)
 *   arg      = atom / quoted / literal / "(" [args] ")"
 *   literal  = ["~"] "{" number ["+"] "}" CRLF *OCTET   ; 7888 "+", 3516 "~"
 * The parser is generic: it knows no command's syntax, only tokens. An
 * "atom" is any run of ATOM-CHARs plus '%', '*', ']' and '\' (so sequence
 * sets, LIST patterns and flags are atoms); once it holds '[' it runs to
 * the matching ']' and may contain anything printable there, quoted strings
 * included (FETCH BODY[HEADER.FIELDS (From "X")]<0.10>); the raw text is
 * kept for the FETCH handler. Separators are exactly one SP (no trailing SP
 * before CRLF); CRLF or bare LF ends a line; an empty line between commands
 * is ignored. NIL (any case) as a bare atom gets type NIL.
 *
 * States: S_TAG .. S_LITDATA read a command; S_DONE / S_ERROR / S_LITERAL
 * wait for the server (imap_parser_reset(), or feeding after LITERAL);
 * S_DISCARD / S_DISCARD_LIT throw away the rest of a bad command;
 * S_LINE / S_LINE_CR / S_LINE_DONE are line mode.
 *
 * Error recovery. An error is reported as soon as it is seen, with
 * `discard` saying what still belongs to the bad command:
 *   D_NONE  nothing (the line ended and its literal, if any, was refused
 *           before the client may send it: synchronizing);
 *   D_LINE  the rest of the line; at its LF, if the line ended with a
 *           literal announcement, {n+} means n bytes follow that belong to
 *           the bad command (skip them, then discard the next line the same
 *           way); {n} means the client waits for "+", which never comes;
 *   D_TAIL  the error was found on the LF itself: the end-of-line check only;
 *   D_LIT   n literal bytes, then D_LINE.
 * "Did the line end with {n+}" is answered by a five-state recognizer fed
 * every byte of the line (struct tail), exact whatever the line length. A
 * {n+} with n over UINT32_MAX turns the error fatal. It looks at bytes
 * only, not at the grammar: a {n+} ending an unterminated quoted string is
 * taken as a literal too (the safe side: we may eat too much of a broken
 * client's input, never run literal data as a command).
 *
 * Memory. Tokens accumulate in `tok` (a growable chunk); a finished token
 * is copied into the arena, or, when large, the chunk itself is adopted by
 * the arena, so a buffered literal is never copied. Arguments are nodes in
 * a linked tree while parsing; closing a list (and finishing the command)
 * turns its children into an array of struct imap_arg in the arena. Bounds:
 * line bytes <= max_line, nodes <= max_args, buffered literal bytes <=
 * max_literal_memory, depth <= max_depth; a literal's buffer grows as its
 * bytes arrive, never on the announcement alone. Between commands a parser
 * holds its struct, a 1 KiB arena chunk and a token buffer of at most
 * TOK_KEEP bytes.
 */
#include "imap/imap_parser.h"

#include <stdalign.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ARENA_FIRST	1024
#define ARENA_MAX_CHUNK (64 * 1024)
#define TOK_KEEP	256  /* token buffer kept across commands */
#define TOK_ADOPT	512  /* tokens this big are adopted, not copied */
#define MAX_NAME	32   /* command name bytes */
#define ALIGN		(sizeof(void *))

struct chunk {
	struct chunk *next;
	size_t size; /* bytes in data */
	size_t used;
	max_align_t data[];
};

struct node {
	struct imap_arg a;
	struct node *next;
	struct node *parent;
	struct node *head, *tail; /* LIST children while open */
};

enum state {
	S_TAG,
	S_EMPTY_CR,
	S_NAME,
	S_UIDNAME,
	S_ARG,
	S_ARG_OPEN,
	S_AFTER_ARG,
	S_ATOM,
	S_BRACKET,
	S_BRACKET_Q,
	S_BRACKET_QESC,
	S_QUOTED,
	S_QUOTED_ESC,
	S_TILDE,
	S_LITNUM,
	S_LITPLUS,
	S_LITEND,
	S_LITCR,
	S_LITDATA,
	S_CR,
	S_DONE,
	S_LITERAL,
	S_ERROR,
	S_DISCARD,
	S_DISCARD_LIT,
	S_LINE,
	S_LINE_CR,
	S_LINE_DONE,
};

enum discard { D_NONE, D_LINE, D_TAIL, D_LIT };

/* Recognizer of a line ending ["~"] "{" number ["+"] "}" [CR]. */
enum tail_state { T_NONE, T_BRACE, T_DIGITS, T_PLUS, T_CLOSE, T_CLOSE_CR };

struct tail {
	enum tail_state st;
	bool plus;
	bool overflow; /* number > UINT32_MAX */
	uint64_t v;
};

struct imap_parser {
	struct imap_parser_limits lim;
	struct imap_parser_callbacks cb;
	enum state state;

	struct chunk *chunks; /* arena, newest first */
	struct chunk *keep;   /* small first chunk, kept across resets */
	struct chunk *tok;    /* current token (or line in line mode) */

	/* command being parsed */
	struct imap_command cmd;
	struct node *top_head, *top_tail;
	size_t top_count;
	struct node *cur; /* innermost open list */
	unsigned int depth;
	size_t nargs;
	size_t line_len;   /* command bytes, literals excluded */
	size_t lit_mem;	   /* buffered literal bytes */
	size_t bdepth;	   /* '[' nesting inside an atom */
	size_t bracket_at; /* token offset of the outermost '[' being read */
	bool plain_brackets; /* '[' no longer opens a section in this command */
	int cur_c;	   /* byte being processed by step(), -1 outside */

	/* literal being announced or read */
	uint64_t lit_size, lit_remaining;
	unsigned int lit_digits;
	bool lit_overflow, lit_nonsync, lit_8, lit_stream;

	struct tail tail; /* end of the current line */

	/* results */
	struct imap_parser_error err;
	struct imap_parser_literal lit;
	enum discard discard;
	uint64_t discard_lit;
	bool discard_plain; /* line mode: no literal detection */
};

/* ------------------------------------------------------------------ */
/* arena and token buffer                                              */

static struct chunk *chunk_new(size_t size)
{
	if (size > SIZE_MAX - sizeof(struct chunk))
		return NULL;
	struct chunk *c = malloc(sizeof(*c) + size);
	if (c == NULL)
		return NULL;
	c->next = NULL;
	c->size = size;
	c->used = 0;
	return c;
}

static void *arena_alloc(struct imap_parser *p, size_t n)
{
	if (n > SIZE_MAX / 2)
		return NULL;
	n = (n + ALIGN - 1) & ~(ALIGN - 1);
	struct chunk *h = p->chunks;
	if (h == NULL || h->size - h->used < n) {
		size_t size = h == NULL ? ARENA_FIRST : h->size * 2;
		if (size > ARENA_MAX_CHUNK)
			size = ARENA_MAX_CHUNK;
		if (size < n)
			size = n;
		struct chunk *c = chunk_new(size);
		if (c == NULL)
			return NULL;
		if (p->keep == NULL && size == ARENA_FIRST)
			p->keep = c;
		c->next = h;
		p->chunks = c;
		h = c;
	}
	void *r = (unsigned char *)h->data + h->used;
	h->used += n;
	return r;
}

/* Links a full chunk into the arena behind the current head. */
static void arena_adopt(struct imap_parser *p, struct chunk *c)
{
	c->used = c->size;
	if (p->chunks == NULL) {
		c->next = NULL;
		p->chunks = c;
	} else {
		c->next = p->chunks->next;
		p->chunks->next = c;
	}
}

static void arena_clear(struct imap_parser *p)
{
	struct chunk *c = p->chunks;
	while (c != NULL) {
		struct chunk *next = c->next;
		if (c != p->keep)
			free(c);
		c = next;
	}
	p->chunks = p->keep;
	if (p->keep != NULL) {
		p->keep->next = NULL;
		p->keep->used = 0;
	}
}

static size_t tok_len(const struct imap_parser *p)
{
	return p->tok == NULL ? 0 : p->tok->used;
}

static unsigned char *tok_data(const struct imap_parser *p)
{
	return (unsigned char *)p->tok->data;
}

/* Appends n bytes, keeping room for a NUL; the buffer grows geometrically
 * but never past hint+1 bytes when hint is nonzero (a literal's size). */
static int tok_append(struct imap_parser *p, const void *data, size_t n, uint64_t hint)
{
	size_t used = tok_len(p);
	if (n > SIZE_MAX - used - 1)
		return -1;
	size_t need = used + n + 1;
	if (p->tok == NULL || p->tok->size < need) {
		size_t size = p->tok == NULL ? 64 : p->tok->size;
		while (size < need)
			size = size > SIZE_MAX / 2 ? need : size * 2;
		if (hint != 0 && hint < SIZE_MAX && size > hint + 1 && need <= hint + 1)
			size = (size_t)hint + 1;
		struct chunk *c = realloc(p->tok, sizeof(*c) + size);
		if (c == NULL)
			return -1;
		if (p->tok == NULL) {
			c->next = NULL;
			c->used = 0;
		}
		c->size = size;
		p->tok = c;
	}
	memcpy(tok_data(p) + p->tok->used, data, n);
	p->tok->used += n;
	return 0;
}

static int tok_putc(struct imap_parser *p, unsigned char c)
{
	if (p->tok != NULL && p->tok->size - p->tok->used > 1) {
		tok_data(p)[p->tok->used++] = c;
		return 0;
	}
	return tok_append(p, &c, 1, 0);
}

/* Moves the token into the arena: returns a NUL-terminated copy (or the
 * adopted buffer itself) and empties the token. NULL when out of memory. */
static char *tok_take(struct imap_parser *p, size_t *len_r)
{
	size_t len = tok_len(p);
	char *s;
	if (len >= TOK_ADOPT) {
		s = (char *)tok_data(p);
		s[len] = '\0';
		arena_adopt(p, p->tok);
		p->tok = NULL;
	} else {
		s = arena_alloc(p, len + 1);
		if (s == NULL)
			return NULL;
		if (len > 0)
			memcpy(s, tok_data(p), len);
		s[len] = '\0';
		if (p->tok != NULL)
			p->tok->used = 0;
	}
	*len_r = len;
	return s;
}

static void tok_clear(struct imap_parser *p)
{
	if (p->tok != NULL && p->tok->size > TOK_KEEP) {
		free(p->tok);
		p->tok = NULL;
	} else if (p->tok != NULL) {
		p->tok->used = 0;
	}
}

/* ------------------------------------------------------------------ */
/* character classes (RFC 9051 section 9)                              */

/* ATOM-CHAR: any CHAR except atom-specials "(" ")" "{" SP CTL "%" "*"
 * DQUOTE "\" "]". */
static bool is_atom_char(int c)
{
	if (c <= 0x20 || c >= 0x7f)
		return false;
	return strchr("(){%*\"\\]", c) == NULL;
}

/* tag = 1*<any ASTRING-CHAR except "+">; ASTRING-CHAR = ATOM-CHAR / "]" */
static bool is_tag_char(int c)
{
	return c == ']' || (is_atom_char(c) && c != '+');
}

/* Bytes of a generic argument atom: ATOM-CHAR plus list-wildcards (LIST
 * patterns, "*" in sequence sets), "]" (astring) and "\" (flags). */
static bool is_arg_char(int c)
{
	return is_atom_char(c) || c == '%' || c == '*' || c == ']' || c == '\\';
}

static bool is_name_char(int c)
{
	return is_atom_char(c) && c != '[';
}

/* ------------------------------------------------------------------ */
/* errors                                                              */

static void fail_with(struct imap_parser *p, enum imap_parser_error_kind kind, const char *msg,
		      enum discard d, uint64_t lit)
{
	p->err.kind = kind;
	p->err.msg = msg;
	p->err.tag = p->cmd.tag;
	p->err.fatal = false;
	p->discard = d;
	p->discard_lit = lit;
	p->state = S_ERROR;
}

/* An error on the byte step() is looking at. */
static void fail(struct imap_parser *p, enum imap_parser_error_kind kind, const char *msg)
{
	fail_with(p, kind, msg, p->cur_c == '\n' ? D_TAIL : D_LINE, 0);
}

static void fail_fatal(struct imap_parser *p, const char *msg)
{
	fail_with(p, IMAP_PARSER_ERR_SYNTAX, msg, D_NONE, 0);
	p->err.fatal = true;
}

static void fail_nomem(struct imap_parser *p)
{
	fail_with(p, IMAP_PARSER_ERR_LIMIT, "Out of memory", D_NONE, 0);
	p->err.fatal = true;
}

/* An error about a literal whose announcement line was just read. */
static void fail_literal(struct imap_parser *p, enum imap_parser_error_kind kind, const char *msg)
{
	if (p->lit_nonsync)
		fail_with(p, kind, msg, D_LIT, p->lit_size);
	else
		fail_with(p, kind, msg, D_NONE, 0);
}

/* ------------------------------------------------------------------ */
/* line tail                                                           */

static void tail_reset(struct imap_parser *p)
{
	p->tail.st = T_NONE;
}

static void tail_push(struct imap_parser *p, unsigned char c)
{
	struct tail *t = &p->tail;
	if (c == '{') {
		t->st = T_BRACE;
		t->v = 0;
		t->overflow = false;
		t->plus = false;
	} else if (c >= '0' && c <= '9' && (t->st == T_BRACE || t->st == T_DIGITS)) {
		t->st = T_DIGITS;
		t->v = t->v * 10 + (uint64_t)(c - '0');
		if (t->v > UINT32_MAX) {
			t->overflow = true;
			t->v = UINT32_MAX; /* stays small: no wrap */
		}
	} else if (c == '+' && t->st == T_DIGITS) {
		t->st = T_PLUS;
		t->plus = true;
	} else if (c == '}' && (t->st == T_DIGITS || t->st == T_PLUS)) {
		t->st = T_CLOSE;
	} else if (c == '\r' && t->st == T_CLOSE) {
		t->st = T_CLOSE_CR;
	} else {
		t->st = T_NONE;
	}
}

static void tail_push_many(struct imap_parser *p, const unsigned char *d, size_t n)
{
	for (size_t i = 0; i < n; i++)
		tail_push(p, d[i]);
}

/* At the LF of a line: did it end with a non-synchronizing literal
 * announcement ["~"] "{" number "+}"? Returns 1 and *n_r, 0 when not (a
 * synchronizing one included), -1 when its size is over UINT32_MAX. */
static int tail_literal(const struct imap_parser *p, uint64_t *n_r)
{
	const struct tail *t = &p->tail;
	if ((t->st != T_CLOSE && t->st != T_CLOSE_CR) || !t->plus)
		return 0;
	if (t->overflow)
		return -1;
	*n_r = t->v;
	return 1;
}

/* ------------------------------------------------------------------ */
/* argument tree                                                       */

static struct node *node_add(struct imap_parser *p, enum imap_arg_type type)
{
	if (p->nargs >= p->lim.max_args) {
		fail(p, IMAP_PARSER_ERR_LIMIT, "Too many arguments");
		return NULL;
	}
	struct node *n = arena_alloc(p, sizeof(*n));
	if (n == NULL) {
		fail_nomem(p);
		return NULL;
	}
	memset(n, 0, sizeof(*n));
	n->a.type = type;
	n->parent = p->cur;
	p->nargs++;
	if (p->cur != NULL) {
		if (p->cur->tail != NULL)
			p->cur->tail->next = n;
		else
			p->cur->head = n;
		p->cur->tail = n;
		p->cur->a.count++;
	} else {
		if (p->top_tail != NULL)
			p->top_tail->next = n;
		else
			p->top_head = n;
		p->top_tail = n;
		p->top_count++;
	}
	return n;
}

/* Turns a linked child list into an array of struct imap_arg. */
static int make_array(struct imap_parser *p, const struct node *head, size_t count,
		      const struct imap_arg **arr_r)
{
	if (count == 0) {
		*arr_r = NULL;
		return 0;
	}
	struct imap_arg *arr = arena_alloc(p, count * sizeof(*arr));
	if (arr == NULL) {
		fail_nomem(p);
		return -1;
	}
	size_t i = 0;
	for (const struct node *n = head; n != NULL; n = n->next)
		arr[i++] = n->a;
	*arr_r = arr;
	return 0;
}

static void list_open(struct imap_parser *p)
{
	if (p->depth >= p->lim.max_depth) {
		fail(p, IMAP_PARSER_ERR_LIMIT, "Too deeply nested parentheses");
		return;
	}
	struct node *n = node_add(p, IMAP_ARG_LIST);
	if (n == NULL)
		return;
	p->cur = n;
	p->depth++;
	p->state = S_ARG_OPEN;
}

static void list_close(struct imap_parser *p)
{
	if (p->cur == NULL) {
		fail(p, IMAP_PARSER_ERR_SYNTAX, "Unexpected ')'");
		return;
	}
	struct node *n = p->cur;
	if (make_array(p, n->head, n->a.count, &n->a.list) < 0)
		return;
	p->cur = n->parent;
	p->depth--;
	p->state = S_AFTER_ARG;
}

/* A token-valued argument from the token buffer. */
static void tok_arg(struct imap_parser *p, enum imap_arg_type type)
{
	struct node *n = node_add(p, type);
	if (n == NULL)
		return;
	size_t len;
	char *s = tok_take(p, &len);
	if (s == NULL) {
		fail_nomem(p);
		return;
	}
	if (type == IMAP_ARG_ATOM && len == 3 && strcasecmp(s, "NIL") == 0)
		n->a.type = IMAP_ARG_NIL;
	n->a.str = s;
	n->a.len = len;
}

static void command_done(struct imap_parser *p)
{
	if (p->depth > 0) {
		fail(p, IMAP_PARSER_ERR_SYNTAX, "Missing ')'");
		return;
	}
	if (make_array(p, p->top_head, p->top_count, &p->cmd.args) < 0)
		return;
	p->cmd.argc = p->top_count;
	tail_reset(p);
	p->state = S_DONE;
}

/* ------------------------------------------------------------------ */
/* literals                                                            */

static void literal_done(struct imap_parser *p)
{
	struct node *n = node_add(p, p->lit_stream ? IMAP_ARG_STREAMED : IMAP_ARG_LITERAL);
	if (n == NULL)
		return;
	n->a.literal8 = p->lit_8;
	n->a.nonsync = p->lit_nonsync;
	if (p->lit_stream) {
		n->a.len = (size_t)p->lit_size;
	} else {
		size_t len;
		char *s = tok_take(p, &len);
		if (s == NULL) {
			fail_nomem(p);
			return;
		}
		n->a.str = s;
		n->a.len = len;
	}
	tail_reset(p);
	p->state = S_AFTER_ARG;
}

/* The announcement line ["~"] "{" number ["+"] "}" CRLF was read. */
static void literal_begin(struct imap_parser *p)
{
	uint64_t v = p->lit_size;
	tail_reset(p);
	if (p->lit_overflow || v > UINT32_MAX) {
		/* A synchronizing literal costs nothing: the client waits. A
		 * non-synchronizing one cannot be skipped: close. */
		if (!p->lit_nonsync)
			fail_literal(p, IMAP_PARSER_ERR_TOOBIG, "Literal too large");
		else
			fail_fatal(p, "Literal size out of range");
		return;
	}
	if (v > p->lim.max_literal_size || (p->lit_nonsync && v > p->lim.max_nonsync)) {
		/* RFC 7888 section 4: a too large {n+} is rejected, its bytes
		 * read and discarded. */
		fail_literal(p, IMAP_PARSER_ERR_TOOBIG, "Literal too large");
		return;
	}
	if (p->nargs >= p->lim.max_args) {
		fail_literal(p, IMAP_PARSER_ERR_LIMIT, "Too many arguments");
		return;
	}
	enum imap_literal_action act = IMAP_LITERAL_BUFFER;
	if (p->cb.literal_start != NULL) {
		size_t argc = p->top_count - (p->cur != NULL ? 1 : 0);
		act = p->cb.literal_start(p->cb.ctx, p->cmd.name, argc, v, !p->lit_nonsync, p->lit_8);
	}
	if (act == IMAP_LITERAL_BUFFER && v > p->lim.max_literal_memory - p->lit_mem)
		act = IMAP_LITERAL_REJECT;
	if (act != IMAP_LITERAL_BUFFER && act != IMAP_LITERAL_STREAM) {
		fail_literal(p, IMAP_PARSER_ERR_TOOBIG, "Literal too large");
		return;
	}
	p->lit_stream = act == IMAP_LITERAL_STREAM;
	if (!p->lit_stream)
		p->lit_mem += (size_t)v;
	p->lit_remaining = v;
	if (p->tok != NULL)
		p->tok->used = 0;
	if (!p->lit_nonsync) {
		p->lit.size = v;
		p->lit.literal8 = p->lit_8;
		p->lit.streamed = p->lit_stream;
		p->state = S_LITERAL;
		return;
	}
	p->state = S_LITDATA;
	if (v == 0)
		literal_done(p);
}

/* Reads literal bytes; returns how many were used. Bytes before a NUL in a
 * non-literal8 literal are delivered first, so the outcome (which error,
 * which bytes reached literal_data()) does not depend on the slicing. */
static size_t literal_data(struct imap_parser *p, const unsigned char *d, size_t len)
{
	size_t n = len < p->lit_remaining ? len : (size_t)p->lit_remaining;
	const unsigned char *nul = p->lit_8 ? NULL : memchr(d, '\0', n);
	size_t ok = nul != NULL ? (size_t)(nul - d) : n;

	p->lit_remaining -= ok;
	if (ok > 0 && p->lit_stream) {
		if (p->cb.literal_data != NULL && p->cb.literal_data(p->cb.ctx, d, ok) < 0) {
			fail_with(p, IMAP_PARSER_ERR_CALLBACK, "Failed to store literal", D_LIT,
				  p->lit_remaining);
			return ok;
		}
	} else if (ok > 0 && tok_append(p, d, ok, p->lit_size) < 0) {
		fail_nomem(p);
		return ok;
	}
	if (nul != NULL) {
		/* RFC 3516 4.3 / RFC 9051 9 (CHAR8): NUL only in literal8 */
		p->lit_remaining--;
		fail_with(p, IMAP_PARSER_ERR_SYNTAX, "NUL byte in literal (use literal8)", D_LIT,
			  p->lit_remaining);
		return ok + 1;
	}
	if (p->lit_remaining == 0)
		literal_done(p);
	return ok;
}

/* ------------------------------------------------------------------ */
/* the command line state machine                                      */

/* The command name (or the name after "UID") ended on byte c. */
static void name_done(struct imap_parser *p, int c)
{
	size_t len;
	if (tok_len(p) == 0) {
		fail(p, IMAP_PARSER_ERR_SYNTAX, "Missing command name");
		return;
	}
	char *s = tok_take(p, &len);
	if (s == NULL) {
		fail_nomem(p);
		return;
	}
	for (size_t i = 0; i < len; i++)
		if (s[i] >= 'a' && s[i] <= 'z')
			s[i] = (char)(s[i] - 'a' + 'A');
	if (p->state == S_NAME && strcmp(s, "UID") == 0) {
		if (c != ' ') {
			fail(p, IMAP_PARSER_ERR_SYNTAX, "Missing command after UID");
			return;
		}
		p->cmd.uid = true;
		p->state = S_UIDNAME;
		return;
	}
	p->cmd.name = s;
	if (c == ' ')
		p->state = S_ARG;
	else if (c == '\r')
		p->state = S_CR;
	else
		command_done(p);
}

static void step(struct imap_parser *p, int c);

/* The line ended inside an atom's "[": it was no FETCH section but an
 * astring that holds '[' (RFC 3501 9: ASTRING-CHAR is any ATOM-CHAR, and
 * '[' is one; a mailbox may be called "a[b"). Read the bytes after that
 * '[' again with '[' as a plain atom byte, for the rest of the command,
 * then the line end. */
static void bracket_unclosed(struct imap_parser *p, int c)
{
	size_t from = p->bracket_at + 1, n = tok_len(p) - from;
	char *again = malloc(n + 1);
	if (again == NULL) {
		fail_nomem(p);
		return;
	}
	memcpy(again, tok_data(p) + from, n);
	p->tok->used = from;
	p->plain_brackets = true;
	p->bdepth = 0;
	p->state = S_ATOM;
	for (size_t i = 0; i < n && p->state != S_ERROR; i++)
		step(p, (unsigned char)again[i]);
	free(again);
	if (p->state != S_ERROR)
		step(p, c);
}

static void step(struct imap_parser *p, int c)
{
	switch (p->state) {
	case S_TAG:
		if (is_tag_char(c)) {
			if (tok_len(p) >= p->lim.max_tag) {
				fail(p, IMAP_PARSER_ERR_LIMIT, "Tag too long");
				return;
			}
			if (tok_putc(p, (unsigned char)c) < 0)
				fail_nomem(p);
			return;
		}
		if (tok_len(p) == 0 && (c == '\r' || c == '\n')) {
			/* empty line between commands: ignored */
			if (c == '\r') {
				p->state = S_EMPTY_CR;
			} else {
				p->line_len = 0;
				tail_reset(p);
			}
			return;
		}
		if (tok_len(p) == 0 || (c != ' ' && c != '\r' && c != '\n')) {
			fail(p, IMAP_PARSER_ERR_SYNTAX,
			     tok_len(p) == 0 && c == ' ' ? "Missing tag" : "Invalid character in tag");
			return;
		}
		{
			size_t len;
			char *t = tok_take(p, &len);
			if (t == NULL) {
				fail_nomem(p);
				return;
			}
			p->cmd.tag = t;
		}
		if (c == ' ')
			p->state = S_NAME;
		else
			fail(p, IMAP_PARSER_ERR_SYNTAX, "Missing command name");
		return;
	case S_EMPTY_CR:
		if (c != '\n') {
			fail(p, IMAP_PARSER_ERR_SYNTAX, "CR not followed by LF");
			return;
		}
		p->line_len = 0;
		tail_reset(p);
		p->state = S_TAG;
		return;
	case S_NAME:
	case S_UIDNAME:
		if (is_name_char(c)) {
			if (tok_len(p) >= MAX_NAME) {
				fail(p, IMAP_PARSER_ERR_SYNTAX, "Command name too long");
				return;
			}
			if (tok_putc(p, (unsigned char)c) < 0)
				fail_nomem(p);
			return;
		}
		if (c == ' ' || c == '\r' || c == '\n') {
			name_done(p, c);
			return;
		}
		fail(p, IMAP_PARSER_ERR_SYNTAX, "Invalid character in command name");
		return;
	case S_ARG:
	case S_ARG_OPEN:
		if (c == '(') {
			list_open(p);
		} else if (c == ')' && p->state == S_ARG_OPEN) {
			list_close(p);
		} else if (c == '"') {
			p->state = S_QUOTED;
		} else if (c == '{' || c == '~') {
			p->lit_size = 0;
			p->lit_digits = 0;
			p->lit_overflow = false;
			p->lit_nonsync = false;
			p->lit_8 = c == '~';
			p->state = c == '~' ? S_TILDE : S_LITNUM;
		} else if (is_arg_char(c) || c == '[') {
			if (tok_putc(p, (unsigned char)c) < 0) {
				fail_nomem(p);
				return;
			}
			bool section = c == '[' && !p->plain_brackets;
			p->bdepth = section ? 1 : 0;
			p->bracket_at = 0;
			p->state = section ? S_BRACKET : S_ATOM;
		} else if (c == ' ') {
			fail(p, IMAP_PARSER_ERR_SYNTAX, "Unexpected space");
		} else if (c == '\r' || c == '\n') {
			fail(p, IMAP_PARSER_ERR_SYNTAX, "Missing argument");
		} else {
			fail(p, IMAP_PARSER_ERR_SYNTAX, "Invalid character in argument");
		}
		return;
	case S_AFTER_ARG:
		if (c == ' ')
			p->state = S_ARG;
		else if (c == ')')
			list_close(p);
		else if (c == '\r')
			p->state = S_CR;
		else if (c == '\n')
			command_done(p);
		else
			fail(p, IMAP_PARSER_ERR_SYNTAX, "Missing space between arguments");
		return;
	case S_TILDE:
		if (c == '{') {
			p->state = S_LITNUM;
			return;
		}
		/* "~" was the first byte of an atom */
		if (tok_putc(p, '~') < 0) {
			fail_nomem(p);
			return;
		}
		p->state = S_ATOM;
		step(p, c);
		return;
	case S_ATOM:
		if (is_arg_char(c) || c == '[') {
			if (tok_putc(p, (unsigned char)c) < 0) {
				fail_nomem(p);
				return;
			}
			if (c == '[' && !p->plain_brackets) {
				p->bdepth = 1;
				p->bracket_at = tok_len(p) - 1;
				p->state = S_BRACKET;
			}
			return;
		}
		if (c != ' ' && c != ')' && c != '\r' && c != '\n') {
			fail(p, IMAP_PARSER_ERR_SYNTAX, "Invalid character in atom");
			return;
		}
		tok_arg(p, IMAP_ARG_ATOM);
		if (p->state == S_ERROR)
			return;
		p->state = S_AFTER_ARG;
		step(p, c);
		return;
	case S_BRACKET:
		if (c == '\r' || c == '\n') {
			bracket_unclosed(p, c);
			return;
		}
		if ((c < 0x20 && c != '\t') || c >= 0x7f) {
			fail(p, IMAP_PARSER_ERR_SYNTAX, "Invalid character in atom");
			return;
		}
		if (c == '[')
			p->bdepth++;
		else if (c == ']' && --p->bdepth == 0)
			p->state = S_ATOM;
		else if (c == '"')
			p->state = S_BRACKET_Q;
		if (tok_putc(p, (unsigned char)c) < 0)
			fail_nomem(p);
		return;
	case S_BRACKET_Q:
	case S_QUOTED:
		if (c == '\r' || c == '\n') {
			fail(p, IMAP_PARSER_ERR_SYNTAX, "Unterminated quoted string");
			return;
		}
		if (c == '\\') {
			p->state = p->state == S_QUOTED ? S_QUOTED_ESC : S_BRACKET_QESC;
			if (p->state == S_QUOTED_ESC)
				return;
		} else if (c == '"') {
			if (p->state == S_QUOTED) {
				tok_arg(p, IMAP_ARG_STRING);
				if (p->state != S_ERROR)
					p->state = S_AFTER_ARG;
				return;
			}
			p->state = S_BRACKET;
		}
		/* QUOTED-CHAR: any TEXT-CHAR but the specials; RFC 9051 adds
		 * UTF-8 (utf8-quoted), which is not checked here. */
		if (tok_putc(p, (unsigned char)c) < 0)
			fail_nomem(p);
		return;
	case S_BRACKET_QESC:
	case S_QUOTED_ESC:
		/* quoted-specials = DQUOTE / "\" are the only escapes */
		if (c != '"' && c != '\\') {
			fail(p, IMAP_PARSER_ERR_SYNTAX, "Invalid escape in quoted string");
			return;
		}
		p->state = p->state == S_QUOTED_ESC ? S_QUOTED : S_BRACKET_Q;
		if (tok_putc(p, (unsigned char)c) < 0)
			fail_nomem(p);
		return;
	case S_LITNUM:
		if (c >= '0' && c <= '9') {
			unsigned d = (unsigned)(c - '0');
			if (p->lit_size > (UINT64_MAX - d) / 10)
				p->lit_overflow = true;
			else
				p->lit_size = p->lit_size * 10 + d;
			p->lit_digits++;
			return;
		}
		if (p->lit_digits > 0 && c == '+') {
			p->lit_nonsync = true;
			p->state = S_LITPLUS;
		} else if (p->lit_digits > 0 && c == '}') {
			p->state = S_LITEND;
		} else {
			fail(p, IMAP_PARSER_ERR_SYNTAX, "Invalid literal size");
		}
		return;
	case S_LITPLUS:
		if (c == '}')
			p->state = S_LITEND;
		else
			fail(p, IMAP_PARSER_ERR_SYNTAX, "Invalid literal size");
		return;
	case S_LITEND:
		if (c == '\r')
			p->state = S_LITCR;
		else if (c == '\n')
			literal_begin(p);
		else
			fail(p, IMAP_PARSER_ERR_SYNTAX, "Literal must end the line");
		return;
	case S_LITCR:
	case S_CR:
		if (c != '\n')
			fail(p, IMAP_PARSER_ERR_SYNTAX, "CR not followed by LF");
		else if (p->state == S_LITCR)
			literal_begin(p);
		else
			command_done(p);
		return;
	default:
		/* not reached: the other states never call step() */
		fail_fatal(p, "Internal parser error");
		return;
	}
}

/* ------------------------------------------------------------------ */
/* discarding                                                          */

/* Consumes discarded bytes while the parser is in a discard state; returns
 * how many. May leave the parser in S_TAG, or S_ERROR (fatal). */
static size_t discard_step(struct imap_parser *p, const unsigned char *d, size_t len)
{
	if (p->state == S_DISCARD_LIT) {
		size_t n = len < p->discard_lit ? len : (size_t)p->discard_lit;
		p->discard_lit -= n;
		if (p->discard_lit == 0) {
			p->state = S_DISCARD;
			tail_reset(p);
		}
		return n;
	}
	const unsigned char *lf = memchr(d, '\n', len);
	size_t n = lf == NULL ? len : (size_t)(lf - d);
	if (!p->discard_plain)
		tail_push_many(p, d, n);
	if (lf == NULL)
		return len;
	uint64_t lit = 0;
	int r = p->discard_plain ? 0 : tail_literal(p, &lit);
	tail_reset(p);
	p->discard_plain = false;
	if (r < 0) {
		fail_fatal(p, "Literal size out of range");
	} else if (r > 0 && lit > 0) {
		p->discard_lit = lit;
		p->state = S_DISCARD_LIT;
	} else if (r == 0) {
		p->state = S_TAG;
	}
	return n + 1;
}

static bool discarding(const struct imap_parser *p)
{
	return p->state == S_DISCARD || p->state == S_DISCARD_LIT;
}

/* ------------------------------------------------------------------ */
/* public API                                                          */

struct imap_parser *imap_parser_new(const struct imap_parser_limits *limits,
				    const struct imap_parser_callbacks *cb)
{
	struct imap_parser *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	struct imap_parser_limits l = { 0 };
	if (limits != NULL)
		l = *limits;
	if (l.max_line == 0)
		l.max_line = IMAP_PARSER_MAX_LINE;
	if (l.max_literal_memory == 0)
		l.max_literal_memory = IMAP_PARSER_MAX_LITERAL_MEMORY;
	if (l.max_literal_size == 0 || l.max_literal_size > UINT32_MAX)
		l.max_literal_size = IMAP_PARSER_MAX_LITERAL_SIZE;
	if (l.max_nonsync == 0 || l.max_nonsync > l.max_literal_size)
		l.max_nonsync = l.max_literal_size;
	if (l.max_depth == 0)
		l.max_depth = IMAP_PARSER_MAX_DEPTH;
	if (l.max_depth > IMAP_PARSER_HARD_MAX_DEPTH)
		l.max_depth = IMAP_PARSER_HARD_MAX_DEPTH;
	if (l.max_args == 0)
		l.max_args = IMAP_PARSER_MAX_ARGS;
	if (l.max_tag == 0)
		l.max_tag = IMAP_PARSER_MAX_TAG;
	p->lim = l;
	if (cb != NULL)
		p->cb = *cb;
	p->state = S_TAG;
	p->cur_c = -1;
	return p;
}

void imap_parser_free(struct imap_parser **pp)
{
	struct imap_parser *p = *pp;
	if (p == NULL)
		return;
	p->keep = NULL;
	arena_clear(p);
	free(p->tok);
	free(p);
	*pp = NULL;
}

static enum imap_parser_result result_of(const struct imap_parser *p)
{
	switch (p->state) {
	case S_DONE:
		return IMAP_PARSER_DONE;
	case S_ERROR:
		return IMAP_PARSER_ERROR;
	case S_LITERAL:
		return IMAP_PARSER_LITERAL;
	default:
		return IMAP_PARSER_NEED_MORE;
	}
}

enum imap_parser_result imap_parser_feed(struct imap_parser *p, const void *data, size_t len,
					 size_t *consumed_r)
{
	const unsigned char *d = data;
	size_t i = 0;

	*consumed_r = 0;
	if (p->state == S_DONE || p->state == S_ERROR)
		return result_of(p);
	if (p->state == S_LITERAL) {
		/* the server sent its "+": the literal's bytes follow */
		p->state = S_LITDATA;
		if (p->lit_remaining == 0)
			literal_done(p);
	} else if (p->state == S_LINE_DONE) {
		tok_clear(p);
		p->line_len = 0;
		tail_reset(p);
		p->state = S_TAG;
	} else if (p->state == S_LINE || p->state == S_LINE_CR) {
		fail_fatal(p, "Command read while a line is pending");
	}
	while (i < len && result_of(p) == IMAP_PARSER_NEED_MORE) {
		if (discarding(p)) {
			i += discard_step(p, d + i, len - i);
			continue;
		}
		if (p->state == S_LITDATA) {
			i += literal_data(p, d + i, len - i);
			continue;
		}
		int c = d[i++];
		if (c != '\n')
			tail_push(p, (unsigned char)c);
		p->cur_c = c;
		if (++p->line_len > p->lim.max_line)
			fail(p, IMAP_PARSER_ERR_LIMIT, "Command line too long");
		else if (c == '\0')
			fail(p, IMAP_PARSER_ERR_SYNTAX, "NUL byte in command line");
		else
			step(p, c);
		p->cur_c = -1;
	}
	*consumed_r = i;
	return result_of(p);
}

const struct imap_command *imap_parser_command(const struct imap_parser *p)
{
	return p->state == S_DONE ? &p->cmd : NULL;
}

const struct imap_parser_error *imap_parser_error(const struct imap_parser *p)
{
	return p->state == S_ERROR ? &p->err : NULL;
}

const struct imap_parser_literal *imap_parser_literal(const struct imap_parser *p)
{
	return p->state == S_LITERAL ? &p->lit : NULL;
}

bool imap_parser_idle(const struct imap_parser *p)
{
	return (p->state == S_TAG && tok_len(p) == 0) || p->state == S_LINE_DONE;
}

void imap_parser_reset(struct imap_parser *p)
{
	enum discard d = D_NONE;
	uint64_t lit = 0;

	switch (p->state) {
	case S_ERROR:
		if (p->err.fatal) {
			/* stays in error: the connection must be closed */
			p->err.tag = NULL;
			arena_clear(p);
			tok_clear(p);
			return;
		}
		d = p->discard;
		lit = p->discard_lit;
		break;
	case S_DONE:
	case S_LITERAL: /* refused: the client sends nothing more */
	case S_DISCARD:
	case S_DISCARD_LIT:
	case S_LINE_DONE:
		break;
	case S_TAG:
		d = tok_len(p) == 0 ? D_NONE : D_LINE;
		break;
	case S_EMPTY_CR:
		break;
	case S_LITDATA:
		d = D_LIT;
		lit = p->lit_remaining;
		break;
	default:
		d = D_LINE;
		break;
	}

	arena_clear(p);
	tok_clear(p);
	memset(&p->cmd, 0, sizeof(p->cmd));
	p->top_head = p->top_tail = NULL;
	p->top_count = 0;
	p->cur = NULL;
	p->depth = 0;
	p->nargs = 0;
	p->line_len = 0;
	p->lit_mem = 0;
	p->bdepth = 0;
	p->bracket_at = 0;
	p->plain_brackets = false;
	p->lit_remaining = 0;

	if (p->state == S_DISCARD || p->state == S_DISCARD_LIT)
		return;
	switch (d) {
	case D_NONE:
		p->state = S_TAG;
		p->discard_plain = false;
		tail_reset(p);
		break;
	case D_LINE:
		p->state = S_DISCARD;
		break;
	case D_LIT:
		p->state = S_DISCARD_LIT;
		p->discard_lit = lit;
		if (lit == 0) {
			p->state = S_DISCARD;
			tail_reset(p);
		}
		break;
	case D_TAIL: {
		uint64_t n = 0;
		int r = tail_literal(p, &n);
		tail_reset(p);
		p->state = S_TAG;
		if (r < 0) {
			fail_fatal(p, "Literal size out of range");
		} else if (r > 0 && n > 0) {
			p->state = S_DISCARD_LIT;
			p->discard_lit = n;
		} else if (r > 0) {
			p->state = S_DISCARD;
		}
		break;
	}
	}
}

enum imap_parser_result imap_parser_read_line(struct imap_parser *p, const void *data, size_t len,
					      size_t *consumed_r, const char **line_r,
					      size_t *line_len_r)
{
	const unsigned char *d = data;
	size_t i = 0;

	*consumed_r = 0;
	if (p->state == S_ERROR)
		return IMAP_PARSER_ERROR;
	if (p->state == S_LINE_DONE) {
		tok_clear(p);
		p->line_len = 0;
		p->state = S_TAG;
	}
	if (!discarding(p) && p->state != S_LINE && p->state != S_LINE_CR) {
		if (!imap_parser_idle(p)) {
			fail_fatal(p, "Line read while a command is pending");
			return IMAP_PARSER_ERROR;
		}
		p->state = S_LINE;
		p->line_len = 0;
	}
	while (i < len) {
		if (discarding(p)) {
			i += discard_step(p, d + i, len - i);
			if (p->state == S_ERROR)
				break;
			if (p->state == S_TAG) {
				p->state = S_LINE;
				p->line_len = 0;
			}
			continue;
		}
		int c = d[i++];
		if (c == '\n') {
			if (tok_putc(p, '\0') < 0) {
				fail_nomem(p);
				break;
			}
			p->tok->used--;
			*line_r = (const char *)tok_data(p);
			*line_len_r = p->tok->used;
			p->state = S_LINE_DONE;
			*consumed_r = i;
			return IMAP_PARSER_DONE;
		}
		if (p->state == S_LINE_CR) {
			fail_with(p, IMAP_PARSER_ERR_SYNTAX, "CR not followed by LF", D_LINE, 0);
		} else if (c == '\r') {
			p->state = S_LINE_CR;
			continue;
		} else if (c == '\0') {
			fail_with(p, IMAP_PARSER_ERR_SYNTAX, "NUL byte in line", D_LINE, 0);
		} else if (++p->line_len > p->lim.max_line) {
			fail_with(p, IMAP_PARSER_ERR_LIMIT, "Line too long", D_LINE, 0);
		} else if (tok_putc(p, (unsigned char)c) < 0) {
			fail_nomem(p);
		}
		if (p->state == S_ERROR) {
			p->discard_plain = true;
			break;
		}
	}
	*consumed_r = i;
	return p->state == S_ERROR ? IMAP_PARSER_ERROR : IMAP_PARSER_NEED_MORE;
}

/* ------------------------------------------------------------------ */
/* argument helpers                                                    */

static bool is_astring_atom(const struct imap_arg *a)
{
	for (size_t i = 0; i < a->len; i++) {
		int c = (unsigned char)a->str[i];
		if (!is_atom_char(c) && c != ']')
			return false;
	}
	return a->len > 0;
}

bool imap_parser_arg_string(const struct imap_arg *arg, const char **str_r, size_t *len_r)
{
	if (arg->type != IMAP_ARG_STRING && arg->type != IMAP_ARG_LITERAL)
		return false;
	if (memchr(arg->str, '\0', arg->len) != NULL)
		return false;
	*str_r = arg->str;
	*len_r = arg->len;
	return true;
}

bool imap_parser_arg_astring(const struct imap_arg *arg, const char **str_r, size_t *len_r)
{
	if (arg->type == IMAP_ARG_ATOM || arg->type == IMAP_ARG_NIL) {
		if (!is_astring_atom(arg))
			return false;
		*str_r = arg->str;
		*len_r = arg->len;
		return true;
	}
	return imap_parser_arg_string(arg, str_r, len_r);
}

bool imap_parser_arg_nstring(const struct imap_arg *arg, const char **str_r, size_t *len_r)
{
	if (arg->type == IMAP_ARG_NIL) {
		*str_r = NULL;
		*len_r = 0;
		return true;
	}
	return imap_parser_arg_string(arg, str_r, len_r);
}

bool imap_parser_arg_atom_eq(const struct imap_arg *arg, const char *s)
{
	if (arg->type != IMAP_ARG_ATOM && arg->type != IMAP_ARG_NIL)
		return false;
	return strlen(s) == arg->len && strncasecmp(arg->str, s, arg->len) == 0;
}

static bool arg_digits(const struct imap_arg *arg, size_t maxlen, uint64_t max, uint64_t *n_r)
{
	if (arg->type != IMAP_ARG_ATOM || arg->len == 0 || arg->len > maxlen)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < arg->len; i++) {
		char c = arg->str[i];
		if (c < '0' || c > '9')
			return false;
		unsigned d = (unsigned)(c - '0');
		if (v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*n_r = v;
	return true;
}

bool imap_parser_arg_number(const struct imap_arg *arg, uint32_t *n_r)
{
	uint64_t v;
	if (!arg_digits(arg, 10, UINT32_MAX, &v))
		return false;
	*n_r = (uint32_t)v;
	return true;
}

bool imap_parser_arg_number64(const struct imap_arg *arg, uint64_t *n_r)
{
	return arg_digits(arg, 19, INT64_MAX, n_r);
}
