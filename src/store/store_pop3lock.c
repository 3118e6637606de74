/* store_pop3lock.c: the POP3 maildrop lock; see store_pop3lock.h. */
#include "store/store_pop3lock.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "store/store_int.h"

int store_pop3lock_take(struct store_mailbox *mbox, int *fd_r, struct error *err)
{
	if (store_fds_open(mbox, err) < 0)
		return -1;
	/* O_NOFOLLOW: a symlink planted under this name is refused, never
	 * followed out of the mailbox folder (dir_fd is already beneath the
	 * user's root). */
	int fd = openat(mbox->dir_fd, STORE_POP3LOCK_FILE,
			O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
	if (fd < 0) {
		error_errno(err, "cannot open the POP3 lock file");
		return -1;
	}
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EINTR)
			continue;
		if (errno == EWOULDBLOCK)
			error_set(err, ERR_EXISTS, "mailbox in use by another POP3 session");
		else
			error_errno(err, "cannot lock the POP3 lock file");
		close(fd);
		return -1;
	}
	*fd_r = fd;
	return 0;
}

void store_pop3lock_release(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}
