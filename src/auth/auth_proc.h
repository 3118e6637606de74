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
 */
#ifndef MAILROOM_AUTH_PROC_H
#define MAILROOM_AUTH_PROC_H

struct event_base;
struct auth_proc;

struct auth_proc_settings {
	unsigned failure_delay_ms;
	unsigned max_failures; /* per minute, per IP and per user; 0: no limit */
	int allow_plain;       /* accept {PLAIN} passwords in the file */
};

/* open_passwd(ctx) returns a new read-only fd of DATA/passwd, or -1. */
struct auth_proc *auth_proc_new(struct event_base *base, const struct auth_proc_settings *set,
				int (*open_passwd)(void *ctx), void *ctx);
/* Serve a worker's socket (the auth process owns it from now). */
int auth_proc_add_worker(struct auth_proc *ap, int fd);
void auth_proc_free(struct auth_proc **ap);

/* For tests and the fuzzer: handle one request message, writing the reply
 * (immediately, even for failures) into reply (size AUTH_MAX_MSG + 1).
 * Returns 0 if a reply was produced, -1 for a malformed request. */
int auth_proc_handle(struct auth_proc *ap, const char *msg, unsigned long len, char *reply,
		     int *ok_r);

#endif
