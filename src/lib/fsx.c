/*
 * fsx.c: file-system wrappers with containment and fault injection.
 * See fsx.h for the design note.
 */
#include "lib/fsx.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/openat2.h>

struct fault {
	unsigned long calls;
	unsigned long nth;
	int err;
};

static struct fault faults[FSX_OP_COUNT];
static int faults_from_env_done;

static const char *const op_names[FSX_OP_COUNT] = { "write", "fsync", "link", "rename", "unlink" };

static const struct {
	const char *name;
	int value;
} errnos[] = {
	{ "ENOSPC", ENOSPC }, { "EIO", EIO },	  { "EDQUOT", EDQUOT }, { "EROFS", EROFS },
	{ "EACCES", EACCES }, { "ENOENT", ENOENT }, { "EEXIST", EEXIST }, { "EMLINK", EMLINK },
};

int fsx_fault_parse(const char *spec)
{
	char op[16];
	char err[16];
	unsigned long nth;
	int n = 0;

	if (sscanf(spec, "%15[a-z]:%lu:%15[A-Z0-9]%n", op, &nth, err, &n) != 3 || spec[n] != '\0')
		return -1;
	int e = 0;
	for (size_t i = 0; i < sizeof(errnos) / sizeof(errnos[0]); i++)
		if (strcmp(err, errnos[i].name) == 0)
			e = errnos[i].value;
	if (e == 0) {
		char *end;
		long v = strtol(err, &end, 10);
		if (*end != '\0' || v <= 0 || v > 4095)
			return -1;
		e = (int)v;
	}
	for (int i = 0; i < FSX_OP_COUNT; i++) {
		if (strcmp(op, op_names[i]) == 0) {
			fsx_fault_set((enum fsx_op)i, nth, e);
			return 0;
		}
	}
	return -1;
}

static void faults_from_env(void)
{
	faults_from_env_done = 1;
	const char *spec = getenv("MAILROOM_TEST_FAULT");
	if (spec != NULL && *spec != '\0' && fsx_fault_parse(spec) < 0)
		fprintf(stderr, "mailroom: ignoring malformed MAILROOM_TEST_FAULT=%s\n", spec);
}

void fsx_fault_set(enum fsx_op op, unsigned long nth, int err)
{
	faults_from_env_done = 1;
	faults[op].calls = 0;
	faults[op].nth = nth;
	faults[op].err = err;
}

unsigned long fsx_fault_calls(enum fsx_op op)
{
	return faults[op].calls;
}

/* Count one call of op; return -1 with errno set if this one must fail. */
static int fault_hit(enum fsx_op op)
{
	if (!faults_from_env_done)
		faults_from_env();
	struct fault *f = &faults[op];
	f->calls++;
	if (f->nth != 0 && f->calls == f->nth) {
		errno = f->err;
		return -1;
	}
	return 0;
}

int fsx_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	if (fault_hit(FSX_WRITE) < 0)
		return -1;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int fsx_fsync(int fd)
{
	if (fault_hit(FSX_FSYNC) < 0)
		return -1;
	return fsync(fd);
}

int fsx_linkat(int olddirfd, const char *oldname, int newdirfd, const char *newname)
{
	if (fault_hit(FSX_LINK) < 0)
		return -1;
	return linkat(olddirfd, oldname, newdirfd, newname, 0);
}

int fsx_renameat(int olddirfd, const char *oldname, int newdirfd, const char *newname)
{
	if (fault_hit(FSX_RENAME) < 0)
		return -1;
	return renameat(olddirfd, oldname, newdirfd, newname);
}

int fsx_rename_noreplace(int olddirfd, const char *oldname, int newdirfd, const char *newname)
{
	if (fault_hit(FSX_RENAME) < 0)
		return -1;
	return renameat2(olddirfd, oldname, newdirfd, newname, RENAME_NOREPLACE);
}

int fsx_unlinkat(int dirfd, const char *name, int flags)
{
	if (fault_hit(FSX_UNLINK) < 0)
		return -1;
	return unlinkat(dirfd, name, flags);
}

/* Fallback for kernels without openat2: walk component by component, never
 * following a symlink and refusing "." / ".." / absolute paths. */
static int open_beneath_walk(int dirfd, const char *path, int flags, mode_t mode)
{
	char comp[256];
	int cur = dirfd;

	if (path[0] == '/') {
		errno = EXDEV;
		return -1;
	}
	for (;;) {
		const char *slash = strchr(path, '/');
		size_t len = slash ? (size_t)(slash - path) : strlen(path);
		if (len == 0 || len >= sizeof(comp)) {
			errno = len == 0 ? EINVAL : ENAMETOOLONG;
			goto fail;
		}
		memcpy(comp, path, len);
		comp[len] = '\0';
		if (strcmp(comp, ".") == 0 || strcmp(comp, "..") == 0) {
			errno = EXDEV;
			goto fail;
		}
		int fd;
		if (slash == NULL)
			fd = openat(cur, comp, flags | O_NOFOLLOW | O_CLOEXEC, mode);
		else
			fd = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			goto fail;
		if (cur != dirfd)
			close(cur);
		cur = fd;
		if (slash == NULL)
			return cur;
		path = slash + 1;
	}
fail:
	if (cur != dirfd) {
		int e = errno;
		close(cur);
		errno = e;
	}
	return -1;
}

int fsx_open_beneath(int dirfd, const char *path, int flags, mode_t mode)
{
	/* 0: not decided yet, 1: openat2 missing (or MAILROOM_TEST_NO_OPENAT2=1,
	 * read once: the tests' switch to exercise the walk), -1: use openat2. */
	static int no_openat2;
	struct open_how how;

	if (__atomic_load_n(&no_openat2, __ATOMIC_RELAXED) == 0) {
		const char *env = getenv("MAILROOM_TEST_NO_OPENAT2");
		__atomic_store_n(&no_openat2, env != NULL && strcmp(env, "1") == 0 ? 1 : -1,
				 __ATOMIC_RELAXED);
	}
	if (__atomic_load_n(&no_openat2, __ATOMIC_RELAXED) < 0) {
		memset(&how, 0, sizeof(how));
		how.flags = (unsigned long long)(flags | O_CLOEXEC);
		how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
		how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
		long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
		if (fd >= 0 || errno != ENOSYS)
			return (int)fd;
		__atomic_store_n(&no_openat2, 1, __ATOMIC_RELAXED);
	}
	return open_beneath_walk(dirfd, path, flags, mode);
}

int fsx_opendir_beneath(int dirfd, const char *path)
{
	return fsx_open_beneath(dirfd, path, O_RDONLY | O_DIRECTORY, 0);
}

int fsx_fsync_dir(int dirfd, const char *path)
{
	int fd = strcmp(path, ".") == 0 ? dirfd : fsx_opendir_beneath(dirfd, path);
	if (fd < 0)
		return -1;
	int ret = fsx_fsync(fd);
	if (fd != dirfd) {
		int e = errno;
		close(fd);
		errno = e;
	}
	return ret;
}

int fsx_write_file_atomic(int dirfd, const char *name, const void *data, size_t len)
{
	char tmp[300];
	int fd = -1;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", name, (long)getpid()) >= (int)sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = fsx_open_beneath(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return -1;
	if (fsx_write_all(fd, data, len) < 0 || fsx_fsync(fd) < 0)
		goto fail;
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (fsx_renameat(dirfd, tmp, dirfd, name) < 0)
		goto fail;
	return fsx_fsync(dirfd);
fail:;
	int e = errno;
	if (fd >= 0)
		close(fd);
	unlinkat(dirfd, tmp, 0);
	errno = e;
	return -1;
}

int fsx_read_file(int dirfd, const char *name, size_t max, char **data_r, size_t *len_r)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	int fd = fsx_open_beneath(dirfd, name, O_RDONLY, 0);

	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0)
		goto fail;
	if ((size_t)st.st_size > max) {
		errno = EFBIG;
		goto fail;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL)
		goto fail;
	while (len < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + len, (size_t)st.st_size - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	close(fd);
	*data_r = buf;
	*len_r = len;
	return 0;
fail:;
	int e = errno;
	free(buf);
	close(fd);
	errno = e;
	return -1;
}
