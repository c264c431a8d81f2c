/* db_array: PostgreSQL's text form of one-dimensional arrays, as array parameters and results
 * travel in text format ("{a,b}"). Elements written here are always double-quoted with `"` and
 * `\` escaped, so any string is safe (a stray comma cannot split an element); both quoted and
 * bare elements are read. Pure functions, thread-safe. */
#ifndef PETSTORE_DB_ARRAY_H
#define PETSTORE_DB_ARRAY_H

#include <jansson.h>

/* "{a,\"b c\",NULL}" -> ["a","b c",null] (new reference; an empty array for NULL or malformed
 * text). */
json_t *db_array_to_json(const char *text);

/* ["a","b"] -> "{\"a\",\"b\"}" for an array parameter; JSON null becomes SQL NULL, other
 * non-string items empty strings. Caller frees; NULL when out of memory. */
char *db_array_from_json(const json_t *items);

#endif
