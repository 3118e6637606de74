/*
 * test_lib.c: src/lib: number parsing, buffers, the config reader, and
 * fsx's containment and fault injection.
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

#include "lib/buf.h"
#include "lib/civil.h"
#include "lib/config.h"
#include "lib/fsx.h"
#include "lib/strnum.h"

static void test_strnum(void **state)
{
	(void)state;
	uint64_t v;
	assert_int_equal(strnum_u64z("0", 10, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(strnum_u64z("18446744073709551615", UINT64_MAX, &v), 0);
	assert_int_equal(v, UINT64_MAX);
	assert_int_equal(strnum_u64z("18446744073709551616", UINT64_MAX, &v), -1);
	assert_int_equal(strnum_u64z("4294967296", UINT32_MAX, &v), -1);
	assert_int_equal(strnum_u64z("-1", UINT64_MAX, &v), -1);
	assert_int_equal(strnum_u64z("+1", UINT64_MAX, &v), -1);
	assert_int_equal(strnum_u64z(" 1", UINT64_MAX, &v), -1);
	assert_int_equal(strnum_u64z("", UINT64_MAX, &v), -1);
	assert_int_equal(strnum_u64z("12a", UINT64_MAX, &v), -1);
	assert_int_equal(strnum_size("64M", &v), 0);
	assert_int_equal(v, 64u << 20);
	assert_int_equal(strnum_size("2k", &v), 0);
	assert_int_equal(v, 2048);
	assert_int_equal(strnum_size("99999999999T", &v), -1);
	assert_int_equal(strnum_size("M", &v), -1);
}

static void test_buf(void **state)
{
	(void)state;
	struct buf b = BUF_INIT;
	assert_string_equal(buf_cstr(&b), "");
	for (int i = 0; i < 1000; i++)
		buf_printf(&b, "%d,", i);
	assert_int_equal(b.len, strlen(b.data));
	assert_memory_equal(b.data, "0,1,2,", 6);
	buf_truncate(&b, 2);
	buf_putc(&b, 'x');
	assert_string_equal(buf_cstr(&b), "0,x");
	char *s = buf_steal(&b);
	assert_string_equal(s, "0,x");
	assert_int_equal(b.len, 0);
	free(s);
	buf_free(&b);
}

static char *tmpdir(void)
{
	char *d = strdup("/tmp/mailroom-lib-XXXXXX");
	assert_non_null(mkdtemp(d));
	return d;
}

static void write_conf(const char *dir, const char *text)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/mailroom.conf", dir);
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
}

static void test_config(void **state)
{
	(void)state;
	char *d = tmpdir();
	struct config *c = NULL;
	struct error err;
	/* No file: defaults. */
	assert_int_equal(config_load(d, NULL, 0, &c, &err), 0);
	assert_int_equal(config_uint(c, "quota_bytes"), 0);
	assert_string_equal(config_str(c, "imap_listen"), "127.0.0.1:1143");
	config_free(&c);
	write_conf(d, "# comment\n\nquota_bytes = 10M\n  quota_full_tempfail=yes  \n"
		      "imap_listen = 127.0.0.1:143, [::1]:143, unix:/run/imap.sock\n");
	char *ov[] = { "quota_messages=5", "imap_listen=" };
	assert_int_equal(config_load(d, ov, 2, &c, &err), 0);
	assert_int_equal(config_uint(c, "quota_bytes"), 10u << 20);
	assert_int_equal(config_uint(c, "quota_messages"), 5);
	assert_true(config_bool(c, "quota_full_tempfail"));
	assert_string_equal(config_str(c, "imap_listen"), "");
	config_free(&c);
	/* Errors name the line and the reason. */
	write_conf(d, "quota_bytes = 1\nno_such_key = 1\n");
	assert_int_equal(config_load(d, NULL, 0, &c, &err), -1);
	assert_non_null(strstr(err.text, "mailroom.conf:2: no_such_key: unknown setting"));
	assert_int_equal(err.code, ERR_INVALID);
	write_conf(d, "quota_bytes = lots\n");
	assert_int_equal(config_load(d, NULL, 0, &c, &err), -1);
	assert_non_null(strstr(err.text, ":1: quota_bytes: not a size"));
	write_conf(d, "imap_listen = 127.0.0.1:99999\n");
	assert_int_equal(config_load(d, NULL, 0, &c, &err), -1);
	write_conf(d, "just words\n");
	assert_int_equal(config_load(d, NULL, 0, &c, &err), -1);
	assert_non_null(strstr(err.text, ":1: expected 'key = value'"));
	write_conf(d, "");
	char *bad[] = { "quota_bytes" };
	assert_int_equal(config_load(d, bad, 1, &c, &err), -1);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
	assert_int_equal(system(cmd), 0);
	free(d);
}

static void test_fsx_beneath(void **state)
{
	(void)state;
	char *d = tmpdir();
	char path[256];
	int root = open(d, O_RDONLY | O_DIRECTORY);
	assert_true(root >= 0);
	assert_int_equal(mkdirat(root, "sub", 0700), 0);
	int fd = fsx_open_beneath(root, "sub/file", O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(fsx_open_beneath(root, "../etc/passwd", O_RDONLY, 0), -1);
	assert_int_equal(fsx_open_beneath(root, "/etc/passwd", O_RDONLY, 0), -1);
	snprintf(path, sizeof(path), "%s/link", d);
	assert_int_equal(symlink("/etc", path), 0);
	assert_int_equal(fsx_open_beneath(root, "link/passwd", O_RDONLY, 0), -1);
	snprintf(path, sizeof(path), "%s/sub/flink", d);
	assert_int_equal(symlink("file", path), 0);
	assert_int_equal(fsx_open_beneath(root, "sub/flink", O_RDONLY, 0), -1);
	/* atomic replace + read back */
	assert_int_equal(fsx_write_file_atomic(root, "state", "one", 3), 0);
	assert_int_equal(fsx_write_file_atomic(root, "state", "two!", 4), 0);
	char *data;
	size_t len;
	assert_int_equal(fsx_read_file(root, "state", 100, &data, &len), 0);
	assert_string_equal(data, "two!");
	free(data);
	assert_int_equal(fsx_read_file(root, "state", 2, &data, &len), -1);
	assert_int_equal(errno, EFBIG);
	/* a failed atomic write leaves the old content and no temp file */
	fsx_fault_set(FSX_FSYNC, 1, EIO);
	assert_int_equal(fsx_write_file_atomic(root, "state", "three", 5), -1);
	fsx_fault_set(FSX_FSYNC, 0, 0);
	assert_int_equal(fsx_read_file(root, "state", 100, &data, &len), 0);
	assert_string_equal(data, "two!");
	free(data);
	close(root);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
	assert_int_equal(system(cmd), 0);
	free(d);
}

/* Days since the epoch, against Python's datetime.date arithmetic: the
 * epoch, the day before, a leap day, a March 1 after a century leap year,
 * and a date before the Gregorian era's 400-year cycle boundary. */
static void test_civil(void **state)
{
	(void)state;
	assert_int_equal(civil_days_from_date(1970, 1, 1), 0);
	assert_int_equal(civil_days_from_date(1969, 12, 31), -1);
	assert_int_equal(civil_days_from_date(2000, 3, 1), 11017);
	assert_int_equal(civil_days_from_date(2024, 2, 29), 19782);
	assert_int_equal(civil_days_from_date(1600, 1, 1), -135140);
}

static void test_fsx_faults(void **state)
{
	(void)state;
	assert_int_equal(fsx_fault_parse("link:3:ENOSPC"), 0);
	assert_int_equal(fsx_fault_calls(FSX_LINK), 0);
	assert_int_equal(fsx_fault_parse("link:3"), -1);
	assert_int_equal(fsx_fault_parse("chmod:1:EIO"), -1);
	assert_int_equal(fsx_fault_parse("fsync:1:EWHAT"), -1);
	assert_int_equal(fsx_fault_parse("fsync:2:5"), 0);
	char path[] = "/tmp/mailroom-fsync-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(fsx_fsync(fd), 0); /* call 1 */
	assert_int_equal(fsx_fsync(fd), -1); /* call 2 fails */
	assert_int_equal(errno, 5);
	assert_int_equal(fsx_fsync(fd), 0);
	close(fd);
	fsx_fault_set(FSX_FSYNC, 0, 0);
	fsx_fault_set(FSX_LINK, 0, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strnum),	   cmocka_unit_test(test_buf),
		cmocka_unit_test(test_config),	   cmocka_unit_test(test_fsx_beneath),
		cmocka_unit_test(test_fsx_faults), cmocka_unit_test(test_civil),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
