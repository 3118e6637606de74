/*
 * store_rename.c: RENAME of a mailbox other than INBOX, with its children,
 * all or nothing across a crash (store_mailbox_rename.c has the command and
 * INBOX's special case, which needs the message operations above this file).
 *
 * A mailbox and each of its children are separate folders (the flat
 * layout: .Old, .Old.Kid), so one RENAME is several rename(2) calls. It is
 * journalled: under the user-root lock the two names go durably into the
 * file "tmp-rename" in the user's folder, then the folders are renamed (one
 * fsync of the user's folder), the index follows, and the journal is removed
 * durably before the answer. Whoever opens the user next and finds a journal
 * left by a crash finishes the RENAME (store_rename_recover, called by
 * store_user_open): every step is idempotent, so finishing is running it
 * again. A RENAME that fails half way (an I/O error) also leaves its journal:
 * the next open finishes it rather than leave the mailbox split in two.
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/fsx.h"
#include "lib/log.h"

struct name_list {
	char **names;
	size_t n;
	size_t cap;
};

static int collect_name(void *ctx, const struct store_mailbox_info *info)
{
	struct name_list *l = ctx;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		char **p = realloc(l->names, cap * sizeof(*p));
		if (p == NULL)
			return -1;
		l->names = p;
		l->cap = cap;
	}
	l->names[l->n] = strdup(info->name);
	if (l->names[l->n] == NULL)
		return -1;
	l->n++;
	return 0;
}

static void name_list_free(struct name_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->names[i]);
	free(l->names);
	memset(l, 0, sizeof(*l));
}

int store_name_is_child(const char *name, const char *parent)
{
	size_t n = strlen(parent);
	return strncmp(name, parent, n) == 0 && name[n] == '/';
}

#define RENAME_JOURNAL "tmp-rename"

/* The journal: "FROM\0TO\0" (normalized names), written atomically and
 * durably (fsx_write_file_atomic fsyncs the file and the folder). */
static int journal_write(struct store_user *user, const char *from, const char *to,
			 struct error *err)
{
	size_t lf = strlen(from) + 1, lt = strlen(to) + 1;
	char *data = malloc(lf + lt);
	if (data == NULL) {
		error_set(err, ERR_TEMP, "out of memory");
		return -1;
	}
	memcpy(data, from, lf);
	memcpy(data + lf, to, lt);
	int rc = fsx_write_file_atomic(user->root_fd, RENAME_JOURNAL, data, lf + lt);
	free(data);
	if (rc < 0)
		error_errno(err, "cannot write the rename journal");
	return rc;
}

/* Durably: once RENAME has answered, a power cut must not bring the journal
 * back (it would rename a new mailbox of the old name). */
static int journal_remove(struct store_user *user, struct error *err)
{
	if (fsx_unlinkat(user->root_fd, RENAME_JOURNAL, 0) < 0 && errno != ENOENT) {
		error_errno(err, "cannot remove the rename journal");
		return -1;
	}
	if (fsx_fsync(user->root_fd) < 0) {
		error_errno(err, "fsync");
		return -1;
	}
	return 0;
}

/* Rename the folder of every listed mailbox that is from or beneath it (a
 * folder already renamed is not listed any more), then the index rows: those
 * of the new names that a rebuild may have made go first. Running it again
 * after a crash at any point finishes the job. */
/* Every new name must make a valid folder name (not too long) before the
 * journal is written, or a recovery would fail at each open. */
static int check_targets(const char *from, const char *to, const struct name_list *all,
			 struct error *err)
{
	for (size_t i = 0; i < all->n; i++) {
		const char *old = all->names[i];
		if (strcmp(old, from) != 0 && !store_name_is_child(old, from))
			continue;
		char *newname = NULL, *newdir = NULL;
		if (asprintf(&newname, "%s%s", to, old + strlen(from)) < 0) {
			error_set(err, ERR_TEMP, "out of memory");
			return -1;
		}
		int rc = store_name_to_dir(newname, &newdir, err);
		free(newname);
		free(newdir);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static int rename_steps(struct store_user *user, const char *from, const char *to,
			const struct name_list *all, struct error *err)
{
	for (size_t i = 0; i < all->n; i++) {
		const char *old = all->names[i];
		if (strcmp(old, from) != 0 && !store_name_is_child(old, from))
			continue;
		char *newname = NULL, *olddir = NULL, *newdir = NULL;
		int rc = -1;
		if (asprintf(&newname, "%s%s", to, old + strlen(from)) < 0)
			newname = NULL;
		if (newname == NULL)
			error_set(err, ERR_TEMP, "out of memory");
		else if (store_name_to_dir(old, &olddir, err) == 0 &&
			 store_name_to_dir(newname, &newdir, err) == 0) {
			rc = fsx_rename_noreplace(user->root_fd, olddir, user->root_fd, newdir);
			if (rc < 0)
				error_errno(err, "cannot rename the mailbox");
		}
		free(newname);
		free(olddir);
		free(newdir);
		if (rc < 0)
			return -1;
	}
	if (fsx_fsync(user->root_fd) < 0) {
		error_errno(err, "fsync");
		return -1;
	}
	/* length() and substr() count characters, consistently on both sides. */
	return store_index_exec(user, err,
				"DELETE FROM msg WHERE mailbox IN (SELECT n.id FROM mailbox n JOIN mailbox o"
				" ON n.name = %Q || substr(o.name, length(%Q) + 1)"
				" WHERE o.name = %Q OR substr(o.name, 1, length(%Q) + 1) = %Q || '/');"
				"DELETE FROM mailbox WHERE id IN (SELECT n.id FROM mailbox n JOIN mailbox o"
				" ON n.name = %Q || substr(o.name, length(%Q) + 1)"
				" WHERE o.name = %Q OR substr(o.name, 1, length(%Q) + 1) = %Q || '/');"
				"UPDATE mailbox SET name = %Q || substr(name, length(%Q) + 1)"
				" WHERE name = %Q OR substr(name, 1, length(%Q) + 1) = %Q || '/'",
				to, from, from, from, from, to, from, from, from, from, to, from, from,
				from, from);
}

int store_rename_recover(struct store_user *user)
{
	struct stat st;
	if (fstatat(user->root_fd, RENAME_JOURNAL, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return 0; /* the common case: no journal */
	struct error err;
	struct name_list all = { 0 };
	char *data = NULL;
	size_t len = 0;
	int ret = -1;
	if (store_lock_user(user, &err) < 0)
		goto fail;
	if (fsx_read_file(user->root_fd, RENAME_JOURNAL, 4096, &data, &len) < 0) {
		if (errno == ENOENT) { /* finished by another process meanwhile */
			ret = 0;
			goto unlock;
		}
		error_errno(&err, "cannot read the rename journal");
		goto unlock;
	}
	const char *from = data, *to = memchr(data, '\0', len);
	if (!S_ISREG(st.st_mode) || to == NULL || (size_t)(++to - data) >= len ||
	    memchr(to, '\0', len - (size_t)(to - data)) == NULL || from[0] == '\0' ||
	    to[0] == '\0') {
		/* Not ours or cut short (it is written atomically, so not ours):
		 * nothing can be finished; put it aside for the admin. */
		log_warn("store %s: %s is not a rename journal; moved aside", user->name,
			 RENAME_JOURNAL);
		fsx_renameat(user->root_fd, RENAME_JOURNAL, user->root_fd,
			     RENAME_JOURNAL ".damaged");
		ret = 0;
		goto unlock;
	}
	if (store_mailbox_list(user, collect_name, &all, &err) < 0 ||
	    rename_steps(user, from, to, &all, &err) < 0 || journal_remove(user, &err) < 0)
		goto unlock;
	log_warn("store %s: finished a RENAME of \"%s\" to \"%s\" interrupted by a crash",
		 user->name, from, to);
	if (user->store->heal_say != NULL) {
		char line[600];
		snprintf(line, sizeof(line), "recovered: finished an interrupted RENAME of \"%.250s\" to \"%.250s\"",
			 from, to);
		user->store->heal_say(user->store->heal_ctx, line);
	}
	ret = 0;
unlock:
	store_lock_user_release(user);
fail:
	if (ret < 0)
		log_warn("store %s: cannot finish an interrupted RENAME: %s", user->name, err.text);
	name_list_free(&all);
	free(data);
	return ret;
}

int store_rename_folders(struct store_user *user, const char *from, const char *to,
			 struct error *err)
{
	struct name_list all = { 0 };
	int ret = -1;

	if (store_lock_user(user, err) < 0)
		return -1;
	if (store_mailbox_list(user, collect_name, &all, err) < 0)
		goto unlock;
	int found = 0;
	for (size_t i = 0; i < all.n; i++) {
		if (strcmp(all.names[i], to) == 0 || store_name_is_child(all.names[i], to)) {
			error_set(err, ERR_EXISTS, "target mailbox already exists");
			goto unlock;
		}
		found |= strcmp(all.names[i], from) == 0;
	}
	if (!found) {
		error_set(err, ERR_NOTFOUND, "no such mailbox");
		goto unlock;
	}
	if (check_targets(from, to, &all, err) < 0 || journal_write(user, from, to, err) < 0)
		goto unlock;
	if (rename_steps(user, from, to, &all, err) < 0)
		goto unlock; /* the journal stays: the next open finishes the RENAME */
	if (journal_remove(user, err) < 0)
		goto unlock;
	ret = 0;
unlock:
	store_lock_user_release(user);
	name_list_free(&all);
	return ret;
}
