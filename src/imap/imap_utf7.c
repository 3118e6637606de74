/*
 * imap_utf7.c: modified UTF-7 (RFC 3501 section 5.1.3); see imap_utf7.h.
 *
 * Design note
 * -----------
 * Modified UTF-7 differs from RFC 2152 UTF-7: "&" shifts instead of "+",
 * "&-" is a literal "&", the BASE64 alphabet uses "," for "/", there is no
 * padding, every shift ends with "-", and every printable US-ASCII
 * character (0x20-0x7e) must represent itself. The text in a shift is
 * UTF-16BE; astral characters are surrogate pairs.
 *
 * Canonical form. The encoder puts each maximal run of non-printable
 * characters in one shift, and the decoder accepts only what the encoder
 * would produce: a shift never follows a shift directly, its leftover bits
 * (6n mod 16 of them, fewer than 6) are zero, and it holds no character
 * that could be written directly. So decode and encode are inverse
 * bijections between valid names; the fuzz target checks both directions.
 */
#include "imap/imap_utf7.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "lib/base64.h"
#include "lib/buf.h"

static const char b64chars[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";


static void put_utf8(struct buf *out, uint32_t cp)
{
	char b[4];
	size_t n;
	if (cp < 0x80) {
		b[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (char)(0xc0 | (cp >> 6));
		b[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (char)(0xe0 | (cp >> 12));
		b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (char)(0xf0 | (cp >> 18));
		b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	buf_append(out, b, n);
}

/* Decodes one UTF-8 character at s[*pos]; -1 when invalid. */
static int get_utf8(const unsigned char *s, size_t len, size_t *pos, uint32_t *cp_r)
{
	size_t i = *pos;
	unsigned char c = s[i];
	uint32_t cp, min;
	size_t n;
	if (c < 0x80) {
		*cp_r = c;
		*pos = i + 1;
		return 0;
	} else if (c >= 0xc2 && c <= 0xdf) {
		cp = c & 0x1f;
		n = 1;
		min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		cp = c & 0x0f;
		n = 2;
		min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		cp = c & 0x07;
		n = 3;
		min = 0x10000;
	} else {
		return -1;
	}
	if (len - i - 1 < n)
		return -1;
	for (size_t k = 1; k <= n; k++) {
		if ((s[i + k] & 0xc0) != 0x80)
			return -1;
		cp = (cp << 6) | (s[i + k] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return -1;
	*cp_r = cp;
	*pos = i + n + 1;
	return 0;
}

int imap_utf7_utf8_check(const char *s, size_t len, struct error *err)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0;
	while (i < len) {
		uint32_t cp;
		if (get_utf8(u, len, &i, &cp) < 0) {
			error_set(err, ERR_INVALID, "Invalid UTF-8");
			return -1;
		}
		if (cp == 0) {
			error_set(err, ERR_INVALID, "NUL in mailbox name");
			return -1;
		}
	}
	return 0;
}

static bool is_direct(uint32_t c)
{
	return c >= 0x20 && c <= 0x7e;
}

int imap_utf7_decode(const char *s, size_t len, struct buf *out, struct error *err)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t start_len = out->len;
	bool after_shift = false;
	size_t i = 0;

	while (i < len) {
		unsigned char c = u[i];
		if (!is_direct(c)) {
			error_set(err, ERR_INVALID, "Invalid character in modified UTF-7 name");
			goto fail;
		}
		if (c != '&') {
			buf_putc(out, (char)c);
			after_shift = false;
			i++;
			continue;
		}
		i++;
		if (i < len && u[i] == '-') {
			buf_putc(out, '&');
			after_shift = false;
			i++;
			continue;
		}
		if (after_shift) {
			error_set(err, ERR_INVALID, "Adjacent modified BASE64 shifts");
			goto fail;
		}
		/* a shift: modified BASE64 of UTF-16BE, up to "-" */
		uint32_t bits = 0;
		unsigned int nbits = 0;
		uint32_t high = 0; /* pending high surrogate */
		size_t units = 0;
		for (;;) {
			if (i >= len) {
				error_set(err, ERR_INVALID, "Unterminated modified BASE64 shift");
				goto fail;
			}
			if (u[i] == '-')
				break;
			int v = base64_value(u[i], ',');
			if (v < 0) {
				error_set(err, ERR_INVALID, "Invalid modified BASE64");
				goto fail;
			}
			i++;
			bits = (bits << 6) | (uint32_t)v;
			nbits += 6;
			if (nbits < 16)
				continue;
			nbits -= 16;
			uint32_t unit = (bits >> nbits) & 0xffff;
			bits &= (1u << nbits) - 1;
			units++;
			if (high != 0) {
				if (unit < 0xdc00 || unit > 0xdfff) {
					error_set(err, ERR_INVALID, "Unpaired UTF-16 surrogate");
					goto fail;
				}
				put_utf8(out, 0x10000 + ((high - 0xd800) << 10) + (unit - 0xdc00));
				high = 0;
			} else if (unit >= 0xd800 && unit <= 0xdbff) {
				high = unit;
			} else if (unit >= 0xdc00 && unit <= 0xdfff) {
				error_set(err, ERR_INVALID, "Unpaired UTF-16 surrogate");
				goto fail;
			} else if (is_direct(unit) || unit == 0) {
				error_set(
					err, ERR_INVALID,
					"Modified BASE64 encodes a character that must be direct");
				goto fail;
			} else {
				put_utf8(out, unit);
			}
		}
		i++; /* the "-" */
		if (units == 0 || nbits >= 6 || bits != 0) {
			error_set(err, ERR_INVALID,
				  "Invalid modified BASE64 length or padding bits");
			goto fail;
		}
		if (high != 0) {
			error_set(err, ERR_INVALID, "Unpaired UTF-16 surrogate");
			goto fail;
		}
		after_shift = true;
	}
	if (out->failed) {
		error_set(err, ERR_TEMP, "Out of memory");
		goto fail;
	}
	return 0;
fail:
	buf_truncate(out, start_len);
	return -1;
}

int imap_utf7_encode(const char *s, size_t len, struct buf *out, struct error *err)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t start_len = out->len;
	uint16_t units[64];
	size_t nunits = 0;
	size_t i = 0;

	/* A run is written in pieces of whole characters; pieces of one run
	 * must form a single shift, so bits are carried across them. */
	uint32_t bits = 0;
	unsigned int nbits = 0;
	bool in_shift = false;

	while (i <= len) {
		uint32_t cp = 0;
		bool end = i == len;
		if (!end && get_utf8(u, len, &i, &cp) < 0) {
			error_set(err, ERR_INVALID, "Invalid UTF-8");
			goto fail;
		}
		if (!end && cp == 0) {
			error_set(err, ERR_INVALID, "NUL in mailbox name");
			goto fail;
		}
		if (!end && !is_direct(cp)) {
			if (!in_shift) {
				buf_putc(out, '&');
				in_shift = true;
			}
			if (cp >= 0x10000) {
				units[nunits++] = (uint16_t)(0xd800 + ((cp - 0x10000) >> 10));
				units[nunits++] = (uint16_t)(0xdc00 + ((cp - 0x10000) & 0x3ff));
			} else {
				units[nunits++] = (uint16_t)cp;
			}
		}
		if (nunits > 0 && (end || is_direct(cp) || nunits >= 62)) {
			for (size_t k = 0; k < nunits; k++) {
				bits = (bits << 16) | units[k];
				nbits += 16;
				while (nbits >= 6) {
					nbits -= 6;
					buf_putc(out, b64chars[(bits >> nbits) & 0x3f]);
				}
				bits &= (1u << nbits) - 1;
			}
			nunits = 0;
		}
		if (in_shift && (end || is_direct(cp))) {
			if (nbits > 0)
				buf_putc(out, b64chars[(bits << (6 - nbits)) & 0x3f]);
			buf_putc(out, '-');
			bits = 0;
			nbits = 0;
			in_shift = false;
		}
		if (end)
			break;
		if (is_direct(cp)) {
			if (cp == '&')
				buf_puts(out, "&-");
			else
				buf_putc(out, (char)cp);
		}
	}
	if (out->failed) {
		error_set(err, ERR_TEMP, "Out of memory");
		goto fail;
	}
	return 0;
fail:
	buf_truncate(out, start_len);
	return -1;
}
