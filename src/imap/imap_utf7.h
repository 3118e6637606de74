/*
 * imap_utf7.h: modified UTF-7 mailbox names (RFC 3501 section 5.1.3,
 * RFC 9051 section 5.1 for IMAP4rev1 clients) to UTF-8 and back. Strict in
 * both directions, so that a name has exactly one encoding and
 * imap_utf7_encode(imap_utf7_decode(x)) == x for every accepted x: two
 * different wire names can never reach the same mailbox.
 */
#ifndef MAILROOM_IMAP_UTF7_H
#define MAILROOM_IMAP_UTF7_H

#include <stddef.h>

#include "lib/error.h"

struct buf;

/*
 * Decodes the mUTF-7 name s[0..len) and appends its UTF-8 form to out.
 * Rejects: bytes outside printable US-ASCII; "&" not followed by "-" or
 * modified BASE64; a shift not closed by "-"; BASE64 that encodes printable
 * US-ASCII (which must represent itself) or U+0000; non-zero or too many
 * leftover bits; unpaired UTF-16 surrogates; two shifts in a row ("&AOk-&AOk-"
 * is spelled "&AOkA6Q-"). Returns 0, or -1 with err set (ERR_INVALID, or
 * ERR_TEMP when out of memory) and out unchanged (also on allocation failure, seen as out->failed).
 */
int imap_utf7_decode(const char *s, size_t len, struct buf *out, struct error *err);

/*
 * Encodes the UTF-8 name s[0..len) as mUTF-7 and appends it to out.
 * Rejects invalid UTF-8 (overlong forms, surrogates, above U+10FFFF,
 * truncated sequences) and U+0000. Returns 0, or -1 with err set (ERR_INVALID,
 * or ERR_TEMP when out of memory) and out unchanged.
 */
int imap_utf7_encode(const char *s, size_t len, struct buf *out, struct error *err);

/* Checks that s[0..len) is valid UTF-8 without U+0000 (an IMAP4rev2
 * mailbox name, RFC 9051 5.1). Returns 0, or -1 with err set (ERR_INVALID). */
int imap_utf7_utf8_check(const char *s, size_t len, struct error *err);

#endif
