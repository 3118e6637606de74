/*
 * test_auth_client.c: the auth process's reply message (auth_client.h):
 * auth_client_reply_parse() takes exactly the five well-formed replies and
 * rejects anything else whole, writing no output; auth_client_reply_format()
 * writes only what parses back to the same thing. And the client over a
 * real socketpair: the requests it writes (V with the service, U, E), and
 * the E it sends by itself for an "ok" nobody waits for any more.
 *
 * A reply is one SOCK_SEQPACKET datagram, so the parser sees whole messages
 * only: instead of feeding it byte by byte, every truncation of a message is
 * parsed too (it must be rejected, or be a well-formed reply in its own
 * right, never read past its length).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "auth/auth_client.h"

/* Parse len bytes from a heap copy of exactly that size (ASan catches a read
 * past the end). Returns what the parser returned. */
static int parse(const char *msg, size_t len, unsigned *id_r, struct auth_client_reply *r)
{
	char *copy = malloc(len ? len : 1);
	struct error why = {ERR_OK, ""};
	assert_non_null(copy);
	memcpy(copy, msg, len);
	int ret = auth_client_reply_parse(copy, len, id_r, r, &why);
	if (ret < 0)
		assert_int_equal(why.code, ERR_INVALID);
	free(copy);
	return ret;
}

static int parse_s(const char *msg, unsigned *id_r, struct auth_client_reply *r)
{
	return parse(msg, strlen(msg), id_r, r);
}

static void test_parse_valid(void **state)
{
	(void)state;
	struct auth_client_reply r;
	unsigned id;

	assert_int_equal(parse_s("O\t1\talice", &id, &r), 0);
	assert_int_equal(r.result, AUTH_CLIENT_OK);
	assert_int_equal(id, 1);
	assert_string_equal(r.user, "alice");

	memset(&r, 'x', sizeof(r));
	assert_int_equal(parse_s("F\t42", &id, &r), 0);
	assert_int_equal(r.result, AUTH_CLIENT_FAILED);
	assert_int_equal(id, 42);
	assert_string_equal(r.user, ""); /* only set when ok */

	assert_int_equal(parse_s("R\t4294967295", &id, &r), 0);
	assert_int_equal(r.result, AUTH_CLIENT_RATE_LIMITED);
	assert_int_equal(id, 4294967295u);

	assert_int_equal(parse_s("T\t7", &id, &r), 0);
	assert_int_equal(r.result, AUTH_CLIENT_TEMPFAIL);
	assert_int_equal(id, 7);

	memset(&r, 'x', sizeof(r));
	assert_int_equal(parse_s("L\t8", &id, &r), 0);
	assert_int_equal(r.result, AUTH_CLIENT_LIMIT);
	assert_int_equal(id, 8);
	assert_string_equal(r.user, "");

	/* UTF-8 and any printable byte are a name like another */
	assert_int_equal(parse_s("O\t9\tj\xc3\xb6rg@example.org", &id, &r), 0);
	assert_string_equal(r.user, "j\xc3\xb6rg@example.org");

	/* the longest user a reply can carry */
	char msg[AUTH_MAX_MSG + 2];
	int n = snprintf(msg, sizeof(msg), "O\t3\t");
	memset(msg + n, 'u', AUTH_CLIENT_MAX_USER);
	assert_int_equal(parse(msg, (size_t)n + AUTH_CLIENT_MAX_USER, &id, &r), 0);
	assert_int_equal(strlen(r.user), AUTH_CLIENT_MAX_USER);
}

static void test_parse_hostile(void **state)
{
	(void)state;
	static const struct {
		const char *msg;
		size_t len; /* 0: strlen */
	} bad[] = {
		/* empty, type only, no id */
		{ "", 0 }, { "O", 0 }, { "F", 0 }, { "F\t", 0 }, { "O\t", 0 },
		/* unknown types, the request's type, lower case, old text replies */
		{ "X\t1", 0 }, { "V\t1\t127.0.0.1\talice\tpw", 0 }, { "f\t1", 0 }, { "o\t1\talice", 0 },
		{ "U\t1\talice", 0 }, { "E\t1", 0 }, { "l\t1", 0 }, { "L\t1\t", 0 }, { "L\t1\talice", 0 },
		{ "L\t01", 0 },
		{ "F\t1\tauthentication failed", 0 }, { "F\t1\ttoo many failures, try again later", 0 },
		/* no TAB after the type, other separators */
		{ "F1", 0 }, { "F 1", 0 }, { "FF\t1", 0 }, { "\tF\t1", 0 },
		/* bad ids: zero, too big, signs, blanks, empty, not digits */
		{ "F\t0", 0 }, { "F\t00", 0 }, { "F\t01", 0 }, { "F\t4294967296", 0 }, { "F\t99999999999999999999999", 0 },
		{ "F\t+1", 0 }, { "F\t-1", 0 }, { "F\t 1", 0 }, { "F\t1 ", 0 }, { "F\t0x1", 0 },
		{ "F\t1\r\n", 0 }, { "O\t\talice", 0 }, { "O\tx\talice", 0 },
		/* missing fields: ok without user, empty user */
		{ "O\t1", 0 }, { "O\t1\t", 0 },
		/* extra fields */
		{ "F\t1\t", 0 }, { "T\t1\tx", 0 }, { "R\t1\t\t", 0 }, { "O\t1\talice\t", 0 },
		{ "O\t1\talice\tquota=1", 0 },
		/* control characters in the user, NUL inside the message */
		{ "O\t1\tal\x01ice", 0 }, { "O\t1\talice\x7f", 0 }, { "O\t1\talice\r\n", 0 },
		{ "O\t1\talice\n", 0 }, { "O\t1\tal\0ice", 10 }, { "F\t1\0", 4 }, { "O\t1\0\talice", 10 },
		{ "\0\t1", 3 },
	};
	struct auth_client_reply r, sentinel;
	unsigned id = 12345;
	memset(&sentinel, 0x5a, sizeof(sentinel));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t len = bad[i].len ? bad[i].len : strlen(bad[i].msg);
		r = sentinel;
		if (parse(bad[i].msg, len, &id, &r) != -1)
			fail_msg("accepted bad reply %zu", i);
		/* outputs are written only on success */
		assert_int_equal(id, 12345);
		assert_memory_equal(&r, &sentinel, sizeof(r));
	}

	/* too long: a user one byte over the limit, and a message over
	 * AUTH_MAX_MSG (even one made of a valid reply and padding) */
	char *msg = malloc(AUTH_MAX_MSG + 2);
	assert_non_null(msg);
	int n = snprintf(msg, AUTH_MAX_MSG + 2, "O\t3\t");
	memset(msg + n, 'u', AUTH_CLIENT_MAX_USER + 1);
	assert_int_equal(parse(msg, (size_t)n + AUTH_CLIENT_MAX_USER + 1, &id, &r), -1);
	memset(msg + n, 'u', AUTH_MAX_MSG + 2 - (size_t)n);
	assert_int_equal(parse(msg, AUTH_MAX_MSG + 1, &id, &r), -1);
	memcpy(msg, "F\t1", 3);
	memset(msg + 3, 0, AUTH_MAX_MSG - 2);
	assert_int_equal(parse(msg, AUTH_MAX_MSG + 1, &id, &r), -1);
	free(msg);
	assert_int_equal(id, 12345);
}

/* Every control character, in each place of an ok reply's user. */
static void test_parse_every_control_char(void **state)
{
	(void)state;
	struct auth_client_reply r;
	unsigned id;
	for (int c = 0; c <= 0x7f; c++) {
		if (c >= 0x20 && c != 0x7f)
			continue;
		for (int pos = 0; pos < 3; pos++) {
			char msg[16] = "O\t1\tabc";
			msg[4 + pos] = (char)c;
			assert_int_equal(parse(msg, 7, &id, &r), -1);
		}
	}
}

/* Every truncation of a valid reply is either rejected or a valid reply on
 * its own (a shorter user, a shorter id); the parser never reads past len. */
static void test_parse_truncations(void **state)
{
	(void)state;
	static const char *const msgs[] = { "O\t123\talice", "F\t123", "R\t123", "T\t123", "L\t123" };
	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		size_t len = strlen(msgs[i]);
		for (size_t k = 0; k < len; k++) {
			struct auth_client_reply r;
			unsigned id;
			if (parse(msgs[i], k, &id, &r) == 0) {
				assert_true(id == 1 || id == 12 || id == 123);
				if (r.result == AUTH_CLIENT_OK)
					assert_true(strlen(r.user) >= 1 && strlen(r.user) < 5);
			}
		}
	}
}

static void test_format_roundtrip(void **state)
{
	(void)state;
	static const enum auth_client_result results[] = {
		AUTH_CLIENT_OK, AUTH_CLIENT_FAILED, AUTH_CLIENT_RATE_LIMITED, AUTH_CLIENT_TEMPFAIL,
		AUTH_CLIENT_LIMIT,
	};
	static const char *const wire[] = { "O\t77\tbob", "F\t77", "R\t77", "T\t77", "L\t77" };
	for (size_t i = 0; i < 5; i++) {
		struct auth_client_reply r, back;
		char buf[AUTH_MAX_MSG + 1];
		size_t len = 0;
		unsigned id;
		memset(&r, 0, sizeof(r));
		r.result = results[i];
		strcpy(r.user, "bob"); /* ignored unless ok */
		assert_int_equal(auth_client_reply_format(77, &r, buf, sizeof(buf), &len), 0);
		assert_int_equal(len, strlen(wire[i]));
		assert_string_equal(buf, wire[i]);
		assert_int_equal(parse(buf, len, &id, &back), 0);
		assert_int_equal(id, 77);
		assert_int_equal(back.result, results[i]);
		assert_string_equal(back.user, results[i] == AUTH_CLIENT_OK ? "bob" : "");
	}
	/* the longest user and the largest id fit in AUTH_MAX_MSG + 1 */
	struct auth_client_reply r, back;
	char buf[AUTH_MAX_MSG + 1];
	size_t len;
	unsigned id;
	memset(&r, 0, sizeof(r));
	r.result = AUTH_CLIENT_OK;
	memset(r.user, 'z', AUTH_CLIENT_MAX_USER);
	assert_int_equal(auth_client_reply_format(UINT32_MAX, &r, buf, sizeof(buf), &len), 0);
	assert_int_equal(parse(buf, len, &id, &back), 0);
	assert_int_equal(id, UINT32_MAX);
	assert_string_equal(back.user, r.user);
}

static void test_format_refuses(void **state)
{
	(void)state;
	struct auth_client_reply r;
	char buf[AUTH_MAX_MSG + 1];
	size_t len = 999;

	memset(&r, 0, sizeof(r));
	r.result = AUTH_CLIENT_FAILED;
	assert_int_equal(auth_client_reply_format(0, &r, buf, sizeof(buf), &len), -1); /* id 0 */
	r.result = (enum auth_client_result)99;
	assert_int_equal(auth_client_reply_format(1, &r, buf, sizeof(buf), &len), -1);
	r.result = AUTH_CLIENT_OK; /* empty user */
	assert_int_equal(auth_client_reply_format(1, &r, buf, sizeof(buf), &len), -1);
	strcpy(r.user, "a\tb");
	assert_int_equal(auth_client_reply_format(1, &r, buf, sizeof(buf), &len), -1);
	strcpy(r.user, "a\nb");
	assert_int_equal(auth_client_reply_format(1, &r, buf, sizeof(buf), &len), -1);
	memset(r.user, 'u', sizeof(r.user)); /* no NUL: over-long */
	assert_int_equal(auth_client_reply_format(1, &r, buf, sizeof(buf), &len), -1);
	strcpy(r.user, "alice"); /* buffer too small */
	assert_int_equal(auth_client_reply_format(1, &r, buf, 9, &len), -1);
	assert_int_equal(len, 999); /* untouched on failure */
	assert_int_equal(auth_client_reply_format(1, &r, buf, 10, &len), 0);
	assert_string_equal(buf, "O\t1\talice");
}

/* ---- the client over a socketpair --------------------------------------- */

struct got {
	int calls;
	struct auth_client_reply r;
};

static void got_cb(void *ctx, const struct auth_client_reply *r)
{
	struct got *g = ctx;
	g->calls++;
	g->r = *r;
}

/* The next message the "auth process" end reads, as a string. */
static void recv_msg(int fd, char *buf, size_t size)
{
	ssize_t n = recv(fd, buf, size - 1, MSG_DONTWAIT);
	assert_true(n > 0);
	buf[n] = '\0';
}

static void reply(int fd, struct event_base *base, const char *msg)
{
	assert_int_equal(send(fd, msg, strlen(msg), 0), (ssize_t)strlen(msg));
	event_base_loop(base, EVLOOP_NONBLOCK);
}

static void test_client_wire(void **state)
{
	(void)state;
	int sv[2];
	char buf[AUTH_MAX_MSG + 1], want[64];
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct auth_client *ac = auth_client_new(base, sv[0]);
	assert_non_null(ac);
	struct got g1 = { 0 }, g2 = { 0 }, g3 = { 0 };

	unsigned v = auth_client_verify(ac, "imap", "10.0.0.1", "alice", "pw\twith tab", got_cb, &g1);
	assert_int_not_equal(v, 0);
	recv_msg(sv[1], buf, sizeof(buf));
	snprintf(want, sizeof(want), "V\t%u\timap\t10.0.0.1\talice\tpw\twith tab", v);
	assert_string_equal(buf, want);
	/* what the protocol cannot carry is not sent */
	assert_int_equal(auth_client_verify(ac, "im\tap", "10.0.0.1", "alice", "pw", got_cb, &g1), 0);
	assert_int_equal(auth_client_verify(ac, "", "10.0.0.1", "alice", "pw", got_cb, &g1), 0);
	assert_int_equal(auth_client_lookup(ac, "", got_cb, &g2), 0);
	assert_int_equal(auth_client_lookup(ac, "a\x01", got_cb, &g2), 0);

	unsigned u = auth_client_lookup(ac, "bob", got_cb, &g2);
	assert_int_not_equal(u, 0);
	recv_msg(sv[1], buf, sizeof(buf));
	snprintf(want, sizeof(want), "U\t%u\tbob", u);
	assert_string_equal(buf, want);

	snprintf(want, sizeof(want), "F\t%u", u);
	reply(sv[1], base, want);
	assert_int_equal(g2.calls, 1);
	assert_int_equal(g2.r.result, AUTH_CLIENT_FAILED);
	snprintf(want, sizeof(want), "L\t%u", v);
	reply(sv[1], base, want);
	assert_int_equal(g1.calls, 1);
	assert_int_equal(g1.r.result, AUTH_CLIENT_LIMIT);

	auth_client_logout(ac, 42);
	recv_msg(sv[1], buf, sizeof(buf));
	assert_string_equal(buf, "E\t42");
	auth_client_logout(ac, 0); /* nothing */

	/* a login cancelled while waiting, then answered ok: its session is
	 * ended at once; a late failure needs nothing */
	unsigned c = auth_client_verify(ac, "pop3", "10.0.0.2", "carol", "pw", got_cb, &g3);
	recv_msg(sv[1], buf, sizeof(buf));
	auth_client_cancel(ac, c);
	snprintf(want, sizeof(want), "O\t%u\tcarol", c);
	reply(sv[1], base, want);
	assert_int_equal(g3.calls, 0);
	recv_msg(sv[1], buf, sizeof(buf));
	snprintf(want, sizeof(want), "E\t%u", c);
	assert_string_equal(buf, want);
	reply(sv[1], base, "F\t999");
	assert_int_equal(recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT), -1);

	/* the auth process goes: waiting requests fail temporarily */
	unsigned w = auth_client_lookup(ac, "dave", got_cb, &g2);
	assert_int_not_equal(w, 0);
	close(sv[1]);
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(g2.calls, 2);
	assert_int_equal(g2.r.result, AUTH_CLIENT_TEMPFAIL);
	auth_client_logout(ac, 5); /* ignored: nobody listens */
	auth_client_free(&ac);
	assert_null(ac);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_valid),
		cmocka_unit_test(test_parse_hostile),
		cmocka_unit_test(test_parse_every_control_char),
		cmocka_unit_test(test_parse_truncations),
		cmocka_unit_test(test_format_roundtrip),
		cmocka_unit_test(test_format_refuses),
		cmocka_unit_test(test_client_wire),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
