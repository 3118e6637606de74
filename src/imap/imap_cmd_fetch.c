/*
 * imap_cmd_fetch.c: FETCH and UID FETCH (RFC 9051 6.4.5 and 7.5.2; RFC 3501
 * 6.4.5 for the rev1 items RFC822, RFC822.HEADER, RFC822.TEXT; RFC 3516
 * BINARY; RFC 7162 CONDSTORE MODSEQ / CHANGEDSINCE and QRESYNC VANISHED;
 * RFC 8474 EMAILID and THREADID, RFC 8514 SAVEDATE, RFC 8970 PREVIEW).
 *
 * Design note.
 *
 * Parsing. The command's arguments live in the parser's arena, which is
 * reset as soon as the handler returns; a FETCH may outlive that (see
 * "Backpressure"), so everything is copied into a struct fetch_ctx first:
 * the ascending UID list (imap_arg_uidset), the items (macros expanded,
 * duplicates of simple items dropped, sections parsed with
 * mime_section_parse) and the modifiers. A malformed item is a BAD before
 * any output.
 *
 * Data sources, cheapest first. FLAGS, UID, MODSEQ, INTERNALDATE and the
 * physical size come from the index (store_mailbox_messages, a batch of
 * UIDs per query); EMAILID and SAVEDATE from the file name in that row
 * (store_message_emailid, store_message_savedate). PREVIEW is a cached
 * field like ENVELOPE; PREVIEW (LAZY) takes it only from the cache and
 * answers NIL where it is not there (RFC 8970 3.2), so that a client
 * listing a mailbox whose index was rebuilt does not make the server
 * parse every file; asked without LAZY it is computed and cached. ENVELOPE, BODY, BODYSTRUCTURE and the MIME tree come
 * from the store's parsed-message cache: for a dense batch in one query
 * (store_cache_range), then per message whatever that left out
 * (store_cache_get, which parses the file on a miss and caches the result;
 * this file parses nothing).
 *
 * Body bytes. A section resolves (mime_section_resolve) to byte ranges of
 * the message file. Large plain ranges go out as file segments
 * (conn_send_file on a dup of the message fd: sendfile on plain sockets, no
 * copy); small ones are read and written (a file segment per 40-byte header
 * field would cost more than the copy); ranges whose bare LF must become
 * CRLF are copied through mime_section_copy. The literal announces the
 * exact virtual size, which the tree knows before any byte is read. BINARY
 * is decoded twice: once to count (the literal needs its size, and ~{n}
 * when the content has NUL, RFC 3516 4.2), once to send.
 *
 * Messages that vanish. The view may still hold a message that another
 * session expunged (no EXPUNGE may be sent during FETCH, RFC 9051 7.5.1).
 * Such a message is simply left out of the responses (RFC 9051 7.4.1 allows
 * it); everything a response needs is loaded, and the file opened, before
 * the "* n FETCH (" line starts, so a message never disappears halfway
 * through its response.
 *
 * \Seen. A non-PEEK BODY[], BINARY[] or RFC822/RFC822.TEXT sets \Seen
 * (RFC 9051 6.4.5) unless the mailbox is read-only: done for the whole set
 * up front with store_mailbox_set_flags, and each message whose \Seen the
 * client did not know gets FLAGS (and MODSEQ with CONDSTORE) in its
 * response even if not asked; imap_view_update keeps the later sync from
 * echoing it.
 *
 * Backpressure. The response is a session pump (session.h): fetch_step
 * writes one message per call, and the core calls it only while the
 * connection's output is below CONN_OUTPUT_HIGH, then again from the drained
 * callback once the client has read down to CONN_OUTPUT_LOW. So FETCH 1:*
 * BODY.PEEK[] on a 50,000 message mailbox holds a bounded number of queued
 * file segments (and their fds), not one per message, and no timer polls.
 * If the client goes away meanwhile, the core cancels the pump
 * (fetch_cancel frees the context).
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
#include "session/conn.h"
#include "lib/log.h"
#include "mime/mime.h"

/* Bytes read per pread when copying small ranges. */
#define COPY_CHUNK (64 * 1024)
/* Ranges below this are copied rather than queued as file segments. */
#define SMALL_RANGE (16 * 1024)
/* Items in one FETCH (after macro expansion). */
#define MAX_ITEMS 100
/* UIDs looked up per index query. */
#define BATCH 256

enum item_kind {
	IT_UID,
	IT_FLAGS,
	IT_INTERNALDATE,
	IT_SIZE,
	IT_ENVELOPE,
	IT_BODY,	  /* BODY without section: non-extensible BODYSTRUCTURE */
	IT_BODYSTRUCTURE,
	IT_MODSEQ,
	IT_SECTION,	  /* BODY[...], BODY.PEEK[...], RFC822, RFC822.HEADER, RFC822.TEXT */
	IT_BINARY,	  /* BINARY[...], BINARY.PEEK[...] */
	IT_BINARY_SIZE,
	IT_EMAILID,	  /* RFC 8474 */
	IT_THREADID,
	IT_SAVEDATE,	  /* RFC 8514 */
	IT_PREVIEW,	  /* RFC 8970 */
};

struct fetch_item {
	enum item_kind kind;
	bool peek;
	bool partial;
	uint64_t origin, count;
	char *name; /* response name without <origin>: "BODY[1.MIME]", "RFC822" */
	struct mime_section section;
};

/* One message being answered. */
struct fmsg {
	struct store_msg m; /* m.fname is not kept */
	bool seen_changed;  /* \Seen set by this FETCH: send FLAGS */
	int fd;
	struct store_parsed parsed; /* what the items need of it */
};

/* Cached fields of one message of the batch, read for the whole batch in
 * one index query (next_batch) and handed to fetch_one. */
struct pre_ent {
	uint32_t uid;
	struct store_parsed parsed; /* NULL where not cached */
};

/* What a row's file name says, for the items that need it (next to rows). */
struct row_name {
	char emailid[STORE_OBJECTID_SIZE];
	int64_t savedate;		   /* 0: unknown */
};

struct fetch_ctx {
	struct imap_session *s;
	bool uid_cmd;
	bool need_name;	   /* EMAILID or SAVEDATE: keep what rows' names say */
	bool need_preview; /* PREVIEW without LAZY */
	bool lazy_preview; /* PREVIEW (LAZY) only */
	struct row_name *names; /* BATCH long, beside rows */
	struct fetch_item items[MAX_ITEMS];
	size_t nitems;
	bool want_uid, want_flags, want_modseq;
	bool need_env, need_body, need_bs, need_tree, need_fd;
	bool sets_seen;
	uint64_t changedsince; /* 0: none */
	bool vanished;
	bool has_partial; /* PARTIAL range (RFC 9394 3.2) */
	struct imap_partial partial;
	uint32_t *uids; /* ascending */
	size_t n, pos;
	bool seen_set; /* \Seen was set on the whole set */
	/* batch of index rows for uids[batch_start .. batch_start+batch_n) */
	struct store_msg *rows;
	size_t nrows, row_i;
	struct pre_ent *pre; /* BATCH long, allocated on first use */
	size_t npre, pre_i;
	size_t bstart, bk; /* the batch: uids[bstart .. bstart+bk) */
	char *buf; /* COPY_CHUNK scratch */
	bool failed; /* a fatal condition was answered (tagged already sent) */
};

/* ---- small helpers ---------------------------------------------------------- */

static bool uid_in(const uint32_t *uids, size_t n, uint32_t uid)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (uids[mid] == uid)
			return true;
		if (uids[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

static void fmsg_clear(struct fmsg *fm)
{
	if (fm->fd >= 0)
		close(fm->fd);
	fm->fd = -1;
	store_cache_parsed_clear(&fm->parsed);
}

static void pre_clear(struct fetch_ctx *fc)
{
	for (size_t i = 0; i < fc->npre; i++)
		store_cache_parsed_clear(&fc->pre[i].parsed);
	fc->npre = fc->pre_i = 0;
}

static void ctx_free(struct fetch_ctx *fc)
{
	if (fc == NULL)
		return;
	pre_clear(fc);
	free(fc->pre);
	for (size_t i = 0; i < fc->nitems; i++) {
		free(fc->items[i].name);
		mime_section_clear(&fc->items[i].section);
	}
	free(fc->uids);
	free(fc->rows);
	free(fc->names);
	free(fc->buf);
	free(fc);
}

/* ---- item parsing ------------------------------------------------------------ */

static struct fetch_item *add_item(struct fetch_ctx *fc, enum item_kind kind)
{
	if (kind != IT_SECTION && kind != IT_BINARY && kind != IT_BINARY_SIZE) {
		for (size_t i = 0; i < fc->nitems; i++)
			if (fc->items[i].kind == kind)
				return &fc->items[i]; /* "FLAGS FLAGS": once is enough */
	}
	if (fc->nitems >= MAX_ITEMS)
		return NULL;
	struct fetch_item *it = &fc->items[fc->nitems++];
	memset(it, 0, sizeof(*it));
	it->kind = kind;
	return it;
}

/* Appends the canonical text of a section spec (RFC 9051 9, section-spec)
 * to b: part numbers, upper-cased keyword, header names upper-cased and
 * quoted when they are not atoms. */
static void section_text(struct buf *b, const struct mime_section *sec)
{
	for (unsigned i = 0; i < sec->path_len; i++)
		buf_printf(b, "%s%u", i ? "." : "", sec->path[i]);
	const char *kw = NULL;
	switch (sec->kind) {
	case MIME_SECTION_ALL: break;
	case MIME_SECTION_HEADER: kw = "HEADER"; break;
	case MIME_SECTION_TEXT: kw = "TEXT"; break;
	case MIME_SECTION_MIME: kw = "MIME"; break;
	case MIME_SECTION_HEADER_FIELDS: kw = "HEADER.FIELDS"; break;
	case MIME_SECTION_HEADER_FIELDS_NOT: kw = "HEADER.FIELDS.NOT"; break;
	}
	if (kw == NULL)
		return;
	buf_printf(b, "%s%s", sec->path_len ? "." : "", kw);
	if (sec->kind != MIME_SECTION_HEADER_FIELDS && sec->kind != MIME_SECTION_HEADER_FIELDS_NOT)
		return;
	buf_puts(b, " (");
	for (unsigned i = 0; i < sec->field_count; i++) {
		const char *f = sec->fields[i];
		bool atom = *f != '\0';
		for (const char *p = f; *p && atom; p++)
			if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f ||
			    strchr("(){%*\"\\]", *p) != NULL)
				atom = false;
		if (i)
			buf_putc(b, ' ');
		if (!atom)
			buf_putc(b, '"');
		for (const char *p = f; *p; p++) {
			if (!atom && (*p == '"' || *p == '\\'))
				buf_putc(b, '\\');
			buf_putc(b, (char)toupper((unsigned char)*p));
		}
		if (!atom)
			buf_putc(b, '"');
	}
	buf_putc(b, ')');
}

/* "<origin.count>" (RFC 9051 9: partial = "<" number64 "." nz-number64 ">"). */
static int parse_partial(const char *p, size_t len, uint64_t *origin_r, uint64_t *count_r)
{
	if (len < 5 || p[0] != '<' || p[len - 1] != '>')
		return -1;
	const char *dot = memchr(p, '.', len);
	if (dot == NULL)
		return -1;
	struct imap_arg a = { .type = IMAP_ARG_ATOM };
	uint64_t o, c;
	char tmp[32];
	size_t ol = (size_t)(dot - p - 1), cl = (size_t)(p + len - 1 - dot - 1);
	if (ol == 0 || cl == 0 || ol >= sizeof(tmp) || cl >= sizeof(tmp))
		return -1;
	memcpy(tmp, p + 1, ol);
	tmp[ol] = '\0';
	a.str = tmp;
	a.len = ol;
	if (!imap_parser_arg_number64(&a, &o))
		return -1;
	memcpy(tmp, dot + 1, cl);
	tmp[cl] = '\0';
	a.len = cl;
	if (!imap_parser_arg_number64(&a, &c) || c == 0)
		return -1;
	*origin_r = o;
	*count_r = c;
	return 0;
}

/* BODY[...]<...>, BODY.PEEK[...], BINARY[.PEEK|.SIZE][...]: one atom. */
static int parse_section_item(struct fetch_ctx *fc, const char *str, size_t len, struct error *why)
{
	const char *lb = memchr(str, '[', len);
	size_t plen = (size_t)(lb - str);
	enum item_kind kind;
	bool peek = false;
	const char *rname;
	if (plen == 4 && strncasecmp(str, "BODY", 4) == 0) {
		kind = IT_SECTION;
		rname = "BODY";
	} else if (plen == 9 && strncasecmp(str, "BODY.PEEK", 9) == 0) {
		kind = IT_SECTION;
		peek = true;
		rname = "BODY";
	} else if (plen == 6 && strncasecmp(str, "BINARY", 6) == 0) {
		kind = IT_BINARY;
		rname = "BINARY";
	} else if (plen == 11 && strncasecmp(str, "BINARY.PEEK", 11) == 0) {
		kind = IT_BINARY;
		peek = true;
		rname = "BINARY";
	} else if (plen == 11 && strncasecmp(str, "BINARY.SIZE", 11) == 0) {
		kind = IT_BINARY_SIZE;
		peek = true;
		rname = "BINARY.SIZE";
	} else {
		error_set(why, ERR_INVALID, "Unknown fetch attribute");
		return -1;
	}
	/* the matching ']' (a quoted header name may hold one) */
	const char *p = lb + 1, *end = str + len, *rb = NULL;
	bool q = false;
	for (; p < end; p++) {
		if (q && *p == '\\' && p + 1 < end) {
			p++;
			continue;
		}
		if (*p == '"')
			q = !q;
		else if (!q && *p == ']') {
			rb = p;
			break;
		}
	}
	if (rb == NULL) {
		error_set(why, ERR_INVALID, "Unterminated section");
		return -1;
	}
	struct fetch_item tmp = { .kind = kind, .peek = peek };
	if (mime_section_parse(lb + 1, (size_t)(rb - lb - 1), &tmp.section, why) < 0)
		return -1;
	if (kind != IT_SECTION && tmp.section.kind != MIME_SECTION_ALL) {
		/* RFC 3516: section-binary = "[" [section-part] "]" */
		mime_section_clear(&tmp.section);
		error_set(why, ERR_INVALID, "BINARY takes part numbers only");
		return -1;
	}
	size_t rest = (size_t)(end - rb - 1);
	if (rest > 0) {
		if (kind == IT_BINARY_SIZE ||
		    parse_partial(rb + 1, rest, &tmp.origin, &tmp.count) < 0) {
			mime_section_clear(&tmp.section);
			error_set(why, ERR_INVALID, "Invalid partial");
			return -1;
		}
		tmp.partial = true;
	}
	struct buf b = BUF_INIT;
	buf_printf(&b, "%s[", rname);
	section_text(&b, &tmp.section);
	buf_putc(&b, ']');
	tmp.name = buf_steal(&b);
	struct fetch_item *it = tmp.name != NULL ? add_item(fc, kind) : NULL;
	if (it == NULL) {
		if (tmp.name == NULL)
			error_set(why, ERR_TEMP, "Out of memory");
		else
			error_set(why, ERR_INVALID, "Too many fetch attributes");
		free(tmp.name);
		mime_section_clear(&tmp.section);
		return -1;
	}
	*it = tmp;
	return 0;
}

/* The rev1 items that are sections under another name (RFC 3501 6.4.5). */
static int add_rfc822(struct fetch_ctx *fc, const char *name, enum mime_section_kind kind,
		      bool peek)
{
	struct fetch_item *it = add_item(fc, IT_SECTION);
	if (it == NULL)
		return -1;
	it->peek = peek;
	it->section.kind = kind;
	it->name = strdup(name);
	return it->name != NULL ? 0 : -1;
}

static int parse_one(struct fetch_ctx *fc, const struct imap_arg *a, bool top, struct error *why)
{
	static const struct {
		const char *name;
		enum item_kind kind;
	} simple[] = {
		{ "UID", IT_UID },
		{ "FLAGS", IT_FLAGS },
		{ "INTERNALDATE", IT_INTERNALDATE },
		{ "RFC822.SIZE", IT_SIZE },
		{ "ENVELOPE", IT_ENVELOPE },
		{ "BODY", IT_BODY },
		{ "BODYSTRUCTURE", IT_BODYSTRUCTURE },
		{ "MODSEQ", IT_MODSEQ },
		{ "EMAILID", IT_EMAILID },
		{ "THREADID", IT_THREADID },
		{ "SAVEDATE", IT_SAVEDATE },
		{ "PREVIEW", IT_PREVIEW },
	};
	if (a->type != IMAP_ARG_ATOM) {
		error_set(why, ERR_INVALID, "Invalid fetch attribute");
		return -1;
	}
	if (memchr(a->str, '[', a->len) != NULL)
		return parse_section_item(fc, a->str, a->len, why);
	for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++)
		if (strcasecmp(a->str, simple[i].name) == 0) {
			if (add_item(fc, simple[i].kind) == NULL) {
				error_set(why, ERR_INVALID, "Too many fetch attributes");
				return -1;
			}
			return 0;
		}
	int r = 0;
	if (strcasecmp(a->str, "RFC822") == 0)
		r = add_rfc822(fc, "RFC822", MIME_SECTION_ALL, false);
	else if (strcasecmp(a->str, "RFC822.HEADER") == 0)
		r = add_rfc822(fc, "RFC822.HEADER", MIME_SECTION_HEADER, true);
	else if (strcasecmp(a->str, "RFC822.TEXT") == 0)
		r = add_rfc822(fc, "RFC822.TEXT", MIME_SECTION_TEXT, false);
	else if (top && (strcasecmp(a->str, "ALL") == 0 || strcasecmp(a->str, "FAST") == 0 ||
			 strcasecmp(a->str, "FULL") == 0)) {
		/* RFC 9051 6.4.5: macros, only alone and not in a list */
		bool fast = strcasecmp(a->str, "FAST") == 0, full = strcasecmp(a->str, "FULL") == 0;
		if (add_item(fc, IT_FLAGS) == NULL || add_item(fc, IT_INTERNALDATE) == NULL ||
		    add_item(fc, IT_SIZE) == NULL || (!fast && add_item(fc, IT_ENVELOPE) == NULL) ||
		    (full && add_item(fc, IT_BODY) == NULL))
			r = -1;
	} else {
		error_set(why, ERR_INVALID, "Unknown fetch attribute");
		return -1;
	}
	if (r < 0)
		error_set(why, ERR_INVALID, "Too many fetch attributes");
	return r;
}

/* (CHANGEDSINCE n [VANISHED] [PARTIAL range]) (RFC 7162 3.1.4, 3.2.6,
 * RFC 9394 3.2). */
static int parse_modifiers(struct fetch_ctx *fc, const struct imap_arg *a, struct error *why)
{
	if (a->type != IMAP_ARG_LIST) {
		error_set(why, ERR_INVALID, "Expected fetch modifiers");
		return -1;
	}
	for (size_t i = 0; i < a->count; i++) {
		const struct imap_arg *m = &a->list[i];
		if (imap_parser_arg_atom_eq(m, "CHANGEDSINCE") && i + 1 < a->count) {
			uint64_t v;
			if (!imap_parser_arg_number64(&a->list[i + 1], &v) || v == 0) {
				error_set(why, ERR_INVALID, "CHANGEDSINCE needs a mod-sequence");
				return -1;
			}
			fc->changedsince = v;
			i++;
		} else if (imap_parser_arg_atom_eq(m, "VANISHED")) {
			fc->vanished = true;
		} else if (imap_parser_arg_atom_eq(m, "PARTIAL") && i + 1 < a->count &&
			   !fc->has_partial) {
			if (imap_arg_partial(&a->list[i + 1], &fc->partial) < 0) {
				error_set(why, ERR_INVALID, "PARTIAL needs a range (1:100 or -1:-100)");
				return -1;
			}
			fc->has_partial = true;
			i++;
		} else {
			error_set(why, ERR_INVALID, "Unknown fetch modifier");
			return -1;
		}
	}
	if (fc->vanished && (!fc->uid_cmd || fc->changedsince == 0 || !fc->s->qresync)) {
		/* RFC 7162 3.2.6: UID FETCH only, with CHANGEDSINCE, QRESYNC enabled */
		error_set(why, ERR_INVALID,
			  "VANISHED needs UID FETCH, CHANGEDSINCE and ENABLE QRESYNC");
		return -1;
	}
	return 0;
}

/* RFC 8970 3.2: "PREVIEW" [SP "(" preview-mod *(SP preview-mod) ")"], the
 * only preview-mod being LAZY. 1: a is such a list (taken), 0: it is not. */
static int preview_mods(struct fetch_ctx *fc, const struct imap_arg *a)
{
	if (a->type != IMAP_ARG_LIST || a->count == 0)
		return 0;
	for (size_t i = 0; i < a->count; i++)
		if (!imap_parser_arg_atom_eq(&a->list[i], "LAZY"))
			return 0;
	fc->lazy_preview = true;
	return 1;
}

static bool is_preview(const struct imap_arg *a)
{
	return imap_parser_arg_atom_eq(a, "PREVIEW");
}

static int parse_items(struct fetch_ctx *fc, const struct imap_command *cmd, struct error *why)
{
	if (cmd->argc < 2 || cmd->argc > 3) {
		error_set(why, ERR_INVALID, "FETCH needs a set and attributes");
		return -1;
	}
	const struct imap_arg *a = &cmd->args[1];
	bool plain_preview = false; /* a PREVIEW without LAZY was asked for */
	bool mods_taken = false;
	if (a->type == IMAP_ARG_LIST) {
		if (a->count == 0) {
			error_set(why, ERR_INVALID, "Empty attribute list");
			return -1;
		}
		for (size_t i = 0; i < a->count; i++) {
			if (parse_one(fc, &a->list[i], false, why) < 0)
				return -1;
			if (!is_preview(&a->list[i]))
				continue;
			if (i + 1 < a->count && a->list[i + 1].type == IMAP_ARG_LIST) {
				if (!preview_mods(fc, &a->list[i + 1])) {
					error_set(why, ERR_INVALID, "Unknown PREVIEW modifier");
					return -1;
				}
				i++;
			} else {
				plain_preview = true;
			}
		}
	} else {
		if (parse_one(fc, a, true, why) < 0)
			return -1;
		/* FETCH 1 PREVIEW (LAZY): the list is the item's, not fetch
		 * modifiers (LAZY is none) */
		if (is_preview(a)) {
			mods_taken = cmd->argc == 3 && preview_mods(fc, &cmd->args[2]);
			plain_preview = !mods_taken;
		}
	}
	if (cmd->argc == 3 && !mods_taken && parse_modifiers(fc, &cmd->args[2], why) < 0)
		return -1;
	/* "PREVIEW PREVIEW (LAZY)": one item, computed as the non-lazy one asks */
	fc->need_preview = plain_preview;
	if (plain_preview)
		fc->lazy_preview = false;
	/* RFC 9051 6.4.9: UID FETCH responses always hold UID. RFC 7162
	 * 3.1.4.1: CHANGEDSINCE implies MODSEQ. After ENABLE UIDONLY the
	 * response number is the UID (RFC 9586 3.3): UID only if asked. */
	if (fc->uid_cmd && !fc->s->uidonly) {
		struct fetch_item *u = add_item(fc, IT_UID);
		if (u == NULL) {
			error_set(why, ERR_INVALID, "Too many fetch attributes");
			return -1;
		}
		/* first in the response, where clients look for it */
		size_t at = (size_t)(u - fc->items);
		struct fetch_item tmp = *u;
		memmove(&fc->items[1], &fc->items[0], at * sizeof(fc->items[0]));
		fc->items[0] = tmp;
	}
	if (fc->changedsince != 0 && add_item(fc, IT_MODSEQ) == NULL) {
		error_set(why, ERR_INVALID, "Too many fetch attributes");
		return -1;
	}
	for (size_t i = 0; i < fc->nitems; i++) {
		const struct fetch_item *it = &fc->items[i];
		switch (it->kind) {
		case IT_UID: fc->want_uid = true; break;
		case IT_FLAGS: fc->want_flags = true; break;
		case IT_MODSEQ: fc->want_modseq = true; break;
		case IT_SIZE:
			/* RFC822.SIZE must be the size BODY[] sends: the virtual
			 * size (bare LF counted as CRLF), which only the tree knows
			 * for a file the store did not write itself */
			fc->need_tree = true;
			break;
		case IT_ENVELOPE: fc->need_env = true; break;
		case IT_BODY: fc->need_body = true; break;
		case IT_BODYSTRUCTURE: fc->need_bs = true; break;
		case IT_EMAILID:
		case IT_SAVEDATE: fc->need_name = true; break;
		case IT_SECTION:
		case IT_BINARY:
		case IT_BINARY_SIZE:
			fc->need_tree = fc->need_fd = true;
			if (!it->peek)
				fc->sets_seen = true;
			break;
		default: break;
		}
	}
	return 0;
}

/* ---- message data -------------------------------------------------------------- */

static int fmsg_open(struct fetch_ctx *fc, struct fmsg *fm, struct error *err)
{
	if (fm->fd >= 0)
		return 0;
	uint64_t size;
	return store_message_open(fc->s->view->mbox, fm->m.uid, &fm->fd, &size, err);
}

/* The fields of the parsed message this FETCH needs. */
static unsigned parsed_want(const struct fetch_ctx *fc)
{
	return (fc->need_env ? STORE_PARSED_ENVELOPE : 0) | (fc->need_body ? STORE_PARSED_BODY : 0) |
	       (fc->need_bs ? STORE_PARSED_BODYSTRUCTURE : 0) |
	       (fc->need_tree ? STORE_PARSED_TREE : 0) |
	       (fc->need_preview ? STORE_PARSED_PREVIEW : 0);
}

/* ---- output ------------------------------------------------------------------- */

static int conn_out(void *ctx, const void *data, size_t len)
{
	struct imap_session *s = ctx;
	if (s->base.conn == NULL)
		return -1;
	imap_send_raw(s, data, len);
	return 0;
}

/* Writes the bytes of a (possibly narrowed) section result. */
static int send_ranges(struct fetch_ctx *fc, struct fmsg *fm, const struct mime_section_result *r,
		       struct error *why)
{
	struct imap_session *s = fc->s;
	struct mime_source src = { mime_source_fd_pread, (void *)(intptr_t)fm->fd };
	for (unsigned i = 0; i < r->count; i++) {
		const struct mime_range *g = &r->ranges[i];
		if (g->flags & MIME_RANGE_CRLF) {
			uint64_t o = g->offset < 2 ? g->offset : 2;
			uint64_t k = g->vsize < 2 - o ? g->vsize : 2 - o;
			imap_send_raw(s, &"\r\n"[o], (size_t)k);
		} else if (g->flags & MIME_RANGE_FIX_LF) {
			struct mime_section_result one = { (struct mime_range *)(uintptr_t)g, 1, g->vsize };
			if (mime_section_copy(&one, &src, 0, UINT64_MAX, conn_out, s, why) < 0)
				return -1;
		} else if (g->size < SMALL_RANGE) {
			uint64_t done = 0;
			while (done < g->size) {
				size_t want = g->size - done < COPY_CHUNK ? (size_t)(g->size - done)
									  : COPY_CHUNK;
				ssize_t n = pread(fm->fd, fc->buf, want, (off_t)(g->offset + done));
				if (n < 0 && errno == EINTR)
					continue;
				if (n <= 0) {
					error_set(why, ERR_DATA,
						  "message file shorter than its index");
					return -1;
				}
				imap_send_raw(s, fc->buf, (size_t)n);
				done += (uint64_t)n;
			}
		} else {
			int dfd = dup(fm->fd);
			if (dfd < 0 || conn_send_file(s->base.conn, dfd, (off_t)g->offset, (size_t)g->size) < 0) {
				error_set(why, ERR_TEMP, "cannot queue the message file");
				return -1;
			}
		}
	}
	return 0;
}

/* BODY[section]<partial>: name, " ", then NIL or a literal. */
static int send_section(struct fetch_ctx *fc, struct fmsg *fm, const struct fetch_item *it)
{
	struct imap_session *s = fc->s;
	struct mime_source src = { mime_source_fd_pread, (void *)(intptr_t)fm->fd };
	struct mime_section_result r;
	struct error why;
	imap_send(s, "%s", it->name);
	if (it->partial)
		imap_send(s, "<%" PRIu64 ">", it->origin);
	if (mime_section_resolve(fm->parsed.tree, &it->section, &src, &r, &why) < 0) {
		/* no such part, or HEADER/TEXT of a part that is no message */
		imap_send_raw(s, " NIL", 4);
		return 0;
	}
	uint64_t origin = 0, count = UINT64_MAX;
	bool copy = false;
	if (it->partial) {
		origin = it->origin;
		count = it->count;
		if (mime_section_result_partial(&r, origin, count) < 0)
			copy = true; /* a cut inside a range needing LF conversion */
	}
	uint64_t size = r.vsize;
	if (copy)
		size = origin >= r.vsize ? 0 : (r.vsize - origin < count ? r.vsize - origin : count);
	int ret = 0;
	if (size == 0) {
		imap_send_raw(s, " \"\"", 3);
	} else {
		imap_send(s, " {%" PRIu64 "}\r\n", size);
		if (copy)
			ret = mime_section_copy(&r, &src, origin, count, conn_out, s, &why);
		else
			ret = send_ranges(fc, fm, &r, &why);
		if (ret < 0)
			log_warn("imap %s: FETCH uid %u %s: %s", s->base.id, fm->m.uid, it->name,
				 why.text);
	}
	mime_section_result_free(&r);
	return ret;
}

struct window {
	uint64_t skip, left, total;
	bool nul;
	struct imap_session *s; /* NULL: only count */
};

static int window_out(void *ctx, const void *data, size_t len)
{
	struct window *w = ctx;
	const char *d = data;
	w->total += len;
	if (w->skip >= len) {
		w->skip -= len;
		return 0;
	}
	d += w->skip;
	len -= (size_t)w->skip;
	w->skip = 0;
	if (len > w->left)
		len = (size_t)w->left;
	w->left -= len;
	if (len == 0)
		return 0;
	if (memchr(d, '\0', len) != NULL)
		w->nul = true;
	if (w->s != NULL)
		imap_send_raw(w->s, d, len);
	return 0;
}

/* BINARY[part]<partial> and BINARY.SIZE[part] (RFC 3516 4.2, 4.3).
 *
 * An existing part with no content (an empty body, or the placeholder part
 * of a multipart without parts, see mime_tree_find) is "" and size 0; NIL
 * means "no such part" (RFC 9051 7.5.2). The grammar gives BINARY.SIZE a
 * number only ("BINARY.SIZE" section-binary SP number, RFC 3516 4.3 and
 * RFC 9051 9), never NIL: for a part that does not exist it is 0, the size
 * of the nothing BINARY[part] sends there (Dovecot answers 0 too). */
static int send_binary(struct fetch_ctx *fc, struct fmsg *fm, const struct fetch_item *it)
{
	struct imap_session *s = fc->s;
	struct mime_source src = { mime_source_fd_pread, (void *)(intptr_t)fm->fd };
	struct error why;
	uint64_t size;
	const char *none = it->kind == IT_BINARY_SIZE ? " 0" : " NIL";
	imap_send(s, "%s", it->name);
	if (it->partial)
		imap_send(s, "<%" PRIu64 ">", it->origin);
	if (mime_tree_find(fm->parsed.tree, it->section.path, it->section.path_len) == NULL) {
		imap_send_raw(s, none, strlen(none));
		return 0;
	}
	struct window w = { it->partial ? it->origin : 0, it->partial ? it->count : UINT64_MAX, 0,
			    false, NULL };
	if (mime_section_binary(fm->parsed.tree, it->section.path, it->section.path_len, &src,
				it->kind == IT_BINARY ? window_out : NULL, &w, &size, NULL, &why) < 0) {
		log_warn("imap %s: FETCH uid %u %s: %s", s->base.id, fm->m.uid, it->name, why.text);
		imap_send_raw(s, none, strlen(none));
		return 0;
	}
	if (it->kind == IT_BINARY_SIZE) {
		imap_send(s, " %" PRIu64, size);
		return 0;
	}
	uint64_t sent = (it->partial ? it->count : UINT64_MAX) - w.left;
	if (sent == 0) {
		imap_send_raw(s, " \"\"", 3);
		return 0;
	}
	imap_send(s, " %s{%" PRIu64 "}\r\n", w.nul ? "~" : "", sent);
	struct window w2 = { it->partial ? it->origin : 0, sent, 0, false, s };
	if (mime_section_binary(fm->parsed.tree, it->section.path, it->section.path_len, &src, window_out,
				&w2, &size, NULL, &why) < 0 ||
	    w2.left != 0) {
		log_warn("imap %s: FETCH uid %u %s (second pass): %s", s->base.id, fm->m.uid,
			 it->name, w2.left ? "content changed" : why.text);
		return -1;
	}
	return 0;
}

/* NAME "date-time" (INTERNALDATE; SAVEDATE, RFC 8514 3). */
static void send_date(struct imap_session *s, const char *name, int64_t when)
{
	static const char mon[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t t = (time_t)when;
	struct tm tm;
	if (localtime_r(&t, &tm) == NULL) {
		t = 0;
		gmtime_r(&t, &tm);
	}
	long off = tm.tm_gmtoff / 60;
	char sign = off < 0 ? '-' : '+';
	if (off < 0)
		off = -off;
	/* RFC 9051 9: date-time = DQUOTE date-day-fixed "-" date-month "-"
	 * date-year SP time SP zone DQUOTE; date-day-fixed = (SP DIGIT) / 2DIGIT */
	imap_send(s, "%s \"%2d-%s-%04d %02d:%02d:%02d %c%02ld%02ld\"", name, tm.tm_mday,
		  mon[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, sign, off / 60,
		  off % 60);
}

/* Loads what fm's response needs. 1: send it; 0: the message is gone
 * (skip it); -1: a temporary failure (err). */
static int fmsg_load(struct fetch_ctx *fc, struct fmsg *fm, struct error *err)
{
	int r = 0;
	if (fc->need_fd)
		r = fmsg_open(fc, fm, err);
	if (r == 0)
		r = store_cache_get(fc->s->view->mbox, fm->m.uid, parsed_want(fc), &fm->parsed, err);
	if (r == 0 && fc->lazy_preview && fm->parsed.preview == NULL)
		r = store_cache_get(fc->s->view->mbox, fm->m.uid,
				    STORE_PARSED_PREVIEW | STORE_PARSED_CACHED, &fm->parsed, err);
	if (r < 0)
		return err->code == ERR_NOTFOUND ? 0 : -1;
	return 1;
}

/* A BINARY of a part with an unknown transfer encoding fails the command
 * (RFC 3516 4.2: NO [UNKNOWN-CTE]). Checked before the response starts. */
static bool unknown_cte(const struct fetch_ctx *fc, const struct fmsg *fm)
{
	for (size_t i = 0; i < fc->nitems; i++) {
		const struct fetch_item *it = &fc->items[i];
		if (it->kind != IT_BINARY && it->kind != IT_BINARY_SIZE)
			continue;
		if (it->section.path_len == 0)
			continue;
		const struct mime_part *p =
			mime_tree_find(fm->parsed.tree, it->section.path, it->section.path_len);
		if (p != NULL && !(p->flags & (MIME_PART_MULTIPART | MIME_PART_MESSAGE)) &&
		    p->cte == MIME_CTE_UNKNOWN)
			return true;
	}
	return false;
}

static void pre_take(struct fetch_ctx *fc, struct fmsg *fm);

/* EMAILID, THREADID (RFC 8474 7) and SAVEDATE (RFC 8514 3) of m, a row of
 * fc->rows. THREADID is NIL: this server does not keep threads in a way
 * that gives a thread a stable id (RFC 8474 5.2 allows NIL for a server
 * that does not support threads). SAVEDATE NIL when the file name does not
 * say it (RFC 8514 3: the server does not know). */
static void send_name_item(struct fetch_ctx *fc, const struct store_msg *m, enum item_kind kind)
{
	struct imap_session *s = fc->s;
	if (kind == IT_THREADID) {
		imap_send_raw(s, "THREADID NIL", 12);
		return;
	}
	const struct row_name *rn = &fc->names[m - fc->rows]; /* need_name: allocated */
	if (kind == IT_EMAILID)
		imap_send(s, "EMAILID (%s)", rn->emailid);
	else if (rn->savedate > 0)
		send_date(s, "SAVEDATE", rn->savedate);
	else
		imap_send_raw(s, "SAVEDATE NIL", 12);
}

/* "<pre><n><post>" without printf: FETCH writes these for every message
 * (pre and post are short literals). */
static void send_u32(struct imap_session *s, const char *pre, uint32_t n, const char *post)
{
	char buf[64], digits[10];
	size_t o = strlen(pre), pl = strlen(post);
	int k = 0;
	memcpy(buf, pre, o);
	do {
		digits[k++] = (char)('0' + n % 10);
		n /= 10;
	} while (n != 0);
	while (k > 0)
		buf[o++] = digits[--k];
	memcpy(buf + o, post, pl);
	imap_send_raw(s, buf, o + pl);
}

/* Answers one message. 0: done or skipped; -1: the command ends (tagged
 * reply already sent, or the connection is broken). */
static int fetch_one(struct fetch_ctx *fc, const struct store_msg *m)
{
	struct imap_session *s = fc->s;
	struct fmsg fm = { .m = *m, .fd = -1 };
	struct error err;
	uint32_t seq = imap_view_seq(s->view, m->uid);
	if (seq == 0)
		return 0;
	fm.m.fname = NULL;
	fm.seen_changed = fc->seen_set && (m->flags & STORE_F_SEEN) &&
			  !(s->view->flags[seq - 1] & STORE_F_SEEN);
	pre_take(fc, &fm);
	int r = fmsg_load(fc, &fm, &err);
	if (r < 0) {
		fmsg_clear(&fm);
		imap_send_store_error(s, NULL, &err);
		return -1;
	}
	if (r == 0) {
		fmsg_clear(&fm);
		return 0; /* expunged meanwhile: RFC 9051 allows leaving it out */
	}
	if (fc->need_tree && unknown_cte(fc, &fm)) {
		fmsg_clear(&fm);
		imap_send_tagged(s, NULL, "NO", "[UNKNOWN-CTE] Cannot decode the part's content");
		return -1;
	}
	if (s->uidonly)
		send_u32(s, "* ", m->uid, " UIDFETCH (");
	else
		send_u32(s, "* ", seq, " FETCH (");
	bool first = true;
	bool flags_done = false, modseq_done = false;
	int ret = 0;
	for (size_t i = 0; i < fc->nitems && ret == 0; i++) {
		const struct fetch_item *it = &fc->items[i];
		if (!first)
			imap_send_raw(s, " ", 1);
		first = false;
		switch (it->kind) {
		case IT_UID: send_u32(s, "UID ", m->uid, ""); break;
		case IT_FLAGS:
			imap_send_raw(s, "FLAGS ", 6);
			imap_send_flags(s, m->flags | imap_view_recent(s, m->uid), m->keywords);
			flags_done = true;
			break;
		case IT_INTERNALDATE: send_date(s, "INTERNALDATE", m->internaldate); break;
		case IT_EMAILID:
		case IT_THREADID:
		case IT_SAVEDATE: send_name_item(fc, m, it->kind); break;
		case IT_PREVIEW:
			/* RFC 8970 3: PREVIEW nstring; NIL only for LAZY, not cached */
			imap_send_raw(s, "PREVIEW ", 8);
			if (fm.parsed.preview == NULL)
				imap_send_raw(s, "NIL", 3);
			else
				imap_send_string(s, fm.parsed.preview, fm.parsed.preview_len);
			break;
		case IT_SIZE: imap_send(s, "RFC822.SIZE %" PRIu64, fm.parsed.tree->vsize); break;
		case IT_ENVELOPE:
			imap_send_raw(s, "ENVELOPE ", 9);
			imap_send_raw(s, fm.parsed.envelope, fm.parsed.envelope_len);
			break;
		case IT_BODY:
			imap_send_raw(s, "BODY ", 5);
			imap_send_raw(s, fm.parsed.body, fm.parsed.body_len);
			break;
		case IT_BODYSTRUCTURE:
			imap_send_raw(s, "BODYSTRUCTURE ", 14);
			imap_send_raw(s, fm.parsed.bodystructure, fm.parsed.bodystructure_len);
			break;
		case IT_MODSEQ:
			imap_send(s, "MODSEQ (%" PRIu64 ")", m->modseq);
			modseq_done = true;
			break;
		case IT_SECTION: ret = send_section(fc, &fm, it); break;
		case IT_BINARY:
		case IT_BINARY_SIZE: ret = send_binary(fc, &fm, it); break;
		}
	}
	if (ret == 0 && fm.seen_changed) {
		/* RFC 9051 6.4.5: the \Seen flag set as a side effect is reported */
		if (!flags_done) {
			imap_send_raw(s, " FLAGS ", 7);
			imap_send_flags(s, m->flags | imap_view_recent(s, m->uid), m->keywords);
		}
		if (s->condstore && !modseq_done)
			imap_send(s, " MODSEQ (%" PRIu64 ")", m->modseq);
		flags_done = modseq_done = true;
	}
	if (ret == 0 && flags_done) {
		/* The client now knows these flags: the sync must not repeat
		 * them. Only what was sent is recorded, so a change made
		 * elsewhere that this response did not show is still reported
		 * (and a MODSEQ not shown under CONDSTORE too). */
		uint64_t known = s->view->modseqs[seq - 1];
		imap_view_update(s->view, m->uid, m->flags, m->keywords,
				 modseq_done || !s->condstore ? m->modseq : known);
	}
	fmsg_clear(&fm);
	if (ret < 0) {
		/* A literal was promised and cannot be completed: the stream
		 * cannot be resynchronised. */
		imap_send_raw(s, "\r\n* BYE Internal error reading a message\r\n", 42);
		s->base.closing = true;
		return -1;
	}
	imap_send_raw(s, ")\r\n", 3);
	return 0;
}

/* ---- the command ----------------------------------------------------------------- */

static int collect_row(void *ctx, const struct store_msg *m)
{
	struct fetch_ctx *fc = ctx;
	if (!uid_in(fc->uids + fc->pos, fc->n - fc->pos, m->uid))
		return 0;
	if (fc->changedsince != 0 && m->modseq <= fc->changedsince)
		return 0; /* RFC 7162 3.1.4.1 */
	fc->rows[fc->nrows] = *m;
	fc->rows[fc->nrows].fname = NULL;
	if (fc->need_name) {
		struct row_name *rn = &fc->names[fc->nrows];
		if (store_message_emailid(fc->s->view->mbox, m->fname, rn->emailid) < 0)
			snprintf(rn->emailid, sizeof(rn->emailid), "M%u", m->uid); /* no name: cannot be */
		rn->savedate = store_message_savedate(m->fname);
	}
	fc->nrows++;
	return fc->nrows >= BATCH;
}

static int collect_pre(void *ctx, uint32_t uid, struct store_parsed *parsed)
{
	struct fetch_ctx *fc = ctx;
	if (fc->npre >= BATCH || !uid_in(fc->uids + fc->bstart, fc->bk, uid))
		return 0;
	struct pre_ent *e = &fc->pre[fc->npre++];
	e->uid = uid;
	e->parsed = *parsed; /* taken: the store frees nothing of it */
	memset(parsed, 0, sizeof(*parsed));
	return 0;
}

/* The cached fields this FETCH needs, for the whole batch lo..hi. */
static int prefetch(struct fetch_ctx *fc, uint32_t lo, uint32_t hi, struct error *err)
{
	unsigned want = parsed_want(fc) | (fc->lazy_preview ? STORE_PARSED_PREVIEW : 0);
	if (want == 0)
		return 0;
	if (fc->pre == NULL && (fc->pre = calloc(BATCH, sizeof(*fc->pre))) == NULL)
		return 0; /* no memory for it: fetch_one looks each one up */
	return store_cache_range(fc->s->view->mbox, lo, hi, want, collect_pre, fc, err);
}

/* Hands the prefetched fields of fm's message, if any, over to fm. */
static void pre_take(struct fetch_ctx *fc, struct fmsg *fm)
{
	while (fc->pre_i < fc->npre && fc->pre[fc->pre_i].uid < fm->m.uid)
		fc->pre_i++; /* not answered (expunged meanwhile): pre_clear frees it */
	if (fc->pre_i >= fc->npre || fc->pre[fc->pre_i].uid != fm->m.uid)
		return;
	struct pre_ent *e = &fc->pre[fc->pre_i++];
	fm->parsed = e->parsed;
	memset(&e->parsed, 0, sizeof(e->parsed));
}

/* Loads the index rows of the next batch of UIDs from fc->pos (and, for a
 * dense batch, the cached fields the FETCH needs). */
static int next_batch(struct fetch_ctx *fc, struct error *err)
{
	size_t k = fc->n - fc->pos < BATCH ? fc->n - fc->pos : BATCH;
	uint32_t lo = fc->uids[fc->pos], hi = fc->uids[fc->pos + k - 1];
	fc->nrows = fc->row_i = 0;
	pre_clear(fc);
	fc->bstart = fc->pos;
	fc->bk = k;
	if ((uint64_t)hi - lo + 1 <= 4 * (uint64_t)k) {
		if (store_mailbox_messages(fc->s->view->mbox, lo, hi, collect_row, fc, err) < 0 ||
		    prefetch(fc, lo, hi, err) < 0)
			return -1;
	} else {
		/* a sparse set: one lookup per UID beats walking the gaps */
		for (size_t i = 0; i < k; i++)
			if (store_mailbox_messages(fc->s->view->mbox, fc->uids[fc->pos + i],
						   fc->uids[fc->pos + i], collect_row, fc, err) < 0)
				return -1;
	}
	fc->pos += k;
	return 0;
}

/* Ends the command: the sync and tagged OK when it completed (not after a
 * BYE), and the context. */
static void fetch_finish(struct fetch_ctx *fc, bool ok)
{
	struct imap_session *s = fc->s;
	if (ok) {
		/* RFC 9051 7.5.1: no EXPUNGE during FETCH, but UID FETCH may */
		imap_view_sync(s, fc->uid_cmd);
		if (!s->base.closing)
			imap_send_tagged(s, NULL, "OK", "Fetch completed");
	}
	ctx_free(fc);
}

/* The session core's pump (session_pump): one message per call, called
 * while the client keeps up with the output. */
static int fetch_step(struct session *base, void *arg)
{
	struct fetch_ctx *fc = arg;
	struct imap_session *s = imap_session_of(base);
	struct error err;
	if (s->base.closing) { /* BYE sent (shutdown, or a message unreadable) */
		fetch_finish(fc, false);
		return 1;
	}
	while (fc->row_i >= fc->nrows) {
		if (fc->pos >= fc->n) {
			fetch_finish(fc, true);
			return 1;
		}
		if (next_batch(fc, &err) < 0) {
			imap_send_store_error(s, NULL, &err);
			fetch_finish(fc, false);
			return 1;
		}
	}
	if (fetch_one(fc, &fc->rows[fc->row_i++]) < 0) {
		fetch_finish(fc, false);
		return 1;
	}
	return 0;
}

static void fetch_cancel(void *arg)
{
	ctx_free(arg);
}

/* RFC 7162 3.2.6: VANISHED (EARLIER) for the UIDs of the set that were
 * expunged after CHANGEDSINCE. The set is parsed again because
 * imap_arg_uidset keeps only UIDs that exist. */
struct vanished_ctx {
	struct imap_seqset set;
	const uint32_t *saved;
	size_t nsaved;
	bool searchres;
	struct imap_seqset out;
	bool failed;
};

static int vanished_cb(void *ctx, uint32_t uid, uint64_t modseq)
{
	struct vanished_ctx *vc = ctx;
	(void)modseq;
	bool in = false;
	if (vc->searchres) {
		for (size_t i = 0; i < vc->nsaved && !in; i++)
			in = vc->saved[i] == uid;
	} else {
		in = imap_seqset_contains(&vc->set, uid);
	}
	if (in && imap_seqset_add(&vc->out, uid, uid) < 0)
		vc->failed = true;
	return 0;
}

static int send_vanished(struct fetch_ctx *fc, const struct imap_arg *setarg, struct error *err)
{
	struct imap_session *s = fc->s;
	struct vanished_ctx vc = { .set = IMAP_SEQSET_INIT, .out = IMAP_SEQSET_INIT };
	struct error why;
	struct imap_view *v = s->view;
	uint32_t star = v->n ? v->uids[v->n - 1] : 1;
	if (imap_seqset_parse(setarg->str, setarg->len, star, IMAP_SEQSET_ALLOW_SEARCHRES, &vc.set,
			      &why) < 0)
		return 0; /* imap_arg_uidset accepted it; nothing to add */
	vc.searchres = vc.set.searchres;
	vc.saved = s->saved_valid ? s->saved : NULL;
	vc.nsaved = s->saved_valid ? s->nsaved : 0;
	int r = store_mailbox_expunged_since(v->mbox, fc->changedsince, vanished_cb, &vc, err);
	if (r == 0 && vc.out.count > 0 && !vc.failed) {
		struct buf b = BUF_INIT;
		imap_seqset_format(&vc.out, &b);
		if (!b.failed)
			imap_send(s, "* VANISHED (EARLIER) %s\r\n", buf_cstr(&b));
		buf_free(&b);
	}
	imap_seqset_free(&vc.set);
	imap_seqset_free(&vc.out);
	return r;
}

/* Sets \Seen on the messages of the set (RFC 9051 6.4.5). All of them go
 * to the store, not only those the view thinks unseen: the view may be
 * behind a change made elsewhere, and the store skips messages that need
 * nothing. A response shows FLAGS for each message whose \Seen the client
 * did not know about (fetch_one). */
static int set_seen(struct fetch_ctx *fc, struct error *err)
{
	return store_mailbox_set_flags(fc->s->view->mbox, fc->uids, fc->n, STORE_FLAGS_ADD,
				       STORE_F_SEEN, 0, 0, NULL, NULL, err);
}

/* RFC 9394 3.2: PARTIAL keeps the messages at the range's positions
 * among those the set (and CHANGEDSINCE, by the view's modseqs, which are
 * as current as the FETCH FLAGS this session reports) selects. */
static void apply_partial(struct fetch_ctx *fc)
{
	const struct imap_view *v = fc->s->view;
	size_t n = 0, first, count;
	for (size_t i = 0; i < fc->n; i++) {
		uint32_t seq = imap_view_seq(v, fc->uids[i]);
		if (fc->changedsince == 0 || (seq != 0 && v->modseqs[seq - 1] > fc->changedsince))
			fc->uids[n++] = fc->uids[i];
	}
	imap_partial_slice(&fc->partial, n, &first, &count);
	memmove(fc->uids, fc->uids + first, count * sizeof(*fc->uids));
	fc->n = count;
}

static int cmd_fetch(struct imap_session *s, const struct imap_command *cmd)
{
	struct fetch_ctx *fc = calloc(1, sizeof(*fc));
	struct error why;
	struct error err;
	if (fc == NULL) {
		imap_send_tagged(s, cmd, "NO", "[SERVERBUG] Out of memory");
		return 0;
	}
	fc->s = s;
	fc->uid_cmd = cmd->uid;
	if (parse_items(fc, cmd, &why) < 0) {
		imap_send_tagged(s, cmd, "BAD", "%s", why.text);
		ctx_free(fc);
		return 0;
	}
	if (imap_arg_uidset(s, cmd, &cmd->args[0], cmd->uid, &fc->uids, &fc->n) < 0) {
		ctx_free(fc);
		return 0;
	}
	if (fc->has_partial)
		apply_partial(fc);
	if (imap_arg_limit(s, cmd, &fc->n) < 0) {
		ctx_free(fc);
		return 0;
	}
	fc->rows = malloc(BATCH * sizeof(*fc->rows));
	fc->buf = malloc(COPY_CHUNK);
	if (fc->need_name)
		fc->names = malloc(BATCH * sizeof(*fc->names));
	if (fc->rows == NULL || fc->buf == NULL || (fc->need_name && fc->names == NULL)) {
		imap_send_tagged(s, cmd, "NO", "[SERVERBUG] Out of memory");
		ctx_free(fc);
		return 0;
	}
	/* RFC 7162 3.1: MODSEQ and CHANGEDSINCE are CONDSTORE-enabling */
	if (fc->want_modseq)
		imap_view_enable_condstore(s);
	if (fc->vanished && send_vanished(fc, &cmd->args[0], &err) < 0) {
		imap_send_store_error(s, cmd, &err);
		ctx_free(fc);
		return 0;
	}
	if (fc->sets_seen && !s->view->readonly && fc->n > 0) {
		if (set_seen(fc, &err) < 0) {
			imap_send_store_error(s, cmd, &err);
			ctx_free(fc);
			return 0;
		}
		fc->seen_set = true;
	}
	session_pump(&s->base, fetch_step, fetch_cancel, fc);
	return 0;
}

static const struct imap_cmd_def rows[] = {
	{ { "FETCH", IMAP_IN_SELECTED }, cmd_fetch, IMAP_CMD_UID | IMAP_CMD_NO_EXPUNGE },
};
const struct imap_cmd_family imap_cmd_fetch = { rows, sizeof(rows) / sizeof(rows[0]) };
