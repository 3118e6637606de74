/*
 * auth_client.h: a worker's side of the auth process protocol.
 *
 * Workers never read DATA/passwd: they send "is this user/password right?"
 * or "is this a user?" over a SOCK_SEQPACKET socketpair and get back a typed
 * answer (after the auth process's failure delay, auth_penalty.h). One
 * message each way; a message is one datagram, so it arrives whole or not
 * at all:
 *
 *   worker -> auth   V <TAB> id <TAB> service <TAB> ip <TAB> user <TAB> password
 *                    U <TAB> id <TAB> user     is user in the database? (no
 *                                              password, no penalty: LMTP RCPT)
 *                    E <TAB> id                the session that login id
 *                                              opened has ended (no answer)
 *   auth -> worker   O <TAB> id <TAB> user   verified (V), or a user (U);
 *                                             user is the canonical name, as
 *                                             DATA/passwd spells it
 *                    F <TAB> id              wrong user or password (V), no
 *                                             such user (U)
 *                    R <TAB> id              too many failures (rate limited)
 *                    L <TAB> id              right password, but this user
 *                                             has max_userip_connections
 *                                             sessions of this service from
 *                                             this IP already (auth_conns.h)
 *                    T <TAB> id              temporary failure: the password
 *                                             file cannot be read, out of memory
 *
 * An "O" to a V registers a session with the auth process (auth_conns.h)
 * until the worker sends E with the same id, or its connection closes. A
 * worker that gets an "O" for an id it no longer waits for (cancelled,
 * failed when a malformed reply came) sends the E at once.
 *
 * id is decimal, 1..2^32-1 without leading zeros, and a reply's id is its
 * request's; service, ip and user contain no TAB or control characters; the password
 * is the rest of the message (no NUL). Messages are at most AUTH_MAX_MSG
 * bytes. The auth process answers every request whose id it can read (one
 * it cannot is a bug in the worker, logged). No free text travels back: the
 * type letter alone decides, and the reason for a failure is in the auth
 * process's log. Both sides check every field like client input
 * (components distrust each other): a reply with an unknown type, a missing
 * or extra field, an empty or over-long user, a control character or a bad
 * id is rejected whole (auth_client_reply_parse). A worker that loses the
 * connection, or gets a reply it rejects, answers its waiting requests
 * itself with AUTH_CLIENT_TEMPFAIL.
 *
 * Fields are positional. A new field for the worker (a per-user quota, say)
 * goes at the end of O, in the struct below and in both functions at once:
 * the auth process and the workers are the same binary, forked by one
 * master, so the two ends never differ in version.
 */
#ifndef MAILROOM_AUTH_CLIENT_H
#define MAILROOM_AUTH_CLIENT_H

#include <stddef.h>

#include "lib/error.h"

#define AUTH_MAX_MSG 2048
/* Longest user name either direction carries (DATA/passwd's own limit is
 * shorter: passwd_entry.user). */
#define AUTH_CLIENT_MAX_USER 255

enum auth_client_result {
	AUTH_CLIENT_OK,		  /* verified */
	AUTH_CLIENT_FAILED,	  /* wrong user or password: permanent */
	AUTH_CLIENT_RATE_LIMITED, /* too many failures of the user from the IP */
	AUTH_CLIENT_TEMPFAIL,	  /* could not check (password file unreadable,
				   * auth process lost, out of memory): retry later */
	AUTH_CLIENT_LIMIT,	  /* verified, but too many sessions of the user
				   * from the IP: not logged in, retry later */
};

/* The answer to one verification. Fields other than result are set only
 * when result is AUTH_CLIENT_OK, and are "" otherwise. */
struct auth_client_reply {
	enum auth_client_result result;
	/* The canonical name from DATA/passwd: no control characters, no TAB,
	 * 1..AUTH_CLIENT_MAX_USER bytes. Open the user's store by this name,
	 * not by what the client typed. */
	char user[AUTH_CLIENT_MAX_USER + 1];
	/* DATA/passwd's other fields (uid, gid, home, extra fields) carry
	 * nothing mailroom uses: quota is the server-wide quota_bytes and mail
	 * lives under DATA/mail/<user>. A per-user field would go here. */
};

struct event_base;
struct auth_client;

/* cb(ctx, r) is called once per request that auth_client_verify() accepted
 * (unless it was cancelled): when the auth process answers, or with
 * AUTH_CLIENT_TEMPFAIL when the connection to it is lost or it sends a reply
 * that does not parse. r and its strings belong to auth_client and are valid
 * during the call only; copy what you keep. The request is forgotten before
 * the call: cb need not cancel it. */
typedef void auth_client_cb(void *ctx, const struct auth_client_reply *r);

/* A client on fd (a SOCK_SEQPACKET socket to the auth process), which it
 * owns from now on, read from base. NULL if out of memory. */
struct auth_client *auth_client_new(struct event_base *base, int fd);
/* Close the socket and forget every waiting request without calling its cb.
 * *ac is NULL afterwards; NULL or *ac NULL is a no-op. */
void auth_client_free(struct auth_client **ac);
/* Start a verification for a login to service ("imap", "pop3"); returns
 * its id (never 0), or 0 if it could not be sent (service, ip or user not
 * carriable, message too long, out of memory, the auth process gone), and
 * then cb is not called. The password is wiped from the message buffer
 * after sending. An AUTH_CLIENT_OK answer registers a session under the id:
 * end it with auth_client_logout(id) when the session ends (or if it is not
 * used after all). */
unsigned auth_client_verify(struct auth_client *ac, const char *service, const char *ip,
			    const char *user, const char *pass, auth_client_cb *cb, void *ctx);
/* Ask whether user is in the database: cb gets AUTH_CLIENT_OK with the
 * canonical name, AUTH_CLIENT_FAILED (no such user) or AUTH_CLIENT_TEMPFAIL
 * (the database cannot be read, the auth process is lost). Returns the id,
 * or 0 as auth_client_verify. */
unsigned auth_client_lookup(struct auth_client *ac, const char *user, auth_client_cb *cb,
			    void *ctx);
/* The session that the verification id opened has ended: tell the auth
 * process (nothing comes back; 0 and a lost connection are ignored). */
void auth_client_logout(struct auth_client *ac, unsigned id);
/* Forget a request whose session went away (cb will not be called). An id
 * that is not waiting (answered already, or 0) is ignored. A verification
 * answered "ok" later is ended (logout) at once. */
void auth_client_cancel(struct auth_client *ac, unsigned id);

/* The reply message, both directions of the code: pure functions, for the
 * auth process, this file, the unit tests and the fuzzer. */

/* Parse the whole message msg[0..len) (no NUL terminator needed). Returns 0
 * with *id_r and *reply_r set, or -1 with err set (ERR_INVALID) if it is not
 * exactly one well-formed reply; the outputs are written only on success. */
int auth_client_reply_parse(const char *msg, size_t len, unsigned *id_r,
			    struct auth_client_reply *reply_r, struct error *err);
/* Write the reply for request id into buf (size bytes; AUTH_MAX_MSG + 1 is
 * always enough) with a terminating NUL, and its length without the NUL in
 * *len_r. Returns 0, or -1 if id is 0, the result unknown, a field not
 * carriable (an empty or over-long user, a TAB or control character) or buf
 * too small; buf is then undefined and *len_r untouched. What it writes
 * parses back to the same id and reply. */
int auth_client_reply_format(unsigned id, const struct auth_client_reply *r, char *buf, size_t size,
			     size_t *len_r);

#endif
