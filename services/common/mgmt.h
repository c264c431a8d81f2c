/* mgmt: GET requests to the RabbitMQ management HTTP API, for the few facts AMQP 0-9-1 cannot
 * tell: a queue's type and effective policy (checked by every daemon at start), and the list of
 * queues with their depths (the dead-letter tool).
 *
 * HTTP/1.1 over one TCP connection per request, plain (http://) or TLS (https://, OpenSSL: TLS
 * 1.2 at least, the broker's certificate verified against a CA file or the system's store and
 * against the URL's host), Basic authentication with the same broker user as the AMQP
 * connection, JSON answers parsed with jansson. mgmt_queue.h judges a queue's description;
 * mgmt_internal.h holds the pure pieces the unit tests check.
 *
 * Threading: no shared state (each request has its own TLS context); any thread may call at any
 * time. A request blocks its thread for at most its timeout (name resolution aside: use a
 * numeric host to bound that too) and never raises SIGPIPE, whatever the process does with the
 * signal. It leaves the thread's OpenSSL error queue empty. */
#ifndef PETSTORE_MGMT_H
#define PETSTORE_MGMT_H

#include <jansson.h>

#include "err.h"

/* GETs base_url + path (base_url "http://host[:port]" or "https://host[:port]", default port 80
 * or 443, without a trailing slash or with one; path starts with "/api/", its parts already
 * percent-encoded, e.g. "/api/queues/petstore/audit.events") as user:password, waiting at most
 * timeout_ms for the whole exchange (connect, TLS handshake, send, receive). For https://, the
 * server's certificate must chain to an authority in ca_file (PEM; NULL or "": the system's
 * store) and name the URL's host (a DNS name, also sent as SNI, or an IP address); ca_file is
 * ignored for http://. All arguments are borrowed. On 200 with a JSON body: 0 and a new
 * reference in *out. Errors, each with a message that names the URL (never the password) and
 * says what to do:
 *   ERR_CONFIG    base_url malformed or neither http:// nor https://; ca_file unreadable; the
 *                 certificate does not verify (untrusted, expired, or not for the URL's host:
 *                 the message gives OpenSSL's reason); the TLS handshake failed (an alert, or
 *                 a port that does not speak TLS); or 401/403 (credentials, missing
 *                 `management` tag or vhost permissions);
 *   ERR_NOTFOUND  404 (no such queue or vhost);
 *   ERR_RETRY     cannot connect, connection lost or closed early, or a 5xx answer;
 *   ERR_TIMEOUT   no complete answer within timeout_ms;
 *   ERR_INTERNAL  any other status, an answer that is not HTTP (a TLS answer to http://: the
 *                 message says to use https://), or a body that is not JSON. */
int mgmt_get_json(const char *base_url, const char *ca_file, const char *user, const char *password,
                  const char *path, int timeout_ms, json_t **out, err_t *e) PETSTORE_NODISCARD;

/* Percent-encodes s (a vhost or queue name) for a URL path segment into out (size n): every byte
 * outside [A-Za-z0-9._~-] becomes %XX. Returns 0, or ERR_INVALID when out is too small. */
int mgmt_path_segment(const char *s, char *out, size_t n, err_t *e) PETSTORE_NODISCARD;

#endif
