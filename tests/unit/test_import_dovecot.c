/*
 * test_import_dovecot.c: the Dovecot maildir driver against hand-made trees
 * (the file formats as Dovecot 2.3 writes them: see tests/e2e/
 * test_import_dovecot.py for the same against a real Dovecot), through a
 * sink that records every call as a line of text: uidlist v1 and v3,
 * keywords, Maildir++ and LAYOUT=fs, modified UTF-7 and UTF-8 names,
 * subscriptions, a missing and a garbage uidlist, symlinks, and a sink
 * that fails.
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

#include "import/import.h"
#include "import/import_dovecot.h"
#include "lib/buf.h"
#include "store/store.h"

/* ---- a recording sink ------------------------------------------------------ */

struct rec {
	struct buf log;	  /* one line per call */
	struct buf skips; /* one line per skip */
	char folder[256];
	int fail_folder_begin;
	uint32_t has; /* has_uid answers 1 for this UID */
	int nmsgs;
};

static int r_folder_begin(void *ctx, const struct import_folder *f, struct error *err)
{
	struct rec *r = ctx;
	if (r->fail_folder_begin) {
		error_set(err, ERR_TEMP, "sink says no");
		return -1;
	}
	snprintf(r->folder, sizeof(r->folder), "%s", f->name);
	buf_printf(&r->log, "folder %s v=%u n=%u\n", f->name, f->uidvalidity, f->uidnext);
	return 0;
}

static int r_has_uid(void *ctx, uint32_t uid)
{
	struct rec *r = ctx;
	return uid == r->has;
}

static int r_msg_file(void *ctx, const struct import_msg *m, int dirfd, const char *path,
		      struct error *err)
{
	struct rec *r = ctx;
	struct stat st;
	(void)err;
	/* the path is reachable from dirfd and a regular file */
	assert_int_equal(fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(m->internaldate, -1);
	buf_printf(&r->log, "msg %s uid=%u flags=%02x size=%llu uidl=%s kw=", r->folder, m->uid,
		   m->flags, (unsigned long long)m->size, m->pop3_uidl ? m->pop3_uidl : "-");
	for (size_t i = 0; i < m->nkeywords; i++)
		buf_printf(&r->log, "%s%s", i ? "," : "", m->keywords[i]);
	buf_printf(&r->log, " path=%s id=%s\n", path, m->id);
	r->nmsgs++;
	return 0;
}

static int r_folder_end(void *ctx, struct error *err)
{
	struct rec *r = ctx;
	(void)err;
	buf_printf(&r->log, "end %s\n", r->folder);
	return 0;
}

static int r_subscribe(void *ctx, const char *name, struct error *err)
{
	struct rec *r = ctx;
	(void)err;
	buf_printf(&r->log, "sub %s\n", name);
	return 0;
}

static void r_skip(void *ctx, const char *what, const char *reason)
{
	struct rec *r = ctx;
	buf_printf(&r->skips, "%s: %s\n", what, reason);
}

static struct import_sink sink_of(struct rec *r)
{
	struct import_sink s = {.ctx = r,
				.folder_begin = r_folder_begin,
				.has_uid = r_has_uid,
				.msg_file = r_msg_file,
				.folder_end = r_folder_end,
				.subscribe = r_subscribe,
				.skip = r_skip};
	return s;
}

/* ---- building trees ------------------------------------------------------------ */

static char root[64];

static void sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	assert_int_equal(system(cmd), 0);
}

/* Writes text to root/rel, making folders on the way. */
static void put(const char *rel, const char *text)
{
	char path[1024];
	FILE *f;
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	sh("mkdir -p \"$(dirname '%s')\"", path);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void maildir(const char *rel)
{
	sh("mkdir -p '%s/%s/cur' '%s/%s/new' '%s/%s/tmp'", root, rel, root, rel, root, rel);
}

static int setup(void **state)
{
	strcpy(root, "/tmp/mailroom-dvtest-XXXXXX");
	assert_non_null(mkdtemp(root));
	maildir(".");
	*state = calloc(1, sizeof(struct rec));
	return 0;
}

static int teardown(void **state)
{
	struct rec *r = *state;
	sh("rm -rf '%s'", root);
	buf_free(&r->log);
	buf_free(&r->skips);
	free(r);
	return 0;
}

static int run(struct rec *r, const char *suffix, struct error *err)
{
	char path[256];
	struct import_sink s = sink_of(r);
	snprintf(path, sizeof(path), "%s%s", root, suffix);
	return import_dovecot(path, &s, err);
}

static void has(const struct buf *b, const char *line)
{
	if (strstr(buf_cstr(b), line) == NULL)
		fail_msg("missing \"%s\" in:\n%s", line, buf_cstr(b));
}

static void lacks(const struct buf *b, const char *text)
{
	if (strstr(buf_cstr(b), text) != NULL)
		fail_msg("unexpected \"%s\" in:\n%s", text, buf_cstr(b));
}

/* ---- tests -------------------------------------------------------------------- */

static const char MSG[] = "Subject: x\n\nbody\n";

/* INBOX with a v3 uidlist as Dovecot 2.3 writes it. */
static void inbox_v3(void)
{
	put("dovecot-uidlist", "3 V1796694319 N10 Gd9aeac1c2d61176b5f21000083ecc375\n"
			       "5 :1700.M1P1.vm,S=38,W=42\n"
			       "7 W99 P :1700.M2P1.vm\n"
			       "8 :1700.M9P1.vm,S=1,W=2\n" /* expunged: no file */
			       "9 Pmy-uidl-9 W20 G0123 :1700.M3P1.vm,S=3:2,S\n");
	put("dovecot-keywords", "0 $Forwarded\n1 project-x\n2 $Junk\n");
	put("cur/1700.M1P1.vm,S=38,W=42:2,FRSab", MSG);
	put("cur/1700.M2P1.vm:2,Tc", MSG);
	put("new/1700.M3P1.vm,S=3", MSG);
	put("new/1800.M4P1.vm,S=18,W=20", MSG); /* dropped in new/ after Dovecot looked */
	put("new/.hidden", MSG);
	put("dovecot.index.log", "x");
	put("dovecot-uidvalidity", "x");
	put("dovecot-uidvalidity.6b176132", "x");
	put("dovecot-uidlist.lock", ""); /* reported: Dovecot may still run */
}

static void test_inbox_v3(void **state)
{
	struct rec *r = *state;
	struct error err;
	inbox_v3();
	assert_int_equal(run(r, "", &err), 0);
	/* the unlisted file gets the next UID, and UIDNEXT goes past it */
	has(&r->log, "folder INBOX v=1796694319 n=11\n");
	/* F R S = \Flagged \Answered \Seen, a = $Forwarded = the P bit; no
	 * P field: no UIDL (mailroom's default is Dovecot's) */
	has(&r->log, "msg INBOX uid=5 flags=1e size=42 uidl=- kw=project-x "
		     "path=cur/1700.M1P1.vm,S=38,W=42:2,FRSab");
	/* T = \Deleted; W from the uidlist; an empty P is the base name */
	has(&r->log, "msg INBOX uid=7 flags=20 size=99 uidl=1700.M2P1.vm kw=$Junk "
		     "path=cur/1700.M2P1.vm:2,Tc");
	/* matched by base name although the recorded name had :2,S */
	has(&r->log,
	    "msg INBOX uid=9 flags=00 size=20 uidl=my-uidl-9 kw= path=new/1700.M3P1.vm,S=3 ");
	has(&r->log,
	    "msg INBOX uid=10 flags=00 size=20 uidl=- kw= path=new/1800.M4P1.vm,S=18,W=20");
	has(&r->log, "end INBOX\n");
	assert_int_equal(r->nmsgs, 4);
	/* UID order, then the unlisted one */
	assert_true(strstr(buf_cstr(&r->log), "uid=5") < strstr(buf_cstr(&r->log), "uid=7"));
	assert_true(strstr(buf_cstr(&r->log), "uid=9") < strstr(buf_cstr(&r->log), "uid=10"));
	has(&r->skips, "dovecot-uidlist.lock: present");
	lacks(&r->skips, "dovecot.index");
	lacks(&r->skips, "uidvalidity");
	lacks(&r->skips, "hidden");
}

static void test_plusplus_names_and_subscriptions(void **state)
{
	struct rec *r = *state;
	struct error err;
	put("dovecot-uidlist", "3 V1 N3 G00\n3 :1700.M1P1.vm\n"); /* stale N: next is 4 */
	put("cur/1700.M1P1.vm:2,S", MSG);
	maildir(".Entw&APw-rfe");
	put(".Entw&APw-rfe/maildirfolder", "");
	put(".Entw&APw-rfe/dovecot-uidlist", "1 77 3\n1 msgA\n2 msgB:2,S\n");
	put(".Entw&APw-rfe/cur/msgA:2,S", MSG);
	put(".Entw&APw-rfe/cur/msgB:2,", MSG);
	maildir(".&BCAEMAQxBD4EQgQw-.2024");
	put(".&BCAEMAQxBD4EQgQw-.2024/dovecot-uidlist", "3 V88 N1 G00\n");
	maildir(".Работа"); /* mail_location with :UTF-8 */
	maildir(".Sent");
	sh("mkdir '%s/.NoMaildir'", root);
	put("notes.txt", "mine");
	put("subscriptions", "V\t2\n\nEntw&APw-rfe\n&BCAEMAQxBD4EQgQw-\t2024\nSent\nGone\n");
	assert_int_equal(run(r, "", &err), 0);
	has(&r->log, "folder INBOX v=1 n=4\n");
	has(&r->log, "folder Entwürfe v=77 n=3\n");
	has(&r->log, "msg Entwürfe uid=1 flags=10 size=0 uidl=- kw= path=cur/msgA:2,S "
		     "id=.Entw&APw-rfe/cur/msgA:2,S");
	has(&r->log, "msg Entwürfe uid=2 flags=00");
	has(&r->log, "folder Работа/2024 v=88 n=1\n");
	has(&r->log, "folder Работа v=0 n=0\n");
	has(&r->log, "folder Sent v=0 n=0\n");
	has(&r->log, "sub Entwürfe\nsub Работа/2024\nsub Sent\nsub Gone\n");
	has(&r->skips, "notes.txt: not part of a Dovecot maildir");
	has(&r->skips, ".NoMaildir: no cur/");
	lacks(&r->skips, "maildirfolder");
	lacks(&r->log, "NoMaildir");
}

static void test_fs_layout(void **state)
{
	struct rec *r = *state;
	struct error err;
	put("dovecot-uidlist", "3 V5 N2 G00\n1 :m1\n");
	put("new/m1", MSG);
	maildir("Entw&APw-rfe");
	put("Entw&APw-rfe/dovecot-uidlist", "3 V6 N3 G00\n2 :m2,S=18,W=20\n");
	put("Entw&APw-rfe/cur/m2,S=18,W=20:2,D", MSG);
	maildir("&BCAEMAQxBD4EQgQw-/2024"); /* the parent has no cur/: not a folder itself */
	put("&BCAEMAQxBD4EQgQw-/2024/cur/m3:2,F", MSG);
	maildir("a.b");
	maildir("Entw&APw-rfe/Sub");
	put("subscriptions", "Entw&APw-rfe\n&BCAEMAQxBD4EQgQw-/2024\n"); /* the old format */
	assert_int_equal(run(r, "", &err), 0);
	has(&r->log, "folder INBOX v=5 n=2\n");
	has(&r->log, "msg INBOX uid=1 flags=00 size=0 uidl=- kw= path=new/m1");
	has(&r->log, "folder Entwürfe v=6 n=3\n");
	has(&r->log, "msg Entwürfe uid=2 flags=01 size=20");
	has(&r->log, "folder Entwürfe/Sub v=0 n=0\n");
	has(&r->log, "folder Работа/2024 v=0 n=0\n");
	has(&r->log, "msg Работа/2024 uid=0 flags=02 size=0 uidl=- kw= path=cur/m3:2,F "
		     "id=&BCAEMAQxBD4EQgQw-/2024/cur/m3:2,F");
	has(&r->log, "folder a.b v=0 n=0\n");
	lacks(&r->log, "folder Работа v");
	has(&r->log, "sub Entwürfe\nsub Работа/2024\n");
	assert_int_equal(strlen(buf_cstr(&r->skips)), 0);
}

/* LAYOUT=fs parents need no maildir of their own: only a deep folder. */
static void test_fs_layout_deep_only(void **state)
{
	struct rec *r = *state;
	struct error err;
	maildir("Deep/A/B");
	put("Deep/A/B/cur/m:2,S", MSG);
	assert_int_equal(run(r, "", &err), 0);
	has(&r->log, "folder Deep/A/B v=0 n=0\n");
	has(&r->log, "msg Deep/A/B uid=0 flags=10");
	assert_int_equal(strlen(buf_cstr(&r->skips)), 0);
}

static void test_both_layouts_need_a_word(void **state)
{
	struct rec *r = *state;
	struct error err;
	maildir(".Plus");
	maildir("Fs");
	assert_int_equal(run(r, "", &err), -1);
	assert_int_equal(err.code, ERR_INVALID);
	assert_non_null(strstr(err.text, "layout=fs"));
	assert_int_equal(run(r, "?layout=fs", &err), 0);
	has(&r->log, "folder Fs ");
	has(&r->skips, ".Plus: not part of a Dovecot maildir");
	buf_free(&r->log);
	assert_int_equal(run(r, "?layout=maildir++", &err), 0);
	has(&r->log, "folder Plus ");
	lacks(&r->log, "folder Fs");
	assert_int_equal(run(r, "?layout=mbox", &err), -1);
	assert_int_equal(err.code, ERR_INVALID);
}

static void test_missing_uidlist(void **state)
{
	struct rec *r = *state;
	struct error err;
	put("cur/b:2,S", MSG);
	put("cur/a:2,", MSG);
	put("dovecot-keywords", "0 x\n");
	put("new/c", MSG);
	assert_int_equal(run(r, "", &err), 0);
	has(&r->log, "folder INBOX v=0 n=0\n");
	has(&r->log, "msg INBOX uid=0 flags=00 size=0 uidl=- kw= path=cur/a:2,");
	has(&r->log, "msg INBOX uid=0 flags=10");
	assert_int_equal(r->nmsgs, 3);
	assert_int_equal(strlen(buf_cstr(&r->skips)), 0);
}

static void test_garbage_uidlist(void **state)
{
	struct rec *r = *state;
	struct error err;
	static const char text[] = "3 V42 N100 Gxx\n"
				   "abc\n"
				   "0 :zero\n"
				   "5 :a\n"
				   "4 :b\n"		    /* not above 5 */
				   "6 Wxyz :c\n"	    /* a bad W */
				   "7 W12\n"		    /* no file name */
				   "8 :\n"		    /* an empty one */
				   "99999999999 :d\n"	    /* above 2^32 */
				   "10 :../../etc/passwd\n" /* a path */
				   "11 :e\0f\n"
				   "12 :good\n";
	put("dovecot-uidlist", "");
	{
		char path[256];
		snprintf(path, sizeof(path), "%s/dovecot-uidlist", root);
		FILE *f = fopen(path, "w");
		fwrite(text, 1, sizeof(text) - 1, f);
		fclose(f);
	}
	put("cur/a:2,S", MSG);
	put("cur/b:2,", MSG);
	put("cur/good:2,z", MSG); /* z is not in dovecot-keywords */
	assert_int_equal(run(r, "", &err), 0);
	has(&r->log, "folder INBOX v=42 n=101\n");
	has(&r->log, "msg INBOX uid=5 flags=10");
	has(&r->log, "msg INBOX uid=12 flags=00 size=0 uidl=- kw= path=cur/good:2,z");
	has(&r->log, "msg INBOX uid=100 flags=00 size=0 uidl=- kw= path=cur/b:2,");
	has(&r->skips, "dovecot-uidlist: line 2 is malformed");
	has(&r->skips, "dovecot-uidlist: line 5 is malformed");
	has(&r->skips, "line 10 is malformed");
	has(&r->skips, "1 more malformed lines ignored");
	has(&r->skips, "cur/good:2,z: keyword letter 'z'");
	/* a header that is no header: every message is still imported */
	buf_free(&r->log);
	buf_free(&r->skips);
	put("dovecot-uidlist", "hello world\n5 :a\n");
	assert_int_equal(run(r, "", &err), 0);
	has(&r->log, "folder INBOX v=0 n=0\n");
	has(&r->log, "msg INBOX uid=0 flags=10");
	has(&r->skips, "dovecot-uidlist: not a Dovecot uidlist");
}

static void test_symlinks_not_followed(void **state)
{
	struct rec *r = *state;
	struct error err;
	char outside[80];
	snprintf(outside, sizeof(outside), "%s-outside", root);
	sh("mkdir -p '%s/cur' && echo secret > '%s/cur/s:2,'", outside, outside);
	put("cur/ok:2,", MSG);
	sh("ln -s '%s/cur/s:2,' '%s/cur/link:2,S'", outside, root);
	sh("ln -s '%s' '%s/.Evil'", outside, root);
	sh("ln -s /etc/passwd '%s/dovecot-keywords'", root);
	sh("ln -s /etc/passwd '%s/subscriptions'", root);
	assert_int_equal(run(r, "", &err), 0);
	sh("rm -rf '%s'", outside);
	assert_int_equal(r->nmsgs, 1);
	has(&r->skips, "cur/link:2,S: not a regular file");
	has(&r->skips, ".Evil: a symlink: not followed");
	has(&r->skips, "dovecot-keywords: ");
	has(&r->skips, "subscriptions: ");
	lacks(&r->log, "Evil");
	lacks(&r->log, "sub ");
}

static void test_rerun_and_sink_failure(void **state)
{
	struct rec *r = *state;
	struct error err;
	inbox_v3();
	r->has = 7; /* already imported */
	assert_int_equal(run(r, "", &err), 0);
	lacks(&r->log, "uid=7 ");
	assert_int_equal(r->nmsgs, 3);
	/* the file the uidlist did not name is found again by the UID it got */
	buf_free(&r->log);
	r->has = 10;
	assert_int_equal(run(r, "", &err), 0);
	lacks(&r->log, "1800.M4P1");
	assert_int_equal(r->nmsgs, 6);
	r->fail_folder_begin = 1;
	assert_int_equal(run(r, "", &err), -1);
	assert_int_equal(err.code, ERR_TEMP);
	assert_string_equal(err.text, "sink says no");
}

static void test_not_a_maildir(void **state)
{
	struct rec *r = *state;
	struct error err;
	sh("rm -rf '%s/cur' '%s/new' '%s/tmp'", root, root, root);
	assert_int_equal(run(r, "", &err), -1);
	assert_int_equal(err.code, ERR_NOTFOUND);
	assert_int_equal(run(r, "/nonexistent", &err), -1);
	assert_int_equal(err.code, ERR_NOTFOUND);
}

/* The parser alone: v1, v2, v3, and every prefix of a valid file. */
static void test_uidlist_parser(void **state)
{
	struct import_dovecot_uidlist ul = {0};
	struct error err;
	static const char v3[] = "3 N7 V9 Gabc X\n1 S38 W42 O3 M7 :x,S=38:2,S\n3 P :y\n";
	(void)state;
	assert_int_equal(import_dovecot_uidlist_parse("1 100 5\n2 a:2,S\n4 b\n", 20, &ul, &err), 0);
	assert_int_equal(ul.version, 1);
	assert_int_equal(ul.uidvalidity, 100);
	assert_int_equal(ul.nextuid, 5);
	assert_int_equal(ul.nrecs, 2);
	assert_string_equal(ul.recs[0].base, "a");
	assert_string_equal(ul.recs[1].base, "b");
	import_dovecot_uidlist_free(&ul);

	assert_int_equal(import_dovecot_uidlist_parse("2 100 5\n2 NR a:2,S\n", 19, &ul, &err), 0);
	assert_int_equal(ul.nrecs, 1);
	assert_string_equal(ul.recs[0].base, "a");
	import_dovecot_uidlist_free(&ul);

	assert_int_equal(import_dovecot_uidlist_parse(v3, sizeof(v3) - 1, &ul, &err), 0);
	assert_int_equal(ul.version, 3);
	assert_int_equal(ul.uidvalidity, 9);
	assert_int_equal(ul.nextuid, 7);
	assert_int_equal(ul.nrecs, 2);
	assert_int_equal(ul.recs[0].vsize, 42);
	assert_string_equal(ul.recs[0].base, "x,S=38");
	assert_null(ul.recs[0].pop3_uidl);
	assert_string_equal(ul.recs[1].pop3_uidl, "");
	assert_int_equal(ul.nbad, 0);
	import_dovecot_uidlist_free(&ul);

	for (size_t n = 0; n < sizeof(v3) - 1; n++) {
		int rc = import_dovecot_uidlist_parse(v3, n, &ul, &err);
		assert_true(rc == 0 || (rc == -1 && err.code == ERR_INVALID));
		import_dovecot_uidlist_free(&ul);
	}
	assert_int_equal(import_dovecot_uidlist_parse("4 V1 N2\n", 8, &ul, &err), -1);
	assert_int_equal(err.code, ERR_INVALID);
	assert_int_equal(import_dovecot_uidlist_parse("3 V1x N2\n", 9, &ul, &err), -1);
	assert_int_equal(import_dovecot_uidlist_parse("", 0, &ul, &err), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_inbox_v3, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plusplus_names_and_subscriptions, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_fs_layout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fs_layout_deep_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_both_layouts_need_a_word, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_uidlist, setup, teardown),
		cmocka_unit_test_setup_teardown(test_garbage_uidlist, setup, teardown),
		cmocka_unit_test_setup_teardown(test_symlinks_not_followed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rerun_and_sink_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_a_maildir, setup, teardown),
		cmocka_unit_test(test_uidlist_parser),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
