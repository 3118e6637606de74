/*
 * test_import_courier.c: unit tests for src/import/import_courier.c, the
 * Courier-IMAP maildir source driver, against a recording sink.
 *
 * The trees are written here from Courier's documented file formats
 * (courier-libs: imap/imapscanclient.c for courierimapuiddb,
 * maildir/maildirkeywords2.c for courierimapkeywords/, imap/pop3dserver.c
 * for courierpop3dsizelist and its UIDLs, imap/imapd.h for
 * courierimapsubscribed), and the expected calls are worked out by hand
 * from those formats: which UID each file had, which keyword update wins,
 * which UIDL Courier's pop3d printed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "import/import.h"
#include "import/import_courier_int.h"
#include "lib/buf.h"
#include "store/store.h"

/* ---- a recording sink ------------------------------------------------------ */

struct rec {
	struct buf log;
	uint32_t have[8]; /* UIDs has_uid answers 1 for */
	size_t nhave;
	int fail_at;	  /* msg_file fails on this call (1-based), 0: never */
	int calls;
};

static void flags_str(uint32_t f, char *out)
{
	static const struct { uint32_t bit; char c; } map[] = {
		{STORE_F_DRAFT, 'D'}, {STORE_F_FLAGGED, 'F'}, {STORE_F_PASSED, 'P'},
		{STORE_F_ANSWERED, 'R'}, {STORE_F_SEEN, 'S'}, {STORE_F_DELETED, 'T'},
	};
	size_t n = 0;
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (f & map[i].bit)
			out[n++] = map[i].c;
	out[n] = '\0';
}

static int r_folder_begin(void *ctx, const struct import_folder *f, struct error *err)
{
	(void)err;
	struct rec *r = ctx;
	buf_printf(&r->log, "folder %s %u %u\n", f->name, f->uidvalidity, f->uidnext);
	return 0;
}

static int r_has_uid(void *ctx, uint32_t uid)
{
	struct rec *r = ctx;
	for (size_t i = 0; i < r->nhave; i++)
		if (r->have[i] == uid)
			return 1;
	return 0;
}

static int r_msg_file(void *ctx, const struct import_msg *m, int dirfd, const char *path,
		      struct error *err)
{
	struct rec *r = ctx;
	char fl[8];
	struct stat st;
	if (++r->calls == r->fail_at) {
		error_set(err, ERR_NOSPACE, "disk full");
		return -1;
	}
	/* The path must name the file, relative to dirfd. */
	assert_int_equal(fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(m->internaldate, -1);
	flags_str(m->flags, fl);
	buf_printf(&r->log, "msg %s uid=%u flags=%s kw=", path, m->uid, fl);
	for (size_t i = 0; i < m->nkeywords; i++)
		buf_printf(&r->log, "%s%s", i ? "," : "", m->keywords[i]);
	if (m->pop3_uidl != NULL)
		buf_printf(&r->log, " uidl=%s size=%llu", m->pop3_uidl, (unsigned long long)m->size);
	buf_puts(&r->log, "\n");
	return 0;
}

static int r_folder_end(void *ctx, struct error *err)
{
	(void)err;
	buf_puts(&((struct rec *)ctx)->log, "end\n");
	return 0;
}

static int r_subscribe(void *ctx, const char *name, struct error *err)
{
	(void)err;
	buf_printf(&((struct rec *)ctx)->log, "sub %s\n", name);
	return 0;
}

static void r_skip(void *ctx, const char *what, const char *reason)
{
	assert_true(reason[0] != '\0');
	buf_printf(&((struct rec *)ctx)->log, "skip %s\n", what);
}

static struct import_sink sink_of(struct rec *r)
{
	struct import_sink s = {r, r_folder_begin, r_has_uid, r_msg_file, NULL, NULL, NULL,
				r_folder_end, r_subscribe, r_skip};
	return s;
}

/* ---- building a tree ------------------------------------------------------ */

static char root[64];

static void put(const char *rel, const char *text)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void dir(const char *rel)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	assert_int_equal(mkdir(path, 0700), 0);
}

static void maildir(const char *rel)
{
	char p[256];
	if (rel[0] != '\0')
		dir(rel);
	const char *subs[] = {"cur", "new", "tmp"};
	for (int i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s%s%s", rel, rel[0] ? "/" : "", subs[i]);
		dir(p);
	}
}

static void link_at(const char *target, const char *rel)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	assert_int_equal(symlink(target, path), 0);
}

#define MSG "From: a@example.org\nSubject: x\n\nbody\n"

static int setup(void **state)
{
	(void)state;
	strcpy(root, "/tmp/mailroom-courier-XXXXXX");
	assert_non_null(mkdtemp(root));
	maildir("");
	/* INBOX: three files known to courierimapuiddb, two in cur/ and one in
	 * new/ that are not (Courier would number those 60, 61, 62 in fnamcmp
	 * order: 999 < 1002 < 1004), a symlink that is no message. */
	put("courierimapuiddb", "1 1700000000 60\n"
				"50 1000.M1P1.host\n"
				"52 1001.M2P1.host\n"
				"55 1003.M4P1.host\n"
				"this is no line\n"
				"57 gone.M9P1.host\n");
	put("cur/1000.M1P1.host:2,S", MSG);
	put("cur/1001.M2P1.host:2,RS", MSG);
	put("cur/1002.M3P1.host:2,FT", MSG);
	put("cur/1003.M4P1.host:2,DP", MSG);
	put("cur/999.M0P1.ho+st:2,", MSG);
	put("new/1004.M5P1.host", MSG);
	link_at("/etc/hostname", "cur/1005.M6P1.host:2,S");
	dir("courierimapkeywords");
	put("courierimapkeywords/:list", "$Label1\nJunk\nwork item\n\n"
					 "1000.M1P1.host:0 1\n"
					 "1001.M2P1.host:2\n"
					 "1003.M4P1.host:1\n"
					 "1004.M5P1.host:2 0\n");
	/* 1000: an empty update clears its keywords. 1001: the plain file wins
	 * over any ".N." one. 1003: the highest N wins. 1002: not in :list. */
	put("courierimapkeywords/.4.1000.M1P1.host", "");
	put("courierimapkeywords/1001.M2P1.host", "Important\n");
	put("courierimapkeywords/.5.1001.M2P1.host", "Old\n");
	put("courierimapkeywords/.3.1003.M4P1.host", "NotJunk\n");
	put("courierimapkeywords/.7.1003.M4P1.host", "$Label2\nJunk\n");
	put("courierimapkeywords/.tmp.1700000000.x", "Scratch\n");
	put("courierimapkeywords/1002.M3P1.host", "Later\n");
	put("courierpop3dsizelist", "/3 4 1234567\n"
				    "1000.M1P1.host:2,S 120 1:1234567:0\n"
				    "1001.M2P1.host:2,RS 200 2:0:0\n"
				    "999.M0P1.ho+st:2, 300 0:0:0\n");
	put("courierimapsubscribed", "INBOX\nINBOX.Work\nINBOX.Entw&APw-rfe\nshared.x\n");

	maildir(".Work");
	put(".Work/courierimapuiddb", "1 42 10\n3 a\n4 b\n");
	put(".Work/cur/a:2,S", MSG);
	put(".Work/cur/b:2,", MSG);
	maildir(".Entw&APw-rfe");
	put(".Entw&APw-rfe/cur/c:2,F", MSG);
	maildir(".Caf\xc3\xa9");
	put(".Caf\xc3\xa9/new/d", MSG);
	maildir(".a.b");
	put(".a.b/courierimapuiddb", "2 5 6\n5 e\n");
	put(".a.b/cur/e:2,", MSG);
	link_at(".Work", ".Link");
	dir(".NoCur");
	maildir("..bad");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	assert_int_equal(system(cmd), 0);
	return 0;
}

/* ---- the driver ------------------------------------------------------------- */

static void test_tree(void **state)
{
	(void)state;
	struct rec r = {BUF_INIT, {0}, 0, 0, 0};
	struct import_sink s = sink_of(&r);
	struct error err = {ERR_OK, ""};
	assert_int_equal(import_courier(root, &s, &err), 0);
	const char *want =
		"sub INBOX\n"
		"sub INBOX/Work\n"
		"sub INBOX/Entw\xc3\xbcrfe\n"
		"skip courier:courierimapsubscribed\n"
		"skip courier:courierimapuiddb\n"
		"skip courier:cur/1005.M6P1.host:2,S\n"
		"folder INBOX 1700000000 63\n"
		"msg cur/1000.M1P1.host:2,S uid=50 flags=S kw= uidl=UID1-1234567 size=120\n"
		"msg cur/1001.M2P1.host:2,RS uid=52 flags=RS kw=Important uidl=UID2 size=200\n"
		"msg cur/1003.M4P1.host:2,DP uid=55 flags=DP kw=$Label2,Junk\n"
		"msg cur/999.M0P1.ho+st:2, uid=60 flags= kw= uidl=999.M0P1.ho+2Bst size=300\n"
		"msg cur/1002.M3P1.host:2,FT uid=61 flags=FT kw=Later\n"
		"skip courier:new/1004.M5P1.host\n"
		"msg new/1004.M5P1.host uid=62 flags= kw=$Label1\n"
		"end\n"
		"skip courier:..bad\n"
		"folder INBOX/Caf\xc3\xa9 0 0\n"
		"msg new/d uid=0 flags= kw=\n"
		"end\n"
		"folder INBOX/Entw\xc3\xbcrfe 0 0\n"
		"msg cur/c:2,F uid=0 flags=F kw=\n"
		"end\n"
		"skip courier:.Link\n"
		"skip courier:.NoCur\n"
		"folder INBOX/Work 42 10\n"
		"msg cur/a:2,S uid=3 flags=S kw=\n"
		"msg cur/b:2, uid=4 flags= kw=\n"
		"end\n"
		"skip courier:.a.b/courierimapuiddb\n"
		"folder INBOX/a/b 0 0\n"
		"msg cur/e:2, uid=0 flags= kw=\n"
		"end\n";
	assert_string_equal(buf_cstr(&r.log), want);
	buf_free(&r.log);
}

/* A re-run: the sink already has 50 and 55; they are not offered again. */
static void test_rerun_skips_known_uids(void **state)
{
	(void)state;
	struct rec r = {BUF_INIT, {50, 55}, 2, 0, 0};
	struct import_sink s = sink_of(&r);
	struct error err = {ERR_OK, ""};
	assert_int_equal(import_courier(root, &s, &err), 0);
	const char *log = buf_cstr(&r.log);
	assert_null(strstr(log, "uid=50 "));
	assert_null(strstr(log, "uid=55 "));
	assert_non_null(strstr(log, "uid=52 "));
	buf_free(&r.log);
}

/* A sink failure stops the driver with the sink's error. */
static void test_sink_failure(void **state)
{
	(void)state;
	struct rec r = {BUF_INIT, {0}, 0, 2, 0};
	struct import_sink s = sink_of(&r);
	struct error err = {ERR_OK, ""};
	assert_int_equal(import_courier(root, &s, &err), -1);
	assert_int_equal(err.code, ERR_NOSPACE);
	assert_int_equal(r.calls, 2);
	buf_free(&r.log);
}

/* The source: a symlink is not followed even at the top; no cur/ is no
 * Courier maildir; an unreadable uiddb stops the import rather than give
 * the messages new UIDs. */
static void test_source_refused(void **state)
{
	(void)state;
	struct rec r = {BUF_INIT, {0}, 0, 0, 0};
	struct import_sink s = sink_of(&r);
	struct error err = {ERR_OK, ""};
	char path[128];
	snprintf(path, sizeof(path), "%s/.Link", root);
	assert_int_equal(import_courier(path, &s, &err), -1);
	assert_int_equal(err.code, ERR_INVALID);
	snprintf(path, sizeof(path), "%s/.Link/", root);
	assert_int_equal(import_courier(path, &s, &err), -1);
	snprintf(path, sizeof(path), "%s/.NoCur", root);
	assert_int_equal(import_courier(path, &s, &err), -1);
	assert_int_equal(err.code, ERR_INVALID);
	snprintf(path, sizeof(path), "%s/.Work/courierimapuiddb", root);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(mkdir(path, 0700), 0); /* there, but not a readable file */
	snprintf(path, sizeof(path), "%s/.Work", root);
	err.code = ERR_OK;
	assert_int_equal(import_courier(path, &s, &err), -1);
	assert_int_not_equal(err.code, ERR_OK);
	assert_string_equal(buf_cstr(&r.log), "");
	buf_free(&r.log);
}

/* ---- the parsers ------------------------------------------------------------ */

static char *dup_text(const char *s)
{
	char *d = strdup(s);
	assert_non_null(d);
	return d;
}

static void test_uiddb_parse(void **state)
{
	(void)state;
	struct courier_uiddb db;
	struct error err;
	const char *t = "1 7 300\n12 x.y:2,S\n0 zero\n4294967296 big\nabc def\n13 \n14 .dot\n9 a b\n\n";
	assert_int_equal(import_courier_uiddb_parse(&db, dup_text(t), strlen(t), &err), 0);
	assert_int_equal(db.uidvalidity, 7);
	assert_int_equal(db.uidnext, 300);
	assert_int_equal(db.n, 2);
	assert_int_equal(db.bad, 5);
	assert_int_equal(import_courier_uiddb_find(&db, "x.y:2,RS", 3), 12);
	assert_int_equal(import_courier_uiddb_find(&db, "x.y", 3), 12);
	assert_int_equal(import_courier_uiddb_find(&db, "x.yz", 4), 0);
	assert_int_equal(import_courier_uiddb_find(&db, "a b", 3), 9);
	import_courier_uiddb_free(&db);

	const char *bad[] = {"", "2 7 300\n1 a\n", "1 0 5\n", "1 7\n", "1 99999999999 3\n", "x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(import_courier_uiddb_parse(&db, dup_text(bad[i]), strlen(bad[i]), &err),
				 -1);
		assert_int_equal(err.code, ERR_DATA);
		assert_int_equal(db.uidvalidity, 0);
		import_courier_uiddb_free(&db);
	}
}

static void test_kw_parse(void **state)
{
	(void)state;
	struct courier_kw kw;
	memset(&kw, 0, sizeof(kw));
	struct error err;
	/* No empty line: names only, no message lines (maildir_kwImport). */
	const char *t = "a\nb\nm:0\n";
	assert_int_equal(import_courier_kw_parse_list(&kw, dup_text(t), strlen(t), &err), 0);
	assert_null(import_courier_kw_find(&kw, "m", 1));
	import_courier_kw_free(&kw);

	memset(&kw, 0, sizeof(kw));
	t = "a\nb\na\n\nm:0 1 2 9 x 1\nn:1\nnocolon\nm:1\n";
	assert_int_equal(import_courier_kw_parse_list(&kw, dup_text(t), strlen(t), &err), 0);
	char *u = dup_text("c\nb\n\nignored\n");
	assert_int_equal(import_courier_kw_update(&kw, "n", u, strlen(u), &err), 0);
	const struct courier_kwmsg *m = import_courier_kw_find(&kw, "m:2,S", 1);
	assert_non_null(m); /* the later "m:1" line wins */
	assert_int_equal(m->n, 1);
	assert_string_equal(kw.names[m->idx[0]], "b");
	m = import_courier_kw_find(&kw, "n", 1);
	assert_int_equal(m->n, 2);
	assert_string_equal(kw.names[m->idx[0]], "c");
	assert_string_equal(kw.names[m->idx[1]], "b");
	assert_int_equal(kw.bad, 2); /* "x" and "nocolon" */
	import_courier_kw_free(&kw);
}

static void test_pop3(void **state)
{
	(void)state;
	struct courier_pop3 p;
	struct error err;
	char uidl[128];
	const char *t = "/2 10 99\nf 5 3:99\ng h:2,S 6 4:0\nbad\nx 1 0:0:1\n";
	assert_int_equal(import_courier_pop3_parse(&p, dup_text(t), strlen(t), &err), 0);
	assert_int_equal(p.n, 3);
	assert_int_equal(p.bad, 1);
	const struct courier_pop3ent *e = import_courier_pop3_find(&p, "f:2,", 1);
	assert_non_null(e);
	assert_int_equal(e->size, 5);
	assert_int_equal(import_courier_pop3_uidl(e, uidl, sizeof(uidl)), 0);
	assert_string_equal(uidl, "UID3-99");
	e = import_courier_pop3_find(&p, "g h", 3);
	assert_int_equal(import_courier_pop3_uidl(e, uidl, sizeof(uidl)), 0);
	assert_string_equal(uidl, "UID4");
	e = import_courier_pop3_find(&p, "x", 1);
	assert_int_equal(import_courier_pop3_uidl(e, uidl, sizeof(uidl)), 0);
	assert_string_equal(uidl, "x");
	import_courier_pop3_free(&p);

	/* Version 0 UIDLs: the name, with ' " + and bytes outside '!'..'~' as +XX. */
	struct courier_pop3ent v0 = {"a+b'c\"d e\xc3\xa9", 1, 0, 0};
	assert_int_equal(import_courier_pop3_uidl(&v0, uidl, sizeof(uidl)), 0);
	assert_string_equal(uidl, "a+2Bb+27c+22d+20e+C3+A9");
	assert_int_equal(import_courier_pop3_uidl(&v0, uidl, 8), -1);

	const char *bad[] = {"", "1 2 3\n", "/1 2 3\n", "/4 2 3\n", "/3\n"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(import_courier_pop3_parse(&p, dup_text(bad[i]), strlen(bad[i]), &err),
				 -1);
		import_courier_pop3_free(&p);
	}
}

static void name_is(const char *in, const char *want)
{
	struct error err = {ERR_OK, ""};
	char *got = import_courier_name(in, strlen(in), &err);
	if (want == NULL) {
		assert_null(got);
		assert_int_equal(err.code, ERR_INVALID);
		return;
	}
	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

static void test_names(void **state)
{
	(void)state;
	name_is("Work", "Work");
	name_is("Work.2024", "Work/2024");
	name_is("Entw&APw-rfe", "Entw\xc3\xbcrfe");
	name_is("&ZeVnLIqe-.x", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e/x");
	name_is("R&-D", "R&D");
	name_is("R&D", "R&D");			/* not mUTF-7: a UTF-8 era name */
	name_is("Caf\xc3\xa9", "Caf\xc3\xa9"); /* UTF-8 (Courier-IMAP 5) */
	name_is("Caf\xe9", NULL);		/* neither */
	name_is("a..b", NULL);
	name_is(".a", NULL);
	name_is("a.", NULL);
	name_is("", NULL);
	name_is("a\x01", NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_tree, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rerun_skips_known_uids, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sink_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_source_refused, setup, teardown),
		cmocka_unit_test(test_uiddb_parse),
		cmocka_unit_test(test_kw_parse),
		cmocka_unit_test(test_pop3),
		cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
