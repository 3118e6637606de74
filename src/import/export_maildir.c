/*
 * export_maildir.c: one mailbox out as a Dovecot Maildir++ folder (the
 * layout and files are described in export.h). What Dovecot 2.3 itself
 * writes is the reference: "3 V<uidvalidity> N<uidnext> G<guid>" then
 * "<uid> :<base>" in dovecot-uidlist, "<idx> <name>" in dovecot-keywords,
 * "V\t2\n\n" then names with TAB between levels in subscriptions.
 */
#include "import/export.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fsx.h"
#include "store/store.h"

/* Dovecot has no maildir letter for $Forwarded (it ignores P, the letter
 * the maildir specification has for "passed" and mailroom uses): it keeps
 * $Forwarded as a keyword. So a message with it gets both, P and the letter
 * of a keyword "$Forwarded" in dovecot-keywords (the first letter the
 * mailbox does not use; -1 if all 26 are taken: P alone). */
static int forwarded_letter(const struct export_box *b)
{
	int used = 0;
	for (size_t i = 0; i < b->nmsgs; i++)
		used |= (b->msgs[i].flags & STORE_F_PASSED) != 0;
	for (unsigned i = 0; used && i < STORE_MAX_KEYWORDS; i++)
		if (store_mailbox_keyword(b->mbox, i) == NULL)
			return (int)i;
	return -1;
}

static void flag_letters(const struct store_mailbox *mbox, const struct export_msg *m, int fwd,
			 char *s)
{
	static const struct {
		char letter;
		uint32_t flag;
	} letters[] = {
		{'D', STORE_F_DRAFT},	 {'F', STORE_F_FLAGGED}, {'P', STORE_F_PASSED},
		{'R', STORE_F_ANSWERED}, {'S', STORE_F_SEEN},	 {'T', STORE_F_DELETED},
	};
	for (size_t i = 0; i < sizeof(letters) / sizeof(letters[0]); i++)
		if (m->flags & letters[i].flag)
			*s++ = letters[i].letter;
	for (unsigned i = 0; i < STORE_MAX_KEYWORDS; i++)
		if (((m->keywords & (1u << i)) && store_mailbox_keyword(mbox, i) != NULL) ||
		    ((m->flags & STORE_F_PASSED) && fwd == (int)i))
			*s++ = (char)('a' + i);
	*s = '\0';
}

/* Copy the message file: bytes, then mtime = INTERNALDATE, then fsync. */
static int copy_file(struct export_ctx *x, int fd, int dirfd, const char *name,
		     int64_t internaldate, struct error *err)
{
	char block[65536];
	int out = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0) {
		export_out_errno(x, err, "export: create a message file");
		return -1;
	}
	off_t off = 0;
	for (;;) {
		ssize_t n = pread(fd, block, sizeof(block), off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			error_errno(err, "export: read a message file");
			goto fail;
		}
		if (n == 0)
			break;
		if (fsx_write_all(out, block, (size_t)n) < 0) {
			export_out_errno(x, err, "export: write a message file");
			goto fail;
		}
		off += n;
	}
	struct timespec ts[2] = {{(time_t)internaldate, 0}, {(time_t)internaldate, 0}};
	if (futimens(out, ts) < 0 || fsx_fsync(out) < 0) {
		export_out_errno(x, err, "export: finish a message file");
		goto fail;
	}
	close(out);
	x->report.bytes += (uint64_t)off;
	return 0;
fail:
	close(out);
	unlinkat(dirfd, name, 0);
	return -1;
}

/* A second name for the store's file (no byte copied), by its descriptor.
 * 1 linked, 0 not possible here (another file system, no /proc, not ours):
 * copy instead, -1 error. */
static int link_file(struct export_ctx *x, int fd, int dirfd, const char *name, struct error *err)
{
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (linkat(AT_FDCWD, proc, dirfd, name, AT_SYMLINK_FOLLOW) == 0)
		return 1;
	if (errno == EXDEV || errno == EPERM || errno == EACCES || errno == ENOENT ||
	    errno == EMLINK || errno == EOPNOTSUPP)
		return 0;
	export_out_errno(x, err, "export: link a message file");
	return -1;
}

static int export_message(struct export_ctx *x, const struct export_box *b,
			  const struct export_msg *m, int fwd, int curfd, struct buf *uidlist,
			  struct error *err)
{
	int fd = -1, ret = -1;
	uint64_t size;
	struct stat st;
	char flags[40], base[96], name[160];

	if (store_message_open(b->mbox, m->uid, &fd, &size, err) < 0) {
		/* expunged since its row was read: gone, not skipped */
		return err->code == ERR_NOTFOUND ? 0 : -1;
	}
	if (fstat(fd, &st) < 0) {
		error_errno(err, "export: stat a message file");
		goto out;
	}
	flag_letters(b->mbox, m, fwd, flags);
	/* S= is the file's size, W= the size IMAP clients see (the same for
	 * the CRLF files the store keeps). */
	snprintf(base, sizeof(base), "%lld.M%uV%u.mailroom,S=%llu,W=%llu",
		 (long long)(m->internaldate > 0 ? m->internaldate : 0), m->uid, b->uidvalidity,
		 (unsigned long long)st.st_size, (unsigned long long)m->size);
	snprintf(name, sizeof(name), "%s:2,%s", base, flags);
	int linked = 0;
	/* A link shares the store file's mtime: only when it is INTERNALDATE. */
	if (!x->opt->copy && st.st_mtime == (time_t)m->internaldate &&
	    (linked = link_file(x, fd, curfd, name, err)) < 0)
		goto out;
	if (!linked && copy_file(x, fd, curfd, name, m->internaldate, err) < 0)
		goto out;
	x->report.linked += (uint64_t)linked;
	x->report.messages++;
	buf_printf(uidlist, "%u :%s\n", m->uid, base);
	ret = 0;
out:
	close(fd);
	return ret;
}

static int make_dirs(struct export_ctx *x, int outfd, const char *dir, int *dirfd_r, int *curfd_r,
		     struct error *err)
{
	if (strcmp(dir, ".") != 0 && mkdirat(outfd, dir, 0700) < 0) {
		export_out_errno(x, err, "export: create a folder");
		return -1;
	}
	int dirfd = openat(outfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		export_out_errno(x, err, "export: open a folder");
		return -1;
	}
	if (mkdirat(dirfd, "cur", 0700) < 0 || mkdirat(dirfd, "new", 0700) < 0 ||
	    mkdirat(dirfd, "tmp", 0700) < 0) {
		export_out_errno(x, err, "export: create cur/ new/ tmp/");
		goto fail;
	}
	if (strcmp(dir, ".") != 0 && fsx_write_file_atomic(dirfd, "maildirfolder", "", 0) < 0) {
		export_out_errno(x, err, "export: write maildirfolder");
		goto fail;
	}
	int curfd = openat(dirfd, "cur", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (curfd < 0) {
		export_out_errno(x, err, "export: open cur/");
		goto fail;
	}
	*dirfd_r = dirfd;
	*curfd_r = curfd;
	return 0;
fail:
	close(dirfd);
	return -1;
}

static int write_meta(struct export_ctx *x, const struct export_box *b, int fwd, int dirfd,
		      const struct buf *uidlist, struct error *err)
{
	unsigned char guid[16];
	struct buf head = BUF_INIT, kw = BUF_INIT;
	int ret = -1;

	/* The mailbox GUID Dovecot keeps in the header: a new random one. */
	if (getrandom(guid, sizeof(guid), 0) != (ssize_t)sizeof(guid)) {
		error_errno(err, "export: getrandom");
		return -1;
	}
	buf_printf(&head, "3 V%u N%u G", b->uidvalidity, b->uidnext);
	for (size_t i = 0; i < sizeof(guid); i++)
		buf_printf(&head, "%02x", guid[i]);
	buf_putc(&head, '\n');
	buf_append(&head, uidlist->data, uidlist->len);
	for (unsigned i = 0; i < STORE_MAX_KEYWORDS; i++) {
		const char *k = store_mailbox_keyword(b->mbox, i);
		if (k != NULL || fwd == (int)i)
			buf_printf(&kw, "%u %s\n", i, k != NULL ? k : "$Forwarded");
	}
	if (head.failed || kw.failed) {
		error_set(err, ERR_TEMP, "export: out of memory");
		goto out;
	}
	if (fsx_write_file_atomic(dirfd, "dovecot-uidlist", head.data, head.len) < 0 ||
	    (kw.len > 0 && fsx_write_file_atomic(dirfd, "dovecot-keywords", kw.data, kw.len) < 0)) {
		export_out_errno(x, err, "export: write dovecot-uidlist or dovecot-keywords");
		goto out;
	}
	ret = 0;
out:
	buf_free(&head);
	buf_free(&kw);
	return ret;
}

int export_maildir_box(struct export_ctx *x, const struct export_box *b, struct error *err)
{
	struct buf dir = BUF_INIT, uidlist = BUF_INIT;
	int dirfd = -1, curfd = -1, ret = -1;

	if (export_name_path(b->name, '.', &dir, err) < 0) {
		if (err->code != ERR_INVALID)
			goto out;
		export_skip(x, b->name, err->text);
		ret = 0;
		goto out;
	}
	if (make_dirs(x, x->outfd, dir.data, &dirfd, &curfd, err) < 0)
		goto out;
	int fwd = forwarded_letter(b);
	for (size_t i = 0; i < b->nmsgs; i++) {
		if (export_message(x, b, &b->msgs[i], fwd, curfd, &uidlist, err) < 0)
			goto out;
		if (x->opt->progress != NULL)
			x->opt->progress(x->opt->ctx, b->name, (uint32_t)(i + 1),
					 (uint32_t)b->nmsgs);
	}
	if (uidlist.failed) {
		error_set(err, ERR_TEMP, "export: out of memory");
		goto out;
	}
	if (write_meta(x, b, fwd, dirfd, &uidlist, err) < 0)
		goto out;
	if (fsx_fsync(curfd) < 0 || fsx_fsync(dirfd) < 0) {
		export_out_errno(x, err, "export: fsync a folder");
		goto out;
	}
	x->report.mailboxes++;
	ret = 0;
out:
	if (curfd >= 0)
		close(curfd);
	if (dirfd >= 0)
		close(dirfd);
	buf_free(&dir);
	buf_free(&uidlist);
	return ret;
}
