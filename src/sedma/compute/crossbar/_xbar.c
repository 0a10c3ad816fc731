/* The compiled read path of the crossbar simulator (module sedma.compute._xbar).
 *
 * Covers: fused_read, a layer's whole part of a product x @ W with every non-ideality on,
 * in one pass over blocks of input rows (the DAC, the sums of every band of array rows,
 * output-referred read noise, the ADC with its saturation check and bound management, the
 * digital sums and the output scales), and the Python module around it (set_table,
 * set_blas, pin: a layer's arrays held once rather than looked up on every product). The
 * formulas are those of sedma.compute.xbar_physics; the noise is the stream of
 * sedma.compute.xbar_noise at the same positions as the numpy path's draws.
 * sedma.compute.xbar_kernel checks a layer's own arrays once (layer_args) and this file
 * trusts them; fused_read checks x, out and the counts on every call. The GIL is released
 * while a product runs, so the local backend's node threads read their devices in
 * parallel. Does not cover: the loops themselves (_xbar_sums.c for
 * the DAC and the sums, _xbar_adc.c for noise and ADC).
 *
 * Why C: numba (the previous kernel) did not vectorise the loops this needs (float max
 * reductions, several sums in one loop); gcc does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_xbar.h"

static PyObject *blas_owner = NULL;
/* NORMAL_TABLE, set once by set_table (a reference is kept, so it stays alive). */
static PyObject *table_owner = NULL;
static Py_buffer table_buf;

typedef struct {
    const float *x, *delta, *delta_t, *coef, *col, *table;
    const int64_t *units;
    const double *ratio;
    float *out;
    int64_t reads_done, rereads_done; /* counts of this call, for the caller */
    int64_t m, k, n, n_units, ctr, chunk_out;
    int add, bits, dac_bits, reads, all_reads, noisy, levels;
    uint64_t key;
    double adc_q;
} Job;

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Returns the new stream counter, -1 if an input row is not finite (nothing written to the
 * stream or the counts), -2 if out of memory. */
static int64_t run(Job *J) {
    const int64_t m = J->m, k = J->k, n = J->n, U = J->n_units;
    int n_slices, width;
    if (J->bits <= J->dac_bits) {
        n_slices = 1;
        width = J->bits - 1;
    } else {
        width = J->dac_bits - 1 > 1 ? J->dac_bits - 1 : 1;
        n_slices = (int)ceil_div(J->bits - 1, width);
    }
    int64_t q_levels = ((int64_t)1 << (J->bits - 1)) - 1;
    float q_in = (float)(q_levels > 1 ? q_levels : 1);
    int64_t group = J->chunk_out / (n * m);
    if (group < 1) group = 1;
    int64_t max_groups = 1, max_w = 1;
    for (int64_t u = 0; u < U; u++) {
        int64_t g = ceil_div(J->units[u * 5 + 2], group);
        if (g > max_groups) max_groups = g;
        int64_t w = J->units[u * 5 + 4] - J->units[u * 5 + 3];
        if (w > max_w) max_w = w;
    }
    int64_t n_starts = (int64_t)n_slices * U * max_groups;
    int64_t all_bands = 0; /* bands of every unit */
    for (int64_t u = 0; u < U; u++) all_bands += J->units[u * 5 + 2];
    /* one slice and only narrow bands: the codes are made inside the band sums, XB_ROWS
     * rows at a time, in every band while the rows are still in the L1 cache; noise and
     * ADC follow band by band. Their DAC scales come from a pass over whole rows or, where
     * the bands cover every input (`scan`), from the sums of the rows before. */
    int lazy = n_slices == 1 && n < XB_NARROW, scan = 0;
    int v4 = q_in < 4194304.0f; /* codes below 2**22: the AVX-512 loop may make them */
    for (int64_t u = 0; u < U; u++) /* ... and its bands are at most two columns wide */
        if (J->units[u * 5 + 4] - J->units[u * 5 + 3] > 2) v4 = 0;
    if (lazy) {
        char *seen = calloc((size_t)k, 1);
        if (seen != NULL) {
            for (int64_t u = 0; u < U; u++)
                memset(seen + J->units[u * 5], 1,
                       (size_t)(J->units[u * 5 + 1] * J->units[u * 5 + 2]));
            scan = memchr(seen, 0, (size_t)k) == NULL;
            free(seen);
        }
    }
    /* rows a block: wide bands of many rows go to BLAS in blocks of up to XB_BLAS_ROWS rows
     * (each block streams the matrix once, so blocks are large); else XB_BLOCK rows, summed
     * XB_ROWS at a time (XB_LAZY_BLOCK with lazy codes: fewer, longer noise and ADC calls) */
    int use_blas = xb_sgemm != NULL && max_w >= XB_NARROW && m >= XB_BLAS_MIN_ROWS;
    int64_t B = lazy ? XB_LAZY_BLOCK : XB_BLOCK;
    if (use_blas) {
        int64_t cap = XB_BLAS_ROWS;
        if (k >= XB_BLAS_LONG_K && max_w >= XB_BLAS_WIDE_W) { /* fewer packings of the matrix */
            int64_t fit = XB_BLOCK_BUDGET / ((int64_t)n_slices * k + n + 3 * max_w);
            cap = fit < XB_BLAS_ROWS_MAX ? fit : XB_BLAS_ROWS_MAX;
            if (cap < XB_BLAS_ROWS) cap = XB_BLAS_ROWS;
        }
        B = m < cap ? m : cap;
        B += (XB_ROWS - B % XB_ROWS) % XB_ROWS;
    }
    size_t floats = (size_t)n_slices * B * k  /* codes per slice and row */
                    + (size_t)B * n          /* acc */
                    + (size_t)B * max_w      /* mu */
                    + (2 * B + 2) * (size_t)max_w + 8 /* z and sig_el (a block), y, zb */
                    + 4 * B                  /* row factors, squared norms, sigmas, 1/LSB */
                    + (lazy ? (size_t)all_bands * B * (max_w + 1) : 0); /* every band's sums */
    int64_t *starts = malloc(sizeof(int64_t) * (size_t)n_starts);
    int64_t *mag = malloc(sizeof(int64_t) * (size_t)k);
    uint64_t *wbuf = malloc(sizeof(uint64_t) * (size_t)(B * max_w / 4 + 2));
    float *mem = malloc(sizeof(float) * floats);
    if (!starts || !mag || !mem || !wbuf) {
        free(starts);
        free(mag);
        free(mem);
        free(wbuf);
        return -2;
    }
    float *xs = mem;
    float *acc = xs + (size_t)n_slices * B * k;
    float *mu_buf = acc + (size_t)B * n;
    float *zbuf = mu_buf + (size_t)B * max_w;
    float *sig_el = zbuf + B * max_w;
    float *y = sig_el + B * max_w;
    float *zb = y + max_w;
    float *fac = zb + max_w + 8;
    float *sq_buf = fac + B;
    float *sigma = sq_buf + B;
    float *inv = sigma + B;
    float *band_mu = inv + B;                 /* lazy: band i's sums at i * B * max_w */
    float *band_sq = band_mu + (size_t)all_bands * B * max_w; /* and squares at i * B */
    /* one read of one band per output: its codes go straight to the output */
    int direct = n_slices == 1 && J->reads == 1 && U == 1 && J->units[2] == 1 &&
                 J->units[3] == 0 && J->units[4] == n;

    /* stream positions: the numpy path's order (slice, unit, group of bands, read) */
    int64_t cursor = J->ctr, n_reads = 0;
    for (int s = 0; s < n_slices; s++) {
        int64_t r_s = (s == 0 || J->all_reads) ? J->reads : 1;
        for (int64_t u = 0; u < U; u++) {
            int64_t nb = J->units[u * 5 + 2], w = J->units[u * 5 + 4] - J->units[u * 5 + 3];
            for (int64_t gi = 0; gi < ceil_div(nb, group); gi++) {
                int64_t g = nb - gi * group < group ? nb - gi * group : group;
                starts[(s * U + u) * max_groups + gi] = cursor;
                if (J->noisy) cursor += r_s * ceil_div(g * m * w, 4);
                n_reads += r_s * g * m;
            }
        }
    }
    int64_t bm = cursor; /* bound management draws follow the product's */
    /* a product with few draws takes them all at once (one call instead of one a block and
     * band): element e of the draw at word `start` is piece 4 (start - ctr) + e of them */
    float *z_all = NULL;
    uint64_t *w_all = NULL;
    if (J->noisy && (cursor - J->ctr) * 4 <= XB_DRAW_AT_ONCE) {
        z_all = malloc(sizeof(float) * (size_t)(cursor - J->ctr) * 4 + 16);
        w_all = malloc(sizeof(uint64_t) * (size_t)(cursor - J->ctr) + 16);
        if (z_all != NULL && w_all != NULL) {
            normals(J->key, J->ctr, 0, (cursor - J->ctr) * 4, J->table, z_all, w_all);
        } else { /* no memory for it: draw block by block */
            free(z_all);
            z_all = NULL;
        }
        free(w_all);
    }
    const float edge = (float)(J->adc_q + 0.5); /* |v| >= edge: the code is beyond Q */
    int64_t rereads = 0;
    for (int64_t j = 0; j < B * max_w; j++) zbuf[j] = 0.0f;

    int32_t cur[XB_ROWS], nxt[XB_ROWS]; /* scan: DAC scale bits of the next rows */
    int have_cur = 0;
    _Static_assert(XB_BLOCK <= XB_BLAS_ROWS_MAX && XB_LAZY_BLOCK <= XB_BLAS_ROWS_MAX &&
                       XB_BLAS_ROWS <= XB_BLAS_ROWS_MAX && XB_BLAS_ROWS_MAX % XB_ROWS == 0,
                   "sat's size");
    int64_t sat[XB_BLAS_ROWS_MAX + XB_ROWS]; /* a block's saturated rows */

    for (int64_t rb = 0; rb < m; rb += B) {
        int64_t rows = m - rb < B ? m - rb : B;
        if (!lazy && dac_rows(J->x + rb * k, rows, k, q_in, inv, fac, xs) >= 0) goto nonfinite;
        for (int64_t r = 0; r < rows && !lazy && n_slices > 1; r++) {
            /* top-aligned slices of the magnitude, sign on each */
            const float *xr = J->x + (rb + r) * k, *x0 = xs + r * k;
            for (int64_t i = 0; i < k; i++) mag[i] = (int64_t)fabsf(x0[i]);
            for (int s = n_slices - 1; s >= 0; s--) {
                int shift = J->bits - 1 - (s + 1) * width;
                if (shift < 0) shift = 0;
                int64_t mask = ((int64_t)1 << (J->bits - 1 - s * width - shift)) - 1;
                float *xsr = xs + ((size_t)s * B + r) * k;
                for (int64_t i = 0; i < k; i++) {
                    float v = (float)((mag[i] >> shift) & mask);
                    xsr[i] = xr[i] >= 0 ? v : -v;
                }
            }
        }
        for (int64_t r = 0; r < rows && lazy; r += XB_ROWS) {
            int64_t nr = rows - r < XB_ROWS ? rows - r : XB_ROWS;
            for (int64_t q = r; q < r + nr; q++) {
                const int32_t *row = (const int32_t *)(J->x + (rb + q) * k);
                int32_t bits_max = have_cur ? cur[q - r] : absmax_bits(row, k);
                if (bits_max >= 0x7F800000) goto nonfinite;
                inv[q] = dac_scale(bits_max, q_in, fac + q);
            }
            const float *xr = J->x + (rb + r) * k;
            float *x0 = xs + r * k;
            /* these rows' sums in every band, in the band loop's order */
            int64_t bi = 0, g = rb + r;
            const float *nx = NULL; /* the next rows, if four: scanned for their scales */
            if (scan && nr == XB_ROWS && g + 2 * XB_ROWS <= m) nx = J->x + (g + XB_ROWS) * k;
            memset(nxt, 0, sizeof nxt);
            if (v4 && nr == XB_ROWS &&
                group_narrow(xr, inv + r, J->delta_t, J->units, U, k, r, band_mu,
                             B * max_w, band_sq, B, nx, nxt)) {
                bi = all_bands;
            } else {
                for (int64_t u = 0; u < U; u++) {
                    const int64_t *un = J->units + u * 5;
                    int64_t w = un[4] - un[3];
                    for (int64_t bl = 0; bl < un[2]; bl++, bi++) {
                        int64_t b0 = un[0] + bl * un[1];
                        block_narrow(xr + b0, inv + r, x0 + b0, J->delta_t + un[3] * k + b0,
                                     k, un[1], w, nr, band_mu + bi * B * max_w + r * w,
                                     band_sq + bi * B + r, nx != NULL ? nx + b0 : NULL, nxt);
                    }
                }
            }
            /* a NaN the scan missed made its row's squares NaN */
            for (int64_t b = 0; b < bi; b++)
                for (int64_t q = r; q < r + nr; q++)
                    if (isnan(band_sq[b * B + q])) goto nonfinite;
            have_cur = nx != NULL;
            memcpy(cur, nxt, sizeof cur);
        }
        if (!direct) memset(acc, 0, sizeof(float) * (size_t)B * n);
        for (int s = 0; s < n_slices; s++) {
            int shift = 0;
            if (n_slices > 1) {
                shift = J->bits - 1 - (s + 1) * width;
                if (shift < 0) shift = 0;
            }
            int64_t r_s = (s == 0 || J->all_reads) ? J->reads : 1;
            float *cs = xs + (size_t)s * B * k;
            int64_t bi = 0; /* the band's index over every unit */
            for (int64_t u = 0; u < U; u++) {
                const int64_t *un = J->units + u * 5;
                int64_t k0 = un[0], h = un[1], nb = un[2], c0 = un[3], c1 = un[4];
                int64_t w = c1 - c0;
                float scale = (float)((double)((int64_t)1 << shift) * J->ratio[u] / (double)r_s);
                for (int64_t gi = 0; gi < ceil_div(nb, group); gi++) {
                    int64_t g = nb - gi * group < group ? nb - gi * group : group;
                    int64_t words = J->noisy ? ceil_div(g * m * w, 4) : 0;
                    int64_t start0 = starts[(s * U + u) * max_groups + gi];
                    for (int64_t bl = 0; bl < g; bl++, bi++) {
                        int64_t b0 = k0 + (gi * group + bl) * h;
                        float *mu = mu_buf, *sq = sq_buf;
                        if (lazy) { /* made above */
                            mu = band_mu + bi * B * max_w;
                            sq = band_sq + bi * B;
                        } else if (w < XB_NARROW) {
                            block_narrow(NULL, inv, cs + b0, J->delta_t + c0 * k + b0, k, h, w,
                                         rows, mu, sq, NULL, NULL);
                        } else {
                            const float *d = J->delta + b0 * n + c0;
                            if (use_blas && rows >= XB_BLAS_MIN_ROWS)
                                band_blas(cs + b0, k, d, n, h, w, rows, mu);
                            else
                                for (int64_t r4 = 0; r4 < rows; r4 += XB_ROWS)
                                    band_wide(cs + r4 * k + b0, k, d, n, h, w,
                                              rows - r4 < XB_ROWS ? rows - r4 : XB_ROWS,
                                              mu + r4 * w);
                            squares(cs + b0, k, h, rows, sq);
                        }
                        float *sel = w < XB_SIG_EL_MAX ? sig_el : NULL;
                        row_sigmas(sq, rows, w, J->coef[u], sigma, sel);
                        /* the block's rows are adjacent in the draw: one call for them all */
                        int64_t e0 = (bl * m + rb) * w;
                        for (int64_t t = 0; t < r_s; t++) {
                            float *z = zbuf;
                            if (z_all != NULL)
                                z = z_all + (start0 + t * words - J->ctr) * 4 + e0;
                            else if (J->noisy)
                                normals(J->key, start0 + t * words, e0, rows * w, J->table, z,
                                        wbuf);
                            /* the rows whose reads fit the ADC in one call (direct: straight
                             * into out, whose rows are w == n apart); then the others, in
                             * order, with bound management */
                            int64_t n_sat = adc_rows(mu, z, sel, sigma, rows, w, edge, scale,
                                                     acc + c0, n, fac, J->col, J->add,
                                                     direct ? J->out + rb * n : NULL, sat);
                            for (int64_t q = 0; q < n_sat; q++) {
                                int64_t r = sat[q];
                                rereads += adc_codes(mu + r * w, z + r * w, sigma[r], w,
                                                     J->adc_q, J->levels, J->noisy, J->key,
                                                     &bm, J->table, y, zb, wbuf);
                                if (direct)
                                    put_codes(y, w, scale, fac[r], J->col, J->add,
                                              J->out + (rb + r) * n);
                                else
                                    add_codes(y, w, scale, acc + r * n + c0);
                            }
                        }
                    }
                }
            }
        }
        if (!direct) scale_rows(acc, rows, n, fac, J->col, J->add, J->out + rb * n);
    }
    J->reads_done = n_reads;
    J->rereads_done = rereads;
    free(starts);
    free(mag);
    free(mem);
    free(wbuf);
    free(z_all);
    return bm;
nonfinite:
    free(starts);
    free(mag);
    free(mem);
    free(wbuf);
    free(z_all);
    return -1;
}

static PyObject *py_set_table(PyObject *self, PyObject *arg) {
    (void)self;
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0) return NULL;
    if (b.len != (Py_ssize_t)(sizeof(float) << 16)) {
        PyBuffer_Release(&b);
        PyErr_SetString(PyExc_ValueError, "the normal table must hold 2**16 float32");
        return NULL;
    }
    if (table_owner != NULL) PyBuffer_Release(&table_buf);
    table_buf = b;
    table_owner = arg;
#if XB_HAVE_V4
    /* an antisymmetric table (the normal's quantiles are) is read from its upper half */
    const float *t = b.buf;
    int anti = 1;
    for (int64_t i = 0; i < 32768 && anti; i++) anti = t[65535 - i] == -t[i];
    xb_half = anti ? t + 32768 : NULL;
#endif
    Py_RETURN_NONE;
}

/* use_avx512(flag) -> whether the hand-written AVX-512 loops were on; they are turned on
 * only where the CPU has them (tests turn them off to check the portable loops). */
static PyObject *py_use_avx512(PyObject *self, PyObject *arg) {
    (void)self;
    int want = PyObject_IsTrue(arg);
    if (want < 0) return NULL;
#if XB_HAVE_V4
    int was = xb_avx512;
    __builtin_cpu_init();
    xb_avx512 = want && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
    return PyBool_FromLong(was);
#else
    Py_RETURN_FALSE;
#endif
}

static PyObject *py_set_blas(PyObject *self, PyObject *arg) {
    (void)self;
    if (!PyCapsule_CheckExact(arg)) {
        PyErr_SetString(PyExc_TypeError, "set_blas wants scipy's cython_blas sgemm capsule");
        return NULL;
    }
    void *f = PyCapsule_GetPointer(arg, PyCapsule_GetName(arg));
    if (f == NULL) return NULL;
    Py_INCREF(arg);
    Py_XDECREF(blas_owner);
    blas_owner = arg;
    xb_sgemm = (sgemm_t)f;
    Py_RETURN_NONE;
}

/* A layer's arrays, pinned: their buffers held (so they cannot be resized or freed) from
 * pin() until the capsule goes; fused_read then takes them without looking them up. */
#define PIN_NAME "sedma.compute._xbar.layer"
typedef struct {
    Py_buffer b[6]; /* delta, delta_t, unit table, ratios, noise coefficients, column scales */
    int64_t k, n, n_units;
} Pinned;

static void pinned_free(PyObject *cap) {
    Pinned *p = PyCapsule_GetPointer(cap, PIN_NAME);
    if (p == NULL) return;
    for (int i = 0; i < 6; i++) PyBuffer_Release(&p->b[i]);
    PyMem_Free(p);
}

/* pin(delta, delta_t, table, ratio, coef, col, k, n, n_units) -> capsule */
static PyObject *py_pin(PyObject *self, PyObject *args) {
    (void)self;
    Pinned *p = PyMem_Calloc(1, sizeof(Pinned));
    if (p == NULL) return PyErr_NoMemory();
    long long k, n, u;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*LLL", &p->b[0], &p->b[1], &p->b[2], &p->b[3],
                          &p->b[4], &p->b[5], &k, &n, &u)) {
        PyMem_Free(p); /* the parser released what it had taken */
        return NULL;
    }
    p->k = k, p->n = n, p->n_units = u;
    PyObject *cap = PyCapsule_New(p, PIN_NAME, pinned_free);
    if (cap == NULL) {
        for (int i = 0; i < 6; i++) PyBuffer_Release(&p->b[i]);
        PyMem_Free(p);
    }
    return cap;
}

/* Whether a buffer holds native float32 (format "f", "<f" or "=f" on this build). */
static int is_f32(const Py_buffer *b) {
    const char *f = b->format != NULL ? b->format : "B";
    if (f[0] == '<' || f[0] == '=' || f[0] == '@') f++;
    return b->itemsize == 4 && f[0] == 'f' && f[1] == 0;
}

/* fused_read(x, pinned, out, m, add, bits, dac_bits, reads, all_reads, key, ctr, adc_q,
 * noisy, levels, chunk_out) -> (new counter or -1, reads, re-reads). Fast-call: parsing a
 * format string and taking eight buffers cost more than a small product's work. */
static PyObject *py_fused_read(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 15) {
        PyErr_SetString(PyExc_TypeError, "fused_read takes 15 arguments");
        return NULL;
    }
    if (table_owner == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "set_table was not called");
        return NULL;
    }
    Pinned *p = PyCapsule_GetPointer(args[1], PIN_NAME);
    if (p == NULL) return NULL;
    Job J;
    memset(&J, 0, sizeof J);
    long long v[12];
    for (int i = 0; i < 12; i++) {
        if (i == 6 || i == 8) continue; /* key (unsigned 64 bits) and adc_q (a float) */
        v[i] = PyLong_AsLongLong(args[3 + i]);
    }
    J.adc_q = PyFloat_AsDouble(args[11]);
    J.key = PyLong_AsUnsignedLongLongMask(args[9]);
    if (PyErr_Occurred()) return NULL;
    if (v[0] < 1 || v[2] < 1 || v[2] > 32 || v[3] < 1 || v[3] > 32 || v[4] < 1 || v[10] < 0 ||
        v[10] > 30 || v[11] < 1) {
        PyErr_SetString(PyExc_ValueError, "fused_read: m, bits, dac_bits, reads, levels or "
                                          "chunk_out out of range");
        return NULL;
    }
    /* x and out: C-ordered float32, m x k and m x n (all C trusts of them) */
    Py_buffer bx, bo;
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT;
    if (PyObject_GetBuffer(args[0], &bx, flags) < 0) return NULL;
    if (PyObject_GetBuffer(args[2], &bo, flags | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&bx);
        return NULL;
    }
    J.m = v[0], J.add = (int)v[1], J.bits = (int)v[2], J.dac_bits = (int)v[3];
    J.reads = (int)v[4], J.all_reads = (int)v[5], J.ctr = v[7], J.noisy = (int)v[9];
    J.levels = (int)v[10], J.chunk_out = v[11];
    J.k = p->k, J.n = p->n, J.n_units = p->n_units;
    if (!is_f32(&bx) || !is_f32(&bo) || bx.len != (Py_ssize_t)(sizeof(float) * J.m * J.k) ||
        bo.len != (Py_ssize_t)(sizeof(float) * J.m * J.n)) {
        PyBuffer_Release(&bx);
        PyBuffer_Release(&bo);
        PyErr_SetString(PyExc_ValueError, "x or out is not a C-ordered float32 array of m x k "
                                          "or m x n");
        return NULL;
    }
    J.x = bx.buf;
    J.out = bo.buf;
    J.delta = p->b[0].buf;
    J.delta_t = p->b[1].buf;
    J.units = p->b[2].buf;
    J.ratio = p->b[3].buf;
    J.coef = p->b[4].buf;
    J.col = p->b[5].buf;
    J.table = table_buf.buf;
    int64_t got;
    Py_BEGIN_ALLOW_THREADS got = run(&J);
    Py_END_ALLOW_THREADS PyBuffer_Release(&bx);
    PyBuffer_Release(&bo);
    if (got == -2) return PyErr_NoMemory();
    return Py_BuildValue("LLL", (long long)got, (long long)J.reads_done,
                         (long long)J.rereads_done);
}

static PyMethodDef methods[] = {
    {"set_blas", py_set_blas, METH_O, "Use this sgemm (a cython_blas capsule) for wide bands."},
    {"use_avx512", py_use_avx512, METH_O,
     "Turn the hand-written AVX-512 loops on (where the CPU has them) or off; returns "
     "whether they were on."},
    {"set_table", py_set_table, METH_O,
     "Keep the table of 2**16 normal quantiles the noise is drawn from."},
    {"pin", py_pin, METH_VARARGS,
     "Hold a layer's arrays for fused_read: (delta, delta_t, table, ratio, coef, col, k, n, "
     "n_units) -> capsule."},
    {"fused_read", (PyCFunction)(void (*)(void))py_fused_read, METH_FASTCALL,
     "One layer's part of x @ W through the crossbar, every non-ideality on; see "
     "sedma.compute.xbar_kernel."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_xbar",
                                    "Compiled crossbar read path.", -1, methods};

PyMODINIT_FUNC PyInit__xbar(void) {
#if XB_HAVE_V4
    __builtin_cpu_init();
    xb_avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
#endif
    return PyModule_Create(&module);
}
