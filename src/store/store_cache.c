/*
 * store_cache.c: the parsed form of each message (ENVELOPE, BODY,
 * BODYSTRUCTURE, the MIME tree and the PREVIEW, RFC 8970), kept in the
 * index's msg_cache table.
 *
 * Design note. The store alone fills and reads the cache; callers ask for
 * named fields (struct store_parsed) and never parse a message themselves.
 *
 *  - Delivery: store_stage.c parses the message while writing it and keeps
 *    the row (store_cache_row_fill); store_mailbox_add writes it with the
 *    message (store_cache_put), so the first FETCH reads no file.
 *  - A miss (a file adopted from new/ or from a rebuilt index, a row that
 *    could not be written, a row of an older version that lacks a field):
 *    the first reader (store_cache_get) streams the file through the MIME
 *    parser CHUNK bytes at a time, never the whole message in memory, and
 *    writes the whole row.
 *  - A cached tree that does not deserialise (a corrupt or foreign blob) is
 *    a miss too: the file is parsed again and the row rewritten.
 *  - So is a row an older parser wrote: its tree blob carries the version
 *    (MIME_TREE_FORMAT, mime.h), bumped whenever the parser's output
 *    changes, and a row of another version is not served (row_current).
 *  - The preview is the one field that needs the message's bytes besides
 *    its tree (mime_preview reads the text part): it is computed wherever a
 *    row is made, from the staged file or the file parsed on a miss. A row
 *    written before the column existed has it NULL: asked for, that is a
 *    miss like any missing field, unless the caller wants only what is
 *    cached (STORE_PARSED_CACHED, for PREVIEW (LAZY)).
 *
 * Whichever path fills a row, its strings come from mime_tree_cache_strings
 * (here, and only here, mapped from its positions to names), so the cache
 * holds the same bytes whoever wrote it. The tree handed out is always the
 * one rebuilt from its serialised form, so what a caller sees does not
 * depend on whether the cache was hit.
 *
 * A cache write that fails (disk full, index busy) is logged and costs a
 * parse next time, never the caller's answer; so does a cache read that
 * finds the index damaged (it is healed by the next command's
 * store_index_verify, store_index.c): the file is parsed as on a miss. A row is written only while
 * its message has an index row (INSERT ... WHERE EXISTS), and it goes with
 * that row (trigger msg_cache_gc, store_index.c), or when reconcile gives the
 * UID to a file it did not know (store_sync.c).
 */
#include "store/store_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/log.h"
#include "mime/mime.h"

/* Bytes read from the message file per parser call on a miss. */
#define CHUNK (64 * 1024)

#define PARSED_STRINGS                                                                   \
	(STORE_PARSED_ENVELOPE | STORE_PARSED_BODY | STORE_PARSED_BODYSTRUCTURE |        \
	 STORE_PARSED_PREVIEW)

int store_cache_row_fill(struct store_cache_row *row, const struct mime_tree *tree, int fd)
{
	char *v[4];
	size_t len[4];
	memset(row, 0, sizeof(*row));
	if (mime_tree_cache_strings(tree, v, len) < 0)
		return -1;
	if (fd >= 0) {
		struct mime_source src = { mime_source_fd_pread, (void *)(intptr_t)fd };
		if (mime_preview(tree, &src, &row->text.preview, &row->text.preview_len) < 0)
			row->text.preview = NULL; /* a miss next time, no more */
	}
	/* mime_tree_cache_strings' order: ENVELOPE, BODY, BODYSTRUCTURE, tree */
	row->text.envelope = v[0];
	row->text.envelope_len = len[0];
	row->text.body = v[1];
	row->text.body_len = len[1];
	row->text.bodystructure = v[2];
	row->text.bodystructure_len = len[2];
	row->tree = v[3];
	row->tree_len = len[3];
	return 0;
}

void store_cache_parsed_clear(struct store_parsed *parsed)
{
	free(parsed->envelope);
	free(parsed->body);
	free(parsed->bodystructure);
	free(parsed->preview);
	mime_tree_free(&parsed->tree);
	memset(parsed, 0, sizeof(*parsed));
}

void store_cache_row_clear(struct store_cache_row *row)
{
	store_cache_parsed_clear(&row->text);
	free(row->tree);
	row->tree = NULL;
	row->tree_len = 0;
}

int store_cache_put(struct store_mailbox *mbox, uint32_t uid, const struct store_cache_row *row,
		    struct error *err)
{
	sqlite3_stmt *st = store_index_stmt(
		mbox->user,
		"INSERT OR REPLACE INTO msg_cache(mailbox, uid, envelope, body, bodystructure,"
		" mimetree, preview) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7"
		" WHERE EXISTS(SELECT 1 FROM msg WHERE mailbox=?1 AND uid=?2)",
		err);
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, mbox->id);
	sqlite3_bind_int64(st, 2, uid);
	sqlite3_bind_text(st, 3, row->text.envelope, (int)row->text.envelope_len, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, row->text.body, (int)row->text.body_len, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, row->text.bodystructure, (int)row->text.bodystructure_len,
			  SQLITE_STATIC);
	sqlite3_bind_blob(st, 6, row->tree, (int)row->tree_len, SQLITE_STATIC);
	if (row->text.preview != NULL)
		sqlite3_bind_text(st, 7, row->text.preview, (int)row->text.preview_len,
				  SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 7);
	int rc = sqlite3_step(st);
	return store_index_done(mbox->user, st, rc, "cache", err);
}

/* A malloc'ed, NUL-terminated copy of column col (NULL stays NULL). */
static int column_copy(sqlite3_stmt *st, int col, char **v_r, size_t *len_r)
{
	*v_r = NULL;
	*len_r = 0;
	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return 0;
	const void *p = sqlite3_column_blob(st, col);
	size_t n = (size_t)sqlite3_column_bytes(st, col);
	char *copy = malloc(n + 1);
	if (copy == NULL)
		return -1;
	if (n > 0)
		memcpy(copy, p, n);
	copy[n] = '\0';
	*v_r = copy;
	*len_r = n;
	return 0;
}

/* Was the row of a "SELECT uid, envelope, body, bodystructure, mimetree,
 * preview" written by this parser version? (Its strings are only as current as its
 * tree, which says its version.) */
static bool row_current(sqlite3_stmt *st)
{
	const void *tree = sqlite3_column_blob(st, 4);
	return mime_tree_blob_current(tree, (size_t)sqlite3_column_bytes(st, 4));
}

/* The columns of a "SELECT uid, envelope, body, bodystructure, mimetree,
 * preview" row that want asks for; only those are read (the others may sit in
 * overflow pages that need not be touched). */
static int row_from_stmt(sqlite3_stmt *st, unsigned want, struct store_cache_row *row)
{
	memset(row, 0, sizeof(*row));
	struct store_parsed *t = &row->text;
	if (((want & STORE_PARSED_ENVELOPE) &&
	     column_copy(st, 1, &t->envelope, &t->envelope_len) < 0) ||
	    ((want & STORE_PARSED_BODY) && column_copy(st, 2, &t->body, &t->body_len) < 0) ||
	    ((want & STORE_PARSED_BODYSTRUCTURE) &&
	     column_copy(st, 3, &t->bodystructure, &t->bodystructure_len) < 0) ||
	    ((want & STORE_PARSED_TREE) && column_copy(st, 4, &row->tree, &row->tree_len) < 0) ||
	    ((want & STORE_PARSED_PREVIEW) &&
	     column_copy(st, 5, &t->preview, &t->preview_len) < 0)) {
		store_cache_row_clear(row);
		return -1;
	}
	return 0;
}

/* The fields *p holds. */
static unsigned held(const struct store_parsed *p)
{
	return (p->envelope != NULL ? STORE_PARSED_ENVELOPE : 0) |
	       (p->body != NULL ? STORE_PARSED_BODY : 0) |
	       (p->bodystructure != NULL ? STORE_PARSED_BODYSTRUCTURE : 0) |
	       (p->preview != NULL ? STORE_PARSED_PREVIEW : 0) |
	       (p->tree != NULL ? STORE_PARSED_TREE : 0);
}

/* Does row hold every field of want? */
static int row_complete(const struct store_cache_row *row, unsigned want)
{
	unsigned have = held(&row->text) | (row->tree != NULL ? STORE_PARSED_TREE : 0);
	return (want & ~have) == 0;
}

/* Moves *from (length from_len) to *to, if *to is empty. */
static void take_string(char **to, size_t *to_len, char **from, size_t from_len)
{
	if (*to != NULL)
		return;
	*to = *from;
	*to_len = from_len;
	*from = NULL;
}

/* Moves the strings of row that want names into *parsed (where it has none
 * yet), and rebuilds the tree from the row's blob. 0, or -1 with why set if
 * the blob does not deserialise (then nothing is moved). */
static int take_row(struct store_parsed *parsed, struct store_cache_row *row, unsigned want,
		    struct error *why)
{
	struct store_parsed *t = &row->text;
	if ((want & STORE_PARSED_TREE) && parsed->tree == NULL && row->tree != NULL &&
	    mime_tree_deserialize(row->tree, row->tree_len, &parsed->tree, why) < 0)
		return -1;
	if (want & STORE_PARSED_ENVELOPE)
		take_string(&parsed->envelope, &parsed->envelope_len, &t->envelope, t->envelope_len);
	if (want & STORE_PARSED_BODY)
		take_string(&parsed->body, &parsed->body_len, &t->body, t->body_len);
	if (want & STORE_PARSED_BODYSTRUCTURE)
		take_string(&parsed->bodystructure, &parsed->bodystructure_len, &t->bodystructure,
			    t->bodystructure_len);
	if (want & STORE_PARSED_PREVIEW)
		take_string(&parsed->preview, &parsed->preview_len, &t->preview, t->preview_len);
	return 0;
}

/* After a cache statement failed with err: a damaged index (the statement
 * marked it) is a miss, 0, for the caller to parse the file; anything else
 * (busy, out of memory) -1. */
static int damaged_miss(struct store_mailbox *mbox, const struct error *err)
{
	if (!mbox->user->ix_damaged)
		return -1;
	log_warn("store %s/%s: cache: %s; parsing the file instead", mbox->user->name, mbox->name,
		 err->text);
	return 0;
}

/* Read the cache row of uid (the columns want names). 1: found, 0: none. */
static int read_row(struct store_mailbox *mbox, uint32_t uid, unsigned want,
		    struct store_cache_row *row, struct error *err)
{
	sqlite3_stmt *st = store_index_stmt(mbox->user,
					    "SELECT uid, envelope, body, bodystructure, mimetree, preview"
					    " FROM msg_cache WHERE mailbox=? AND uid=?",
					    err);
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, mbox->id);
	sqlite3_bind_int64(st, 2, uid);
	int rc = sqlite3_step(st);
	int found = rc == SQLITE_ROW && row_current(st); /* an old row is a miss */
	if (found && row_from_stmt(st, want, row) < 0) {
		sqlite3_reset(st);
		error_set(err, ERR_TEMP, "out of memory");
		return -1;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		store_index_sqlerr(mbox->user, err, "cache");
		return damaged_miss(mbox, err);
	}
	return found;
}

/* Stream the message file through the parser; *fd_r is the file (for the
 * preview; the caller closes it). */
static int parse_file(struct store_mailbox *mbox, uint32_t uid, struct mime_tree **tree_r,
		      int *fd_r, struct error *err)
{
	int fd = -1;
	uint64_t size;
	struct mime_parser *p = NULL;
	char *buf = NULL;
	struct error why;

	if (store_message_open(mbox, uid, &fd, &size, err) < 0)
		return -1;
	buf = malloc(CHUNK);
	p = mime_parser_new(NULL);
	if (buf == NULL || p == NULL)
		goto oom;
	for (uint64_t off = 0;;) {
		ssize_t n = pread(fd, buf, CHUNK, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			error_errno(err, "read message");
			goto fail;
		}
		if (n == 0)
			break;
		if (mime_parser_feed(p, buf, (size_t)n) == MIME_ERROR)
			break; /* out of memory: finish reports it */
		off += (uint64_t)n;
	}
	if (mime_parser_finish(&p, tree_r, &why) < 0)
		goto oom;
	free(buf);
	*fd_r = fd;
	return 0;
oom:
	error_set(err, ERR_TEMP, "out of memory parsing message %u", uid);
fail:
	mime_parser_free(&p);
	free(buf);
	close(fd);
	return -1;
}

/* The miss: parse the file, write the whole row, hand out what want names. */
static int fill_from_file(struct store_mailbox *mbox, uint32_t uid, unsigned want,
			  struct store_parsed *parsed, struct error *err)
{
	struct mime_tree *tree = NULL;
	struct store_cache_row row;
	struct error cerr;
	struct error why;
	int fd = -1;

	if (parse_file(mbox, uid, &tree, &fd, err) < 0)
		return -1;
	int filled = store_cache_row_fill(&row, tree, fd);
	close(fd);
	if (filled < 0) {
		mime_tree_free(&tree);
		error_set(err, ERR_TEMP, "out of memory parsing message %u", uid);
		return -1;
	}
	if (store_cache_put(mbox, uid, &row, &cerr) < 0)
		log_warn("store %s/%s: cache of uid %u: %s", mbox->user->name, mbox->name, uid,
			 cerr.text);
	if (take_row(parsed, &row, want, &why) < 0) {
		/* our own serialisation does not round-trip: a bug, but the
		 * parser's tree still answers */
		log_warn("store %s/%s: tree of uid %u: %s", mbox->user->name, mbox->name, uid,
			 why.text);
		parsed->tree = tree;
		tree = NULL;
		take_row(parsed, &row, want & PARSED_STRINGS, &why);
	}
	mime_tree_free(&tree);
	store_cache_row_clear(&row);
	return 0;
}

int store_cache_get(struct store_mailbox *mbox, uint32_t uid, unsigned want,
		    struct store_parsed *parsed, struct error *err)
{
	struct store_parsed got = *parsed;
	struct store_cache_row row;
	struct error why;
	unsigned need = want & ~held(&got) & ~STORE_PARSED_CACHED;

	if (need == 0)
		return 0;
	int found = read_row(mbox, uid, need, &row, err);
	if (found < 0)
		return -1;
	int ret = 0;
	if ((want & STORE_PARSED_CACHED) && (!found || take_row(&got, &row, need, &why) == 0)) {
		*parsed = got; /* only what the cache holds: no file read */
	} else if (found && row_complete(&row, need) && take_row(&got, &row, need, &why) == 0) {
		*parsed = got;
	} else {
		if (found && row_complete(&row, need))
			log_warn("store %s/%s: cached tree of uid %u: %s; reparsing",
				 mbox->user->name, mbox->name, uid, why.text);
		ret = fill_from_file(mbox, uid, need, &got, err);
		if (ret == 0)
			*parsed = got;
	}
	if (found)
		store_cache_row_clear(&row);
	return ret;
}

int store_cache_range(struct store_mailbox *mbox, uint32_t lo, uint32_t hi, unsigned want,
		      int (*cb)(void *ctx, uint32_t uid, struct store_parsed *parsed), void *ctx,
		      struct error *err)
{
	sqlite3_stmt *st = store_index_stmt(mbox->user,
					    "SELECT uid, envelope, body, bodystructure, mimetree, preview"
					    " FROM msg_cache WHERE mailbox=? AND uid BETWEEN ? AND ?"
					    " ORDER BY uid",
					    err);
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, mbox->id);
	sqlite3_bind_int64(st, 2, lo);
	sqlite3_bind_int64(st, 3, hi);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_cache_row row;
		struct store_parsed parsed = { 0 };
		struct error why;
		if (!row_current(st))
			continue; /* left out: store_cache_get reparses it */
		if (row_from_stmt(st, want, &row) < 0) {
			sqlite3_reset(st);
			error_set(err, ERR_TEMP, "out of memory");
			return -1;
		}
		/* a tree that does not deserialise is left out: store_cache_get
		 * reparses it (and says so) */
		if (take_row(&parsed, &row, want, &why) < 0)
			take_row(&parsed, &row, want & PARSED_STRINGS, &why);
		store_cache_row_clear(&row);
		int stop = cb(ctx, (uint32_t)sqlite3_column_int64(st, 0), &parsed);
		store_cache_parsed_clear(&parsed);
		if (stop != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	if (store_index_done(mbox->user, st, rc, "cache", err) < 0)
		return damaged_miss(mbox, err); /* the rest are misses: store_cache_get */
	return 0;
}
