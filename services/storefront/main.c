/* storefront: the public HTTP API. Wiring only: configuration, routes (accounts.c, catalog.c,
 * orders.c), the consumer of storefront.events (events.c) and the notices worker (notices.c) on
 * top of the service framework.
 *
 *   storefront             run the daemon (DATABASE_URL, AMQP_URL, HTTP_PORT, ADMIN_TOKEN,
 *                          PAYMENT_PUBLIC_KEY from the environment)
 *   storefront --migrate   apply the migrations, then exit */
#include <stdlib.h>
#include <string.h>

#include "storefront.h"
#include "storefront_migrations.h"

static const cfg_var_t storefront_vars[] = {
    {.name = "PAYMENT_PUBLIC_KEY",
     .kind = CFG_STRING,
     .required = 1,
     .help = "base64 crypto_box public key of the payment service (seals card numbers)"},
    {.name = "SESSION_TTL_S",
     .kind = CFG_INT,
     .default_value = "86400",
     .min = 60,
     .max = 2592000,
     .help = "lifetime of a session token in seconds"},
    {.name = "IDEMPOTENCY_RETENTION_S",
     .kind = CFG_INT,
     .default_value = "86400",
     .min = 60,
     .max = 2592000,
     .help = "how long an Idempotency-Key is remembered, in seconds (older ones are purged)"},
};

extern const char storefront_index_html[];
extern const size_t storefront_index_html_len;

/* GET /: the web page (web/index.html, compiled in). */
static int sf_get_page(http_request_t *req, void *svc)
{
    (void)svc;
    http_add_header(req, "Content-Security-Policy",
                    "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'");
    http_respond_text(req, 200, "text/html; charset=utf-8", storefront_index_html,
                      storefront_index_html_len);
    return 0;
}

static const http_route_t routes[] = {
    {"GET", "/", sf_get_page},
    {"POST", "/v1/users", sf_post_users},
    {"POST", "/v1/sessions", sf_post_sessions},
    {"DELETE", "/v1/sessions/current", sf_delete_session},
    {"GET", "/v1/pets", sf_get_pets},
    {"POST", "/v1/pets", sf_post_pets},
    {"GET", "/v1/pets/{id}", sf_get_pet},
    {"POST", "/v1/orders", sf_post_orders},
    {"GET", "/v1/orders", sf_get_orders},
    {"GET", "/v1/orders/{id}", sf_get_order},
    {"POST", "/v1/orders/{id}/cancel", sf_post_cancel},
    {"GET", "/v1/orders/{id}/events", sf_get_order_events},
    {"GET", "/v1/cart", sf_get_cart},
    {"PUT", "/v1/cart/items/{pet_id}", sf_put_cart_item},
    {"DELETE", "/v1/cart/items/{pet_id}", sf_delete_cart_item},
};

static const svc_route_t event_routes[] = {
    {MSG_SAGA_ORDER_STATUS_CHANGED_V1, sf_on_order_status},
    {MSG_INVENTORY_PET_LISTED_V1, sf_on_pet_listed},
    {MSG_INVENTORY_PET_STATUS_CHANGED_V1, sf_on_pet_status},
    {MSG_INVENTORY_RESERVED_V1, sf_on_pets_reserved},
    {MSG_INVENTORY_RELEASED_V1, sf_on_pets_released},
    {MSG_INVENTORY_SALE_CONFIRMED_V1, sf_on_pets_sold},
};

static int init(svc_t *svc, void **out, err_t *e)
{
    const cfg_t *cfg = svc_cfg(svc);
    if (sodium_init() < 0)
        return err_set(e, ERR_INTERNAL, "libsodium failed to initialise");
    storefront_app_t *app = calloc(1, sizeof(*app));
    if (app == NULL)
        return err_set(e, ERR_NOMEM, "out of memory");
    const char *pk = cfg_str(cfg, "PAYMENT_PUBLIC_KEY");
    size_t len = 0;
    if (sodium_base642bin(app->payment_pk, sizeof(app->payment_pk), pk, strlen(pk), NULL, &len,
                          NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
        len != sizeof(app->payment_pk)) {
        free(app);
        return err_set(e, ERR_CONFIG, "PAYMENT_PUBLIC_KEY is not a base64 public key of %zu bytes",
                       (size_t)crypto_box_PUBLICKEYBYTES);
    }
    const char *token = cfg_str(cfg, "ADMIN_TOKEN");
    if (token != NULL && token[0] != '\0') {
        crypto_generichash(app->admin_token_hash, sizeof(app->admin_token_hash),
                           (const unsigned char *)token, strlen(token), NULL, 0);
        app->admin_enabled = 1;
    }
    app->session_ttl_s = cfg_int(cfg, "SESSION_TTL_S");
    app->idempotency_retention_s = cfg_int(cfg, "IDEMPOTENCY_RETENTION_S");
    sf_finished_init();
    unsigned char junk[16];
    randombytes_buf(junk, sizeof(junk));
    if (crypto_pwhash_str(app->dummy_hash, (const char *)junk, sizeof(junk), SF_PWHASH_OPSLIMIT,
                          SF_PWHASH_MEMLIMIT) != 0) {
        free(app);
        return err_set(e, ERR_NOMEM, "out of memory hashing");
    }
    *out = app;
    return 0;
}

static void fini(void *app) { free(app); }

int main(int argc, char **argv)
{
    /* Borrowed by svc_main, which returns only when the process ends. */
    const svc_consumer_def_t consumers[] = {
        {.queue = "storefront.events",
         .inbox_name = "storefront",
         .routes = event_routes,
         .n_routes = sizeof(event_routes) / sizeof(event_routes[0]),
         .settled = sf_finished_settled},
    };
    svc_def_t def = {
        .name = "storefront",
        .cfg_vars = storefront_vars,
        .n_cfg_vars = sizeof(storefront_vars) / sizeof(storefront_vars[0]),
        .migrations = storefront_migrations,
        .n_migrations = storefront_migrations_count,
        .consumers = consumers,
        .n_consumers = sizeof(consumers) / sizeof(consumers[0]),
        .http_routes = routes,
        .n_http_routes = sizeof(routes) / sizeof(routes[0]),
        .init = init,
        .workers = {sf_notices_worker},
        .fini = fini,
    };
    return svc_main(argc, argv, &def);
}
