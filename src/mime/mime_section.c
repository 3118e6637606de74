/*
 * mime_section.c: FETCH BODY[section]<partial> and BINARY[section] (RFC 9051
 * 6.4.5, RFC 3516) as byte ranges of the message file.
 *
 * Design note
 * -----------
 * A section is resolved against the tree (live or deserialised from the
 * index) into a short list of ranges of the file, so the server can send
 * them with sendfile. The only sections that are not one range are
 * HEADER.FIELDS[.NOT] (one range per run of matching fields, plus the blank
 * line, which RFC 9051 6.4.5 includes in the result and which is a literal
 * CRLF range because a header cut short may not have one in the file).
 * Those read the part's header again, in 64 KiB slices, with a line machine
 * that needs no more memory than one field name.
 *
 * Files with bare LF are served as CRLF: a range that holds bare LF carries
 * MIME_RANGE_FIX_LF and its virtual size; mime_section_copy converts while
 * copying. A partial fetch cuts ranges in virtual bytes, which needs the
 * data only inside a FIX_LF range; mime_section_result_partial says when.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mime/mime_private.h"

#define COPY_CHUNK (64 * 1024)
#define MAX_FIELD_NAMES 1000

/* ------------------------------------------------------------------ */
/* sources                                                             */

int64_t mime_source_fd_pread(void *ctx, void *buf, size_t len, uint64_t offset)
{
	int fd = (int)(intptr_t)ctx;
	size_t done = 0;
	while (done < len) {
		ssize_t r = pread(fd, (char *)buf + done, len - done, (off_t)(offset + done));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0)
			break;
		done += (size_t)r;
	}
	return (int64_t)done;
}

int64_t mime_source_mem_pread(void *ctx, void *buf, size_t len, uint64_t offset)
{
	const struct mime_mem_source *m = ctx;
	if (offset >= m->len)
		return 0;
	size_t n = m->len - (size_t)offset;
	if (n > len)
		n = len;
	memcpy(buf, (const char *)m->data + offset, n);
	return (int64_t)n;
}

/* ------------------------------------------------------------------ */
/* section-spec                                                        */

void mime_section_clear(struct mime_section *s)
{
	for (unsigned int i = 0; i < s->field_count; i++)
		free(s->fields[i]);
	free(s->fields);
	s->fields = NULL;
	s->field_count = 0;
}

static bool kw(const char **p, const char *end, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(end - *p) < n || strncasecmp(*p, word, n) != 0)
		return false;
	*p += n;
	return true;
}

static int parse_header_list(const char **pp, const char *end, struct mime_section *s,
			     struct error *err)
{
	const char *p = *pp;
	if (p >= end || *p != ' ') {
		error_set(err, ERR_INVALID, "Expected a header list");
		return -1;
	}
	p++;
	if (p >= end || *p != '(') {
		error_set(err, ERR_INVALID, "Expected a header list");
		return -1;
	}
	p++;
	for (;;) {
		if (p < end && *p == ')' && s->field_count > 0) {
			p++;
			break;
		}
		if (s->field_count > 0) {
			if (p >= end || *p != ' ') {
				error_set(err, ERR_INVALID, "Invalid header list");
				return -1;
			}
			p++;
		}
		struct mime_buf name = { 0 };
		if (p < end && *p == '"') {
			p++;
			while (p < end && *p != '"') {
				if (*p == '\\' && p + 1 < end)
					p++;
				mime_buf_putc(&name, *p++);
			}
			if (p >= end) {
				mime_buf_free(&name);
				error_set(err, ERR_INVALID, "Unterminated quoted string");
				return -1;
			}
			p++;
		} else {
			/* astring: ASTRING-CHAR, i.e. atom chars and "]" */
			while (p < end && (unsigned char)*p > ' ' && (unsigned char)*p < 0x7f &&
			       strchr("(){%*\"\\", *p) == NULL)
				mime_buf_putc(&name, *p++);
		}
		if (name.len == 0 || name.failed || s->field_count >= MAX_FIELD_NAMES) {
			mime_buf_free(&name);
			error_set(err, ERR_INVALID, "Invalid header field name");
			return -1;
		}
		char **nf = realloc(s->fields, (s->field_count + 1) * sizeof(*nf));
		if (nf == NULL) {
			mime_buf_free(&name);
			error_set(err, ERR_TEMP, "Out of memory");
			return -1;
		}
		s->fields = nf;
		s->fields[s->field_count++] = mime_buf_steal(&name, NULL);
		if (s->fields[s->field_count - 1] == NULL) {
			s->field_count--;
			error_set(err, ERR_TEMP, "Out of memory");
			return -1;
		}
	}
	*pp = p;
	return 0;
}

int mime_section_parse(const char *spec, size_t len, struct mime_section *s, struct error *err)
{
	const char *p = spec, *end = spec + len;
	memset(s, 0, sizeof(*s));
	s->kind = MIME_SECTION_ALL;
	/* section-part = nz-number *("." nz-number) */
	while (p < end && *p >= '0' && *p <= '9') {
		if (*p == '0') {
			error_set(err, ERR_INVALID, "Section numbers start at 1");
			return -1;
		}
		unsigned long n = 0;
		while (p < end && *p >= '0' && *p <= '9') {
			n = n * 10 + (unsigned long)(*p++ - '0');
			if (n > 1000000000UL) {
				error_set(err, ERR_INVALID, "Section number too large");
				return -1;
			}
		}
		if (s->path_len >= sizeof(s->path) / sizeof(s->path[0])) {
			error_set(err, ERR_INVALID, "Section nested too deep");
			return -1;
		}
		s->path[s->path_len++] = (unsigned int)n;
		if (p >= end)
			return 0;
		if (*p != '.') {
			error_set(err, ERR_INVALID, "Invalid section");
			return -1;
		}
		p++;
		if (p >= end) {
			error_set(err, ERR_INVALID, "Invalid section");
			return -1;
		}
	}
	if (p == end)
		return 0;
	if (kw(&p, end, "HEADER.FIELDS.NOT")) {
		s->kind = MIME_SECTION_HEADER_FIELDS_NOT;
	} else if (kw(&p, end, "HEADER.FIELDS")) {
		s->kind = MIME_SECTION_HEADER_FIELDS;
	} else if (kw(&p, end, "HEADER")) {
		s->kind = MIME_SECTION_HEADER;
	} else if (kw(&p, end, "TEXT")) {
		s->kind = MIME_SECTION_TEXT;
	} else if (s->path_len > 0 && kw(&p, end, "MIME")) {
		s->kind = MIME_SECTION_MIME;
	} else {
		error_set(err, ERR_INVALID, "Invalid section");
		return -1;
	}
	if (s->kind == MIME_SECTION_HEADER_FIELDS || s->kind == MIME_SECTION_HEADER_FIELDS_NOT) {
		if (parse_header_list(&p, end, s, err) < 0) {
			mime_section_clear(s);
			return -1;
		}
	}
	if (p != end) {
		mime_section_clear(s);
		error_set(err, ERR_INVALID, "Junk after section");
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* resolution                                                          */

struct ranges {
	struct mime_range *r;
	unsigned int n, cap;
	bool failed;
};

static void add_range(struct ranges *rs, uint64_t off, uint64_t size, uint64_t vsize,
		      unsigned int flags)
{
	if (vsize == 0 || rs->failed)
		return;
	if (rs->n > 0) {
		struct mime_range *last = &rs->r[rs->n - 1];
		if (!(flags & MIME_RANGE_CRLF) && !(last->flags & MIME_RANGE_CRLF) &&
		    last->offset + last->size == off) {
			last->size += size;
			last->vsize += vsize;
			last->flags |= flags;
			return;
		}
	}
	if (rs->n == rs->cap) {
		unsigned int ncap = rs->cap ? rs->cap * 2 : 4;
		struct mime_range *nr = realloc(rs->r, ncap * sizeof(*nr));
		if (nr == NULL) {
			rs->failed = true;
			return;
		}
		rs->r = nr;
		rs->cap = ncap;
	}
	rs->r[rs->n++] = (struct mime_range){ off, size, vsize, flags };
}

static bool name_listed(const struct mime_section *s, const char *name, size_t len)
{
	for (unsigned int i = 0; i < s->field_count; i++)
		if (mime_ascii_ieq(name, len, s->fields[i]))
			return true;
	return false;
}

/* Scans the header at [off, off+size) field by field. */
static int header_fields(const struct mime_section *s, const struct mime_source *src, uint64_t off,
			 uint64_t size, struct ranges *rs, struct error *err)
{
	bool want_listed = s->kind == MIME_SECTION_HEADER_FIELDS;
	char *buf = malloc(COPY_CHUNK);
	if (buf == NULL) {
		error_set(err, ERR_TEMP, "Out of memory");
		return -1;
	}
	char name[256];
	size_t name_len = 0;
	bool name_done = false, at_line_start = true, in_field = false, include = false;
	bool header_over = false;
	uint64_t field_start = 0, field_bare = 0, line_start = off;
	unsigned char prev = 0, first = 0;
	uint64_t pos = off;
	while (pos < off + size && !header_over) {
		size_t want = off + size - pos < COPY_CHUNK ? (size_t)(off + size - pos) : COPY_CHUNK;
		int64_t got = src->pread(src->ctx, buf, want, pos);
		if (got <= 0) {
			free(buf);
			if (got < 0)
				error_set(err, ERR_TEMP, "Read error");
			else
				error_set(err, ERR_DATA, "Message file is shorter than its index");
			return -1;
		}
		for (int64_t i = 0; i < got; i++, pos++) {
			unsigned char c = (unsigned char)buf[i];
			if (at_line_start) {
				at_line_start = false;
				line_start = pos;
				first = c;
				if (c != ' ' && c != '\t') {
					/* a new field: close the previous one */
					if (in_field && include)
						add_range(rs, field_start, pos - field_start,
							  pos - field_start + field_bare,
							  field_bare ? MIME_RANGE_FIX_LF : 0);
					in_field = false;
					if (c == '\n' || c == '\r') {
						/* possibly the blank line; decided at LF */
					} else {
						in_field = true;
						field_start = pos;
						field_bare = 0;
						name_len = 0;
						name_done = false;
					}
				}
			}
			if (in_field && !name_done && pos >= field_start) {
				if (c == ':' || c == '\n') {
					name_done = true;
					while (name_len > 0 && (name[name_len - 1] == ' ' ||
								name[name_len - 1] == '\t'))
						name_len--;
					bool listed = c == ':' && name_listed(s, name, name_len);
					include = want_listed ? listed : !listed;
				} else if (name_len < sizeof(name)) {
					name[name_len++] = (char)c;
				}
			}
			if (c == '\n') {
				if (prev != '\r')
					field_bare++;
				if (!in_field && (first == '\n' || (first == '\r' && pos == line_start + 1))) {
					header_over = true; /* the blank line */
					pos++;
					break;
				}
				at_line_start = true;
			}
			prev = c;
		}
	}
	if (in_field && include) {
		uint64_t end = header_over ? line_start : pos;
		add_range(rs, field_start, end - field_start, end - field_start + field_bare,
			  field_bare ? MIME_RANGE_FIX_LF : 0);
	}
	free(buf);
	/* RFC 9051 6.4.5: the result includes the blank line */
	add_range(rs, 0, 0, 2, MIME_RANGE_CRLF);
	return 0;
}

int mime_section_resolve(const struct mime_tree *tree, const struct mime_section *s,
			 const struct mime_source *src, struct mime_section_result *result_r,
			 struct error *err)
{
	struct ranges rs = { 0 };
	const struct mime_part *part = mime_tree_find(tree, s->path, s->path_len);
	if (part == NULL) {
		error_set(err, ERR_NOTFOUND, "No such part");
		return -1;
	}
	if (s->path_len == 0 && s->kind == MIME_SECTION_ALL) {
		add_range(&rs, 0, tree->size, tree->vsize,
			  tree->vsize != tree->size ? MIME_RANGE_FIX_LF : 0);
		goto done;
	}
	if (s->kind == MIME_SECTION_ALL) {
		add_range(&rs, part->body_offset, part->body_size, part->body_vsize,
			  part->body_vsize != part->body_size ? MIME_RANGE_FIX_LF : 0);
		goto done;
	}
	if (s->kind == MIME_SECTION_MIME) {
		add_range(&rs, part->header_offset, part->header_size, part->header_vsize,
			  part->header_vsize != part->header_size ? MIME_RANGE_FIX_LF : 0);
		goto done;
	}
	/* HEADER, TEXT, HEADER.FIELDS: of the message, or of the message a
	 * message/rfc822 part holds (RFC 9051 6.4.5) */
	if (s->path_len > 0) {
		if (!(part->flags & MIME_PART_MESSAGE) || part->children == NULL) {
			error_set(err, ERR_INVALID, "Part is not a message");
			return -1;
		}
		part = part->children;
	}
	switch (s->kind) {
	case MIME_SECTION_HEADER:
		add_range(&rs, part->header_offset, part->header_size, part->header_vsize,
			  part->header_vsize != part->header_size ? MIME_RANGE_FIX_LF : 0);
		break;
	case MIME_SECTION_TEXT:
		add_range(&rs, part->body_offset, part->body_size, part->body_vsize,
			  part->body_vsize != part->body_size ? MIME_RANGE_FIX_LF : 0);
		break;
	default:
		if (src == NULL) {
			error_set(err, ERR_INVALID, "No message source");
			return -1;
		}
		if (header_fields(s, src, part->header_offset, part->header_size, &rs, err) < 0) {
			free(rs.r);
			return -1;
		}
		break;
	}
done:
	if (rs.failed) {
		free(rs.r);
		error_set(err, ERR_TEMP, "Out of memory");
		return -1;
	}
	result_r->ranges = rs.r;
	result_r->count = rs.n;
	result_r->vsize = 0;
	for (unsigned int i = 0; i < rs.n; i++)
		result_r->vsize += rs.r[i].vsize;
	return 0;
}

void mime_section_result_free(struct mime_section_result *r)
{
	free(r->ranges);
	r->ranges = NULL;
	r->count = 0;
	r->vsize = 0;
}

int mime_section_result_partial(struct mime_section_result *r, uint64_t origin, uint64_t count)
{
	/* check first, change after: on -1 the result is untouched */
	uint64_t pos = 0, end = count > UINT64_MAX - origin ? UINT64_MAX : origin + count;
	for (unsigned int i = 0; i < r->count; i++) {
		const struct mime_range *g = &r->ranges[i];
		uint64_t a = pos, b = pos + g->vsize;
		pos = b;
		bool cut = (origin > a && origin < b) || (end > a && end < b);
		if (cut && (g->flags & MIME_RANGE_FIX_LF))
			return -1;
	}
	unsigned int n = 0;
	pos = 0;
	for (unsigned int i = 0; i < r->count; i++) {
		struct mime_range g = r->ranges[i];
		uint64_t a = pos, b = pos + g.vsize;
		pos = b;
		uint64_t ca = a > origin ? a : origin, cb = b < end ? b : end;
		if (ca >= cb)
			continue;
		uint64_t skip = ca - a, take = cb - ca;
		g.offset += skip;
		if (!(g.flags & MIME_RANGE_FIX_LF) && !(g.flags & MIME_RANGE_CRLF))
			g.size = take;
		else if (g.flags & MIME_RANGE_CRLF)
			g.size = 0;
		g.vsize = take;
		r->ranges[n++] = g;
	}
	r->count = n;
	r->vsize = 0;
	for (unsigned int i = 0; i < n; i++)
		r->vsize += r->ranges[i].vsize;
	return 0;
}

/* ------------------------------------------------------------------ */
/* copying                                                             */

struct emitter {
	uint64_t skip, left; /* virtual bytes still to skip, to send */
	int (*out)(void *ctx, const void *data, size_t len);
	void *ctx;
	bool failed;
};

static void emit(struct emitter *e, const char *d, size_t n)
{
	if (e->failed || e->left == 0)
		return;
	if (e->skip >= n) {
		e->skip -= n;
		return;
	}
	d += e->skip;
	n -= (size_t)e->skip;
	e->skip = 0;
	if (n > e->left)
		n = (size_t)e->left;
	e->left -= n;
	if (n > 0 && e->out(e->ctx, d, n) < 0)
		e->failed = true;
}

/* Emits [off, off+size) of the file, LF converted when fix_lf. */
static int emit_file(struct emitter *e, const struct mime_source *src, uint64_t off, uint64_t size,
		     bool fix_lf, char *buf, struct error *err)
{
	char prev = 0;
	uint64_t pos = off;
	while (pos < off + size && e->left > 0 && !e->failed) {
		size_t want = off + size - pos < COPY_CHUNK ? (size_t)(off + size - pos) : COPY_CHUNK;
		if (!fix_lf && e->skip >= want) {
			e->skip -= want; /* skip without reading */
			pos += want;
			continue;
		}
		int64_t got = src->pread(src->ctx, buf, want, pos);
		if (got <= 0) {
			if (got < 0)
				error_set(err, ERR_TEMP, "Read error");
			else
				error_set(err, ERR_DATA, "Message file is shorter than its index");
			return -1;
		}
		if (!fix_lf) {
			emit(e, buf, (size_t)got);
		} else {
			size_t run = 0;
			for (size_t i = 0; i < (size_t)got; i++) {
				if (buf[i] == '\n' && (i > 0 ? buf[i - 1] : prev) != '\r') {
					emit(e, buf + run, i - run);
					emit(e, "\r\n", 2);
					run = i + 1;
				}
			}
			emit(e, buf + run, (size_t)got - run);
			prev = buf[got - 1];
		}
		pos += (uint64_t)got;
	}
	return 0;
}

int mime_section_copy(const struct mime_section_result *r, const struct mime_source *src,
		      uint64_t origin, uint64_t count,
		      int (*out)(void *ctx, const void *data, size_t len), void *out_ctx,
		      struct error *err)
{
	struct emitter e = { .skip = origin, .left = count, .out = out, .ctx = out_ctx };
	char *buf = malloc(COPY_CHUNK);
	if (buf == NULL) {
		error_set(err, ERR_TEMP, "Out of memory");
		return -1;
	}
	for (unsigned int i = 0; i < r->count && e.left > 0 && !e.failed; i++) {
		const struct mime_range *g = &r->ranges[i];
		if (g->flags & MIME_RANGE_CRLF) {
			uint64_t o = g->offset < 2 ? g->offset : 2;
			uint64_t n = g->vsize < 2 - o ? g->vsize : 2 - o;
			emit(&e, &"\r\n"[o], (size_t)n);
			continue;
		}
		/* FIX_LF ranges are never cut (mime_section_result_partial
		 * refuses), so size is always the physical extent */
		if (emit_file(&e, src, g->offset, g->size, (g->flags & MIME_RANGE_FIX_LF) != 0, buf,
			      err) < 0)
			goto fail;
	}
	free(buf);
	if (e.failed) {
		error_set(err, ERR_TEMP, "Write error");
		return -1;
	}
	return 0;
fail:
	free(buf);
	return -1;
}

/* ------------------------------------------------------------------ */
/* BINARY                                                              */

struct count_out {
	uint64_t n;
	int (*out)(void *ctx, const void *data, size_t len);
	void *ctx;
};

static int counting_out(void *ctx, const void *data, size_t len)
{
	struct count_out *c = ctx;
	c->n += len;
	return c->out == NULL ? 0 : c->out(c->ctx, data, len);
}

struct decode_out {
	struct mime_decoder *d;
	struct count_out *co;
};

static int decoding_out(void *ctx, const void *data, size_t len)
{
	struct decode_out *x = ctx;
	return mime_decoder_feed(x->d, data, len, counting_out, x->co);
}

int mime_section_binary(const struct mime_tree *tree, const unsigned int *path,
			unsigned int path_len, const struct mime_source *src,
			int (*out)(void *ctx, const void *data, size_t len), void *out_ctx,
			uint64_t *size_r, bool *unknown_cte_r, struct error *err)
{
	if (unknown_cte_r != NULL)
		*unknown_cte_r = false;
	const struct mime_part *part = mime_tree_find(tree, path, path_len);
	if (part == NULL) {
		error_set(err, ERR_NOTFOUND, "No such part");
		return -1;
	}
	struct mime_section_result r = { 0 };
	struct mime_section s = { .path_len = path_len, .kind = MIME_SECTION_ALL };
	if (path_len > 0)
		memcpy(s.path, path, path_len * sizeof(*path));
	if (mime_section_resolve(tree, &s, src, &r, err) < 0)
		return -1;
	struct count_out co = { 0, out, out_ctx };
	/* RFC 3516 4: the whole message, multiparts and message parts are
	 * sent as they are (their encoding can only be an identity) */
	enum mime_cte cte = path_len == 0 || (part->flags & (MIME_PART_MULTIPART | MIME_PART_MESSAGE))
				    ? MIME_CTE_BINARY
				    : part->cte;
	if (cte == MIME_CTE_UNKNOWN) {
		mime_section_result_free(&r);
		if (unknown_cte_r != NULL)
			*unknown_cte_r = true;
		error_set(err, ERR_DATA, "Unknown Content-Transfer-Encoding");
		return -1;
	}
	int ret;
	if (cte == MIME_CTE_BASE64 || cte == MIME_CTE_QP) {
		struct mime_decoder *d = mime_decoder_new(cte);
		if (d == NULL) {
			mime_section_result_free(&r);
			error_set(err, ERR_TEMP, "Out of memory");
			return -1;
		}
		struct decode_out x = { d, &co };
		ret = mime_section_copy(&r, src, 0, UINT64_MAX, decoding_out, &x, err);
		if (ret == 0 && mime_decoder_finish(d, counting_out, &co) < 0) {
			error_set(err, ERR_TEMP, "Write error");
			ret = -1;
		}
		mime_decoder_free(&d);
	} else {
		ret = mime_section_copy(&r, src, 0, UINT64_MAX, counting_out, &co, err);
	}
	mime_section_result_free(&r);
	if (ret == 0 && size_r != NULL)
		*size_r = co.n;
	return ret;
}
