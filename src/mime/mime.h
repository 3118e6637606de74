/*
 * mime.h: the message parsing layer (RFC 5322, MIME, IMAP ENVELOPE and
 * BODYSTRUCTURE, sections, decoding). One header for the whole of src/mime;
 * each block below names the file that implements it, and every exported
 * name starts with that file's prefix.
 *
 * How the rest of mailroom uses it
 * --------------------------------
 * Delivery (src/store) streams the message to disk and, in the same pass,
 * feeds the same bytes to a parser:
 *
 *     struct mime_parser *p = mime_parser_new(NULL);
 *     while ((n = read(...)) > 0) { write(...); mime_parser_feed(p, buf, n); }
 *     if (mime_parser_finish(&p, &tree, &error) < 0) ...   // only ENOMEM
 *     env = mime_envelope_imap(tree->root, &len);           // cache in SQLite
 *     bs  = mime_bodystructure_imap(tree, true, &len);      // cache
 *     bd  = mime_bodystructure_imap(tree, false, &len);     // BODY, cache
 *     blob = mime_tree_serialize(tree, &len);               // cache
 *     mime_tree_free(&tree);
 *
 * IMAP FETCH then does no parsing: ENVELOPE/BODY/BODYSTRUCTURE are the cached
 * strings, and BODY[section] is resolved from the cached tree
 * (mime_tree_deserialize) into byte ranges of the message file
 * (mime_section_resolve) that the server sends with sendfile. Only
 * HEADER.FIELDS reads the part's header bytes again (a few KiB), and only
 * BINARY decodes.
 *
 * Offsets and sizes
 * -----------------
 * All offsets are from the first byte of the message file. Messages in the
 * store have CRLF line endings, but a file with bare LF must still be served
 * as CRLF, so every size comes twice: `size` is physical (bytes in the file)
 * and `vsize` is virtual (what IMAP sends: each bare LF counted as CRLF).
 * BODYSTRUCTURE and RFC822.SIZE use virtual sizes. For a CRLF file they are
 * equal. Line counts are the number of LF bytes in the range.
 *
 * Where a body ends (RFC 2046 5.1.1): the CRLF that precedes a boundary
 * delimiter belongs to the delimiter, so a part's body ends before it. The
 * rule, case by case:
 *   - a single-part message (or the body of an encapsulated message that is
 *     not followed by a delimiter) ends at the end of the message: its last
 *     CRLF is its own (BODY[1] of "a\r\nb\r\n" is "a\r\nb\r\n");
 *   - the last part before a close-delimiter ends before the CRLF of
 *     "\r\n--b--", like every other part ("B\r\n\r\n--b--" gives "B\r\n");
 *   - a part that ends without close-delimiter ends at the end of the message;
 *   - a multipart whose close-delimiter line is directly followed by an
 *     outer delimiter ("--in--\r\n--out--") ends at "--in--": the grammar
 *     (multipart-body ends in close-delimiter transport-padding [CRLF
 *     epilogue], and delimiter := CRLF dash-boundary) leaves that one CRLF
 *     to the outer delimiter. Dovecot counts it in the inner part, so its
 *     BODY[n] is 2 bytes longer there and a message/rfc822 holding such a
 *     multipart is 2 bytes and 1 line longer in its BODYSTRUCTURE; we follow
 *     the RFC (NESTED-CLOSE-CRLF in tests/e2e/mime_known_deviations.txt).
 *
 * Limits
 * ------
 * Every input is hostile. The parser's memory is bounded by the constants
 * below whatever the message size; past a limit it degrades (the rest of the
 * part or message is an opaque body, a field value is truncated) and records
 * what happened in the tree's and the part's flags. It never fails because of
 * the input: the only error is an allocation failure.
 */
#ifndef MAILROOM_MIME_H
#define MAILROOM_MIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/error.h"

/* Nesting of multipart and message/rfc822 parts. Deeper parts are opaque. */
#define MIME_MAX_DEPTH 100
/* Parts in one message. After this, boundaries are no longer recognised and
 * the rest of the message is the body of the innermost open part. */
#define MIME_MAX_PARTS 10000
/* Header fields examined per header; later fields are skipped (still counted
 * in the header's size). */
#define MIME_MAX_HEADER_FIELDS 100000
/* Bytes of one field value kept (longer ones are truncated). */
#define MIME_MAX_FIELD_SIZE (256 * 1024)
/* Bytes of field values kept for the whole message (later fields are dropped). */
#define MIME_MAX_KEPT_TOTAL (8 * 1024 * 1024)
/* Boundary parameter length accepted (RFC 2046 5.1.1 says 70; we are lenient
 * up to this). A multipart with a longer boundary is opaque. */
#define MIME_MAX_BOUNDARY_LEN 200

/* Results of an incremental parser (STYLE.md). */
enum mime_status {
	MIME_ERROR = -1,
	MIME_NEED_MORE = 0,
	MIME_DONE = 1,
};

/* ==================================================================== */
/* Tree (mime_parser.c, mime_tree.c)                                     */
/* ==================================================================== */

/* Content-Transfer-Encoding, RFC 2045 6. */
enum mime_cte {
	MIME_CTE_7BIT = 0, /* also the default when the field is absent */
	MIME_CTE_8BIT,
	MIME_CTE_BINARY,
	MIME_CTE_QP,
	MIME_CTE_BASE64,
	MIME_CTE_UNKNOWN, /* anything else: BINARY[] answers UNKNOWN-CTE (RFC 3516 4) */
};

struct mime_param {
	const char *name;  /* as in the message, never NULL */
	const char *value; /* unquoted, quoted-pairs undone; never NULL */
	size_t value_len;
};

/* Header fields a part keeps. Raw values are unfolded (CRLF and LF removed,
 * a bare CR made a space: mime_unfold), NUL replaced by 0x80, leading and
 * trailing whitespace trimmed; the first occurrence of a field wins (see
 * mime_parser.c, field_dispatch, for why). */
enum mime_field {
	MIME_FIELD_CONTENT_TYPE,
	MIME_FIELD_CONTENT_TRANSFER_ENCODING,
	MIME_FIELD_CONTENT_ID,
	MIME_FIELD_CONTENT_DESCRIPTION,
	MIME_FIELD_CONTENT_DISPOSITION,
	MIME_FIELD_CONTENT_LANGUAGE,
	MIME_FIELD_CONTENT_LOCATION,
	MIME_FIELD_CONTENT_MD5,
	/* only kept for message headers (root, and message/rfc822 children) */
	MIME_FIELD_DATE,
	MIME_FIELD_SUBJECT,
	MIME_FIELD_FROM,
	MIME_FIELD_SENDER,
	MIME_FIELD_REPLY_TO,
	MIME_FIELD_TO,
	MIME_FIELD_CC,
	MIME_FIELD_BCC,
	MIME_FIELD_IN_REPLY_TO,
	MIME_FIELD_MESSAGE_ID,
	MIME_FIELD_COUNT
};

/* part flags */
#define MIME_PART_MULTIPART         0x0001u /* has children, one per body part */
#define MIME_PART_MESSAGE           0x0002u /* message/rfc822 or message/global: one child */
#define MIME_PART_MESSAGE_HEADER    0x0004u /* its header is an RFC 5322 message header */
#define MIME_PART_TEXT              0x0008u /* media type text (BODYSTRUCTURE gives lines) */
#define MIME_PART_OPAQUE            0x0010u /* a limit made us stop parsing inside it */
#define MIME_PART_NO_FINAL_BOUNDARY 0x0020u /* multipart ended without close-delimiter */
#define MIME_PART_BARE_LF           0x0040u /* header or body has LF without CR */
#define MIME_PART_HEADER_TRUNCATED  0x0080u /* a kept field was cut or dropped */
#define MIME_PART_HEADER_UNTERMINATED 0x0100u /* no empty line ended the header */
#define MIME_PART_DEFAULT_TYPE      0x0200u /* Content-Type absent or invalid */

struct mime_part {
	struct mime_part *parent;   /* NULL for the root */
	struct mime_part *children; /* first child (multipart, message) */
	struct mime_part *next;     /* next sibling */
	unsigned int flags;         /* MIME_PART_* */
	unsigned int depth;         /* 0 for the root */

	uint64_t header_offset, header_size, header_vsize, header_lines;
	uint64_t body_offset, body_size, body_vsize, body_lines;

	/* Content-Type, RFC 2045 5. Always set: the RFC 2045 5.2 default
	 * text/plain (or message/rfc822 inside multipart/digest, RFC 2046
	 * 5.1.5) when absent or unparsable; then params is the default
	 * charset=us-ascii for text/plain. Params are RFC 2231 merged
	 * (mime_param.c), in message order. */
	const char *type, *subtype;
	const struct mime_param *params;
	unsigned int param_count;
	enum mime_cte cte;
	const char *cte_name; /* the field's token, NULL when absent */
	/* Content-Disposition, RFC 2183. NULL when absent. */
	const char *disposition;
	const struct mime_param *disp_params;
	unsigned int disp_param_count;
	/* Content-Language, RFC 3282: tokens; count 0 when absent. */
	const char *const *languages;
	unsigned int language_count;

	/* Raw kept fields (see enum mime_field); NULL when absent. */
	const char *field[MIME_FIELD_COUNT];
	size_t field_len[MIME_FIELD_COUNT];
};

/* tree flags: what the parser met and how it degraded */
#define MIME_TREE_DEPTH_LIMIT     0x0001u
#define MIME_TREE_PARTS_LIMIT     0x0002u
#define MIME_TREE_FIELDS_LIMIT    0x0004u /* MIME_MAX_HEADER_FIELDS reached */
#define MIME_TREE_FIELD_TRUNCATED 0x0008u /* a field value was truncated or dropped */
#define MIME_TREE_BARE_LF         0x0010u
#define MIME_TREE_NUL             0x0020u /* NUL byte somewhere */
#define MIME_TREE_8BIT_HEADER     0x0040u /* byte >= 0x80 in a header */
#define MIME_TREE_NO_FINAL_BOUNDARY 0x0080u
#define MIME_TREE_BOUNDARY_TOO_LONG 0x0100u

struct mime_tree {
	struct mime_part *root; /* never NULL: a 0-byte message has an empty root */
	unsigned int flags;     /* MIME_TREE_* */
	unsigned int part_count;
	uint64_t size;  /* physical size of the message */
	uint64_t vsize; /* RFC822.SIZE: size with bare LF counted as CRLF */
	struct mime_arena *arena; /* owns every part and string */
};

/* Frees the tree and everything it points to; sets *tree to NULL. */
void mime_tree_free(struct mime_tree **tree);

/* Returns the part `path` (IMAP section part numbers, RFC 9051 6.4.5) names,
 * or NULL if there is none. path_len 0 gives the root. Number 1 of a
 * non-multipart part is the part itself (its body), and the numbers inside a
 * message/rfc822 part address the encapsulated message's body. Number 1 of a
 * multipart without parts is an empty text/plain placeholder (below). The
 * pointer borrows from the tree (or is the static placeholder). */
const struct mime_part *mime_tree_find(const struct mime_tree *tree,
				       const unsigned int *path, unsigned int path_len);
/* A multipart in which the parser found no body part still has one (RFC 3501
 * 7.4.2 body-type-mpart needs 1*body): number 1 is an empty text/plain part
 * that mime_tree_find returns as a static placeholder (not in the tree: no
 * parent, empty ranges). This tells whether `part` is that placeholder. */
bool mime_part_is_placeholder(const struct mime_part *part);

/* Version of what a store caches per message: the serialised tree's format
 * and the parser whose ENVELOPE/BODY/BODYSTRUCTURE strings sit beside it.
 * Bump it whenever the output changes for some message, so that no row an
 * older parser computed is served: a store takes a row whose tree is of
 * another version for a miss and parses the file again (store_cache.c).
 *   2: the tree keeps each part's charset
 *   3: a bare CR in a header field is a space (mime_unfold), not nothing;
 *      a header whose blank line is the next delimiter's CRLF stops before it
 *   (the PREVIEW that mime_preview computes is cached beside them too: a
 *   change of its output needs a bump as well) */
#define MIME_TREE_FORMAT 3
/* Is `data` a serialised tree of the current MIME_TREE_FORMAT? (Reads only
 * its first bytes; says nothing about the rest being well formed.) */
bool mime_tree_blob_current(const void *data, size_t len);

/* Compact serialisation of the tree for the index: offsets, sizes, flags,
 * type/subtype/charset and encoding of every part; enough to resolve
 * sections and decode BINARY without reparsing. Returns a malloc'd
 * NUL-terminated text (length in *len_r) or NULL on ENOMEM. */
char *mime_tree_serialize(const struct mime_tree *tree, size_t *len_r);
/* Rebuilds a tree from mime_tree_serialize output (distrusted: checked for
 * syntax, ranges and nesting). On success *tree_r is owned by the caller;
 * raw fields, params other than charset and languages are absent. Returns 0,
 * or -1 with err set (ERR_DATA for a blob that is not a well-formed tree,
 * ERR_TEMP when out of memory). */
/* The four strings a store caches per message, in the order of its cache
 * fields: ENVELOPE, BODY, BODYSTRUCTURE (extended) and the serialised tree;
 * each malloc'ed into out[i] (length len[i]). Returns 0, or -1 when out of
 * memory (then nothing is left allocated). */
int mime_tree_cache_strings(const struct mime_tree *tree, char *out[4], size_t len[4]);
int mime_tree_deserialize(const char *data, size_t len, struct mime_tree **tree_r,
			  struct error *err);

/* ==================================================================== */
/* Streaming parser (mime_parser.c)                                      */
/* ==================================================================== */

struct mime_parser;

struct mime_header_field {
	const char *name; /* as in the message, not NUL-terminated */
	size_t name_len;
	const char *value; /* raw: leading whitespace skipped, folds kept as in the
			    * message (CRLF included), truncated to
			    * MIME_MAX_FIELD_SIZE; not NUL-terminated */
	size_t value_len;
	bool truncated;
	uint64_t offset; /* of the field's first byte in the message */
	uint64_t size;   /* physical size including the final line ending */
};

struct mime_parser_settings {
	/* Called for every header field of every part as soon as it is
	 * complete (may be NULL). `part` is the part whose header it is; its
	 * offsets and content fields are not final yet. Pointers in `field`
	 * are valid during the call only. */
	void (*header_cb)(void *ctx, const struct mime_part *part,
			  const struct mime_header_field *field);
	void *ctx;
};

/* Returns a new parser (settings copied; NULL for none), or NULL on ENOMEM. */
struct mime_parser *mime_parser_new(const struct mime_parser_settings *set);
/* Feeds the next `len` bytes of the message; any slicing gives the same
 * result. Returns MIME_NEED_MORE (the parser cannot know the message is over
 * until mime_parser_finish), or MIME_ERROR after an allocation failure
 * (sticky; finish then fails). Memory stays bounded by the MIME_MAX_*
 * limits whatever is fed. */
enum mime_status mime_parser_feed(struct mime_parser *p, const void *data, size_t len);
/* Ends the message: closes open parts at end of input, frees the parser
 * (*p = NULL) and, on success, returns 0 with the tree in *tree_r (owned by
 * the caller). Returns -1 with err set (ERR_TEMP) on allocation failure;
 * *p is freed either way. */
int mime_parser_finish(struct mime_parser **p, struct mime_tree **tree_r, struct error *err);
/* Frees a parser without a result (e.g. the delivery was aborted). */
void mime_parser_free(struct mime_parser **p);
/* Convenience: parses a whole message in memory. Same contract as finish. */
int mime_parse_buffer(const void *data, size_t len, struct mime_tree **tree_r, struct error *err);

/* ==================================================================== */
/* ENVELOPE and BODY/BODYSTRUCTURE (mime_envelope.c, mime_bodystructure.c) */
/* ==================================================================== */

/* Returns the IMAP `envelope` (RFC 9051 7.5.2, RFC 3501 7.4.2) of the message
 * whose header is `msg`'s (the root, or the child of a message/rfc822 part),
 * as a malloc'd NUL-terminated string with its length in *len_r (it may hold
 * literals, hence 8-bit bytes). NULL on ENOMEM. */
char *mime_envelope_imap(const struct mime_part *msg, size_t *len_r);

/* Returns the IMAP `body` (RFC 9051 7.5.2): BODYSTRUCTURE with extension
 * data when `extended`, BODY without. malloc'd, NUL-terminated, length in
 * *len_r; NULL on ENOMEM. Needs a tree from the parser (a deserialised tree
 * lacks the fields it needs). */
char *mime_bodystructure_imap(const struct mime_tree *tree, bool extended, size_t *len_r);

/* ==================================================================== */
/* Sections (mime_section.c)                                             */
/* ==================================================================== */

enum mime_section_kind {
	MIME_SECTION_ALL,        /* BODY[] or BODY[1.2] (the part's body) */
	MIME_SECTION_HEADER,     /* [HEADER], [1.2.HEADER] */
	MIME_SECTION_TEXT,       /* [TEXT], [1.2.TEXT] */
	MIME_SECTION_MIME,       /* [1.2.MIME] */
	MIME_SECTION_HEADER_FIELDS,
	MIME_SECTION_HEADER_FIELDS_NOT,
};

struct mime_section {
	unsigned int path[MIME_MAX_DEPTH + 1];
	unsigned int path_len;
	enum mime_section_kind kind;
	char **fields; /* HEADER.FIELDS names (malloc'd) */
	unsigned int field_count;
};

/* Parses the text between BODY[ and ] (RFC 9051 `section-spec`, e.g. "",
 * "1.2", "HEADER", "2.HEADER.FIELDS (From To)", "3.MIME"); case-insensitive.
 * Returns 0 and fills *section_r (free its fields with mime_section_clear),
 * or -1 with err set (ERR_INVALID, or ERR_TEMP when out of memory). */
int mime_section_parse(const char *spec, size_t len, struct mime_section *section_r,
		       struct error *err);
void mime_section_clear(struct mime_section *section);

/* One piece of a section's content. */
#define MIME_RANGE_CRLF   0x1u /* no file bytes: the two bytes "\r\n" (offset, size 0) */
#define MIME_RANGE_FIX_LF 0x2u /* has bare LF: send with LF converted to CRLF */
struct mime_range {
	uint64_t offset; /* in the message file */
	uint64_t size;   /* physical bytes */
	uint64_t vsize;  /* bytes sent (after conversion) */
	unsigned int flags;
};

struct mime_section_result {
	struct mime_range *ranges; /* malloc'd */
	unsigned int count;
	uint64_t vsize; /* total bytes the section has (before any partial) */
};

/* Random access to the message file, for HEADER.FIELDS and copying. Returns
 * the number of bytes read (short only at end of file) or -1. */
struct mime_source {
	int64_t (*pread)(void *ctx, void *buf, size_t len, uint64_t offset);
	void *ctx;
};
/* Sources over a file descriptor (ctx = (void *)(intptr_t)fd) and over
 * memory (ctx = struct mime_mem_source *). */
int64_t mime_source_fd_pread(void *ctx, void *buf, size_t len, uint64_t offset);
struct mime_mem_source {
	const void *data;
	size_t len;
};
int64_t mime_source_mem_pread(void *ctx, void *buf, size_t len, uint64_t offset);

/* Resolves `section` against the tree into ranges of the message file
 * (RFC 9051 6.4.5). `src` is read only for HEADER.FIELDS[.NOT] (the part's
 * header, at most its header_size bytes). Returns 0 and fills *result_r
 * (free with mime_section_result_free), or -1 with err set: ERR_NOTFOUND
 * when the part does not exist, ERR_INVALID when MIME is asked of the root
 * or HEADER/TEXT of a part that is not a message, ERR_TEMP when src fails
 * or memory runs out, ERR_DATA when the file is shorter than the tree. */
int mime_section_resolve(const struct mime_tree *tree, const struct mime_section *section,
			 const struct mime_source *src, struct mime_section_result *result_r,
			 struct error *err);
void mime_section_result_free(struct mime_section_result *result);

/* Narrows the result in place to the partial <origin.count> (RFC 9051
 * 6.4.5): bytes [origin, origin+count) of the virtual content, so that the
 * server can sendfile each range. Returns 0, or -1 if a range that has to be
 * cut needs LF conversion (then use mime_section_copy with origin/count). */
int mime_section_result_partial(struct mime_section_result *result, uint64_t origin,
				uint64_t count);

/* Writes the section's virtual bytes [origin, origin+count) (count
 * UINT64_MAX for all) to out(ctx, data, len), converting bare LF where the
 * ranges say so. out returns 0 or -1 (stops the copy). Returns 0, or -1
 * with err set on a read or write failure (ERR_TEMP; ERR_DATA when the file
 * is shorter than the ranges). */
int mime_section_copy(const struct mime_section_result *result, const struct mime_source *src,
		      uint64_t origin, uint64_t count,
		      int (*out)(void *ctx, const void *data, size_t len), void *out_ctx,
		      struct error *err);

/* BINARY[section] (RFC 3516): writes the decoded content of the part that
 * `path` names to out (the whole message for path_len 0). Returns 0 with the
 * decoded size in *size_r (BINARY.SIZE when out is NULL), -1 with err set
 * otherwise (as mime_section_resolve and mime_section_copy; ERR_DATA for an
 * unknown Content-Transfer-Encoding); *unknown_cte_r (if not NULL) is set to
 * true when the failure is the part's unknown Content-Transfer-Encoding, for
 * [UNKNOWN-CTE]. */
int mime_section_binary(const struct mime_tree *tree, const unsigned int *path,
			unsigned int path_len, const struct mime_source *src,
			int (*out)(void *ctx, const void *data, size_t len), void *out_ctx,
			uint64_t *size_r, bool *unknown_cte_r, struct error *err);

/* ==================================================================== */
/* Decoding (mime_decode.c, mime_charset.c, mime_param.c)                */
/* ==================================================================== */

/* Streaming Content-Transfer-Encoding decoder (RFC 2045 6.7, 6.8).
 * Base64: characters outside the alphabet are ignored (RFC 2045 6.8), data
 * after padding ends the content. Quoted-printable: soft line breaks removed,
 * trailing whitespace before a line break removed (6.7 rule 3), invalid "="
 * sequences passed through literally. Identity encodings copy. */
struct mime_decoder;
/* NULL on ENOMEM or for MIME_CTE_UNKNOWN. */
struct mime_decoder *mime_decoder_new(enum mime_cte cte);
/* Decodes `len` bytes, calling out with decoded bytes (0 or -1 to stop).
 * Returns 0, or -1 if out failed. */
int mime_decoder_feed(struct mime_decoder *d, const void *data, size_t len,
		      int (*out)(void *ctx, const void *data, size_t len), void *out_ctx);
/* Flushes what a last partial unit holds; same return as feed. */
int mime_decoder_finish(struct mime_decoder *d,
			int (*out)(void *ctx, const void *data, size_t len), void *out_ctx);
void mime_decoder_free(struct mime_decoder **d);
/* Maps a Content-Transfer-Encoding token (case-insensitive) to the enum;
 * len 0 / NULL gives MIME_CTE_7BIT. */
enum mime_cte mime_decode_cte(const char *token, size_t len);

/* Converts `len` bytes in `charset` to UTF-8 (malloc'd, NUL-terminated,
 * length in *out_len_r). Invalid or incomplete sequences become U+FFFD; a
 * charset iconv does not know gives -1 (nothing written) so the caller can
 * fall back; ENOMEM gives -1 too. us-ascii and utf-8 are validated without
 * iconv. RFC 2047 5, RFC 2231 4. */
int mime_charset_to_utf8(const char *charset, const char *in, size_t len, char **out_r,
			 size_t *out_len_r);
/* Appends `len` bytes to `out` as UTF-8 assuming they are UTF-8, replacing
 * every invalid sequence with U+FFFD. */
char *mime_charset_utf8_sanitize(const char *in, size_t len, size_t *out_len_r);

/* Decodes a header field value to UTF-8 for search and sort (RFC 2047):
 * encoded words in B or Q, whitespace between adjacent encoded words
 * dropped (6.2), unknown charsets and undecodable words left as they are,
 * other bytes taken as UTF-8 (invalid ones become U+FFFD), CR/LF removed.
 * Returns a malloc'd string (length in *len_r) or NULL on ENOMEM. */
char *mime_decode_header_utf8(const char *value, size_t len, size_t *len_r);

/* Returns the value of parameter `name` (case-insensitive) decoded to UTF-8:
 * RFC 2231 continuations joined and charset'language'%XX values converted,
 * plain values RFC 2047 decoded (many mailers do that). NULL if absent or
 * ENOMEM; malloc'd otherwise. */
char *mime_param_get_utf8(const struct mime_param *params, unsigned int count,
			  const char *name);

/* ==================================================================== */
/* Preview (mime_preview.c)                                              */
/* ==================================================================== */

/* RFC 8970 3.1: a preview has at most this many characters. */
#define MIME_PREVIEW_MAX 256
/* The PREVIEW of the message (RFC 8970): the start of its first text part
 * (text/plain preferred in multipart/alternative, text/html stripped of
 * markup), decoded to UTF-8, whitespace collapsed, at most MIME_PREVIEW_MAX
 * characters; "" when it has no text. Needs a tree from the parser (it
 * reads Content-Disposition); reads at most 64 KiB of src. Returns 0 with
 * a malloc'ed NUL-terminated string (length in *len_r), or -1 when src
 * fails or memory runs out. */
int mime_preview(const struct mime_tree *tree, const struct mime_source *src, char **out_r,
		 size_t *len_r);

/* ==================================================================== */
/* Addresses (mime_address.c)                                            */
/* ==================================================================== */

/* One element of an address list (RFC 5322 3.4). Groups are a start element
 * (mailbox = group name, host NULL) and an end element (all NULL), as in
 * the IMAP ENVELOPE (RFC 9051 7.5.2). */
struct mime_address {
	char *name;    /* display name (phrase, or a trailing comment), raw; NULL if none */
	char *route;   /* obs-route "@a,@b" or NULL */
	char *mailbox; /* local-part, or group name at a group start; NULL at a group end */
	char *host;    /* domain; NULL for group start/end */
	struct mime_address *next;
};
/* Parses an address-list field value (unfolded). Returns 0 and the list (may
 * be NULL when empty; free with mime_address_free), or -1 on ENOMEM. Never
 * fails on syntax: what cannot be parsed becomes the best-effort address
 * Dovecot also gives (see mime_address.c). */
int mime_address_parse(const char *value, size_t len, struct mime_address **list_r);
void mime_address_free(struct mime_address **list);
/* Display name of the first address decoded to UTF-8 (RFC 5256 DISPLAYFROM
 * rule: the display name, else mailbox@host). NULL if no address/ENOMEM. */
char *mime_address_display_utf8(const struct mime_address *list);

/* ==================================================================== */
/* Base subject (mime_subject.c)                                         */
/* ==================================================================== */

/* RFC 5256 2.1 base subject of a Subject value: RFC 2047 decoded to UTF-8,
 * whitespace collapsed, subj-trailer/subj-leader/subj-blob removed,
 * [fwd: ] unwrapped, repeated to a fixed point. malloc'd, NULL on ENOMEM.
 * *is_reply_r (optional) tells whether anything reply- or forward-like was
 * removed (used by THREAD=ORDEREDSUBJECT). */
char *mime_subject_base(const char *value, size_t len, bool *is_reply_r);

#endif
