/*
 * A backend's answer as it arrives: Ollama's NDJSON lines, cut into pieces
 * of any size (the first byte picks the size), each line parsed as the
 * gateway and the router parse it; and the same bytes as an OpenAI-compatible
 * (MLX) completion. The text gathered must stay within its bound and
 * NUL-terminated, every delta must lie inside it, and nothing may leak.
 */
#include "am_error.h"
#include "am_ndjson.h"
#include "am_ollama.h"
#include "openai_client.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct state {
    struct am_ollama_result res;
    size_t deltas; /* bytes of text handed out as deltas */
};

static int on_line(void *arg, const char *line, size_t len)
{
    struct state *st = arg;
    const char *delta;
    size_t dlen;
    int rc = am_ollama_parse_line(&st->res, line, len, &delta, &dlen);
    if (dlen > 0) {
        if (!delta || delta < st->res.content ||
            delta + dlen != st->res.content + st->res.content_len)
            abort(); /* a delta is the tail just appended */
        st->deltas += dlen;
    }
    if (rc != AM_OK && !st->res.error_type[0])
        abort(); /* a refused line says why */
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t piece = (size_t)data[0] % 64 + 1;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    struct state st = {0};
    struct am_ndjson lines;
    am_ndjson_init(&lines, 1 << 16, on_line, &st);
    int rc = AM_OK;
    for (size_t at = 0; rc == AM_OK && at < len; at += piece)
        rc = am_ndjson_feed(&lines, text + at, len - at < piece ? len - at : piece);
    if (rc == AM_OK)
        am_ndjson_finish(&lines);
    am_ndjson_free(&lines);
    if (st.res.content && st.res.content[st.res.content_len] != '\0')
        abort();
    if (st.deltas != st.res.content_len)
        abort();
    am_ollama_result_free(&st.res);

    struct orch_openai_result res = {0};
    if (orch_openai_parse(text, len, &res) == AM_OK && res.content &&
        strlen(res.content) > res.content_len)
        abort();
    orch_openai_result_free(&res);
    return 0;
}
