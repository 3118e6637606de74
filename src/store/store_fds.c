/*
 * store_fds.c: the three directory descriptors of an open mailbox (its
 * folder, cur/ and new/).
 *
 * A session that waits (IDLE) gives them back (store_mailbox_release_fds);
 * every operation that needs them calls store_fds_open first, which reopens
 * them beneath the user's root. The folder found then must be the one
 * opened first (same device and inode): a mailbox deleted, or renamed and
 * replaced by another of its name, is NOTFOUND, never silently the
 * newcomer. While the mailbox is locked the descriptors stay (the lock is
 * held on the folder's descriptor).
 */
#include "store/store_int.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fsx.h"

static int open_subdir(int dir_fd, const char *name)
{
	int fd = fsx_opendir_beneath(dir_fd, name);
	if (fd < 0 && errno == ENOENT && mkdirat(dir_fd, name, 0700) == 0)
		fd = fsx_opendir_beneath(dir_fd, name);
	return fd;
}

static int open_fds(struct store_mailbox *m, struct error *err)
{
	m->dir_fd = fsx_opendir_beneath(m->user->root_fd, m->dirname);
	if (m->dir_fd < 0) {
		if (errno == ENOENT)
			error_set(err, ERR_NOTFOUND, "no such mailbox");
		else
			error_errno(err, "cannot open the mailbox");
		return -1;
	}
	struct stat st;
	if (fstat(m->dir_fd, &st) < 0) {
		error_errno(err, "cannot stat the mailbox");
		goto fail;
	}
	if (m->dir_ino == 0) {
		m->dir_dev = st.st_dev;
		m->dir_ino = st.st_ino;
	} else if (m->dir_dev != st.st_dev || m->dir_ino != st.st_ino) {
		error_set(err, ERR_NOTFOUND, "the mailbox was deleted or renamed");
		goto fail;
	}
	m->cur_fd = open_subdir(m->dir_fd, "cur");
	m->new_fd = open_subdir(m->dir_fd, "new");
	if (m->cur_fd < 0 || m->new_fd < 0) {
		error_errno(err, "cannot open the mailbox's cur/ or new/");
		goto fail;
	}
	return 0;
fail:
	store_fds_close(m);
	return -1;
}

int store_fds_open(struct store_mailbox *mbox, struct error *err)
{
	if (mbox->dir_fd >= 0 && mbox->cur_fd >= 0 && mbox->new_fd >= 0)
		return 0;
	store_fds_close(mbox);
	return open_fds(mbox, err);
}

void store_fds_close(struct store_mailbox *mbox)
{
	if (mbox->lock_depth > 0)
		return; /* the lock is held on dir_fd */
	int *fds[3] = { &mbox->new_fd, &mbox->cur_fd, &mbox->dir_fd };
	for (int i = 0; i < 3; i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
}
