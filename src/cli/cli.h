/*
 * cli.h: the `mailroom` subcommands.
 *
 * Each subcommand is one function `int cmd_NAME(int argc, char **argv)`
 * where argv[0] is the subcommand's own name. It returns the process exit
 * status (sysexits.h codes where an MTA or a script reads them) and prints
 * one line on stderr saying why when it fails.
 */
#ifndef MAILROOM_CLI_H
#define MAILROOM_CLI_H

int cmd_user(int argc, char **argv);
int cmd_deliver(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_mailbox(int argc, char **argv);
int cmd_mime(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_config(int argc, char **argv);
int cmd_import(int argc, char **argv);

struct config;
struct store;

/* The data folder when -d is not given: $MAILROOM_DATA, or NULL. */
const char *cli_default_data_dir(void);
/* Load DATA/mailroom.conf and open the store. Returns 0, or an exit code
 * after printing why on stderr. */
int cli_open_store(const char *prog, const char *data_dir, struct config **config_r,
		   struct store **store_r);

/* Run as root on a store that `mailroom serve` handed to its run_user: take
 * that user's identity, so that every file created is readable by the
 * server. Call after anything that needs root (DATA/passwd). 0, or an exit
 * code after a message. */
int cli_become_store_owner(const char *prog, const char *data_dir);

#endif
