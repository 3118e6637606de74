/*
 * fsx.h: the file-system calls the store makes, in one place.
 *
 * Design note. Every write, fsync, link, rename and unlink that can lose or
 * corrupt mail goes through this module, for two reasons:
 *
 *  1. Containment. fsx_open_beneath() is the only way the store opens a path
 *     below a user's root: openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so
 *     no name ("..", an absolute path, a planted symlink) reaches outside the
 *     directory fd it is given. On kernels without openat2 it walks the path
 *     one component at a time with O_NOFOLLOW and refuses "." and "..".
 *
 *  2. Fault injection. Tests make the Nth call of one kind (write, fsync, link,
 *     rename, unlink) fail with a chosen errno, then check the store's
 *     invariants. Set with fsx_fault_set(), or for a whole process with the
 *     environment variable MAILROOM_TEST_FAULT="op:N:ERRNO" (op is write,
 *     fsync, link, rename or unlink; ERRNO is ENOSPC, EIO, ... or a number).
 *     With no fault set the wrappers cost one branch.
 *
 * All functions return 0 (or a fd >= 0) on success and -1 with errno set.
 */
#ifndef MAILROOM_FSX_H
#define MAILROOM_FSX_H

#include <stddef.h>
#include <sys/types.h>

enum fsx_op { FSX_WRITE, FSX_FSYNC, FSX_LINK, FSX_RENAME, FSX_UNLINK, FSX_OP_COUNT };

/* Make the nth call (1-based, counted from now) of op fail with err.
 * nth == 0 clears the fault. Resets the call counter of op. */
void fsx_fault_set(enum fsx_op op, unsigned long nth, int err);
/* Number of calls of op since the process started or fsx_fault_set(op). */
unsigned long fsx_fault_calls(enum fsx_op op);
/* Parse "op:N:ERRNO"; 0 on success, -1 if malformed. */
int fsx_fault_parse(const char *spec);

/* write() all of buf, retrying short writes and EINTR. */
int fsx_write_all(int fd, const void *buf, size_t len);
int fsx_fsync(int fd);
int fsx_linkat(int olddirfd, const char *oldname, int newdirfd, const char *newname);
int fsx_renameat(int olddirfd, const char *oldname, int newdirfd, const char *newname);
/* renameat2(RENAME_NOREPLACE): fails with EEXIST if newname exists. */
int fsx_rename_noreplace(int olddirfd, const char *oldname, int newdirfd, const char *newname);
int fsx_unlinkat(int dirfd, const char *name, int flags);

/* Open path (relative, may contain '/') beneath dirfd; never follows a
 * symlink, never leaves dirfd. flags as open(2); O_CLOEXEC is always added.
 * Returns the new fd or -1 (ELOOP/EXDEV for an escape attempt). */
int fsx_open_beneath(int dirfd, const char *path, int flags, mode_t mode);
/* Open a directory beneath dirfd (O_RDONLY | O_DIRECTORY). */
int fsx_opendir_beneath(int dirfd, const char *path);

/* fsync the directory named path beneath dirfd ("." for dirfd itself). */
int fsx_fsync_dir(int dirfd, const char *path);

/* Replace name in dirfd with data, durably: write to a temporary name, fsync,
 * rename over name, fsync the directory. Readers see the old or the new
 * content, never a mix. */
int fsx_write_file_atomic(int dirfd, const char *name, const void *data, size_t len);

/* Read all of name beneath dirfd into a NUL-terminated malloc'ed buffer of at
 * most max bytes (EFBIG beyond). Caller frees *data_r. */
int fsx_read_file(int dirfd, const char *name, size_t max, char **data_r, size_t *len_r);

#endif
