/*
 * import_imap_int.h: what the two halves of the IMAP import driver share:
 * import_imap.c (the session: connection, login, folder list) and
 * import_imap_fetch.c (one folder: its message list and the bodies).
 * Not for use outside these two files.
 */
#ifndef MAILROOM_IMPORT_IMAP_INT_H
#define MAILROOM_IMPORT_IMAP_INT_H

#include <stdint.h>

#include "import/imapc_conn.h"
#include "import/import.h"
#include "lib/buf.h"
#include "store/store.h"

struct folder {
	char *raw;  /* the name as the server spells it (for EXAMINE) */
	char *name; /* mailroom's: UTF-8, '/' between levels */
	const char *special_use;
};

struct msg {
	uint32_t uid;	 /* 0: not known (yet) */
	uint32_t flags;	 /* STORE_F_* */
	int64_t date;	 /* INTERNALDATE; -1 unknown */
	uint64_t size;	 /* RFC822.SIZE */
	uint32_t kw_off; /* keywords: NUL-separated in imp->kw */
	uint32_t nkw;
	int want; /* to be fetched in this run */
	int done; /* its body went to the sink */
};

struct imp {
	const struct import_imap_source *src;
	const struct import_sink *sink;
	struct error *err; /* connection and protocol errors */
	int stopped;	   /* a callback failed: stop_err says why */
	struct imapc_conn *c;
	struct buf caps; /* " CAP1 CAP2 ... " in upper case */
	int utf8;
	char *ns_prefix;
	struct folder *folders;
	size_t nfolders;
	/* the folder being imported */
	const struct folder *cur;
	uint32_t uidvalidity, uidnext, exists;
	struct msg *msgs; /* by sequence number - 1 */
	size_t nmsgs;
	size_t hint;
	struct buf kw;
	size_t msgcap;
	struct msg *streaming; /* the message whose body is coming */
	int discarding;
	const char **kwptrs; /* its keywords, for import_msg */
	char id[STORE_MAX_MAILBOX_NAME + 32];
	struct error stop_err; /* why a callback stopped the import (stopped) */
	uint64_t nimported, nskipped;
};

/* Run a command; see imapc_conn_cmd. */
static inline int imp_run(struct imp *imp, const char *text, imapc_untagged_fn *fn)
{
	return imapc_conn_cmd(imp->c, text, NULL, fn, imp, imp->err);
}

/* Report something not imported. */
static inline void imp_skip(struct imp *imp, const char *what, const char *reason)
{
	imp->nskipped++;
	if (imp->sink->skip != NULL)
		imp->sink->skip(imp->sink->ctx, what, reason);
}

/* A sink callback failed (imp->stop_err says why): returns -1. */
static inline int imp_stop(struct imp *imp)
{
	imp->stopped = 1;
	return -1;
}

/* Import the folder f (import_imap_fetch.c): EXAMINE, folder_begin, the
 * messages the sink lacks, folder_end. A folder the server will not open
 * is skipped (0). Returns -1 when the import cannot go on: the connection
 * failed (imp->err) or a sink callback did (imp->stopped, imp->stop_err). */
int import_imap_fetch_folder(struct imp *imp, const struct folder *f);

/* RFC 3501 date-time ("17-Jul-1996 02:44:25 -0700", the day may be " 7"):
 * seconds since the epoch, or -1 if s is not one. */
int64_t import_imap_fetch_date(const char *s);

#endif
