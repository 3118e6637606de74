/*
 * auth_proc.h: the auth process: the only process that reads DATA/passwd.
 *
 * Design note. It answers verification requests from every worker (protocol
 * in auth_client.h). It holds no file-system rights of its own: it asks its
 * parent for a fresh descriptor of DATA/passwd (open_passwd) at most once a
 * second, and reloads the table when the file changed (inode, size, mtime).
 * A failed attempt is answered only after failure_delay_ms, so guessing is
 * slow; after max_failures failures within a minute from one IP address or
 * for one user, further attempts fail without even checking the password
 * (and still after the delay). Hash comparisons are constant-time
 * (passwd_verify). Every attempt is logged with the user and the IP.
 *
 * Every answer is one of auth_client.h's results, and each failure path has
 * its own: a wrong password or an unknown user is FAILED (and counts towards
 * the limit); a limit reached is RATE_LIMITED; a password file that exists
 * but cannot be read (not a regular file, an I/O error, a symlink, the
 * parent gone) or memory running out while loading or checking is TEMPFAIL,
 * never FAILED, so that clients retry instead of asking the user for another
 * password. While the file cannot be read, the table read before is not used
 * (it is dropped): a user deleted meanwhile must not log in from it. No
 * file at all is the empty table (FAILED), as with Dovecot's passwd-file.
 * A request whose id can be read always gets an answer, even if the rest of
 * it is malformed (FAILED) or memory runs out (TEMPFAIL, at once): a worker
 * waits for nothing that does not come.
 */
#ifndef MAILROOM_AUTH_PROC_H
#define MAILROOM_AUTH_PROC_H

#include <stddef.h>

struct event_base;
struct auth_proc;
struct auth_client_reply;

struct auth_proc_settings {
	unsigned failure_delay_ms;
	unsigned max_failures; /* per minute, per IP and per user; 0: no limit */
	int allow_plain;       /* accept {PLAIN} passwords in the file */
};

/* open_passwd(ctx) returns a new read-only fd of DATA/passwd, or -1 with
 * errno ENOENT if there is no such file, or -1 with any other errno if it
 * cannot be opened (answered as a temporary failure). */
struct auth_proc *auth_proc_new(struct event_base *base, const struct auth_proc_settings *set,
				int (*open_passwd)(void *ctx), void *ctx);
/* Serve a worker's socket (the auth process owns it from now). */
int auth_proc_add_worker(struct auth_proc *ap, int fd);
void auth_proc_free(struct auth_proc **ap);

/* For tests and the fuzzer: handle one request message msg[0..len) at once
 * (no delay). Returns 0 with the request's id in *id_r and the answer in
 * *reply_r, or -1 if the message is so malformed that it has no id to answer
 * (the outputs are then untouched). */
int auth_proc_handle(struct auth_proc *ap, const char *msg, size_t len, unsigned *id_r,
		     struct auth_client_reply *reply_r);

#endif
