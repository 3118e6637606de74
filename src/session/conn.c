/* conn.c: client connections over libevent bufferevents; see conn.h. */
#include "session/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/ssl.h>

/* Input beyond this is not read from the socket until the session consumes
 * some: the bound on per-connection input memory. */
#define CONN_INPUT_HIGH (256 * 1024)

struct conn {
	struct event_base *base;
	struct bufferevent *bev;
	struct event *kick;   /* runs input() for data already buffered */
	struct event *finish; /* frees the conn outside any callback */
	struct event *linger; /* after STARTTLS: waits for the socket to take the last bytes */
	int linger_ticks;
	const struct conn_handler *h;
	void *ctx;
	char ip[INET6_ADDRSTRLEN];
	int local;
	int tls;
	int paused;
	int closing;
	int done;
	size_t in_seen;
	unsigned long long bytes_in;
	unsigned long long bytes_out;
};

static void finish_now(struct conn *c)
{
	if (c->done)
		return;
	c->done = 1;
	/* A lingering close keeps writing (the filter flushes into the socket). */
	bufferevent_disable(c->bev, c->closing && c->linger != NULL ? EV_READ : EV_READ | EV_WRITE);
	event_active(c->finish, 0, 0);
}

/* Bytes still on their way to the socket. After STARTTLS the conn is a
 * filter: what left its output may still wait, encrypted, in the socket
 * bufferevent beneath it. */
static size_t unsent(const struct conn *c)
{
	struct bufferevent *under = bufferevent_get_underlying(c->bev);
	size_t n = evbuffer_get_length(bufferevent_get_output(c->bev));
	if (under != NULL)
		n += evbuffer_get_length(bufferevent_get_output(under));
	return n;
}

static void finish_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	(void)fd;
	(void)what;
	if (c->closing && c->linger != NULL && unsent(c) > 0 && c->linger_ticks++ < 500) {
		/* a graceful close: give the socket up to 5 s to take the rest */
		struct timeval tv = { 0, 10000 };
		event_add(c->linger, &tv);
		return;
	}
	if (c->h != NULL && c->h->closed != NULL)
		c->h->closed(c->ctx);
	bufferevent_free(c->bev);
	event_free(c->kick);
	event_free(c->finish);
	if (c->linger != NULL)
		event_free(c->linger);
	free(c);
}

static void run_input(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t len = evbuffer_get_length(in);
	if (len > c->in_seen)
		c->bytes_in += len - c->in_seen;
	if (!c->paused && !c->closing && !c->done && c->h != NULL && len > 0)
		c->h->input(c->ctx);
	if (!c->done)
		c->in_seen = evbuffer_get_length(bufferevent_get_input(c->bev));
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	run_input(arg);
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	run_input(arg);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	size_t pending = evbuffer_get_length(bufferevent_get_output(bev));
	if (c->closing) {
		if (pending == 0)
			finish_now(c);
		return;
	}
	if (c->h != NULL && c->h->drained != NULL && !c->done)
		c->h->drained(c->ctx);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	(void)bev;
	if (what & BEV_EVENT_CONNECTED)
		return;
	if ((what & BEV_EVENT_TIMEOUT) && !c->closing && c->h != NULL && c->h->timeout != NULL) {
		bufferevent_enable(c->bev, EV_READ);
		c->h->timeout(c->ctx);
		return;
	}
	finish_now(c);
}

static void setup_bev(struct conn *c)
{
	bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, CONN_INPUT_HIGH);
	bufferevent_setwatermark(c->bev, EV_WRITE, CONN_OUTPUT_LOW, 0);
	bufferevent_enable(c->bev, c->paused ? EV_WRITE : EV_READ | EV_WRITE);
}

static void peer_name(struct conn *c, const struct sockaddr *sa, socklen_t len)
{
	strcpy(c->ip, "unknown");
	if (sa == NULL || len == 0)
		return;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
		inet_ntop(AF_INET, &in->sin_addr, c->ip, sizeof(c->ip));
		c->local = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, c->ip, sizeof(c->ip));
		c->local = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			c->local = in6->sin6_addr.s6_addr[12] == 127;
			inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], c->ip, sizeof(c->ip));
		}
	} else if (sa->sa_family == AF_UNIX) {
		strcpy(c->ip, "unix");
		c->local = 1;
	}
}

struct conn *conn_new(struct event_base *base, int fd, struct ssl_ctx_st *tls,
		      const struct sockaddr *peer, socklen_t peerlen)
{
	struct conn *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(fd);
		return NULL;
	}
	c->base = base;
	peer_name(c, peer, peerlen);
	evutil_make_socket_nonblocking(fd);
	if (peer != NULL && (peer->sa_family == AF_INET || peer->sa_family == AF_INET6)) {
		/* Replies are written whole; Nagle would only hold the last
		 * segment back for the peer's delayed ACK (~40 ms). */
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	if (tls != NULL) {
		SSL *ssl = SSL_new(tls);
		c->bev = ssl ? bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
							      BEV_OPT_CLOSE_ON_FREE)
			     : NULL;
		c->tls = 1;
	} else {
		c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	}
	c->kick = event_new(base, -1, 0, kick_cb, c);
	c->finish = event_new(base, -1, 0, finish_cb, c);
	if (c->bev == NULL || c->kick == NULL || c->finish == NULL) {
		if (c->bev != NULL)
			bufferevent_free(c->bev);
		else
			close(fd);
		if (c->kick)
			event_free(c->kick);
		if (c->finish)
			event_free(c->finish);
		free(c);
		return NULL;
	}
	setup_bev(c);
	return c;
}

void conn_set_handler(struct conn *c, const struct conn_handler *h, void *ctx)
{
	c->h = h;
	c->ctx = ctx;
}

struct evbuffer *conn_input(struct conn *c)
{
	return bufferevent_get_input(c->bev);
}

void conn_pause_input(struct conn *c)
{
	c->paused = 1;
	bufferevent_disable(c->bev, EV_READ);
}

void conn_resume_input(struct conn *c)
{
	if (c->done || c->closing)
		return;
	c->paused = 0;
	bufferevent_enable(c->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
		event_active(c->kick, 0, 0);
}

void conn_write(struct conn *c, const void *data, size_t len)
{
	if (c->done || c->closing)
		return;
	bufferevent_write(c->bev, data, len);
	c->bytes_out += len;
}

void conn_puts(struct conn *c, const char *s)
{
	conn_write(c, s, strlen(s));
}

void conn_printf(struct conn *c, const char *fmt, ...)
{
	va_list ap;
	if (c->done || c->closing)
		return;
	va_start(ap, fmt);
	int n = evbuffer_add_vprintf(bufferevent_get_output(c->bev), fmt, ap);
	va_end(ap);
	if (n > 0)
		c->bytes_out += (unsigned long long)n;
}

int conn_send_file(struct conn *c, int fd, off_t offset, size_t len)
{
	if (c->done || c->closing) {
		close(fd);
		return -1;
	}
	if (len == 0) {
		close(fd);
		return 0;
	}
	if (evbuffer_add_file(bufferevent_get_output(c->bev), fd, offset, (ev_off_t)len) < 0)
		return -1; /* libevent closed fd */
	c->bytes_out += len;
	return 0;
}

size_t conn_output_pending(const struct conn *c)
{
	return evbuffer_get_length(bufferevent_get_output(c->bev));
}

void conn_set_idle_timeout(struct conn *c, unsigned seconds)
{
	struct timeval tv = { (time_t)seconds, 0 };
	bufferevent_set_timeouts(c->bev, seconds ? &tv : NULL, NULL);
}

int conn_starttls(struct conn *c, struct ssl_ctx_st *tls)
{
	if (tls == NULL || c->tls)
		return -1;
	SSL *ssl = SSL_new(tls);
	if (ssl == NULL)
		return -1;
	/* CVE-2011-0411: nothing sent before the handshake may be read as if it
	 * came through TLS. */
	struct evbuffer *in = bufferevent_get_input(c->bev);
	evbuffer_drain(in, evbuffer_get_length(in));
	c->in_seen = 0;
	struct bufferevent *under = c->bev;
	struct bufferevent *filter = bufferevent_openssl_filter_new(
		c->base, under, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (filter == NULL) {
		SSL_free(ssl);
		return -1;
	}
	c->bev = filter;
	c->tls = 1;
	c->linger = evtimer_new(c->base, finish_cb, c);
	setup_bev(c);
	return 0;
}

int conn_is_tls(const struct conn *c)
{
	return c->tls;
}

int conn_is_local(const struct conn *c)
{
	return c->local;
}

const char *conn_peer_ip(const struct conn *c)
{
	return c->ip;
}

void conn_byte_counts(const struct conn *c, unsigned long long *in_r, unsigned long long *out_r)
{
	*in_r = c->bytes_in;
	*out_r = c->bytes_out;
}

void conn_close(struct conn *c)
{
	if (c->closing || c->done)
		return;
	c->closing = 1;
	bufferevent_disable(c->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
		finish_now(c);
		return;
	}
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
}

void conn_abort(struct conn *c)
{
	finish_now(c);
}
