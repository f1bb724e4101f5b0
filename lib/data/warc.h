/* warc.h: WARC archives (ISO 28500, WARC/1.0 and 1.1), plain or gzipped, read
 * one record at a time in bounded memory, and the HTTP responses inside them
 * (status, headers, chunked transfer coding and gzip/deflate content coding
 * undone) so that crawled HTML pages come out with their URL and charset. */
#ifndef LLM_DATA_WARC_H
#define LLM_DATA_WARC_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "charset.h"
#include "zsrc.h"

/* One record; every pointer is borrowed from the reader, valid until its next call. */
struct llm_warc_record {
    const char *type;         /* WARC-Type: "response", "resource", "request", ... ("" if absent) */
    const char *target_uri;   /* WARC-Target-URI ("" if absent) */
    const char *record_id;    /* WARC-Record-ID ("" if absent) */
    const char *content_type; /* Content-Type of the block ("" if absent) */
    const char *block;        /* the content block */
    size_t block_len;
    uint64_t number;          /* 1-based record number in the file */
};

struct llm_warc_reader {
    struct llm_zsrc z;
    char *hdr;                /* the current record's header fields, NUL-separated (owned) */
    size_t hdr_cap;
    uint64_t number;
    uint64_t resyncs;         /* times garbage was skipped to find the next record */
};

/* Starts reading the WARC records of z, which r takes over (z is cleared; on
 * failure it is closed). The stream must start with "WARC/" or it is
 * LLM_EFORMAT. A record whose block is larger than z's max_buf less 1 MiB is
 * an error. */
int llm_warc_open(struct llm_warc_reader *r, struct llm_zsrc *z);
void llm_warc_close(struct llm_warc_reader *r);

/* The next record: 1, 0 at the end, or a negative code: LLM_EFORMAT for a
 * truncated file or gzip stream (the partial record is not returned) or a bad
 * Content-Length, after which the file cannot be read on; LLM_EINVAL for a
 * record over the size limit, which was skipped: the next call goes on.
 * Garbage between records is skipped up to the next "WARC/" line (counted in
 * resyncs). */
int llm_warc_next(struct llm_warc_reader *r, struct llm_warc_record *rec);

/* An HTTP response block ("application/http; msgtype=response"). */
struct llm_warc_http {
    int status;               /* 200, 404, ...; 0 when the status line is unreadable */
    char mime[64];            /* the Content-Type's media type, lowercased ("" if absent) */
    enum llm_charset charset; /* from Content-Type; AUTO if none */
    const char *body;         /* the payload, decoded: in the block or in *scratch */
    size_t body_len;
};

/* Parses block[0..n) as an HTTP response. A chunked or gzip/deflate-coded
 * body is decoded into *scratch (malloc'd, grown as needed, max_body at most;
 * the caller frees it). Returns 0, or LLM_EFORMAT for a body that cannot be
 * decoded (bad chunks, corrupt or unsupported content coding). */
int llm_warc_parse_http(const char *block, size_t n, struct llm_warc_http *resp,
                        char **scratch, size_t *scratch_cap, size_t max_body);

/* 1 when a payload looks like HTML: a text/html or xhtml media type, or no
 * type and "<html" / "<!doctype html" near the start. */
int llm_warc_is_html(const char *mime, const char *body, size_t n);

#endif
