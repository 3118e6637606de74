/*
 * proto.h: what the server hands every protocol (IMAP, POP3, LMTP) when it
 * starts a session: the shared objects of one worker process. The server
 * (src/server) owns them and they outlive every session; protocols only
 * read the pointers and keep `sessions` up to date so the worker knows when
 * it may exit.
 */
#ifndef MAILROOM_PROTO_H
#define MAILROOM_PROTO_H

struct event_base;
struct store;
struct config;
struct auth_client;
struct jobs;
struct ssl_ctx_st;

struct proto_env {
	struct event_base *base;
	struct store *store;
	const struct config *config;
	struct auth_client *auth;
	struct jobs *jobs;
	struct ssl_ctx_st *tls; /* for STARTTLS/STLS; NULL if TLS is not set up */
	unsigned sessions;	/* sessions alive, all protocols */
};

#endif
