/*
 * test_auth_proc.c: each of the auth process's answers comes from the right
 * cause (auth_proc.h): a wrong password or unknown user is FAILED, a limit
 * reached RATE_LIMITED, a passwd file that is there but cannot be read
 * TEMPFAIL (and a table read before is not used meanwhile), no file at all
 * FAILED, and a request with an id always gets an answer.
 *
 * auth_proc_handle() is driven directly, with open_passwd replaced by a
 * function that opens a file of the test's choosing or fails with the errno
 * it is told to.
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
#include <time.h>
#include <unistd.h>

#include "auth/auth_client.h"
#include "auth/auth_proc.h"

struct fake {
	char dir[64];
	char path[128]; /* what open_passwd opens */
	int err;	/* if not 0: fail with this errno instead */
	int opens;
};

static int fake_open(void *ctx)
{
	struct fake *f = ctx;
	f->opens++;
	if (f->err != 0) {
		errno = f->err;
		return -1;
	}
	return open(f->path, O_RDONLY | O_CLOEXEC);
}

static int setup(void **state)
{
	struct fake *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	strcpy(f->dir, "/tmp/test_auth_proc.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/passwd", f->dir);
	FILE *fp = fopen(f->path, "w");
	assert_non_null(fp);
	fputs("# users\nalice:{PLAIN}secret::::::\nbob:{PLAIN}bobpw:1000:1000::/home/bob::\n", fp);
	fclose(fp);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fake *f = *state;
	char sub[160];
	snprintf(sub, sizeof(sub), "%s/sub", f->dir);
	rmdir(sub);
	unlink(f->path);
	rmdir(f->dir);
	free(f);
	return 0;
}

static struct auth_proc *new_proc(struct fake *f, unsigned max_failures)
{
	struct auth_proc_settings set = { 0, max_failures, 1 };
	struct auth_proc *ap = auth_proc_new(NULL, &set, fake_open, f);
	assert_non_null(ap);
	return ap;
}

/* The answer to "V id ip user pass"; the id must come back unchanged. */
static enum auth_client_result ask(struct auth_proc *ap, unsigned id, const char *ip,
				   const char *user, const char *pass, char *canon)
{
	char msg[AUTH_MAX_MSG + 1];
	struct auth_client_reply r;
	unsigned got = 0;
	int n = snprintf(msg, sizeof(msg), "V\t%u\t%s\t%s\t%s", id, ip, user, pass);
	assert_true(n > 0 && n <= AUTH_MAX_MSG);
	assert_int_equal(auth_proc_handle(ap, msg, (size_t)n, &got, &r), 0);
	assert_int_equal(got, id);
	if (r.result != AUTH_CLIENT_OK)
		assert_string_equal(r.user, "");
	if (canon != NULL)
		strcpy(canon, r.user);
	return r.result;
}

/* Wait for the next second: the table is looked at once a second at most. */
static void next_second(void)
{
	time_t t = time(NULL);
	while (time(NULL) == t)
		usleep(20000);
}

static void test_ok_failed(void **state)
{
	struct fake *f = *state;
	struct auth_proc *ap = new_proc(f, 0);
	char canon[AUTH_CLIENT_MAX_USER + 1];
	assert_int_equal(ask(ap, 1, "10.0.0.1", "alice", "secret", canon), AUTH_CLIENT_OK);
	assert_string_equal(canon, "alice");
	assert_int_equal(ask(ap, 2, "10.0.0.1", "bob", "bobpw", canon), AUTH_CLIENT_OK);
	assert_string_equal(canon, "bob");
	assert_int_equal(ask(ap, 3, "10.0.0.1", "alice", "Secret", NULL), AUTH_CLIENT_FAILED);
	assert_int_equal(ask(ap, 4, "10.0.0.1", "carol", "secret", NULL), AUTH_CLIENT_FAILED);
	assert_int_equal(ask(ap, 5, "10.0.0.1", "alice", "", NULL), AUTH_CLIENT_FAILED);
	/* a password with TABs is the rest of the message */
	assert_int_equal(ask(ap, 6, "10.0.0.1", "alice", "secret\tx", NULL), AUTH_CLIENT_FAILED);
	auth_proc_free(&ap);
	assert_null(ap);
}

static void test_rate_limited(void **state)
{
	struct fake *f = *state;
	struct auth_proc *ap = new_proc(f, 3);
	for (unsigned i = 1; i <= 3; i++)
		assert_int_equal(ask(ap, i, "10.0.0.2", "alice", "wrong", NULL), AUTH_CLIENT_FAILED);
	/* the right password no longer helps, from that IP or for that user */
	assert_int_equal(ask(ap, 4, "10.0.0.2", "alice", "secret", NULL), AUTH_CLIENT_RATE_LIMITED);
	assert_int_equal(ask(ap, 5, "10.0.0.2", "bob", "bobpw", NULL), AUTH_CLIENT_RATE_LIMITED);
	assert_int_equal(ask(ap, 6, "10.0.0.3", "alice", "secret", NULL), AUTH_CLIENT_RATE_LIMITED);
	assert_int_equal(ask(ap, 7, "10.0.0.3", "bob", "bobpw", NULL), AUTH_CLIENT_OK);
	auth_proc_free(&ap);
}

static void test_unreadable_is_tempfail(void **state)
{
	struct fake *f = *state;
	static const int errs[] = { EIO, EACCES, ELOOP, EPIPE, ENOMEM };
	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		struct auth_proc *ap = new_proc(f, 2);
		f->err = errs[i];
		/* right or wrong password alike; and it does not count as a
		 * failure: no RATE_LIMITED after more than max_failures */
		for (unsigned id = 1; id <= 4; id++)
			assert_int_equal(ask(ap, id, "10.0.0.4", "alice", id % 2 ? "secret" : "x", NULL),
					 AUTH_CLIENT_TEMPFAIL);
		f->err = 0;
		auth_proc_free(&ap);
	}
}

static void test_not_a_file_is_tempfail(void **state)
{
	struct fake *f = *state;
	/* what an admin gets by mistake with a directory in its place: open()
	 * succeeds, read() says EISDIR */
	char saved[128];
	strcpy(saved, f->path);
	snprintf(f->path, sizeof(f->path), "%s/sub", f->dir);
	assert_int_equal(mkdir(f->path, 0700), 0);
	struct auth_proc *ap = new_proc(f, 0);
	assert_int_equal(ask(ap, 1, "10.0.0.5", "alice", "secret", NULL), AUTH_CLIENT_TEMPFAIL);
	auth_proc_free(&ap);
	/* /dev/null is readable but no passwd file either */
	strcpy(f->path, "/dev/null");
	ap = new_proc(f, 0);
	assert_int_equal(ask(ap, 1, "10.0.0.5", "alice", "secret", NULL), AUTH_CLIENT_TEMPFAIL);
	auth_proc_free(&ap);
	strcpy(f->path, saved);
}

static void test_missing_is_no_users(void **state)
{
	struct fake *f = *state;
	struct auth_proc *ap = new_proc(f, 0);
	f->err = ENOENT;
	assert_int_equal(ask(ap, 1, "10.0.0.6", "alice", "secret", NULL), AUTH_CLIENT_FAILED);
	f->err = 0;
	auth_proc_free(&ap);
}

/* A table read before is not used while the file cannot be read, and the
 * file is read again when it can. */
static void test_old_table_not_used(void **state)
{
	struct fake *f = *state;
	struct auth_proc *ap = new_proc(f, 0);
	assert_int_equal(ask(ap, 1, "10.0.0.7", "alice", "secret", NULL), AUTH_CLIENT_OK);
	next_second();
	f->err = EIO;
	assert_int_equal(ask(ap, 2, "10.0.0.7", "alice", "secret", NULL), AUTH_CLIENT_TEMPFAIL);
	next_second();
	f->err = ENOENT;
	assert_int_equal(ask(ap, 3, "10.0.0.7", "alice", "secret", NULL), AUTH_CLIENT_FAILED);
	next_second();
	f->err = 0;
	assert_int_equal(ask(ap, 4, "10.0.0.7", "alice", "secret", NULL), AUTH_CLIENT_OK);
	/* within the same second the file is not asked for again */
	int opens = f->opens;
	assert_int_equal(ask(ap, 5, "10.0.0.7", "bob", "bobpw", NULL), AUTH_CLIENT_OK);
	assert_int_equal(f->opens, opens);
	auth_proc_free(&ap);
}

/* A request with a readable id always gets an answer; one without gets
 * none (-1). */
static void test_malformed_requests(void **state)
{
	struct fake *f = *state;
	struct auth_proc *ap = new_proc(f, 0);
	struct auth_client_reply r;
	unsigned id = 0;
	char msg[AUTH_MAX_MSG + 2];

	/* a user name longer than any in DATA/passwd (IMAP LOGIN allows it) */
	int n = snprintf(msg, sizeof(msg), "V\t9\t10.0.0.8\t");
	memset(msg + n, 'u', 300);
	n += 300;
	n += snprintf(msg + n, sizeof(msg) - (size_t)n, "\tsecret");
	assert_int_equal(auth_proc_handle(ap, msg, (size_t)n, &id, &r), 0);
	assert_int_equal(id, 9);
	assert_int_equal(r.result, AUTH_CLIENT_FAILED);

	static const struct {
		const char *msg;
		size_t len;
	} with_id[] = {
		{ "V\t10\t10.0.0.8\talice", 0 },	     /* no password field */
		{ "V\t10\t10.0.0.8", 0 },		     /* no user */
		{ "V\t10", 0 },				     /* nothing but the id */
		{ "V\t10\t10.0.0.8\tal\x01ice\tsecret", 0 }, /* control character */
		{ "V\t10\t\talice\tsecret", 0 },	     /* empty ip */
		{ "V\t10\t10.0.0.8\t\tsecret", 0 },	     /* empty user */
		{ "V\t10\t10.0.0.8\talice\tsec\0ret", 25 },  /* NUL */
	};
	for (size_t i = 0; i < sizeof(with_id) / sizeof(with_id[0]); i++) {
		size_t len = with_id[i].len ? with_id[i].len : strlen(with_id[i].msg);
		id = 0;
		assert_int_equal(auth_proc_handle(ap, with_id[i].msg, len, &id, &r), 0);
		assert_int_equal(id, 10);
		assert_int_equal(r.result, AUTH_CLIENT_FAILED);
	}

	static const char *const no_id[] = {
		"", "V", "V\t", "V\t\t10.0.0.8\talice\tsecret", "V\t0\t10.0.0.8\talice\tsecret",
		"V\tx\t10.0.0.8\talice\tsecret", "V\t4294967296\t10.0.0.8\talice\tsecret",
		"O\t1\talice", "v\t1\t10.0.0.8\talice\tsecret",
	};
	for (size_t i = 0; i < sizeof(no_id) / sizeof(no_id[0]); i++) {
		id = 12345;
		assert_int_equal(auth_proc_handle(ap, no_id[i], strlen(no_id[i]), &id, &r), -1);
		assert_int_equal(id, 12345);
	}
	/* over AUTH_MAX_MSG: cut by the socket, so never trusted */
	n = snprintf(msg, sizeof(msg), "V\t11\t10.0.0.8\talice\t");
	memset(msg + n, 'p', sizeof(msg) - (size_t)n);
	assert_int_equal(auth_proc_handle(ap, msg, AUTH_MAX_MSG + 1, &id, &r), -1);
	auth_proc_free(&ap);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ok_failed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rate_limited, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreadable_is_tempfail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_a_file_is_tempfail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_is_no_users, setup, teardown),
		cmocka_unit_test_setup_teardown(test_old_table_not_used, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_requests, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
