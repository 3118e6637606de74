/*
 * test_store_cache.c: the store's parsed-message cache (store_cache.c)
 * against a real DATA folder: what delivery caches is served without reading
 * the file; a missing row (deleted, or a file dropped into new/) is parsed
 * once and then cached; a corrupt cached tree is reparsed and rewritten; a
 * cache that cannot be written costs a parse, not an answer; an expunged
 * message is NOTFOUND; the batch read gives named fields. Every string is
 * compared with what src/mime computes for the stored bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mime/mime.h"
#include "store/store.h"

struct fx {
	char dir[64];
	struct store *store;
	struct store_user *user;
	struct store_mailbox *mbox;
};

/* A multipart message with bare LF line ends (delivery makes them CRLF). */
static const char multipart[] =
	"From: Alice <alice@example.org>\n"
	"To: bob@example.org\n"
	"Subject: =?utf-8?q?caf=C3=A9?=\n"
	"Date: Mon, 1 Jan 2024 10:00:00 +0000\n"
	"Message-ID: <1@example.org>\n"
	"MIME-Version: 1.0\n"
	"Content-Type: multipart/mixed; boundary=\"b1\"\n"
	"\n"
	"--b1\n"
	"Content-Type: text/plain; charset=iso-8859-1\n"
	"\n"
	"caf\xe9\n"
	"--b1\n"
	"Content-Type: application/octet-stream; name=x.bin\n"
	"Content-Transfer-Encoding: base64\n"
	"\n"
	"AAEC\n"
	"--b1--\n";

static void rm_rf(const char *path)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", path);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct error err;
	strcpy(f->dir, "/tmp/mailroom-test-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	assert_int_equal(store_open(f->dir, NULL, &f->store, &err), 0);
	assert_int_equal(store_user_create(f->store, "alice", &err), 0);
	assert_int_equal(store_user_open(f->store, "alice", &f->user, &err), 0);
	assert_int_equal(store_mailbox_open(f->user, "INBOX", &f->mbox, &err), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	store_mailbox_close(&f->mbox);
	store_user_close(&f->user);
	store_close(&f->store);
	rm_rf(f->dir);
	free(f);
	return 0;
}

static uint32_t deliver(struct fx *f, const char *text)
{
	struct store_stage *s;
	struct error err;
	uint32_t uid = 0;
	assert_int_equal(store_stage_new(f->store, &s, &err), 0);
	assert_int_equal(store_stage_write(s, text, strlen(text), &err), 0);
	assert_int_equal(store_stage_finish(s, &err), 0);
	assert_int_equal(store_mailbox_add(f->mbox, s, 0, 0, &uid, &err), 0);
	store_stage_free(&s);
	return uid;
}

struct found {
	uint32_t uid;
	char fname[256];
};

static int find_cb(void *ctx, const struct store_msg *m)
{
	struct found *fd = ctx;
	fd->uid = m->uid;
	snprintf(fd->fname, sizeof(fd->fname), "%s", m->fname);
	return 0;
}

/* The path of uid's file in INBOX/cur. */
static void msg_path(struct fx *f, uint32_t uid, char *path, size_t size)
{
	struct found fd = { 0, "" };
	struct error err;
	assert_int_equal(store_mailbox_messages(f->mbox, uid, uid, find_cb, &fd, &err), 0);
	assert_int_equal(fd.uid, uid);
	snprintf(path, size, "%s/mail/alice/INBOX/cur/%s", f->dir, fd.fname);
}

/* The bytes of uid's file (malloc'ed). */
static char *msg_bytes(struct fx *f, uint32_t uid, size_t *len_r)
{
	char path[512];
	msg_path(f, uid, path, sizeof(path));
	FILE *fp = fopen(path, "rb");
	assert_non_null(fp);
	char *buf = malloc(1 << 16);
	*len_r = fread(buf, 1, 1 << 16, fp);
	fclose(fp);
	return buf;
}

/* A change made behind the store's back: the file no longer holds the
 * message, so an answer that is still right came from the cache. */
static void truncate_msg(struct fx *f, uint32_t uid)
{
	char path[512];
	msg_path(f, uid, path, sizeof(path));
	assert_int_equal(truncate(path, 0), 0);
}

static void sql(struct fx *f, const char *q)
{
	char path[128];
	sqlite3 *db;
	snprintf(path, sizeof(path), "%s/mail/alice/index.sqlite", f->dir);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	assert_int_equal(sqlite3_exec(db, q, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

/* Cache rows of uid with all four fields set. */
static int full_rows(struct fx *f, uint32_t uid)
{
	char path[128], q[200];
	sqlite3 *db;
	sqlite3_stmt *st;
	snprintf(path, sizeof(path), "%s/mail/alice/index.sqlite", f->dir);
	snprintf(q, sizeof(q),
		 "SELECT count(*) FROM msg_cache WHERE uid=%u AND envelope IS NOT NULL AND body IS"
		 " NOT NULL AND bodystructure IS NOT NULL AND mimetree IS NOT NULL",
		 uid);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, q, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	int n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

/* The cached tree blob of uid (malloc'ed, NUL-terminated), or NULL. */
static char *cached_tree(struct fx *f, uint32_t uid)
{
	char path[128], q[100];
	sqlite3 *db;
	sqlite3_stmt *st;
	char *v = NULL;
	snprintf(path, sizeof(path), "%s/mail/alice/index.sqlite", f->dir);
	snprintf(q, sizeof(q), "SELECT mimetree FROM msg_cache WHERE uid=%u", uid);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, q, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
		v = strndup(sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

/* What src/mime computes for the bytes, field by field. */
struct expect {
	char *envelope, *body, *bodystructure, *tree;
	size_t envelope_len, body_len, bodystructure_len, tree_len;
	uint64_t vsize;
	unsigned parts;
};

static void expect_of(const char *bytes, size_t len, struct expect *e)
{
	struct mime_tree *t;
	struct error why;
	assert_int_equal(mime_parse_buffer(bytes, len, &t, &why), 0);
	e->envelope = mime_envelope_imap(t->root, &e->envelope_len);
	e->body = mime_bodystructure_imap(t, false, &e->body_len);
	e->bodystructure = mime_bodystructure_imap(t, true, &e->bodystructure_len);
	e->tree = mime_tree_serialize(t, &e->tree_len);
	e->vsize = t->vsize;
	e->parts = t->part_count;
	mime_tree_free(&t);
}

static void expect_of_msg(struct fx *f, uint32_t uid, struct expect *e)
{
	size_t len;
	char *bytes = msg_bytes(f, uid, &len);
	expect_of(bytes, len, e);
	free(bytes);
}

static void expect_clear(struct expect *e)
{
	free(e->envelope);
	free(e->body);
	free(e->bodystructure);
	free(e->tree);
}

static void assert_same_tree(const struct mime_tree *t, const struct expect *e)
{
	size_t len;
	assert_non_null(t);
	assert_int_equal(t->vsize, e->vsize);
	assert_int_equal(t->part_count, e->parts);
	char *s = mime_tree_serialize(t, &len);
	assert_int_equal(len, e->tree_len);
	assert_memory_equal(s, e->tree, len);
	free(s);
}

static void assert_parsed(const struct store_parsed *p, const struct expect *e, unsigned want)
{
	if (want & STORE_PARSED_ENVELOPE) {
		assert_int_equal(p->envelope_len, e->envelope_len);
		assert_memory_equal(p->envelope, e->envelope, e->envelope_len);
		assert_int_equal(p->envelope[p->envelope_len], '\0');
	} else {
		assert_null(p->envelope);
	}
	if (want & STORE_PARSED_BODY) {
		assert_int_equal(p->body_len, e->body_len);
		assert_memory_equal(p->body, e->body, e->body_len);
	} else {
		assert_null(p->body);
	}
	if (want & STORE_PARSED_BODYSTRUCTURE) {
		assert_int_equal(p->bodystructure_len, e->bodystructure_len);
		assert_memory_equal(p->bodystructure, e->bodystructure, e->bodystructure_len);
	} else {
		assert_null(p->bodystructure);
	}
	if (want & STORE_PARSED_TREE)
		assert_same_tree(p->tree, e);
	else
		assert_null(p->tree);
}

#define ALL                                                                  \
	(STORE_PARSED_ENVELOPE | STORE_PARSED_BODY | STORE_PARSED_BODYSTRUCTURE | \
	 STORE_PARSED_TREE)

/* Delivery caches the parsed message: served with the file's bytes gone,
 * equal to what the MIME module computes for the stored bytes. */
static void test_delivered_from_cache(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct store_parsed p = { 0 };
	struct expect e;
	uint32_t uid = deliver(f, multipart);
	expect_of_msg(f, uid, &e);
	assert_true(e.envelope_len > 0 && e.parts == 3);
	assert_int_equal(full_rows(f, uid), 1);
	truncate_msg(f, uid);
	assert_int_equal(store_cache_get(f->mbox, uid, ALL, &p, &err), 0);
	assert_parsed(&p, &e, ALL);
	store_cache_parsed_clear(&p);
	store_cache_parsed_clear(&p); /* a cleared struct clears again */
	/* only what is asked for */
	assert_int_equal(store_cache_get(f->mbox, uid, STORE_PARSED_BODY, &p, &err), 0);
	assert_parsed(&p, &e, STORE_PARSED_BODY);
	/* a field already held is kept, the missing ones filled */
	char *body = p.body;
	assert_int_equal(store_cache_get(f->mbox, uid, STORE_PARSED_BODY | STORE_PARSED_TREE, &p,
					 &err),
			 0);
	assert_ptr_equal(p.body, body);
	assert_parsed(&p, &e, STORE_PARSED_BODY | STORE_PARSED_TREE);
	store_cache_parsed_clear(&p);
	expect_clear(&e);
}

/* A message without a cache row is parsed on the first call, which writes
 * the row; the second call is served from it. */
static void test_miss_parsed_then_cached(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct store_parsed p = { 0 };
	struct expect e;
	uint32_t uid = deliver(f, multipart);
	expect_of_msg(f, uid, &e);
	sql(f, "DELETE FROM msg_cache");
	assert_int_equal(full_rows(f, uid), 0);
	assert_int_equal(store_cache_get(f->mbox, uid, STORE_PARSED_TREE, &p, &err), 0);
	assert_parsed(&p, &e, STORE_PARSED_TREE);
	store_cache_parsed_clear(&p);
	assert_int_equal(full_rows(f, uid), 1); /* the whole row, not only the tree */
	truncate_msg(f, uid);
	assert_int_equal(store_cache_get(f->mbox, uid, ALL, &p, &err), 0);
	assert_parsed(&p, &e, ALL);
	store_cache_parsed_clear(&p);
	expect_clear(&e);

	/* a row of an older version with only the tree counts as a miss for
	 * the strings */
	uid = deliver(f, "Subject: partial\n\nbody\n");
	expect_of_msg(f, uid, &e);
	sql(f, "UPDATE msg_cache SET envelope=NULL, body=NULL, bodystructure=NULL");
	assert_int_equal(store_cache_get(f->mbox, uid, STORE_PARSED_ENVELOPE, &p, &err), 0);
	assert_parsed(&p, &e, STORE_PARSED_ENVELOPE);
	store_cache_parsed_clear(&p);
	assert_int_equal(full_rows(f, uid), 1);
	expect_clear(&e);
}

/* A file another program drops into new/ (bare LF, never staged) is
 * parsed from its own bytes on first use. */
static void test_dropped_file(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct store_parsed p = { 0 };
	struct expect e;
	char path[512];
	deliver(f, "Subject: first\n\nx\n");
	snprintf(path, sizeof(path), "%s/mail/alice/INBOX/new/1700000000.dropped.host", f->dir);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs("From: someone@example.org\nSubject: dropped\n\nhello\n", fp);
	fclose(fp);
	assert_int_equal(store_mailbox_sync(f->mbox, 0, &err), 0);
	uint32_t uid = 2;
	expect_of_msg(f, uid, &e);
	assert_int_equal(full_rows(f, uid), 0);
	assert_int_equal(store_cache_get(f->mbox, uid, ALL, &p, &err), 0);
	assert_parsed(&p, &e, ALL);
	assert_int_equal(p.tree->vsize, p.tree->size + 4); /* four bare LF */
	store_cache_parsed_clear(&p);
	assert_int_equal(full_rows(f, uid), 1);
	expect_clear(&e);
}

/* A cached tree that does not deserialise is reparsed and rewritten. */
static void test_corrupt_tree(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct store_parsed p = { 0 };
	struct expect e;
	uint32_t uid = deliver(f, multipart);
	expect_of_msg(f, uid, &e);
	sql(f, "UPDATE msg_cache SET mimetree='mime-tree 2 garbage'");
	assert_int_equal(store_cache_get(f->mbox, uid, STORE_PARSED_TREE | STORE_PARSED_ENVELOPE, &p,
					 &err),
			 0);
	assert_parsed(&p, &e, STORE_PARSED_TREE | STORE_PARSED_ENVELOPE);
	store_cache_parsed_clear(&p);
	char *blob = cached_tree(f, uid);
	assert_non_null(blob);
	assert_int_equal(strlen(blob), e.tree_len);
	assert_memory_equal(blob, e.tree, e.tree_len);
	free(blob);
	expect_clear(&e);
}

/* A cache that cannot be written costs a parse, not the answer. */
static void test_cache_write_fails(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct store_parsed p = { 0 };
	struct expect e;
	uint32_t uid = deliver(f, multipart);
	expect_of_msg(f, uid, &e);
	sql(f, "DELETE FROM msg_cache;"
	       "CREATE TRIGGER test_no_cache BEFORE INSERT ON msg_cache"
	       " BEGIN SELECT RAISE(ABORT, 'cache refused by the test'); END");
	assert_int_equal(store_cache_get(f->mbox, uid, ALL, &p, &err), 0);
	assert_parsed(&p, &e, ALL);
	store_cache_parsed_clear(&p);
	assert_int_equal(full_rows(f, uid), 0);
	sql(f, "DROP TRIGGER test_no_cache");
	assert_int_equal(store_cache_get(f->mbox, uid, STORE_PARSED_BODY, &p, &err), 0);
	assert_parsed(&p, &e, STORE_PARSED_BODY);
	store_cache_parsed_clear(&p);
	assert_int_equal(full_rows(f, uid), 1);
	expect_clear(&e);
}

/* A message that is gone is NOTFOUND, and no row is left behind. */
static void test_expunged_notfound(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct store_parsed p = { 0 };
	uint32_t uid = deliver(f, multipart);
	assert_int_equal(store_mailbox_expunge(f->mbox, &uid, 1, &err), 0);
	assert_int_equal(store_cache_get(f->mbox, uid, ALL, &p, &err), -1);
	assert_int_equal(err.code, ERR_NOTFOUND);
	assert_null(p.envelope);
	assert_null(p.tree);
	assert_int_equal(store_cache_get(f->mbox, 999, STORE_PARSED_ENVELOPE, &p, &err), -1);
	assert_int_equal(err.code, ERR_NOTFOUND);
	assert_int_equal(full_rows(f, uid), 0);
}

struct range_seen {
	uint32_t uid[8];
	int has_env[8], has_body[8], has_tree[8];
	size_t n;
	char *kept; /* an envelope the callback took */
};

static int range_cb(void *ctx, uint32_t uid, struct store_parsed *parsed)
{
	struct range_seen *r = ctx;
	assert_true(r->n < 8);
	r->uid[r->n] = uid;
	r->has_env[r->n] = parsed->envelope != NULL;
	r->has_body[r->n] = parsed->body != NULL;
	r->has_tree[r->n] = parsed->tree != NULL;
	if (r->kept == NULL) {
		r->kept = parsed->envelope;
		parsed->envelope = NULL;
	}
	r->n++;
	return 0;
}

/* The batch read: named fields of the rows that exist, nothing parsed; a
 * row whose tree is corrupt (so of no known version) is left out for
 * store_cache_get to reparse. */
static void test_range(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct range_seen r;
	struct expect e;
	uint32_t u1 = deliver(f, multipart);
	uint32_t u2 = deliver(f, "Subject: two\n\nx\n");
	uint32_t u3 = deliver(f, "Subject: three\n\ny\n");
	expect_of_msg(f, u1, &e);
	char q[200];
	snprintf(q, sizeof(q), "DELETE FROM msg_cache WHERE uid=%u;"
		 "UPDATE msg_cache SET mimetree='x' WHERE uid=%u", u2, u3);
	sql(f, q);
	memset(&r, 0, sizeof(r));
	assert_int_equal(store_cache_range(f->mbox, u1, u3, STORE_PARSED_ENVELOPE | STORE_PARSED_TREE,
					   range_cb, &r, &err),
			 0);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.uid[0], u1);
	assert_true(r.has_env[0]);
	assert_false(r.has_body[0]);
	assert_true(r.has_tree[0]);
	assert_non_null(r.kept);
	assert_string_equal(r.kept, e.envelope);
	free(r.kept);
	expect_clear(&e);
	/* what the range left out, store_cache_get fills (and the row heals) */
	struct store_parsed p = { 0 };
	expect_of_msg(f, u3, &e);
	assert_int_equal(store_cache_get(f->mbox, u3, STORE_PARSED_TREE, &p, &err), 0);
	assert_parsed(&p, &e, STORE_PARSED_TREE);
	store_cache_parsed_clear(&p);
	char *blob = cached_tree(f, u3);
	assert_string_equal(blob, e.tree);
	free(blob);
	expect_clear(&e);
}

/* A row an older parser wrote (its tree of another MIME_TREE_FORMAT) is not
 * served, by the batch read nor by store_cache_get, which reparses the file
 * and rewrites the row: a parser fix reaches messages cached before it. */
static void test_old_version_row(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct range_seen r;
	struct expect e;
	struct store_parsed p = { 0 };
	uint32_t uid = deliver(f, multipart);
	expect_of_msg(f, uid, &e);
	char q[300];
	snprintf(q, sizeof(q),
		 "UPDATE msg_cache SET bodystructure='(\"stale\")', envelope='(\"stale\")',"
		 " mimetree=replace(CAST(mimetree AS TEXT), 'mime-tree %d ', 'mime-tree %d ')",
		 MIME_TREE_FORMAT, MIME_TREE_FORMAT - 1);
	sql(f, q);
	char *blob = cached_tree(f, uid);
	assert_false(mime_tree_blob_current(blob, strlen(blob)));
	free(blob);
	memset(&r, 0, sizeof(r));
	assert_int_equal(store_cache_range(f->mbox, uid, uid, ALL, range_cb, &r, &err), 0);
	assert_int_equal(r.n, 0);
	assert_int_equal(store_cache_get(f->mbox, uid, ALL, &p, &err), 0);
	assert_parsed(&p, &e, ALL);
	store_cache_parsed_clear(&p);
	blob = cached_tree(f, uid);
	assert_string_equal(blob, e.tree);
	free(blob);
	memset(&r, 0, sizeof(r));
	assert_int_equal(store_cache_range(f->mbox, uid, uid, ALL, range_cb, &r, &err), 0);
	assert_int_equal(r.n, 1);
	assert_non_null(r.kept);
	assert_string_equal(r.kept, e.envelope);
	free(r.kept);
	expect_clear(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_delivered_from_cache, setup, teardown),
		cmocka_unit_test_setup_teardown(test_miss_parsed_then_cached, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dropped_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_tree, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache_write_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expunged_notfound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_old_version_row, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
