/*
 * worker.c: one worker process: a libevent loop that accepts on the shared
 * listening sockets and runs the protocol sessions.
 *
 * SIGTERM: stop accepting, tell every session to finish (BYE) and exit when
 * they are gone (or after 10 seconds). SIGUSR1 (the master replacing workers
 * after SIGHUP): stop accepting, let the sessions run to their natural end,
 * then exit; no connection is dropped.
 *
 * A worker that cannot start (DATA unreadable, out of memory) tells the
 * master why through args->status_fd and exits 1: the master logs it once
 * per restart back-off instead of once per death (throttle.c).
 */
#include "server/server.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "auth/auth_client.h"
#include "imap/imap.h"
#include "lmtp/lmtp.h"
#include "pop3/pop3.h"
#include "lib/config.h"
#include "session/conn.h"
#include "session/jobs.h"
#include "lib/log.h"
#include "store/store.h"

struct worker {
	struct event_base *base;
	const struct worker_args *args;
	struct session_env env;
	struct evconnlistener **lst;
	size_t nlst;
	int stopping; /* 1 draining, 2 shutting down */
	time_t stop_started;
	time_t last_accept_error;
	struct event *tick;
	struct event *resume;
};

struct accept_ctx {
	struct worker *w;
	const struct listener *l;
};

static void accept_cb(struct evconnlistener *el, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	struct accept_ctx *ac = arg;
	struct worker *w = ac->w;
	(void)el;
	if (w->env.sessions >= config_uint(w->args->config, "max_connections_per_worker")) {
		close(fd);
		return;
	}
	int implicit = ac->l->proto == PROTO_IMAPS || ac->l->proto == PROTO_POP3S;
	struct conn *c = conn_new(w->base, fd, implicit ? w->args->tls : NULL, sa, (socklen_t)salen);
	if (c == NULL)
		return;
	switch (ac->l->proto) {
	case PROTO_IMAP:
	case PROTO_IMAPS:
		session_start(&w->env, &imap_proto, c);
		break;
	case PROTO_LMTP:
		session_start(&w->env, &lmtp_proto, c);
		break;
	case PROTO_POP3:
	case PROTO_POP3S:
		session_start(&w->env, &pop3_proto, c);
		break;
	default:
		conn_close(c); /* not offered (the master does not bind these) */
		break;
	}
}

/* accept() failed: out of descriptors (EMFILE/ENFILE) or memory. Stop
 * accepting on every listener for a second instead of spinning (and
 * logging) on a connection we cannot take; it waits in the backlog. */
static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	(void)fd;
	(void)what;
	for (size_t i = 0; i < w->nlst; i++)
		if (w->lst[i] != NULL)
			evconnlistener_enable(w->lst[i]);
}

static void accept_error_cb(struct evconnlistener *el, void *arg)
{
	struct accept_ctx *ac = arg;
	struct worker *w = ac->w;
	(void)el;
	time_t now = time(NULL);
	if (now != w->last_accept_error) {
		log_error("accept: %s; pausing new connections for a second",
			  evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		w->last_accept_error = now;
	}
	for (size_t i = 0; i < w->nlst; i++)
		if (w->lst[i] != NULL)
			evconnlistener_disable(w->lst[i]);
	struct timeval tv = { 1, 0 };
	event_add(w->resume, &tv);
}

static void stop_accepting(struct worker *w)
{
	for (size_t i = 0; i < w->nlst; i++)
		if (w->lst[i] != NULL) {
			evconnlistener_free(w->lst[i]);
			w->lst[i] = NULL;
		}
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	(void)fd;
	(void)what;
	if (w->stopping == 0)
		return;
	if (w->env.sessions == 0 || (w->stopping == 2 && time(NULL) - w->stop_started > 10))
		event_base_loopexit(w->base, NULL);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct worker *w = arg;
	(void)what;
	stop_accepting(w);
	if (sig == SIGTERM && w->stopping != 2) {
		w->stopping = 2;
		w->stop_started = time(NULL);
		session_shutdown_all(&w->env);
	} else if (sig == SIGUSR1 && w->stopping == 0) {
		w->stopping = 1;
	}
	tick_cb(-1, 0, w);
}

/* Why the worker cannot start: to the master if it listens, else logged. */
static void __attribute__((format(printf, 2, 3)))
startup_failed(const struct worker_args *args, const char *fmt, ...)
{
	char text[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (args->status_fd < 0 || write(args->status_fd, text, strlen(text)) < 0)
		log_error("worker: %s", text);
}

int worker_run(const struct worker_args *args)
{
	struct worker w;
	struct error serr;
	struct accept_ctx *acs = NULL;
	int rc = 1;

	memset(&w, 0, sizeof(w));
	w.args = args;
	signal(SIGPIPE, SIG_IGN);
	w.base = event_base_new();
	if (w.base == NULL) {
		startup_failed(args, "cannot make an event loop");
		return 1;
	}
	w.env.base = w.base;
	w.env.config = args->config;
	w.env.tls = args->tls;
	if (store_open(args->data_dir, args->config, &w.env.store, &serr) < 0) {
		startup_failed(args, "%s", serr.text);
		goto out;
	}
	w.env.auth = auth_client_new(w.base, args->auth_fd);
	/* Jobs mostly wait for fsync: more threads than cores keep the disk
	 * busy while others wait. */
	w.env.jobs = jobs_new(w.base, 4);
	if (w.env.auth == NULL || w.env.jobs == NULL) {
		startup_failed(args, "cannot start the auth client or the job threads");
		goto out;
	}
	w.resume = evtimer_new(w.base, resume_cb, &w);
	acs = calloc(args->listeners->n, sizeof(*acs));
	w.lst = calloc(args->listeners->n, sizeof(*w.lst));
	if (acs == NULL || w.lst == NULL) {
		startup_failed(args, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < args->listeners->n; i++) {
		const struct listener *l = &args->listeners->v[i];
		acs[i].w = &w;
		acs[i].l = l;
		w.lst[i] = evconnlistener_new(w.base, accept_cb, &acs[i], LEV_OPT_REUSEABLE, -1, l->fd);
		if (w.lst[i] == NULL) {
			startup_failed(args, "cannot accept on %s", l->name);
			goto out;
		}
		evconnlistener_set_error_cb(w.lst[i], accept_error_cb);
		w.nlst++;
	}
	struct event *sterm = evsignal_new(w.base, SIGTERM, signal_cb, &w);
	struct event *susr1 = evsignal_new(w.base, SIGUSR1, signal_cb, &w);
	struct timeval second = { 1, 0 };
	w.tick = event_new(w.base, -1, EV_PERSIST, tick_cb, &w);
	event_add(sterm, NULL);
	event_add(susr1, NULL);
	event_add(w.tick, &second);
	if (args->status_fd >= 0)
		close(args->status_fd); /* started: later deaths speak for themselves */
	event_base_dispatch(w.base);
	event_free(sterm);
	event_free(susr1);
	event_free(w.tick);
	rc = 0;
out:
	stop_accepting(&w);
	if (w.resume != NULL)
		event_free(w.resume);
	free(w.lst);
	free(acs);
	jobs_free(&w.env.jobs);
	auth_client_free(&w.env.auth);
	store_close(&w.env.store);
	event_base_free(w.base);
	return rc;
}
