/*
 * store_subs.c: a user's subscriptions (RFC 9051 6.3.7): a set of mailbox
 * names, which need not exist, one per line in DATA/mail/USER/subscriptions.
 * A change rewrites the file atomically under the user-root lock.
 */
#include "store/store_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/fsx.h"

#define SUBSCRIPTIONS_FILE "subscriptions"

int store_subscriptions(struct store_user *user, int (*cb)(void *ctx, const char *name), void *ctx,
			struct error *err)
{
	char *data;
	size_t len;
	if (fsx_read_file(user->root_fd, SUBSCRIPTIONS_FILE, 1 << 20, &data, &len) < 0) {
		if (errno == ENOENT)
			return 0;
		error_errno(err, "cannot read subscriptions");
		return -1;
	}
	char *save = NULL;
	for (char *line = strtok_r(data, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save))
		if (*line != '\0' && cb(ctx, line) != 0)
			break;
	free(data);
	return 0;
}

struct subs_edit {
	struct buf out;
	const char *name;
	int found;
	int subscribe;
};

static int subs_copy(void *ctx, const char *name)
{
	struct subs_edit *e = ctx;
	if (strcmp(name, e->name) == 0) {
		e->found = 1;
		if (!e->subscribe)
			return 0;
	}
	buf_printf(&e->out, "%s\n", name);
	return 0;
}

int store_subscribe(struct store_user *user, const char *name, int subscribe, struct error *err)
{
	char *norm;
	struct subs_edit e = { BUF_INIT, NULL, 0, subscribe };
	int ret = -1;

	if (store_name_normalize(name, &norm, err) < 0)
		return -1;
	e.name = norm;
	if (store_lock_user(user, err) < 0)
		goto out;
	if (store_subscriptions(user, subs_copy, &e, err) < 0)
		goto unlock;
	if (e.found == subscribe) {
		ret = 0; /* nothing to change */
		goto unlock;
	}
	if (subscribe)
		buf_printf(&e.out, "%s\n", norm);
	if (e.out.failed) {
		error_set(err, ERR_TEMP, "out of memory");
		goto unlock;
	}
	if (fsx_write_file_atomic(user->root_fd, SUBSCRIPTIONS_FILE, buf_cstr(&e.out), e.out.len) < 0) {
		error_errno(err, "cannot write subscriptions");
		goto unlock;
	}
	ret = 0;
unlock:
	store_lock_user_release(user);
out:
	buf_free(&e.out);
	free(norm);
	return ret;
}
