/*
 * loadgen.c: many IMAP connections in IDLE, and how fast a delivery reaches
 * them. Built by bench/imap/run with `cc -O2 bench/loadgen.c $(pkg-config
 * --cflags --libs libevent)`; needs nothing of mailroom.
 *
 *   loadgen -p PORT -n N [-H 127.0.0.1] [-a NADDR] [-u USER] [-U NUSERS]
 *           [-w PASSWORD] [-m MAILBOX] [-c INFLIGHT] [-T RAMP_SECONDS]
 *
 * Opens N connections to HOST:PORT, each from one of NADDR source addresses
 * 127.0.0.2, 127.0.0.3, ... (bind() with IP_BIND_ADDRESS_NO_PORT before
 * connect(), so the 4-tuples, not one address's ephemeral ports, limit the
 * count). Each connection: greeting, LOGIN, SELECT MAILBOX, IDLE, "+". At
 * most INFLIGHT connections are between connect and "+" at once (the auth
 * process hashes one password at a time). USER is a printf format taking
 * the connection number modulo NUSERS ("u%d") or a plain name.
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
 * Every loop is bounded by the timeouts above.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

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

static struct event_base *base;
static struct lconn *conns;
static unsigned next_conn, inflight, idle_count, failed_count, armed_count, got_count;
static int ready_printed, round_waiting;
static int64_t t0_ns, t1_ns, ramp_start;
static int64_t round_deadline, round_quiet_ns, last_arrival; /* ns */
static struct event *round_timer, *ramp_timer, *progress_timer;
static struct sockaddr_in server_sa;
/* failure reasons, for the READY line */
static unsigned fail_connect, fail_closed, fail_login, fail_select, fail_idle;

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

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
	if (opt.nusers > 0)
		snprintf(out, size, opt.user, (int)(idx % opt.nusers));
	else
		snprintf(out, size, "%s", opt.user);
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
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		conn_fail(c, &fail_connect);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	struct sockaddr_in src = { .sin_family = AF_INET };
	src.sin_addr.s_addr = htonl(0x7f000002u + i % opt.naddr); /* 127.0.0.2 + k */
	if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
		close(fd);
		conn_fail(c, &fail_connect);
		return;
	}
	c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		close(fd);
		conn_fail(c, &fail_connect);
		return;
	}
	bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&server_sa, sizeof(server_sa)) < 0)
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

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

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

static void usage(void)
{
	fprintf(stderr, "usage: loadgen -p PORT -n N [-H HOST] [-a NADDR] [-u USER] [-U NUSERS] "
			"[-w PASSWORD] [-m MAILBOX] [-c INFLIGHT] [-T RAMP_SECONDS]\n");
	exit(64);
}

int main(int argc, char **argv)
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
	/* one descriptor per connection, plus a few */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < (rlim_t)opt.n + 32)
			fprintf(stderr, "loadgen: RLIMIT_NOFILE is %llu, too low for %u connections\n",
				(unsigned long long)rl.rlim_cur, opt.n);
	}
	server_sa.sin_family = AF_INET;
	server_sa.sin_port = htons((uint16_t)opt.port);
	if (inet_pton(AF_INET, opt.host, &server_sa.sin_addr) != 1)
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
