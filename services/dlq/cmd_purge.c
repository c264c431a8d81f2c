/* dlq purge QUEUE SEL [--older-than DURATION] --yes
 *
 * Removes the selected messages for good. Without --yes it only says what it would remove and
 * removes nothing (exit 2). */
#include <stdio.h>

#include "dlq.h"

int dlq_cmd_purge(dlq_ctx_t *c, dlq_args_t *a)
{
    a->verb = "purge";
    dlq_run_t r;
    int status = dlq_run_open(c, a, 1, &r);
    if (status != 0) {
        dlq_run_close(&r);
        return status;
    }
    int64_t started = dlq_now_ms();
    dlq_tally_t t = {.selected = r.n_selected};
    if (!a->yes) {
        json_t *sel = dlq_sel_json(&a->sel);
        json_t *counts = json_pack("{s:I}", "selected", (json_int_t)r.n_selected);
        err_t e;
        if (dlq_history_add(c, "purge", r.queue, sel, "refused: no --yes", counts, r.id, NULL,
                            &e) != 0)
            fprintf(stderr, "dlq: could not record this in the history: %s\n", e.msg);
        json_decref(sel);
        json_decref(counts);
        dlq_run_close(&r);
        fprintf(stderr,
                "dlq: purge would remove %zu message(s) from %s for good; nothing was removed.\n"
                "  Look at them with dlq show, then repeat with --yes.\n",
                t.selected, r.queue);
        return DLQ_EXIT_USAGE;
    }
    dlq_progress_t p;
    dlq_progress_start(&p, "purge", r.n_selected);
    for (size_t k = 0; k < r.n_selected && !interrupt_requested; k++) {
        err_t e;
        if (dlq_walk_ack(&r.w, r.selected[k], &e) != 0) {
            snprintf(t.detail, sizeof(t.detail), "%s", e.msg);
            break;
        }
        t.done++;
        dlq_progress_step(&p, t.done);
    }
    /* Acknowledgements are asynchronous: the walk's close waits for the broker to have them. */
    dlq_progress_end(&p);
    status = dlq_finish(c, a, &r, "purge", &t, started);
    dlq_run_close(&r);
    return status;
}
