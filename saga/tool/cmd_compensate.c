/* petstore-saga compensate ORDER...|SEL --reason TEXT [--dry-run] [--yes] [--rate N] [--wait S]
 *
 * Gives up on an order and undoes it as the machine would on a timeout: RESERVING releases,
 * PAYING refunds-or-voids and releases, a saga parked waiting for the sale's confirmation
 * refunds-or-voids and releases. The order is CANCELLED with reason TIMEOUT once every
 * compensation is acknowledged (machine.h says why TIMEOUT). A CONFIRMING saga is never
 * compensated (retry it); one already compensating needs retry or resume. Confirmed when a
 * reply moved the saga on or it finished. */
#include "sagatool.h"

int sagatool_cmd_compensate(sagatool_ctx_t *c, sagatool_args_t *a) { return sagatool_act(c, a); }
