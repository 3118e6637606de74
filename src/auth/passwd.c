/* passwd.c: DATA/passwd reading, hashing and verification; see passwd.h. */
#include "auth/passwd.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/buf.h"

static const struct scheme {
	const char *name;
	const char *prefix; /* crypt(3) setting prefix for new hashes */
} schemes[] = {
	{ "YESCRYPT", "$y$" },
	{ "SHA512-CRYPT", "$6$" },
	{ "SHA256-CRYPT", "$5$" },
	{ "BLF-CRYPT", "$2b$" },
	{ "MD5-CRYPT", NULL },
	{ "CRYPT", NULL },
	{ "DES-CRYPT", NULL },
};

int passwd_line_parse(const char *line, size_t len, struct passwd_entry *e_r, struct error *err)
{
	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n'))
		len--;
	if (len == 0 || line[0] == '#') {
		error_set(err, ERR_NOTFOUND, "comment or blank line");
		return -1;
	}
	if (memchr(line, '\0', len) != NULL) {
		error_set(err, ERR_INVALID, "NUL byte in line");
		return -1;
	}
	const char *c1 = memchr(line, ':', len);
	if (c1 == NULL || c1 == line) {
		error_set(err, ERR_INVALID, "expected user:password");
		return -1;
	}
	size_t ulen = (size_t)(c1 - line);
	if (ulen >= sizeof(e_r->user)) {
		error_set(err, ERR_INVALID, "user name too long");
		return -1;
	}
	const char *pw = c1 + 1;
	size_t rem = len - ulen - 1;
	const char *c2 = memchr(pw, ':', rem);
	size_t plen = c2 ? (size_t)(c2 - pw) : rem;
	if (plen >= sizeof(e_r->hash)) {
		error_set(err, ERR_INVALID, "password field too long");
		return -1;
	}
	size_t restlen = c2 ? rem - plen - 1 : 0;
	if (restlen >= sizeof(e_r->rest)) {
		error_set(err, ERR_INVALID, "line too long");
		return -1;
	}
	memcpy(e_r->user, line, ulen);
	e_r->user[ulen] = '\0';
	memcpy(e_r->hash, pw, plen);
	e_r->hash[plen] = '\0';
	if (c2 != NULL)
		memcpy(e_r->rest, c2 + 1, restlen);
	e_r->rest[restlen] = '\0';
	return 0;
}

int passwd_hash(const char *password, const char *scheme, char **hash_r, struct error *err)
{
	const struct scheme *s = NULL;
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
		if (strcmp(schemes[i].name, scheme) == 0 && schemes[i].prefix != NULL)
			s = &schemes[i];
	if (s == NULL) {
		error_set(err, ERR_INVALID,
			  "unknown password scheme (use YESCRYPT, SHA512-CRYPT, SHA256-CRYPT or "
			  "BLF-CRYPT)");
		return -1;
	}
	char *setting = crypt_gensalt_ra(s->prefix, 0, NULL, 0);
	if (setting == NULL) {
		error_set(err, ERR_TEMP, "cannot make a salt");
		return -1;
	}
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	const char *h = cd ? crypt_r(password, setting, cd) : NULL;
	free(setting);
	if (h == NULL || h[0] == '*') {
		free(cd);
		error_set(err, ERR_TEMP, "crypt failed");
		return -1;
	}
	struct buf b = BUF_INIT;
	buf_printf(&b, "{%s}%s", s->name, h);
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	*hash_r = buf_steal(&b);
	if (*hash_r == NULL) {
		error_set(err, ERR_TEMP, "out of memory");
		return -1;
	}
	return 0;
}

/* Compare without an early exit, so the time does not tell where two
 * strings differ. */
static int const_eq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned char diff = la != lb;
	size_t n = la > lb ? la : lb;
	for (size_t i = 0; i < n; i++) {
		unsigned char x = i < la ? (unsigned char)a[i] : 0;
		unsigned char y = i < lb ? (unsigned char)b[i] : 0;
		diff |= x ^ y;
	}
	return diff == 0;
}

int passwd_verify(const char *stored, const char *password, int allow_plain)
{
	char scheme[32] = "CRYPT";
	const char *hash = stored;
	if (stored[0] == '{') {
		const char *end = strchr(stored, '}');
		if (end == NULL || (size_t)(end - stored - 1) >= sizeof(scheme))
			return -1;
		memcpy(scheme, stored + 1, (size_t)(end - stored - 1));
		scheme[end - stored - 1] = '\0';
		hash = end + 1;
	}
	if (strcasecmp(scheme, "PLAIN") == 0 || strcasecmp(scheme, "CLEARTEXT") == 0)
		return allow_plain ? const_eq(hash, password) : -1;
	int known = 0;
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
		known |= strcasecmp(schemes[i].name, scheme) == 0;
	if (!known || hash[0] == '\0')
		return -1;
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	if (cd == NULL)
		return -2;
	errno = 0;
	const char *h = crypt_r(password, hash, cd);
	int ok = h != NULL && h[0] != '*' && const_eq(h, hash);
	/* crypt_r fails with ENOMEM when a memory-hard hash (yescrypt) cannot
	 * get its memory: that says nothing about the password. */
	if (!ok && (h == NULL || h[0] == '*') && errno == ENOMEM)
		ok = -2;
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return ok;
}

int passwd_file_foreach(const char *path, void (*cb)(void *ctx, const struct passwd_entry *e),
			void *ctx)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	struct passwd_entry *e = NULL;
	struct error why;
	struct stat st;
	FILE *f = NULL;
	int ret = -1, saved;

	/* As the server's master opens it: no symbolic link, a regular file
	 * (a directory would open, then read EISDIR). */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0)
		goto out;
	if (!S_ISREG(st.st_mode)) {
		errno = EINVAL;
		goto out;
	}
	f = fdopen(fd, "r");
	e = malloc(sizeof(*e));
	if (f == NULL || e == NULL)
		goto out;
	fd = -1;
	while ((n = getline(&line, &cap, f)) >= 0)
		if (passwd_line_parse(line, (size_t)n, e, &why) == 0)
			cb(ctx, e);
	/* getline() is -1 at the end and on a read error alike. */
	if (!ferror(f))
		ret = 0;
out:
	saved = errno;
	if (f != NULL)
		fclose(f);
	else if (fd >= 0)
		close(fd);
	free(e);
	free(line);
	errno = saved;
	return ret;
}

struct lookup_ctx {
	const char *user;
	struct passwd_entry *out;
	int found;
};

static void lookup_cb(void *ctx, const struct passwd_entry *e)
{
	struct lookup_ctx *l = ctx;
	if (!l->found && strcmp(e->user, l->user) == 0) {
		*l->out = *e;
		l->found = 1;
	}
}

int passwd_file_lookup(const char *path, const char *user, struct passwd_entry *e_r)
{
	struct lookup_ctx l = { user, e_r, 0 };
	if (passwd_file_foreach(path, lookup_cb, &l) < 0)
		return errno == ENOENT ? 0 : -1;
	return l.found;
}

/* fsync the folder that holds path. */
static int fsync_parent(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir = slash == NULL ? strdup(".") : strndup(path, slash == path ? 1 : (size_t)(slash - path));
	if (dir == NULL)
		return -1;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	if (fd < 0)
		return -1;
	int rc = fsync(fd);
	int e = errno;
	close(fd);
	errno = e;
	return rc;
}

int passwd_file_update(const char *path, enum passwd_update op, const char *user, const char *hash,
		       struct error *err)
{
	struct buf lockpath = BUF_INIT, tmppath = BUF_INIT, out = BUF_INIT;
	int lockfd = -1, ret = -1, found = 0;
	FILE *in = NULL;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	struct passwd_entry *e = malloc(sizeof(*e));

	buf_printf(&lockpath, "%s.lock", path);
	buf_printf(&tmppath, "%s.tmp", path);
	if (e == NULL || lockpath.failed || tmppath.failed) {
		error_set(err, ERR_TEMP, "out of memory");
		goto out;
	}
	lockfd = open(buf_cstr(&lockpath), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lockfd < 0 || flock(lockfd, LOCK_EX) < 0) {
		error_set(err, ERR_TEMP, "cannot lock the passwd file");
		goto out;
	}
	in = fopen(path, "re");
	if (in == NULL && errno != ENOENT) {
		error_set(err, ERR_TEMP, "cannot read the passwd file");
		goto out;
	}
	while (in != NULL && (n = getline(&line, &cap, in)) >= 0) {
		struct error why;
		if (passwd_line_parse(line, (size_t)n, e, &why) == 0 && strcmp(e->user, user) == 0) {
			found = 1;
			if (op == PASSWD_DELETE)
				continue;
			if (op == PASSWD_REPLACE) {
				buf_printf(&out, "%s:%s:%s\n", user, hash, e->rest);
				continue;
			}
		}
		buf_append(&out, line, (size_t)n);
		if (n > 0 && line[n - 1] != '\n')
			buf_putc(&out, '\n');
	}
	if (op == PASSWD_ADD && found) {
		error_set(err, ERR_EXISTS, "user already exists");
		goto out;
	}
	if (op != PASSWD_ADD && !found) {
		error_set(err, ERR_NOUSER, "no such user");
		goto out;
	}
	if (op == PASSWD_ADD)
		buf_printf(&out, "%s:%s::::::\n", user, hash);
	if (out.failed) {
		error_set(err, ERR_TEMP, "out of memory");
		goto out;
	}
	int fd = open(buf_cstr(&tmppath), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		error_set(err, ERR_TEMP, "cannot write the passwd file");
		goto out;
	}
	size_t off = 0;
	while (off < out.len) {
		ssize_t w = write(fd, out.data + off, out.len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	int ok = off == out.len && fsync(fd) == 0;
	ok = close(fd) == 0 && ok;
	if (!ok || rename(buf_cstr(&tmppath), path) < 0) {
		unlink(buf_cstr(&tmppath));
		error_set(err, ERR_TEMP, "cannot write the passwd file");
		goto out;
	}
	/* The rename is durable only once the folder is synced: without this a
	 * power cut can undo an acknowledged `user add|passwd|del`. */
	if (fsync_parent(path) < 0) {
		error_set(err, ERR_TEMP, "cannot sync the passwd file's folder: %s", strerror(errno));
		goto out;
	}
	ret = 0;
out:
	if (in != NULL)
		fclose(in);
	if (lockfd >= 0)
		close(lockfd);
	free(line);
	free(e);
	if (out.data != NULL)
		explicit_bzero(out.data, out.len);
	buf_free(&out);
	buf_free(&lockpath);
	buf_free(&tmppath);
	return ret;
}
