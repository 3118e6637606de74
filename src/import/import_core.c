/*
 * import_core.c: the sink of import.h: what a source driver describes,
 * written into one user's mailboxes through store_import_* (store.h), or
 * in a dry run only described.
 *
 * Design note. A folder is a struct store_import from folder_begin to
 * folder_end; each message goes to store_import_file (a file: hard link or
 * copy) or, given as bytes, through a store_stage to store_import_stage.
 * What the store found when the folder was opened decides the rest
 * (import.h "Re-runs"):
 *  - created, adopted (a new user's empty INBOX) or re-run: the source's
 *    UIDVALIDITY and UIDs are kept; a UID already there is "already there"
 *    and skipped (has_uid lets a driver skip it unread);
 *  - append: the mailbox holds other mail under another UIDVALIDITY (or the
 *    source gave none). Messages get new UIDs; a message the mailbox has
 *    already (same Message-ID, size as served and INTERNALDATE) is "already
 *    there": the keys of the mailbox's messages are read once, when the
 *    folder opens.
 * A failure of one message (unreadable, vanished, not a regular file) is a
 * skip with its reason; a failure of the store (disk, index, lock) stops
 * the import: the callback returns -1 and the driver stops.
 *
 * Sizes. import_msg.size is what the old server showed (RFC822.SIZE,
 * Dovecot's W=). mailroom serves a file with its bare LFs as CRLF, so what it
 * shows is the file's size plus its bare LFs; a stream is staged as CRLF, so
 * it is the staged size. A difference is reported (a client that cached the
 * old size may notice), never fatal.
 */
#include "import/import_core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "store/store.h"

#define HEADER_MAX 65536 /* bytes of header searched for Message-ID */
#define RANGES_MAX 400	 /* characters of UID ranges printed per folder (dry run) */

struct dedupe_key {
	char *msgid;
	uint64_t size;
	int64_t date;
};

struct import_core {
	struct store *store;
	struct import_core_opts o;
	struct import_sink sink;
	struct store_user *user;
	int created_user;
	int fresh;	/* the user had never held mail when the import began */
	int subs_reset; /* a fresh user's default subscriptions are gone */
	struct import_core_counts c;
	dev_t store_dev;
	uid_t store_uid; /* owner of DATA/mail */
	int protected_hardlinks;
	/* the open folder */
	int in_folder;
	int folder_skip; /* the folder could not be opened: its messages are skipped */
	char *folder;
	struct store_import *imp;
	enum store_import_state state;
	uint64_t f_imported, f_already, f_skipped, f_linked, f_copied;
	struct dedupe_key *keys;
	size_t nkeys;
	/* dry run */
	struct store_import_peek peek;
	struct buf ranges;
	uint32_t range_lo, range_hi;
	uint32_t dry_next_uid;
	int dry_rerun;
	/* a message given as bytes */
	struct store_stage *stage;
	struct import_msg msg;
	char msg_id[200];
	char *msg_uidl;
	char **kw;
	size_t nkw;
	int msg_skip;
	int msg_already;
	int msg_open;
	uint64_t msg_bytes;
	struct buf hdr;
	int hdr_done;
};

/* ---- report --------------------------------------------------------------------- */

static void report(struct import_core *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void report(struct import_core *c, const char *fmt, ...)
{
	va_list ap;
	if (c->o.report == NULL)
		return;
	va_start(ap, fmt);
	fprintf(c->o.report, "%s: ", c->o.user);
	vfprintf(c->o.report, fmt, ap);
	fputc('\n', c->o.report);
	va_end(ap);
}

static void progress(struct import_core *c)
{
	if (c->o.progress != NULL)
		c->o.progress(c->o.progress_ctx, &c->c);
}

static const char *msg_name(const struct import_msg *m, char *buf, size_t size)
{
	if (m->id != NULL)
		snprintf(buf, size, "%s", m->id);
	else if (m->uid != 0)
		snprintf(buf, size, "UID %u", m->uid);
	else
		snprintf(buf, size, "a message");
	return buf;
}

static void skip_msg(struct import_core *c, const struct import_msg *m, const char *reason)
{
	char name[300];
	c->c.skipped++;
	c->f_skipped++;
	report(c, "skipped: %s: %s: %s", c->folder ? c->folder : "?", msg_name(m, name, sizeof(name)),
	       reason);
	progress(c);
}

static const char *why_text(enum store_import_why why)
{
	switch (why) {
	case STORE_IMPORT_WHY_XDEV: return "another file system";
	case STORE_IMPORT_WHY_PROTECTED:
		return "the store owner may not link it (fs.protected_hardlinks: it neither owns nor may write the file)";
	case STORE_IMPORT_WHY_DATE: return "its INTERNALDATE is not the file's mtime";
	case STORE_IMPORT_WHY_MLINK: return "the file has the most links its file system allows";
	case STORE_IMPORT_WHY_NOT_HANDED_OVER:
		return "run as root on a store the server has not taken over yet, whose first start "
		       "would chown a linked file not owned by run_user (start `mailroom serve` once "
		       "first, or give the files to run_user, to have them linked)";
	case STORE_IMPORT_WHY_NONE: break;
	}
	return "";
}

/* The error of a store call: this message's (skip it) or the store's (stop). */
static int per_message(const struct error *err)
{
	return err->code == ERR_NOTFOUND || err->code == ERR_DATA || err->code == ERR_INVALID;
}

/* ---- message keys: Message-ID, size as served ----------------------------------------- */

/* The Message-ID in a header block (NUL-terminated), "" if none. */
static void find_msgid(const char *hdr, char *out, size_t size)
{
	out[0] = '\0';
	for (const char *p = hdr; *p != '\0';) {
		if (strncasecmp(p, "Message-ID:", 11) == 0) {
			const char *v = p + 11;
			size_t n = 0;
			/* the value, unfolded, without white space */
			for (; *v != '\0'; v++) {
				if (*v == '\n' && v[1] != ' ' && v[1] != '\t')
					break;
				if (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n')
					continue;
				if (n + 1 < size)
					out[n++] = *v;
			}
			out[n] = '\0';
			return;
		}
		const char *nl = strchr(p, '\n');
		if (nl == NULL)
			return;
		p = nl + 1;
	}
}

/* Read fd to its end: its Message-ID and the size mailroom serves it with
 * (bytes + bare LFs). */
static int scan_fd(int fd, char *msgid, size_t idsize, uint64_t *served_r)
{
	char buf[65536];
	struct buf hdr = BUF_INIT;
	int hdr_done = 0, prev_cr = 0;
	uint64_t size = 0;
	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			buf_free(&hdr);
			return -1;
		}
		if (r == 0)
			break;
		for (ssize_t i = 0; i < r; i++) {
			if (buf[i] == '\n' && !prev_cr)
				size++;
			prev_cr = buf[i] == '\r';
		}
		size += (uint64_t)r;
		if (!hdr_done) {
			buf_append(&hdr, buf, (size_t)r);
			const char *s = buf_cstr(&hdr);
			char *end = strstr(s, "\n\n");
			char *end2 = strstr(s, "\r\n\r\n");
			if (end != NULL || end2 != NULL || hdr.len >= HEADER_MAX)
				hdr_done = 1;
		}
	}
	find_msgid(buf_cstr(&hdr), msgid, idsize);
	buf_free(&hdr);
	*served_r = size;
	return 0;
}

static int key_cmp(const void *a, const void *b)
{
	const struct dedupe_key *x = a, *y = b;
	int r = strcmp(x->msgid, y->msgid);
	if (r != 0)
		return r;
	if (x->size != y->size)
		return x->size < y->size ? -1 : 1;
	return x->date < y->date ? -1 : x->date > y->date;
}

static void keys_free(struct import_core *c)
{
	for (size_t i = 0; i < c->nkeys; i++)
		free(c->keys[i].msgid);
	free(c->keys);
	c->keys = NULL;
	c->nkeys = 0;
}

struct keys_walk {
	struct import_core *c;
	struct store_mailbox *mbox;
	size_t cap;
	int failed;
};

static int key_of_msg(void *ctx, const struct store_msg *msg)
{
	struct keys_walk *w = ctx;
	struct import_core *c = w->c;
	int fd;
	uint64_t size;
	struct error err;
	char id[200];
	uint64_t served;
	if (store_message_open(w->mbox, msg->uid, &fd, &size, &err) < 0)
		return 0; /* gone meanwhile */
	int r = scan_fd(fd, id, sizeof(id), &served);
	close(fd);
	if (r < 0 || id[0] == '\0')
		return 0; /* no Message-ID: never taken for a duplicate */
	if (c->nkeys == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 256;
		struct dedupe_key *p = realloc(c->keys, cap * sizeof(*p));
		if (p == NULL) {
			w->failed = 1;
			return 1;
		}
		c->keys = p;
		w->cap = cap;
	}
	c->keys[c->nkeys].msgid = strdup(id);
	if (c->keys[c->nkeys].msgid == NULL) {
		w->failed = 1;
		return 1;
	}
	c->keys[c->nkeys].size = served;
	c->keys[c->nkeys].date = msg->internaldate;
	c->nkeys++;
	return 0;
}

/* Append mode: the keys of what the mailbox holds. */
static int keys_load(struct import_core *c, struct error *err)
{
	struct keys_walk w = { c, store_import_mailbox(c->imp), 0, 0 };
	if (store_mailbox_messages(w.mbox, 1, UINT32_MAX, key_of_msg, &w, err) < 0)
		return -1;
	if (w.failed) {
		error_set(err, ERR_TEMP, "out of memory");
		return -1;
	}
	if (c->nkeys > 1)
		qsort(c->keys, c->nkeys, sizeof(*c->keys), key_cmp);
	return 0;
}

static int is_duplicate(struct import_core *c, const char *msgid, uint64_t served, int64_t date)
{
	if (msgid[0] == '\0' || c->nkeys == 0)
		return 0;
	struct dedupe_key k = { (char *)(uintptr_t)msgid, served, date };
	return bsearch(&k, c->keys, c->nkeys, sizeof(k), key_cmp) != NULL;
}

/* ---- folders ---------------------------------------------------------------------- */

/* The user, made (with INBOX and the special-use mailboxes) if it has no
 * mail folder yet. */
static int ensure_user(struct import_core *c, struct error *err)
{
	if (c->user != NULL || c->o.dry_run)
		return 0;
	if (store_user_create(c->store, c->o.user, err) < 0 && err->code != ERR_EXISTS)
		return -1;
	if (store_user_open(c->store, c->o.user, &c->user, err) < 0)
		return -1;
	c->created_user = 1;
	c->fresh = 1;
	report(c, "created the user's mail folder");
	return 0;
}

/* ---- a fresh user's subscriptions ------------------------------------------------------
 * `user add` subscribes INBOX and the special-use mailboxes it makes. A user who
 * has never held mail has chosen none of them, so when the source has
 * subscriptions of its own they replace those defaults: the user's LSUB is then
 * the old server's, as a migration should leave it. A user who already had mail
 * keeps every subscription (a re-run included). */

static int fresh_box(void *ctx, const struct store_mailbox_info *info)
{
	struct import_core *c = ctx;
	struct store_mailbox *mbox = NULL;
	struct store_status st;
	struct error err;
	if (store_mailbox_open(c->user, info->name, &mbox, &err) < 0 ||
	    store_mailbox_status(mbox, &st, &err) < 0 || st.uidnext != 1)
		c->fresh = 0;
	store_mailbox_close(&mbox);
	return !c->fresh;
}

static void find_fresh(struct import_core *c)
{
	struct error err;
	c->fresh = 1;
	if (store_mailbox_list(c->user, fresh_box, c, &err) < 0)
		c->fresh = 0;
}

static int collect_sub(void *ctx, const char *name)
{
	struct buf *names = ctx;
	buf_append(names, name, strlen(name) + 1);
	return 0;
}

static int reset_subscriptions(struct import_core *c, struct error *err)
{
	c->subs_reset = 1;
	struct buf names = { 0 };
	if (store_subscriptions(c->user, collect_sub, &names, err) < 0)
		return -1;
	int ret = names.failed ? -1 : 0;
	if (ret < 0)
		error_set(err, ERR_TEMP, "out of memory");
	for (size_t at = 0; ret == 0 && at < names.len; at += strlen(names.data + at) + 1)
		ret = store_subscribe(c->user, names.data + at, 0, err);
	if (ret == 0 && names.len > 0)
		report(c, "the new user's default subscriptions give way to the source's");
	buf_free(&names);
	return ret;
}

static const char *state_text(enum store_import_state s)
{
	switch (s) {
	case STORE_IMPORT_CREATED: return "created";
	case STORE_IMPORT_ADOPTED: return "was empty, takes the source's UIDVALIDITY";
	case STORE_IMPORT_RERUN: return "re-run: UIDs already there are skipped";
	case STORE_IMPORT_APPEND: return "holds other mail: appending with new UIDs, duplicates skipped";
	}
	return "";
}

static int folder_end_real(struct import_core *c, struct error *err);
static int folder_end_dry(struct import_core *c);

static int sink_folder_end(void *ctx, struct error *err)
{
	struct import_core *c = ctx;
	if (!c->in_folder)
		return 0;
	int r = c->o.dry_run ? folder_end_dry(c) : folder_end_real(c, err);
	c->in_folder = 0;
	c->folder_skip = 0;
	free(c->folder);
	c->folder = NULL;
	keys_free(c);
	buf_free(&c->ranges);
	return r;
}

static int sink_folder_begin(void *ctx, const struct import_folder *f, struct error *err)
{
	struct import_core *c = ctx;
	char *norm = NULL;
	if (c->in_folder && sink_folder_end(c, err) < 0)
		return -1;
	c->in_folder = 1;
	c->f_imported = c->f_already = c->f_skipped = c->f_linked = c->f_copied = 0;
	c->range_lo = c->range_hi = 0;
	struct error nerr;
	if (store_mailbox_name_normalize(f->name, &norm, &nerr) < 0) {
		c->folder = strdup(f->name);
		c->folder_skip = 1;
		report(c, "skipped folder: %s: %s", f->name, nerr.text);
		return c->folder == NULL ? (error_set(err, ERR_TEMP, "out of memory"), -1) : 0;
	}
	c->folder = norm;
	c->c.folders++;
	if (ensure_user(c, err) < 0)
		return -1;
	if (c->o.dry_run) {
		store_import_peek_clear(&c->peek);
		if (store_import_peek(c->store, c->o.user, norm, &c->peek, err) < 0)
			return -1;
		const char *what = !c->peek.user_exists ? "to be created, with the user"
				   : !c->peek.exists ? "to be created"
				   : f->uidvalidity == 0 && c->peek.messages > 0
					   ? "holds mail and the source gives no UIDVALIDITY: would append with new UIDs"
				   : f->uidvalidity == 0 || c->peek.uidvalidity == f->uidvalidity
					   ? "exists: a re-run, UIDs already there would be skipped"
				   : c->peek.messages == 0 && c->peek.uid_floor <= 1
					   ? "exists, empty: would take the source's UIDVALIDITY"
					   : "holds other mail: would append with new UIDs, skipping duplicates";
		/* a re-run: the UIDs already there would be skipped */
		c->dry_rerun = c->peek.exists && f->uidvalidity != 0 &&
			       c->peek.uidvalidity == f->uidvalidity;
		c->dry_next_uid = f->uidnext > c->peek.max_uid + 1 ? f->uidnext : c->peek.max_uid + 1;
		if (c->dry_next_uid == 0)
			c->dry_next_uid = 1;
		report(c, "folder %s: UIDVALIDITY %u, UIDNEXT %u: %s", norm, f->uidvalidity, f->uidnext,
		       what);
		return 0;
	}
	if (store_import_begin(c->user, norm, f->special_use, f->uidvalidity, f->uidnext, &c->imp,
			       &c->state, err) < 0) {
		if (!per_message(err))
			return -1;
		c->folder_skip = 1;
		report(c, "skipped folder: %s: %s", norm, err->text);
		return 0;
	}
	if (c->o.owner_known)
		store_import_set_owner(c->imp, c->o.owner_uid, c->o.owner_gid);
	report(c, "folder %s: UIDVALIDITY %u, UIDNEXT %u: %s", norm, f->uidvalidity, f->uidnext,
	       state_text(c->state));
	if (c->state == STORE_IMPORT_APPEND && keys_load(c, err) < 0)
		return -1;
	return 0;
}

static int folder_end_real(struct import_core *c, struct error *err)
{
	if (c->imp == NULL)
		return 0;
	if (store_import_end(&c->imp, err) < 0)
		return -1;
	report(c, "folder %s: %llu imported (%llu linked, %llu copied), %llu already there, %llu skipped",
	       c->folder, (unsigned long long)c->f_imported, (unsigned long long)c->f_linked,
	       (unsigned long long)c->f_copied, (unsigned long long)c->f_already,
	       (unsigned long long)c->f_skipped);
	return 0;
}

static void range_flush(struct import_core *c)
{
	if (c->range_lo == 0)
		return;
	if (c->ranges.len > RANGES_MAX) {
		if (c->ranges.len > 0 && c->ranges.data[c->ranges.len - 1] != '.')
			buf_puts(&c->ranges, ",...");
	} else {
		if (c->ranges.len > 0)
			buf_putc(&c->ranges, ',');
		if (c->range_lo == c->range_hi)
			buf_printf(&c->ranges, "%u", c->range_lo);
		else
			buf_printf(&c->ranges, "%u-%u", c->range_lo, c->range_hi);
	}
	c->range_lo = c->range_hi = 0;
}

static void range_add(struct import_core *c, uint32_t uid)
{
	if (c->range_lo != 0 && uid == c->range_hi + 1) {
		c->range_hi = uid;
		return;
	}
	range_flush(c);
	c->range_lo = c->range_hi = uid;
}

static int folder_end_dry(struct import_core *c)
{
	range_flush(c);
	if (!c->folder_skip)
		report(c, "folder %s: would import %llu (%llu to link, %llu to copy), UIDs %s; %llu already there",
		       c->folder, (unsigned long long)c->f_imported, (unsigned long long)c->f_linked,
		       (unsigned long long)c->f_copied, c->ranges.len ? buf_cstr(&c->ranges) : "none",
		       (unsigned long long)c->f_already);
	return 0;
}

/* ---- messages ------------------------------------------------------------------------ */

static void strings_free(struct import_core *c)
{
	for (size_t i = 0; i < c->nkw; i++)
		free(c->kw[i]);
	free(c->kw);
	c->kw = NULL;
	c->nkw = 0;
	free(c->msg_uidl);
	c->msg_uidl = NULL;
}

/* Keep the keyword names and the UIDL of a message given as bytes until
 * its msg_end. */
static int copy_strings(struct import_core *c, const struct import_msg *m, struct error *err)
{
	strings_free(c);
	if (m->nkeywords > 0) {
		c->kw = calloc(m->nkeywords, sizeof(*c->kw));
		if (c->kw == NULL)
			goto oom;
		for (; c->nkw < m->nkeywords; c->nkw++)
			if ((c->kw[c->nkw] = strdup(m->keywords[c->nkw])) == NULL)
				goto oom;
	}
	if (m->pop3_uidl != NULL && (c->msg_uidl = strdup(m->pop3_uidl)) == NULL)
		goto oom;
	c->msg.pop3_uidl = c->msg_uidl;
	return 0;
oom:
	error_set(err, ERR_TEMP, "out of memory");
	return -1;
}

static int sink_has_uid(void *ctx, uint32_t uid)
{
	struct import_core *c = ctx;
	struct error err;
	if (c->o.dry_run && c->dry_rerun && uid != 0 && !c->folder_skip &&
	    store_import_peek_has(&c->peek, uid)) {
		c->c.already++;
		c->f_already++;
		progress(c);
		return 1;
	}
	if (c->o.dry_run || c->imp == NULL || uid == 0)
		return 0;
	int r = store_import_has_uid(c->imp, uid, &err);
	if (r == 1) {
		c->c.already++;
		c->f_already++;
		progress(c);
	}
	return r == 1;
}

/* A message that is there already (a UID taken since has_uid said no). */
static int already(struct import_core *c)
{
	c->c.already++;
	c->f_already++;
	progress(c);
	return 0;
}

static void counted(struct import_core *c, const struct store_import_result *res)
{
	c->c.imported++;
	c->f_imported++;
	if (res->how == STORE_IMPORT_LINKED) {
		c->c.linked++;
		c->f_linked++;
	} else if (res->how == STORE_IMPORT_COPIED) {
		c->c.copied++;
		c->f_copied++;
	} else {
		c->c.streamed++;
	}
	progress(c);
}

static void check_size(struct import_core *c, const struct import_msg *m, uint64_t served)
{
	char name[300];
	if (m->size == 0 || m->size == served)
		return;
	c->c.size_mismatches++;
	report(c, "size: %s: %s: the old server showed %llu bytes, mailroom shows %llu", c->folder,
	       msg_name(m, name, sizeof(name)), (unsigned long long)m->size,
	       (unsigned long long)served);
}

static void after_import(struct import_core *c, const struct import_msg *m,
			 const struct store_import_result *res)
{
	char name[300];
	struct error err;
	if (res->how == STORE_IMPORT_COPIED)
		report(c, "copied: %s: %s: %s", c->folder, msg_name(m, name, sizeof(name)),
		       why_text(res->why));
	if (res->keywords_dropped > 0)
		report(c, "keywords: %s: %s: %u keyword(s) dropped (invalid, or more than %d in the folder)",
		       c->folder, msg_name(m, name, sizeof(name)), res->keywords_dropped,
		       STORE_MAX_KEYWORDS);
	if (m->pop3_uidl != NULL && store_import_pop3_uidl(c->imp, res->uid, m->pop3_uidl, &err) < 0)
		report(c, "uidl: %s: %s: POP3 UIDL refused (%s): the default is used", c->folder,
		       msg_name(m, name, sizeof(name)), err.text);
	counted(c, res);
}

/* Dry run of a file: link or copy, and why. */
static void dry_file(struct import_core *c, const struct import_msg *m, int dirfd, const char *path)
{
	struct stat st;
	char name[300];
	if (fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		skip_msg(c, m, strerror(errno));
		return;
	}
	if (!S_ISREG(st.st_mode)) {
		skip_msg(c, m, "not a regular file");
		return;
	}
	if (faccessat(dirfd, path, R_OK, AT_EACCESS | AT_SYMLINK_NOFOLLOW) < 0) {
		skip_msg(c, m, "not readable by the store owner");
		return;
	}
	enum store_import_why why = STORE_IMPORT_WHY_NONE;
	if (st.st_dev != c->store_dev)
		why = STORE_IMPORT_WHY_XDEV;
	else if (geteuid() == 0 && c->store_uid == 0 &&
		 !(c->o.owner_known && st.st_uid == c->o.owner_uid && st.st_gid == c->o.owner_gid))
		why = STORE_IMPORT_WHY_NOT_HANDED_OVER;
	else if (m->internaldate >= 0 && m->internaldate != (int64_t)st.st_mtim.tv_sec)
		why = STORE_IMPORT_WHY_DATE;
	else if (c->protected_hardlinks && st.st_uid != geteuid() &&
		 faccessat(dirfd, path, W_OK, AT_EACCESS | AT_SYMLINK_NOFOLLOW) < 0)
		why = STORE_IMPORT_WHY_PROTECTED;
	uint32_t uid = m->uid != 0 ? m->uid : c->dry_next_uid;
	if (uid >= c->dry_next_uid)
		c->dry_next_uid = uid + 1;
	range_add(c, uid);
	c->c.imported++;
	c->f_imported++;
	if (why == STORE_IMPORT_WHY_NONE) {
		c->c.linked++;
		c->f_linked++;
	} else {
		c->c.copied++;
		c->f_copied++;
		report(c, "would copy: %s: %s: %s", c->folder, msg_name(m, name, sizeof(name)),
		       why_text(why));
	}
	progress(c);
}

static int sink_msg_file(void *ctx, const struct import_msg *m, int dirfd, const char *path,
			 struct error *err)
{
	struct import_core *c = ctx;
	if (!c->in_folder) {
		error_set(err, ERR_INVALID, "import driver: a message outside a folder");
		return -1;
	}
	if (c->folder_skip) {
		c->c.skipped++;
		c->f_skipped++;
		return 0;
	}
	if (c->o.dry_run) {
		if (!sink_has_uid(c, m->uid))
			dry_file(c, m, dirfd, path);
		return 0;
	}
	if (sink_has_uid(c, m->uid))
		return 0;
	uint64_t served = 0;
	if ((m->size != 0 || c->state == STORE_IMPORT_APPEND)) {
		struct stat st;
		char id[200] = "";
		if (fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0)
			served = (uint64_t)st.st_size;
		if (c->state == STORE_IMPORT_APPEND || served != m->size) {
			/* Count its bare LFs (and find its Message-ID). */
			int fd = openat(dirfd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
			if (fd >= 0) {
				if (scan_fd(fd, id, sizeof(id), &served) < 0)
					served = 0;
				close(fd);
			}
			int64_t date = m->internaldate >= 0 ? m->internaldate : (int64_t)st.st_mtim.tv_sec;
			if (c->state == STORE_IMPORT_APPEND && is_duplicate(c, id, served, date)) {
				c->c.already++;
				c->f_already++;
				progress(c);
				return 0;
			}
		}
	}
	struct store_import_msg sm = { m->uid, m->flags, m->keywords, m->nkeywords, m->internaldate };
	struct store_import_result res;
	if (store_import_file(c->imp, &sm, dirfd, path, &res, err) < 0) {
		if (err->code == ERR_EXISTS)
			return already(c);
		if (!per_message(err))
			return -1;
		skip_msg(c, m, err->text);
		return 0;
	}
	if (served != 0)
		check_size(c, m, served);
	after_import(c, m, &res);
	return 0;
}

static int sink_msg_begin(void *ctx, const struct import_msg *m, struct error *err)
{
	struct import_core *c = ctx;
	if (!c->in_folder) {
		error_set(err, ERR_INVALID, "import driver: a message outside a folder");
		return -1;
	}
	store_stage_free(&c->stage); /* a message the driver began and never ended */
	c->msg = *m;
	c->msg.keywords = NULL; /* the driver's: copied below (copy_strings) */
	c->msg.nkeywords = 0;
	c->msg.pop3_uidl = NULL;
	c->msg.id = NULL;
	snprintf(c->msg_id, sizeof(c->msg_id), "%s", m->id ? m->id : "");
	if (m->id != NULL)
		c->msg.id = c->msg_id;
	c->msg_open = 1;
	c->msg_bytes = 0;
	c->hdr_done = 0;
	buf_free(&c->hdr);
	/* there already (counted by has_uid), in a dry run too */
	c->msg_already = !c->folder_skip && sink_has_uid(c, m->uid);
	c->msg_skip = c->folder_skip || c->msg_already || c->o.dry_run;
	if (c->msg_skip)
		return 0;
	/* The driver's strings need not live until msg_end: keep copies. */
	if (copy_strings(c, m, err) < 0)
		return -1;
	if (store_stage_new(c->store, &c->stage, err) < 0)
		return -1;
	if (m->internaldate >= 0)
		store_stage_set_internaldate(c->stage, (time_t)m->internaldate);
	return 0;
}

static int sink_msg_write(void *ctx, const void *data, size_t len, struct error *err)
{
	struct import_core *c = ctx;
	if (!c->msg_open) {
		error_set(err, ERR_INVALID, "import driver: msg_write without msg_begin");
		return -1;
	}
	c->msg_bytes += len;
	if (c->msg_skip)
		return 0;
	if (!c->hdr_done && c->state == STORE_IMPORT_APPEND) {
		buf_append(&c->hdr, data, len);
		const char *h = buf_cstr(&c->hdr);
		if (strstr(h, "\n\n") != NULL || strstr(h, "\r\n\r\n") != NULL ||
		    c->hdr.len >= HEADER_MAX)
			c->hdr_done = 1;
	}
	return store_stage_write(c->stage, data, len, err);
}

static int sink_msg_end(void *ctx, struct error *err)
{
	struct import_core *c = ctx;
	if (!c->msg_open) {
		error_set(err, ERR_INVALID, "import driver: msg_end without msg_begin");
		return -1;
	}
	c->msg_open = 0;
	if (c->folder_skip) {
		c->c.skipped++;
		c->f_skipped++;
		return 0;
	}
	if (c->msg_already)
		return 0; /* counted by has_uid */
	if (c->o.dry_run) {
		uint32_t uid = c->msg.uid != 0 ? c->msg.uid : c->dry_next_uid;
		if (uid >= c->dry_next_uid)
			c->dry_next_uid = uid + 1;
		range_add(c, uid);
		c->c.imported++;
		c->c.streamed++;
		c->f_imported++;
		progress(c);
		return 0;
	}
	if (c->msg_skip)
		return 0; /* already there, counted by has_uid */
	int ret = -1;
	if (store_stage_finish(c->stage, err) < 0)
		goto out;
	uint64_t served = store_stage_size(c->stage);
	if (c->state == STORE_IMPORT_APPEND) {
		char id[200];
		find_msgid(buf_cstr(&c->hdr), id, sizeof(id));
		int64_t date = c->msg.internaldate >= 0 ? c->msg.internaldate : (int64_t)time(NULL);
		if (is_duplicate(c, id, served, date)) {
			c->c.already++;
			c->f_already++;
			progress(c);
			ret = 0;
			goto out;
		}
	}
	struct store_import_msg sm = { c->msg.uid, c->msg.flags, (const char *const *)c->kw,
				       c->nkw, c->msg.internaldate };
	struct store_import_result res;
	if (store_import_stage(c->imp, &sm, c->stage, &res, err) < 0) {
		if (err->code == ERR_EXISTS) {
			ret = already(c);
			goto out;
		}
		if (!per_message(err))
			goto out;
		skip_msg(c, &c->msg, err->text);
		ret = 0;
		goto out;
	}
	check_size(c, &c->msg, served);
	after_import(c, &c->msg, &res);
	ret = 0;
out:
	store_stage_free(&c->stage);
	return ret;
}

/* ---- subscriptions, skips -------------------------------------------------------------- */

static int sink_subscribe(void *ctx, const char *name, struct error *err)
{
	struct import_core *c = ctx;
	char *norm = NULL;
	struct error nerr;
	if (store_mailbox_name_normalize(name, &norm, &nerr) < 0) {
		report(c, "skipped subscription: %s: %s", name, nerr.text);
		return 0;
	}
	if (c->o.dry_run) {
		report(c, "would subscribe: %s", norm);
	} else if (ensure_user(c, err) < 0) {
		free(norm);
		return -1;
	} else if ((c->fresh && !c->subs_reset && reset_subscriptions(c, err) < 0) ||
		   store_subscribe(c->user, norm, 1, err) < 0) {
		free(norm);
		if (!per_message(err))
			return -1;
		report(c, "skipped subscription: %s: %s", name, err->text);
		return 0;
	}
	free(norm);
	c->c.subscriptions++;
	return 0;
}

static void sink_skip(void *ctx, const char *what, const char *reason)
{
	struct import_core *c = ctx;
	c->c.skipped++;
	if (c->in_folder)
		c->f_skipped++;
	report(c, "skipped: %s%s%s: %s", c->in_folder && c->folder ? c->folder : "",
	       c->in_folder && c->folder ? ": " : "", what ? what : "?", reason ? reason : "?");
	progress(c);
}

/* ---- the core -------------------------------------------------------------------------- */

static int read_protected_hardlinks(void)
{
	char v[8] = "";
	int fd = open("/proc/sys/fs/protected_hardlinks", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 1; /* unknown: assume the safe default of current kernels */
	ssize_t r = read(fd, v, sizeof(v) - 1);
	close(fd);
	return r > 0 && v[0] == '1';
}

int import_core_new(struct store *store, const struct import_core_opts *opts,
		    struct import_core **core_r, struct error *err)
{
	struct import_core *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		error_set(err, ERR_TEMP, "out of memory");
		return -1;
	}
	c->store = store;
	c->o = *opts;
	c->protected_hardlinks = read_protected_hardlinks();
	if (store_import_dev(store, &c->store_dev, &c->store_uid) < 0) {
		error_errno(err, "stat DATA/mail");
		goto fail;
	}
	if (store_username_valid(opts->user) < 0) {
		error_set(err, ERR_NOUSER, "invalid user name: %s", opts->user);
		goto fail;
	}
	/* An existing user is opened now (a store that cannot be opened
	 * fails before the source is read); a new one is made at its first
	 * folder or subscription, so a source that turns out missing or
	 * foreign leaves nothing behind. */
	if (!opts->dry_run && store_user_open(store, opts->user, &c->user, err) < 0 &&
	    err->code != ERR_NOUSER)
		goto fail;
	if (c->user != NULL)
		find_fresh(c);
	c->sink.ctx = c;
	c->sink.folder_begin = sink_folder_begin;
	c->sink.has_uid = sink_has_uid;
	c->sink.msg_file = sink_msg_file;
	c->sink.msg_begin = sink_msg_begin;
	c->sink.msg_write = sink_msg_write;
	c->sink.msg_end = sink_msg_end;
	c->sink.folder_end = sink_folder_end;
	c->sink.subscribe = sink_subscribe;
	c->sink.skip = sink_skip;
	*core_r = c;
	return 0;
fail:
	free(c);
	return -1;
}

const struct import_sink *import_core_sink(struct import_core *core)
{
	return &core->sink;
}

int import_core_finish(struct import_core *core, struct error *err)
{
	if (core->msg_open) {
		core->msg_open = 0;
		store_stage_free(&core->stage);
	}
	return sink_folder_end(core, err);
}

const struct import_core_counts *import_core_counts(const struct import_core *core)
{
	return &core->c;
}

int import_core_created_user(const struct import_core *core)
{
	return core->created_user;
}

void import_core_free(struct import_core **core)
{
	struct import_core *c = *core;
	if (c == NULL)
		return;
	store_stage_free(&c->stage);
	store_import_abort(&c->imp);
	keys_free(c);
	strings_free(c);
	buf_free(&c->ranges);
	buf_free(&c->hdr);
	free(c->folder);
	store_import_peek_clear(&c->peek);
	if (c->user != NULL)
		store_user_close(&c->user);
	free(c);
	*core = NULL;
}
