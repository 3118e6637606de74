/*
 * imapc_conn.h: a small blocking IMAP client connection for the online
 * import (import_imap.c): TCP with timeouts, OpenSSL for implicit TLS and
 * STARTTLS, and commands run to their tagged reply.
 *
 * Design note. Everything blocks, but nothing waits for ever: the socket is
 * non-blocking and every wait is a poll() of at most IMAPC_TIMEOUT_MS, after
 * which the operation fails with ERR_TEMP ("timed out"). TLS certificates
 * are verified against the system's CAs and the host name unless the owner
 * asked for no verification (SOURCE ?tls-verify=no). Responses are parsed by
 * imapc_resp.h; untagged ones go to a callback while a command runs, and
 * literal hooks set on imapc_conn_resp() stay in force, so a FETCH body can
 * stream straight through.
 *
 * A command's text is built by the caller with the tag left out; strings
 * are appended with imapc_conn_astring(), which quotes them or, when a
 * quoted string cannot carry them, writes a literal "{N}\r\n" followed by
 * the bytes. imapc_conn_cmd() sends the text up to each literal, waits for
 * the server's "+" and sends the rest.
 */
#ifndef MAILROOM_IMAPC_CONN_H
#define MAILROOM_IMAPC_CONN_H

#include <stddef.h>

#include "import/imapc_resp.h"
#include "lib/buf.h"
#include "lib/error.h"

#define IMAPC_TIMEOUT_MS 60000

struct imapc_conn;

enum imapc_status {
	IMAPC_OK,
	IMAPC_NO,
	IMAPC_BAD,
};

/* An untagged response while a command runs: 0, or -1 to stop (the
 * command returns -1; the callback keeps the reason). */
typedef int imapc_untagged_fn(void *ctx, const struct imapc_resp *r);

/* Connect to host:port (IPv4, IPv6, "[::1]"); with tls, start TLS at once
 * (imaps). tls_verify: check the certificate chain and the host name.
 * Returns 0 and a connection the caller frees, or -1 with err (ERR_TEMP:
 * unreachable, timed out; ERR_INVALID: the certificate was refused, the
 * host is unknown). */
int imapc_conn_open(const char *host, unsigned port, int tls, int tls_verify,
		    struct imapc_conn **c_r, struct error *err);
void imapc_conn_free(struct imapc_conn **c);

/* Start TLS on the open connection (after STARTTLS's OK). */
int imapc_conn_starttls(struct imapc_conn *c, struct error *err);
int imapc_conn_is_tls(const struct imapc_conn *c);
/* 1 if the peer is a loopback address (127.0.0.0/8, ::1). */
int imapc_conn_is_loopback(const struct imapc_conn *c);

/* The response parser: its hooks may be set; after imapc_conn_read() or a
 * command it holds the last response read. */
struct imapc_resp *imapc_conn_resp(struct imapc_conn *c);

/* Read one whole response. 0, or -1 with err (ERR_TEMP: closed, timed out;
 * ERR_INVALID: the server broke the protocol). */
int imapc_conn_read(struct imapc_conn *c, struct error *err);

/* Append s[0..len) to a command as a quoted string or a literal. utf8: the
 * server accepts UTF-8 in quoted strings (UTF8=ACCEPT enabled). */
void imapc_conn_astring(struct buf *cmd, const char *s, size_t len, int utf8);

/* Run a command: send "TAG " text CRLF (literals as described above), pass
 * every untagged response to fn, and read up to the tagged reply. cont, if
 * not NULL, is the line sent in answer to the first continuation request
 * that is not for a literal (AUTHENTICATE); later ones are cancelled ("*").
 * Returns IMAPC_OK/NO/BAD (the tagged reply stays readable in
 * imapc_conn_resp()), or -1 with err: the connection failed (ERR_TEMP), the
 * server said BYE (ERR_TEMP), broke the protocol (ERR_INVALID), or fn or a
 * literal hook stopped it (err untouched by fn, a generic text for a hook:
 * their owner keeps the reason). */
int imapc_conn_cmd(struct imapc_conn *c, const char *text, const char *cont, imapc_untagged_fn *fn,
		   void *ctx, struct error *err);

/* The text of the last tagged or status reply ("" if none), for messages. */
const char *imapc_conn_reply_text(struct imapc_conn *c);
/* The response code atom of the last tagged reply ("AUTHENTICATIONFAILED"),
 * or "" if it had none. */
const char *imapc_conn_reply_code(struct imapc_conn *c);

#endif
