/*
 * pop3_transfer.c: the multi-line responses LIST, UIDL, RETR and TOP,
 * produced as the client reads them.
 *
 * Each is a session_pump() step (session.h): the core calls it while the
 * connection's output is below CONN_OUTPUT_HIGH, and again from the
 * drained callback; input is paused meanwhile, so pipelined commands wait
 * their turn. A step writes one bounded piece: PUMP_LINES lines of a
 * listing, or one PUMP_CHUNK of a message file passed through pop3_stream
 * (byte-stuffing, bare LF to CRLF). A message is never read whole, so a
 * client that pipelines RETRs of a 1 GB maildrop without reading costs
 * about CONN_OUTPUT_HIGH plus one chunk. If the client leaves first, the
 * core cancels the pump, which closes the file.
 *
 * Sizes. The RETR "+OK" line (pop3_cmd.c) announces the size as counted at
 * login, before stuffing; what the steps send matches it byte for byte
 * once unstuffed (pop3_stream.h).
 */
#include "pop3/pop3_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lib/log.h"
#include "session/conn.h"

/* Bytes of a message file read per step of a RETR/TOP. */
#define PUMP_CHUNK (32 * 1024)
/* LIST/UIDL lines written per step. */
#define PUMP_LINES 256

/* The steps run on the event loop thread only, one at a time. */
static unsigned char pump_in[PUMP_CHUNK];
static unsigned char pump_out[PUMP_CHUNK * POP3_STREAM_EXPANSION + POP3_STREAM_FINISH_MAX];

/* ---- LIST, UIDL ----------------------------------------------------------- */

static int step_lines(struct session *base, void *arg)
{
	struct pop3_session *s = arg;
	char buf[PUMP_LINES * 40 + 8];
	size_t n = 0;
	(void)base;
	for (unsigned k = 0; k < PUMP_LINES && s->out.next < s->nmsgs; s->out.next++) {
		const struct pop3_msg *m = &s->msgs[s->out.next];
		if (m->deleted)
			continue; /* RFC 1939 5: deleted messages are not listed */
		if (s->out.uidl) {
			char uidl[POP3_UIDL_SIZE];
			pop3_resp_uidl(s, m, uidl);
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%zu %s\r\n",
					      s->out.next + 1, uidl);
		} else {
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%zu %llu\r\n",
					      s->out.next + 1, (unsigned long long)m->size);
		}
		k++;
	}
	bool end = s->out.next == s->nmsgs;
	if (end) {
		memcpy(buf + n, ".\r\n", 3);
		n += 3;
	}
	session_write(&s->base, buf, n);
	return end;
}

static void start_lines(struct pop3_session *s, bool uidl)
{
	s->out.uidl = uidl;
	s->out.next = 0;
	/* Nothing to release if the client leaves: no cancel. */
	session_pump(&s->base, step_lines, NULL, s);
}

void pop3_transfer_list(struct pop3_session *s)
{
	start_lines(s, false);
}

void pop3_transfer_uidl(struct pop3_session *s)
{
	start_lines(s, true);
}

/* ---- RETR, TOP -------------------------------------------------------------- */

static void message_close(void *arg)
{
	struct pop3_session *s = arg;
	if (s->out.fd >= 0)
		close(s->out.fd);
	s->out.fd = -1;
}

static int step_message(struct session *base, void *arg)
{
	struct pop3_session *s = arg;
	(void)base;
	ssize_t n = pread(s->out.fd, pump_in, sizeof(pump_in), (off_t)s->out.offset);
	if (n < 0 && errno == EINTR)
		return 0;
	if (n < 0) {
		/* The +OK is out: there is no way to say -ERR any more. Drop
		 * the connection so the client does not take a partial
		 * message for a whole one. */
		log_error("pop3 %s user=%s: read message: %s", s->base.id, s->user,
			  strerror(errno));
		message_close(s);
		conn_abort(s->base.conn);
		session_close(&s->base);
		return 1;
	}
	size_t w = 0;
	if (n > 0) {
		size_t used;
		w = pop3_stream_encode(&s->out.stream, pump_in, (size_t)n, pump_out, &used);
		s->out.offset += used;
	}
	bool end = n == 0 || pop3_stream_done(&s->out.stream);
	if (end) {
		w += pop3_stream_finish(&s->out.stream, pump_out + w);
		message_close(s);
	}
	s->retr_bytes += w;
	session_write(&s->base, pump_out, w);
	return end;
}

void pop3_transfer_message(struct pop3_session *s, int fd, bool top, uint64_t body_lines)
{
	s->out.fd = fd;
	s->out.offset = 0;
	pop3_stream_init(&s->out.stream, top, body_lines);
	session_pump(&s->base, step_message, message_close, s);
}
