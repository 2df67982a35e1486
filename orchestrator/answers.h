/* Reading what the models answered: the classifier's intent and the validator's verdict. */
#ifndef ORCH_ANSWERS_H
#define ORCH_ANSWERS_H

#include <stdbool.h>
#include <stddef.h>

/* The intent of a request whose classification found none of the listed intents. */
#define ORCH_INTENT_FALLBACK "general"

/*
 * True when word appears in text as a whole word, ignoring case. Words are
 * runs of letters, digits and '_'; a '_' or '-' in word also matches a
 * space, '_' or '-' in text, so "smart_home" matches "Smart home".
 */
bool orch_answers_has_word(const char *text, const char *word);

/*
 * The classifier's intent: the first of the n intents, in list order, that
 * text contains as a word (orch_answers_has_word), else
 * ORCH_INTENT_FALLBACK. Returns one of intents or the fallback (static);
 * text may be NULL.
 */
const char *orch_answers_intent(const char *text, char *const *intents, size_t n);

/*
 * The validator's verdict: true (rejected) when text contains one of the n
 * rejection words as a word. Anything else, an empty answer included,
 * accepts. text may be NULL.
 */
bool orch_answers_rejects(const char *text, char *const *words, size_t n);

#endif
