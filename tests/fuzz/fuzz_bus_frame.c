/*
 * The collector's path for one bus message: decode the frame, check each
 * metric, write the valid ones as COPY text rows. Whatever the bytes, the
 * rows must be well formed: one line per stored metric, each with exactly
 * the table's 21 columns (no tab or newline from a value gets through
 * unescaped), and every metric either written or counted invalid.
 */
#include "am_buf.h"
#include "am_error.h"
#include "am_metric.h"
#include "rowfmt.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define COLUMNS 21

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Athena__Metrics__MetricBatch *batch = NULL;
    const char *why = NULL;
    if (am_frame_decode(data, size, &batch, &why) != AM_OK) {
        if (!why)
            abort(); /* a refused frame always says why */
        return 0;
    }
    struct am_buf out;
    unsigned invalid = 0;
    am_buf_init(&out, 64 << 20);
    long rows = cl_rowfmt_batch(&out, batch, &invalid);
    if (rows >= 0) {
        if ((size_t)rows + invalid != batch->n_metrics)
            abort();
        long lines = 0;
        int tabs = 0;
        for (size_t i = 0; i < out.len; i++) {
            if (out.data[i] == '\t') {
                tabs++;
            } else if (out.data[i] == '\n') {
                if (tabs != COLUMNS - 1)
                    abort();
                tabs = 0;
                lines++;
            } else if (out.data[i] == '\r' || out.data[i] == '\0') {
                abort();
            }
        }
        if (lines != rows || tabs != 0)
            abort();
    }
    am_buf_free(&out);
    athena__metrics__metric_batch__free_unpacked(batch, NULL);
    return 0;
}
