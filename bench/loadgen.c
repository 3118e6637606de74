/*
 * loadgen.c: load generator for mailroom's benchmarks: IMAP connections in
 * IDLE and how fast a delivery reaches them, LMTP deliveries, POP3
 * downloads and a mixed IMAP load. Built by bench/imap/run and
 * bench/compare/run with
 *   cc -std=gnu11 -O2 -Wall -Wextra -Werror bench/loadgen.c $(pkg-config --cflags --libs libevent)
 * and needs nothing of mailroom.
 *
 *   loadgen MODE [OPTIONS]     MODE is idle, lmtp, pop3 or mixed
 *   loadgen -p PORT ...        (first argument an option) the same as idle
 *
 * Every mode connects to HOST:PORT (-H, default 127.0.0.1) from one of
 * NADDR (-a, default 1) source addresses 127.0.0.2, 127.0.0.3, ... (bind()
 * with IP_BIND_ADDRESS_NO_PORT before connect(), so the 4-tuples, not one
 * address's ephemeral ports, limit the count). A USER or RCPT format is a
 * printf format taking one int, the session number modulo NUSERS ("u%d"),
 * when NUSERS (-U) is above 0, else a plain name used as it is.
 *
 * == idle ==
 *   loadgen [idle] -p PORT -n N [-H 127.0.0.1] [-a NADDR] [-u USER] [-U NUSERS]
 *           [-w PASSWORD] [-m MAILBOX] [-c INFLIGHT] [-T RAMP_SECONDS]
 *
 * Opens N connections. Each connection: greeting, LOGIN, SELECT MAILBOX,
 * IDLE, "+". At most INFLIGHT connections are between connect and "+" at
 * once (the auth process hashes one password at a time). USER and PASSWORD
 * default to "bench".
 *
 * Then a line on standard output:
 *   READY idle=I failed=F seconds=S connect=.. closed=.. login=.. select=.. idlecmd=..
 *   (the failures by the step that failed)
 * and commands are read from standard input, one per line:
 *   ARM                  take every idle connection's current EXISTS as its
 *                        baseline; answers "ARMED"
 *   DELIVERED T0 T1 [S [Q]]  the bench took CLOCK_MONOTONIC T0 (ns) right
 *                        before starting the delivery and T1 right after it
 *                        returned. Waits until every armed connection has
 *                        seen "* n EXISTS" with n above its baseline, or S
 *                        seconds (default 10) after this line, or Q seconds
 *                        (default S) without a new arrival, then prints
 *   ROUND got=G of=I p50=.. p99=.. max=.. min=.. (ms from T0) p50_t1=.. p99_t1=.. (ms from T1)
 *   QUIT                 exit (also at end of input)
 * Arrival times are taken with CLOCK_MONOTONIC when the line is parsed, so
 * an EXISTS that arrives before the DELIVERED line (the usual case: the
 * push is sent while `mailroom deliver` is still finishing) counts exactly.
 * Every loop is bounded by the timeouts above. A usage error exits with 64.
 *
 * == lmtp ==
 *   loadgen lmtp -p PORT -c SESSIONS -r RCPT_FMT [-U NUSERS] [-R RCPTS_PER_TXN]
 *           [-d SECONDS] [-N MAX_TXNS] [-H ..] [-a ..] (-L LISTFILE | MSGFILE...)
 *
 * SESSIONS sessions each: greeting, LHLO, then transactions until the run
 * ends, then QUIT. Transaction k (counted over all sessions from 0) sends
 * message k % nmsgs, the messages being the MSGFILE arguments and the lines
 * of LISTFILE (files with CRLF line ends). No transaction starts once k
 * reaches MAX_TXNS or SECONDS have passed (at least one of -d, -N); those
 * in flight finish. A transaction is one write of MAIL FROM, R (default 1)
 * RCPT TO and DATA (RFC 2920 pipelining); recipient j of session s is
 * RCPT_FMT with (s*R + j) % NUSERS. After 354 the message is streamed from
 * its file, dot-stuffed, through an output buffer refilled as it drains (a
 * 2 MB message is never held whole), and one reply per accepted recipient
 * is read (RFC 2033 4.2). A DATA refused (no recipient accepted) is
 * followed by RSET. A transaction is ok when every recipient's final reply
 * is 2xx; its latency runs from MAIL to the last of those replies.
 *   RESULT mode=lmtp ok=N fail=F rcpt_ok=.. rcpt_fail=.. seconds=S rate=N/S
 *          p50=.. p99=.. max=.. conn_fail=C
 * (latencies of the ok transactions; conn_fail: sessions that failed, for
 * a connection lost, a timeout or a refused greeting or LHLO; a
 * transaction in flight then is counted in fail.)
 *
 * == pop3 ==
 *   loadgen pop3 -p PORT -u USER_FMT [-U NUSERS] -w PASSWORD [-c SESSIONS]
 *           [-n MAXMSG] [-H ..] [-a ..]
 *
 * SESSIONS (default 1) sessions at once each: greeting, USER, PASS (login
 * time: from connect to the +OK of PASS), STAT, RETR 1..min(count, MAXMSG)
 * with up to 8 commands outstanding, QUIT. No DELE. bytes counts the
 * message lines as received (dot-stuffed, with their line ends).
 *   RESULT mode=pop3 sessions=S fail=F msgs=M bytes=B login_p50=.. login_max=..
 *          retr_ms_p50=.. retr_ms_max=.. seconds=..
 * (retr_ms: per session, from the first RETR sent to the end of the last
 * one's response; an -ERR or a lost connection fails the session.)
 *
 * == mixed ==
 *   loadgen mixed -p PORT -n CLIENTS -d SECONDS -u USER_FMT [-U NUSERS]
 *           -w PASSWORD [-m MAILBOX] [-f APPEND_MSGFILE] [-s SEED] [-H ..] [-a ..]
 *
 * CLIENTS IMAP sessions at once each: greeting, LOGIN, SELECT MAILBOX
 * (default INBOX), then for SECONDS one operation at a time, drawn with a
 * PRNG seeded with SEED+i for client i (SEED default 1) by these weights:
 *   select 10         SELECT MAILBOX again
 *   fetch_headers 35  FETCH a:b (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (..)]),
 *                     up to 50 messages
 *   fetch_body 25     FETCH n (BODY.PEEK[])
 *   flag 15           STORE n +FLAGS (\Flagged), -FLAGS (\Flagged) or +FLAGS (\Seen)
 *   expunge 5         STORE n +FLAGS.SILENT (\Deleted), then EXPUNGE
 *   append 10         APPEND MAILBOX {size} (synchronizing literal) of
 *                     APPEND_MSGFILE or a built-in 3 KB message
 * then LOGOUT. An operation that needs a message is an append while EXISTS
 * (from "* n EXISTS", less one per "* n EXPUNGE") is 0. Latency: from the
 * command to its tagged reply (expunge: from STORE to EXPUNGE's). Literals
 * in responses are skipped in the input buffer, never copied.
 *   OP kind=K n=OK fail=F p50=.. p99=.. max=..      (one per kind)
 *   RESULT mode=mixed clients=C ops=OK fail=F seconds=S rate=OK/S
 * (a tagged NO or BAD fails the operation and the client goes on; a lost
 * connection ends the client and fails its operation in flight, or counts
 * in fail alone before SELECT. seconds: from the first client's first
 * operation to the last client's LOGOUT.)
 *
 * In lmtp, pop3 and mixed output, tokens are key=value; times are in ms
 * from CLOCK_MONOTONIC, p50 and p99 being the samples at index
 * floor(p * (n - 1)) of the sorted samples. When anything failed a last line
 *   FIRSTFAIL reply="..."
 * quotes the first failing reply line (or what went wrong locally; '"' is
 * shown as '\''). No step waits more than 60 s for the server. The exit
 * status is 0 when the run completed (whatever failed is counted above), 1
 * on a usage error or when no session got through its login (or LHLO).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

/* ==== shared by the modes ================================================== */

/* A session that hears nothing from the server for this long fails: it
 * bounds every wait of the lmtp, pop3 and mixed modes. */
#define STEP_TIMEOUT_SECONDS 60
/* A peer that sends this much without a line end fails its session rather
 * than growing the input buffer. */
#define LINE_LIMIT (4u << 20)
/* The start of a reply line kept for parsing and FIRSTFAIL. */
#define LINE_COPY 1024
/* Large responses (2 MB messages) are read in big slices, not 16 KB ones. */
#define READ_SLICE (256 * 1024)

static struct event_base *base;
static struct sockaddr_in server_sa;

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int set_server(const char *host, int port)
{
	if (port <= 0 || port > 65535)
		return -1;
	server_sa.sin_family = AF_INET;
	server_sa.sin_port = htons((uint16_t)port);
	return inet_pton(AF_INET, host, &server_sa.sin_addr) == 1 ? 0 : -1;
}

/* One descriptor per connection, plus a few. */
static void raise_nofile(unsigned n)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < (rlim_t)n + 32)
		fprintf(stderr, "loadgen: RLIMIT_NOFILE is %llu, too low for %u connections\n",
			(unsigned long long)rl.rlim_cur, n);
}

/* The whole of s as a number in 0..max into *out; 0, or -1. */
static int parse_uint(const char *s, unsigned long max, unsigned *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (s[0] < '0' || s[0] > '9' || errno != 0 || *end != '\0' || v > max)
		return -1;
	*out = (unsigned)v;
	return 0;
}

/* A positive duration of at most a day; 0, or -1. */
static int parse_seconds(const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || *end != '\0' || !(v > 0 && v <= 86400))
		return -1;
	*out = v;
	return 0;
}

/*
 * A USER or RCPT format must take exactly one int (%d, %i or %u; other '%'
 * only as "%%"): printf would read an argument that is not there for
 * anything else. 1 when fmt is such a format.
 */
static int int_format_ok(const char *fmt)
{
	unsigned convs = 0;
	for (const char *p = fmt; *p != '\0'; p++) {
		if (*p != '%')
			continue;
		p++;
		if (*p == '%')
			continue;
		if (*p != 'd' && *p != 'i' && *p != 'u')
			return 0;
		convs++;
	}
	return convs == 1;
}

/* fmt with k % nusers when nusers > 0 (checked by int_format_ok), else fmt itself. */
static void format_name(const char *fmt, unsigned nusers, unsigned k, char *out, size_t size)
{
	if (nusers == 0) {
		snprintf(out, size, "%s", fmt);
		return;
	}
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	snprintf(out, size, fmt, (int)(k % nusers));
#pragma GCC diagnostic pop
}

/*
 * Starts connection i to server_sa from 127.0.0.2 + i % naddr, with
 * TCP_NODELAY (a command's last small segment must not wait for the ACK of
 * the one before). Returns a bufferevent owned by the caller, callbacks set,
 * reading and writing enabled; BEV_EVENT_CONNECTED or an error follows.
 * NULL on failure, with static text in *error_r.
 */
static struct bufferevent *connect_from(unsigned i, unsigned naddr, bufferevent_data_cb rd,
					bufferevent_data_cb wr, bufferevent_event_cb ev, void *arg,
					const char **error_r)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*error_r = "socket() failed";
		return NULL;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct sockaddr_in src = { .sin_family = AF_INET };
	src.sin_addr.s_addr = htonl(0x7f000002u + i % naddr); /* 127.0.0.2 + k */
	if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
		close(fd);
		*error_r = "bind() to the source address failed";
		return NULL;
	}
	struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		close(fd);
		*error_r = "bufferevent_socket_new() failed";
		return NULL;
	}
	bufferevent_setcb(bev, rd, wr, ev, arg);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(bev, (struct sockaddr *)&server_sa, sizeof(server_sa)) < 0) {
		bufferevent_free(bev);
		*error_r = "connect() failed";
		return NULL;
	}
	return bev;
}

/* For the lmtp, pop3 and mixed sessions: bounded waits, big reads. */
static void session_tune(struct bufferevent *bev)
{
	struct timeval tv = { STEP_TIMEOUT_SECONDS, 0 };
	bufferevent_set_timeouts(bev, &tv, &tv);
	bufferevent_set_max_single_read(bev, READ_SLICE);
}

/* What a bufferevent error event means, for FIRSTFAIL; valid until the next call. */
static const char *event_text(short what, int connecting)
{
	static char buf[200];
	if (what & BEV_EVENT_TIMEOUT)
		return "timeout: no answer from the server";
	if (what & BEV_EVENT_EOF)
		return "connection closed by the server";
	snprintf(buf, sizeof(buf), "%s: %s", connecting ? "connect" : "connection error",
		 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	return buf;
}

/*
 * Finds the first line in in: *len_r its length without the line end
 * (CRLF or LF), *eol_r the line end's. Returns 1, 0 when no full line is
 * buffered yet, -1 when LINE_LIMIT bytes wait without a line end.
 */
static int find_line(struct evbuffer *in, size_t *len_r, size_t *eol_r)
{
	size_t eol = 0;
	struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol, EVBUFFER_EOL_CRLF);
	if (p.pos < 0)
		return evbuffer_get_length(in) >= LINE_LIMIT ? -1 : 0;
	*len_r = (size_t)p.pos;
	*eol_r = eol;
	return 1;
}

/* find_line, then the line's first size-1 bytes into buf (NUL-terminated)
 * and the line drained. Same returns. */
static int take_line(struct evbuffer *in, char *buf, size_t size, size_t *len_r, size_t *eol_r)
{
	size_t len, eol;
	int r = find_line(in, &len, &eol);
	if (r <= 0)
		return r;
	size_t n = len < size - 1 ? len : size - 1;
	evbuffer_copyout(in, buf, n);
	buf[n] = '\0';
	evbuffer_drain(in, len + eol);
	*len_r = len;
	*eol_r = eol;
	return 1;
}

/* Latency samples in ns; every one is kept, for exact percentiles. */
struct samples {
	int64_t *v;
	size_t n, cap;
};

static void samples_add(struct samples *s, int64_t ns)
{
	if (s->n == s->cap) {
		size_t cap = s->cap != 0 ? s->cap * 2 : 1024;
		int64_t *v = realloc(s->v, cap * sizeof(*v));
		if (v == NULL) {
			/* a sample lost would bias the percentiles: better no result */
			fprintf(stderr, "loadgen: out of memory for latency samples\n");
			exit(1);
		}
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = ns;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static void samples_sort(struct samples *s)
{
	if (s->n > 1)
		qsort(s->v, s->n, sizeof(*s->v), cmp_i64);
}

/* ms at index floor(p * (n - 1)) of the sorted samples; 0 when none. */
static double samples_ms(const struct samples *s, double p)
{
	if (s->n == 0)
		return 0;
	return (double)s->v[(size_t)(p * (double)(s->n - 1))] / 1e6;
}

/* The first failure of the run, for the FIRSTFAIL line. Every failure
 * path calls note_fail(), so the line appears exactly when one happened. */
static char first_fail[400];

static void note_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note_fail(const char *fmt, ...)
{
	if (first_fail[0] != '\0')
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(first_fail, sizeof(first_fail), fmt, ap);
	va_end(ap);
	/* one line, and a quote that cannot end the value early */
	for (char *p = first_fail; *p != '\0'; p++) {
		if (*p == '"')
			*p = '\'';
		else if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	}
	if (first_fail[0] == '\0')
		snprintf(first_fail, sizeof(first_fail), "(empty reply)");
}

static void print_first_fail(void)
{
	if (first_fail[0] != '\0')
		printf("FIRSTFAIL reply=\"%s\"\n", first_fail);
}

static void usage_text(void)
{
	fprintf(stderr,
		"usage: loadgen [idle] -p PORT -n N [-H HOST] [-a NADDR] [-u USER] [-U NUSERS]\n"
		"               [-w PASSWORD] [-m MAILBOX] [-c INFLIGHT] [-T RAMP_SECONDS]\n"
		"       loadgen lmtp -p PORT -c SESSIONS -r RCPT_FMT [-U NUSERS] [-R RCPTS_PER_TXN]\n"
		"               [-d SECONDS] [-N MAX_TXNS] [-H HOST] [-a NADDR]\n"
		"               (-L LISTFILE | MSGFILE...)\n"
		"       loadgen pop3 -p PORT -u USER_FMT [-U NUSERS] -w PASSWORD [-c SESSIONS]\n"
		"               [-n MAXMSG] [-H HOST] [-a NADDR]\n"
		"       loadgen mixed -p PORT -n CLIENTS -d SECONDS -u USER_FMT [-U NUSERS]\n"
		"               -w PASSWORD [-m MAILBOX] [-f APPEND_MSGFILE] [-s SEED]\n"
		"               [-H HOST] [-a NADDR]\n");
}

/* A usage error in lmtp, pop3 or mixed mode: exit status 1. */
static void usage_fail(const char *mode, const char *why)
{
	if (why != NULL)
		fprintf(stderr, "loadgen %s: %s\n", mode, why);
	usage_text();
	exit(1);
}

/* The common options of lmtp, pop3 and mixed; 1 when ch was one of them. */
static int common_opt(int ch, const char *mode, const char **host, int *port, unsigned *naddr)
{
	unsigned v;
	switch (ch) {
	case 'H':
		*host = optarg;
		return 1;
	case 'p':
		if (parse_uint(optarg, 65535, &v) < 0 || v == 0)
			usage_fail(mode, "-p: a port number");
		*port = (int)v;
		return 1;
	case 'a':
		if (parse_uint(optarg, 250, naddr) < 0 || *naddr == 0)
			usage_fail(mode, "-a: 1 to 250 source addresses");
		return 1;
	default:
		return 0;
	}
}

/* Checks a USER/RCPT format for the -U given; exits on a usage error. */
static void check_name_format(const char *mode, const char *fmt, unsigned nusers)
{
	if (nusers > 0 && !int_format_ok(fmt))
		usage_fail(mode, "with -U the name format takes one %d");
	if (strpbrk(fmt, "\r\n") != NULL)
		usage_fail(mode, "a name cannot hold CR or LF");
}
/* ==== idle ================================================================= */

enum state { S_NEW, S_GREETING, S_LOGIN, S_SELECT, S_IDLE_WAIT, S_IDLING, S_FAILED };

struct lconn {
	struct bufferevent *bev;
	enum state state;
	unsigned idx;
	long exists;	/* last EXISTS seen */
	long baseline;	/* EXISTS at ARM */
	int armed;
	int64_t arrival; /* ns, CLOCK_MONOTONIC; 0 = not yet */
};

static struct {
	const char *host;
	int port;
	unsigned n, naddr, nusers, inflight_max;
	const char *user, *password, *mailbox;
	double ramp_seconds;
} opt = { "127.0.0.1", 0, 0, 1, 0, 100, "bench", "bench", "INBOX", 600 };

static struct lconn *conns;
static unsigned next_conn, inflight, idle_count, failed_count, armed_count, got_count;
static int ready_printed, round_waiting;
static int64_t t0_ns, t1_ns, ramp_start;
static int64_t round_deadline, round_quiet_ns, last_arrival; /* ns */
static struct event *round_timer, *ramp_timer, *progress_timer;
/* failure reasons, for the READY line */
static unsigned fail_connect, fail_closed, fail_login, fail_select, fail_idle;

static void start_more(void);
static void check_ready(void);
static void finish_round(void);

static void conn_fail(struct lconn *c, unsigned *reason)
{
	if (c->state == S_FAILED)
		return;
	if (c->state == S_IDLING) {
		idle_count--;
		if (c->armed) {
			c->armed = 0;
			armed_count--;
		}
	} else {
		inflight--;
	}
	c->state = S_FAILED;
	failed_count++;
	(*reason)++;
	if (c->bev != NULL) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	start_more();
	check_ready();
}

static void send_line(struct lconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void send_line(struct lconn *c, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0 && (size_t)n < sizeof(buf))
		bufferevent_write(c->bev, buf, (size_t)n);
}

static void user_name(unsigned idx, char *out, size_t size)
{
	format_name(opt.user, opt.nusers, idx, out, size);
}

/* "* 123 EXISTS" -> 123, else -1 */
static long parse_exists(const char *line, size_t len)
{
	if (len < 10 || line[0] != '*' || line[1] != ' ')
		return -1;
	char *end;
	long v = strtol(line + 2, &end, 10);
	if (end == line + 2 || strcmp(end, " EXISTS") != 0)
		return -1;
	return v;
}

static void on_line(struct lconn *c, const char *line, size_t len, int64_t t)
{
	long ex = parse_exists(line, len);
	if (ex >= 0) {
		c->exists = ex;
		if (c->state == S_IDLING && c->armed && c->arrival == 0 && ex > c->baseline) {
			c->arrival = t;
			last_arrival = t;
			got_count++;
			if (round_waiting && got_count == armed_count)
				finish_round();
		}
		return;
	}
	switch (c->state) {
	case S_GREETING:
		if (strncmp(line, "* OK", 4) == 0) {
			char u[128];
			user_name(c->idx, u, sizeof(u));
			send_line(c, "a LOGIN \"%s\" \"%s\"\r\n", u, opt.password);
			c->state = S_LOGIN;
		} else {
			conn_fail(c, &fail_login);
		}
		break;
	case S_LOGIN:
		if (strncmp(line, "a OK", 4) == 0) {
			send_line(c, "b SELECT \"%s\"\r\n", opt.mailbox);
			c->state = S_SELECT;
		} else if (strncmp(line, "a ", 2) == 0) {
			conn_fail(c, &fail_login);
		}
		break;
	case S_SELECT:
		if (strncmp(line, "b OK", 4) == 0) {
			send_line(c, "c IDLE\r\n");
			c->state = S_IDLE_WAIT;
		} else if (strncmp(line, "b ", 2) == 0) {
			conn_fail(c, &fail_select);
		}
		break;
	case S_IDLE_WAIT:
		if (line[0] == '+') {
			c->state = S_IDLING;
			inflight--;
			idle_count++;
			start_more();
			check_ready();
		} else if (strncmp(line, "c ", 2) == 0) {
			conn_fail(c, &fail_idle);
		}
		break;
	default:
		break;
	}
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct lconn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	int64_t t = now_ns();
	/* bounded: each pass consumes one line; stops when no full line is left
	 * or the connection was dropped */
	while (c->bev != NULL) {
		size_t len;
		char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
		if (line == NULL)
			break;
		on_line(c, line, len, t);
		free(line);
	}
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct lconn *c = arg;
	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		c->state = S_GREETING;
		return;
	}
	conn_fail(c, c->state == S_NEW ? &fail_connect : &fail_closed);
}

static void start_one(unsigned i)
{
	struct lconn *c = &conns[i];
	c->idx = i;
	c->state = S_NEW;
	inflight++;
	const char *error;
	c->bev = connect_from(i, opt.naddr, read_cb, NULL, event_cb, c, &error);
	if (c->bev == NULL)
		conn_fail(c, &fail_connect);
}

static int starting;

static void start_more(void)
{
	if (starting) /* conn_fail inside start_one re-enters: the outer loop goes on */
		return;
	starting = 1;
	while (next_conn < opt.n && inflight < opt.inflight_max)
		start_one(next_conn++);
	starting = 0;
}

static void check_ready(void)
{
	if (ready_printed || idle_count + failed_count < opt.n)
		return;
	ready_printed = 1;
	event_del(ramp_timer);
	event_del(progress_timer);
	printf("READY idle=%u failed=%u seconds=%.2f connect=%u closed=%u login=%u select=%u idlecmd=%u\n",
	       idle_count, failed_count, (double)(now_ns() - ramp_start) / 1e9, fail_connect,
	       fail_closed, fail_login, fail_select, fail_idle);
	fflush(stdout);
}

static void ramp_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	/* give up on whatever is still in progress, and start nothing more */
	unsigned started = next_conn;
	next_conn = opt.n;
	for (unsigned i = 0; i < started; i++)
		if (conns[i].state != S_IDLING && conns[i].state != S_FAILED)
			conn_fail(&conns[i], &fail_closed);
	for (unsigned i = started; i < opt.n; i++) {
		conns[i].state = S_FAILED;
		failed_count++;
		fail_connect++;
	}
	check_ready();
}

static void progress_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	fprintf(stderr, "loadgen: %u idle, %u failed, %u in flight\n", idle_count, failed_count,
		inflight);
}

/* idle rounds to the nearest index, as it always has, so that ROUND lines
 * stay comparable with earlier runs (the other modes take the floor) */
static double pct(const int64_t *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	size_t k = (size_t)(p * (double)(n - 1) + 0.5);
	return (double)v[k] / 1e6;
}

static void finish_round(void)
{
	if (!round_waiting)
		return;
	round_waiting = 0;
	event_del(round_timer);
	int64_t *d0 = malloc((got_count + 1) * sizeof(*d0));
	int64_t *d1 = malloc((got_count + 1) * sizeof(*d1));
	size_t k = 0;
	for (unsigned i = 0; i < opt.n && d0 && d1; i++)
		if (conns[i].armed && conns[i].arrival != 0) {
			d0[k] = conns[i].arrival - t0_ns;
			d1[k] = conns[i].arrival - t1_ns;
			k++;
		}
	if (d0 == NULL || d1 == NULL) {
		printf("ROUND error=oom\n");
	} else {
		qsort(d0, k, sizeof(*d0), cmp_i64);
		qsort(d1, k, sizeof(*d1), cmp_i64);
		printf("ROUND got=%zu of=%u p50=%.3f p99=%.3f max=%.3f min=%.3f p50_t1=%.3f "
		       "p99_t1=%.3f max_t1=%.3f deliver=%.3f\n",
		       k, armed_count, pct(d0, k, 0.5), pct(d0, k, 0.99), pct(d0, k, 1.0),
		       pct(d0, k, 0.0), pct(d1, k, 0.5), pct(d1, k, 0.99), pct(d1, k, 1.0),
		       (double)(t1_ns - t0_ns) / 1e6);
	}
	fflush(stdout);
	free(d0);
	free(d1);
}

/* every 100 ms while a round waits: the deadline, or Q seconds of quiet */
static void round_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	int64_t now = now_ns();
	if (now >= round_deadline || now - last_arrival >= round_quiet_ns)
		finish_round();
}

static void stdin_cb(evutil_socket_t fd, short what, void *arg)
{
	static char buf[4096];
	static size_t used;
	(void)what;
	(void)arg;
	ssize_t n = read(fd, buf + used, sizeof(buf) - 1 - used);
	if (n <= 0) {
		event_base_loopbreak(base);
		return;
	}
	used += (size_t)n;
	buf[used] = '\0';
	char *nl;
	while ((nl = strchr(buf, '\n')) != NULL) {
		*nl = '\0';
		if (strcmp(buf, "ARM") == 0) {
			armed_count = got_count = 0;
			for (unsigned i = 0; i < opt.n; i++) {
				conns[i].armed = conns[i].state == S_IDLING;
				conns[i].arrival = 0;
				conns[i].baseline = conns[i].exists;
				armed_count += (unsigned)conns[i].armed;
			}
			printf("ARMED %u\n", armed_count);
			fflush(stdout);
		} else if (strncmp(buf, "DELIVERED ", 10) == 0) {
			long long a, b;
			double wait = 10, quiet = -1;
			if (sscanf(buf + 10, "%lld %lld %lf %lf", &a, &b, &wait, &quiet) < 2) {
				printf("ROUND error=syntax\n");
				fflush(stdout);
			} else {
				t0_ns = a;
				t1_ns = b;
				round_waiting = 1;
				if (quiet < 0)
					quiet = wait;
				int64_t now = now_ns();
				round_deadline = now + (int64_t)(wait * 1e9);
				round_quiet_ns = (int64_t)(quiet * 1e9);
				if (last_arrival < now)
					last_arrival = now; /* quiet counts from here */
				if (got_count == armed_count) {
					finish_round();
				} else {
					struct timeval tv = { 0, 100000 };
					evtimer_add(round_timer, &tv);
				}
			}
		} else if (strcmp(buf, "QUIT") == 0) {
			event_base_loopbreak(base);
		}
		size_t rest = used - (size_t)(nl + 1 - buf);
		memmove(buf, nl + 1, rest);
		used = rest;
		buf[used] = '\0';
	}
	if (used == sizeof(buf) - 1)
		used = 0; /* a line too long: drop it */
}

/* idle mode's usage errors exit with 64, as they always have */
static void usage(void)
{
	usage_text();
	exit(64);
}

static int idle_main(int argc, char **argv)
{
	int ch;
	while ((ch = getopt(argc, argv, "H:p:n:a:u:U:w:m:c:T:")) != -1) {
		switch (ch) {
		case 'H': opt.host = optarg; break;
		case 'p': opt.port = atoi(optarg); break;
		case 'n': opt.n = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'a': opt.naddr = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'u': opt.user = optarg; break;
		case 'U': opt.nusers = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'w': opt.password = optarg; break;
		case 'm': opt.mailbox = optarg; break;
		case 'c': opt.inflight_max = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'T': opt.ramp_seconds = atof(optarg); break;
		default: usage();
		}
	}
	if (opt.port <= 0 || opt.n == 0 || opt.naddr == 0 || opt.naddr > 250 || opt.inflight_max == 0)
		usage();
	raise_nofile(opt.n);
	if (set_server(opt.host, opt.port) < 0)
		usage();
	conns = calloc(opt.n, sizeof(*conns));
	base = event_base_new();
	if (conns == NULL || base == NULL)
		return 1;
	round_timer = event_new(base, -1, EV_PERSIST, round_timeout_cb, NULL);
	ramp_timer = evtimer_new(base, ramp_timeout_cb, NULL);
	progress_timer = event_new(base, -1, EV_PERSIST, progress_cb, NULL);
	struct event *in_ev = event_new(base, STDIN_FILENO, EV_READ | EV_PERSIST, stdin_cb, NULL);
	struct timeval ramp = { (time_t)opt.ramp_seconds, 0 }, five = { 5, 0 };
	evtimer_add(ramp_timer, &ramp);
	event_add(progress_timer, &five);
	event_add(in_ev, NULL);
	ramp_start = now_ns();
	start_more();
	event_base_dispatch(base);
	/* exit without closing one by one: the kernel closes them all */
	return 0;
}

/* ==== lmtp ================================================================= */

/*
 * A session's states follow the replies it waits for. The message file is
 * opened when the transaction starts, but streamed only in LM_BODY (after
 * 354): lmtp_fill() reads LMTP_CHUNK bytes at a time, dot-stuffs them and
 * queues them until the output holds LMTP_HIGH bytes; the write callback,
 * called when the output drains to LMTP_LOW, fills again. The transaction
 * ends when the message is all queued (fd -1) and every accepted recipient
 * has its reply, in whichever order the two happen.
 */
#define LMTP_CHUNK (64 * 1024)
#define LMTP_LOW (256 * 1024)
#define LMTP_HIGH (512 * 1024)

enum lmtp_state { LM_CONNECT, LM_GREETING, LM_LHLO, LM_MAIL, LM_RCPT, LM_DATA, LM_BODY,
		  LM_RSET, LM_QUIT, LM_DONE };

struct lmtp_sess {
	struct bufferevent *bev;
	unsigned idx;
	enum lmtp_state state;
	int in_txn;
	int fd;		  /* the message file until it is all queued, else -1 */
	const char *path; /* its name, for errors */
	int bol;	  /* what was queued of the message ends with CRLF, or is empty */
	char last;	  /* the last byte queued of the message */
	unsigned rcpt_replies, accepted, finals, final_ok;
	int64_t t_mail;
};

static struct {
	const char *host;
	int port;
	unsigned naddr, sessions, nusers, rcpts, max_txns;
	double seconds;
	const char *rcpt_fmt;
	char **msgs;
	size_t nmsgs;
} lo = { .host = "127.0.0.1", .naddr = 1, .sessions = 1, .rcpts = 1 };

static struct {
	struct lmtp_sess *s;
	unsigned left;	   /* sessions not done */
	unsigned started;  /* sessions that got through LHLO */
	uint64_t next_txn; /* k, shared by all sessions */
	unsigned ok, fail, rcpt_ok, rcpt_fail, conn_fail;
	int64_t t0;
	struct samples lat;
} lm;

static void lmtp_next(struct lmtp_sess *s);

static void lmtp_session_done(struct lmtp_sess *s)
{
	if (s->fd >= 0) {
		close(s->fd);
		s->fd = -1;
	}
	if (s->bev != NULL) {
		bufferevent_free(s->bev);
		s->bev = NULL;
	}
	s->state = LM_DONE;
	if (--lm.left == 0)
		event_base_loopbreak(base);
}

/* Counts the transaction in flight: ok only if every recipient's final
 * reply was 2xx. */
static void lmtp_txn_end(struct lmtp_sess *s)
{
	if (s->fd >= 0) {
		close(s->fd);
		s->fd = -1;
	}
	s->in_txn = 0;
	lm.rcpt_ok += s->final_ok;
	lm.rcpt_fail += lo.rcpts - s->final_ok;
	if (s->final_ok == lo.rcpts) {
		lm.ok++;
		samples_add(&lm.lat, now_ns() - s->t_mail);
	} else {
		lm.fail++;
	}
}

static void lmtp_session_fail(struct lmtp_sess *s, const char *why)
{
	if (s->state == LM_DONE)
		return;
	if (s->in_txn)
		lmtp_txn_end(s);
	lm.conn_fail++;
	note_fail("%s", why);
	lmtp_session_done(s);
}

static int lmtp_more(void)
{
	if (lo.max_txns > 0 && lm.next_txn >= lo.max_txns)
		return 0;
	if (lo.seconds > 0 && now_ns() - lm.t0 >= (int64_t)(lo.seconds * 1e9))
		return 0;
	return 1;
}

/* MAIL, the RCPTs and DATA in one write (RFC 2920): one round trip, not R+2. */
static void lmtp_send_envelope(struct lmtp_sess *s, int fd, const char *path)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	char addr[256];
	s->fd = fd;
	s->path = path;
	s->in_txn = 1;
	s->bol = 1;
	s->last = '\0';
	s->rcpt_replies = s->accepted = s->finals = s->final_ok = 0;
	s->t_mail = now_ns();
	evbuffer_add(out, "MAIL FROM:<bench@example.com>\r\n", 31);
	for (unsigned j = 0; j < lo.rcpts; j++) {
		format_name(lo.rcpt_fmt, lo.nusers, s->idx * lo.rcpts + j, addr, sizeof(addr));
		evbuffer_add_printf(out, "RCPT TO:<%s>\r\n", addr);
	}
	evbuffer_add(out, "DATA\r\n", 6);
	s->state = LM_MAIL;
}

/* The next transaction, or QUIT when the run is over. */
static void lmtp_next(struct lmtp_sess *s)
{
	/* bounded: each pass takes a transaction number, and lmtp_more() stops
	 * at MAX_TXNS or after SECONDS */
	while (lmtp_more()) {
		uint64_t k = lm.next_txn++;
		const char *path = lo.msgs[k % lo.nmsgs];
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			lmtp_send_envelope(s, fd, path);
			return;
		}
		/* checked at start, so gone since: a failed transaction */
		note_fail("open %s: %s", path, strerror(errno));
		lm.fail++;
		lm.rcpt_fail += lo.rcpts;
	}
	bufferevent_write(s->bev, "QUIT\r\n", 6);
	s->state = LM_QUIT;
}

/*
 * Copies n message bytes to out (room for 2n), dot-stuffed (RFC 5321
 * 4.5.2: a line starting with '.' gets another). Lines end at CRLF, also
 * across calls: s->bol and s->last carry the state. Returns the bytes written.
 */
static size_t lmtp_stuff(struct lmtp_sess *s, const char *in, size_t n, char *out)
{
	size_t o = 0, i = 0;
	/* bounded: each pass copies one line or the rest of in */
	while (i < n) {
		if (s->bol && in[i] == '.')
			out[o++] = '.';
		const char *nl = memchr(in + i, '\n', n - i);
		size_t end = nl != NULL ? (size_t)(nl - in) + 1 : n;
		memcpy(out + o, in + i, end - i);
		o += end - i;
		char before = end - i >= 2 ? in[end - 2] : s->last;
		s->bol = nl != NULL && before == '\r';
		s->last = in[end - 1];
		i = end;
	}
	return o;
}

/*
 * Queues message bytes until the output holds LMTP_HIGH or the message and
 * its terminator are queued (fd -1 then). 0, or -1 when the file could not
 * be read (the session has failed: the message is cut, the transaction
 * cannot be finished).
 */
static int lmtp_fill(struct lmtp_sess *s)
{
	static char chunk[LMTP_CHUNK], stuffed[2 * LMTP_CHUNK];
	struct evbuffer *out = bufferevent_get_output(s->bev);
	/* bounded: each pass reads a chunk or ends the message */
	while (s->fd >= 0 && evbuffer_get_length(out) < LMTP_HIGH) {
		ssize_t n = read(s->fd, chunk, sizeof(chunk));
		if (n < 0) {
			char why[300];
			snprintf(why, sizeof(why), "read %s: %s", s->path, strerror(errno));
			lmtp_session_fail(s, why);
			return -1;
		}
		if (n == 0) {
			if (!s->bol)
				evbuffer_add(out, "\r\n", 2);
			evbuffer_add(out, ".\r\n", 3);
			close(s->fd);
			s->fd = -1;
			break;
		}
		evbuffer_add(out, stuffed, lmtp_stuff(s, chunk, (size_t)n, stuffed));
	}
	return 0;
}

/* Ends the transaction once the message is queued and all replies are in. */
static void lmtp_check_final(struct lmtp_sess *s)
{
	if (s->state != LM_BODY || s->fd >= 0 || s->finals < s->accepted)
		return;
	lmtp_txn_end(s);
	lmtp_next(s);
}

/* "250 ..." -> 250; 0 when the line is no reply. */
static int reply_code(const char *line)
{
	for (int i = 0; i < 3; i++)
		if (line[i] < '0' || line[i] > '9')
			return 0;
	if (line[3] != ' ' && line[3] != '\0')
		return 0;
	return (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
}

static void lmtp_on_data_reply(struct lmtp_sess *s, int code, const char *line)
{
	if (code == 354) {
		s->state = LM_BODY;
		if (lmtp_fill(s) == 0)
			lmtp_check_final(s);
		return;
	}
	/* no recipient (or no MAIL): RFC 2033 4.2 has no per-recipient replies */
	note_fail("%s", line);
	close(s->fd);
	s->fd = -1;
	bufferevent_write(s->bev, "RSET\r\n", 6);
	s->state = LM_RSET;
}

static void lmtp_on_final(struct lmtp_sess *s, int code, const char *line)
{
	if (s->finals == s->accepted) {
		lmtp_session_fail(s, "a reply more than the accepted recipients");
		return;
	}
	s->finals++;
	if (code / 100 == 2)
		s->final_ok++;
	else
		note_fail("%s", line);
	lmtp_check_final(s);
}

/* A complete reply (its last line) in the session's current state. */
static void lmtp_on_reply(struct lmtp_sess *s, const char *line)
{
	int code = reply_code(line);
	switch (s->state) {
	case LM_GREETING:
		if (code != 220) {
			lmtp_session_fail(s, line);
			break;
		}
		bufferevent_write(s->bev, "LHLO bench.example\r\n", 20);
		s->state = LM_LHLO;
		break;
	case LM_LHLO:
		if (code != 250) {
			lmtp_session_fail(s, line);
			break;
		}
		lm.started++;
		lmtp_next(s);
		break;
	case LM_MAIL:
		if (code / 100 != 2)
			note_fail("%s", line);
		s->state = LM_RCPT;
		break;
	case LM_RCPT:
		if (code / 100 == 2)
			s->accepted++;
		else
			note_fail("%s", line);
		if (++s->rcpt_replies == lo.rcpts)
			s->state = LM_DATA;
		break;
	case LM_DATA:
		lmtp_on_data_reply(s, code, line);
		break;
	case LM_BODY:
		lmtp_on_final(s, code, line);
		break;
	case LM_RSET:
		lmtp_txn_end(s);
		lmtp_next(s);
		break;
	case LM_QUIT:
		lmtp_session_done(s);
		break;
	default:
		lmtp_session_fail(s, line);
		break;
	}
}

static void lmtp_read_cb(struct bufferevent *bev, void *arg)
{
	struct lmtp_sess *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char line[LINE_COPY];
	size_t len, eol;
	/* bounded: each pass consumes a line; stops when none is left or the
	 * session ended */
	while (s->bev != NULL) {
		int r = take_line(in, line, sizeof(line), &len, &eol);
		if (r == 0)
			break;
		if (r < 0) {
			lmtp_session_fail(s, "reply line too long");
			break;
		}
		if (len >= 4 && line[3] == '-')
			continue; /* RFC 5321 4.2.1: the reply goes on */
		lmtp_on_reply(s, line);
	}
}

static void lmtp_write_cb(struct bufferevent *bev, void *arg)
{
	struct lmtp_sess *s = arg;
	(void)bev;
	if (s->state == LM_BODY && s->fd >= 0 && lmtp_fill(s) == 0)
		lmtp_check_final(s);
}

static void lmtp_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct lmtp_sess *s = arg;
	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		s->state = LM_GREETING;
		return;
	}
	lmtp_session_fail(s, event_text(what, s->state == LM_CONNECT));
}

static void lmtp_start(unsigned i)
{
	struct lmtp_sess *s = &lm.s[i];
	const char *error;
	s->idx = i;
	s->fd = -1;
	s->state = LM_CONNECT;
	s->bev = connect_from(i, lo.naddr, lmtp_read_cb, lmtp_write_cb, lmtp_event_cb, s, &error);
	if (s->bev == NULL) {
		lmtp_session_fail(s, error);
		return;
	}
	session_tune(s->bev);
	bufferevent_setwatermark(s->bev, EV_WRITE, LMTP_LOW, 0);
}

static int lmtp_add_msg(const char *path)
{
	if (lo.nmsgs % 1024 == 0) {
		char **v = realloc(lo.msgs, (lo.nmsgs + 1024) * sizeof(*v));
		if (v == NULL)
			return -1;
		lo.msgs = v;
	}
	lo.msgs[lo.nmsgs] = strdup(path);
	return lo.msgs[lo.nmsgs++] != NULL ? 0 : -1;
}

/* LISTFILE: one path a line; empty lines are skipped. */
static int lmtp_read_list(const char *file)
{
	FILE *f = fopen(file, "r");
	if (f == NULL) {
		fprintf(stderr, "loadgen lmtp: %s: %s\n", file, strerror(errno));
		return -1;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int ret = 0;
	while (ret == 0 && (n = getline(&line, &cap, f)) >= 0) {
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (n > 0)
			ret = lmtp_add_msg(line);
	}
	free(line);
	fclose(f);
	return ret;
}

/* A missing message is a usage error, found before the run rather than
 * as failed transactions in it. */
static int lmtp_check_msgs(void)
{
	struct stat st;
	for (size_t i = 0; i < lo.nmsgs; i++) {
		const char *why = NULL;
		if (stat(lo.msgs[i], &st) < 0)
			why = strerror(errno);
		else if (!S_ISREG(st.st_mode))
			why = "not a regular file";
		if (why != NULL) {
			fprintf(stderr, "loadgen lmtp: %s: %s\n", lo.msgs[i], why);
			return -1;
		}
	}
	return 0;
}

static void lmtp_options(int argc, char **argv)
{
	const char *list = NULL;
	int ch;
	while ((ch = getopt(argc, argv, "H:p:a:c:r:U:R:d:N:L:")) != -1) {
		if (common_opt(ch, "lmtp", &lo.host, &lo.port, &lo.naddr))
			continue;
		switch (ch) {
		case 'c':
			if (parse_uint(optarg, 10000, &lo.sessions) < 0 || lo.sessions == 0)
				usage_fail("lmtp", "-c: 1 to 10000 sessions");
			break;
		case 'r': lo.rcpt_fmt = optarg; break;
		case 'U':
			if (parse_uint(optarg, 10000000, &lo.nusers) < 0)
				usage_fail("lmtp", "-U: a number of users");
			break;
		case 'R':
			if (parse_uint(optarg, 1000, &lo.rcpts) < 0 || lo.rcpts == 0)
				usage_fail("lmtp", "-R: 1 to 1000 recipients");
			break;
		case 'd':
			if (parse_seconds(optarg, &lo.seconds) < 0)
				usage_fail("lmtp", "-d: seconds");
			break;
		case 'N':
			if (parse_uint(optarg, 4000000000u, &lo.max_txns) < 0 || lo.max_txns == 0)
				usage_fail("lmtp", "-N: a number of transactions");
			break;
		case 'L': list = optarg; break;
		default: usage_fail("lmtp", NULL);
		}
	}
	if (lo.port == 0 || lo.rcpt_fmt == NULL)
		usage_fail("lmtp", "-p and -r are required");
	if (lo.seconds == 0 && lo.max_txns == 0)
		usage_fail("lmtp", "-d or -N is required");
	check_name_format("lmtp", lo.rcpt_fmt, lo.nusers);
	if (strlen(lo.rcpt_fmt) > 200)
		usage_fail("lmtp", "-r: too long");
	if (list != NULL && lmtp_read_list(list) < 0)
		exit(1);
	for (int i = optind; i < argc; i++)
		if (lmtp_add_msg(argv[i]) < 0)
			exit(1);
	if (lo.nmsgs == 0)
		usage_fail("lmtp", "no message (-L LISTFILE or MSGFILE...)");
	if (lmtp_check_msgs() < 0)
		exit(1);
	if (set_server(lo.host, lo.port) < 0)
		usage_fail("lmtp", "-H: an IPv4 address");
}

static int lmtp_main(int argc, char **argv)
{
	lmtp_options(argc, argv);
	raise_nofile(lo.sessions);
	lm.s = calloc(lo.sessions, sizeof(*lm.s));
	base = event_base_new();
	if (lm.s == NULL || base == NULL)
		return 1;
	lm.left = lo.sessions;
	lm.t0 = now_ns();
	for (unsigned i = 0; i < lo.sessions; i++)
		lmtp_start(i);
	if (lm.left > 0)
		event_base_dispatch(base);
	double secs = (double)(now_ns() - lm.t0) / 1e9;
	samples_sort(&lm.lat);
	printf("RESULT mode=lmtp ok=%u fail=%u rcpt_ok=%u rcpt_fail=%u seconds=%.3f rate=%.2f "
	       "p50=%.3f p99=%.3f max=%.3f conn_fail=%u\n",
	       lm.ok, lm.fail, lm.rcpt_ok, lm.rcpt_fail, secs, secs > 0 ? lm.ok / secs : 0,
	       samples_ms(&lm.lat, 0.5), samples_ms(&lm.lat, 0.99), samples_ms(&lm.lat, 1.0),
	       lm.conn_fail);
	print_first_fail();
	fflush(stdout);
	return lm.started > 0 ? 0 : 1;
}

/* ==== pop3 ================================================================= */

/*
 * A session walks greeting, USER, PASS, STAT, the RETRs, QUIT, one state
 * per reply awaited. In P_RETR, in_body says whether the next line is
 * message content (up to the "." line, RFC 1939 3) or a status line; up to
 * POP3_PIPELINE RETRs are outstanding, answered in order.
 */
#define POP3_PIPELINE 8

enum pop3_state { P_CONNECT, P_GREETING, P_USER, P_PASS, P_STAT, P_RETR, P_QUIT, P_DONE };

struct pop3_sess {
	struct bufferevent *bev;
	unsigned idx;
	enum pop3_state state;
	unsigned total, sent, done; /* RETRs to send, sent, answered */
	int in_body;
	int64_t t_connect, t_retr0;
};

static struct {
	const char *host;
	int port;
	unsigned naddr, sessions, nusers, maxmsg;
	const char *user, *password;
} po = { .host = "127.0.0.1", .naddr = 1, .sessions = 1 };

static struct {
	struct pop3_sess *s;
	unsigned left, logged_in, fail;
	uint64_t msgs, bytes;
	struct samples login, retr;
	int64_t t0;
} pp;

static void pop3_send(struct pop3_sess *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void pop3_send(struct pop3_sess *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(s->bev), fmt, ap);
	va_end(ap);
}

static void pop3_session_done(struct pop3_sess *s)
{
	if (s->bev != NULL) {
		bufferevent_free(s->bev);
		s->bev = NULL;
	}
	s->state = P_DONE;
	if (--pp.left == 0)
		event_base_loopbreak(base);
}

static void pop3_session_fail(struct pop3_sess *s, const char *why)
{
	if (s->state == P_DONE)
		return;
	pp.fail++;
	note_fail("%s", why);
	pop3_session_done(s);
}

/* Keeps up to POP3_PIPELINE RETRs outstanding (RFC 2449 PIPELINING is not
 * needed: RFC 1939 servers answer commands in order anyway). */
static void pop3_pump(struct pop3_sess *s)
{
	while (s->sent < s->total && s->sent - s->done < POP3_PIPELINE)
		pop3_send(s, "RETR %u\r\n", ++s->sent);
}

static void pop3_on_stat(struct pop3_sess *s, const char *line)
{
	unsigned count;
	if (sscanf(line, "+OK %u", &count) != 1) {
		pop3_session_fail(s, line);
		return;
	}
	s->total = po.maxmsg > 0 && po.maxmsg < count ? po.maxmsg : count;
	if (s->total == 0) {
		pop3_send(s, "QUIT\r\n");
		s->state = P_QUIT;
		return;
	}
	s->t_retr0 = now_ns();
	s->state = P_RETR;
	pop3_pump(s);
}

/* A status line: "+OK ..." moves on, anything else fails the session. */
static void pop3_on_status(struct pop3_sess *s, const char *line)
{
	char user[256];
	if (strncmp(line, "+OK", 3) != 0 || (line[3] != ' ' && line[3] != '\0')) {
		pop3_session_fail(s, line);
		return;
	}
	switch (s->state) {
	case P_GREETING:
		format_name(po.user, po.nusers, s->idx, user, sizeof(user));
		pop3_send(s, "USER %s\r\n", user);
		s->state = P_USER;
		break;
	case P_USER:
		pop3_send(s, "PASS %s\r\n", po.password);
		s->state = P_PASS;
		break;
	case P_PASS:
		samples_add(&pp.login, now_ns() - s->t_connect);
		pp.logged_in++;
		pop3_send(s, "STAT\r\n");
		s->state = P_STAT;
		break;
	case P_STAT:
		pop3_on_stat(s, line);
		break;
	case P_RETR:
		s->in_body = 1;
		break;
	case P_QUIT:
		pop3_session_done(s);
		break;
	default:
		pop3_session_fail(s, line);
		break;
	}
}

/* A line of a RETR response: content, or the "." that ends it. */
static void pop3_body_line(struct pop3_sess *s, const char *line, size_t len, size_t eol)
{
	if (len != 1 || line[0] != '.') {
		pp.bytes += len + eol;
		return;
	}
	s->in_body = 0;
	s->done++;
	pp.msgs++;
	if (s->done < s->total) {
		pop3_pump(s);
		return;
	}
	samples_add(&pp.retr, now_ns() - s->t_retr0);
	pop3_send(s, "QUIT\r\n");
	s->state = P_QUIT;
}

static void pop3_read_cb(struct bufferevent *bev, void *arg)
{
	struct pop3_sess *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char line[LINE_COPY];
	size_t len, eol;
	/* bounded: each pass consumes a line; stops when none is left or the
	 * session ended */
	while (s->bev != NULL) {
		int r = take_line(in, line, sizeof(line), &len, &eol);
		if (r == 0)
			break;
		if (r < 0) {
			pop3_session_fail(s, "line too long");
			break;
		}
		if (s->state == P_RETR && s->in_body)
			pop3_body_line(s, line, len, eol);
		else
			pop3_on_status(s, line);
	}
}

static void pop3_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct pop3_sess *s = arg;
	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		s->state = P_GREETING;
		return;
	}
	pop3_session_fail(s, event_text(what, s->state == P_CONNECT));
}

static void pop3_start(unsigned i)
{
	struct pop3_sess *s = &pp.s[i];
	const char *error;
	s->idx = i;
	s->state = P_CONNECT;
	s->t_connect = now_ns();
	s->bev = connect_from(i, po.naddr, pop3_read_cb, NULL, pop3_event_cb, s, &error);
	if (s->bev == NULL) {
		pop3_session_fail(s, error);
		return;
	}
	session_tune(s->bev);
}

static void pop3_options(int argc, char **argv)
{
	int ch;
	while ((ch = getopt(argc, argv, "H:p:a:u:U:w:c:n:")) != -1) {
		if (common_opt(ch, "pop3", &po.host, &po.port, &po.naddr))
			continue;
		switch (ch) {
		case 'u': po.user = optarg; break;
		case 'U':
			if (parse_uint(optarg, 10000000, &po.nusers) < 0)
				usage_fail("pop3", "-U: a number of users");
			break;
		case 'w': po.password = optarg; break;
		case 'c':
			if (parse_uint(optarg, 10000, &po.sessions) < 0 || po.sessions == 0)
				usage_fail("pop3", "-c: 1 to 10000 sessions");
			break;
		case 'n':
			if (parse_uint(optarg, 100000000, &po.maxmsg) < 0)
				usage_fail("pop3", "-n: a number of messages");
			break;
		default: usage_fail("pop3", NULL);
		}
	}
	if (optind != argc)
		usage_fail("pop3", "unexpected arguments");
	if (po.port == 0 || po.user == NULL || po.password == NULL)
		usage_fail("pop3", "-p, -u and -w are required");
	check_name_format("pop3", po.user, po.nusers);
	check_name_format("pop3", po.password, 0);
	if (set_server(po.host, po.port) < 0)
		usage_fail("pop3", "-H: an IPv4 address");
}

static int pop3_main(int argc, char **argv)
{
	pop3_options(argc, argv);
	raise_nofile(po.sessions);
	pp.s = calloc(po.sessions, sizeof(*pp.s));
	base = event_base_new();
	if (pp.s == NULL || base == NULL)
		return 1;
	pp.left = po.sessions;
	pp.t0 = now_ns();
	for (unsigned i = 0; i < po.sessions; i++)
		pop3_start(i);
	if (pp.left > 0)
		event_base_dispatch(base);
	double secs = (double)(now_ns() - pp.t0) / 1e9;
	samples_sort(&pp.login);
	samples_sort(&pp.retr);
	printf("RESULT mode=pop3 sessions=%u fail=%u msgs=%llu bytes=%llu login_p50=%.3f "
	       "login_max=%.3f retr_ms_p50=%.3f retr_ms_max=%.3f seconds=%.3f\n",
	       po.sessions, pp.fail, (unsigned long long)pp.msgs, (unsigned long long)pp.bytes,
	       samples_ms(&pp.login, 0.5), samples_ms(&pp.login, 1.0), samples_ms(&pp.retr, 0.5),
	       samples_ms(&pp.retr, 1.0), secs);
	print_first_fail();
	fflush(stdout);
	return pp.logged_in > 0 ? 0 : 1;
}

/* ==== mixed ================================================================ */

/*
 * A client has one command (or the STORE/EXPUNGE pair) outstanding at a
 * time, so the tag it waits for is the one it sent last. The reader works
 * on whole responses (RFC 9051 2.2.2): a line ending in a literal
 * announcement is followed by that many raw bytes (skipped with
 * evbuffer_drain as they arrive) and then the response's next line; only
 * the first line of a response is looked at.
 */
enum mixed_state { MX_CONNECT, MX_GREETING, MX_LOGIN, MX_SELECT, MX_RUN, MX_LOGOUT, MX_DONE };

enum mixed_op { OP_SELECT, OP_FETCH_HEADERS, OP_FETCH_BODY, OP_FLAG, OP_EXPUNGE, OP_APPEND,
		OP_COUNT };

static const struct {
	const char *name;
	unsigned weight;
	int needs_msg; /* replaced by an append while the mailbox is empty */
} op_kinds[OP_COUNT] = {
	[OP_SELECT] = { "select", 10, 0 },
	[OP_FETCH_HEADERS] = { "fetch_headers", 35, 1 },
	[OP_FETCH_BODY] = { "fetch_body", 25, 1 },
	[OP_FLAG] = { "flag", 15, 1 },
	[OP_EXPUNGE] = { "expunge", 5, 1 },
	[OP_APPEND] = { "append", 10, 0 },
};

struct mixed_client {
	struct bufferevent *bev;
	unsigned idx;
	enum mixed_state state;
	enum mixed_op op;
	int phase; /* expunge: STORE (0) or EXPUNGE (1) sent; append: before "+" (0) or after (1) */
	uint64_t rng;
	unsigned long exists;
	unsigned tagno;
	char tag[16];	   /* of the command awaiting its tagged reply */
	uint64_t lit_left; /* bytes of a literal still to skip */
	int in_cont;	   /* the next line continues a response, after a literal */
	int64_t op_start, run_end;
};

static struct {
	const char *host;
	int port;
	unsigned naddr, clients, nusers;
	double seconds;
	uint64_t seed;
	const char *user, *password, *mailbox, *msgfile;
} mo = { .host = "127.0.0.1", .naddr = 1, .mailbox = "INBOX", .seed = 1 };

static struct {
	struct mixed_client *c;
	unsigned left, running; /* clients not done; clients that got through SELECT */
	char qmailbox[600], qpassword[600];
	const char *msg; /* the APPEND message */
	size_t msg_len;
	struct samples lat[OP_COUNT];
	unsigned op_fail[OP_COUNT], other_fail;
	int64_t first_run, last_run_end;
} mx;

/* splitmix64: small, good enough, and the same sequence everywhere */
static uint64_t rng_next(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static unsigned long rng_below(uint64_t *x, unsigned long n)
{
	return (unsigned long)(rng_next(x) % n);
}

/*
 * s as an IMAP quoted string (RFC 9051 4.3) into out. -1 when it does not
 * fit or holds CR or LF, which a quoted string cannot carry.
 */
static int imap_quote(const char *s, char *out, size_t size)
{
	size_t o = 0;
	if (size < 3)
		return -1;
	out[o++] = '"';
	for (; *s != '\0'; s++) {
		if (*s == '\r' || *s == '\n' || o + 4 > size)
			return -1;
		if (*s == '"' || *s == '\\')
			out[o++] = '\\';
		out[o++] = *s;
	}
	out[o++] = '"';
	out[o] = '\0';
	return 0;
}

/* The literal announced at the end of a line ("{N}", "{N+}", "~{N}"), from
 * its last n bytes t; -1 when there is none. */
static int64_t literal_size(const char *t, size_t n)
{
	if (n < 3 || t[n - 1] != '}')
		return -1;
	size_t e = n - 1;
	if (t[e - 1] == '+')
		e--;
	size_t b = e;
	while (b > 0 && t[b - 1] >= '0' && t[b - 1] <= '9')
		b--;
	if (b == e || b == 0 || t[b - 1] != '{' || e - b > 18) /* 18 digits fit int64 */
		return -1;
	int64_t v = 0;
	for (size_t i = b; i < e; i++)
		v = v * 10 + (t[i] - '0');
	return v;
}

/* take_line for IMAP: also *lit_r, the literal the line announces, or -1. */
static int imap_take_line(struct evbuffer *in, char *buf, size_t size, int64_t *lit_r)
{
	size_t len, eol;
	int r = find_line(in, &len, &eol);
	if (r <= 0)
		return r;
	char tail[32];
	size_t tl = len < sizeof(tail) ? len : sizeof(tail);
	if (tl > 0) {
		struct evbuffer_ptr p;
		evbuffer_ptr_set(in, &p, len - tl, EVBUFFER_PTR_SET);
		evbuffer_copyout_from(in, &p, tail, tl);
	}
	size_t n = len < size - 1 ? len : size - 1;
	evbuffer_copyout(in, buf, n);
	buf[n] = '\0';
	evbuffer_drain(in, len + eol);
	*lit_r = literal_size(tail, tl);
	return 1;
}

/* Sends a command under a new tag. */
static void mixed_send(struct mixed_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void mixed_send(struct mixed_client *c, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	va_list ap;
	snprintf(c->tag, sizeof(c->tag), "a%u", ++c->tagno);
	evbuffer_add_printf(out, "%s ", c->tag);
	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
}

static void mixed_client_done(struct mixed_client *c)
{
	if (c->bev != NULL) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	c->state = MX_DONE;
	if (--mx.left == 0)
		event_base_loopbreak(base);
}

static void mixed_end_run(int64_t t)
{
	if (t > mx.last_run_end)
		mx.last_run_end = t;
}

static void mixed_client_fail(struct mixed_client *c, const char *why)
{
	if (c->state == MX_DONE)
		return;
	if (c->state == MX_LOGOUT) {
		/* the server may close right after its BYE: the run is over anyway */
		mixed_client_done(c);
		return;
	}
	if (c->state == MX_RUN) {
		mx.op_fail[c->op]++;
		mixed_end_run(now_ns());
	} else {
		mx.other_fail++;
	}
	note_fail("%s", why);
	mixed_client_done(c);
}

/* A message sequence number in 1..EXISTS (EXISTS > 0). */
static unsigned long mixed_pick(struct mixed_client *c)
{
	return 1 + rng_below(&c->rng, c->exists);
}

static void mixed_fetch_headers(struct mixed_client *c)
{
	unsigned long a = mixed_pick(c), b = a + rng_below(&c->rng, 50);
	if (b > c->exists)
		b = c->exists;
	mixed_send(c, "FETCH %lu:%lu (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS "
		      "(From To Subject Date Message-ID)])\r\n", a, b);
}

static void mixed_flag(struct mixed_client *c)
{
	static const char *const change[] = { "+FLAGS (\\Flagged)", "-FLAGS (\\Flagged)",
					      "+FLAGS (\\Seen)" };
	unsigned long n = mixed_pick(c);
	mixed_send(c, "STORE %lu %s\r\n", n, change[rng_below(&c->rng, 3)]);
}

static void mixed_start_op(struct mixed_client *c, enum mixed_op op)
{
	c->op = op;
	c->phase = 0;
	c->op_start = now_ns();
	switch (op) {
	case OP_SELECT:
		mixed_send(c, "SELECT %s\r\n", mx.qmailbox);
		break;
	case OP_FETCH_HEADERS:
		mixed_fetch_headers(c);
		break;
	case OP_FETCH_BODY:
		mixed_send(c, "FETCH %lu (BODY.PEEK[])\r\n", mixed_pick(c));
		break;
	case OP_FLAG:
		mixed_flag(c);
		break;
	case OP_EXPUNGE:
		mixed_send(c, "STORE %lu +FLAGS.SILENT (\\Deleted)\r\n", mixed_pick(c));
		break;
	default:
		mixed_send(c, "APPEND %s {%zu}\r\n", mx.qmailbox, mx.msg_len);
		break;
	}
}

/* The next operation, drawn by weight, or LOGOUT when the client's time is up. */
static void mixed_next(struct mixed_client *c)
{
	int64_t now = now_ns();
	if (now >= c->run_end) {
		mixed_end_run(now);
		mixed_send(c, "LOGOUT\r\n");
		c->state = MX_LOGOUT;
		return;
	}
	unsigned total = 0;
	for (int k = 0; k < OP_COUNT; k++)
		total += op_kinds[k].weight;
	unsigned long r = rng_below(&c->rng, total);
	enum mixed_op op = OP_SELECT;
	while (r >= op_kinds[op].weight) {
		r -= op_kinds[op].weight;
		op++;
	}
	if (op_kinds[op].needs_msg && c->exists == 0)
		op = OP_APPEND;
	mixed_start_op(c, op);
}

/* The tagged reply of an operation. */
static void mixed_op_reply(struct mixed_client *c, int ok, const char *line)
{
	if (ok && c->op == OP_EXPUNGE && c->phase == 0) {
		c->phase = 1;
		mixed_send(c, "EXPUNGE\r\n");
		return;
	}
	if (ok) {
		samples_add(&mx.lat[c->op], now_ns() - c->op_start);
	} else {
		mx.op_fail[c->op]++;
		note_fail("%s", line);
	}
	mixed_next(c);
}

static void mixed_begin_run(struct mixed_client *c)
{
	int64_t now = now_ns();
	if (mx.running++ == 0)
		mx.first_run = now;
	c->run_end = now + (int64_t)(mo.seconds * 1e9);
	c->state = MX_RUN;
	mixed_next(c);
}

static void mixed_tagged(struct mixed_client *c, int ok, const char *line)
{
	switch (c->state) {
	case MX_LOGIN:
		if (!ok) {
			mixed_client_fail(c, line);
			break;
		}
		mixed_send(c, "SELECT %s\r\n", mx.qmailbox);
		c->state = MX_SELECT;
		break;
	case MX_SELECT:
		if (!ok)
			mixed_client_fail(c, line);
		else
			mixed_begin_run(c);
		break;
	case MX_RUN:
		mixed_op_reply(c, ok, line);
		break;
	case MX_LOGOUT:
		mixed_client_done(c);
		break;
	default:
		break;
	}
}

static void mixed_greeting(struct mixed_client *c, const char *line)
{
	char user[256], quser[600];
	if (strncmp(line, "* OK", 4) != 0) {
		mixed_client_fail(c, line);
		return;
	}
	format_name(mo.user, mo.nusers, c->idx, user, sizeof(user));
	if (imap_quote(user, quser, sizeof(quser)) < 0) {
		mixed_client_fail(c, "user name does not fit a quoted string");
		return;
	}
	mixed_send(c, "LOGIN %s %s\r\n", quser, mx.qpassword);
	c->state = MX_LOGIN;
}

/* "* N EXISTS" and "* N EXPUNGE" keep the client's EXISTS. */
static void mixed_untagged(struct mixed_client *c, const char *line)
{
	char *end;
	unsigned long n = strtoul(line + 2, &end, 10);
	if (end == line + 2)
		return;
	if (strcasecmp(end, " EXISTS") == 0)
		c->exists = n;
	else if (strcasecmp(end, " EXPUNGE") == 0 && c->exists > 0)
		c->exists--;
}

/* The first line of a response. */
static void mixed_on_response(struct mixed_client *c, const char *line)
{
	if (c->state == MX_GREETING) {
		mixed_greeting(c, line);
		return;
	}
	if (line[0] == '*' && line[1] == ' ') {
		mixed_untagged(c, line);
		return;
	}
	if (line[0] == '+') {
		/* RFC 9051 7.5: go on with the literal */
		if (c->state == MX_RUN && c->op == OP_APPEND && c->phase == 0) {
			struct evbuffer *out = bufferevent_get_output(c->bev);
			evbuffer_add_reference(out, mx.msg, mx.msg_len, NULL, NULL);
			evbuffer_add(out, "\r\n", 2);
			c->phase = 1;
		}
		return;
	}
	size_t tl = strlen(c->tag);
	if (strncmp(line, c->tag, tl) != 0 || line[tl] != ' ')
		return; /* not ours: a reply to nothing we are waiting for */
	const char *st = line + tl + 1;
	mixed_tagged(c, strncasecmp(st, "OK", 2) == 0 && (st[2] == ' ' || st[2] == '\0'), line);
}

static void mixed_read_cb(struct bufferevent *bev, void *arg)
{
	struct mixed_client *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char line[LINE_COPY];
	/* bounded: each pass drains literal bytes or a line; stops when the
	 * input runs out or the client ended */
	while (c->bev != NULL) {
		if (c->lit_left > 0) {
			size_t have = evbuffer_get_length(in);
			if (have == 0)
				break;
			size_t n = have < c->lit_left ? have : (size_t)c->lit_left;
			evbuffer_drain(in, n);
			c->lit_left -= n;
			continue;
		}
		int64_t lit;
		int r = imap_take_line(in, line, sizeof(line), &lit);
		if (r == 0)
			break;
		if (r < 0) {
			mixed_client_fail(c, "response line too long");
			break;
		}
		int cont = c->in_cont;
		c->in_cont = lit >= 0;
		c->lit_left = lit > 0 ? (uint64_t)lit : 0;
		if (!cont)
			mixed_on_response(c, line);
	}
}

static void mixed_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct mixed_client *c = arg;
	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		c->state = MX_GREETING;
		return;
	}
	mixed_client_fail(c, event_text(what, c->state == MX_CONNECT));
}

static void mixed_start(unsigned i)
{
	struct mixed_client *c = &mx.c[i];
	const char *error;
	c->idx = i;
	c->state = MX_CONNECT;
	c->rng = mo.seed + i;
	c->bev = connect_from(i, mo.naddr, mixed_read_cb, NULL, mixed_event_cb, c, &error);
	if (c->bev == NULL) {
		mixed_client_fail(c, error);
		return;
	}
	session_tune(c->bev);
}

/* A small message for APPEND when no -f is given: CRLF line ends and the
 * headers a client's message list shows. */
static void mixed_builtin_msg(void)
{
	static char msg[4096];
	size_t o = (size_t)snprintf(msg, sizeof(msg),
				    "Date: Mon, 01 Jan 2024 12:00:00 +0000\r\n"
				    "From: Load Generator <bench@example.com>\r\n"
				    "To: Bench User <user@example.org>\r\n"
				    "Subject: mixed IMAP load, appended message\r\n"
				    "Message-ID: <mixed-append@loadgen.example.com>\r\n"
				    "\r\n");
	/* bounded: ~75 bytes a line up to 3 KB, in a 4 KB buffer */
	for (unsigned i = 1; o < 3000; i++)
		o += (size_t)snprintf(msg + o, sizeof(msg) - o,
				      "Line %02u of the built-in message, filler to make it about "
				      "3 KB.\r\n", i);
	mx.msg = msg;
	mx.msg_len = o;
}

/* -f: the whole file, read once (up to 64 MB). 0, or -1. */
static int mixed_read_msg(const char *file)
{
	FILE *f = fopen(file, "rb");
	if (f == NULL) {
		fprintf(stderr, "loadgen mixed: %s: %s\n", file, strerror(errno));
		return -1;
	}
	struct stat st;
	char *msg = NULL;
	if (fstat(fileno(f), &st) == 0 && st.st_size > 0 && st.st_size <= (64 << 20))
		msg = malloc((size_t)st.st_size);
	if (msg == NULL || fread(msg, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
		fprintf(stderr, "loadgen mixed: %s: cannot read it (empty, over 64 MB or an error)\n",
			file);
		free(msg);
		fclose(f);
		return -1;
	}
	fclose(f);
	mx.msg = msg;
	mx.msg_len = (size_t)st.st_size;
	return 0;
}

static void mixed_options(int argc, char **argv)
{
	int ch;
	while ((ch = getopt(argc, argv, "H:p:a:n:d:u:U:w:m:f:s:")) != -1) {
		if (common_opt(ch, "mixed", &mo.host, &mo.port, &mo.naddr))
			continue;
		switch (ch) {
		case 'n':
			if (parse_uint(optarg, 10000, &mo.clients) < 0 || mo.clients == 0)
				usage_fail("mixed", "-n: 1 to 10000 clients");
			break;
		case 'd':
			if (parse_seconds(optarg, &mo.seconds) < 0)
				usage_fail("mixed", "-d: seconds");
			break;
		case 'u': mo.user = optarg; break;
		case 'U':
			if (parse_uint(optarg, 10000000, &mo.nusers) < 0)
				usage_fail("mixed", "-U: a number of users");
			break;
		case 'w': mo.password = optarg; break;
		case 'm': mo.mailbox = optarg; break;
		case 'f': mo.msgfile = optarg; break;
		case 's': {
			char *end;
			errno = 0;
			mo.seed = strtoull(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0')
				usage_fail("mixed", "-s: a number");
			break;
		}
		default: usage_fail("mixed", NULL);
		}
	}
	if (optind != argc)
		usage_fail("mixed", "unexpected arguments");
	if (mo.port == 0 || mo.clients == 0 || mo.seconds == 0 || mo.user == NULL ||
	    mo.password == NULL)
		usage_fail("mixed", "-p, -n, -d, -u and -w are required");
	check_name_format("mixed", mo.user, mo.nusers);
	if (imap_quote(mo.password, mx.qpassword, sizeof(mx.qpassword)) < 0 ||
	    imap_quote(mo.mailbox, mx.qmailbox, sizeof(mx.qmailbox)) < 0)
		usage_fail("mixed", "-w or -m does not fit an IMAP quoted string");
	if (set_server(mo.host, mo.port) < 0)
		usage_fail("mixed", "-H: an IPv4 address");
	if (mo.msgfile == NULL)
		mixed_builtin_msg();
	else if (mixed_read_msg(mo.msgfile) < 0)
		exit(1);
}

static void mixed_report(void)
{
	size_t ops = 0;
	unsigned fail = mx.other_fail;
	for (int k = 0; k < OP_COUNT; k++) {
		struct samples *s = &mx.lat[k];
		samples_sort(s);
		printf("OP kind=%s n=%zu fail=%u p50=%.3f p99=%.3f max=%.3f\n", op_kinds[k].name,
		       s->n, mx.op_fail[k], samples_ms(s, 0.5), samples_ms(s, 0.99),
		       samples_ms(s, 1.0));
		ops += s->n;
		fail += mx.op_fail[k];
	}
	double secs = mx.running > 0 ? (double)(mx.last_run_end - mx.first_run) / 1e9 : 0;
	printf("RESULT mode=mixed clients=%u ops=%zu fail=%u seconds=%.3f rate=%.2f\n", mo.clients,
	       ops, fail, secs, secs > 0 ? (double)ops / secs : 0);
	print_first_fail();
	fflush(stdout);
}

static int mixed_main(int argc, char **argv)
{
	mixed_options(argc, argv);
	raise_nofile(mo.clients);
	mx.c = calloc(mo.clients, sizeof(*mx.c));
	base = event_base_new();
	if (mx.c == NULL || base == NULL)
		return 1;
	mx.left = mo.clients;
	for (unsigned i = 0; i < mo.clients; i++)
		mixed_start(i);
	if (mx.left > 0)
		event_base_dispatch(base);
	mixed_report();
	return mx.running > 0 ? 0 : 1;
}

/* ==== main ================================================================= */

int main(int argc, char **argv)
{
	/* a server that closes while we write must show as a failure, not kill us */
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2 || argv[1][0] == '-')
		return idle_main(argc, argv);
	/* getopt() takes the mode word for the program name */
	const char *mode = argv[1];
	if (strcmp(mode, "idle") == 0)
		return idle_main(argc - 1, argv + 1);
	if (strcmp(mode, "lmtp") == 0)
		return lmtp_main(argc - 1, argv + 1);
	if (strcmp(mode, "pop3") == 0)
		return pop3_main(argc - 1, argv + 1);
	if (strcmp(mode, "mixed") == 0)
		return mixed_main(argc - 1, argv + 1);
	fprintf(stderr, "loadgen: unknown mode %s\n", mode);
	usage_text();
	return 1;
}
