/*
 * store_box.c: the mailroom-box file, one per mailbox.
 *
 * It holds what a client can see and the files alone cannot tell: the
 * UIDVALIDITY, a floor for UIDNEXT (raised whenever the highest UIDs are
 * expunged, so a rebuilt index never hands a UID out twice), the modseqs
 * reserved ahead (every modseq ever handed out is below `modseq`), the
 * mailbox GUID, its special-use attribute, and which maildir letter is which
 * keyword. It is small text, replaced atomically (fsx_write_file_atomic):
 *
 *   uidvalidity 1732900000
 *   uidnext 17
 *   modseq 8192
 *   guid 6b1f...
 *   special-use \Sent
 *   keyword 0 $Forwarded
 *
 * Modseqs are handed out here (store_box_next_modseq): the index counts
 * them, and each time the count reaches the reserve, the reserve moves
 * STORE_MODSEQ_CHUNK ahead in this file, durably, before the modseq is used.
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/fsx.h"
#include "lib/strnum.h"

#define BOX_FILE "mailroom-box"
#define UIDVALIDITY_FILE "mailroom-uidvalidity"

void store_box_clear(struct store_box *box)
{
	for (unsigned i = 0; i < STORE_MAX_KEYWORDS; i++)
		free(box->keywords[i]);
	memset(box, 0, sizeof(*box));
}

void store_box_init(struct store_box *box, uint32_t uidvalidity)
{
	unsigned char rnd[16] = { 0 };
	memset(box, 0, sizeof(*box));
	box->uidvalidity = uidvalidity;
	box->uid_floor = 1;
	box->modseq_reserved = STORE_MODSEQ_CHUNK;
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (read(fd, rnd, sizeof(rnd)) < 0)
			memset(rnd, 0, sizeof(rnd));
		close(fd);
	}
	for (int i = 0; i < 16; i++)
		snprintf(box->guid + 2 * i, 3, "%02x", rnd[i]);
}

static int keyword_valid(const char *kw)
{
	/* An IMAP atom (RFC 9051 flag-keyword): no specials, no '\'. */
	if (*kw == '\0' || strlen(kw) > 100)
		return 0;
	for (const unsigned char *p = (const unsigned char *)kw; *p != '\0'; p++)
		if (*p <= 0x20 || *p >= 0x7f || strchr("(){%*\"\\]", *p) != NULL)
			return 0;
	return 1;
}

int store_box_read(int dir_fd, struct store_box *box_r, struct error *err)
{
	char *data;
	size_t len;
	struct store_box box;
	memset(&box, 0, sizeof(box));

	if (fsx_read_file(dir_fd, BOX_FILE, 65536, &data, &len) < 0) {
		error_errno(err, "cannot read mailroom-box");
		return -1;
	}
	char *save = NULL;
	for (char *line = strtok_r(data, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		char *sp = strchr(line, ' ');
		if (line[0] == '#' || sp == NULL)
			continue;
		*sp = '\0';
		const char *v = sp + 1;
		uint64_t n;
		if (strcmp(line, "uidvalidity") == 0 && strnum_u64z(v, UINT32_MAX, &n) == 0)
			box.uidvalidity = (uint32_t)n;
		else if (strcmp(line, "uidnext") == 0 && strnum_u64z(v, UINT32_MAX, &n) == 0)
			box.uid_floor = (uint32_t)n;
		else if (strcmp(line, "modseq") == 0 && strnum_u64z(v, INT64_MAX, &n) == 0)
			box.modseq_reserved = n;
		else if (strcmp(line, "guid") == 0)
			snprintf(box.guid, sizeof(box.guid), "%s", v);
		else if (strcmp(line, "special-use") == 0)
			snprintf(box.special_use, sizeof(box.special_use), "%s", v);
		else if (strcmp(line, "keyword") == 0) {
			const char *sp2 = strchr(v, ' ');
			if (sp2 != NULL && strnum_u64(v, (size_t)(sp2 - v), STORE_MAX_KEYWORDS - 1, &n) == 0 &&
			    keyword_valid(sp2 + 1) && box.keywords[n] == NULL)
				box.keywords[n] = strdup(sp2 + 1);
		}
	}
	free(data);
	if (box.uidvalidity == 0) {
		store_box_clear(&box);
		error_set(err, ERR_TEMP, "mailroom-box has no valid uidvalidity");
		return -1;
	}
	if (box.uid_floor == 0)
		box.uid_floor = 1;
	*box_r = box;
	return 0;
}

int store_box_write(int dir_fd, const struct store_box *box, struct error *err)
{
	struct buf b = BUF_INIT;
	buf_printf(&b,
		   "# mailroom mailbox state (see README: store format)\n"
		   "uidvalidity %u\nuidnext %u\nmodseq %llu\nguid %s\n",
		   box->uidvalidity, box->uid_floor, (unsigned long long)box->modseq_reserved,
		   box->guid);
	if (box->special_use[0] != '\0')
		buf_printf(&b, "special-use %s\n", box->special_use);
	for (unsigned i = 0; i < STORE_MAX_KEYWORDS; i++)
		if (box->keywords[i] != NULL)
			buf_printf(&b, "keyword %u %s\n", i, box->keywords[i]);
	if (b.failed) {
		buf_free(&b);
		error_set(err, ERR_TEMP, "out of memory");
		return -1;
	}
	int ret = fsx_write_file_atomic(dir_fd, BOX_FILE, b.data, b.len);
	if (ret < 0)
		error_errno(err, "cannot write mailroom-box");
	buf_free(&b);
	return ret;
}

int store_box_next_uidvalidity(struct store_user *user, uint32_t *uv_r, struct error *err)
{
	char *data = NULL;
	size_t len;
	uint64_t last = 0;
	char text[32];

	/* Callers hold the user-root lock (mailbox create/rename). */
	if (fsx_read_file(user->root_fd, UIDVALIDITY_FILE, 64, &data, &len) == 0) {
		data[strcspn(data, "\n")] = '\0';
		if (strnum_u64z(data, UINT32_MAX, &last) < 0)
			last = 0;
		free(data);
	}
	uint64_t now = (uint64_t)time(NULL);
	uint64_t uv = now > last ? now : last + 1;
	if (uv > UINT32_MAX)
		uv = 1; /* 2106: wraps; UIDVALIDITY must only differ, not grow */
	snprintf(text, sizeof(text), "%llu\n", (unsigned long long)uv);
	if (fsx_write_file_atomic(user->root_fd, UIDVALIDITY_FILE, text, strlen(text)) < 0) {
		error_errno(err, "cannot write mailroom-uidvalidity");
		return -1;
	}
	*uv_r = (uint32_t)uv;
	return 0;
}

int store_box_save(struct store_mailbox *mbox, struct error *err)
{
	return store_box_write(mbox->dir_fd, &mbox->box, err);
}

int store_box_next_modseq(struct store_mailbox *mbox, uint64_t *modseq_r, struct error *err)
{
	struct store_user *user = mbox->user;
	sqlite3_stmt *st = store_index_stmt(
		user, "UPDATE mailbox SET highestmodseq=highestmodseq+1 WHERE id=? RETURNING highestmodseq",
		err);
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, mbox->id);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_reset(st);
		store_index_sqlerr(user, err, "modseq");
		return -1;
	}
	uint64_t m = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (m >= mbox->box.modseq_reserved) {
		/* Reserve ahead, durably, before handing this one out. */
		uint64_t old = mbox->box.modseq_reserved;
		mbox->box.modseq_reserved = m + STORE_MODSEQ_CHUNK;
		if (store_box_save(mbox, err) < 0) {
			mbox->box.modseq_reserved = old;
			return -1;
		}
	}
	*modseq_r = m;
	return 0;
}
