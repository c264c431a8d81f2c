/* payment: the payment daemon. Wiring only: configuration, keys, the consumer of
 * payment.commands (handlers.c) and the admin API (admin.c) on top of the service framework.
 *
 *   payment                 run the daemon (DATABASE_URL, AMQP_URL, HTTP_PORT, ADMIN_TOKEN and
 *                           the three keys below from the environment)
 *   payment --migrate       apply the runtime's and payment's migrations, then exit
 *   payment --generate-keys print a fresh PAYMENT_SECRET_KEY, PAYMENT_PUBLIC_KEY and
 *                           CARD_HASH_KEY as `export NAME=value` lines, then exit
 *
 * The keys are checked before anything else starts: a malformed key, or a public key that does
 * not belong to the secret key, stops the process with exit status 78 like any bad variable. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payment.h"
#include "payment_migrations.h"

#define EXIT_CONFIG 78

static const cfg_var_t payment_vars[] = {
    {.name = "PAYMENT_SECRET_KEY",
     .kind = CFG_STRING,
     .required = 1,
     .secret = 1,
     .help = "base64 crypto_box secret key that opens sealed card numbers"},
    {.name = "PAYMENT_PUBLIC_KEY",
     .kind = CFG_STRING,
     .required = 1,
     .secret = 1,
     .help = "base64 crypto_box public key of PAYMENT_SECRET_KEY (the front door seals with it)"},
    {.name = "CARD_HASH_KEY",
     .kind = CFG_STRING,
     .required = 1,
     .secret = 1,
     .help = "base64 32-byte key of the card lookup hash"},
};

static const svc_route_t command_routes[] = {
    {MSG_PAYMENT_CHARGE_V1, payment_handle_charge},
    {MSG_PAYMENT_REFUND_OR_VOID_V1, payment_handle_refund_or_void},
};

static const svc_consumer_def_t consumers[] = {
    {.queue = "payment.commands",
     .inbox_name = "payment",
     .routes = command_routes,
     .n_routes = sizeof(command_routes) / sizeof(command_routes[0])},
};

int payment_app_new(svc_t *svc, void **out, err_t *e)
{
    const cfg_t *cfg = svc_cfg(svc);
    payment_app_t *app = calloc(1, sizeof(*app));
    if (app == NULL)
        return err_set(e, ERR_NOMEM, "out of memory");
    app->svc = svc;
    app->keys = sodium_malloc(sizeof(*app->keys));
    if (app->keys == NULL) {
        payment_app_free(app);
        return err_set(e, ERR_NOMEM, "out of memory for the keys");
    }
    int rc =
        card_keys_decode(cfg_str(cfg, "PAYMENT_SECRET_KEY"), cfg_str(cfg, "PAYMENT_PUBLIC_KEY"),
                         cfg_str(cfg, "CARD_HASH_KEY"), app->keys, e);
    if (rc != 0) {
        payment_app_free(app);
        return rc;
    }
    sodium_mprotect_readonly(app->keys);

    const char *token = cfg_str(cfg, "ADMIN_TOKEN");
    if (token != NULL && token[0] != '\0') {
        crypto_generichash(app->admin_token_hash, sizeof(app->admin_token_hash),
                           (const unsigned char *)token, strlen(token), NULL, 0);
        app->admin_enabled = 1;
    } else {
        log_warn(NULL, "admin.disabled", json_pack("{s:s}", "why", "ADMIN_TOKEN is not set"));
    }

    app->m_charged =
        metrics_counter("petstore_payment_charges_total", "Charge commands answered, by outcome",
                        "outcome=\"charged\",reason=\"\"");
    for (int r = 0; r < PAYMENT_DECLINE_COUNT; r++) {
        char labels[80];
        snprintf(labels, sizeof(labels), "outcome=\"declined\",reason=\"%s\"",
                 payment_decline_name((payment_decline_t)r));
        app->m_declined[r] = metrics_counter("petstore_payment_charges_total",
                                             "Charge commands answered, by outcome", labels);
    }
    app->m_refunded =
        metrics_counter("petstore_payment_compensations_total",
                        "Refund-or-void commands answered, by outcome", "outcome=\"refunded\"");
    app->m_voided =
        metrics_counter("petstore_payment_compensations_total",
                        "Refund-or-void commands answered, by outcome", "outcome=\"voided\"");
    app->m_cards_created = metrics_counter("petstore_payment_cards_created_total",
                                           "Cards created through the admin API", NULL);
    *out = app;
    return 0;
}

void payment_app_free(void *app_v)
{
    payment_app_t *app = app_v;
    if (app == NULL)
        return;
    if (app->keys != NULL) {
        sodium_mprotect_readwrite(app->keys);
        sodium_free(app->keys); /* wipes */
    }
    sodium_memzero(app->admin_token_hash, sizeof(app->admin_token_hash));
    free(app);
}

static int generate_keys(void)
{
    card_keys_t *keys = sodium_malloc(sizeof(*keys));
    char text[CARD_KEYS_TEXT_SIZE];
    int status = 1;
    if (keys == NULL || card_keys_generate(keys) != 0 ||
        card_keys_format(keys, text, sizeof(text)) != 0) {
        fprintf(stderr, "payment: cannot generate keys\n");
        goto out;
    }
    if (fputs(text, stdout) == EOF || fflush(stdout) != 0) {
        fprintf(stderr, "payment: cannot write the keys\n");
        goto out;
    }
    status = 0;
out:
    sodium_memzero(text, sizeof(text));
    sodium_free(keys);
    return status;
}

/* Checks the keys before the framework loads the rest, so that a bad key stops the process
 * with EX_CONFIG and a message naming every key problem (never a value). Unset keys are left
 * to the framework, which reports them together with every other missing variable. */
static int check_keys(void)
{
    const char *names[] = {"PAYMENT_SECRET_KEY", "PAYMENT_PUBLIC_KEY", "CARD_HASH_KEY"};
    int any = 0;
    for (size_t i = 0; i < 3; i++) {
        const char *v = getenv(names[i]);
        any |= v != NULL && v[0] != '\0';
    }
    if (!any)
        return 0;
    card_keys_t *keys = sodium_malloc(sizeof(*keys));
    if (keys == NULL)
        return 0; /* init reports it */
    err_t e;
    err_clear(&e);
    int rc = card_keys_decode(getenv(names[0]), getenv(names[1]), getenv(names[2]), keys, &e);
    sodium_free(keys);
    if (rc == 0)
        return 0;
    fprintf(stderr, "payment: configuration error: %s\n", e.msg);
    return -1;
}

int main(int argc, char **argv)
{
    card_wipe_json_frees(); /* before any JSON is made */
    if (card_init() != 0) {
        fprintf(stderr, "payment: libsodium failed to initialise\n");
        return 1;
    }
    if (argc == 2 && strcmp(argv[1], "--generate-keys") == 0)
        return generate_keys();
    if (check_keys() != 0)
        return EXIT_CONFIG;

    svc_def_t def = {
        .name = "payment",
        .cfg_vars = payment_vars,
        .n_cfg_vars = sizeof(payment_vars) / sizeof(payment_vars[0]),
        .migrations = payment_migrations,
        .n_migrations = payment_n_migrations,
        .consumers = consumers,
        .n_consumers = sizeof(consumers) / sizeof(consumers[0]),
        .http_routes = payment_admin_routes,
        .n_http_routes = payment_n_admin_routes,
        .init = payment_app_new,
        .fini = payment_app_free,
    };
    return svc_main(argc, argv, &def);
}
