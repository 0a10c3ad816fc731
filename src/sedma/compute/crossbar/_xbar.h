/* Shared declarations of the crossbar simulator's compiled read path (sedma.compute._xbar).
 *
 * Covers: the build switches (per-ISA clones, the hand-written AVX-512 loops), the block
 * sizes, the inline helpers more than one file uses (the noise stream's word, the integer
 * absmax, a row's DAC factors, one read's ADC codes) and the functions each file gives
 * the others. Does not cover: what each does (see _xbar_sums.c for the DAC and the band
 * sums, _xbar_adc.c for the noise and the ADC, _xbar.c for the product and the Python
 * module).
 */
#ifndef SEDMA_XBAR_H
#define SEDMA_XBAR_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the noise stream reads 16-bit pieces of 64-bit words in little-endian order"
#endif

/* Each hot loop is its own function compiled per ISA (AVX-512, AVX2 with FMA, plain
 * x86-64), the best picked when the module loads; code inlined into a clone may keep the
 * default ISA, which is why the loops are functions of their own. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define XB_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define XB_HAVE_V4 1 /* the hand-written AVX-512 loop (_xbar_sums.c), used if the CPU has it */
#else
#define XB_CLONES
#define XB_HAVE_V4 0
#endif
#define XB_API __attribute__((visibility("hidden")))
#define XB_INLINE static inline __attribute__((always_inline))

#define XB_ROWS 4    /* input rows summed together by the register tiles */
#define XB_BLOCK 16  /* input rows a block off the BLAS path (a multiple of XB_ROWS) */
#define XB_LAZY_BLOCK 64 /* the same for narrow bands with codes made in the sums */
#define XB_NARROW 8  /* bands narrower than this: dot products along k */
#define XB_BLAS_MIN_ROWS 16 /* wide bands of at least this many rows: BLAS sgemm */
#define XB_BLAS_ROWS 256    /* rows a block on the BLAS path (its noise and ADC stay in cache) */
#define XB_BLAS_LONG_K 512  /* ... unless rows this long meet bands this wide: packing the */
#define XB_BLAS_WIDE_W 128  /* matrix for BLAS costs, and bigger blocks pack it fewer times */
#define XB_BLAS_ROWS_MAX 1024 /* (narrow bands lose: their codes then stream from memory) */
#define XB_BLOCK_BUDGET (8 << 20) /* floats a block's buffers may hold (32 MB) */
#define XB_SIG_EL_MAX 16 /* bands narrower than this: noise spreads per output, checked flat */
#define XB_DRAW_AT_ONCE (1 << 15) /* a product with at most this many normals draws them first */

/* ---- the noise stream and the ADC (_xbar_adc.c) */

static const uint64_t GOLDEN = 0x9E3779B97F4A7C15ULL;

XB_INLINE uint64_t stream_word(uint64_t key, int64_t i) {
    uint64_t z = key + (uint64_t)(i + 1) * GOLDEN;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

XB_API void normals(uint64_t key, int64_t start, int64_t e0, int64_t count,
                    const float *restrict table, float *restrict out,
                    uint64_t *restrict words);

/* ADC codes of one read of w outputs mu + z * sigma, into y; bound management (Rasch et
 * al., AICAS 2021): a read that saturates (|mu + z sigma| >= Q + 1/2 anywhere, i.e. a code
 * beyond Q) is repeated with its input halved until it fits, at most 2**levels times, then
 * clipped, and its codes are scaled back; its normals come from the stream at *bm.
 * Returns the re-reads. */
XB_INLINE int64_t adc_codes_in(const float *restrict mu, const float *restrict z, float sigma,
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

XB_API int64_t adc_codes(const float *restrict mu, const float *restrict z, float sigma,
                         int64_t w, double adc_q, int levels, int noisy, uint64_t key,
                         int64_t *bm, const float *restrict table, float *restrict y,
                         float *restrict zb, uint64_t *restrict words);
XB_API void add_codes(const float *restrict y, int64_t w, float scale, float *restrict acc);
XB_API int64_t adc_rows(const float *restrict mu, const float *restrict z,
                        const float *restrict sig_el, const float *restrict sigma,
                        int64_t rows, int64_t w, float edge,
                        float scale, float *restrict acc, int64_t stride,
                        const float *restrict fac, const float *restrict col, int add,
                        float *restrict out, int64_t *restrict sat);
XB_API void row_sigmas(const float *restrict sq, int64_t rows, int64_t w, float coef,
                       float *restrict sigma, float *restrict sig_el);
XB_API void scale_rows(const float *restrict acc, int64_t rows, int64_t n,
                       const float *restrict fac, const float *restrict col, int add,
                       float *restrict out);
XB_API void put_codes(const float *restrict y, int64_t w, float scale, float fac,
                      const float *restrict col, int add, float *restrict out);

/* ---- the DAC and the band sums (_xbar_sums.c) */

/* Bit pattern of max|v| (v float32 viewed as int32): >= 0x7F800000 iff v has inf or NaN. */
XB_INLINE int32_t absmax_bits_in(const int32_t *v,
                                                                    int64_t k) {
    int32_t a = 0;
    for (int64_t i = 0; i < k; i++) {
        int32_t t = v[i] & 0x7FFFFFFF;
        a = t > a ? t : a;
    }
    return a;
}

/* A row's DAC factors from absmax_bits of it (finite: below 0x7F800000): returns 1/LSB,
 * Q_in / a, and sets *fac to the LSB, a / Q_in (a zero row gets a tiny finite scale). */
XB_INLINE float dac_scale(int32_t bits, float q_in, float *fac) {
    float amax;
    memcpy(&amax, &bits, sizeof amax);
    float safe = amax > 1e-30f ? amax : 1e-30f;
    *fac = safe / q_in;
    return q_in / safe;
}

XB_API int32_t absmax_bits(const int32_t *v, int64_t k);
XB_API int64_t dac_rows(const float *x, int64_t rows, int64_t k, float q_in, float *inv,
                        float *fac, float *codes);
XB_API void squares(const float *c, int64_t k, int64_t h, int64_t rows, float *sq);
XB_API float dot(const float *a, const float *b, int64_t h);
XB_API void block_narrow(const float *restrict x, const float *restrict inv, float *c,
                         const float *restrict d, int64_t k, int64_t h, int64_t w,
                         int64_t rows, float *restrict mu, float *restrict sq,
                         const float *nx, int32_t *restrict nbits);
XB_API int group_narrow(const float *x, const float *inv, const float *dt,
                        const int64_t *units, int64_t U, int64_t k, int64_t row, float *mu,
                        int64_t mu_stride, float *sq, int64_t sq_stride, const float *nx,
                        int32_t *nbits);
#if XB_HAVE_V4
extern XB_API int xb_avx512; /* the CPU has AVX-512 F and DQ (set when the module loads) */
/* The normal table's upper half if the table is antisymmetric, else NULL (set_table). */
extern XB_API const float *xb_half;
#endif
XB_API void band_wide(const float *restrict c, int64_t k, const float *restrict d, int64_t n,
                      int64_t h, int64_t w, int64_t rows, float *restrict mu);

/* BLAS sgemm (Fortran interface), from scipy's cython_blas; NULL until set (_xbar.c). */
typedef void (*sgemm_t)(char *, char *, int *, int *, int *, float *, float *, int *, float *,
                        int *, float *, float *, int *);
extern XB_API sgemm_t xb_sgemm;
XB_API void band_blas(const float *c, int64_t k, const float *d, int64_t n, int64_t h,
                      int64_t w, int64_t rows, float *mu);

#endif
