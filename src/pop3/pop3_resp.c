/*
 * pop3_resp.c: POP3 response lines, protocol error counting and the UIDL
 * format; the lowest file of src/pop3 that does I/O (through the session
 * core's writer, so nothing is written once the client has gone).
 *
 * UIDL (RFC 1939 7). "%08x%08x" of the UID and the mailbox's UIDVALIDITY:
 * 16 lowercase hex digits, what Dovecot's default format ("%08Xu%08Xv")
 * gives (its %X is lowercase hex: "000000016b17639c"), so a maildrop
 * migrated from Dovecot keeps its UIDLs when its UIDs are kept. UIDLs are
 * compared as exact strings by clients (fetchmail), so the case matters. Both numbers
 * live in the files (U= in the file name, UIDVALIDITY in mailroom-box), so
 * the UIDL survives restarts and an index rebuild, and a message has the
 * same UIDL whether POP3 or IMAP saw it first. A message imported from a
 * server that gave other UIDLs keeps the old one (`mailroom import` writes
 * them to the mailbox's mailroom-pop3-uidl, store_import_uidls), so that a
 * client that leaves mail on the server does not download it again.
 */
#include "pop3/pop3_int.h"

#include <stdarg.h>
#include <stdio.h>

#include "lib/log.h"
#include "session/conn.h"

static void vsend(struct pop3_session *s, const char *prefix, const char *fmt, va_list ap)
{
	char buf[512]; /* RFC 1939 3: responses up to 512 octets, CRLF included */
	size_t n = (size_t)snprintf(buf, sizeof(buf), "%s", prefix);
	int m = vsnprintf(buf + n, sizeof(buf) - n - 2, fmt, ap);
	if (m < 0)
		m = 0;
	n += (size_t)m < sizeof(buf) - n - 2 ? (size_t)m : sizeof(buf) - n - 3;
	buf[n++] = '\r';
	buf[n++] = '\n';
	session_write(&s->base, buf, n);
}

void pop3_resp_send(struct pop3_session *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsend(s, "", fmt, ap);
	va_end(ap);
}

void pop3_resp_error(struct pop3_session *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsend(s, "-ERR ", fmt, ap);
	va_end(ap);
	/* The POP3_MAX_ERRORS-th error closes: the limit counts the errors
	 * allowed before it. */
	if (session_error_limit(&s->base, POP3_MAX_ERRORS - 1) && !s->base.closing) {
		/* The -ERR above answered the command; the connection then
		 * closes (RFC 1939 3 lets a server close on errors). */
		log_info("pop3 %s: too many errors, closing ip=%s", s->base.id,
			 s->base.conn ? conn_peer_ip(s->base.conn) : "-");
		session_close(&s->base);
	}
}

void pop3_resp_store_error(struct pop3_session *s, const char *what, const struct error *err)
{
	log_warn("pop3 %s user=%s: %s: %s", s->base.id, s->user ? s->user : "-", what, err->text);
	/* RFC 3206 4, 5: worth retrying, or not. */
	pop3_resp_send(s, "-ERR [%s] %s", err->code == ERR_TEMP || err->code == ERR_NOSPACE ? "SYS/TEMP" : "SYS/PERM", what);
}

void pop3_resp_uidl(const struct pop3_session *s, const struct pop3_msg *m,
		    char out[POP3_UIDL_SIZE])
{
	if (m->uidl != NULL)
		snprintf(out, POP3_UIDL_SIZE, "%s", m->uidl);
	else
		snprintf(out, POP3_UIDL_SIZE, "%08x%08x", (unsigned)m->uid, (unsigned)s->uidvalidity);
}
