/*
 * store_name.c: IMAP mailbox names <-> directory names in the user's root.
 *
 * Layout (Maildir++ style, flat): INBOX is the directory "INBOX"; any other
 * mailbox "a/b/c" is the directory ".a.b.c". Within a component, '.', '%'
 * and control characters are written %XX, so every valid name maps to exactly
 * one directory and back, a child called "tmp", "new" or "cur" cannot collide
 * with its parent's maildir folders, and no name yields "..", a '/' or an
 * empty component. UTF-8 is kept as is, so `ls` shows readable names.
 *
 * Names refused (ERR_INVALID): empty, longer than STORE_MAX_MAILBOX_NAME,
 * invalid UTF-8, control characters, an empty component (leading, trailing or
 * doubled '/'), a component "." or "..", the LIST wildcards '*' and '%'
 * (RFC 9051 5.1 lets a server refuse them), and anything whose directory name
 * would exceed 255 bytes.
 */
#include "store/store_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/buf.h"

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *p)
{
	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		return (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (p[0] >= 0xe0 && p[0] <= 0xef) {
		if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
			return 0;
		if (p[0] == 0xe0 && p[1] < 0xa0)
			return 0; /* overlong */
		if (p[0] == 0xed && p[1] >= 0xa0)
			return 0; /* surrogates */
		return 3;
	}
	if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
			return 0;
		if (p[0] == 0xf0 && p[1] < 0x90)
			return 0;
		if (p[0] == 0xf4 && p[1] >= 0x90)
			return 0;
		return 4;
	}
	return 0;
}

static int name_check(const char *name, struct error *err)
{
	size_t len = strlen(name);
	if (len == 0 || len > STORE_MAX_MAILBOX_NAME) {
		error_set(err, ERR_INVALID, "mailbox name is empty or too long");
		return -1;
	}
	const unsigned char *p = (const unsigned char *)name;
	const unsigned char *comp = p;
	for (;;) {
		if (*p == '/' || *p == '\0') {
			size_t clen = (size_t)(p - comp);
			if (clen == 0 || (clen == 1 && comp[0] == '.') ||
			    (clen == 2 && comp[0] == '.' && comp[1] == '.')) {
				error_set(err, ERR_INVALID,
					  "mailbox name has an empty, '.' or '..' level");
				return -1;
			}
			if (*p == '\0')
				return 0;
			comp = ++p;
			continue;
		}
		if (*p < 0x20 || *p == 0x7f || *p == '*' || *p == '%') {
			error_set(err, ERR_INVALID,
				  "mailbox name has a control character or a wildcard");
			return -1;
		}
		size_t n = utf8_seq(p);
		if (n == 0) {
			error_set(err, ERR_INVALID, "mailbox name is not valid UTF-8");
			return -1;
		}
		p += n;
	}
}

int store_name_normalize(const char *name, char **norm_r, struct error *err)
{
	if (name_check(name, err) < 0)
		return -1;
	char *n = strdup(name);
	if (n == NULL) {
		error_set(err, ERR_TEMP, "out of memory");
		return -1;
	}
	/* RFC 9051 5.1: INBOX is case-insensitive, also as a parent. */
	if (strncasecmp(n, "INBOX", 5) == 0 && (n[5] == '\0' || n[5] == '/'))
		memcpy(n, "INBOX", 5);
	*norm_r = n;
	return 0;
}

int store_name_to_dir(const char *name, char **dir_r, struct error *err)
{
	char *norm;
	struct buf b = BUF_INIT;

	if (store_name_normalize(name, &norm, err) < 0)
		return -1;
	if (strcmp(norm, "INBOX") == 0) {
		*dir_r = norm;
		return 0;
	}
	buf_putc(&b, '.');
	for (const unsigned char *p = (const unsigned char *)norm; *p != '\0'; p++) {
		if (*p == '/')
			buf_putc(&b, '.');
		else if (*p == '.' || *p == '%' || *p < 0x20 || *p == 0x7f)
			buf_printf(&b, "%%%02X", *p);
		else
			buf_putc(&b, (char)*p);
	}
	free(norm);
	if (b.failed || b.len > 255) {
		buf_free(&b);
		error_set(err, ERR_INVALID, "mailbox name is too long");
		return -1;
	}
	*dir_r = buf_steal(&b);
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int store_name_from_dir(const char *dir, char **name_r)
{
	struct buf b = BUF_INIT;
	struct error err;

	if (strcmp(dir, "INBOX") == 0) {
		*name_r = strdup("INBOX");
		return *name_r ? 0 : -1;
	}
	if (dir[0] != '.' || dir[1] == '\0')
		return -1;
	for (const char *p = dir + 1; *p != '\0'; p++) {
		if (*p == '.') {
			buf_putc(&b, '/');
		} else if (*p == '%') {
			int hi = hexval(p[1]);
			int lo = hi < 0 ? -1 : hexval(p[2]);
			if (lo < 0)
				goto fail;
			buf_putc(&b, (char)(hi * 16 + lo));
			p += 2;
		} else {
			buf_putc(&b, *p);
		}
	}
	if (b.failed || name_check(buf_cstr(&b), &err) < 0)
		goto fail;
	/* Only the canonical spelling is a mailbox: ".INBOX" is not INBOX, and a
	 * directory with a needless escape is not ours. */
	char *canon;
	if (store_name_to_dir(buf_cstr(&b), &canon, &err) < 0)
		goto fail;
	int same = strcmp(canon, dir) == 0;
	free(canon);
	if (!same)
		goto fail;
	*name_r = buf_steal(&b);
	return *name_r ? 0 : -1;
fail:
	buf_free(&b);
	return -1;
}
