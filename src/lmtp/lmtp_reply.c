/* lmtp_reply.c: reply lines and the protocol error count (lmtp_int.h). */
#include "lmtp/lmtp_int.h"

#include <stdarg.h>
#include <stdio.h>

void lmtp_reply(struct lmtp_session *s, const char *fmt, ...)
{
	char line[1200];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 3)
		n = (int)sizeof(line) - 3;
	line[n++] = '\r';
	line[n++] = '\n';
	session_write(&s->base, line, (size_t)n);
}

void lmtp_reply_error(struct lmtp_session *s, const char *text)
{
	lmtp_reply(s, "%s", text);
	if (session_error_limit(&s->base, LMTP_MAX_ERRORS)) {
		lmtp_reply(s, "421 4.7.0 Too many errors, closing connection");
		session_close(&s->base);
	}
}
