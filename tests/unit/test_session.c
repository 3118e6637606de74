/*
 * test_session.c: the session core (src/session/session.c), driven through
 * a small line protocol over a socketpair, as a worker would run it:
 * pipelined commands in order, a job that holds input back, a pump that
 * stops while the client does not read and resumes when it does, the idle
 * timeout (and that it never fires during a job), shutdown with a job in
 * flight, a job or a pump outliving its client, the write timeout (a
 * client that stops reading is dropped, a slow one is not), and the
 * command table.
 *
 * The test protocol ("echo"): PING -> PONG; JOB -> a job that sleeps
 * job_ms on the pool, then JOB DONE; BIG n -> n chunks of CHUNK bytes
 * through session_pump, then END; QUIT -> BYE and close. Its timeout
 * writes TIMEOUT, its shutdown SHUTDOWN (then closes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "session/conn.h"
#include "session/jobs.h"
#include "session/session.h"

#define CHUNK (64 * 1024)

struct echo {
	struct session base;
	unsigned chunks_left;
};

/* What the protocol saw, for the assertions. */
static struct {
	unsigned timeout_s;
	unsigned job_ms;
	unsigned timeouts, shutdowns, frees, steps, cancels;
	unsigned jobs_done, jobs_done_without_conn;
	int job_running;
} seen;

static void job_work(void *arg)
{
	(void)arg;
	__atomic_store_n(&seen.job_running, 1, __ATOMIC_SEQ_CST);
	struct timespec ts = { seen.job_ms / 1000, (long)(seen.job_ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static void job_done(struct session *s, void *arg)
{
	(void)arg;
	seen.jobs_done++;
	if (s->conn == NULL)
		seen.jobs_done_without_conn++;
	session_write(s, "JOB DONE\r\n", 10);
}

static int big_step(struct session *s, void *arg)
{
	struct echo *e = (struct echo *)(void *)s;
	static char chunk[CHUNK];
	(void)arg;
	seen.steps++;
	if (e->chunks_left == 0) {
		session_write(s, "END\r\n", 5);
		return 1;
	}
	memset(chunk, 'x', sizeof(chunk));
	session_write(s, chunk, sizeof(chunk));
	e->chunks_left--;
	return 0;
}

static void big_cancel(void *arg)
{
	(void)arg;
	seen.cancels++;
}

static int echo_start(struct session *s)
{
	session_set_timeout(s, seen.timeout_s);
	session_write(s, "HELLO\r\n", 7);
	return 0;
}

static enum session_step echo_input(struct session *s, struct evbuffer *in)
{
	size_t len;
	char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
	if (line == NULL)
		return SESSION_WAIT;
	if (strcmp(line, "PING") == 0) {
		session_write(s, "PONG\r\n", 6);
	} else if (strcmp(line, "JOB") == 0) {
		assert_int_equal(session_async(s, job_work, job_done, NULL), 0);
	} else if (strncmp(line, "BIG ", 4) == 0) {
		((struct echo *)(void *)s)->chunks_left = (unsigned)atoi(line + 4);
		session_pump(s, big_step, big_cancel, NULL);
	} else if (strcmp(line, "QUIT") == 0) {
		session_write(s, "BYE\r\n", 5);
		session_close(s);
	} else {
		session_write(s, "ERR\r\n", 5);
	}
	free(line);
	return SESSION_MORE;
}

static void echo_timeout(struct session *s)
{
	seen.timeouts++;
	session_write(s, "TIMEOUT\r\n", 9);
}

static void echo_shutdown(struct session *s)
{
	seen.shutdowns++;
	session_write(s, "SHUTDOWN\r\n", 10);
	session_close(s);
}

static void echo_free(struct session *s)
{
	(void)s;
	seen.frees++;
}

static const struct session_proto echo_proto = {
	.name = "echo",
	.id_prefix = "E",
	.size = sizeof(struct echo),
	.start = echo_start,
	.input = echo_input,
	.timeout = echo_timeout,
	.shutdown = echo_shutdown,
	.free = echo_free,
};

/* ---- harness ---------------------------------------------------------------- */

struct rig {
	struct event_base *base;
	struct session_env env;
	int peer; /* the client's end */
	char got[9 * 1024 * 1024];
	size_t ngot;
	bool eof;
};

static struct rig *rig_new(unsigned timeout_s, unsigned job_ms)
{
	struct rig *r = calloc(1, sizeof(*r));
	int sv[2];
	memset(&seen, 0, sizeof(seen));
	seen.timeout_s = timeout_s;
	seen.job_ms = job_ms;
	assert_non_null(r);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	r->base = event_base_new();
	r->env.base = r->base;
	r->env.jobs = jobs_new(r->base, 2);
	assert_non_null(r->env.jobs);
	r->peer = sv[1];
	fcntl(r->peer, F_SETFL, O_NONBLOCK);
	/* A small socket buffer, so that output backs up into the conn. */
	int small = 16 * 1024;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(r->peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct conn *c = conn_new(r->base, sv[0], NULL, (struct sockaddr *)&sa, sizeof(sa));
	assert_non_null(c);
	session_start(&r->env, &echo_proto, c);
	return r;
}

static void rig_free(struct rig *r)
{
	if (r->peer >= 0)
		close(r->peer);
	/* let the server side see the close and free the session */
	for (int i = 0; i < 50 && r->env.sessions > 0; i++)
		event_base_loop(r->base, EVLOOP_NONBLOCK);
	jobs_free(&r->env.jobs);
	event_base_free(r->base);
	free(r);
}

static void rig_send(struct rig *r, const char *s)
{
	assert_int_equal(write(r->peer, s, strlen(s)), (ssize_t)strlen(s));
}

/* Run the loop for ms milliseconds; read what arrives when reading. */
static void rig_run(struct rig *r, unsigned ms, bool reading)
{
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		event_base_loop(r->base, EVLOOP_NONBLOCK);
		while (reading && !r->eof && r->peer >= 0) {
			ssize_t n = read(r->peer, r->got + r->ngot, sizeof(r->got) - 1 - r->ngot);
			if (n > 0) {
				r->ngot += (size_t)n;
				r->got[r->ngot] = '\0';
				continue;
			}
			if (n == 0)
				r->eof = true;
			break;
		}
		clock_gettime(CLOCK_MONOTONIC, &t);
		long el = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
		if (el >= (long)ms)
			return;
		struct pollfd p = { r->peer, POLLIN, 0 };
		poll(&p, 1, 2);
	}
}

/* Run until the text (without the 'x' chunks) contains want, or fail. */
static void rig_expect(struct rig *r, const char *want, unsigned max_ms)
{
	for (unsigned i = 0; i < max_ms / 10; i++) {
		if (strstr(r->got, want) != NULL)
			return;
		rig_run(r, 10, true);
	}
	fail_msg("did not get \"%s\"; got %zu bytes, last: \"%s\"", want, r->ngot,
		 r->ngot > 40 ? r->got + r->ngot - 40 : r->got);
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_pipelined_in_order(void **state)
{
	(void)state;
	struct rig *r = rig_new(0, 100);
	rig_expect(r, "HELLO\r\n", 1000);
	/* The JOB holds the second PING back until it is done. */
	rig_send(r, "PING\r\nJOB\r\nPING\r\nQUIT\r\n");
	rig_expect(r, "BYE\r\n", 3000);
	assert_string_equal(r->got, "HELLO\r\nPONG\r\nJOB DONE\r\nPONG\r\nBYE\r\n");
	rig_run(r, 50, true);
	assert_true(r->eof);
	assert_int_equal(seen.frees, 1);
	assert_int_equal(r->env.sessions, 0);
	rig_free(r);
}

static void test_pump_stops_and_resumes_on_drained(void **state)
{
	(void)state;
	struct rig *r = rig_new(0, 0);
	rig_expect(r, "HELLO\r\n", 1000);
	r->ngot = 0;
	r->got[0] = '\0';
	/* 128 chunks = 8 MB; the client reads nothing for a while. */
	rig_send(r, "BIG 128\r\nPING\r\n");
	rig_run(r, 300, false);
	unsigned steps = seen.steps;
	/* Stopped at CONN_OUTPUT_HIGH (plus the small socket buffers): */
	assert_true(steps > 0);
	assert_true(steps <= CONN_OUTPUT_HIGH / CHUNK + 4);
	rig_run(r, 200, false);
	assert_int_equal(seen.steps, steps); /* no polling: nothing ran meanwhile */
	/* The client reads: the pump goes on from drained, then PING runs. */
	rig_expect(r, "END\r\nPONG\r\n", 10000);
	assert_int_equal(r->ngot, 128u * CHUNK + 5 + 6);
	assert_int_equal(seen.steps, 129);
	assert_int_equal(seen.cancels, 0);
	rig_free(r);
}

static void test_timeout(void **state)
{
	(void)state;
	struct rig *r = rig_new(1, 0);
	rig_expect(r, "TIMEOUT\r\n", 3000);
	rig_run(r, 50, true);
	assert_true(r->eof);
	assert_int_equal(seen.timeouts, 1);
	assert_int_equal(seen.frees, 1);
	rig_free(r);
}

static void test_no_timeout_during_a_job(void **state)
{
	(void)state;
	/* The job takes 1.6 s with a 1 s timeout: the client is not idle, the
	 * server is; the timeout must wait for the next idle second. */
	struct rig *r = rig_new(1, 1600);
	rig_expect(r, "HELLO\r\n", 1000);
	rig_send(r, "JOB\r\n");
	rig_expect(r, "JOB DONE\r\n", 4000);
	assert_int_equal(seen.timeouts, 0);
	assert_false(r->eof);
	rig_send(r, "PING\r\n");
	rig_expect(r, "PONG\r\n", 1000);
	rig_free(r);
}

static void test_shutdown_with_job_in_flight(void **state)
{
	(void)state;
	struct rig *r = rig_new(0, 300);
	rig_expect(r, "HELLO\r\n", 1000);
	rig_send(r, "JOB\r\nPING\r\n");
	while (!__atomic_load_n(&seen.job_running, __ATOMIC_SEQ_CST))
		rig_run(r, 5, true);
	session_shutdown_all(&r->env);
	session_shutdown_all(&r->env); /* once per session */
	assert_int_equal(seen.shutdowns, 1);
	/* The job finishes and answers; the pipelined PING never runs; then
	 * the connection closes and the session is freed. */
	rig_expect(r, "JOB DONE\r\n", 3000);
	rig_run(r, 100, true);
	assert_true(r->eof);
	assert_string_equal(r->got, "HELLO\r\nSHUTDOWN\r\nJOB DONE\r\n");
	assert_int_equal(seen.frees, 1);
	assert_int_equal(r->env.sessions, 0);
	rig_free(r);
}

static void test_job_finishes_after_connection_closed(void **state)
{
	(void)state;
	struct rig *r = rig_new(0, 300);
	rig_expect(r, "HELLO\r\n", 1000);
	rig_send(r, "JOB\r\n");
	while (!__atomic_load_n(&seen.job_running, __ATOMIC_SEQ_CST))
		rig_run(r, 5, true);
	/* The connection dies under the job (an I/O or TLS error). */
	conn_abort(r->env.list->conn);
	rig_run(r, 100, false);
	assert_null(r->env.list->conn);
	assert_int_equal(seen.frees, 0); /* the job still uses the session */
	assert_int_equal(r->env.sessions, 1);
	rig_run(r, 600, false);
	assert_int_equal(seen.jobs_done, 1);
	assert_int_equal(seen.jobs_done_without_conn, 1);
	assert_int_equal(seen.frees, 1);
	assert_int_equal(r->env.sessions, 0);
	rig_free(r);
}

static void test_client_leaves_during_a_job(void **state)
{
	(void)state;
	struct rig *r = rig_new(0, 300);
	rig_expect(r, "HELLO\r\n", 1000);
	rig_send(r, "JOB\r\n");
	while (!__atomic_load_n(&seen.job_running, __ATOMIC_SEQ_CST))
		rig_run(r, 5, true);
	close(r->peer);
	r->peer = -1;
	/* Input is paused during the job, so the hang-up is seen after it. */
	rig_run(r, 800, false);
	assert_int_equal(seen.jobs_done, 1);
	assert_int_equal(seen.frees, 1);
	assert_int_equal(r->env.sessions, 0);
	rig_free(r);
}

static void test_pump_cancelled_when_client_leaves(void **state)
{
	(void)state;
	struct rig *r = rig_new(0, 0);
	rig_expect(r, "HELLO\r\n", 1000);
	rig_send(r, "BIG 1000\r\n");
	rig_run(r, 100, false);
	assert_true(seen.steps > 0);
	close(r->peer);
	r->peer = -1;
	rig_run(r, 200, false);
	assert_int_equal(seen.cancels, 1);
	assert_int_equal(seen.frees, 1);
	assert_int_equal(r->env.sessions, 0);
	rig_free(r);
}

/* The write timeout (conn_set_write_timeout): a client that reads nothing
 * while a pump waits for the drain is dropped after the timeout, the pump
 * cancelled and the session freed. */
static void test_write_timeout_drops_a_client_that_stops_reading(void **state)
{
	(void)state;
	struct rig *r = rig_new(0, 0);
	rig_expect(r, "HELLO\r\n", 1000);
	conn_set_write_timeout(r->env.list->conn, 1);
	rig_send(r, "BIG 128\r\n");
	rig_run(r, 700, false);
	assert_int_equal(r->env.sessions, 1); /* not before the timeout */
	rig_run(r, 1000, false);
	assert_int_equal(seen.cancels, 1);
	assert_int_equal(seen.frees, 1);
	assert_int_equal(r->env.sessions, 0);
	rig_free(r);
}

/* The clock counts time without progress, not the transfer: a client that
 * reads a little every 600 ms (under the 1 s timeout) gets all 8 MB, over
 * many seconds. */
static void test_write_timeout_spares_a_slow_reader(void **state)
{
	(void)state;
	struct rig *r = rig_new(0, 0);
	rig_expect(r, "HELLO\r\n", 1000);
	r->ngot = 0;
	r->got[0] = '\0';
	conn_set_write_timeout(r->env.list->conn, 1);
	rig_send(r, "BIG 128\r\n");
	unsigned pauses = 0;
	for (; pauses < 100 && strstr(r->got, "END\r\n") == NULL; pauses++) {
		rig_run(r, 600, false);
		/* one read of at most 2 MB, then nothing again */
		size_t room = sizeof(r->got) - 1 - r->ngot;
		for (size_t taken = 0; taken < (2u << 20) && room > 0;) {
			ssize_t n = read(r->peer, r->got + r->ngot, room < 65536 ? room : 65536);
			if (n <= 0)
				break;
			r->ngot += (size_t)n;
			room -= (size_t)n;
			taken += (size_t)n;
			r->got[r->ngot] = '\0';
			event_base_loop(r->base, EVLOOP_NONBLOCK);
		}
	}
	assert_non_null(strstr(r->got, "END\r\n"));
	assert_int_equal(r->ngot, 128u * CHUNK + 5);
	assert_true(pauses >= 3); /* it did take longer than the timeout */
	assert_int_equal(seen.cancels, 0);
	assert_int_equal(r->env.sessions, 1);
	rig_free(r);
}

struct row {
	struct session_cmd base;
	int id;
};

static void test_cmd_find(void **state)
{
	(void)state;
	static const struct row rows[] = {
		{ { "LOGIN", 1u << 0 }, 1 },
		{ { "FETCH", (1u << 1) | (1u << 2) }, 2 },
	};
	const struct session_cmd *row = NULL;
	assert_int_equal(session_cmd_find(rows, 2, sizeof(rows[0]), "fetch", 2, &row), SESSION_CMD_OK);
	assert_int_equal(((const struct row *)(const void *)row)->id, 2);
	assert_int_equal(session_cmd_find(rows, 2, sizeof(rows[0]), "LOGIN", 1, &row),
			 SESSION_CMD_BAD_STATE);
	assert_int_equal(((const struct row *)(const void *)row)->id, 1);
	assert_int_equal(session_cmd_find(rows, 2, sizeof(rows[0]), "LOGINX", 0, &row),
			 SESSION_CMD_UNKNOWN);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN); /* as the worker does */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pipelined_in_order),
		cmocka_unit_test(test_pump_stops_and_resumes_on_drained),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_no_timeout_during_a_job),
		cmocka_unit_test(test_shutdown_with_job_in_flight),
		cmocka_unit_test(test_job_finishes_after_connection_closed),
		cmocka_unit_test(test_client_leaves_during_a_job),
		cmocka_unit_test(test_pump_cancelled_when_client_leaves),
		cmocka_unit_test(test_write_timeout_drops_a_client_that_stops_reading),
		cmocka_unit_test(test_write_timeout_spares_a_slow_reader),
		cmocka_unit_test(test_cmd_find),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
