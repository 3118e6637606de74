/*
 * master.c: `mailroom serve`: the master process (see server.h).
 *
 * Start-up, in order, so that every mistake is reported before anything
 * runs: read the config (unknown keys and bad values stop here with the line
 * number), open the store, check what each child will need (check_children:
 * an unreadable DATA stops here with EX_NOPERM, naming the folder, the user
 * and the error), bind every listener (a port in use stops here), load TLS
 * (an unreadable certificate stops here), then fork the auth process and the
 * workers. When started as root, the workers run as run_user (and the store
 * is handed to that user), the auth process as auth_user; the master keeps
 * root only to open DATA/passwd for the auth process and to bind.
 *
 * Restarts. A child that dies is restarted at once if it ran at least
 * restart_min_uptime seconds; one that dies sooner is restarted after a
 * back-off (throttle.c: 1 s doubling to 60 s, one log line per back-off).
 * The workers learn why they could not start from a status pipe per child,
 * so the master's line says it. While no worker accepts connections (all are
 * waiting out a back-off), the master answers each new connection itself
 * with a temporary failure and closes it (refuse_connections), instead of
 * letting clients wait in the listen backlog for a worker that may be a
 * minute away.
 *
 * Sockets between the processes (all socketpairs, SOCK_SEQPACKET):
 *   auth <-> each worker   verification requests (auth_client.h)
 *   auth <-> master (pw)   auth asks "P", master answers with a fd of
 *                          DATA/passwd (SCM_RIGHTS), or "N" if there is no
 *                          such file, "E" if it cannot open it
 *   master -> auth (new)   "W" with a fd: a new worker's socket
 */
#include "server/server.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/signalfd.h>

#include "auth/auth_proc.h"
#include "lib/config.h"
#include "lib/fsx.h"
#include "server/fdpass.h"
#include "lib/log.h"
#include "store/store.h"

#define MAX_WORKERS 64

struct child {
	pid_t pid;
	int retiring; /* replaced: let it finish, do not restart */
	unsigned gen; /* the master's gen when it started (workers) */
	int64_t started; /* monotonic milliseconds */
	int status_fd; /* read end of its start-up status pipe, or -1 */
};

struct master {
	const char *data_dir;
	char *const *overrides;
	int n_overrides;
	struct config *config;
	struct listeners listeners;
	SSL_CTX *tls;
	int sigfd;   /* signalfd: SIGCHLD, SIGTERM, SIGINT, SIGHUP */
	int pw_alive; /* pw_sock still has an auth process behind it */
	int done;
	int data_fd;  /* DATA, for the workers (see fork_worker) */
	char data_path[64];
	int pw_sock;  /* master end of the passwd channel */
	int new_sock; /* master end of the new-worker channel */
	struct child auth;
	struct child workers[MAX_WORKERS * 2];
	unsigned nworkers;
	int stopping;
	/* Workers of an older gen (before a reload or a new auth process) are
	 * replaced, then retired, as soon as new ones run. */
	unsigned gen;
	struct throttle auth_thr, worker_thr;
	uid_t run_uid, auth_uid;
	gid_t run_gid, auth_gid;
};

static struct master *the_master; /* for the nftw callback only */

/* The master's loop is poll() on a signalfd and the passwd socket: no
 * event library, so nothing of it leaks into the children it forks. They
 * unblock the signals the master reads through the signalfd and take their
 * own dispositions. SIGINT (a terminal's Ctrl-C reaches the whole group) is
 * the master's to turn into an orderly stop. */
static void child_signals(struct master *m)
{
	sigset_t all;
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	if (m->sigfd >= 0)
		close(m->sigfd);
	/* A child whose master is gone (even by SIGKILL) stops too. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGUSR1, SIG_DFL);
}

static int lookup_user(const char *name, uid_t *uid, gid_t *gid)
{
	struct passwd *pw = getpwnam(name);
	if (pw == NULL)
		return -1;
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	return 0;
}

static int drop_privileges(uid_t uid, gid_t gid)
{
	if (geteuid() != 0)
		return 0;
	if (setgroups(1, &gid) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
		return -1;
	if (uid != 0 && setuid(0) == 0)
		return -1; /* must not be able to regain root */
	return 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A child that cannot start says why on its status pipe (the master logs
 * it once per back-off), or in the log if it has none. */
static void __attribute__((format(printf, 2, 3))) child_report(int status_fd, const char *fmt, ...)
{
	char text[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (status_fd < 0 || write(status_fd, text, strlen(text)) < 0)
		log_error("%s", text);
}

/* In a new child: the master's ends of the other children's status pipes
 * are none of its business. */
static void close_status_fds(struct master *m)
{
	for (unsigned i = 0; i < m->nworkers; i++)
		if (m->workers[i].status_fd >= 0)
			close(m->workers[i].status_fd);
	if (m->auth.status_fd >= 0)
		close(m->auth.status_fd);
}

static int chown_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)flag;
	(void)ftw;
	if (st->st_uid != the_master->run_uid || st->st_gid != the_master->run_gid)
		if (lchown(path, the_master->run_uid, the_master->run_gid) < 0)
			log_warn("cannot chown %s: %s", path, strerror(errno));
	return 0;
}

/* Hand DATA/mail and DATA/spool to run_user (once; cheap when done). */
static void hand_over_store(struct master *m)
{
	const char *dirs[] = { "mail", "spool" };
	for (size_t i = 0; i < 2; i++) {
		char path[4096];
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", m->data_dir, dirs[i]);
		if (stat(path, &st) == 0 && (st.st_uid != m->run_uid || st.st_gid != m->run_gid)) {
			the_master = m;
			nftw(path, chown_cb, 64, FTW_PHYS);
		}
	}
	char path[4096];
	snprintf(path, sizeof(path), "%s", m->data_dir);
	/* The data folder itself must be traversable by run_user. */
	struct stat st;
	if (stat(path, &st) == 0 && (st.st_mode & 0011) == 0 && st.st_uid != m->run_uid)
		chmod(path, st.st_mode | 0011);
}

/* ---- the start-up check --------------------------------------------------- */

/* DATA/passwd, opened for the auth process (which asks for it: it has no
 * file-system rights of its own). -1 with errno set if it cannot be. */
static int open_passwd(const struct master *m)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/passwd", m->data_dir);
	return open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
}

/* What a probe found: err is the errno of the failed call (0: none, or a
 * failure that has no errno), what the thing it could not open. */
struct probe {
	int failed;
	int err;
	char what[480];
	const char *hint; /* how to fix a permission error: a string constant,
			   * as valid in the master as in the forked probe */
};

static void probe_fail(struct probe *p, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void probe_fail(struct probe *p, int err, const char *fmt, ...)
{
	va_list ap;
	p->failed = 1;
	p->err = err;
	va_start(ap, fmt);
	vsnprintf(p->what, sizeof(p->what), fmt, ap);
	va_end(ap);
}

/* As run_user, what a worker does first: store_open(m->data_path), whose
 * calls are spelled out before it so that a failure has its errno and the
 * real folder name (the worker sees DATA as /proc/self/fd/N). Then the
 * path check: every folder above DATA must be searchable by run_user. */
static void probe_worker(struct master *m, struct probe *p)
{
	struct store *store = NULL;
	struct error err;
	char path[4096];
	if (drop_privileges(m->run_uid, m->run_gid) < 0) {
		probe_fail(p, errno, "cannot become run_user");
		return;
	}
	p->hint = "it needs read and search permission (r-x) there";
	int data = open(m->data_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (data < 0) {
		probe_fail(p, errno, "the data folder %s", m->data_dir);
		return;
	}
	const char *sub[] = { "mail", "spool", "spool/tmp" };
	for (size_t i = 0; i < 3; i++) {
		int fd = fsx_opendir_beneath(data, sub[i]);
		if (fd < 0) {
			probe_fail(p, errno, "%s/%s", m->data_dir, sub[i]);
			return;
		}
		close(fd);
	}
	close(data);
	if (store_open(m->data_path, m->config, &store, &err) < 0) {
		probe_fail(p, 0, "the store: %s", err.text);
		return;
	}
	store_close(&store);
	snprintf(path, sizeof(path), "%s/mail", m->data_dir);
	p->hint = "every folder above DATA must be searchable (x) by it";
	if (access(path, X_OK) < 0)
		probe_fail(p, errno, "%s by its path", path);
}

static void probe_auth(struct master *m, struct probe *p)
{
	if (drop_privileges(m->auth_uid, m->auth_gid) < 0)
		probe_fail(p, errno, "cannot become auth_user");
}

/* Run probe in a child (which takes a child's identity) and return what it
 * found. A probe that dies without an answer is a failure too. */
static void run_probe(struct master *m, void (*probe)(struct master *, struct probe *),
		      struct probe *out)
{
	int pfd[2];
	memset(out, 0, sizeof(*out));
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		probe_fail(out, errno, "a pipe for the start-up check");
		return;
	}
	pid_t pid = fork();
	if (pid < 0) {
		probe_fail(out, errno, "a process for the start-up check");
		close(pfd[0]);
		close(pfd[1]);
		return;
	}
	if (pid == 0) {
		struct probe p;
		memset(&p, 0, sizeof(p));
		close(pfd[0]);
		probe(m, &p);
		_exit(write(pfd[1], &p, sizeof(p)) == (ssize_t)sizeof(p) ? 0 : 1);
	}
	close(pfd[1]);
	ssize_t n;
	while ((n = read(pfd[0], out, sizeof(*out))) < 0 && errno == EINTR)
		;
	close(pfd[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (n != (ssize_t)sizeof(*out))
		probe_fail(out, 0, "the start-up check (status %d)", status);
	out->what[sizeof(out->what) - 1] = '\0';
}

static int probe_exit_code(int err)
{
	return err == EACCES || err == EPERM ? EX_NOPERM : EX_CONFIG;
}

/* Before any child is forked or any port bound: can each child open what
 * it needs, as its user and with the same calls? The workers open DATA and
 * the store (as run_user); the auth process needs nothing of the file
 * system but DATA/passwd, which the master opens for it (a missing file is
 * no users, as in pw_request). Returns 0, or EX_NOPERM / EX_CONFIG after
 * one message on stderr naming the file, the user and the error. */
static int check_children(struct master *m)
{
	struct probe p;
	const char *run_user = config_str(m->config, "run_user");
	const char *auth_user = config_str(m->config, "auth_user");
	run_probe(m, probe_worker, &p);
	if (p.failed) {
		int noperm = probe_exit_code(p.err) == EX_NOPERM && p.hint != NULL;
		fprintf(stderr, "mailroom serve: the workers run as run_user %s, which cannot open %s%s%s%s%s%s\n",
			run_user, p.what, p.err != 0 ? ": " : "", p.err != 0 ? strerror(p.err) : "",
			noperm ? " (" : "", noperm ? p.hint : "", noperm ? ")" : "");
		return probe_exit_code(p.err);
	}
	run_probe(m, probe_auth, &p);
	if (p.failed) {
		fprintf(stderr, "mailroom serve: the auth process runs as auth_user %s: %s%s%s\n",
			auth_user, p.what, p.err != 0 ? ": " : "", p.err != 0 ? strerror(p.err) : "");
		return probe_exit_code(p.err);
	}
	int fd = open_passwd(m);
	struct stat st;
	if (fd < 0 && errno != ENOENT) {
		int e = errno;
		fprintf(stderr, "mailroom serve: cannot open %s/passwd for the auth process (%s): %s\n",
			m->data_dir, auth_user, strerror(e));
		return probe_exit_code(e);
	}
	if (fd >= 0 && fstat(fd, &st) == 0 && !S_ISREG(st.st_mode)) {
		fprintf(stderr, "mailroom serve: %s/passwd is not a regular file\n", m->data_dir);
		close(fd);
		return EX_CONFIG;
	}
	if (fd >= 0)
		close(fd);
	return 0;
}

/* ---- the auth process --------------------------------------------------- */

struct auth_child_ctx {
	int pw_sock;
};

static int ask_passwd(void *arg)
{
	struct auth_child_ctx *a = arg;
	char reply[4];
	size_t len;
	int fd;
	if (send(a->pw_sock, "P", 1, MSG_NOSIGNAL) != 1)
		return -1;
	if (fdpass_recv(a->pw_sock, &fd, reply, sizeof(reply), &len) < 0 || len == 0) {
		errno = EPIPE;
		return -1;
	}
	if (fd < 0)
		errno = reply[0] == 'N' ? ENOENT : EIO; /* auth_proc.h: open_passwd */
	return fd;
}

struct auth_new_ctx {
	struct auth_proc *ap;
	struct event_base *base;
};

static void auth_new_cb(evutil_socket_t sock, short what, void *arg)
{
	struct auth_new_ctx *a = arg;
	char msg[4];
	size_t len;
	int fd;
	(void)what;
	if (fdpass_recv(sock, &fd, msg, sizeof(msg), &len) < 0 || len == 0) {
		event_base_loopexit(a->base, NULL); /* the master is gone */
		return;
	}
	if (fd >= 0 && (msg[0] != 'W' || auth_proc_add_worker(a->ap, fd) < 0))
		close(fd);
}

static int auth_child(struct master *m, int pw_sock, int new_sock, int status_fd)
{
	struct auth_child_ctx actx = { pw_sock };
	char passwd_path[4096];
	snprintf(passwd_path, sizeof(passwd_path), "%s/passwd", m->data_dir);
	struct auth_proc_settings set = {
		.failure_delay_ms = (unsigned)config_uint(m->config, "auth_failure_delay_ms"),
		.max_failures = (unsigned)config_uint(m->config, "auth_max_failures"),
		.allow_plain = config_bool(m->config, "auth_allow_plain"),
		.failure_max_delay_ms = (unsigned)config_uint(m->config, "auth_failure_max_delay_ms"),
		.failure_forget_secs = (unsigned)config_uint(m->config, "auth_failure_forget_seconds"),
		.ip_max_failures = (unsigned)config_uint(m->config, "auth_ip_max_failures"),
		.max_userip_connections = (unsigned)config_uint(m->config, "max_userip_connections"),
		.passwd_path = passwd_path,
	};
	if (drop_privileges(m->auth_uid, m->auth_gid) < 0) {
		child_report(status_fd, "cannot become auth_user %s: %s",
			     config_str(m->config, "auth_user"), strerror(errno));
		return 1;
	}
	struct event_base *base = event_base_new();
	struct auth_proc *ap = base != NULL ? auth_proc_new(base, &set, ask_passwd, &actx) : NULL;
	if (ap == NULL) {
		child_report(status_fd, "out of memory");
		return 1;
	}
	struct auth_new_ctx nctx = { ap, base };
	struct event *ev = event_new(base, new_sock, EV_READ | EV_PERSIST, auth_new_cb, &nctx);
	event_add(ev, NULL);
	close(status_fd); /* started: later deaths speak for themselves */
	event_base_dispatch(base);
	event_free(ev);
	auth_proc_free(&ap);
	event_base_free(base);
	return 0;
}

/* ---- forking --------------------------------------------------------------- */

/* A pipe for a child's start-up failure: [0] stays with the master
 * (non-blocking: read once the child is dead), [1] goes to the child. */
static int status_pipe(int fds[2])
{
	if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) {
		log_error("pipe: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static pid_t fork_worker(struct master *m, int *status_fd_r)
{
	int sv[2], st[2];
	if (m->new_sock < 0)
		return -1; /* no auth process to pair it with */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		log_error("socketpair: %s", strerror(errno));
		return -1;
	}
	if (status_pipe(st) < 0) {
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	/* The auth process gets its end before the worker can ask anything. */
	if (fdpass_send(m->new_sock, sv[0], "W", 1) < 0) {
		log_error("cannot pass a worker socket to the auth process");
		close(sv[0]);
		close(sv[1]);
		close(st[0]);
		close(st[1]);
		return -1;
	}
	close(sv[0]);
	pid_t pid = fork();
	if (pid < 0) {
		log_error("fork: %s", strerror(errno));
		close(sv[1]);
		close(st[0]);
		close(st[1]);
		return -1;
	}
	if (pid == 0) {
		close(m->pw_sock);
		close(m->new_sock);
		close(st[0]);
		close_status_fds(m);
		if (drop_privileges(m->run_uid, m->run_gid) < 0) {
			child_report(st[1], "cannot become run_user %s: %s",
				     config_str(m->config, "run_user"), strerror(errno));
			_exit(1);
		}
		/* Workers reach DATA through the descriptor the master opened:
		 * run_user may have no right to search DATA's parent folders. */
		struct worker_args args = { m->data_path, m->config, &m->listeners, m->tls, sv[1], st[1] };
		child_signals(m);
		_exit(worker_run(&args));
	}
	close(sv[1]);
	close(st[1]);
	*status_fd_r = st[0];
	return pid;
}

static int start_auth(struct master *m)
{
	int pw[2], nw[2], st[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pw) < 0) {
		log_error("socketpair: %s", strerror(errno));
		return -1;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, nw) < 0) {
		log_error("socketpair: %s", strerror(errno));
		close(pw[0]);
		close(pw[1]);
		return -1;
	}
	if (status_pipe(st) < 0)
		goto fail;
	pid_t pid = fork();
	if (pid < 0) {
		log_error("fork: %s", strerror(errno));
		close(st[0]);
		close(st[1]);
		goto fail;
	}
	if (pid == 0) {
		close(pw[0]);
		close(nw[0]);
		close(st[0]);
		close_status_fds(m);
		listen_close_all(&m->listeners);
		child_signals(m);
		_exit(auth_child(m, pw[1], nw[1], st[1]));
	}
	close(pw[1]);
	close(nw[1]);
	close(st[1]);
	m->pw_sock = pw[0];
	m->new_sock = nw[0];
	m->pw_alive = 1;
	m->auth.pid = pid;
	m->auth.started = now_ms();
	m->auth.status_fd = st[0];
	m->gen++; /* the workers hold sockets to the old one: replace them */
	return 0;
fail:
	close(pw[0]);
	close(pw[1]);
	close(nw[0]);
	close(nw[1]);
	return -1;
}

static void pw_request(struct master *m)
{
	int sock = m->pw_sock;
	char msg[8];
	ssize_t n = recv(sock, msg, sizeof(msg), MSG_DONTWAIT);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		m->pw_alive = 0; /* the auth process is gone; reap() restarts it */
		return;
	}
	if (n < 0)
		return;
	int fd = open_passwd(m);
	if (fd < 0) {
		/* No file is no users; any other error is a temporary failure. */
		fdpass_send(sock, -1, errno == ENOENT ? "N" : "E", 1);
		return;
	}
	fdpass_send(sock, fd, "P", 1);
	close(fd);
}

static unsigned worker_count(const struct master *m)
{
	unsigned n = (unsigned)config_uint(m->config, "workers");
	if (n == 0) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);
		n = c > 0 ? (unsigned)c : 1;
	}
	return n > MAX_WORKERS ? MAX_WORKERS : n;
}

/* Workers that accept connections (retiring ones no longer do); with
 * current_only, only those of the current gen. */
static unsigned accepting_workers(const struct master *m, int current_only)
{
	unsigned n = 0;
	for (unsigned i = 0; i < m->nworkers; i++)
		if (!m->workers[i].retiring && (!current_only || m->workers[i].gen == m->gen))
			n++;
	return n;
}

/* A child could not even be forked (out of processes, descriptors): try
 * again in a second rather than at every turn of the loop. */
static void retry_later(struct throttle *t)
{
	int64_t soon = now_ms() + 1000;
	if (t->until_ms < soon)
		t->until_ms = soon;
}

static void start_workers(struct master *m, unsigned n)
{
	for (unsigned i = 0; i < n && m->nworkers < MAX_WORKERS * 2; i++) {
		int status_fd;
		pid_t pid = fork_worker(m, &status_fd);
		if (pid < 0) {
			retry_later(&m->worker_thr);
			return;
		}
		struct child *c = &m->workers[m->nworkers++];
		c->pid = pid;
		c->retiring = 0;
		c->gen = m->gen;
		c->started = now_ms();
		c->status_fd = status_fd;
	}
}

/* Bring the children to what they should be, as far as the back-offs
 * allow: an auth process, worker_count() workers of the current gen, and
 * the older ones retired once a new one runs (until then they serve, with
 * the settings they have; after an auth restart, logins on them fail
 * temporarily, the rest works). */
static void fill(struct master *m)
{
	if (m->stopping)
		return;
	int64_t now = now_ms();
	if (m->auth.pid == 0) {
		if (throttle_blocked(&m->auth_thr, now))
			return;
		if (start_auth(m) < 0) {
			retry_later(&m->auth_thr);
			return;
		}
	}
	unsigned want = worker_count(m), have = accepting_workers(m, 1);
	if (have < want && !throttle_blocked(&m->worker_thr, now))
		start_workers(m, want - have);
	if (accepting_workers(m, 1) == 0)
		return;
	for (unsigned i = 0; i < m->nworkers; i++)
		if (!m->workers[i].retiring && m->workers[i].gen != m->gen) {
			m->workers[i].retiring = 1;
			kill(m->workers[i].pid, SIGUSR1);
		}
}

/* ---- deaths ------------------------------------------------------------------ */

/* Why a child died: what it wrote on its status pipe (it could not start),
 * else its wait status. Closes the pipe. */
static void death_reason(struct child *c, int status, char *out, size_t size)
{
	ssize_t n = -1;
	if (c->status_fd >= 0) {
		n = read(c->status_fd, out, size - 1);
		close(c->status_fd);
		c->status_fd = -1;
	}
	if (n > 0)
		out[n] = '\0';
	else if (WIFSIGNALED(status))
		snprintf(out, size, "killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else
		snprintf(out, size, "exit status %d", WEXITSTATUS(status));
}

/* The workers see DATA as /proc/self/fd/N (m->data_path): name it as the
 * admin knows it in what the master logs. For display only. */
static void show_data_dir(const struct master *m, char *text, size_t size)
{
	char *at = strstr(text, m->data_path);
	if (at == NULL)
		return;
	char rest[256];
	snprintf(rest, sizeof(rest), "%s", at + strlen(m->data_path));
	snprintf(at, size - (size_t)(at - text), "%s%s", m->data_dir, rest);
}

/* A child that was to run died: log it, once per back-off when it died
 * young (throttle.c); fill() starts the next one when it may. */
static void child_died(struct master *m, const char *kind, struct throttle *t, struct child *c,
		       int status)
{
	char reason[256];
	int64_t now = now_ms();
	unsigned min_uptime = (unsigned)config_uint(m->config, "restart_min_uptime");
	death_reason(c, status, reason, sizeof(reason));
	show_data_dir(m, reason, sizeof(reason));
	switch (throttle_death(t, c->started, now, min_uptime)) {
	case THROTTLE_NONE:
		log_error("%s %ld died after %lld s: %s; starting another", kind, (long)c->pid,
			  (long long)((now - c->started) / 1000), reason);
		break;
	case THROTTLE_BEGIN:
		log_error("%s died %u time%s within %u s of start; next restart in %u s: %s", kind,
			  t->early, t->early == 1 ? "" : "s", min_uptime, t->delay, reason);
		break;
	default:
		break; /* counted in the next back-off's line */
	}
}

static void reap(struct master *m)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid == m->auth.pid) {
			struct child dead = m->auth;
			m->auth.pid = 0;
			m->auth.status_fd = -1;
			close(m->pw_sock);
			close(m->new_sock);
			m->pw_sock = m->new_sock = -1;
			m->pw_alive = 0;
			if (!m->stopping)
				child_died(m, "auth process", &m->auth_thr, &dead, status);
			else if (dead.status_fd >= 0)
				close(dead.status_fd);
			continue;
		}
		for (unsigned i = 0; i < m->nworkers; i++) {
			if (m->workers[i].pid != pid)
				continue;
			struct child dead = m->workers[i];
			m->workers[i] = m->workers[--m->nworkers];
			if (!dead.retiring && !m->stopping)
				child_died(m, "worker", &m->worker_thr, &dead, status);
			else if (dead.status_fd >= 0)
				close(dead.status_fd);
			break;
		}
	}
	if (m->stopping && m->nworkers == 0 && m->auth.pid == 0)
		m->done = 1;
}

/* ---- connections while no worker runs ---------------------------------------- */

/* Every worker is waiting out a back-off: answer new connections with a
 * temporary failure instead of leaving them in the backlog. IMAP: a BYE
 * greeting (RFC 9051 7.1.5) with UNAVAILABLE (RFC 5530); POP3: -ERR with
 * SYS/TEMP (RFC 3206); LMTP: 421 4.3.2 (RFC 5321 3.1 and 4.2, RFC 3463).
 * Implicit-TLS ports are closed without a word: the master does no TLS. */
static void refuse_connections(struct master *m, int fd, enum listen_proto proto)
{
	static const char *const greeting[] = {
		[PROTO_IMAP] = "* BYE [UNAVAILABLE] No worker is running; try again later\r\n",
		[PROTO_POP3] = "-ERR [SYS/TEMP] No worker is running; try again later\r\n",
		[PROTO_LMTP] = "421 4.3.2 No worker is running; try again later\r\n",
	};
	(void)m;
	for (int i = 0; i < 64; i++) { /* bounded: signals and the timer come first */
		int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (c < 0)
			return;
		const char *g = (size_t)proto < sizeof(greeting) / sizeof(greeting[0]) ? greeting[proto] : NULL;
		if (g != NULL && send(c, g, strlen(g), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
			/* nothing to do: the client sees the close */
		}
		close(c);
	}
}

static void reload(struct master *m)
{
	struct config *cfg = NULL;
	struct error err;
	if (config_load(m->data_dir, m->overrides, m->n_overrides, &cfg, &err) < 0) {
		log_error("reload: %s; keeping the running configuration", err.text);
		return;
	}
	SSL_CTX *tls = tls_load(cfg, m->data_dir, &err);
	if (tls == NULL) {
		log_error("reload: %s; keeping the running configuration", err.text);
		config_free(&cfg);
		return;
	}
	const char *keys[] = { "imap_listen", "imaps_listen", "pop3_listen", "pop3s_listen", "lmtp_listen" };
	for (size_t i = 0; i < 5; i++)
		if (strcmp(config_str(cfg, keys[i]), config_str(m->config, keys[i])) != 0)
			log_warn("reload: %s changed; listeners change only on restart", keys[i]);
	/* Old workers keep their copy of the old config and TLS context. */
	config_free(&m->config);
	m->config = cfg;
	tls_free(m->tls);
	m->tls = tls;
	m->gen++; /* fill() replaces every worker */
	fill(m);
	log_info("reloaded the configuration and certificates");
}

static void on_signal(struct master *m, int sig)
{
	if (sig == SIGCHLD) {
		reap(m);
	} else if (sig == SIGHUP) {
		if (!m->stopping)
			reload(m);
	} else if (!m->stopping) {
		m->stopping = 1;
		log_info("stopping");
		for (unsigned i = 0; i < m->nworkers; i++)
			kill(m->workers[i].pid, SIGTERM);
		if (m->auth.pid > 0)
			kill(m->auth.pid, SIGTERM);
		reap(m);
	}
}

/* How long poll() may sleep: until the first back-off ends (-1: no end). */
static int poll_timeout(const struct master *m)
{
	int64_t now = now_ms(), wake = -1;
	const struct throttle *t[] = { &m->auth_thr, &m->worker_thr };
	for (size_t i = 0; i < 2; i++)
		if (throttle_blocked(t[i], now) && (wake < 0 || t[i]->until_ms < wake))
			wake = t[i]->until_ms;
	return wake < 0 ? -1 : (int)(wake - now) + 1;
}

/* The master's loop: signals, the auth process's requests for DATA/passwd,
 * the listeners while no worker accepts, and the end of each back-off. */
static void run(struct master *m)
{
	struct pollfd *pfd = calloc(m->listeners.n + 2, sizeof(*pfd));
	if (pfd == NULL) {
		log_error("out of memory");
		return;
	}
	while (!m->done) {
		nfds_t n = 0, first_listener;
		pfd[n++] = (struct pollfd){ m->sigfd, POLLIN, 0 };
		int pw = m->pw_alive ? (int)n++ : -1;
		if (pw >= 0)
			pfd[pw] = (struct pollfd){ m->pw_sock, POLLIN, 0 };
		first_listener = n;
		if (!m->stopping && accepting_workers(m, 0) == 0)
			for (size_t i = 0; i < m->listeners.n; i++)
				pfd[n++] = (struct pollfd){ m->listeners.v[i].fd, POLLIN, 0 };
		if (poll(pfd, n, poll_timeout(m)) < 0 && errno != EINTR)
			break;
		struct signalfd_siginfo si;
		while (read(m->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
			on_signal(m, (int)si.ssi_signo);
		if (pw >= 0 && m->pw_alive && (pfd[pw].revents & (POLLIN | POLLHUP | POLLERR)))
			pw_request(m);
		for (nfds_t i = first_listener; i < n; i++)
			if (pfd[i].revents & POLLIN)
				refuse_connections(m, m->listeners.v[i - first_listener].fd,
						   m->listeners.v[i - first_listener].proto);
		fill(m);
	}
	free(pfd);
}

/* A connection costs a worker one descriptor, and a session with a mailbox
 * selected a few more (its user root, the mailbox, cur/ and new/: 5 in all).
 * Take what max_connections_per_worker needs: as root (the master is root
 * when it binds low ports) the hard limit itself can be raised, up to the
 * kernel's fs.nr_open, as Dovecot's master does for its client_limit; else
 * the soft limit goes up to the hard one. */
static void raise_nofile(uint64_t max_conns)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	rlim_t want = (rlim_t)(max_conns > 1000000 ? 1000000 : max_conns) * 6 + 1024;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
		struct rlimit up = { want, want };
		unsigned long nr_open = 0;
		FILE *f = fopen("/proc/sys/fs/nr_open", "r");
		if (f != NULL) {
			if (fscanf(f, "%lu", &nr_open) != 1)
				nr_open = 0;
			fclose(f);
		}
		if (nr_open != 0 && up.rlim_max > nr_open)
			up.rlim_cur = up.rlim_max = nr_open;
		if (up.rlim_max > rl.rlim_max && setrlimit(RLIMIT_NOFILE, &up) == 0)
			return;
	}
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int server_main(const char *data_dir, char *const *overrides, int n_overrides)
{
	struct master m;
	struct store *store = NULL;
	struct error err;
	int rc = 1;

	memset(&m, 0, sizeof(m));
	m.data_dir = data_dir;
	m.overrides = overrides;
	m.n_overrides = n_overrides;
	m.pw_sock = m.new_sock = m.data_fd = m.sigfd = -1;
	m.auth.status_fd = -1;
	if (config_load(data_dir, overrides, n_overrides, &m.config, &err) < 0) {
		fprintf(stderr, "mailroom serve: %s\n", err.text);
		return EX_CONFIG;
	}
	log_init("mailroom", strcmp(config_str(m.config, "log"), "syslog") == 0, LOG_LVL_INFO);
	m.run_uid = m.auth_uid = geteuid();
	m.run_gid = m.auth_gid = getegid();
	if (geteuid() == 0) {
		if (lookup_user(config_str(m.config, "run_user"), &m.run_uid, &m.run_gid) < 0 ||
		    lookup_user(config_str(m.config, "auth_user"), &m.auth_uid, &m.auth_gid) < 0) {
			fprintf(stderr, "mailroom serve: run_user %s or auth_user %s does not exist\n",
				config_str(m.config, "run_user"), config_str(m.config, "auth_user"));
			rc = EX_CONFIG;
			goto out;
		}
	}
	if (store_open(data_dir, m.config, &store, &err) < 0) {
		fprintf(stderr, "mailroom serve: %s\n", err.text);
		goto out;
	}
	store_close(&store);
	m.data_fd = open(data_dir, O_RDONLY | O_DIRECTORY);
	if (m.data_fd < 0) {
		fprintf(stderr, "mailroom serve: %s: %s\n", data_dir, strerror(errno));
		goto out;
	}
	snprintf(m.data_path, sizeof(m.data_path), "/proc/self/fd/%d", m.data_fd);
	if (geteuid() == 0)
		hand_over_store(&m);
	rc = check_children(&m);
	if (rc != 0)
		goto out;
	rc = 1;
	if (listen_open_all(m.config, data_dir, &m.listeners, &err) < 0) {
		fprintf(stderr, "mailroom serve: %s\n", err.text);
		goto out;
	}
	m.tls = tls_load(m.config, data_dir, &err);
	if (m.tls == NULL) {
		fprintf(stderr, "mailroom serve: %s\n", err.text);
		goto out;
	}
	/* Protocols not built yet are not bound (their listeners close). */
	for (size_t i = 0; i < m.listeners.n; i++) {
		if (m.listeners.v[i].proto == PROTO_IMAP || m.listeners.v[i].proto == PROTO_IMAPS ||
		    m.listeners.v[i].proto == PROTO_LMTP || m.listeners.v[i].proto == PROTO_POP3 ||
		    m.listeners.v[i].proto == PROTO_POP3S) {
			log_info("listening: %s", m.listeners.v[i].name);
			continue;
		}
		log_info("not served yet: %s", m.listeners.v[i].name);
		close(m.listeners.v[i].fd);
		m.listeners.v[i--] = m.listeners.v[--m.listeners.n];
	}
	raise_nofile(config_uint(m.config, "max_connections_per_worker"));
	signal(SIGPIPE, SIG_IGN);
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	m.sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (m.sigfd < 0 || start_auth(&m) < 0)
		goto out;
	start_workers(&m, worker_count(&m));
	log_info("mailroom serve: %u workers, data %s", m.nworkers, data_dir);
	run(&m);
	rc = 0;
out:
	if (m.sigfd >= 0)
		close(m.sigfd);
	if (m.pw_sock >= 0)
		close(m.pw_sock);
	if (m.new_sock >= 0)
		close(m.new_sock);
	if (m.auth.status_fd >= 0)
		close(m.auth.status_fd);
	for (unsigned i = 0; i < m.nworkers; i++)
		if (m.workers[i].status_fd >= 0)
			close(m.workers[i].status_fd);
	listen_close_all(&m.listeners);
	if (m.data_fd >= 0)
		close(m.data_fd);
	tls_free(m.tls);
	config_free(&m.config);
	return rc;
}
