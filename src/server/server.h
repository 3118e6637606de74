/*
 * server.h: the `mailroom serve` processes (src/server).
 *
 *  master   reads the config, binds the listeners, loads TLS keys, forks the
 *           auth process and N workers, restarts them when they die, hands
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
};
int worker_run(const struct worker_args *args);

/* master.c: `mailroom serve`. overrides are the -o key=value strings. */
int server_main(const char *data_dir, char *const *overrides, int n_overrides);

#endif
