/*
 * conn.h: one client connection: a socket, optionally TLS, with bounded
 * buffers in both directions, on a libevent loop.
 *
 * Design note. Sessions see only this API, so they never touch libevent or
 * OpenSSL directly and can be tested over a socketpair. The worker
 * (src/server/worker.c) makes the conn when it accepts and hands it to
 * session_start (session.h), whose core sets the handler; protocols only
 * write, ask about TLS and the peer, and start STARTTLS:
 *
 *  - input(ctx): bytes are waiting in conn_input(); consume what you can.
 *    Not called again while input is paused (conn_pause_input), which a
 *    session does while a command runs off the loop or while its output is
 *    above the high-water mark (backpressure: a client that does not read
 *    cannot make the server buffer without bound).
 *  - drained(ctx): output fell below the low-water mark.
 *  - closed(ctx): the peer went away, an I/O or TLS error, or the timeout;
 *    the handler must free its session and not use the conn again (the conn
 *    frees itself after the call).
 *  - stalled(ctx): output has been pending and none of it has left for the
 *    write timeout (conn_set_write_timeout): the client stopped reading. The
 *    conn is aborted right after (queued output dropped; closed() follows):
 *    nothing more can reach a client that does not read.
 *
 * Orderly closes of a TLS conn (conn_close, or the client's own
 * close_notify) end with a TLS close_notify alert after the last byte;
 * aborts, errors and stalls do not.
 *
 * STARTTLS: conn_starttls() discards every byte the client sent after the
 * STARTTLS command (they were pipelined in plain text: CVE-2011-0411) and
 * starts the handshake after what is already queued (the tagged OK) is sent.
 *
 * COMPRESS=DEFLATE (RFC 4978): conn_compress() puts a deflate/inflate
 * filter on top of the stack (over TLS when TLS is on; TLS can never start
 * after it). What is already queued (the tagged OK) goes out as it is;
 * everything after, both ways, is compressed. Output pending
 * (conn_output_pending, hence the high-water mark and client_max_output)
 * counts what is queued at every layer: plain bytes not yet deflated plus
 * compressed (and encrypted) bytes not yet sent, so backpressure works as
 * before, in bytes the server holds. Memory: up to ~80 KiB of zlib state
 * per compressed conn (38 KiB deflate at the reduced window, 39 KiB
 * inflate; see conn.c), ~39 KiB of it resident when idle (measured by
 * tests/e2e/test_imap_compress.py), held for as long as the conn lives
 * (the streams cannot be dropped while live): the dominant cost of an
 * idle compressed session.
 *
 * Large bodies: conn_send_file() queues a range of a file; on a plain socket
 * libevent sends it with sendfile(2), so it never passes through user space
 * (not under TLS or compression: libevent maps the file and the filter
 * reads it from there).
 */
#ifndef MAILROOM_CONN_H
#define MAILROOM_CONN_H

#include <stdarg.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

struct event_base;
struct evbuffer;
struct ssl_ctx_st;

struct conn;

struct conn_handler {
	void (*input)(void *ctx);
	void (*drained)(void *ctx);
	void (*closed)(void *ctx);
	/* The idle timeout expired. NULL: close at once. Otherwise the handler
	 * decides (say BYE and conn_close, or keep going). */
	void (*timeout)(void *ctx);
	/* Write timeout; see above. May be NULL. */
	void (*stalled)(void *ctx);
};

/* Output above this many bytes: the session should stop producing. */
#define CONN_OUTPUT_HIGH (256 * 1024)
#define CONN_OUTPUT_LOW (64 * 1024)

/* Wrap an accepted socket. tls: NULL for plain, or the context for an
 * implicit-TLS listener (the handshake starts at once). Takes the fd. */
struct conn *conn_new(struct event_base *base, int fd, struct ssl_ctx_st *tls,
		      const struct sockaddr *peer, socklen_t peerlen);
void conn_set_handler(struct conn *c, const struct conn_handler *h, void *ctx);

/* Input waiting to be parsed; drain what you consume. */
struct evbuffer *conn_input(struct conn *c);
void conn_pause_input(struct conn *c);
void conn_resume_input(struct conn *c);

void conn_write(struct conn *c, const void *data, size_t len);
void conn_puts(struct conn *c, const char *s);
void conn_printf(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Queue len bytes of fd from offset; the conn takes the fd. 0 or -1. */
int conn_send_file(struct conn *c, int fd, off_t offset, size_t len);
/* Output queued and not yet taken by the socket (after STARTTLS including
 * the encrypted bytes beneath the TLS layer). */
size_t conn_output_pending(const struct conn *c);

/* Close after a timeout of this many seconds without input (0: none). */
void conn_set_idle_timeout(struct conn *c, unsigned seconds);
/* Abort when output has been pending this many seconds without any of it
 * leaving (0: never). During a graceful close (conn_close) the limit is
 * at most 5 s, also when 0. */
void conn_set_write_timeout(struct conn *c, unsigned seconds);
unsigned conn_write_timeout(const struct conn *c);

/* Switch to TLS; see the note above. 0, or -1 if TLS is unavailable. */
int conn_starttls(struct conn *c, struct ssl_ctx_st *tls);
int conn_is_tls(const struct conn *c);
/* Start COMPRESS=DEFLATE; see the note above. 0, or -1 (already on, or no
 * memory: the conn is unchanged). */
int conn_compress(struct conn *c);
int conn_is_compressed(const struct conn *c);
/* Peer is 127.0.0.0/8, ::1 or a unix socket. */
int conn_is_local(const struct conn *c);
const char *conn_peer_ip(const struct conn *c);
/* Bytes received and sent, for the logout log line. */
void conn_byte_counts(const struct conn *c, unsigned long long *in_r, unsigned long long *out_r);

/* Send what is queued, then close (the closed handler runs). */
void conn_close(struct conn *c);
/* Close at once, dropping queued output (the closed handler runs). */
void conn_abort(struct conn *c);

#endif
