/* Unit tests of signals, stopping and backoff. The stop flag is process-wide and never cleared,
 * so every test that stops runs in a forked child and reports through its exit status. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon.h"

static void test_backoff_doubles_up_to_the_cap_with_jitter_below_the_nominal_delay(void **state)
{
    (void)state;
    daemon_backoff_t b;
    daemon_backoff_init(&b, 100, 1000);
    const int nominal[] = {100, 200, 400, 800, 1000, 1000, 1000};
    for (size_t i = 0; i < sizeof(nominal) / sizeof(nominal[0]); i++) {
        int d = daemon_backoff_next_ms(&b);
        assert_int_equal(b.current_ms, nominal[i]);
        assert_true(d >= nominal[i] / 2);
        assert_true(d <= nominal[i]);
    }
    daemon_backoff_reset(&b);
    assert_true(daemon_backoff_next_ms(&b) <= 100);
    assert_int_equal(b.current_ms, 100);
}

static void test_backoff_jitter_spreads_the_delays(void **state)
{
    (void)state;
    daemon_backoff_t b;
    int lo = 1 << 30, hi = 0;
    for (int i = 0; i < 500; i++) {
        daemon_backoff_init(&b, 1000, 1000);
        int d = daemon_backoff_next_ms(&b);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    assert_true(lo >= 500 && hi <= 1000);
    assert_true(hi - lo > 200); /* 500 draws from 501 values: a narrow spread means no jitter */
}

static void test_backoff_repairs_nonsense_bounds(void **state)
{
    (void)state;
    daemon_backoff_t b;
    daemon_backoff_init(&b, 0, -5);
    assert_int_equal(b.initial_ms, 1);
    assert_int_equal(b.max_ms, 1);
    for (int i = 0; i < 5; i++)
        assert_true(daemon_backoff_next_ms(&b) <= 1);
    daemon_backoff_init(&b, 1 << 29, 1 << 30);
    for (int i = 0; i < 5; i++)
        assert_true(daemon_backoff_next_ms(&b) <= 1 << 30); /* no overflow at the top */
}

static void test_a_sleep_without_a_stop_lasts_its_full_time(void **state)
{
    (void)state;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(daemon_sleep_ms(30), 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
    assert_true(ms >= 29);
    assert_int_equal(daemon_sleep_ms(0), 0);
    assert_int_equal(daemon_sleep_ms(-1), 0);
    assert_false(daemon_stopping());
}

/* Runs fn in a child; returns its wait status. fn's return value is the exit code. */
static int in_child(int (*fn)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(fn());
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static int readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static int first_signal_requests_a_stop(void)
{
    if (daemon_signals_init(NULL) != 0)
        return 10;
    if (daemon_stopping() || readable(daemon_stop_fd()))
        return 11;
    raise(SIGTERM);
    if (!daemon_stopping())
        return 12;
    if (!readable(daemon_stop_fd()))
        return 13;
    if (daemon_sleep_ms(60000) != 1)
        return 14;
    if (!readable(daemon_stop_fd()))
        return 15; /* stays readable for every poll loop */
    return 0;
}

static void test_the_first_signal_sets_the_flag_and_makes_the_fd_readable(void **state)
{
    (void)state;
    int status = in_child(first_signal_requests_a_stop);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static int two_signals(void)
{
    if (daemon_signals_init(NULL) != 0)
        return 10;
    raise(SIGINT);
    if (!daemon_stopping())
        return 11;
    raise(SIGTERM);
    return 12; /* not reached: the second signal exits */
}

static void test_a_second_signal_exits_at_once_with_status_1(void **state)
{
    (void)state;
    int status = in_child(two_signals);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
}

static int request_then_signal(void)
{
    if (daemon_signals_init(NULL) != 0)
        return 10;
    daemon_request_stop();
    daemon_request_stop();
    if (!daemon_stopping() || !readable(daemon_stop_fd()))
        return 11;
    raise(SIGTERM); /* the operator's first signal: still a graceful stop */
    return 0;
}

static void test_an_internal_stop_request_does_not_count_as_the_first_signal(void **state)
{
    (void)state;
    int status = in_child(request_then_signal);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static int write_to_closed_pipe(void)
{
    if (daemon_signals_init(NULL) != 0)
        return 10;
    int fds[2];
    if (pipe(fds) != 0)
        return 11;
    close(fds[0]);
    ssize_t w = write(fds[1], "x", 1);
    return w == -1 && errno == EPIPE ? 0 : 12;
}

static void test_sigpipe_is_ignored_so_a_vanished_peer_is_an_error(void **state)
{
    (void)state;
    int status = in_child(write_to_closed_pipe);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void *long_sleep(void *arg)
{
    int *woke = arg;
    *woke = daemon_sleep_ms(60000);
    return NULL;
}

static int sleeper_wakes_on_stop(void)
{
    if (daemon_signals_init(NULL) != 0)
        return 10;
    int woke = -1;
    pthread_t t;
    if (pthread_create(&t, NULL, long_sleep, &woke) != 0)
        return 11;
    daemon_request_stop();
    pthread_join(t, NULL); /* a missed wake-up would hang here for a minute (ctest times out) */
    return woke == 1 ? 0 : 12;
}

static void test_a_sleeping_thread_wakes_when_a_stop_is_requested(void **state)
{
    (void)state;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int status = in_child(sleeper_wakes_on_stop);
    clock_gettime(CLOCK_MONOTONIC, &b);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(b.tv_sec - a.tv_sec < 30);
}

static int stop_before_init(void)
{
    daemon_request_stop();
    if (daemon_stop_fd() != -1 || daemon_sleep_ms(60000) != 1)
        return 10;
    if (daemon_signals_init(NULL) != 0)
        return 11;
    return readable(daemon_stop_fd()) ? 0 : 12;
}

static void test_a_stop_requested_before_init_is_not_lost(void **state)
{
    (void)state;
    int status = in_child(stop_before_init);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_doubles_up_to_the_cap_with_jitter_below_the_nominal_delay),
        cmocka_unit_test(test_backoff_jitter_spreads_the_delays),
        cmocka_unit_test(test_backoff_repairs_nonsense_bounds),
        cmocka_unit_test(test_a_sleep_without_a_stop_lasts_its_full_time),
        cmocka_unit_test(test_the_first_signal_sets_the_flag_and_makes_the_fd_readable),
        cmocka_unit_test(test_a_second_signal_exits_at_once_with_status_1),
        cmocka_unit_test(test_an_internal_stop_request_does_not_count_as_the_first_signal),
        cmocka_unit_test(test_sigpipe_is_ignored_so_a_vanished_peer_is_an_error),
        cmocka_unit_test(test_a_sleeping_thread_wakes_when_a_stop_is_requested),
        cmocka_unit_test(test_a_stop_requested_before_init_is_not_lost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
