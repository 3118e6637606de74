/*
 * store.c: the DATA folder (store_open: DATA/mail and DATA/spool/tmp, the
 * settings the store keeps), user names, unique maildir base names, and the
 * removal of a folder tree that never follows a symlink.
 *
 * Every user's root is DATA/mail/USER (store_user.c); everything of the
 * user is opened beneath its directory fd (fsx_open_beneath), never by a
 * path string, so a planted symlink or a crafted mailbox name cannot reach
 * another user.
 */
#include "store/store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "lib/config.h"
#include "lib/fsx.h"

static void read_boot_id(char *out, size_t size)
{
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
	out[0] = '\0';
	if (f != NULL) {
		if (fgets(out, (int)size, f) == NULL)
			out[0] = '\0';
		fclose(f);
	}
	out[strcspn(out, "\n")] = '\0';
}

static void init_host(struct store *st)
{
	char h[64];
	size_t o = 0;
	if (gethostname(h, sizeof(h)) < 0)
		strcpy(h, "localhost");
	h[sizeof(h) - 1] = '\0';
	/* Maildir: '/' and ':' are escaped in the host part; we also escape ','
	 * and '.' because both separate fields of our names. */
	for (const char *p = h; *p != '\0' && o + 5 < sizeof(st->host); p++) {
		if (*p == '/' || *p == ':' || *p == ',' || *p == '.' || (unsigned char)*p < 0x21 ||
		    (unsigned char)*p > 0x7e)
			o += (size_t)snprintf(st->host + o, sizeof(st->host) - o, "\\%03o",
					      (unsigned char)*p);
		else
			st->host[o++] = *p;
	}
	st->host[o] = '\0';
}

void store_unique_base(struct store *store, char *out, size_t outsize)
{
	struct timeval tv;
	unsigned char rnd[4] = { 0 };
	gettimeofday(&tv, NULL);
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (read(fd, rnd, sizeof(rnd)) < 0)
			memset(rnd, 0, sizeof(rnd));
		close(fd);
	}
	snprintf(out, outsize, "%lld.M%06ldP%ldQ%luR%02x%02x%02x%02x.%s", (long long)tv.tv_sec,
		 (long)tv.tv_usec, (long)getpid(),
		 __atomic_add_fetch(&store->counter, 1, __ATOMIC_RELAXED), rnd[0], rnd[1], rnd[2], rnd[3],
		 store->host);
}

static int mkdir_beneath(int dirfd, const char *name)
{
	if (mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

int store_open(const char *data_dir, const struct config *settings, struct store **store_r,
	       struct error *err)
{
	struct store *st = calloc(1, sizeof(*st));
	if (st == NULL) {
		error_set(err, ERR_TEMP, "out of memory");
		return -1;
	}
	st->data_fd = st->mail_fd = st->spool_fd = -1;
	st->data_dir = strdup(data_dir);
	st->lock_timeout = 30;
	st->metadata_max_size = 64 * 1024;
	st->metadata_max_entries = 500;
	unsigned pool_size = 128, pool_seconds = 30;
	if (settings != NULL) {
		pool_size = (unsigned)config_uint(settings, "index_pool_size");
		pool_seconds = (unsigned)config_uint(settings, "index_pool_seconds");
		st->quota_bytes = config_uint(settings, "quota_bytes");
		st->quota_messages = config_uint(settings, "quota_messages");
		st->quota_tempfail = config_bool(settings, "quota_full_tempfail");
		st->lock_timeout = (unsigned)config_uint(settings, "lock_timeout");
		st->metadata_max_size = config_uint(settings, "metadata_max_size");
		st->metadata_max_entries = config_uint(settings, "metadata_max_entries");
	}
	read_boot_id(st->boot_id, sizeof(st->boot_id));
	init_host(st);
	st->pool = store_pool_new(pool_size, pool_seconds);
	if (st->pool == NULL || st->data_dir == NULL) {
		error_set(err, ERR_TEMP, "out of memory");
		goto fail;
	}

	st->data_fd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (st->data_fd < 0) {
		error_set(err, errno == ENOENT ? ERR_INVALID : ERR_TEMP,
			  "cannot open data folder %s: %s", data_dir, strerror(errno));
		goto fail;
	}
	if (mkdir_beneath(st->data_fd, "mail") < 0 || mkdir_beneath(st->data_fd, "spool") < 0) {
		error_errno(err, "cannot create mail/ or spool/ in the data folder");
		goto fail;
	}
	st->mail_fd = fsx_opendir_beneath(st->data_fd, "mail");
	if (st->mail_fd < 0) {
		error_errno(err, "cannot open DATA/mail");
		goto fail;
	}
	int spool = fsx_opendir_beneath(st->data_fd, "spool");
	if (spool < 0 || mkdir_beneath(spool, "tmp") < 0) {
		error_errno(err, "cannot create DATA/spool/tmp");
		if (spool >= 0)
			close(spool);
		goto fail;
	}
	st->spool_fd = fsx_opendir_beneath(spool, "tmp");
	close(spool);
	if (st->spool_fd < 0) {
		error_errno(err, "cannot open DATA/spool/tmp");
		goto fail;
	}
	*store_r = st;
	return 0;
fail:
	store_close(&st);
	return -1;
}

void store_close(struct store **store)
{
	struct store *st = *store;
	if (st == NULL)
		return;
	if (st->spool_fd >= 0)
		close(st->spool_fd);
	if (st->mail_fd >= 0)
		close(st->mail_fd);
	if (st->data_fd >= 0)
		close(st->data_fd);
	store_pool_free(&st->pool);
	free(st->data_dir);
	free(st);
	*store = NULL;
}

int store_quota_is_temporary(const struct store *store)
{
	return store->quota_tempfail;
}

int store_username_valid(const char *name)
{
	size_t len = strlen(name);
	if (len == 0 || len > STORE_MAX_USERNAME || name[0] == '.')
		return -1;
	for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++)
		if (*p < 0x21 || *p == 0x7f || *p == '/' || *p == ':' || *p == '\\')
			return -1;
	return 0;
}

/* Remove everything beneath dirfd/name, never following symlinks. */
int store_remove_tree(int parent_fd, const char *name, int depth)
{
	if (depth > 16) {
		errno = ELOOP;
		return -1;
	}
	int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOTDIR || errno == ELOOP ? unlinkat(parent_fd, name, 0) : -1;
	DIR *d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return -1;
	}
	struct dirent *de;
	int ret = 0;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (de->d_type == DT_DIR) {
			if (store_remove_tree(dirfd(d), de->d_name, depth + 1) < 0)
				ret = -1;
		} else if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT) {
			ret = -1;
		}
	}
	closedir(d);
	if (ret == 0 && unlinkat(parent_fd, name, AT_REMOVEDIR) < 0)
		ret = -1;
	return ret;
}
