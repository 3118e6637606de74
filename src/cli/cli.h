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

/* Shared by subcommands: parse "-d DATA" style options. */
const char *cli_default_data_dir(void);

#endif
