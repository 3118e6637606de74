/*
 * export.h: `mailroom export`: one user's mail out of the store, as a
 * Dovecot-compatible Maildir++ tree or as mboxrd files (issue 12).
 *
 * Design note. An export only reads the store, through store.h (mailbox
 * list, open, message rows, message files, keywords, subscriptions), so it
 * is safe while the server runs: what it writes goes below one folder, OUT,
 * given as a directory descriptor (opened before the command drops root
 * rights), which must be empty. The store's own locking keeps each
 * mailbox's rows and files consistent; a message expunged between its row
 * and its file is left out (it is gone).
 *
 *  - maildir (export_maildir.c): OUT is a Maildir++ root as Dovecot 2.3
 *    writes it: INBOX in OUT itself, every other mailbox in ".A.B" (each
 *    level in modified UTF-7, RFC 3501 5.1.3), each with cur/ new/ tmp/,
 *    "maildirfolder", "dovecot-uidlist" (version 3: UIDVALIDITY, next UID,
 *    one "UID :base,S=size,W=vsize" line per message) and
 *    "dovecot-keywords"; "subscriptions" (version 2) in OUT. File names are
 *    "base,S=size,W=vsize:2,FLAGS" with the system letters DFPRST and the
 *    keyword letters a..z (the store's own letters, which dovecot-keywords
 *    names; $Forwarded is P and, for Dovecot, which ignores P, also a
 *    keyword letter). Dovecot, and `mailroom import dovecot:OUT`, read it back with
 *    the same UIDVALIDITY, UIDs, flags and keywords. Message files are
 *    hard-linked to the store's (they are never rewritten there) when OUT
 *    is on the same file system and the file's mtime is its INTERNALDATE;
 *    otherwise (or with copy) copied, with mtime = INTERNALDATE, which is
 *    what Dovecot reads as INTERNALDATE. The bytes are the store's: CRLF.
 *    A mailbox with a '.' in a level cannot be a Maildir++ folder (Dovecot
 *    refuses such names too): it is skipped and reported.
 *  - mbox (export_mbox.c): OUT is a folder with one mboxrd file (RFC 4155,
 *    with mboxrd quoting: a line matching ^>*From  gets one more '>') per
 *    mailbox: OUT/INBOX, OUT/Work/2024 (one folder level per hierarchy
 *    level, each in modified UTF-7 as UW-IMAP and Dovecot name mbox files:
 *    OUT/Entw&APw-rfe), and Dovecot's ".subscriptions". A mailbox that has
 *    children and is itself a mailbox
 *    would need OUT/Work to be a file and a folder: its children go under
 *    OUT/Work.sbd/ (Thunderbird's convention for the same clash). Line
 *    endings are LF (the unix convention mutt and every mbox reader expect).
 *    Each message gets "From SENDER DATE" (SENDER: the Return-Path address,
 *    else MAILER-DAEMON; DATE: INTERNALDATE in UTC, asctime form) and, at
 *    the end of its header, Status (R for \Seen, O always), X-Status
 *    (A F T D), X-Keywords (and $Forwarded), X-UID; the first message of a
 *    file also X-IMAPbase (UIDVALIDITY, UIDNEXT - 1, the keywords), as
 *    UW-IMAP and Dovecot write them, so an import keeps the UIDs. An empty
 *    mailbox holds UW-IMAP's pseudo message ("DON'T DELETE THIS MESSAGE --
 *    FOLDER INTERNAL DATA", X-IMAP with UIDVALIDITY and UIDNEXT - 1), which
 *    importers skip, so its UIDVALIDITY and UIDNEXT are kept too.
 *
 * Errors: ERR_NOTFOUND a named mailbox is not there; ERR_EXISTS OUT is not
 * empty; ERR_TEMP (and ERR_NOSPACE) reading the store or writing OUT.
 * Everything written is fsynced, files and folders, before export_run
 * returns 0: a backup is durable once the command says so.
 */
#ifndef MAILROOM_EXPORT_H
#define MAILROOM_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/error.h"

struct store_user;

enum export_format { EXPORT_MAILDIR, EXPORT_MBOX };

struct export_options {
	enum export_format format;
	const char *const *mailboxes; /* IMAP names (UTF-8); NULL/0: every mailbox */
	size_t nmailboxes;
	int copy; /* 1: never hard-link */
	/* Called after each message and mailbox (may be NULL): for progress. */
	void (*progress)(void *ctx, const char *mailbox, uint32_t done, uint32_t total);
	/* Called for each mailbox or message left out, with the reason. */
	void (*skipped)(void *ctx, const char *what, const char *reason);
	void *ctx;
};

struct export_report {
	unsigned mailboxes; /* mailboxes written */
	uint64_t messages;  /* messages written */
	uint64_t linked;    /* of which hard-linked (maildir) */
	uint64_t bytes;	    /* message bytes written (copies and mbox) */
	unsigned skipped;   /* mailboxes left out (export_skip) */
	int write_failed;   /* the error was writing OUT (not reading the store) */
};

/* Export user's mailboxes into the empty folder outfd. 0, or -1 with err
 * (see above); *report_r says what was done either way. outfd is not
 * closed. */
int export_run(struct store_user *user, int outfd, const struct export_options *opt,
	       struct export_report *report_r, struct error *err);

/* ---- internals shared by the two writers (export.c) ------------------------ */

/* One message row, as export.c hands it to a writer. */
struct export_msg {
	uint32_t uid;
	uint32_t flags;
	uint32_t keywords;
	uint64_t size; /* RFC822.SIZE */
	int64_t internaldate;
};

/* One mailbox to write. */
struct export_box {
	struct store_mailbox *mbox;
	const char *name;
	uint32_t uidvalidity;
	uint32_t uidnext;
	const struct export_msg *msgs;
	size_t nmsgs;
	int has_children; /* another mailbox is below it */
};

struct export_ctx {
	int outfd;
	const struct export_options *opt;
	char *const *all; /* every mailbox of the user (the mbox layout needs them) */
	size_t nall;
	struct export_report report;
};

/* Write one mailbox in the format. 0, or -1 with err (the export stops). */
int export_maildir_box(struct export_ctx *x, const struct export_box *b, struct error *err);
/* Dovecot's subscriptions file (version 2: "V\t2\n\n", then one name a
 * line, levels in modified UTF-7 with TAB between them; names Dovecot
 * could not hold are left out) as OUT/file. */
int export_subscriptions(struct export_ctx *x, struct store_user *user, const char *file,
			 struct error *err);
/* name ("A/B", UTF-8) with each level in modified UTF-7 and sep between
 * them, appended to out: ".A.B" for sep '.' (a Maildir++ folder; INBOX is
 * "."), "A\tB" for '\t' (subscriptions), "A/B" for '/' (mbox). A level
 * that is empty or holds sep is ERR_INVALID; ERR_TEMP out of memory. */
int export_name_path(const char *name, char sep, struct buf *out, struct error *err);
int export_mbox_box(struct export_ctx *x, const struct export_box *b, struct error *err);

/* Report a mailbox left out. */
void export_skip(struct export_ctx *x, const char *what, const char *reason);
/* error_errno for a failure writing OUT (marks report.write_failed). */
void export_out_errno(struct export_ctx *x, struct error *err, const char *what);

/* ---- mboxrd (export_mbox.c), exposed for the unit tests -------------------- */

/* The mboxrd quoting of a byte stream (LF line endings): a line matching
 * ^>*From  (with the space) gets one more '>' in front. Feed any slices;
 * the state carries over. Only the start of each line is held, as a count,
 * so a line of a million '>' costs no memory. */
struct export_mboxrd {
	int state; /* 0: at line start, 1: counting '>', 2: matching "From ", 3: rest of line */
	size_t gt; /* '>' seen at this line's start */
	size_t matched; /* bytes of "From " matched after them */
};
void export_mboxrd_init(struct export_mboxrd *q);
void export_mboxrd_quote(struct export_mboxrd *q, const char *in, size_t len, struct buf *out);
/* At the end of the stream: write what is still held (a line that ended
 * before it could be decided). */
void export_mboxrd_flush(struct export_mboxrd *q, struct buf *out);

/* One message into mbox form: begin (From_ line), feed the stored bytes
 * (CRLF or LF) in any slices, end. The writer drops the CR of each CRLF,
 * adds `extra` (header lines, LF-terminated) at the end of the header,
 * quotes, and ends the message with a blank line. */
struct export_mbox_msg {
	struct export_mboxrd q;
	const char *extra;
	int in_header; /* still in the message's header */
	int bol;       /* at the start of a line (after LF conversion) */
	int cr;	       /* a CR held: dropped if LF follows */
	char last;     /* last byte given to the quoter */
};
void export_mbox_msg_begin(struct export_mbox_msg *m, const char *sender, int64_t internaldate,
			   const char *extra, struct buf *out);
void export_mbox_msg_feed(struct export_mbox_msg *m, const char *data, size_t len, struct buf *out);
void export_mbox_msg_end(struct export_mbox_msg *m, struct buf *out);
/* The envelope sender for the From_ line from the start of a message
 * (Return-Path's address, if it is one word), else "MAILER-DAEMON".
 * Writes a NUL-terminated string of at most size - 1 bytes to sender_r. */
void export_mbox_sender(const char *head, size_t len, char *sender_r, size_t size);

#endif
