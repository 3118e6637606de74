/*
 * mime_private.h: helpers shared by the src/mime files and by nothing else.
 *
 * Nothing here is part of the module's API (that is mime.h). The layer keeps
 * its own growable buffer and arena because src/mime depends on libc and
 * iconv only (it sits beside src/store, below src/imap).
 *
 * Buffers never fail loudly: an allocation failure sets `failed`, later
 * appends become no-ops, and the caller checks `failed` once at the end.
 * This keeps the byte-level code free of error plumbing while still never
 * returning truncated data as if it were whole.
 */
#ifndef MAILROOM_MIME_PRIVATE_H
#define MAILROOM_MIME_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mime/mime.h"

/* ---- growable byte buffer (mime_buf_*) ---- */
struct mime_buf {
	char *data; /* NUL-terminated when len > 0 or after mime_buf_cstr() */
	size_t len;
	size_t cap;
	bool failed; /* an allocation failed; contents are incomplete */
};

/* Appends; on allocation failure sets b->failed and does nothing. */
void mime_buf_append(struct mime_buf *b, const void *data, size_t len);
void mime_buf_putc(struct mime_buf *b, char c);
void mime_buf_puts(struct mime_buf *b, const char *s);
void mime_buf_printf(struct mime_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Returns a NUL-terminated view of the contents (never NULL: "" when
 * empty or failed); valid until the next append or free. */
const char *mime_buf_cstr(struct mime_buf *b);
/* Hands the contents to the caller (malloc'd, NUL-terminated, length in
 * *len_r if len_r != NULL) and resets the buffer. Returns NULL if the buffer
 * failed (then it is reset too). An empty buffer gives "" (malloc'd). */
char *mime_buf_steal(struct mime_buf *b, size_t *len_r);
void mime_buf_reset(struct mime_buf *b); /* len = 0, failed = false, keeps memory */
void mime_buf_free(struct mime_buf *b);

/* ---- arena (mime_arena_*) ---- */
struct mime_arena;
struct mime_arena *mime_arena_new(void);            /* NULL on ENOMEM */
void *mime_arena_alloc(struct mime_arena *a, size_t size); /* zeroed; NULL on ENOMEM */
char *mime_arena_strndup(struct mime_arena *a, const char *s, size_t len);
size_t mime_arena_used(const struct mime_arena *a);
void mime_arena_free(struct mime_arena **a);

/* ---- RFC 5322 / RFC 2045 lexical helpers (mime_lex_*) ----
 * All take [*pos, end) and advance *pos. None allocates except into `out`. */
/* Skips CFWS: whitespace, CR, LF and nested (comments). RFC 5322 3.2.2.
 * If comment_r is not NULL, the text of the last comment seen (without
 * the parentheses, quoted-pairs undone) replaces its contents. */
void mime_lex_skip_cfws(const char **pos, const char *end, struct mime_buf *comment_r);
/* RFC 2045 5.1 token: any CHAR except SPACE, CTLs and tspecials. Returns its
 * length (0 if none) and sets *start_r. */
size_t mime_lex_token(const char **pos, const char *end, const char **start_r);
/* RFC 5322 3.2.3 atom characters (atext). Bytes >= 0x80 are accepted as
 * atext too (RFC 6532 3.2) so 8-bit headers still parse. */
size_t mime_lex_atom(const char **pos, const char *end, const char **start_r);
/* Quoted string starting at *pos (which must be '"'): appends its contents,
 * quoted-pairs undone, CRLF folds removed, to out. Unterminated strings end
 * at `end`. RFC 5322 3.2.4. */
void mime_lex_quoted(const char **pos, const char *end, struct mime_buf *out);

/* ---- field unfolding ---- */
/* Appends `value` to out with every LF and every CR before an LF removed
 * (RFC 5322 2.2.3 unfolding), every other CR replaced by a space and every
 * NUL replaced by 0x80, trimming leading and trailing whitespace when `trim`.
 * A bare CR is not a line ending (RFC 5322 2.2 allows CR only in CRLF, and
 * the parser, like Dovecot's, ends lines at LF), but it must not join the
 * text around it: "charset=UTF-8\rReturn-Path: <x>" would otherwise give
 * the charset "UTF-8Return-Path". As a space it ends the token, and the
 * field value reads as Dovecot reads it (its rfc822 lexer skips CR as
 * whitespace; Content-ID "<a\rb@c>" is "<a b@c>" in its BODYSTRUCTURE). */
void mime_unfold(struct mime_buf *out, const char *value, size_t len, bool trim);

/* ---- IMAP string output (mime_imap_*) ---- */
/* Appends s as an IMAP `string` (RFC 9051 4.3): quoted if every byte is a
 * 7-bit CHAR other than CR/LF and at most 4 need a backslash escape; a {n}
 * literal otherwise. NUL bytes are sent as 0x80 (IMAP strings cannot carry
 * NUL). (mime_imap.c) */
void mime_imap_string(struct mime_buf *out, const char *s, size_t len);
/* As mime_imap_string, NIL for s == NULL. */
void mime_imap_nstring(struct mime_buf *out, const char *s, size_t len);
/* A string meant for people (ENVELOPE subject, display names): quoted only
 * when no byte needs escaping, else a literal; "" when empty. */
void mime_imap_string_human(struct mime_buf *out, const char *s, size_t len);

bool mime_ascii_ieq(const char *a, size_t alen, const char *b);

/* ---- content fields (mime_content.c) ---- */
struct mime_arena;
/* Fills part's type, params, cte, disposition and languages from its kept
 * raw fields (RFC 2045, 2183, 3282), applying the RFC 2045 5.2 / RFC 2046
 * 5.1.5 defaults. Sets *failed_r on ENOMEM. */
void mime_content_parse(struct mime_arena *arena, struct mime_part *part, bool digest_child,
			bool *failed_r);

/* ---- parameters (mime_param.c) ---- */
/* Parses `*(";" parameter)` (RFC 2045 5.1) from [*pos, end), merges RFC 2231
 * continuations the way Dovecot does (see mime_param.c) and stores the
 * result in the arena. Returns 0, -1 on ENOMEM. */
int mime_param_parse_list(struct mime_arena *arena, const char **pos, const char *end,
			  struct mime_param **params_r, unsigned int *count_r);

#endif
