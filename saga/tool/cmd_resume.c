/* petstore-saga resume ORDER...|SEL --reason TEXT [--dry-run] [--yes] [--rate N] [--wait S]
 *
 * Takes a saga parked in NEEDS_OPERATOR up where it stopped, once the cause is removed:
 * compensations that kept failing are sent again (back to COMPENSATING), a sale that was never
 * confirmed is confirmed again (back to CONFIRMING); timer re-armed, attempts at 0. Confirmed
 * when a reply moved the saga on or it finished. */
#include "sagatool.h"

int sagatool_cmd_resume(sagatool_ctx_t *c, sagatool_args_t *a) { return sagatool_act(c, a); }
