/* interrupt: how an operators' tool (dlq, petstore-saga) is asked to stop.
 *
 * The daemons handle their signals in their loops (daemon.h: a flag and a self-pipe). A tool is
 * simpler: SIGINT or SIGTERM sets a flag, and the tool stops at the end of the unit of work in
 * hand (a batch of copies, one saga), so nothing is left half done; SIGPIPE is ignored, so a
 * closed pipe is an error return and not a death.
 *
 * Threading: interrupt_install() once, at start, before any other thread exists. */
#ifndef PETSTORE_INTERRUPT_H
#define PETSTORE_INTERRUPT_H

#include <signal.h>

/* Non-zero once SIGINT or SIGTERM arrived. */
extern volatile sig_atomic_t interrupt_requested;

/* Installs the handlers described above. */
void interrupt_install(void);

#endif
