/*
 * jobs.h: a small thread pool per event loop, for work that can block on the
 * disk (the fsync of an APPEND, the reconcile of a big mailbox), so that one
 * session's slow disk does not stall the other sessions of its worker.
 *
 * work(arg) runs on a pool thread; then done(arg) runs on the loop's thread.
 * The caller must not touch what work() uses until done() runs (a session
 * pauses its input meanwhile). Jobs of one pool run in any order.
 */
#ifndef MAILROOM_JOBS_H
#define MAILROOM_JOBS_H

struct event_base;
struct jobs;

struct jobs *jobs_new(struct event_base *base, unsigned threads);
/* 0, or -1 if the job could not be queued (out of memory). */
int jobs_run(struct jobs *j, void (*work)(void *arg), void (*done)(void *arg), void *arg);
/* Number of jobs queued or running. */
unsigned jobs_pending(const struct jobs *j);
/* Wait for every job, run their done()s, and stop the threads. */
void jobs_free(struct jobs **j);

#endif
