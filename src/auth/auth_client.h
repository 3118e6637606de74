/*
 * auth_client.h: a worker's side of the auth process protocol.
 *
 * Workers never read DATA/passwd: they send "is this user/password right?"
 * over a SOCK_SEQPACKET socketpair and get back a typed answer (after the
 * auth process's failure delay for anything but ok). One message each way;
 * a message is one datagram, so it arrives whole or not at all:
 *
 *   worker -> auth   V <TAB> id <TAB> ip <TAB> user <TAB> password
 *   auth -> worker   O <TAB> id <TAB> user   verified; user is the canonical
 *                                             name, as DATA/passwd spells it
 *                    F <TAB> id              wrong user or password
 *                    R <TAB> id              too many failures (rate limited)
 *                    T <TAB> id              temporary failure: the password
 *                                             file cannot be read, out of memory
 *
 * id is decimal, 1..2^32-1 without leading zeros, and a reply's id is its
 * request's; ip and user contain no TAB or control characters; the password
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
	AUTH_CLIENT_RATE_LIMITED, /* too many failures from the IP or for the user */
	AUTH_CLIENT_TEMPFAIL,	  /* could not check (password file unreadable,
				   * auth process lost, out of memory): retry later */
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
/* Start a verification; returns its id (never 0), or 0 if it could not be
 * sent (ip or user not carriable, message too long, out of memory, the auth
 * process gone), and then cb is not called. The password is wiped from the
 * message buffer after sending. */
unsigned auth_client_verify(struct auth_client *ac, const char *ip, const char *user,
			    const char *pass, auth_client_cb *cb, void *ctx);
/* Forget a request whose session went away (cb will not be called). An id
 * that is not waiting (answered already, or 0) is ignored. */
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
