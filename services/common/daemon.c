/* daemon: see daemon.h. The handler only touches an atomic flag and write(2), both
 * async-signal-safe. */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int stopping;
static int pipe_fds[2] = {-1, -1};

static void on_signal(int sig)
{
    (void)sig;
    if (atomic_exchange(&stopping, 1))
        _exit(1);
    if (pipe_fds[1] >= 0) {
        int saved = errno;
        ssize_t ignored = write(pipe_fds[1], "x", 1);
        (void)ignored;
        errno = saved;
    }
}

int daemon_signals_init(err_t *e)
{
    if (pipe_fds[0] < 0) {
        if (pipe(pipe_fds) != 0)
            return err_set(e, ERR_INTERNAL, "pipe: %s", strerror(errno));
        for (int i = 0; i < 2; i++) {
            fcntl(pipe_fds[i], F_SETFL, fcntl(pipe_fds[i], F_GETFL) | O_NONBLOCK);
            fcntl(pipe_fds[i], F_SETFD, FD_CLOEXEC);
        }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0)
        return err_set(e, ERR_INTERNAL, "sigaction: %s", strerror(errno));
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

int daemon_stopping(void)
{
    return atomic_load(&stopping);
}

int daemon_stop_fd(void)
{
    return pipe_fds[0];
}

void daemon_request_stop(void)
{
    if (atomic_exchange(&stopping, 1))
        return;
    if (pipe_fds[1] >= 0) {
        ssize_t ignored = write(pipe_fds[1], "x", 1);
        (void)ignored;
    }
}

int daemon_sleep_ms(int ms)
{
    if (daemon_stopping())
        return 1;
    if (ms <= 0)
        return 0;
    struct pollfd p = {.fd = pipe_fds[0], .events = POLLIN};
    if (pipe_fds[0] >= 0) {
        (void)poll(&p, 1, ms);
    } else {
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    return daemon_stopping();
}

void daemon_backoff_init(daemon_backoff_t *b, int initial_ms, int max_ms)
{
    b->initial_ms = initial_ms > 0 ? initial_ms : 1;
    b->max_ms = max_ms >= b->initial_ms ? max_ms : b->initial_ms;
    b->current_ms = 0;
}

int daemon_backoff_next_ms(daemon_backoff_t *b)
{
    if (b->current_ms == 0)
        b->current_ms = b->initial_ms;
    else if (b->current_ms < b->max_ms / 2)
        b->current_ms *= 2;
    else
        b->current_ms = b->max_ms;
    int half = b->current_ms / 2;
    return half + (int)randombytes_uniform((uint32_t)(b->current_ms - half + 1));
}

void daemon_backoff_reset(daemon_backoff_t *b)
{
    b->current_ms = 0;
}
