/*
 * imapc_conn.c: the IMAP import client's connection (see imapc_conn.h):
 * socket, TLS, timeouts, reading responses and running commands.
 */
#include "import/imapc_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define RBUF_SIZE 65536

struct imapc_conn {
	int fd;
	SSL_CTX *ssl_ctx;
	SSL *ssl;
	int tls_verify;
	char host[256];
	struct sockaddr_storage peer;
	unsigned tagn;
	char tag[16];
	char rbuf[RBUF_SIZE];
	size_t rpos, rlen;
	struct imapc_resp resp;
	int have_resp;
};

/* ---- bytes ------------------------------------------------------------------ */

static int wait_io(struct imapc_conn *c, short events, struct error *err)
{
	struct pollfd p = {.fd = c->fd, .events = events};
	for (;;) {
		int n = poll(&p, 1, IMAPC_TIMEOUT_MS);
		if (n > 0)
			return 0;
		if (n == 0) {
			error_set(err, ERR_TEMP, "IMAP server %s: no answer for %d s", c->host,
				  IMAPC_TIMEOUT_MS / 1000);
			return -1;
		}
		if (errno != EINTR) {
			error_errno(err, "poll");
			return -1;
		}
	}
}

static void ssl_error(struct imapc_conn *c, const char *what, struct error *err)
{
	unsigned long e = ERR_get_error();
	char buf[160] = "";
	if (e != 0)
		ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	error_set(err, ERR_TEMP, "IMAP server %s: TLS %s failed%s%s", c->host, what,
		  buf[0] ? ": " : "", buf);
}

/* Returns bytes read, 0 at the end of the stream, -1 on error. */
static long raw_read(struct imapc_conn *c, char *buf, size_t len, struct error *err)
{
	for (;;) {
		if (c->ssl != NULL) {
			ERR_clear_error();
			errno = 0;
			int n = SSL_read(c->ssl, buf, (int)len);
			if (n > 0)
				return n;
			int e = SSL_get_error(c->ssl, n);
			if (e == SSL_ERROR_ZERO_RETURN)
				return 0;
			if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && errno == 0)
				return 0; /* closed without close_notify */
			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
				ssl_error(c, "read", err);
				return -1;
			}
			if (wait_io(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, err) < 0)
				return -1;
			continue;
		}
		ssize_t n = read(c->fd, buf, len);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			error_set(err, ERR_TEMP, "IMAP server %s: read: %s", c->host,
				  strerror(errno));
			return -1;
		}
		if (wait_io(c, POLLIN, err) < 0)
			return -1;
	}
}

static int raw_write(struct imapc_conn *c, const char *data, size_t len, struct error *err)
{
	while (len > 0) {
		if (c->ssl != NULL) {
			ERR_clear_error();
			int n = SSL_write(c->ssl, data, (int)(len > 65536 ? 65536 : len));
			if (n > 0) {
				data += n;
				len -= (size_t)n;
				continue;
			}
			int e = SSL_get_error(c->ssl, n);
			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
				ssl_error(c, "write", err);
				return -1;
			}
			if (wait_io(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, err) < 0)
				return -1;
			continue;
		}
		ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
		if (n > 0) {
			data += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			error_set(err, ERR_TEMP, "IMAP server %s: write: %s", c->host,
				  strerror(errno));
			return -1;
		}
		if (wait_io(c, POLLOUT, err) < 0)
			return -1;
	}
	return 0;
}

/* ---- connecting ------------------------------------------------------------- */

static int connect_one(struct imapc_conn *c, const struct addrinfo *ai, struct error *err)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			ai->ai_protocol);
	if (fd < 0) {
		error_errno(err, "socket");
		return -1;
	}
	c->fd = fd;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		if (errno != EINPROGRESS) {
			error_set(err, ERR_TEMP, "IMAP server %s: connect: %s", c->host,
				  strerror(errno));
			goto fail;
		}
		if (wait_io(c, POLLOUT, err) < 0)
			goto fail;
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr != 0) {
			error_set(err, ERR_TEMP, "IMAP server %s: connect: %s", c->host,
				  strerror(soerr ? soerr : errno));
			goto fail;
		}
	}
	memcpy(&c->peer, ai->ai_addr, ai->ai_addrlen);
	return 0;
fail:
	close(fd);
	c->fd = -1;
	return -1;
}

static int tcp_connect(struct imapc_conn *c, unsigned port, struct error *err)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	char portstr[16];
	snprintf(portstr, sizeof(portstr), "%u", port);
	int rc = getaddrinfo(c->host, portstr, &hints, &res);
	if (rc != 0) {
		error_set(err, rc == EAI_AGAIN ? ERR_TEMP : ERR_INVALID, "IMAP server %s: %s",
			  c->host, gai_strerror(rc));
		return -1;
	}
	rc = -1;
	for (const struct addrinfo *ai = res; ai != NULL && rc < 0; ai = ai->ai_next)
		if (ai->ai_addrlen <= sizeof(c->peer))
			rc = connect_one(c, ai, err);
	freeaddrinfo(res);
	return rc;
}

static int host_is_ip(const char *host)
{
	unsigned char tmp[16];
	return inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1;
}

int imapc_conn_starttls(struct imapc_conn *c, struct error *err)
{
	if (c->rpos < c->rlen) {
		/* bytes that came in clear after the OK would pass for protected
		 * ones (the STARTTLS injection of CVE-2011-0411 and kin) */
		error_set(err, ERR_INVALID, "IMAP server %s sent data in clear before TLS started",
			  c->host);
		return -1;
	}
	c->ssl_ctx = SSL_CTX_new(TLS_client_method());
	if (c->ssl_ctx == NULL)
		goto ssl_fail;
	SSL_CTX_set_min_proto_version(c->ssl_ctx, TLS1_2_VERSION);
	if (c->tls_verify) {
		SSL_CTX_set_verify(c->ssl_ctx, SSL_VERIFY_PEER, NULL);
		if (SSL_CTX_set_default_verify_paths(c->ssl_ctx) != 1)
			goto ssl_fail;
	}
	c->ssl = SSL_new(c->ssl_ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
		goto ssl_fail;
	if (host_is_ip(c->host)) {
		if (c->tls_verify &&
		    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->host) != 1)
			goto ssl_fail;
	} else {
		SSL_set_tlsext_host_name(c->ssl, c->host);
		if (c->tls_verify && SSL_set1_host(c->ssl, c->host) != 1)
			goto ssl_fail;
	}
	for (;;) {
		ERR_clear_error();
		int n = SSL_connect(c->ssl);
		if (n == 1)
			return 0;
		int e = SSL_get_error(c->ssl, n);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			if (wait_io(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, err) < 0)
				return -1;
			continue;
		}
		long v = SSL_get_verify_result(c->ssl);
		if (v != X509_V_OK) {
			ERR_clear_error();
			error_set(
				err, ERR_INVALID,
				"IMAP server %s: TLS certificate refused: %s (to accept it anyway, "
				"add ?tls-verify=no to the source)",
				c->host, X509_verify_cert_error_string(v));
			return -1;
		}
		ssl_error(c, "handshake", err);
		return -1;
	}
ssl_fail:
	ssl_error(c, "setup", err);
	return -1;
}

int imapc_conn_open(const char *host, unsigned port, int tls, int tls_verify,
		    struct imapc_conn **c_r, struct error *err)
{
	struct imapc_conn *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		error_set(err, ERR_TEMP, "out of memory");
		return -1;
	}
	c->fd = -1;
	c->tls_verify = tls_verify;
	imapc_resp_init(&c->resp);
	size_t hl = strlen(host);
	if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
		host++;
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof(c->host)) {
		error_set(err, ERR_INVALID, "bad IMAP host name");
		goto fail;
	}
	memcpy(c->host, host, hl);
	if (tcp_connect(c, port ? port : (tls ? 993 : 143), err) < 0)
		goto fail;
	if (tls && imapc_conn_starttls(c, err) < 0)
		goto fail;
	*c_r = c;
	return 0;
fail:
	imapc_conn_free(&c);
	return -1;
}

void imapc_conn_free(struct imapc_conn **cp)
{
	struct imapc_conn *c = *cp;
	if (c == NULL)
		return;
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	if (c->ssl_ctx != NULL)
		SSL_CTX_free(c->ssl_ctx);
	if (c->fd >= 0)
		close(c->fd);
	imapc_resp_free(&c->resp);
	free(c);
	*cp = NULL;
}

int imapc_conn_is_tls(const struct imapc_conn *c)
{
	return c->ssl != NULL;
}

int imapc_conn_is_loopback(const struct imapc_conn *c)
{
	if (c->peer.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&c->peer;
		return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
	}
	if (c->peer.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&c->peer;
		return IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
	}
	return 0;
}

struct imapc_resp *imapc_conn_resp(struct imapc_conn *c)
{
	return &c->resp;
}

/* ---- responses -------------------------------------------------------------- */

int imapc_conn_read(struct imapc_conn *c, struct error *err)
{
	imapc_resp_reset(&c->resp);
	c->have_resp = 0;
	for (;;) {
		if (c->rpos < c->rlen) {
			size_t used = 0;
			enum imapc_resp_result r = imapc_resp_feed(&c->resp, c->rbuf + c->rpos,
								   c->rlen - c->rpos, &used, err);
			if (r == IMAPC_RESP_ERROR)
				return -1;
			c->rpos += used;
			if (r == IMAPC_RESP_DONE) {
				c->have_resp = 1;
				return 0;
			}
		}
		c->rpos = c->rlen = 0;
		long n = raw_read(c, c->rbuf, sizeof(c->rbuf), err);
		if (n < 0)
			return -1;
		if (n == 0) {
			error_set(err, ERR_TEMP, "IMAP server %s closed the connection", c->host);
			return -1;
		}
		c->rlen = (size_t)n;
	}
}

void imapc_conn_astring(struct buf *cmd, const char *s, size_t len, int utf8)
{
	int quote = len < 1024;
	for (size_t i = 0; i < len && quote; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '\0' || ch == '\r' || ch == '\n' || (ch >= 0x80 && !utf8))
			quote = 0;
	}
	if (!quote) {
		buf_printf(cmd, "{%zu}\r\n", len);
		buf_append(cmd, s, len);
		return;
	}
	buf_putc(cmd, '"');
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			buf_putc(cmd, '\\');
		buf_putc(cmd, s[i]);
	}
	buf_putc(cmd, '"');
}

/* The last tagged reply's status, code and text. */
static int tagged_status(struct imapc_conn *c)
{
	if (imapc_resp_is(&c->resp, 0, "OK"))
		return IMAPC_OK;
	if (imapc_resp_is(&c->resp, 0, "NO"))
		return IMAPC_NO;
	return IMAPC_BAD;
}

const char *imapc_conn_reply_text(struct imapc_conn *c)
{
	if (!c->have_resp)
		return "";
	size_t n = imapc_resp_ntok(&c->resp);
	for (size_t i = 0; i < n; i++)
		if (imapc_resp_tok(&c->resp, i)->type == IMAPC_TOK_TEXT)
			return imapc_resp_str(&c->resp, i);
	return "";
}

const char *imapc_conn_reply_code(struct imapc_conn *c)
{
	const struct imapc_tok *t = imapc_resp_tok(&c->resp, 1);
	if (!c->have_resp || t == NULL || t->type != IMAPC_TOK_CODE || t->end <= 2)
		return "";
	return imapc_resp_str(&c->resp, 2);
}

/* Reads until a continuation request ("+": returns 1) or this command's
 * tagged reply (returns 0); untagged responses go to fn. */
static int read_until(struct imapc_conn *c, imapc_untagged_fn *fn, void *ctx, struct error *err)
{
	for (;;) {
		if (imapc_conn_read(c, err) < 0)
			return -1;
		const char *tag = imapc_resp_tag(&c->resp);
		if (strcmp(tag, "+") == 0)
			return 1;
		if (strcmp(tag, c->tag) == 0)
			return 0;
		if (strcmp(tag, "*") != 0) {
			error_set(err, ERR_INVALID,
				  "IMAP server %s: reply with an unknown tag \"%s\"", c->host, tag);
			return -1;
		}
		if (imapc_resp_is(&c->resp, 0, "BYE")) {
			error_set(err, ERR_TEMP, "IMAP server %s closed the session: %s", c->host,
				  imapc_conn_reply_text(c));
			return -1;
		}
		if (fn != NULL && fn(ctx, &c->resp) < 0)
			return -1;
	}
}

/* Length of the part of s up to and including the next literal's CRLF
 * ("...{N}\r\n"), or of all of s; *lit_r gets N (0: no literal). */
static size_t next_part(const char *s, size_t len, size_t *lit_r)
{
	*lit_r = 0;
	const char *crlf = memmem(s, len, "\r\n", 2);
	if (crlf == NULL)
		return len;
	const char *p = crlf;
	while (p > s && p[-1] != '{')
		p--;
	*lit_r = strtoul(p, NULL, 10);
	return (size_t)(crlf - s) + 2;
}

int imapc_conn_cmd(struct imapc_conn *c, const char *text, const char *cont, imapc_untagged_fn *fn,
		   void *ctx, struct error *err)
{
	snprintf(c->tag, sizeof(c->tag), "m%u", ++c->tagn);
	if (raw_write(c, c->tag, strlen(c->tag), err) < 0 || raw_write(c, " ", 1, err) < 0)
		return -1;
	size_t len = strlen(text), pos = 0;
	/* text is a C string: a literal holding NUL cannot be sent, and
	 * imapc_conn_astring never makes one (names hold no NUL) */
	while (pos < len) {
		size_t lit;
		size_t n = next_part(text + pos, len - pos, &lit);
		if (raw_write(c, text + pos, n, err) < 0)
			return -1;
		pos += n;
		if (n >= 2 && text[pos - 1] == '\n') {
			int r = read_until(c, fn, ctx, err);
			if (r < 0)
				return -1;
			if (r == 0)
				return tagged_status(c);
			if (raw_write(c, text + pos, lit, err) < 0)
				return -1;
			pos += lit;
		}
	}
	if (raw_write(c, "\r\n", 2, err) < 0)
		return -1;
	for (;;) {
		int r = read_until(c, fn, ctx, err);
		if (r < 0)
			return -1;
		if (r == 0)
			return tagged_status(c);
		const char *line = cont != NULL ? cont : "*";
		cont = NULL;
		if (raw_write(c, line, strlen(line), err) < 0 || raw_write(c, "\r\n", 2, err) < 0)
			return -1;
	}
}
