/*
 * import_mbox.c: the mbox source driver (import.h): a file becomes INBOX, a
 * folder of mbox files becomes one folder per file.
 *
 * Design note.
 *
 * Streaming. An mbox can be gigabytes, so it is never read whole: a reader
 * with one fixed buffer (MBOX_BUF) hands out lines, a line longer than the
 * buffer in several pieces, and the message goes to the sink through
 * msg_begin / msg_write / msg_end from a second fixed buffer (MBOX_OUT).
 * Each message is read twice, but only its header: a first pass collects
 * the status headers (the flags, the UID and Content-Length must be known
 * before msg_begin), then the reader goes back to the header's start, which
 * is usually still in the buffer, and streams the message out.
 *
 * Splitting (RFC 4155). A message starts at a "From " line at the start of
 * the file or after an empty line; that empty line is the separator and
 * not part of the message before it (so is the empty line at the end of
 * the file). After an empty line in a body, "From " begins a new message
 * only when the line carries an asctime date, as mutt (is_from(), from.c)
 * and Dovecot (istream-raw-mbox.c, mbox_from_parse()) require: a body line
 * "From here on..." left unquoted by a careless writer stays in its message.
 * The first line of the file only has to begin with "From "; a file whose
 * first line does not is "not an mbox".
 *
 * Unquoting. mboxrd writers quote every line matching ^>*From  with one
 * more '>', mboxo writers (mutt, Python's mailbox.mbox, UW-IMAP) only
 * ^From , which is not reversible: an original ">From " line is written
 * as is. The two cannot be told apart in general (a ">>From " line suggests
 * mboxrd, its absence proves nothing), so we apply mboxrd's rule to both:
 * strip one '>' from a body line matching ^>+From  (qmail's mbox(5)). For
 * mboxo this restores every line the writer quoted; only an original
 * ">From " line, which mboxo leaves alone, loses its '>'. Dovecot 2.3
 * differs: it neither quotes when it saves (it writes Content-Length
 * instead, see below) nor unquotes when it reads, so a line an MDA quoted
 * was shown to its clients with the '>'; after the import it is shown
 * without it, one byte shorter (the message as its sender wrote it).
 *
 * Content-Length (Solaris/SysV mboxcl2, and Dovecot's saves). When the
 * header has one and the body's start plus that length is the end of the
 * file or "From " at a line start, either possibly after one empty line,
 * the length is trusted: the body is taken as those bytes, without From_
 * splitting and without unquoting (such bodies are not quoted: Dovecot
 * stores "From " lines as they are). Otherwise it is ignored (it is often
 * stale) and From_ splitting applies.
 *
 * Status headers. Status (R: \Seen; O: not recent, which the store does not
 * keep), X-Status (A \Answered, F \Flagged, T \Draft, D \Deleted),
 * X-Keywords (keywords, comma or space separated), X-UID, and in the first
 * message X-IMAP or X-IMAPbase ("UIDVALIDITY UIDLAST [keywords]") are read
 * the way UW-IMAP (src/osdep/unix/unix.c) and Dovecot (mbox-sync-parse.c)
 * write them. Under a UIDVALIDITY, UIDs are given as UW-IMAP gives them
 * (next_uid()), so that a re-run finds each message's UID again. A first
 * message with X-IMAP is UW's pseudo message "DON'T DELETE THIS MESSAGE --
 * FOLDER INTERNAL DATA": it is read, not imported. These header lines, and
 * Content-Length, are removed from the imported message: UW-IMAP
 * (unix_header()) and Dovecot (mbox_hide_headers[] in mbox-storage.c) never
 * showed them to clients, so the message a client fetches, and its
 * RFC822.SIZE, stay what they were.
 *
 * INTERNALDATE is the From_ line's date (asctime, an optional zone
 * "+hhmm" or a name, before or after the year; UTC without one), -1 when
 * it does not parse. Line endings pass as they come (the sink serves LF
 * as CRLF). A message cut by the end of the file inside its header is
 * imported as far as it goes; an empty message is reported and skipped.
 *
 * Folders. A folder is walked to MBOX_MAX_DEPTH, each regular file that
 * starts with "From " (or is empty: UW-IMAP creates new folders as empty
 * files) becoming a folder named by its path relative to the top ("inbox"
 * at the top, in any case, is INBOX). Names are modified UTF-7 on UW-IMAP
 * and Dovecot (RFC 3501 5.1.3), UTF-8 when made by hand: a name that
 * decodes as mUTF-7 is decoded, any other is taken as it is. Dot files
 * (but Dovecot's .imap index folder), lock files, symbolic links and files
 * that are not mboxes are reported and skipped; the top's .subscriptions
 * (Dovecot) and .mailboxlist (UW) give the subscriptions.
 */
#include "import/import.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "imap/imap_utf7.h"
#include "lib/buf.h"
#include "lib/strnum.h"
#include "store/store.h"

#define MBOX_BUF	  65536 /* the read buffer: longer lines come in pieces */
#define MBOX_OUT	  65536 /* the write buffer towards the sink */
#define MBOX_MAX_KEYWORDS 64
#define MBOX_KW_BYTES	  2048
#define MBOX_FROM_MAX	  1000 /* a longer From_ line is not a separator */
#define MBOX_MAX_DEPTH	  32
#define MBOX_SUBS_MAX	  (1024 * 1024)

/* ---- the line reader ----------------------------------------------------- */

struct rd {
	int fd;
	size_t pos, len;  /* unread bytes are buf[pos..len) */
	uint64_t buf_off; /* file offset of buf[0] */
	int eof;
	int bol; /* the next piece begins a line */
	char buf[MBOX_BUF];
};

struct piece {
	const char *p;
	size_t len;
	uint64_t off; /* file offset of p[0] */
	int bol;      /* p[0] begins a line */
	int eol;      /* the piece ends with '\n' */
};

static void rd_reset(struct rd *r, int fd)
{
	r->fd = fd;
	r->pos = r->len = 0;
	r->buf_off = 0;
	r->eof = 0;
	r->bol = 1;
}

static uint64_t rd_tell(const struct rd *r)
{
	return r->buf_off + r->pos;
}

static int rd_fill(struct rd *r, struct error *err)
{
	if (r->pos > 0) {
		memmove(r->buf, r->buf + r->pos, r->len - r->pos);
		r->buf_off += r->pos;
		r->len -= r->pos;
		r->pos = 0;
	}
	for (;;) {
		ssize_t n = read(r->fd, r->buf + r->len, sizeof(r->buf) - r->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			error_errno(err, "read mbox");
			return -1;
		}
		if (n == 0)
			r->eof = 1;
		r->len += (size_t)n;
		return 0;
	}
}

/* The next piece of at most max bytes: a whole line when it fits. Returns 1,
 * 0 at the end of the file, -1 on a read error. */
static int rd_next(struct rd *r, size_t max, struct piece *pc, struct error *err)
{
	size_t n;
	for (;;) {
		size_t avail = r->len - r->pos;
		const char *nl = memchr(r->buf + r->pos, '\n', avail);
		if (nl != NULL) {
			n = (size_t)(nl - (r->buf + r->pos)) + 1;
			break;
		}
		if (avail == sizeof(r->buf) || (r->eof && avail > 0) || avail >= max) {
			n = avail;
			break;
		}
		if (r->eof)
			return 0;
		if (rd_fill(r, err) < 0)
			return -1;
	}
	if (n > max)
		n = max;
	pc->p = r->buf + r->pos;
	pc->len = n;
	pc->off = rd_tell(r);
	pc->bol = r->bol;
	pc->eol = pc->p[n - 1] == '\n';
	r->pos += n;
	r->bol = pc->eol;
	return 1;
}

/* Go back (or forward) to off, the start of a line. */
static int rd_seek(struct rd *r, uint64_t off, struct error *err)
{
	r->bol = 1;
	if (off >= r->buf_off && off <= r->buf_off + r->len) {
		r->pos = (size_t)(off - r->buf_off);
		return 0;
	}
	if (lseek(r->fd, (off_t)off, SEEK_SET) < 0) {
		error_errno(err, "seek mbox");
		return -1;
	}
	r->pos = r->len = 0;
	r->buf_off = off;
	r->eof = 0;
	return 0;
}

/* ---- From_ lines ----------------------------------------------------------- */

static int word_index(const char *t, size_t n, const char *const *names, int count)
{
	if (n != 3)
		return -1;
	for (int i = 0; i < count; i++)
		if (strncasecmp(t, names[i], 3) == 0)
			return i;
	return -1;
}

static const char *const wdays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
				     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static int all_digits(const char *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)t[i]))
			return 0;
	return n > 0;
}

/* A zone: "+hhmm", "-hhmm" or a name (RFC 5322 4.3's, others are UTC).
 * Returns 0 with the offset in seconds, -1 if t is not a zone. */
static int zone_offset(const char *t, size_t n, long *off_r)
{
	static const struct {
		const char *name;
		int hours;
	} names[] = {{"UT", 0},	  {"UTC", 0},  {"GMT", 0},  {"Z", 0},	 {"EST", -5}, {"EDT", -4},
		     {"CST", -6}, {"CDT", -5}, {"MST", -7}, {"MDT", -6}, {"PST", -8}, {"PDT", -7}};
	if (n == 5 && (t[0] == '+' || t[0] == '-') && all_digits(t + 1, 4)) {
		long hh = (t[1] - '0') * 10 + (t[2] - '0'), mm = (t[3] - '0') * 10 + (t[4] - '0');
		if (mm > 59)
			return -1;
		*off_r = (t[0] == '-' ? -1 : 1) * (hh * 3600 + mm * 60);
		return 0;
	}
	if (n == 0 || n > 5)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!isalpha((unsigned char)t[i]))
			return -1;
	*off_r = 0;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i].name) == n && strncasecmp(t, names[i].name, n) == 0)
			*off_r = names[i].hours * 3600L;
	return 0;
}

struct tok {
	const char *p;
	size_t n;
};

/* "dd hh:mm[:ss] [zone] yyyy [zone]" after the weekday and month. */
static int date_from_tokens(const struct tok *t, size_t n, int mon, int64_t *t_r)
{
	struct tm tm = {0};
	uint64_t v;
	long zone = 0;
	size_t i = 0;
	if (n < 3 || t[0].n > 2 || strnum_u64(t[0].p, t[0].n, 31, &v) < 0 || v == 0)
		return -1;
	tm.tm_mday = (int)v;
	const char *c = t[1].p;
	size_t cn = t[1].n;
	if (!((cn == 5 || cn == 8) && isdigit((unsigned char)c[0]) &&
	      isdigit((unsigned char)c[1]) && c[2] == ':' && isdigit((unsigned char)c[3]) &&
	      isdigit((unsigned char)c[4])))
		return -1;
	tm.tm_hour = (c[0] - '0') * 10 + (c[1] - '0');
	tm.tm_min = (c[3] - '0') * 10 + (c[4] - '0');
	if (cn == 8) {
		if (c[5] != ':' || !isdigit((unsigned char)c[6]) || !isdigit((unsigned char)c[7]))
			return -1;
		tm.tm_sec = (c[6] - '0') * 10 + (c[7] - '0');
	}
	if (tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
		return -1;
	i = 2;
	if (!all_digits(t[i].p, t[i].n) && zone_offset(t[i].p, t[i].n, &zone) == 0)
		i++;
	if (i >= n || t[i].n != 4 || strnum_u64(t[i].p, 4, 9999, &v) < 0 || v < 1970)
		return -1;
	tm.tm_year = (int)v - 1900;
	if (i + 1 < n)
		(void)zone_offset(t[i + 1].p, t[i + 1].n, &zone);
	tm.tm_mon = mon;
	time_t when = timegm(&tm);
	if (when == (time_t)-1)
		return -1;
	*t_r = (int64_t)when - zone;
	return *t_r >= 0 ? 0 : -1;
}

/* The date of a From_ line ("From sender Www Mmm dd hh:mm:ss yyyy ..."):
 * the first weekday, month pair after the sender that begins a date. */
static int from_date(const char *line, size_t len, int64_t *t_r)
{
	struct tok t[48];
	size_t n = 0, i = 5;
	if (len < 5 || len > MBOX_FROM_MAX || memcmp(line, "From ", 5) != 0)
		return -1;
	while (len > 5 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	while (i < len && n < sizeof(t) / sizeof(t[0])) {
		while (i < len && (line[i] == ' ' || line[i] == '\t'))
			i++;
		if (i == len)
			break;
		t[n].p = line + i;
		while (i < len && line[i] != ' ' && line[i] != '\t')
			i++;
		t[n].n = (size_t)(line + i - t[n].p);
		n++;
	}
	for (size_t k = 0; k + 1 < n; k++) {
		int mon = word_index(t[k + 1].p, t[k + 1].n, months, 12);
		if (word_index(t[k].p, t[k].n, wdays, 7) >= 0 && mon >= 0 &&
		    date_from_tokens(t + k + 2, n - k - 2, mon, t_r) == 0)
			return 0;
	}
	return -1;
}

static int is_blank(const struct piece *pc)
{
	return pc->bol && pc->eol && (pc->len == 1 || (pc->len == 2 && pc->p[0] == '\r'));
}

/* ---- the header pass ----------------------------------------------------------- */

enum hdr {
	H_OTHER,
	H_STATUS,
	H_XSTATUS,
	H_XKEYWORDS,
	H_XUID,
	H_XIMAP,
	H_XIMAPBASE,
	H_CLENGTH,
};

/* What the first pass over a message's header learns. */
struct meta {
	uint32_t flags;
	int has_xuid, has_ximap, has_ximapbase, has_cl;
	uint64_t xuid, cl;
	uint32_t uidvalidity, uidlast;
	size_t nlines;	   /* header lines */
	uint64_t body_off; /* after the empty line that ends the header */
	int cut;	   /* the file ended inside the header */
	size_t kwlen, nkw;
	const char *kw[MBOX_MAX_KEYWORDS];
	char kwbuf[MBOX_KW_BYTES];
};

static enum hdr hdr_kind(const char *p, size_t len)
{
	static const struct {
		const char *name;
		enum hdr kind;
	} names[] = {{"Status", H_STATUS},	   {"X-Status", H_XSTATUS},
		     {"X-Keywords", H_XKEYWORDS},  {"X-UID", H_XUID},
		     {"X-IMAP", H_XIMAP},	   {"X-IMAPbase", H_XIMAPBASE},
		     {"Content-Length", H_CLENGTH}};
	size_t n = 0;
	while (n < len && p[n] != ':' && p[n] != ' ' && p[n] != '\t' && p[n] != '\n')
		n++;
	size_t c = n;
	while (c < len && (p[c] == ' ' || p[c] == '\t'))
		c++;
	if (c >= len || p[c] != ':')
		return H_OTHER;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i].name) == n && strncasecmp(p, names[i].name, n) == 0)
			return names[i].kind;
	return H_OTHER;
}

/* An IMAP keyword: an atom (RFC 9051 9), not a system flag. */
static int keyword_ok(const char *k, size_t n)
{
	if (n == 0 || n > 100)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)k[i];
		if (ch <= 0x20 || ch >= 0x7f || strchr("(){%*\"\\]", ch) != NULL)
			return 0;
	}
	return 1;
}

static void add_keywords(struct meta *m, const char *v, size_t n)
{
	size_t i = 0;
	while (i < n) {
		while (i < n && (v[i] == ',' || isspace((unsigned char)v[i])))
			i++;
		size_t s = i;
		while (i < n && v[i] != ',' && !isspace((unsigned char)v[i]))
			i++;
		size_t len = i - s;
		if (!keyword_ok(v + s, len) || m->nkw == MBOX_MAX_KEYWORDS ||
		    m->kwlen + len + 1 > sizeof(m->kwbuf))
			continue;
		int dup = 0;
		for (size_t k = 0; k < m->nkw && !dup; k++)
			dup = strlen(m->kw[k]) == len && memcmp(m->kw[k], v + s, len) == 0;
		if (dup)
			continue;
		char *d = m->kwbuf + m->kwlen;
		memcpy(d, v + s, len);
		d[len] = '\0';
		m->kw[m->nkw++] = d;
		m->kwlen += len + 1;
	}
}

/* The first two numbers of X-IMAP / X-IMAPbase: UIDVALIDITY and UIDLAST. */
static void parse_imapbase(struct meta *m, const char *v, size_t n)
{
	uint64_t num[2];
	size_t i = 0;
	for (int k = 0; k < 2; k++) {
		while (i < n && (v[i] == ' ' || v[i] == '\t'))
			i++;
		size_t s = i;
		while (i < n && isdigit((unsigned char)v[i]))
			i++;
		if (strnum_u64(v + s, i - s, UINT32_MAX, &num[k]) < 0)
			return;
	}
	if (num[0] == 0)
		return;
	m->uidvalidity = (uint32_t)num[0];
	m->uidlast = (uint32_t)num[1];
}

/* One header line (or continuation) of kind k, value v[0..n). */
static void header_value(struct meta *m, enum hdr k, const char *v, size_t n)
{
	while (n > 0 && isspace((unsigned char)v[n - 1]))
		n--;
	while (n > 0 && isspace((unsigned char)v[0]))
		v++, n--;
	for (size_t i = 0; k == H_STATUS && i < n; i++)
		if (v[i] == 'R')
			m->flags |= STORE_F_SEEN;
	for (size_t i = 0; k == H_XSTATUS && i < n; i++)
		m->flags |= v[i] == 'A'	  ? STORE_F_ANSWERED
			    : v[i] == 'F' ? STORE_F_FLAGGED
			    : v[i] == 'T' ? STORE_F_DRAFT
			    : v[i] == 'D' ? STORE_F_DELETED
					  : 0;
	if (k == H_XKEYWORDS)
		add_keywords(m, v, n);
	if (k == H_XUID)
		m->has_xuid = strnum_u64(v, n, UINT32_MAX, &m->xuid) == 0;
	if (k == H_XIMAP || k == H_XIMAPBASE) {
		*(k == H_XIMAP ? &m->has_ximap : &m->has_ximapbase) = 1;
		parse_imapbase(m, v, n);
	}
	if (k == H_CLENGTH)
		m->has_cl = strnum_u64(v, n, UINT64_MAX / 2, &m->cl) == 0;
}

/* Reads the header from the reader's position to the empty line after it
 * (or the end of the file) and fills m. */
static int scan_header(struct rd *r, struct meta *m, struct error *err)
{
	enum hdr cur = H_OTHER;
	struct piece pc;
	int rc;
	memset(m, 0, offsetof(struct meta, kw));
	while ((rc = rd_next(r, SIZE_MAX, &pc, err)) == 1) {
		if (is_blank(&pc)) {
			m->body_off = pc.off + pc.len;
			return 0;
		}
		if (!pc.bol)
			continue; /* the rest of a long line: nothing we read is that long */
		size_t skip = 0;
		if (pc.p[0] == ' ' || pc.p[0] == '\t') {
			if (cur != H_XKEYWORDS)
				continue;
		} else {
			m->nlines++;
			cur = hdr_kind(pc.p, pc.len);
			if (cur == H_OTHER)
				continue;
			skip = (size_t)((const char *)memchr(pc.p, ':', pc.len) - pc.p) + 1;
		}
		header_value(m, cur, pc.p + skip, pc.len - skip);
	}
	if (rc < 0)
		return -1;
	m->cut = 1;
	m->body_off = rd_tell(r);
	return 0;
}

/* Content-Length is trusted when what follows the body is the end of the
 * file or "From " at a line start, either of them possibly after one empty
 * line (Dovecot ends its mbox with one). */
static int cl_trusted(int fd, const struct meta *m)
{
	struct stat st;
	char b[9];
	if (!m->has_cl || m->cut || fstat(fd, &st) < 0)
		return 0;
	uint64_t size = (uint64_t)st.st_size, end = m->body_off + m->cl;
	if (m->cl > size || end > size)
		return 0;
	if (end == size)
		return 1;
	/* b[0] is the byte before the end: the body's last, or the header's '\n' */
	ssize_t n = pread(fd, b, sizeof(b), (off_t)(end - 1));
	if (n < 2)
		return 0;
	size_t i = 1;
	if (b[i] == '\n')
		i++;
	else if (n > 2 && b[i] == '\r' && b[i + 1] == '\n')
		i += 2;
	if (i > 1 && end - 1 + i == size)
		return 1;
	return b[i - 1] == '\n' && (size_t)n >= i + 5 && memcmp(b + i, "From ", 5) == 0;
}

/* ---- one mbox file --------------------------------------------------------- */

struct mbox {
	const struct import_sink *sink;
	struct error *err;
	struct rd rd;
	const char *where; /* the file's name for the report */
	struct import_msg msg;
	char id[600];
	int emit, begun;
	size_t outlen;
	struct meta meta;
	/* the From_ line that begins the next message */
	uint64_t from_off;
	int64_t from_date;
	char out[MBOX_OUT];
};

static int out_flush(struct mbox *m)
{
	if (m->outlen == 0)
		return 0;
	size_t n = m->outlen;
	m->outlen = 0;
	return m->sink->msg_write(m->sink->ctx, m->out, n, m->err);
}

static int out_put(struct mbox *m, const char *p, size_t n)
{
	if (!m->emit || n == 0)
		return 0;
	if (!m->begun) {
		if (m->sink->msg_begin(m->sink->ctx, &m->msg, m->err) < 0)
			return -1;
		m->begun = 1;
	}
	if (m->outlen + n > sizeof(m->out) && out_flush(m) < 0)
		return -1;
	if (n >= sizeof(m->out))
		return m->sink->msg_write(m->sink->ctx, p, n, m->err);
	memcpy(m->out + m->outlen, p, n);
	m->outlen += n;
	return 0;
}

/* A From_ line ends the message: remember it, and read past the rest of a
 * long one. Returns 1 (a next message follows) or -1. */
static int took_from(struct mbox *m, const struct piece *pc, int64_t date)
{
	struct piece rest = *pc;
	m->from_off = pc->off;
	m->from_date = date;
	while (!rest.eol) {
		int rc = rd_next(&m->rd, SIZE_MAX, &rest, m->err);
		if (rc <= 0)
			return rc < 0 ? -1 : 1;
	}
	return 1;
}

/* The header from the reader's position (its start) to the empty line,
 * without the status lines. The empty line is left in *blank. */
static int stream_header(struct mbox *m, struct piece *blank)
{
	int strip = 0, rc;
	struct piece pc;
	memset(blank, 0, sizeof(*blank));
	while (rd_tell(&m->rd) < m->meta.body_off) {
		if ((rc = rd_next(&m->rd, m->meta.body_off - rd_tell(&m->rd), &pc, m->err)) <= 0)
			return rc < 0 ? -1 : 0;
		if (is_blank(&pc)) {
			*blank = pc;
			return 0;
		}
		if (pc.bol && pc.p[0] != ' ' && pc.p[0] != '\t')
			strip = hdr_kind(pc.p, pc.len) != H_OTHER;
		if (!strip && out_put(m, pc.p, pc.len) < 0)
			return -1;
	}
	return 0;
}

/* A body whose length Content-Length gave, then the From_ line after it. */
static int stream_counted(struct mbox *m)
{
	struct piece pc;
	uint64_t left = m->meta.cl;
	int rc;
	while (left > 0) {
		if ((rc = rd_next(&m->rd, left > MBOX_BUF ? MBOX_BUF : (size_t)left, &pc,
				  m->err)) <= 0)
			return rc < 0 ? -1 : 0;
		left -= pc.len;
		if (out_put(m, pc.p, pc.len) < 0)
			return -1;
	}
	m->rd.bol = 1;
	while ((rc = rd_next(&m->rd, SIZE_MAX, &pc, m->err)) == 1) {
		if (is_blank(&pc))
			continue;
		int64_t date = -1;
		(void)from_date(pc.p, pc.len, &date);
		return took_from(m, &pc, date);
	}
	return rc;
}

/* A body up to the next From_ line after an empty line, unquoted. pending
 * is the empty line before the body (held back: it may be the separator). */
static int stream_split(struct mbox *m, struct piece pending)
{
	char held[2];
	size_t nheld = pending.len;
	struct piece pc;
	int rc;
	if (nheld > 0)
		memcpy(held, pending.p, nheld);
	while ((rc = rd_next(&m->rd, SIZE_MAX, &pc, m->err)) == 1) {
		int64_t date;
		if (pc.bol && nheld > 0 && pc.len > 5 && memcmp(pc.p, "From ", 5) == 0 &&
		    from_date(pc.p, pc.len, &date) == 0)
			return took_from(m, &pc, date);
		if (pc.bol && out_put(m, held, nheld) < 0)
			return -1;
		if (pc.bol)
			nheld = 0;
		if (is_blank(&pc)) {
			memcpy(held, pc.p, pc.len);
			nheld = pc.len;
			continue;
		}
		size_t q = 0;
		while (pc.bol && q < pc.len && pc.p[q] == '>')
			q++;
		size_t skip = q > 0 && pc.len - q >= 5 && memcmp(pc.p + q, "From ", 5) == 0;
		if (out_put(m, pc.p + skip, pc.len - skip) < 0)
			return -1;
	}
	return rc; /* the end of the file: the held empty line was the separator */
}

/* The message whose header the reader is at (meta filled). Returns 1 if a
 * From_ line for another message was read, 0 at the end of the file. */
static int stream_msg(struct mbox *m, int counted)
{
	struct piece blank;
	if (stream_header(m, &blank) < 0)
		return -1;
	if (m->meta.cut)
		return 0;
	if (counted) {
		if (out_put(m, blank.p, blank.len) < 0)
			return -1;
		return stream_counted(m);
	}
	return stream_split(m, blank);
}

/* UIDs under a known UIDVALIDITY, given as UW-IMAP's unix_parse() gives
 * them: an X-UID above the previous message's UID and at most UIDLAST is
 * kept; any other message (none, or a bad X-UID) gets ++UIDLAST, in file
 * order, as UW-IMAP would have given it on its next open. So a re-run gives
 * every message the same UID again and has_uid finds it. */
struct uids {
	uint32_t prior; /* the previous message's UID */
	uint32_t last;	/* UIDLAST, raised by each UID given */
};

static uint32_t next_uid(struct uids *u, const struct meta *mt)
{
	if (mt->has_xuid && mt->xuid > u->prior && mt->xuid <= u->last)
		return u->prior = (uint32_t)mt->xuid;
	if (u->last >= UINT32_MAX - 1)
		return 0; /* the sink gives one */
	return u->prior = ++u->last;
}

/* Everything about one message but its bytes; 1 if it is to be imported. */
static int msg_describe(struct mbox *m, const struct import_folder *f, struct uids *u)
{
	const struct meta *mt = &m->meta;
	memset(&m->msg, 0, sizeof(m->msg));
	snprintf(m->id, sizeof(m->id), "%s offset %" PRIu64, m->where, m->from_off);
	m->msg.id = m->id;
	m->msg.flags = mt->flags;
	m->msg.keywords = mt->kw;
	m->msg.nkeywords = mt->nkw;
	m->msg.internaldate = m->from_date;
	if (f->uidvalidity != 0)
		m->msg.uid = next_uid(u, mt);
	if (m->msg.uid != 0 && m->sink->has_uid != NULL &&
	    m->sink->has_uid(m->sink->ctx, m->msg.uid) == 1)
		return 0;
	return 1;
}

static int one_message(struct mbox *m, struct import_folder *f, int first, struct uids *u)
{
	uint64_t start = rd_tell(&m->rd);
	if (scan_header(&m->rd, &m->meta, m->err) < 0)
		return -1;
	int pseudo = first && m->meta.has_ximap;
	if (first) {
		if (m->meta.uidvalidity != 0) {
			f->uidvalidity = m->meta.uidvalidity;
			u->last = m->meta.uidlast;
			if (m->meta.uidlast < UINT32_MAX)
				f->uidnext = m->meta.uidlast + 1;
		}
		if (m->sink->folder_begin(m->sink->ctx, f, m->err) < 0)
			return -1;
	}
	m->emit = !pseudo && msg_describe(m, f, u);
	m->begun = 0;
	m->outlen = 0;
	uint64_t from_off = m->from_off;
	if (rd_seek(&m->rd, start, m->err) < 0)
		return -1;
	int rc = stream_msg(m, cl_trusted(m->rd.fd, &m->meta));
	if (rc < 0)
		return -1;
	if (m->begun) {
		if (out_flush(m) < 0 || m->sink->msg_end(m->sink->ctx, m->err) < 0)
			return -1;
	} else if (m->emit) {
		snprintf(m->id, sizeof(m->id), "%s offset %" PRIu64, m->where, from_off);
		m->sink->skip(m->sink->ctx, m->id, "empty message");
	}
	return rc;
}

/* Imports the mbox open on fd as folder name. Returns 0, 1 if the file is
 * not an mbox (nothing was sent to the sink), -1 on error. */
static int mbox_file(struct mbox *m, int fd, const char *name)
{
	struct import_folder f = {.name = name};
	struct piece pc;
	struct uids u = {0, 0};
	rd_reset(&m->rd, fd);
	int rc = rd_next(&m->rd, SIZE_MAX, &pc, m->err);
	if (rc < 0)
		return -1;
	if (rc == 0) { /* empty: a folder without mail */
		if (m->sink->folder_begin(m->sink->ctx, &f, m->err) < 0)
			return -1;
		return m->sink->folder_end(m->sink->ctx, m->err);
	}
	if (pc.len < 5 || memcmp(pc.p, "From ", 5) != 0)
		return 1;
	int64_t date = -1;
	(void)from_date(pc.p, pc.len, &date);
	if (took_from(m, &pc, date) < 0)
		return -1;
	for (int first = 1;; first = 0) {
		if ((rc = one_message(m, &f, first, &u)) < 0)
			return -1;
		if (rc == 0)
			break;
	}
	return m->sink->folder_end(m->sink->ctx, m->err);
}

/* ---- a folder of mbox files ----------------------------------------------- */

/* One path component as a UTF-8 name: mUTF-7 decoded when it is valid. */
static void name_component(struct buf *out, const char *s)
{
	struct error ignored;
	if (strchr(s, '&') == NULL || imap_utf7_decode(s, strlen(s), out, &ignored) < 0)
		buf_puts(out, s);
}

/* One line of a subscriptions file as a folder name. Dovecot 2.3's
 * version 2 file ("V\t2" first) separates levels with a tab and escapes a
 * few bytes with \001 (subscription-file.c); UW's .mailboxlist and older
 * Dovecot files hold one name a line. */
static void subs_name(struct buf *name, char *line, int v2)
{
	char *w = line;
	for (const char *r = line; *r != '\0'; r++) {
		if (v2 && *r == '\t')
			*w++ = '/';
		else if (v2 && *r == '\001' && r[1] != '\0')
			*w++ = *++r == 't' ? '\t'
			       : *r == 'r' ? '\r'
			       : *r == 'n' ? '\n'
			       : *r == '1' ? '\001'
					   : *r;
		else
			*w++ = *r;
	}
	*w = '\0';
	if (strcasecmp(line, "INBOX") == 0)
		buf_puts(name, "INBOX");
	else
		name_component(name, line);
}

static int subscriptions(struct mbox *m, int dirfd, const char *file)
{
	int fd = openat(dirfd, file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return 0;
	struct buf text = BUF_INIT;
	char chunk[4096];
	ssize_t n;
	while (text.len < MBOX_SUBS_MAX && (n = read(fd, chunk, sizeof(chunk))) > 0)
		buf_append(&text, chunk, (size_t)n);
	close(fd);
	int rc = 0, v2 = text.len > 2 && strncmp(buf_cstr(&text), "V\t", 2) == 0;
	char *save = NULL;
	for (char *line = text.len > 0 && !text.failed ? strtok_r(text.data, "\r\n", &save) : NULL;
	     line != NULL && rc == 0; line = strtok_r(NULL, "\r\n", &save)) {
		struct buf name = BUF_INIT;
		if (v2 && line == text.data)
			continue; /* the version line */
		subs_name(&name, line, v2);
		if (!name.failed && name.len > 0)
			rc = m->sink->subscribe(m->sink->ctx, buf_cstr(&name), m->err);
		buf_free(&name);
	}
	buf_free(&text);
	return rc;
}

static int walk_dir(struct mbox *m, int fd, const char *rel, const char *name, int depth);

/* One entry ent of the folder open on dirfd: rel is its path from the top,
 * name its folder name. */
static int walk_entry(struct mbox *m, int dirfd, const char *ent, const char *rel, const char *name,
		      int depth)
{
	struct stat st;
	size_t n = strlen(ent);
	if (ent[0] == '.') {
		/* the servers' own files (Dovecot's index folder .imap, the
		 * subscriptions read below) are not worth a line in the report */
		if (strcmp(ent, ".imap") != 0 &&
		    (depth > 0 ||
		     (strcmp(ent, ".subscriptions") != 0 && strcmp(ent, ".mailboxlist") != 0)))
			m->sink->skip(m->sink->ctx, rel, "a dot file, not a folder");
		return 0;
	}
	if (fstatat(dirfd, ent, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		m->sink->skip(m->sink->ctx, rel, strerror(errno));
		return 0;
	}
	if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
		m->sink->skip(m->sink->ctx, rel,
			      S_ISLNK(st.st_mode) ? "a symbolic link" : "not a file");
		return 0;
	}
	if (S_ISREG(st.st_mode) && n > 5 && strcmp(ent + n - 5, ".lock") == 0) {
		m->sink->skip(m->sink->ctx, rel, "a lock file");
		return 0;
	}
	int fd =
		openat(dirfd, ent,
		       O_RDONLY | O_CLOEXEC | O_NOFOLLOW | (S_ISDIR(st.st_mode) ? O_DIRECTORY : 0));
	if (fd < 0) {
		m->sink->skip(m->sink->ctx, rel, strerror(errno));
		return 0;
	}
	int rc;
	if (S_ISDIR(st.st_mode)) {
		rc = walk_dir(m, fd, rel, name, depth + 1);
	} else {
		m->where = rel;
		rc = mbox_file(m, fd, name);
		if (rc == 1)
			m->sink->skip(m->sink->ctx, rel,
				      "not an mbox (the first line is not a From_ line)");
	}
	close(fd);
	return rc < 0 ? -1 : 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The names in the folder open on fd (not closed), sorted so that folders
 * come in a stable order: *names_r holds them, *ents_r points into it. */
static int list_dir(struct mbox *m, int fd, struct buf *names, const char ***ents_r, size_t *n_r)
{
	int dupfd = dup(fd);
	DIR *d = dupfd < 0 ? NULL : fdopendir(dupfd);
	struct dirent *e;
	size_t count = 0;
	if (d == NULL) {
		error_errno(m->err, "open mbox folder");
		if (dupfd >= 0)
			close(dupfd);
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		buf_append(names, e->d_name, strlen(e->d_name) + 1);
		count++;
	}
	closedir(d);
	const char **ents = calloc(count + 1, sizeof(*ents));
	if (ents == NULL || names->failed) {
		free(ents);
		error_set(m->err, ERR_TEMP, "out of memory");
		return -1;
	}
	for (size_t off = 0, i = 0; i < count; i++) {
		ents[i] = names->data + off;
		off += strlen(ents[i]) + 1;
	}
	qsort(ents, count, sizeof(*ents), cmp_names);
	*ents_r = ents;
	*n_r = count;
	return 0;
}

/* Each entry of the folder open on fd as a folder below name ("" at the top). */
static int walk_dir(struct mbox *m, int fd, const char *rel, const char *name, int depth)
{
	struct buf names = BUF_INIT;
	const char **ents = NULL;
	size_t count = 0;
	int rc = 0;
	if (depth > MBOX_MAX_DEPTH) {
		m->sink->skip(m->sink->ctx, rel, "folders nested too deep");
		return 0;
	}
	if (list_dir(m, fd, &names, &ents, &count) < 0)
		rc = -1;
	for (size_t i = 0; i < count && rc == 0; i++) {
		struct buf crel = BUF_INIT, cname = BUF_INIT;
		buf_printf(&crel, "%s%s%s", rel, depth > 0 ? "/" : "", ents[i]);
		buf_printf(&cname, "%s%s", name, depth > 0 ? "/" : "");
		if (depth == 0 && strcasecmp(ents[i], "INBOX") == 0)
			buf_puts(&cname, "INBOX");
		else
			name_component(&cname, ents[i]);
		if (crel.failed || cname.failed) {
			error_set(m->err, ERR_TEMP, "out of memory");
			rc = -1;
		} else {
			rc = walk_entry(m, fd, ents[i], buf_cstr(&crel), buf_cstr(&cname), depth);
		}
		buf_free(&crel);
		buf_free(&cname);
	}
	free(ents);
	buf_free(&names);
	if (rc == 0 && depth == 0 &&
	    (subscriptions(m, fd, ".subscriptions") < 0 ||
	     subscriptions(m, fd, ".mailboxlist") < 0))
		rc = -1;
	return rc;
}

int import_mbox(const char *path, const struct import_sink *sink, struct error *err)
{
	struct stat st;
	struct mbox *m = NULL;
	int rc = -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		error_errno(err, path);
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		error_errno(err, path);
		goto fail;
	}
	if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
		error_set(err, ERR_INVALID, "%s: not an mbox file or a folder of them", path);
		goto fail;
	}
	if ((m = malloc(sizeof(*m))) == NULL) {
		error_set(err, ERR_TEMP, "out of memory");
		goto fail;
	}
	memset(m, 0, offsetof(struct mbox, out));
	m->sink = sink;
	m->err = err;
	if (S_ISDIR(st.st_mode)) {
		rc = walk_dir(m, fd, "", "", 0);
	} else {
		const char *base = strrchr(path, '/');
		m->where = base != NULL && base[1] != '\0' ? base + 1 : path;
		rc = mbox_file(m, fd, "INBOX");
		if (rc == 1) {
			error_set(err, ERR_DATA,
				  "%s: not an mbox (the first line is not a From_ line)", path);
			rc = -1;
		}
	}
fail:
	free(m);
	close(fd);
	return rc;
}
