/*
 * imap_cmd_sort.c: SORT and UID SORT (RFC 5256 3), the DISPLAYFROM and
 * DISPLAYTO keys (RFC 5957), ESORT result options (RFC 5267 3), and THREAD /
 * UID THREAD (RFC 5256 3; the algorithms are in imap_thread.c).
 *
 * Design note. The search program is SEARCH's (imap_search_uids). For the
 * matching messages we keep one struct smsg each: the index row's size and
 * internal date, and only the keys the command asks for, computed once
 * (base subject, first From/To/Cc mailbox or display name, sent date as
 * UTC seconds). They come from the cached ENVELOPE (store_cache_range, one
 * index walk; store_cache_get parses the file only for a message the cache
 * lacks). THREAD=REFERENCES needs the References field, which the ENVELOPE
 * does not hold: that one header field is read from the file (the header
 * only, at most HDR_CAP bytes). Memory: one struct smsg (112 bytes on
 * 64-bit) and one flag byte a message, the key strings asked for (each
 * typically 5-60 bytes) and SEARCH's result (12 bytes a message), all freed
 * when the command ends; nothing is kept per session. bench/imap_sort/run
 * prints the peak RSS growth per message.
 *
 * Comparison (RFC 5256 2.2-2.3, 3): strings by i;unicode-casemap, which we
 * approximate as Dovecot does for ASCII (letters title-cased, so upper
 * case) and Latin-1 letters (decomposed to base letter + combining mark);
 * other text compares by its UTF-8 bytes. A missing field is the empty
 * string and sorts first. DATE: the Date field in UTC; when it is missing
 * or cannot be parsed, the internal date (RFC 5256 3). Ties: sequence
 * number order. CONTEXT=SORT (RFC 5267 4) is not offered.
 */
#include "imap/imap_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "imap/imap_seqset.h"
#include "imap/imap_thread.h"
#include "lib/buf.h"
#include "lib/civil.h"
#include "mime/mime.h"

#define MAX_KEYS 16
#define HDR_CAP (256 * 1024)

enum sort_key { K_ARRIVAL, K_CC, K_DATE, K_FROM, K_SIZE, K_SUBJECT, K_TO, K_DISPLAYFROM, K_DISPLAYTO };
enum { S_SUBJECT, S_FROM, S_TO, S_CC, S_DFROM, S_DTO, S_MSGID, S_IRT, S_REFS, S_N };

struct smsg {
	uint32_t uid, seq;
	uint64_t size;
	int64_t arrival, date;
	bool is_reply;
	char *s[S_N];
};

struct sorter {
	struct imap_session *s;
	struct smsg *m;
	size_t n;
	unsigned need; /* bit per S_* */
	bool need_date;
	bool need_env;
	int keys[MAX_KEYS];
	bool rev[MAX_KEYS];
	size_t nkeys;
};

/* ---- case mapping ---------------------------------------------------------- */

/* Latin-1 letters U+00C0..U+00FF: base letter (upper case) and combining
 * mark of their canonical decomposition; 0 mark: no decomposition. */
static const char l1_base[] = "AAAAAAACEEEEIIII" "DNOOOOO*OUUUUYTS"
			      "AAAAAAACEEEEIIII" "DNOOOOO/OUUUUYTY";
static const uint16_t l1_mark[] = {
	0x300, 0x301, 0x302, 0x303, 0x308, 0x30A, 0, 0x327, 0x300, 0x301, 0x302, 0x308, 0x300, 0x301, 0x302, 0x308,
	0, 0x303, 0x300, 0x301, 0x302, 0x303, 0x308, 0, 0, 0x300, 0x301, 0x302, 0x308, 0x301, 0, 0,
	0x300, 0x301, 0x302, 0x303, 0x308, 0x30A, 0, 0x327, 0x300, 0x301, 0x302, 0x308, 0x300, 0x301, 0x302, 0x308,
	0, 0x303, 0x300, 0x301, 0x302, 0x303, 0x308, 0, 0, 0x300, 0x301, 0x302, 0x308, 0x301, 0, 0x308,
};

static void put_cp(struct buf *b, uint32_t c)
{
	char u[4];
	if (c < 0x80) {
		buf_putc(b, (char)c);
	} else {
		u[0] = (char)(0xC0 | (c >> 6));
		u[1] = (char)(0x80 | (c & 0x3F));
		buf_append(b, u, 2);
	}
}

/* i;unicode-casemap (RFC 5051) for what we know; malloc'ed, NULL on ENOMEM. */
static char *casemap(const char *in)
{
	struct buf b = BUF_INIT;
	const unsigned char *p = (const unsigned char *)in;
	buf_puts(&b, "");
	for (; *p != '\0'; p++) {
		if (*p < 0x80) {
			buf_putc(&b, (char)toupper(*p));
		} else if (*p == 0xC3 && p[1] >= 0x80 && p[1] <= 0xBF) {
			unsigned i = (unsigned)p[1] - 0x80; /* the letter is U+00C0 + i */
			char base = l1_base[i];
			if (l1_mark[i] != 0) {
				buf_putc(&b, base);
				put_cp(&b, l1_mark[i]);
			} else if (i == 0x1F) {
				/* U+00DF has no simple title case mapping (UnicodeData.txt) */
				put_cp(&b, 0xDF);
			} else {
				/* U+00E6 -> U+00C6 and the like: upper case */
				uint32_t c = 0xC0 + i;
				if (c >= 0xE0 && c != 0xF7)
					c -= 0x20;
				put_cp(&b, c);
			}
			p++;
		} else {
			buf_putc(&b, (char)*p);
		}
	}
	if (b.failed) {
		buf_free(&b);
		return NULL;
	}
	return buf_steal(&b);
}

/* ---- ENVELOPE reading ------------------------------------------------------ */

struct ep {
	const char *p, *end;
};

static void ep_sp(struct ep *e)
{
	while (e->p < e->end && *e->p == ' ')
		e->p++;
}

/* nstring -> malloc'ed copy (NULL for NIL) in *out when out != NULL. */
static int ep_nstring(struct ep *e, char **out)
{
	ep_sp(e);
	if (out != NULL)
		*out = NULL;
	if (e->end - e->p >= 3 && strncasecmp(e->p, "NIL", 3) == 0) {
		e->p += 3;
		return 0;
	}
	struct buf b = BUF_INIT;
	if (e->p < e->end && *e->p == '"') {
		e->p++;
		while (e->p < e->end && *e->p != '"') {
			if (*e->p == '\\' && e->p + 1 < e->end)
				e->p++;
			buf_putc(&b, *e->p++);
		}
		if (e->p >= e->end) {
			buf_free(&b);
			return -1;
		}
		e->p++;
	} else if (e->p < e->end && *e->p == '{') {
		char *q;
		unsigned long len = strtoul(e->p + 1, &q, 10);
		if (q + 3 > e->end || q[0] != '}' || q[1] != '\r' || q[2] != '\n' ||
		    len > (unsigned long)(e->end - (q + 3)))
			return -1;
		buf_append(&b, q + 3, len);
		e->p = q + 3 + len;
	} else {
		return -1;
	}
	buf_puts(&b, "");
	if (b.failed)
		return -1;
	if (out != NULL)
		*out = buf_steal(&b);
	else
		buf_free(&b);
	return 0;
}

/* An address list; the first address's name, mailbox and host when asked. */
static int ep_addrs(struct ep *e, char **name, char **mbox, char **host)
{
	ep_sp(e);
	if (e->end - e->p >= 3 && strncasecmp(e->p, "NIL", 3) == 0) {
		e->p += 3;
		return 0;
	}
	if (e->p >= e->end || *e->p != '(')
		return -1;
	e->p++;
	bool first = true;
	for (;;) {
		ep_sp(e);
		if (e->p < e->end && *e->p == ')') {
			e->p++;
			return 0;
		}
		if (e->p >= e->end || *e->p != '(')
			return -1;
		e->p++;
		if (ep_nstring(e, first ? name : NULL) < 0 || ep_nstring(e, NULL) < 0 ||
		    ep_nstring(e, first ? mbox : NULL) < 0 || ep_nstring(e, first ? host : NULL) < 0)
			return -1;
		ep_sp(e);
		if (e->p >= e->end || *e->p != ')')
			return -1;
		e->p++;
		first = false;
		name = mbox = host = NULL;
	}
}

struct envfields {
	char *date, *subject, *irt, *msgid;
	char *name[3], *mbox[3], *host[3]; /* from, to, cc */
};

static void env_free(struct envfields *f)
{
	free(f->date);
	free(f->subject);
	free(f->irt);
	free(f->msgid);
	for (int i = 0; i < 3; i++) {
		free(f->name[i]);
		free(f->mbox[i]);
		free(f->host[i]);
	}
	memset(f, 0, sizeof(*f));
}

static int env_parse(const char *env, size_t len, struct envfields *f)
{
	struct ep e = { env, env + len };
	memset(f, 0, sizeof(*f));
	ep_sp(&e);
	if (e.p >= e.end || *e.p != '(')
		return -1;
	e.p++;
	int r = 0;
	r |= ep_nstring(&e, &f->date);
	r |= ep_nstring(&e, &f->subject);
	r |= ep_addrs(&e, &f->name[0], &f->mbox[0], &f->host[0]); /* from */
	r |= ep_addrs(&e, NULL, NULL, NULL);			  /* sender */
	r |= ep_addrs(&e, NULL, NULL, NULL);			  /* reply-to */
	r |= ep_addrs(&e, &f->name[1], &f->mbox[1], &f->host[1]); /* to */
	r |= ep_addrs(&e, &f->name[2], &f->mbox[2], &f->host[2]); /* cc */
	r |= ep_addrs(&e, NULL, NULL, NULL);			  /* bcc */
	r |= ep_nstring(&e, &f->irt);
	r |= ep_nstring(&e, &f->msgid);
	if (r != 0) {
		env_free(f);
		return -1;
	}
	return 0;
}

/* ---- Date: field (RFC 5322 3.3, with the obsolete forms) ------------------- */

static const char *skip_cfws(const char *p)
{
	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		if (*p != '(')
			return p;
		int depth = 0;
		do {
			if (*p == '(')
				depth++;
			else if (*p == ')')
				depth--;
			else if (*p == '\\' && p[1] != '\0')
				p++;
			p++;
		} while (*p != '\0' && depth > 0);
	}
}

static bool num(const char **pp, unsigned maxdig, unsigned mindig, long *v)
{
	const char *p = *pp;
	long n = 0;
	unsigned k = 0;
	while (isdigit((unsigned char)*p) && k < maxdig) {
		n = n * 10 + (*p++ - '0');
		k++;
	}
	if (k < mindig)
		return false;
	*pp = p;
	*v = n;
	return true;
}

/* UTC seconds, or false when the value is not a date. */
static bool parse_date(const char *s, int64_t *t_r)
{
	static const char months[] = "janfebmaraprmayjunjulaugsepoctnovdec";
	const char *p = skip_cfws(s);
	long day, year, hh, mm, ss = 0;
	int mon = -1;
	if (isalpha((unsigned char)*p)) { /* day-of-week */
		while (isalpha((unsigned char)*p))
			p++;
		p = skip_cfws(p);
		if (*p == ',')
			p = skip_cfws(p + 1);
	}
	if (!num(&p, 2, 1, &day))
		return false;
	p = skip_cfws(p);
	for (int i = 0; i < 12; i++)
		if (strncasecmp(p, months + 3 * i, 3) == 0)
			mon = i;
	if (mon < 0)
		return false;
	p = skip_cfws(p + 3);
	const char *y0 = p;
	if (!num(&p, 4, 2, &year))
		return false;
	if (p - y0 == 2)
		year += year < 50 ? 2000 : 1900;
	else if (p - y0 == 3)
		year += 1900;
	p = skip_cfws(p);
	if (!num(&p, 2, 1, &hh))
		return false;
	p = skip_cfws(p);
	if (*p++ != ':')
		return false;
	p = skip_cfws(p);
	if (!num(&p, 2, 1, &mm))
		return false;
	p = skip_cfws(p);
	if (*p == ':') {
		p = skip_cfws(p + 1);
		if (!num(&p, 2, 1, &ss))
			return false;
	}
	p = skip_cfws(p);
	long zone = 0;
	if (*p == '+' || *p == '-') {
		long z;
		int sign = *p == '-' ? -1 : 1;
		p++;
		const char *z0 = p;
		if (!num(&p, 4, 4, &z) || p - z0 != 4)
			return false;
		zone = sign * ((z / 100) * 60 + z % 100);
	} else if (isalpha((unsigned char)*p)) {
		static const struct { const char *n; int m; } zones[] = {
			{ "UT", 0 },	   { "GMT", 0 },      { "EST", -300 }, { "EDT", -240 },
			{ "CST", -360 },  { "CDT", -300 },   { "MST", -420 }, { "MDT", -360 },
			{ "PST", -480 },  { "PDT", -420 },
		};
		size_t zl = 0;
		while (isalpha((unsigned char)p[zl]))
			zl++;
		for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++)
			if (strlen(zones[i].n) == zl && strncasecmp(p, zones[i].n, zl) == 0)
				zone = zones[i].m;
		/* military and unknown zones: RFC 5322 4.3 says treat as -0000 */
	}
	if (day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60)
		return false;
	int64_t days = civil_days_from_date(year, (unsigned)mon + 1, (unsigned)day);
	*t_r = days * 86400 + hh * 3600 + mm * 60 + ss - zone * 60;
	return true;
}

/* ---- the messages ---------------------------------------------------------- */

static char *dup_or_empty(const char *s)
{
	return strdup(s != NULL ? s : "");
}

static char *decoded(const char *s)
{
	if (s == NULL)
		return strdup("");
	size_t len;
	char *d = mime_decode_header_utf8(s, strlen(s), &len);
	return d;
}

/* RFC 5957: the display name, else the addr-spec. */
static char *display(const char *name, const char *mbox, const char *host)
{
	if (name != NULL && name[0] != '\0')
		return decoded(name);
	if (mbox == NULL)
		return strdup("");
	struct buf b = BUF_INIT;
	buf_puts(&b, mbox);
	if (host != NULL) {
		buf_putc(&b, '@');
		buf_puts(&b, host);
	}
	buf_puts(&b, "");
	if (b.failed) {
		buf_free(&b);
		return NULL;
	}
	return buf_steal(&b);
}

static char *mapped(char *s)
{
	if (s == NULL)
		return NULL;
	char *m = casemap(s);
	free(s);
	return m;
}

static int fill_from_env(struct sorter *so, struct smsg *m, const char *env, size_t len)
{
	struct envfields f;
	if (env == NULL || env_parse(env, len, &f) < 0)
		memset(&f, 0, sizeof(f));
	int64_t t;
	if (so->need_date)
		m->date = f.date != NULL && parse_date(f.date, &t) ? t : m->arrival;
	if (so->need & (1u << S_SUBJECT)) {
		const char *sub = f.subject != NULL ? f.subject : "";
		m->s[S_SUBJECT] = mapped(mime_subject_base(sub, strlen(sub), &m->is_reply));
	}
	static const int idx[3][2] = { { S_FROM, S_DFROM }, { S_TO, S_DTO }, { S_CC, -1 } };
	for (int i = 0; i < 3; i++) {
		if (so->need & (1u << idx[i][0]))
			m->s[idx[i][0]] = mapped(dup_or_empty(f.mbox[i]));
		if (idx[i][1] >= 0 && (so->need & (1u << idx[i][1])))
			m->s[idx[i][1]] = mapped(display(f.name[i], f.mbox[i], f.host[i]));
	}
	if (so->need & (1u << S_MSGID))
		m->s[S_MSGID] = f.msgid, f.msgid = NULL;
	if (so->need & (1u << S_IRT))
		m->s[S_IRT] = f.irt, f.irt = NULL;
	env_free(&f);
	for (int k = 0; k < S_N; k++)
		if ((so->need & (1u << k)) && k != S_MSGID && k != S_IRT && k != S_REFS &&
		    m->s[k] == NULL)
			return -1;
	return 0;
}

static struct smsg *find_uid(struct sorter *so, uint32_t uid)
{
	size_t lo = 0, hi = so->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (so->m[mid].uid == uid)
			return &so->m[mid];
		if (so->m[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

struct walk {
	struct sorter *so;
	bool oom;
	bool *done;
};

static int row_cb(void *ctx, const struct store_msg *r)
{
	struct walk *w = ctx;
	struct smsg *m = find_uid(w->so, r->uid);
	if (m != NULL) {
		m->size = r->size;
		m->arrival = r->internaldate;
		m->date = r->internaldate;
	}
	return 0;
}

static int env_cb(void *ctx, uint32_t uid, struct store_parsed *parsed)
{
	struct walk *w = ctx;
	struct smsg *m = find_uid(w->so, uid);
	if (m == NULL || parsed->envelope == NULL)
		return 0;
	if (fill_from_env(w->so, m, parsed->envelope, parsed->envelope_len) < 0) {
		w->oom = true;
		return 1;
	}
	w->done[m - w->so->m] = true;
	return 0;
}

/* The References field of a message, unfolded, or NULL (none or unreadable). */
static char *read_references(struct store_mailbox *mbox, uint32_t uid)
{
	int fd;
	uint64_t size;
	struct error err;
	if (store_message_open(mbox, uid, &fd, &size, &err) < 0)
		return NULL;
	size_t cap = size < HDR_CAP ? (size_t)size : HDR_CAP;
	char *buf = malloc(cap + 1);
	ssize_t got = 0;
	if (buf != NULL) {
		while ((size_t)got < cap) {
			ssize_t r = pread(fd, buf + got, cap - (size_t)got, got);
			if (r <= 0)
				break;
			got += r;
			if (memmem(buf, (size_t)got, "\r\n\r\n", 4) != NULL)
				break;
		}
		buf[got] = '\0';
	}
	close(fd);
	if (buf == NULL)
		return NULL;
	char *end = memmem(buf, (size_t)got, "\r\n\r\n", 4);
	if (end != NULL)
		*end = '\0';
	char *res = NULL;
	for (char *line = buf; line != NULL && *line != '\0';) {
		char *next = strstr(line, "\r\n");
		if ((line == buf || line[-1] == '\n') && strncasecmp(line, "References:", 11) == 0) {
			struct buf b = BUF_INIT;
			const char *p = line + 11;
			for (;;) {
				const char *e = strstr(p, "\r\n");
				if (e == NULL) {
					buf_puts(&b, p);
					break;
				}
				buf_append(&b, p, (size_t)(e - p));
				if (e[2] != ' ' && e[2] != '\t')
					break;
				p = e + 2;
			}
			buf_puts(&b, "");
			res = b.failed ? (buf_free(&b), NULL) : buf_steal(&b);
			break;
		}
		line = next != NULL ? next + 2 : NULL;
	}
	free(buf);
	return res;
}

static int load(struct sorter *so, struct error *err)
{
	struct imap_view *v = so->s->view;
	if (so->n == 0)
		return 0;
	uint32_t lo = so->m[0].uid, hi = so->m[so->n - 1].uid;
	struct walk w = { .so = so };
	if (store_mailbox_messages(v->mbox, lo, hi, row_cb, &w, err) < 0)
		return -1;
	if (!so->need_env)
		return 0;
	w.done = calloc(so->n, sizeof(bool));
	if (w.done == NULL)
		goto oom;
	if (store_cache_range(v->mbox, lo, hi, STORE_PARSED_ENVELOPE, env_cb, &w, err) < 0) {
		free(w.done);
		return -1;
	}
	if (w.oom)
		goto oom;
	for (size_t i = 0; i < so->n; i++) {
		struct smsg *m = &so->m[i];
		if (!w.done[i]) {
			struct store_parsed p = { 0 };
			struct error e2;
			/* gone meanwhile: sorts with empty fields */
			(void)store_cache_get(v->mbox, m->uid, STORE_PARSED_ENVELOPE, &p, &e2);
			int r = fill_from_env(so, m, p.envelope, p.envelope_len);
			store_cache_parsed_clear(&p);
			if (r < 0)
				goto oom;
		}
		if (so->need & (1u << S_REFS))
			m->s[S_REFS] = read_references(v->mbox, m->uid);
	}
	free(w.done);
	return 0;
oom:
	free(w.done);
	err->code = ERR_TEMP;
	strcpy(err->text, "out of memory");
	return -1;
}

static void sorter_free(struct sorter *so)
{
	for (size_t i = 0; i < so->n; i++)
		for (int k = 0; k < S_N; k++)
			free(so->m[i].s[k]);
	free(so->m);
}

/* Run the search program at args and load what the keys need. -1 after a
 * tagged reply. */
static int gather(struct sorter *so, const struct imap_command *cmd, const struct imap_arg *args,
		  size_t argc)
{
	uint32_t *uids;
	size_t n;
	struct error err;
	if (imap_search_uids(so->s, cmd, args, argc, &uids, &n) < 0)
		return -1;
	so->m = calloc(n ? n : 1, sizeof(*so->m));
	if (so->m == NULL) {
		free(uids);
		imap_send_tagged(so->s, cmd, "NO", "[SERVERBUG] Out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		so->m[i].uid = uids[i];
		so->m[i].seq = imap_view_seq(so->s->view, uids[i]);
	}
	so->n = n;
	free(uids);
	if (load(so, &err) < 0) {
		imap_send_store_error(so->s, cmd, &err);
		return -1;
	}
	return 0;
}

/* CHARSET argument: 0, or -1 after NO [BADCHARSET] / BAD. */
static int check_charset(struct imap_session *s, const struct imap_command *cmd,
			 const struct imap_arg *a)
{
	const char *cs;
	size_t cl;
	if (!imap_parser_arg_astring(a, &cs, &cl)) {
		imap_send_tagged(s, cmd, "BAD", "Missing charset");
		return -1;
	}
	if (strcasecmp(cs, "UTF-8") != 0 && strcasecmp(cs, "US-ASCII") != 0) {
		imap_send_tagged(s, cmd, "NO", "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
		return -1;
	}
	return 0;
}

/* ---- SORT ------------------------------------------------------------------ */

static struct sorter *cmp_so; /* qsort has no context argument; one loop thread */

static int cmp_i64(int64_t a, int64_t b)
{
	return a < b ? -1 : a > b;
}

static int cmp_msgs(const void *pa, const void *pb)
{
	const struct smsg *a = pa, *b = pb;
	for (size_t k = 0; k < cmp_so->nkeys; k++) {
		int c = 0;
		switch (cmp_so->keys[k]) {
		case K_ARRIVAL: c = cmp_i64(a->arrival, b->arrival); break;
		case K_DATE: c = cmp_i64(a->date, b->date); break;
		case K_SIZE: c = cmp_i64((int64_t)a->size, (int64_t)b->size); break;
		case K_SUBJECT: c = strcmp(a->s[S_SUBJECT], b->s[S_SUBJECT]); break;
		case K_FROM: c = strcmp(a->s[S_FROM], b->s[S_FROM]); break;
		case K_TO: c = strcmp(a->s[S_TO], b->s[S_TO]); break;
		case K_CC: c = strcmp(a->s[S_CC], b->s[S_CC]); break;
		case K_DISPLAYFROM: c = strcmp(a->s[S_DFROM], b->s[S_DFROM]); break;
		case K_DISPLAYTO: c = strcmp(a->s[S_DTO], b->s[S_DTO]); break;
		}
		if (c != 0)
			return cmp_so->rev[k] ? -c : c;
	}
	return cmp_i64(a->seq, b->seq);
}

static int parse_keys(struct sorter *so, const struct imap_arg *a)
{
	static const struct { const char *name; int key; unsigned need; bool date; } names[] = {
		{ "ARRIVAL", K_ARRIVAL, 0, false },
		{ "CC", K_CC, 1u << S_CC, false },
		{ "DATE", K_DATE, 0, true },
		{ "FROM", K_FROM, 1u << S_FROM, false },
		{ "SIZE", K_SIZE, 0, false },
		{ "SUBJECT", K_SUBJECT, 1u << S_SUBJECT, false },
		{ "TO", K_TO, 1u << S_TO, false },
		{ "DISPLAYFROM", K_DISPLAYFROM, 1u << S_DFROM, false },
		{ "DISPLAYTO", K_DISPLAYTO, 1u << S_DTO, false },
	};
	if (a->type != IMAP_ARG_LIST || a->count == 0)
		return -1;
	bool reverse = false;
	for (size_t i = 0; i < a->count; i++) {
		const struct imap_arg *o = &a->list[i];
		if (imap_parser_arg_atom_eq(o, "REVERSE")) {
			if (reverse)
				return -1;
			reverse = true;
			continue;
		}
		size_t j;
		for (j = 0; j < sizeof(names) / sizeof(names[0]); j++)
			if (imap_parser_arg_atom_eq(o, names[j].name))
				break;
		if (j == sizeof(names) / sizeof(names[0]) || so->nkeys == MAX_KEYS)
			return -1;
		so->keys[so->nkeys] = names[j].key;
		so->rev[so->nkeys++] = reverse;
		so->need |= names[j].need;
		so->need_date |= names[j].date;
		reverse = false;
	}
	if (reverse)
		return -1; /* REVERSE must precede a key */
	so->need_env = so->need != 0 || so->need_date;
	return 0;
}

#define RET_MIN 0x01
#define RET_MAX 0x02
#define RET_COUNT 0x04
#define RET_ALL 0x08

static int parse_return(const struct imap_arg *a, unsigned *ret_r)
{
	unsigned r = 0;
	if (a->type != IMAP_ARG_LIST)
		return -1;
	for (size_t i = 0; i < a->count; i++) {
		const struct imap_arg *o = &a->list[i];
		if (imap_parser_arg_atom_eq(o, "MIN"))
			r |= RET_MIN;
		else if (imap_parser_arg_atom_eq(o, "MAX"))
			r |= RET_MAX;
		else if (imap_parser_arg_atom_eq(o, "COUNT"))
			r |= RET_COUNT;
		else if (imap_parser_arg_atom_eq(o, "ALL"))
			r |= RET_ALL;
		else
			return -1;
	}
	*ret_r = r == 0 ? RET_ALL : r; /* RFC 4731 3.1 via RFC 5267 3.1 */
	return 0;
}

static uint32_t shown(const struct imap_command *cmd, const struct smsg *m)
{
	return cmd->uid ? m->uid : m->seq;
}

static void send_sort(struct imap_session *s, const struct imap_command *cmd,
		      const struct sorter *so, bool esort, unsigned ret)
{
	struct buf b = BUF_INIT;
	if (!esort) {
		buf_puts(&b, "* SORT");
		for (size_t i = 0; i < so->n; i++)
			buf_printf(&b, " %u", shown(cmd, &so->m[i]));
	} else {
		/* RFC 5267 3.1/3.2: MIN/MAX are the first/last in sort order;
		 * ALL is in sort order, ranges only where numbers ascend by 1 */
		buf_printf(&b, "* ESEARCH (TAG \"%s\")", cmd->tag);
		if (cmd->uid)
			buf_puts(&b, " UID");
		if (so->n > 0 && (ret & RET_MIN))
			buf_printf(&b, " MIN %u", shown(cmd, &so->m[0]));
		if (so->n > 0 && (ret & RET_MAX))
			buf_printf(&b, " MAX %u", shown(cmd, &so->m[so->n - 1]));
		if (ret & RET_COUNT)
			buf_printf(&b, " COUNT %zu", so->n);
		if (so->n > 0 && (ret & RET_ALL)) {
			buf_puts(&b, " ALL ");
			for (size_t i = 0; i < so->n;) {
				size_t j = i;
				while (j + 1 < so->n && shown(cmd, &so->m[j + 1]) == shown(cmd, &so->m[j]) + 1)
					j++;
				if (i > 0)
					buf_putc(&b, ',');
				if (j > i)
					buf_printf(&b, "%u:%u", shown(cmd, &so->m[i]), shown(cmd, &so->m[j]));
				else
					buf_printf(&b, "%u", shown(cmd, &so->m[i]));
				i = j + 1;
			}
		}
	}
	buf_puts(&b, "\r\n");
	if (!b.failed)
		imap_send_raw(s, b.data, b.len);
	buf_free(&b);
}

static int cmd_sort(struct imap_session *s, const struct imap_command *cmd)
{
	struct sorter so = { .s = s };
	unsigned ret = 0;
	bool esort = false;
	size_t i = 0;
	/* sort = ["UID" SP] "SORT" [sort-return-opts] SP sort-criteria SP
	 *        search-criteria (RFC 5267 3, RFC 5256 5) */
	if (i < cmd->argc && imap_parser_arg_atom_eq(&cmd->args[i], "RETURN")) {
		if (i + 1 >= cmd->argc || parse_return(&cmd->args[i + 1], &ret) < 0) {
			imap_send_tagged(s, cmd, "BAD", "Invalid RETURN options");
			return 0;
		}
		esort = true;
		i += 2;
	}
	if (i + 2 >= cmd->argc || parse_keys(&so, &cmd->args[i]) < 0) {
		imap_send_tagged(s, cmd, "BAD", "Invalid sort criteria");
		return 0;
	}
	if (check_charset(s, cmd, &cmd->args[i + 1]) < 0)
		return 0;
	if (gather(&so, cmd, cmd->args + i + 2, cmd->argc - i - 2) < 0) {
		sorter_free(&so);
		return 0;
	}
	cmp_so = &so;
	qsort(so.m, so.n, sizeof(*so.m), cmp_msgs);
	cmp_so = NULL;
	send_sort(s, cmd, &so, esort, ret);
	sorter_free(&so);
	imap_view_sync(s, cmd->uid);
	if (!s->base.closing)
		imap_send_tagged(s, cmd, "OK", "%s completed", cmd->uid ? "UID SORT" : "Sort");
	return 0;
}

/* ---- THREAD ---------------------------------------------------------------- */

static int cmd_thread(struct imap_session *s, const struct imap_command *cmd)
{
	struct sorter so = { .s = s };
	bool refs;
	/* thread = ["UID" SP] "THREAD" SP thread-alg SP search-charset SP
	 *          search-program (RFC 5256 5) */
	if (cmd->argc < 3) {
		imap_send_tagged(s, cmd, "BAD", "THREAD needs an algorithm, a charset and a search");
		return 0;
	}
	if (imap_parser_arg_atom_eq(&cmd->args[0], "REFERENCES")) {
		refs = true;
	} else if (imap_parser_arg_atom_eq(&cmd->args[0], "ORDEREDSUBJECT")) {
		refs = false;
	} else {
		imap_send_tagged(s, cmd, "BAD", "Unknown threading algorithm");
		return 0;
	}
	so.need = 1u << S_SUBJECT;
	if (refs)
		so.need |= (1u << S_MSGID) | (1u << S_IRT) | (1u << S_REFS);
	so.need_date = true;
	so.need_env = true;
	if (check_charset(s, cmd, &cmd->args[1]) < 0)
		return 0;
	if (gather(&so, cmd, cmd->args + 2, cmd->argc - 2) < 0) {
		sorter_free(&so);
		return 0;
	}
	struct imap_thread_msg *tm = malloc((so.n ? so.n : 1) * sizeof(*tm));
	struct buf b = BUF_INIT;
	int r = -1;
	if (tm != NULL) {
		for (size_t k = 0; k < so.n; k++) {
			const struct smsg *m = &so.m[k];
			tm[k] = (struct imap_thread_msg){ .num = shown(cmd, m), .seq = m->seq,
							  .date = m->date, .base = m->s[S_SUBJECT],
							  .is_reply = m->is_reply,
							  .msgid = m->s[S_MSGID], .refs = m->s[S_REFS],
							  .irt = m->s[S_IRT] };
		}
		/* thread-data = "THREAD" [SP 1*thread-list] (RFC 5256 4) */
		buf_puts(&b, so.n > 0 ? "* THREAD " : "* THREAD");
		r = refs ? imap_thread_references(tm, so.n, &b)
			 : imap_thread_orderedsubject(tm, so.n, &b);
		buf_puts(&b, "\r\n");
	}
	free(tm);
	sorter_free(&so);
	if (r < 0 || b.failed) {
		buf_free(&b);
		imap_send_tagged(s, cmd, "NO", "[SERVERBUG] Out of memory");
		return 0;
	}
	imap_send_raw(s, b.data, b.len);
	buf_free(&b);
	imap_view_sync(s, cmd->uid);
	if (!s->base.closing)
		imap_send_tagged(s, cmd, "OK", "%s completed", cmd->uid ? "UID THREAD" : "Thread");
	return 0;
}

static const struct imap_cmd_def rows[] = {
	{ { "SORT", IMAP_IN_SELECTED }, cmd_sort, IMAP_CMD_UID | IMAP_CMD_NO_EXPUNGE },
	{ { "THREAD", IMAP_IN_SELECTED }, cmd_thread, IMAP_CMD_UID | IMAP_CMD_NO_EXPUNGE },
};
const struct imap_cmd_family imap_cmd_sort = { rows, sizeof(rows) / sizeof(rows[0]) };
