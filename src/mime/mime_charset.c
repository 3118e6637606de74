/*
 * mime_charset.c: conversion of any charset iconv knows to UTF-8.
 *
 * Design note: the input is hostile (charset names and bytes both come from
 * the message), so names are checked before iconv_open sees them, output
 * grows in a bounded loop, and every invalid or incomplete sequence becomes
 * U+FFFD (one per skipped byte) instead of an error: search and sort must
 * still see the rest of the text. UTF-8 and US-ASCII are validated here
 * without iconv (RFC 3629 3: no overlong forms, no surrogates, nothing above
 * U+10FFFF).
 */
#include <errno.h>
#include <iconv.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mime/mime_private.h"

static const char replacement[] = "\xEF\xBF\xBD"; /* U+FFFD */

/* Length of the valid UTF-8 sequence at s, or 0 if it is invalid. */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	size_t n;
	uint32_t cp;
	if (c >= 0xC2 && c <= 0xDF) {
		n = 2;
		cp = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		n = 3;
		cp = c & 0x0F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (len < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
	    (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return n;
}

static void sanitize_into(struct mime_buf *out, const char *in, size_t len)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t run = 0, i = 0;
	while (i < len) {
		if (s[i] < 0x80 && s[i] != 0) {
			i++;
			continue;
		}
		size_t n = s[i] == 0 ? 0 : utf8_seq(s + i, len - i);
		if (n > 0) {
			i += n;
			continue;
		}
		mime_buf_append(out, in + run, i - run);
		mime_buf_puts(out, replacement);
		i++;
		run = i;
	}
	mime_buf_append(out, in + run, len - run);
}

char *mime_charset_utf8_sanitize(const char *in, size_t len, size_t *out_len_r)
{
	struct mime_buf out = { 0 };
	sanitize_into(&out, in, len);
	return mime_buf_steal(&out, out_len_r);
}

static bool charset_name_ok(const char *cs, size_t len)
{
	if (len == 0 || len > 40)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)cs[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.' || c == ':' || c == '+'))
			return false;
	}
	return true;
}

int mime_charset_to_utf8(const char *charset, const char *in, size_t len, char **out_r,
			 size_t *out_len_r)
{
	char name[48];
	/* RFC 2231 5: charset*language in encoded words */
	size_t cl = strcspn(charset, "*");
	if (!charset_name_ok(charset, cl))
		return -1;
	memcpy(name, charset, cl);
	name[cl] = '\0';
	if (strcasecmp(name, "utf-8") == 0 || strcasecmp(name, "utf8") == 0 ||
	    strcasecmp(name, "us-ascii") == 0 || strcasecmp(name, "ascii") == 0) {
		/* us-ascii with 8-bit bytes is mislabelled UTF-8 more often
		 * than not; the validator keeps what is valid */
		char *o = mime_charset_utf8_sanitize(in, len, out_len_r);
		if (o == NULL)
			return -1;
		*out_r = o;
		return 0;
	}
	iconv_t cd = iconv_open("UTF-8", name);
	if (cd == (iconv_t)-1)
		return -1;
	struct mime_buf out = { 0 };
	char tmp[4096];
	char *ip = (char *)(uintptr_t)in;
	size_t ileft = len;
	/* each round either consumes input or emits output, and every error
	 * branch skips at least one input byte, so this terminates */
	while (ileft > 0) {
		char *op = tmp;
		size_t oleft = sizeof(tmp);
		size_t r = iconv(cd, &ip, &ileft, &op, &oleft);
		mime_buf_append(&out, tmp, sizeof(tmp) - oleft);
		if (r != (size_t)-1)
			break;
		if (errno == E2BIG)
			continue;
		/* EILSEQ or EINVAL (incomplete at the end) */
		mime_buf_puts(&out, replacement);
		ip++;
		ileft--;
		if (errno == EINVAL) {
			while (ileft > 0) { /* the rest is the same truncated sequence */
				ip++;
				ileft--;
			}
		}
		iconv(cd, NULL, NULL, NULL, NULL);
	}
	/* flush a stateful encoding's shift state (ISO-2022-JP) */
	char *op = tmp;
	size_t oleft = sizeof(tmp);
	iconv(cd, NULL, NULL, &op, &oleft);
	mime_buf_append(&out, tmp, sizeof(tmp) - oleft);
	iconv_close(cd);
	if (out.failed) {
		mime_buf_free(&out);
		return -1;
	}
	/* iconv's UTF-8 output is valid; sanitize anyway against odd
	 * converters that pass bytes through */
	char *o = mime_charset_utf8_sanitize(mime_buf_cstr(&out), out.len, out_len_r);
	mime_buf_free(&out);
	if (o == NULL)
		return -1;
	*out_r = o;
	return 0;
}
