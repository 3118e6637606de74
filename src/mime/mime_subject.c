/*
 * mime_subject.c: base subject extraction, RFC 5256 2.1, for SORT SUBJECT and
 * THREAD=ORDEREDSUBJECT/REFERENCES.
 *
 * Design note: the algorithm works on the UTF-8 decoded subject (step 1:
 * RFC 2047 decoding, whitespace runs to one space) and then strips, to a
 * fixed point, (2) subj-trailer "(fwd)" and whitespace at the end, (3)
 * subj-leader: subj-blob* and "re"/"fw"/"fwd" [subj-blob] ":" at the start,
 * (4) a leading subj-blob if something non-empty remains, (6) the
 * "[fwd:" ... "]" wrapper. Each step removes at least one byte or stops, so
 * the loops end.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mime/mime_private.h"

static bool is_ws(char c)
{
	return c == ' ' || c == '\t';
}

/* subj-blob = "[" *BLOBCHAR "]" *WSP ; BLOBCHAR excludes "[" and "]" */
static size_t blob_len(const char *s, size_t len)
{
	if (len == 0 || s[0] != '[')
		return 0;
	size_t i = 1;
	while (i < len && s[i] != '[' && s[i] != ']')
		i++;
	if (i >= len || s[i] != ']')
		return 0;
	i++;
	while (i < len && is_ws(s[i]))
		i++;
	return i;
}

/* subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":" */
static size_t refwd_len(const char *s, size_t len)
{
	size_t i;
	if (len >= 2 && strncasecmp(s, "re", 2) == 0)
		i = 2;
	else if (len >= 3 && strncasecmp(s, "fwd", 3) == 0)
		i = 3;
	else if (len >= 2 && strncasecmp(s, "fw", 2) == 0)
		i = 2;
	else
		return 0;
	while (i < len && is_ws(s[i]))
		i++;
	i += blob_len(s + i, len - i);
	if (i < len && s[i] == ':')
		return i + 1;
	return 0;
}

char *mime_subject_base(const char *value, size_t vlen, bool *is_reply_r)
{
	size_t dl;
	char *dec = mime_decode_header_utf8(value, vlen, &dl);
	if (dec == NULL)
		return NULL;
	bool reply = false;
	/* step 1: collapse whitespace runs to one space */
	size_t n = 0;
	for (size_t i = 0; i < dl; i++) {
		char c = dec[i] == '\t' ? ' ' : dec[i];
		if (c == ' ' && (n == 0 || dec[n - 1] == ' '))
			continue;
		dec[n++] = c;
	}
	char *s = dec;
	size_t len = n;
	for (;;) {
		size_t before = len;
		/* step 2: trailers */
		for (;;) {
			if (len > 0 && is_ws(s[len - 1])) {
				len--;
			} else if (len >= 5 && strncasecmp(s + len - 5, "(fwd)", 5) == 0) {
				len -= 5;
				reply = true;
			} else {
				break;
			}
		}
		/* steps 3-5: leaders and blobs, to a fixed point */
		for (;;) {
			size_t l0 = len;
			while (len > 0 && is_ws(s[0])) {
				s++;
				len--;
			}
			/* subj-leader = (*subj-blob subj-refwd) / WSP */
			size_t i = 0, b;
			while ((b = blob_len(s + i, len - i)) > 0)
				i += b;
			size_t r = refwd_len(s + i, len - i);
			if (r > 0) {
				s += i + r;
				len -= i + r;
				reply = true;
			} else {
				/* step 4: a leading blob, if text remains after it */
				b = blob_len(s, len);
				if (b > 0 && b < len) {
					s += b;
					len -= b;
				}
			}
			if (len == l0)
				break;
		}
		/* step 6: [fwd: ... ] */
		if (len >= 6 && strncasecmp(s, "[fwd:", 5) == 0 && s[len - 1] == ']') {
			s += 5;
			len -= 6;
			reply = true;
			continue;
		}
		if (len == before)
			break;
	}
	memmove(dec, s, len);
	dec[len] = '\0';
	if (is_reply_r != NULL)
		*is_reply_r = reply;
	return dec;
}
