/*
 * passwd.h: the password database DATA/passwd, in Dovecot's passwd-file
 * format so that admins can move lines between servers and read it with the
 * usual tools:
 *
 *   user:{SCHEME}hash:uid:gid:gecos:home:shell:extra fields
 *
 * mailroom uses the first two fields and keeps the others as they are. A hash
 * without a {SCHEME} prefix is a crypt(3) hash ({CRYPT}). Schemes verified:
 * YESCRYPT (new passwords), SHA512-CRYPT, SHA256-CRYPT, BLF-CRYPT, MD5-CRYPT,
 * CRYPT, and PLAIN only when the caller allows it. Only the auth process and
 * the `mailroom user` command read this file.
 */
#ifndef MAILROOM_PASSWD_H
#define MAILROOM_PASSWD_H

#include <stddef.h>

#include "lib/error.h"

#define PASSWD_MAX_LINE 4096

struct passwd_entry {
	char user[65];
	char hash[512];	   /* "{SCHEME}..." as in the file */
	char rest[PASSWD_MAX_LINE]; /* fields 3..8, without the leading ':' ("" if none) */
};

/* Parse one line (without its newline). Returns 0, or -1 with err set:
 * ERR_INVALID for a malformed line, ERR_NOTFOUND for a comment or blank
 * line (no entry, nothing wrong). */
int passwd_line_parse(const char *line, size_t len, struct passwd_entry *e_r, struct error *err);

/* Hash password with scheme ("YESCRYPT", "SHA512-CRYPT", "SHA256-CRYPT",
 * "BLF-CRYPT"); *hash_r is "{SCHEME}$..." in a malloc'ed string. Returns 0,
 * or -1 with err set: ERR_INVALID for an unknown scheme, ERR_TEMP if no salt
 * or hash could be made (or out of memory). */
int passwd_hash(const char *password, const char *scheme, char **hash_r, struct error *err);

/* Check password against a stored "{SCHEME}hash". Returns 1 if it matches,
 * 0 if not, -1 if the scheme is unknown or not allowed (PLAIN unless
 * allow_plain), -2 if it could not be checked (out of memory: a temporary
 * failure, not a wrong password). The comparison takes the same time
 * wherever they differ. */
int passwd_verify(const char *stored, const char *password, int allow_plain);

/* Look up user in the file at path (the first line of that name). 1 found
 * (*e_r filled), 0 not found (also: no file at all, as the auth process
 * sees it), -1 the file cannot be read (errno set; a symbolic link or not a
 * regular file also, as the server refuses them). */
int passwd_file_lookup(const char *path, const char *user, struct passwd_entry *e_r);

/* Call cb for each valid entry of the file (malformed lines are skipped);
 * 0, or -1 with errno set if it cannot be opened or read to its end (a
 * symbolic link or not a regular file: ELOOP, EINVAL). */
int passwd_file_foreach(const char *path, void (*cb)(void *ctx, const struct passwd_entry *e),
			void *ctx);

enum passwd_update { PASSWD_ADD, PASSWD_REPLACE, PASSWD_DELETE };
/* Change the file atomically under a lock (PATH.lock): add a new user (fails
 * with ERR_EXISTS if present), replace the hash of an existing one, or
 * delete one (both fail with ERR_NOUSER if absent). The new file is written
 * beside it, fsynced and renamed over it; other lines are kept byte for
 * byte. Returns 0, or -1 with err set (ERR_TEMP if the file cannot be
 * locked, read or written, or out of memory). */
int passwd_file_update(const char *path, enum passwd_update op, const char *user, const char *hash,
		       struct error *err);

#endif
