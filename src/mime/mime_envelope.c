/*
 * mime_envelope.c: the IMAP ENVELOPE of a message (RFC 9051 7.5.2, RFC 3501
 * 7.4.2).
 *
 *   envelope = "(" env-date SP env-subject SP env-from SP env-sender SP
 *              env-reply-to SP env-to SP env-cc SP env-bcc SP
 *              env-in-reply-to SP env-message-id ")"
 *
 * Design note: the string fields are the header values unfolded (RFC 5322
 * 2.2.3: CRLF removed, the folding whitespace kept) and trimmed; NIL when the
 * field is absent, "" when it is present but empty. The address fields are
 * NIL when absent or when they hold no address; Sender and Reply-To default
 * to From when absent or empty (RFC 9051 7.5.2 "the server sets the
 * corresponding member of the envelope to be the same value as the from
 * member").
 *
 * Where we differ from Dovecot on purpose: Dovecot rewrites the subject and
 * display names "for humans" (tabs and runs of spaces collapsed to one
 * space). RFC 9051 asks for the field's value, and unfolding is all RFC 5322
 * allows, so we keep the whitespace (see tests/e2e/mime_known_deviations.txt).
 */
#include <stdlib.h>
#include <string.h>

#include "mime/mime_private.h"

static void write_addresses(struct mime_buf *out, const char *value, size_t len,
			    const struct mime_address *list)
{
	(void)value;
	(void)len;
	if (list == NULL) {
		mime_buf_puts(out, "NIL");
		return;
	}
	mime_buf_putc(out, '(');
	for (const struct mime_address *a = list; a != NULL; a = a->next) {
		mime_buf_putc(out, '(');
		if (a->name == NULL)
			mime_buf_puts(out, "NIL");
		else
			mime_imap_string_human(out, a->name, strlen(a->name));
		mime_buf_putc(out, ' ');
		mime_imap_nstring(out, a->route, a->route ? strlen(a->route) : 0);
		mime_buf_putc(out, ' ');
		mime_imap_nstring(out, a->mailbox, a->mailbox ? strlen(a->mailbox) : 0);
		mime_buf_putc(out, ' ');
		mime_imap_nstring(out, a->host, a->host ? strlen(a->host) : 0);
		mime_buf_putc(out, ')');
	}
	mime_buf_putc(out, ')');
}

static bool parse_field(const struct mime_part *msg, enum mime_field f, struct mime_address **list_r)
{
	*list_r = NULL;
	if (msg->field[f] == NULL)
		return true;
	return mime_address_parse(msg->field[f], msg->field_len[f], list_r) == 0;
}

char *mime_envelope_imap(const struct mime_part *msg, size_t *len_r)
{
	struct mime_buf out = { 0 };
	static const enum mime_field addr_fields[] = {
		MIME_FIELD_FROM, MIME_FIELD_SENDER, MIME_FIELD_REPLY_TO,
		MIME_FIELD_TO,   MIME_FIELD_CC,     MIME_FIELD_BCC,
	};
	struct mime_address *lists[6] = { NULL };
	bool ok = true;
	for (unsigned int i = 0; i < 6; i++)
		ok = parse_field(msg, addr_fields[i], &lists[i]) && ok;
	if (!ok)
		goto out;

	mime_buf_putc(&out, '(');
	mime_imap_nstring(&out, msg->field[MIME_FIELD_DATE], msg->field_len[MIME_FIELD_DATE]);
	mime_buf_putc(&out, ' ');
	if (msg->field[MIME_FIELD_SUBJECT] == NULL)
		mime_buf_puts(&out, "NIL");
	else
		mime_imap_string_human(&out, msg->field[MIME_FIELD_SUBJECT],
				       msg->field_len[MIME_FIELD_SUBJECT]);
	for (unsigned int i = 0; i < 6; i++) {
		const struct mime_address *l = lists[i];
		if (l == NULL && (i == 1 || i == 2))
			l = lists[0]; /* RFC 9051 7.5.2: Sender, Reply-To default to From */
		mime_buf_putc(&out, ' ');
		write_addresses(&out, NULL, 0, l);
	}
	mime_buf_putc(&out, ' ');
	mime_imap_nstring(&out, msg->field[MIME_FIELD_IN_REPLY_TO],
			  msg->field_len[MIME_FIELD_IN_REPLY_TO]);
	mime_buf_putc(&out, ' ');
	mime_imap_nstring(&out, msg->field[MIME_FIELD_MESSAGE_ID],
			  msg->field_len[MIME_FIELD_MESSAGE_ID]);
	mime_buf_putc(&out, ')');
out:
	for (unsigned int i = 0; i < 6; i++)
		mime_address_free(&lists[i]);
	if (!ok) {
		mime_buf_free(&out);
		return NULL;
	}
	return mime_buf_steal(&out, len_r);
}
