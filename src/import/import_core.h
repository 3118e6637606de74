/*
 * import_core.h: the sink of import.h, for `mailroom import`.
 *
 * import_core_new gives a struct import_sink that writes what a source
 * driver describes into one user's mailboxes (store_import_* of store.h),
 * or, with dry_run, writes nothing and prints what it would do. Either way
 * it keeps the counts of the summary line and prints a report, one line per
 * event worth an admin's attention: every skip with its reason, every copy
 * with why it was not a link, a size the old server showed that differs
 * from what mailroom serves, a refused POP3 UIDL, a folder appended to
 * under another UIDVALIDITY.
 */
#ifndef MAILROOM_IMPORT_CORE_H
#define MAILROOM_IMPORT_CORE_H

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "import/import.h"

struct store;

struct import_core_counts {
	uint64_t imported; /* linked + copied + streamed */
	uint64_t linked;
	uint64_t copied;
	uint64_t streamed; /* given as bytes (mbox, IMAP) */
	uint64_t already;  /* there from an earlier run (same UID, or a duplicate when appending) */
	uint64_t skipped;
	uint64_t folders;
	uint64_t subscriptions;
	uint64_t size_mismatches;
};

struct import_core_opts {
	const char *user;
	int dry_run;
	FILE *report; /* the report's lines (stdout) */
	/* Called after each message (may be NULL): progress on a terminal. */
	void (*progress)(void *ctx, const struct import_core_counts *c);
	void *progress_ctx;
	/* The server's run_user and its group, when known (run as root on a
	 * store not handed over yet: files of theirs may still be linked,
	 * store_import_set_owner). */
	int owner_known;
	uid_t owner_uid;
	gid_t owner_gid;
};

struct import_core;

/* A sink for opts->user (created with its INBOX and special-use mailboxes
 * if it has no mail root; not in dry-run). 0, or -1 with err (TEMP,
 * NOSPACE, NOUSER for an invalid name). */
int import_core_new(struct store *store, const struct import_core_opts *opts,
		    struct import_core **core_r, struct error *err);
/* The sink to give a driver; valid until import_core_free. */
const struct import_sink *import_core_sink(struct import_core *core);
/* End a folder the driver left open (it stopped half way): what was added
 * is kept. 0, or -1 with err. Call once the driver has returned. */
int import_core_finish(struct import_core *core, struct error *err);
const struct import_core_counts *import_core_counts(const struct import_core *core);
/* 1 if the user's mail root was created by this import. */
int import_core_created_user(const struct import_core *core);
void import_core_free(struct import_core **core);

#endif
