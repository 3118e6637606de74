"""gdb script (gdb -p WORKER -batch -x bench/imap/session_mem.py): what the
IMAP sessions of one mailroom worker hold on the heap, from the session list
(all_sessions in src/imap/imap_session.c; needs the debug info of
build/mailroom, which is built with -g).

For up to SAMPLE sessions (env SESSION_MEM_SAMPLE, default 200; the average
is what matters) it sums malloc_usable_size() of each heap block a session
owns directly (session, parser, conn, view + its four arrays, store_user +
its statement cache array, store_mailbox) and asks SQLite about each
session's own connection (sqlite3_db_status: page cache, schema, prepared
statements). Prints one line: "SESSION_MEM key=value ..." (bytes, averages
per sampled session) for bench/imap/run to parse.
"""
import os

import gdb

SAMPLE = int(os.environ.get("SESSION_MEM_SAMPLE", "200"))


def ev(expr):
    return gdb.parse_and_eval(expr)


def usable(ptr):
    p = int(ptr)
    if p == 0:
        return 0
    return int(ev("(unsigned long)malloc_usable_size((void *)%d)" % p))


def one(s, add, cur):
    """Add what session s owns; cur: 8 bytes of scratch in the inferior."""
    add("session", usable(s))
    add("parser", usable(s["parser"]))
    add("conn", usable(s["conn"]))
    v = s["view"]
    if int(v) != 0:
        add("view", usable(v))
        add("view_arrays", usable(v["uids"]) + usable(v["flags"]) + usable(v["keywords"]) +
            usable(v["modseqs"]))
        add("view_msgs", int(v["n"]))
        m = v["mbox"]
        if int(m) != 0:
            add("mailbox", usable(m) + usable(m["name"]) + usable(m["dirname"]))
    u = s["suser"]
    if int(u) != 0:
        add("store_user", usable(u) + usable(u["stmts"]))
        db = int(u["db"])
        if db != 0:
            add("sqlite_dbs", 1)
            for op, name in ((1, "sqlite_cache"), (2, "sqlite_schema"), (3, "sqlite_stmts")):
                ev("(int)sqlite3_db_status((void *)%d, %d, (int *)%d, (int *)%d, 0)" %
                   (db, op, cur, cur + 4))
                add(name, int(ev("*(int *)%d" % cur)))


def main():
    gdb.execute("set pagination off")
    try:
        s = ev("'imap_session.c'::all_sessions")
    except gdb.error as e:
        print("SESSION_MEM error=%s" % str(e).replace(" ", "_"))
        return
    out = ev("(int *)malloc(16)")
    cur = int(out)
    sums = {}

    def add(k, v):
        sums[k] = sums.get(k, 0) + v

    total = 0
    n = 0
    errors = 0
    while int(s) != 0:
        total += 1
        if n < SAMPLE:
            n += 1
            try:
                one(s, add, cur)
            except gdb.error as e:
                errors += 1
                if errors == 1:
                    print("SESSION_MEM_WARN %s" % e)
        s = s["next"]
    ev("(void)free((void *)%d)" % cur)
    n = max(n, 1)
    print("SESSION_MEM sessions=%d sampled=%d %s" % (
        total, min(total, SAMPLE), " ".join("%s=%d" % (k, v // n) for k, v in sorted(sums.items()))))


main()
