/*
 * test_objectid.c: the pieces of OBJECTID, SAVEDATE and PREVIEW below the
 * IMAP layer: the save date field of a message file name (store_fname.c)
 * and the preview text (mime_preview.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "mime/mime.h"
#include "store/store_int.h"

static void test_fname_savedate(void **state)
{
	(void)state;
	struct store_fname f;
	char out[512];
	assert_int_equal(store_fname_parse("1.M2P3Q4.host,A=1765161234,S=10,U=5:2,RS", &f), 0);
	assert_string_equal(f.base, "1.M2P3Q4.host");
	assert_int_equal(f.savedate, 1765161234);
	assert_int_equal(f.size, 10);
	assert_int_equal(f.uid, 5);
	assert_int_equal(f.flags, STORE_F_ANSWERED | STORE_F_SEEN);
	/* round trip, A= before S= (an older parser then still finds S= and U=) */
	assert_int_equal(store_fname_build(&f, out, sizeof(out)), 0);
	assert_string_equal(out, "1.M2P3Q4.host,A=1765161234,S=10,U=5:2,RS");
	/* a name from before the save date: none, same base */
	assert_int_equal(store_fname_parse("1.M2P3Q4.host,S=10,U=5:2,", &f), 0);
	assert_int_equal(f.savedate, 0);
	assert_string_equal(f.base, "1.M2P3Q4.host");
	assert_int_equal(store_fname_build(&f, out, sizeof(out)), 0);
	assert_string_equal(out, "1.M2P3Q4.host,S=10,U=5:2,");
	/* not a number: stays in the base, as other programs' fields do */
	assert_int_equal(store_fname_parse("b,A=x,S=10,U=5:2,", &f), 0);
	assert_string_equal(f.base, "b,A=x");
	assert_int_equal(f.savedate, 0);
	/* any order */
	assert_int_equal(store_fname_parse("b,U=7,A=99,S=3:2,", &f), 0);
	assert_string_equal(f.base, "b");
	assert_int_equal(f.savedate, 99);
	assert_int_equal(f.uid, 7);
}

/* The preview of a whole message in memory. */
static char *preview(const char *msg)
{
	struct mime_tree *tree = NULL;
	struct error err;
	char *out = NULL;
	size_t len = 0;
	assert_int_equal(mime_parse_buffer(msg, strlen(msg), &tree, &err), 0);
	struct mime_mem_source mem = { msg, strlen(msg) };
	struct mime_source src = { mime_source_mem_pread, &mem };
	assert_int_equal(mime_preview(tree, &src, &out, &len), 0);
	assert_int_equal(strlen(out), len);
	mime_tree_free(&tree);
	return out;
}

static void expect(const char *msg, const char *want)
{
	char *got = preview(msg);
	assert_string_equal(got, want);
	free(got);
}

static void test_preview_parts(void **state)
{
	(void)state;
	expect("Subject: x\r\n\r\n  one\r\n\r\n two\t three  \r\n", "one two three");
	expect("Subject: x\r\n\r\n", "");
	expect("Subject: x\r\n", "");
	/* an attached message is another message: not this one's preview */
	expect("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
	       "Content-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\ninner text\r\n"
	       "--b\r\nContent-Type: text/plain\r\n\r\nouter text\r\n--b--\r\n",
	       "outer text");
	/* nested: the first text part depth first, plain preferred in alternative */
	expect("Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n"
	       "Content-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\n"
	       "Content-Type: text/html\r\n\r\n<b>html</b>\r\n--i\r\n"
	       "Content-Type: text/plain\r\n\r\nplain\r\n--i--\r\n--o\r\n"
	       "Content-Type: text/plain\r\n\r\nlater\r\n--o--\r\n",
	       "plain");
	/* html: head, style, script and comments out; entities in; tags are spaces */
	expect("Content-Type: text/html\r\n\r\n<html><head><title>t</title></head><body>"
	       "a<br>b&lt;c&gt; &quot;d&quot; &#65;&#x42; &bogus; <!-- x -->e<style>s</style>f"
	       "<SCRIPT type=x>y</SCRIPT>g</body></html>",
	       "a b<c> \"d\" AB &bogus; e f g");
	/* a charset iconv does not know: taken as UTF-8, invalid bytes replaced */
	expect("Content-Type: text/plain; charset=x-unknown\r\n\r\nok \xff\r\n", "ok \xef\xbf\xbd");
	/* windows-1252 through iconv */
	expect("Content-Type: text/plain; charset=windows-1252\r\n\r\n\x93q\x94\r\n",
	       "\xe2\x80\x9cq\xe2\x80\x9d");
}

static void test_preview_limit(void **state)
{
	(void)state;
	/* 300 three-byte characters: 256 of them, no cut sequence */
	char msg[2000] = "Content-Type: text/plain; charset=utf-8\r\n\r\n";
	for (int i = 0; i < 300; i++)
		strcat(msg, "\xe2\x82\xac");
	char *got = preview(msg);
	assert_int_equal(strlen(got), 256 * 3);
	free(got);
	/* the 256th character would be a space: cut before it */
	char m2[2000] = "Subject: x\r\n\r\n";
	for (int i = 0; i < 255; i++)
		strcat(m2, "a");
	strcat(m2, "   b c\r\n");
	got = preview(m2);
	assert_int_equal(strlen(got), 255);
	assert_int_equal(got[254], 'a');
	free(got);
	/* a body past the read limit: the start still makes the preview */
	size_t big = 200 * 1024;
	char *m3 = malloc(big + 64);
	assert_non_null(m3);
	strcpy(m3, "Content-Type: text/html\r\n\r\n<style>");
	size_t o = strlen(m3);
	memset(m3 + o, 'x', big);
	strcpy(m3 + o + big, "</style>late");
	got = preview(m3);
	assert_string_equal(got, ""); /* the text begins after 64 KiB: not read */
	free(got);
	free(m3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fname_savedate),
		cmocka_unit_test(test_preview_parts),
		cmocka_unit_test(test_preview_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
