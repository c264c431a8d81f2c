/* machine: the order saga as a pure, table-driven state machine.
 *
 * The orchestrator keeps one saga per order. Everything that can happen to it (a reply from
 * inventory or payment, a customer's cancellation, a timer firing) is an input; saga_step()
 * maps the current state and the input to the next state, the commands to send and what to do
 * with the saga's timer. It performs no I/O and reads no clock, so every state x input pair is
 * testable without servers; the store (store.c) persists the result in one transaction.
 *
 *   PENDING -> RESERVING -> PAYING -> CONFIRMING -> COMPLETED
 *   RESERVING --rejected--> CANCELLED (nothing was reserved: reservation is all-or-nothing)
 *   RESERVING --timeout/cancel--> COMPENSATING (release) -> CANCELLED
 *   PAYING --declined--> COMPENSATING (release) -> CANCELLED
 *   PAYING --timeout/cancel--> COMPENSATING (refund-or-void, release) -> CANCELLED
 *   PENDING --cancel--> CANCELLED (a cancellation that came before the order: nothing to undo)
 *   CONFIRMING --timeout--> CONFIRMING (confirm again: retriable, never compensated)
 *   CONFIRMING --timeout x max_confirm_tries--> NEEDS_OPERATOR (the sale is never confirmed)
 *   COMPENSATING --timeout x max_compensation_tries--> NEEDS_OPERATOR (compensations keep failing)
 *
 * An operator's inputs (the saga tool's write verbs) go through the same table, so the tool and
 * the orchestrator cannot disagree about what a step means. Each arms the step's timer afresh
 * (its first timeout, attempts back to 0, a parked timer unparked):
 *   RESERVING|PAYING|CONFIRMING --operator_retry--> same (reserve | charge | confirm again)
 *   COMPENSATING --operator_retry--> COMPENSATING (the compensations still pending, again)
 *   RESERVING --operator_compensate--> COMPENSATING (release), reason TIMEOUT
 *   PAYING --operator_compensate--> COMPENSATING (refund-or-void, release), reason TIMEOUT
 *   NEEDS_OPERATOR (parked confirming) --operator_compensate--> COMPENSATING (refund-or-void,
 *       release), reason TIMEOUT
 *   NEEDS_OPERATOR (parked compensating) --operator_resume--> COMPENSATING (what is pending)
 *   NEEDS_OPERATOR (parked confirming) --operator_resume--> CONFIRMING (confirm again)
 * A compensation an operator forces gets the reason TIMEOUT: the clients' vocabulary of reasons
 * (order_status.def) has no "operator", and to the customer the order did not go through in
 * time; the step log (its why names the operator's action) and the tool's audit rows
 * (saga_operator_actions) say who decided and why. Everything else an operator asks is ignored
 * like any input that does not apply, and the tool reports the machine's why. A saga resumed
 * that keeps failing parks again after the same bounds.
 *
 * COMPENSATING waits until every outstanding compensation has been acknowledged (the "pending"
 * bit set) before it reports CANCELLED, so a client that sees CANCELLED can rely on the pets
 * being available again and any charge being refunded. A saga parked in NEEDS_OPERATOR still
 * accepts the acknowledgements it was waiting for and finishes if they arrive later: CANCELLED
 * once no compensation is pending, COMPLETED when it was parked waiting for the sale's
 * confirmation (SAGA_PENDING_CONFIRM). Retrying the confirmation forever would hide a sale that
 * inventory never confirms (a poisoned command, a lost queue) behind a status that looks normal;
 * parking it shows the order to operators while a late confirmation still completes it. The
 * charge is not refunded on parking: confirm is never compensated, an operator decides.
 *
 * PENDING is the status of a saga between its creation and its first step, which the handler
 * applies in the same transaction; the only input it takes besides PLACED is CANCEL, fed by the
 * handler when the customer's cancellation arrived before the order (handlers.c).
 *
 * Replies that do not fit the current state (duplicates with a new message id, late replies
 * from an earlier attempt, anything after a terminal state) are IGNORED: the caller logs them
 * and acknowledges the message. Thread-safe: no state outside the arguments. */
#ifndef PETSTORE_SAGA_MACHINE_H
#define PETSTORE_SAGA_MACHINE_H

#include <stdint.h>

#include "order_status.h"

/* The saga's statuses and reasons are the order's (contracts/codec/order_status.def): the
 * machine has no state a client cannot see. They are generated from the table's lines under
 * the machine's own prefix, so SAGA_PAYING has ORDER_PAYING's value and SAGA_REASON_TIMEOUT
 * ORDER_REASON_TIMEOUT's (machine.c checks each at compile time). */
typedef enum saga_status {
#define ORDER_STATUS(name, terminal, cancellable) SAGA_##name,
#include "order_status.def"
    SAGA_STATUS_COUNT
} saga_status_t;

typedef enum saga_reason {
    SAGA_REASON_NONE = 0,
#define ORDER_REASON(name) SAGA_REASON_##name,
#include "order_status.def"
    SAGA_REASON_COUNT
} saga_reason_t;

typedef enum saga_event {
    SAGA_EV_PLACED = 0,     /* order.placed: the saga starts */
    SAGA_EV_RESERVED,       /* inventory.reserved */
    SAGA_EV_REJECTED,       /* inventory.reservation_rejected */
    SAGA_EV_CHARGED,        /* payment.charged */
    SAGA_EV_DECLINED,       /* payment.declined (reason in the input) */
    SAGA_EV_SALE_CONFIRMED, /* inventory.sale_confirmed */
    SAGA_EV_RELEASED,       /* inventory.released */
    SAGA_EV_REFUNDED,       /* payment.refunded or payment.voided */
    SAGA_EV_CANCEL,         /* order.cancel_requested */
    SAGA_EV_TIMEOUT,        /* the saga's timer fired */
    /* An operator's decision, applied by the saga tool (petstore-saga) through saga_apply. */
    SAGA_EV_OPERATOR_RETRY,      /* retry: send the current step's command again */
    SAGA_EV_OPERATOR_COMPENSATE, /* compensate: give up on the order and undo it */
    SAGA_EV_OPERATOR_RESUME,     /* resume: take a parked saga up where it stopped */
    SAGA_EVENT_COUNT
} saga_event_t;

/* Commands a step asks the caller to send (a bit set). */
enum {
    SAGA_CMD_RESERVE = 1u << 0,
    SAGA_CMD_CHARGE = 1u << 1,
    SAGA_CMD_CONFIRM = 1u << 2,
    SAGA_CMD_RELEASE = 1u << 3,
    SAGA_CMD_REFUND_OR_VOID = 1u << 4,
};

/* Compensations still waiting for their acknowledgement (a bit set in saga_state_t.pending). */
enum {
    SAGA_PENDING_RELEASE = 1u << 0,
    SAGA_PENDING_REFUND = 1u << 1,
    SAGA_PENDING_CONFIRM =
        1u << 2, /* parked in NEEDS_OPERATOR waiting for the sale's confirmation */
};

typedef enum saga_timer_action {
    SAGA_TIMER_KEEP = 0, /* leave the timer as it is */
    SAGA_TIMER_SET,      /* (re)arm it: fire after saga_output_t.timer_ms */
    SAGA_TIMER_CLEAR,    /* the saga waits for nothing any more */
} saga_timer_action_t;

typedef enum saga_outcome {
    SAGA_APPLIED = 0, /* the input changed the saga; persist the output */
    SAGA_IGNORED,     /* the input does not apply in this state; persist nothing */
} saga_outcome_t;

typedef struct saga_state {
    saga_status_t status;
    saga_reason_t reason; /* why the saga is compensating or cancelled */
    unsigned pending;     /* SAGA_PENDING_* bits */
    int attempts;         /* retries of the current waiting step (timeouts seen) */
} saga_state_t;

typedef struct saga_input {
    saga_event_t event;
    saga_reason_t reason; /* for SAGA_EV_DECLINED: the payment's reason */
} saga_input_t;

/* Deadlines and retry policy; all in milliseconds. */
typedef struct saga_limits {
    int reserve_timeout_ms;
    int pay_timeout_ms;
    int confirm_timeout_ms;
    int compensate_timeout_ms;  /* first wait for compensation acknowledgements */
    int retry_max_ms;           /* cap of the exponential backoff between retries */
    int max_compensation_tries; /* timeouts in COMPENSATING before NEEDS_OPERATOR */
    int max_confirm_tries;      /* timeouts in CONFIRMING before NEEDS_OPERATOR */
} saga_limits_t;

typedef struct saga_output {
    saga_outcome_t outcome;
    saga_state_t next; /* the state after the step (a copy of the input when ignored) */
    unsigned commands; /* SAGA_CMD_* bits to send, in bit order */
    saga_timer_action_t timer;
    int timer_ms;       /* with SAGA_TIMER_SET */
    int status_changed; /* next.status differs from the current status */
    const char *why;    /* static text: which rule applied, or why the input was ignored */
} saga_output_t;

/* Applies one input. cur, in and limits are borrowed; out is filled on every call. Never fails:
 * an input that does not apply yields SAGA_IGNORED with the reason in out->why. */
void saga_step(const saga_state_t *cur, const saga_input_t *in, const saga_limits_t *limits,
               saga_output_t *out);

/* Sensible defaults (a few seconds per step). */
void saga_limits_default(saga_limits_t *out);

/* True for COMPLETED and CANCELLED: order_status_is_terminal. */
int saga_status_terminal(saga_status_t s);

/* Names as they appear in the API and messages ("PAYING", "INSUFFICIENT_FUNDS"), from the order's
 * table (order_status_name, order_reason_name); static strings. saga_status_name gives
 * "UNKNOWN" out of range; saga_reason_name(SAGA_REASON_NONE) is NULL. The event names are the
 * machine's own ("sale_confirmed"), written to the step log. */
const char *saga_status_name(saga_status_t s);
const char *saga_reason_name(saga_reason_t r);
const char *saga_event_name(saga_event_t ev);

/* Parses names back; return 0 and set *out, or -1 for an unknown name or NULL. */
int saga_status_parse(const char *name, saga_status_t *out);
int saga_reason_parse(const char *name, saga_reason_t *out);

#endif
