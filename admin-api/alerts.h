/* Alert rules over HTTP: create, list, look up, update and delete rules, and their history. */
#ifndef AA_ALERTS_H
#define AA_ALERTS_H

#include "api.h"

/*
 * A rule's scope as a JSON object of the keys it sets (model, backend,
 * intent, source), from the scope columns of llm_alert_rule row r; {} is
 * every call.
 */
#define AA_ALERT_SCOPE_JSON(r)                                                                     \
    "json_strip_nulls(json_build_object('model', " r ".scope_model, 'backend', " r                 \
    ".scope_backend, 'intent', " r ".scope_intent, 'source', " r ".scope_source))"

/* GET/POST /api/llm-backends/alerts, GET/PUT/DELETE .../alerts/{id}, GET .../alerts/history. */
extern const struct aa_route aa_alert_routes[];

#endif
