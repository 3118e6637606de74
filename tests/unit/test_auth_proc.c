/*
 * test_auth_proc.c: each of the auth process's answers comes from the right
 * cause (auth_proc.h): a wrong password or unknown user is FAILED, a (user,
 * IP) past its failures RATE_LIMITED (and no other user of that IP), a
 * passwd file that is there but cannot be read TEMPFAIL (and a table read
 * before is not used meanwhile), no file at all FAILED, a request with an
 * id always gets an answer; the penalty delays (auth_penalty.h) grow per
 * (user, IP), a separate per-IP threshold slows the address without
 * refusing; user lookups (U) answer exists / no such user / tempfail;
 * sessions are counted per service, user and IP (auth_conns.h) and freed
 * by E or by the worker's connection going.
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
#include "auth/auth_conns.h"
#include "auth/auth_penalty.h"
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

static struct auth_proc *new_proc_set(struct fake *f, const struct auth_proc_settings *set)
{
	struct auth_proc *ap = auth_proc_new(NULL, set, fake_open, f);
	assert_non_null(ap);
	return ap;
}

static struct auth_proc *new_proc(struct fake *f, unsigned max_failures)
{
	struct auth_proc_settings set = {
		.max_failures = max_failures, .allow_plain = 1, .failure_forget_secs = 300,
	};
	return new_proc_set(f, &set);
}

static const char WORKER_A[] = "worker a", WORKER_B[] = "worker b";

/* Send msg and return what auth_proc_handle returned, with the answer. */
static int send_msg(struct auth_proc *ap, const void *owner, const char *msg, unsigned *id_r,
		    struct auth_client_reply *r, unsigned *delay_r)
{
	return auth_proc_handle(ap, owner, msg, strlen(msg), id_r, r, delay_r);
}

/* The answer to "V id service ip user pass" from owner; the id must come
 * back unchanged. */
static enum auth_client_result ask_from(struct auth_proc *ap, const void *owner, unsigned id,
					const char *service, const char *ip, const char *user,
					const char *pass, char *canon, unsigned *delay_r)
{
	char msg[AUTH_MAX_MSG + 1];
	struct auth_client_reply r;
	unsigned got = 0, delay = 12345;
	int n = snprintf(msg, sizeof(msg), "V\t%u\t%s\t%s\t%s\t%s", id, service, ip, user, pass);
	assert_true(n > 0 && n <= AUTH_MAX_MSG);
	assert_int_equal(auth_proc_handle(ap, owner, msg, (size_t)n, &got, &r, &delay), 0);
	assert_int_equal(got, id);
	assert_int_not_equal(delay, 12345);
	if (r.result != AUTH_CLIENT_OK)
		assert_string_equal(r.user, "");
	if (canon != NULL)
		strcpy(canon, r.user);
	if (delay_r != NULL)
		*delay_r = delay;
	return r.result;
}

static enum auth_client_result ask(struct auth_proc *ap, unsigned id, const char *ip,
				   const char *user, const char *pass, char *canon)
{
	return ask_from(ap, WORKER_A, id, "imap", ip, user, pass, canon, NULL);
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

/* The refusal belongs to the (user, IP) pair: other users of the address,
 * and the user from another address, still log in. */
static void test_rate_limited(void **state)
{
	struct fake *f = *state;
	struct auth_proc *ap = new_proc(f, 3);
	for (unsigned i = 1; i <= 3; i++) {
		char pw[16];
		snprintf(pw, sizeof(pw), "wrong%u", i);
		assert_int_equal(ask(ap, i, "10.0.0.2", "alice", pw, NULL), AUTH_CLIENT_FAILED);
	}
	/* the right password no longer helps alice from that IP */
	assert_int_equal(ask(ap, 4, "10.0.0.2", "alice", "secret", NULL), AUTH_CLIENT_RATE_LIMITED);
	/* but bob behind the same address is not refused, nor alice elsewhere */
	assert_int_equal(ask(ap, 5, "10.0.0.2", "bob", "bobpw", NULL), AUTH_CLIENT_OK);
	assert_int_equal(ask(ap, 6, "10.0.0.3", "alice", "secret", NULL), AUTH_CLIENT_OK);
	auth_proc_free(&ap);
}

/* The same wrong password again (a phone with a stale one) is not counted:
 * it never leads to a refusal. */
static void test_same_wrong_password_not_counted(void **state)
{
	struct fake *f = *state;
	struct auth_proc *ap = new_proc(f, 3);
	for (unsigned i = 1; i <= 10; i++)
		assert_int_equal(ask(ap, i, "10.0.0.2", "alice", "stale", NULL), AUTH_CLIENT_FAILED);
	assert_int_equal(ask(ap, 11, "10.0.0.2", "alice", "secret", NULL), AUTH_CLIENT_OK);
	auth_proc_free(&ap);
}

/* Delays through auth_proc_handle: bob's answers grow, alice's right
 * password from the same IP is answered at once. */
static void test_delays_per_pair(void **state)
{
	struct fake *f = *state;
	struct auth_proc_settings set = {
		.failure_delay_ms = 100, .failure_max_delay_ms = 1000, .failure_forget_secs = 300,
		.allow_plain = 1, .ip_max_failures = 100,
	};
	struct auth_proc *ap = new_proc_set(f, &set);
	static const unsigned want[] = { 100, 200, 400, 800, 1000, 1000 };
	unsigned d;
	for (unsigned i = 0; i < 6; i++) {
		char pw[16];
		snprintf(pw, sizeof(pw), "wrong%u", i);
		assert_int_equal(ask_from(ap, WORKER_A, i + 1, "imap", "10.1.0.1", "bob", pw, NULL, &d),
				 AUTH_CLIENT_FAILED);
		assert_int_equal(d, want[i]);
	}
	assert_int_equal(ask_from(ap, WORKER_A, 10, "imap", "10.1.0.1", "alice", "secret", NULL, &d),
			 AUTH_CLIENT_OK);
	assert_int_equal(d, 0);
	/* bob's right password: held back as long as his pair earned, then ok;
	 * after it his penalty is forgotten */
	assert_int_equal(ask_from(ap, WORKER_A, 11, "imap", "10.1.0.1", "bob", "bobpw", NULL, &d),
			 AUTH_CLIENT_OK);
	assert_int_equal(d, 1000);
	assert_int_equal(ask_from(ap, WORKER_A, 12, "imap", "10.1.0.1", "bob", "bobpw", NULL, &d),
			 AUTH_CLIENT_OK);
	assert_int_equal(d, 0);
	auth_proc_free(&ap);
}

/* auth_penalty on its own, with the clock in the test's hand. */
static void test_penalty_clock(void **state)
{
	(void)state;
	struct auth_penalty_settings set = {
		.base_ms = 2000, .max_ms = 15000, .forget_secs = 60,
		.pair_max_failures = 5, .ip_max_failures = 4,
	};
	struct auth_penalty *p = auth_penalty_new(&set);
	assert_non_null(p);
	unsigned d;
	time_t t = 1000;
	/* Dovecot's 2, 4, 8, 15 */
	assert_int_equal(auth_penalty_failed(p, "bob", "10.2.0.1", "a", t), 2000);
	assert_false(auth_penalty_check(p, "bob", "10.2.0.1", t, &d));
	assert_int_equal(d, 2000);
	assert_int_equal(auth_penalty_failed(p, "bob", "10.2.0.1", "b", t), 4000);
	assert_int_equal(auth_penalty_failed(p, "bob", "10.2.0.1", "c", t), 8000);
	/* the fourth failure from the IP reaches ip_max_failures: the longest
	 * delay for everybody there, refusing nobody */
	assert_int_equal(auth_penalty_failed(p, "carol", "10.2.0.1", "x", t), 15000);
	assert_false(auth_penalty_check(p, "alice", "10.2.0.1", t, &d));
	assert_int_equal(d, 15000);
	assert_false(auth_penalty_check(p, "alice", "10.2.0.2", t, &d));
	assert_int_equal(d, 0);
	/* the IP's window ends: alice is fast again; bob's pair is not
	 * forgotten while its failures are fresh */
	t += 30;
	assert_int_equal(auth_penalty_failed(p, "bob", "10.2.0.1", "d", t), 15000);
	assert_int_equal(auth_penalty_failed(p, "bob", "10.2.0.1", "e", t), 15000);
	assert_true(auth_penalty_check(p, "bob", "10.2.0.1", t, &d)); /* 5: refused */
	assert_int_equal(d, 15000);
	t += 31; /* 61 s after the IP's window began, 31 after bob's last */
	assert_false(auth_penalty_check(p, "alice", "10.2.0.1", t, &d));
	assert_int_equal(d, 0);
	assert_true(auth_penalty_check(p, "bob", "10.2.0.1", t, &d));
	t += 30; /* 60 s without a failure of bob's: forgotten */
	assert_false(auth_penalty_check(p, "bob", "10.2.0.1", t, &d));
	assert_int_equal(d, 0);
	/* a success forgets at once */
	assert_int_equal(auth_penalty_failed(p, "dave", "10.2.0.3", "a", t), 2000);
	auth_penalty_succeeded(p, "dave", "10.2.0.3", t);
	assert_false(auth_penalty_check(p, "dave", "10.2.0.3", t, &d));
	assert_int_equal(d, 0);
	/* IPv6: one /48 is one address (Dovecot's mask); another /48 is not */
	for (int i = 0; i < 4; i++) {
		char ip[64], pw[8];
		snprintf(ip, sizeof(ip), "2001:db8:1:%x::%x", i, i + 1);
		snprintf(pw, sizeof(pw), "%d", i);
		auth_penalty_failed(p, "eve", ip, pw, t);
	}
	assert_false(auth_penalty_check(p, "frank", "2001:db8:1:ffff::1", t, &d));
	assert_int_equal(d, 15000); /* the /48 is over ip_max_failures */
	assert_false(auth_penalty_check(p, "eve", "2001:db8:1:ab::9", t, &d));
	assert_int_equal(d, 15000);
	assert_false(auth_penalty_check(p, "frank", "2001:db8:2::1", t, &d));
	assert_int_equal(d, 0);
	/* base 0: no delays at all, even past the IP threshold */
	auth_penalty_free(&p);
	assert_null(p);
	set.base_ms = 0;
	p = auth_penalty_new(&set);
	for (int i = 0; i < 10; i++) {
		char pw[8];
		snprintf(pw, sizeof(pw), "%d", i);
		assert_int_equal(auth_penalty_failed(p, "u", "10.2.0.9", pw, t), 0);
	}
	auth_penalty_free(&p);
}

/* The tables are bounded: a flood of distinct pairs evicts, never grows,
 * and the newest entries survive it. */
static void test_penalty_bounded(void **state)
{
	(void)state;
	struct auth_penalty_settings set = {
		.base_ms = 100, .max_ms = 1000, .forget_secs = 600, .pair_max_failures = 3,
	};
	struct auth_penalty *p = auth_penalty_new(&set);
	unsigned d;
	char user[32];
	for (int i = 0; i < 200000; i++) {
		snprintf(user, sizeof(user), "u%d", i);
		auth_penalty_failed(p, user, "10.3.0.1", "x", 1000 + i / 1000);
	}
	for (int k = 0; k < 3; k++)
		auth_penalty_failed(p, "victim", "10.3.0.2", k == 0 ? "a" : k == 1 ? "b" : "c", 1300);
	assert_true(auth_penalty_check(p, "victim", "10.3.0.2", 1300, &d));
	auth_penalty_free(&p);
}

/* max_userip_connections counts per service, user and IP; E frees one,
 * the worker going frees its all, and LIMIT is not a failure. */
static void test_userip_connections(void **state)
{
	struct fake *f = *state;
	struct auth_proc_settings set = {
		.allow_plain = 1, .max_failures = 2, .failure_forget_secs = 300,
		.max_userip_connections = 3,
	};
	struct auth_proc *ap = new_proc_set(f, &set);
	struct auth_client_reply r;
	unsigned id, d;
	char canon[AUTH_CLIENT_MAX_USER + 1];
	assert_int_equal(ask_from(ap, WORKER_A, 1, "imap", "10.4.0.1", "alice", "secret", canon, NULL),
			 AUTH_CLIENT_OK);
	assert_int_equal(ask_from(ap, WORKER_B, 1, "imap", "10.4.0.1", "alice", "secret", NULL, NULL),
			 AUTH_CLIENT_OK);
	assert_int_equal(ask_from(ap, WORKER_B, 2, "imap", "10.4.0.1", "alice", "secret", NULL, NULL),
			 AUTH_CLIENT_OK);
	/* the fourth from the same IP, over two workers: refused, not failed */
	for (unsigned i = 3; i < 8; i++)
		assert_int_equal(ask_from(ap, WORKER_B, i, "imap", "10.4.0.1", "alice", "secret",
					  NULL, NULL),
				 AUTH_CLIENT_LIMIT);
	/* another IP, another service, another user: their own counts */
	assert_int_equal(ask_from(ap, WORKER_A, 8, "imap", "10.4.0.2", "alice", "secret", NULL, NULL),
			 AUTH_CLIENT_OK);
	assert_int_equal(ask_from(ap, WORKER_A, 9, "pop3", "10.4.0.1", "alice", "secret", NULL, NULL),
			 AUTH_CLIENT_OK);
	assert_int_equal(ask_from(ap, WORKER_A, 10, "imap", "10.4.0.1", "bob", "bobpw", NULL, NULL),
			 AUTH_CLIENT_OK);
	/* one session ends: one more fits */
	assert_int_equal(send_msg(ap, WORKER_B, "E\t1", &id, &r, &d), 1);
	assert_int_equal(ask_from(ap, WORKER_A, 11, "imap", "10.4.0.1", "alice", "secret", NULL, NULL),
			 AUTH_CLIENT_OK);
	assert_int_equal(ask_from(ap, WORKER_A, 12, "imap", "10.4.0.1", "alice", "secret", NULL, NULL),
			 AUTH_CLIENT_LIMIT);
	/* an E for an unknown id, or another worker's, changes nothing */
	assert_int_equal(send_msg(ap, WORKER_A, "E\t999", &id, &r, &d), 1);
	assert_int_equal(send_msg(ap, WORKER_A, "E\t2", &id, &r, &d), 1); /* B's id 2 */
	assert_int_equal(ask_from(ap, WORKER_A, 13, "imap", "10.4.0.1", "alice", "secret", NULL, NULL),
			 AUTH_CLIENT_LIMIT);
	/* worker B dies: its session (id 2) is dropped */
	auth_proc_drop_owner(ap, WORKER_B);
	assert_int_equal(ask_from(ap, WORKER_A, 14, "imap", "10.4.0.1", "alice", "secret", NULL, NULL),
			 AUTH_CLIENT_OK);
	auth_proc_free(&ap);
}

static void test_conns_table(void **state)
{
	(void)state;
	struct auth_conns *t = auth_conns_new();
	assert_non_null(t);
	int owners[3];
	for (unsigned i = 0; i < 3000; i++)
		assert_int_equal(auth_conns_add(t, &owners[i % 3], i + 1, "imap", "u", "ip"), 0);
	assert_int_equal(auth_conns_add(t, &owners[0], 1, "imap", "u", "ip"), -1); /* taken */
	assert_int_equal(auth_conns_count(t, "imap", "u", "ip"), 3000);
	assert_int_equal(auth_conns_count(t, "pop3", "u", "ip"), 0);
	auth_conns_drop_owner(t, &owners[1]);
	assert_int_equal(auth_conns_count(t, "imap", "u", "ip"), 2000);
	for (unsigned i = 0; i < 3000; i += 3)
		auth_conns_remove(t, &owners[0], i + 1);
	assert_int_equal(auth_conns_count(t, "imap", "u", "ip"), 1000);
	auth_conns_drop_owner(t, &owners[2]);
	assert_int_equal(auth_conns_total(t), 0);
	assert_int_equal(auth_conns_count(t, "imap", "u", "ip"), 0);
	assert_int_equal(auth_conns_add(t, &owners[0], 7, "imap", "u", "ip"), 0);
	auth_conns_free(&t); /* frees what is left (ASan) */
	assert_null(t);
}

/* U: a user or not, without a password and without any penalty. */
static void test_lookup(void **state)
{
	struct fake *f = *state;
	struct auth_proc_settings set = {
		.allow_plain = 1, .max_failures = 1, .failure_delay_ms = 500,
		.failure_max_delay_ms = 1000, .failure_forget_secs = 300,
	};
	struct auth_proc *ap = new_proc_set(f, &set);
	struct auth_client_reply r;
	unsigned id, d;
	assert_int_equal(send_msg(ap, WORKER_A, "U\t5\talice", &id, &r, &d), 0);
	assert_int_equal(id, 5);
	assert_int_equal(r.result, AUTH_CLIENT_OK);
	assert_string_equal(r.user, "alice");
	assert_int_equal(d, 0);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(send_msg(ap, WORKER_A, "U\t6\tcarol", &id, &r, &d), 0);
		assert_int_equal(r.result, AUTH_CLIENT_FAILED);
		assert_int_equal(d, 0);
	}
	/* lookups are no failures: carol's login is not refused for them */
	assert_int_equal(ask(ap, 7, "10.5.0.1", "alice", "secret", NULL), AUTH_CLIENT_OK);
	assert_int_equal(send_msg(ap, WORKER_A, "U\t8\tAlice", &id, &r, &d), 0);
	assert_int_equal(r.result, AUTH_CLIENT_FAILED); /* names are exact */
	assert_int_equal(send_msg(ap, WORKER_A, "U\t8\tal\x01ice", &id, &r, &d), 0);
	assert_int_equal(r.result, AUTH_CLIENT_FAILED);
	assert_int_equal(send_msg(ap, WORKER_A, "U\t8", &id, &r, &d), 0);
	assert_int_equal(r.result, AUTH_CLIENT_FAILED);
	next_second();
	f->err = EIO;
	assert_int_equal(send_msg(ap, WORKER_A, "U\t9\talice", &id, &r, &d), 0);
	assert_int_equal(r.result, AUTH_CLIENT_TEMPFAIL);
	next_second();
	f->err = ENOENT;
	assert_int_equal(send_msg(ap, WORKER_A, "U\t10\talice", &id, &r, &d), 0);
	assert_int_equal(r.result, AUTH_CLIENT_FAILED);
	f->err = 0;
	auth_proc_free(&ap);
}

/* Garbage lines and a second line for a name: skipped, the others served,
 * the first line of a name wins. */
static void test_garbage_lines(void **state)
{
	struct fake *f = *state;
	FILE *fp = fopen(f->path, "w");
	assert_non_null(fp);
	fputs("garbage without a colon\n:nouser\nalice:{PLAIN}secret::::::\n\x01\xff\n"
	      "alice:{PLAIN}other::::::\nbob:{PLAIN}bobpw\n",
	      fp);
	fputc('\0', fp);
	fputs("junk\n", fp);
	fclose(fp);
	struct auth_proc *ap = new_proc(f, 0);
	assert_int_equal(ask(ap, 1, "10.6.0.1", "alice", "secret", NULL), AUTH_CLIENT_OK);
	assert_int_equal(ask(ap, 2, "10.6.0.1", "alice", "other", NULL), AUTH_CLIENT_FAILED);
	assert_int_equal(ask(ap, 3, "10.6.0.1", "bob", "bobpw", NULL), AUTH_CLIENT_OK);
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
	unsigned id = 0, d;
	char msg[AUTH_MAX_MSG + 2];

	/* a user name longer than any in DATA/passwd (IMAP LOGIN allows it) */
	int n = snprintf(msg, sizeof(msg), "V\t9\timap\t10.0.0.8\t");
	memset(msg + n, 'u', 300);
	n += 300;
	n += snprintf(msg + n, sizeof(msg) - (size_t)n, "\tsecret");
	assert_int_equal(auth_proc_handle(ap, WORKER_A, msg, (size_t)n, &id, &r, &d), 0);
	assert_int_equal(id, 9);
	assert_int_equal(r.result, AUTH_CLIENT_FAILED);

	static const struct {
		const char *msg;
		size_t len;
	} with_id[] = {
		{ "V\t10\timap\t10.0.0.8\talice", 0 },		  /* no password field */
		{ "V\t10\t10.0.0.8\talice\tsecret", 0 },	  /* no service */
		{ "V\t10\timap\t10.0.0.8", 0 },		  /* no user */
		{ "V\t10", 0 },				  /* nothing but the id */
		{ "V\t10\timap\t10.0.0.8\tal\x01ice\tsecret", 0 }, /* control character */
		{ "V\t10\timap\t\talice\tsecret", 0 },	  /* empty ip */
		{ "V\t10\t\t10.0.0.8\talice\tsecret", 0 },	  /* empty service */
		{ "V\t10\timap\t10.0.0.8\t\tsecret", 0 },	  /* empty user */
		{ "V\t10\timap\t10.0.0.8\talice\tsec\0ret", 30 }, /* NUL */
		{ "U\t10", 0 },				  /* lookup without user */
		{ "U\t10\t", 0 },				  /* empty user */
		{ "U\t10\tal\tice", 0 },			  /* TAB */
	};
	for (size_t i = 0; i < sizeof(with_id) / sizeof(with_id[0]); i++) {
		size_t len = with_id[i].len ? with_id[i].len : strlen(with_id[i].msg);
		id = 0;
		assert_int_equal(auth_proc_handle(ap, WORKER_A, with_id[i].msg, len, &id, &r, &d), 0);
		assert_int_equal(id, 10);
		assert_int_equal(r.result, AUTH_CLIENT_FAILED);
	}

	static const char *const no_id[] = {
		"", "V", "V\t", "V\t\t10.0.0.8\talice\tsecret", "V\t0\t10.0.0.8\talice\tsecret",
		"V\tx\t10.0.0.8\talice\tsecret", "V\t4294967296\t10.0.0.8\talice\tsecret",
		"O\t1\talice", "v\t1\t10.0.0.8\talice\tsecret", "X\t1\talice", "U\t0\talice",
		"E\t0", "E",
	};
	for (size_t i = 0; i < sizeof(no_id) / sizeof(no_id[0]); i++) {
		id = 12345;
		assert_int_equal(auth_proc_handle(ap, WORKER_A, no_id[i], strlen(no_id[i]), &id, &r, &d), -1);
		assert_int_equal(id, 12345);
	}
	/* over AUTH_MAX_MSG: cut by the socket, so never trusted */
	n = snprintf(msg, sizeof(msg), "V\t11\timap\t10.0.0.8\talice\t");
	memset(msg + n, 'p', sizeof(msg) - (size_t)n);
	assert_int_equal(auth_proc_handle(ap, WORKER_A, msg, AUTH_MAX_MSG + 1, &id, &r, &d), -1);
	auth_proc_free(&ap);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ok_failed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rate_limited, setup, teardown),
		cmocka_unit_test_setup_teardown(test_same_wrong_password_not_counted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delays_per_pair, setup, teardown),
		cmocka_unit_test(test_penalty_clock),
		cmocka_unit_test(test_penalty_bounded),
		cmocka_unit_test_setup_teardown(test_userip_connections, setup, teardown),
		cmocka_unit_test(test_conns_table),
		cmocka_unit_test_setup_teardown(test_lookup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_garbage_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreadable_is_tempfail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_a_file_is_tempfail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_is_no_users, setup, teardown),
		cmocka_unit_test_setup_teardown(test_old_table_not_used, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_requests, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
