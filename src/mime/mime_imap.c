/*
 * mime_imap.c: IMAP string output for ENVELOPE and BODYSTRUCTURE (RFC 9051
 * 4.3, RFC 3501 4.3).
 *
 * Design note: the grammar lets a server send any string as quoted or as a
 * literal, as long as a quoted one holds only 7-bit TEXT-CHARs. Where the
 * choice is free we make Dovecot's, so that clients (and our corpus test)
 * see the bytes they see from Dovecot:
 *   - quoted, with " and \ escaped, when the value is 7-bit without CR/LF
 *     and needs at most 4 escapes; a literal otherwise;
 *   - for strings meant for people (ENVELOPE subject and display names),
 *     a literal as soon as one byte would need escaping.
 * NUL cannot be in an IMAP string (CHAR8 excludes it): it goes out as 0x80.
 */
#include "mime/mime_private.h"

static void literal(struct mime_buf *out, const char *s, size_t len)
{
	mime_buf_printf(out, "{%zu}\r\n", len);
	size_t run = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\0') {
			mime_buf_append(out, s + run, i - run);
			mime_buf_putc(out, (char)0x80);
			run = i + 1;
		}
	}
	mime_buf_append(out, s + run, len - run);
}

void mime_imap_string(struct mime_buf *out, const char *s, size_t len)
{
	unsigned int escapes = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x80 || c == '\r' || c == '\n' || c == '\0' ||
		    ((c == '"' || c == '\\') && ++escapes > 4)) {
			literal(out, s, len);
			return;
		}
	}
	mime_buf_putc(out, '"');
	size_t run = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\') {
			mime_buf_append(out, s + run, i - run);
			mime_buf_putc(out, '\\');
			run = i;
		}
	}
	mime_buf_append(out, s + run, len - run);
	mime_buf_putc(out, '"');
}

void mime_imap_nstring(struct mime_buf *out, const char *s, size_t len)
{
	if (s == NULL)
		mime_buf_puts(out, "NIL");
	else
		mime_imap_string(out, s, len);
}

void mime_imap_string_human(struct mime_buf *out, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x80 || c == '\r' || c == '\n' || c == '\0' || c == '"' || c == '\\') {
			literal(out, s, len);
			return;
		}
	}
	mime_buf_putc(out, '"');
	mime_buf_append(out, s, len);
	mime_buf_putc(out, '"');
}
