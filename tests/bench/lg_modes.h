/* lg_modes: the load generator's two commands, each a main() of its own called by loadgen.c
 * with the arguments after the command name. They return the process's exit status: 0 when the
 * run went through (whatever the system under test answered: that is in the report), 1 when
 * the run could not be carried out (unreachable server, unreadable file), LG_EXIT_USAGE (2) for
 * bad arguments. */
#ifndef PETSTORE_LG_MODES_H
#define PETSTORE_LG_MODES_H

/* petstore-loadgen orders ...: see lg_orders.c. */
int lg_orders_main(int argc, char **argv);

/* petstore-loadgen publish ...: see lg_publish.c. */
int lg_publish_main(int argc, char **argv);

#endif
