/*
 * master.c: `mailroom serve`: the master process (see server.h).
 *
 * Start-up, in order, so that every mistake is reported before anything
 * runs: read the config (unknown keys and bad values stop here with the line
 * number), open the store, bind every listener (a port in use stops here),
 * load TLS (an unreadable certificate stops here), then fork the auth process
 * and the workers. When started as root, the workers run as run_user (and the
 * store is handed to that user), the auth process as auth_user; the master
 * keeps root only to open DATA/passwd for the auth process and to bind.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/signalfd.h>

#include "auth/auth_proc.h"
#include "lib/config.h"
#include "server/fdpass.h"
#include "lib/log.h"
#include "store/store.h"

#define MAX_WORKERS 64

struct child {
	pid_t pid;
	int retiring; /* replaced after SIGHUP: let it finish, do not restart */
	time_t started;
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

static int chown_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)flag;
	(void)ftw;
	if (st->st_uid != the_master->run_uid || st->st_gid != the_master->run_gid)
		if (lchown(path, the_master->run_uid, the_master->run_gid) < 0)
			log_warn("cannot chown %s: %s", path, strerror(errno));
	return 0;
}

/* Can run_user open DATA/mail by its path? (SQLite opens the index by
 * path, so every parent folder of DATA must be searchable by run_user.)
 * Checked in a child that takes run_user's identity. */
static int run_user_can_reach(struct master *m)
{
	pid_t pid = fork();
	if (pid < 0)
		return 0;
	if (pid == 0) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/mail", m->data_dir);
		if (drop_privileges(m->run_uid, m->run_gid) < 0)
			_exit(2);
		_exit(access(path, X_OK) == 0 ? 0 : 1);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
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

static int auth_child(struct master *m, int pw_sock, int new_sock, int *worker_fds, unsigned n)
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
		log_error("auth: cannot drop privileges: %s", strerror(errno));
		return 1;
	}
	struct event_base *base = event_base_new();
	struct auth_proc *ap = auth_proc_new(base, &set, ask_passwd, &actx);
	if (base == NULL || ap == NULL)
		return 1;
	for (unsigned i = 0; i < n; i++)
		auth_proc_add_worker(ap, worker_fds[i]);
	struct auth_new_ctx nctx = { ap, base };
	struct event *ev = event_new(base, new_sock, EV_READ | EV_PERSIST, auth_new_cb, &nctx);
	event_add(ev, NULL);
	event_base_dispatch(base);
	event_free(ev);
	auth_proc_free(&ap);
	event_base_free(base);
	return 0;
}

/* ---- forking --------------------------------------------------------------- */


static pid_t fork_worker(struct master *m)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		log_error("socketpair: %s", strerror(errno));
		return -1;
	}
	/* The auth process gets its end before the worker can ask anything. */
	if (fdpass_send(m->new_sock, sv[0], "W", 1) < 0) {
		log_error("cannot pass a worker socket to the auth process");
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	close(sv[0]);
	pid_t pid = fork();
	if (pid < 0) {
		log_error("fork: %s", strerror(errno));
		close(sv[1]);
		return -1;
	}
	if (pid == 0) {
		close(m->pw_sock);
		close(m->new_sock);
		if (drop_privileges(m->run_uid, m->run_gid) < 0) {
			log_error("worker: cannot drop privileges: %s", strerror(errno));
			_exit(1);
		}
		/* Workers reach DATA through the descriptor the master opened:
		 * run_user may have no right to search DATA's parent folders. */
		struct worker_args args = { m->data_path, m->config, &m->listeners, m->tls, sv[1] };
		child_signals(m);
		_exit(worker_run(&args));
	}
	close(sv[1]);
	return pid;
}

static int start_auth(struct master *m)
{
	int pw[2], nw[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pw) < 0 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, nw) < 0) {
		log_error("socketpair: %s", strerror(errno));
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		close(pw[0]);
		close(nw[0]);
		listen_close_all(&m->listeners);
		child_signals(m);
		_exit(auth_child(m, pw[1], nw[1], NULL, 0));
	}
	close(pw[1]);
	close(nw[1]);
	m->pw_sock = pw[0];
	m->new_sock = nw[0];
	m->pw_alive = 1;
	m->auth.pid = pid;
	m->auth.started = time(NULL);
	return 0;
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
	char path[4096];
	snprintf(path, sizeof(path), "%s/passwd", m->data_dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		/* No file is no users; any other error is a temporary failure. */
		fdpass_send(sock, -1, errno == ENOENT ? "N" : "E", 1);
		return;
	}
	fdpass_send(sock, fd, "P", 1);
	close(fd);
}

static void start_workers(struct master *m, unsigned n)
{
	for (unsigned i = 0; i < n && m->nworkers < MAX_WORKERS * 2; i++) {
		pid_t pid = fork_worker(m);
		if (pid > 0) {
			m->workers[m->nworkers].pid = pid;
			m->workers[m->nworkers].retiring = 0;
			m->workers[m->nworkers].started = time(NULL);
			m->nworkers++;
		}
	}
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

/* ---- signals ----------------------------------------------------------------- */

static void reap(struct master *m)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid == m->auth.pid) {
			m->auth.pid = 0;
			if (!m->stopping) {
				/* Workers hold sockets to the dead auth process:
				 * restart everything (existing sessions stay on
				 * the old workers until they end). */
				log_error("auth process died (status %d); restarting", status);
				close(m->pw_sock);
				close(m->new_sock);
				if (start_auth(m) == 0) {
					for (unsigned i = 0; i < m->nworkers; i++)
						if (m->workers[i].pid > 0 && !m->workers[i].retiring) {
							m->workers[i].retiring = 1;
							kill(m->workers[i].pid, SIGUSR1);
						}
					start_workers(m, worker_count(m));
				}
			}
			continue;
		}
		for (unsigned i = 0; i < m->nworkers; i++) {
			if (m->workers[i].pid != pid)
				continue;
			int crashed = !m->workers[i].retiring && !m->stopping;
			m->workers[i] = m->workers[--m->nworkers];
			if (crashed) {
				log_error("worker %ld died (status %d); starting another", (long)pid, status);
				start_workers(m, 1);
			}
			break;
		}
	}
	if (m->stopping && m->nworkers == 0 && m->auth.pid == 0)
		m->done = 1;
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
	for (unsigned i = 0; i < m->nworkers; i++)
		if (!m->workers[i].retiring) {
			m->workers[i].retiring = 1;
			kill(m->workers[i].pid, SIGUSR1);
		}
	start_workers(m, worker_count(m));
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
	if (config_load(data_dir, overrides, n_overrides, &m.config, &err) < 0) {
		fprintf(stderr, "mailroom serve: %s\n", err.text);
		return 78;
	}
	log_init("mailroom", strcmp(config_str(m.config, "log"), "syslog") == 0, LOG_LVL_INFO);
	m.run_uid = m.auth_uid = geteuid();
	m.run_gid = m.auth_gid = getegid();
	if (geteuid() == 0) {
		if (lookup_user(config_str(m.config, "run_user"), &m.run_uid, &m.run_gid) < 0 ||
		    lookup_user(config_str(m.config, "auth_user"), &m.auth_uid, &m.auth_gid) < 0) {
			fprintf(stderr, "mailroom serve: run_user %s or auth_user %s does not exist\n",
				config_str(m.config, "run_user"), config_str(m.config, "auth_user"));
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
	if (listen_open_all(m.config, data_dir, &m.listeners, &err) < 0) {
		fprintf(stderr, "mailroom serve: %s\n", err.text);
		goto out;
	}
	m.tls = tls_load(m.config, data_dir, &err);
	if (m.tls == NULL) {
		fprintf(stderr, "mailroom serve: %s\n", err.text);
		goto out;
	}
	if (geteuid() == 0) {
		hand_over_store(&m);
		if (!run_user_can_reach(&m)) {
			fprintf(stderr, "mailroom serve: run_user %s cannot reach %s/mail: every folder "
					"above DATA must be searchable (x) by it\n",
				config_str(m.config, "run_user"), data_dir);
			goto out;
		}
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
	while (!m.done) {
		struct pollfd pfd[2] = { { m.sigfd, POLLIN, 0 }, { m.pw_sock, POLLIN, 0 } };
		int n = poll(pfd, m.pw_alive ? 2 : 1, -1);
		if (n < 0 && errno != EINTR)
			break;
		struct signalfd_siginfo si;
		while (read(m.sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
			on_signal(&m, (int)si.ssi_signo);
		if (m.pw_alive && (pfd[1].revents & (POLLIN | POLLHUP | POLLERR)))
			pw_request(&m);
	}
	rc = 0;
out:
	if (m.sigfd >= 0)
		close(m.sigfd);
	if (m.pw_sock >= 0)
		close(m.pw_sock);
	if (m.new_sock >= 0)
		close(m.new_sock);
	listen_close_all(&m.listeners);
	if (m.data_fd >= 0)
		close(m.data_fd);
	tls_free(m.tls);
	config_free(&m.config);
	return rc;
}
