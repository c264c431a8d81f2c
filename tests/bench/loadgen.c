/* petstore-loadgen: the load generator of `./petstore bench` (issue 16).
 *
 * A program of the project rather than a script, so that the generator is never the bottleneck
 * it measures: one thread, non-blocking sockets under epoll, keep-alive HTTP/1.1 connections,
 * latencies in a fixed-size log-linear histogram. Two commands:
 *
 *   orders   places orders through the storefront (closed loop with N connections, or open loop
 *            at R orders per second without coordinated omission) and follows each one by long
 *            polling until it ends; lg_orders.c.
 *   publish  the raw confirmed-publish loop the outbox relay is compared with; lg_publish.c.
 *
 * Each prints one JSON object (stdout or --json FILE); the fields are listed in the usage text
 * below and in each command's file. Exit status: 0 the run went through (what the system
 * answered is in the report), 1 the run could not be made, 2 bad arguments.
 *
 * Caution for `publish`: on vhost petstore, exchange petstore.events routes EVERY key (the
 * fanout petstore.audit is bound to it with "#"), so a "routing key bound to nothing" there still
 * lands in audit.events. Measure on the default exchange "" with --declare-queue Q instead. */
#include <stdio.h>
#include <string.h>

#include "lg_modes.h"
#include "lg_util.h"
#include "log.h"

static const char usage[] =
    "usage:\n"
    "  petstore-loadgen orders --url http://HOST:PORT --clients FILE --pets FILE\n"
    "                          (--closed N | --rate R) --duration S [--follow longpoll|none]\n"
    "                          [--wait-query 'wait=30&status={status}'] [--max-conns M]\n"
    "                          [--drain S] [--json FILE]\n"
    "  petstore-loadgen publish --amqp-url amqp://USER:PASS@HOST:PORT/VHOST --exchange X\n"
    "                           --routing-key K --count N [--size B] [--window W] [--type T]\n"
    "                           [--user-id U] [--declare-queue Q] [--purge] [--delete-queue]\n"
    "                           [--json FILE]\n"
    "\n"
    "orders: places orders on the storefront (POST /v1/orders, one pet each) and follows each\n"
    "one (GET /v1/orders/ID?wait-query, {status} replaced by the last status seen) until\n"
    "COMPLETED, CANCELLED or NEEDS_OPERATOR.\n"
    "  --clients FILE   lines \"TOKEN CARD_NUMBER\"; connection i uses line i modulo their number\n"
    "  --pets FILE      one pet id per line; each order takes the next one (running out ends the\n"
    "                   placing early: \"pets_exhausted\": true)\n"
    "  --closed N       N connections, each placing an order, following it, placing the next\n"
    "  --rate R         open loop: order i is due at start + i/R; latencies count from the due\n"
    "                   time; a due order takes an idle connection or opens one (up to\n"
    "                   --max-conns, default 2000), else waits (\"late_100ms\" counts the late)\n"
    "  --duration S     the placing window in seconds\n"
    "  --drain S        after the window, wait up to S seconds (default 60) for orders in flight\n"
    "  --follow none    only POST (the HTTP door alone); default longpoll\n"
    "  report: mode, rate|connections, duration_s, placed, accepted, http_status, follow_status,\n"
    "  transport_errors, ended {COMPLETED, CANCELLED, NEEDS_OPERATOR}, cancel_reasons,\n"
    "  unfinished, completed_by_second, requests, requests_per_order, late_100ms,\n"
    "  latency_ms {post, completed, ended} (p50, p90, p99, p99.9, max, mean, count),\n"
    "  completed_per_s, post_per_s, first_completed_s, last_completed_s, pets_exhausted,\n"
    "  cpu_user_s, cpu_sys_s\n"
    "\n"
    "publish: one connection, one channel in confirm mode; publishes windows of W messages\n"
    "(default 500) persistent and mandatory, B bytes of JSON each (default 300), waits for every\n"
    "confirm of the window, until N are published. A nack or a return is an error.\n"
    "  --declare-queue Q  declares the durable quorum queue Q if absent (publish to exchange \"\"\n"
    "                     with routing key Q to measure a real queue)\n"
    "  --purge            purges Q at the end;  --delete-queue  deletes Q at the end\n"
    "  report: count, confirmed, nacked, returned, seconds, msgs_per_s, cpu_user_s, cpu_sys_s\n";

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
                      strcmp(argv[1], "help") == 0)) {
        fputs(usage, stdout);
        return 0;
    }
    if (argc < 2) {
        fputs(usage, stderr);
        return LG_EXIT_USAGE;
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        }
    }
    /* The report owns stdout: the runtime's log lines (mq.connected, ...) go to stderr, and
     * only warnings and errors. */
    log_init("petstore-loadgen", LOG_WARN, 2);
    if (strcmp(argv[1], "orders") == 0)
        return lg_orders_main(argc - 2, argv + 2);
    if (strcmp(argv[1], "publish") == 0)
        return lg_publish_main(argc - 2, argv + 2);
    lg_usage_error("unknown command \"%s\" (orders or publish)", argv[1]);
    return LG_EXIT_USAGE;
}
