/* The DAC and the band sums of the crossbar simulator's compiled read path.
 *
 * Covers: each input row's DAC scale (an integer max over the float bits, which also
 * finds inf and NaN) and codes, a block's rows in one call; the sums of a band of array
 * rows, codes @ delta, in ADC steps, three ways: narrow bands (fewer than XB_NARROW
 * columns) as dot products along k on the transposed matrix, codes made on the fly, four
 * rows sharing each matrix load and the next four rows' DAC scales found in the same pass
 * (on AVX-512, by hand: group_v4, four rows through every band in one call); wide bands of
 * many rows by BLAS sgemm; the rest four rows at a time with up to 32 columns in registers
 * (or the matrix streamed once, for a single wide row). The hand-written AVX-512 loops
 * give the same results as the portable ones (tests run both). Does not cover: noise and
 * ADC (_xbar_adc.c) or the order of a product (_xbar.c).
 */
#include "_xbar.h"

/* The same, compiled per ISA (called on whole rows; the inline one runs inside others). */
XB_CLONES XB_API
int32_t absmax_bits(const int32_t *v, int64_t k) { return absmax_bits_in(v, k); }

XB_CLONES XB_API
float dot(const float *a, const float *b, int64_t h) {
    float t = 0.0f;
    for (int64_t i = 0; i < h; i++) t += a[i] * b[i];
    return t;
}

/* The sums of a narrow band for one code row c (h codes): mu[j] = c . d_j for its w
 * columns (d_j = d + j * k: rows of the transposed matrix) and *sq = c . c, two columns
 * and the squares in one pass over c. With x (not NULL) the codes are first made here,
 * c = rint(x * inv), in the same pass (and kept in c if more columns need them). */
XB_INLINE void band_narrow(const float *restrict x, float inv, float *restrict c,
                           const float *restrict d, int64_t k, int64_t h, int64_t w,
                           float *restrict mu, float *restrict sq) {
    const float *restrict d0 = d;
    const float *restrict d1 = w > 1 ? d + k : d;
    float s = 0.0f, t0 = 0.0f, t1 = 0.0f;
    if (x == NULL) {
        for (int64_t i = 0; i < h; i++) {
            float v = c[i];
            s += v * v;
            t0 += v * d0[i];
            t1 += v * d1[i];
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
}

/* The sums of one narrow band (w <= 2 columns) for four input rows x0..x3 (stride k),
 * codes made on the fly, each matrix load shared by the four rows; with scan (a constant
 * at each call, so each loop is compiled on its own) it also max-merges the absmax bits of
 * the same band of four more rows nx (stride k) into nbits: the next rows' DAC scales are
 * found while these compute, their loads overlapping this arithmetic. */
XB_INLINE void four_rows(const float *restrict x, const float *restrict inv,
                         const float *restrict d, int64_t k, int64_t h, int64_t w,
                         float *restrict mu, float *restrict sq, const int scan,
                         const int32_t *restrict nx, int32_t *restrict nbits) {
    const float *restrict x0 = x, *restrict x1 = x0 + k;
    const float *restrict x2 = x1 + k, *restrict x3 = x2 + k;
    const int32_t *restrict n0 = nx, *restrict n1 = scan ? nx + k : nx;
    const int32_t *restrict n2 = scan ? nx + 2 * k : nx, *restrict n3 = scan ? nx + 3 * k : nx;
    const float *restrict d0 = d, *restrict d1 = w > 1 ? d + k : d;
    float i0 = inv[0], i1 = inv[1], i2 = inv[2], i3 = inv[3];
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0, a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    float b0 = 0, b1 = 0, b2 = 0, b3 = 0;
    int32_t m0 = 0, m1 = 0, m2 = 0, m3 = 0;
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
        if (scan) {
            int32_t t0 = n0[i] & 0x7FFFFFFF, t1 = n1[i] & 0x7FFFFFFF;
            int32_t t2 = n2[i] & 0x7FFFFFFF, t3 = n3[i] & 0x7FFFFFFF;
            m0 = t0 > m0 ? t0 : m0;
            m1 = t1 > m1 ? t1 : m1;
            m2 = t2 > m2 ? t2 : m2;
            m3 = t3 > m3 ? t3 : m3;
        }
    }
    sq[0] = s0, sq[1] = s1, sq[2] = s2, sq[3] = s3;
    mu[0] = a0;
    mu[w] = a1;
    mu[2 * w] = a2;
    mu[3 * w] = a3;
    if (w > 1) mu[1] = b0, mu[w + 1] = b1, mu[2 * w + 1] = b2, mu[3 * w + 1] = b3;
    if (scan) {
        nbits[0] = m0 > nbits[0] ? m0 : nbits[0];
        nbits[1] = m1 > nbits[1] ? m1 : nbits[1];
        nbits[2] = m2 > nbits[2] ? m2 : nbits[2];
        nbits[3] = m3 > nbits[3] ? m3 : nbits[3];
    }
}

#if XB_HAVE_V4
#include <immintrin.h>

XB_API int xb_avx512 = 0;

/* The mask of the first min(left, 16) of 16 lanes. */
XB_INLINE __mmask16 tail16(int64_t left) {
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
}

/* The sums of narrow bands by hand for AVX-512 (F and DQ), where the compiler's version
 * falls short: four input rows through every band of a product in one call. The codes are
 * rounded with the magic number 1.5 * 2**23 (t + M - M, the add rounding to nearest even:
 * the same as rint(t) for |t| < 2**22, and cheaper); the next rows' max |x| is one vrangeps
 * (it drops NaN, which the caller catches in the squares) kept across bands; each band's
 * twelve sums are reduced together by a transposing tree (45 uops where one reduction a
 * sum takes 96). A band's tail is read with masked loads. Same results as four_rows. */
#define XB_V4 __attribute__((target("avx512f,avx512dq")))
XB_V4 XB_INLINE __m512 code_v4(const float *x, __mmask16 mk, __m512 inv, __m512 magic) {
    __m512 t = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x), inv);
    t = _mm512_add_round_ps(t, magic, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm512_sub_ps(t, magic);
}

/* Sixteen inputs (mk: those present) of four rows into the sums (a macro, so that every
 * accumulator stays a register in both of its uses). */
#define XB_STEP_V4(i, mk)                                                                  \
    do {                                                                                   \
        __m512 e = _mm512_maskz_loadu_ps(mk, d + (i)), f = _mm512_maskz_loadu_ps(mk, d1 + (i)); \
        __m512 v0 = code_v4(xb + (i), mk, i0, M), v1 = code_v4(xb + k + (i), mk, i1, M);   \
        __m512 v2 = code_v4(xb + 2 * k + (i), mk, i2, M);                                  \
        __m512 v3 = code_v4(xb + 3 * k + (i), mk, i3, M);                                  \
        s0 = _mm512_fmadd_ps(v0, v0, s0), s1 = _mm512_fmadd_ps(v1, v1, s1);                \
        s2 = _mm512_fmadd_ps(v2, v2, s2), s3 = _mm512_fmadd_ps(v3, v3, s3);                \
        a0 = _mm512_fmadd_ps(v0, e, a0), a1 = _mm512_fmadd_ps(v1, e, a1);                  \
        a2 = _mm512_fmadd_ps(v2, e, a2), a3 = _mm512_fmadd_ps(v3, e, a3);                  \
        b0 = _mm512_fmadd_ps(v0, f, b0), b1 = _mm512_fmadd_ps(v1, f, b1);                  \
        b2 = _mm512_fmadd_ps(v2, f, b2), b3 = _mm512_fmadd_ps(v3, f, b3);                  \
        if (nx != NULL) { /* max |x| with the sign cleared (imm 0b1011) */                 \
            m0 = _mm512_range_ps(m0, _mm512_maskz_loadu_ps(mk, nx + (i)), 0x0B);           \
            m1 = _mm512_range_ps(m1, _mm512_maskz_loadu_ps(mk, nx + k + (i)), 0x0B);       \
            m2 = _mm512_range_ps(m2, _mm512_maskz_loadu_ps(mk, nx + 2 * k + (i)), 0x0B);   \
            m3 = _mm512_range_ps(m3, _mm512_maskz_loadu_ps(mk, nx + 3 * k + (i)), 0x0B);   \
        }                                                                                  \
    } while (0)

/* Two vectors' lanes summed in pairs: the sums of a at lanes 0 and 2 of each 128 bits,
 * of b at 1 and 3. */
XB_V4 XB_INLINE __m512 fold2(__m512 a, __m512 b) {
    return _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
}

/* Two fold2 results: lanes 0..3 of each 128 bits hold partial sums of a, b, c, d. */
XB_V4 XB_INLINE __m512 fold4(__m512 ab, __m512 cd) {
    __m512d x = _mm512_castps_pd(ab), y = _mm512_castps_pd(cd);
    return _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
                         _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
}

/* Two fold4 results: each 256-bit half's 128-bit lanes summed in pairs. */
XB_V4 XB_INLINE __m512 fold8(__m512 p, __m512 q) {
    return _mm512_add_ps(_mm512_shuffle_f32x4(p, q, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(p, q, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* The rows' sums in every band: rows xr + q * k (q < 4) with 1/LSB inv[q], rows row + q of
 * their block; band i of the unit table (k0, h, nb, c0, c1 per unit; every unit at most 2
 * columns wide) has its sums at mu_out + i * mu_stride (row r at r * w) and its squares at
 * sq_out + i * sq_stride (row r at r); with nx_rows, the next four rows (stride k) have
 * their max |x| bits max-merged into nbits. */
XB_V4 static void group_v4(const float *restrict xr, const float *restrict inv,
                           const float *restrict dt, const int64_t *restrict units, int64_t U,
                           int64_t k, int64_t row, float *restrict mu_out,
                           int64_t mu_stride, float *restrict sq_out, int64_t sq_stride,
                           const float *restrict nx_rows, int32_t *restrict nbits) {
    const __m512 M = _mm512_set1_ps(12582912.0f), z = _mm512_setzero_ps();
    const __m512 i0 = _mm512_set1_ps(inv[0]), i1 = _mm512_set1_ps(inv[1]);
    const __m512 i2 = _mm512_set1_ps(inv[2]), i3 = _mm512_set1_ps(inv[3]);
    __m512 m0 = z, m1 = z, m2 = z, m3 = z;
    int64_t bi = 0;
    for (int64_t u = 0; u < U; u++) {
        const int64_t *un = units + u * 5;
        int64_t h = un[1], w = un[4] - un[3];
        for (int64_t bl = 0; bl < un[2]; bl++, bi++) {
            int64_t first = un[0] + bl * h; /* the band's first input */
            const float *restrict xb = xr + first;
            const float *restrict d = dt + un[3] * k + first, *restrict d1 = w > 1 ? d + k : d;
            const float *restrict nx = nx_rows != NULL ? nx_rows + first : NULL;
            __m512 s0 = z, s1 = z, s2 = z, s3 = z, a0 = z, a1 = z, a2 = z, a3 = z;
            __m512 b0 = z, b1 = z, b2 = z, b3 = z;
            int64_t i = 0;
            for (; i + 16 <= h; i += 16) XB_STEP_V4(i, (__mmask16)0xFFFF);
            if (i < h) XB_STEP_V4(i, tail16(h - i));
            /* lanes: squares of rows 0..3, then column 0 of rows 0..3, then column 1 */
            __m512 all = fold8(fold4(fold2(s0, s1), fold2(s2, s3)),
                               fold4(fold2(a0, a1), fold2(a2, a3)));
            __m512 col1 = fold8(fold4(fold2(b0, b1), fold2(b2, b3)), z);
            all = fold8(all, col1);
            float got[16];
            _mm512_storeu_ps(got, all);
            float *restrict mu = mu_out + bi * mu_stride + row * w;
            float *restrict sq = sq_out + bi * sq_stride + row;
            for (int q = 0; q < 4; q++) {
                sq[q] = got[q];
                mu[q * w] = got[4 + q];
                if (w > 1) mu[q * w + 1] = got[8 + q];
            }
        }
    }
    if (nx_rows != NULL) { /* lanes 0..3 of each 128 bits: rows 0..3; then across them */
        __m512 t = _mm512_max_ps(_mm512_unpacklo_ps(m0, m1), _mm512_unpackhi_ps(m0, m1));
        __m512 v = _mm512_max_ps(_mm512_unpacklo_ps(m2, m3), _mm512_unpackhi_ps(m2, m3));
        __m512d td = _mm512_castps_pd(t), vd = _mm512_castps_pd(v);
        t = _mm512_max_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(td, vd)),
                          _mm512_castpd_ps(_mm512_unpackhi_pd(td, vd)));
        t = _mm512_max_ps(t, _mm512_shuffle_f32x4(t, t, _MM_SHUFFLE(1, 0, 3, 2)));
        t = _mm512_max_ps(t, _mm512_shuffle_f32x4(t, t, _MM_SHUFFLE(2, 3, 0, 1)));
        int32_t bits[16];
        _mm512_storeu_si512(bits, _mm512_castps_si512(t));
        for (int q = 0; q < 4; q++) nbits[q] = bits[q] > nbits[q] ? bits[q] : nbits[q];
    }
}
/* dac_rows and squares for AVX-512: a short row (k = 27) is one full vector and a masked
 * one, where the compiler's loops end in a scalar tail. Same results. */
XB_V4 static int64_t dac_rows_v4(const float *x, int64_t rows, int64_t k, float q_in,
                                 float *inv, float *fac, float *codes) {
    const __m512i mag = _mm512_set1_epi32(0x7FFFFFFF);
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * k;
        __m512i top = _mm512_setzero_si512();
        for (int64_t i = 0; i < k; i += 16) {
            __mmask16 mk = tail16(k - i);
            __m512i v = _mm512_castps_si512(_mm512_maskz_loadu_ps(mk, xr + i));
            top = _mm512_max_epi32(top, _mm512_and_si512(v, mag));
        }
        int32_t bits = _mm512_reduce_max_epi32(top);
        if (bits >= 0x7F800000) return r;
        float iv = dac_scale(bits, q_in, fac + r);
        inv[r] = iv;
        const __m512 ivv = _mm512_set1_ps(iv);
        float *c = codes + r * k;
        for (int64_t i = 0; i < k; i += 16) {
            __mmask16 mk = tail16(k - i);
            __m512 t = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, xr + i), ivv);
            t = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            _mm512_mask_storeu_ps(c + i, mk, t);
        }
    }
    return -1;
}

XB_V4 static void squares_v4(const float *c, int64_t k, int64_t h, int64_t rows, float *sq) {
    for (int64_t r = 0; r < rows; r++) {
        const float *cr = c + r * k;
        __m512 t = _mm512_setzero_ps();
        for (int64_t i = 0; i < h; i += 16) {
            __mmask16 mk = tail16(h - i);
            __m512 v = _mm512_maskz_loadu_ps(mk, cr + i);
            t = _mm512_fmadd_ps(v, v, t);
        }
        sq[r] = _mm512_reduce_add_ps(t);
    }
}
#endif

/* The DAC of a block's rows (row r at x + r * k): each row's scale from its max |x| (as
 * absmax_bits), inv[r] = q_in / a_r and fac[r] = a_r / q_in, and its codes into codes + r * k.
 * Returns the first row with inf or NaN (nothing after it done), or -1. One call a block:
 * short rows (k = 27) cost more in calls than in work. */
XB_CLONES XB_API
int64_t dac_rows(const float *x, int64_t rows, int64_t k, float q_in, float *inv, float *fac,
                 float *codes) {
#if XB_HAVE_V4
    if (xb_avx512) return dac_rows_v4(x, rows, k, q_in, inv, fac, codes);
#endif
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * k;
        int32_t bits = absmax_bits_in((const int32_t *)xr, k);
        if (bits >= 0x7F800000) return r;
        float iv = dac_scale(bits, q_in, fac + r);
        inv[r] = iv;
        float *c = codes + r * k;
        for (int64_t i = 0; i < k; i++) c[i] = rintf(xr[i] * iv);
    }
    return -1;
}

/* sq[r] = the squared norm of h codes at c + r * k, for each of the block's rows. */
XB_CLONES XB_API
void squares(const float *c, int64_t k, int64_t h, int64_t rows, float *sq) {
#if XB_HAVE_V4
    if (xb_avx512) {
        squares_v4(c, k, h, rows, sq);
        return;
    }
#endif
    for (int64_t r = 0; r < rows; r++) {
        const float *cr = c + r * k;
        float t = 0.0f;
        for (int64_t i = 0; i < h; i++) t += cr[i] * cr[i];
        sq[r] = t;
    }
}

/* band_narrow for the rows of a block (one call, not one a row): row r's inputs at
 * x + r * k (NULL: codes made already), its codes at c + r * k, 1/LSB inv[r], sums into
 * mu + r * w and sq[r]. With nx (not NULL; then x is too and rows == 4), the same band of
 * the four rows at nx (stride k) has its absmax bits max-merged into nbits[0..3]; these
 * may miss a NaN (the sums show it). */
XB_CLONES XB_API
void block_narrow(const float *restrict x, const float *restrict inv, float *c,
                  const float *restrict d, int64_t k, int64_t h, int64_t w, int64_t rows,
                  float *restrict mu, float *restrict sq, const float *nx,
                  int32_t *restrict nbits) {
    int64_t r = 0;
    if (x != NULL && w <= 2) /* four rows at a time share the loads of the matrix */
        for (; r + 4 <= rows; r += 4) {
            if (nx != NULL)
                four_rows(x + r * k, inv + r, d, k, h, w, mu + r * w, sq + r, 1,
                          (const int32_t *)nx, nbits);
            else
                four_rows(x + r * k, inv + r, d, k, h, w, mu + r * w, sq + r, 0, NULL, NULL);
        }
    for (; r < rows; r++)
        band_narrow(x != NULL ? x + r * k : NULL, inv[r], c + r * k, d, k, h, w, mu + r * w,
                    sq + r);
    if (nx != NULL && !(x != NULL && w <= 2)) /* no four-row sums: a pass of their own */
        for (int64_t q = 0; q < 4; q++) {
            int32_t got = absmax_bits_in((const int32_t *)(nx + q * k), h);
            nbits[q] = got > nbits[q] ? got : nbits[q];
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

/* The sums of four rows through every band of a product (see group_v4) if this CPU and
 * build have the AVX-512 loop: returns 0 (nothing done) if not. */
XB_API int group_narrow(const float *x, const float *inv, const float *dt,
                        const int64_t *units, int64_t U, int64_t k, int64_t row, float *mu,
                        int64_t mu_stride, float *sq, int64_t sq_stride, const float *nx,
                        int32_t *nbits) {
#if XB_HAVE_V4
    if (!xb_avx512) return 0;
    group_v4(x, inv, dt, units, U, k, row, mu, mu_stride, sq, sq_stride, nx, nbits);
    return 1;
#else
    (void)x, (void)inv, (void)dt, (void)units, (void)U, (void)k, (void)row, (void)mu;
    (void)mu_stride;
    (void)sq, (void)sq_stride, (void)nx, (void)nbits;
    return 0;
#endif
}
