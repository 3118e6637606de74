/*
 * export.c: the walk of `mailroom export` (design note in export.h): which
 * mailboxes, their rows read under the store's lock, handed one mailbox at
 * a time to the maildir or the mbox writer; then the folder OUT fsynced.
 */
#include "import/export.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imap/imap_utf7.h"
#include "lib/fsx.h"
#include "store/store.h"

struct names {
	char **v;
	size_t n, cap;
	int failed;
};

static int names_add(struct names *ns, const char *name)
{
	if (ns->n == ns->cap) {
		size_t cap = ns->cap ? ns->cap * 2 : 16;
		char **v = realloc(ns->v, cap * sizeof(*v));
		if (v == NULL) {
			ns->failed = 1;
			return -1;
		}
		ns->v = v;
		ns->cap = cap;
	}
	if ((ns->v[ns->n] = strdup(name)) == NULL) {
		ns->failed = 1;
		return -1;
	}
	ns->n++;
	return 0;
}

static void names_free(struct names *ns)
{
	for (size_t i = 0; i < ns->n; i++)
		free(ns->v[i]);
	free(ns->v);
	memset(ns, 0, sizeof(*ns));
}

static int list_cb(void *ctx, const struct store_mailbox_info *info)
{
	return names_add(ctx, info->name) < 0 ? 1 : 0;
}

struct msgs {
	struct export_msg *v;
	size_t n, cap;
	int failed;
};

static int msg_cb(void *ctx, const struct store_msg *m)
{
	struct msgs *ms = ctx;
	if (ms->n == ms->cap) {
		size_t cap = ms->cap ? ms->cap * 2 : 256;
		struct export_msg *v = realloc(ms->v, cap * sizeof(*v));
		if (v == NULL) {
			ms->failed = 1;
			return 1;
		}
		ms->v = v;
		ms->cap = cap;
	}
	ms->v[ms->n++] =
		(struct export_msg){m->uid, m->flags, m->keywords, m->size, m->internaldate};
	return 0;
}

void export_skip(struct export_ctx *x, const char *what, const char *reason)
{
	x->report.skipped++;
	if (x->opt->skipped != NULL)
		x->opt->skipped(x->opt->ctx, what, reason);
}

void export_out_errno(struct export_ctx *x, struct error *err, const char *what)
{
	error_errno(err, what);
	x->report.write_failed = 1;
}

int export_name_path(const char *name, char sep, struct buf *out, struct error *err)
{
	if (sep == '.' && strcmp(name, "INBOX") == 0) {
		buf_puts(out, ".");
		return 0;
	}
	const char *p = name;
	for (int first = 1;; first = 0) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		if (sep == '.' || !first)
			buf_putc(out, sep);
		if (memchr(p, sep, len) != NULL || len == 0) {
			error_set(err, ERR_INVALID, "a level of the name is empty or holds '%s'%s",
				  sep == '.'	? "."
				  : sep == '\t' ? "\\t"
						: "/",
				  sep == '.' ? " (the Maildir++ separator)" : "");
			return -1;
		}
		if (imap_utf7_encode(p, len, out, err) < 0)
			return -1;
		if (slash == NULL)
			break;
		p = slash + 1;
	}
	if (out->failed) {
		error_set(err, ERR_TEMP, "export: out of memory");
		return -1;
	}
	return 0;
}

static int subs_cb(void *ctx, const char *name)
{
	struct buf *b = ctx;
	struct error err;
	size_t len = b->len;
	/* A name Dovecot could not hold is left out of the file. */
	if (export_name_path(name, '\t', b, &err) < 0)
		buf_truncate(b, len);
	else
		buf_putc(b, '\n');
	return 0;
}

int export_subscriptions(struct export_ctx *x, struct store_user *user, const char *file,
			 struct error *err)
{
	struct buf subs = BUF_INIT;
	int ret = -1;
	buf_puts(&subs, "V\t2\n\n");
	if (store_subscriptions(user, subs_cb, &subs, err) < 0)
		goto out;
	if (subs.failed) {
		error_set(err, ERR_TEMP, "export: out of memory");
		goto out;
	}
	if (fsx_write_file_atomic(x->outfd, file, subs.data, subs.len) < 0) {
		export_out_errno(x, err, "export: write subscriptions");
		goto out;
	}
	ret = 0;
out:
	buf_free(&subs);
	return ret;
}

/* OUT must be empty: an export never writes over someone's files. */
static int check_empty(int outfd, struct error *err)
{
	int fd = dup(outfd);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	if (d == NULL) {
		error_errno(err, "export: the output folder");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	struct dirent *de;
	int found = 0;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
			found = 1;
			break;
		}
	closedir(d);
	if (found) {
		error_set(err, ERR_EXISTS, "export: the output folder is not empty");
		return -1;
	}
	return 0;
}

static int has_children(const struct names *all, const char *name)
{
	size_t len = strlen(name);
	for (size_t i = 0; i < all->n; i++)
		if (strncmp(all->v[i], name, len) == 0 && all->v[i][len] == '/')
			return 1;
	return 0;
}

static int export_one(struct export_ctx *x, struct store_user *user, const char *name,
		      const struct names *all, struct error *err)
{
	struct store_mailbox *mbox = NULL;
	struct store_status st;
	struct msgs ms = {0};
	int ret = -1;

	if (store_mailbox_open(user, name, &mbox, err) < 0 ||
	    store_mailbox_status(mbox, &st, err) < 0 ||
	    store_mailbox_messages(mbox, 1, UINT32_MAX, msg_cb, &ms, err) < 0)
		goto fail;
	if (ms.failed) {
		error_set(err, ERR_TEMP, "export: out of memory");
		goto fail;
	}
	struct export_box b = {
		.mbox = mbox,
		.name = store_mailbox_name(mbox),
		.uidvalidity = st.uidvalidity,
		.uidnext = st.uidnext,
		.msgs = ms.v,
		.nmsgs = ms.n,
		.has_children = has_children(all, store_mailbox_name(mbox)),
	};
	if (x->opt->progress != NULL)
		x->opt->progress(x->opt->ctx, b.name, 0, (uint32_t)b.nmsgs);
	if ((x->opt->format == EXPORT_MAILDIR ? export_maildir_box(x, &b, err)
					      : export_mbox_box(x, &b, err)) < 0)
		goto fail;
	ret = 0;
fail:
	free(ms.v);
	store_mailbox_close(&mbox);
	return ret;
}

int export_run(struct store_user *user, int outfd, const struct export_options *opt,
	       struct export_report *report_r, struct error *err)
{
	struct names all = {0}, want = {0};
	struct export_ctx x = {.outfd = outfd, .opt = opt};
	int ret = -1;

	if (check_empty(outfd, err) < 0)
		return -1;
	if (store_mailbox_list(user, list_cb, &all, err) < 0)
		goto fail;
	for (size_t i = 0; i < opt->nmailboxes; i++) {
		char *norm = NULL;
		if (store_mailbox_name_normalize(opt->mailboxes[i], &norm, err) < 0)
			goto fail;
		int r = names_add(&want, norm);
		free(norm);
		if (r < 0)
			goto oom;
	}
	x.all = all.v;
	x.nall = all.n;
	const struct names *which = opt->nmailboxes > 0 ? &want : &all;
	if (all.failed)
		goto oom;
	for (size_t i = 0; i < which->n; i++) {
		if (export_one(&x, user, which->v[i], &all, err) < 0)
			goto fail;
	}
	/* Dovecot's subscriptions file, version 2: "subscriptions" in a
	 * Maildir++ root, ".subscriptions" at the top of an mbox folder */
	if (export_subscriptions(&x, user,
				 opt->format == EXPORT_MAILDIR ? "subscriptions" : ".subscriptions",
				 err) < 0)
		goto fail;
	if (fsx_fsync(outfd) < 0) {
		export_out_errno(&x, err, "export: fsync of the output folder");
		goto fail;
	}
	ret = 0;
	goto out;
oom:
	error_set(err, ERR_TEMP, "export: out of memory");
fail:
out:
	*report_r = x.report;
	names_free(&all);
	names_free(&want);
	return ret;
}
