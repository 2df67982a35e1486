/* Words for the error codes of am_error.h. */
#include "am_error.h"

const char *am_strerror(int err)
{
    switch (err) {
    case AM_OK:
        return "success";
    case AM_ENOMEM:
        return "out of memory";
    case AM_EINVAL:
        return "invalid argument";
    case AM_ERANGE:
        return "value out of range";
    case AM_EFULL:
        return "queue full";
    case AM_ECLOSED:
        return "closed";
    case AM_ETIMEDOUT:
        return "timed out";
    case AM_ENET:
        return "bus error";
    case AM_EDB:
        return "database error";
    case AM_EIO:
        return "input/output error";
    case AM_EPROTO:
        return "malformed message";
    case AM_ENOTFOUND:
        return "not found";
    }
    return "unknown error";
}
