/*
 * imap_cmd_search.c: SEARCH and UID SEARCH (RFC 9051 6.4.4; RFC 3501 6.4.4 for
 * NEW, OLD, RECENT), with ESEARCH result options (RFC 4731), SEARCHRES
 * (RFC 5182), the MODSEQ criterion (RFC 7162 3.1.5), EMAILID and THREADID
 * (RFC 8474 6) and SAVEDBEFORE, SAVEDON, SAVEDSINCE, SAVEDATESUPPORTED
 * (RFC 8514 4).
 *
 * Design note.
 *
 * Parsing. The search program becomes a tree of nodes in one array (at
 * most MAX_NODES, nested at most MAX_DEPTH: a deeper or longer program is a
 * BAD, never a deep recursion). The top level and each parenthesised list
 * are an AND; OR has two children, NOT one. Sequence sets and UID sets are
 * resolved at once into ascending UID arrays (imap_arg_uidset, which also
 * handles "$"); text arguments are case-folded once.
 *
 * Cost classes. Every node is cheap (flags, keywords, sizes, dates of
 * arrival, sets, modseq: from the index row), header (needs the message's
 * header: HEADER, FROM, TO, CC, BCC, SUBJECT, SENT*) or body (BODY, TEXT).
 * The children of AND and OR are ordered cheap first, so "UNSEEN BODY x"
 * opens only the unseen messages. A message's header is read at most once
 * per message (one streaming pass decides every header node), and its body
 * at most once (one pass decides every body node), only when evaluation
 * reaches such a node.
 *
 * Text matching is case-insensitive on decoded text: header values are
 * RFC 2047 decoded (mime_decode_header_utf8); bodies are decoded from
 * base64 / quoted-printable and, for text parts, converted from their
 * charset to UTF-8; both sides are case-folded (ASCII plus the common
 * Latin, Greek and Cyrillic letters). Bodies stream in bounded chunks cut
 * at line ends: memory does not grow with the message, and a match across
 * a chunk boundary is found through a tail of the previous chunk as long as
 * the longest needle.
 *
 * The MIME tree that locating body parts needs comes from the store
 * (store_cache_get), which parses the file on a miss and caches what FETCH
 * will want as well.
 *
 * Dates. BEFORE/ON/SINCE compare the internal date's calendar day (server
 * local time); SENTBEFORE/SENTON/SENTSINCE the day written in the Date:
 * header, disregarding time and zone (RFC 9051 6.4.4); a message without a
 * usable Date: falls back to its internal date. SAVEDBEFORE/SAVEDON/
 * SAVEDSINCE compare the save date's day (the A= of the file name,
 * store_message_savedate); a message whose name has none (stored before
 * save dates were kept) falls back to its internal date, as Dovecot does,
 * so that old mail is not lost to every save-date search.
 * SAVEDATESUPPORTED matches every message: every mailbox of this store
 * keeps save dates (RFC 8514 4.3). EMAILID matches the message whose id is
 * the argument, exactly (RFC 8474 6); THREADID matches nothing, as FETCH
 * THREADID is NIL for every message (threads have no ids here).
 *
 * Messages the view still has but another session expunged (no EXPUNGE
 * during SEARCH, RFC 9051 7.5.1) simply do not match.
 */
#include "imap/imap_int.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "imap/imap_seqset.h"
#include "lib/buf.h"
#include "lib/civil.h"
#include "lib/log.h"
#include "mime/mime.h"

#define MAX_NODES 2000
#define MAX_DEPTH 100
#define BATCH 256
#define READ_CHUNK (64 * 1024)
/* decoded body text is searched in slices of about this size */
#define TEXT_CHUNK (32 * 1024)
/* bytes of one header field examined (longer ones are cut) */
#define FIELD_CAP (64 * 1024)

enum node_type {
	N_ALL,
	N_NONE,
	N_AND,
	N_OR,
	N_NOT,
	N_FLAGS_SET,   /* all of mask set */
	N_FLAGS_UNSET, /* all of mask clear */
	N_KEYWORD,     /* keyword bit set (idx < 0: no such keyword) */
	N_UNKEYWORD,
	N_LARGER,
	N_SMALLER,
	N_BEFORE,
	N_ON,
	N_SINCE,
	N_SENTBEFORE,
	N_SENTON,
	N_SENTSINCE,
	N_HEADER, /* name + needle; FROM, TO, CC, BCC, SUBJECT too */
	N_BODY,
	N_TEXT,
	N_UIDS, /* sequence set or UID set, resolved to UIDs */
	N_MODSEQ,
	N_SAVEDBEFORE, /* RFC 8514 */
	N_SAVEDON,
	N_SAVEDSINCE,
	N_EMAILID,     /* RFC 8474: needle is the objectid */
};

enum cost { COST_CHEAP, COST_HEADER, COST_BODY };

struct node {
	enum node_type type;
	int first, next; /* children, siblings: indices, -1 for none */
	int cost;
	uint64_t num;	   /* LARGER/SMALLER/MODSEQ; flag mask; day number */
	int kw;		   /* keyword index */
	char *field;	   /* HEADER field name */
	char *needle;	   /* folded UTF-8 */
	size_t needle_len;
	uint32_t *uids;	   /* N_UIDS, ascending */
	size_t nuids;
	int textidx;	   /* index into the per-message text results */
};

struct search {
	struct imap_session *s;
	const struct imap_command *cmd;
	struct node *nodes;
	int nnodes;
	int root;
	int ntext;	 /* text nodes (HEADER, BODY, TEXT) */
	size_t maxneedle;
	bool has_modseq; /* a MODSEQ criterion: report (MODSEQ n) */
	bool need_sent;
	bool need_name;	 /* SAVED* or EMAILID: what the file names say */
	const char *error; /* BAD text (static or in errbuf) */
	char errbuf[128];
	bool replied;	   /* a tagged reply was already sent (imap_arg_*) */
};

/* Per message evaluation state. */
struct msgeval {
	struct search *se;
	const struct store_msg *m;
	int fd; /* -1: not open */
	bool gone;
	bool header_done, body_done;
	int64_t sent_day; /* INT64_MIN: none */
	uint8_t *match;	  /* per text node: matched */
	struct mime_tree *tree;
	char *buf; /* READ_CHUNK */
	int64_t savedate;    /* from the file name; 0: unknown */
	const char *emailid; /* from the file name */
};

/* ---- case folding ----------------------------------------------------------- */

static uint32_t fold_cp(uint32_t c)
{
	if (c >= 'A' && c <= 'Z')
		return c + 32;
	if (c < 0x80)
		return c;
	if (c >= 0xC0 && c <= 0xDE && c != 0xD7)
		return c + 32;
	if (c >= 0x100 && c <= 0x137)
		return c | 1;
	if (c >= 0x139 && c <= 0x148)
		return (c & 1) ? c + 1 : c;
	if (c >= 0x14A && c <= 0x177)
		return c | 1;
	if (c == 0x178)
		return 0xFF;
	if (c >= 0x179 && c <= 0x17E)
		return (c & 1) ? c + 1 : c;
	if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2)
		return c + 32;
	if (c >= 0x410 && c <= 0x42F)
		return c + 32;
	if (c >= 0x400 && c <= 0x40F)
		return c + 80;
	return c;
}

/* Appends the case-folded form of UTF-8 text to out. Invalid bytes pass
 * through unchanged (on both sides of a comparison alike). */
static void fold_utf8(const char *in, size_t len, struct buf *out)
{
	const unsigned char *p = (const unsigned char *)in, *end = p + len;
	while (p < end) {
		if (*p < 0x80) {
			const unsigned char *q = p;
			while (q < end && *q < 0x80)
				q++;
			size_t n = (size_t)(q - p);
			size_t at = out->len;
			buf_append(out, p, n);
			if (!out->failed)
				for (size_t i = at; i < at + n; i++)
					out->data[i] = (char)tolower((unsigned char)out->data[i]);
			p = q;
			continue;
		}
		uint32_t c;
		int n;
		if ((*p & 0xE0) == 0xC0 && end - p >= 2 && (p[1] & 0xC0) == 0x80) {
			c = ((uint32_t)(p[0] & 0x1F) << 6) | (p[1] & 0x3F);
			n = 2;
		} else if ((*p & 0xF0) == 0xE0 && end - p >= 3 && (p[1] & 0xC0) == 0x80 &&
			   (p[2] & 0xC0) == 0x80) {
			c = ((uint32_t)(p[0] & 0x0F) << 12) | ((uint32_t)(p[1] & 0x3F) << 6) |
			    (p[2] & 0x3F);
			n = 3;
		} else {
			buf_putc(out, (char)*p++);
			continue;
		}
		uint32_t f = fold_cp(c);
		if (f == c || f >= 0x800 || (n == 2 && f < 0x80)) {
			buf_append(out, p, (size_t)n);
		} else {
			char enc[2] = { (char)(0xC0 | (f >> 6)), (char)(0x80 | (f & 0x3F)) };
			buf_append(out, enc, 2);
		}
		p += n;
	}
}

/* ---- dates -------------------------------------------------------------------- */

static const char months[12][4] = { "jan", "feb", "mar", "apr", "may", "jun",
				    "jul", "aug", "sep", "oct", "nov", "dec" };

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int month_index(const char *p)
{
	for (int i = 0; i < 12; i++)
		if (strncasecmp(p, months[i], 3) == 0)
			return i + 1;
	return 0;
}

/* RFC 9051 9: date-text = date-day "-" date-month "-" date-year. */
static int parse_search_date(const char *s, size_t len, int64_t *day_r)
{
	unsigned d = 0, y = 0;
	size_t i = 0;
	while (i < len && i < 2 && isdigit((unsigned char)s[i]))
		d = d * 10 + (unsigned)(s[i++] - '0');
	if (i == 0 || d < 1 || d > 31 || i + 9 != len || s[i] != '-' || s[i + 4] != '-')
		return -1;
	int m = month_index(s + i + 1);
	if (m == 0)
		return -1;
	for (size_t k = i + 5; k < len; k++) {
		if (!isdigit((unsigned char)s[k]))
			return -1;
		y = y * 10 + (unsigned)(s[k] - '0');
	}
	*day_r = civil_days_from_date(y, (unsigned)m, d);
	return 0;
}

/* The calendar day of an RFC 5322 date (3.3; obs-year too), as written:
 * "[Tue,] 1 Feb 1994 ...". -1 when it is not a date. */
static int parse_rfc5322_day(const char *s, size_t len, int64_t *day_r)
{
	const char *p = s, *end = s + len;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	const char *comma = memchr(p, ',', (size_t)(end - p));
	if (comma != NULL && comma - p <= 12)
		p = comma + 1;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	unsigned d = 0, y = 0;
	int nd = 0, ny = 0;
	while (p < end && isdigit((unsigned char)*p) && nd < 3) {
		d = d * 10 + (unsigned)(*p++ - '0');
		nd++;
	}
	if (nd == 0 || d < 1 || d > 31)
		return -1;
	while (p < end && (*p == ' ' || *p == '\t' || *p == '-'))
		p++;
	if (end - p < 3)
		return -1;
	int m = month_index(p);
	if (m == 0)
		return -1;
	p += 3;
	while (p < end && isalpha((unsigned char)*p))
		p++; /* "February" */
	while (p < end && (*p == ' ' || *p == '\t' || *p == '-'))
		p++;
	while (p < end && isdigit((unsigned char)*p) && ny < 5) {
		y = y * 10 + (unsigned)(*p++ - '0');
		ny++;
	}
	if (ny < 2)
		return -1;
	if (ny == 2) /* RFC 5322 4.3 */
		y += y < 50 ? 2000 : 1900;
	else if (ny == 3)
		y += 1900;
	*day_r = civil_days_from_date(y, (unsigned)m, d);
	return 0;
}

static int64_t internal_day(int64_t when)
{
	time_t t = (time_t)when;
	struct tm tm;
	if (localtime_r(&t, &tm) == NULL)
		return when / 86400;
	return civil_days_from_date((int64_t)tm.tm_year + 1900, (unsigned)tm.tm_mon + 1,
			       (unsigned)tm.tm_mday);
}

/* ---- parsing ---------------------------------------------------------------------- */

static int new_node(struct search *se, enum node_type t)
{
	if (se->nnodes >= MAX_NODES) {
		se->error = "Too many search keys";
		return -1;
	}
	struct node *n = &se->nodes[se->nnodes];
	memset(n, 0, sizeof(*n));
	n->type = t;
	n->first = n->next = -1;
	n->textidx = -1;
	return se->nnodes++;
}

static void add_child(struct search *se, int parent, int child)
{
	struct node *p = &se->nodes[parent];
	if (p->first < 0) {
		p->first = child;
		return;
	}
	int c = p->first;
	while (se->nodes[c].next >= 0)
		c = se->nodes[c].next;
	se->nodes[c].next = child;
}

static const struct imap_arg *next_arg(struct search *se, const struct imap_arg *args, size_t argc,
				       size_t *i, const char *key)
{
	if (*i >= argc) {
		snprintf(se->errbuf, sizeof(se->errbuf), "%s needs an argument", key);
		se->error = se->errbuf;
		return NULL;
	}
	return &args[(*i)++];
}

static int text_node(struct search *se, enum node_type t, const char *field,
		     const struct imap_arg *a)
{
	const char *str;
	size_t len;
	if (!imap_parser_arg_astring(a, &str, &len) || memchr(str, '\0', len) != NULL) {
		se->error = "Expected a search string";
		return -1;
	}
	int id = new_node(se, t);
	if (id < 0)
		return -1;
	struct node *n = &se->nodes[id];
	struct buf b = BUF_INIT;
	char *clean = mime_charset_utf8_sanitize(str, len, &len);
	if (clean != NULL)
		fold_utf8(clean, len, &b);
	free(clean);
	buf_putc(&b, '\0');
	n->field = field != NULL ? strdup(field) : NULL;
	if (clean == NULL || b.failed || (field != NULL && n->field == NULL)) {
		buf_free(&b);
		se->error = "Out of memory";
		return -1;
	}
	n->needle_len = b.len - 1;
	n->needle = buf_steal(&b);
	n->cost = t == N_HEADER ? COST_HEADER : COST_BODY;
	n->textidx = se->ntext++;
	if (n->needle_len > se->maxneedle)
		se->maxneedle = n->needle_len;
	return id;
}

static int date_node(struct search *se, enum node_type t, const struct imap_arg *a)
{
	const char *str;
	size_t len;
	int64_t day;
	if (!imap_parser_arg_astring(a, &str, &len) || parse_search_date(str, len, &day) < 0) {
		se->error = "Invalid date (expected d-Mon-yyyy)";
		return -1;
	}
	int id = new_node(se, t);
	if (id < 0)
		return -1;
	se->nodes[id].num = (uint64_t)day;
	if (t == N_SENTBEFORE || t == N_SENTON || t == N_SENTSINCE) {
		se->nodes[id].cost = COST_HEADER;
		se->need_sent = true;
	}
	return id;
}

static int set_node(struct search *se, const struct imap_arg *a, bool uid)
{
	int id = new_node(se, N_UIDS);
	if (id < 0)
		return -1;
	struct node *n = &se->nodes[id];
	if (!uid && se->s->uidonly && !(a->type == IMAP_ARG_ATOM && strcmp(a->str, "$") == 0)) {
		/* RFC 9586 3.1: no message sequence numbers after ENABLE UIDONLY */
		se->error = "[UIDREQUIRED] Message sequence numbers are not allowed with UIDONLY";
		return -1;
	}
	if (!uid && se->s->view->n == 0 && a->type == IMAP_ARG_ATOM && a->str[0] != '$') {
		/* an empty mailbox: "1:*" names no message (and "*" has no value) */
		n->type = N_NONE;
		return id;
	}
	int r = uid ? imap_arg_uidset(se->s, se->cmd, a, true, &n->uids, &n->nuids)
		    : imap_arg_uidset_search(se->s, se->cmd, a, &n->uids, &n->nuids);
	if (r < 0) {
		se->replied = true;
		return -1;
	}
	return id;
}

static int parse_key(struct search *se, const struct imap_arg *args, size_t argc, size_t *i,
		     unsigned depth);

/* Keys args[*i..] up to argc as children of an AND node. */
static int parse_list(struct search *se, const struct imap_arg *args, size_t argc, unsigned depth)
{
	if (argc == 0) {
		se->error = "Empty search key list";
		return -1;
	}
	int and = new_node(se, N_AND);
	if (and < 0)
		return -1;
	size_t i = 0;
	while (i < argc) {
		int k = parse_key(se, args, argc, &i, depth + 1);
		if (k < 0)
			return -1;
		add_child(se, and, k);
	}
	return and;
}

static int flag_node(struct search *se, enum node_type t, uint32_t mask)
{
	int id = new_node(se, t);
	if (id >= 0)
		se->nodes[id].num = mask;
	return id;
}

static int keyword_node(struct search *se, bool set, const struct imap_arg *a)
{
	if (a->type != IMAP_ARG_ATOM || a->str[0] == '\\') {
		se->error = "Invalid keyword";
		return -1;
	}
	/* $Forwarded is kept as a system flag bit (store.h) */
	if (strcasecmp(a->str, "$Forwarded") == 0)
		return flag_node(se, set ? N_FLAGS_SET : N_FLAGS_UNSET, STORE_F_PASSED);
	int id = new_node(se, set ? N_KEYWORD : N_UNKEYWORD);
	if (id < 0)
		return -1;
	unsigned idx;
	struct error err;
	se->nodes[id].kw = -1;
	if (store_mailbox_keyword_index(se->s->view->mbox, a->str, 0, &idx, &err) == 0)
		se->nodes[id].kw = (int)idx;
	return id;
}

static int number_node(struct search *se, enum node_type t, const struct imap_arg *a)
{
	uint64_t v;
	if (!imap_parser_arg_number64(a, &v)) {
		se->error = "Expected a number";
		return -1;
	}
	int id = new_node(se, t);
	if (id >= 0)
		se->nodes[id].num = v;
	return id;
}

/* EMAILID / THREADID objectid (RFC 8474 6): objectid = 1*255(ALPHA /
 * DIGIT / "_" / "-"). THREADID matches nothing (no message has one). */
static int objectid_node(struct search *se, const struct imap_arg *args, size_t argc, size_t *i,
			 const char *k)
{
	const struct imap_arg *v = next_arg(se, args, argc, i, k);
	if (v == NULL)
		return -1;
	if (v->type != IMAP_ARG_ATOM || v->len == 0 || v->len > 255 ||
	    strspn(v->str, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") !=
		    v->len) {
		se->error = "Invalid objectid";
		return -1;
	}
	if (toupper((unsigned char)k[0]) == 'T')
		return new_node(se, N_NONE);
	int id = new_node(se, N_EMAILID);
	if (id < 0)
		return -1;
	se->nodes[id].needle = strdup(v->str);
	if (se->nodes[id].needle == NULL) {
		se->error = "Out of memory";
		return -1;
	}
	se->need_name = true;
	return id;
}

static int parse_key(struct search *se, const struct imap_arg *args, size_t argc, size_t *i,
		     unsigned depth)
{
	static const struct {
		const char *name;
		enum node_type type;
		uint32_t mask;
	} flagkeys[] = {
		{ "ANSWERED", N_FLAGS_SET, STORE_F_ANSWERED },
		{ "DELETED", N_FLAGS_SET, STORE_F_DELETED },
		{ "DRAFT", N_FLAGS_SET, STORE_F_DRAFT },
		{ "FLAGGED", N_FLAGS_SET, STORE_F_FLAGGED },
		{ "SEEN", N_FLAGS_SET, STORE_F_SEEN },
		{ "UNANSWERED", N_FLAGS_UNSET, STORE_F_ANSWERED },
		{ "UNDELETED", N_FLAGS_UNSET, STORE_F_DELETED },
		{ "UNDRAFT", N_FLAGS_UNSET, STORE_F_DRAFT },
		{ "UNFLAGGED", N_FLAGS_UNSET, STORE_F_FLAGGED },
		{ "UNSEEN", N_FLAGS_UNSET, STORE_F_SEEN },
		/* RFC 3501 6.4.4: RECENT, OLD = NOT RECENT, NEW = RECENT UNSEEN
		 * (below). \Recent is this session's (imap_view_recent): none
		 * after ENABLE IMAP4rev2, which removed it (RFC 9051). */
		{ "OLD", N_FLAGS_UNSET, IMAP_FLAG_RECENT },
		{ "RECENT", N_FLAGS_SET, IMAP_FLAG_RECENT },
		{ "ALL", N_ALL, 0 },
	};
	static const struct {
		const char *name;
		const char *field; /* NULL: BODY / TEXT */
		enum node_type type;
	} textkeys[] = {
		{ "FROM", "From", N_HEADER }, { "TO", "To", N_HEADER },
		{ "CC", "Cc", N_HEADER },     { "BCC", "Bcc", N_HEADER },
		{ "SUBJECT", "Subject", N_HEADER }, { "BODY", NULL, N_BODY },
		{ "TEXT", NULL, N_TEXT },
	};
	static const struct {
		const char *name;
		enum node_type type;
	} datekeys[] = {
		{ "BEFORE", N_BEFORE },		{ "ON", N_ON },
		{ "SINCE", N_SINCE },		{ "SENTBEFORE", N_SENTBEFORE },
		{ "SENTON", N_SENTON },		{ "SENTSINCE", N_SENTSINCE },
	};
	static const struct {
		const char *name;
		enum node_type type;
	} savedkeys[] = {
		{ "SAVEDBEFORE", N_SAVEDBEFORE }, { "SAVEDON", N_SAVEDON }, { "SAVEDSINCE", N_SAVEDSINCE },
	};
	if (depth > MAX_DEPTH) {
		se->error = "Search keys nested too deeply";
		return -1;
	}
	const struct imap_arg *a = &args[(*i)++];
	if (a->type == IMAP_ARG_LIST)
		return parse_list(se, a->list, a->count, depth);
	if (a->type != IMAP_ARG_ATOM) {
		se->error = "Expected a search key";
		return -1;
	}
	const char *k = a->str;
	if (isdigit((unsigned char)k[0]) || k[0] == '*' || k[0] == '$')
		return set_node(se, a, false);
	for (size_t f = 0; f < sizeof(flagkeys) / sizeof(flagkeys[0]); f++)
		if (strcasecmp(k, flagkeys[f].name) == 0)
			return flag_node(se, flagkeys[f].type, flagkeys[f].mask);
	if (strcasecmp(k, "NEW") == 0) {
		int and = new_node(se, N_AND), rec = flag_node(se, N_FLAGS_SET, IMAP_FLAG_RECENT);
		int unseen = flag_node(se, N_FLAGS_UNSET, STORE_F_SEEN);
		if (and < 0 || rec < 0 || unseen < 0)
			return -1;
		add_child(se, and, rec);
		add_child(se, and, unseen);
		return and;
	}
	for (size_t f = 0; f < sizeof(textkeys) / sizeof(textkeys[0]); f++)
		if (strcasecmp(k, textkeys[f].name) == 0) {
			const struct imap_arg *v = next_arg(se, args, argc, i, textkeys[f].name);
			return v == NULL ? -1 : text_node(se, textkeys[f].type, textkeys[f].field, v);
		}
	for (size_t f = 0; f < sizeof(datekeys) / sizeof(datekeys[0]); f++)
		if (strcasecmp(k, datekeys[f].name) == 0) {
			const struct imap_arg *v = next_arg(se, args, argc, i, datekeys[f].name);
			return v == NULL ? -1 : date_node(se, datekeys[f].type, v);
		}
	if (strcasecmp(k, "HEADER") == 0) {
		const struct imap_arg *name = next_arg(se, args, argc, i, "HEADER");
		const struct imap_arg *v = name ? next_arg(se, args, argc, i, "HEADER") : NULL;
		const char *fs;
		size_t fl;
		if (v == NULL)
			return -1;
		if (!imap_parser_arg_astring(name, &fs, &fl) || fl == 0 ||
		    memchr(fs, '\0', fl) != NULL || memchr(fs, ':', fl) != NULL) {
			se->error = "Invalid header field name";
			return -1;
		}
		char *field = strndup(fs, fl);
		if (field == NULL) {
			se->error = "Out of memory";
			return -1;
		}
		int id = text_node(se, N_HEADER, field, v);
		free(field);
		return id;
	}
	if (strcasecmp(k, "KEYWORD") == 0 || strcasecmp(k, "UNKEYWORD") == 0) {
		const struct imap_arg *v = next_arg(se, args, argc, i, k);
		return v == NULL ? -1 : keyword_node(se, toupper((unsigned char)k[0]) == 'K', v);
	}
	if (strcasecmp(k, "LARGER") == 0 || strcasecmp(k, "SMALLER") == 0) {
		const struct imap_arg *v = next_arg(se, args, argc, i, k);
		return v == NULL ? -1
				 : number_node(se, toupper((unsigned char)k[0]) == 'L' ? N_LARGER
										: N_SMALLER,
					       v);
	}
	if (strcasecmp(k, "UID") == 0) {
		const struct imap_arg *v = next_arg(se, args, argc, i, "UID");
		return v == NULL ? -1 : set_node(se, v, true);
	}
	if (strcasecmp(k, "MODSEQ") == 0) {
		/* RFC 7162 3.1.5: MODSEQ [entry-name entry-type-req] mod-sequence-valzer.
		 * Per-flag modseqs are not kept: the message's modseq stands in. */
		const struct imap_arg *v = next_arg(se, args, argc, i, "MODSEQ");
		if (v != NULL && v->type != IMAP_ARG_ATOM) {
			const struct imap_arg *type = next_arg(se, args, argc, i, "MODSEQ");
			if (type == NULL)
				return -1;
			if (!imap_parser_arg_atom_eq(type, "priv") &&
			    !imap_parser_arg_atom_eq(type, "shared") &&
			    !imap_parser_arg_atom_eq(type, "all")) {
				se->error = "Invalid MODSEQ entry type";
				return -1;
			}
			v = next_arg(se, args, argc, i, "MODSEQ");
		}
		if (v == NULL)
			return -1;
		se->has_modseq = true;
		return number_node(se, N_MODSEQ, v);
	}
	for (size_t f = 0; f < sizeof(savedkeys) / sizeof(savedkeys[0]); f++)
		if (strcasecmp(k, savedkeys[f].name) == 0) {
			const struct imap_arg *v = next_arg(se, args, argc, i, savedkeys[f].name);
			se->need_name = true;
			return v == NULL ? -1 : date_node(se, savedkeys[f].type, v);
		}
	if (strcasecmp(k, "SAVEDATESUPPORTED") == 0) /* RFC 8514 4.3: every mailbox does */
		return new_node(se, N_ALL);
	if (strcasecmp(k, "EMAILID") == 0 || strcasecmp(k, "THREADID") == 0)
		return objectid_node(se, args, argc, i, k);
	if (strcasecmp(k, "NOT") == 0) {
		if (*i >= argc) {
			se->error = "NOT needs a search key";
			return -1;
		}
		int id = new_node(se, N_NOT);
		if (id < 0)
			return -1;
		int c = parse_key(se, args, argc, i, depth + 1);
		if (c < 0)
			return -1;
		add_child(se, id, c);
		return id;
	}
	if (strcasecmp(k, "OR") == 0) {
		if (*i + 2 > argc) {
			se->error = "OR needs two search keys";
			return -1;
		}
		int id = new_node(se, N_OR);
		if (id < 0)
			return -1;
		for (int n = 0; n < 2; n++) {
			if (*i >= argc) {
				se->error = "OR needs two search keys";
				return -1;
			}
			int c = parse_key(se, args, argc, i, depth + 1);
			if (c < 0)
				return -1;
			add_child(se, id, c);
		}
		return id;
	}
	snprintf(se->errbuf, sizeof(se->errbuf), "Unknown search key %.40s", k);
	se->error = se->errbuf;
	return -1;
}

/* Gives each node its cost and puts the cheap children of AND / OR first
 * (a stable insertion sort of the sibling list). */
static int order(struct search *se, int id)
{
	struct node *n = &se->nodes[id];
	int cost = n->cost;
	if (n->first < 0)
		return cost;
	int sorted = -1;
	for (int c = n->first; c >= 0;) {
		int next = se->nodes[c].next;
		int cc = order(se, c);
		if (cc > cost)
			cost = cc;
		int *link = &sorted;
		while (*link >= 0 && se->nodes[*link].cost <= cc)
			link = &se->nodes[*link].next;
		se->nodes[c].next = *link;
		*link = c;
		c = next;
	}
	n->first = sorted;
	n->cost = cost;
	return cost;
}

/* ---- reading messages ------------------------------------------------------------------ */

static int ev_open(struct msgeval *me)
{
	if (me->fd >= 0)
		return 0;
	if (me->gone)
		return -1;
	uint64_t size;
	struct error err;
	if (store_message_open(me->se->s->view->mbox, me->m->uid, &me->fd, &size, &err) < 0) {
		if (err.code != ERR_NOTFOUND)
			log_warn("imap %s: SEARCH uid %u: %s", me->se->s->base.id, me->m->uid, err.text);
		me->gone = true;
		return -1;
	}
	return 0;
}

static ssize_t pread_full(int fd, char *buf, size_t len, uint64_t off)
{
	for (;;) {
		ssize_t n = pread(fd, buf, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		return n;
	}
}

/* The tree: from the store's cache (which parses the file on a miss). */
static int ev_tree(struct msgeval *me)
{
	struct store_parsed parsed = { 0 };
	struct error err;
	if (me->tree != NULL)
		return 0;
	if (store_cache_get(me->se->s->view->mbox, me->m->uid, STORE_PARSED_TREE, &parsed, &err) < 0) {
		if (err.code == ERR_NOTFOUND)
			me->gone = true;
		else
			log_warn("imap %s: SEARCH uid %u: %s", me->se->s->base.id, me->m->uid, err.text);
		return -1;
	}
	me->tree = parsed.tree; /* the only field asked for: nothing else to free */
	return 0;
}

/* Streams header fields of [off, off+size) (size UINT64_MAX: up to the
 * empty line) to cb as (name, unfolded value), at most FIELD_CAP bytes of
 * each field. */
static int scan_header(struct msgeval *me, uint64_t off, uint64_t size,
		       void (*cb)(struct msgeval *me, const char *name, size_t nlen,
				  const char *value, size_t vlen, void *ctx),
		       void *ctx)
{
	struct buf field = BUF_INIT;
	uint64_t pos = off, end = size == UINT64_MAX ? UINT64_MAX : off + size;
	bool line_start = true, done = false;
	while (pos < end && !done) {
		size_t want = end - pos < READ_CHUNK ? (size_t)(end - pos) : READ_CHUNK;
		ssize_t n = pread_full(me->fd, me->buf, want, pos);
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n && !done; i++) {
			char c = me->buf[i];
			if (line_start) {
				if (c == '\r' || c == '\n') {
					/* empty line: the header is over */
					if (c == '\n' || (i + 1 < n && me->buf[i + 1] == '\n') ||
					    i + 1 == n)
						done = true;
					continue;
				}
				if (c != ' ' && c != '\t' && field.len > 0) {
					const char *colon = memchr(field.data, ':', field.len);
					if (colon != NULL && !field.failed)
						cb(me, field.data, (size_t)(colon - field.data), colon + 1,
						   field.len - (size_t)(colon - field.data) - 1, ctx);
					buf_truncate(&field, 0);
				}
				line_start = false;
			}
			if (c == '\n') {
				line_start = true;
				continue;
			}
			if (c == '\r')
				continue;
			if (field.len < FIELD_CAP) /* the rest of a huge field is not examined */
				buf_putc(&field, c);
		}
		pos += (uint64_t)n;
	}
	if (field.len > 0 && !field.failed) {
		const char *colon = memchr(field.data, ':', field.len);
		if (colon != NULL)
			cb(me, field.data, (size_t)(colon - field.data), colon + 1,
			   field.len - (size_t)(colon - field.data) - 1, ctx);
	}
	buf_free(&field);
	return 0;
}

static bool contains(const char *hay, size_t hlen, const struct node *n)
{
	if (n->needle_len == 0)
		return true;
	return memmem(hay, hlen, n->needle, n->needle_len) != NULL;
}

struct header_scan {
	bool root; /* the message's own header (HEADER keys, Date) */
};

static void header_field(struct msgeval *me, const char *name, size_t nlen, const char *value,
			 size_t vlen, void *ctx)
{
	struct header_scan *hs = ctx;
	struct search *se = me->se;
	while (nlen > 0 && (name[nlen - 1] == ' ' || name[nlen - 1] == '\t'))
		nlen--;
	if (hs->root && me->sent_day == INT64_MIN && nlen == 4 && strncasecmp(name, "Date", 4) == 0) {
		int64_t day;
		if (parse_rfc5322_day(value, vlen, &day) == 0)
			me->sent_day = day;
	}
	size_t dlen;
	char *dec = mime_decode_header_utf8(value, vlen, &dlen);
	if (dec == NULL)
		return;
	struct buf f = BUF_INIT, line = BUF_INIT;
	size_t start = 0;
	while (start < dlen && (dec[start] == ' ' || dec[start] == '\t'))
		start++;
	fold_utf8(dec + start, dlen - start, &f);
	bool line_made = false;
	for (int id = 0; id < se->nnodes && !f.failed; id++) {
		const struct node *n = &se->nodes[id];
		if (n->textidx < 0 || me->match[n->textidx])
			continue;
		if (n->type == N_HEADER && hs->root) {
			if (strlen(n->field) == nlen && strncasecmp(n->field, name, nlen) == 0 &&
			    contains(f.len ? f.data : "", f.len, n))
				me->match[n->textidx] = 1;
		} else if (n->type == N_TEXT || (n->type == N_BODY && !hs->root)) {
			/* TEXT: the whole header; BODY: an encapsulated message's
			 * header is part of the body */
			if (!line_made) {
				fold_utf8(name, nlen, &line);
				buf_puts(&line, ": ");
				buf_append(&line, f.len ? f.data : "", f.len);
				line_made = true;
			}
			if (!line.failed && contains(line.len ? line.data : "", line.len, n))
				me->match[n->textidx] = 1;
		}
	}
	buf_free(&f);
	buf_free(&line);
	free(dec);
}

static void ev_header(struct msgeval *me)
{
	if (me->header_done)
		return;
	me->header_done = true;
	if (ev_open(me) < 0)
		return;
	struct header_scan hs = { true };
	scan_header(me, 0, UINT64_MAX, header_field, &hs);
}

/* Body text: decoded bytes of one part are collected here, converted to
 * UTF-8 and folded a slice at a time, and searched with a tail of the
 * previous slice so that a match across slices is found. */
struct textsink {
	struct msgeval *me;
	char *acc;
	size_t len;
	const char *charset; /* NULL: take the bytes as UTF-8 */
	struct buf tail;     /* folded, at most maxneedle-1 bytes */
	struct buf hay;	     /* tail + folded slice (reused) */
	int left;	     /* body nodes still unmatched */
};

static void sink_search(struct textsink *ts, const char *data, size_t len)
{
	struct search *se = ts->me->se;
	char *conv = NULL;
	size_t clen = 0;
	if (ts->charset == NULL || mime_charset_to_utf8(ts->charset, data, len, &conv, &clen) < 0)
		conv = mime_charset_utf8_sanitize(data, len, &clen);
	if (conv == NULL)
		return;
	struct buf *hp = &ts->hay;
	buf_truncate(hp, 0);
	buf_append(hp, ts->tail.len ? ts->tail.data : "", ts->tail.len);
	fold_utf8(conv, clen, hp);
	free(conv);
	if (hp->failed) {
		buf_free(hp);
		return;
	}
	const struct buf hay = *hp;
	for (int id = 0; id < se->nnodes; id++) {
		const struct node *n = &se->nodes[id];
		if ((n->type != N_BODY && n->type != N_TEXT) || ts->me->match[n->textidx])
			continue;
		if (contains(hay.len ? hay.data : "", hay.len, n)) {
			ts->me->match[n->textidx] = 1;
			ts->left--;
		}
	}
	size_t keep = se->maxneedle > 1 ? se->maxneedle - 1 : 0;
	if (keep > hay.len)
		keep = hay.len;
	buf_truncate(&ts->tail, 0);
	buf_append(&ts->tail, hay.data + hay.len - keep, keep);
}

static void sink_flush(struct textsink *ts, bool all)
{
	if (ts->len == 0)
		return;
	size_t cut = ts->len;
	if (!all) {
		const char *lf = memrchr(ts->acc, '\n', ts->len);
		if (lf != NULL) {
			cut = (size_t)(lf - ts->acc) + 1;
		} else if (ts->charset == NULL) {
			/* no line end: cut before an incomplete UTF-8 sequence */
			size_t i = ts->len;
			while (i > 0 && ts->len - i < 3 && ((unsigned char)ts->acc[i - 1] & 0xC0) == 0x80)
				i--;
			if (i > 0 && (unsigned char)ts->acc[i - 1] >= 0xC0) {
				unsigned char lead = (unsigned char)ts->acc[i - 1];
				size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
				if (ts->len - (i - 1) < need && i - 1 > 0)
					cut = i - 1;
			}
		}
	}
	sink_search(ts, ts->acc, cut);
	memmove(ts->acc, ts->acc + cut, ts->len - cut);
	ts->len -= cut;
}

static int sink_out(void *ctx, const void *data, size_t len)
{
	struct textsink *ts = ctx;
	const char *d = data;
	while (len > 0) {
		if (ts->left <= 0)
			return -1; /* everything matched: stop reading */
		size_t room = TEXT_CHUNK - ts->len;
		size_t take = len < room ? len : room;
		memcpy(ts->acc + ts->len, d, take);
		ts->len += take;
		d += take;
		len -= take;
		if (ts->len == TEXT_CHUNK)
			sink_flush(ts, false);
	}
	return 0;
}

/* The charset parameter of a Content-Type value, into out ("" if none). */
static void charset_param(const char *v, size_t len, char *out, size_t size)
{
	out[0] = '\0';
	for (size_t i = 0; i + 8 <= len; i++) {
		if (strncasecmp(v + i, "charset", 7) != 0 || (i > 0 && v[i - 1] != ';' &&
							       v[i - 1] != ' ' && v[i - 1] != '\t'))
			continue;
		size_t k = i + 7;
		while (k < len && (v[k] == ' ' || v[k] == '\t'))
			k++;
		if (k >= len || v[k] != '=')
			continue;
		k++;
		while (k < len && (v[k] == ' ' || v[k] == '\t'))
			k++;
		bool q = k < len && v[k] == '"';
		k += q;
		size_t o = 0;
		while (k < len && o + 1 < size && (q ? v[k] != '"' : strchr(" \t;()<>@,:\\\"/[]?=", v[k]) == NULL))
			out[o++] = v[k++];
		out[o] = '\0';
		return;
	}
}

struct ct_scan {
	char charset[48];
	bool seen;
};

static void content_type_field(struct msgeval *me, const char *name, size_t nlen,
			       const char *value, size_t vlen, void *ctx)
{
	struct ct_scan *cs = ctx;
	(void)me;
	while (nlen > 0 && (name[nlen - 1] == ' ' || name[nlen - 1] == '\t'))
		nlen--;
	if (cs->seen || nlen != 12 || strncasecmp(name, "Content-Type", 12) != 0)
		return;
	cs->seen = true; /* the first occurrence wins, as in the parser */
	charset_param(value, vlen, cs->charset, sizeof(cs->charset));
}

/* The charset to convert a text part from, or NULL for UTF-8/ASCII (and for
 * message/ leaves, searched as bytes). A tree rebuilt from the index cache
 * has no parameters (mime_tree_serialize keeps none, whatever mime.h says),
 * so then the part's Content-Type is read from its header. */
static const char *part_charset(struct msgeval *me, const struct mime_part *p, char *buf,
				size_t size)
{
	if (strcasecmp(p->type, "text") != 0)
		return NULL;
	const char *cs = NULL;
	for (unsigned i = 0; i < p->param_count && cs == NULL; i++)
		if (strcasecmp(p->params[i].name, "charset") == 0)
			cs = p->params[i].value;
	if (cs == NULL && p->param_count == 0 && !(p->flags & MIME_PART_DEFAULT_TYPE)) {
		struct ct_scan ct = { "", false };
		scan_header(me, p->header_offset, p->header_size, content_type_field, &ct);
		snprintf(buf, size, "%s", ct.charset);
		cs = buf;
	}
	if (cs == NULL || *cs == '\0' || strcasecmp(cs, "utf-8") == 0 ||
	    strcasecmp(cs, "us-ascii") == 0 || strcasecmp(cs, "utf8") == 0)
		return NULL;
	return cs;
}

static void body_part(struct textsink *ts, const struct mime_part *p)
{
	struct msgeval *me = ts->me;
	if (ts->left <= 0)
		return;
	if (p->parent != NULL && (p->flags & MIME_PART_MESSAGE_HEADER)) {
		struct header_scan hs = { false };
		scan_header(me, p->header_offset, p->header_size, header_field, &hs);
	}
	if (p->flags & (MIME_PART_MULTIPART | MIME_PART_MESSAGE)) {
		for (const struct mime_part *c = p->children; c != NULL; c = c->next)
			body_part(ts, c);
		return;
	}
	/* A leaf: only text/ and message/ bodies are searched. RFC 9051 6.4.4
	 * says "contains the specified string in the body" and nothing of MIME;
	 * Dovecot (lib-mail/message-search.c, content_type_text) and Cyrus
	 * search text parts only, and a word "found" in the decoded bytes of a
	 * PDF or a JPEG is noise that costs most of the time on real mail. */
	if (strcasecmp(p->type, "text") != 0 && strcasecmp(p->type, "message") != 0)
		return;
	enum mime_cte cte = p->cte == MIME_CTE_BASE64 || p->cte == MIME_CTE_QP ? p->cte : MIME_CTE_8BIT;
	struct mime_decoder *d = mime_decoder_new(cte);
	if (d == NULL)
		return;
	char csbuf[48];
	ts->charset = part_charset(me, p, csbuf, sizeof(csbuf));
	ts->len = 0;
	buf_truncate(&ts->tail, 0);
	uint64_t pos = p->body_offset, end = p->body_offset + p->body_size;
	bool stop = false;
	while (pos < end && !stop) {
		size_t want = end - pos < READ_CHUNK ? (size_t)(end - pos) : READ_CHUNK;
		ssize_t n = pread_full(me->fd, me->buf, want, pos);
		if (n <= 0)
			break;
		if (mime_decoder_feed(d, me->buf, (size_t)n, sink_out, ts) < 0)
			stop = true;
		pos += (uint64_t)n;
	}
	if (!stop)
		mime_decoder_finish(d, sink_out, ts);
	mime_decoder_free(&d);
	if (ts->left > 0)
		sink_flush(ts, true);
	ts->len = 0;
}

static void ev_body(struct msgeval *me)
{
	if (me->body_done)
		return;
	me->body_done = true;
	struct search *se = me->se;
	/* TEXT includes the header */
	for (int id = 0; id < se->nnodes; id++)
		if (se->nodes[id].type == N_TEXT) {
			ev_header(me);
			break;
		}
	if (ev_open(me) < 0 || ev_tree(me) < 0)
		return;
	struct textsink ts = { .me = me, .tail = BUF_INIT, .hay = BUF_INIT };
	for (int id = 0; id < se->nnodes; id++) {
		const struct node *n = &se->nodes[id];
		if ((n->type == N_BODY || n->type == N_TEXT) && !me->match[n->textidx])
			ts.left++;
	}
	if (ts.left == 0)
		return;
	ts.acc = malloc(TEXT_CHUNK);
	if (ts.acc == NULL)
		return;
	const struct mime_part *root = me->tree->root;
	/* the root's header is not body: start at its content */
	if (root->flags & (MIME_PART_MULTIPART | MIME_PART_MESSAGE)) {
		for (const struct mime_part *c = root->children; c != NULL; c = c->next)
			body_part(&ts, c);
	} else {
		struct mime_part leaf = *root;
		leaf.parent = NULL;
		leaf.flags &= ~MIME_PART_MESSAGE_HEADER;
		body_part(&ts, &leaf);
	}
	free(ts.acc);
	buf_free(&ts.tail);
	buf_free(&ts.hay);
}

/* ---- evaluation ----------------------------------------------------------------- */

/* The message's flags, with IMAP_FLAG_RECENT when the node asks for it. */
static uint32_t msg_flags(const struct msgeval *me, const struct node *n)
{
	uint32_t f = me->m->flags;
	if (n->num & IMAP_FLAG_RECENT)
		f |= imap_view_recent(me->se->s, me->m->uid);
	return f;
}

static bool eval(struct msgeval *me, int id)
{
	struct search *se = me->se;
	const struct node *n = &se->nodes[id];
	const struct store_msg *m = me->m;
	switch (n->type) {
	case N_ALL: return true;
	case N_NONE: return false;
	case N_AND:
		for (int c = n->first; c >= 0; c = se->nodes[c].next)
			if (!eval(me, c))
				return false;
		return true;
	case N_OR:
		for (int c = n->first; c >= 0; c = se->nodes[c].next)
			if (eval(me, c))
				return true;
		return false;
	case N_NOT: return !eval(me, n->first);
	case N_FLAGS_SET: return (msg_flags(me, n) & n->num) == n->num;
	case N_FLAGS_UNSET: return (msg_flags(me, n) & n->num) == 0;
	case N_KEYWORD: return n->kw >= 0 && (m->keywords & (1u << n->kw));
	case N_UNKEYWORD: return n->kw < 0 || !(m->keywords & (1u << n->kw));
	case N_LARGER: return m->size > n->num;
	case N_SMALLER: return m->size < n->num;
	case N_BEFORE: return internal_day(m->internaldate) < (int64_t)n->num;
	case N_ON: return internal_day(m->internaldate) == (int64_t)n->num;
	case N_SINCE: return internal_day(m->internaldate) >= (int64_t)n->num;
	case N_SENTBEFORE:
	case N_SENTON:
	case N_SENTSINCE: {
		ev_header(me);
		int64_t day = me->sent_day != INT64_MIN ? me->sent_day : internal_day(m->internaldate);
		if (n->type == N_SENTBEFORE)
			return day < (int64_t)n->num;
		if (n->type == N_SENTON)
			return day == (int64_t)n->num;
		return day >= (int64_t)n->num;
	}
	case N_HEADER:
		ev_header(me);
		return me->match[n->textidx];
	case N_BODY:
	case N_TEXT:
		if (!me->match[n->textidx])
			ev_body(me);
		return me->match[n->textidx];
	case N_UIDS: {
		size_t lo = 0, hi = n->nuids;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (n->uids[mid] == m->uid)
				return true;
			if (n->uids[mid] < m->uid)
				lo = mid + 1;
			else
				hi = mid;
		}
		return false;
	}
	case N_MODSEQ: return m->modseq >= n->num;
	case N_SAVEDBEFORE:
	case N_SAVEDON:
	case N_SAVEDSINCE: {
		int64_t day = internal_day(me->savedate > 0 ? me->savedate : m->internaldate);
		if (n->type == N_SAVEDBEFORE)
			return day < (int64_t)n->num;
		if (n->type == N_SAVEDON)
			return day == (int64_t)n->num;
		return day >= (int64_t)n->num;
	}
	case N_EMAILID: return me->emailid != NULL && strcmp(me->emailid, n->needle) == 0;
	}
	return false;
}

/* ---- the command ----------------------------------------------------------------- */

struct result {
	uint32_t *uids; /* ascending */
	uint64_t *modseqs;
	size_t n;
};

/* What a row's file name says (need_name), beside rows. */
struct row_name {
	int64_t savedate;
	char emailid[STORE_OBJECTID_SIZE];
};

struct run_ctx {
	struct search *se;
	struct store_msg *rows;
	struct row_name *names; /* BATCH long when need_name */
	size_t nrows;
	const uint32_t *want; /* view UIDs of this batch */
	size_t nwant;
};

static int collect(void *ctx, const struct store_msg *m)
{
	struct run_ctx *rc = ctx;
	size_t lo = 0, hi = rc->nwant;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (rc->want[mid] == m->uid) {
			rc->rows[rc->nrows] = *m;
			rc->rows[rc->nrows].fname = NULL;
			if (rc->names != NULL) {
				struct row_name *rn = &rc->names[rc->nrows];
				rn->savedate = store_message_savedate(m->fname);
				if (store_message_emailid(rc->se->s->view->mbox, m->fname, rn->emailid) < 0)
					rn->emailid[0] = '\0';
			}
			rc->nrows++;
			return rc->nrows >= BATCH;
		}
		if (rc->want[mid] < m->uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

static int run_search(struct search *se, struct result *res, struct error *err)
{
	struct imap_view *v = se->s->view;
	struct run_ctx rc = { .se = se };
	int ret = -1;
	char *buf = malloc(READ_CHUNK);
	uint8_t *match = calloc((size_t)se->ntext + 1, 1);
	rc.rows = malloc(BATCH * sizeof(*rc.rows));
	if (se->need_name)
		rc.names = malloc(BATCH * sizeof(*rc.names));
	res->uids = malloc((v->n ? v->n : 1) * sizeof(*res->uids));
	res->modseqs = malloc((v->n ? v->n : 1) * sizeof(*res->modseqs));
	res->n = 0;
	if (buf == NULL || match == NULL || rc.rows == NULL || res->uids == NULL ||
	    res->modseqs == NULL || (se->need_name && rc.names == NULL)) {
		err->code = ERR_TEMP;
		strcpy(err->text, "out of memory");
		goto out;
	}
	for (size_t pos = 0; pos < v->n;) {
		size_t k = v->n - pos < BATCH ? v->n - pos : BATCH;
		rc.want = v->uids + pos;
		rc.nwant = k;
		rc.nrows = 0;
		if (store_mailbox_messages(v->mbox, v->uids[pos], v->uids[pos + k - 1], collect, &rc,
					   err) < 0)
			goto out;
		pos += k;
		for (size_t r = 0; r < rc.nrows; r++) {
			struct msgeval me = { .se = se, .m = &rc.rows[r], .fd = -1,
					      .sent_day = INT64_MIN, .match = match, .buf = buf };
			memset(match, 0, (size_t)se->ntext + 1);
			if (rc.names != NULL) {
				me.savedate = rc.names[r].savedate;
				me.emailid = rc.names[r].emailid;
			}
			bool hit = eval(&me, se->root);
			if (me.fd >= 0)
				close(me.fd);
			mime_tree_free(&me.tree);
			if (hit && !me.gone) {
				res->uids[res->n] = rc.rows[r].uid;
				res->modseqs[res->n] = rc.rows[r].modseq;
				res->n++;
			}
		}
	}
	ret = 0;
out:
	free(buf);
	free(match);
	free(rc.rows);
	free(rc.names);
	return ret;
}

#define RET_MIN 0x01
#define RET_MAX 0x02
#define RET_COUNT 0x04
#define RET_ALL 0x08
#define RET_SAVE 0x10
#define RET_PARTIAL 0x20 /* RFC 9394 */

static int parse_return(const struct imap_arg *a, unsigned *ret_r, struct imap_partial *partial)
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
		else if (imap_parser_arg_atom_eq(o, "SAVE"))
			r |= RET_SAVE;
		else if (imap_parser_arg_atom_eq(o, "PARTIAL") && i + 1 < a->count &&
			 !(r & RET_PARTIAL) && imap_arg_partial(&a->list[i + 1], partial) == 0) {
			r |= RET_PARTIAL;
			i++;
		} else
			return -1;
	}
	/* RFC 9394 3.1: PARTIAL and ALL are mutually exclusive */
	if ((r & RET_PARTIAL) && (r & RET_ALL))
		return -1;
	/* RFC 4731 3.1: RETURN () means RETURN (ALL) */
	*ret_r = r == 0 ? RET_ALL : r;
	return 0;
}

static void free_nodes(struct search *se)
{
	for (int i = 0; i < se->nnodes; i++) {
		free(se->nodes[i].field);
		free(se->nodes[i].needle);
		free(se->nodes[i].uids);
	}
	free(se->nodes);
}

static void save_result(struct imap_session *s, const uint32_t *uids, size_t n)
{
	free(s->saved);
	s->saved = NULL;
	s->nsaved = 0;
	s->saved_valid = true;
	if (n == 0)
		return;
	s->saved = malloc(n * sizeof(*s->saved));
	if (s->saved == NULL) {
		s->saved_valid = false;
		return;
	}
	memcpy(s->saved, uids, n * sizeof(*s->saved));
	s->nsaved = n;
}

/* The number a response shows for uid: itself, or its sequence number. */
static uint32_t shown(const struct imap_session *s, bool uid, uint32_t u)
{
	return uid ? u : imap_view_seq(s->view, u);
}

/* " PARTIAL (range set)" or " PARTIAL (range NIL)" (RFC 9394 3.1): the
 * results at the positions of the range, in ascending order. */
static void partial_results(struct imap_session *s, const struct imap_command *cmd,
			    const struct result *res, const struct imap_partial *partial,
			    struct buf *b)
{
	size_t first, count;
	imap_partial_slice(partial, res->n, &first, &count);
	buf_printf(b, " PARTIAL (%s ", partial->text);
	if (count == 0) {
		buf_puts(b, "NIL)");
		return;
	}
	uint32_t *nums = malloc(count * sizeof(*nums));
	if (nums == NULL) {
		b->failed = 1;
		return;
	}
	for (size_t i = 0; i < count; i++)
		nums[i] = shown(s, cmd->uid, res->uids[first + i]);
	imap_seqset_format_uids(nums, count, b);
	buf_puts(b, ")");
	free(nums);
}

static void send_results(struct imap_session *s, const struct imap_command *cmd,
			 const struct result *res, unsigned ret, bool esearch, bool has_modseq,
			 const struct imap_partial *partial)
{
	struct buf b = BUF_INIT;
	uint64_t top = 0;
	if (!esearch) {
		/* RFC 9051 7.3.4 (rev1 form), RFC 7162 3.1.5 for MODSEQ */
		buf_puts(&b, "* SEARCH");
		for (size_t i = 0; i < res->n; i++) {
			buf_printf(&b, " %u", shown(s, cmd->uid, res->uids[i]));
			if (res->modseqs[i] > top)
				top = res->modseqs[i];
		}
		if (has_modseq && res->n > 0)
			buf_printf(&b, " (MODSEQ %" PRIu64 ")", top);
		buf_puts(&b, "\r\n");
	} else {
		/* RFC 4731 3.1: SAVE alone answers nothing (RFC 5182 2.4 too) */
		if ((ret & ~RET_SAVE) == 0)
			return;
		buf_printf(&b, "* ESEARCH (TAG \"%s\")", cmd->tag);
		if (cmd->uid)
			buf_puts(&b, " UID");
		if (res->n > 0 && (ret & RET_MIN))
			buf_printf(&b, " MIN %u", shown(s, cmd->uid, res->uids[0]));
		if (res->n > 0 && (ret & RET_MAX))
			buf_printf(&b, " MAX %u", shown(s, cmd->uid, res->uids[res->n - 1]));
		if (ret & RET_COUNT)
			buf_printf(&b, " COUNT %zu", res->n);
		if (res->n > 0 && (ret & RET_ALL)) {
			uint32_t *nums = malloc(res->n * sizeof(*nums));
			if (nums == NULL) {
				b.failed = 1;
			} else {
				for (size_t i = 0; i < res->n; i++)
					nums[i] = shown(s, cmd->uid, res->uids[i]);
				buf_puts(&b, " ALL ");
				imap_seqset_format_uids(nums, res->n, &b);
				free(nums);
			}
		}
		if (ret & RET_PARTIAL)
			partial_results(s, cmd, res, partial, &b);
		if (has_modseq && res->n > 0) {
			/* RFC 7162 3.1.5 / RFC 4731: the highest modseq of the
			 * messages returned */
			if (ret & (RET_ALL | RET_COUNT | RET_PARTIAL)) {
				for (size_t i = 0; i < res->n; i++)
					if (res->modseqs[i] > top)
						top = res->modseqs[i];
			} else {
				if (ret & RET_MIN)
					top = res->modseqs[0];
				if ((ret & RET_MAX) && res->modseqs[res->n - 1] > top)
					top = res->modseqs[res->n - 1];
			}
			buf_printf(&b, " MODSEQ %" PRIu64, top);
		}
		buf_puts(&b, "\r\n");
	}
	if (!b.failed)
		imap_send_raw(s, b.data, b.len);
	buf_free(&b);
}

static int cmd_search(struct imap_session *s, const struct imap_command *cmd)
{
	struct search se = { .s = s, .cmd = cmd, .root = -1 };
	struct error err;
	struct result res = { 0 };
	unsigned ret = 0;
	struct imap_partial partial = { 0 };
	bool have_return = false;
	size_t i = 0;

	/* search = "SEARCH" [search-return-opts] SP search-program (RFC 9051 9) */
	if (i < cmd->argc && imap_parser_arg_atom_eq(&cmd->args[i], "RETURN")) {
		if (i + 1 >= cmd->argc || parse_return(&cmd->args[i + 1], &ret, &partial) < 0) {
			imap_send_tagged(s, cmd, "BAD", "Invalid RETURN options");
			return 0;
		}
		have_return = true;
		i += 2;
	}
	if (i < cmd->argc && imap_parser_arg_atom_eq(&cmd->args[i], "CHARSET")) {
		const char *cs;
		size_t cl;
		if (i + 1 >= cmd->argc || !imap_parser_arg_astring(&cmd->args[i + 1], &cs, &cl)) {
			imap_send_tagged(s, cmd, "BAD", "CHARSET needs a charset name");
			return 0;
		}
		if (strcasecmp(cs, "UTF-8") != 0 && strcasecmp(cs, "US-ASCII") != 0) {
			/* RFC 9051 6.4.4: NO [BADCHARSET (...)] */
			if (ret & RET_SAVE)
				save_result(s, NULL, 0);
			imap_send_tagged(s, cmd, "NO", "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
			return 0;
		}
		i += 2;
	}
	if (i >= cmd->argc) {
		imap_send_tagged(s, cmd, "BAD", "SEARCH needs a search key");
		return 0;
	}
	se.nodes = malloc(MAX_NODES * sizeof(*se.nodes));
	if (se.nodes == NULL) {
		imap_send_tagged(s, cmd, "NO", "[SERVERBUG] Out of memory");
		return 0;
	}
	se.root = parse_list(&se, cmd->args + i, cmd->argc - i, 0);
	if (se.root < 0) {
		if (!se.replied)
			imap_send_tagged(s, cmd, "BAD", "%s", se.error ? se.error : "Invalid search");
		free_nodes(&se);
		return 0;
	}
	order(&se, se.root);
	/* RFC 7162 3.1: a MODSEQ criterion is CONDSTORE-enabling */
	if (se.has_modseq)
		imap_view_enable_condstore(s);
	if (run_search(&se, &res, &err) < 0) {
		free_nodes(&se);
		free(res.uids);
		free(res.modseqs);
		if (ret & RET_SAVE) /* RFC 5182 2.1: a failed SAVE leaves $ empty */
			save_result(s, NULL, 0);
		imap_send_store_error(s, cmd, &err);
		return 0;
	}
	free_nodes(&se);
	if (ret & RET_SAVE) {
		/* RFC 5182 2.4: with MIN and/or MAX but neither ALL nor COUNT,
		 * only what they return is saved */
		if ((ret & (RET_MIN | RET_MAX)) && !(ret & (RET_ALL | RET_COUNT)) && res.n > 0) {
			uint32_t mm[2];
			size_t k = 0;
			if (ret & RET_MIN)
				mm[k++] = res.uids[0];
			if ((ret & RET_MAX) && (k == 0 || res.uids[res.n - 1] != mm[0]))
				mm[k++] = res.uids[res.n - 1];
			save_result(s, mm, k);
		} else if ((ret & RET_PARTIAL) && !(ret & (RET_COUNT | RET_MIN | RET_MAX))) {
			/* As RFC 5182 2.4 for MIN/MAX: what PARTIAL returns
			 * is what SAVE keeps (RFC 9394 3.1 pages a result;
			 * $ then names the page the client got). */
			size_t first, count;
			imap_partial_slice(&partial, res.n, &first, &count);
			save_result(s, res.uids + first, count);
		} else {
			save_result(s, res.uids, res.n);
		}
	}
	/* RFC 9051 7.3.4: IMAP4rev2 always answers ESEARCH (ALL by default) */
	bool esearch = have_return || s->rev2;
	if (!have_return)
		ret = RET_ALL;
	send_results(s, cmd, &res, ret, esearch, se.has_modseq, &partial);
	free(res.uids);
	free(res.modseqs);
	imap_view_sync(s, cmd->uid);
	if (!s->base.closing)
		imap_send_tagged(s, cmd, "OK", "%s completed%s", cmd->uid ? "UID SEARCH" : "Search",
			    (ret & RET_SAVE) ? ", result saved" : "");
	return 0;
}

/* For SORT and THREAD (imap_cmd_sort.c): the same program, parsed and run
 * as SEARCH does it. */
int imap_search_uids(struct imap_session *s, const struct imap_command *cmd,
		     const struct imap_arg *args, size_t argc, uint32_t **uids_r, size_t *n_r)
{
	struct search se = { .s = s, .cmd = cmd, .root = -1 };
	struct result res = { 0 };
	struct error err;
	se.nodes = malloc(MAX_NODES * sizeof(*se.nodes));
	if (se.nodes == NULL) {
		imap_send_tagged(s, cmd, "NO", "[SERVERBUG] Out of memory");
		return -1;
	}
	se.root = parse_list(&se, args, argc, 0);
	if (se.root < 0) {
		if (!se.replied)
			imap_send_tagged(s, cmd, "BAD", "%s", se.error ? se.error : "Invalid search");
		free_nodes(&se);
		return -1;
	}
	order(&se, se.root);
	if (se.has_modseq)
		imap_view_enable_condstore(s);
	int ret = run_search(&se, &res, &err);
	free_nodes(&se);
	free(res.modseqs);
	if (ret < 0) {
		free(res.uids);
		imap_send_store_error(s, cmd, &err);
		return -1;
	}
	*uids_r = res.uids;
	*n_r = res.n;
	return 0;
}

static const struct imap_cmd_def rows[] = {
	{ { "SEARCH", IMAP_IN_SELECTED }, cmd_search, IMAP_CMD_UID | IMAP_CMD_NO_EXPUNGE },
};
const struct imap_cmd_family imap_cmd_search = { rows, sizeof(rows) / sizeof(rows[0]) };
