/*
 * imap_send.c: the response writer every IMAP file uses: untagged and tagged
 * lines, strings (quoted or literal), mailbox names (modified UTF-7 unless
 * UTF-8 is enabled) and flag lists. Writes go through the session core
 * (session_write), so nothing is written once the client is gone.
 */
#include "imap/imap_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap_utf7.h"
#include "lib/buf.h"
#include "lib/log.h"


void imap_send(struct imap_session *s, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(buf)) {
		session_write(&s->base, buf, (size_t)n);
		return;
	}
	char *big = malloc((size_t)n + 1);
	if (big == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	session_write(&s->base, big, (size_t)n);
	free(big);
}

void imap_send_raw(struct imap_session *s, const void *data, size_t len)
{
	session_write(&s->base, data, len);
}

void imap_send_tagged(struct imap_session *s, const struct imap_command *cmd, const char *status,
		 const char *fmt, ...)
{
	char *text = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&text, fmt, ap); /* no limit: a [MODIFIED set] can be long */
	va_end(ap);
	const char *tag = cmd != NULL ? cmd->tag : s->cmd_tag != NULL ? s->cmd_tag : "*";
	/* RFC 9738: a command cut at MESSAGELIMIT completes OK [LIMIT] */
	bool limit = s->limit_hit && strcmp(status, "OK") == 0 && n >= 0 && text[0] != '[';
	s->limit_hit = false;
	imap_send(s, "%s %s %s%s\r\n", tag, status, limit ? "[LIMIT] " : "", n >= 0 ? text : "");
	if (n >= 0)
		free(text);
	if (strcmp(status, "BAD") != 0)
		imap_send_good(s);
	else if (session_error_limit(&s->base, IMAP_MAX_BAD_COMMANDS)) {
		imap_send(s, "* BYE Too many invalid commands\r\n");
		s->base.closing = true;
	}
}

void imap_send_good(struct imap_session *s)
{
	s->base.errors = 0;
}

void imap_send_store_error(struct imap_session *s, const struct imap_command *cmd,
			   const struct error *err)
{
	const char *code = "[SERVERBUG]";
	switch (err->code) {
	case ERR_TEMP: code = "[UNAVAILABLE]"; break;
	/* RFC 5530 has no code for a full disk; [OVERQUOTA] would blame the
	 * user's quota. UNAVAILABLE: temporary, try again later. */
	case ERR_NOSPACE: code = "[UNAVAILABLE]"; break;
	case ERR_NOTFOUND: code = "[NONEXISTENT]"; break;
	case ERR_EXISTS: code = "[ALREADYEXISTS]"; break;
	case ERR_INVALID: code = "[CANNOT]"; break;
	case ERR_QUOTA: code = "[OVERQUOTA]"; break;
	case ERR_LIMIT: code = "[LIMIT]"; break;
	case ERR_NOUSER: code = "[UNAVAILABLE]"; break;
	default: break;
	}
	if (err->code == ERR_TEMP || err->code == ERR_NOSPACE)
		log_warn("imap %s user=%s: %s", s->base.id, s->user ? s->user : "-", err->text);
	imap_send_tagged(s, cmd, "NO", "%s %s", code, err->text);
}

void imap_send_string(struct imap_session *s, const char *str, size_t len)
{
	bool quote = len < 1024;
	for (size_t i = 0; i < len && quote; i++) {
		unsigned char c = (unsigned char)str[i];
		if (c == '\r' || c == '\n' || c == '\0' || (c >= 0x80 && !s->utf8))
			quote = false;
	}
	if (!quote) {
		imap_send(s, "{%zu}\r\n", len);
		imap_send_raw(s, str, len);
		return;
	}
	char buf[2100];
	size_t o = 0;
	buf[o++] = '"';
	for (size_t i = 0; i < len; i++) {
		if (str[i] == '"' || str[i] == '\\')
			buf[o++] = '\\';
		buf[o++] = str[i];
	}
	buf[o++] = '"';
	imap_send_raw(s, buf, o);
}

void imap_send_mailbox(struct imap_session *s, const char *name)
{
	if (s->utf8) {
		imap_send_string(s, name, strlen(name));
		return;
	}
	struct buf m = BUF_INIT;
	struct error why;
	if (imap_utf7_encode(name, strlen(name), &m, &why) < 0 || m.failed)
		imap_send_string(s, name, strlen(name));
	else
		imap_send_string(s, buf_cstr(&m), m.len);
	buf_free(&m);
}

void imap_send_flags(struct imap_session *s, uint32_t flags, uint32_t keywords)
{
	static const struct {
		uint32_t bit;
		const char *name;
	} sys[] = {
		{ STORE_F_ANSWERED, "\\Answered" }, { STORE_F_FLAGGED, "\\Flagged" },
		{ STORE_F_DELETED, "\\Deleted" },   { STORE_F_SEEN, "\\Seen" },
		{ STORE_F_DRAFT, "\\Draft" },	    { STORE_F_PASSED, "$Forwarded" },
		{ IMAP_FLAG_RECENT, "\\Recent" },
	};
	/* Sent for every message of a FETCH FLAGS: no printf here. */
	char buf[2048];
	size_t o = 0;
	buf[o++] = '(';
	for (size_t i = 0; i < sizeof(sys) / sizeof(sys[0]); i++) {
		if (!(flags & sys[i].bit))
			continue;
		size_t n = strlen(sys[i].name);
		if (o > 1)
			buf[o++] = ' ';
		memcpy(buf + o, sys[i].name, n);
		o += n;
	}
	for (unsigned k = 0; keywords != 0 && k < STORE_MAX_KEYWORDS && s->view != NULL; k++) {
		if (!(keywords & (1u << k)))
			continue;
		const char *kw = store_mailbox_keyword(s->view->mbox, k);
		size_t n = kw != NULL ? strlen(kw) : 0;
		if (n == 0 || o + n + 3 >= sizeof(buf))
			continue;
		if (o > 1)
			buf[o++] = ' ';
		memcpy(buf + o, kw, n);
		o += n;
	}
	buf[o++] = ')';
	imap_send_raw(s, buf, o);
}

void imap_send_fetch_open(struct imap_session *s, uint32_t seq, uint32_t uid)
{
	if (s->uidonly)
		imap_send(s, "* %u UIDFETCH (", uid);
	else
		imap_send(s, "* %u FETCH (", seq);
}
