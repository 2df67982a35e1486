/* Reading what the models answered: the classifier's intent and the validator's verdict. */
#include "answers.h"

#include <ctype.h>

static bool word_char(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

static bool separator(char c)
{
    return c == '_' || c == '-' || c == ' ';
}

/* Length of text matched by word at the start of text, or 0. */
static size_t match_at(const char *text, const char *word)
{
    size_t i = 0;
    for (; word[i]; i++) {
        char t = text[i], w = word[i];
        if (!t)
            return 0;
        if (separator(w)) {
            if (!separator(t))
                return 0;
        } else if (tolower((unsigned char)t) != tolower((unsigned char)w)) {
            return 0;
        }
    }
    return i;
}

bool orch_answers_has_word(const char *text, const char *word)
{
    if (!text || !word || !*word)
        return false;
    for (const char *p = text; *p; p++) {
        if (p > text && word_char(p[-1]))
            continue;
        size_t n = match_at(p, word);
        if (n > 0 && !word_char(p[n]))
            return true;
    }
    return false;
}

const char *orch_answers_intent(const char *text, char *const *intents, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (orch_answers_has_word(text, intents[i]))
            return intents[i];
    }
    return ORCH_INTENT_FALLBACK;
}

bool orch_answers_rejects(const char *text, char *const *words, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (orch_answers_has_word(text, words[i]))
            return true;
    }
    return false;
}
