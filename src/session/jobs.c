/* jobs.c: thread pool with completions delivered to a libevent loop. */
#include "session/jobs.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

struct job {
	void (*work)(void *);
	void (*done)(void *);
	void *arg;
	struct job *next;
};

struct jobs {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct job *queue, *queue_tail;
	struct job *finished;
	unsigned pending;
	int stop;
	int efd;
	struct event *ev;
	unsigned nthreads;
	pthread_t threads[];
};

static void *worker(void *arg)
{
	struct jobs *j = arg;
	pthread_mutex_lock(&j->lock);
	for (;;) {
		while (j->queue == NULL && !j->stop)
			pthread_cond_wait(&j->cond, &j->lock);
		if (j->queue == NULL && j->stop)
			break;
		struct job *job = j->queue;
		j->queue = job->next;
		if (j->queue == NULL)
			j->queue_tail = NULL;
		pthread_mutex_unlock(&j->lock);
		job->work(job->arg);
		pthread_mutex_lock(&j->lock);
		job->next = j->finished;
		j->finished = job;
		uint64_t one = 1;
		if (write(j->efd, &one, sizeof(one)) < 0) {
			/* eventfd cannot overflow at our rates; nothing to do */
		}
	}
	pthread_mutex_unlock(&j->lock);
	return NULL;
}

static void run_finished(struct jobs *j)
{
	pthread_mutex_lock(&j->lock);
	struct job *list = j->finished;
	j->finished = NULL;
	pthread_mutex_unlock(&j->lock);
	while (list != NULL) {
		struct job *next = list->next;
		pthread_mutex_lock(&j->lock);
		j->pending--;
		pthread_mutex_unlock(&j->lock);
		list->done(list->arg);
		free(list);
		list = next;
	}
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t n;
	(void)what;
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		return;
	run_finished(arg);
}

struct jobs *jobs_new(struct event_base *base, unsigned threads)
{
	if (threads == 0)
		threads = 1;
	struct jobs *j = calloc(1, sizeof(*j) + threads * sizeof(pthread_t));
	if (j == NULL)
		return NULL;
	pthread_mutex_init(&j->lock, NULL);
	pthread_cond_init(&j->cond, NULL);
	j->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (j->efd < 0)
		goto fail;
	j->ev = event_new(base, j->efd, EV_READ | EV_PERSIST, wake_cb, j);
	if (j->ev == NULL || event_add(j->ev, NULL) < 0)
		goto fail;
	for (unsigned i = 0; i < threads; i++) {
		if (pthread_create(&j->threads[i], NULL, worker, j) != 0)
			break;
		j->nthreads++;
	}
	if (j->nthreads == 0)
		goto fail;
	return j;
fail:
	if (j->ev)
		event_free(j->ev);
	if (j->efd >= 0)
		close(j->efd);
	free(j);
	return NULL;
}

int jobs_run(struct jobs *j, void (*work)(void *arg), void (*done)(void *arg), void *arg)
{
	struct job *job = malloc(sizeof(*job));
	if (job == NULL)
		return -1;
	job->work = work;
	job->done = done;
	job->arg = arg;
	job->next = NULL;
	pthread_mutex_lock(&j->lock);
	if (j->queue_tail)
		j->queue_tail->next = job;
	else
		j->queue = job;
	j->queue_tail = job;
	j->pending++;
	pthread_cond_signal(&j->cond);
	pthread_mutex_unlock(&j->lock);
	return 0;
}

unsigned jobs_pending(const struct jobs *j)
{
	return j->pending;
}

void jobs_free(struct jobs **jp)
{
	struct jobs *j = *jp;
	if (j == NULL)
		return;
	pthread_mutex_lock(&j->lock);
	j->stop = 1;
	pthread_cond_broadcast(&j->cond);
	pthread_mutex_unlock(&j->lock);
	for (unsigned i = 0; i < j->nthreads; i++)
		pthread_join(j->threads[i], NULL);
	run_finished(j);
	event_free(j->ev);
	close(j->efd);
	pthread_mutex_destroy(&j->lock);
	pthread_cond_destroy(&j->cond);
	free(j);
	*jp = NULL;
}
