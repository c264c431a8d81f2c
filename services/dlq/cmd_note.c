/* dlq note GROUP [--status open|investigating|resolved] TEXT: the ticket of a group (its
 * fingerprint, as groups prints it), shown by groups. Text alone keeps the status (open for a
 * new note); --status alone keeps the text. */
#include <stdio.h>
#include <string.h>

#include "dlq.h"

int dlq_cmd_note(dlq_ctx_t *c, dlq_args_t *a)
{
    a->verb = "note";
    if (a->n_pos < 1)
        return dlq_usage("note: which group? (the fingerprint dlq groups prints)");
    const char *fp = a->pos[0];
    size_t len = strlen(fp);
    if (len != 16 || strspn(fp, "0123456789abcdef") != len)
        return dlq_usage("note: \"%s\" is not a group fingerprint (16 hex digits, see dlq groups)",
                         fp);
    const char *text = a->n_pos > 1 ? a->pos[1] : "";
    if (text[0] == '\0' && a->status == NULL)
        return dlq_usage("note: say something (TEXT) or change the --status");
    err_t e;
    err_clear(&e);
    json_t *notes = NULL;
    if (dlq_notes_all(c, &notes, &e) != 0)
        return dlq_fail("reading the notes", &e);
    json_t *old = json_object_get(notes, fp);
    const char *status = a->status ? a->status
                         : old     ? json_string_value(json_object_get(old, "status"))
                                   : "open";
    if (old == NULL && text[0] == '\0') {
        json_decref(notes);
        return dlq_usage("note: a new note needs TEXT");
    }
    int rc = dlq_note_set(c, fp, status, text, &e);
    json_decref(notes);
    if (rc != 0)
        return dlq_fail("writing the note", &e);
    json_t *sel = json_pack("{s:s}", "group", fp);
    json_t *counts = json_pack("{s:s}", "status", status);
    if (dlq_history_add(c, "note", NULL, sel, status, counts, NULL, text[0] ? text : NULL, &e) != 0)
        fprintf(stderr, "dlq: could not record this in the history: %s\n", e.msg);
    json_decref(sel);
    json_decref(counts);
    if (a->json)
        printf("{\"group\": \"%s\", \"status\": \"%s\"}\n", fp, status);
    else
        printf("group %s: %s\n", fp, status);
    return DLQ_EXIT_DONE;
}
