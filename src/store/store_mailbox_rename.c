/*
 * store_mailbox_rename.c: RENAME (RFC 9051 6.3.6).
 *
 * A mailbox and each of its children are renamed one atomic rename(2) at a
 * time, under the user-root lock, so a failure half way leaves valid
 * mailboxes under either name. Renaming INBOX is special: its messages move
 * to a new mailbox of the new name and INBOX stays, empty; that uses the
 * message operations (store_mailbox_move), which is why this sits in a file
 * above them and store_mailbox.c does not.
 */
#include "store/store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/fsx.h"

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

static int is_child_of(const char *name, const char *parent)
{
	size_t n = strlen(parent);
	return strncmp(name, parent, n) == 0 && name[n] == '/';
}

struct uid_list {
	uint32_t *uids;
	size_t n;
	size_t cap;
};

static int collect_uid(void *ctx, const struct store_msg *msg)
{
	struct uid_list *l = ctx;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 256;
		uint32_t *p = realloc(l->uids, cap * sizeof(*p));
		if (p == NULL)
			return -1;
		l->uids = p;
		l->cap = cap;
	}
	l->uids[l->n++] = msg->uid;
	return 0;
}

/* RFC 9051 6.3.6: renaming INBOX moves all its messages to a new mailbox of
 * the new name and leaves INBOX empty; INBOX's children are not renamed. */
static int rename_inbox(struct store_user *user, const char *to, struct error *err)
{
	struct store_mailbox *src = NULL, *dst = NULL;
	struct uid_list l = { 0 };
	uint32_t *dst_uids = NULL;
	int ret = -1;

	if (store_mailbox_create(user, to, NULL, err) < 0)
		return -1;
	if (store_mailbox_open(user, "INBOX", &src, err) < 0 ||
	    store_mailbox_open(user, to, &dst, err) < 0)
		goto out;
	if (store_mailbox_messages(src, 1, UINT32_MAX, collect_uid, &l, err) < 0)
		goto out;
	if (l.n > 0) {
		dst_uids = calloc(l.n, sizeof(*dst_uids));
		if (dst_uids == NULL) {
			error_set(err, ERR_TEMP, "out of memory");
			goto out;
		}
		if (store_mailbox_move(src, l.uids, l.n, dst, dst_uids, err) < 0)
			goto out;
	}
	ret = 0;
out:
	free(dst_uids);
	free(l.uids);
	store_mailbox_close(&dst);
	store_mailbox_close(&src);
	return ret;
}

int store_mailbox_rename(struct store_user *user, const char *from, const char *to,
			 struct error *err)
{
	char *nfrom = NULL, *nto = NULL;
	struct name_list all = { 0 };
	int ret = -1;

	if (store_name_normalize(from, &nfrom, err) < 0 ||
	    store_name_normalize(to, &nto, err) < 0)
		goto out;
	if (strcmp(nto, "INBOX") == 0 || is_child_of(nto, nfrom) || strcmp(nto, nfrom) == 0) {
		error_set(err, ERR_INVALID,
			  "cannot rename a mailbox to INBOX, itself or its child");
		goto out;
	}
	if (strcmp(nfrom, "INBOX") == 0) {
		ret = rename_inbox(user, nto, err);
		goto out;
	}
	if (store_lock_user(user, err) < 0)
		goto out;
	if (store_mailbox_list(user, collect_name, &all, err) < 0)
		goto unlock;
	int found = 0;
	for (size_t i = 0; i < all.n; i++) {
		if (strcmp(all.names[i], nto) == 0 || is_child_of(all.names[i], nto)) {
			error_set(err, ERR_EXISTS, "target mailbox already exists");
			goto unlock;
		}
		found |= strcmp(all.names[i], nfrom) == 0;
	}
	if (!found) {
		error_set(err, ERR_NOTFOUND, "no such mailbox");
		goto unlock;
	}
	/* The mailbox first, then each child: every step is one atomic rename,
	 * and a failure half way leaves valid mailboxes under either name. */
	for (size_t i = 0; i < all.n; i++) {
		const char *old = all.names[i];
		if (strcmp(old, nfrom) != 0 && !is_child_of(old, nfrom))
			continue;
		char *newname = NULL, *olddir = NULL, *newdir = NULL;
		if (asprintf(&newname, "%s%s", nto, old + strlen(nfrom)) < 0) {
			error_set(err, ERR_TEMP, "out of memory");
			goto unlock;
		}
		int rc = -1;
		if (store_name_to_dir(old, &olddir, err) == 0 &&
		    store_name_to_dir(newname, &newdir, err) == 0) {
			if (fsx_rename_noreplace(user->root_fd, olddir, user->root_fd, newdir) < 0)
				error_errno(err, "cannot rename the mailbox");
			else if (store_index_exec(user, err,
						  "DELETE FROM msg WHERE mailbox IN (SELECT id FROM mailbox WHERE name=%Q);"
						  "DELETE FROM mailbox WHERE name=%Q;"
						  "UPDATE mailbox SET name=%Q WHERE name=%Q",
						  newname, newname, newname, old) == 0)
				rc = 0;
		}
		free(newname);
		free(olddir);
		free(newdir);
		if (rc < 0)
			goto unlock;
	}
	if (fsx_fsync(user->root_fd) < 0) {
		error_errno(err, "fsync");
		goto unlock;
	}
	ret = 0;
unlock:
	store_lock_user_release(user);
out:
	name_list_free(&all);
	free(nfrom);
	free(nto);
	return ret;
}
