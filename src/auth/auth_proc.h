/*
 * auth_proc.h: the auth process: the only process that reads DATA/passwd.
 *
 * Design note. It answers verification and user-lookup requests from
 * every worker (protocol in auth_client.h). It holds no file-system rights
 * of its own: it asks its parent for a fresh descriptor of DATA/passwd
 * (open_passwd) at most once a second, and reloads the table when the file
 * changed (inode, size, mtime). A line that does not parse is skipped with
 * one warning naming the file and line (at each load), and so is a second
 * line for a user already listed (the first wins, as in Dovecot's
 * passwd-file): the other users are served. Failed logins are held back
 * and, per (user, IP) only, refused, as auth_penalty.h explains (growing
 * delays per user and IP in the manner of Dovecot's auth_penalty, a much
 * higher threshold per IP that slows the address down without refusing a
 * right password). Successful logins are counted per service, user and IP
 * (auth_conns.h) against max_userip_connections. Hash comparisons are
 * constant-time (passwd_verify). Every attempt is logged with the user and
 * the IP.
 *
 * Every answer is one of auth_client.h's results, and each failure path has
 * its own: a wrong password or an unknown user is FAILED (and counts towards
 * the penalty); a (user, IP) refused is RATE_LIMITED; a right password over
 * max_userip_connections is LIMIT; a password file that exists
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
	unsigned failure_delay_ms; /* first delay after a failure (auth_penalty.h) */
	unsigned max_failures;	   /* per (user, IP) before refusing; 0: never */
	int allow_plain;	   /* accept {PLAIN} passwords in the file */
	unsigned failure_max_delay_ms;	/* the longest delay */
	unsigned failure_forget_secs;	/* a pair's failures are forgotten after */
	unsigned ip_max_failures;	/* per IP, any users, before the longest delay */
	unsigned max_userip_connections; /* sessions per service, user, IP; 0: any */
	const char *passwd_path;	/* for log messages; NULL: "DATA/passwd" */
};

/* open_passwd(ctx) returns a new read-only fd of DATA/passwd, or -1 with
 * errno ENOENT if there is no such file, or -1 with any other errno if it
 * cannot be opened (answered as a temporary failure). */
struct auth_proc *auth_proc_new(struct event_base *base, const struct auth_proc_settings *set,
				int (*open_passwd)(void *ctx), void *ctx);
/* Serve a worker's socket (the auth process owns it from now). */
int auth_proc_add_worker(struct auth_proc *ap, int fd);
void auth_proc_free(struct auth_proc **ap);

/* For tests and the fuzzer: handle one request message msg[0..len) from
 * the worker connection owner (any pointer that tells workers apart) at
 * once. Returns 0 with the request's id in *id_r, the answer in *reply_r
 * and how long to hold it back in *delay_ms_r; 1 if there is nothing to
 * answer (E); -1 if the message is so malformed that it has no id to
 * answer (the outputs are then untouched). */
int auth_proc_handle(struct auth_proc *ap, const void *owner, const char *msg, size_t len,
		     unsigned *id_r, struct auth_client_reply *reply_r, unsigned *delay_ms_r);
/* Forget every session registered by owner (its connection closed). */
void auth_proc_drop_owner(struct auth_proc *ap, const void *owner);

#endif
