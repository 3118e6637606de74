/* session.c: the session core; the design note is in session.h. */
#include "session/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "auth/auth_client.h"
#include "lib/config.h"
#include "lib/log.h"
#include "session/conn.h"
#include "session/jobs.h"

static void session_free(struct session *s)
{
	struct session_env *env = s->env;
	if (s->pump.step != NULL && s->pump.cancel != NULL)
		s->pump.cancel(s->pump.arg);
	s->proto->free(s);
	if (env->list == s)
		env->list = s->next;
	if (s->prev)
		s->prev->next = s->next;
	if (s->next)
		s->next->prev = s->prev;
	env->sessions--;
	free(s);
}

bool session_running(const struct session *s)
{
	return s->busy > 0 || s->pump.step != NULL;
}

/* Nothing is outstanding: close if asked to, else read again. */
static void settle(struct session *s)
{
	if (s->closing) {
		conn_close(s->conn);
		return;
	}
	if (conn_output_pending(s->conn) < CONN_OUTPUT_HIGH)
		conn_resume_input(s->conn);
}

/* Run the pump while the output has room. Returns true if it is over. */
static bool pump_run(struct session *s)
{
	while (s->pump.step != NULL && s->busy == 0) {
		/* closing does not stop a pump: the step decides whether to
		 * end early (IMAP) or finish the transfer (POP3). */
		if (conn_output_pending(s->conn) >= CONN_OUTPUT_HIGH)
			return false;
		if (s->pump.step(s, s->pump.arg)) {
			s->pump.step = NULL;
			s->pump.cancel = NULL;
			s->pump.arg = NULL;
			return true;
		}
	}
	return s->pump.step == NULL;
}

/* A command's last outstanding piece ended. */
static void command_over(struct session *s)
{
	if (s->proto->command_done != NULL)
		s->proto->command_done(s);
	settle(s);
}

static void on_input(void *ctx)
{
	struct session *s = ctx;
	while (!session_running(s) && !s->closing) {
		/* Fetched anew each time: STARTTLS replaces the input buffer. */
		struct evbuffer *in = conn_input(s->conn);
		if (evbuffer_get_length(in) == 0)
			break;
		if (s->proto->input(s, in) == SESSION_WAIT)
			break;
		if (conn_output_pending(s->conn) >= CONN_OUTPUT_HIGH) {
			conn_pause_input(s->conn);
			break;
		}
	}
	if (s->closing && !session_running(s))
		conn_close(s->conn);
}

static void on_drained(void *ctx)
{
	struct session *s = ctx;
	if (s->busy > 0)
		return;
	if (s->pump.step != NULL) {
		if (!pump_run(s))
			return;
		command_over(s);
		return;
	}
	if (!s->closing)
		conn_resume_input(s->conn);
}

static void on_timeout(void *ctx)
{
	struct session *s = ctx;
	if (session_running(s))
		return; /* the client is not the one we wait for */
	if (s->proto->timeout != NULL)
		s->proto->timeout(s);
	s->closing = true;
	conn_close(s->conn);
}

static void on_closed(void *ctx)
{
	struct session *s = ctx;
	if (s->proto->disconnected != NULL)
		s->proto->disconnected(s);
	if (s->auth_login != 0) /* max_userip_connections: one session less */
		auth_client_logout(s->env->auth, s->auth_login);
	s->auth_login = 0;
	s->conn = NULL;
	s->closing = true;
	if (s->pump.step != NULL) {
		if (s->pump.cancel != NULL)
			s->pump.cancel(s->pump.arg);
		s->pump.step = NULL;
		s->pump.cancel = NULL;
	}
	if (s->busy > 0)
		return; /* a job still uses the session: freed by session_resume */
	session_free(s);
}

/* The write timeout: the conn drops the connection after this. */
static void on_stalled(void *ctx)
{
	struct session *s = ctx;
	log_info("%s %s write timeout: %zu bytes unread for %u s, disconnecting ip=%s",
		 s->proto->name, s->id, conn_output_pending(s->conn),
		 conn_write_timeout(s->conn), conn_peer_ip(s->conn));
}

static const struct conn_handler handler = {
	on_input, on_drained, on_closed, on_timeout, on_stalled,
};

/* The client's output reached client_max_output (see session.h). */
static void overflow(struct session *s)
{
	log_info("%s %s output limit: %zu bytes queued unread, disconnecting ip=%s",
		 s->proto->name, s->id, conn_output_pending(s->conn), conn_peer_ip(s->conn));
	s->closing = true; /* read no more commands; lets the goodbye through */
	if (s->proto->overflow != NULL)
		s->proto->overflow(s);
	s->overflowed = true;
	session_close(s);
}

void session_start(struct session_env *env, const struct session_proto *proto, struct conn *c)
{
	static unsigned long counter;
	struct session *s = calloc(1, proto->size);
	if (s == NULL) {
		conn_abort(c);
		return;
	}
	s->proto = proto;
	s->env = env;
	s->conn = c;
	snprintf(s->id, sizeof(s->id), "%s%lx%04lx", proto->id_prefix,
		 (unsigned long)getpid() & 0xffff, ++counter & 0xffff);
	s->next = env->list;
	if (env->list)
		env->list->prev = s;
	env->list = s;
	env->sessions++;
	conn_set_handler(c, &handler, s);
	if (env->config != NULL) {
		conn_set_write_timeout(c, (unsigned)config_uint(env->config, "client_write_timeout"));
		s->max_output = (size_t)config_uint(env->config, "client_max_output");
	}
	if (proto->start(s) < 0) {
		/* on_closed frees s once the conn has gone */
		conn_abort(c);
	}
}

void session_close(struct session *s)
{
	s->closing = true;
	if (s->conn != NULL && !session_running(s))
		conn_close(s->conn);
}

void session_set_timeout(struct session *s, unsigned seconds)
{
	if (s->conn != NULL)
		conn_set_idle_timeout(s->conn, seconds);
}

/* The output cap (session.h) is checked against what was queued when this
 * burst of writes began: the writes of one loop callback (a command's
 * answer, an IDLE sync) are one burst, written before the socket can take
 * any of it, so a client that reads is never cut off by one large burst; a
 * client that does not read is cut off at the start of the next one. The
 * cap is at least CONN_OUTPUT_HIGH: a command only starts below that mark,
 * so its answer is never cut. */
static bool over_cap(struct session *s)
{
	struct timeval tv;
	event_base_gettimeofday_cached(s->env->base, &tv); /* the same within a callback */
	unsigned long long stamp = (unsigned long long)tv.tv_sec * 1000000 + (unsigned long long)tv.tv_usec;
	if (stamp != s->burst_stamp) {
		s->burst_stamp = stamp;
		s->burst_start = conn_output_pending(s->conn);
	}
	size_t cap = s->max_output > CONN_OUTPUT_HIGH ? s->max_output : CONN_OUTPUT_HIGH;
	return s->burst_start >= cap;
}

void session_write(struct session *s, const void *data, size_t len)
{
	if (s->conn == NULL || s->overflowed)
		return;
	if (s->max_output > 0 && s->pump.step == NULL && !s->closing && over_cap(s)) {
		overflow(s);
		return;
	}
	conn_write(s->conn, data, len);
}

bool session_error_limit(struct session *s, unsigned max)
{
	return ++s->errors > max;
}

/* ---- waits and jobs ---------------------------------------------------- */

void session_wait(struct session *s)
{
	s->busy++;
	if (s->conn != NULL)
		conn_pause_input(s->conn);
}

void session_resume(struct session *s)
{
	if (s->busy > 0)
		s->busy--;
	if (s->busy > 0)
		return;
	if (s->conn == NULL) {
		session_free(s); /* the client left while we waited */
		return;
	}
	if (s->pump.step != NULL && !pump_run(s))
		return; /* on_drained carries on */
	command_over(s);
}

struct async_job {
	struct session *s;
	void (*work)(void *arg);
	void (*done)(struct session *s, void *arg);
	void *arg;
};

static void async_work(void *p)
{
	struct async_job *j = p;
	j->work(j->arg);
}

static void async_done(void *p)
{
	struct async_job *j = p;
	struct session *s = j->s;
	j->done(s, j->arg);
	free(j);
	session_resume(s);
}

int session_async(struct session *s, void (*work)(void *arg),
		  void (*done)(struct session *s, void *arg), void *arg)
{
	struct async_job *j = malloc(sizeof(*j));
	if (j == NULL)
		return -1;
	j->s = s;
	j->work = work;
	j->done = done;
	j->arg = arg;
	if (jobs_run(s->env->jobs, async_work, async_done, j) < 0) {
		free(j);
		return -1;
	}
	session_wait(s);
	return 0;
}

void session_pump(struct session *s, int (*step)(struct session *s, void *arg),
		  void (*cancel)(void *arg), void *arg)
{
	s->pump.step = step;
	s->pump.cancel = cancel;
	s->pump.arg = arg;
	if (s->conn == NULL)
		return; /* cannot happen from a handler; on_closed cancels */
	conn_pause_input(s->conn);
	if (s->busy == 0 && pump_run(s))
		command_over(s);
}

/* ---- shutdown, commands -------------------------------------------------- */

void session_shutdown_all(struct session_env *env)
{
	for (struct session *s = env->list, *next; s != NULL; s = next) {
		next = s->next; /* shutdown may close s (freed later, not now) */
		if (s->conn == NULL || s->shut_down)
			continue;
		s->shut_down = true;
		s->proto->shutdown(s);
	}
}

enum session_cmd_result session_cmd_find(const void *table, size_t n, size_t row_size,
					 const char *name, unsigned state,
					 const struct session_cmd **row_r)
{
	const char *p = table;
	for (size_t i = 0; i < n; i++, p += row_size) {
		const struct session_cmd *row = (const struct session_cmd *)(const void *)p;
		if (strcasecmp(row->name, name) != 0)
			continue;
		*row_r = row;
		return (row->states & (1u << state)) ? SESSION_CMD_OK : SESSION_CMD_BAD_STATE;
	}
	return SESSION_CMD_UNKNOWN;
}
