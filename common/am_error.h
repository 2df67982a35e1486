/* Error codes shared by every module, and their words. */
#ifndef AM_ERROR_H
#define AM_ERROR_H

enum {
    AM_OK = 0,
    AM_ENOMEM,  /* out of memory */
    AM_EINVAL,  /* invalid argument or input */
    AM_ERANGE,  /* value out of its bounds */
    AM_EFULL,   /* a bounded queue or buffer is full */
    AM_ECLOSED, /* the object is shut down */
    AM_ETIMEDOUT,
    AM_ENET,   /* a bus (NNG) operation failed */
    AM_EDB,    /* a database operation failed */
    AM_EIO,    /* a file or socket operation failed */
    AM_EPROTO, /* malformed message on the bus */
    AM_ENOTFOUND,
};

/* Returns a static string describing err; never NULL. */
const char *am_strerror(int err);

#endif
