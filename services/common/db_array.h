/* db_array: PostgreSQL's text form of one-dimensional arrays of simple values (uuids, words),
 * as parameters and results travel in text format. Values must not need quoting (no commas,
 * braces, quotes, backslashes or spaces): uuids and identifiers. */
#ifndef PETSTORE_DB_ARRAY_H
#define PETSTORE_DB_ARRAY_H

#include <jansson.h>

/* "{a,b}" -> ["a","b"] (new reference; an empty array for NULL or malformed text). */
json_t *db_array_to_json(const char *text);

/* ["a","b"] -> "{a,b}" for an array parameter; non-string items become empty strings. Caller
 * frees; NULL when out of memory. */
char *db_array_from_json(const json_t *items);

#endif
