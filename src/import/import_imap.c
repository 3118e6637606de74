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
 *   then per selectable folder (import_imap_fetch.c):
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
 * TLS: imaps:// is implicit TLS; certificates are checked against the
 * system's CAs and the host name unless the SOURCE says ?tls-verify=no
 * (import_imap_source.tls_no_verify), see imapc_conn.h.
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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/imap_utf7.h"
#include "import/import_imap_int.h"
#include "lib/base64.h"

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

/* ---- connecting and logging in ---------------------------------------------- */

static int greet(struct imp *imp, int *preauth_r)
{
	if (imapc_conn_read(imp->c, imp->err) < 0)
		return -1;
	const struct imapc_resp *r = imapc_conn_resp(imp->c);
	if (strcmp(imapc_resp_tag(r), "*") != 0 ||
	    !(imapc_resp_is(r, 0, "OK") || imapc_resp_is(r, 0, "PREAUTH"))) {
		error_set(imp->err, ERR_TEMP, "IMAP server %s does not greet us: %s",
			  imp->src->host, imapc_conn_reply_text(imp->c));
		return -1;
	}
	*preauth_r = imapc_resp_is(r, 0, "PREAUTH");
	caps_from_code(imp, r);
	if (imp->caps.len == 0 && imp_run(imp, "CAPABILITY", on_capability) != IMAPC_OK)
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
		int st = imp_run(imp, "STARTTLS", NULL);
		if (st < 0)
			return -1;
		if (st != IMAPC_OK) {
			error_set(imp->err, ERR_TEMP, "IMAP server %s refused STARTTLS: %s",
				  imp->src->host, imapc_conn_reply_text(imp->c));
			return -1;
		}
		if (imapc_conn_starttls(imp->c, imp->err) < 0)
			return -1;
		buf_truncate(&imp->caps, 0); /* RFC 3501 6.2.1: forget what was said in clear */
		if (imp_run(imp, "CAPABILITY", on_capability) != IMAPC_OK) {
			if (imp->err->code == ERR_OK)
				error_set(imp->err, ERR_TEMP, "IMAP server %s: CAPABILITY failed",
					  imp->src->host);
			return -1;
		}
		return 0;
	}
	if (!imapc_conn_is_loopback(imp->c)) {
		error_set(
			imp->err, ERR_INVALID,
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
		error_set(imp->err, ERR_TEMP, "IMAP server %s cannot log %s in now: %s",
			  imp->src->host, imp->src->login, imapc_conn_reply_text(imp->c));
	else
		error_set(imp->err, ERR_INVALID,
			  "IMAP server %s refused the login of %s: wrong user name or password "
			  "(server "
			  "said: %s)",
			  imp->src->host, imp->src->login, imapc_conn_reply_text(imp->c));
}

static int login(struct imp *imp)
{
	const char *user = imp->src->login, *pass = imp->src->password ? imp->src->password : "";
	struct buf cmd = BUF_INIT, cont = BUF_INIT;
	int plain = has_cap(imp, "LOGINDISABLED") || needs_literal(user) || needs_literal(pass);
	if (plain && !has_cap(imp, "AUTH=PLAIN")) {
		error_set(imp->err, ERR_INVALID,
			  "IMAP server %s allows no LOGIN%s and no AUTHENTICATE PLAIN",
			  imp->src->host,
			  has_cap(imp, "LOGINDISABLED") ? "" : " for this name or password");
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
	if (imp->caps.len == 0 && imp_run(imp, "CAPABILITY", on_capability) != IMAPC_OK) {
		if (imp->err->code == ERR_OK)
			error_set(imp->err, ERR_TEMP, "IMAP server %s: CAPABILITY failed",
				  imp->src->host);
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
static int convert_name(struct imp *imp, const char *raw, size_t rawlen, char delim,
			struct buf *out, const char **why)
{
	struct error e = {ERR_OK, ""};
	struct buf u = BUF_INIT;
	int rc = -1;
	if (imp->utf8 ? imap_utf7_utf8_check(raw, rawlen, &e)
		      : imap_utf7_decode(raw, rawlen, &u, &e)) {
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
		*why = "the name holds '/', mailroom's hierarchy delimiter, and the server's is "
		       "another";
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
	static const char *const uses[] = {"\\All",  "\\Archive", "\\Drafts", "\\Flagged",
					   "\\Junk", "\\Sent",	  "\\Trash",  "\\Important"};
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
		imp_skip(imp, raw, why ? why : "empty name");
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
	if (convert_name(imp, raw, imapc_resp_tok(r, ni)->len, delim, &name, &why) < 0 ||
	    name.len == 0)
		imp_skip(imp, raw, why ? why : "empty name");
	else if (imp->sink->subscribe != NULL &&
		 imp->sink->subscribe(imp->sink->ctx, buf_cstr(&name), &imp->stop_err) < 0)
		rc = -1, imp->stopped = 1;
	buf_free(&name);
	return rc;
}

static int list_folders(struct imp *imp)
{
	int ext = has_cap(imp, "LIST-EXTENDED") && has_cap(imp, "SPECIAL-USE");
	int st = imp_run(imp, ext ? "LIST \"\" \"*\" RETURN (SPECIAL-USE)" : "LIST \"\" \"*\"",
			 on_list);
	if (st == IMAPC_OK) {
		st = imp_run(imp, "LSUB \"\" \"*\"", on_lsub);
		if (st == IMAPC_BAD && has_cap(imp, "LIST-EXTENDED"))
			st = imp_run(imp, "LIST (SUBSCRIBED) \"\" \"*\"", on_lsub);
		if (st > IMAPC_OK) {
			imp_skip(imp, "subscriptions", imapc_conn_reply_text(imp->c));
			st = IMAPC_OK;
		}
	}
	if (st > IMAPC_OK)
		error_set(imp->err, ERR_TEMP, "IMAP server %s: LIST failed: %s", imp->src->host,
			  imapc_conn_reply_text(imp->c));
	return st == IMAPC_OK ? 0 : -1;
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
	    imp_run(imp, "ENABLE UTF8=ACCEPT", on_enabled) < 0)
		return -1;
	if (has_cap(imp, "NAMESPACE") && imp_run(imp, "NAMESPACE", on_namespace) < 0)
		return -1;
	if (list_folders(imp) < 0)
		return -1;
	for (size_t i = 0; i < imp->nfolders; i++)
		if (import_imap_fetch_folder(imp, &imp->folders[i]) < 0)
			return -1;
	(void)imp_run(imp, "LOGOUT", NULL); /* the BYE that comes first ends it: fine */
	return 0;
}

int import_imap(const struct import_imap_source *src, const struct import_sink *sink,
		struct error *err)
{
	struct error local = {ERR_OK, ""};
	struct imp imp = {.src = src, .sink = sink, .err = &local};
	if (src->host == NULL || src->login == NULL) {
		error_set(err, ERR_INVALID, "IMAP source without host or login");
		return -1;
	}
	struct sigaction ign = {.sa_handler = SIG_IGN}, old;
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
