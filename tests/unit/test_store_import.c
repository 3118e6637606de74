/*
 * test_store_import.c: store_import_* (store.h) against a real file system:
 * UIDVALIDITY and UIDs kept, hard link versus copy (the source's inode and
 * mtime untouched), re-runs adding nothing, the files as the truth (the index
 * deleted afterwards gives the same UIDs, flags and keywords), keyword
 * letters, the UIDNEXT floor, append mode, streams, POP3 UIDLs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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
	char src[96];
	int src_fd;
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
	snprintf(f->src, sizeof(f->src), "%s/source", f->dir);
	assert_int_equal(mkdir(f->src, 0700), 0);
	f->src_fd = open(f->src, O_RDONLY | O_DIRECTORY);
	assert_true(f->src_fd >= 0);
	assert_int_equal(store_open(f->dir, NULL, &f->store, &err), 0);
	assert_int_equal(store_user_create(f->store, "alice", &err), 0);
	assert_int_equal(store_user_open(f->store, "alice", &f->user, &err), 0);
	*state = f;
	return 0;
}

/* As `mailroom serve` leaves it: DATA/mail handed to its run_user (a
 * store root still owns gets no links, see test_root_store_not_handed_over). */
static int setup_handed_over(void **state)
{
	setup(state);
	struct fx *f = *state;
	char path[128];
	snprintf(path, sizeof(path), "%s/mail", f->dir);
	if (geteuid() == 0)
		assert_int_equal(chown(path, 65534, 65534), 0);
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	store_user_close(&f->user);
	store_close(&f->store);
	close(f->src_fd);
	rm_rf(f->dir);
	free(f);
	return 0;
}

/* A source message file with bare LF line endings and the given mtime. */
static void src_file(struct fx *f, const char *name, const char *msgid, time_t mtime)
{
	char text[512];
	snprintf(text, sizeof(text),
		 "From: a@example.org\nTo: b@example.org\nMessage-ID: <%s>\nSubject: %s\n\nbody of %s\n",
		 msgid, name, name);
	int fd = openat(f->src_fd, name, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	struct timespec ts[2] = { { mtime, 0 }, { mtime, 0 } };
	assert_int_equal(futimens(fd, ts), 0);
	close(fd);
}

static struct stat src_stat(struct fx *f, const char *name)
{
	struct stat st;
	assert_int_equal(fstatat(f->src_fd, name, &st, 0), 0);
	return st;
}

struct seen {
	uint32_t uid[16];
	uint32_t flags[16];
	uint32_t keywords[16];
	int64_t date[16];
	char fname[16][256];
	size_t n;
};

static int collect(void *ctx, const struct store_msg *m)
{
	struct seen *s = ctx;
	if (s->n < 16) {
		s->uid[s->n] = m->uid;
		s->flags[s->n] = m->flags;
		s->keywords[s->n] = m->keywords;
		s->date[s->n] = m->internaldate;
		snprintf(s->fname[s->n], sizeof(s->fname[0]), "%s", m->fname);
		s->n++;
	}
	return 0;
}

static void list(struct fx *f, const char *name, struct seen *s, struct store_status *st)
{
	struct store_mailbox *mbox;
	struct error err;
	memset(s, 0, sizeof(*s));
	assert_int_equal(store_mailbox_open(f->user, name, &mbox, &err), 0);
	assert_int_equal(store_mailbox_messages(mbox, 1, UINT32_MAX, collect, s, &err), 0);
	assert_int_equal(store_mailbox_status(mbox, st, &err), 0);
	store_mailbox_close(&mbox);
}

static void import_one(struct store_import *imp, struct fx *f, const char *name, uint32_t uid,
		       uint32_t flags, const char *const *kw, size_t nkw, int64_t date,
		       struct store_import_result *res)
{
	struct error err;
	struct store_import_msg m = { uid, flags, kw, nkw, date };
	assert_int_equal(store_import_file(imp, &m, f->src_fd, name, res, &err), 0);
}

/* UIDs, UIDVALIDITY, flags and keywords as given; a hard link: the same
 * inode, the source's mtime as INTERNALDATE; the UIDNEXT floor respected
 * by a later delivery. */
static void test_uids_kept_and_linked(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct store_import *imp;
	enum store_import_state st;
	struct store_import_result res;
	static const char *const kw[] = { "$Label1", "Work" };

	src_file(f, "m3", "3@x", 1600000003);
	src_file(f, "m5", "5@x", 1600000005);
	src_file(f, "m7", "7@x", 1600000007);
	assert_int_equal(store_import_begin(f->user, "Archive/2020", NULL, 777001, 100, &imp, &st, &err), 0);
	assert_int_equal(st, STORE_IMPORT_CREATED);
	import_one(imp, f, "m3", 3, STORE_F_SEEN, kw, 2, -1, &res);
	assert_int_equal(res.uid, 3);
	assert_int_equal(res.how, STORE_IMPORT_LINKED);
	import_one(imp, f, "m5", 5, STORE_F_SEEN | STORE_F_ANSWERED, NULL, 0, -1, &res);
	import_one(imp, f, "m7", 7, 0, kw + 1, 1, 1600000007, &res);
	assert_int_equal(res.how, STORE_IMPORT_LINKED); /* its date is its mtime */
	assert_int_equal(store_import_end(&imp, &err), 0);
	assert_null(imp);

	struct seen s;
	struct store_status ss;
	list(f, "Archive/2020", &s, &ss);
	assert_int_equal(ss.uidvalidity, 777001);
	assert_int_equal(ss.messages, 3);
	assert_true(ss.uidnext >= 100);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.uid[0], 3);
	assert_int_equal(s.uid[1], 5);
	assert_int_equal(s.uid[2], 7);
	assert_int_equal(s.flags[0], STORE_F_SEEN);
	assert_int_equal(s.flags[1], STORE_F_SEEN | STORE_F_ANSWERED);
	assert_int_equal(s.date[0], 1600000003);
	assert_int_equal(s.date[2], 1600000007);
	/* keyword letters: $Label1 is a, Work is b */
	assert_int_equal(s.keywords[0], 0x3);
	assert_int_equal(s.keywords[2], 0x2);
	assert_non_null(strstr(s.fname[0], ",U=3:2,Sab"));
	assert_non_null(strstr(s.fname[2], ",U=7:2,b"));

	/* the same inode: nothing copied, the source untouched */
	struct stat src = src_stat(f, "m3");
	assert_int_equal(src.st_nlink, 2);
	assert_int_equal(src.st_mtim.tv_sec, 1600000003);
	assert_int_equal(src.st_mode & 0777, 0600);
	struct store_mailbox *mbox;
	int fd;
	uint64_t size;
	assert_int_equal(store_mailbox_open(f->user, "Archive/2020", &mbox, &err), 0);
	assert_int_equal(store_message_open(mbox, 3, &fd, &size, &err), 0);
	struct stat in;
	assert_int_equal(fstat(fd, &in), 0);
	close(fd);
	assert_int_equal(in.st_ino, src.st_ino);
	assert_int_equal(size, (uint64_t)src.st_size); /* bare LF kept */
	assert_string_equal(store_mailbox_keyword(mbox, 0), "$Label1");
	assert_string_equal(store_mailbox_keyword(mbox, 1), "Work");

	/* a delivery afterwards takes a UID above the source's UIDNEXT */
	struct store_stage *stage;
	assert_int_equal(store_stage_new(f->store, &stage, &err), 0);
	assert_int_equal(store_stage_write(stage, "Subject: new\r\n\r\nx\r\n", 19, &err), 0);
	assert_int_equal(store_stage_finish(stage, &err), 0);
	uint32_t uid;
	assert_int_equal(store_mailbox_add(mbox, stage, 0, 0, &uid, &err), 0);
	assert_int_equal(uid, 100);
	store_stage_free(&stage);
	store_mailbox_close(&mbox);
}

/* A second run adds nothing: has_uid says what is there. */
static void test_rerun_adds_nothing(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct store_import *imp;
	enum store_import_state st;
	struct store_import_result res;
	src_file(f, "a", "a@x", 1600000001);
	src_file(f, "b", "b@x", 1600000002);
	for (int run = 0; run < 2; run++) {
		assert_int_equal(store_import_begin(f->user, "Work", NULL, 4242, 3, &imp, &st, &err), 0);
		assert_int_equal(st, run == 0 ? STORE_IMPORT_CREATED : STORE_IMPORT_RERUN);
		const char *names[] = { "a", "b" };
		int added = 0;
		for (uint32_t uid = 1; uid <= 2; uid++) {
			int has = store_import_has_uid(imp, uid, &err);
			assert_int_equal(has, run == 0 ? 0 : 1);
			if (!has) {
				import_one(imp, f, names[uid - 1], uid, 0, NULL, 0, -1, &res);
				added++;
				/* within the batch too */
				assert_int_equal(store_import_has_uid(imp, uid, &err), 1);
			}
		}
		assert_int_equal(added, run == 0 ? 2 : 0);
		/* asked without has_uid: refused, not a second file for the UID */
		struct store_import_msg m = { 1, 0, NULL, 0, -1 };
		assert_int_equal(store_import_file(imp, &m, f->src_fd, "a", &res, &err), -1);
		assert_int_equal(err.code, ERR_EXISTS);
		assert_int_equal(store_import_end(&imp, &err), 0);
	}
	struct seen s;
	struct store_status ss;
	list(f, "Work", &s, &ss);
	assert_int_equal(ss.messages, 2);
	assert_int_equal(src_stat(f, "a").st_nlink, 2);

	/* a message expunged here since stays expunged: a client was told */
	struct store_mailbox *mbox;
	uint32_t one = 1;
	assert_int_equal(store_mailbox_open(f->user, "Work", &mbox, &err), 0);
	assert_int_equal(store_mailbox_expunge(mbox, &one, 1, &err), 0);
	store_mailbox_close(&mbox);
	assert_int_equal(store_import_begin(f->user, "Work", NULL, 4242, 3, &imp, &st, &err), 0);
	assert_int_equal(store_import_has_uid(imp, 1, &err), 1);
	struct store_import_msg m = { 1, 0, NULL, 0, -1 };
	assert_int_equal(store_import_file(imp, &m, f->src_fd, "a", &res, &err), -1);
	assert_int_equal(err.code, ERR_EXISTS);
	assert_int_equal(store_import_end(&imp, &err), 0);
	list(f, "Work", &s, &ss);
	assert_int_equal(ss.messages, 1);
}

/* The files are the truth: the index deleted after an import gives the
 * same UIDVALIDITY, UIDs, flags and keywords. */
static void test_index_lost(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct store_import *imp;
	enum store_import_state st;
	struct store_import_result res;
	static const char *const kw[] = { "Important" };
	src_file(f, "x", "x@x", 1600000010);
	src_file(f, "y", "y@x", 1600000011);
	assert_int_equal(store_import_begin(f->user, "Lists", NULL, 9090, 50, &imp, &st, &err), 0);
	import_one(imp, f, "x", 10, STORE_F_FLAGGED, kw, 1, -1, &res);
	import_one(imp, f, "y", 20, STORE_F_SEEN, NULL, 0, -1, &res);
	assert_int_equal(store_import_end(&imp, &err), 0);

	store_user_close(&f->user);
	char path[200];
	const char *files[] = { "index.sqlite", "index.sqlite-wal", "index.sqlite-shm" };
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/mail/alice/%s", f->dir, files[i]);
		unlink(path);
	}
	assert_int_equal(store_user_open(f->store, "alice", &f->user, &err), 0);
	struct seen s;
	struct store_status ss;
	list(f, "Lists", &s, &ss);
	assert_int_equal(ss.uidvalidity, 9090);
	assert_true(ss.uidnext >= 50);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.uid[0], 10);
	assert_int_equal(s.uid[1], 20);
	assert_int_equal(s.flags[0], STORE_F_FLAGGED);
	assert_int_equal(s.flags[1], STORE_F_SEEN);
	assert_int_equal(s.keywords[0], 1);
	assert_int_equal(s.date[0], 1600000010);
	struct store_mailbox *mbox;
	assert_int_equal(store_mailbox_open(f->user, "Lists", &mbox, &err), 0);
	assert_string_equal(store_mailbox_keyword(mbox, 0), "Important");
	store_mailbox_close(&mbox);
}

/* A new user's INBOX (never held mail) takes the source's UIDVALIDITY; a
 * mailbox with other mail is appended to with new UIDs. */
static void test_adopt_and_append(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct store_import *imp;
	enum store_import_state st;
	struct store_import_result res;
	src_file(f, "i1", "i1@x", 1600000100);
	assert_int_equal(store_import_begin(f->user, "INBOX", NULL, 5555, 8, &imp, &st, &err), 0);
	assert_int_equal(st, STORE_IMPORT_ADOPTED);
	import_one(imp, f, "i1", 7, 0, NULL, 0, -1, &res);
	assert_int_equal(store_import_end(&imp, &err), 0);
	struct seen s;
	struct store_status ss;
	list(f, "INBOX", &s, &ss);
	assert_int_equal(ss.uidvalidity, 5555);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.uid[0], 7);

	/* another source's INBOX under another UIDVALIDITY: appended */
	src_file(f, "j1", "j1@x", 1600000200);
	assert_int_equal(store_import_begin(f->user, "INBOX", NULL, 6666, 3, &imp, &st, &err), 0);
	assert_int_equal(st, STORE_IMPORT_APPEND);
	assert_int_equal(store_import_has_uid(imp, 7, &err), 0); /* its UIDs are not ours */
	import_one(imp, f, "j1", 1, 0, NULL, 0, -1, &res);
	assert_int_equal(res.uid, 8); /* a new UID, not the source's 1 */
	assert_int_equal(store_import_end(&imp, &err), 0);
	list(f, "INBOX", &s, &ss);
	assert_int_equal(ss.uidvalidity, 5555);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.uid[1], 8);
}

/* An INTERNALDATE other than the file's mtime: copied (a link could not
 * change it without changing the source), bytes as they are. */
static void test_copy_keeps_source(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct store_import *imp;
	enum store_import_state st;
	struct store_import_result res;
	src_file(f, "c", "c@x", 1600000300);
	struct stat before = src_stat(f, "c");
	assert_int_equal(store_import_begin(f->user, "Copies", NULL, 3333, 0, &imp, &st, &err), 0);
	import_one(imp, f, "c", 2, 0, NULL, 0, 1500000000, &res);
	assert_int_equal(res.how, STORE_IMPORT_COPIED);
	assert_int_equal(res.why, STORE_IMPORT_WHY_DATE);
	assert_int_equal(store_import_end(&imp, &err), 0);
	struct stat after = src_stat(f, "c");
	assert_int_equal(after.st_nlink, 1);
	assert_int_equal(after.st_mtim.tv_sec, before.st_mtim.tv_sec);

	struct store_mailbox *mbox;
	int fd;
	uint64_t size;
	assert_int_equal(store_mailbox_open(f->user, "Copies", &mbox, &err), 0);
	assert_int_equal(store_message_open(mbox, 2, &fd, &size, &err), 0);
	struct stat in;
	assert_int_equal(fstat(fd, &in), 0);
	assert_true(in.st_ino != before.st_ino);
	assert_int_equal(in.st_mtim.tv_sec, 1500000000);
	char a[600], b[600];
	ssize_t na = pread(fd, a, sizeof(a), 0);
	close(fd);
	int sfd = openat(f->src_fd, "c", O_RDONLY);
	ssize_t nb = pread(sfd, b, sizeof(b), 0);
	close(sfd);
	assert_int_equal(na, nb);
	assert_memory_equal(a, b, (size_t)na); /* bare LF kept */
	store_mailbox_close(&mbox);

	/* a missing or non-regular source is this message's error */
	assert_int_equal(store_import_begin(f->user, "Copies", NULL, 3333, 0, &imp, &st, &err), 0);
	struct store_import_msg m = { 9, 0, NULL, 0, -1 };
	assert_int_equal(store_import_file(imp, &m, f->src_fd, "nonesuch", &res, &err), -1);
	assert_int_equal(err.code, ERR_NOTFOUND);
	assert_int_equal(symlinkat("c", f->src_fd, "link"), 0);
	assert_int_equal(store_import_file(imp, &m, f->src_fd, "link", &res, &err), -1);
	assert_int_equal(err.code, ERR_DATA);
	assert_int_equal(store_import_end(&imp, &err), 0);
}

/* A message given as bytes, with its UID and INTERNALDATE. */
static void test_stream(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct store_import *imp;
	enum store_import_state st;
	struct store_import_result res;
	struct store_stage *stage;
	static const char *const kw[] = { "$Junk" };
	assert_int_equal(store_import_begin(f->user, "Stream", NULL, 1212, 0, &imp, &st, &err), 0);
	assert_int_equal(store_stage_new(f->store, &stage, &err), 0);
	assert_int_equal(store_stage_write(stage, "Subject: s\n\nline\n", 17, &err), 0);
	store_stage_set_internaldate(stage, 1400000000);
	assert_int_equal(store_stage_finish(stage, &err), 0);
	struct store_import_msg m = { 42, STORE_F_DRAFT, kw, 1, 1400000000 };
	assert_int_equal(store_import_stage(imp, &m, stage, &res, &err), 0);
	store_stage_free(&stage);
	assert_int_equal(res.uid, 42);
	assert_int_equal(res.how, STORE_IMPORT_STREAMED);
	assert_int_equal(res.size, 20); /* staged as CRLF */
	assert_int_equal(store_import_end(&imp, &err), 0);
	struct seen s;
	struct store_status ss;
	list(f, "Stream", &s, &ss);
	assert_int_equal(ss.uidvalidity, 1212);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.uid[0], 42);
	assert_int_equal(s.flags[0], STORE_F_DRAFT);
	assert_int_equal(s.keywords[0], 1);
	assert_int_equal(s.date[0], 1400000000);
}

static int uidl_collect(void *ctx, uint32_t uid, const char *uidl)
{
	char *out = ctx;
	size_t n = strlen(out);
	snprintf(out + n, 512 - n, "%u=%s;", uid, uidl);
	return 0;
}

/* POP3 UIDLs: RFC 1939 7's alphabet enforced; kept in the mailbox's file,
 * merged over re-runs. */
static void test_pop3_uidl(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct store_import *imp;
	enum store_import_state st;
	struct store_import_result res;
	src_file(f, "p1", "p1@x", 1600000400);
	src_file(f, "p2", "p2@x", 1600000401);
	assert_int_equal(store_import_uidl_valid("UID7-1600000000"), 0);
	assert_int_equal(store_import_uidl_valid(""), -1);
	assert_int_equal(store_import_uidl_valid("has space"), -1);
	assert_int_equal(store_import_uidl_valid("tab\there"), -1);
	assert_int_equal(store_import_uidl_valid("\x7f"), -1);
	char long71[72];
	memset(long71, 'x', 71);
	long71[71] = '\0';
	assert_int_equal(store_import_uidl_valid(long71), -1);
	long71[70] = '\0';
	assert_int_equal(store_import_uidl_valid(long71), 0);

	assert_int_equal(store_import_begin(f->user, "INBOX", NULL, 8080, 0, &imp, &st, &err), 0);
	import_one(imp, f, "p1", 1, 0, NULL, 0, -1, &res);
	assert_int_equal(store_import_pop3_uidl(imp, 1, "00000001abc", &err), 0);
	assert_int_equal(store_import_pop3_uidl(imp, 1, "bad uidl", &err), -1);
	assert_int_equal(err.code, ERR_INVALID);
	assert_int_equal(store_import_end(&imp, &err), 0);
	assert_int_equal(store_import_begin(f->user, "INBOX", NULL, 8080, 0, &imp, &st, &err), 0);
	import_one(imp, f, "p2", 2, 0, NULL, 0, -1, &res);
	assert_int_equal(store_import_pop3_uidl(imp, 2, "second", &err), 0);
	assert_int_equal(store_import_end(&imp, &err), 0);

	struct store_mailbox *mbox;
	char got[512] = "";
	assert_int_equal(store_mailbox_open(f->user, "INBOX", &mbox, &err), 0);
	assert_int_equal(store_import_uidls(mbox, uidl_collect, got, &err), 0);
	assert_string_equal(got, "1=00000001abc;2=second;");
	store_mailbox_close(&mbox);
}

/* More than one batch: UIDs continue across the flushes. */
static void test_batches(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct store_import *imp;
	enum store_import_state st;
	struct store_import_result res;
	assert_int_equal(store_import_begin(f->user, "Big", NULL, 1111, 0, &imp, &st, &err), 0);
	char name[32];
	for (int i = 0; i < 2100; i++) {
		snprintf(name, sizeof(name), "big%d", i);
		src_file(f, name, name, 1600000000 + i);
		import_one(imp, f, name, i % 2 == 0 ? (uint32_t)(i + 1) : 0, 0, NULL, 0, -1, &res);
	}
	assert_int_equal(store_import_end(&imp, &err), 0);
	struct seen s;
	struct store_status ss;
	list(f, "Big", &s, &ss);
	assert_int_equal(ss.messages, 2100);
	assert_int_equal(s.uid[0], 1);
	assert_int_equal(s.uid[1], 2); /* the message without a UID after UID 1 */
}

/* The batch's fsync fails (as a crash before the commit would leave it):
 * the files in cur/ carry UID and flags, and the next open adopts them. */
static void test_failed_flush_adopted(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct store_import *imp;
	enum store_import_state st;
	struct store_import_result res;
	src_file(f, "k1", "k1@x", 1600000501);
	src_file(f, "k2", "k2@x", 1600000502);
	assert_int_equal(store_import_begin(f->user, "Crash", NULL, 6060, 30, &imp, &st, &err), 0);
	import_one(imp, f, "k1", 11, STORE_F_SEEN, NULL, 0, -1, &res);
	import_one(imp, f, "k2", 12, STORE_F_FLAGGED, NULL, 0, -1, &res);
	fsx_fault_set(FSX_FSYNC, 1, EIO);
	assert_int_equal(store_import_end(&imp, &err), -1);
	fsx_fault_set(FSX_FSYNC, 0, 0);
	assert_int_equal(err.code, ERR_TEMP);
	struct seen s;
	struct store_status ss;
	list(f, "Crash", &s, &ss);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.uid[0], 11);
	assert_int_equal(s.uid[1], 12);
	assert_int_equal(s.flags[0], STORE_F_SEEN);
	assert_int_equal(s.flags[1], STORE_F_FLAGGED);
	assert_int_equal(ss.uidvalidity, 6060);
	assert_true(ss.uidnext >= 30);
}

/* Root importing into a store the server has not taken over yet: the
 * hand-over would chown a linked source file, so every file is copied. */
static void test_root_store_not_handed_over(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct store_import *imp;
	enum store_import_state st;
	struct store_import_result res;
	struct store_import_result res2;
	src_file(f, "r1", "r1@x", 1600000601);
	src_file(f, "r2", "r2@x", 1600000602);
	if (geteuid() == 0) /* the owner-to-be's file: the hand-over leaves it alone */
		assert_int_equal(fchownat(f->src_fd, "r2", 65534, 65534, 0), 0);
	assert_int_equal(store_import_begin(f->user, "Root", NULL, 7070, 0, &imp, &st, &err), 0);
	store_import_set_owner(imp, 65534, 65534);
	import_one(imp, f, "r1", 1, 0, NULL, 0, -1, &res);
	import_one(imp, f, "r2", 2, 0, NULL, 0, -1, &res2);
	assert_int_equal(store_import_end(&imp, &err), 0);
	if (geteuid() == 0) {
		assert_int_equal(res.how, STORE_IMPORT_COPIED);
		assert_int_equal(res.why, STORE_IMPORT_WHY_NOT_HANDED_OVER);
		assert_int_equal(src_stat(f, "r1").st_nlink, 1);
	} else {
		assert_int_equal(res.how, STORE_IMPORT_LINKED);
	}
	assert_int_equal(res2.how, STORE_IMPORT_LINKED);
	struct seen s;
	struct store_status ss;
	list(f, "Root", &s, &ss);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.date[0], 1600000601);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_uids_kept_and_linked, setup_handed_over, teardown),
		cmocka_unit_test_setup_teardown(test_rerun_adds_nothing, setup_handed_over, teardown),
		cmocka_unit_test_setup_teardown(test_index_lost, setup_handed_over, teardown),
		cmocka_unit_test_setup_teardown(test_adopt_and_append, setup_handed_over, teardown),
		cmocka_unit_test_setup_teardown(test_copy_keeps_source, setup_handed_over, teardown),
		cmocka_unit_test_setup_teardown(test_stream, setup_handed_over, teardown),
		cmocka_unit_test_setup_teardown(test_pop3_uidl, setup_handed_over, teardown),
		cmocka_unit_test_setup_teardown(test_batches, setup_handed_over, teardown),
		cmocka_unit_test_setup_teardown(test_failed_flush_adopted, setup_handed_over, teardown),
		cmocka_unit_test_setup_teardown(test_root_store_not_handed_over, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
