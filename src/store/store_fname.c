/*
 * store_fname.c: maildir file names.
 *
 *   <base>,A=<savedate>,S=<size>,U=<uid>:2,<flags>
 *
 * base is unique (time.MusecPpidQcounterRrandom.host); S= is the file size;
 * U= is the IMAP UID, so that the UID survives the loss of the index; A= is
 * the save date (RFC 8514: when the message entered this mailbox, in Unix
 * seconds; absent in names written before it existed); the
 * flags after ":2," are the maildir letters in ASCII order: D F P R S T for
 * the system flags, then a..z for the mailbox's keywords (mailroom-box says
 * which letter is which keyword). Other ",X=" fields another program put in
 * a name are kept in the base. A name without ":2," (as delivered to new/ by
 * other programs) has no flags; a name with other info after a colon is not
 * a message file of ours and is left alone.
 */
#include "store/store_int.h"

#include <stdio.h>
#include <string.h>

#include "lib/strnum.h"

static const struct {
	char letter;
	uint32_t flag;
} letters[] = {
	{ 'D', STORE_F_DRAFT },	   { 'F', STORE_F_FLAGGED }, { 'P', STORE_F_PASSED },
	{ 'R', STORE_F_ANSWERED }, { 'S', STORE_F_SEEN },    { 'T', STORE_F_DELETED },
};

int store_fname_parse(const char *name, struct store_fname *f_r)
{
	struct store_fname f;
	memset(&f, 0, sizeof(f));
	/* Maildir: everything after the first ':' is info, and the only info
	 * defined is ":2," followed by flags. */
	const char *info = strchr(name, ':');
	size_t base_end = info ? (size_t)(info - name) : strlen(name);

	if (base_end == 0 || name[0] == '.' || (info != NULL && strncmp(info, ":2,", 3) != 0))
		return -1;
	if (info != NULL) {
		f.has_info = 1;
		for (const char *p = info + 3; *p != '\0'; p++) {
			int known = 0;
			for (size_t i = 0; i < sizeof(letters) / sizeof(letters[0]); i++)
				if (*p == letters[i].letter) {
					f.flags |= letters[i].flag;
					known = 1;
				}
			if (*p >= 'a' && *p <= 'z') {
				f.keywords |= 1u << (*p - 'a');
				known = 1;
			}
			(void)known; /* unknown letters are ignored, as maildir says */
		}
	}
	/* Peel ",S=", ",U=" and ",A=" fields off the end of the base, in any
	 * order. */
	size_t end = base_end;
	for (;;) {
		const char *comma = memrchr(name, ',', end);
		if (comma == NULL || (size_t)(comma - name) + 3 > end || comma[2] != '=')
			break;
		const char *val = comma + 3;
		size_t vlen = end - (size_t)(val - name);
		uint64_t v;
		if (comma[1] == 'S' && strnum_u64(val, vlen, UINT64_MAX, &v) == 0)
			f.size = v;
		else if (comma[1] == 'U' && strnum_u64(val, vlen, UINT32_MAX, &v) == 0 && v > 0)
			f.uid = (uint32_t)v;
		else if (comma[1] == 'A' && strnum_u64(val, vlen, INT64_MAX, &v) == 0 && v > 0)
			f.savedate = (int64_t)v;
		else
			break;
		end = (size_t)(comma - name);
	}
	if (end == 0 || end >= sizeof(f.base))
		return -1;
	memcpy(f.base, name, end);
	f.base[end] = '\0';
	*f_r = f;
	return 0;
}

int store_fname_build(const struct store_fname *f, char *out, size_t outsize)
{
	char flags[64];
	size_t n = 0;
	for (size_t i = 0; i < sizeof(letters) / sizeof(letters[0]); i++)
		if (f->flags & letters[i].flag)
			flags[n++] = letters[i].letter;
	for (unsigned k = 0; k < STORE_MAX_KEYWORDS; k++)
		if (f->keywords & (1u << k))
			flags[n++] = (char)('a' + k);
	flags[n] = '\0';
	char uid[24] = "";
	if (f->uid != 0) /* files not yet given a UID (never in cur/ for long) */
		snprintf(uid, sizeof(uid), ",U=%u", f->uid);
	char saved[32] = "";
	if (f->savedate > 0)
		snprintf(saved, sizeof(saved), ",A=%lld", (long long)f->savedate);
	int len = snprintf(out, outsize, "%s%s,S=%llu%s:2,%s", f->base, saved,
			   (unsigned long long)f->size, uid, flags);
	return len < 0 || (size_t)len >= outsize ? -1 : 0;
}
