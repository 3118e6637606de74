/*
 * import_imap.c: import one user's mail from any IMAP server, online (the
 * imap:// and imaps:// sources of `mailroom import`), in the manner of
 * imapsync: every folder with its UIDVALIDITY and UIDs, flags, keywords and
 * INTERNALDATE, and the subscriptions.
 *
 * Design note. One session, read-only throughout: folders are opened with
 * EXAMINE and bodies fetched with BODY.PEEK[], so the source is never
 * changed (not even \Seen). The steps:
 *
 *   greeting, CAPABILITY; STARTTLS when the connection is not TLS and the
 *   server offers it (a password is never sent in clear to a host that is
 *   not loopback); LOGIN, or AUTHENTICATE PLAIN when LOGINDISABLED or the
 *   password cannot be quoted; ENABLE UTF8=ACCEPT when offered; NAMESPACE
 *   (the personal prefix, such as Courier's "INBOX.", is dropped from names);
 *   LIST "" "*" (RETURN (SPECIAL-USE) when offered); LSUB "" "*";
 *   then per selectable folder:
 *     EXAMINE                -> UIDVALIDITY, UIDNEXT -> folder_begin
 *     UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE)
 *     UID FETCH <batch> (UID BODY.PEEK[]) for the UIDs the sink lacks
 *                               (has_uid), each body streamed to msg_*
 *     folder_end.
 *
 * Names: the server's hierarchy delimiter becomes '/', modified UTF-7
 * becomes UTF-8 (or the name is UTF-8 already under UTF8=ACCEPT). A folder
 * whose name holds '/' while the server's delimiter is another character
 * cannot keep its name and is skipped with that reason.
 *
 * Re-runs and interruptions: UIDs are kept, and the sink answers has_uid, so
 * a second run fetches only what is missing. A body is streamed straight
 * from the socket to the sink in pieces (the response parser hands literal
 * bytes on, imapc_resp.h), so memory stays bounded for any message size.
 * When the connection breaks in the middle of a body, import_imap returns
 * -1 without msg_end: the sink drops the unfinished message.
 *
 * Errors: cannot connect, TLS refused, login refused -> -1 (login refused
 * with bad credentials is ERR_INVALID and says so; a server that is
 * unavailable is ERR_TEMP). A folder that cannot be opened, or a message
 * that cannot be fetched (after a retry on its own), is reported through
 * skip() and the import goes on.
 */
#include "import/import.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "import/imapc_conn.h"
#include "imap/imap_utf7.h"
#include "lib/base64.h"
#include "lib/buf.h"
#include "store/store.h"

#define BATCH_UIDS 50
#define BATCH_BYTES (16u << 20)

struct folder {
	char *raw;  /* the name as the server spells it (for EXAMINE) */
	char *name; /* mailroom's: UTF-8, '/' between levels */
	const char *special_use;
};

struct msg {
	uint32_t uid;	 /* 0: not known (yet) */
	uint32_t flags;	 /* STORE_F_* */
	int64_t date;	 /* INTERNALDATE; -1 unknown */
	uint64_t size;	 /* RFC822.SIZE */
	uint32_t kw_off; /* keywords: NUL-separated in imp->kw */
	uint32_t nkw;
	int want;	 /* to be fetched in this run */
	int done;	 /* its body went to the sink */
};

struct imp {
	const struct import_imap_source *src;
	const struct import_sink *sink;
	struct error *err; /* connection and protocol errors */
	int stopped;	   /* a callback failed: stop_err says why */
	struct imapc_conn *c;
	struct buf caps;  /* " CAP1 CAP2 ... " in upper case */
	int utf8;
	char *ns_prefix;
	struct folder *folders;
	size_t nfolders;
	/* the folder being imported */
	const struct folder *cur;
	uint32_t uidvalidity, uidnext, exists;
	struct msg *msgs; /* by sequence number - 1 */
	size_t nmsgs;
	size_t hint;
	struct buf kw;
	size_t msgcap;
	struct msg *streaming; /* the message whose body is coming */
	int discarding;
	const char **kwptrs;   /* its keywords, for import_msg */
	char id[STORE_MAX_MAILBOX_NAME + 32];
	struct error stop_err; /* why a callback stopped the import (stopped) */
	uint64_t nimported, nskipped;
};

/* ---- small helpers -------------------------------------------------------- */

static void caps_set(struct imp *imp, const struct imapc_resp *r, size_t from, size_t to)
{
	buf_truncate(&imp->caps, 0);
	buf_putc(&imp->caps, ' ');
	for (size_t i = from; i < to; i++) {
		const char *s = imapc_resp_str(r, i);
		for (; *s; s++)
			buf_putc(&imp->caps, (char)((*s >= 'a' && *s <= 'z') ? *s - 32 : *s));
		buf_putc(&imp->caps, ' ');
	}
}

static int has_cap(const struct imp *imp, const char *cap)
{
	char pat[64];
	snprintf(pat, sizeof(pat), " %s ", cap);
	return imp->caps.len > 0 && strstr(imp->caps.data, pat) != NULL;
}

/* A status response with [CAPABILITY ...] (greeting, LOGIN's OK). */
static void caps_from_code(struct imp *imp, const struct imapc_resp *r)
{
	const struct imapc_tok *t = imapc_resp_tok(r, 1);
	if (t != NULL && t->type == IMAPC_TOK_CODE && imapc_resp_is(r, 2, "CAPABILITY"))
		caps_set(imp, r, 3, t->end);
}

static int on_capability(void *ctx, const struct imapc_resp *r)
{
	struct imp *imp = ctx;
	if (imapc_resp_is(r, 0, "CAPABILITY"))
		caps_set(imp, r, 1, imapc_resp_ntok(r));
	else if (imapc_resp_is(r, 0, "OK"))
		caps_from_code(imp, r);
	return 0;
}

static int run(struct imp *imp, const char *text, imapc_untagged_fn *fn)
{
	return imapc_conn_cmd(imp->c, text, NULL, fn, imp, imp->err);
}

static void skip(struct imp *imp, const char *what, const char *reason)
{
	imp->nskipped++;
	if (imp->sink->skip != NULL)
		imp->sink->skip(imp->sink->ctx, what, reason);
}

/* ---- INTERNALDATE ----------------------------------------------------------- */

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char *s, int n, int *v)
{
	*v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		*v = *v * 10 + (s[i] - '0');
	}
	return 0;
}

/* RFC 3501 date-time: "17-Jul-1996 02:44:25 -0700" (day may be " 7" or
 * "7"). Returns seconds since the epoch, or -1. */
static int64_t parse_date(const char *s)
{
	static const char months[] = "janfebmaraprmayjunjulaugsepoctnovdec";
	int day, year, hh, mm, ss, zh, zm;
	if (*s == ' ')
		s++;
	size_t dl = (s[1] == '-') ? 1 : 2;
	if (digits(s, (int)dl, &day) < 0 || s[dl] != '-')
		return -1;
	s += dl + 1;
	int mon = -1;
	for (int i = 0; i < 12 && s[0] && s[1] && s[2]; i++)
		if (strncasecmp(s, months + 3 * i, 3) == 0)
			mon = i + 1;
	if (mon < 0 || s[3] != '-' || digits(s + 4, 4, &year) < 0 || s[8] != ' ')
		return -1;
	s += 9;
	if (digits(s, 2, &hh) < 0 || s[2] != ':' || digits(s + 3, 2, &mm) < 0 || s[5] != ':' ||
	    digits(s + 6, 2, &ss) < 0 || s[8] != ' ')
		return -1;
	s += 9;
	if ((s[0] != '+' && s[0] != '-') || digits(s + 1, 2, &zh) < 0 || digits(s + 3, 2, &zm) < 0 ||
	    s[5] != '\0')
		return -1;
	if (day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60 || zm > 59)
		return -1;
	int64_t t = days_from_civil(year, (unsigned)mon, (unsigned)day) * 86400 + hh * 3600 + mm * 60 + ss;
	int64_t zone = (zh * 3600 + zm * 60) * (s[0] == '-' ? -1 : 1);
	return t - zone;
}

/* ---- connecting and logging in ---------------------------------------------- */

static int greet(struct imp *imp, int *preauth_r)
{
	if (imapc_conn_read(imp->c, imp->err) < 0)
		return -1;
	const struct imapc_resp *r = imapc_conn_resp(imp->c);
	if (strcmp(imapc_resp_tag(r), "*") != 0 ||
	    !(imapc_resp_is(r, 0, "OK") || imapc_resp_is(r, 0, "PREAUTH"))) {
		error_set(imp->err, ERR_TEMP, "IMAP server %s does not greet us: %s", imp->src->host,
			  imapc_conn_reply_text(imp->c));
		return -1;
	}
	*preauth_r = imapc_resp_is(r, 0, "PREAUTH");
	caps_from_code(imp, r);
	if (imp->caps.len == 0 && run(imp, "CAPABILITY", on_capability) != IMAPC_OK)
		goto fail;
	return 0;
fail:
	if (imp->err->code == ERR_OK)
		error_set(imp->err, ERR_TEMP, "IMAP server %s: CAPABILITY failed", imp->src->host);
	return -1;
}

/* STARTTLS when offered; no password in clear beyond loopback. */
static int secure(struct imp *imp)
{
	if (imapc_conn_is_tls(imp->c))
		return 0;
	if (has_cap(imp, "STARTTLS")) {
		int st = run(imp, "STARTTLS", NULL);
		if (st < 0)
			return -1;
		if (st != IMAPC_OK) {
			error_set(imp->err, ERR_TEMP, "IMAP server %s refused STARTTLS: %s", imp->src->host,
				  imapc_conn_reply_text(imp->c));
			return -1;
		}
		if (imapc_conn_starttls(imp->c, imp->err) < 0)
			return -1;
		buf_truncate(&imp->caps, 0); /* RFC 3501 6.2.1: forget what was said in clear */
		if (run(imp, "CAPABILITY", on_capability) != IMAPC_OK) {
			if (imp->err->code == ERR_OK)
				error_set(imp->err, ERR_TEMP, "IMAP server %s: CAPABILITY failed", imp->src->host);
			return -1;
		}
		return 0;
	}
	if (!imapc_conn_is_loopback(imp->c)) {
		error_set(imp->err, ERR_INVALID,
			  "IMAP server %s offers no STARTTLS: refusing to send the password in clear "
			  "(use imaps://)",
			  imp->src->host);
		return -1;
	}
	return 0;
}

static int needs_literal(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80 || *s == '\r' || *s == '\n')
			return 1;
	return 0;
}

/* Why the server refused: RFC 5530's codes tell bad credentials (permanent)
 * from a server that is down for now (temporary). */
static void login_refused(struct imp *imp, int status)
{
	const char *code = imapc_conn_reply_code(imp->c);
	int temp = status == IMAPC_NO &&
		   (strcasecmp(code, "UNAVAILABLE") == 0 || strcasecmp(code, "SERVERBUG") == 0 ||
		    strcasecmp(code, "INUSE") == 0 || strcasecmp(code, "LIMIT") == 0);
	if (temp)
		error_set(imp->err, ERR_TEMP, "IMAP server %s cannot log %s in now: %s", imp->src->host,
			  imp->src->login, imapc_conn_reply_text(imp->c));
	else
		error_set(imp->err, ERR_INVALID,
			  "IMAP server %s refused the login of %s: wrong user name or password (server "
			  "said: %s)",
			  imp->src->host, imp->src->login, imapc_conn_reply_text(imp->c));
}

static int login(struct imp *imp)
{
	const char *user = imp->src->login, *pass = imp->src->password ? imp->src->password : "";
	struct buf cmd = BUF_INIT, cont = BUF_INIT;
	int plain = has_cap(imp, "LOGINDISABLED") || needs_literal(user) || needs_literal(pass);
	if (plain && !has_cap(imp, "AUTH=PLAIN")) {
		error_set(imp->err, ERR_INVALID, "IMAP server %s allows no LOGIN%s and no AUTHENTICATE PLAIN",
			  imp->src->host, has_cap(imp, "LOGINDISABLED") ? "" : " for this name or password");
		return -1;
	}
	int st;
	if (plain) {
		/* RFC 4616: authzid NUL authcid NUL passwd */
		size_t ul = strlen(user), pl = strlen(pass);
		char *raw = malloc(ul + pl + 2), *b64 = malloc(BASE64_ENCODED_LEN(ul + pl + 2));
		if (raw == NULL || b64 == NULL) {
			free(raw);
			free(b64);
			error_set(imp->err, ERR_TEMP, "out of memory");
			return -1;
		}
		raw[0] = '\0';
		memcpy(raw + 1, user, ul);
		raw[ul + 1] = '\0';
		memcpy(raw + ul + 2, pass, pl);
		base64_encode(raw, ul + pl + 2, b64);
		if (has_cap(imp, "SASL-IR")) {
			buf_printf(&cmd, "AUTHENTICATE PLAIN %s", b64);
		} else {
			buf_puts(&cmd, "AUTHENTICATE PLAIN");
			buf_puts(&cont, b64);
		}
		explicit_bzero(raw, ul + pl + 2);
		explicit_bzero(b64, strlen(b64));
		free(raw);
		free(b64);
	} else {
		buf_puts(&cmd, "LOGIN ");
		imapc_conn_astring(&cmd, user, strlen(user), 0);
		buf_putc(&cmd, ' ');
		imapc_conn_astring(&cmd, pass, strlen(pass), 0);
	}
	if (cmd.failed || cont.failed) {
		error_set(imp->err, ERR_TEMP, "out of memory");
		st = -1;
	} else {
		st = imapc_conn_cmd(imp->c, buf_cstr(&cmd), cont.len ? buf_cstr(&cont) : NULL,
				    on_capability, imp, imp->err);
	}
	if (cmd.data)
		explicit_bzero(cmd.data, cmd.len);
	if (cont.data)
		explicit_bzero(cont.data, cont.len);
	buf_free(&cmd);
	buf_free(&cont);
	if (st < 0)
		return -1;
	if (st != IMAPC_OK) {
		login_refused(imp, st);
		return -1;
	}
	/* the capabilities change after login (RFC 3501 6.2.3: may be sent in the OK) */
	buf_truncate(&imp->caps, 0);
	caps_from_code(imp, imapc_conn_resp(imp->c));
	if (imp->caps.len == 0 && run(imp, "CAPABILITY", on_capability) != IMAPC_OK) {
		if (imp->err->code == ERR_OK)
			error_set(imp->err, ERR_TEMP, "IMAP server %s: CAPABILITY failed", imp->src->host);
		return -1;
	}
	return 0;
}

static int on_enabled(void *ctx, const struct imapc_resp *r)
{
	struct imp *imp = ctx;
	if (imapc_resp_is(r, 0, "ENABLED"))
		for (size_t i = 1; i < imapc_resp_ntok(r); i++)
			if (imapc_resp_is(r, i, "UTF8=ACCEPT"))
				imp->utf8 = 1;
	return 0;
}

/* The personal namespace's prefix (RFC 2342): * NAMESPACE (("INBOX." ".")) NIL NIL */
static int on_namespace(void *ctx, const struct imapc_resp *r)
{
	struct imp *imp = ctx;
	const struct imapc_tok *t1 = imapc_resp_tok(r, 1), *t2 = imapc_resp_tok(r, 2),
			       *t3 = imapc_resp_tok(r, 3);
	if (!imapc_resp_is(r, 0, "NAMESPACE") || t1 == NULL || t1->type != IMAPC_TOK_LIST ||
	    t2 == NULL || t2->type != IMAPC_TOK_LIST || t3 == NULL || t3->type != IMAPC_TOK_STRING)
		return 0;
	free(imp->ns_prefix);
	imp->ns_prefix = strdup(imapc_resp_str(r, 3));
	return 0;
}

/* ---- folders ---------------------------------------------------------------- */

/* The server's name raw (delimiter delim, 0 if none) as mailroom's, in out.
 * Returns 0, or -1 with the reason in why. */
static int convert_name(struct imp *imp, const char *raw, size_t rawlen, char delim, struct buf *out,
			const char **why)
{
	struct error e = { ERR_OK, "" };
	struct buf u = BUF_INIT;
	int rc = -1;
	if (imp->utf8 ? imap_utf7_utf8_check(raw, rawlen, &e) : imap_utf7_decode(raw, rawlen, &u, &e)) {
		/* servers that send raw UTF-8 without UTF8=ACCEPT exist */
		if (imap_utf7_utf8_check(raw, rawlen, &e) < 0) {
			*why = "the name is neither modified UTF-7 nor UTF-8";
			goto out;
		}
		buf_truncate(&u, 0);
	}
	if (u.len == 0 && !u.failed)
		buf_append(&u, raw, rawlen);
	const char *n = buf_cstr(&u);
	size_t pl = imp->ns_prefix ? strlen(imp->ns_prefix) : 0;
	if (strcasecmp(n, "INBOX") != 0 && pl > 0 && strncmp(n, imp->ns_prefix, pl) == 0 && n[pl])
		n += pl;
	if (strncasecmp(n, "INBOX", 5) == 0 && (n[5] == '\0' || (delim && n[5] == delim))) {
		buf_puts(out, "INBOX"); /* RFC 3501 5.1: INBOX in any case is INBOX */
		n += 5;
	}
	if (delim != '/' && strchr(n, '/') != NULL) {
		*why = "the name holds '/', mailroom's hierarchy delimiter, and the server's is another";
		goto out;
	}
	for (; *n; n++)
		buf_putc(out, *n == delim ? '/' : *n);
	rc = out->failed || u.failed ? (*why = "out of memory", -1) : 0;
out:
	buf_free(&u);
	return rc;
}

static const char *special_use(const struct imapc_resp *r, size_t from, size_t to)
{
	static const char *const uses[] = { "\\All", "\\Archive", "\\Drafts", "\\Flagged",
					    "\\Junk", "\\Sent", "\\Trash", "\\Important" };
	for (size_t i = from; i < to; i++)
		for (size_t k = 0; k < sizeof(uses) / sizeof(uses[0]); k++)
			if (imapc_resp_is(r, i, uses[k]))
				return uses[k];
	return NULL;
}

/* * LIST (flags) delim name / * LSUB (flags) delim name: token indexes. */
static int list_parts(const struct imapc_resp *r, size_t *flags_end, char *delim, size_t *name)
{
	const struct imapc_tok *f = imapc_resp_tok(r, 1);
	if (f == NULL || f->type != IMAPC_TOK_LIST)
		return -1;
	*flags_end = f->end;
	const struct imapc_tok *d = imapc_resp_tok(r, f->end);
	const struct imapc_tok *n = imapc_resp_tok(r, f->end + 1);
	if (d == NULL || n == NULL || (n->type != IMAPC_TOK_STRING && n->type != IMAPC_TOK_ATOM))
		return -1;
	*delim = d->type == IMAPC_TOK_STRING && d->len == 1 ? imapc_resp_str(r, f->end)[0] : 0;
	*name = f->end + 1;
	return 0;
}

static int on_list(void *ctx, const struct imapc_resp *r)
{
	struct imp *imp = ctx;
	size_t fend, ni;
	char delim;
	if (!imapc_resp_is(r, 0, "LIST") || list_parts(r, &fend, &delim, &ni) < 0)
		return 0;
	for (size_t i = 2; i < fend; i++)
		if (imapc_resp_is(r, i, "\\Noselect") || imapc_resp_is(r, i, "\\NonExistent"))
			return 0;
	const char *raw = imapc_resp_str(r, ni), *why = NULL;
	size_t rawlen = imapc_resp_tok(r, ni)->len;
	struct buf name = BUF_INIT;
	if (convert_name(imp, raw, rawlen, delim, &name, &why) < 0 || name.len == 0) {
		skip(imp, raw, why ? why : "empty name");
		buf_free(&name);
		return 0;
	}
	struct folder *fs = realloc(imp->folders, (imp->nfolders + 1) * sizeof(*fs));
	char *rawcopy = malloc(rawlen + 1);
	if (fs == NULL || rawcopy == NULL) {
		if (fs != NULL)
			imp->folders = fs;
		free(rawcopy);
		buf_free(&name);
		error_set(&imp->stop_err, ERR_TEMP, "out of memory");
		imp->stopped = 1;
		return -1;
	}
	imp->folders = fs;
	memcpy(rawcopy, raw, rawlen + 1);
	fs[imp->nfolders].raw = rawcopy;
	fs[imp->nfolders].name = buf_steal(&name);
	fs[imp->nfolders].special_use = special_use(r, 2, fend);
	imp->nfolders++;
	return 0;
}

static int on_lsub(void *ctx, const struct imapc_resp *r)
{
	struct imp *imp = ctx;
	size_t fend, ni;
	char delim;
	int lsub = imapc_resp_is(r, 0, "LSUB");
	if ((!lsub && !imapc_resp_is(r, 0, "LIST")) || list_parts(r, &fend, &delim, &ni) < 0)
		return 0;
	if (!lsub) { /* LIST (SUBSCRIBED): only those flagged \Subscribed */
		size_t i = 2;
		while (i < fend && !imapc_resp_is(r, i, "\\Subscribed"))
			i++;
		if (i == fend)
			return 0;
	}
	const char *raw = imapc_resp_str(r, ni), *why = NULL;
	struct buf name = BUF_INIT;
	int rc = 0;
	if (convert_name(imp, raw, imapc_resp_tok(r, ni)->len, delim, &name, &why) < 0 || name.len == 0)
		skip(imp, raw, why ? why : "empty name");
	else if (imp->sink->subscribe != NULL &&
		 imp->sink->subscribe(imp->sink->ctx, buf_cstr(&name), &imp->stop_err) < 0)
		rc = -1, imp->stopped = 1;
	buf_free(&name);
	return rc;
}

static int list_folders(struct imp *imp)
{
	int ext = has_cap(imp, "LIST-EXTENDED") && has_cap(imp, "SPECIAL-USE");
	int st = run(imp, ext ? "LIST \"\" \"*\" RETURN (SPECIAL-USE)" : "LIST \"\" \"*\"", on_list);
	if (st == IMAPC_OK) {
		st = run(imp, "LSUB \"\" \"*\"", on_lsub);
		if (st == IMAPC_BAD && has_cap(imp, "LIST-EXTENDED"))
			st = run(imp, "LIST (SUBSCRIBED) \"\" \"*\"", on_lsub);
		if (st > IMAPC_OK) {
			skip(imp, "subscriptions", imapc_conn_reply_text(imp->c));
			st = IMAPC_OK;
		}
	}
	if (st > IMAPC_OK)
		error_set(imp->err, ERR_TEMP, "IMAP server %s: LIST failed: %s", imp->src->host,
			  imapc_conn_reply_text(imp->c));
	return st == IMAPC_OK ? 0 : -1;
}

/* ---- one folder: EXAMINE and the message list ---------------------------- */

/* The message with sequence number seq, growing the list up to it; NULL if
 * seq is 0 or out of memory. */
static struct msg *msg_at(struct imp *imp, uint64_t seq)
{
	if (seq == 0 || seq > UINT32_MAX)
		return NULL;
	if (seq > imp->msgcap) {
		size_t cap = imp->msgcap ? imp->msgcap : 64;
		while (cap < seq)
			cap *= 2;
		struct msg *m = realloc(imp->msgs, cap * sizeof(*m));
		if (m == NULL)
			return NULL;
		imp->msgs = m;
		imp->msgcap = cap;
	}
	for (size_t i = imp->nmsgs; i < seq; i++) {
		memset(&imp->msgs[i], 0, sizeof(imp->msgs[i]));
		imp->msgs[i].date = -1;
	}
	if (seq > imp->nmsgs)
		imp->nmsgs = (size_t)seq;
	return &imp->msgs[seq - 1];
}

static struct msg *find_uid(struct imp *imp, uint32_t uid)
{
	for (size_t k = 0; k < imp->nmsgs; k++) {
		size_t i = (imp->hint + k) % imp->nmsgs;
		if (imp->msgs[i].uid == uid) {
			imp->hint = i;
			return &imp->msgs[i];
		}
	}
	return NULL;
}

static void set_flags(struct imp *imp, struct msg *m, const struct imapc_resp *r, size_t from,
		      size_t to)
{
	static const struct {
		const char *name;
		uint32_t bit;
	} sys[] = { { "\\Seen", STORE_F_SEEN },	      { "\\Answered", STORE_F_ANSWERED },
		    { "\\Flagged", STORE_F_FLAGGED }, { "\\Deleted", STORE_F_DELETED },
		    { "\\Draft", STORE_F_DRAFT },     { "$Forwarded", STORE_F_PASSED } };
	m->flags = 0;
	m->nkw = 0;
	m->kw_off = (uint32_t)imp->kw.len;
	for (size_t i = from; i < to; i++) {
		const struct imapc_tok *t = imapc_resp_tok(r, i);
		if (t->type != IMAPC_TOK_ATOM)
			continue;
		const char *s = imapc_resp_str(r, i);
		size_t k = 0;
		while (k < sizeof(sys) / sizeof(sys[0]) && strcasecmp(s, sys[k].name) != 0)
			k++;
		if (k < sizeof(sys) / sizeof(sys[0]))
			m->flags |= sys[k].bit;
		else if (s[0] != '\\') { /* \Recent and unknown system flags are not kept */
			buf_append(&imp->kw, s, t->len + 1);
			m->nkw++;
		}
	}
}

/* * N FETCH (UID u FLAGS (...) INTERNALDATE "..." RFC822.SIZE n) */
static void fetch_meta(struct imp *imp, struct msg *m, const struct imapc_resp *r)
{
	const struct imapc_tok *list = imapc_resp_tok(r, 2);
	for (size_t i = 3; i + 1 < list->end; i = imapc_resp_next(r, i + 1)) {
		const struct imapc_tok *v = imapc_resp_tok(r, i + 1);
		uint64_t n;
		if (imapc_resp_is(r, i, "UID") && imapc_resp_num(r, i + 1, &n) == 0 && n <= UINT32_MAX)
			m->uid = (uint32_t)n;
		else if (imapc_resp_is(r, i, "FLAGS") && v->type == IMAPC_TOK_LIST)
			set_flags(imp, m, r, i + 2, v->end);
		else if (imapc_resp_is(r, i, "INTERNALDATE") && v->type == IMAPC_TOK_STRING)
			m->date = parse_date(imapc_resp_str(r, i + 1));
		else if (imapc_resp_is(r, i, "RFC822.SIZE") && imapc_resp_num(r, i + 1, &n) == 0)
			m->size = n;
	}
}

/* Untagged responses while a folder is open: EXISTS, EXPUNGE, FETCH and
 * EXAMINE's [UIDVALIDITY] and [UIDNEXT]. */
static int on_folder(void *ctx, const struct imapc_resp *r)
{
	struct imp *imp = ctx;
	uint64_t n, v;
	const struct imapc_tok *t1 = imapc_resp_tok(r, 1), *t2 = imapc_resp_tok(r, 2);
	if (imapc_resp_is(r, 0, "OK") && t1 != NULL && t1->type == IMAPC_TOK_CODE &&
	    imapc_resp_num(r, 3, &v) == 0 && v <= UINT32_MAX) {
		if (imapc_resp_is(r, 2, "UIDVALIDITY"))
			imp->uidvalidity = (uint32_t)v;
		else if (imapc_resp_is(r, 2, "UIDNEXT"))
			imp->uidnext = (uint32_t)v;
		return 0;
	}
	if (imapc_resp_num(r, 0, &n) < 0)
		return 0;
	if (imapc_resp_is(r, 1, "EXISTS")) {
		imp->exists = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
	} else if (imapc_resp_is(r, 1, "EXPUNGE") && n >= 1 && n <= imp->nmsgs) {
		memmove(&imp->msgs[n - 1], &imp->msgs[n], (imp->nmsgs - n) * sizeof(*imp->msgs));
		imp->nmsgs--;
		if (imp->exists > 0)
			imp->exists--;
	} else if (imapc_resp_is(r, 1, "FETCH") && t2 != NULL && t2->type == IMAPC_TOK_LIST &&
		   n <= imp->exists) {
		struct msg *m = msg_at(imp, n);
		if (m == NULL) {
			error_set(&imp->stop_err, ERR_TEMP, "out of memory");
			imp->stopped = 1;
			return -1;
		}
		fetch_meta(imp, m, r);
	}
	return 0;
}

/* ---- bodies, streamed -------------------------------------------------------- */

static int stop(struct imp *imp)
{
	imp->stopped = 1;
	return -1;
}

/* The UID of the FETCH response being read (before its BODY[] literal). */
static uint32_t fetch_uid(struct imp *imp, const struct imapc_resp *r)
{
	uint64_t n;
	size_t nt = imapc_resp_ntok(r);
	for (size_t i = 3; i + 1 < nt; i = imapc_resp_next(r, i + 1))
		if (imapc_resp_is(r, i, "UID") && imapc_resp_num(r, i + 1, &n) == 0 && n <= UINT32_MAX)
			return (uint32_t)n;
	if (imapc_resp_num(r, 0, &n) == 0 && n >= 1 && n <= imp->nmsgs)
		return imp->msgs[n - 1].uid;
	return 0;
}

static int body_begin(void *ctx, const struct imapc_resp *r, uint64_t size)
{
	struct imp *imp = ctx;
	size_t nt = imapc_resp_ntok(r);
	(void)size;
	if (strcmp(imapc_resp_tag(r), "*") != 0 || !imapc_resp_is(r, 1, "FETCH") ||
	    imapc_resp_depth(r) != 1 || nt < 4 || !imapc_resp_is(r, nt - 1, "BODY[]"))
		return 0;
	uint32_t uid = fetch_uid(imp, r);
	struct msg *m = uid ? find_uid(imp, uid) : NULL;
	if (m == NULL || !m->want || m->done) {
		imp->discarding = 1;
		return 1;
	}
	free(imp->kwptrs);
	imp->kwptrs = calloc(m->nkw + 1, sizeof(*imp->kwptrs));
	if (imp->kwptrs == NULL) {
		error_set(&imp->stop_err, ERR_TEMP, "out of memory");
		return stop(imp);
	}
	const char *k = imp->kw.data + m->kw_off;
	for (uint32_t i = 0; i < m->nkw; i++, k += strlen(k) + 1)
		imp->kwptrs[i] = k;
	snprintf(imp->id, sizeof(imp->id), "%s UID %u", imp->cur->name, m->uid);
	struct import_msg im = {
		.uid = m->uid,
		.flags = m->flags,
		.keywords = imp->kwptrs,
		.nkeywords = m->nkw,
		.internaldate = m->date,
		.size = m->size,
		.id = imp->id,
	};
	if (imp->sink->msg_begin(imp->sink->ctx, &im, &imp->stop_err) < 0)
		return stop(imp);
	imp->streaming = m;
	return 1;
}

static int body_data(void *ctx, const char *data, size_t len)
{
	struct imp *imp = ctx;
	if (imp->discarding)
		return 0;
	if (imp->sink->msg_write(imp->sink->ctx, data, len, &imp->stop_err) < 0)
		return stop(imp);
	return 0;
}

static int body_end(void *ctx)
{
	struct imp *imp = ctx;
	if (imp->discarding) {
		imp->discarding = 0;
		return 0;
	}
	struct msg *m = imp->streaming;
	imp->streaming = NULL;
	if (imp->sink->msg_end(imp->sink->ctx, &imp->stop_err) < 0)
		return stop(imp);
	m->done = 1;
	imp->nimported++;
	return 0;
}

/* UID FETCH uids (UID BODY.PEEK[]): the bodies stream through the hooks. */
static int fetch_bodies(struct imp *imp, const uint32_t *uids, size_t n)
{
	struct buf cmd = BUF_INIT;
	buf_puts(&cmd, "UID FETCH ");
	for (size_t i = 0; i < n; i++)
		buf_printf(&cmd, "%s%u", i ? "," : "", uids[i]);
	buf_puts(&cmd, " (UID BODY.PEEK[])");
	struct imapc_resp *r = imapc_conn_resp(imp->c);
	r->hooks = (struct imapc_resp_hooks){ imp, body_begin, body_data, body_end };
	int st = cmd.failed ? (error_set(imp->err, ERR_TEMP, "out of memory"), -1)
			    : run(imp, buf_cstr(&cmd), on_folder);
	r->hooks = (struct imapc_resp_hooks){ 0 };
	buf_free(&cmd);
	return st;
}

/* Fetch the batch; what did not come is tried once more on its own, then
 * skipped with the reason. */
static int fetch_batch(struct imp *imp, const uint32_t *uids, size_t n)
{
	int st = fetch_bodies(imp, uids, n);
	if (st < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		struct msg *m = find_uid(imp, uids[i]);
		if (m == NULL || m->done || !m->want)
			continue;
		if (n > 1 && (st = fetch_bodies(imp, &uids[i], 1)) < 0)
			return -1;
		m = find_uid(imp, uids[i]);
		if (m != NULL && !m->done) {
			char what[STORE_MAX_MAILBOX_NAME + 32];
			snprintf(what, sizeof(what), "%s UID %u", imp->cur->name, uids[i]);
			skip(imp, what,
			     st == IMAPC_OK ? "the server sent no body for it"
					    : imapc_conn_reply_text(imp->c));
		}
	}
	return 0;
}

static int fetch_missing(struct imp *imp)
{
	uint32_t uids[BATCH_UIDS];
	size_t n = 0;
	uint64_t bytes = 0;
	for (size_t i = 0; i < imp->nmsgs; i++) {
		struct msg *m = &imp->msgs[i];
		if (m->uid == 0)
			continue;
		m->want = imp->sink->has_uid == NULL || !imp->sink->has_uid(imp->sink->ctx, m->uid);
	}
	/* uids are collected first: an EXPUNGE during a fetch moves msgs[] */
	for (size_t i = 0; i < imp->nmsgs; i++) {
		if (!imp->msgs[i].want || imp->msgs[i].done)
			continue;
		uids[n++] = imp->msgs[i].uid;
		bytes += imp->msgs[i].size;
		if (n == BATCH_UIDS || bytes >= BATCH_BYTES) {
			if (fetch_batch(imp, uids, n) < 0)
				return -1;
			n = 0;
			bytes = 0;
		}
	}
	return n > 0 ? fetch_batch(imp, uids, n) : 0;
}

static int import_folder(struct imp *imp, const struct folder *f)
{
	struct buf cmd = BUF_INIT;
	imp->cur = f;
	imp->uidvalidity = imp->uidnext = imp->exists = 0;
	imp->nmsgs = 0;
	imp->hint = 0;
	buf_truncate(&imp->kw, 0);
	buf_puts(&cmd, "EXAMINE ");
	imapc_conn_astring(&cmd, f->raw, strlen(f->raw), imp->utf8);
	int st = cmd.failed ? (error_set(imp->err, ERR_TEMP, "out of memory"), -1)
			    : run(imp, buf_cstr(&cmd), on_folder);
	buf_free(&cmd);
	if (st < 0)
		return -1;
	if (st != IMAPC_OK) {
		skip(imp, f->name, imapc_conn_reply_text(imp->c));
		return 0;
	}
	struct import_folder fo = { f->name, imp->uidvalidity, imp->uidnext, f->special_use };
	if (imp->sink->folder_begin(imp->sink->ctx, &fo, &imp->stop_err) < 0)
		return stop(imp);
	if (imp->exists > 0) {
		st = run(imp, "UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE)", on_folder);
		if (st < 0)
			return -1;
		if (st != IMAPC_OK)
			skip(imp, f->name, imapc_conn_reply_text(imp->c));
		else if (imp->kw.failed) {
			error_set(imp->err, ERR_TEMP, "out of memory");
			return -1;
		} else if (fetch_missing(imp) < 0)
			return -1;
	}
	if (imp->sink->folder_end(imp->sink->ctx, &imp->stop_err) < 0)
		return stop(imp);
	return 0;
}

/* ---- the whole import ------------------------------------------------------- */

static int session(struct imp *imp)
{
	int preauth = 0;
	if (imapc_conn_open(imp->src->host, imp->src->port, imp->src->tls, !imp->src->tls_no_verify,
			    &imp->c, imp->err) < 0)
		return -1;
	if (greet(imp, &preauth) < 0)
		return -1;
	if (!preauth && (secure(imp) < 0 || login(imp) < 0))
		return -1;
	if (has_cap(imp, "ENABLE") && has_cap(imp, "UTF8=ACCEPT") &&
	    run(imp, "ENABLE UTF8=ACCEPT", on_enabled) < 0)
		return -1;
	if (has_cap(imp, "NAMESPACE") && run(imp, "NAMESPACE", on_namespace) < 0)
		return -1;
	if (list_folders(imp) < 0)
		return -1;
	for (size_t i = 0; i < imp->nfolders; i++)
		if (import_folder(imp, &imp->folders[i]) < 0)
			return -1;
	(void)run(imp, "LOGOUT", NULL); /* the BYE that comes first ends it: fine */
	return 0;
}

int import_imap(const struct import_imap_source *src, const struct import_sink *sink,
		struct error *err)
{
	struct error local = { ERR_OK, "" };
	struct imp imp = { .src = src, .sink = sink, .err = &local };
	if (src->host == NULL || src->login == NULL) {
		error_set(err, ERR_INVALID, "IMAP source without host or login");
		return -1;
	}
	struct sigaction ign = { .sa_handler = SIG_IGN }, old;
	/* OpenSSL writes with write(2): a peer that goes away must not kill us */
	sigaction(SIGPIPE, &ign, &old);
	int rc = session(&imp);
	if (rc < 0) {
		if (imp.stopped)
			*err = imp.stop_err;
		else if (local.code != ERR_OK)
			*err = local;
		else
			error_set(err, ERR_TEMP, "IMAP import from %s failed", src->host);
	}
	imapc_conn_free(&imp.c);
	for (size_t i = 0; i < imp.nfolders; i++) {
		free(imp.folders[i].raw);
		free(imp.folders[i].name);
	}
	free(imp.folders);
	free(imp.msgs);
	free(imp.ns_prefix);
	free(imp.kwptrs);
	buf_free(&imp.caps);
	buf_free(&imp.kw);
	sigaction(SIGPIPE, &old, NULL);
	return rc;
}
