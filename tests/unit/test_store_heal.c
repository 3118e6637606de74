/*
 * test_store_heal.c: the self-healing store (store_index.c, store_box.c):
 * a damaged index found on open and in use, an index moved aside by another
 * process under an open mailbox, a damaged or lost mailroom-box and
 * mailroom-uidvalidity, and `check` that reports damage without --repair
 * and heals it with. After each: the same UIDVALIDITY, UIDs, flags and
 * keyword names, the damaged file kept as NAME.corrupt-<time>.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"

struct fx {
	char dir[64];
	struct store *store;
	struct store_user *user;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct error err;
	strcpy(f->dir, "/tmp/mailroom-heal-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	assert_int_equal(store_open(f->dir, NULL, &f->store, &err), 0);
	assert_int_equal(store_user_create(f->store, "alice", &err), 0);
	assert_int_equal(store_user_open(f->store, "alice", &f->user, &err), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char cmd[128];
	store_user_close(&f->user);
	store_close(&f->store);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", f->dir);
	free(f);
	return 0;
}

static void path_of(const struct fx *f, const char *name, char *out, size_t size)
{
	snprintf(out, size, "%s/mail/alice/%s", f->dir, name);
}

/* Overwrite a file in place (same inode) with garbage. */
static void garbage(const struct fx *f, const char *name)
{
	char path[256], junk[8192];
	path_of(f, name, path, sizeof(path));
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (char)(i * 7919 % 251);
	int fd = open(path, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	close(fd);
}

static void garbage_index(const struct fx *f)
{
	garbage(f, "index.sqlite");
	garbage(f, "index.sqlite-wal");
	garbage(f, "index.sqlite-shm");
}

/* How many NAME.corrupt-* files the folder holds. */
static int corrupt_copies(const struct fx *f, const char *folder, const char *name)
{
	char path[256], prefix[128];
	int n = 0;
	path_of(f, folder, path, sizeof(path));
	snprintf(prefix, sizeof(prefix), "%s.corrupt-", name);
	DIR *d = opendir(path);
	assert_non_null(d);
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		n += strncmp(de->d_name, prefix, strlen(prefix)) == 0;
	closedir(d);
	return n;
}

/* ---- a mailbox's state as clients see it ------------------------------------ */

struct state {
	uint32_t uidvalidity, uidnext, n;
	uint32_t uid[16], flags[16];
	char kw[16][64]; /* keyword names of the message, in bit order */
};

struct walk {
	struct store_mailbox *mbox;
	struct state *s;
};

static int collect(void *ctx, const struct store_msg *m)
{
	struct walk *w = ctx;
	struct state *s = w->s;
	assert_true(s->n < 16);
	s->uid[s->n] = m->uid;
	s->flags[s->n] = m->flags;
	s->kw[s->n][0] = '\0';
	for (unsigned k = 0; k < 26; k++)
		if (m->keywords & (1u << k)) {
			const char *name = store_mailbox_keyword(w->mbox, k);
			strcat(s->kw[s->n], name != NULL ? name : "?");
			strcat(s->kw[s->n], " ");
		}
	s->n++;
	return 0;
}

static void snapshot(struct store_mailbox *mbox, struct state *s)
{
	struct store_status st;
	struct error err;
	struct walk w = { mbox, s };
	memset(s, 0, sizeof(*s));
	assert_int_equal(store_mailbox_status(mbox, &st, &err), 0);
	s->uidvalidity = st.uidvalidity;
	s->uidnext = st.uidnext;
	assert_int_equal(store_mailbox_messages(mbox, 1, UINT32_MAX, collect, &w, &err), 0);
}

static void snapshot_of(struct store_user *user, const char *name, struct state *s)
{
	struct store_mailbox *m;
	struct error err;
	assert_int_equal(store_mailbox_open(user, name, &m, &err), 0);
	snapshot(m, s);
	store_mailbox_close(&m);
}

static void assert_same(const struct state *a, const struct state *b, int uidvalidity_too)
{
	if (uidvalidity_too)
		assert_int_equal(a->uidvalidity, b->uidvalidity);
	assert_int_equal(a->uidnext, b->uidnext);
	assert_int_equal(a->n, b->n);
	for (uint32_t i = 0; i < a->n; i++) {
		assert_int_equal(a->uid[i], b->uid[i]);
		assert_int_equal(a->flags[i], b->flags[i]);
		assert_string_equal(a->kw[i], b->kw[i]);
	}
}

static uint32_t add_msg(struct store *store, struct store_mailbox *mbox, const char *text)
{
	struct store_stage *s;
	struct error err;
	uint32_t uid = 0;
	assert_int_equal(store_stage_new(store, &s, &err), 0);
	assert_int_equal(store_stage_write(s, text, strlen(text), &err), 0);
	assert_int_equal(store_stage_finish(s, &err), 0);
	assert_int_equal(store_mailbox_add(mbox, s, 0, 0, &uid, &err), 0);
	store_stage_free(&s);
	return uid;
}

/* INBOX: UIDs 1..4 with flags and two keywords, UID 5 expunged (UIDNEXT 6). */
static void populate(struct fx *f, struct state *before)
{
	struct store_mailbox *m;
	struct error err;
	uint32_t uids[5];
	unsigned k1, k2;
	assert_int_equal(store_mailbox_open(f->user, "INBOX", &m, &err), 0);
	for (int i = 0; i < 5; i++)
		uids[i] = add_msg(f->store, m, "Subject: heal\r\n\r\nbody\r\n");
	assert_int_equal(store_mailbox_keyword_index(m, "$Work", 1, &k1, &err), 0);
	assert_int_equal(store_mailbox_keyword_index(m, "Todo", 1, &k2, &err), 0);
	assert_int_equal(store_mailbox_set_flags(m, uids, 2, STORE_FLAGS_ADD, STORE_F_SEEN, 1u << k1,
						 0, NULL, NULL, &err), 0);
	assert_int_equal(store_mailbox_set_flags(m, uids + 2, 1, STORE_FLAGS_ADD, STORE_F_FLAGGED,
						 1u << k2, 0, NULL, NULL, &err), 0);
	assert_int_equal(store_mailbox_expunge(m, uids + 4, 1, &err), 0);
	snapshot(m, before);
	store_mailbox_close(&m);
	assert_int_equal(before->uidnext, 6);
	assert_int_equal(before->n, 4);
	assert_string_equal(before->kw[0], "$Work ");
	assert_string_equal(before->kw[2], "Todo ");
}

/* A fresh process: nothing pooled, nothing cached. */
static void reopen_store(struct fx *f)
{
	struct error err;
	store_user_close(&f->user);
	store_close(&f->store);
	assert_int_equal(store_open(f->dir, NULL, &f->store, &err), 0);
}

/* ---- the index ---------------------------------------------------------------- */

static void test_garbage_index_found_on_open(void **state)
{
	struct fx *f = *state;
	struct state before, after;
	struct error err;
	populate(f, &before);
	reopen_store(f);
	garbage_index(f);
	assert_int_equal(store_user_open(f->store, "alice", &f->user, &err), 0);
	assert_int_equal(corrupt_copies(f, "", "index.sqlite"), 1);
	assert_int_equal(corrupt_copies(f, "", "index.sqlite-wal"), 1);
	snapshot_of(f->user, "INBOX", &after);
	assert_same(&before, &after, 1);
}

static void test_damage_found_in_use(void **state)
{
	struct fx *f = *state;
	struct state before, after;
	struct store_mailbox *m;
	struct error err;
	populate(f, &before);
	/* The user and the mailbox stay open across the damage (a session). */
	assert_int_equal(store_mailbox_open(f->user, "INBOX", &m, &err), 0);
	garbage_index(f);
	assert_int_equal(store_mailbox_sync(m, 0, &err), 0);
	snapshot(m, &after);
	assert_same(&before, &after, 1);
	/* And a delivery goes on, above the old UIDNEXT. */
	assert_int_equal(add_msg(f->store, m, "Subject: after\r\n\r\nx\r\n"), before.uidnext);
	store_mailbox_close(&m);
	assert_int_equal(corrupt_copies(f, "", "index.sqlite"), 1);
}

static void test_index_moved_aside_under_an_open_mailbox(void **state)
{
	struct fx *f = *state;
	struct state before, after;
	struct store_mailbox *m;
	struct store *other;
	struct store_user *u2;
	struct error err;
	char from[256], to[256];
	populate(f, &before);
	assert_int_equal(store_mailbox_open(f->user, "INBOX", &m, &err), 0);
	/* Another process moves the index aside and builds a new one. */
	const char *names[] = { "index.sqlite", "index.sqlite-wal", "index.sqlite-shm" };
	for (int i = 0; i < 3; i++) {
		char aside[64];
		snprintf(aside, sizeof(aside), "%s.corrupt-by-other", names[i]);
		path_of(f, names[i], from, sizeof(from));
		path_of(f, aside, to, sizeof(to));
		assert_int_equal(rename(from, to), 0);
	}
	assert_int_equal(store_open(f->dir, NULL, &other, &err), 0);
	assert_int_equal(store_user_open(other, "alice", &u2, &err), 0);
	/* Our mailbox notices at its next sync and uses the new index: what it
	 * adds is seen by the other process, not written to the moved file. */
	assert_int_equal(store_mailbox_sync(m, 0, &err), 0);
	snapshot(m, &after);
	assert_same(&before, &after, 1);
	uint32_t uid = add_msg(f->store, m, "Subject: after\r\n\r\nx\r\n");
	assert_int_equal(uid, before.uidnext);
	store_mailbox_close(&m);
	snapshot_of(u2, "INBOX", &after);
	assert_int_equal(after.n, before.n + 1);
	assert_int_equal(after.uid[after.n - 1], uid);
	store_user_close(&u2);
	store_close(&other);
}

static void test_foreign_index_replaced(void **state)
{
	struct fx *f = *state;
	struct state before, after;
	struct error err;
	char path[256];
	populate(f, &before);
	reopen_store(f);
	const char *names[] = { "index.sqlite", "index.sqlite-wal", "index.sqlite-shm" };
	for (int i = 0; i < 3; i++) {
		path_of(f, names[i], path, sizeof(path));
		unlink(path);
	}
	sqlite3 *db;
	path_of(f, "index.sqlite", path, sizeof(path));
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "CREATE TABLE msg(a); PRAGMA application_id=7;", NULL, NULL,
				      NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(store_user_open(f->store, "alice", &f->user, &err), 0);
	assert_int_equal(corrupt_copies(f, "", "index.sqlite"), 1);
	snapshot_of(f->user, "INBOX", &after);
	assert_same(&before, &after, 1);
}

/* ---- mailroom-box and mailroom-uidvalidity ------------------------------------ */

static void test_garbage_box_keeps_uidvalidity_and_keywords(void **state)
{
	struct fx *f = *state;
	struct state before, after;
	populate(f, &before);
	reopen_store(f);
	garbage(f, "INBOX/mailroom-box");
	struct error err;
	assert_int_equal(store_user_open(f->store, "alice", &f->user, &err), 0);
	snapshot_of(f->user, "INBOX", &after);
	assert_same(&before, &after, 1);
	assert_int_equal(corrupt_copies(f, "INBOX", "mailroom-box"), 1);
}

static void test_truncated_box_keeps_what_is_left(void **state)
{
	struct fx *f = *state;
	struct state before, after;
	char path[256];
	struct error err;
	populate(f, &before);
	reopen_store(f);
	/* Cut in the middle of the uidvalidity line's number. */
	path_of(f, "INBOX/mailroom-box", path, sizeof(path));
	assert_int_equal(truncate(path, 70), 0);
	assert_int_equal(store_user_open(f->store, "alice", &f->user, &err), 0);
	snapshot_of(f->user, "INBOX", &after);
	assert_same(&before, &after, 1);
}

static void test_box_and_index_lost(void **state)
{
	struct fx *f = *state;
	struct state before, after;
	char path[256];
	struct error err;
	populate(f, &before);
	reopen_store(f);
	const char *names[] = { "index.sqlite", "index.sqlite-wal", "index.sqlite-shm",
				"INBOX/mailroom-box" };
	for (int i = 0; i < 4; i++) {
		path_of(f, names[i], path, sizeof(path));
		assert_int_equal(unlink(path), 0);
	}
	assert_int_equal(store_user_open(f->store, "alice", &f->user, &err), 0);
	snapshot_of(f->user, "INBOX", &after);
	/* UIDs and system flags from the names; UIDVALIDITY new (above the
	 * old); UIDNEXT only above the files; keyword names lost. */
	assert_int_equal(after.n, before.n);
	for (uint32_t i = 0; i < after.n; i++) {
		assert_int_equal(after.uid[i], before.uid[i]);
		assert_int_equal(after.flags[i], before.flags[i]);
	}
	assert_true(after.uidvalidity > before.uidvalidity);
	assert_int_equal(after.uidnext, before.uid[before.n - 1] + 1);
}

static void test_uidvalidity_file_damaged(void **state)
{
	struct fx *f = *state;
	struct state inbox, fresh;
	struct error err;
	char path[256];
	populate(f, &inbox);
	/* Garbage, then missing: a new mailbox still gets a UIDVALIDITY above
	 * every existing one. */
	garbage(f, "mailroom-uidvalidity");
	assert_int_equal(store_mailbox_create(f->user, "New", NULL, &err), 0);
	snapshot_of(f->user, "New", &fresh);
	assert_true(fresh.uidvalidity > inbox.uidvalidity);
	assert_int_equal(corrupt_copies(f, "", "mailroom-uidvalidity"), 1);
	path_of(f, "mailroom-uidvalidity", path, sizeof(path));
	assert_int_equal(unlink(path), 0);
	uint32_t last = fresh.uidvalidity;
	assert_int_equal(store_mailbox_create(f->user, "Newer", NULL, &err), 0);
	snapshot_of(f->user, "Newer", &fresh);
	assert_true(fresh.uidvalidity > last);
}

/* ---- check ------------------------------------------------------------------------ */

static void say_nothing(void *ctx, const char *line)
{
	(void)ctx;
	(void)line;
}

static void test_check_reports_then_repairs(void **state)
{
	struct fx *f = *state;
	struct state before, after;
	struct error err;
	unsigned problems = 0;
	populate(f, &before);
	reopen_store(f);
	garbage_index(f);
	assert_int_equal(store_check_user(f->store, "alice", 0, say_nothing, NULL, &problems, &err), 0);
	assert_true(problems > 0);
	assert_int_equal(corrupt_copies(f, "", "index.sqlite"), 0); /* not healed */
	assert_int_equal(store_check_user(f->store, "alice", 1, say_nothing, NULL, &problems, &err), 0);
	assert_true(problems > 0);
	assert_int_equal(corrupt_copies(f, "", "index.sqlite"), 1);
	assert_int_equal(store_check_user(f->store, "alice", 0, say_nothing, NULL, &problems, &err), 0);
	assert_int_equal(problems, 0);
	assert_int_equal(store_user_open(f->store, "alice", &f->user, &err), 0);
	snapshot_of(f->user, "INBOX", &after);
	assert_same(&before, &after, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_garbage_index_found_on_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damage_found_in_use, setup, teardown),
		cmocka_unit_test_setup_teardown(test_index_moved_aside_under_an_open_mailbox, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_foreign_index_replaced, setup, teardown),
		cmocka_unit_test_setup_teardown(test_garbage_box_keeps_uidvalidity_and_keywords, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_truncated_box_keeps_what_is_left, setup, teardown),
		cmocka_unit_test_setup_teardown(test_box_and_index_lost, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uidvalidity_file_damaged, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_reports_then_repairs, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
