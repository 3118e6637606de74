/*
 * imap_capability.c: what this session offers (RFC 9051 7.2.2), which
 * depends on its state (before login: STARTTLS, AUTH= or LOGINDISABLED;
 * after: the extensions), and whether passwords may travel on it.
 */
#include "imap/imap_int.h"

#include <stdio.h>

#include "lib/config.h"
#include "session/conn.h"

bool imap_capability_plaintext_ok(struct imap_session *s)
{
	return conn_is_tls(s->base.conn) || conn_is_local(s->base.conn) ||
	       config_bool(s->base.env->config, "plaintext_auth");
}

static void capability_list(struct imap_session *s, char *buf, size_t size)
{
	int n = snprintf(buf, size, "IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE");
	if (s->state == IMAP_NOT_AUTH) {
		if (s->base.env->tls != NULL && !conn_is_tls(s->base.conn))
			n += snprintf(buf + n, size - (size_t)n, " STARTTLS");
		if (imap_capability_plaintext_ok(s))
			n += snprintf(buf + n, size - (size_t)n, " AUTH=PLAIN AUTH=LOGIN");
		else
			n += snprintf(buf + n, size - (size_t)n, " LOGINDISABLED");
		return;
	}
	/* RFC 8437, RFC 9051 6.3.11 (STATUS DELETED, as an IMAP4rev1
	 * extension), RFC 8508, RFC 9394, RFC 9586, RFC 9738. */
	n += snprintf(buf + n, size - (size_t)n, " UNAUTHENTICATE STATUS=DELETED REPLACE PARTIAL UIDONLY");
	uint64_t limit = config_uint(s->base.env->config, "imap_message_limit");
	if (limit != 0)
		n += snprintf(buf + n, size - (size_t)n, " MESSAGELIMIT=%llu", (unsigned long long)limit);
	n += snprintf(buf + n, size - (size_t)n,
		 " NAMESPACE UNSELECT UIDPLUS MOVE CHILDREN SPECIAL-USE CREATE-SPECIAL-USE"
		 " LIST-EXTENDED LIST-STATUS STATUS=SIZE ESEARCH SEARCHRES BINARY"
		 " CONDSTORE QRESYNC MULTIAPPEND SORT SORT=DISPLAY ESORT"
		 " THREAD=ORDEREDSUBJECT THREAD=REFERENCES UTF8=ACCEPT OBJECTID SAVEDATE PREVIEW"
		 " METADATA METADATA-SERVER LIST-METADATA NOTIFY"
		 " QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE COMPRESS=DEFLATE APPENDLIMIT=%llu",
		 (unsigned long long)config_uint(s->base.env->config, "message_size_limit"));
}

void imap_capability_send(struct imap_session *s)
{
	char caps[1024];
	capability_list(s, caps, sizeof(caps));
	imap_send(s, "CAPABILITY %s", caps);
}
