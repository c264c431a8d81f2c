/* progress: the progress line of a long run (on a terminal only), the clock and waiting (the
 * signals that stop a run are interrupt.h's). */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dlq.h"

int64_t dlq_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void dlq_sleep_until(int64_t ms, dlq_walk_t *w)
{
    int64_t last_keepalive = dlq_now_ms();
    for (;;) {
        int64_t now = dlq_now_ms();
        if (now >= ms || interrupt_requested)
            return;
        int64_t step = ms - now < 100 ? ms - now : 100;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)step * 1000000L};
        nanosleep(&ts, NULL);
        if (w != NULL && dlq_now_ms() - last_keepalive >= 5000) {
            dlq_walk_keepalive(w);
            last_keepalive = dlq_now_ms();
        }
    }
}

static void show(dlq_progress_t *p, int final)
{
    double elapsed = (double)(dlq_now_ms() - p->started_ms) / 1000.0;
    double rate = elapsed > 0 ? (double)p->done / elapsed : 0;
    char left[32] = "-";
    if (rate > 0 && p->done < p->total)
        snprintf(left, sizeof(left), "%.0f s", (double)(p->total - p->done) / rate);
    else if (p->done >= p->total)
        snprintf(left, sizeof(left), "0 s");
    fprintf(stderr, "\r%s: %zu/%zu  %.1f msg/s  %s left   %s", p->what, p->done, p->total, rate,
            left, final ? "\n" : "");
    fflush(stderr);
}

void dlq_progress_start(dlq_progress_t *p, const char *what, size_t total)
{
    memset(p, 0, sizeof(*p));
    p->what = what;
    p->total = total;
    p->started_ms = dlq_now_ms();
    p->tty = isatty(STDERR_FILENO);
}

void dlq_progress_step(dlq_progress_t *p, size_t done)
{
    p->done = done;
    int64_t now = dlq_now_ms();
    if (p->tty && now - p->shown_ms >= 200) {
        p->shown_ms = now;
        show(p, 0);
    }
}

void dlq_progress_end(dlq_progress_t *p)
{
    if (p->tty)
        show(p, 1);
}
