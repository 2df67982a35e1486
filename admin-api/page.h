/* The performance page: its static assets, embedded at build time, and their routes. */
#ifndef AA_PAGE_H
#define AA_PAGE_H

#include <stddef.h>

/* One embedded file (admin-api/embed.cmake writes the table). */
struct aa_page_asset {
    const char *name;          /* as served, e.g. "app.js" */
    const unsigned char *data; /* len bytes, then a NUL */
    size_t len;
    const unsigned char *gz; /* the same bytes gzipped, gz_len bytes */
    size_t gz_len;
    const char *etag;    /* strong ETag of data, quotes included */
    const char *gz_etag; /* strong ETag of gz (another representation, another tag) */
};

/* Every asset, ended by an entry whose name is NULL. Static storage. */
extern const struct aa_page_asset aa_page_assets[];

/* The asset called name, or NULL. */
const struct aa_page_asset *aa_page_find(const char *name);

/* The Content-Type for a file name, by its extension (static string). */
const char *aa_page_content_type(const char *name);

#endif
