/*
 * import.h: moving a user's mail in from another store (and out again).
 *
 * Design note. An import has two halves that meet at struct import_sink:
 *
 *  - a source driver (import_dovecot.c, import_courier.c, import_mbox.c,
 *    import_imap.c) reads one user's mail in a foreign format and describes
 *    it: folders with their UIDVALIDITY and UIDNEXT, messages with their
 *    UID, flags, keywords, INTERNALDATE and POP3 UIDL, and subscriptions.
 *    A driver knows nothing of the store; it only calls the sink.
 *  - the sink (import_core.c) writes what the driver describes into the
 *    store through store.h, under the store's locks (safe while the server
 *    runs), keeping UIDVALIDITY and UIDs so that no client downloads a
 *    message again. A message that is a file on the same file system is
 *    hard-linked (no byte copied, the source untouched); otherwise it is
 *    copied. Line endings are left as they are: the store serves a bare-LF
 *    file as CRLF with the CRLF size, which is the size the old server
 *    showed (Dovecot's W=).
 *
 * Order of calls from a driver, per folder:
 *     folder_begin, then for each message: has_uid (optional), then
 *     msg_file, or msg_begin + msg_write... + msg_end; then folder_end.
 * subscribe and skip may come at any time. Folders may come in any order; a
 * parent that holds no messages need not be described at all.
 *
 * Re-runs. An interrupted import is run again: a message whose UID is
 * already in the target folder is skipped (has_uid lets a driver skip it
 * without reading it). When the target folder already holds other mail
 * under another UIDVALIDITY, the sink appends with new UIDs instead and
 * skips messages it already has (same Message-ID, size and INTERNALDATE);
 * it says so in the report.
 *
 * Errors. A driver that cannot read one message calls skip with the reason
 * and goes on; it returns -1 only when it cannot go on at all (the source
 * is not there, not of its format, unreadable). A sink callback that fails
 * returns -1 with err set; the driver stops and returns -1 with that err.
 */
#ifndef MAILROOM_IMPORT_H
#define MAILROOM_IMPORT_H

#include <stddef.h>
#include <stdint.h>

#include "lib/error.h"

struct import_folder {
	const char *name;	 /* IMAP name in UTF-8, '/' between levels ("INBOX", "Work/2024") */
	uint32_t uidvalidity;	 /* 0: unknown, the store gives one */
	uint32_t uidnext;	 /* 0: unknown (one above the highest UID) */
	const char *special_use; /* "\\Sent", "\\Trash"... or NULL */
};

struct import_msg {
	uint32_t uid;			/* 0: unknown, the next free UID is given */
	uint32_t flags;			/* STORE_F_* (store.h) */
	const char *const *keywords;	/* keyword names, nkeywords of them */
	size_t nkeywords;
	int64_t internaldate;		/* seconds since the epoch; -1: unknown (msg_file: the
					 * file's mtime; a stream: now) */
	const char *pop3_uidl;		/* the UIDL the old server gave, or NULL: the default
					 * (mailroom's %08X%08X of UID and UIDVALIDITY) */
	uint64_t size;			/* the RFC822.SIZE the old server showed, 0: unknown;
					 * a mismatch is reported, not fatal */
	const char *id;			/* for the report: the source's name for it
					 * ("cur/1700000000.M1P2.host:2,S", "mbox offset 4096") */
};

struct import_sink {
	void *ctx;
	int (*folder_begin)(void *ctx, const struct import_folder *f, struct error *err);
	/* 1 if the current folder already has this UID (a re-run): skip it. */
	int (*has_uid)(void *ctx, uint32_t uid);
	/* A message that is a whole file, path relative to dirfd (or absolute). */
	int (*msg_file)(void *ctx, const struct import_msg *m, int dirfd, const char *path,
			struct error *err);
	/* A message given as bytes (mbox, IMAP): begin, write any number of
	 * times, end. The bytes are the message exactly (no From_ line, no
	 * quoting); line endings as they come. */
	int (*msg_begin)(void *ctx, const struct import_msg *m, struct error *err);
	int (*msg_write)(void *ctx, const void *data, size_t len, struct error *err);
	int (*msg_end)(void *ctx, struct error *err);
	int (*folder_end)(void *ctx, struct error *err);
	/* A subscribed name (need not exist). */
	int (*subscribe)(void *ctx, const char *name, struct error *err);
	/* Something not imported and why: goes to the report. */
	void (*skip)(void *ctx, const char *what, const char *reason);
};

/* ---- source drivers --------------------------------------------------------- */

/* Dovecot maildir: path is the Maildir (the folder holding cur/ new/ tmp/,
 * dovecot-uidlist, dovecot-keywords, subscriptions and the .Folder
 * subfolders of Maildir++, or the subfolders of LAYOUT=fs). */
int import_dovecot(const char *path, const struct import_sink *sink, struct error *err);
/* Courier maildir: courierimapuiddb, courierimapkeywords/, courierimapsubscribed. */
int import_courier(const char *path, const struct import_sink *sink, struct error *err);
/* mbox: a file (imported as INBOX) or a folder of mbox files (one folder
 * each, subfolders as children). */
int import_mbox(const char *path, const struct import_sink *sink, struct error *err);

struct import_imap_source {
	const char *host;
	unsigned port;		/* 0: 143, or 993 with tls */
	int tls;		/* 1: implicit TLS (imaps://); 0: STARTTLS when offered */
	const char *login;
	const char *password;
	int tls_no_verify;	/* 1: accept any TLS certificate (SOURCE ?tls-verify=no);
				 * 0, the default: verify it against the system's CAs */
};
/* Any IMAP server, online. */
int import_imap(const struct import_imap_source *src, const struct import_sink *sink,
		struct error *err);

#endif
