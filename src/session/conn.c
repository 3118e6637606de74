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
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <zlib.h>

/* Input beyond this is not read from the socket until the session consumes
 * some: the bound on per-connection input memory. */
#define CONN_INPUT_HIGH (256 * 1024)

/* After STARTTLS the TLS filter encrypts into the socket bufferevent
 * beneath it; without a high-water mark there, the filter would pass on
 * everything at once and the session would never see backpressure. */
#define CONN_UNDER_HIGH (64 * 1024)

/* A graceful close waits this many 10 ms ticks at most for the socket to
 * take the last bytes and the TLS close_notify. */
#define CONN_LINGER_TICKS 500

/* A closing connection (conn_close with output queued) whose client takes
 * none of it for this long is dropped, whatever the write timeout: the
 * client has nothing more to ask, and a session cut off for not reading
 * (the output cap) must not keep its queue for the whole timeout. */
#define CONN_CLOSE_STALL_MS 5000

struct conn {
	struct event_base *base;
	struct bufferevent *bev;
	struct event *kick;   /* runs input() for data already buffered */
	struct event *finish; /* frees the conn outside any callback */
	struct event *linger; /* a graceful close waits for the socket to take the last bytes */
	struct event *stall;  /* the write timeout (conn_set_write_timeout) */
	struct evbuffer_cb_entry *out_cb;
	struct timespec progress; /* output last moved (or became pending) */
	unsigned write_timeout;  /* seconds; 0: none */
	int linger_ticks;
	const struct conn_handler *h;
	void *ctx;
	char ip[INET6_ADDRSTRLEN];
	int local;
	int tls;
	int paused;
	int closing;
	int aborted; /* no graceful end: no linger, no close_notify */
	int shut;    /* close_notify sent (or not to be sent) */
	int done;
	int compressed;
	z_stream *zout; /* COMPRESS=DEFLATE (conn_compress): ours */
	z_stream *zin;	/* the client's */
	size_t in_seen;
	unsigned long long bytes_in;
	unsigned long long bytes_out;
};

/* A graceful close: conn_close, not an error, an abort or a stall. Only TLS
 * conns linger: a plain socket has the last bytes once the output is empty. */
static int graceful(const struct conn *c)
{
	return c->closing && !c->aborted && c->linger != NULL;
}

static void finish_now(struct conn *c)
{
	if (c->done)
		return;
	c->done = 1;
	/* A lingering close keeps writing (the filter flushes into the socket). */
	bufferevent_disable(c->bev, graceful(c) ? EV_READ : EV_READ | EV_WRITE);
	event_active(c->finish, 0, 0);
}

/* Bytes still on their way to the socket. After STARTTLS the conn is a
 * filter: what left its output may still wait, encrypted, in the socket
 * bufferevent beneath it. */
static size_t unsent(const struct conn *c)
{
	size_t n = 0;
	for (struct bufferevent *b = c->bev; b != NULL; b = bufferevent_get_underlying(b))
		n += evbuffer_get_length(bufferevent_get_output(b));
	return n;
}

/* The TLS layer's SSL, wherever it is in the stack (beneath compression
 * after COMPRESS), or NULL. */
static SSL *conn_ssl(const struct conn *c)
{
	if (!c->tls)
		return NULL;
	for (struct bufferevent *b = c->bev; b != NULL; b = bufferevent_get_underlying(b)) {
		SSL *ssl = bufferevent_openssl_get_ssl(b);
		if (ssl != NULL)
			return ssl;
	}
	return NULL;
}

/* Send the TLS close_notify alert (RFC 8446 6.1: each party sends one
 * before closing its write side; the closer need not wait for the peer's,
 * so ours goes out and the socket closes). libevent 2.1 frees the SSL
 * without SSL_shutdown, so without this a client sees a truncation
 * ("EOF occurred in violation of protocol"). Dovecot does the same on
 * close (ssl-iostream: SSL_shutdown once the handshake is done). Returns 1
 * when done (sent, or nothing to send), 0 to try again once the socket
 * takes more. */
static int close_notify(struct conn *c)
{
	SSL *ssl = conn_ssl(c);
	if (ssl == NULL || !SSL_is_init_finished(ssl) || c->shut)
		return 1;
	int r = SSL_shutdown(ssl);
	int e = r < 0 ? SSL_get_error(ssl, r) : SSL_ERROR_NONE;
	ERR_clear_error(); /* the queue is per thread: leave it clean for the next conn */
	if (e == SSL_ERROR_WANT_WRITE)
		return 0;
	c->shut = 1;
	return 1;
}

static void compress_free(struct conn *c)
{
	if (c->zout != NULL) {
		deflateEnd(c->zout);
		free(c->zout);
	}
	if (c->zin != NULL) {
		inflateEnd(c->zin);
		free(c->zin);
	}
}

static void finish_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	(void)fd;
	(void)what;
	if (graceful(c) && c->linger_ticks < CONN_LINGER_TICKS) {
		/* give the socket up to 5 s to take the rest and the alert */
		int wait = unsent(c) > 0 || !close_notify(c) || unsent(c) > 0;
		struct bufferevent *under = bufferevent_get_underlying(c->bev);
		for (; wait && under != NULL; under = bufferevent_get_underlying(under))
			bufferevent_enable(under, EV_WRITE); /* stopped by libevent at EOF */
		if (wait) {
			struct timeval tv = { 0, 10000 };
			c->linger_ticks++;
			event_add(c->linger, &tv);
			return;
		}
	}
	if (c->h != NULL && c->h->closed != NULL)
		c->h->closed(c->ctx);
	evbuffer_remove_cb_entry(bufferevent_get_output(c->bev), c->out_cb);
	bufferevent_free(c->bev);
	event_free(c->kick);
	event_free(c->finish);
	event_free(c->stall);
	if (c->linger != NULL)
		event_free(c->linger);
	compress_free(c);
	free(c);
}

/* ---- the write timeout ----------------------------------------------------
 * The clock runs while output is pending: it starts when the output stops
 * being empty and restarts whenever some of it leaves (into the socket, or
 * into the TLS layer, which passes on only what the socket takes). New
 * output does not restart it: a client that reads nothing is cut off after
 * the timeout however much the session keeps writing. */

static long long ms_since(const struct timespec *t)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long long)(now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

static void stall_arm(struct conn *c, long long ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	evtimer_add(c->stall, &tv);
}

/* How long output may wait without progress; 0: for ever. */
static long long stall_limit_ms(const struct conn *c)
{
	long long ms = (long long)c->write_timeout * 1000;
	if (c->closing && (ms == 0 || ms > CONN_CLOSE_STALL_MS))
		ms = CONN_CLOSE_STALL_MS;
	return ms;
}

/* (Re)start the clock's timer for what is left of the limit. */
static void stall_rearm(struct conn *c)
{
	long long limit = stall_limit_ms(c), idle = ms_since(&c->progress);
	evtimer_del(c->stall);
	if (limit > 0 && evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
		stall_arm(c, idle < limit ? limit - idle : 0);
}

static void output_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct conn *c = arg;
	(void)buf;
	if (info->n_deleted > 0 || info->orig_size == 0)
		clock_gettime(CLOCK_MONOTONIC, &c->progress);
	if (info->n_added > 0 && stall_limit_ms(c) > 0 && !evtimer_pending(c->stall, NULL))
		stall_arm(c, stall_limit_ms(c));
}

static void stall_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	(void)fd;
	(void)what;
	long long limit = stall_limit_ms(c), idle = ms_since(&c->progress);
	if (c->done || limit == 0 || evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		return; /* re-armed by the next output */
	if (idle < limit) {
		stall_arm(c, limit - idle);
		return;
	}
	if (c->h != NULL && c->h->stalled != NULL && !c->closing)
		c->h->stalled(c->ctx);
	c->aborted = 1;
	finish_now(c);
}

/* Compressed input the filter left beneath (the session's input was full,
 * or paused) is not offered again until more arrives: offer it now. */
static void inflate_more(struct conn *c)
{
	struct bufferevent *under = c->compressed ? bufferevent_get_underlying(c->bev) : NULL;
	if (under == NULL || c->paused || c->closing || c->done ||
	    evbuffer_get_length(bufferevent_get_input(under)) == 0 ||
	    evbuffer_get_length(bufferevent_get_input(c->bev)) >= CONN_INPUT_HIGH)
		return;
	bufferevent_trigger(under, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
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
	inflate_more(c);
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

/* The end of input is the peer's close_notify (an orderly TLS close), not a
 * bare EOF or an error. */
static int peer_closed_tls(const struct conn *c, short what)
{
	SSL *ssl = conn_ssl(c);
	return (what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && ssl != NULL &&
	       c->linger != NULL && (SSL_get_shutdown(ssl) & SSL_RECEIVED_SHUTDOWN);
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
	if (peer_closed_tls(c, what)) {
		/* RFC 5246 7.2.1: answer the peer's close_notify with ours. What
		 * was still queued for it is dropped: it wants no more. */
		struct evbuffer *out = bufferevent_get_output(c->bev);
		evbuffer_drain(out, evbuffer_get_length(out));
		c->closing = 1;
		finish_now(c);
		return;
	}
	if (!(what & BEV_EVENT_TIMEOUT))
		c->aborted = 1; /* the peer left or the connection broke */
	finish_now(c);
}

static void setup_bev(struct conn *c)
{
	c->out_cb = evbuffer_add_cb(bufferevent_get_output(c->bev), output_cb, c);
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
	c->stall = evtimer_new(base, stall_cb, c);
	if (tls != NULL)
		c->linger = evtimer_new(base, finish_cb, c);
	if (c->bev == NULL || c->kick == NULL || c->finish == NULL || c->stall == NULL ||
	    (tls != NULL && c->linger == NULL)) {
		if (c->bev != NULL)
			bufferevent_free(c->bev);
		else
			close(fd);
		if (c->kick)
			event_free(c->kick);
		if (c->finish)
			event_free(c->finish);
		if (c->stall)
			event_free(c->stall);
		if (c->linger)
			event_free(c->linger);
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
	else
		inflate_more(c);
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
	return unsent(c);
}

void conn_set_idle_timeout(struct conn *c, unsigned seconds)
{
	struct timeval tv = { (time_t)seconds, 0 };
	bufferevent_set_timeouts(c->bev, seconds ? &tv : NULL, NULL);
}

void conn_set_write_timeout(struct conn *c, unsigned seconds)
{
	c->write_timeout = seconds;
	stall_rearm(c);
}

unsigned conn_write_timeout(const struct conn *c)
{
	return c->write_timeout;
}

int conn_starttls(struct conn *c, struct ssl_ctx_st *tls)
{
	if (tls == NULL || c->tls || c->compressed)
		return -1; /* TLS cannot start inside compression (RFC 4978 4) */
	SSL *ssl = SSL_new(tls);
	if (ssl == NULL)
		return -1;
	/* CVE-2011-0411: nothing sent before the handshake may be read as if it
	 * came through TLS. */
	struct evbuffer *in = bufferevent_get_input(c->bev);
	evbuffer_drain(in, evbuffer_get_length(in));
	c->in_seen = 0;
	struct bufferevent *under = c->bev;
	struct event *linger = evtimer_new(c->base, finish_cb, c);
	struct bufferevent *filter = linger ? bufferevent_openssl_filter_new(
		c->base, under, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE) : NULL;
	if (filter == NULL) {
		if (linger != NULL)
			event_free(linger);
		SSL_free(ssl);
		return -1;
	}
	/* The stall clock now watches the filter's output (what the session
	 * writes); the socket beneath takes encrypted bytes up to its mark. */
	evbuffer_remove_cb_entry(bufferevent_get_output(under), c->out_cb);
	bufferevent_setwatermark(under, EV_WRITE, CONN_UNDER_HIGH / 4, CONN_UNDER_HIGH);
	c->bev = filter;
	c->tls = 1;
	c->linger = linger;
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
	/* the client gets CONN_CLOSE_STALL_MS from now to read the goodbye */
	clock_gettime(CLOCK_MONOTONIC, &c->progress);
	stall_rearm(c);
}

void conn_abort(struct conn *c)
{
	c->aborted = 1;
	finish_now(c);
}

/* ---- COMPRESS=DEFLATE (RFC 4978) ------------------------------------------
 * A libevent filter bufferevent on top of the stack (socket, or TLS over
 * the socket): the session writes plain bytes into the filter's output,
 * which deflates into the layer beneath; the layer beneath's input is
 * inflated into the filter's input. Raw deflate (no zlib header), as the
 * RFC says. Both filters honour libevent's limits, so backpressure holds:
 * deflate produces no more than the layer beneath has room for (its write
 * high-water mark, CONN_UNDER_HIGH), and inflate no more than the
 * session's input bound (CONN_INPUT_HIGH), however well the client's bytes
 * compress. */

/* Our deflate window and hash sizes. RFC 4978 4 requires the inflater to
 * accept a 32 KiB window, so inflate uses 15; the deflater may use less.
 * zlib's deflate state is (1 << (wbits + 2)) + (1 << (memlevel + 9)) bytes
 * plus ~6 KiB: 256 KiB at the defaults (15, 8), 38 KiB here (12, 5).
 * Inflate is ~7 KiB plus the 32 KiB window, allocated on the first byte.
 * The price is a little ratio on large bodies (a 4 KiB window still finds
 * the repetitions of header lines and base64 text). */
#define CONN_DEFLATE_WBITS 12
#define CONN_DEFLATE_MEMLEVEL 5
#define CONN_DEFLATE_LEVEL 6
/* Bytes handed to zlib per call; bounds the work done between checks of
 * the destination limit. */
#define CONN_ZCHUNK (16 * 1024)

/* Run one zlib step from src's first chunk into dst (at least CONN_ZCHUNK
 * of room). Deflate ends in Z_SYNC_FLUSH when that chunk is the last of
 * src. Returns zlib's result; *used: input bytes taken. */
static int z_step(z_stream *z, int out, struct evbuffer *src, struct evbuffer *dst, size_t *used)
{
	struct evbuffer_iovec in, outv;
	size_t have = 0, len = evbuffer_get_length(src);
	*used = 0;
	if (len > 0 && evbuffer_peek(src, CONN_ZCHUNK, NULL, &in, 1) > 0)
		have = in.iov_len < CONN_ZCHUNK ? in.iov_len : CONN_ZCHUNK;
	if (evbuffer_reserve_space(dst, CONN_ZCHUNK, &outv, 1) < 1)
		return Z_MEM_ERROR;
	z->next_in = have ? in.iov_base : Z_NULL;
	z->avail_in = (uInt)have;
	z->next_out = outv.iov_base;
	z->avail_out = (uInt)outv.iov_len;
	int r = out ? deflate(z, have == len ? Z_SYNC_FLUSH : Z_NO_FLUSH) : inflate(z, Z_SYNC_FLUSH);
	outv.iov_len -= z->avail_out;
	evbuffer_commit_space(dst, &outv, 1);
	*used = have - z->avail_in;
	evbuffer_drain(src, *used);
	return r;
}

/* The filters below: zlib holds no output back once a call left room in
 * the output (avail_out != 0). They stop at libevent's limit only then,
 * so nothing is stranded inside zlib while libevent waits for more. */

/* libevent 2.1 ignores a filter's BEV_ERROR: abort the conn ourselves
 * (closed() follows from the loop). */
static enum bufferevent_filter_result z_failed(struct conn *c)
{
	c->aborted = 1;
	finish_now(c);
	return BEV_ERROR;
}

/* Deflate everything the session queued, ending in Z_SYNC_FLUSH once the
 * queue is empty so the client can decode every response completely (RFC
 * 4978 4). Stops early when dst reaches limit; libevent calls again when
 * the layer beneath has drained. */
static enum bufferevent_filter_result deflate_filter(struct evbuffer *src, struct evbuffer *dst,
						     ev_ssize_t limit,
						     enum bufferevent_flush_mode mode, void *arg)
{
	struct conn *c = arg;
	size_t start = evbuffer_get_length(dst), used;
	(void)mode;
	for (;;) {
		int idle = c->zout->avail_out != 0;
		if (idle && evbuffer_get_length(src) == 0)
			return BEV_OK; /* all out, and flushed */
		if (idle && limit >= 0 && evbuffer_get_length(dst) - start >= (size_t)limit)
			return BEV_OK;
		int r = z_step(c->zout, 1, src, dst, &used);
		if (r != Z_OK && r != Z_BUF_ERROR)
			return z_failed(c);
	}
}

/* Inflate what the client sent, no more than limit (the session's input
 * bound) at a time. Corrupt input, or an end of the stream (RFC 4978 has
 * none), is an error: the conn closes. */
static enum bufferevent_filter_result inflate_filter(struct evbuffer *src, struct evbuffer *dst,
						     ev_ssize_t limit,
						     enum bufferevent_flush_mode mode, void *arg)
{
	struct conn *c = arg;
	size_t start = evbuffer_get_length(dst), used;
	(void)mode;
	for (;;) {
		int idle = c->zin->avail_out != 0;
		if (idle && evbuffer_get_length(src) == 0)
			return BEV_OK;
		if (idle && limit >= 0 && evbuffer_get_length(dst) - start >= (size_t)limit)
			return BEV_OK;
		int r = z_step(c->zin, 0, src, dst, &used);
		if (r == Z_BUF_ERROR && used == 0 && c->zin->avail_out != 0)
			return BEV_OK; /* needs more input */
		if (r != Z_OK && r != Z_BUF_ERROR)
			return z_failed(c);
	}
}

static int compress_init(struct conn *c)
{
	c->zout = calloc(1, sizeof(*c->zout));
	c->zin = calloc(1, sizeof(*c->zin));
	if (c->zout == NULL || c->zin == NULL)
		return -1;
	if (deflateInit2(c->zout, CONN_DEFLATE_LEVEL, Z_DEFLATED, -CONN_DEFLATE_WBITS,
			 CONN_DEFLATE_MEMLEVEL, Z_DEFAULT_STRATEGY) != Z_OK) {
		free(c->zout);
		c->zout = NULL;
		return -1;
	}
	c->zout->avail_out = 1; /* nothing pending */
	if (inflateInit2(c->zin, -15) != Z_OK) {
		free(c->zin);
		c->zin = NULL;
		return -1;
	}
	c->zin->avail_out = 1;
	return 0;
}

int conn_compress(struct conn *c)
{
	if (c->compressed || c->done || c->closing)
		return -1;
	if (compress_init(c) < 0) {
		compress_free(c);
		c->zout = c->zin = NULL;
		return -1;
	}
	struct event *linger = c->linger ? NULL : evtimer_new(c->base, finish_cb, c);
	if (c->linger == NULL && linger == NULL)
		return -1;
	struct bufferevent *under = c->bev;
	/* Deferred callbacks: the filter runs inside every conn_write, and a
	 * write callback (drained) fired from there would run the session's
	 * output pump inside itself, interleaving its responses. */
	struct bufferevent *filter = bufferevent_filter_new(under, inflate_filter, deflate_filter,
							    BEV_OPT_CLOSE_ON_FREE |
								    BEV_OPT_DEFER_CALLBACKS,
							    NULL, c);
	if (filter == NULL) {
		if (linger != NULL)
			event_free(linger);
		return -1;
	}
	/* What the client sent after COMPRESS is already compressed: it stays
	 * in the layer beneath, and the filter inflates it below. What is
	 * queued (the tagged OK) goes out uncompressed beneath the filter. */
	evbuffer_remove_cb_entry(bufferevent_get_output(under), c->out_cb);
	bufferevent_setwatermark(under, EV_WRITE, CONN_UNDER_HIGH / 4, CONN_UNDER_HIGH);
	bufferevent_setwatermark(under, EV_READ, 0, CONN_INPUT_HIGH);
	c->bev = filter;
	c->compressed = 1;
	if (linger != NULL)
		c->linger = linger; /* a close must wait for the compressed tail */
	c->in_seen = 0;
	setup_bev(c);
	inflate_more(c);
	return 0;
}

int conn_is_compressed(const struct conn *c)
{
	return c->compressed;
}
