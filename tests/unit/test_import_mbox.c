/*
 * test_import_mbox.c: the mbox source driver (src/import/import_mbox.c)
 * against a recording sink that concatenates each message's bytes. The
 * mboxes are written here the way mutt, Python's mailbox.mbox, UW-IMAP and
 * Solaris mail write them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "import/import.h"
#include "store/store.h"

/* ---- the recording sink -------------------------------------------------- */

#define MAXMSG 16
#define KEEP   (1024 * 1024) /* bytes of a message kept; the rest only counted */

struct rmsg {
	int folder;
	struct import_msg m;
	char kw[256]; /* keywords joined by ' ' */
	char id[128];
	char *data;
	size_t len, kept;
	uint64_t hash; /* FNV-1a of all bytes */
};

struct rec {
	int nfolders;
	struct import_folder folders[8];
	char fnames[8][64];
	int nmsgs;
	struct rmsg msgs[MAXMSG];
	int in_msg, in_folder;
	size_t max_chunk;
	int nsubs;
	char subs[8][64];
	int nskips;
	char skips[16][160];
	uint32_t has[8]; /* UIDs has_uid answers 1 for */
	int nhas;
	int has_calls;
};

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ULL;
	return h;
}
#define FNV0 14695981039346656037ULL

static int r_folder_begin(void *ctx, const struct import_folder *f, struct error *err)
{
	struct rec *r = ctx;
	(void)err;
	assert_false(r->in_folder);
	assert_true(r->nfolders < 8);
	r->in_folder = 1;
	r->folders[r->nfolders] = *f;
	snprintf(r->fnames[r->nfolders], sizeof(r->fnames[0]), "%s", f->name);
	r->folders[r->nfolders].name = r->fnames[r->nfolders];
	r->nfolders++;
	return 0;
}

static int r_has_uid(void *ctx, uint32_t uid)
{
	struct rec *r = ctx;
	r->has_calls++;
	for (int i = 0; i < r->nhas; i++)
		if (r->has[i] == uid)
			return 1;
	return 0;
}

static int r_msg_file(void *ctx, const struct import_msg *m, int dirfd, const char *path,
		      struct error *err)
{
	(void)ctx, (void)m, (void)dirfd, (void)path, (void)err;
	fail_msg("mbox gives no files");
	return -1;
}

static int r_msg_begin(void *ctx, const struct import_msg *m, struct error *err)
{
	struct rec *r = ctx;
	(void)err;
	assert_true(r->in_folder);
	assert_false(r->in_msg);
	assert_true(r->nmsgs < MAXMSG);
	struct rmsg *x = &r->msgs[r->nmsgs];
	memset(x, 0, sizeof(*x));
	x->folder = r->nfolders - 1;
	x->m = *m;
	for (size_t i = 0; i < m->nkeywords; i++) {
		size_t l = strlen(x->kw);
		snprintf(x->kw + l, sizeof(x->kw) - l, "%s%s", i ? " " : "", m->keywords[i]);
	}
	snprintf(x->id, sizeof(x->id), "%s", m->id ? m->id : "");
	x->m.keywords = NULL;
	x->m.id = x->id;
	x->hash = FNV0;
	x->data = malloc(KEEP + 1);
	assert_non_null(x->data);
	r->in_msg = 1;
	return 0;
}

static int r_msg_write(void *ctx, const void *data, size_t len, struct error *err)
{
	struct rec *r = ctx;
	(void)err;
	assert_true(r->in_msg);
	assert_true(len > 0);
	struct rmsg *x = &r->msgs[r->nmsgs];
	if (len > r->max_chunk)
		r->max_chunk = len;
	size_t k = len;
	if (x->kept + k > KEEP)
		k = KEEP - x->kept;
	memcpy(x->data + x->kept, data, k);
	x->kept += k;
	x->data[x->kept] = '\0';
	x->len += len;
	x->hash = fnv(x->hash, data, len);
	return 0;
}

static int r_msg_end(void *ctx, struct error *err)
{
	struct rec *r = ctx;
	(void)err;
	assert_true(r->in_msg);
	r->in_msg = 0;
	r->nmsgs++;
	return 0;
}

static int r_folder_end(void *ctx, struct error *err)
{
	struct rec *r = ctx;
	(void)err;
	assert_true(r->in_folder);
	assert_false(r->in_msg);
	r->in_folder = 0;
	return 0;
}

static int r_subscribe(void *ctx, const char *name, struct error *err)
{
	struct rec *r = ctx;
	(void)err;
	assert_true(r->nsubs < 8);
	snprintf(r->subs[r->nsubs++], sizeof(r->subs[0]), "%s", name);
	return 0;
}

static void r_skip(void *ctx, const char *what, const char *reason)
{
	struct rec *r = ctx;
	assert_true(r->nskips < 16);
	snprintf(r->skips[r->nskips++], sizeof(r->skips[0]), "%s: %s", what, reason);
}

static struct import_sink sink_for(struct rec *r)
{
	struct import_sink s = {r,	     r_folder_begin, r_has_uid,	   r_msg_file,	r_msg_begin,
				r_msg_write, r_msg_end,	     r_folder_end, r_subscribe, r_skip};
	return s;
}

static void rec_free(struct rec *r)
{
	for (int i = 0; i < r->nmsgs; i++)
		free(r->msgs[i].data);
}

/* ---- helpers --------------------------------------------------------------- */

static char tmpdir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_import_mbox.XXXXXX");
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *rel, const char *data, size_t len)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* Imports the mbox text as a file; returns import_mbox's result. */
static int run_text(struct rec *r, const char *text, struct error *err)
{
	char path[256];
	memset(r, 0, sizeof(*r));
	write_file("mbox", text, strlen(text));
	snprintf(path, sizeof(path), "%s/mbox", tmpdir);
	struct import_sink s = sink_for(r);
	int rc = import_mbox(path, &s, err);
	assert_false(r->in_msg);
	assert_false(r->in_folder);
	return rc;
}

static void run_ok(struct rec *r, const char *text)
{
	struct error err = {0};
	assert_int_equal(run_text(r, text, &err), 0);
	assert_int_equal(r->nfolders, 1);
	assert_string_equal(r->folders[0].name, "INBOX");
}

static int64_t utc(int y, int mo, int d, int h, int mi, int s)
{
	struct tm tm = {.tm_year = y - 1900,
			.tm_mon = mo - 1,
			.tm_mday = d,
			.tm_hour = h,
			.tm_min = mi,
			.tm_sec = s};
	return (int64_t)timegm(&tm);
}

/* ---- tests ------------------------------------------------------------------- */

/* Python's mailbox.mbox and mutt: a blank line after each message. */
static void test_split(void **state)
{
	(void)state;
	struct rec r;
	run_ok(&r, "From alice@example.com Mon Jan  1 10:00:00 2024\n"
		   "Subject: one\n\nbody one\n\n"
		   "From bob@example.com Tue Jan  2 11:30:15 2024\n"
		   "Subject: two\n\nbody two\nline 2\n\n\n"
		   "From MAILER-DAEMON Wed Jan  3 00:00:00 2024\n"
		   "Subject: three\n\n"
		   "From carol Thu Jan  4 00:00:00 2024\n"
		   "Subject: four\n\nlast, no blank line after\n");
	assert_int_equal(r.nmsgs, 4);
	assert_string_equal(r.msgs[0].data, "Subject: one\n\nbody one\n");
	/* the message's own trailing blank line stays, the separator goes */
	assert_string_equal(r.msgs[1].data, "Subject: two\n\nbody two\nline 2\n\n");
	/* no body: the header's empty line was the separator */
	assert_string_equal(r.msgs[2].data, "Subject: three\n");
	assert_string_equal(r.msgs[3].data, "Subject: four\n\nlast, no blank line after\n");
	assert_int_equal(r.msgs[0].m.internaldate, utc(2024, 1, 1, 10, 0, 0));
	assert_int_equal(r.msgs[1].m.internaldate, utc(2024, 1, 2, 11, 30, 15));
	for (int i = 0; i < 4; i++) {
		assert_int_equal(r.msgs[i].m.uid, 0);
		assert_int_equal(r.msgs[i].m.flags, 0);
		assert_null(r.msgs[i].m.pop3_uidl);
	}
	char id[64];
	snprintf(id, sizeof(id), "mbox offset %zu",
		 strlen("From alice@example.com Mon Jan  1 10:00:00 2024\n"
			"Subject: one\n\nbody one\n\n"));
	assert_string_equal(r.msgs[1].id, id);
	assert_int_equal(r.folders[0].uidvalidity, 0);
	assert_int_equal(r.nskips, 0);
	rec_free(&r);
}

/* mboxrd (one more '>' on every ^>*From ) and mboxo (only ^From ): both
 * unquoted by stripping one '>' from ^>+From . */
static void test_unquote(void **state)
{
	(void)state;
	struct rec r;
	run_ok(&r, "From a Mon Jan  1 10:00:00 2024\n"
		   "Subject: q\n\n"
		   ">From the start\n"
		   ">>From a quoted reply\n"
		   ">>>From deeper\n"
		   "> From not a From_ quote\n"
		   ">Fromage\n"
		   "x >From mid-line\n"
		   "\n");
	assert_int_equal(r.nmsgs, 1);
	assert_string_equal(r.msgs[0].data, "Subject: q\n\n"
					    "From the start\n"
					    ">From a quoted reply\n"
					    ">>From deeper\n"
					    "> From not a From_ quote\n"
					    ">Fromage\n"
					    "x >From mid-line\n");
	rec_free(&r);
}

/* "From " in a body: not after an empty line, or without a date, it is text;
 * quoted, it is unquoted; only a dated From_ line after an empty line splits. */
static void test_from_in_body(void **state)
{
	(void)state;
	struct rec r;
	run_ok(&r, "From a Mon Jan  1 10:00:00 2024\n"
		   "Subject: body froms\n\n"
		   "text\n"
		   "From here on, not after an empty line\n"
		   "\n"
		   "From here on, after an empty line but without a date\n"
		   "\n"
		   ">From Mon Jan  1 10:00:00 2024 quoted\n"
		   "\n"
		   "From b Tue Jan  2 10:00:00 2024\n"
		   "Subject: next\n\nx\n");
	assert_int_equal(r.nmsgs, 2);
	assert_string_equal(r.msgs[0].data, "Subject: body froms\n\n"
					    "text\n"
					    "From here on, not after an empty line\n"
					    "\n"
					    "From here on, after an empty line but without a date\n"
					    "\n"
					    "From Mon Jan  1 10:00:00 2024 quoted\n");
	assert_string_equal(r.msgs[1].data, "Subject: next\n\nx\n");
	rec_free(&r);
}

/* Solaris/SysV: Content-Length is trusted when it points at the end of the
 * file or an empty line and "From "; the body is then taken verbatim. */
static void test_content_length(void **state)
{
	(void)state;
	struct rec r;
	const char *body = "a\n\nFrom x Mon Jan  1 10:00:00 2024\nnot a message\n";
	char text[1024];
	snprintf(text, sizeof(text),
		 "From a Mon Jan  1 10:00:00 2024\n"
		 "Subject: counted\nContent-Length: %zu\nX-Other: y\n\n%s\n"
		 "From b Mon Jan  1 11:00:00 2024\n"
		 "Subject: last\nContent-Length: 38\n\nend\n\nFrom y Mon Jan  1 12:00:00 2024\nz",
		 strlen(body), body);
	run_ok(&r, text);
	assert_int_equal(r.nmsgs, 2);
	char want[512];
	snprintf(want, sizeof(want), "Subject: counted\nX-Other: y\n\n%s", body);
	assert_string_equal(r.msgs[0].data, want);
	assert_string_equal(r.msgs[1].data,
			    "Subject: last\n\nend\n\nFrom y Mon Jan  1 12:00:00 2024\nz");
	rec_free(&r);

	/* as Dovecot 2.3 appends: a dated From_ line in the body, unquoted,
	 * Content-Length over it, and the mbox's last empty line after it */
	run_ok(&r, "From alice@vm  Tue Dec 08 01:55:52 2026\n"
		   "Subject: app\nX-UID: 4\nStatus: O\n"
		   "X-Keywords:                                        \n"
		   "Content-Length: 50\n\n"
		   "x\n\nFrom appended Mon Jan  1 10:00:00 2024\n>From q\n\n");
	assert_int_equal(r.nmsgs, 1);
	assert_string_equal(r.msgs[0].data,
			    "Subject: app\n\n"
			    "x\n\nFrom appended Mon Jan  1 10:00:00 2024\n>From q\n");
	assert_int_equal(r.msgs[0].m.internaldate, utc(2026, 12, 8, 1, 55, 52));
	rec_free(&r);

	/* a stale length (the message was edited): From_ splitting instead */
	run_ok(&r, "From a Mon Jan  1 10:00:00 2024\n"
		   "Subject: stale\nContent-Length: 5\n\n"
		   "longer than five\n\n"
		   "From b Mon Jan  1 11:00:00 2024\n"
		   "Subject: b\nContent-Length: 999\n\nb\n");
	assert_int_equal(r.nmsgs, 2);
	assert_string_equal(r.msgs[0].data, "Subject: stale\n\nlonger than five\n");
	assert_string_equal(r.msgs[1].data, "Subject: b\n\nb\n");
	rec_free(&r);
}

/* Status, X-Status, X-Keywords as UW-IMAP and Dovecot write them: read into
 * flags and keywords, removed from the bytes (with their continuations). */
static void test_status_headers(void **state)
{
	(void)state;
	struct rec r;
	run_ok(&r, "From a Mon Jan  1 10:00:00 2024\n"
		   "Subject: flagged\n"
		   "Status: RO\n"
		   "X-Status: AFT\n"
		   "X-Keywords: $Forwarded, Junk work\n"
		   "\tlater\n"
		   "X-Mailer: kept\n\n"
		   "b\n\n"
		   "From b Mon Jan  1 11:00:00 2024\n"
		   "status: O\n"
		   "X-STATUS: D\n"
		   "Subject: unseen\n\nStatus: R in the body is text\n\n"
		   "From c Mon Jan  1 12:00:00 2024\n"
		   "Subject: bad keywords\n"
		   "X-Keywords: \\Seen ok (bad) ok\n\nc\n");
	assert_int_equal(r.nmsgs, 3);
	assert_int_equal(r.msgs[0].m.flags,
			 STORE_F_SEEN | STORE_F_ANSWERED | STORE_F_FLAGGED | STORE_F_DRAFT);
	assert_string_equal(r.msgs[0].kw, "$Forwarded Junk work later");
	assert_string_equal(r.msgs[0].data, "Subject: flagged\nX-Mailer: kept\n\nb\n");
	assert_int_equal(r.msgs[1].m.flags, STORE_F_DELETED);
	assert_int_equal(r.msgs[1].m.nkeywords, 0);
	assert_string_equal(r.msgs[1].data, "Subject: unseen\n\nStatus: R in the body is text\n");
	assert_string_equal(r.msgs[2].kw, "ok");
	rec_free(&r);
}

/* UW-IMAP without its pseudo message: X-IMAPbase in the first message. */
static void test_ximapbase(void **state)
{
	(void)state;
	struct rec r;
	run_ok(&r, "From a Mon Jan  1 10:00:00 2024\n"
		   "X-IMAPbase: 1700000000 0000000010 Junk NonJunk\n"
		   "Status: RO\nX-UID: 3\n"
		   "Subject: a\n\na\n\n"
		   "From b Mon Jan  1 10:00:00 2024\n"
		   "Subject: b\nX-UID: 7\n\nb\n\n"
		   "From c Mon Jan  1 10:00:00 2024\n"
		   "Subject: c, UID not above the last\nX-UID: 7\n\nc\n\n"
		   "From d Mon Jan  1 10:00:00 2024\n"
		   "Subject: d, above UIDLAST\nX-UID: 11\n\nd\n\n"
		   "From e Mon Jan  1 10:00:00 2024\n"
		   "Subject: e, delivered since\n\ne\n\n"
		   "From f Mon Jan  1 10:00:00 2024\n"
		   "Subject: f\nX-UID: 9\n\nf\n");
	assert_int_equal(r.folders[0].uidvalidity, 1700000000u);
	assert_int_equal(r.folders[0].uidnext, 11);
	assert_int_equal(r.nmsgs, 6);
	/* as UW-IMAP numbers them: X-UIDs kept while they rise and are at most
	 * UIDLAST; the others get UIDLAST + 1, + 2... in file order (f's 9 is
	 * below the 13 before it) */
	uint32_t want[] = {3, 7, 11, 12, 13, 14};
	for (int i = 0; i < 6; i++)
		assert_int_equal(r.msgs[i].m.uid, want[i]);
	assert_string_equal(r.msgs[0].data, "Subject: a\n\na\n");
	assert_int_equal(r.msgs[0].m.flags, STORE_F_SEEN);
	rec_free(&r);

	/* X-UID without a UIDVALIDITY means nothing */
	run_ok(&r, "From a Mon Jan  1 10:00:00 2024\nX-UID: 3\nSubject: a\n\na\n");
	assert_int_equal(r.folders[0].uidvalidity, 0);
	assert_int_equal(r.msgs[0].m.uid, 0);
	assert_string_equal(r.msgs[0].data, "Subject: a\n\na\n");
	rec_free(&r);
}

/* UW-IMAP's pseudo message holds X-IMAP and is not imported; a re-run skips
 * the UIDs the folder has without reading them. */
static void test_pseudo_and_rerun(void **state)
{
	(void)state;
	struct rec r;
	const char *uw =
		"From MAILER-DAEMON Mon Jan  1 09:00:00 2024\n"
		"Date: Mon, 1 Jan 2024 09:00:00 +0000\n"
		"From: Mail System Internal Data <MAILER-DAEMON@host>\n"
		"Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\n"
		"Message-ID: <1704099600@host>\n"
		"X-IMAP: 1704099600 0000000002 $Label1\n"
		"Status: RO\n\n"
		"This text is part of the internal format of your mail folder, and is not\n"
		"a real message.  It is created automatically by the mail system software.\n"
		"If deleted, important folder data will be lost, and it will be re-created\n"
		"with the data reset to initial values.\n\n"
		"From alice Mon Jan  1 10:00:00 2024\n"
		"Subject: one\nStatus: O\nX-UID: 1\n\none\n\n"
		"From bob Mon Jan  1 11:00:00 2024\n"
		"Subject: two\nStatus: RO\nX-Status: A\nX-Keywords: $Label1\nX-UID: 2\n\ntwo\n\n";
	run_ok(&r, uw);
	assert_int_equal(r.folders[0].uidvalidity, 1704099600u);
	assert_int_equal(r.folders[0].uidnext, 3);
	assert_int_equal(r.nmsgs, 2);
	assert_string_equal(r.msgs[0].data, "Subject: one\n\none\n");
	assert_int_equal(r.msgs[0].m.uid, 1);
	assert_int_equal(r.msgs[0].m.flags, 0);
	assert_int_equal(r.msgs[1].m.uid, 2);
	assert_int_equal(r.msgs[1].m.flags, STORE_F_SEEN | STORE_F_ANSWERED);
	assert_string_equal(r.msgs[1].kw, "$Label1");
	assert_int_equal(r.nskips, 0);
	rec_free(&r);

	/* the second run: the sink already has UID 1 */
	struct error err;
	memset(&r, 0, sizeof(r));
	write_file("mbox", uw, strlen(uw));
	r.has[r.nhas++] = 1;
	struct import_sink s = sink_for(&r);
	char path[256];
	snprintf(path, sizeof(path), "%s/mbox", tmpdir);
	assert_int_equal(import_mbox(path, &s, &err), 0);
	assert_int_equal(r.nmsgs, 1);
	assert_int_equal(r.msgs[0].m.uid, 2);
	assert_string_equal(r.msgs[0].data, "Subject: two\n\ntwo\n");
	assert_int_equal(r.has_calls, 2);
	rec_free(&r);
}

/* From_ line dates: asctime with or without seconds, with a numeric or
 * named zone before or after the year; UTC without one; -1 when unparsable. */
static void test_from_dates(void **state)
{
	(void)state;
	struct rec r;
	run_ok(&r, "From a@b Sat Mar  2 04:05:06 2024\nS: 1\n\n"
		   "From a@b Sat Mar  2 04:05:06 2024 +0100\nS: 2\n\n"
		   "From a@b Sat Mar  2 04:05:06 -0530 2024\nS: 3\n\n"
		   "From a@b Sat Mar  2 04:05:06 PST 2024\nS: 4\n\n"
		   "From a@b Sat Mar  2 04:05 2024\nS: 5\n\n"
		   "From \"quoted sender\"@b Sat Mar  2 04:05:06 2024 remote from uucp\nS: 6\n\n"
		   "From a@b  sat mar 2 04:05:06 2024\r\nS: 7\n\n");
	int64_t base = utc(2024, 3, 2, 4, 5, 6);
	int64_t want[] = {base, base - 3600, base + 5 * 3600 + 1800, base + 8 * 3600, base - 6,
			  base, base};
	assert_int_equal(r.nmsgs, 7);
	for (int i = 0; i < 7; i++)
		assert_int_equal(r.msgs[i].m.internaldate, want[i]);
	rec_free(&r);

	/* the first From_ line need not carry a date; later ones must to split */
	run_ok(&r, "From nobody\nS: 1\n\nFrom somebody yesterday\nS: 2\n");
	assert_int_equal(r.nmsgs, 1);
	assert_int_equal(r.msgs[0].m.internaldate, -1);
	assert_string_equal(r.msgs[0].data, "S: 1\n\nFrom somebody yesterday\nS: 2\n");
	rec_free(&r);
}

/* A CRLF mbox: the bytes pass with their CRLF, "\r\n" is an empty line. */
static void test_crlf(void **state)
{
	(void)state;
	struct rec r;
	run_ok(&r, "From a Mon Jan  1 10:00:00 2024\r\n"
		   "Subject: crlf\r\nStatus: R\r\n\r\n"
		   "line\r\n\r\n>From quoted\r\n\r\n"
		   "From b Mon Jan  1 10:00:00 2024\r\n"
		   "Subject: two\r\nContent-Length: 4\r\n\r\ntwo\n\r\n"
		   "From c Mon Jan  1 10:00:00 2024\r\n"
		   "Subject: three\r\n\r\nthree\r\n\r\n");
	assert_int_equal(r.nmsgs, 3);
	assert_string_equal(r.msgs[0].data, "Subject: crlf\r\n\r\nline\r\n\r\nFrom quoted\r\n");
	assert_int_equal(r.msgs[0].m.flags, STORE_F_SEEN);
	assert_string_equal(r.msgs[1].data, "Subject: two\r\n\r\ntwo\n");
	assert_string_equal(r.msgs[2].data, "Subject: three\r\n\r\nthree\r\n");
	rec_free(&r);
}

/* Not an mbox: -1 with ERR_DATA, nothing given to the sink; an empty file
 * is an empty INBOX; a message cut inside its header is imported; one
 * with nothing in it is reported. */
static void test_not_mbox_and_cut(void **state)
{
	(void)state;
	struct rec r;
	struct error err = {0};
	assert_int_equal(
		run_text(&r, "Return-Path: <a@b>\nFrom a Mon Jan  1 10:00:00 2024\n", &err), -1);
	assert_int_equal(err.code, ERR_DATA);
	assert_int_equal(r.nfolders, 0);

	run_ok(&r, "");
	assert_int_equal(r.nmsgs, 0);

	const char *first = "From a Mon Jan  1 10:00:00 2024\nSubject: ok\n\nok\n\n";
	char text[256], why[64];
	snprintf(text, sizeof(text),
		 "%sFrom b Mon Jan  1 10:00:00 2024\n\n"
		 "From c Mon Jan  1 10:00:00 2024\nSubject: cut\nX-Trunc",
		 first);
	run_ok(&r, text);
	assert_int_equal(r.nmsgs, 2);
	assert_string_equal(r.msgs[1].data, "Subject: cut\nX-Trunc");
	assert_int_equal(r.nskips, 1);
	snprintf(why, sizeof(why), "mbox offset %zu: empty message", strlen(first));
	assert_string_equal(r.skips[0], why);
	rec_free(&r);
}

/* Lines longer than the reader's buffer, in the header and the body, and
 * "From " / ">From " at the start of a line's continuation piece. */
static void test_long_lines(void **state)
{
	(void)state;
	size_t n = 200000;
	char *text = malloc(3 * n + 1000), *want = malloc(3 * n + 1000);
	assert_non_null(text);
	assert_non_null(want);
	char *t = text, *w = want;
	t += sprintf(t, "From a Mon Jan  1 10:00:00 2024\nX-Long: ");
	w += sprintf(w, "X-Long: ");
	for (size_t i = 0; i < n; i++)
		*t++ = *w++ = "From >x"[i % 7];
	t += sprintf(t, "\nStatus: R\n\n");
	w += sprintf(w, "\n\n");
	/* only the line's first piece is unquoted */
	for (size_t i = 0; i < n; i++) {
		*t++ = ">From "[i % 6];
		if (i > 0)
			*w++ = ">From "[i % 6];
	}
	t += sprintf(t, "\n\nFrom b Mon Jan  1 10:00:00 2024\nSubject: b\n\nb\n");
	w += sprintf(w, "\n");
	*t = *w = '\0';
	struct rec r;
	run_ok(&r, text);
	assert_int_equal(r.nmsgs, 2);
	assert_int_equal(r.msgs[0].len, strlen(want));
	assert_memory_equal(r.msgs[0].data, want, strlen(want));
	assert_int_equal(r.msgs[0].m.flags, STORE_F_SEEN);
	assert_string_equal(r.msgs[1].data, "Subject: b\n\nb\n");
	rec_free(&r);
	free(text);
	free(want);
}

/* A 64 MiB message goes through in chunks of a fixed size. */
static void test_huge(void **state)
{
	(void)state;
	char path[256];
	snprintf(path, sizeof(path), "%s/huge", tmpdir);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	const char *hdr = "Subject: huge\n\n";
	fprintf(f, "From a Mon Jan  1 10:00:00 2024\nX-UID: 5\n%s", hdr);
	uint64_t h = fnv(FNV0, hdr, strlen(hdr));
	size_t total = strlen(hdr);
	char line[128];
	for (int i = 0; total < 64u * 1024 * 1024; i++) {
		int n = snprintf(line, sizeof(line), "%s line %d of a big attachment, base64ish\n",
				 i % 1000 == 0 ? ">From" : "xxxx", i);
		fputs(line, f);
		const char *out = line[0] == '>' ? line + 1 : line;
		h = fnv(h, out, strlen(out));
		total += strlen(out);
		(void)n;
	}
	fputs("\nFrom b Mon Jan  1 10:00:00 2024\nSubject: after\n\nx\n", f);
	assert_int_equal(fclose(f), 0);
	struct rec r;
	memset(&r, 0, sizeof(r));
	struct import_sink s = sink_for(&r);
	struct error err;
	assert_int_equal(import_mbox(path, &s, &err), 0);
	assert_int_equal(r.nmsgs, 2);
	assert_int_equal(r.msgs[0].len, total);
	assert_true(r.msgs[0].hash == h);
	assert_true(r.max_chunk <= 65536);
	assert_string_equal(r.msgs[1].data, "Subject: after\n\nx\n");
	rec_free(&r);
}

/* A folder of mbox files: one folder each, named by the relative path. */
static void test_folder(void **state)
{
	(void)state;
	char path[256];
	const char *one = "From a Mon Jan  1 10:00:00 2024\nSubject: x\n\nx\n";
	snprintf(path, sizeof(path), "%s/mail", tmpdir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/mail/Work", tmpdir);
	assert_int_equal(mkdir(path, 0700), 0);
	write_file("mail/inbox", one, strlen(one));
	write_file("mail/Work/2024", one, strlen(one));
	write_file("mail/Work/Old", "", 0);
	write_file("mail/Entw&APw-rfe", one, strlen(one));
	write_file("mail/R&D", one, strlen(one));
	write_file("mail/notes.txt", "just text\n", 10);
	write_file("mail/sent.lock", "", 0);
	write_file("mail/.imap", "x", 1); /* Dovecot's index: not reported */
	write_file("mail/.hidden", "x", 1);
	write_file("mail/.mailboxlist", "Work/2024\nEntw&APw-rfe\ninbox\n", 29);
	snprintf(path, sizeof(path), "%s/mail/Link", tmpdir);
	assert_int_equal(symlink("inbox", path), 0);

	struct rec r;
	memset(&r, 0, sizeof(r));
	struct import_sink s = sink_for(&r);
	struct error err;
	snprintf(path, sizeof(path), "%s/mail", tmpdir);
	assert_int_equal(import_mbox(path, &s, &err), 0);
	assert_int_equal(r.nfolders, 5);
	assert_string_equal(r.folders[0].name, "Entwürfe");
	assert_string_equal(r.folders[1].name, "R&D");
	assert_string_equal(r.folders[2].name, "Work/2024");
	assert_string_equal(r.folders[3].name, "Work/Old");
	assert_string_equal(r.folders[4].name, "INBOX");
	assert_int_equal(r.nmsgs, 4);
	assert_int_equal(r.msgs[3].folder, 4);
	assert_string_equal(r.msgs[2].id, "Work/2024 offset 0");
	assert_int_equal(r.nsubs, 3);
	assert_string_equal(r.subs[0], "Work/2024");
	assert_string_equal(r.subs[1], "Entwürfe");
	assert_string_equal(r.subs[2], "INBOX");
	/* .hidden, Link, notes.txt, sent.lock */
	assert_int_equal(r.nskips, 4);
	rec_free(&r);

	/* Dovecot 2.3's .subscriptions (version 2: levels separated by tabs) */
	assert_int_equal(unlink(strcat(strcpy(path, tmpdir), "/mail/.mailboxlist")), 0);
	write_file("mail/.subscriptions", "V\t2\n\nWork\t2024\nINBOX\n", 21);
	memset(&r, 0, sizeof(r));
	snprintf(path, sizeof(path), "%s/mail", tmpdir);
	assert_int_equal(import_mbox(path, &s, &err), 0);
	assert_int_equal(r.nsubs, 2);
	assert_string_equal(r.subs[0], "Work/2024");
	assert_string_equal(r.subs[1], "INBOX");
	rec_free(&r);

	struct error e2;
	assert_int_equal(import_mbox("/nonexistent/mbox", &s, &e2), -1);
	assert_int_equal(e2.code, ERR_NOTFOUND);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_split, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unquote, setup, teardown),
		cmocka_unit_test_setup_teardown(test_from_in_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_content_length, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_headers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ximapbase, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pseudo_and_rerun, setup, teardown),
		cmocka_unit_test_setup_teardown(test_from_dates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crlf, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_mbox_and_cut, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_huge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_folder, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
