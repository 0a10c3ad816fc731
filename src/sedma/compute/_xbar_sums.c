/* The DAC and the band sums of the crossbar simulator's compiled read path.
 *
 * Covers: each input row's DAC scale (an integer max over the float bits, which also
 * finds inf and NaN) and codes; the sums of a band of array rows, codes @ delta, in ADC
 * steps, three ways: narrow bands (fewer than XB_NARROW columns) as dot products along k
 * on the transposed matrix, codes made on the fly and four rows sharing each matrix load;
 * wide bands of many rows by BLAS sgemm; the rest four rows at a time with up to 32
 * columns in registers (or the matrix streamed once, for a single wide row). Does not
 * cover: noise and ADC (_xbar_adc.c) or the order of a product (_xbar.c).
 */
#include "_xbar.h"

/* The same, compiled per ISA (called on whole rows; the inline one runs inside others). */
XB_CLONES XB_API
int32_t absmax_bits(const int32_t *v, int64_t k) { return absmax_bits_in(v, k); }

XB_CLONES XB_API
void quantise(const float *x, int64_t k, float inv, float *codes) {
    for (int64_t i = 0; i < k; i++) codes[i] = rintf(x[i] * inv);
}

XB_CLONES XB_API
float dot(const float *a, const float *b, int64_t h) {
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
XB_INLINE int32_t band_narrow(const float *restrict x, float inv, float *restrict c,
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
XB_CLONES XB_API
void block_narrow(const float *restrict x, const float *restrict inv, float *c,
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
XB_CLONES XB_API
void row_stream(const float *restrict c, const float *restrict d, int64_t n, int64_t h,
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
XB_CLONES XB_API
void band_wide(const float *restrict c, int64_t k, const float *restrict d, int64_t n,
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

XB_API sgemm_t xb_sgemm = NULL;

/* mu (rows x w, row-major) = c (rows x h, row stride k) @ d (h x w, row stride n) by BLAS:
 * in column-major terms mu' = d' c'. */
XB_API void band_blas(const float *c, int64_t k, const float *d, int64_t n, int64_t h,
                      int64_t w, int64_t rows, float *mu) {
    char no = 'N';
    int M = (int)w, N = (int)rows, K = (int)h, lda = (int)n, ldb = (int)k, ldc = (int)w;
    float one = 1.0f, zero = 0.0f;
    xb_sgemm(&no, &no, &M, &N, &K, &one, (float *)d, &lda, (float *)c, &ldb, &zero, mu, &ldc);
}

