/*
 * import_dovecot.c: the Dovecot 2.x maildir source driver (import.h).
 *
 * Design note. A Dovecot maildir keeps what IMAP clients saw in a few files
 * beside the messages, and the driver reads only those, never Dovecot's
 * index (a cache Dovecot itself rebuilds from them):
 *
 *  - dovecot-uidlist, per folder: UIDVALIDITY, the next UID and one line per
 *    message, UID to file base name (versions 1, 2 and 3; see
 *    import_dovecot.h). A file is matched to its line by base name, the
 *    part before ":2,", because flag changes rename the rest. The header's
 *    next UID may be stale (Dovecot appends lines without rewriting the
 *    header), so the folder's UIDNEXT is one above the highest UID listed
 *    when that is higher. A file the uidlist does not name (delivered
 *    after Dovecot last looked, or dropped into new/ by hand) gets the UID
 *    Dovecot would have given it next (dv_assign: UIDNEXT upwards, and the
 *    folder's UIDNEXT past them), so that a re-run finds it by UID.
 *  - file names "base,S=size,W=vsize:2,FLAGS": DFPRST are \Draft \Flagged
 *    $Forwarded (mailroom keeps $Forwarded as the P bit, store.h) \Answered
 *    \Seen \Deleted; a..z are keywords numbered in dovecot-keywords ("0
 *    $Junk"). Dovecot writes $Forwarded as a keyword letter; it becomes the
 *    P bit too. W= is the RFC822.SIZE clients saw (CRLF counted), else the
 *    uidlist's W field. INTERNALDATE is the file's mtime (Dovecot's too).
 *  - POP3 UIDLs: the uidlist's P field where Dovecot saved one (an empty P
 *    means "the base name", Dovecot's shorthand); otherwise none is given:
 *    mailroom's default (pop3_resp.c, %08x%08x of UID and UIDVALIDITY) is
 *    the string Dovecot's default pop3_uidl_format %08Xu%08Xv gives, so the
 *    kept UIDs keep the UIDLs (test_import_dovecot checks it against a real
 *    Dovecot). A site that had set another pop3_uidl_format without
 *    pop3_save_uidl is not covered: the format is configuration, not on disk.
 *  - subscriptions at the root: "V\t2" then names with TAB between levels
 *    (Dovecot 2.2+), or older files: one name a line with the namespace's
 *    separator.
 *
 * Layouts. Maildir++ (Dovecot's default): INBOX in the root, folders as
 * ".Name.Sub" directories, '.' between levels. LAYOUT=fs: folders as plain
 * subdirectories. The layout is detected: ".X" directories mean Maildir++,
 * plain subdirectories that are maildirs (or hold maildirs) mean fs. A tree
 * with both is refused unless the source says which: "PATH?layout=fs" or
 * "PATH?layout=maildir++".
 *
 * Names. Each level is decoded from modified UTF-7 when it is valid mUTF-7
 * (Dovecot's default); otherwise it is taken as UTF-8 (mail_location with
 * :UTF-8). A level that is neither is reported and its folder skipped.
 * Special use is not on disk in Dovecot (it is configuration); the store
 * gives Drafts, Sent, Trash, Junk and Archive theirs when it creates a
 * user, so the driver names none.
 *
 * Safety. The root is the path the admin gave; below it nothing is opened
 * through a symlink (fsx_open_beneath), a message must be a regular file,
 * nothing is written. Dovecot's own files (dovecot.index*, dovecot-uidvalidity*,
 * maildirfolder, tmp/...) are passed over silently; anything else unexpected
 * goes to the report through sink->skip.
 */
#include "import/import.h"
#include "import/import_dovecot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imap/imap_utf7.h"
#include "lib/buf.h"
#include "lib/fsx.h"
#include "store/store.h"

#define DV_MAX_FILE  (512u << 20) /* a control file larger than this is not Dovecot's */
#define DV_MAX_DEPTH 64		  /* LAYOUT=fs nesting */
#define DV_NKW	     26

enum dv_layout { DV_LAYOUT_AUTO, DV_LAYOUT_PLUSPLUS, DV_LAYOUT_FS };

struct dv_ctx {
	const struct import_sink *sink;
	struct error *err;
	enum dv_layout layout;
	int rootfd;
};

/* ---- small helpers ------------------------------------------------------------ */

static void dv_skip(struct dv_ctx *c, const char *where, const char *name, const char *reason)
{
	char what[4096];
	if (c->sink->skip == NULL)
		return;
	if (where == NULL || strcmp(where, ".") == 0)
		snprintf(what, sizeof(what), "%s", name);
	else if (name == NULL || *name == '\0')
		snprintf(what, sizeof(what), "%s", where);
	else
		snprintf(what, sizeof(what), "%s/%s", where, name);
	c->sink->skip(c->sink->ctx, what, reason);
}

static int dv_u64(const char **pp, const char *end, uint64_t max, uint64_t *out)
{
	const char *p = *pp;
	uint64_t v = 0;
	if (p >= end || *p < '0' || *p > '9')
		return -1;
	for (; p < end && *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (max - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*pp = p;
	*out = v;
	return 0;
}

static int dv_u32(const char **pp, const char *end, uint32_t *out)
{
	uint64_t v;
	if (dv_u64(pp, end, UINT32_MAX, &v) < 0)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static const char *dv_skip_spaces(const char *p, const char *end)
{
	while (p < end && *p == ' ')
		p++;
	return p;
}

/* Reads a regular file beneath dirfd (no symlink, no FIFO): 0 with a
 * malloc'ed NUL-terminated copy, 1 if there is none, -1 with errno. */
static int dv_read(int dirfd, const char *name, char **data_r, size_t *len_r)
{
	struct stat st;
	char *data = NULL;
	size_t len = 0;
	int fd = fsx_open_beneath(dirfd, name, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0);
	if (fd < 0)
		return errno == ENOENT ? 1 : -1;
	if (fstat(fd, &st) < 0)
		goto fail;
	if (!S_ISREG(st.st_mode)) {
		errno = EINVAL;
		goto fail;
	}
	if ((uint64_t)st.st_size > DV_MAX_FILE) {
		errno = EFBIG;
		goto fail;
	}
	data = malloc((size_t)st.st_size + 1);
	if (data == NULL)
		goto fail;
	while (len < (size_t)st.st_size) {
		ssize_t n = read(fd, data + len, (size_t)st.st_size - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	data[len] = '\0';
	close(fd);
	*data_r = data;
	*len_r = len;
	return 0;
fail:;
	int e = errno;
	free(data);
	close(fd);
	errno = e;
	return -1;
}

/* Next line of data[*pos..len) without its "\n" (and a "\r" before it). */
static int dv_next_line(const char *data, size_t len, size_t *pos, const char **line_r, size_t *n_r)
{
	const char *s, *nl;
	size_t n;
	if (*pos >= len)
		return 0;
	s = data + *pos;
	nl = memchr(s, '\n', len - *pos);
	n = nl != NULL ? (size_t)(nl - s) : len - *pos;
	*pos += n + (nl != NULL);
	if (n > 0 && s[n - 1] == '\r')
		n--;
	*line_r = s;
	*n_r = n;
	return 1;
}

/* ---- dovecot-uidlist ----------------------------------------------------------- */

static int dv_header(const char *p, const char *end, struct import_dovecot_uidlist *ul)
{
	uint32_t v;
	if (dv_u32(&p, end, &v) < 0 || v < 1 || v > 3)
		return -1;
	ul->version = v;
	if (v < 3) {
		/* "1 UIDVALIDITY NEXTUID" (v2: the same header) */
		p = dv_skip_spaces(p, end);
		if (dv_u32(&p, end, &ul->uidvalidity) < 0)
			return -1;
		p = dv_skip_spaces(p, end);
		if (dv_u32(&p, end, &ul->nextuid) < 0)
			return -1;
		return dv_skip_spaces(p, end) == end ? 0 : -1;
	}
	/* "3 V<uidvalidity> N<nextuid> G<guid> ...": order free, unknown keys kept out */
	while ((p = dv_skip_spaces(p, end)) < end) {
		char key = *p++;
		if (key == 'V' || key == 'N') {
			if (dv_u32(&p, end, key == 'V' ? &ul->uidvalidity : &ul->nextuid) < 0)
				return -1;
			if (p < end && *p != ' ')
				return -1;
		} else {
			while (p < end && *p != ' ')
				p++;
		}
	}
	return 0;
}

/* The file name part of a record: 0, -1 if unusable. */
static int dv_rec_name(const char *p, const char *end, struct import_dovecot_rec *rec)
{
	const char *colon;
	size_t n = (size_t)(end - p);
	if (n == 0 || memchr(p, '/', n) != NULL || memchr(p, '\0', n) != NULL || *p == '.')
		return -1;
	colon = memchr(p, ':', n);
	if (colon == p)
		return -1;
	rec->base = strndup(p, colon != NULL ? (size_t)(colon - p) : n);
	return rec->base == NULL ? -2 : 0;
}

/* v3 fields between the UID and ":FILENAME". */
static int dv_rec_fields(const char **pp, const char *end, struct import_dovecot_rec *rec)
{
	const char *p = *pp;
	for (;;) {
		const char *v;
		char key;
		p = dv_skip_spaces(p, end);
		if (p >= end)
			return -1;
		if (*p == ':')
			break;
		key = *p++;
		v = p;
		while (p < end && *p != ' ')
			p++;
		if (key == 'W') {
			const char *q = v;
			if (dv_u64(&q, p, UINT64_MAX, &rec->vsize) < 0 || q != p)
				return -1;
		} else if (key == 'P' && rec->pop3_uidl == NULL) {
			rec->pop3_uidl = strndup(v, (size_t)(p - v));
			if (rec->pop3_uidl == NULL)
				return -2;
		}
	}
	*pp = p + 1;
	return 0;
}

/* One entry line: 0, -1 if malformed, -2 out of memory. */
static int dv_record(const char *p, const char *end, unsigned version,
		     struct import_dovecot_rec *rec)
{
	int r;
	memset(rec, 0, sizeof(*rec));
	if (dv_u32(&p, end, &rec->uid) < 0 || rec->uid == 0 || p >= end || *p != ' ')
		return -1;
	p = dv_skip_spaces(p, end);
	if (version == 2) {
		/* "UID FLAGS FILENAME": the flags were Dovecot's own state */
		while (p < end && *p != ' ')
			p++;
		p = dv_skip_spaces(p, end);
	} else if (version == 3 && (r = dv_rec_fields(&p, end, rec)) < 0) {
		goto fail;
	}
	if ((r = dv_rec_name(p, end, rec)) < 0)
		goto fail;
	return 0;
fail:
	free(rec->pop3_uidl);
	rec->pop3_uidl = NULL;
	return r;
}

static void dv_bad(struct import_dovecot_uidlist *ul, unsigned lineno)
{
	if (ul->nbad < IMPORT_DOVECOT_BAD_KEPT)
		ul->bad_line[ul->nbad] = lineno;
	ul->nbad++;
}

static int dv_push(struct import_dovecot_uidlist *ul, size_t *cap,
		   const struct import_dovecot_rec *rec)
{
	if (ul->nrecs == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;
		struct import_dovecot_rec *n = realloc(ul->recs, ncap * sizeof(*n));
		if (n == NULL)
			return -1;
		ul->recs = n;
		*cap = ncap;
	}
	ul->recs[ul->nrecs++] = *rec;
	return 0;
}

int import_dovecot_uidlist_parse(const char *data, size_t len, struct import_dovecot_uidlist *ul,
				 struct error *err)
{
	const char *line;
	size_t n, pos = 0, cap = 0;
	unsigned lineno = 1;
	uint32_t prev = 0;

	if (!dv_next_line(data, len, &pos, &line, &n) || dv_header(line, line + n, ul) < 0) {
		memset(ul, 0, sizeof(*ul));
		error_set(err, ERR_INVALID, "dovecot-uidlist: not a version 1, 2 or 3 header");
		return -1;
	}
	while (dv_next_line(data, len, &pos, &line, &n)) {
		struct import_dovecot_rec rec;
		int r;
		lineno++;
		if (n == 0)
			continue;
		r = dv_record(line, line + n, ul->version, &rec);
		if (r == -2)
			goto nomem;
		if (r < 0 || rec.uid <= prev) {
			if (r == 0) {
				free(rec.base);
				free(rec.pop3_uidl);
			}
			dv_bad(ul, lineno);
			continue;
		}
		if (dv_push(ul, &cap, &rec) < 0) {
			free(rec.base);
			free(rec.pop3_uidl);
			goto nomem;
		}
		prev = rec.uid;
	}
	return 0;
nomem:
	import_dovecot_uidlist_free(ul);
	error_set(err, ERR_TEMP, "dovecot-uidlist: out of memory");
	return -1;
}

void import_dovecot_uidlist_free(struct import_dovecot_uidlist *ul)
{
	for (size_t i = 0; i < ul->nrecs; i++) {
		free(ul->recs[i].base);
		free(ul->recs[i].pop3_uidl);
	}
	free(ul->recs);
	memset(ul, 0, sizeof(*ul));
}

/* ---- dovecot-keywords ---------------------------------------------------------- */

static void dv_keywords_free(char *kw[DV_NKW])
{
	for (int i = 0; i < DV_NKW; i++) {
		free(kw[i]);
		kw[i] = NULL;
	}
}

/* "0 $Junk" lines: letter a + N. 0, or -1 (ERR_TEMP) when out of memory. */
static int dv_keywords(struct dv_ctx *c, int dirfd, const char *where, char *kw[DV_NKW])
{
	char *data;
	const char *line;
	size_t len, n, pos = 0;
	int r = dv_read(dirfd, "dovecot-keywords", &data, &len);
	if (r != 0) {
		if (r < 0)
			dv_skip(c, where, "dovecot-keywords", strerror(errno));
		return 0;
	}
	while (dv_next_line(data, len, &pos, &line, &n)) {
		const char *p = line, *end = line + n;
		uint32_t idx;
		if (n == 0)
			continue;
		if (dv_u32(&p, end, &idx) < 0 || idx >= DV_NKW || p >= end || *p != ' ' ||
		    p + 1 >= end || memchr(p + 1, '\0', (size_t)(end - p - 1)) != NULL) {
			dv_skip(c, where, "dovecot-keywords", "a malformed line");
			continue;
		}
		free(kw[idx]);
		kw[idx] = strndup(p + 1, (size_t)(end - p - 1));
		if (kw[idx] == NULL) {
			free(data);
			error_set(c->err, ERR_TEMP, "dovecot-keywords: out of memory");
			return -1;
		}
	}
	free(data);
	return 0;
}

/* ---- one folder ---------------------------------------------------------------- */

struct dv_file {
	char *name;	  /* "cur/NAME" or "new/NAME", relative to the folder */
	const char *base; /* into name: the base, base_len bytes */
	size_t base_len;
	const struct import_dovecot_rec *rec; /* its uidlist line, or NULL */
	uint32_t uid;			      /* the UID it is given (0: the sink's choice) */
};

struct dv_folder {
	struct dv_ctx *c;
	int fd;
	const char *where; /* the folder's path below the root, for the report */
	struct import_dovecot_uidlist ul;
	char *kw[DV_NKW];
	struct dv_file *files;
	size_t nfiles, cap;
};

static int dv_base_cmp(const char *a, size_t an, const char *b, size_t bn)
{
	int r = memcmp(a, b, an < bn ? an : bn);
	return r != 0 ? r : (an > bn) - (an < bn);
}

static int dv_file_base_cmp(const void *x, const void *y)
{
	const struct dv_file *a = x, *b = y;
	int r = dv_base_cmp(a->base, a->base_len, b->base, b->base_len);
	return r != 0 ? r : strcmp(a->name, b->name); /* cur/ before new/ */
}

static int dv_rec_ptr_cmp(const void *x, const void *y)
{
	const struct import_dovecot_rec *a = *(const struct import_dovecot_rec *const *)x;
	const struct import_dovecot_rec *b = *(const struct import_dovecot_rec *const *)y;
	int r = strcmp(a->base, b->base);
	return r != 0 ? r : (a->uid > b->uid) - (a->uid < b->uid);
}

/* Listed files by UID first, then the others by name (Dovecot gives new UIDs
 * in the order of the names, which start with the delivery time). */
static int dv_file_order_cmp(const void *x, const void *y)
{
	const struct dv_file *a = x, *b = y;
	if ((a->rec == NULL) != (b->rec == NULL))
		return a->rec == NULL ? 1 : -1;
	if (a->rec != NULL)
		return (a->rec->uid > b->rec->uid) - (a->rec->uid < b->rec->uid);
	return strcmp(a->name, b->name);
}

static int dv_file_add(struct dv_folder *f, const char *sub, const char *name)
{
	struct dv_file *d;
	const char *colon;
	if (f->nfiles == f->cap) {
		size_t ncap = f->cap ? f->cap * 2 : 64;
		struct dv_file *n = realloc(f->files, ncap * sizeof(*n));
		if (n == NULL)
			return -1;
		f->files = n;
		f->cap = ncap;
	}
	d = &f->files[f->nfiles];
	if (asprintf(&d->name, "%s/%s", sub, name) < 0)
		return -1;
	d->base = d->name + strlen(sub) + 1;
	colon = strchr(d->base, ':');
	d->base_len = colon != NULL ? (size_t)(colon - d->base) : strlen(d->base);
	d->rec = NULL;
	f->nfiles++;
	return 0;
}

/* The messages in sub ("cur" or "new"). A missing sub is no error. */
static int dv_list(struct dv_folder *f, const char *sub)
{
	struct dirent *e;
	DIR *d;
	int fd = fsx_opendir_beneath(f->fd, sub);
	if (fd < 0) {
		if (errno != ENOENT)
			dv_skip(f->c, f->where, sub, strerror(errno));
		return 0;
	}
	d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		dv_skip(f->c, f->where, sub, strerror(errno));
		return 0;
	}
	while ((e = readdir(d)) != NULL) {
		struct stat st;
		char what[512];
		if (e->d_name[0] == '.') /* ".", "..", and what maildir readers ignore */
			continue;
		snprintf(what, sizeof(what), "%s/%s", sub, e->d_name);
		if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			dv_skip(f->c, f->where, what, strerror(errno));
		} else if (!S_ISREG(st.st_mode)) {
			dv_skip(f->c, f->where, what, "not a regular file");
		} else if (e->d_name[0] == ':' || dv_file_add(f, sub, e->d_name) < 0) {
			if (e->d_name[0] == ':') {
				dv_skip(f->c, f->where, what, "a message file name without a base");
				continue;
			}
			closedir(d);
			error_set(f->c->err, ERR_TEMP, "%s: out of memory", f->where);
			return -1;
		}
	}
	closedir(d);
	return 0;
}

/* Pairs each file with its uidlist line by base name; drops a second file
 * with the same base (a copy in new/ and cur/). */
static int dv_match(struct dv_folder *f)
{
	const struct import_dovecot_rec **idx = NULL;
	size_t n = f->ul.nrecs, out = 0;
	if (n > 0) {
		idx = malloc(n * sizeof(*idx));
		if (idx == NULL) {
			error_set(f->c->err, ERR_TEMP, "%s: out of memory", f->where);
			return -1;
		}
		for (size_t i = 0; i < n; i++)
			idx[i] = &f->ul.recs[i];
		qsort(idx, n, sizeof(*idx), dv_rec_ptr_cmp);
	}
	if (f->nfiles == 0) {
		free(idx);
		return 0;
	}
	qsort(f->files, f->nfiles, sizeof(*f->files), dv_file_base_cmp);
	for (size_t i = 0; i < f->nfiles; i++) {
		struct dv_file *d = &f->files[i];
		size_t lo = 0, hi = n;
		const struct dv_file *prev = out > 0 ? &f->files[out - 1] : NULL;
		if (prev != NULL &&
		    dv_base_cmp(prev->base, prev->base_len, d->base, d->base_len) == 0) {
			dv_skip(f->c, f->where, d->name,
				"a second file of the same message (same base name)");
			free(d->name);
			continue;
		}
		while (lo < hi) { /* the first line with this base: the lower UID wins */
			size_t mid = lo + (hi - lo) / 2;
			const char *b = idx[mid]->base;
			if (dv_base_cmp(b, strlen(b), d->base, d->base_len) < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo < n &&
		    dv_base_cmp(idx[lo]->base, strlen(idx[lo]->base), d->base, d->base_len) == 0)
			d->rec = idx[lo];
		f->files[out++] = *d;
	}
	f->nfiles = out;
	free(idx);
	qsort(f->files, f->nfiles, sizeof(*f->files), dv_file_order_cmp);
	return 0;
}

/* ",W=1234" in the base name. */
static uint64_t dv_vsize(const char *base, size_t len)
{
	for (size_t i = 0; i + 3 <= len; i++) {
		if (base[i] == ',' && base[i + 1] == 'W' && base[i + 2] == '=') {
			const char *p = base + i + 3;
			uint64_t v;
			if (dv_u64(&p, base + len, UINT64_MAX, &v) == 0)
				return v;
		}
	}
	return 0;
}

/* Flags and keywords from ":2,FLAGS" (up to a ',' Dovecot leaves alone). */
static void dv_flags(struct dv_folder *f, const struct dv_file *d, struct import_msg *m,
		     const char *kws[DV_NKW])
{
	const char *info = strrchr(d->base, ':');
	unsigned seen_kw = 0;
	if (info == NULL || info[1] != '2' || info[2] != ',')
		return;
	for (const char *p = info + 3; *p != '\0' && *p != ','; p++) {
		static const char sys[] = "DFPRST";
		static const uint32_t bits[] = {STORE_F_DRAFT,	  STORE_F_FLAGGED, STORE_F_PASSED,
						STORE_F_ANSWERED, STORE_F_SEEN,	   STORE_F_DELETED};
		const char *s = strchr(sys, *p);
		if (*p >= 'a' && *p <= 'z') {
			const char *name = f->kw[*p - 'a'];
			if (name == NULL) {
				char why[96];
				snprintf(why, sizeof(why),
					 "keyword letter '%c' is not in dovecot-keywords: dropped",
					 *p);
				dv_skip(f->c, f->where, d->name, why);
			} else if (strcasecmp(name, "$Forwarded") == 0) {
				m->flags |= STORE_F_PASSED;
			} else if (!(seen_kw & (1u << (*p - 'a')))) {
				seen_kw |= 1u << (*p - 'a');
				kws[m->nkeywords++] = name;
			}
		} else if (*p != '\0' && s != NULL) {
			m->flags |= bits[s - sys];
		}
	}
}

static int dv_emit(struct dv_folder *f, const struct dv_file *d)
{
	const struct import_sink *sink = f->c->sink;
	const char *kws[DV_NKW];
	struct import_msg m = {0};
	char id[4096];
	char *uidl = NULL;
	int r;

	m.uid = d->uid;
	if (m.uid != 0 && sink->has_uid != NULL && sink->has_uid(sink->ctx, m.uid) == 1)
		return 0;
	m.internaldate = -1;
	m.keywords = kws;
	dv_flags(f, d, &m, kws);
	m.size = dv_vsize(d->base, d->base_len);
	if (m.size == 0 && d->rec != NULL)
		m.size = d->rec->vsize;
	if (d->rec != NULL && d->rec->pop3_uidl != NULL) {
		uidl = *d->rec->pop3_uidl != '\0' ? strdup(d->rec->pop3_uidl)
						  : strndup(d->base, d->base_len);
		if (uidl == NULL)
			goto nomem;
	}
	m.pop3_uidl = uidl; /* NULL: mailroom's default, which is Dovecot's */
	if (strcmp(f->where, ".") == 0)
		snprintf(id, sizeof(id), "%s", d->name);
	else
		snprintf(id, sizeof(id), "%s/%s", f->where, d->name);
	m.id = id;
	r = sink->msg_file(sink->ctx, &m, f->fd, d->name, f->c->err);
	free(uidl);
	return r;
nomem:
	error_set(f->c->err, ERR_TEMP, "out of memory");
	return -1;
}

static void dv_report_uidlist(struct dv_folder *f)
{
	char why[200];
	size_t shown = f->ul.nbad < IMPORT_DOVECOT_BAD_KEPT ? f->ul.nbad : IMPORT_DOVECOT_BAD_KEPT;
	for (size_t i = 0; i < shown; i++) {
		snprintf(why, sizeof(why),
			 "line %u is malformed or out of order: ignored (its message, if any, gets "
			 "a new UID)",
			 f->ul.bad_line[i]);
		dv_skip(f->c, f->where, "dovecot-uidlist", why);
	}
	if (f->ul.nbad > shown) {
		snprintf(why, sizeof(why), "%zu more malformed lines ignored", f->ul.nbad - shown);
		dv_skip(f->c, f->where, "dovecot-uidlist", why);
	}
}

/* Reads the folder's control files: 0, -1 only when out of memory. */
static int dv_folder_read(struct dv_folder *f)
{
	char *data;
	size_t len;
	int r = dv_read(f->fd, "dovecot-uidlist", &data, &len);
	if (r < 0) {
		dv_skip(f->c, f->where, "dovecot-uidlist", strerror(errno));
	} else if (r == 0) {
		struct error perr;
		r = import_dovecot_uidlist_parse(data, len, &f->ul, &perr);
		free(data);
		if (r < 0 && perr.code == ERR_TEMP) {
			*f->c->err = perr;
			return -1;
		}
		if (r < 0)
			dv_skip(f->c, f->where, "dovecot-uidlist",
				"not a Dovecot uidlist: every message gets a new UID");
		dv_report_uidlist(f);
	}
	return dv_keywords(f->c, f->fd, f->where, f->kw);
}

static uint32_t dv_uidnext(const struct import_dovecot_uidlist *ul)
{
	uint32_t next = ul->nextuid;
	if (ul->nrecs > 0) {
		uint32_t top = ul->recs[ul->nrecs - 1].uid; /* ascending */
		if (top == UINT32_MAX)
			return 0;
		if (top + 1 > next)
			next = top + 1;
	}
	return next;
}

/* UIDs for the files the uidlist does not name, in the order Dovecot would
 * give them at its next look (by name, which starts with the delivery
 * time): UIDNEXT, UIDNEXT + 1, ... The folder's UIDNEXT is announced past
 * them, so the sink raises its floor above them before anything: a
 * delivery between an interrupted import and its re-run cannot take one,
 * and the re-run finds them by UID (has_uid) instead of importing them
 * twice. Without a UIDVALIDITY the sink appends with new UIDs anyway (and
 * recognises a re-run by Message-ID, size and date): they keep UID 0. */
static uint32_t dv_assign(struct dv_folder *f, uint32_t uidnext)
{
	size_t unlisted = 0;
	for (size_t i = 0; i < f->nfiles; i++) {
		f->files[i].uid = f->files[i].rec != NULL ? f->files[i].rec->uid : 0;
		unlisted += f->files[i].rec == NULL;
	}
	if (f->ul.uidvalidity == 0 || uidnext == 0 || unlisted == 0 ||
	    unlisted >= UINT32_MAX - uidnext)
		return uidnext;
	for (size_t i = 0; i < f->nfiles; i++) /* the unlisted come last, by name */
		if (f->files[i].rec == NULL)
			f->files[i].uid = uidnext++;
	return uidnext;
}

/* Describes the folder in dirfd (the root for INBOX) to the sink. */
static int dv_folder(struct dv_ctx *c, int dirfd, const char *where, const char *name)
{
	struct dv_folder f = {.c = c, .fd = dirfd, .where = where};
	struct import_folder fo = {0};
	int ret = -1;
	struct stat st;

	if (fstatat(dirfd, "dovecot-uidlist.lock", &st, AT_SYMLINK_NOFOLLOW) == 0)
		dv_skip(c, where, "dovecot-uidlist.lock",
			"present: Dovecot may still be writing this folder (stop it before "
			"importing)");
	if (dv_folder_read(&f) < 0 || dv_list(&f, "cur") < 0 || dv_list(&f, "new") < 0 ||
	    dv_match(&f) < 0)
		goto out;
	fo.name = name;
	fo.uidvalidity = f.ul.uidvalidity;
	fo.uidnext = dv_assign(&f, dv_uidnext(&f.ul));
	if (c->sink->folder_begin(c->sink->ctx, &fo, c->err) < 0)
		goto out;
	for (size_t i = 0; i < f.nfiles; i++)
		if (dv_emit(&f, &f.files[i]) < 0)
			goto out;
	ret = c->sink->folder_end(c->sink->ctx, c->err);
out:
	for (size_t i = 0; i < f.nfiles; i++)
		free(f.files[i].name);
	free(f.files);
	import_dovecot_uidlist_free(&f.ul);
	dv_keywords_free(f.kw);
	return ret;
}

/* ---- names ---------------------------------------------------------------------- */

/* Appends one level, decoded: mUTF-7 when valid, else UTF-8. 0 or -1. */
static int dv_level(const char *s, size_t n, struct buf *out)
{
	struct error e;
	if (n == 0)
		return -1;
	if (imap_utf7_decode(s, n, out, &e) == 0)
		return 0;
	if (imap_utf7_utf8_check(s, n, &e) < 0)
		return -1;
	buf_append(out, s, n);
	return 0;
}

/* raw[0..n) with sep between levels -> the IMAP name ("a/b"), malloc'ed; NULL
 * if a level is empty or neither mUTF-7 nor UTF-8 (or out of memory).
 * whole: raw is a full name, so "inbox" in any case is INBOX. */
static char *dv_name(const char *raw, size_t n, char sep, int whole)
{
	struct buf out = BUF_INIT;
	size_t start = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && raw[i] != sep)
			continue;
		if (start > 0)
			buf_putc(&out, '/');
		if (dv_level(raw + start, i - start, &out) < 0) {
			buf_free(&out);
			return NULL;
		}
		start = i + 1;
	}
	if (whole && strcasecmp(buf_cstr(&out), "INBOX") == 0) {
		buf_free(&out);
		return strdup("INBOX");
	}
	return buf_steal(&out);
}

/* ---- layouts -------------------------------------------------------------------- */

/* Dovecot's own files and folders: passed over without a word. */
static int dv_own(const char *n)
{
	static const char *const prefix[] = {
		"dovecot.index",       "dovecot.list.index", "dovecot.mailbox.log",
		"dovecot-uidvalidity", "dovecot-uidlist",    "dovecot-keywords",
		"dovecot-acl",	       "dovecot.sieve",	     NULL};
	static const char *const exact[] = {"cur",	   "new",	    "tmp", "maildirfolder",
					    "maildirsize", "subscriptions", NULL};
	for (int i = 0; prefix[i] != NULL; i++)
		if (strncmp(n, prefix[i], strlen(prefix[i])) == 0)
			return 1;
	for (int i = 0; exact[i] != NULL; i++)
		if (strcmp(n, exact[i]) == 0)
			return 1;
	return 0;
}

static int dv_has(int dirfd, const char *name)
{
	struct stat st;
	return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* A folder directory: has cur/, new/ or a uidlist. */
static int dv_is_maildir(int dirfd)
{
	return dv_has(dirfd, "cur") || dv_has(dirfd, "new") || dv_has(dirfd, "dovecot-uidlist");
}

static int dv_is_dir(int dirfd, const char *name)
{
	struct stat st;
	return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

/* One entry of the root or a folder that is not a folder itself. */
static void dv_other(struct dv_ctx *c, int dirfd, const char *where, const char *name)
{
	struct stat st;
	if (dv_own(name))
		return;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
		dv_skip(c, where, name, "a symlink: not followed");
	else
		dv_skip(c, where, name, "not part of a Dovecot maildir");
}

static int dv_plusplus_folder(struct dv_ctx *c, const char *dname)
{
	char *name = dv_name(dname + 1, strlen(dname + 1), '.', 1);
	int fd, r = 0;
	if (name == NULL) {
		dv_skip(c, NULL, dname, "a folder name that is neither modified UTF-7 nor UTF-8");
		return 0;
	}
	if (strcmp(name, "INBOX") == 0) {
		dv_skip(c, NULL, dname, "a second INBOX");
		free(name);
		return 0;
	}
	fd = fsx_opendir_beneath(c->rootfd, dname);
	if (fd < 0) {
		dv_skip(c, NULL, dname, strerror(errno));
	} else {
		if (dv_is_maildir(fd))
			r = dv_folder(c, fd, dname, name);
		else
			dv_skip(c, NULL, dname, "no cur/, new/ or dovecot-uidlist: not a folder");
		close(fd);
	}
	free(name);
	return r;
}

/* Maildir++: ".Name.Sub" directories in the root. */
static int dv_walk_plusplus(struct dv_ctx *c, DIR *root)
{
	struct dirent *e;
	while ((e = readdir(root)) != NULL) {
		const char *n = e->d_name;
		if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
			continue;
		if (n[0] == '.' && dv_is_dir(c->rootfd, n)) {
			if (dv_plusplus_folder(c, n) < 0)
				return -1;
		} else {
			dv_other(c, c->rootfd, ".", n);
		}
	}
	return 0;
}

static int dv_walk_fs(struct dv_ctx *c, int dirfd, const char *where, const char *prefix,
		      int depth);

static int dv_fs_folder(struct dv_ctx *c, int dirfd, const char *where, const char *prefix,
			const char *dname, int depth)
{
	int top = strcmp(where, ".") == 0;
	char *level = dv_name(dname, strlen(dname), '\0', *prefix == '\0');
	char *name = NULL, *path = NULL;
	int fd = -1, r = 0;

	if (level == NULL || strcmp(level, "INBOX") == 0) {
		dv_skip(c, where, dname,
			level == NULL ? "a folder name that is neither modified UTF-7 nor UTF-8"
				      : "a second INBOX");
		free(level);
		return 0;
	}
	if (asprintf(&name, "%s%s%s", prefix, *prefix ? "/" : "", level) < 0)
		name = NULL;
	if (asprintf(&path, "%s%s%s", top ? "" : where, top ? "" : "/", dname) < 0)
		path = NULL;
	if (name == NULL || path == NULL) {
		error_set(c->err, ERR_TEMP, "out of memory");
		r = -1;
		goto out;
	}
	fd = fsx_opendir_beneath(dirfd, dname);
	if (fd < 0) {
		dv_skip(c, where, dname, strerror(errno));
		goto out;
	}
	if (dv_is_maildir(fd) && dv_folder(c, fd, path, name) < 0)
		r = -1;
	else if (depth >= DV_MAX_DEPTH)
		dv_skip(c, where, dname,
			"folders nested too deep: the ones below are not imported");
	else
		r = dv_walk_fs(c, fd, path, name, depth + 1);
out:
	if (fd >= 0)
		close(fd);
	free(level);
	free(name);
	free(path);
	return r;
}

/* LAYOUT=fs: every subdirectory but cur/ new/ tmp/ is a folder. */
static int dv_walk_fs(struct dv_ctx *c, int dirfd, const char *where, const char *prefix, int depth)
{
	struct dirent *e;
	DIR *d;
	int fd = dup(dirfd), r = 0;
	if (fd < 0 || (d = fdopendir(fd)) == NULL) {
		if (fd >= 0)
			close(fd);
		error_set(c->err, ERR_TEMP, "%s: %s", where, strerror(errno));
		return -1;
	}
	rewinddir(d);
	while (r == 0 && (e = readdir(d)) != NULL) {
		const char *n = e->d_name;
		if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0 || dv_own(n))
			continue;
		if (n[0] != '.' && dv_is_dir(dirfd, n))
			r = dv_fs_folder(c, dirfd, where, prefix, n, depth);
		else
			dv_other(c, dirfd, where, n);
	}
	closedir(d);
	return r;
}

/* A plain subdirectory that is a maildir or holds one (at any depth, as
 * LAYOUT=fs parents need no maildir of their own): LAYOUT=fs evidence. */
static int dv_fs_evidence(int dirfd, const char *name, int depth)
{
	struct dirent *e;
	DIR *d;
	int found, fd = fsx_opendir_beneath(dirfd, name);
	if (fd < 0)
		return 0;
	found = dv_is_maildir(fd);
	if (found || depth >= DV_MAX_DEPTH || (d = fdopendir(fd)) == NULL) {
		close(fd);
		return found;
	}
	while (!found && (e = readdir(d)) != NULL)
		if (e->d_name[0] != '.' && !dv_own(e->d_name) && dv_is_dir(fd, e->d_name))
			found = dv_fs_evidence(fd, e->d_name, depth + 1);
	closedir(d);
	return found;
}

static int dv_detect(struct dv_ctx *c, DIR *root, const char *path)
{
	struct dirent *e;
	int pp = 0, fs = 0;
	while ((e = readdir(root)) != NULL) {
		const char *n = e->d_name;
		if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0 || dv_own(n) ||
		    !dv_is_dir(c->rootfd, n))
			continue;
		if (n[0] == '.')
			pp = 1;
		else if (dv_fs_evidence(c->rootfd, n, 1))
			fs = 1;
	}
	rewinddir(root);
	if (pp && fs) {
		error_set(c->err, ERR_INVALID,
			  "%s: both Maildir++ (.Folder) and LAYOUT=fs folders: say which with "
			  "dovecot:PATH?layout=fs or ?layout=maildir++",
			  path);
		return -1;
	}
	c->layout = fs ? DV_LAYOUT_FS : DV_LAYOUT_PLUSPLUS;
	return 0;
}

/* subscriptions: "V\t2" and TAB between levels, or (older) the namespace
 * separator. Names need not exist. */
static int dv_subscriptions(struct dv_ctx *c)
{
	char *data;
	const char *line;
	size_t len, n, pos = 0;
	char sep = c->layout == DV_LAYOUT_FS ? '/' : '.';
	int r = dv_read(c->rootfd, "subscriptions", &data, &len);
	if (r != 0) {
		if (r < 0)
			dv_skip(c, NULL, "subscriptions", strerror(errno));
		return 0;
	}
	r = 0;
	if (len >= 3 && memcmp(data, "V\t", 2) == 0) {
		sep = '\t';
		(void)dv_next_line(data, len, &pos, &line, &n);
	}
	while (r == 0 && dv_next_line(data, len, &pos, &line, &n)) {
		char *name;
		if (n == 0)
			continue;
		name = memchr(line, '\0', n) == NULL ? dv_name(line, n, sep, 1) : NULL;
		if (name == NULL) {
			dv_skip(c, NULL, "subscriptions",
				"a name that is neither modified UTF-7 nor UTF-8: not subscribed");
			continue;
		}
		if (c->sink->subscribe != NULL)
			r = c->sink->subscribe(c->sink->ctx, name, c->err);
		free(name);
	}
	free(data);
	return r;
}

/* "PATH?layout=fs" / "?layout=maildir++": the layout said instead of detected. */
static int dv_options(const char *path, char **dir_r, enum dv_layout *layout_r, struct error *err)
{
	const char *q = strstr(path, "?layout=");
	*layout_r = DV_LAYOUT_AUTO;
	if (q != NULL) {
		if (strcmp(q + 8, "fs") == 0)
			*layout_r = DV_LAYOUT_FS;
		else if (strcmp(q + 8, "maildir++") == 0)
			*layout_r = DV_LAYOUT_PLUSPLUS;
		else {
			error_set(err, ERR_INVALID, "%s: layout is fs or maildir++", path);
			return -1;
		}
	}
	*dir_r = q != NULL ? strndup(path, (size_t)(q - path)) : strdup(path);
	if (*dir_r == NULL) {
		error_set(err, ERR_TEMP, "out of memory");
		return -1;
	}
	return 0;
}

int import_dovecot(const char *path, const struct import_sink *sink, struct error *err)
{
	struct dv_ctx c = {.sink = sink, .err = err, .rootfd = -1};
	DIR *root = NULL;
	char *dir = NULL;
	int fd, ret = -1;

	if (dv_options(path, &dir, &c.layout, err) < 0)
		return -1;
	/* The root is the admin's own choice (it may be a symlink); nothing
	 * below it is reached through one. */
	c.rootfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c.rootfd < 0) {
		error_errno(err, dir);
		goto out;
	}
	if (!dv_is_maildir(c.rootfd)) {
		error_set(err, ERR_NOTFOUND,
			  "%s: not a Dovecot maildir (no cur/, new/ or dovecot-uidlist)", dir);
		goto out;
	}
	fd = dup(c.rootfd);
	if (fd < 0 || (root = fdopendir(fd)) == NULL) {
		if (fd >= 0)
			close(fd);
		error_errno(err, dir);
		goto out;
	}
	if (c.layout == DV_LAYOUT_AUTO && dv_detect(&c, root, dir) < 0)
		goto out;
	if (dv_folder(&c, c.rootfd, ".", "INBOX") < 0)
		goto out;
	if (c.layout == DV_LAYOUT_FS ? dv_walk_fs(&c, c.rootfd, ".", "", 1) < 0
				     : dv_walk_plusplus(&c, root) < 0)
		goto out;
	ret = dv_subscriptions(&c);
out:
	if (root != NULL)
		closedir(root);
	if (c.rootfd >= 0)
		close(c.rootfd);
	free(dir);
	return ret;
}
