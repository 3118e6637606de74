/*
 * test_passwd.c: DATA/passwd lines, hashing and verification. The hashes of
 * "correct horse" below were made by other tools (openssl passwd, Python's
 * crypt) as an admin would bring them from another server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/passwd.h"

static const char *const foreign[] = {
	"{SHA512-CRYPT}$6$saltsalt$hRM5XZ86KXEw9UOmjigeVqFgULtFB2sgpC9lXQDfMib3Zgw7mEiUvBJI2EplzfAqxL5Vvwp2scFtv/uamSo5z0",
	"{SHA256-CRYPT}$5$saltsalt$myjXcpMpE2Ofk7fj9hqyNYSn6lmWG4Mqnjx.KIRRr4/",
	"{MD5-CRYPT}$1$saltsalt$NuzA7WTAelpl95xgBGWN60",
	"{BLF-CRYPT}$2b$05$abcdefghijklmnopqrstuuHNbAKRhpaujgo33bRWs.NLUTJO3lOy2",
	/* no scheme: a bare crypt(3) hash, as in /etc/shadow-style files */
	"$6$saltsalt$hRM5XZ86KXEw9UOmjigeVqFgULtFB2sgpC9lXQDfMib3Zgw7mEiUvBJI2EplzfAqxL5Vvwp2scFtv/uamSo5z0",
	NULL,
};

static void test_foreign_hashes(void **state)
{
	(void)state;
	for (int i = 0; foreign[i] != NULL; i++) {
		assert_int_equal(passwd_verify(foreign[i], "correct horse", 0), 1);
		assert_int_equal(passwd_verify(foreign[i], "correct horsE", 0), 0);
		assert_int_equal(passwd_verify(foreign[i], "", 0), 0);
	}
}

static void test_new_hashes(void **state)
{
	(void)state;
	const char *schemes[] = { "YESCRYPT", "SHA512-CRYPT", "SHA256-CRYPT", "BLF-CRYPT" };
	const char *prefix[] = { "{YESCRYPT}$y$", "{SHA512-CRYPT}$6$", "{SHA256-CRYPT}$5$",
				 "{BLF-CRYPT}$2b$" };
	for (int i = 0; i < 4; i++) {
		char *h = NULL, *h2 = NULL;
		struct error why;
		assert_int_equal(passwd_hash("s3cret pass", schemes[i], &h, &why), 0);
		assert_int_equal(strncmp(h, prefix[i], strlen(prefix[i])), 0);
		assert_int_equal(passwd_verify(h, "s3cret pass", 0), 1);
		assert_int_equal(passwd_verify(h, "s3cret pasS", 0), 0);
		/* salted: the same password hashes differently each time */
		assert_int_equal(passwd_hash("s3cret pass", schemes[i], &h2, &why), 0);
		assert_string_not_equal(h, h2);
		free(h);
		free(h2);
	}
	char *h;
	struct error why;
	assert_int_equal(passwd_hash("x", "ROT13", &h, &why), -1);
}

static void test_plain_and_unknown(void **state)
{
	(void)state;
	assert_int_equal(passwd_verify("{PLAIN}hunter2", "hunter2", 0), -1); /* not allowed */
	assert_int_equal(passwd_verify("{PLAIN}hunter2", "hunter2", 1), 1);
	assert_int_equal(passwd_verify("{PLAIN}hunter2", "hunter", 1), 0);
	assert_int_equal(passwd_verify("{NTLM}abc", "x", 1), -1);
	assert_int_equal(passwd_verify("{SHA512-CRYPT", "x", 1), -1);
	assert_int_equal(passwd_verify("{CRYPT}", "", 1), -1);
	assert_int_equal(passwd_verify("{CRYPT}*", "x", 1), 0);
}

static void test_line_parse(void **state)
{
	(void)state;
	struct passwd_entry e;
	struct error why;
	const char *line = "alice:{SHA512-CRYPT}$6$x$y:1000:1000::/home/alice::userdb_quota_rule=*:bytes=1G\n";
	assert_int_equal(passwd_line_parse(line, strlen(line), &e, &why), 0);
	assert_string_equal(e.user, "alice");
	assert_string_equal(e.hash, "{SHA512-CRYPT}$6$x$y");
	assert_string_equal(e.rest, "1000:1000::/home/alice::userdb_quota_rule=*:bytes=1G");
	assert_int_equal(passwd_line_parse("bob:pw", 6, &e, &why), 0);
	assert_string_equal(e.rest, "");
	assert_int_equal(passwd_line_parse("# comment", 9, &e, &why), -1);
	assert_int_equal(why.code, ERR_NOTFOUND);
	assert_int_equal(passwd_line_parse("", 0, &e, &why), -1);
	assert_int_equal(passwd_line_parse("nocolon", 7, &e, &why), -1);
	assert_int_equal(why.code, ERR_INVALID);
	assert_int_equal(passwd_line_parse(":pw", 3, &e, &why), -1);
	assert_int_equal(passwd_line_parse("a\0b:pw", 6, &e, &why), -1);
	char big[PASSWD_MAX_LINE * 2];
	memset(big, 'a', sizeof(big));
	assert_int_equal(passwd_line_parse(big, sizeof(big), &e, &why), -1);
}

static void test_file_update(void **state)
{
	(void)state;
	char dir[] = "/tmp/mailroom-pw-XXXXXX";
	char path[64];
	struct passwd_entry e;
	struct error why;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/passwd", dir);
	FILE *f = fopen(path, "w");
	fputs("# users\ncarol:{PLAIN}x:::::: \n", f);
	fclose(f);
	assert_int_equal(passwd_file_update(path, PASSWD_ADD, "dave", "{PLAIN}d", &why), 0);
	assert_int_equal(passwd_file_update(path, PASSWD_ADD, "dave", "{PLAIN}d", &why), -1);
	assert_int_equal(why.code, ERR_EXISTS);
	assert_int_equal(passwd_file_update(path, PASSWD_REPLACE, "carol", "{PLAIN}y", &why), 0);
	assert_int_equal(passwd_file_update(path, PASSWD_REPLACE, "nobody", "{PLAIN}y", &why), -1);
	assert_int_equal(why.code, ERR_NOUSER);
	assert_int_equal(passwd_file_lookup(path, "carol", &e), 1);
	assert_string_equal(e.hash, "{PLAIN}y");
	assert_string_equal(e.rest, "::::: "); /* the other fields kept as they were */
	assert_int_equal(passwd_file_update(path, PASSWD_DELETE, "carol", NULL, &why), 0);
	assert_int_equal(passwd_file_lookup(path, "carol", &e), 0);
	assert_int_equal(passwd_file_lookup(path, "dave", &e), 1);
	f = fopen(path, "r");
	char first[64];
	assert_non_null(fgets(first, sizeof(first), f));
	fclose(f);
	assert_string_equal(first, "# users\n"); /* comments survive */
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* passwd_file_lookup as `mailroom deliver` uses it: garbage lines skipped,
 * the first line of a name wins, no file is no user (0), and a file that
 * cannot be read -- a directory, a symbolic link (the server refuses them
 * too) -- is -1, never "no such user". */
static void test_file_lookup_cases(void **state)
{
	(void)state;
	char dir[] = "/tmp/test_passwd_lookup.XXXXXX", path[128], link_path[128];
	struct passwd_entry e;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/passwd", dir);
	snprintf(link_path, sizeof(link_path), "%s/link", dir);
	assert_int_equal(passwd_file_lookup(path, "alice", &e), 0); /* no file */
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("garbage\n\x01\x02\n:x\nalice:{PLAIN}first\nalice:{PLAIN}second\nbob:{PLAIN}b", f);
	fclose(f);
	assert_int_equal(passwd_file_lookup(path, "alice", &e), 1);
	assert_string_equal(e.hash, "{PLAIN}first");
	assert_int_equal(passwd_file_lookup(path, "bob", &e), 1); /* no final newline */
	assert_int_equal(passwd_file_lookup(path, "garbage", &e), 0);
	assert_int_equal(symlink(path, link_path), 0);
	errno = 0;
	assert_int_equal(passwd_file_lookup(link_path, "alice", &e), -1);
	assert_int_equal(errno, ELOOP);
	unlink(link_path);
	assert_int_equal(mkdir(link_path, 0700), 0);
	assert_int_equal(passwd_file_lookup(link_path, "alice", &e), -1);
	rmdir(link_path);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_foreign_hashes),
		cmocka_unit_test(test_new_hashes),
		cmocka_unit_test(test_plain_and_unknown),
		cmocka_unit_test(test_line_parse),
		cmocka_unit_test(test_file_update),
		cmocka_unit_test(test_file_lookup_cases),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
