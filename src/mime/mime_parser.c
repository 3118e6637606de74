/*
 * mime_parser.c: one streaming pass over a message that builds its MIME tree.
 *
 * Design note
 * -----------
 * The parser is a line machine. mime_parser_feed() cuts whatever slice it is
 * given at LF bytes (memchr) and calls process_line() once per complete line,
 * so any slicing of the input yields the same calls. Of each line it keeps
 * only what it needs:
 *   - in a header: up to MIME_MAX_FIELD_SIZE bytes (field values);
 *   - in a body: nothing, except for a line starting with '-' while a
 *     multipart is open: its first LINE_PREFIX bytes, enough to compare it
 *     with every open boundary, plus a flag telling whether the bytes past
 *     that prefix were all whitespace (transport padding).
 * So memory is bounded by the limits in mime.h whatever the input is.
 *
 * Counters. The parser counts bytes, LF bytes and bare LF bytes (LF not
 * preceded by CR) since the start of the message, and snapshots them when a
 * line starts. A part's size, virtual size (bare LF as CRLF) and line count
 * are differences of snapshots, so a part never needs to see its bytes again.
 *
 * States. `mode` is HEADER (reading the header of `cur`) or BODY (reading
 * the body of `cur`). The open multiparts' boundaries are a stack, innermost
 * last. A line that is a delimiter of an open multipart (RFC 2046 5.1.1:
 * "--" boundary ["--"] *LWSP, compared with the innermost first so that an
 * inner boundary that extends an outer one wins) closes every part opened
 * inside that multipart; the line ending before the delimiter belongs to the
 * delimiter, so those parts end before it. A delimiter opens the next body
 * part; a close-delimiter pops the boundary and the multipart's epilogue
 * follows. Delimiters are recognised in a part's header too (a header cut
 * short by a boundary ends there, with an empty body).
 *
 * Invariants: cur is always an open part; every multipart on the boundary
 * stack is cur or an ancestor of cur; part depth <= MIME_MAX_DEPTH; a part's
 * body_offset >= header_offset and its end >= body_offset.
 *
 * Degrading: a multipart or message part past MIME_MAX_DEPTH, or a multipart
 * with no usable boundary, is a leaf with MIME_PART_OPAQUE; past
 * MIME_MAX_PARTS boundaries are ignored from then on. Each sets a tree flag.
 */
#include <stdlib.h>
#include <string.h>

#include "mime/mime_private.h"

/* A body line is kept up to this many bytes to compare it with boundaries. */
#define LINE_PREFIX (MIME_MAX_BOUNDARY_LEN + 8)

/* Internal field table: names of the fields a part keeps. */
static const char *const field_names[MIME_FIELD_COUNT] = {
	[MIME_FIELD_CONTENT_TYPE] = "Content-Type",
	[MIME_FIELD_CONTENT_TRANSFER_ENCODING] = "Content-Transfer-Encoding",
	[MIME_FIELD_CONTENT_ID] = "Content-ID",
	[MIME_FIELD_CONTENT_DESCRIPTION] = "Content-Description",
	[MIME_FIELD_CONTENT_DISPOSITION] = "Content-Disposition",
	[MIME_FIELD_CONTENT_LANGUAGE] = "Content-Language",
	[MIME_FIELD_CONTENT_LOCATION] = "Content-Location",
	[MIME_FIELD_CONTENT_MD5] = "Content-MD5",
	[MIME_FIELD_DATE] = "Date",
	[MIME_FIELD_SUBJECT] = "Subject",
	[MIME_FIELD_FROM] = "From",
	[MIME_FIELD_SENDER] = "Sender",
	[MIME_FIELD_REPLY_TO] = "Reply-To",
	[MIME_FIELD_TO] = "To",
	[MIME_FIELD_CC] = "Cc",
	[MIME_FIELD_BCC] = "Bcc",
	[MIME_FIELD_IN_REPLY_TO] = "In-Reply-To",
	[MIME_FIELD_MESSAGE_ID] = "Message-ID",
};

enum parse_mode { MODE_HEADER, MODE_BODY };

struct boundary {
	const char *str; /* arena */
	size_t len;
	struct mime_part *mp;
};

/* Counters at a position; differences give sizes. */
struct mark {
	uint64_t offset, lf, bare_lf;
};

/* Per open part: marks that the public struct does not carry. */
struct part_marks {
	struct mark header_start, body_start;
	unsigned int field_count;
};

struct mime_parser {
	struct mime_parser_settings set;
	struct mime_tree *tree;
	bool failed;

	/* running counters */
	struct mark now;
	unsigned char last_byte; /* last byte of the current line so far */

	/* the current line */
	bool in_line;            /* some bytes of a line have been seen */
	struct mark line_start;  /* counters at its first byte */
	uint64_t line_total;     /* physical bytes so far, LF excluded */
	struct mime_buf line;    /* its kept prefix */
	size_t line_keep;        /* how many bytes of it to keep */
	bool line_overflow_nonws; /* a non-WSP byte beyond the kept prefix */
	unsigned int prev_term;  /* line ending length of the previous line */

	enum parse_mode mode;
	struct mime_part *cur;
	struct part_marks marks[MIME_MAX_DEPTH + 2]; /* indexed by part depth */

	/* header field being assembled (raw, folds kept) */
	struct mime_buf field;
	bool field_active;
	bool field_truncated;
	struct mark field_start;
	size_t kept_total;

	struct boundary bstack[MIME_MAX_DEPTH + 1];
	unsigned int bdepth;
	bool boundaries_off;
};


static struct mime_part *part_new(struct mime_parser *p, struct mime_part *parent,
				  const struct mark *header_start)
{
	struct mime_part *part = mime_arena_alloc(p->tree->arena, sizeof(*part));
	if (part == NULL) {
		p->failed = true;
		return NULL;
	}
	part->parent = parent;
	part->depth = parent == NULL ? 0 : parent->depth + 1;
	part->header_offset = header_start->offset;
	part->body_offset = header_start->offset;
	if (parent != NULL) {
		struct mime_part **tail = &parent->children;
		while (*tail != NULL)
			tail = &(*tail)->next;
		*tail = part;
	}
	struct part_marks *m = &p->marks[part->depth];
	memset(m, 0, sizeof(*m));
	m->header_start = *header_start;
	m->body_start = *header_start;
	p->tree->part_count++;
	return part;
}

struct mime_parser *mime_parser_new(const struct mime_parser_settings *set)
{
	struct mime_parser *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	if (set != NULL)
		p->set = *set;
	p->tree = calloc(1, sizeof(*p->tree));
	if (p->tree == NULL)
		goto fail;
	p->tree->arena = mime_arena_new();
	if (p->tree->arena == NULL)
		goto fail;
	p->tree->root = part_new(p, NULL, &p->now);
	if (p->tree->root == NULL)
		goto fail;
	p->tree->root->flags |= MIME_PART_MESSAGE_HEADER;
	p->cur = p->tree->root;
	p->mode = MODE_HEADER;
	return p;
fail:
	mime_parser_free(&p);
	return NULL;
}

void mime_parser_free(struct mime_parser **pp)
{
	struct mime_parser *p = *pp;
	if (p == NULL)
		return;
	if (p->tree != NULL)
		mime_tree_free(&p->tree);
	mime_buf_free(&p->line);
	mime_buf_free(&p->field);
	free(p);
	*pp = NULL;
}

void mime_tree_free(struct mime_tree **tree)
{
	if (*tree == NULL)
		return;
	mime_arena_free(&(*tree)->arena);
	free(*tree);
	*tree = NULL;
}

/* ------------------------------------------------------------------ */
/* header fields                                                       */

static int field_lookup(const char *name, size_t len, bool message_header)
{
	unsigned int n = message_header ? MIME_FIELD_COUNT : MIME_FIELD_DATE;
	for (unsigned int i = 0; i < n; i++)
		if (mime_ascii_ieq(name, len, field_names[i]))
			return (int)i;
	return -1;
}

/* The field in p->field is complete: call back and keep it if wanted. */
static void field_dispatch(struct mime_parser *p, uint64_t end_offset)
{
	if (!p->field_active)
		return;
	p->field_active = false;
	struct mime_part *part = p->cur;
	const char *f = p->field.data != NULL ? p->field.data : "";
	size_t flen = p->field.len;
	const char *colon = memchr(f, ':', flen);
	if (colon == NULL || p->field.failed) {
		/* not a field (RFC 5322 2.2 needs a colon): part of the
		 * header's bytes, but nothing to interpret */
		return;
	}
	size_t name_len = (size_t)(colon - f);
	/* obs-optional (RFC 5322 4.5.x): WSP allowed before the colon */
	while (name_len > 0 && (f[name_len - 1] == ' ' || f[name_len - 1] == '\t'))
		name_len--;
	const char *value = colon + 1;
	size_t value_len = flen - (size_t)(value - f);
	while (value_len > 0 && (*value == ' ' || *value == '\t')) {
		value++;
		value_len--;
	}
	if (p->set.header_cb != NULL) {
		struct mime_header_field hf = {
			.name = f,
			.name_len = name_len,
			.value = value,
			.value_len = value_len,
			.truncated = p->field_truncated,
			.offset = p->field_start.offset,
			.size = end_offset - p->field_start.offset,
		};
		p->set.header_cb(p->set.ctx, part, &hf);
	}
	/* A field that occurs twice: the first one wins, for every field we
	 * keep. RFC 2045 and RFC 2183 allow each Content-* field once and say
	 * nothing about a message with two (RFC 5322 3.6 allows Date, From,
	 * Subject, ... once too). Thunderbird's libmime reads the first
	 * (MimeHeaders_get without all_p), and so does Dovecot for
	 * Content-Type, Content-Transfer-Encoding (in BODYSTRUCTURE) and a
	 * Content-Disposition with parameters; for a first Content-Disposition
	 * without parameters Dovecot takes a later one (message-part-data.c
	 * tests content_disposition_params == NULL). We keep one rule, the
	 * first, so that BODYSTRUCTURE and BINARY agree; the difference is
	 * DISP-FIRST in tests/e2e/mime_known_deviations.txt. */
	int idx = field_lookup(f, name_len, (part->flags & MIME_PART_MESSAGE_HEADER) != 0);
	if (idx < 0 || part->field[idx] != NULL)
		return; /* uninteresting, or not the first occurrence */
	if (p->field_truncated) {
		part->flags |= MIME_PART_HEADER_TRUNCATED;
		p->tree->flags |= MIME_TREE_FIELD_TRUNCATED;
	}
	if (p->kept_total + value_len > MIME_MAX_KEPT_TOTAL) {
		part->flags |= MIME_PART_HEADER_TRUNCATED;
		p->tree->flags |= MIME_TREE_FIELD_TRUNCATED;
		return;
	}
	struct mime_buf tmp = { 0 };
	mime_unfold(&tmp, value, value_len, true);
	if (tmp.failed) {
		p->failed = true;
		mime_buf_free(&tmp);
		return;
	}
	char *v = mime_arena_strndup(p->tree->arena, tmp.data != NULL ? tmp.data : "", tmp.len);
	if (v == NULL)
		p->failed = true;
	else {
		part->field[idx] = v;
		part->field_len[idx] = tmp.len;
		p->kept_total += tmp.len;
	}
	mime_buf_free(&tmp);
}

static void field_append(struct mime_parser *p, const char *data, size_t len, bool truncated)
{
	size_t room = MIME_MAX_FIELD_SIZE - p->field.len;
	if (len > room) {
		len = room;
		truncated = true;
	}
	mime_buf_append(&p->field, data, len);
	if (truncated)
		p->field_truncated = true;
}

/* ------------------------------------------------------------------ */
/* part boundaries in the byte stream                                  */

static bool ieq_token(const char *s, const char *lit)
{
	return s != NULL && mime_ascii_ieq(s, strlen(s), lit);
}

static void boundary_push(struct mime_parser *p, struct mime_part *mp)
{
	const char *b = NULL;
	size_t blen = 0;
	for (unsigned int i = 0; i < mp->param_count; i++) {
		if (mime_ascii_ieq(mp->params[i].name, strlen(mp->params[i].name), "boundary")) {
			b = mp->params[i].value;
			blen = mp->params[i].value_len;
			break;
		}
	}
	mp->flags |= MIME_PART_MULTIPART;
	if (b == NULL || blen == 0 || blen > MIME_MAX_BOUNDARY_LEN) {
		/* RFC 2046 5.1.1 makes the parameter mandatory and at most
		 * 70 characters; without a usable one nothing can be split:
		 * a multipart without parts (BODYSTRUCTURE gives it one empty
		 * text/plain, as Dovecot does, since 1*body needs one) */
		mp->flags |= MIME_PART_OPAQUE;
		if (blen > MIME_MAX_BOUNDARY_LEN)
			p->tree->flags |= MIME_TREE_BOUNDARY_TOO_LONG;
		return;
	}
	struct boundary *bs = &p->bstack[p->bdepth++];
	bs->str = b;
	bs->len = blen;
	bs->mp = mp;
}

/* The header of cur ended at `at` (the first body byte). */
static void header_end(struct mime_parser *p, const struct mark *at, bool start_body)
{
	struct mime_part *part = p->cur;
	struct part_marks *m = &p->marks[part->depth];
	part->header_size = at->offset - part->header_offset;
	part->header_lines = at->lf - m->header_start.lf;
	part->header_vsize = part->header_size + (at->bare_lf - m->header_start.bare_lf);
	if (at->bare_lf != m->header_start.bare_lf)
		part->flags |= MIME_PART_BARE_LF;
	part->body_offset = at->offset;
	m->body_start = *at;

	bool digest_child = part->parent != NULL &&
			    (part->parent->flags & MIME_PART_MULTIPART) != 0 &&
			    ieq_token(part->parent->subtype, "digest");
	mime_content_parse(p->tree->arena, part, digest_child, &p->failed);
	p->mode = MODE_BODY;
	if (!start_body)
		return;

	bool is_multipart = ieq_token(part->type, "multipart");
	bool is_message = ieq_token(part->type, "message") &&
			  (ieq_token(part->subtype, "rfc822") || ieq_token(part->subtype, "global"));
	/* RFC 2046 5.2.1: an encapsulated message is 7bit, 8bit or binary;
	 * one in base64 or quoted-printable is opaque data to us */
	if (is_message && (part->cte == MIME_CTE_BASE64 || part->cte == MIME_CTE_QP))
		is_message = false;
	if (!is_multipart && !is_message)
		return;
	if (part->depth >= MIME_MAX_DEPTH || p->boundaries_off) {
		/* a multipart stays one, without parts (see boundary_push) */
		part->flags |= MIME_PART_OPAQUE | (is_multipart ? MIME_PART_MULTIPART : 0);
		if (part->depth >= MIME_MAX_DEPTH)
			p->tree->flags |= MIME_TREE_DEPTH_LIMIT;
		return;
	}
	if (is_multipart) {
		boundary_push(p, part);
		return;
	}
	if (p->tree->part_count >= MIME_MAX_PARTS) {
		part->flags |= MIME_PART_OPAQUE;
		p->tree->flags |= MIME_TREE_PARTS_LIMIT;
		return;
	}
	struct mime_part *child = part_new(p, part, at);
	if (child == NULL)
		return;
	part->flags |= MIME_PART_MESSAGE;
	child->flags |= MIME_PART_MESSAGE_HEADER;
	p->cur = child;
	p->mode = MODE_HEADER;
}

/* Closes `part`'s body at `*end`. An end before the body start means the
 * line ending that the delimiter owns was taken for the header's blank line
 * ("H: v\r\n" "\r\n--b"): RFC 2046 5.1.1 gives it to the delimiter and
 * body-part := MIME-part-headers [CRLF *OCTET] lets a part end without one,
 * so the header stops before it and the body is empty (as in Dovecot:
 * BODY[n.MIME] is "H: v\r\n"). An end before the header start too (an
 * encapsulated message cut short) is raised to the body start. *end is
 * updated so that the ancestors closed next end no earlier than this part
 * (parts nest). */
static void part_end(struct mime_parser *p, struct mime_part *part, struct mark *end)
{
	struct part_marks *m = &p->marks[part->depth];
	if (end->offset < m->body_start.offset && end->offset >= m->header_start.offset &&
	    part->parent != NULL && (part->parent->flags & MIME_PART_MULTIPART)) {
		part->header_size = end->offset - part->header_offset;
		part->header_lines = end->lf - m->header_start.lf;
		part->header_vsize = part->header_size + (end->bare_lf - m->header_start.bare_lf);
		part->body_offset = end->offset;
		m->body_start = *end;
	}
	if (end->offset < m->body_start.offset)
		*end = m->body_start;
	const struct mark e = *end;
	part->body_size = e.offset - part->body_offset;
	part->body_lines = e.lf - m->body_start.lf;
	part->body_vsize = part->body_size + (e.bare_lf - m->body_start.bare_lf);
	if (e.bare_lf != m->body_start.bare_lf)
		part->flags |= MIME_PART_BARE_LF;
}

/* Returns the stack index of the boundary the current line delimits, or -1;
 * *close_r tells a close-delimiter. RFC 2046 5.1.1. */
static int boundary_match(struct mime_parser *p, bool *close_r)
{
	const char *l = p->line.data;
	size_t kept = p->line.len;
	if (kept < 2 || l[0] != '-' || l[1] != '-')
		return -1;
	/* the kept prefix never includes the CR of CRLF at its end (see
	 * process_line), so whitespace checks below see content only */
	for (unsigned int i = p->bdepth; i-- > 0;) {
		const struct boundary *b = &p->bstack[i];
		if (kept < 2 + b->len || memcmp(l + 2, b->str, b->len) != 0)
			continue;
		size_t j = 2 + b->len;
		bool close = false;
		if (kept >= j + 2 && l[j] == '-' && l[j + 1] == '-') {
			close = true;
			j += 2;
		}
		/* transport padding: only LWSP may follow (RFC 2046 5.1.1) */
		bool ok = !p->line_overflow_nonws;
		for (; ok && j < kept; j++)
			ok = l[j] == ' ' || l[j] == '\t';
		if (!ok)
			continue;
		*close_r = close;
		return (int)i;
	}
	return -1;
}

static void handle_boundary(struct mime_parser *p, int idx, bool close)
{
	struct mime_part *mp = p->bstack[idx].mp;
	if (!close && p->tree->part_count >= MIME_MAX_PARTS) {
		/* degrade: from here on everything is the body of cur */
		p->boundaries_off = true;
		p->tree->flags |= MIME_TREE_PARTS_LIMIT;
		return;
	}
	/* The line ending before the delimiter belongs to it (RFC 2046 5.1.1). */
	struct mark end = p->line_start;
	if (p->prev_term > 0) {
		end.offset -= p->prev_term;
		end.lf--;
		if (p->prev_term == 1)
			end.bare_lf--;
	}
	if (p->mode == MODE_HEADER) {
		/* a header cut short by a delimiter: it ends here, body empty */
		field_dispatch(p, p->line_start.offset);
		p->cur->flags |= MIME_PART_HEADER_UNTERMINATED;
		/* the line ending before the delimiter is the delimiter's,
		 * so the header stops before it too (never before it began) */
		const struct mark *hs = &p->marks[p->cur->depth].header_start;
		header_end(p, end.offset < hs->offset ? hs : &end, false);
	}
	for (struct mime_part *x = p->cur; x != mp; x = x->parent)
		part_end(p, x, &end);
	p->cur = mp;
	p->mode = MODE_BODY;
	if (close) {
		p->bdepth = (unsigned int)idx; /* epilogue follows */
		return;
	}
	p->bdepth = (unsigned int)idx + 1;
	struct mark hs = p->now; /* the delimiter line has been counted */
	struct mime_part *child = part_new(p, mp, &hs);
	if (child == NULL)
		return;
	p->cur = child;
	p->mode = MODE_HEADER;
}

/* A complete line: [line_start, line_start + line_total) plus `term` bytes
 * of line ending (0 at end of input, 1 for LF, 2 for CRLF). */
static void process_line(struct mime_parser *p, unsigned int term)
{
	/* drop the CR of CRLF from the kept prefix */
	if (term == 2 && p->line.len > 0 && p->line.len == p->line_total)
		p->line.len--;
	uint64_t content_len = p->line_total - (term == 2 ? 1 : 0);

	if (p->bdepth > 0 && !p->boundaries_off && p->line.len >= 2) {
		bool close = false;
		int idx = boundary_match(p, &close);
		if (idx >= 0) {
			handle_boundary(p, idx, close);
			goto out;
		}
	}
	if (p->mode == MODE_BODY)
		goto out;

	/* header line */
	const char *l = p->line.data != NULL ? p->line.data : "";
	if (content_len == 0 && term > 0) {
		field_dispatch(p, p->line_start.offset);
		header_end(p, &p->now, true);
		goto out;
	}
	for (size_t i = 0; i < p->line.len; i++) {
		if ((unsigned char)l[i] >= 0x80) {
			p->tree->flags |= MIME_TREE_8BIT_HEADER;
			break;
		}
	}
	bool truncated = p->line.len < content_len;
	if ((l[0] == ' ' || l[0] == '\t') && p->field_active) {
		/* continuation: keep the fold as in the message */
		field_append(p, term == 1 ? "\n" : "\r\n", term == 1 ? 1 : 2, false);
		field_append(p, l, p->line.len, truncated);
		goto out;
	}
	field_dispatch(p, p->line_start.offset);
	struct part_marks *m = &p->marks[p->cur->depth];
	if (m->field_count >= MIME_MAX_HEADER_FIELDS) {
		p->tree->flags |= MIME_TREE_FIELDS_LIMIT;
		p->cur->flags |= MIME_PART_HEADER_TRUNCATED;
		goto out;
	}
	m->field_count++;
	mime_buf_reset(&p->field);
	p->field_active = true;
	p->field_truncated = false;
	p->field_start = p->line_start;
	field_append(p, l, p->line.len, truncated);
out:
	p->prev_term = term;
}

static void line_begin(struct mime_parser *p, unsigned char first)
{
	p->in_line = true;
	p->line_start = p->now;
	p->line_total = 0;
	p->line_overflow_nonws = false;
	mime_buf_reset(&p->line);
	if (p->mode == MODE_HEADER)
		p->line_keep = MIME_MAX_FIELD_SIZE;
	else if (first == '-' && p->bdepth > 0 && !p->boundaries_off)
		p->line_keep = LINE_PREFIX;
	else
		p->line_keep = 0;
}

static void line_bytes(struct mime_parser *p, const unsigned char *d, size_t n)
{
	if (n == 0)
		return;
	if (p->line.len < p->line_keep) {
		size_t take = p->line_keep - p->line.len;
		if (take > n)
			take = n;
		mime_buf_append(&p->line, d, take);
		if (p->line.failed)
			p->failed = true;
		d += take;
		n -= take;
	}
	if (p->line_keep > 0 && !p->line_overflow_nonws) {
		/* past the prefix only padding can still make a delimiter;
		 * a CR right before the LF is checked in feed */
		for (size_t i = 0; i < n; i++) {
			if (d[i] != ' ' && d[i] != '\t' && d[i] != '\r') {
				p->line_overflow_nonws = true;
				break;
			}
		}
	}
}

enum mime_status mime_parser_feed(struct mime_parser *p, const void *data, size_t len)
{
	const unsigned char *d = data, *end = d + len;
	if (p->failed)
		return MIME_ERROR;
	while (d < end) {
		if (!p->in_line)
			line_begin(p, *d);
		const unsigned char *nl = memchr(d, '\n', (size_t)(end - d));
		const unsigned char *stop = nl != NULL ? nl : end;
		size_t n = (size_t)(stop - d);
		if (n > 0) {
			if (p->mode == MODE_HEADER && memchr(d, '\0', n) != NULL)
				p->tree->flags |= MIME_TREE_NUL;
			line_bytes(p, d, n);
			p->line_total += n;
			p->now.offset += n;
			p->last_byte = stop[-1];
		}
		d = stop;
		if (nl == NULL)
			break;
		unsigned int term = (p->line_total > 0 && p->last_byte == '\r') ? 2 : 1;
		/* a CR past the kept prefix was counted as padding-compatible;
		 * it is the line ending's, which is right */
		d++;
		p->now.offset++;
		p->now.lf++;
		if (term == 1) {
			p->now.bare_lf++;
			p->tree->flags |= MIME_TREE_BARE_LF;
		}
		process_line(p, term);
		p->in_line = false;
		p->last_byte = '\n';
		if (p->failed)
			return MIME_ERROR;
	}
	/* Body-mode NUL detection is not needed for structure; the flag is
	 * about headers (where it changes string output). */
	return p->failed ? MIME_ERROR : MIME_NEED_MORE;
}

int mime_parser_finish(struct mime_parser **pp, struct mime_tree **tree_r, struct error *err)
{
	struct mime_parser *p = *pp;
	if (!p->failed && p->in_line) {
		/* last line without a line ending */
		process_line(p, 0);
		p->in_line = false;
	}
	if (!p->failed && p->mode == MODE_HEADER) {
		field_dispatch(p, p->now.offset);
		p->cur->flags |= MIME_PART_HEADER_UNTERMINATED;
		header_end(p, &p->now, false);
	}
	if (!p->failed) {
		for (unsigned int i = 0; i < p->bdepth; i++) {
			p->bstack[i].mp->flags |= MIME_PART_NO_FINAL_BOUNDARY;
			p->tree->flags |= MIME_TREE_NO_FINAL_BOUNDARY;
		}
		struct mark eof = p->now;
		for (struct mime_part *x = p->cur; x != NULL; x = x->parent)
			part_end(p, x, &eof);
		p->tree->size = p->now.offset;
		p->tree->vsize = p->now.offset + p->now.bare_lf;
	}
	if (p->failed) {
		mime_parser_free(pp);
		error_set(err, ERR_TEMP, "Out of memory while parsing the message");
		return -1;
	}
	*tree_r = p->tree;
	p->tree = NULL;
	mime_parser_free(pp);
	return 0;
}

int mime_parse_buffer(const void *data, size_t len, struct mime_tree **tree_r, struct error *err)
{
	struct mime_parser *p = mime_parser_new(NULL);
	if (p == NULL) {
		error_set(err, ERR_TEMP, "Out of memory");
		return -1;
	}
	(void)mime_parser_feed(p, data, len);
	return mime_parser_finish(&p, tree_r, err);
}

/* ------------------------------------------------------------------ */
/* tree navigation                                                     */

/* The one body part of a multipart in which none was found (no delimiter
 * line, only the close-delimiter, no usable boundary, or a limit made it
 * opaque). RFC 3501 7.4.2 (and RFC 9051 7.5.2) body-type-mpart is
 * "1*body SP media-subtype": a multipart has at least one part, so
 * BODYSTRUCTURE shows an empty text/plain one there (as Dovecot does, which
 * keeps clients that index parts from 1 working), and FETCH BODY[n],
 * BODY[n.MIME], BINARY[n] and BINARY.SIZE[n] of that part must answer with
 * what it is: an existing, empty part ("" and 0, never NIL, which means "no
 * such part"). Its ranges are empty, so its offsets are never read. */
static const struct mime_part empty_part = {
	.flags = MIME_PART_TEXT | MIME_PART_DEFAULT_TYPE,
	.type = "text",
	.subtype = "plain",
	.cte = MIME_CTE_7BIT,
};

bool mime_part_is_placeholder(const struct mime_part *part)
{
	return part == &empty_part;
}

const struct mime_part *mime_tree_find(const struct mime_tree *tree, const unsigned int *path,
				       unsigned int path_len)
{
	/* RFC 9051 6.4.5: the numbers of a message are those of its body: the
	 * children of a multipart body, or 1 for a single-part body (the
	 * message itself). Inside a message/rfc822 part they number the parts
	 * of the encapsulated message; inside a multipart, its children.
	 * The RFC does not say what "n.1" of a leaf part of a multipart is;
	 * Dovecot answers with the leaf itself (once: "n.1.1" does not exist)
	 * and so do we, so a client that asks gets what it always got. */
	const struct mime_part *part = tree->root;
	bool self_used = false;
	for (unsigned int i = 0; i < path_len; i++) {
		unsigned int n = path[i];
		if (n == 0)
			return NULL;
		if (i > 0 && (part->flags & MIME_PART_MESSAGE)) {
			part = part->children;
		} else if (i > 0 && !(part->flags & MIME_PART_MULTIPART)) {
			if (n != 1 || self_used ||
			    (part != &empty_part && (part->parent == NULL ||
						     !(part->parent->flags & MIME_PART_MULTIPART))))
				return NULL;
			self_used = true;
			continue;
		}
		if ((part->flags & MIME_PART_MULTIPART) && part->children == NULL) {
			if (n != 1)
				return NULL;
			part = &empty_part;
		} else if (part->flags & MIME_PART_MULTIPART) {
			const struct mime_part *c = part->children;
			while (c != NULL && --n > 0)
				c = c->next;
			if (c == NULL)
				return NULL;
			part = c;
		} else if (n != 1) {
			return NULL;
		}
	}
	return part;
}
