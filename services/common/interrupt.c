/* interrupt: SIGINT and SIGTERM set a flag (interrupt.h). */
#include "interrupt.h"

#include <string.h>

volatile sig_atomic_t interrupt_requested = 0;

static void on_signal(int sig)
{
    (void)sig;
    interrupt_requested = 1;
}

void interrupt_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}
