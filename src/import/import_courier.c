/*
 * import_courier.c: the Courier-IMAP maildir source driver (import.h).
 *
 * What it reads, read-only (every file opened beneath the source with no
 * symlink followed; nothing is ever written, renamed or deleted there, not
 * even the stale keyword files Courier itself would clean up):
 *
 *  - the Maildir++ tree: the root is INBOX, ".A.B" is the folder A/B. Names
 *    are modified UTF-7 (Courier-IMAP before 5.0) or UTF-8 (5.0 on, after
 *    `maildirmake --convutf8`): a name that decodes as mUTF-7 is taken as
 *    such, any other valid UTF-8 as it is.
 *  - courierimapuiddb per folder: "1 UIDVALIDITY NEXTUID", "UID basename"
 *    lines. Messages it names keep their UIDs; others (in cur/ or new/) get
 *    NEXTUID, NEXTUID+1, ... in the order Courier's next scan would have
 *    numbered them (imapscanclient.c: fnamcmp, the leading number then the
 *    name), so that a re-run gives them the same UIDs and adds nothing. A
 *    folder without a uiddb gets a UIDVALIDITY and UIDs from the store (its
 *    clients must resync under Courier too); a re-run then finds its
 *    messages by Message-ID, size and date (import.h, "Re-runs").
 *  - courierimapkeywords/: ":list" and the pending update files, applied as
 *    maildirkeywords2.c does: a file named after the message ("basename")
 *    wins, else the ".N.basename" with the highest N; its lines replace the
 *    message's keywords (an empty file clears them). ".tmp.*" are scratch.
 *  - flags from the file names (":2," then D F P R S T).
 *  - courierimapsubscribed: one name a line.
 *  - courierpop3dsizelist (INBOX only: pop3d serves only INBOX): the UIDL
 *    each message had, reproduced exactly (pop3dserver.c print_uidl), and
 *    the size the POP3 client saw. A message not in that list was never
 *    seen by a POP3 client: it gets mailroom's default UIDL.
 *
 * Names. Courier shows every folder under the "INBOX." namespace with '.'
 * as delimiter: .Work is "INBOX.Work". mailroom's delimiter is '/', so it
 * becomes "INBOX/Work": the same hierarchy the client saw (a child of
 * INBOX), and the same name for clients that translate the delimiter, as
 * mbsync does (its far-side "INBOX.Work" and "INBOX/Work" are both the
 * canonical "INBOX/Work"), so synced state carries over. Dovecot's
 * courier-dovecot-migrate.pl instead drops the "INBOX." prefix, for a
 * Dovecot configured with an "INBOX." namespace; mailroom has none.
 * Subscriptions map the same way; names outside "INBOX." (Courier's shared
 * folders) are reported, not imported. No folder gets a special-use:
 * Courier keeps none.
 */
#include "import/import.h"
#include "import/import_courier_int.h"

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

#define UIDDB_MAX (256u << 20)
#define POP3LIST_MAX (256u << 20)
#define KWLIST_MAX (64u << 20)
#define KWUPDATE_MAX (64u << 10)
#define SUBS_MAX (1u << 20)
#define FOLDER_MAX_MSGS 10000000u

/* ---- small parsing helpers ---------------------------------------------- */

/* Decimal digits at *p (at least one) up to max; advances *p. */
static int parse_num(const char **p, uint64_t max, uint64_t *v_r)
{
	const char *s = *p;
	uint64_t v = 0;
	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');
		if (v > (max - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*p = s;
	*v_r = v;
	return 0;
}

static void skip_blanks(const char **p)
{
	while (**p == ' ' || **p == '\t')
		(*p)++;
}

/* Next line of the buffer [*pos, end): NUL-terminated in place (a trailing
 * '\r' is kept: Courier writes none, and a name with one is not ours). */
static char *next_line(char **pos, char *end)
{
	if (*pos >= end)
		return NULL;
	char *line = *pos;
	char *nl = memchr(line, '\n', (size_t)(end - line));
	if (nl == NULL) {
		*pos = end;
		*end = '\0';
	} else {
		*nl = '\0';
		*pos = nl + 1;
	}
	return line;
}

static int grow(void **v, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : 64;
	while (ncap < need)
		ncap *= 2;
	void *n = realloc(*v, ncap * size);
	if (n == NULL)
		return -1;
	*v = n;
	*cap = ncap;
	return 0;
}

/* Length of a maildir base name: up to the first ':' (Courier's fnamcmp
 * and cmpmsgs end a name there). */
static size_t base_len(const char *name)
{
	const char *c = strchr(name, ':');
	return c ? (size_t)(c - name) : strlen(name);
}

/* Compare base a (NUL-terminated, no ':') with b[0..blen). */
static int base_cmp(const char *a, const char *b, size_t blen)
{
	int c = strncmp(a, b, blen);
	if (c != 0)
		return c;
	return a[blen] == '\0' ? 0 : 1;
}

/* ---- courierimapuiddb ----------------------------------------------------- */

static int uident_cmp(const void *x, const void *y)
{
	const struct courier_uident *a = x, *b = y;
	int c = strcmp(a->base, b->base);
	if (c != 0)
		return c;
	return a->uid < b->uid ? -1 : a->uid > b->uid;
}

static int uiddb_header(struct courier_uiddb *db, const char *line)
{
	uint64_t version, uidv, next;
	const char *p = line;
	skip_blanks(&p);
	if (parse_num(&p, UINT32_MAX, &version) < 0 || version != 1)
		return -1;
	skip_blanks(&p);
	if (parse_num(&p, UINT32_MAX, &uidv) < 0 || uidv == 0)
		return -1;
	skip_blanks(&p);
	if (parse_num(&p, UINT32_MAX, &next) < 0)
		return -1;
	db->uidvalidity = (uint32_t)uidv;
	db->uidnext = (uint32_t)next;
	return 0;
}

/* "UID basename": Courier reads the UID up to the first space and takes the
 * rest as the file name (written without the ":2,..." part). */
static int uiddb_line(struct courier_uiddb *db, size_t *cap, char *line)
{
	const char *p = line;
	uint64_t uid;
	if (parse_num(&p, UINT32_MAX, &uid) < 0 || uid == 0 || *p != ' ' || p[1] == '\0' ||
	    p[1] == '.' || strchr(p + 1, '/') != NULL) {
		db->bad++;
		return 0;
	}
	char *base = line + (p - line) + 1;
	base[base_len(base)] = '\0';
	if (*base == '\0') {
		db->bad++;
		return 0;
	}
	if (grow((void **)&db->v, cap, db->n + 1, sizeof(*db->v)) < 0)
		return -1;
	db->v[db->n].base = base;
	db->v[db->n].uid = (uint32_t)uid;
	db->n++;
	return 0;
}

int import_courier_uiddb_parse(struct courier_uiddb *db, char *data, size_t len,
			       struct error *err)
{
	memset(db, 0, sizeof(*db));
	db->data = data;
	char *pos = data, *end = data + len;
	char *line = next_line(&pos, end);
	if (line == NULL || uiddb_header(db, line) < 0) {
		error_set(err, ERR_DATA, "courierimapuiddb: not a version 1 header (\"1 UIDVALIDITY NEXTUID\")");
		db->uidvalidity = db->uidnext = 0;
		return -1;
	}
	size_t cap = 0;
	while ((line = next_line(&pos, end)) != NULL) {
		if (*line == '\0')
			continue;
		if (uiddb_line(db, &cap, line) < 0) {
			error_set(err, ERR_TEMP, "out of memory");
			return -1;
		}
	}
	if (db->n > 0)
		qsort(db->v, db->n, sizeof(*db->v), uident_cmp);
	return 0;
}

uint32_t import_courier_uiddb_find(const struct courier_uiddb *db, const char *base, size_t len)
{
	size_t lo = 0, hi = db->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = base_cmp(db->v[mid].base, base, len);
		if (c < 0) {
			lo = mid + 1;
		} else if (c > 0) {
			hi = mid;
		} else {
			/* Several lines for one file (not Courier's doing): the lowest UID. */
			while (mid > 0 && base_cmp(db->v[mid - 1].base, base, len) == 0)
				mid--;
			return db->v[mid].uid;
		}
	}
	return 0;
}

void import_courier_uiddb_free(struct courier_uiddb *db)
{
	free(db->v);
	free(db->data);
	memset(db, 0, sizeof(*db));
}

/* ---- courierimapkeywords ------------------------------------------------ */

static int kw_keep_buf(struct courier_kw *kw, char *data)
{
	if (grow((void **)&kw->bufs, &kw->capbufs, kw->nbufs + 1, sizeof(*kw->bufs)) < 0)
		return -1;
	kw->bufs[kw->nbufs++] = data;
	return 0;
}

static int kw_add_name(struct courier_kw *kw, const char *name, uint32_t *idx_r)
{
	for (size_t i = 0; i < kw->nnames; i++)
		if (strcmp(kw->names[i], name) == 0) {
			*idx_r = (uint32_t)i;
			return 0;
		}
	if (kw->nnames >= COURIER_KW_MAX_NAMES) {
		kw->bad++;
		return 1;
	}
	if (grow((void **)&kw->names, &kw->capnames, kw->nnames + 1, sizeof(*kw->names)) < 0)
		return -1;
	char *copy = strdup(name);
	if (copy == NULL)
		return -1;
	kw->names[kw->nnames] = copy;
	*idx_r = (uint32_t)kw->nnames++;
	return 0;
}

static struct courier_kwmsg *kw_add_msg(struct courier_kw *kw, const char *base)
{
	if (grow((void **)&kw->msgs, &kw->capmsgs, kw->nmsgs + 1, sizeof(*kw->msgs)) < 0)
		return NULL;
	struct courier_kwmsg *m = &kw->msgs[kw->nmsgs];
	m->base = base;
	m->seq = kw->nmsgs;
	m->idx = NULL;
	m->n = 0;
	kw->nmsgs++;
	return m;
}

static int kw_msg_add_idx(struct courier_kwmsg *m, uint32_t idx)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->idx[i] == idx)
			return 0;
	if (m->n >= COURIER_KW_MAX_PER_MSG)
		return 1;
	uint32_t *n = realloc(m->idx, (m->n + 1) * sizeof(*m->idx));
	if (n == NULL)
		return -1;
	m->idx = n;
	m->idx[m->n++] = idx;
	return 0;
}

/* "basename:0 3 7": indexes into the names listed above the empty line;
 * one out of range is ignored, as Courier does. */
static int kwlist_line(struct courier_kw *kw, char *line, size_t nlisted, const uint32_t *map)
{
	char *colon = strchr(line, ':');
	if (colon == NULL || colon == line || *line == '.' || strchr(line, '/') != NULL) {
		kw->bad++;
		return 0;
	}
	*colon = '\0';
	struct courier_kwmsg *m = kw_add_msg(kw, line);
	if (m == NULL)
		return -1;
	const char *p = colon + 1;
	for (;;) {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		uint64_t i;
		if (parse_num(&p, UINT32_MAX, &i) < 0 || (*p != ' ' && *p != '\0')) {
			kw->bad++;
			while (*p != ' ' && *p != '\0')
				p++;
			continue;
		}
		if (i >= nlisted || map[i] == UINT32_MAX)
			continue;
		if (kw_msg_add_idx(m, map[i]) < 0)
			return -1;
	}
	return 0;
}

int import_courier_kw_parse_list(struct courier_kw *kw, char *data, size_t len, struct error *err)
{
	uint32_t *map = NULL;
	size_t nlisted = 0, cap = 0;
	if (kw_keep_buf(kw, data) < 0) {
		free(data);
		goto nomem;
	}
	char *pos = data, *end = data + len, *line;
	while ((line = next_line(&pos, end)) != NULL && *line != '\0') {
		uint32_t idx = UINT32_MAX;
		int r = kw_add_name(kw, line, &idx);
		if (r < 0)
			goto nomem;
		if (grow((void **)&map, &cap, nlisted + 1, sizeof(*map)) < 0)
			goto nomem;
		map[nlisted++] = r == 0 ? idx : UINT32_MAX;
	}
	/* Without the empty line there are no message lines (maildir_kwImport). */
	if (line != NULL)
		while ((line = next_line(&pos, end)) != NULL)
			if (*line != '\0' && kwlist_line(kw, line, nlisted, map) < 0)
				goto nomem;
	free(map);
	return 0;
nomem:
	free(map);
	error_set(err, ERR_TEMP, "out of memory");
	return -1;
}

int import_courier_kw_update(struct courier_kw *kw, const char *base, char *data, size_t len,
			     struct error *err)
{
	char *copy = NULL;
	if (kw_keep_buf(kw, data) < 0) {
		free(data);
		goto nomem;
	}
	if ((copy = strdup(base)) == NULL || kw_keep_buf(kw, copy) < 0) {
		free(copy);
		goto nomem;
	}
	struct courier_kwmsg *m = kw_add_msg(kw, copy);
	if (m == NULL)
		goto nomem;
	char *pos = data, *end = data + len, *line;
	while ((line = next_line(&pos, end)) != NULL && *line != '\0') {
		uint32_t idx;
		int r = kw_add_name(kw, line, &idx);
		if (r < 0 || (r == 0 && kw_msg_add_idx(m, idx) < 0))
			goto nomem;
	}
	return 0;
nomem:
	error_set(err, ERR_TEMP, "out of memory");
	return -1;
}

static int kwmsg_cmp(const void *x, const void *y)
{
	const struct courier_kwmsg *a = x, *b = y;
	int c = strcmp(a->base, b->base);
	if (c != 0)
		return c;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

const struct courier_kwmsg *import_courier_kw_find(struct courier_kw *kw, const char *base,
						   size_t len)
{
	if (!kw->sorted) {
		if (kw->nmsgs > 0)
			qsort(kw->msgs, kw->nmsgs, sizeof(*kw->msgs), kwmsg_cmp);
		kw->sorted = 1;
	}
	size_t lo = 0, hi = kw->nmsgs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = base_cmp(kw->msgs[mid].base, base, len);
		if (c < 0) {
			lo = mid + 1;
		} else if (c > 0) {
			hi = mid;
		} else {
			/* The last one read wins (an update over ":list"). */
			while (mid + 1 < kw->nmsgs && base_cmp(kw->msgs[mid + 1].base, base, len) == 0)
				mid++;
			return &kw->msgs[mid];
		}
	}
	return NULL;
}

void import_courier_kw_free(struct courier_kw *kw)
{
	for (size_t i = 0; i < kw->nnames; i++)
		free(kw->names[i]);
	for (size_t i = 0; i < kw->nmsgs; i++)
		free(kw->msgs[i].idx);
	for (size_t i = 0; i < kw->nbufs; i++)
		free(kw->bufs[i]);
	free(kw->names);
	free(kw->msgs);
	free(kw->bufs);
	memset(kw, 0, sizeof(*kw));
}

/* ---- courierpop3dsizelist ----------------------------------------------- */

static int pop3ent_cmp(const void *x, const void *y)
{
	const struct courier_pop3ent *a = x, *b = y;
	return strcmp(a->base, b->base);
}

/* "/3 NEXTUID UIDV": pop3dserver.c readpop3dlist takes versions 3 and 2. */
static int pop3_header(const char *line)
{
	const char *p = line;
	uint64_t v;
	if (*p++ != '/' || parse_num(&p, 1000, &v) < 0 || (v != 3 && v != 2))
		return -1;
	skip_blanks(&p);
	return parse_num(&p, UINT64_MAX, &v);
}

/* "name size uid:uidv[:utf8]": the last two spaces split it (a name may
 * hold a space), as readpop3dlist does. */
static int pop3_line(struct courier_pop3 *pl, size_t *cap, char *line)
{
	char *sp2 = strrchr(line, ' ');
	if (sp2 == NULL)
		goto bad;
	*sp2 = '\0';
	char *sp1 = strrchr(line, ' ');
	if (sp1 == NULL || sp1 == line)
		goto bad;
	*sp1 = '\0';
	struct courier_pop3ent e = {line, 0, 0, 0};
	const char *p = sp1 + 1;
	if (parse_num(&p, UINT64_MAX, &e.size) < 0 || *p != '\0')
		goto bad;
	p = sp2 + 1;
	if (parse_num(&p, UINT64_MAX, &e.uid) < 0 || *p++ != ':' ||
	    parse_num(&p, UINT64_MAX, &e.uidv) < 0)
		goto bad;
	if (*p == ':') {
		uint64_t utf8;
		p++;
		if (parse_num(&p, 1, &utf8) < 0)
			goto bad;
	}
	if (*p != '\0')
		goto bad;
	line[base_len(line)] = '\0';
	if (*line == '\0' || *line == '.' || strchr(line, '/') != NULL)
		goto bad;
	if (grow((void **)&pl->v, cap, pl->n + 1, sizeof(*pl->v)) < 0)
		return -1;
	pl->v[pl->n++] = e;
	return 0;
bad:
	pl->bad++;
	return 0;
}

int import_courier_pop3_parse(struct courier_pop3 *pl, char *data, size_t len, struct error *err)
{
	memset(pl, 0, sizeof(*pl));
	pl->data = data;
	char *pos = data, *end = data + len;
	char *line = next_line(&pos, end);
	if (line == NULL || pop3_header(line) < 0) {
		error_set(err, ERR_DATA,
			  "courierpop3dsizelist: not a version 2 or 3 header (\"/3 NEXTUID UIDV\")");
		return -1;
	}
	size_t cap = 0;
	while ((line = next_line(&pos, end)) != NULL) {
		if (*line == '\0')
			continue;
		if (pop3_line(pl, &cap, line) < 0) {
			error_set(err, ERR_TEMP, "out of memory");
			return -1;
		}
	}
	if (pl->n > 0)
		qsort(pl->v, pl->n, sizeof(*pl->v), pop3ent_cmp);
	return 0;
}

const struct courier_pop3ent *import_courier_pop3_find(const struct courier_pop3 *pl,
						       const char *base, size_t len)
{
	size_t lo = 0, hi = pl->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = base_cmp(pl->v[mid].base, base, len);
		if (c == 0)
			return &pl->v[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

int import_courier_pop3_uidl(const struct courier_pop3ent *e, char *out, size_t outsz)
{
	int n;
	if (e->uid != 0) {
		if (e->uidv != 0)
			n = snprintf(out, outsz, "UID%llu-%llu", (unsigned long long)e->uid,
				     (unsigned long long)e->uidv);
		else
			n = snprintf(out, outsz, "UID%llu", (unsigned long long)e->uid);
		return n < 0 || (size_t)n >= outsz ? -1 : 0;
	}
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)e->base; *p != '\0'; p++) {
		if (*p < 0x21 || *p > 0x7e || *p == '\'' || *p == '"' || *p == '+') {
			if (o + 3 >= outsz)
				return -1;
			snprintf(out + o, outsz - o, "+%02X", *p);
			o += 3;
		} else {
			if (o + 1 >= outsz)
				return -1;
			out[o++] = (char)*p;
		}
	}
	if (o >= outsz)
		return -1;
	out[o] = '\0';
	return 0;
}

void import_courier_pop3_free(struct courier_pop3 *pl)
{
	free(pl->v);
	free(pl->data);
	memset(pl, 0, sizeof(*pl));
}

/* ---- names ---------------------------------------------------------------- */

char *import_courier_name(const char *s, size_t len, struct error *err)
{
	struct buf out = BUF_INIT;
	struct error e2;
	int ascii = 1;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] >= 0x80)
			ascii = 0;
	if (!ascii || imap_utf7_decode(s, len, &out, &e2) < 0) {
		buf_truncate(&out, 0);
		if (imap_utf7_utf8_check(s, len, err) < 0) {
			buf_free(&out);
			return NULL;
		}
		buf_append(&out, s, len);
	}
	if (out.failed) {
		buf_free(&out);
		error_set(err, ERR_TEMP, "out of memory");
		return NULL;
	}
	char *name = buf_steal(&out);
	if (name == NULL) {
		error_set(err, ERR_TEMP, "out of memory");
		return NULL;
	}
	size_t n = strlen(name);
	for (char *p = name; *p != '\0'; p++) {
		if (*p == '/' || (unsigned char)*p < 0x20 || *p == 0x7f) {
			free(name);
			error_set(err, ERR_INVALID, "a name with '/' or a control character");
			return NULL;
		}
		if (*p == '.')
			*p = '/';
	}
	if (n == 0 || name[0] == '/' || name[n - 1] == '/' || strstr(name, "//") != NULL) {
		free(name);
		error_set(err, ERR_INVALID, "an empty level in the name");
		return NULL;
	}
	return name;
}

/* ---- one folder ------------------------------------------------------------ */

struct cmsg {
	char *name;	/* the file's name in cur/ or new/ */
	size_t baselen;
	uint32_t uid;
	uint32_t flags;
	int in_new;
};

struct folder_run {
	const struct import_sink *sink;
	int fd;		   /* the folder's maildir */
	const char *label; /* for the report: "" (INBOX) or ".Work/" */
	const char *name;  /* mailroom's name */
	int is_inbox;
	int have_db;
	struct courier_uiddb db;
	struct courier_kw kw;
	int have_pop3;
	struct courier_pop3 pop3;
	struct cmsg *msgs;
	size_t n, cap;
};

static void report(const struct folder_run *fr, const char *file, const char *reason)
{
	char what[512];
	snprintf(what, sizeof(what), "courier:%.250s%.250s", fr->label, file);
	if (fr->sink->skip != NULL)
		fr->sink->skip(fr->sink->ctx, what, reason);
}

static void report_bad_lines(const struct folder_run *fr, const char *file, size_t bad)
{
	char reason[128];
	if (bad == 0)
		return;
	snprintf(reason, sizeof(reason), "%zu malformed line%s ignored", bad, bad == 1 ? "" : "s");
	report(fr, file, reason);
}

/* Read a metadata file: 0 and the data, 1 if it is not there, -1 (err) if
 * it is there but cannot be read: importing on without it would give the
 * messages other UIDs or keywords than clients know, which a re-run could
 * not undo, so the import stops instead. */
static int read_meta(int dirfd, const char *file, size_t max, char **data_r, size_t *len_r,
		     const char *what, struct error *err)
{
	if (fsx_read_file(dirfd, file, max, data_r, len_r) == 0)
		return 0;
	if (errno == ENOENT)
		return 1;
	error_errno(err, what);
	return -1;
}

static int load_uiddb(struct folder_run *fr, struct error *err)
{
	char *data;
	size_t len;
	char what[300];
	snprintf(what, sizeof(what), "%.250scourierimapuiddb", fr->label);
	int r = read_meta(fr->fd, "courierimapuiddb", UIDDB_MAX, &data, &len, what, err);
	if (r != 0)
		return r < 0 ? -1 : 0;
	struct error e2 = {ERR_OK, ""};
	if (import_courier_uiddb_parse(&fr->db, data, len, &e2) < 0) {
		if (e2.code == ERR_TEMP) {
			*err = e2;
			return -1;
		}
		report(fr, "courierimapuiddb", "not a version 1 courierimapuiddb: UIDs are not kept");
		import_courier_uiddb_free(&fr->db);
		return 0;
	}
	fr->have_db = 1;
	report_bad_lines(fr, "courierimapuiddb", fr->db.bad);
	return 0;
}

static int load_pop3(struct folder_run *fr, struct error *err)
{
	char *data;
	size_t len;
	int r = read_meta(fr->fd, "courierpop3dsizelist", POP3LIST_MAX, &data, &len,
			  "courierpop3dsizelist", err);
	if (r != 0)
		return r < 0 ? -1 : 0;
	struct error e2 = {ERR_OK, ""};
	if (import_courier_pop3_parse(&fr->pop3, data, len, &e2) < 0) {
		import_courier_pop3_free(&fr->pop3);
		if (e2.code == ERR_TEMP) {
			*err = e2;
			return -1;
		}
		report(fr, "courierpop3dsizelist",
		       "not a version 2 or 3 list (Courier would give new UIDLs too): POP3 UIDLs are not kept");
		return 0;
	}
	fr->have_pop3 = 1;
	report_bad_lines(fr, "courierpop3dsizelist", fr->pop3.bad);
	return 0;
}

/* A pending keyword update file: "basename" or ".N.basename". */
struct kwupd {
	char *dname;
	const char *base;
	uint64_t n; /* UINT64_MAX: the plain "basename", which wins */
};

static int kwupd_cmp(const void *x, const void *y)
{
	const struct kwupd *a = x, *b = y;
	int c = strcmp(a->base, b->base);
	if (c != 0)
		return c;
	return a->n > b->n ? -1 : a->n < b->n;
}

/* Which update files maildirkeywords2.c scan_updates would read. */
static int kwupd_parse(char *dname, struct kwupd *u)
{
	if (dname[0] == ':')
		return -1; /* ":list" and its kin */
	if (dname[0] != '.') {
		u->dname = dname;
		u->base = dname;
		u->n = UINT64_MAX;
		return 0;
	}
	const char *p = dname + 1;
	uint64_t n;
	if (parse_num(&p, UINT64_MAX - 1, &n) < 0 || n == 0 || *p != '.' || p[1] == '\0')
		return -1; /* ".tmp.*" scratch files and anything else */
	u->dname = dname;
	u->base = p + 1;
	u->n = n;
	return 0;
}

static int collect_kw_updates(int kwfd, struct kwupd **v_r, size_t *n_r, struct error *err)
{
	int dfd = dup(kwfd);
	DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
	struct kwupd *v = NULL;
	size_t n = 0, cap = 0;
	if (d == NULL) {
		if (dfd >= 0)
			close(dfd);
		error_errno(err, "courierimapkeywords");
		return -1;
	}
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		struct kwupd u;
		char *copy = strdup(de->d_name);
		if (copy == NULL || kwupd_parse(copy, &u) < 0) {
			free(copy);
			if (copy == NULL)
				goto nomem;
			continue;
		}
		if (grow((void **)&v, &cap, n + 1, sizeof(*v)) < 0) {
			free(copy);
			goto nomem;
		}
		v[n++] = u;
	}
	closedir(d);
	if (n > 0)
		qsort(v, n, sizeof(*v), kwupd_cmp);
	*v_r = v;
	*n_r = n;
	return 0;
nomem:
	closedir(d);
	for (size_t i = 0; i < n; i++)
		free(v[i].dname);
	free(v);
	error_set(err, ERR_TEMP, "out of memory");
	return -1;
}

static int apply_kw_updates(struct folder_run *fr, int kwfd, struct error *err)
{
	struct kwupd *v;
	size_t n;
	int ret = -1;
	if (collect_kw_updates(kwfd, &v, &n, err) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && strcmp(v[i].base, v[i - 1].base) == 0)
			continue; /* an older update of the same message */
		char *data;
		size_t len;
		char what[600];
		snprintf(what, sizeof(what), "%.250scourierimapkeywords/%.300s", fr->label, v[i].dname);
		int r = read_meta(kwfd, v[i].dname, KWUPDATE_MAX, &data, &len, what, err);
		if (r < 0)
			goto out;
		if (r == 0 && import_courier_kw_update(&fr->kw, v[i].base, data, len, err) < 0)
			goto out;
	}
	ret = 0;
out:
	for (size_t i = 0; i < n; i++)
		free(v[i].dname);
	free(v);
	return ret;
}

static int load_keywords(struct folder_run *fr, struct error *err)
{
	char what[300];
	snprintf(what, sizeof(what), "%.250scourierimapkeywords", fr->label);
	int kwfd = fsx_opendir_beneath(fr->fd, "courierimapkeywords");
	if (kwfd < 0) {
		if (errno == ENOENT)
			return 0;
		error_errno(err, what);
		return -1;
	}
	int ret = -1;
	char *data;
	size_t len;
	int r = read_meta(kwfd, ":list", KWLIST_MAX, &data, &len, what, err);
	if (r < 0)
		goto out;
	if (r == 0 && import_courier_kw_parse_list(&fr->kw, data, len, err) < 0)
		goto out;
	if (apply_kw_updates(fr, kwfd, err) < 0)
		goto out;
	report_bad_lines(fr, "courierimapkeywords/:list", fr->kw.bad);
	ret = 0;
out:
	close(kwfd);
	return ret;
}

/* Maildir flags after ":2,"; Courier writes D F R S T, P is the maildir
 * spec's "passed" ($Forwarded here); anything else is not a flag of ours. */
static uint32_t parse_flags(const char *name)
{
	const char *info = strstr(name, ":2,");
	uint32_t f = 0;
	if (info == NULL)
		return 0;
	for (const char *p = info + 3; *p != '\0' && *p != ','; p++) {
		switch (*p) {
		case 'D': f |= STORE_F_DRAFT; break;
		case 'F': f |= STORE_F_FLAGGED; break;
		case 'P': f |= STORE_F_PASSED; break;
		case 'R': f |= STORE_F_ANSWERED; break;
		case 'S': f |= STORE_F_SEEN; break;
		case 'T': f |= STORE_F_DELETED; break;
		default: break;
		}
	}
	return f;
}

static int is_regular(int dfd, const struct dirent *de)
{
	if (de->d_type == DT_REG)
		return 1;
	if (de->d_type != DT_UNKNOWN)
		return 0;
	struct stat st;
	return fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

static int add_msg(struct folder_run *fr, const char *dname, int in_new)
{
	if (fr->n >= FOLDER_MAX_MSGS)
		return 1;
	if (grow((void **)&fr->msgs, &fr->cap, fr->n + 1, sizeof(*fr->msgs)) < 0)
		return -1;
	struct cmsg *m = &fr->msgs[fr->n];
	if ((m->name = strdup(dname)) == NULL)
		return -1;
	m->baselen = base_len(dname);
	m->in_new = in_new;
	m->flags = in_new ? 0 : parse_flags(dname);
	m->uid = fr->have_db ? import_courier_uiddb_find(&fr->db, dname, m->baselen) : 0;
	fr->n++;
	return 0;
}

static int scan_dir(struct folder_run *fr, const char *sub, struct error *err)
{
	char what[300];
	snprintf(what, sizeof(what), "%.250s%.8s", fr->label, sub);
	int dfd = fsx_opendir_beneath(fr->fd, sub);
	DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
	if (d == NULL) {
		if (dfd >= 0)
			close(dfd);
		if (errno == ENOENT && strcmp(sub, "new") == 0)
			return 0;
		error_errno(err, what);
		return -1;
	}
	struct dirent *de;
	int ret = 0;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (!is_regular(dfd, de)) {
			char file[600];
			snprintf(file, sizeof(file), "%.8s/%.256s", sub, de->d_name);
			report(fr, file, "not a regular file (a symlink or a directory): not imported");
			continue;
		}
		int r = add_msg(fr, de->d_name, strcmp(sub, "new") == 0);
		if (r < 0) {
			error_set(err, ERR_TEMP, "out of memory");
			ret = -1;
			break;
		}
		if (r > 0) {
			report(fr, sub, "more messages than one folder may hold: the rest not imported");
			break;
		}
	}
	closedir(d);
	return ret;
}

/* The leading number of a maildir name, as atol() reads it in fnamcmp. */
static long long lead_num(const char *s)
{
	long long v = 0;
	for (; *s >= '0' && *s <= '9'; s++)
		v = v > (long long)1e17 ? v : v * 10 + (*s - '0');
	return v;
}

/* Known UIDs first, ascending; then the rest, from cur/ and new/ alike, in
 * the order Courier gives them new UIDs (imapscanclient.c
 * sort_by_filename_status: fnamcmp, the leading number then the name). */
static int cmsg_cmp(const void *x, const void *y)
{
	const struct cmsg *a = x, *b = y;
	if ((a->uid != 0) != (b->uid != 0))
		return a->uid != 0 ? -1 : 1;
	if (a->uid != b->uid)
		return a->uid < b->uid ? -1 : 1;
	long long na = lead_num(a->name), nb = lead_num(b->name);
	if (na != nb)
		return na < nb ? -1 : 1;
	size_t la = a->baselen, lb = b->baselen;
	int c = memcmp(a->name, b->name, la < lb ? la : lb);
	if (c != 0)
		return c;
	if (la != lb)
		return la < lb ? -1 : 1;
	/* the same name in cur/ and new/: cur/ first (it keeps the UID) */
	return a->in_new - b->in_new;
}

/* One UID for two files (the same name in cur/ and new/, or an edited
 * uiddb): the first keeps it, the others get new ones. */
static void order_msgs(struct folder_run *fr)
{
	if (fr->n == 0)
		return;
	qsort(fr->msgs, fr->n, sizeof(*fr->msgs), cmsg_cmp);
	int dup = 0;
	for (size_t i = 1; i < fr->n; i++)
		if (fr->msgs[i].uid != 0 && fr->msgs[i].uid == fr->msgs[i - 1].uid) {
			char file[600];
			snprintf(file, sizeof(file), "%s/%s", fr->msgs[i].in_new ? "new" : "cur",
				 fr->msgs[i].name);
			report(fr, file, "its UID in courierimapuiddb belongs to another file too: given a new UID");
			fr->msgs[i].uid = 0;
			dup = 1;
		}
	if (dup)
		qsort(fr->msgs, fr->n, sizeof(*fr->msgs), cmsg_cmp);
}

/* An IMAP flag-keyword (an atom, RFC 9051), as the store takes it. */
static int keyword_ok(const char *kw)
{
	if (*kw == '\0' || strlen(kw) > 100)
		return 0;
	for (const unsigned char *p = (const unsigned char *)kw; *p != '\0'; p++)
		if (*p <= 0x20 || *p >= 0x7f || strchr("(){%*\"\\]", *p) != NULL)
			return 0;
	return 1;
}

static size_t msg_keywords(struct folder_run *fr, const struct cmsg *cm, const char *file,
			   const char **out)
{
	const struct courier_kwmsg *km = import_courier_kw_find(&fr->kw, cm->name, cm->baselen);
	size_t n = 0;
	if (km == NULL)
		return 0;
	for (size_t i = 0; i < km->n; i++) {
		const char *kw = fr->kw.names[km->idx[i]];
		if (!keyword_ok(kw)) {
			char reason[200];
			snprintf(reason, sizeof(reason), "keyword \"%.100s\" is not an IMAP atom: dropped", kw);
			report(fr, file, reason);
			continue;
		}
		size_t j;
		for (j = 0; j < n && strcasecmp(out[j], kw) != 0; j++)
			;
		if (j == n)
			out[n++] = kw;
	}
	return n;
}

static int emit_msg(struct folder_run *fr, const struct cmsg *cm, struct error *err)
{
	const struct import_sink *s = fr->sink;
	char file[600], id[900], uidl[512];
	const char *kws[COURIER_KW_MAX_PER_MSG];
	snprintf(file, sizeof(file), "%s/%s", cm->in_new ? "new" : "cur", cm->name);
	snprintf(id, sizeof(id), "%.250s%.600s", fr->label, file);
	if (cm->uid != 0 && s->has_uid != NULL && s->has_uid(s->ctx, cm->uid) == 1)
		return 0;
	struct import_msg m = {
		.uid = cm->uid,
		.flags = cm->flags,
		.keywords = kws,
		.nkeywords = msg_keywords(fr, cm, file, kws),
		.internaldate = -1, /* Courier's INTERNALDATE is the file's mtime */
		.pop3_uidl = NULL,
		.size = 0,
		.id = id,
	};
	if (fr->have_pop3) {
		const struct courier_pop3ent *pe = import_courier_pop3_find(&fr->pop3, cm->name,
									     cm->baselen);
		if (pe != NULL && import_courier_pop3_uidl(pe, uidl, sizeof(uidl)) == 0) {
			m.pop3_uidl = uidl;
			m.size = pe->size;
		}
	}
	return s->msg_file(s->ctx, &m, fr->fd, file, err);
}

static int emit_folder(struct folder_run *fr, struct error *err)
{
	const struct import_sink *s = fr->sink;
	struct import_folder f = {fr->name, 0, 0, NULL};
	if (fr->have_db) {
		uint32_t next = fr->db.uidnext;
		for (size_t i = 0; i < fr->n; i++)
			if (fr->msgs[i].uid != 0 && fr->msgs[i].uid >= next)
				next = fr->msgs[i].uid == UINT32_MAX ? UINT32_MAX : fr->msgs[i].uid + 1;
		/* Files the uiddb does not name get the UIDs Courier's next scan
		 * would have given them (they come last, in its order): the same
		 * on every run, so a re-run finds them there and adds nothing. */
		for (size_t i = 0; i < fr->n; i++)
			if (fr->msgs[i].uid == 0 && next < UINT32_MAX)
				fr->msgs[i].uid = next++;
		f.uidvalidity = fr->db.uidvalidity;
		f.uidnext = next;
	}
	if (s->folder_begin(s->ctx, &f, err) < 0)
		return -1;
	for (size_t i = 0; i < fr->n; i++)
		if (emit_msg(fr, &fr->msgs[i], err) < 0)
			return -1;
	return s->folder_end(s->ctx, err);
}

static void folder_run_free(struct folder_run *fr)
{
	import_courier_uiddb_free(&fr->db);
	import_courier_kw_free(&fr->kw);
	import_courier_pop3_free(&fr->pop3);
	for (size_t i = 0; i < fr->n; i++)
		free(fr->msgs[i].name);
	free(fr->msgs);
}

static int import_folder(const struct import_sink *sink, int fd, const char *label,
			 const char *name, int is_inbox, struct error *err)
{
	struct folder_run fr;
	memset(&fr, 0, sizeof(fr));
	fr.sink = sink;
	fr.fd = fd;
	fr.label = label;
	fr.name = name;
	fr.is_inbox = is_inbox;
	int ret = -1;
	if (load_uiddb(&fr, err) < 0 || load_keywords(&fr, err) < 0)
		goto out;
	if (is_inbox && load_pop3(&fr, err) < 0)
		goto out;
	if (scan_dir(&fr, "cur", err) < 0 || scan_dir(&fr, "new", err) < 0)
		goto out;
	order_msgs(&fr);
	ret = emit_folder(&fr, err);
out:
	folder_run_free(&fr);
	return ret;
}

/* ---- the tree --------------------------------------------------------------- */

static void report_root(const struct import_sink *sink, const char *file, const char *reason)
{
	struct folder_run fr;
	memset(&fr, 0, sizeof(fr));
	fr.sink = sink;
	fr.label = "";
	report(&fr, file, reason);
}

/* Whether the store takes name (store_mailbox_name_normalize: a pure
 * function of the name). Checked here so that one odd folder is reported
 * and skipped instead of failing the sink and with it the whole import. */
static int name_storable(const char *name)
{
	char *norm = NULL;
	struct error e2;
	int ok = store_mailbox_name_normalize(name, &norm, &e2) == 0;
	free(norm);
	return ok;
}

/* "INBOX" or "INBOX.a.b" as a mailroom name; NULL (reported) otherwise. */
static char *sub_name(const struct import_sink *sink, const char *line)
{
	struct error e2 = {ERR_OK, ""};
	if (strcasecmp(line, "INBOX") == 0)
		return strdup("INBOX");
	if (strncasecmp(line, "INBOX.", 6) != 0) {
		report_root(sink, "courierimapsubscribed",
			    "a name outside Courier's \"INBOX.\" namespace (a shared folder): not subscribed");
		return NULL;
	}
	char *rest = import_courier_name(line + 6, strlen(line + 6), &e2);
	if (rest == NULL) {
		report_root(sink, "courierimapsubscribed", e2.text);
		return NULL;
	}
	char *full = malloc(strlen(rest) + 7);
	if (full != NULL)
		sprintf(full, "INBOX/%s", rest);
	free(rest);
	if (full != NULL && !name_storable(full)) {
		report_root(sink, "courierimapsubscribed", "a name mailroom cannot hold: not subscribed");
		free(full);
		return NULL;
	}
	return full;
}

static int import_subscriptions(const struct import_sink *sink, int root, struct error *err)
{
	char *data;
	size_t len;
	int r = read_meta(root, "courierimapsubscribed", SUBS_MAX, &data, &len,
			  "courierimapsubscribed", err);
	if (r != 0)
		return r < 0 ? -1 : 0;
	char *pos = data, *end = data + len, *line;
	int ret = 0;
	while ((line = next_line(&pos, end)) != NULL) {
		if (*line == '\0')
			continue;
		char *name = sub_name(sink, line);
		if (name == NULL)
			continue;
		if (sink->subscribe != NULL && sink->subscribe(sink->ctx, name, err) < 0)
			ret = -1;
		free(name);
		if (ret < 0)
			break;
	}
	free(data);
	return ret;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The ".Name" entries of the root, sorted. */
static int list_folders(int root, char ***v_r, size_t *n_r, struct error *err)
{
	int dfd = dup(root);
	DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
	char **v = NULL;
	size_t n = 0, cap = 0;
	if (d == NULL) {
		if (dfd >= 0)
			close(dfd);
		error_errno(err, "the Maildir");
		return -1;
	}
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] != '.' || strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		char *copy = strdup(de->d_name);
		if (copy == NULL || grow((void **)&v, &cap, n + 1, sizeof(*v)) < 0) {
			free(copy);
			closedir(d);
			for (size_t i = 0; i < n; i++)
				free(v[i]);
			free(v);
			error_set(err, ERR_TEMP, "out of memory");
			return -1;
		}
		v[n++] = copy;
	}
	closedir(d);
	if (n > 0)
		qsort(v, n, sizeof(*v), name_cmp);
	*v_r = v;
	*n_r = n;
	return 0;
}

static int is_dir_at(int dirfd, const char *name)
{
	struct stat st;
	return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

/* One ".A.B" entry: a folder if it is a real directory with a cur/. */
static int import_subfolder(const struct import_sink *sink, int root, const char *dname,
			    struct error *err)
{
	struct error e2 = {ERR_OK, ""};
	if (!is_dir_at(root, dname)) {
		report_root(sink, dname, "not a directory (a symlink or a file): not imported");
		return 0;
	}
	char *rest = import_courier_name(dname + 1, strlen(dname + 1), &e2);
	if (rest == NULL) {
		if (e2.code == ERR_TEMP) {
			*err = e2;
			return -1;
		}
		report_root(sink, dname, e2.text);
		return 0;
	}
	char *name = malloc(strlen(rest) + 7);
	char label[300];
	snprintf(label, sizeof(label), "%.280s/", dname);
	int ret = -1;
	int fd = -1;
	if (name == NULL) {
		error_set(err, ERR_TEMP, "out of memory");
		goto out;
	}
	sprintf(name, "INBOX/%s", rest);
	if (!name_storable(name)) {
		report_root(sink, dname, "a name mailroom cannot hold: not imported");
		ret = 0;
		goto out;
	}
	fd = fsx_opendir_beneath(root, dname);
	if (fd < 0) {
		error_errno(err, dname);
		goto out;
	}
	if (!is_dir_at(fd, "cur")) {
		report_root(sink, dname, "no cur/ in it: not a maildir folder, not imported");
		ret = 0;
		goto out;
	}
	ret = import_folder(sink, fd, label, name, 0, err);
out:
	if (fd >= 0)
		close(fd);
	free(name);
	free(rest);
	return ret;
}

int import_courier(const char *path, const struct import_sink *sink, struct error *err)
{
	/* O_NOFOLLOW here too: with --all a user owns the path's last part and
	 * could point it at someone else's Maildir. A trailing '/' would make
	 * open() follow a symlink there, so it goes. */
	size_t plen = strlen(path);
	while (plen > 1 && path[plen - 1] == '/')
		plen--;
	char *p = strndup(path, plen);
	int root = p == NULL ? -1 : open(p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat lst;
	if (root < 0 && p != NULL && lstat(p, &lst) == 0 && S_ISLNK(lst.st_mode))
		error_set(err, ERR_INVALID, "%s is a symbolic link: give the path it points to", path);
	else if (root < 0)
		error_errno(err, path);
	free(p);
	if (root < 0)
		return -1;
	char **folders = NULL;
	size_t nfolders = 0;
	int ret = -1;
	if (!is_dir_at(root, "cur")) {
		error_set(err, ERR_INVALID, "%s: not a Courier maildir (no cur/)", path);
		goto out;
	}
	if (import_subscriptions(sink, root, err) < 0)
		goto out;
	if (import_folder(sink, root, "", "INBOX", 1, err) < 0)
		goto out;
	if (list_folders(root, &folders, &nfolders, err) < 0)
		goto out;
	for (size_t i = 0; i < nfolders; i++)
		if (import_subfolder(sink, root, folders[i], err) < 0)
			goto out;
	ret = 0;
out:
	for (size_t i = 0; i < nfolders; i++)
		free(folders[i]);
	free(folders);
	close(root);
	return ret;
}
