/*
 * server.h: the `mailroom serve` processes (src/server).
 *
 *  master   reads the config, checks that each child can open what it needs
 *           (as the child's user), binds the listeners, loads TLS keys, forks
 *           the auth process and N workers, restarts them when they die
 *           (throttled when they die young: throttle.c), hands
 *           the auth process DATA/passwd on request, and handles signals:
 *           SIGTERM/SIGINT stop everything; SIGHUP rereads the config and
 *           certificates and replaces the workers, letting the old ones
 *           finish their connections (none is dropped).
 *  auth     src/auth/auth_proc.c, unprivileged (auth_user).
 *  worker   one libevent loop serving many connections, unprivileged
 *           (run_user), with a small thread pool for blocking disk work.
 */
#ifndef MAILROOM_SERVER_H
#define MAILROOM_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "lib/error.h"

struct config;
struct ssl_ctx_st;

enum listen_proto { PROTO_IMAP, PROTO_IMAPS, PROTO_POP3, PROTO_POP3S, PROTO_LMTP };

struct listener {
	enum listen_proto proto;
	int fd;
	char name[128]; /* as configured, for logs */
};

struct listeners {
	struct listener *v;
	size_t n;
};

/* listen.c: bind every configured listener. On failure returns -1, with
 * none left open, and err set (lib/error.h): ERR_INVALID for a malformed
 * address or path, ERR_EXISTS if another server listens on a unix socket,
 * ERR_TEMP for a failed socket call or out of memory (text e.g. "cannot
 * listen (imap_listen): 127.0.0.1:143: Address already in use"). */
int listen_open_all(const struct config *cfg, const char *data_dir, struct listeners *ls,
		    struct error *err);
void listen_close_all(struct listeners *ls);
const char *listen_proto_name(enum listen_proto p);

/* tls.c: load (or, for the default paths, create) the certificate and key.
 * The caller owns the context (tls_free). NULL with err set on failure:
 * ERR_INVALID for a bad setting or an unloadable certificate or key,
 * ERR_TEMP if a new certificate cannot be made or written. */
struct ssl_ctx_st *tls_load(const struct config *cfg, const char *data_dir, struct error *err);
void tls_free(struct ssl_ctx_st *ctx);

/* worker.c: run one worker until it is told to stop. Returns the exit code. */
struct worker_args {
	const char *data_dir;
	const struct config *config;
	const struct listeners *listeners;
	struct ssl_ctx_st *tls;
	int auth_fd;
	/* A start-up failure is written here (one line of text, no newline)
	 * instead of logged, so that the master reports it once per back-off
	 * (throttle.c); worker_run closes it once it serves. -1: log it. */
	int status_fd;
};
int worker_run(const struct worker_args *args);

/* throttle.c: restart throttling for one kind of child (see its design
 * note). A zeroed struct is a kind that never failed. */
#define THROTTLE_MIN_DELAY 1  /* seconds */
#define THROTTLE_MAX_DELAY 60 /* seconds */
struct throttle {
	unsigned delay;   /* seconds of the last back-off (0: none) */
	int64_t until_ms; /* no child of this kind starts before this */
	unsigned early;   /* early deaths since the kind last ran long enough */
};
enum { THROTTLE_NONE, THROTTLE_BEGIN, THROTTLE_RUNNING };
/* The back-off after one of delay seconds: 1 after 0, then doubled, at
 * most THROTTLE_MAX_DELAY. */
unsigned throttle_next_delay(unsigned delay);
/* A child started at started_ms died at now_ms (monotonic milliseconds).
 * Returns THROTTLE_NONE if it ran at least min_uptime_s seconds (restart
 * it at once; the back-off is reset; min_uptime_s 0 never throttles),
 * THROTTLE_BEGIN if a new back-off of t->delay seconds starts (log one
 * line with t->early), THROTTLE_RUNNING if one is already running (the
 * death is only counted). */
int throttle_death(struct throttle *t, int64_t started_ms, int64_t now_ms, unsigned min_uptime_s);
/* Must a child of this kind wait before it starts? */
int throttle_blocked(const struct throttle *t, int64_t now_ms);

/* master.c: `mailroom serve`. overrides are the -o key=value strings. */
/* Returns the exit status: 0 after an orderly stop, EX_CONFIG (78) for a
 * bad setting or a file a child needs that cannot be used as it is,
 * EX_NOPERM (77) when a child's user lacks a permission it needs (the
 * message names the file, the user and the error), 1 otherwise. */
int server_main(const char *data_dir, char *const *overrides, int n_overrides);

#endif
