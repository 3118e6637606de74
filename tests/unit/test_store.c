/*
 * test_store.c: the store's API against a real file system (a temporary
 * DATA folder per test): delivery round trip, single instance, flags,
 * copy/move/expunge, mailbox operations, reconcile with files changed
 * behind the index's back, rebuild of a deleted index, containment of
 * hostile names, quota, and fault injection along every operation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fsx.h"
#include "store/store.h"

struct fx {
	char dir[64];
	struct store *store;
	struct store_user *user;
};

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
	assert_int_equal(store_user_create(f->store, "bob", &err), 0);
	assert_int_equal(store_user_open(f->store, "alice", &f->user, &err), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	for (int i = 0; i < FSX_OP_COUNT; i++)
		fsx_fault_set((enum fsx_op)i, 0, 0);
	store_user_close(&f->user);
	store_close(&f->store);
	rm_rf(f->dir);
	free(f);
	return 0;
}

static struct store_stage *stage_of(struct store *store, const char *text)
{
	struct store_stage *s;
	struct error err;
	assert_int_equal(store_stage_new(store, &s, &err), 0);
	assert_int_equal(store_stage_write(s, text, strlen(text), &err), 0);
	assert_int_equal(store_stage_finish(s, &err), 0);
	return s;
}

static struct store_stage *stage_of_dated(struct store *store, const char *text, time_t when)
{
	struct store_stage *s;
	struct error err;
	assert_int_equal(store_stage_new(store, &s, &err), 0);
	assert_int_equal(store_stage_write(s, text, strlen(text), &err), 0);
	store_stage_set_internaldate(s, when);
	assert_int_equal(store_stage_finish(s, &err), 0);
	return s;
}

static uint32_t add_msg(struct store_mailbox *mbox, struct store *store, const char *text,
			uint32_t flags)
{
	struct store_stage *s = stage_of(store, text);
	struct error err;
	uint32_t uid = 0;
	assert_int_equal(store_mailbox_add(mbox, s, flags, 0, &uid, &err), 0);
	store_stage_free(&s);
	return uid;
}

static char *read_msg(struct store_mailbox *mbox, uint32_t uid)
{
	int fd;
	uint64_t size;
	struct error err;
	assert_int_equal(store_message_open(mbox, uid, &fd, &size, &err), 0);
	char *buf = calloc(1, size + 1);
	assert_int_equal(read(fd, buf, size), (ssize_t)size);
	close(fd);
	return buf;
}

struct collected {
	uint32_t uid[256];
	uint32_t flags[256];
	uint32_t keywords[256];
	uint64_t modseq[256];
	int64_t idate[256];
	char fname[256][256];
	size_t n;
};

static int collect(void *ctx, const struct store_msg *m)
{
	struct collected *c = ctx;
	if (c->n < 256) {
		c->uid[c->n] = m->uid;
		c->flags[c->n] = m->flags;
		c->keywords[c->n] = m->keywords;
		c->modseq[c->n] = m->modseq;
		c->idate[c->n] = m->internaldate;
		snprintf(c->fname[c->n], sizeof(c->fname[0]), "%s", m->fname);
		c->n++;
	}
	return 0;
}

static void list_msgs(struct store_mailbox *mbox, struct collected *c)
{
	struct error err;
	memset(c, 0, sizeof(*c));
	assert_int_equal(store_mailbox_messages(mbox, 1, UINT32_MAX, collect, c, &err), 0);
}

static void note_modified(void *ctx, const struct store_flag_report *r)
{
	if (r->modified)
		*(uint32_t *)ctx = r->uid;
}

struct reports {
	struct store_flag_report r[8];
	size_t n;
};

static void note_report(void *ctx, const struct store_flag_report *r)
{
	struct reports *rs = ctx;
	assert_true(rs->n < 8);
	rs->r[rs->n++] = *r;
}

static unsigned check_problems(struct fx *f, const char *user, int repair)
{
	unsigned problems = 99;
	struct error err;
	assert_int_equal(store_check_user(f->store, user, repair, NULL, NULL, &problems, &err), 0);
	return problems;
}

static int count_files(struct fx *f, const char *rel)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", f->dir, rel);
	DIR *d = opendir(path);
	int n = 0;
	struct dirent *de;
	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

/* 1. Round trip: bytes back identical after CRLF normalisation, UID, flags. */
static void test_roundtrip(void **state)
{
	struct fx *f = *state;
	struct store_mailbox *mbox;
	struct error err;
	assert_int_equal(store_mailbox_open(f->user, "INBOX", &mbox, &err), 0);
	uint32_t u1 = add_msg(mbox, f->store, "Subject: one\n\nbody\n", 0);
	uint32_t u2 = add_msg(mbox, f->store, "Subject: two\r\n\r\nx\r\ny\rz\n", STORE_F_SEEN | STORE_F_FLAGGED);
	assert_int_equal(u1, 1);
	assert_int_equal(u2, 2);
	char *a = read_msg(mbox, u1), *b = read_msg(mbox, u2);
	assert_string_equal(a, "Subject: one\r\n\r\nbody\r\n");
	assert_string_equal(b, "Subject: two\r\n\r\nx\r\ny\rz\r\n");
	free(a);
	free(b);
	struct collected c;
	list_msgs(mbox, &c);
	assert_int_equal(c.n, 2);
	assert_int_equal(c.flags[1], STORE_F_SEEN | STORE_F_FLAGGED);
	assert_non_null(strstr(c.fname[1], ",U=2:2,FS"));
	assert_non_null(strstr(c.fname[0], ",S=22,U=1:2,"));
	struct store_status st;
	assert_int_equal(store_mailbox_status(mbox, &st, &err), 0);
	assert_int_equal(st.messages, 2);
	assert_int_equal(st.unseen, 1);
	assert_int_equal(st.uidnext, 3);
	assert_true(c.modseq[1] > c.modseq[0]);
	assert_true(st.highestmodseq >= c.modseq[1]);
	/* APPEND with flags, a keyword and an internal date (RFC 9051 6.3.12):
	 * the date is the file's mtime, so it survives the index. */
	unsigned kw;
	assert_int_equal(store_mailbox_keyword_index(mbox, "$Junk", 1, &kw, &err), 0);
	struct store_stage *s = stage_of_dated(f->store, "Subject: old\n\nx\n", 946684800);
	uint32_t u3;
	assert_int_equal(store_mailbox_add(mbox, s, STORE_F_DRAFT, 1u << kw, &u3, &err), 0);
	store_stage_free(&s);
	list_msgs(mbox, &c);
	assert_int_equal(c.n, 3);
	assert_int_equal(c.uid[2], 3);
	assert_int_equal(c.flags[2], STORE_F_DRAFT);
	assert_int_equal(c.keywords[2], 1u << kw);
	assert_non_null(strstr(c.fname[2], ":2,Da"));
	assert_int_equal(c.idate[2], 946684800);
	assert_true(c.idate[0] > 946684800);
	store_mailbox_close(&mbox);
	assert_int_equal(check_problems(f, "alice", 0), 0);
}

/* A session in IDLE gives its directory descriptors back; the next
 * operation reopens them, and never opens a different mailbox that took
 * the name meanwhile. */
static void test_release_fds(void **state)
{
	struct fx *f = *state;
	struct store_mailbox *mbox, *other;
	struct error err;
	assert_int_equal(store_mailbox_create(f->user, "Work", NULL, &err), 0);
	assert_int_equal(store_mailbox_open(f->user, "Work", &mbox, &err), 0);
	uint32_t u1 = add_msg(mbox, f->store, "Subject: one\n\nbody\n", 0);
	store_mailbox_release_fds(mbox);
	store_mailbox_release_fds(mbox); /* twice is harmless */
	/* a change made by someone else meanwhile is seen after the reopen */
	assert_int_equal(store_mailbox_open(f->user, "Work", &other, &err), 0);
	uint32_t u2 = add_msg(other, f->store, "Subject: two\n\nx\n", 0);
	store_mailbox_close(&other);
	assert_int_equal(store_mailbox_sync(mbox, 0, &err), 0);
	struct collected c;
	list_msgs(mbox, &c);
	assert_int_equal(c.n, 2);
	char *a = read_msg(mbox, u2);
	assert_string_equal(a, "Subject: two\r\n\r\nx\r\n");
	free(a);
	/* every writer reopens too: flags (rename), expunge (unlink), add */
	store_mailbox_release_fds(mbox);
	assert_int_equal(store_mailbox_set_flags(mbox, &u1, 1, STORE_FLAGS_ADD, STORE_F_SEEN, 0, 0,
						 NULL, NULL, &err), 0);
	store_mailbox_release_fds(mbox);
	assert_int_equal(store_mailbox_expunge(mbox, &u1, 1, &err), 0);
	store_mailbox_release_fds(mbox);
	uint32_t u3 = add_msg(mbox, f->store, "Subject: three\n\nx\n", 0);
	assert_true(u3 > u2);
	list_msgs(mbox, &c);
	assert_int_equal(c.n, 2);
	/* The mailbox is renamed and a new one takes its name: the released
	 * handle must not reopen the newcomer. */
	store_mailbox_release_fds(mbox);
	assert_int_equal(store_mailbox_rename(f->user, "Work", "Old", &err), 0);
	assert_int_equal(store_mailbox_create(f->user, "Work", NULL, &err), 0);
	int fd;
	uint64_t size;
	assert_int_equal(store_message_open(mbox, u2, &fd, &size, &err), -1);
	assert_int_equal(err.code, ERR_NOTFOUND);
	assert_int_equal(store_mailbox_sync(mbox, 0, &err), -1);
	assert_int_equal(err.code, ERR_NOTFOUND);
	store_mailbox_close(&mbox);
	assert_int_equal(check_problems(f, "alice", 0), 0);
}

/* STATUS figures: an empty mailbox, then counts by flag and the size. */
static void test_status_counts(void **state)
{
	struct fx *f = *state;
	struct store_mailbox *mbox;
	struct error err;
	struct store_status st;
	assert_int_equal(store_mailbox_create(f->user, "Box", NULL, &err), 0);
	assert_int_equal(store_mailbox_open(f->user, "Box", &mbox, &err), 0);
	assert_int_equal(store_mailbox_status(mbox, &st, &err), 0);
	assert_int_equal(st.messages, 0);
	assert_int_equal(st.unseen, 0);
	assert_int_equal(st.deleted, 0);
	assert_int_equal(st.size, 0);
	assert_int_equal(st.uidnext, 1);
	uint32_t u1 = add_msg(mbox, f->store, "Subject: a\n\n1\n", STORE_F_SEEN);
	uint32_t u2 = add_msg(mbox, f->store, "Subject: bb\n\n22\n", STORE_F_DELETED);
	add_msg(mbox, f->store, "Subject: ccc\n\n333\n", STORE_F_SEEN | STORE_F_DELETED);
	assert_int_equal(store_mailbox_status(mbox, &st, &err), 0);
	assert_int_equal(st.messages, 3);
	assert_int_equal(st.unseen, 1);
	assert_int_equal(st.deleted, 2);
	/* CRLF-stored sizes: 17 + 19 + 21 */
	assert_int_equal(st.size, 57);
	assert_int_equal(st.uidnext, 4);
	assert_int_equal(store_mailbox_expunge(mbox, &u2, 1, &err), 0);
	assert_int_equal(store_mailbox_set_flags(mbox, &u1, 1, STORE_FLAGS_REMOVE, STORE_F_SEEN, 0, 0,
						 NULL, NULL, &err), 0);
	assert_int_equal(store_mailbox_status(mbox, &st, &err), 0);
	assert_int_equal(st.messages, 2);
	assert_int_equal(st.unseen, 1);
	assert_int_equal(st.deleted, 1);
	assert_int_equal(st.size, 38);
	store_mailbox_close(&mbox);
}

/* \Recent (store_mailbox_recent.c): what one handle claims no other gets;
 * peeking claims nothing; RENAME keeps the state, a mailbox deleted and
 * created again under the same name starts afresh. */
static void test_recent(void **state)
{
	struct fx *f = *state;
	struct store_mailbox *a, *b;
	struct error err;
	uint32_t lo, hi, n;
	assert_int_equal(store_mailbox_create(f->user, "Box", NULL, &err), 0);
	assert_int_equal(store_mailbox_open(f->user, "Box", &a, &err), 0);
	assert_int_equal(store_mailbox_open(f->user, "Box", &b, &err), 0);
	add_msg(a, f->store, "Subject: 1\n\n1\n", 0);
	add_msg(a, f->store, "Subject: 2\n\n2\n", 0);
	assert_int_equal(store_mailbox_recent_count(b, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(store_mailbox_recent(b, 0, &lo, &hi, &err), 0); /* EXAMINE */
	assert_int_equal(lo, 1);
	assert_int_equal(hi, 3);
	assert_int_equal(store_mailbox_recent(a, 1, &lo, &hi, &err), 0); /* SELECT */
	assert_int_equal(lo, 1);
	assert_int_equal(hi, 3);
	assert_int_equal(store_mailbox_recent(b, 1, &lo, &hi, &err), 0);
	assert_int_equal(lo, hi); /* nothing left for b */
	assert_int_equal(store_mailbox_recent_count(a, &n, &err), 0);
	assert_int_equal(n, 0);
	add_msg(a, f->store, "Subject: 3\n\n3\n", 0);
	assert_int_equal(store_mailbox_recent(b, 1, &lo, &hi, &err), 0);
	assert_int_equal(lo, 3);
	assert_int_equal(hi, 4);
	assert_int_equal(store_mailbox_recent(a, 1, &lo, &hi, &err), 0);
	assert_int_equal(lo, hi);
	store_mailbox_close(&a);
	store_mailbox_close(&b);
	assert_int_equal(store_mailbox_open(f->user, "Box", &a, &err), 0);
	add_msg(a, f->store, "Subject: 4\n\n4\n", 0);
	store_mailbox_close(&a);
	assert_int_equal(store_mailbox_rename(f->user, "Box", "Box2", &err), 0);
	assert_int_equal(store_mailbox_open(f->user, "Box2", &a, &err), 0);
	assert_int_equal(store_mailbox_recent_count(a, &n, &err), 0);
	assert_int_equal(n, 1); /* the one added before the rename */
	store_mailbox_close(&a);
	assert_int_equal(store_mailbox_delete(f->user, "Box2", &err), 0);
	assert_int_equal(store_mailbox_create(f->user, "Box2", NULL, &err), 0);
	assert_int_equal(store_mailbox_open(f->user, "Box2", &a, &err), 0);
	add_msg(a, f->store, "Subject: 5\n\n5\n", 0);
	assert_int_equal(store_mailbox_recent(a, 1, &lo, &hi, &err), 0);
	assert_int_equal(lo, 1);
	assert_int_equal(hi, 2);
	store_mailbox_close(&a);
}

/* store_mailbox_set_flags reports each message of the set as it left it:
 * changed (new modseq), already as asked (untouched), failed UNCHANGEDSINCE
 * (untouched); a UID not in the mailbox is not reported. */
static void test_set_flags_report(void **state)
{
	struct fx *f = *state;
	struct store_mailbox *mbox;
	struct error err;
	struct collected before, after;
	struct reports rs = { .n = 0 };
	assert_int_equal(store_mailbox_open(f->user, "INBOX", &mbox, &err), 0);
	uint32_t u1 = add_msg(mbox, f->store, "Subject: 1\n\nx\n", STORE_F_FLAGGED);
	uint32_t u2 = add_msg(mbox, f->store, "Subject: 2\n\nx\n", STORE_F_SEEN);
	uint32_t u3 = add_msg(mbox, f->store, "Subject: 3\n\nx\n", 0);
	assert_int_equal(store_mailbox_set_flags(mbox, &u3, 1, STORE_FLAGS_ADD, STORE_F_DRAFT, 0, 0,
						 NULL, NULL, &err), 0);
	list_msgs(mbox, &before);
	uint32_t set[4] = { u1, u2, u3, 999 };
	/* u3 changed after before.modseq[1]: it fails UNCHANGEDSINCE */
	assert_int_equal(store_mailbox_set_flags(mbox, set, 4, STORE_FLAGS_ADD, STORE_F_SEEN, 0,
						 before.modseq[1], note_report, &rs, &err), 0);
	list_msgs(mbox, &after);
	assert_int_equal(rs.n, 3);
	assert_int_equal(rs.r[0].uid, u1);
	assert_true(rs.r[0].changed && !rs.r[0].modified);
	assert_int_equal(rs.r[0].flags, STORE_F_FLAGGED | STORE_F_SEEN);
	assert_true(rs.r[0].modseq > before.modseq[2]);
	assert_int_equal(rs.r[0].modseq, after.modseq[0]);
	assert_int_equal(rs.r[1].uid, u2);
	assert_true(!rs.r[1].changed && !rs.r[1].modified);
	assert_int_equal(rs.r[1].flags, STORE_F_SEEN);
	assert_int_equal(rs.r[1].modseq, before.modseq[1]);
	assert_int_equal(rs.r[2].uid, u3);
	assert_true(!rs.r[2].changed && rs.r[2].modified);
	assert_int_equal(rs.r[2].flags, STORE_F_DRAFT);
	assert_int_equal(rs.r[2].modseq, before.modseq[2]);
	assert_int_equal(after.flags[2], STORE_F_DRAFT);
	/* SET and REMOVE, with keywords: the report is what the index holds */
	unsigned kw;
	assert_int_equal(store_mailbox_keyword_index(mbox, "Work", 1, &kw, &err), 0);
	rs.n = 0;
	assert_int_equal(store_mailbox_set_flags(mbox, set, 2, STORE_FLAGS_SET, STORE_F_ANSWERED,
						 1u << kw, 0, note_report, &rs, &err), 0);
	rs.n = 0;
	assert_int_equal(store_mailbox_set_flags(mbox, set, 3, STORE_FLAGS_REMOVE, STORE_F_ANSWERED,
						 0, 0, note_report, &rs, &err), 0);
	list_msgs(mbox, &after);
	assert_int_equal(rs.n, 3);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(rs.r[i].flags, after.flags[i]);
		assert_int_equal(rs.r[i].keywords, after.keywords[i]);
		assert_int_equal(rs.r[i].modseq, after.modseq[i]);
	}
	assert_int_equal(after.flags[0], 0);
	assert_int_equal(after.keywords[0], 1u << kw);
	assert_true(rs.r[0].changed && !rs.r[2].changed);
	store_mailbox_close(&mbox);
}

/* 2. Single instance: one delivery to many users is one inode. */
static void test_fanout(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct store_rcpt r[3] = { { "alice", NULL, { 0, "" }, 0 }, { "bob", "Sent", { 0, "" }, 0 },
				   { "nobody", NULL, { 0, "" }, 0 } };
	struct store_stage *s = stage_of(f->store, "Subject: all\n\nhello\n");
	assert_int_equal(store_deliver(f->store, s, 0, r, 3), 1);
	store_stage_free(&s);
	assert_int_equal(r[0].result.code, ERR_OK);
	assert_int_equal(r[1].result.code, ERR_OK);
	assert_int_equal(r[2].result.code, ERR_NOUSER);
	struct store_user *bob;
	struct store_mailbox *ma, *mb;
	assert_int_equal(store_user_open(f->store, "bob", &bob, &err), 0);
	assert_int_equal(store_mailbox_open(f->user, "INBOX", &ma, &err), 0);
	assert_int_equal(store_mailbox_open(bob, "Sent", &mb, &err), 0);
	int fa, fb;
	uint64_t sz;
	struct stat sa, sb;
	assert_int_equal(store_message_open(ma, r[0].uid, &fa, &sz, &err), 0);
	assert_int_equal(store_message_open(mb, r[1].uid, &fb, &sz, &err), 0);
	fstat(fa, &sa);
	fstat(fb, &sb);
	assert_int_equal(sa.st_ino, sb.st_ino);
	assert_int_equal(sa.st_nlink, 2); /* the staging name is gone */
	close(fa);
	close(fb);
	/* Expunging one copy leaves the other. */
	assert_int_equal(store_mailbox_expunge(ma, &r[0].uid, 1, &err), 0);
	char *b = read_msg(mb, r[1].uid);
	assert_string_equal(b, "Subject: all\r\n\r\nhello\r\n");
	free(b);
	assert_int_equal(count_files(f, "spool/tmp"), 0);
	store_mailbox_close(&ma);
	store_mailbox_close(&mb);
	store_user_close(&bob);
}

static void test_flags_copy_move_expunge(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct store_mailbox *in, *arch;
	assert_int_equal(store_mailbox_open(f->user, "INBOX", &in, &err), 0);
	assert_int_equal(store_mailbox_open(f->user, "Archive", &arch, &err), 0);
	uint32_t uids[3];
	for (int i = 0; i < 3; i++)
		uids[i] = add_msg(in, f->store, "Subject: m\n\nx\n", 0);
	unsigned kw;
	assert_int_equal(store_mailbox_keyword_index(in, "$Important", 1, &kw, &err), 0);
	struct collected before, after;
	list_msgs(in, &before);
	assert_int_equal(store_mailbox_set_flags(in, uids, 2, STORE_FLAGS_ADD,
						 STORE_F_SEEN | STORE_F_ANSWERED, 1u << kw, 0, NULL,
						 NULL, &err),
			 0);
	list_msgs(in, &after);
	assert_int_equal(after.flags[0], STORE_F_SEEN | STORE_F_ANSWERED);
	assert_int_equal(after.keywords[0], 1u << kw);
	assert_int_equal(after.flags[2], 0);
	assert_true(after.modseq[0] > before.modseq[2]);
	assert_int_equal(after.modseq[2], before.modseq[2]);
	assert_non_null(strstr(after.fname[0], ":2,RSa"));
	/* CONDSTORE: a message changed after UNCHANGEDSINCE is left alone. */
	struct collected cs;
	uint32_t refused = 0;
	assert_int_equal(store_mailbox_set_flags(in, uids, 1, STORE_FLAGS_REMOVE, STORE_F_SEEN, 0,
						 before.modseq[0], note_modified, &refused, &err),
			 0);
	assert_int_equal(refused, uids[0]);
	list_msgs(in, &cs);
	assert_int_equal(cs.flags[0], STORE_F_SEEN | STORE_F_ANSWERED);

	/* COPY links, carrying flags and keywords by name. */
	uint32_t dst[2];
	assert_int_equal(store_mailbox_copy(in, uids, 2, arch, dst, &err), 0);
	assert_int_equal(dst[0], 1);
	assert_int_equal(dst[1], 2);
	struct collected ac;
	list_msgs(arch, &ac);
	assert_int_equal(ac.n, 2);
	assert_int_equal(ac.flags[0], STORE_F_SEEN | STORE_F_ANSWERED);
	assert_string_equal(store_mailbox_keyword(arch, 0), "$Important");
	assert_int_equal(ac.keywords[0], 1);
	int fd1, fd2;
	uint64_t sz;
	struct stat s1, s2;
	assert_int_equal(store_message_open(in, uids[0], &fd1, &sz, &err), 0);
	assert_int_equal(store_message_open(arch, dst[0], &fd2, &sz, &err), 0);
	fstat(fd1, &s1);
	fstat(fd2, &s2);
	assert_int_equal(s1.st_ino, s2.st_ino);
	close(fd1);
	close(fd2);

	/* MOVE: gone from the source, present in the destination. */
	uint32_t moved;
	assert_int_equal(store_mailbox_move(in, &uids[2], 1, arch, &moved, &err), 0);
	assert_int_equal(moved, 3);
	struct collected ic;
	list_msgs(in, &ic);
	assert_int_equal(ic.n, 2);
	assert_int_equal(count_files(f, "mail/alice/INBOX/cur"), 2);

	/* EXPUNGE unlinks; the UID is never handed out again. */
	assert_int_equal(store_mailbox_expunge(in, uids, 2, &err), 0);
	assert_int_equal(count_files(f, "mail/alice/INBOX/cur"), 0);
	uint32_t u4 = add_msg(in, f->store, "Subject: later\n\nx\n", 0);
	assert_int_equal(u4, 4);
	store_mailbox_close(&in);
	store_mailbox_close(&arch);
	assert_int_equal(check_problems(f, "alice", 0), 0);
	uint64_t qb, qm;
	assert_int_equal(store_user_quota_usage(f->user, &qb, &qm, &err), 0);
	assert_int_equal(qm, 3 + 1); /* Archive 3 + INBOX 1 */
}

struct names {
	char v[32][128];
	size_t n;
};

static int collect_name(void *ctx, const struct store_mailbox_info *info)
{
	struct names *n = ctx;
	if (n->n < 32)
		snprintf(n->v[n->n++], 128, "%s", info->name);
	return 0;
}

static int has_name(struct fx *f, const char *name)
{
	struct names n = { .n = 0 };
	struct error err;
	assert_int_equal(store_mailbox_list(f->user, collect_name, &n, &err), 0);
	for (size_t i = 0; i < n.n; i++)
		if (strcmp(n.v[i], name) == 0)
			return 1;
	return 0;
}

static void test_mailbox_ops(void **state)
{
	struct fx *f = *state;
	struct error err;
	assert_int_equal(store_mailbox_create(f->user, "Work", NULL, &err), 0);
	assert_int_equal(store_mailbox_create(f->user, "Work/2024.Q1", NULL, &err), 0);
	assert_int_equal(store_mailbox_create(f->user, "Work/tmp", NULL, &err), 0);
	assert_int_equal(store_mailbox_create(f->user, "Ünïcödé/日本", NULL, &err), 0);
	assert_int_equal(store_mailbox_create(f->user, "Work", NULL, &err), -1);
	assert_int_equal(err.code, ERR_EXISTS);
	/* On disk: readable, flat, escaped. */
	struct stat st;
	char path[512];
	snprintf(path, sizeof(path), "%s/mail/alice/.Work.2024%%2EQ1/cur", f->dir);
	assert_int_equal(stat(path, &st), 0);
	snprintf(path, sizeof(path), "%s/mail/alice/.Ünïcödé.日本", f->dir);
	assert_int_equal(stat(path, &st), 0);
	assert_true(has_name(f, "Work/2024.Q1"));
	assert_true(has_name(f, "Work/tmp"));
	assert_true(has_name(f, "Ünïcödé/日本"));

	/* Rename with children keeps messages and UIDVALIDITY. */
	struct store_mailbox *m;
	assert_int_equal(store_mailbox_open(f->user, "Work/2024.Q1", &m, &err), 0);
	add_msg(m, f->store, "Subject: q1\n\nx\n", 0);
	struct store_status before;
	assert_int_equal(store_mailbox_status(m, &before, &err), 0);
	store_mailbox_close(&m);
	assert_int_equal(store_mailbox_rename(f->user, "Work", "Jobs/Old", &err), 0);
	assert_false(has_name(f, "Work"));
	assert_false(has_name(f, "Work/tmp"));
	assert_true(has_name(f, "Jobs/Old"));
	assert_true(has_name(f, "Jobs/Old/tmp"));
	assert_int_equal(store_mailbox_open(f->user, "Jobs/Old/2024.Q1", &m, &err), 0);
	struct store_status after;
	assert_int_equal(store_mailbox_status(m, &after, &err), 0);
	assert_int_equal(after.messages, 1);
	assert_int_equal(after.uidvalidity, before.uidvalidity);
	store_mailbox_close(&m);
	assert_int_equal(store_mailbox_rename(f->user, "Jobs/Old", "Jobs/Old/x", &err), -1);
	assert_int_equal(store_mailbox_rename(f->user, "Nope", "Other", &err), -1);
	assert_int_equal(err.code, ERR_NOTFOUND);

	/* RFC 9051 6.3.6: renaming INBOX moves its messages, INBOX stays. */
	struct store_mailbox *in;
	assert_int_equal(store_mailbox_open(f->user, "inbox", &in, &err), 0);
	add_msg(in, f->store, "Subject: a\n\nx\n", 0);
	add_msg(in, f->store, "Subject: b\n\nx\n", 0);
	store_mailbox_close(&in);
	assert_int_equal(store_mailbox_rename(f->user, "INBOX", "Old Inbox", &err), 0);
	assert_int_equal(store_mailbox_open(f->user, "INBOX", &in, &err), 0);
	assert_int_equal(store_mailbox_status(in, &after, &err), 0);
	assert_int_equal(after.messages, 0);
	assert_int_equal(after.uidnext, 3);
	store_mailbox_close(&in);
	assert_int_equal(store_mailbox_open(f->user, "Old Inbox", &m, &err), 0);
	assert_int_equal(store_mailbox_status(m, &after, &err), 0);
	assert_int_equal(after.messages, 2);
	store_mailbox_close(&m);

	/* Delete: gone, children kept; INBOX cannot be deleted. */
	assert_int_equal(store_mailbox_delete(f->user, "Jobs/Old", &err), 0);
	assert_false(has_name(f, "Jobs/Old"));
	assert_true(has_name(f, "Jobs/Old/tmp"));
	assert_int_equal(store_mailbox_delete(f->user, "INBOX", &err), -1);
	assert_int_equal(err.code, ERR_INVALID);
	assert_int_equal(store_mailbox_delete(f->user, "Jobs/Old", &err), -1);
	assert_int_equal(err.code, ERR_NOTFOUND);
	/* A re-created mailbox gets a new UIDVALIDITY. */
	assert_int_equal(store_mailbox_create(f->user, "Jobs/Old", NULL, &err), 0);
	assert_int_equal(store_mailbox_open(f->user, "Jobs/Old", &m, &err), 0);
	assert_int_equal(store_mailbox_status(m, &after, &err), 0);
	assert_int_not_equal(after.uidvalidity, before.uidvalidity);
	assert_int_equal(after.messages, 0);
	store_mailbox_close(&m);

	/* Subscriptions survive, need not exist. */
	assert_int_equal(store_subscribe(f->user, "Ghost/Box", 1, &err), 0);
	assert_int_equal(store_subscribe(f->user, "Sent", 0, &err), 0);
	assert_int_equal(check_problems(f, "alice", 0), 0);
}

/* 7. Hostile names are refused; a planted symlink is not followed. */
static void test_containment(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct store_mailbox *m = NULL;
	const char *bad[] = { "", "/", "a//b", "a/", "/etc", "..", "a/../../bob", "x\x01y",
			      "a*", "b%", "\xff\xfe", "\xc0\xaf", "a/./b", NULL };
	for (int i = 0; bad[i] != NULL; i++) {
		assert_int_equal(store_mailbox_create(f->user, bad[i], NULL, &err), -1);
		assert_int_equal(err.code, ERR_INVALID);
		assert_int_equal(store_mailbox_open(f->user, bad[i], &m, &err), -1);
	}
	char longname[400];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(store_mailbox_create(f->user, longname, NULL, &err), -1);
	assert_int_equal(err.code, ERR_INVALID);
	/* ".." as a name component is data, never a path: "../bob" is refused
	 * above; a component that merely contains dots stays inside. */
	assert_int_equal(store_mailbox_create(f->user, "..hidden", NULL, &err), 0);
	char path[512];
	struct stat st;
	snprintf(path, sizeof(path), "%s/mail/alice/.%%2E%%2Ehidden", f->dir);
	assert_int_equal(stat(path, &st), 0);

	/* Plant a symlink in alice's root pointing at bob's INBOX. */
	char target[512];
	snprintf(target, sizeof(target), "%s/mail/bob/INBOX", f->dir);
	snprintf(path, sizeof(path), "%s/mail/alice/.Stolen", f->dir);
	assert_int_equal(symlink(target, path), 0);
	struct store_user *bob;
	struct store_mailbox *bi;
	assert_int_equal(store_user_open(f->store, "bob", &bob, &err), 0);
	assert_int_equal(store_mailbox_open(bob, "INBOX", &bi, &err), 0);
	add_msg(bi, f->store, "Subject: bob's secret\n\nx\n", 0);
	store_mailbox_close(&bi);
	store_user_close(&bob);
	assert_int_equal(store_mailbox_open(f->user, "Stolen", &m, &err), -1);
	assert_int_not_equal(err.code, ERR_OK);
	assert_false(has_name(f, "Stolen"));
	/* A symlinked cur/ inside a real mailbox is not followed either. */
	assert_int_equal(store_mailbox_create(f->user, "Trap", NULL, &err), 0);
	snprintf(path, sizeof(path), "%s/mail/alice/.Trap/cur", f->dir);
	assert_int_equal(rmdir(path), 0);
	snprintf(target, sizeof(target), "%s/mail/bob/INBOX/cur", f->dir);
	assert_int_equal(symlink(target, path), 0);
	assert_int_equal(store_mailbox_open(f->user, "Trap", &m, &err), -1);
	/* A symlinked message file in cur/ is not adopted. */
	struct store_mailbox *in;
	assert_int_equal(store_mailbox_open(f->user, "INBOX", &in, &err), 0);
	snprintf(path, sizeof(path), "%s/mail/alice/INBOX/cur/evil,S=1,U=7:2,", f->dir);
	assert_int_equal(symlink("/etc/passwd", path), 0);
	assert_int_equal(store_mailbox_sync(in, 1, &err), 0);
	struct collected c;
	list_msgs(in, &c);
	assert_int_equal(c.n, 0);
	store_mailbox_close(&in);
	/* User names that could escape are refused. */
	struct store_user *u;
	assert_int_equal(store_user_open(f->store, "../bob", &u, &err), -1);
	assert_int_equal(store_user_open(f->store, "..", &u, &err), -1);
	assert_int_equal(store_user_create(f->store, "a/b", &err), -1);
	assert_int_equal(store_username_valid("bob"), 0);
	assert_int_equal(store_username_valid(".bob"), -1);
	assert_int_equal(store_username_valid("b\nob"), -1);
}

/* Files changed behind the index's back are reconciled on open. */
static void test_reconcile(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct store_mailbox *in;
	char path[512];
	assert_int_equal(store_mailbox_open(f->user, "INBOX", &in, &err), 0);
	uint32_t u1 = add_msg(in, f->store, "Subject: 1\n\nx\n", 0);
	uint32_t u2 = add_msg(in, f->store, "Subject: 2\n\nx\n", 0);
	struct collected c;
	list_msgs(in, &c);
	store_mailbox_close(&in);

	/* Postfix-style maildir delivery into new/, with bare LF. */
	snprintf(path, sizeof(path), "%s/mail/alice/INBOX/new/1700000000.P1.host", f->dir);
	FILE *fp = fopen(path, "w");
	fputs("Subject: dropped\n\nhello\n", fp);
	fclose(fp);
	/* Removed by hand. */
	snprintf(path, sizeof(path), "%s/mail/alice/INBOX/cur/%s", f->dir, c.fname[0]);
	assert_int_equal(unlink(path), 0);
	/* Flags changed by hand (mutt marks it read). */
	char oldp[512], newp[512];
	snprintf(oldp, sizeof(oldp), "%s/mail/alice/INBOX/cur/%s", f->dir, c.fname[1]);
	snprintf(newp, sizeof(newp), "%s/mail/alice/INBOX/cur/%.*sS", f->dir,
		 (int)strlen(c.fname[1]), c.fname[1]);
	assert_int_equal(rename(oldp, newp), 0);
	/* A file copied in by hand without a UID. */
	snprintf(path, sizeof(path), "%s/mail/alice/INBOX/cur/handmade:2,F", f->dir);
	fp = fopen(path, "w");
	fputs("Subject: hand\r\n\r\nx\r\n", fp);
	fclose(fp);

	assert_int_equal(store_mailbox_open(f->user, "INBOX", &in, &err), 0);
	list_msgs(in, &c);
	assert_int_equal(c.n, 3);
	assert_int_equal(c.uid[0], u2);
	assert_int_equal(c.flags[0], STORE_F_SEEN);
	/* New files get new UIDs above every UID handed out. */
	assert_true(c.uid[1] > u2);
	assert_true(c.uid[2] > c.uid[1]);
	assert_true(c.uid[1] != u1 && c.uid[2] != u1);
	int saw_dropped = 0;
	for (int i = 1; i < 3; i++) {
		char *m = read_msg(in, c.uid[i]);
		if (strstr(m, "dropped") != NULL) {
			saw_dropped = 1;
			assert_string_equal(m, "Subject: dropped\n\nhello\n"); /* kept as it came */
		} else {
			assert_int_equal(c.flags[i], STORE_F_FLAGGED);
		}
		free(m);
	}
	assert_true(saw_dropped);
	assert_int_equal(count_files(f, "mail/alice/INBOX/new"), 0);
	/* A process that died between reserving and linking: the pending row
	 * is dropped, its UID is not reused. */
	store_mailbox_close(&in);
	assert_int_equal(check_problems(f, "alice", 0), 0);
}

struct snap_box {
	char name[64];
	struct store_status st;
	struct collected msgs;
	char kwnames[256][32]; /* keyword names of msgs, joined */
};

static void snapshot(struct fx *f, const char *name, struct snap_box *s)
{
	struct error err;
	struct store_mailbox *m;
	memset(s, 0, sizeof(*s));
	snprintf(s->name, sizeof(s->name), "%s", name);
	assert_int_equal(store_mailbox_open(f->user, name, &m, &err), 0);
	assert_int_equal(store_mailbox_status(m, &s->st, &err), 0);
	list_msgs(m, &s->msgs);
	for (size_t i = 0; i < s->msgs.n; i++)
		for (unsigned k = 0; k < STORE_MAX_KEYWORDS; k++)
			if (s->msgs.keywords[i] & (1u << k)) {
				strcat(s->kwnames[i], store_mailbox_keyword(m, k));
				strcat(s->kwnames[i], " ");
			}
	store_mailbox_close(&m);
}

/* A file whose size no longer matches its S= (truncated, edited by hand) is
 * reported by check; repair renames it to its real size. */
static void test_check_size_mismatch(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct store_mailbox *in;
	struct collected c;
	char path[600];
	assert_int_equal(store_mailbox_open(f->user, "INBOX", &in, &err), 0);
	add_msg(in, f->store, "Subject: whole\n\n0123456789\n", 0);
	list_msgs(in, &c);
	store_mailbox_close(&in);
	snprintf(path, sizeof(path), "%s/mail/alice/INBOX/cur/%s", f->dir, c.fname[0]);
	assert_int_equal(truncate(path, 10), 0);
	assert_int_equal(check_problems(f, "alice", 0), 1);
	assert_int_equal(check_problems(f, "alice", 1), 1);
	assert_int_equal(check_problems(f, "alice", 0), 0);
	assert_int_equal(store_mailbox_open(f->user, "INBOX", &in, &err), 0);
	list_msgs(in, &c);
	assert_non_null(strstr(c.fname[0], ",S=10,U=1:2,"));
	int fd;
	uint64_t size;
	assert_int_equal(store_message_open(in, 1, &fd, &size, &err), 0);
	assert_int_equal(size, 10);
	close(fd);
	store_mailbox_close(&in);
}

/* 6. Recovery: delete the index, check --repair, nothing visible changes. */
static void test_rebuild_index(void **state)
{
	struct fx *f = *state;
	struct error err;
	const char *boxes[] = { "INBOX", "Archive", "Lists/Debian" };
	assert_int_equal(store_mailbox_create(f->user, "Lists/Debian", NULL, &err), 0);
	for (int b = 0; b < 3; b++) {
		struct store_mailbox *m;
		assert_int_equal(store_mailbox_open(f->user, boxes[b], &m, &err), 0);
		uint32_t uids[8];
		for (int i = 0; i < 8; i++)
			uids[i] = add_msg(m, f->store, "Subject: r\n\nbody\n", 0);
		unsigned k1, k2;
		assert_int_equal(store_mailbox_keyword_index(m, "Work", 1, &k1, &err), 0);
		assert_int_equal(store_mailbox_keyword_index(m, "$Label1", 1, &k2, &err), 0);
		assert_int_equal(store_mailbox_set_flags(m, uids, 3, STORE_FLAGS_ADD, STORE_F_SEEN,
							 1u << k2, 0, NULL, NULL, &err), 0);
		assert_int_equal(store_mailbox_set_flags(m, uids + 2, 2, STORE_FLAGS_SET,
							 STORE_F_FLAGGED | STORE_F_DRAFT, 1u << k1, 0,
							 NULL, NULL, &err), 0);
		/* Expunge in the middle and the highest UIDs: UIDNEXT must survive. */
		uint32_t gone[3] = { uids[4], uids[6], uids[7] };
		assert_int_equal(store_mailbox_expunge(m, gone, 3, &err), 0);
		store_mailbox_close(&m);
	}
	struct snap_box before[3], after[3];
	for (int b = 0; b < 3; b++)
		snapshot(f, boxes[b], &before[b]);
	store_user_close(&f->user);

	char path[512];
	const char *suffix[] = { "", "-wal", "-shm" };
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/mail/alice/index.sqlite%s", f->dir, suffix[i]);
		unlink(path);
	}
	assert_true(check_problems(f, "alice", 0) > 0); /* everything is missing */
	assert_true(check_problems(f, "alice", 1) > 0);
	assert_int_equal(check_problems(f, "alice", 0), 0);

	assert_int_equal(store_user_open(f->store, "alice", &f->user, &err), 0);
	for (int b = 0; b < 3; b++) {
		snapshot(f, boxes[b], &after[b]);
		assert_int_equal(after[b].st.uidvalidity, before[b].st.uidvalidity);
		assert_int_equal(after[b].st.uidnext, before[b].st.uidnext);
		assert_int_equal(after[b].st.messages, before[b].st.messages);
		assert_true(after[b].st.highestmodseq >= before[b].st.highestmodseq);
		assert_int_equal(after[b].msgs.n, before[b].msgs.n);
		for (size_t i = 0; i < before[b].msgs.n; i++) {
			assert_int_equal(after[b].msgs.uid[i], before[b].msgs.uid[i]);
			assert_int_equal(after[b].msgs.flags[i], before[b].msgs.flags[i]);
			assert_int_equal(after[b].msgs.idate[i], before[b].msgs.idate[i]);
			assert_string_equal(after[b].kwnames[i], before[b].kwnames[i]);
			assert_true(after[b].msgs.modseq[i] >= before[b].st.highestmodseq);
		}
	}
	/* And new UIDs continue above the old UIDNEXT. */
	struct store_mailbox *m;
	assert_int_equal(store_mailbox_open(f->user, "INBOX", &m, &err), 0);
	assert_int_equal(add_msg(m, f->store, "Subject: after\n\nx\n", 0), before[0].st.uidnext);
	store_mailbox_close(&m);
}

/* Open descriptors of this process on USER's index.sqlite (not -wal/-shm). */
static int index_fds(struct fx *f, const char *user)
{
	char want[600], link[600], path[320];
	int n = 0;
	snprintf(want, sizeof(want), "%s/mail/%s/index.sqlite", f->dir, user);
	DIR *d = opendir("/proc/self/fd");
	assert_non_null(d);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
		ssize_t k = readlink(path, link, sizeof(link) - 1);
		if (k <= 0)
			continue;
		link[k] = '\0';
		n += strcmp(link, want) == 0;
	}
	closedir(d);
	return n;
}

/* store_pool.c: a closed user's index connection waits for the next open
 * of that user (no new open), one per user; a deleted index is not reused. */
static void test_index_pool(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct store_user *a2 = NULL, *b = NULL;
	assert_int_equal(index_fds(f, "alice"), 1);
	store_user_close(&f->user);
	assert_int_equal(index_fds(f, "alice"), 1); /* kept, not closed */
	assert_int_equal(store_user_open(f->store, "alice", &f->user, &err), 0);
	assert_int_equal(index_fds(f, "alice"), 1); /* taken again, not opened */
	/* Two at once are two connections (SQLite may keep the descriptor of
	 * the one closed beside a waiting one for its next open, so only
	 * "no more than before" is asserted after that). */
	assert_int_equal(store_user_open(f->store, "alice", &a2, &err), 0);
	assert_int_equal(index_fds(f, "alice"), 2);
	store_user_close(&a2);
	store_user_close(&f->user);
	int after = index_fds(f, "alice");
	assert_true(after >= 1 && after <= 2);
	assert_int_equal(store_user_open(f->store, "alice", &f->user, &err), 0);
	assert_int_equal(index_fds(f, "alice"), after);
	store_user_close(&f->user);
	/* Users do not take each other's. */
	assert_int_equal(store_user_open(f->store, "bob", &b, &err), 0);
	assert_int_equal(index_fds(f, "bob"), 1);
	assert_int_equal(index_fds(f, "alice"), after);
	store_user_close(&b);
	/* Delete alice's index while its connection waits: the next open must
	 * not use the deleted file, and the files still give every message. */
	assert_int_equal(store_user_open(f->store, "alice", &f->user, &err), 0);
	struct store_mailbox *m;
	assert_int_equal(store_mailbox_open(f->user, "INBOX", &m, &err), 0);
	uint32_t uid = add_msg(m, f->store, "Subject: pooled\n\nx\n", 0);
	store_mailbox_close(&m);
	store_user_close(&f->user);
	char path[600];
	const char *suffix[] = { "", "-wal", "-shm" };
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/mail/alice/index.sqlite%s", f->dir, suffix[i]);
		unlink(path);
	}
	assert_int_equal(store_user_open(f->store, "alice", &f->user, &err), 0);
	assert_int_equal(index_fds(f, "alice"), 1); /* the new file only */
	struct stat st;
	snprintf(path, sizeof(path), "%s/mail/alice/index.sqlite", f->dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(store_mailbox_open(f->user, "INBOX", &m, &err), 0);
	struct collected c;
	list_msgs(m, &c);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.uid[0], uid);
	store_mailbox_close(&m);
}

static uint64_t usage_bytes(struct fx *f, uint64_t *messages_r)
{
	struct error err;
	uint64_t b, m;
	assert_int_equal(store_user_quota_usage(f->user, &b, &m, &err), 0);
	if (messages_r != NULL)
		*messages_r = m;
	return b;
}

/* Issue 10: quota counts a file once per user, however many links COPY
 * gave it in the user's mailboxes; messages count per mailbox (RFC 9208
 * 5.2). Counters, not a walk: `mailroom check` agrees, and a rebuilt index
 * comes to the same usage. */
static void test_quota_once_per_file(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct store_mailbox *in, *arch, *junk;
	struct store_status st;
	uint64_t qm;
	assert_int_equal(store_mailbox_open(f->user, "INBOX", &in, &err), 0);
	assert_int_equal(store_mailbox_open(f->user, "Archive", &arch, &err), 0);
	assert_int_equal(store_mailbox_open(f->user, "Junk", &junk, &err), 0);
	uint32_t uids[2], dst[2], dst2[2], moved;
	uids[0] = add_msg(in, f->store, "Subject: one\n\nfirst body\n", 0);
	uids[1] = add_msg(in, f->store, "Subject: two\n\nthe second, longer body\n", 0);
	assert_int_equal(store_mailbox_status(in, &st, &err), 0);
	uint64_t both = st.size;
	assert_true(both > 0);
	assert_int_equal(usage_bytes(f, &qm), both);
	assert_int_equal(qm, 2);

	/* Two more links of each file: bytes stay, messages grow. */
	assert_int_equal(store_mailbox_copy(in, uids, 2, arch, dst, &err), 0);
	assert_int_equal(store_mailbox_copy(arch, dst, 2, junk, dst2, &err), 0);
	assert_int_equal(usage_bytes(f, &qm), both);
	assert_int_equal(qm, 6);
	assert_int_equal(check_problems(f, "alice", 0), 0);

	/* MOVE within the user changes nothing. */
	assert_int_equal(store_mailbox_move(junk, &dst2[0], 1, in, &moved, &err), 0);
	assert_int_equal(usage_bytes(f, &qm), both);
	assert_int_equal(qm, 6);

	/* Expunging links frees nothing while another link of the file stays. */
	assert_int_equal(store_mailbox_expunge(in, uids, 2, &err), 0);
	assert_int_equal(store_mailbox_expunge(arch, dst, 2, &err), 0);
	assert_int_equal(usage_bytes(f, &qm), both);
	assert_int_equal(qm, 2);
	assert_int_equal(check_problems(f, "alice", 0), 0);

	/* The last link of "one" goes: its bytes go. */
	assert_int_equal(store_mailbox_expunge(in, &moved, 1, &err), 0);
	assert_int_equal(store_mailbox_status(junk, &st, &err), 0);
	assert_int_equal(st.messages, 1);
	assert_int_equal(usage_bytes(f, &qm), st.size);
	assert_true(st.size < both);
	assert_int_equal(qm, 1);
	uint64_t left = st.size;
	assert_int_equal(store_mailbox_copy(junk, &dst2[1], 1, in, dst, &err), 0);
	store_mailbox_close(&in);
	store_mailbox_close(&arch);
	store_mailbox_close(&junk);

	/* A lost index is rebuilt from the files with the same usage. */
	store_user_close(&f->user);
	char path[512];
	const char *suffix[] = { "", "-wal", "-shm" };
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/mail/alice/index.sqlite%s", f->dir, suffix[i]);
		unlink(path);
	}
	assert_true(check_problems(f, "alice", 1) > 0);
	assert_int_equal(check_problems(f, "alice", 0), 0);
	assert_int_equal(store_user_open(f->store, "alice", &f->user, &err), 0);
	assert_int_equal(usage_bytes(f, &qm), left);
	assert_int_equal(qm, 2);

	/* With the limit reached, a COPY of a stored file still fits the
	 * bytes (single instance), but not the message count. */
	store_user_set_quota(f->user, left, 2);
	assert_int_equal(store_mailbox_open(f->user, "INBOX", &in, &err), 0);
	assert_int_equal(store_mailbox_open(f->user, "Archive", &arch, &err), 0);
	assert_int_equal(store_mailbox_copy(in, dst, 1, arch, dst2, &err), -1);
	assert_int_equal(err.code, ERR_QUOTA);
	store_user_set_quota(f->user, left, 3);
	assert_int_equal(store_mailbox_copy(in, dst, 1, arch, dst2, &err), 0);
	assert_int_equal(usage_bytes(f, &qm), left);
	assert_int_equal(qm, 3);

	/* One delivery into two of the user's mailboxes (LMTP with user+box
	 * twice) links one staged file twice: the second fits the bytes. */
	struct store_stage *s = stage_of(f->store, "Subject: twice\n\nsame file\n");
	uint32_t u1, u2;
	store_user_set_quota(f->user, 0, 0);
	uint64_t before = usage_bytes(f, NULL);
	assert_int_equal(store_mailbox_add(in, s, 0, 0, &u1, &err), 0);
	uint64_t one = usage_bytes(f, NULL) - before;
	store_user_set_quota(f->user, before + one, 0);
	assert_int_equal(store_mailbox_add(arch, s, 0, 0, &u2, &err), 0);
	assert_int_equal(usage_bytes(f, &qm), before + one);
	assert_int_equal(qm, 5);
	store_stage_free(&s);
	s = stage_of(f->store, "Subject: new\n\nanother file\n");
	assert_int_equal(store_mailbox_add(in, s, 0, 0, &u1, &err), -1);
	assert_int_equal(err.code, ERR_QUOTA);
	store_stage_free(&s);
	store_mailbox_close(&in);
	store_mailbox_close(&arch);
	assert_int_equal(check_problems(f, "alice", 0), 0);
}

static void test_quota_and_limits(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct store_mailbox *m;
	store_user_set_quota(f->user, 100, 0);
	assert_int_equal(store_mailbox_open(f->user, "INBOX", &m, &err), 0);
	add_msg(m, f->store, "Subject: fits\n\n0123456789\n", 0);
	struct store_stage *s = stage_of(f->store, "Subject: too big\n\n"
						   "0123456789012345678901234567890123456789"
						   "0123456789012345678901234567890123456789\n");
	uint32_t uid;
	assert_int_equal(store_mailbox_add(m, s, 0, 0, &uid, &err), -1);
	assert_int_equal(err.code, ERR_QUOTA);
	store_stage_free(&s);
	store_user_set_quota(f->user, 0, 0);
	/* 26 keywords per mailbox, then a clear LIMIT error. */
	for (int i = 0; i < STORE_MAX_KEYWORDS; i++) {
		char kw[16];
		unsigned idx;
		snprintf(kw, sizeof(kw), "kw%d", i);
		assert_int_equal(store_mailbox_keyword_index(m, kw, 1, &idx, &err), 0);
		assert_int_equal(idx, (unsigned)i);
	}
	unsigned idx;
	assert_int_equal(store_mailbox_keyword_index(m, "one-too-many", 1, &idx, &err), -1);
	assert_int_equal(err.code, ERR_LIMIT);
	assert_int_equal(store_mailbox_keyword_index(m, "KW3", 0, &idx, &err), 0);
	assert_int_equal(idx, 3);
	assert_int_equal(store_mailbox_keyword_index(m, "bad keyword", 1, &idx, &err), -1);
	store_mailbox_close(&m);
}

/* 5. Fault injection: fail the Nth write/fsync/link/rename/unlink along each
 * operation, for every N until the operation no longer reaches the fault.
 * Afterwards the store must be consistent (check finds nothing), no message
 * may be lost or half there, and a failure must have been reported. */
enum fault_opn { OP_DELIVER, OP_EXPUNGE, OP_MOVE, OP_FLAGS, OP_COUNT };

static int run_op(struct fx *f, enum fault_opn op, uint32_t *uids)
{
	struct error err;
	struct store_mailbox *in = NULL, *arch = NULL;
	int rc = -1;
	if (store_mailbox_open(f->user, "INBOX", &in, &err) < 0)
		return -1;
	switch (op) {
	case OP_DELIVER: {
		struct store_stage *s = NULL;
		uint32_t uid;
		const char *text = "Subject: faulty\n\nbody\n";
		if (store_stage_new(f->store, &s, &err) == 0 &&
		    store_stage_write(s, text, strlen(text), &err) == 0 &&
		    store_stage_finish(s, &err) == 0)
			rc = store_mailbox_add(in, s, 0, 0, &uid, &err);
		store_stage_free(&s);
		break;
	}
	case OP_EXPUNGE:
		rc = store_mailbox_expunge(in, uids, 2, &err);
		break;
	case OP_MOVE: {
		uint32_t dst[2];
		if (store_mailbox_open(f->user, "Archive", &arch, &err) == 0)
			rc = store_mailbox_move(in, uids, 2, arch, dst, &err);
		break;
	}
	case OP_FLAGS:
		rc = store_mailbox_set_flags(in, uids, 2, STORE_FLAGS_ADD, STORE_F_SEEN, 0, 0, NULL,
					     NULL, &err);
		break;
	default:
		break;
	}
	if (rc < 0)
		assert_int_not_equal(err.code, ERR_OK);
	store_mailbox_close(&arch);
	store_mailbox_close(&in);
	return rc;
}

static unsigned count_in(struct fx *f, const char *box, const char *needle)
{
	struct error err;
	struct store_mailbox *m;
	struct collected c;
	unsigned n = 0;
	assert_int_equal(store_mailbox_open(f->user, box, &m, &err), 0);
	list_msgs(m, &c);
	for (size_t i = 0; i < c.n; i++) {
		char *text = read_msg(m, c.uid[i]); /* every indexed message is readable */
		n += strstr(text, needle) != NULL && strstr(text, "\r\n\r\nbody\r\n") != NULL;
		assert_non_null(strstr(text, "\r\n\r\n"));
		free(text);
	}
	store_mailbox_close(&m);
	return n;
}

static void test_fault_injection(void **state)
{
	struct fx *f = *state;
	static const int errs[] = { ENOSPC, EIO };
	unsigned runs = 0, failures = 0;
	for (int op = 0; op < OP_COUNT; op++) {
		for (int fsop = 0; fsop < FSX_OP_COUNT; fsop++) {
			for (size_t e = 0; e < 2; e++) {
				for (unsigned long n = 1; n < 50; n++) {
					/* Two fresh target messages in INBOX. */
					struct error err;
					struct store_mailbox *in;
					uint32_t uids[2];
					char tag[64];
					snprintf(tag, sizeof(tag), "Subject: t%d-%d-%zu-%lu", op, fsop, e, n);
					char text[128];
					snprintf(text, sizeof(text), "%s\n\nbody\n", tag);
					assert_int_equal(store_mailbox_open(f->user, "INBOX", &in, &err), 0);
					uids[0] = add_msg(in, f->store, text, 0);
					uids[1] = add_msg(in, f->store, text, 0);
					store_mailbox_close(&in);
					unsigned before_in = count_in(f, "INBOX", tag);
					assert_int_equal(before_in, 2);

					fsx_fault_set((enum fsx_op)fsop, n, errs[e]);
					int rc = run_op(f, (enum fault_opn)op, uids);
					int reached = fsx_fault_calls((enum fsx_op)fsop) >= n;
					fsx_fault_set((enum fsx_op)fsop, 0, 0);
					runs++;
					failures += rc < 0;
					/* Consistency, as any later reader sees it. */
					unsigned now_in = count_in(f, "INBOX", tag);
					unsigned now_ar = count_in(f, "Archive", tag);
					assert_int_equal(check_problems(f, "alice", 0), 0);
					if (op == OP_MOVE) {
						/* never lost: each message in INBOX or Archive */
						assert_true(now_in + now_ar >= 2);
						if (rc == 0) {
							assert_int_equal(now_in, 0);
							assert_int_equal(now_ar, 2);
						}
					} else if (op == OP_EXPUNGE) {
						if (rc == 0)
							assert_int_equal(now_in, 0);
					} else {
						assert_int_equal(now_in, 2);
					}
					if (!reached) {
						assert_int_equal(rc, 0);
						break;
					}
				}
			}
		}
	}
	print_message("fault injection: %u runs, %u reported failures, store consistent after each\n",
		      runs, failures);
	assert_true(failures > 0);
}

/* Delivery's failed result leaves no message (checked with a fault at the
 * directory fsync, after the link). */
static void test_failed_delivery_invisible(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct store_mailbox *in;
	assert_int_equal(store_mailbox_open(f->user, "INBOX", &in, &err), 0);
	struct store_stage *s = stage_of(f->store, "Subject: x\n\nbody\n");
	uint32_t uid;
	fsx_fault_set(FSX_FSYNC, 1, EIO); /* the fsync of cur/ */
	assert_int_equal(store_mailbox_add(in, s, 0, 0, &uid, &err), -1);
	fsx_fault_set(FSX_FSYNC, 0, 0);
	assert_int_equal(err.code, ERR_TEMP);
	store_stage_free(&s);
	struct collected c;
	list_msgs(in, &c);
	assert_int_equal(c.n, 0);
	assert_int_equal(count_files(f, "mail/alice/INBOX/cur"), 0);
	/* The UID was consumed, never reused. */
	assert_int_equal(add_msg(in, f->store, "Subject: y\n\nbody\n", 0), 2);
	store_mailbox_close(&in);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fanout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_release_fds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_counts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_flags_report, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flags_copy_move_expunge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mailbox_ops, setup, teardown),
		cmocka_unit_test_setup_teardown(test_containment, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reconcile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rebuild_index, setup, teardown),
		cmocka_unit_test_setup_teardown(test_index_pool, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_size_mismatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quota_and_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quota_once_per_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_delivery_invisible, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fault_injection, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
