/*
 * pclog.c: an LD_PRELOAD library that logs every change a process makes to
 * the files beneath one folder, for the power-cut simulation
 * (tests/powercut/replay.py, tests/e2e/test_powercut.py).
 *
 * Environment:
 *   PCLOG_FILE     the log; appended to with O_APPEND, one writev() per record,
 *                  so processes (the server, its workers, `mailroom deliver`)
 *                  and threads share it without a lock. PCLOG_FILE.seq holds
 *                  the global sequence counter (8 bytes, mmap'd MAP_SHARED).
 *                  Both must exist (the test creates them, mode 0666, so that
 *                  workers that dropped root can still write).
 *   PCLOG_ROOT     only changes beneath this folder (its real path) are logged.
 *   PCLOG_BOOT_ID  if set, /proc/sys/kernel/random/boot_id reads as this
 *                  (the "reboot" after a simulated power cut); logging is off
 *                  unless PCLOG_FILE is set too.
 *
 * Interposed: write, pwrite(64), writev, pwritev(64), ftruncate(64),
 * fallocate(64), fsync, fdatasync, open(64)/openat(64)/creat(64) with O_CREAT
 * or O_TRUNC, syscall(SYS_openat2) (how mailroom opens files, src/lib/fsx.c),
 * rename/renameat/renameat2, link/linkat, unlink/unlinkat, mkdir/mkdirat,
 * rmdir, and fopen(64) for the boot id. Calls that glibc makes internally
 * (stdio's own writes) bypass the PLT and are not seen; mailroom and SQLite
 * write their store files through the calls above only.
 *
 * A record is taken after the call returned successfully: first the
 * CLOCK_MONOTONIC time, then the sequence number. So when a client receives
 * an acknowledgement at time T, every record of the work acknowledged has a
 * time below T, and every record with a time above T has a higher sequence
 * number than all of them (the counter is atomic, the clock monotonic).
 *
 * Record (little endian, packed; see REC in replay.py):
 *   u32 len, u16 op, u16 n1, u16 n2, u16 plen, u32 pid, u64 seq, u64 ns,
 *   u64 ino, u64 dino1, u64 dino2, i64 off, u64 dlen, u32 flags, u32 pad,
 *   then name1 (n1 bytes), name2 (n2), path (plen, for reading the log only),
 *   data (dlen bytes, write records only).
 * ino is the object's inode; dino1/dino2 the inodes of the folders that hold
 * name1/name2.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum pc_op {
	PC_WRITE = 1,
	PC_TRUNC = 2, /* dlen = new size */
	PC_FSYNC = 3, /* flags 1: a folder */
	PC_CREATE = 4, /* name1 in dino1, new file ino */
	PC_MKDIR = 5,
	PC_LINK = 6, /* name1 in dino1 -> name2 in dino2 */
	PC_RENAME = 7, /* name1 in dino1 -> name2 in dino2; flags as renameat2 */
	PC_UNLINK = 8,
	PC_RMDIR = 9,
	PC_EXTEND = 10, /* fallocate without KEEP_SIZE: size at least dlen */
};

struct rec {
	uint32_t len;
	uint16_t op, n1, n2, plen;
	uint32_t pid;
	uint64_t seq, ns, ino, dino1, dino2;
	int64_t off;
	uint64_t dlen;
	uint32_t flags, pad;
} __attribute__((packed));

/* The real functions. */
static ssize_t (*r_write)(int, const void *, size_t);
static ssize_t (*r_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*r_pwrite64)(int, const void *, size_t, off64_t);
static ssize_t (*r_writev)(int, const struct iovec *, int);
static ssize_t (*r_pwritev)(int, const struct iovec *, int, off_t);
static ssize_t (*r_pwritev64)(int, const struct iovec *, int, off64_t);
static int (*r_ftruncate)(int, off_t);
static int (*r_ftruncate64)(int, off64_t);
static int (*r_fallocate)(int, int, off_t, off_t);
static int (*r_fallocate64)(int, int, off64_t, off64_t);
static int (*r_fsync)(int);
static int (*r_fdatasync)(int);
static int (*r_open)(const char *, int, ...);
static int (*r_open64)(const char *, int, ...);
static int (*r_openat)(int, const char *, int, ...);
static int (*r_openat64)(int, const char *, int, ...);
static int (*r_creat)(const char *, mode_t);
static int (*r_creat64)(const char *, mode_t);
static long (*r_syscall)(long, ...);
static int (*r_rename)(const char *, const char *);
static int (*r_renameat)(int, const char *, int, const char *);
static int (*r_renameat2)(int, const char *, int, const char *, unsigned int);
static int (*r_link)(const char *, const char *);
static int (*r_linkat)(int, const char *, int, const char *, int);
static int (*r_unlink)(const char *);
static int (*r_unlinkat)(int, const char *, int);
static int (*r_mkdir)(const char *, mode_t);
static int (*r_mkdirat)(int, const char *, mode_t);
static int (*r_rmdir)(const char *);
static FILE *(*r_fopen)(const char *, const char *);
static FILE *(*r_fopen64)(const char *, const char *);

static char root[PATH_MAX];
static size_t root_len;
static char log_path[PATH_MAX];
static int log_fd = -1;
static dev_t log_dev;
static ino_t log_ino;
static uint64_t *seq_counter;
static __thread int busy; /* our own calls pass through unlogged */

#define REAL(name) r_##name = (__typeof__(r_##name))dlsym(RTLD_NEXT, #name)

static void open_log(void)
{
	struct stat st;
	int fd = (int)syscall(SYS_openat, AT_FDCWD, log_path, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd < 0)
		return;
	/* Far from the descriptors the program uses, so a close-all range or a
	 * reused number is unlikely to meet it; checked before each use anyway. */
	int high = fcntl(fd, F_DUPFD_CLOEXEC, 900);
	close(fd);
	if (high < 0 || fstat(high, &st) < 0)
		return;
	log_fd = high;
	log_dev = st.st_dev;
	log_ino = st.st_ino;
}

__attribute__((constructor)) static void pclog_init(void)
{
	REAL(write); REAL(pwrite); REAL(pwrite64); REAL(writev); REAL(pwritev); REAL(pwritev64);
	REAL(ftruncate); REAL(ftruncate64); REAL(fallocate); REAL(fallocate64);
	REAL(fsync); REAL(fdatasync); REAL(open); REAL(open64); REAL(openat); REAL(openat64);
	REAL(creat); REAL(creat64); REAL(syscall); REAL(rename); REAL(renameat); REAL(renameat2);
	REAL(link); REAL(linkat); REAL(unlink); REAL(unlinkat); REAL(mkdir); REAL(mkdirat);
	REAL(rmdir); REAL(fopen); REAL(fopen64);

	const char *lp = getenv("PCLOG_FILE");
	const char *rp = getenv("PCLOG_ROOT");
	if (lp == NULL || rp == NULL || *lp == '\0' || realpath(rp, root) == NULL)
		return;
	root_len = strlen(root);
	snprintf(log_path, sizeof(log_path), "%s", lp);
	char seq_path[PATH_MAX + 8];
	snprintf(seq_path, sizeof(seq_path), "%s.seq", lp);
	int fd = (int)syscall(SYS_openat, AT_FDCWD, seq_path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return;
	void *p = mmap(NULL, sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return;
	seq_counter = p;
	open_log();
}

static int enabled(void)
{
	return seq_counter != NULL && !busy;
}

/* Is path beneath the root (or the root itself)? */
static int beneath(const char *path)
{
	return strncmp(path, root, root_len) == 0 && (path[root_len] == '\0' || path[root_len] == '/');
}

static void fd_path(int fd, char *out, size_t size)
{
	char link[64];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, out, size - 1);
	out[n < 0 ? 0 : n] = '\0';
}

/* A regular file or folder beneath the root: its inode and path. */
static int fd_watched(int fd, uint64_t *ino, int *is_dir, char *path, size_t size)
{
	struct stat st;
	if (fstat(fd, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)))
		return 0;
	if (st.st_dev == log_dev && st.st_ino == log_ino)
		return 0;
	fd_path(fd, path, size);
	if (!beneath(path))
		return 0;
	*ino = st.st_ino;
	*is_dir = S_ISDIR(st.st_mode);
	return 1;
}

/* The folder that holds dirfd/name: inode, and the last component of name.
 * Returns 0 if it is not beneath the root. */
static int parent_of(int dirfd, const char *name, uint64_t *dino, const char **base)
{
	char dpath[PATH_MAX];
	const char *slash = strrchr(name, '/');
	int pfd;
	if (slash == NULL) {
		*base = name;
		pfd = (int)syscall(SYS_openat, dirfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	} else {
		size_t n = (size_t)(slash - name);
		if (n >= sizeof(dpath))
			return 0;
		memcpy(dpath, name, n);
		dpath[n] = '\0';
		*base = slash + 1;
		pfd = (int)syscall(SYS_openat, dirfd, n == 0 ? "/" : dpath,
				   O_PATH | O_DIRECTORY | O_CLOEXEC);
	}
	if (pfd < 0)
		return 0;
	struct stat st;
	int ok = fstat(pfd, &st) == 0;
	fd_path(pfd, dpath, sizeof(dpath));
	close(pfd);
	if (!ok || !beneath(dpath))
		return 0;
	*dino = st.st_ino;
	return 1;
}

static uint64_t ino_at(int dirfd, const char *name)
{
	struct stat st;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return 0;
	return st.st_ino;
}

static void emit(struct rec *r, const char *n1, const char *n2, const char *path,
		 const struct iovec *data, int ndata)
{
	struct timespec ts;
	struct iovec iov[4 + 64];
	int k = 0;
	struct stat st;

	if (log_fd < 0 || fstat(log_fd, &st) < 0 || st.st_dev != log_dev || st.st_ino != log_ino)
		open_log(); /* the program closed or reused our descriptor */
	if (log_fd < 0)
		return;
	r->n1 = (uint16_t)(n1 ? strlen(n1) : 0);
	r->n2 = (uint16_t)(n2 ? strlen(n2) : 0);
	r->plen = (uint16_t)(path ? strlen(path) : 0);
	r->pid = (uint32_t)getpid();
	r->len = (uint32_t)(sizeof(*r) + r->n1 + r->n2 + r->plen + (r->op == PC_WRITE ? r->dlen : 0));
	iov[k++] = (struct iovec){ r, sizeof(*r) };
	iov[k++] = (struct iovec){ (void *)(uintptr_t)(n1 ? n1 : ""), r->n1 };
	iov[k++] = (struct iovec){ (void *)(uintptr_t)(n2 ? n2 : ""), r->n2 };
	iov[k++] = (struct iovec){ (void *)(uintptr_t)(path ? path : ""), r->plen };
	for (int i = 0; i < ndata && k < (int)(sizeof(iov) / sizeof(iov[0])); i++)
		iov[k++] = data[i];
	/* time first, then the number: see the top comment */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	r->ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	r->seq = __atomic_add_fetch(seq_counter, 1, __ATOMIC_SEQ_CST);
	if (r_writev(log_fd, iov, k) < 0)
		fprintf(stderr, "pclog: cannot write %s: %s\n", log_path, strerror(errno));
}

/* ---- data ---------------------------------------------------------------- */

static void log_write(int fd, ssize_t n, int64_t off, const struct iovec *iov, int iovcnt)
{
	char path[PATH_MAX];
	uint64_t ino;
	int is_dir;
	if (n <= 0 || !enabled())
		return;
	busy = 1;
	if (fd_watched(fd, &ino, &is_dir, path, sizeof(path))) {
		if (off < 0) /* write/writev: where the file position was */
			off = (int64_t)lseek(fd, 0, SEEK_CUR) - n;
		/* only the bytes actually written */
		struct iovec part[64];
		int k = 0;
		size_t left = (size_t)n;
		for (int i = 0; i < iovcnt && k < 64 && left > 0; i++) {
			size_t l = iov[i].iov_len < left ? iov[i].iov_len : left;
			part[k++] = (struct iovec){ iov[i].iov_base, l };
			left -= l;
		}
		struct rec r = { .op = PC_WRITE, .ino = ino, .off = off, .dlen = (uint64_t)n - left };
		emit(&r, NULL, NULL, path, part, k);
	}
	busy = 0;
}

ssize_t write(int fd, const void *buf, size_t len)
{
	ssize_t n = r_write(fd, buf, len);
	struct iovec v = { (void *)(uintptr_t)buf, len };
	log_write(fd, n, -1, &v, 1);
	return n;
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	ssize_t n = r_pwrite(fd, buf, len, off);
	struct iovec v = { (void *)(uintptr_t)buf, len };
	log_write(fd, n, off, &v, 1);
	return n;
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off64_t off)
{
	ssize_t n = r_pwrite64(fd, buf, len, off);
	struct iovec v = { (void *)(uintptr_t)buf, len };
	log_write(fd, n, off, &v, 1);
	return n;
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
	ssize_t n = r_writev(fd, iov, iovcnt);
	log_write(fd, n, -1, iov, iovcnt);
	return n;
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
	ssize_t n = r_pwritev(fd, iov, iovcnt, off);
	log_write(fd, n, off, iov, iovcnt);
	return n;
}

ssize_t pwritev64(int fd, const struct iovec *iov, int iovcnt, off64_t off)
{
	ssize_t n = r_pwritev64(fd, iov, iovcnt, off);
	log_write(fd, n, off, iov, iovcnt);
	return n;
}

static void log_fd_op(int fd, enum pc_op op, uint64_t size)
{
	char path[PATH_MAX];
	uint64_t ino;
	int is_dir;
	if (!enabled())
		return;
	busy = 1;
	if (fd_watched(fd, &ino, &is_dir, path, sizeof(path))) {
		struct rec r = { .op = (uint16_t)op, .ino = ino, .dlen = size,
				 .flags = op == PC_FSYNC ? (uint32_t)is_dir : 0 };
		emit(&r, NULL, NULL, path, NULL, 0);
	}
	busy = 0;
}

int ftruncate(int fd, off_t len)
{
	int ret = r_ftruncate(fd, len);
	if (ret == 0)
		log_fd_op(fd, PC_TRUNC, (uint64_t)len);
	return ret;
}

int ftruncate64(int fd, off64_t len)
{
	int ret = r_ftruncate64(fd, len);
	if (ret == 0)
		log_fd_op(fd, PC_TRUNC, (uint64_t)len);
	return ret;
}

int fallocate(int fd, int mode, off_t off, off_t len)
{
	int ret = r_fallocate(fd, mode, off, len);
	if (ret == 0 && !(mode & FALLOC_FL_KEEP_SIZE))
		log_fd_op(fd, PC_EXTEND, (uint64_t)(off + len));
	return ret;
}

int fallocate64(int fd, int mode, off64_t off, off64_t len)
{
	int ret = r_fallocate64(fd, mode, off, len);
	if (ret == 0 && !(mode & FALLOC_FL_KEEP_SIZE))
		log_fd_op(fd, PC_EXTEND, (uint64_t)(off + len));
	return ret;
}

int fsync(int fd)
{
	int ret = r_fsync(fd);
	if (ret == 0)
		log_fd_op(fd, PC_FSYNC, 0);
	return ret;
}

int fdatasync(int fd)
{
	int ret = r_fdatasync(fd);
	if (ret == 0)
		log_fd_op(fd, PC_FSYNC, 0);
	return ret;
}

/* ---- names ---------------------------------------------------------------- */

struct before {
	int watched;
	int existed;
	uint64_t dino;
	const char *base;
};

static void before_open(int dirfd, const char *path, int flags, struct before *b)
{
	b->watched = 0;
	if (!enabled() || !(flags & (O_CREAT | O_TRUNC)) || (flags & O_TMPFILE) == O_TMPFILE)
		return;
	busy = 1;
	b->watched = parent_of(dirfd, path, &b->dino, &b->base);
	if (b->watched)
		b->existed = ino_at(dirfd, path) != 0;
	busy = 0;
}

static void after_open(int fd, int flags, const struct before *b)
{
	char path[PATH_MAX];
	uint64_t ino;
	int is_dir;
	if (fd < 0 || !b->watched || !enabled())
		return;
	busy = 1;
	if (fd_watched(fd, &ino, &is_dir, path, sizeof(path))) {
		if (!b->existed) {
			struct rec r = { .op = PC_CREATE, .ino = ino, .dino1 = b->dino };
			emit(&r, b->base, NULL, path, NULL, 0);
		} else if (flags & O_TRUNC) {
			struct rec r = { .op = PC_TRUNC, .ino = ino };
			emit(&r, NULL, NULL, path, NULL, 0);
		}
	}
	busy = 0;
}

static int open_common(int (*real)(int, const char *, int, ...), int dirfd, const char *path,
		       int flags, mode_t mode)
{
	struct before b;
	before_open(dirfd, path, flags, &b);
	int fd = real(dirfd, path, flags, mode);
	after_open(fd, flags, &b);
	return fd;
}

static mode_t mode_arg(int flags, va_list ap)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	return open_common(r_openat, AT_FDCWD, path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	return open_common(r_openat64, AT_FDCWD, path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	return open_common(r_openat, dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	return open_common(r_openat64, dirfd, path, flags, mode);
}

int creat(const char *path, mode_t mode)
{
	return open_common(r_openat, AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

int creat64(const char *path, mode_t mode)
{
	return open_common(r_openat64, AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

long syscall(long number, ...)
{
	va_list ap;
	long a[6];
	va_start(ap, number);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (number != SYS_openat2 || busy)
		return r_syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
	const struct open_how *how = (const struct open_how *)(uintptr_t)a[2];
	struct before b;
	int flags = how != NULL ? (int)how->flags : 0;
	before_open((int)a[0], (const char *)(uintptr_t)a[1], flags, &b);
	long fd = r_syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
	after_open((int)fd, flags, &b);
	return fd;
}

/* Log a change of the name dirfd/name (and of dirfd2/name2). */
struct named {
	int watched1, watched2;
	uint64_t dino1, dino2, ino;
	const char *base1, *base2;
};

static void before_names(int dirfd, const char *name, int dirfd2, const char *name2,
			 struct named *nm)
{
	nm->watched1 = nm->watched2 = 0;
	if (!enabled())
		return;
	busy = 1;
	nm->watched1 = parent_of(dirfd, name, &nm->dino1, &nm->base1);
	nm->ino = nm->watched1 ? ino_at(dirfd, name) : 0;
	if (name2 != NULL)
		nm->watched2 = parent_of(dirfd2, name2, &nm->dino2, &nm->base2);
	busy = 0;
}

static void after_names(int ret, enum pc_op op, uint32_t flags, const struct named *nm)
{
	if (ret != 0 || !enabled() || !(nm->watched1 || nm->watched2))
		return;
	busy = 1;
	struct rec r = { .op = (uint16_t)op, .ino = nm->ino, .flags = flags,
			 .dino1 = nm->watched1 ? nm->dino1 : 0, .dino2 = nm->watched2 ? nm->dino2 : 0 };
	emit(&r, nm->watched1 ? nm->base1 : NULL, nm->watched2 ? nm->base2 : NULL, NULL, NULL, 0);
	busy = 0;
}

int renameat2(int od, const char *on, int nd, const char *nn, unsigned int flags)
{
	struct named nm;
	before_names(od, on, nd, nn, &nm);
	int ret = r_renameat2(od, on, nd, nn, flags);
	after_names(ret, PC_RENAME, flags, &nm);
	return ret;
}

int renameat(int od, const char *on, int nd, const char *nn)
{
	struct named nm;
	before_names(od, on, nd, nn, &nm);
	int ret = r_renameat(od, on, nd, nn);
	after_names(ret, PC_RENAME, 0, &nm);
	return ret;
}

int rename(const char *on, const char *nn)
{
	struct named nm;
	before_names(AT_FDCWD, on, AT_FDCWD, nn, &nm);
	int ret = r_rename(on, nn);
	after_names(ret, PC_RENAME, 0, &nm);
	return ret;
}

int linkat(int od, const char *on, int nd, const char *nn, int flags)
{
	struct named nm;
	before_names(od, on, nd, nn, &nm);
	int ret = r_linkat(od, on, nd, nn, flags);
	after_names(ret, PC_LINK, 0, &nm);
	return ret;
}

int link(const char *on, const char *nn)
{
	struct named nm;
	before_names(AT_FDCWD, on, AT_FDCWD, nn, &nm);
	int ret = r_link(on, nn);
	after_names(ret, PC_LINK, 0, &nm);
	return ret;
}

int unlinkat(int dirfd, const char *name, int flags)
{
	struct named nm;
	before_names(dirfd, name, -1, NULL, &nm);
	int ret = r_unlinkat(dirfd, name, flags);
	after_names(ret, (flags & AT_REMOVEDIR) ? PC_RMDIR : PC_UNLINK, 0, &nm);
	return ret;
}

int unlink(const char *name)
{
	struct named nm;
	before_names(AT_FDCWD, name, -1, NULL, &nm);
	int ret = r_unlink(name);
	after_names(ret, PC_UNLINK, 0, &nm);
	return ret;
}

int rmdir(const char *name)
{
	struct named nm;
	before_names(AT_FDCWD, name, -1, NULL, &nm);
	int ret = r_rmdir(name);
	after_names(ret, PC_RMDIR, 0, &nm);
	return ret;
}

static void after_mkdir(int ret, int dirfd, const char *name, const struct named *nm)
{
	if (ret != 0 || !nm->watched1 || !enabled())
		return;
	busy = 1;
	struct rec r = { .op = PC_MKDIR, .ino = ino_at(dirfd, name), .dino1 = nm->dino1 };
	emit(&r, nm->base1, NULL, NULL, NULL, 0);
	busy = 0;
}

int mkdirat(int dirfd, const char *name, mode_t mode)
{
	struct named nm;
	before_names(dirfd, name, -1, NULL, &nm);
	int ret = r_mkdirat(dirfd, name, mode);
	after_mkdir(ret, dirfd, name, &nm);
	return ret;
}

int mkdir(const char *name, mode_t mode)
{
	struct named nm;
	before_names(AT_FDCWD, name, -1, NULL, &nm);
	int ret = r_mkdir(name, mode);
	after_mkdir(ret, AT_FDCWD, name, &nm);
	return ret;
}

/* ---- the boot id ------------------------------------------------------------- */

static FILE *boot_id(const char *path)
{
	const char *id = getenv("PCLOG_BOOT_ID");
	if (id == NULL || strcmp(path, "/proc/sys/kernel/random/boot_id") != 0)
		return NULL;
	static __thread char buf[64];
	snprintf(buf, sizeof(buf), "%s\n", id);
	return fmemopen(buf, strlen(buf), "r");
}

FILE *fopen(const char *path, const char *mode)
{
	FILE *f = boot_id(path);
	return f != NULL ? f : r_fopen(path, mode);
}

FILE *fopen64(const char *path, const char *mode)
{
	FILE *f = boot_id(path);
	return f != NULL ? f : r_fopen64(path, mode);
}
