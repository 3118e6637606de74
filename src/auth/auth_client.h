/*
 * auth_client.h: a worker's side of the auth process protocol.
 *
 * Workers never read DATA/passwd: they send "is this user/password right?"
 * over a SOCK_SEQPACKET socketpair and get back only "ok + user" or "fail +
 * reason" (after the auth process's failure delay). One message each way:
 *
 *   worker -> auth   V <TAB> id <TAB> ip <TAB> user <TAB> password
 *   auth -> worker   O <TAB> id <TAB> user      (verified)
 *                    F <TAB> id <TAB> reason    (not)
 *
 * id is decimal; ip and user contain no TAB or control characters; the
 * password is the rest of the message (no NUL). Messages are at most
 * AUTH_MAX_MSG bytes; both sides check every field like client input.
 */
#ifndef MAILROOM_AUTH_CLIENT_H
#define MAILROOM_AUTH_CLIENT_H

#define AUTH_MAX_MSG 2048

struct event_base;
struct auth_client;

/* cb(ctx, ok, text): text is the canonical user name when ok, else the
 * reason; valid during the call only. */
typedef void auth_client_cb(void *ctx, int ok, const char *text);

struct auth_client *auth_client_new(struct event_base *base, int fd);
void auth_client_free(struct auth_client **ac);
/* Start a verification; returns its id (never 0), or 0 if it could not be
 * sent (then cb is not called). */
unsigned auth_client_verify(struct auth_client *ac, const char *ip, const char *user,
			    const char *pass, auth_client_cb *cb, void *ctx);
/* Forget a request whose session went away (cb will not be called). */
void auth_client_cancel(struct auth_client *ac, unsigned id);

#endif
