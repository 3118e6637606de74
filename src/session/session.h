/*
 * session.h: the session core that every protocol (IMAP, POP3, LMTP) runs
 * on. Read this first: it is how a connection becomes a command.
 *
 * Design note. The worker (src/server/worker.c) accepts a socket, wraps it
 * in a struct conn (conn.h: TLS, bounded buffers, backpressure) and calls
 * session_start() with the protocol's struct session_proto: a small table
 * of functions, in the spirit of nginx's mail module. From then on the core
 * owns the connection's life and the protocol owns only its grammar:
 *
 *   bytes arrive -> core input loop -> proto->input(s, in): parse one unit
 *   (a command line, a chunk of a literal or of DATA) and run it
 *                -> the handler answers at once (session writes), or
 *                   - runs disk work on the job pool: session_async(), or
 *                   - waits for another loop event (the auth process):
 *                     session_wait() ... session_resume(), or
 *                   - produces a long response piece by piece as the client
 *                     reads: session_pump().
 *
 * While a command waits (async, wait) or pumps, the session reads no input:
 * pipelined commands stay in the buffer and run in order afterwards. Output
 * above CONN_OUTPUT_HIGH also stops input until the client has read most of
 * it (the conn's drained callback), so a client that pipelines without
 * reading costs bounded memory.
 *
 * States and invariants:
 *  - busy: jobs and waits outstanding. The session is never freed while
 *    busy: if the client leaves meanwhile, conn becomes NULL and the session
 *    is freed when the last job's done() (or the auth process's answer) has
 *    run, since a job still uses the session's objects.
 *  - pump: a response is being produced; the core calls step() whenever the
 *    output is below CONN_OUTPUT_HIGH (at once, then from drained), and
 *    cancel() if the client leaves first.
 *  - closing: read no more commands; the connection is closed (after its
 *    queued output) as soon as nothing is busy or pumping.
 *  - conn == NULL: the client is gone; protocol code must not write (the
 *    session_* writers check).
 * The idle timeout (session_set_timeout) only fires while the session waits
 * for the client: never during a job or a pump. Shutdown (SIGTERM) asks each
 * protocol to say goodbye at a point where its grammar allows it.
 *
 * Clients that do not read (issue 14). Backpressure bounds what commands
 * produce, but not what the server pushes unasked (IMAP IDLE updates), and a
 * stopped client would keep its session forever. Two limits, from config:
 *  - client_write_timeout: output pending and none of it sent for that
 *    long: one log line and the connection is dropped (no goodbye: the
 *    client does not read). It runs during pumps, IDLE and closes alike.
 *  - client_max_output: a burst of writes outside a pump (the answer of a
 *    command, an IDLE sync: what one loop callback writes) that begins
 *    with this much output already queued is dropped; the protocol's
 *    overflow() says goodbye and the session closes. So a session queues
 *    at most the cap plus one burst. Pumps never hit it: they produce only
 *    while the output is below CONN_OUTPUT_HIGH, and input (the next
 *    command) waits for the same, so one response, however large, is never
 *    cut; nor is one large burst of updates to a client that reads.
 *
 * Threads: everything here runs on the worker's event loop thread, except
 * the work() of session_async, which must not touch the session.
 */
#ifndef MAILROOM_SESSION_H
#define MAILROOM_SESSION_H

#include <stdbool.h>
#include <stddef.h>

struct auth_client;
struct config;
struct conn;
struct event_base;
struct evbuffer;
struct jobs;
struct session;
struct ssl_ctx_st;
struct store;
struct store_user;

/* What the worker gives every session: its shared objects. The worker owns
 * them and they outlive every session. */
struct session_env {
	struct event_base *base;
	struct store *store;
	const struct config *config;
	struct auth_client *auth;
	struct jobs *jobs;
	struct ssl_ctx_st *tls; /* for STARTTLS/STLS; NULL if TLS is not set up */
	unsigned sessions;	/* sessions alive, all protocols */
	struct session *list;	/* every session of this worker */
};

/* What proto->input returns: SESSION_MORE if it consumed input and may be
 * called again, SESSION_WAIT if it needs bytes that have not arrived. */
enum session_step { SESSION_MORE, SESSION_WAIT };

/* A protocol, as the core sees it. Every function gets the struct session
 * embedded at the start of the protocol's own session struct. */
struct session_proto {
	const char *name;      /* "imap": the log prefix */
	const char *id_prefix; /* prefix of session ids in logs ("" or "L") */
	size_t size;	       /* sizeof the protocol's session struct */
	/* After the core set up s: initialise the protocol's state, set the
	 * timeout and send the greeting. -1 drops the connection at once. */
	int (*start)(struct session *s);
	/* Input is waiting in in: consume and run at most one unit. Not called
	 * while busy, pumping or closing, nor when no byte is waiting: a unit
	 * that needs no bytes (an empty BDAT chunk) is finished by the command
	 * that announced it. */
	enum session_step (*input)(struct session *s, struct evbuffer *in);
	/* The idle timeout expired while the session waited for its client:
	 * say goodbye if the protocol does (the core then closes). */
	void (*timeout)(struct session *s);
	/* Server shutdown: finish at a point the grammar allows, by calling
	 * session_close() now or later. Called once per session. */
	void (*shutdown)(struct session *s);
	/* The connection is going away (s->conn still valid): the logout log
	 * line. May be NULL. */
	void (*disconnected)(struct session *s);
	/* Nothing runs any more (the last job, wait or pump of a command
	 * ended) and the session goes on. May be NULL. */
	void (*command_done)(struct session *s);
	/* Release the protocol's state (not s itself). */
	void (*free)(struct session *s);
	/* The output cap was reached (client_max_output): write a goodbye
	 * (it is queued after the rest; the core then closes). May be NULL. */
	void (*overflow)(struct session *s);
};

struct session {
	const struct session_proto *proto;
	struct session_env *env;
	struct conn *conn; /* NULL once the client is gone */
	char id[16];	   /* for logs */
	unsigned busy;	   /* jobs and waits outstanding */
	bool closing;	   /* close when nothing runs */
	bool shut_down;	   /* proto->shutdown has been called */
	unsigned errors;   /* protocol errors so far (session_error_limit) */
	unsigned auth_login; /* the auth process counts this session under this
			      * login id (auth_client_logout when it ends); 0: none */
	size_t max_output; /* client_max_output; 0: none */
	bool overflowed;   /* the cap was reached: nothing more is written */
	unsigned long long burst_stamp; /* loop time of the current burst of writes */
	size_t burst_start;		/* output queued when it began */
	struct {	   /* the response being pumped, if step != NULL */
		int (*step)(struct session *s, void *arg);
		void (*cancel)(void *arg);
		void *arg;
	} pump;
	struct session *prev, *next;
};

/* Start a session of proto on c (takes c). On failure the connection is
 * dropped; nothing is returned because the worker has nothing to undo. */
void session_start(struct session_env *env, const struct session_proto *proto, struct conn *c);

/* A job, a wait or a pump is outstanding (the command is not over). */
bool session_running(const struct session *s);

/* Close the connection once nothing is busy or pumping, after what is
 * queued has been sent. Idempotent. */
void session_close(struct session *s);

/* Idle timeout in seconds while waiting for the client (0: none). */
void session_set_timeout(struct session *s, unsigned seconds);

/* Write to the client; nothing happens once the client is gone. */
void session_write(struct session *s, const void *data, size_t len);

/* Count a protocol error; true once more than max have been made (the
 * caller says goodbye and calls session_close). */
bool session_error_limit(struct session *s, unsigned max);

/* Run work(arg) on the job pool, then done(s, arg) on the loop; input is
 * paused in between and the command is over when done() returns (input
 * resumes, or the session closes if asked to). done() runs even if the
 * client left meanwhile (s->conn is then NULL; writes are dropped). work()
 * may use what the session owns (its store objects, a staging file): the
 * session is neither freed nor reading input until done() has run, but it
 * must not touch the session struct itself, which the loop still reads.
 * 0, or -1 if the job could not be queued (nothing was run, nothing
 * changed). */
int session_async(struct session *s, void (*work)(void *arg),
		  void (*done)(struct session *s, void *arg), void *arg);

/* Wait for something other than a job (the auth process): input pauses
 * until the matching session_resume(). Waits and jobs nest: the code that
 * ends a wait may start a job first, and input resumes when both ended. */
void session_wait(struct session *s);
/* A wait is over. When nothing else is outstanding: continue the pump,
 * resume input, close, or free the session if the client left meanwhile
 * (then s must not be used after the call). */
void session_resume(struct session *s);

/* Produce a long response: step(s, arg) is called while the output is
 * below CONN_OUTPUT_HIGH and writes a bounded piece each time; it returns
 * 1 when the response is complete (then arg is the step's to free), 0 to
 * be called again. If the client leaves first, cancel(arg) runs instead.
 * Input is paused meanwhile. step may start session_async (for disk work
 * of the next piece): the pump then continues after the job's done(). */
void session_pump(struct session *s, int (*step)(struct session *s, void *arg),
		  void (*cancel)(void *arg), void *arg);

/* ---- login (session_login.c) ---------------------------------------------
 * One login path for every protocol that has users (IMAP, POP3, and the
 * ManageSieve to come): the password goes to the auth process
 * (auth_client.h), which answers after its failure delay; on success the
 * user's store is opened on a job thread (creating the mail folder of a
 * user who is in the password database but has none yet). Input is paused
 * throughout. A successful login is counted by the auth process (per
 * protocol, user and IP: max_userip_connections) until the connection
 * closes: s->auth_login, which the core ends in its close path. The
 * protocol only turns the typed result into its reply. */
enum session_login_result {
	SESSION_LOGIN_OK,
	SESSION_LOGIN_FAILED,		  /* wrong user or password */
	SESSION_LOGIN_RATE_LIMITED,	  /* too many failures: try again later */
	SESSION_LOGIN_AUTH_UNAVAILABLE,	  /* the auth process cannot answer */
	SESSION_LOGIN_STORE_UNAVAILABLE,  /* verified, but the store cannot open */
	SESSION_LOGIN_TOO_MANY,		  /* verified, but max_userip_connections
					   * sessions of the user from this IP */
};
/* done(s, result, user, suser): user is the canonical name (valid during the
 * call) and suser the opened store user, which done() takes, both only for
 * SESSION_LOGIN_OK. done() runs on the loop, with the client still there;
 * if the client left, nothing is called and the session goes away. */
typedef void session_login_cb(struct session *s, enum session_login_result result,
			      const char *user, struct store_user *suser);
/* Start a login. A user name the auth protocol cannot carry (empty, too
 * long, control characters) is answered at once with SESSION_LOGIN_FAILED,
 * as is a request the auth process cannot take (AUTH_UNAVAILABLE). */
void session_login(struct session *s, const char *user, const char *pass, session_login_cb *done);
/* The session's user logs out but the connection stays (IMAP
 * UNAUTHENTICATE, RFC 8437): the auth process stops counting the session
 * (max_userip_connections). The protocol closes its store user itself. */
void session_logout(struct session *s);

/* Server shutdown: proto->shutdown for every session still connected. */
void session_shutdown_all(struct session_env *env);

/* A command table row, the first member of each protocol's row struct: the
 * dispatcher (session_cmd_find) checks the state so handlers never do. */
struct session_cmd {
	const char *name;    /* upper case */
	unsigned states;     /* bit (1u << state) for each state it runs in */
};
enum session_cmd_result { SESSION_CMD_OK, SESSION_CMD_UNKNOWN, SESSION_CMD_BAD_STATE };
/* Look name up (case-insensitive) in table: n rows of row_size bytes, each
 * beginning with a struct session_cmd. *row_r is set when the name is
 * known (also for SESSION_CMD_BAD_STATE, so the caller can say why). */
enum session_cmd_result session_cmd_find(const void *table, size_t n, size_t row_size,
					 const char *name, unsigned state,
					 const struct session_cmd **row_r);

#endif
