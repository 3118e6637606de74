/*
 * error.h: the one error convention of the whole tree.
 *
 * Design note. Every function that can fail reports it the same way:
 *
 *  - It returns 0 on success and -1 on failure (or a pointer, NULL on
 *    failure). Outputs go in `_r` out-parameters, written only on success,
 *    so callers can't confuse data with status.
 *  - The reason goes in the last parameter, `struct error *err`, filled only
 *    on failure: a code from enum error_code and a text for logs and for the
 *    people who read them. On success err is left as it was.
 *  - The code keeps temporary and permanent failures apart all the way up:
 *    ERR_TEMP and ERR_NOSPACE become LMTP 4xx, EX_TEMPFAIL, IMAP NO [UNAVAILABLE]; the
 *    permanent codes become LMTP 5xx, EX_NOUSER, IMAP NO [OVERQUOTA] and so
 *    on. A sender retries only what is worth retrying.
 *  - Callers decide by the code, never by the text: an answer that depends
 *    on strstr(err.text, "too many") breaks the day someone rewords it.
 *    The text may be shown (logged, or sent where a protocol reply carries
 *    it), never parsed.
 *  - Incremental parsers that return NEED_MORE / DONE / ERROR keep their
 *    error in their state struct and hand it out as a struct error.
 *
 * Parsers report bad input as ERR_INVALID (or ERR_DATA for bad message data)
 * and out-of-memory as ERR_TEMP.
 *
 * A struct error is a plain value (no allocation): put one on the stack,
 * pass its address down, read it after a -1.
 */
#ifndef MAILROOM_ERROR_H
#define MAILROOM_ERROR_H

enum error_code {
	ERR_OK = 0,
	ERR_TEMP,     /* I/O error, disk full, lock timeout: worth retrying */
	ERR_NOUSER,   /* no such user */
	ERR_NOTFOUND, /* no such mailbox or message */
	ERR_EXISTS,   /* the mailbox (or user) already exists */
	ERR_INVALID,  /* bad name or argument: permanent */
	ERR_QUOTA,    /* over quota: permanent unless store_quota_is_temporary() */
	ERR_LIMIT,    /* a store limit (keywords per mailbox, message size) */
	ERR_DATA,     /* bad message data */
	ERR_NOSPACE,  /* the file system is full (ENOSPC, SQLITE_FULL): temporary, like
		       * ERR_TEMP, but a protocol may say so (LMTP 452 4.3.1) */
};

struct error {
	enum error_code code;
	char text[256];
};

/* Fill err with code and a printf-formatted text (truncated to fit). */
void error_set(struct error *err, enum error_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Fill err from errno as "what: strerror(errno)". The code: ENOENT is
 * NOTFOUND, EEXIST and ENOTEMPTY EXISTS, ELOOP, EXDEV and ENAMETOOLONG
 * INVALID, EDQUOT QUOTA, ENOSPC NOSPACE; everything else (EIO, ...) TEMP. */
void error_errno(struct error *err, const char *what);

#endif
