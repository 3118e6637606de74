/*
 * store_mailbox_rename.c: RENAME (RFC 9051 6.3.6).
 *
 * A mailbox other than INBOX is renamed with its children by
 * store_rename_folders (store_rename.c: journalled, all or nothing across a
 * crash). Renaming INBOX is special: its messages move
 * to a new mailbox of the new name and INBOX stays, empty; that uses the
 * message operations (store_mailbox_move), which is why this sits in a file
 * above them and store_mailbox.c does not.
 */
#include "store/store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/fsx.h"

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
	int ret = -1;

	if (store_name_normalize(from, &nfrom, err) < 0 ||
	    store_name_normalize(to, &nto, err) < 0)
		goto out;
	if (strcmp(nto, "INBOX") == 0 || store_name_is_child(nto, nfrom) || strcmp(nto, nfrom) == 0) {
		error_set(err, ERR_INVALID,
			  "cannot rename a mailbox to INBOX, itself or its child");
		goto out;
	}
	if (strcmp(nfrom, "INBOX") == 0) {
		ret = rename_inbox(user, nto, err);
		goto out;
	}
	ret = store_rename_folders(user, nfrom, nto, err);
out:
	free(nfrom);
	free(nto);
	return ret;
}
