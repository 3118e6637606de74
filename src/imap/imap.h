/*
 * imap.h: the IMAP4rev2/IMAP4rev1 protocol (src/imap), as the server calls it.
 *
 * The server accepts a connection, wraps it in a struct conn and calls
 * imap_session_start(). Everything else (commands, the selected mailbox,
 * IDLE) happens in the session, which ends by itself when the client leaves.
 */
#ifndef MAILROOM_IMAP_H
#define MAILROOM_IMAP_H

struct conn;
struct config;
struct store;
struct auth_client;
struct jobs;
struct event_base;
struct ssl_ctx_st;

/* What every session of a worker shares. Owned by the server; it outlives
 * the sessions. */
struct imap_env {
	struct event_base *base;
	struct store *store;
	const struct config *config;
	struct auth_client *auth;
	struct jobs *jobs;
	struct ssl_ctx_st *tls; /* for STARTTLS; NULL if TLS is not set up */
	unsigned sessions;	/* sessions alive (maintained by imap) */
};

/* Start a session on c (greeting sent at once). implicit_tls: the listener
 * was IMAPS. */
void imap_session_start(struct imap_env *env, struct conn *c);
/* Server shutdown: every session says BYE after its current command and
 * closes. */
void imap_shutdown_all(struct imap_env *env);

#endif
