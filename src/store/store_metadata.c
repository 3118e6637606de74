/*
 * store_metadata.c: IMAP METADATA entries (RFC 5464) of a user's mailboxes
 * and of the server as the user sees it.
 *
 * Storage: a plain file only, "mailroom-metadata" in the mailbox's folder
 * (in the user's folder for server entries), no index table. Entries are
 * few (at most metadata_max_entries per user) and read per command, so a
 * file read is as fast as an index query, and a file cannot disagree with
 * a cache of it: the index may be deleted and nothing is lost; RENAME moves
 * the folder and with it the file, DELETE removes both. A change rewrites
 * the file atomically and durably (fsx_write_file_atomic) under the
 * user-root lock, which also makes the per-user entry count exact.
 *
 * Format: per entry a line "<name> <value length>\n", the value's bytes,
 * and "\n". Names never hold spaces or control bytes (RFC 5464 3.2, checked
 * by the IMAP layer); values may hold anything.
 */
#include "store/store_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/fsx.h"

#define METADATA_FILE "mailroom-metadata"

uint64_t store_metadata_max_size(const struct store_user *user)
{
	return user->store->metadata_max_size;
}

uint64_t store_metadata_max_entries(const struct store_user *user)
{
	return user->store->metadata_max_entries;
}

void store_metadata_free(struct store_metadata_entry *entries, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(entries[i].name);
		free(entries[i].value);
	}
	free(entries);
}

/* The folder of the object: the mailbox's, or the user's (a new fd). */
static int object_dir(struct store_user *user, const char *mailbox, struct error *err)
{
	char *dir;
	if (mailbox == NULL) {
		int fd = dup(user->root_fd);
		if (fd < 0)
			error_errno(err, "dup");
		return fd;
	}
	if (store_name_to_dir(mailbox, &dir, err) < 0)
		return -1;
	int fd = fsx_opendir_beneath(user->root_fd, dir);
	free(dir);
	if (fd < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			error_set(err, ERR_NOTFOUND, "no such mailbox");
		else
			error_errno(err, "cannot open the mailbox");
	}
	return fd;
}

static int entry_cmp(const void *a, const void *b)
{
	const struct store_metadata_entry *x = a, *y = b;
	return strcmp(x->name, y->name);
}

static int add_entry(struct store_metadata_entry **v, size_t *n, size_t *cap, const char *name,
		     size_t name_len, const char *value, size_t len)
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 8;
		struct store_metadata_entry *nv = realloc(*v, ncap * sizeof(**v));
		if (nv == NULL)
			return -1;
		*v = nv;
		*cap = ncap;
	}
	struct store_metadata_entry *e = &(*v)[*n];
	e->name = strndup(name, name_len);
	e->value = malloc(len + 1);
	if (e->name == NULL || e->value == NULL) {
		free(e->name);
		free(e->value);
		return -1;
	}
	memcpy(e->value, value, len);
	e->value[len] = '\0';
	e->len = len;
	(*n)++;
	return 0;
}

static int parse_file(const char *data, size_t size, struct store_metadata_entry **v_r,
		      size_t *n_r, struct error *err)
{
	struct store_metadata_entry *v = NULL;
	size_t n = 0, cap = 0, pos = 0;
	while (pos < size) {
		const char *nl = memchr(data + pos, '\n', size - pos);
		const char *sp = nl == NULL ? NULL : memchr(data + pos, ' ', (size_t)(nl - (data + pos)));
		char *end;
		if (sp == NULL || sp == data + pos)
			goto bad;
		errno = 0;
		unsigned long long len = strtoull(sp + 1, &end, 10);
		size_t vpos = (size_t)(nl - data) + 1;
		if (errno != 0 || end != nl || len > size - vpos || size - vpos - len < 1 ||
		    data[vpos + len] != '\n')
			goto bad;
		if (add_entry(&v, &n, &cap, data + pos, (size_t)(sp - (data + pos)), data + vpos,
			      (size_t)len) < 0) {
			store_metadata_free(v, n);
			error_set(err, ERR_TEMP, "out of memory");
			return -1;
		}
		pos = vpos + (size_t)len + 1;
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), entry_cmp);
	*v_r = v;
	*n_r = n;
	return 0;
bad:
	store_metadata_free(v, n);
	error_set(err, ERR_TEMP, "%s is damaged", METADATA_FILE);
	return -1;
}

static size_t file_max(const struct store_user *user)
{
	uint64_t m = (user->store->metadata_max_size + 1100) * (user->store->metadata_max_entries + 1);
	return m > (256u << 20) ? (256u << 20) : (size_t)m;
}

static int read_dir(struct store_user *user, int fd, struct store_metadata_entry **v_r, size_t *n_r,
		    struct error *err)
{
	char *data;
	size_t len;
	*v_r = NULL;
	*n_r = 0;
	if (fsx_read_file(fd, METADATA_FILE, file_max(user), &data, &len) < 0) {
		if (errno == ENOENT)
			return 0;
		error_errno(err, "cannot read " METADATA_FILE);
		return -1;
	}
	int rc = parse_file(data, len, v_r, n_r, err);
	free(data);
	return rc;
}

int store_metadata_get(struct store_user *user, const char *mailbox,
		       struct store_metadata_entry **entries_r, size_t *n_r, struct error *err)
{
	int fd = object_dir(user, mailbox, err);
	if (fd < 0)
		return -1;
	int rc = read_dir(user, fd, entries_r, n_r, err);
	close(fd);
	return rc;
}

/* ---- set -------------------------------------------------------------- */

struct count_ctx {
	struct store_user *user;
	const char *skip; /* the mailbox being changed: counted by the caller */
	uint64_t n;
	struct error *err;
	int failed;
};

static int count_one(void *ctx, const struct store_mailbox_info *info)
{
	struct count_ctx *c = ctx;
	struct store_metadata_entry *v;
	size_t n;
	if (c->skip != NULL && strcmp(info->name, c->skip) == 0)
		return 0;
	if (store_metadata_get(c->user, info->name, &v, &n, c->err) < 0) {
		if (c->err->code == ERR_NOTFOUND)
			return 0; /* deleted meanwhile */
		c->failed = 1;
		return 1;
	}
	store_metadata_free(v, n);
	c->n += n;
	return 0;
}

/* Entries the user has outside the object being changed. */
static int count_others(struct store_user *user, const char *mailbox, uint64_t *n_r,
			struct error *err)
{
	struct count_ctx c = { user, mailbox, 0, err, 0 };
	if (mailbox != NULL) {
		struct store_metadata_entry *v;
		size_t n;
		if (store_metadata_get(user, NULL, &v, &n, err) < 0)
			return -1;
		store_metadata_free(v, n);
		c.n = n;
	}
	if (store_mailbox_list(user, count_one, &c, err) < 0 || c.failed)
		return -1;
	*n_r = c.n;
	return 0;
}

/* Apply one change to the sorted array v. */
static int apply(struct store_metadata_entry **v, size_t *n, size_t *cap,
		 const struct store_metadata_entry *ch)
{
	for (size_t i = 0; i < *n; i++) {
		if (strcmp((*v)[i].name, ch->name) != 0)
			continue;
		free((*v)[i].value);
		if (ch->value == NULL) {
			free((*v)[i].name);
			memmove(&(*v)[i], &(*v)[i + 1], (*n - i - 1) * sizeof(**v));
			(*n)--;
			return 0;
		}
		(*v)[i].value = malloc(ch->len + 1);
		if ((*v)[i].value == NULL) {
			free((*v)[i].name);
			memmove(&(*v)[i], &(*v)[i + 1], (*n - i - 1) * sizeof(**v));
			(*n)--;
			return -1;
		}
		memcpy((*v)[i].value, ch->value, ch->len);
		(*v)[i].value[ch->len] = '\0';
		(*v)[i].len = ch->len;
		return 0;
	}
	if (ch->value == NULL)
		return 0;
	return add_entry(v, n, cap, ch->name, strlen(ch->name), ch->value, ch->len);
}

static int write_dir(int fd, const struct store_metadata_entry *v, size_t n, struct error *err)
{
	struct buf b = BUF_INIT;
	int rc;
	if (n == 0) {
		rc = fsx_unlinkat(fd, METADATA_FILE, 0);
		if (rc < 0 && errno == ENOENT)
			return 0;
		if (rc == 0)
			rc = fsx_fsync(fd);
		if (rc < 0)
			error_errno(err, "cannot remove " METADATA_FILE);
		return rc;
	}
	for (size_t i = 0; i < n; i++) {
		buf_printf(&b, "%s %zu\n", v[i].name, v[i].len);
		buf_append(&b, v[i].value, v[i].len);
		buf_putc(&b, '\n');
	}
	if (b.failed) {
		buf_free(&b);
		error_set(err, ERR_TEMP, "out of memory");
		return -1;
	}
	rc = fsx_write_file_atomic(fd, METADATA_FILE, b.data, b.len);
	if (rc < 0)
		error_errno(err, "cannot write " METADATA_FILE);
	buf_free(&b);
	return rc;
}

static int set_locked(struct store_user *user, const char *mailbox, int fd,
		      const struct store_metadata_entry *changes, size_t n, struct error *err)
{
	struct store_metadata_entry *v;
	size_t nv, cap;
	uint64_t others = 0;
	int rc = -1;
	if (read_dir(user, fd, &v, &nv, err) < 0)
		return -1;
	cap = nv;
	for (size_t i = 0; i < n; i++) {
		if (changes[i].value != NULL && changes[i].len > user->store->metadata_max_size) {
			error_set(err, ERR_LIMIT, "metadata value too large");
			goto out;
		}
		if (apply(&v, &nv, &cap, &changes[i]) < 0) {
			error_set(err, ERR_TEMP, "out of memory");
			goto out;
		}
	}
	if (count_others(user, mailbox, &others, err) < 0)
		goto out;
	if (others + nv > user->store->metadata_max_entries) {
		int grew = 0;
		for (size_t i = 0; i < n; i++)
			grew |= changes[i].value != NULL;
		if (grew) {
			error_set(err, ERR_LIMIT, "too many metadata entries");
			goto out;
		}
	}
	if (nv > 1)
		qsort(v, nv, sizeof(*v), entry_cmp);
	rc = write_dir(fd, v, nv, err);
out:
	store_metadata_free(v, nv);
	return rc;
}

int store_metadata_set(struct store_user *user, const char *mailbox,
		       const struct store_metadata_entry *changes, size_t n, struct error *err)
{
	char *norm = NULL;
	if (mailbox != NULL) {
		if (store_name_normalize(mailbox, &norm, err) < 0)
			return -1;
		mailbox = norm;
	}
	int rc = -1;
	if (store_lock_user(user, err) < 0)
		goto out;
	int fd = object_dir(user, mailbox, err);
	if (fd >= 0) {
		rc = set_locked(user, mailbox, fd, changes, n, err);
		close(fd);
	}
	store_lock_user_release(user);
out:
	free(norm);
	return rc;
}
