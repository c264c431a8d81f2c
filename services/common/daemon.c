/* daemon: see daemon.h.
 *
 * The handler touches only atomics and write(2), all async-signal-safe, and preserves errno.
 * Two counters are kept apart on purpose: `stopping` (anyone asked to stop) and `signals` (how
 * many stop signals arrived), so that only a second *signal* means "exit now". The self-pipe is
 * non-blocking: once it holds a byte it stays readable (nobody drains it), which is exactly what
 * a poll loop wants, and further writes that find it full are harmlessly dropped. */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int stopping;
static atomic_int signals;
static int pipe_fds[2] = {-1, -1};
static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;

static void wake(void)
{
    if (pipe_fds[1] >= 0) {
        int saved = errno;
        ssize_t ignored = write(pipe_fds[1], "x", 1);
        (void)ignored;
        errno = saved;
    }
}

static void on_signal(int sig)
{
    (void)sig;
    if (atomic_fetch_add(&signals, 1) > 0)
        _exit(1);
    atomic_store(&stopping, 1);
    wake();
}

int daemon_signals_init(err_t *e)
{
    if (pipe_fds[0] < 0) {
        int fds[2];
        if (pipe(fds) != 0)
            return err_set(e, ERR_INTERNAL, "pipe: %s", strerror(errno));
        for (int i = 0; i < 2; i++) {
            fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
            fcntl(fds[i], F_SETFD, FD_CLOEXEC);
        }
        pipe_fds[0] = fds[0];
        pipe_fds[1] = fds[1];
        if (atomic_load(&stopping))
            wake(); /* a stop requested before the pipe existed */
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0)
        return err_set(e, ERR_INTERNAL, "sigaction: %s", strerror(errno));
    sa.sa_handler = SIG_IGN;
    if (sigaction(SIGPIPE, &sa, NULL) != 0)
        return err_set(e, ERR_INTERNAL, "sigaction: %s", strerror(errno));
    return 0;
}

int daemon_stopping(void) { return atomic_load(&stopping); }

int daemon_stop_fd(void) { return pipe_fds[0]; }

void daemon_request_stop(void)
{
    if (atomic_exchange(&stopping, 1))
        return;
    wake();
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int daemon_sleep_ms(int ms)
{
    int64_t deadline = now_ms() + (ms > 0 ? ms : 0);
    for (;;) {
        if (daemon_stopping())
            return 1;
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return 0;
        if (pipe_fds[0] >= 0) {
            /* Wakes on the stop byte; an EINTR from some other signal just loops. */
            struct pollfd p = {.fd = pipe_fds[0], .events = POLLIN};
            (void)poll(&p, 1, (int)left);
        } else {
            /* No pipe yet: nap in slices so that a stop is still noticed. */
            int64_t slice = left < 50 ? left : 50;
            struct timespec ts = {0, (long)slice * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
}

static void sodium_start(void)
{
    if (sodium_init() < 0)
        abort();
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
    else if (b->current_ms <= b->max_ms / 2)
        b->current_ms *= 2;
    else
        b->current_ms = b->max_ms;
    int half = b->current_ms / 2;
    pthread_once(&sodium_once, sodium_start);
    return half + (int)randombytes_uniform((uint32_t)(b->current_ms - half + 1));
}

void daemon_backoff_reset(daemon_backoff_t *b) { b->current_ms = 0; }
