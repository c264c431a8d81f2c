/* svc_queue_check: before a service consumes anything, every work queue it consumes must be fit
 * (mgmt_queue.h: a quorum queue with a dead-letter exchange, an explicit delivery limit and
 * at-least-once dead-lettering). A queue that is not would lose or endlessly redeliver the very
 * messages our consumer loop relies on the broker to set aside, and nothing else would notice:
 * AMQP 0-9-1 cannot tell a queue's type or policy, so this asks the management API
 * (AMQP_MGMT_URL, http:// or https://; for https:// the broker's certificate is checked against
 * TLS_CA_FILE, or the system's store when unset) as the service's own broker user (AMQP_URL's
 * user, password and vhost).
 *
 * Decisions:
 *   - checked once, at start, in svc_main before the consumer threads start (a policy changed
 *     later is the operator's deliberate act; a restart checks again). A process that consumes
 *     no work queue (the relays) checks nothing and need not be given AMQP_MGMT_URL;
 *   - the management API unreachable, slow or answering 5xx is the broker not being ready
 *     yet, like the broker being down: logged and retried with backoff (200 ms doubling to 5 s)
 *     for as long as it takes, with /readyz failing on the check "queue-policy"; a stop request
 *     ends the wait at once;
 *   - a queue that misses a setting, or an answer that will not change by waiting (401/403:
 *     credentials or the `management` tag; 404: no such queue or vhost; anything else
 *     unexpected), stops the process with exit status 78 and one line on stderr saying what
 *     to do; the JSON log names the queue and each problem. */
#include <stdio.h>
#include <string.h>

#include "daemon.h"
#include "health.h"
#include "log.h"
#include "mgmt.h"
#include "mgmt_internal.h"
#include "mgmt_queue.h"
#include "mq_internal.h"
#include "svc_internal.h"

#define CHECK_TIMEOUT_MS 5000
#define RETRY_INITIAL_MS 200
#define RETRY_MAX_MS 5000

/* What an operator does about a broker whose definitions are not this project's. */
#define FIX_HINT "load broker-config/definitions.json (./petstore up does)"

int svc__consumes_work_queue(const svc_def_t *def)
{
    for (size_t i = 0; i < def->n_consumers; i++)
        if (def->consumers[i].queue != NULL)
            return 1;
    return 0;
}

static json_t *problems_json(const mgmt_queue_problem_t *p, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(
            a, json_pack("{s:s,s:s}", "setting", p[i].setting, "detail", p[i].detail));
    return a;
}

/* GETs the queue's description, waiting out a management API that cannot answer yet. 0 and
 * *out, ERR_RETRY when the process is stopping, or the error that waiting will not cure. */
static int fetch(const svc_t *svc, const mq__url_t *amqp, const char *queue, health_flag_t *flag,
                 json_t **out, err_t *e)
{
    char vhost[768], name[768], path[1600];
    if (mgmt_path_segment(amqp->vhost, vhost, sizeof(vhost), e) != 0 ||
        mgmt_path_segment(queue, name, sizeof(name), e) != 0)
        return err_set(e, ERR_CONFIG, "queue or vhost name too long");
    snprintf(path, sizeof(path), "/api/queues/%s/%s", vhost, name);
    const char *base = cfg_str(svc->cfg, "AMQP_MGMT_URL");
    const char *ca_file = cfg_str(svc->cfg, "TLS_CA_FILE"); /* NULL: the system's store */
    daemon_backoff_t backoff;
    daemon_backoff_init(&backoff, RETRY_INITIAL_MS, RETRY_MAX_MS);
    for (;;) {
        int rc = mgmt_get_json(base, ca_file, amqp->user, amqp->password, path, CHECK_TIMEOUT_MS,
                               out, e);
        if (rc == 0 && json_object_get(*out, "effective_policy_definition") == NULL) {
            /* The management API shows a queue's policy only once the queue has published its
             * statistics, some seconds after the broker started or the queue was declared;
             * until then the key is absent (afterwards it is {} when no policy applies). */
            json_decref(*out);
            *out = NULL;
            rc = err_set(e, ERR_RETRY, "the broker has not published the queue's policy yet");
        }
        if (rc != ERR_RETRY && rc != ERR_TIMEOUT)
            return rc;
        char detail[300];
        snprintf(detail, sizeof(detail), "waiting for the management API: %s", e->msg);
        health_flag_set(flag, 0, detail);
        log_warn(NULL, "startup.queue_check_retry",
                 json_pack("{s:s,s:s,s:s}", "queue", queue, "code", err_name(rc), "error", e->msg));
        if (daemon_sleep_ms(daemon_backoff_next_ms(&backoff)))
            return err_set(e, ERR_RETRY, "stopping");
    }
}

int svc__check_queues(const svc_t *svc, health_flag_t *flag, char *line, size_t n)
{
    const svc_def_t *def = svc->def;
    err_t e;
    err_clear(&e);
    mgmt__url_t mgmt;
    if (mgmt__url_parse(cfg_str(svc->cfg, "AMQP_MGMT_URL"), &mgmt, &e) != 0) {
        snprintf(line, n, "AMQP_MGMT_URL: %s (e.g. http://127.0.0.1:15672 or https://host:15671)",
                 e.msg);
        return ERR_CONFIG;
    }
    mq__url_t amqp;
    int rc = mq__url_parse(cfg_str(svc->cfg, "AMQP_URL"), &amqp, &e);
    if (rc != 0) {
        snprintf(line, n, "AMQP_URL: %s", e.msg);
        return rc;
    }
    for (size_t i = 0; i < def->n_consumers && rc == 0; i++) {
        const char *queue = def->consumers[i].queue;
        if (queue == NULL)
            continue;
        int seen = 0; /* several consumers of one queue (inventory): check it once */
        for (size_t j = 0; j < i; j++)
            seen |= def->consumers[j].queue != NULL && strcmp(def->consumers[j].queue, queue) == 0;
        if (seen)
            continue;
        json_t *q = NULL;
        rc = fetch(svc, &amqp, queue, flag, &q, &e);
        if (rc == ERR_RETRY) {
            snprintf(line, n, "stopped while checking queue %s", queue);
            break;
        }
        if (rc != 0) {
            log_error(NULL, "startup.queue_check_failed",
                      json_pack("{s:s,s:s,s:s,s:s}", "queue", queue, "vhost", amqp.vhost, "code",
                                err_name(rc), "error", e.msg));
            if (rc == ERR_NOTFOUND)
                snprintf(line, n,
                         "queue %s does not exist in vhost %s (%s): " FIX_HINT
                         ", then start %s again",
                         queue, amqp.vhost, e.msg, def->name);
            else if (rc == ERR_CONFIG) /* credentials, or TLS (the message says which) */
                snprintf(line, n,
                         "cannot check queue %s: %s. Fix that, then start %s again (for a user "
                         "the broker refuses: " FIX_HINT ", it gives every service user what it "
                         "needs)",
                         queue, e.msg, def->name);
            else
                snprintf(line, n,
                         "cannot check queue %s: %s. Check that AMQP_MGMT_URL (%s) is RabbitMQ's "
                         "management API, then start %s again",
                         queue, e.msg, cfg_str(svc->cfg, "AMQP_MGMT_URL"), def->name);
            break;
        }
        mgmt_queue_problem_t problems[MGMT_QUEUE_MAX_PROBLEMS];
        size_t count = mgmt_queue_check(q, problems);
        const char *policy = json_string_value(json_object_get(q, "policy"));
        policy = policy != NULL ? policy : "";
        if (count > 0) {
            log_error(NULL, "startup.queue_unfit",
                      json_pack("{s:s,s:s,s:s,s:o}", "queue", queue, "vhost", amqp.vhost, "policy",
                                policy, "problems", problems_json(problems, count)));
            char what[1200];
            mgmt_queue_problems_line(problems, count, what, sizeof(what));
            snprintf(line, n,
                     "queue %s (vhost %s) is not safe to consume: %s. To fix: " FIX_HINT
                     " or correct the policy that applies to the queue, then start %s again",
                     queue, amqp.vhost, what, def->name);
            rc = ERR_CONFIG;
        } else {
            log_info(
                NULL, "startup.queue_checked",
                json_pack("{s:s,s:s,s:s}", "queue", queue, "vhost", amqp.vhost, "policy", policy));
        }
        json_decref(q);
    }
    mq__url_free(&amqp);
    if (rc == 0)
        health_flag_set(flag, 1, "every consumed queue is fit");
    return rc;
}
