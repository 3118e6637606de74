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
 *
 * Healing (store_box_load). A file that is missing, has no valid
 * uidvalidity, has a line that is not ours, or ends without its newline (a
 * truncated last line is never used: a cut number is another number) is
 * rebuilt under the user-root and mailbox locks, from, in this order: what
 * is left of it, the mailbox's row in the index (UIDVALIDITY, UIDNEXT,
 * HIGHESTMODSEQ) and the index's copy of the keyword names (table keyword,
 * written at every full sync and when a keyword is added), and the file
 * names (the highest UID). A damaged file is kept as
 * mailroom-box.corrupt-<UTC time>; one warning says what was rebuilt from
 * where and what could not be recovered (UIDVALIDITY when neither the file
 * nor the index has it: clients resync; UIDNEXT above the files' UIDs;
 * the names of keyword letters). A missing file with no trace of ours
 * (no index row, no U= in cur/) is a maildir made by another program and
 * quietly gets a new UIDVALIDITY, as before.
 *
 * mailroom-uidvalidity (in the user's root) is the last UIDVALIDITY handed
 * out; lost or damaged, it is recreated above the highest UIDVALIDITY of
 * every mailbox (their mailroom-box files and the index), so a new mailbox
 * never gets the UIDVALIDITY of one that exists.
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/fsx.h"
#include "lib/log.h"
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

enum box_state { BOX_OK, BOX_MISSING, BOX_DAMAGED };

/* Parse mailroom-box as far as it is sound: box_r gets every valid line,
 * *state_r says whether the file was whole (a uidvalidity and no line that
 * is not ours), missing or damaged. A last line without its newline is a
 * truncated one and is not used: "uidvalidity 17329" cut from
 * "uidvalidity 1732900000" would otherwise be another, valid, UIDVALIDITY.
 * -1 only for errors reading it (not ENOENT). */
static int box_parse(int dir_fd, struct store_box *box_r, int *state_r, struct error *err)
{
	char *data;
	size_t len;
	struct store_box box;
	int junk = 0;
	memset(&box, 0, sizeof(box));

	if (fsx_read_file(dir_fd, BOX_FILE, 65536, &data, &len) < 0) {
		if (errno == ENOENT) {
			*box_r = box;
			*state_r = BOX_MISSING;
			return 0;
		}
		error_errno(err, "cannot read mailroom-box");
		return -1;
	}
	if (len > 0 && data[len - 1] != '\n') {
		char *nl = memrchr(data, '\n', len);
		junk = 1;
		if (nl != NULL)
			nl[1] = '\0';
		else
			data[0] = '\0';
	}
	if (strlen(data) != len && !junk)
		junk = 1; /* a NUL byte: not text of ours */
	char *save = NULL;
	for (char *line = strtok_r(data, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		char *sp = strchr(line, ' ');
		if (line[0] == '#')
			continue;
		if (sp == NULL) {
			junk = 1;
			continue;
		}
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
			else
				junk = 1;
		} else
			junk = 1;
	}
	free(data);
	*state_r = box.uidvalidity == 0 || junk ? BOX_DAMAGED : BOX_OK;
	*box_r = box;
	return 0;
}

int store_box_read(int dir_fd, struct store_box *box_r, struct error *err)
{
	struct store_box box;
	int state;
	if (box_parse(dir_fd, &box, &state, err) < 0)
		return -1;
	if (state == BOX_MISSING) {
		error_set(err, ERR_NOTFOUND, "no mailroom-box");
		return -1;
	}
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

/* The highest UIDVALIDITY any mailbox of the user has (its mailroom-box,
 * or its row in the index): what a lost mailroom-uidvalidity said at least. */
static uint64_t highest_uidvalidity(struct store_user *user)
{
	uint64_t hi = 0;
	struct error ignore;
	int fd = dup(user->root_fd);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	if (d == NULL) {
		if (fd >= 0)
			close(fd);
	} else {
		rewinddir(d);
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] == '.' && (de->d_name[1] == '\0' || strcmp(de->d_name, "..") == 0))
				continue;
			int mfd = fsx_opendir_beneath(user->root_fd, de->d_name);
			struct store_box box;
			int state;
			if (mfd < 0)
				continue;
			if (box_parse(mfd, &box, &state, &ignore) == 0) {
				if (box.uidvalidity > hi)
					hi = box.uidvalidity;
				store_box_clear(&box);
			}
			close(mfd);
		}
		closedir(d);
	}
	sqlite3_stmt *st = store_index_stmt(user, "SELECT max(uidvalidity) FROM mailbox", &ignore);
	if (st != NULL) {
		if (sqlite3_step(st) == SQLITE_ROW && (uint64_t)sqlite3_column_int64(st, 0) > hi)
			hi = (uint64_t)sqlite3_column_int64(st, 0);
		sqlite3_reset(st);
	}
	return hi;
}

int store_box_next_uidvalidity(struct store_user *user, uint32_t *uv_r, struct error *err)
{
	char *data = NULL;
	size_t len;
	uint64_t last = 0;
	char text[32];
	int have = 0, damaged = 0;

	/* Callers hold the user-root lock (mailbox create/rename). */
	if (fsx_read_file(user->root_fd, UIDVALIDITY_FILE, 64, &data, &len) == 0) {
		have = len > 0 && data[len - 1] == '\n' && strlen(data) == len;
		data[strcspn(data, "\n")] = '\0';
		if (!have || strnum_u64z(data, UINT32_MAX, &last) < 0) {
			last = 0;
			have = 0;
		}
		damaged = !have;
		free(data);
	} else if (errno != ENOENT) {
		damaged = 1; /* too long, unreadable: replaced below */
	}
	if (!have) {
		/* Lost or damaged: never below what the mailboxes hold, so a
		 * mailbox made now cannot get the UIDVALIDITY of one that exists. */
		uint64_t hi = highest_uidvalidity(user);
		char aside[300] = "";
		if (damaged &&
		    store_index_move_aside(user->root_fd, UIDVALIDITY_FILE, aside, sizeof(aside)) < 0)
			aside[0] = '\0';
		if (damaged || hi != 0)
			store_index_note_heal(user, "%s was %s%s%s; recreated from the mailboxes' UIDVALIDITY (highest %llu)",
					      UIDVALIDITY_FILE, damaged ? "damaged" : "missing",
					      aside[0] ? ", moved aside as " : "", aside,
					      (unsigned long long)hi);
		last = hi;
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

/* What another process wrote since mbox->box was read (a keyword added by
 * another session, a UID floor or modseq reserve raised by a delivery) must
 * survive this write: a session that expunged with a stale copy in memory
 * once wrote its old keyword list back, and a keyword letter on disk lost its
 * name. So, under the mailbox lock every caller holds, the file is read again
 * and merged: keyword slots empty here are taken from the file, the floor and
 * the reserve are the larger of the two. What this process set on purpose
 * (UIDVALIDITY, GUID, special-use, its own keywords) wins. */
static void box_merge_disk(struct store_mailbox *mbox)
{
	struct store_box disk;
	struct error ignore;
	if (store_box_read(mbox->dir_fd, &disk, &ignore) < 0)
		return; /* missing or damaged: what is in memory is all there is */
	struct store_box *b = &mbox->box;
	if (disk.uidvalidity == b->uidvalidity) {
		if (disk.uid_floor > b->uid_floor)
			b->uid_floor = disk.uid_floor;
		if (disk.modseq_reserved > b->modseq_reserved)
			b->modseq_reserved = disk.modseq_reserved;
		for (unsigned i = 0; i < STORE_MAX_KEYWORDS; i++)
			if (b->keywords[i] == NULL && disk.keywords[i] != NULL) {
				b->keywords[i] = disk.keywords[i];
				disk.keywords[i] = NULL;
			}
	}
	store_box_clear(&disk);
}

int store_box_save(struct store_mailbox *mbox, struct error *err)
{
	box_merge_disk(mbox);
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

int store_box_index_keywords(struct store_mailbox *mbox, struct error *err)
{
	int own = !mbox->user->in_txn;
	if (own && store_index_begin(mbox->user, err) < 0)
		return -1;
	int ret = store_index_exec(mbox->user, err, "DELETE FROM keyword WHERE mailbox=%lld",
				   (long long)mbox->id);
	for (unsigned i = 0; i < STORE_MAX_KEYWORDS && ret == 0; i++)
		if (mbox->box.keywords[i] != NULL)
			ret = store_index_exec(mbox->user, err,
					       "INSERT INTO keyword VALUES(%lld, %u, %Q)",
					       (long long)mbox->id, i, mbox->box.keywords[i]);
	if (own) {
		if (ret < 0)
			store_index_rollback(mbox->user);
		else
			ret = store_index_commit(mbox->user, err);
	}
	return ret;
}

/* ---- healing a missing or damaged mailroom-box ---------------------------- */

struct derived {
	int have_row;		/* the index knows this mailbox */
	uint32_t uidvalidity;	/* its row's */
	uint32_t uidnext;
	uint64_t highestmodseq;
	int64_t id;
	uint32_t max_uid;	/* highest U= of cur/ */
	uint32_t letters;	/* keyword letters used by cur/'s file names */
};

/* What the index row and the file names of mbox say. */
static void derive(struct store_mailbox *mbox, struct derived *d)
{
	struct error ignore;
	memset(d, 0, sizeof(*d));
	sqlite3_stmt *st = store_index_stmt(
		mbox->user, "SELECT id, uidvalidity, uidnext, highestmodseq FROM mailbox WHERE name=?",
		&ignore);
	if (st != NULL) {
		sqlite3_bind_text(st, 1, mbox->name, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW) {
			d->have_row = 1;
			d->id = sqlite3_column_int64(st, 0);
			d->uidvalidity = (uint32_t)sqlite3_column_int64(st, 1);
			d->uidnext = (uint32_t)sqlite3_column_int64(st, 2);
			d->highestmodseq = (uint64_t)sqlite3_column_int64(st, 3);
		}
		sqlite3_reset(st);
	}
	int fd = dup(mbox->cur_fd);
	DIR *dir = fd < 0 ? NULL : fdopendir(fd);
	if (dir == NULL) {
		if (fd >= 0)
			close(fd);
		return;
	}
	rewinddir(dir);
	struct dirent *de;
	while ((de = readdir(dir)) != NULL) {
		struct store_fname f;
		if (de->d_name[0] == '.' || store_fname_parse(de->d_name, &f) < 0)
			continue;
		if (f.uid > d->max_uid)
			d->max_uid = f.uid;
		d->letters |= f.keywords;
	}
	closedir(dir);
}

/* Keyword names the index kept for row id, where box has none. */
static void keywords_from_index(struct store_mailbox *mbox, int64_t id, struct store_box *box)
{
	struct error ignore;
	sqlite3_stmt *st =
		store_index_stmt(mbox->user, "SELECT idx, name FROM keyword WHERE mailbox=?", &ignore);
	if (st == NULL)
		return;
	sqlite3_bind_int64(st, 1, id);
	while (sqlite3_step(st) == SQLITE_ROW) {
		int64_t i = sqlite3_column_int64(st, 0);
		const char *name = (const char *)sqlite3_column_text(st, 1);
		if (i >= 0 && i < STORE_MAX_KEYWORDS && box->keywords[i] == NULL && name != NULL &&
		    keyword_valid(name))
			box->keywords[i] = strdup(name);
	}
	sqlite3_reset(st);
}

/* The special-use of the mailboxes every user starts with (store_user.c),
 * for a box file that lost it. */
static const char *default_special_use(const char *name)
{
	static const char *const map[][2] = { { "Drafts", "\\Drafts" }, { "Sent", "\\Sent" },
					      { "Trash", "\\Trash" },   { "Junk", "\\Junk" },
					      { "Archive", "\\Archive" } };
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(name, map[i][0]) == 0)
			return map[i][1];
	return NULL;
}

/* Under both locks: rebuild mbox's mailroom-box from what is left of it,
 * the index and the file names; say what could not be recovered. */
static int heal_box(struct store_mailbox *mbox, struct store_box *part, int state,
		    struct error *err)
{
	struct store_user *user = mbox->user;
	struct derived d;
	struct store_box box;
	char lost[400] = "", aside[300] = "", from[40];
	size_t o = 0;

	derive(mbox, &d);
	int row_ok = d.have_row && (part->uidvalidity == 0 || part->uidvalidity == d.uidvalidity);
	if (state == BOX_MISSING && !d.have_row && d.max_uid == 0) {
		/* A maildir made by another program: it just gets a UIDVALIDITY. */
		uint32_t uv;
		if (store_box_next_uidvalidity(user, &uv, err) < 0)
			return -1;
		store_box_init(&box, uv);
		goto write;
	}
	if (user->store->no_heal) {
		snprintf(user->store->damage, sizeof(user->store->damage), "%.100s: mailroom-box is %s",
			 mbox->name, state == BOX_MISSING ? "missing" : "damaged");
		error_set(err, ERR_TEMP, "%s", user->store->damage);
		return -1;
	}
	store_box_init(&box, part->uidvalidity);
	if (part->uidvalidity != 0) {
		snprintf(from, sizeof(from), "what was left of the file");
	} else if (row_ok) {
		box.uidvalidity = d.uidvalidity;
		snprintf(from, sizeof(from), "the index");
	} else {
		if (store_box_next_uidvalidity(user, &box.uidvalidity, err) < 0)
			return -1;
		snprintf(from, sizeof(from), "nowhere: a new one");
		o += (size_t)snprintf(lost + o, sizeof(lost) - o,
				      "; UIDVALIDITY (clients resync)");
	}
	if (part->guid[0] != '\0')
		memcpy(box.guid, part->guid, sizeof(box.guid));
	if (part->special_use[0] != '\0')
		memcpy(box.special_use, part->special_use, sizeof(box.special_use));
	else if (default_special_use(mbox->name) != NULL)
		snprintf(box.special_use, sizeof(box.special_use), "%s", default_special_use(mbox->name));
	box.uid_floor = part->uid_floor > d.max_uid + 1 ? part->uid_floor : d.max_uid + 1;
	if (row_ok && d.uidnext > box.uid_floor)
		box.uid_floor = d.uidnext;
	box.modseq_reserved = part->modseq_reserved;
	if (row_ok && d.highestmodseq + STORE_MODSEQ_CHUNK > box.modseq_reserved)
		box.modseq_reserved = d.highestmodseq + STORE_MODSEQ_CHUNK;
	if (part->uid_floor == 0 && !row_ok && o < sizeof(lost))
		o += (size_t)snprintf(lost + o, sizeof(lost) - o,
				      "; UIDNEXT (expunged UIDs above %u may be reused)",
				      d.max_uid);
	if (box.modseq_reserved == 0) {
		box.modseq_reserved = STORE_MODSEQ_CHUNK;
		if (o < sizeof(lost))
			o += (size_t)snprintf(lost + o, sizeof(lost) - o,
					      "; modseqs (restart low)");
	}
	for (unsigned i = 0; i < STORE_MAX_KEYWORDS; i++) {
		box.keywords[i] = part->keywords[i];
		part->keywords[i] = NULL;
	}
	if (row_ok)
		keywords_from_index(mbox, d.id, &box);
	for (unsigned i = 0; i < STORE_MAX_KEYWORDS; i++)
		if ((d.letters & (1u << i)) && box.keywords[i] == NULL && o < sizeof(lost))
			o += (size_t)snprintf(lost + o, sizeof(lost) - o,
					      "; keyword '%c' (its name)",
					      'a' + i);
	if (state == BOX_DAMAGED &&
	    store_index_move_aside(mbox->dir_fd, BOX_FILE, aside, sizeof(aside)) < 0 &&
	    errno != ENOENT) {
		error_errno(err, "cannot move the damaged mailroom-box aside");
		store_box_clear(&box);
		return -1;
	}
	store_index_note_heal(user, "%.100s: mailroom-box was %s%s%.60s: rebuilt, UIDVALIDITY %u from %s%s%.150s",
			      mbox->name, state == BOX_MISSING ? "missing" : "damaged",
			      aside[0] ? ", moved aside as " : "", aside, box.uidvalidity, from,
			      lost[0] ? "; could not recover: " : "", lost[0] ? lost + 2 : "");
write:
	if (store_box_write(mbox->dir_fd, &box, err) < 0) {
		store_box_clear(&box);
		return -1;
	}
	store_box_clear(&mbox->box);
	mbox->box = box;
	return 0;
}

int store_box_load(struct store_mailbox *mbox, struct error *err)
{
	struct store_box box;
	int state;
	if (box_parse(mbox->dir_fd, &box, &state, err) < 0)
		return -1;
	if (state == BOX_OK)
		goto done;
	store_box_clear(&box);
	/* Lock order as everywhere: the user's root, then the mailbox. A
	 * process that healed it first leaves us a sound file to read. */
	if (store_lock_user(mbox->user, err) < 0)
		return -1;
	int ret = -1;
	if (store_lock_mailbox(mbox, err) < 0)
		goto unlock_user;
	if (box_parse(mbox->dir_fd, &box, &state, err) < 0)
		goto unlock;
	if (state != BOX_OK) {
		ret = heal_box(mbox, &box, state, err);
		store_box_clear(&box);
		goto unlock;
	}
	store_lock_mailbox_release(mbox);
	store_lock_user_release(mbox->user);
done:
	if (box.uid_floor == 0)
		box.uid_floor = 1;
	store_box_clear(&mbox->box);
	mbox->box = box;
	return 0;
unlock:
	store_lock_mailbox_release(mbox);
unlock_user:
	store_lock_user_release(mbox->user);
	return ret;
}
