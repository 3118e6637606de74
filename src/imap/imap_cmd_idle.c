/*
 * imap_cmd_idle.c: IDLE (RFC 9051 6.3.13, RFC 2177).
 *
 * Design note. A session in IDLE registers its selected mailbox with the
 * worker's one store_notify (inotify on the mailbox's directories and
 * index); a change anywhere (a delivery, another session, a file dropped
 * in by hand) makes the notify fd readable, and wakeup() reads the change
 * on a job thread (it may wait for a delivery's mailbox lock) and folds it
 * into the view on the loop, which pushes EXISTS/EXPUNGE/FETCH at once.
 * While idling the session holds no index connection and no directory
 * descriptors (both reopen on the next change or command): most
 * connections spend their life here. The only input is a line: DONE.
 */
#include "imap/imap_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>

#include "lib/config.h"

static struct store_notify *notify;
static struct event *notify_ev;

static void wakeup(void *session);

static void notify_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	store_notify_read(notify, wakeup);
}

/* Start watching the selected mailbox for changes. */
static int watch(struct imap_session *s)
{
	if (notify == NULL) {
		notify = store_notify_new();
		if (notify == NULL)
			return -1;
		notify_ev = event_new(s->base.env->base, store_notify_fd(notify), EV_READ | EV_PERSIST,
				      notify_cb, NULL);
		if (notify_ev == NULL || event_add(notify_ev, NULL) < 0)
			return -1;
	}
	if (s->watch_id == 0)
		s->watch_id = store_notify_add(notify, s->view->mbox, s);
	return s->watch_id != 0 ? 0 : -1;
}

void imap_cmd_idle_unwatch(struct imap_session *s)
{
	if (s->watch_id != 0 && notify != NULL)
		store_notify_remove(notify, s->watch_id);
	s->watch_id = 0;
}

/* Give back the index connection and the directory descriptors while
 * idling (both reopen on the next change or command). */
static void release(struct imap_session *s)
{
	store_user_release_index(s->suser);
	if (s->view != NULL)
		store_mailbox_release_fds(s->view->mbox);
}

/* A change is folded in off the loop: reading it may wait for the
 * mailbox lock of a delivery in progress, and that wait must not hold up
 * the worker's other sessions. The session is busy meanwhile, so its store
 * objects belong to the job; DONE waits in the input buffer. */
struct idle_sync {
	struct imap_session *s;
	struct imap_view_changes changes;
	struct error err;
	int rc;
};

static void sync_work(void *arg)
{
	struct idle_sync *j = arg;
	j->rc = imap_view_changes_read(j->s->view, true, &j->changes, &j->err);
}

static void sync_done(struct session *base, void *arg)
{
	struct imap_session *s = imap_session_of(base);
	struct idle_sync *j = arg;
	if (s->idling && s->base.conn != NULL) {
		if (j->rc == 0)
			imap_view_changes_apply(s, &j->changes);
		release(s);
	}
	imap_view_changes_free(&j->changes);
	free(j);
	if (s->idle_again && s->idling && !s->base.closing) {
		s->idle_again = false;
		wakeup(s);
	}
}

static void wakeup(void *session)
{
	struct imap_session *s = session;
	if (!s->idling || s->view == NULL || s->base.conn == NULL || s->base.closing)
		return;
	if (s->base.busy > 0) {
		s->idle_again = true; /* a sync is running: one more after it */
		return;
	}
	struct idle_sync *j = calloc(1, sizeof(*j));
	if (j != NULL) {
		j->s = s;
		if (session_async(&s->base, sync_work, sync_done, j) == 0)
			return;
		free(j);
	}
	/* No job: do it here rather than not at all. */
	imap_view_sync(s, true);
	if (s->base.closing)
		session_close(&s->base);
	else
		release(s);
}

static int cmd_idle(struct imap_session *s, const struct imap_command *cmd)
{
	if (cmd->argc != 0) {
		imap_send_tagged(s, cmd, "BAD", "IDLE takes no arguments");
		return 0;
	}
	s->idling = true;
	imap_send(s, "+ idling\r\n");
	if (s->view != NULL) {
		imap_view_sync(s, true);
		watch(s);
	}
	/* Most connections spend their life in IDLE: hold no index connection
	 * and no directory descriptors meanwhile (the inotify watches need
	 * neither). */
	release(s);
	/* RFC 9051 6.3.13: IDLE outlives the autologout timer. */
	session_set_timeout(&s->base, (unsigned)config_uint(s->base.env->config, "imap_idle_timeout"));
	return 0;
}

void imap_cmd_idle_line(struct imap_session *s, const char *line, size_t len)
{
	s->idling = false;
	imap_cmd_idle_unwatch(s);
	session_set_timeout(&s->base, (unsigned)config_uint(s->base.env->config, "imap_autologout"));
	if (len != 4 || strncasecmp(line, "DONE", 4) != 0) {
		imap_send_tagged(s, NULL, "BAD", "Expected DONE");
	} else {
		imap_view_sync(s, true);
		imap_send_tagged(s, NULL, "OK", "IDLE terminated");
	}
	free(s->cmd_tag);
	s->cmd_tag = NULL;
}

static const struct imap_cmd_def rows[] = {
	{ { "IDLE", IMAP_IN_AUTH }, cmd_idle, 0 },
};
const struct imap_cmd_family imap_cmd_idle = { rows, sizeof(rows) / sizeof(rows[0]) };
