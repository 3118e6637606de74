/*
 * fuzz_mime.c: libFuzzer target for src/mime.
 *
 * The input is one message. It is parsed twice, whole and in slices whose
 * sizes come from the first input byte, and the two trees must serialise
 * identically (slicing must never change the result). Then everything a
 * client can ask of it runs on the tree: ENVELOPE, BODY, BODYSTRUCTURE, the
 * index round trip, every part's BODY[n], BODY[n.MIME], HEADER.FIELDS,
 * BINARY, RFC 2047 decoding and the base subject. ASan sees any read outside
 * the input: the sections read the message through a memory source bounded
 * by its size.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mime/mime.h"

static int sink(void *ctx, const void *data, size_t len)
{
	uint64_t *n = ctx;
	/* touch every byte so ASan checks the buffers */
	const unsigned char *d = data;
	for (size_t i = 0; i < len; i++)
		*n += d[i];
	*n += len;
	return 0;
}

static void check(int cond)
{
	if (!cond)
		abort();
}

static void exercise_part(const struct mime_tree *t, const struct mime_source *src,
			  const unsigned int *path, unsigned int plen)
{
	static const char *kinds[] = { "", ".MIME", ".HEADER", ".TEXT", ".HEADER.FIELDS (subject from)",
				       ".HEADER.FIELDS.NOT (to)" };
	char spec[MIME_MAX_DEPTH * 12 + 64] = "";
	size_t pos = 0;
	for (unsigned int i = 0; i < plen; i++)
		pos += (size_t)snprintf(spec + pos, sizeof(spec) - pos, "%s%u", i ? "." : "", path[i]);
	for (unsigned int k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		const char *kind = plen == 0 && kinds[k][0] == '.' ? kinds[k] + 1 : kinds[k];
		if (plen == 0 && strcmp(kind, "MIME") == 0)
			continue;
		char full[sizeof(spec) + 64];
		snprintf(full, sizeof(full), "%s%s", spec, kind);
		struct mime_section s;
		struct mime_section_result r;
		struct error error;
		if (mime_section_parse(full, strlen(full), &s, &error) < 0)
			abort(); /* we only build valid specs */
		if (mime_section_resolve(t, &s, src, &r, &error) == 0) {
			uint64_t n = 0;
			check(mime_section_copy(&r, src, 0, UINT64_MAX, sink, &n, &error) == 0);
			uint64_t total = 0;
			for (unsigned int i = 0; i < r.count; i++)
				total += r.ranges[i].vsize;
			check(total == r.vsize);
			(void)mime_section_result_partial(&r, 3, 17);
			n = 0;
			check(mime_section_copy(&r, src, 1, 5, sink, &n, &error) == 0);
			mime_section_result_free(&r);
		}
		mime_section_clear(&s);
	}
	uint64_t size, size2, n = 0;
	bool unknown;
	struct error error;
	/* BINARY.SIZE (no output) is the size of what BINARY writes */
	if (mime_section_binary(t, path, plen, src, sink, &n, &size, &unknown, &error) == 0) {
		check(mime_section_binary(t, path, plen, src, NULL, NULL, &size2, &unknown, &error) == 0);
		check(size == size2);
	}
}

static void walk(const struct mime_tree *t, const struct mime_source *src, unsigned int *path,
		 unsigned int plen, unsigned int *budget)
{
	if (*budget == 0)
		return;
	(*budget)--;
	exercise_part(t, src, path, plen);
	if (plen >= MIME_MAX_DEPTH)
		return;
	for (unsigned int i = 1; i <= 3; i++) {
		path[plen] = i;
		if (mime_tree_find(t, path, plen + 1) != NULL)
			walk(t, src, path, plen + 1, budget);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mime_tree *t1 = NULL, *t2 = NULL;
	struct error error;
	/* the message lives in its own allocation: reads past it are caught */
	char *msg = malloc(size ? size : 1);
	if (msg == NULL)
		return 0;
	memcpy(msg, data, size);

	check(mime_parse_buffer(msg, size, &t1, &error) == 0);
	struct mime_parser *p = mime_parser_new(NULL);
	check(p != NULL);
	size_t slice = size > 0 ? (size_t)(data[0] % 13) + 1 : 1;
	for (size_t i = 0; i < size; i += slice)
		mime_parser_feed(p, msg + i, size - i < slice ? size - i : slice);
	check(mime_parser_finish(&p, &t2, &error) == 0);

	size_t l1, l2;
	char *s1 = mime_tree_serialize(t1, &l1), *s2 = mime_tree_serialize(t2, &l2);
	check(s1 != NULL && s2 != NULL && l1 == l2 && memcmp(s1, s2, l1) == 0);
	check(t1->size == size);

	struct mime_tree *t3;
	check(mime_tree_deserialize(s1, l1, &t3, &error) == 0);
	size_t l3;
	char *s3 = mime_tree_serialize(t3, &l3);
	check(s3 != NULL && l3 == l1 && memcmp(s1, s3, l1) == 0);
	free(s3);
	mime_tree_free(&t3);
	/* a corrupted serialisation must be refused or accepted, never crash */
	if (l1 > 20) {
		s1[l1 / 2] ^= (char)((size > 0 ? data[size - 1] : 0) | 1);
		if (mime_tree_deserialize(s1, l1, &t3, &error) == 0)
			mime_tree_free(&t3);
	}
	free(s1);
	free(s2);

	size_t len;
	char *e = mime_envelope_imap(t1->root, &len);
	char *b = mime_bodystructure_imap(t1, false, &len);
	char *bs = mime_bodystructure_imap(t1, true, &len);
	check(e != NULL && b != NULL && bs != NULL);
	free(e);
	free(b);
	free(bs);

	struct mime_mem_source mem = { msg, size };
	struct mime_source src = { mime_source_mem_pread, &mem };
	unsigned int path[MIME_MAX_DEPTH + 1];
	unsigned int budget = 64;
	walk(t1, &src, path, 0, &budget);
	/* RFC 8970 PREVIEW: at most 256 characters, NUL-free UTF-8 */
	char *pv = NULL;
	size_t pvlen = 0;
	check(mime_preview(t1, &src, &pv, &pvlen) == 0 && pvlen <= 4 * MIME_PREVIEW_MAX &&
	      strlen(pv) == pvlen);
	free(pv);

	const struct mime_part *root = t1->root;
	for (int f = 0; f < MIME_FIELD_COUNT; f++) {
		if (root->field[f] == NULL)
			continue;
		char *d = mime_decode_header_utf8(root->field[f], root->field_len[f], &len);
		free(d);
	}
	if (root->field[MIME_FIELD_SUBJECT] != NULL) {
		bool reply;
		free(mime_subject_base(root->field[MIME_FIELD_SUBJECT],
				       root->field_len[MIME_FIELD_SUBJECT], &reply));
	}
	if (root->field[MIME_FIELD_FROM] != NULL) {
		struct mime_address *list;
		if (mime_address_parse(root->field[MIME_FIELD_FROM], root->field_len[MIME_FIELD_FROM],
				       &list) == 0) {
			free(mime_address_display_utf8(list));
			mime_address_free(&list);
		}
	}
	free(mime_param_get_utf8(root->params, root->param_count, "name"));
	free(mime_param_get_utf8(root->disp_params, root->disp_param_count, "filename"));

	mime_tree_free(&t1);
	mime_tree_free(&t2);
	free(msg);
	return 0;
}
