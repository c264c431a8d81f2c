/* petstore-saga retry ORDER...|SEL --reason TEXT [--dry-run] [--yes] [--rate N] [--wait S]
 *
 * Sends the current step's command again: RESERVING reserve, PAYING charge, CONFIRMING confirm,
 * COMPENSATING the compensations still pending; the timer is re-armed with its first timeout
 * and the attempts start again at 0 (a parked timer is unparked). For a reply that was lost
 * (the service was down, the message dead-lettered) or a timer that kept failing. Confirmed when
 * the command was published and a reply moved the saga on, or the saga waits with its timer
 * armed. A saga parked in NEEDS_OPERATOR is not retried: resume it. */
#include "sagatool.h"

int sagatool_cmd_retry(sagatool_ctx_t *c, sagatool_args_t *a) { return sagatool_act(c, a); }
