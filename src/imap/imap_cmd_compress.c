/*
 * imap_cmd_compress.c: COMPRESS DEFLATE (RFC 4978): after the tagged OK,
 * everything in both directions is raw deflate (src/session/conn.c does
 * the compression; see conn.h).
 *
 * Runs when logged in (RFC 4978 3: authenticated or selected state), so
 * always after STARTTLS if there was one; TLS cannot start afterwards.
 */
#include "imap/imap_int.h"

#include <strings.h>

#include "session/conn.h"

static int cmd_compress(struct imap_session *s, const struct imap_command *cmd)
{
	if (cmd->argc != 1 || cmd->args[0].type != IMAP_ARG_ATOM) {
		imap_send_tagged(s, cmd, "BAD", "Syntax: COMPRESS DEFLATE");
		return 0;
	}
	/* RFC 4978 3: a mechanism we do not know is BAD. */
	if (strcasecmp(cmd->args[0].str, "DEFLATE") != 0) {
		imap_send_tagged(s, cmd, "BAD", "Unknown compression mechanism");
		return 0;
	}
	/* RFC 4978 3, RFC 5530 3: NO [COMPRESSIONACTIVE] if already on. */
	if (conn_is_compressed(s->base.conn)) {
		imap_send_tagged(s, cmd, "NO", "[COMPRESSIONACTIVE] DEFLATE active");
		return 0;
	}
	imap_send_tagged(s, cmd, "OK", "DEFLATE active");
	/* The OK is queued beneath the filter and goes out uncompressed. */
	if (conn_compress(s->base.conn) < 0)
		s->base.closing = true; /* the client now talks deflate: cannot go on */
	return 0;
}

static const struct imap_cmd_def rows[] = {
	{ { "COMPRESS", IMAP_IN_AUTH }, cmd_compress, 0 },
};
const struct imap_cmd_family imap_cmd_compress = { rows, sizeof(rows) / sizeof(rows[0]) };
