/* mgmt: GET requests to the RabbitMQ management HTTP API, for the few facts AMQP 0-9-1 cannot
 * tell: a queue's type and effective policy (checked by every daemon at start), and the list of
 * queues with their depths (the dead-letter tool).
 *
 * Plain HTTP/1.1 over one TCP connection per request, Basic authentication with the same broker
 * user as the AMQP connection, JSON answers parsed with jansson. No TLS (yet). mgmt_queue.h
 * judges a queue's description; mgmt_internal.h holds the pure pieces the unit tests check.
 *
 * Threading: no shared state; any thread may call at any time. A request blocks its thread for
 * at most its timeout (name resolution aside: use a numeric host to bound that too) and never
 * raises SIGPIPE. */
#ifndef PETSTORE_MGMT_H
#define PETSTORE_MGMT_H

#include <jansson.h>

#include "err.h"

/* GETs base_url + path (base_url "http://host:port", without a trailing slash or with one;
 * path starts with "/api/", its parts already percent-encoded, e.g.
 * "/api/queues/petstore/audit.events") as user:password, waiting at most timeout_ms for the
 * whole exchange. On 200 with a JSON body: 0 and a new reference in *out. Errors, each with a
 * message that names the URL (never the password) and says what to do:
 *   ERR_CONFIG    base_url malformed or not http://, or 401/403 (credentials, missing
 *                 `management` tag or vhost permissions);
 *   ERR_NOTFOUND  404 (no such queue or vhost);
 *   ERR_RETRY     cannot connect, connection lost, or a 5xx answer;
 *   ERR_TIMEOUT   no complete answer within timeout_ms;
 *   ERR_INTERNAL  any other status, or a body that is not JSON. */
int mgmt_get_json(const char *base_url, const char *user, const char *password, const char *path,
                  int timeout_ms, json_t **out, err_t *e) PETSTORE_NODISCARD;

/* Percent-encodes s (a vhost or queue name) for a URL path segment into out (size n): every byte
 * outside [A-Za-z0-9._~-] becomes %XX. Returns 0, or ERR_INVALID when out is too small. */
int mgmt_path_segment(const char *s, char *out, size_t n, err_t *e) PETSTORE_NODISCARD;

#endif
