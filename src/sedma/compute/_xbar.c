/* The compiled read path of the crossbar simulator (module sedma.compute._xbar).
 *
 * One function, fused_read: a layer's whole part of a product x @ W, every non-ideality
 * on, in one pass over the input rows: the DAC (each row scaled by its largest magnitude
 * and rounded; bit-serial slices when the DAC is narrower than the input), the product of
 * every band of array rows, output-referred read noise, the ADC with its saturation check
 * and bound management, the digital sums and the output scales. The formulas are those of
 * sedma.compute.xbar_physics; the noise is the stream of sedma.compute.xbar_noise (word i
 * is SplitMix64 of key + (i + 1) * gamma; a normal is NORMAL_TABLE at a 16-bit piece) at
 * the same positions as the numpy path's draws. The Python side (xbar_native.py) checks
 * every shape and type before calling; this file trusts them.
 *
 * Why C: numba (the previous kernel) did not vectorise the loops this needs (float max
 * reductions, several reductions in one loop); gcc does, and target_clones picks AVX-512,
 * AVX2 with FMA, or plain x86-64 code at load time (per function: each hot loop is its
 * own cloned function, because code inlined into a clone may keep the default ISA). The GIL is released while it runs, so the local
 * backend's node threads read their devices in parallel.
 *
 * Two ways to form a band's sums, chosen per band by width w: narrow bands (w < 16) as dot
 * products along k on the transposed matrix (contiguous, one reduction per column); wider
 * bands four input rows at a time, vectorised along the columns, so each matrix row loaded
 * serves four input rows.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the noise stream reads 16-bit pieces of 64-bit words in little-endian order"
#endif

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define XB_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define XB_CLONES
#endif

#define XB_ROWS 4    /* input rows summed together by the register tiles */
#define XB_BLOCK 16  /* input rows a block off the BLAS path (a multiple of XB_ROWS) */
#define XB_NARROW 8  /* bands narrower than this: dot products along k */
#define XB_BLAS_MIN_ROWS 16 /* wide bands of at least this many rows: BLAS sgemm */
#define XB_BLAS_ROWS 256    /* rows a block on the BLAS path */
#define XB_DRAW_AT_ONCE (1 << 15) /* a product with at most this many normals draws them first */

static const uint64_t GOLDEN = 0x9E3779B97F4A7C15ULL;

static inline __attribute__((always_inline)) uint64_t stream_word(uint64_t key, int64_t i) {
    uint64_t z = key + (uint64_t)(i + 1) * GOLDEN;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* out[0:count] = normals of elements e0 .. e0 + count of a draw that starts at word
 * `start` (element e is 16-bit piece e % 4 of word start + e / 4); `words` has room for
 * count / 4 + 2 words. */
XB_CLONES
static void normals(uint64_t key, int64_t start, int64_t e0, int64_t count,
                    const float *restrict table, float *restrict out,
                    uint64_t *restrict words) {
    int64_t first = start + e0 / 4;
    int64_t off = e0 % 4;
    int64_t nw = (off + count + 3) / 4;
    for (int64_t t = 0; t < nw; t++) words[t] = stream_word(key, first + t);
    const uint16_t *pieces = (const uint16_t *)words + off; /* little-endian: piece q of a
                                                               word is its q-th uint16 */
    for (int64_t j = 0; j < count; j++) out[j] = table[pieces[j]];
}

/* Bit pattern of max|v| (v float32 viewed as int32): >= 0x7F800000 iff v has inf or NaN. */
static inline __attribute__((always_inline)) int32_t absmax_bits_in(const int32_t *v,
                                                                    int64_t k) {
    int32_t a = 0;
    for (int64_t i = 0; i < k; i++) {
        int32_t t = v[i] & 0x7FFFFFFF;
        a = t > a ? t : a;
    }
    return a;
}

/* The same, compiled per ISA (called on whole rows; the inline one runs inside others). */
XB_CLONES
static int32_t absmax_bits(const int32_t *v, int64_t k) { return absmax_bits_in(v, k); }

XB_CLONES
static void quantise(const float *x, int64_t k, float inv, float *codes) {
    for (int64_t i = 0; i < k; i++) codes[i] = rintf(x[i] * inv);
}

XB_CLONES
static float dot(const float *a, const float *b, int64_t h) {
    float t = 0.0f;
    for (int64_t i = 0; i < h; i++) t += a[i] * b[i];
    return t;
}

/* The sums of a narrow band for one code row c (h codes): mu[j] = c . d_j for its w
 * columns (d_j = d + j * k: rows of the transposed matrix) and *sq = c . c, two columns
 * and the squares in one pass over c. With x (not NULL) the codes are first made here,
 * c = rint(x * inv), in the same pass (and kept in c if more columns need them). With nx
 * (not NULL: the same band of a row of the next block) it also returns absmax_bits of
 * nx: that row's DAC scale is found while this pass computes, not in a pass of its own. */
static inline __attribute__((always_inline)) int32_t band_narrow(const float *restrict x, float inv, float *restrict c,
                           const float *restrict d, int64_t k, int64_t h, int64_t w,
                           const int32_t *restrict nx, float *restrict mu,
                           float *restrict sq) {
    const float *restrict d0 = d;
    const float *restrict d1 = w > 1 ? d + k : d;
    float s = 0.0f, t0 = 0.0f, t1 = 0.0f;
    int32_t a = 0;
    if (x == NULL) {
        for (int64_t i = 0; i < h; i++) {
            float v = c[i];
            s += v * v;
            t0 += v * d0[i];
            t1 += v * d1[i];
        }
    } else if (nx != NULL) {
        for (int64_t i = 0; i < h; i++) {
            float v = rintf(x[i] * inv);
            s += v * v;
            t0 += v * d0[i];
            t1 += v * d1[i];
            int32_t t = nx[i] & 0x7FFFFFFF;
            a = t > a ? t : a;
        }
    } else {
        for (int64_t i = 0; i < h; i++) {
            float v = rintf(x[i] * inv);
            s += v * v;
            t0 += v * d0[i];
            t1 += v * d1[i];
        }
    }
    if (x != NULL && w > 2)
        for (int64_t i = 0; i < h; i++) c[i] = rintf(x[i] * inv);
    *sq = s;
    mu[0] = t0;
    if (w > 1) mu[1] = t1;
    int64_t j = 2;
    for (; j + 1 < w; j += 2) {
        const float *restrict da = d + j * k, *restrict db = d + (j + 1) * k;
        float ta = 0.0f, tb = 0.0f;
        for (int64_t i = 0; i < h; i++) {
            ta += c[i] * da[i];
            tb += c[i] * db[i];
        }
        mu[j] = ta;
        mu[j + 1] = tb;
    }
    if (j < w) mu[j] = dot(c, d + j * k, h);
    return a;
}

/* band_narrow for the rows of a block (one call, not one a row): row r's inputs at
 * x + r * k (NULL: codes made already), its codes at c + r * k, 1/LSB inv[r], sums into
 * mu + r * w and sq[r]; with nx, the same band of the next block's first nn rows (stride
 * k) has its DAC scale bits max-merged into next_bits[r]. */
XB_CLONES
static void block_narrow(const float *restrict x, const float *restrict inv, float *c,
                         const float *restrict d, int64_t k, int64_t h, int64_t w,
                         int64_t rows, const float *nx, int64_t nn, float *restrict mu,
                         float *restrict sq, int32_t *restrict next_bits) {
    int64_t r = 0;
    if (x != NULL && w <= 2) /* four rows at a time share the loads of the matrix */
        for (; r + 4 <= rows; r += 4) {
            const float *restrict x0 = x + r * k, *restrict x1 = x0 + k;
            const float *restrict x2 = x1 + k, *restrict x3 = x2 + k;
            const float *restrict d0 = d, *restrict d1 = w > 1 ? d + k : d;
            float i0 = inv[r], i1 = inv[r + 1], i2 = inv[r + 2], i3 = inv[r + 3];
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0, a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            float b0 = 0, b1 = 0, b2 = 0, b3 = 0;
            for (int64_t i = 0; i < h; i++) {
                float e = d0[i], f = d1[i];
                float v0 = rintf(x0[i] * i0), v1 = rintf(x1[i] * i1);
                float v2 = rintf(x2[i] * i2), v3 = rintf(x3[i] * i3);
                s0 += v0 * v0;
                s1 += v1 * v1;
                s2 += v2 * v2;
                s3 += v3 * v3;
                a0 += v0 * e;
                a1 += v1 * e;
                a2 += v2 * e;
                a3 += v3 * e;
                b0 += v0 * f;
                b1 += v1 * f;
                b2 += v2 * f;
                b3 += v3 * f;
            }
            sq[r] = s0, sq[r + 1] = s1, sq[r + 2] = s2, sq[r + 3] = s3;
            float *m0 = mu + r * w;
            m0[0] = a0;
            m0[w] = a1;
            m0[2 * w] = a2;
            m0[3 * w] = a3;
            if (w > 1) m0[1] = b0, m0[w + 1] = b1, m0[2 * w + 1] = b2, m0[3 * w + 1] = b3;
            for (int64_t q = 0; q < 4; q++) { /* the next block's scales, in a pass of their own */
                if (nx == NULL || r + q >= nn) continue;
                int32_t got = absmax_bits_in((const int32_t *)(nx + (r + q) * k), h);
                if (got > next_bits[r + q]) next_bits[r + q] = got;
            }
        }
    for (; r < rows; r++) {
        const int32_t *nxr = nx != NULL && r < nn ? (const int32_t *)(nx + r * k) : NULL;
        int32_t got = band_narrow(x != NULL ? x + r * k : NULL, inv[r], c + r * k, d, k, h, w,
                                  nxr, mu + r * w, sq + r);
        if (got > next_bits[r]) next_bits[r] = got;
    }
}

/* One tile of T columns from j0 of band_wide: four rows' sums held in registers. */
#define XB_TILE_FN(T)                                                                      \
    XB_CLONES static void tile_##T(const float *restrict c, int64_t k,                       \
                                const float *restrict d, int64_t n, int64_t h, int64_t w, \
                                int64_t j0, float *restrict mu) {                         \
        float a0[T] = {0}, a1[T] = {0}, a2[T] = {0}, a3[T] = {0};                         \
        for (int64_t i = 0; i < h; i++) {                                                 \
            const float *restrict dr = d + i * n + j0;                                    \
            float x0 = c[i], x1 = c[k + i], x2 = c[2 * k + i], x3 = c[3 * k + i];         \
            for (int jj = 0; jj < T; jj++) {                                              \
                a0[jj] += x0 * dr[jj];                                                    \
                a1[jj] += x1 * dr[jj];                                                    \
                a2[jj] += x2 * dr[jj];                                                    \
                a3[jj] += x3 * dr[jj];                                                    \
            }                                                                             \
        }                                                                                 \
        for (int jj = 0; jj < T; jj++) {                                                  \
            mu[j0 + jj] = a0[jj];                                                         \
            mu[w + j0 + jj] = a1[jj];                                                     \
            mu[2 * w + j0 + jj] = a2[jj];                                                 \
            mu[3 * w + j0 + jj] = a3[jj];                                                 \
        }                                                                                 \
    }
XB_TILE_FN(32)
XB_TILE_FN(16)
XB_TILE_FN(8)
XB_TILE_FN(1)

/* The same for a single code row (the last rows of a product that is not a multiple of
 * four): no work on absent rows; four matrix rows at a time into four accumulators, so
 * the additions do not wait on each other. */
#define XB_TILE1_FN(T)                                                                     \
    XB_CLONES static void tile1_##T(const float *restrict c, const float *restrict d,     \
                                    int64_t n, int64_t h, int64_t j0,                     \
                                    float *restrict mu) {                                 \
        float a0[T] = {0}, a1[T] = {0}, a2[T] = {0}, a3[T] = {0};                         \
        int64_t i = 0;                                                                    \
        for (; i + 4 <= h; i += 4) {                                                      \
            const float *restrict d0 = d + i * n + j0, *restrict d1 = d0 + n;             \
            const float *restrict d2 = d1 + n, *restrict d3 = d2 + n;                     \
            float x0 = c[i], x1 = c[i + 1], x2 = c[i + 2], x3 = c[i + 3];                 \
            for (int jj = 0; jj < T; jj++) {                                              \
                a0[jj] += x0 * d0[jj];                                                    \
                a1[jj] += x1 * d1[jj];                                                    \
                a2[jj] += x2 * d2[jj];                                                    \
                a3[jj] += x3 * d3[jj];                                                    \
            }                                                                             \
        }                                                                                 \
        for (; i < h; i++) {                                                              \
            const float *restrict dr = d + i * n + j0;                                    \
            for (int jj = 0; jj < T; jj++) a0[jj] += c[i] * dr[jj];                       \
        }                                                                                 \
        for (int jj = 0; jj < T; jj++) mu[j0 + jj] = (a0[jj] + a1[jj]) + (a2[jj] + a3[jj]); \
    }
XB_TILE1_FN(32)
XB_TILE1_FN(16)
XB_TILE1_FN(1)

/* mu[j] = sum_i c[i] * d[i * n + j] for one code row and w columns, the matrix read once
 * in its own order (a wide matrix does not stay in the cache between column tiles). */
XB_CLONES
static void row_stream(const float *restrict c, const float *restrict d, int64_t n, int64_t h,
                       int64_t w, float *restrict mu) {
    for (int64_t j = 0; j < w; j++) mu[j] = 0.0f;
    for (int64_t i = 0; i < h; i++) {
        const float *restrict dr = d + i * n;
        float cv = c[i];
        for (int64_t j = 0; j < w; j++) mu[j] += cv * dr[j];
    }
}

/* mu[r * w + j] = sum_i c[r * k + i] * d[i * n + j] for the block's XB_ROWS code rows,
 * i < h, j < w: four rows at a time, up to 32 columns in registers, so each matrix row
 * loaded serves four input rows. */
XB_CLONES
static void band_wide(const float *restrict c, int64_t k, const float *restrict d, int64_t n,
                      int64_t h, int64_t w, int64_t rows, float *restrict mu) {
    int64_t j0 = 0;
    if (rows < XB_ROWS) {
        for (int64_t r = 0; r < rows; r++) {
            if (w > 64) { /* many columns: stream the matrix once, row by row */
                row_stream(c + r * k, d, n, h, w, mu + r * w);
                continue;
            }
            for (j0 = 0; j0 + 32 <= w; j0 += 32) tile1_32(c + r * k, d, n, h, j0, mu + r * w);
            for (; j0 + 16 <= w; j0 += 16) tile1_16(c + r * k, d, n, h, j0, mu + r * w);
            for (; j0 < w; j0++) tile1_1(c + r * k, d, n, h, j0, mu + r * w);
        }
        return;
    }
    for (; j0 + 32 <= w; j0 += 32) tile_32(c, k, d, n, h, w, j0, mu);
    for (; j0 + 16 <= w; j0 += 16) tile_16(c, k, d, n, h, w, j0, mu);
    for (; j0 + 8 <= w; j0 += 8) tile_8(c, k, d, n, h, w, j0, mu);
    for (; j0 < w; j0++) tile_1(c, k, d, n, h, w, j0, mu);
}

/* ADC codes of one read of w outputs mu + z * sigma, into y; bound management (Rasch et
 * al., AICAS 2021): a read that saturates (|mu + z sigma| >= Q + 1/2 anywhere, i.e. a code
 * beyond Q) is repeated with its input halved until it fits, at most 2**levels times, then
 * clipped, and its codes are scaled back; its normals come from the stream at *bm.
 * Returns the re-reads. */
static inline __attribute__((always_inline)) int64_t adc_codes_in(const float *restrict mu, const float *restrict z, float sigma,
                         int64_t w, double adc_q, int levels, int noisy, uint64_t key,
                         int64_t *bm, const float *restrict table, float *restrict y,
                         float *restrict zb, uint64_t *restrict words) {
    float edge = (float)(adc_q + 0.5);
    float q = (float)adc_q;
    int hit = 0;
    for (int64_t j = 0; j < w; j++) {
        float v = mu[j] + z[j] * sigma;
        hit |= fabsf(v) >= edge;
        y[j] = rintf(v);
    }
    if (!hit) return 0;
    int64_t rereads = 0;
    int64_t top = (int64_t)1 << levels;
    for (int64_t f = 2;; f *= 2) {
        rereads++;
        if (noisy) {
            normals(key, *bm, 0, w, table, zb, words);
            *bm += (w + 3) / 4;
        } else {
            for (int64_t j = 0; j < w; j++) zb[j] = 0.0f;
        }
        float ff = (float)f;
        float sf = sigma / ff;
        int over = 0;
        for (int64_t j = 0; j < w; j++) {
            y[j] = rintf(mu[j] / ff + zb[j] * sf);
            over |= fabsf(y[j]) > q;
        }
        if (f == top) {
            for (int64_t j = 0; j < w; j++) y[j] = fminf(fmaxf(y[j], -q), q) * ff;
            break;
        }
        if (!over) {
            for (int64_t j = 0; j < w; j++) y[j] *= ff;
            break;
        }
    }
    return rereads;
}

/* The same, compiled per ISA for wide reads; narrow reads (a few outputs) call the inline
 * one above, whose call costs less than its work. */
XB_CLONES
static int64_t adc_codes(const float *restrict mu, const float *restrict z, float sigma,
                         int64_t w, double adc_q, int levels, int noisy, uint64_t key,
                         int64_t *bm, const float *restrict table, float *restrict y,
                         float *restrict zb, uint64_t *restrict words) {
    return adc_codes_in(mu, z, sigma, w, adc_q, levels, noisy, key, bm, table, y, zb, words);
}

/* acc += codes * scale: one read's codes into the row's digital sum. */
XB_CLONES
static void add_codes(const float *restrict y, int64_t w, float scale, float *restrict acc) {
    for (int64_t j = 0; j < w; j++) acc[j] += y[j] * scale;
}

/* A block's reads, cnt outputs in a row (mu + z * sig_el), added to acc times scale if
 * none of them saturates (returns 1); else nothing is written (returns 0) and the caller
 * converts them read by read with bound management. */
XB_CLONES
static int adc_block(const float *restrict mu, const float *restrict z,
                     const float *restrict sig_el, int64_t cnt, float edge, float scale,
                     float *restrict acc) {
    int hit = 0;
    for (int64_t i = 0; i < cnt; i++) hit |= fabsf(mu[i] + z[i] * sig_el[i]) >= edge;
    if (hit) return 0;
    for (int64_t i = 0; i < cnt; i++) acc[i] += rintf(mu[i] + z[i] * sig_el[i]) * scale;
    return 1;
}

/* The row's output from its only read: out = ((codes * scale) * fac) * col (+= with add);
 * the same operations as summing into a zeroed acc and scaling it, without the passes. */
XB_CLONES
static void put_codes(const float *restrict y, int64_t w, float scale, float fac,
                      const float *restrict col, int add, float *restrict out) {
    if (add)
        for (int64_t j = 0; j < w; j++) out[j] += ((y[j] * scale) * fac) * col[j];
    else
        for (int64_t j = 0; j < w; j++) out[j] = ((y[j] * scale) * fac) * col[j];
}

/* BLAS sgemm (Fortran interface), from scipy's cython_blas, set once by set_blas. */
typedef void (*sgemm_t)(char *, char *, int *, int *, int *, float *, float *, int *, float *,
                        int *, float *, float *, int *);
static sgemm_t sgemm = NULL;
static PyObject *blas_owner = NULL;

/* mu (rows x w, row-major) = c (rows x h, row stride k) @ d (h x w, row stride n) by BLAS:
 * in column-major terms mu' = d' c'. */
static void band_blas(const float *c, int64_t k, const float *d, int64_t n, int64_t h,
                      int64_t w, int64_t rows, float *mu) {
    char no = 'N';
    int M = (int)w, N = (int)rows, K = (int)h, lda = (int)n, ldb = (int)k, ldc = (int)w;
    float one = 1.0f, zero = 0.0f;
    sgemm(&no, &no, &M, &N, &K, &one, (float *)d, &lda, (float *)c, &ldb, &zero, mu, &ldc);
}

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
    /* rows a block: wide bands of many rows go to BLAS in blocks of up to XB_BLAS_ROWS rows
     * (each block streams the matrix once, so blocks are large); else four at a time */
    int use_blas = sgemm != NULL && max_w >= XB_NARROW && m >= XB_BLAS_MIN_ROWS;
    int64_t B = XB_BLOCK;
    if (use_blas) {
        B = m < XB_BLAS_ROWS ? m : XB_BLAS_ROWS;
        B += (XB_ROWS - B % XB_ROWS) % XB_ROWS;
    }
    size_t floats = (size_t)n_slices * B * k  /* codes per slice and row */
                    + (size_t)B * n          /* acc */
                    + (size_t)B * max_w      /* mu */
                    + (2 * B + 2) * (size_t)max_w + 8 /* z and sig_el (a block), y, zb */
                    + 4 * B;                 /* row factors, squared norms, sigmas, 1/LSB */
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
    float *mu = acc + (size_t)B * n;
    float *zbuf = mu + (size_t)B * max_w;
    float *sig_el = zbuf + B * max_w;
    float *y = sig_el + B * max_w;
    float *zb = y + max_w;
    float *fac = zb + max_w + 8;
    float *sq = fac + B;
    float *sigma = sq + B;
    float *inv = sigma + B;
    /* one read of one band per output: its codes go straight to the output */
    int direct = n_slices == 1 && J->reads == 1 && U == 1 && J->units[2] == 1 &&
                 J->units[3] == 0 && J->units[4] == n;
    /* one slice and only narrow bands: the codes are made inside the band sums */
    int lazy = n_slices == 1 && n < XB_NARROW;

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

    /* with lazy codes, a block's DAC scales are found while the block before computes */
    int32_t scale_bits[XB_BLOCK], next_bits[XB_BLOCK];
    if (lazy)
        for (int64_t r = 0; r < XB_BLOCK && r < m; r++)
            scale_bits[r] = absmax_bits((const int32_t *)(J->x + r * k), k);

    for (int64_t rb = 0; rb < m; rb += B) {
        int64_t rows = m - rb < B ? m - rb : B;
        for (int64_t r = 0; r < XB_BLOCK; r++) next_bits[r] = 0;
        for (int64_t r = 0; r < rows; r++) {
            const float *xr = J->x + (rb + r) * k;
            int32_t bits_max = lazy ? scale_bits[r] : absmax_bits((const int32_t *)xr, k);
            if (bits_max >= 0x7F800000) {
                free(starts);
                free(mag);
                free(mem);
                free(wbuf);
                free(z_all);
                return -1;
            }
            float amax;
            memcpy(&amax, &bits_max, sizeof amax);
            float safe = amax > 1e-30f ? amax : 1e-30f;
            float *x0 = xs + r * k;
            inv[r] = q_in / safe;
            if (!lazy) quantise(xr, k, inv[r], x0);
            fac[r] = safe / q_in;
            if (n_slices > 1) { /* top-aligned slices of the magnitude, sign on each */
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
            for (int64_t u = 0; u < U; u++) {
                const int64_t *un = J->units + u * 5;
                int64_t k0 = un[0], h = un[1], nb = un[2], c0 = un[3], c1 = un[4];
                int64_t w = c1 - c0;
                float scale = (float)((double)((int64_t)1 << shift) * J->ratio[u] / (double)r_s);
                for (int64_t gi = 0; gi < ceil_div(nb, group); gi++) {
                    int64_t g = nb - gi * group < group ? nb - gi * group : group;
                    int64_t words = J->noisy ? ceil_div(g * m * w, 4) : 0;
                    int64_t start0 = starts[(s * U + u) * max_groups + gi];
                    for (int64_t bl = 0; bl < g; bl++) {
                        int64_t b0 = k0 + (gi * group + bl) * h;
                        if (w < XB_NARROW) {
                            int64_t nn = lazy ? m - (rb + B) : 0; /* next block's rows */
                            block_narrow(lazy ? J->x + rb * k + b0 : NULL, inv, cs + b0,
                                         J->delta_t + c0 * k + b0, k, h, w, rows,
                                         nn > 0 ? J->x + (rb + B) * k + b0 : NULL, nn, mu, sq,
                                         next_bits);
                        } else {
                            const float *d = J->delta + b0 * n + c0;
                            if (use_blas && rows >= XB_BLAS_MIN_ROWS)
                                band_blas(cs + b0, k, d, n, h, w, rows, mu);
                            else
                                for (int64_t r4 = 0; r4 < rows; r4 += XB_ROWS)
                                    band_wide(cs + r4 * k + b0, k, d, n, h, w,
                                              rows - r4 < XB_ROWS ? rows - r4 : XB_ROWS,
                                              mu + r4 * w);
                            for (int64_t r = 0; r < rows; r++)
                                sq[r] = dot(cs + r * k + b0, cs + r * k + b0, h);
                        }
                        for (int64_t r = 0; r < rows; r++) sigma[r] = sqrtf(sq[r]) * J->coef[u];
                        /* a unit over every column, summed in acc: the block's reads are one
                         * contiguous run of acc, converted in one pass when none saturates */
                        int block_acc = !direct && w == n;
                        if (block_acc)
                            for (int64_t r = 0; r < rows; r++)
                                for (int64_t j = 0; j < w; j++) sig_el[r * w + j] = sigma[r];
                        /* the block's rows are adjacent in the draw: one call for them all */
                        int64_t e0 = (bl * m + rb) * w;
                        for (int64_t t = 0; t < r_s; t++) {
                            float *z = zbuf;
                            if (z_all != NULL)
                                z = z_all + (start0 + t * words - J->ctr) * 4 + e0;
                            else if (J->noisy)
                                normals(J->key, start0 + t * words, e0, rows * w, J->table, z,
                                        wbuf);
                            if (block_acc && adc_block(mu, z, sig_el, rows * w, edge, scale,
                                                       acc))
                                continue; /* no read of the block saturated */
                            for (int64_t r = 0; r < rows; r++) {
                                if (w < XB_NARROW) { /* a few outputs: inline, scalar */
                                    const float *mr = mu + r * w, *zr = z + r * w;
                                    float sg = sigma[r];
                                    int hit = 0;
                                    for (int64_t j = 0; j < w; j++)
                                        hit |= fabsf(mr[j] + zr[j] * sg) >= edge;
                                    if (!hit && !direct) { /* no codes through memory */
                                        float *ar = acc + r * n + c0;
                                        for (int64_t j = 0; j < w; j++)
                                            ar[j] += rintf(mr[j] + zr[j] * sg) * scale;
                                        continue;
                                    }
                                    rereads += adc_codes_in(mr, zr, sg, w, J->adc_q, J->levels,
                                                            J->noisy, J->key, &bm, J->table, y,
                                                            zb, wbuf);
                                    if (direct) {
                                        float *o = J->out + (rb + r) * n;
                                        for (int64_t j = 0; j < w; j++) {
                                            float v = ((y[j] * scale) * fac[r]) * J->col[j];
                                            o[j] = J->add ? o[j] + v : v;
                                        }
                                    } else {
                                        float *ar = acc + r * n + c0;
                                        for (int64_t j = 0; j < w; j++) ar[j] += y[j] * scale;
                                    }
                                    continue;
                                }
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
        if (lazy) memcpy(scale_bits, next_bits, sizeof scale_bits);
        for (int64_t r = 0; r < rows && !direct; r++) {
            float *orow = J->out + (rb + r) * n;
            const float *ar = acc + r * n;
            if (J->add)
                for (int64_t j = 0; j < n; j++) orow[j] += (ar[j] * fac[r]) * J->col[j];
            else
                for (int64_t j = 0; j < n; j++) orow[j] = (ar[j] * fac[r]) * J->col[j];
        }
    }
    J->reads_done = n_reads;
    J->rereads_done = rereads;
    free(starts);
    free(mag);
    free(mem);
    free(wbuf);
    free(z_all);
    return bm;
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
    Py_RETURN_NONE;
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
    sgemm = (sgemm_t)f;
    Py_RETURN_NONE;
}

/* fused_read(x, delta, delta_t, units, ratio, coef, col, out, m, k, n, n_units, add, bits,
 * dac_bits, reads, all_reads, key, ctr, adc_q, noisy, levels, chunk_out)
 *   -> (new counter or -1, reads, re-reads) */
static PyObject *py_fused_read(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer b[8];
    Job J;
    memset(&J, 0, sizeof J);
    unsigned long long key;
    long long m, k, n, n_units, ctr, chunk_out;
    if (table_owner == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "set_table was not called");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*w*LLLLiiiiiKLdiiL", &b[0], &b[1], &b[2],
                          &b[3], &b[4], &b[5], &b[6], &b[7], &m, &k, &n, &n_units, &J.add,
                          &J.bits, &J.dac_bits, &J.reads, &J.all_reads, &key, &ctr, &J.adc_q,
                          &J.noisy, &J.levels, &chunk_out))
        return NULL;
    J.x = b[0].buf;
    J.delta = b[1].buf;
    J.delta_t = b[2].buf;
    J.units = b[3].buf;
    J.ratio = b[4].buf;
    J.coef = b[5].buf;
    J.col = b[6].buf;
    J.out = b[7].buf;
    J.table = table_buf.buf;
    J.m = m;
    J.k = k;
    J.n = n;
    J.n_units = n_units;
    J.ctr = ctr;
    J.chunk_out = chunk_out;
    J.key = key;
    int64_t got;
    Py_BEGIN_ALLOW_THREADS got = run(&J);
    Py_END_ALLOW_THREADS for (int i = 0; i < 8; i++) PyBuffer_Release(&b[i]);
    if (got == -2) return PyErr_NoMemory();
    return Py_BuildValue("LLL", (long long)got, (long long)J.reads_done,
                         (long long)J.rereads_done);
}

static PyMethodDef methods[] = {
    {"set_blas", py_set_blas, METH_O, "Use this sgemm (a cython_blas capsule) for wide bands."},
    {"set_table", py_set_table, METH_O,
     "Keep the table of 2**16 normal quantiles the noise is drawn from."},
    {"fused_read", py_fused_read, METH_VARARGS,
     "One layer's part of x @ W through the crossbar, every non-ideality on; see "
     "sedma.compute.xbar_native."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_xbar",
                                    "Compiled crossbar read path.", -1, methods};

PyMODINIT_FUNC PyInit__xbar(void) { return PyModule_Create(&module); }
