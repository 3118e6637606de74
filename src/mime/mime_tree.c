/*
 * mime_tree.c: serialisation of a parse tree for the index.
 *
 * Design note: FETCH must not parse. The store keeps this text next to the
 * cached ENVELOPE and BODYSTRUCTURE, and FETCH BODY[section] / BINARY rebuild
 * just enough of the tree from it to resolve sections. The format is text,
 * one line per part in pre-order, so `sqlite3` shows it:
 *
 *   mime-tree 3 FLAGS PARTS SIZE VSIZE
 *   DEPTH FLAGS HOFF HSIZE HVSIZE HLINES BOFF BSIZE BVSIZE BLINES CTE TYPE SUBTYPE CHARSET
 *
 * CHARSET is the part's charset parameter, or "-" when it has none (SEARCH
 * needs it to decode bodies). Version 1 lines (no CHARSET) are still read;
 * version 3 lines are version 2's (the number says which parser wrote them,
 * see MIME_TREE_FORMAT: the store reparses a row of an older version).
 *
 * The index is another component's data, hence distrusted: every number is
 * range-checked, depths must nest, parts must lie inside the message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mime/mime_private.h"

static void ser_part(struct mime_buf *b, const struct mime_part *p)
{
	mime_buf_printf(b, "%u %u %llu %llu %llu %llu", p->depth, p->flags,
			(unsigned long long)p->header_offset, (unsigned long long)p->header_size,
			(unsigned long long)p->header_vsize, (unsigned long long)p->header_lines);
	mime_buf_printf(b, " %llu %llu %llu %llu %d ", (unsigned long long)p->body_offset,
			(unsigned long long)p->body_size, (unsigned long long)p->body_vsize,
			(unsigned long long)p->body_lines, (int)p->cte);
	mime_buf_puts(b, p->type);
	mime_buf_putc(b, ' ');
	mime_buf_puts(b, p->subtype);
	mime_buf_putc(b, ' ');
	const char *cs = NULL;
	for (unsigned int i = 0; i < p->param_count && cs == NULL; i++)
		if (strcasecmp(p->params[i].name, "charset") == 0 && p->params[i].value_len > 0 &&
		    p->params[i].value_len < 100 &&
		    strcspn(p->params[i].value, " \t\r\n") == p->params[i].value_len)
			cs = p->params[i].value;
	mime_buf_puts(b, cs != NULL ? cs : "-");
	mime_buf_putc(b, '\n');
}

char *mime_tree_serialize(const struct mime_tree *tree, size_t *len_r)
{
	struct mime_buf b = { 0 };
	mime_buf_printf(&b, "mime-tree %d %u %u %llu %llu\n", MIME_TREE_FORMAT, tree->flags,
			tree->part_count,
			(unsigned long long)tree->size, (unsigned long long)tree->vsize);
	/* iterative pre-order walk */
	const struct mime_part *p = tree->root;
	while (p != NULL) {
		ser_part(&b, p);
		if (p->children != NULL) {
			p = p->children;
			continue;
		}
		while (p != NULL && p->next == NULL)
			p = p->parent;
		if (p != NULL)
			p = p->next;
	}
	return mime_buf_steal(&b, len_r);
}

static bool num(const char **p, const char *end, uint64_t *v)
{
	uint64_t n = 0;
	const char *s = *p;
	while (*p < end && **p >= '0' && **p <= '9') {
		if (n > (UINT64_MAX - 9) / 10)
			return false;
		n = n * 10 + (uint64_t)(**p - '0');
		(*p)++;
	}
	if (*p == s)
		return false;
	*v = n;
	if (*p < end && **p == ' ')
		(*p)++;
	return true;
}

static const char *word(struct mime_arena *a, const char **p, const char *end)
{
	const char *s = *p;
	while (*p < end && **p != ' ' && **p != '\n')
		(*p)++;
	if (*p == s)
		return NULL;
	const char *w = mime_arena_strndup(a, s, (size_t)(*p - s));
	if (*p < end && **p == ' ')
		(*p)++;
	return w;
}

bool mime_tree_blob_current(const void *data, size_t len)
{
	char head[32];
	int n = snprintf(head, sizeof(head), "mime-tree %d ", MIME_TREE_FORMAT);
	return data != NULL && n > 0 && len >= (size_t)n && memcmp(data, head, (size_t)n) == 0;
}

int mime_tree_deserialize(const char *data, size_t len, struct mime_tree **tree_r,
			  struct error *err)
{
	const char *p = data, *end = data + len;
	static const char magic[] = "mime-tree ";
	uint64_t tflags, count, size, vsize;
	if (len < sizeof(magic) + 1 || memcmp(p, magic, sizeof(magic) - 1) != 0 ||
	    p[sizeof(magic) - 1] < '1' || p[sizeof(magic) - 1] > '0' + MIME_TREE_FORMAT ||
	    p[sizeof(magic)] != ' ') {
		error_set(err, ERR_DATA, "Not a serialised MIME tree");
		return -1;
	}
	bool with_charset = p[sizeof(magic) - 1] != '1';
	p += sizeof(magic) + 1;
	if (!num(&p, end, &tflags) || !num(&p, end, &count) || !num(&p, end, &size) ||
	    !num(&p, end, &vsize) || p >= end || *p != '\n' || count == 0 ||
	    count > MIME_MAX_PARTS + 1 || vsize < size) {
		error_set(err, ERR_DATA, "Corrupt MIME tree header");
		return -1;
	}
	p++;
	struct mime_tree *t = calloc(1, sizeof(*t));
	if (t == NULL || (t->arena = mime_arena_new()) == NULL) {
		free(t);
		error_set(err, ERR_TEMP, "Out of memory");
		return -1;
	}
	t->flags = (unsigned int)tflags;
	t->size = size;
	t->vsize = vsize;
	struct mime_part *stack[MIME_MAX_DEPTH + 2] = { NULL };
	for (uint64_t i = 0; i < count; i++) {
		uint64_t v[11];
		for (unsigned int k = 0; k < 11; k++) {
			if (!num(&p, end, &v[k]))
				goto corrupt;
		}
		struct mime_part *part = mime_arena_alloc(t->arena, sizeof(*part));
		if (part == NULL)
			goto nomem;
		part->type = word(t->arena, &p, end);
		part->subtype = word(t->arena, &p, end);
		if (part->type == NULL || part->subtype == NULL)
			goto corrupt;
		if (with_charset) {
			const char *cs = word(t->arena, &p, end);
			if (cs == NULL)
				goto corrupt;
			if (strcmp(cs, "-") != 0) {
				struct mime_param *param = mime_arena_alloc(t->arena, sizeof(*param));
				if (param == NULL)
					goto nomem;
				param->name = "charset";
				param->value = cs;
				param->value_len = strlen(cs);
				part->params = param;
				part->param_count = 1;
			}
		}
		if (p >= end || *p != '\n')
			goto corrupt;
		p++;
		uint64_t depth = v[0];
		if (depth > MIME_MAX_DEPTH || (i == 0) != (depth == 0) ||
		    (depth > 0 && stack[depth - 1] == NULL) || v[10] > MIME_CTE_UNKNOWN)
			goto corrupt;
		part->depth = (unsigned int)depth;
		part->flags = (unsigned int)v[1];
		part->header_offset = v[2];
		part->header_size = v[3];
		part->header_vsize = v[4];
		part->header_lines = v[5];
		part->body_offset = v[6];
		part->body_size = v[7];
		part->body_vsize = v[8];
		part->body_lines = v[9];
		part->cte = (enum mime_cte)v[10];
		/* ranges must be inside the message and ordered */
		if (part->header_offset > size || part->header_size > size - part->header_offset ||
		    part->body_offset != part->header_offset + part->header_size ||
		    part->body_size > size - part->body_offset ||
		    part->header_vsize < part->header_size || part->body_vsize < part->body_size ||
		    part->header_vsize - part->header_size > part->header_size ||
		    part->body_vsize - part->body_size > part->body_size)
			goto corrupt;
		if (depth > 0) {
			struct mime_part *parent = stack[depth - 1];
			if (!(parent->flags & (MIME_PART_MULTIPART | MIME_PART_MESSAGE)) ||
			    part->header_offset < parent->body_offset ||
			    part->body_offset + part->body_size > parent->body_offset + parent->body_size)
				goto corrupt;
			if ((parent->flags & MIME_PART_MESSAGE) && parent->children != NULL)
				goto corrupt;
			part->parent = parent;
			struct mime_part **tail = &parent->children;
			while (*tail != NULL)
				tail = &(*tail)->next;
			*tail = part;
		} else {
			t->root = part;
		}
		stack[depth] = part;
		for (uint64_t k = depth + 1; k < MIME_MAX_DEPTH + 2; k++)
			stack[k] = NULL;
		t->part_count++;
	}
	if (p != end)
		goto corrupt;
	/* a message part needs its one child for section lookups */
	*tree_r = t;
	return 0;
corrupt:
	error_set(err, ERR_DATA, "Corrupt serialised MIME tree");
	mime_tree_free(&t);
	return -1;
nomem:
	error_set(err, ERR_TEMP, "Out of memory");
	mime_tree_free(&t);
	return -1;
}

int mime_tree_cache_strings(const struct mime_tree *tree, char *out[4], size_t len[4])
{
	out[0] = mime_envelope_imap(tree->root, &len[0]);
	out[1] = mime_bodystructure_imap(tree, false, &len[1]);
	out[2] = mime_bodystructure_imap(tree, true, &len[2]);
	out[3] = mime_tree_serialize(tree, &len[3]);
	if (out[0] != NULL && out[1] != NULL && out[2] != NULL && out[3] != NULL)
		return 0;
	for (int i = 0; i < 4; i++) {
		free(out[i]);
		out[i] = NULL;
	}
	return -1;
}
