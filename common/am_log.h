/* Levelled logging to stderr, as text or one JSON object a line. */
#ifndef AM_LOG_H
#define AM_LOG_H

enum am_log_level {
    AM_LOG_ERROR = 0,
    AM_LOG_WARN,
    AM_LOG_INFO,
    AM_LOG_DEBUG,
};

extern int am_log_threshold;

/* Parses "error", "warn", "info" or "debug"; returns 0 or AM_EINVAL. */
int am_log_set_level(const char *name);

/* Parses "text" or "json"; returns 0 or AM_EINVAL. */
int am_log_set_format(const char *name);

/* Sets the name printed on every line (the program). Not copied. */
void am_log_set_program(const char *name);

/* Writes one line. request_id may be NULL. Use the macros instead. */
void am_log_write(int level, const char *request_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The level is checked before the arguments are evaluated. */
#define AM_LOG(level, ...)                                                                         \
    do {                                                                                           \
        if ((level) <= am_log_threshold)                                                           \
            am_log_write((level), NULL, __VA_ARGS__);                                              \
    } while (0)

/* A line about one request carries its request id. */
#define AM_LOG_REQ(level, rid, ...)                                                                \
    do {                                                                                           \
        if ((level) <= am_log_threshold)                                                           \
            am_log_write((level), (rid), __VA_ARGS__);                                             \
    } while (0)

#define am_log_error(...) AM_LOG(AM_LOG_ERROR, __VA_ARGS__)
#define am_log_warn(...)  AM_LOG(AM_LOG_WARN, __VA_ARGS__)
#define am_log_info(...)  AM_LOG(AM_LOG_INFO, __VA_ARGS__)
#define am_log_debug(...) AM_LOG(AM_LOG_DEBUG, __VA_ARGS__)

#endif
