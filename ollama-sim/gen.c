/* One simulated generation: the request, its deterministic answer, its schedule and its lines. */
#include "gen.h"
#include "am_buf.h"
#include "am_clock.h"
#include "am_error.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POOL_WORDS    32 /* prompt words the answer may borrow */
#define POOL_WORD_MAX 24 /* bytes; longer words are never borrowed */
#define TOKEN_MAX     (POOL_WORD_MAX + 2)

/* The words answers are made of, besides those borrowed from the prompt. */
static const char *const vocabulary[] = {
    "the",     "model",   "answer",  "data",    "system", "token",  "stream",  "value",
    "result",  "simple",  "query",   "light",   "signal", "metric", "latency", "router",
    "service", "request", "reply",   "quickly", "steady", "local",  "network", "memory",
    "context", "window",  "gateway", "measure", "every",  "second", "first",   "time",
    "rate",    "line",    "word",    "output",  "input",  "cache",  "queue",   "batch",
    "sample",  "plain",   "small",   "clear",   "short",  "long",   "good",    "fast",
    "slow",    "open",    "close",   "ready",   "check",  "count",  "level",   "point",
    "state",   "order",   "field",   "table",   "graph",  "path",   "node",    "zone",
};
#define VOCABULARY_SIZE (sizeof vocabulary / sizeof vocabulary[0])

struct sim_gen {
    enum sim_api api;
    char *model;
    bool stream;
    bool load;             /* no prompt: Ollama only loads the model */
    long long num_predict; /* <= 0: no cap, as in Ollama */
    bool has_seed;
    long long seed;
    char *stop[SIM_MAX_STOP];
    size_t nstop;
    bool json; /* "format" asked for JSON: the answer is one JSON object */

    /* What the prompt contributes: its size, its hash and a few of its words. */
    long long prompt_words;
    uint64_t prompt_hash;
    char pool_buf[POOL_WORDS][POOL_WORD_MAX + 1];
    size_t npool;

    /* The answer: all tokens back to back in content, token i ending at ends[i]. */
    struct am_buf content;
    size_t *ends;
    long long ntok;
    bool length; /* num_predict ended the answer: done_reason "length" */

    /* The schedule, in am_clock_mono_ns. */
    int64_t start_ns, ttft_ns, interval_ns, stall_ns;
    enum sim_fault fault;
    long long fault_at; /* step at which the fault strikes; <= ntok */
    long long next;     /* next step: token index, or ntok for the final line */
    bool has_first;
    int64_t first_ns;
};

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t fnv1a(uint64_t h, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool is_word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static void hash_text(sim_gen *g, const char *s, size_t len)
{
    g->prompt_hash = fnv1a(g->prompt_hash, s, len);
    g->prompt_hash = fnv1a(g->prompt_hash, "\n", 1);
}

/* Counts the words of s, folds s into the hash and keeps plain words for the answer. */
static void scan_text(sim_gen *g, const char *s, size_t len)
{
    hash_text(g, s, len);
    size_t i = 0;
    while (i < len) {
        while (i < len && is_space(s[i]))
            i++;
        if (i == len)
            break;
        size_t start = i;
        bool plain = true;
        while (i < len && !is_space(s[i])) {
            plain = plain && is_word_char(s[i]);
            i++;
        }
        g->prompt_words++;
        size_t wlen = i - start;
        if (plain && wlen >= 3 && wlen <= POOL_WORD_MAX && g->npool < POOL_WORDS) {
            memcpy(g->pool_buf[g->npool], s + start, wlen);
            g->pool_buf[g->npool][wlen] = '\0';
            g->npool++;
        }
    }
}

static int fail(char *err, size_t errlen, const char *msg)
{
    snprintf(err, errlen, "%s", msg);
    return AM_EINVAL;
}

/* options.stop: one string or a list of them. */
static int parse_stop(sim_gen *g, json_t *stop, char *err, size_t errlen)
{
    if (!stop || json_is_null(stop))
        return AM_OK;
    bool single = json_is_string(stop);
    size_t n = single ? 1 : json_array_size(stop);
    if (!single && !json_is_array(stop))
        return fail(err, errlen, "options.stop must be a string or a list of strings");
    if (n > SIM_MAX_STOP) {
        snprintf(err, errlen, "options.stop: at most %d strings", SIM_MAX_STOP);
        return AM_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *s = single ? stop : json_array_get(stop, i);
        if (!json_is_string(s))
            return fail(err, errlen, "options.stop must be a string or a list of strings");
        size_t len = json_string_length(s);
        if (len == 0)
            continue;
        if (len > SIM_MAX_STOP_LEN || memchr(json_string_value(s), '\0', len)) {
            snprintf(err, errlen, "options.stop: each string at most %d bytes, without NUL",
                     SIM_MAX_STOP_LEN);
            return AM_EINVAL;
        }
        g->stop[g->nstop] = strdup(json_string_value(s));
        if (!g->stop[g->nstop])
            return AM_ENOMEM;
        g->nstop++;
    }
    return AM_OK;
}

static int parse_options(sim_gen *g, json_t *opts, char *err, size_t errlen)
{
    if (!opts || json_is_null(opts))
        return AM_OK;
    if (!json_is_object(opts))
        return fail(err, errlen, "options must be an object");
    json_t *v = json_object_get(opts, "num_predict");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v))
            return fail(err, errlen, "options.num_predict must be an integer");
        g->num_predict = json_integer_value(v);
    }
    v = json_object_get(opts, "seed");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v))
            return fail(err, errlen, "options.seed must be an integer");
        g->has_seed = true;
        g->seed = json_integer_value(v);
    }
    /* Sampling options are checked for their type and otherwise ignored: the answer is fixed. */
    static const char *const numbers[] = {
        "temperature", "top_p", "top_k", "repeat_penalty", "frequency_penalty", "presence_penalty"};
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
        v = json_object_get(opts, numbers[i]);
        if (v && !json_is_null(v) && !json_is_number(v)) {
            snprintf(err, errlen, "options.%s must be a number", numbers[i]);
            return AM_EINVAL;
        }
    }
    return parse_stop(g, json_object_get(opts, "stop"), err, errlen);
}

static int parse_messages(sim_gen *g, json_t *msgs, char *err, size_t errlen)
{
    g->load = true;
    if (!msgs || json_is_null(msgs))
        return AM_OK;
    if (!json_is_array(msgs))
        return fail(err, errlen, "messages must be a list of {role, content} objects");
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i);
        json_t *role = json_object_get(m, "role");
        json_t *content = json_object_get(m, "content");
        if (!json_is_object(m) || !json_is_string(role) ||
            (content && !json_is_null(content) && !json_is_string(content))) {
            snprintf(err, errlen, "messages[%zu] must be an object with string role and content",
                     i);
            return AM_EINVAL;
        }
        /* The role changes the answer but is not counted as prompt words. */
        hash_text(g, json_string_value(role), json_string_length(role));
        if (json_is_string(content))
            scan_text(g, json_string_value(content), json_string_length(content));
    }
    g->load = json_array_size(msgs) == 0;
    return AM_OK;
}

int sim_gen_parse(enum sim_api api, const char *body, size_t len, sim_gen **out, char *err,
                  size_t errlen)
{
    json_error_t jerr;
    json_t *root = NULL;
    sim_gen *g = NULL;
    int rc = AM_EINVAL;

    if (len == 0) {
        fail(err, errlen, "missing request body");
        goto out;
    }
    root = json_loadb(body, len, 0, &jerr);
    if (!root) {
        snprintf(err, errlen, "invalid JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                 jerr.column);
        goto out;
    }
    if (!json_is_object(root)) {
        fail(err, errlen, "the request body must be a JSON object");
        goto out;
    }
    g = calloc(1, sizeof *g);
    if (!g) {
        rc = AM_ENOMEM;
        goto out;
    }
    g->api = api;
    g->stream = true;
    g->prompt_hash = 0xcbf29ce484222325ULL;
    am_buf_init(&g->content, (size_t)SIM_MAX_ANSWER_TOKENS * TOKEN_MAX + 1);

    json_t *model = json_object_get(root, "model");
    if (!json_is_string(model) || json_string_length(model) == 0) {
        fail(err, errlen, "model is required");
        goto out;
    }
    if (json_string_length(model) > SIM_MAX_MODEL_LEN ||
        memchr(json_string_value(model), '\0', json_string_length(model))) {
        snprintf(err, errlen, "model: at most %d bytes, without NUL", SIM_MAX_MODEL_LEN);
        goto out;
    }
    g->model = strdup(json_string_value(model));
    if (!g->model) {
        rc = AM_ENOMEM;
        goto out;
    }
    json_t *stream = json_object_get(root, "stream");
    if (stream && !json_is_null(stream)) {
        if (!json_is_boolean(stream)) {
            fail(err, errlen, "stream must be true or false");
            goto out;
        }
        g->stream = json_is_true(stream);
    }
    rc = parse_options(g, json_object_get(root, "options"), err, errlen);
    if (rc)
        goto out;
    rc = AM_EINVAL;
    /* Ollama's "format": "json", or a JSON schema; "" or null: plain text. */
    json_t *format = json_object_get(root, "format");
    if (format && !json_is_null(format) && !json_is_object(format) &&
        !(json_is_string(format) &&
          (!strcmp(json_string_value(format), "json") || !json_string_length(format)))) {
        fail(err, errlen, "invalid format: expected \"json\" or a JSON schema");
        goto out;
    }
    g->json = json_is_object(format) || (json_is_string(format) && json_string_length(format));

    if (api == SIM_API_CHAT) {
        rc = parse_messages(g, json_object_get(root, "messages"), err, errlen);
        if (rc)
            goto out;
    } else {
        json_t *system = json_object_get(root, "system");
        json_t *prompt = json_object_get(root, "prompt");
        if ((system && !json_is_null(system) && !json_is_string(system)) ||
            (prompt && !json_is_null(prompt) && !json_is_string(prompt))) {
            fail(err, errlen, "prompt and system must be strings");
            goto out;
        }
        if (json_is_string(system))
            scan_text(g, json_string_value(system), json_string_length(system));
        if (json_is_string(prompt))
            scan_text(g, json_string_value(prompt), json_string_length(prompt));
        g->load = !json_is_string(prompt) || json_string_length(prompt) == 0;
    }
    rc = AM_OK;
out:
    json_decref(root);
    if (rc) {
        sim_gen_free(g);
        g = NULL;
    }
    *out = g;
    return rc;
}

const char *sim_gen_model(const sim_gen *g)
{
    return g->model;
}

bool sim_gen_stream(const sim_gen *g)
{
    return g->stream;
}

bool sim_gen_is_load(const sim_gen *g)
{
    return g->load;
}

long long sim_gen_prompt_words(const sim_gen *g)
{
    return g->prompt_words;
}

long long sim_gen_tokens(const sim_gen *g)
{
    return g->ntok;
}

enum sim_fault sim_gen_fault(const sim_gen *g)
{
    return g->fault;
}

/*
 * Appends n tokens to the answer: sentences of 5 to 12 words taken from the
 * vocabulary and, one time in six, from the prompt, each ended by a "." token.
 * Every word token but the first starts with a space, as real tokens do.
 */
static int build_answer(sim_gen *g, long long n, uint64_t seed)
{
    uint64_t rng = seed;
    long long left = 5 + (long long)(splitmix64(&rng) % 8);
    bool capital = true;

    g->ends = calloc((size_t)(n ? n : 1), sizeof *g->ends);
    if (!g->ends)
        return AM_ENOMEM;
    for (long long i = 0; i < n; i++) {
        char tok[TOKEN_MAX + 1];
        size_t len = 0;
        if (left == 0) {
            tok[len++] = '.';
            left = 5 + (long long)(splitmix64(&rng) % 8);
            capital = true;
        } else {
            uint64_t r = splitmix64(&rng);
            const char *word = g->npool && r % 6 == 0 ? g->pool_buf[(r >> 8) % g->npool]
                                                      : vocabulary[(r >> 8) % VOCABULARY_SIZE];
            if (i > 0)
                tok[len++] = ' ';
            size_t wlen = strlen(word);
            memcpy(tok + len, word, wlen);
            if (capital && tok[len] >= 'a' && tok[len] <= 'z')
                tok[len] = (char)(tok[len] - 'a' + 'A');
            len += wlen;
            capital = false;
            left--;
        }
        int rc = am_buf_append(&g->content, tok, len);
        if (rc)
            return rc == AM_EFULL ? AM_ENOMEM : rc;
        g->ends[i] = g->content.len;
    }
    g->ntok = n;
    return AM_OK;
}

/* A JSON answer: the text becomes {"text":"..."}, the first token opening it, the last closing. */
static int wrap_json(sim_gen *g)
{
    static const char head[] = "{\"text\":\"", tail[] = "\"}";
    if (g->ntok == 0)
        return AM_OK;
    struct am_buf b;
    am_buf_init(&b, g->content.max + sizeof head + sizeof tail);
    int rc = am_buf_append(&b, head, sizeof head - 1);
    if (!rc && g->content.len)
        rc = am_buf_append(&b, g->content.data, g->content.len);
    if (!rc)
        rc = am_buf_append(&b, tail, sizeof tail - 1);
    if (rc) {
        am_buf_free(&b);
        return rc == AM_EFULL ? AM_ENOMEM : rc;
    }
    am_buf_free(&g->content);
    g->content = b;
    for (long long i = 0; i < g->ntok; i++)
        g->ends[i] += sizeof head - 1;
    g->ends[g->ntok - 1] += sizeof tail - 1;
    return AM_OK;
}

/* Cuts the answer where the first stop string begins; the stop string is not sent. */
static void apply_stop(sim_gen *g)
{
    size_t cut = g->content.len;
    bool found = false;
    for (size_t s = 0; s < g->nstop; s++) {
        const char *p =
            g->content.len ? memmem(g->content.data, g->content.len, g->stop[s], strlen(g->stop[s]))
                           : NULL;
        if (p && (size_t)(p - g->content.data) < cut) {
            cut = (size_t)(p - g->content.data);
            found = true;
        }
    }
    if (!found)
        return;
    long long j = 0;
    while (j < g->ntok && g->ends[j] <= cut)
        j++;
    size_t start = j ? g->ends[j - 1] : 0;
    if (j < g->ntok && cut > start) {
        g->ends[j] = cut;
        j++;
    }
    g->ntok = j;
    g->content.len = cut;
    if (g->content.data)
        g->content.data[cut] = '\0';
    g->length = false;
}

int sim_gen_start(sim_gen *g, const struct sim_plan *plan, int64_t start_ns)
{
    long long n = plan->answer_tokens;
    if (g->num_predict > 0 && g->num_predict <= n) {
        n = g->num_predict;
        g->length = true;
    }
    uint64_t seed_state = (uint64_t)(g->has_seed ? g->seed : plan->seed);
    uint64_t seed = g->prompt_hash ^ splitmix64(&seed_state);
    int rc = build_answer(g, n, seed);
    if (rc)
        return rc;
    apply_stop(g); /* on the text: a stop string does not cut into the JSON around it */
    if (g->json && (rc = wrap_json(g)))
        return rc;

    g->start_ns = start_ns;
    g->ttft_ns = plan->ttft_ms * 1000000;
    g->interval_ns = 1000000000 / plan->tokens_per_second;
    g->stall_ns = plan->stall_ms * 1000000;
    g->fault = plan->fault;
    g->fault_at = plan->fail_after_tokens < g->ntok ? plan->fail_after_tokens : g->ntok;
    g->next = 0;
    return AM_OK;
}

/* When step i (token i, or the final line for i == ntok) is due. */
static int64_t step_due(const sim_gen *g, long long i)
{
    int64_t due = g->start_ns + g->ttft_ns + (int64_t)i * g->interval_ns;
    if (g->fault == SIM_FAULT_SLOW && i >= g->fault_at)
        due += g->stall_ns;
    return due;
}

int64_t sim_gen_next_due(const sim_gen *g)
{
    return step_due(g, g->next);
}

static bool fault_ends_answer(const sim_gen *g)
{
    return g->fault == SIM_FAULT_ERROR_LINE || g->fault == SIM_FAULT_DISCONNECT;
}

int64_t sim_gen_whole_due(const sim_gen *g)
{
    return step_due(g, fault_ends_answer(g) ? g->fault_at : g->ntok);
}

void sim_format_time(int64_t unix_us, char *out, size_t outlen)
{
    time_t secs = (time_t)(unix_us / 1000000);
    struct tm tm;
    char date[32];
    gmtime_r(&secs, &tm);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, outlen, "%s.%06dZ", date, (int)(unix_us % 1000000));
}

/* Serialises obj compactly, with a newline when nl, into a malloc'd buffer; takes obj. */
static int dump(json_t *obj, bool nl, char **out, size_t *len)
{
    int rc = AM_ENOMEM;
    *out = NULL;
    if (!obj)
        return rc;
    size_t n = json_dumpb(obj, NULL, 0, JSON_COMPACT);
    char *buf = n ? malloc(n + 2) : NULL;
    if (buf && json_dumpb(obj, buf, n, JSON_COMPACT) == n) {
        if (nl)
            buf[n++] = '\n';
        buf[n] = '\0';
        *out = buf;
        *len = n;
        rc = AM_OK;
    } else {
        free(buf);
    }
    json_decref(obj);
    return rc;
}

/* {"model", "created_at", then the text under message.content or response}. */
static json_t *line_start(const sim_gen *g, const char *text, size_t len)
{
    char created[48];
    sim_format_time(am_clock_now_us(), created, sizeof created);
    json_t *obj = json_object();
    if (!obj)
        return NULL;
    json_object_set_new(obj, "model", json_string(g->model));
    json_object_set_new(obj, "created_at", json_string(created));
    if (g->api == SIM_API_CHAT) {
        json_t *msg = json_object();
        json_object_set_new(msg, "role", json_string("assistant"));
        json_object_set_new(msg, "content", json_stringn(text, len));
        json_object_set_new(obj, "message", msg);
    } else {
        json_object_set_new(obj, "response", json_stringn(text, len));
    }
    return obj;
}

/* The last object of an answer: done, done_reason and the counts, durations in ns. */
static json_t *final_object(const sim_gen *g, const char *text, size_t len, int64_t first_ns,
                            int64_t now_ns)
{
    json_t *obj = line_start(g, text, len);
    if (!obj)
        return NULL;
    int64_t before_first = first_ns - g->start_ns;
    if (before_first < 0)
        before_first = 0;
    /* A tenth of the wait for the first token is reported as loading, the rest as prompt eval. */
    int64_t load = before_first / 10;
    const char *reason = g->length ? "length" : "stop";
    if (g->api == SIM_API_CHAT) {
        json_object_set_new(obj, "done_reason", json_string(reason));
        json_object_set_new(obj, "done", json_true());
    } else {
        json_object_set_new(obj, "done", json_true());
        json_object_set_new(obj, "done_reason", json_string(reason));
    }
    json_object_set_new(obj, "total_duration", json_integer(now_ns - g->start_ns));
    json_object_set_new(obj, "load_duration", json_integer(load));
    json_object_set_new(obj, "prompt_eval_count", json_integer(g->prompt_words));
    json_object_set_new(obj, "prompt_eval_duration", json_integer(before_first - load));
    json_object_set_new(obj, "eval_count", json_integer(g->ntok));
    json_object_set_new(obj, "eval_duration", json_integer(now_ns - first_ns));
    return obj;
}

static json_t *error_object(const sim_gen *g)
{
    char msg[160];
    snprintf(msg, sizeof msg,
             "an error was encountered while running the model: simulated error_line fault after "
             "%lld tokens",
             g->fault_at);
    json_t *obj = json_object();
    if (obj)
        json_object_set_new(obj, "error", json_string(msg));
    return obj;
}

int sim_gen_step(sim_gen *g, int64_t now_ns, enum sim_step *step, char **line, size_t *len)
{
    *line = NULL;
    *len = 0;
    if (fault_ends_answer(g) && g->next == g->fault_at) {
        if (g->fault == SIM_FAULT_DISCONNECT) {
            *step = SIM_STEP_CUT;
            return AM_OK;
        }
        *step = SIM_STEP_LAST;
        return dump(error_object(g), true, line, len);
    }
    if (g->next < g->ntok) {
        size_t start = g->next ? g->ends[g->next - 1] : 0;
        json_t *obj = line_start(g, g->content.data + start, g->ends[g->next] - start);
        if (obj)
            json_object_set_new(obj, "done", json_false());
        int rc = dump(obj, true, line, len);
        if (rc)
            return rc;
        if (!g->has_first) {
            g->has_first = true;
            g->first_ns = now_ns;
        }
        g->next++;
        *step = SIM_STEP_TOKEN;
        return AM_OK;
    }
    *step = SIM_STEP_LAST;
    return dump(final_object(g, "", 0, g->has_first ? g->first_ns : now_ns, now_ns), true, line,
                len);
}

int sim_gen_whole(sim_gen *g, int64_t now_ns, int *status, char **body, size_t *len)
{
    if (g->fault == SIM_FAULT_ERROR_LINE) {
        *status = 500;
        return dump(error_object(g), false, body, len);
    }
    int64_t first = g->ntok ? step_due(g, 0) : now_ns;
    if (first > now_ns)
        first = now_ns;
    *status = 200;
    return dump(
        final_object(g, g->content.data ? g->content.data : "", g->content.len, first, now_ns),
        false, body, len);
}

char *sim_gen_load_reply(const sim_gen *g, size_t *len)
{
    char *body = NULL;
    json_t *obj = line_start(g, "", 0);
    if (!obj)
        return NULL;
    if (g->api == SIM_API_CHAT) {
        json_object_set_new(obj, "done_reason", json_string("load"));
        json_object_set_new(obj, "done", json_true());
    } else {
        json_object_set_new(obj, "done", json_true());
        json_object_set_new(obj, "done_reason", json_string("load"));
    }
    dump(obj, false, &body, len);
    return body;
}

void sim_gen_free(sim_gen *g)
{
    if (!g)
        return;
    free(g->model);
    for (size_t i = 0; i < g->nstop; i++)
        free(g->stop[i]);
    am_buf_free(&g->content);
    free(g->ends);
    free(g);
}
