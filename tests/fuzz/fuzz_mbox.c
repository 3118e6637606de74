/* fuzz_mbox.c: the mbox driver (src/import/import_mbox.c) must take any
 * file: no crash, no read outside its buffers, no leak; the sink sees its
 * calls in order, and no message holds more bytes than the file has. The
 * input is put in a memfd and imported through /proc/self/fd. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "import/import.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fz {
	int in_folder, in_msg;
	uint64_t msg_bytes, total, size;
	uint32_t last_uid;
};

static int f_folder_begin(void *ctx, const struct import_folder *f, struct error *err)
{
	struct fz *z = ctx;
	(void)err;
	if (z->in_folder || f->name == NULL)
		abort();
	z->in_folder = 1;
	z->last_uid = 0;
	return 0;
}

static int f_has_uid(void *ctx, uint32_t uid)
{
	(void)ctx;
	return uid % 3 == 0; /* some re-run answers */
}

static int f_msg_file(void *ctx, const struct import_msg *m, int dirfd, const char *path,
		      struct error *err)
{
	(void)ctx, (void)m, (void)dirfd, (void)path, (void)err;
	abort();
}

static int f_msg_begin(void *ctx, const struct import_msg *m, struct error *err)
{
	struct fz *z = ctx;
	(void)err;
	if (!z->in_folder || z->in_msg)
		abort();
	/* kept UIDs rise strictly; the pointers are valid */
	if (m->uid != 0 && (m->uid <= z->last_uid || m->uid % 3 == 0))
		abort();
	if (m->uid != 0)
		z->last_uid = m->uid;
	for (size_t i = 0; i < m->nkeywords; i++)
		if (strlen(m->keywords[i]) == 0)
			abort();
	if (m->id == NULL || strlen(m->id) == 0)
		abort();
	z->in_msg = 1;
	z->msg_bytes = 0;
	return 0;
}

static int f_msg_write(void *ctx, const void *data, size_t len, struct error *err)
{
	struct fz *z = ctx;
	(void)err;
	if (!z->in_msg || len == 0)
		abort();
	volatile const char *p = data;
	(void)p[0], (void)p[len - 1];
	z->msg_bytes += len;
	z->total += len;
	if (z->total > z->size)
		abort();
	return 0;
}

static int f_msg_end(void *ctx, struct error *err)
{
	struct fz *z = ctx;
	(void)err;
	if (!z->in_msg || z->msg_bytes == 0)
		abort();
	z->in_msg = 0;
	return 0;
}

static int f_folder_end(void *ctx, struct error *err)
{
	struct fz *z = ctx;
	(void)err;
	if (!z->in_folder || z->in_msg)
		abort();
	z->in_folder = 0;
	return 0;
}

static int f_subscribe(void *ctx, const char *name, struct error *err)
{
	(void)ctx, (void)name, (void)err;
	return 0;
}

static void f_skip(void *ctx, const char *what, const char *reason)
{
	(void)ctx;
	if (strlen(what) == 0 || strlen(reason) == 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz z = {.size = size};
	struct import_sink s = {&z,	     f_folder_begin, f_has_uid,	   f_msg_file,	f_msg_begin,
				f_msg_write, f_msg_end,	     f_folder_end, f_subscribe, f_skip};
	struct error err;
	char path[64];
	int fd = memfd_create("fuzz_mbox", MFD_CLOEXEC);
	if (fd < 0)
		abort();
	if (size > 0 && write(fd, data, size) != (ssize_t)size)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	int rc = import_mbox(path, &s, &err);
	if (z.in_msg || z.in_folder)
		abort();
	if (rc == 0 && size > 0 && memcmp(data, "From ", size < 5 ? size : 5) != 0)
		abort(); /* a file that does not begin with "From " is refused */
	close(fd);
	return 0;
}
