/*
 * imap_thread.h: THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256 3)
 * over messages already described by imap_cmd_sort.c: the algorithms only,
 * no I/O. The caller owns the strings.
 */
#ifndef MAILROOM_IMAP_THREAD_H
#define MAILROOM_IMAP_THREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

struct imap_thread_msg {
	uint32_t num;	   /* what the response shows: sequence number or UID */
	uint32_t seq;	   /* ties are broken by it */
	int64_t date;	   /* sent date (UTC seconds), else the internal date */
	const char *base;  /* base subject, case-mapped (RFC 5256 2.1) */
	bool is_reply;	   /* a reply/forward was removed from the subject */
	const char *msgid; /* "<...>" or NULL */
	const char *refs;  /* References field value, or NULL */
	const char *irt;   /* In-Reply-To value, or NULL */
};

/* Append "(..)(..)" (the threads, RFC 5256 4 thread-list*) to out.
 * 0, or -1 when out of memory. msgs are in sequence order. */
int imap_thread_orderedsubject(const struct imap_thread_msg *msgs, size_t n, struct buf *out);
int imap_thread_references(const struct imap_thread_msg *msgs, size_t n, struct buf *out);

#endif
