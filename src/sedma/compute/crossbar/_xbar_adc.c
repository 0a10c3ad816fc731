/* The read noise and the ADC of the crossbar simulator's compiled read path.
 *
 * Covers: the normals of the read stream (word i is SplitMix64 of key + (i + 1) * gamma,
 * Steele, Lea & Flood, OOPSLA 2014; a normal is NORMAL_TABLE at a 16-bit piece of a word),
 * one read's ADC codes with bound management (Rasch et al., AICAS 2021; the inline part is
 * in _xbar.h), a block's reads converted in one pass when none saturates, the noise
 * spreads, and the codes into the digital sums or straight into the output. On AVX-512 the
 * table is read by gathers, from its upper half when it is antisymmetric. Does not cover:
 * the sums the noise is added to (_xbar_sums.c) or the order of a product (_xbar.c).
 */
#include "_xbar.h"

#if XB_HAVE_V4
#include <immintrin.h>

XB_API const float *xb_half = NULL;

/* out[j] = table[pieces[j]], j < count, by AVX-512 gathers (gcc makes the loop scalar).
 * With xb_half (the table's upper half, when the table is antisymmetric: table[65535 - p]
 * == -table[p]) the gathers read 128 KB instead of 256: piece p is +half[p - 32768] for
 * p >= 32768, else -half[32767 - p], i.e. half[(p ^ f) & 0x7FFF] with the sign of f, where
 * f is 0x7FFF for p < 32768 and 0 otherwise. The same values. */
__attribute__((target("avx512f"))) static void lookup_v4(const uint16_t *restrict pieces,
                                                         int64_t count,
                                                         const float *restrict table,
                                                         float *restrict out) {
    int64_t j = 0;
    if (xb_half != NULL) {
        const __m512i low = _mm512_set1_epi32(0x7FFF);
        for (; j + 16 <= count; j += 16) {
            __m512i p = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(pieces + j)));
            __m512i neg = _mm512_xor_si512(_mm512_srli_epi32(p, 15), _mm512_set1_epi32(1));
            __m512i flip = _mm512_sub_epi32(_mm512_slli_epi32(neg, 15), neg); /* 0x7FFF or 0 */
            __m512i idx = _mm512_and_si512(_mm512_xor_si512(p, flip), low);
            __m512 v = _mm512_i32gather_ps(idx, xb_half, 4);
            _mm512_storeu_ps(out + j, _mm512_castsi512_ps(_mm512_xor_si512(
                                          _mm512_castps_si512(v), _mm512_slli_epi32(neg, 31))));
        }
    } else {
        for (; j + 16 <= count; j += 16) {
            __m512i idx = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(pieces + j)));
            _mm512_storeu_ps(out + j, _mm512_i32gather_ps(idx, table, 4));
        }
    }
    for (; j < count; j++) out[j] = table[pieces[j]];
}
#endif

/* out[0:count] = normals of elements e0 .. e0 + count of a draw that starts at word
 * `start` (element e is 16-bit piece e % 4 of word start + e / 4); `words` has room for
 * count / 4 + 2 words. */
XB_CLONES XB_API
void normals(uint64_t key, int64_t start, int64_t e0, int64_t count,
                    const float *restrict table, float *restrict out,
                    uint64_t *restrict words) {
    int64_t first = start + e0 / 4;
    int64_t off = e0 % 4;
    int64_t nw = (off + count + 3) / 4;
    for (int64_t t = 0; t < nw; t++) words[t] = stream_word(key, first + t);
    const uint16_t *pieces = (const uint16_t *)words + off; /* little-endian: piece q of a
                                                               word is its q-th uint16 */
#if XB_HAVE_V4
    if (xb_avx512) {
        lookup_v4(pieces, count, table, out);
        return;
    }
#endif
    for (int64_t j = 0; j < count; j++) out[j] = table[pieces[j]];
}

/* The same, compiled per ISA for wide reads; narrow reads (a few outputs) call the inline
 * one above, whose call costs less than its work. */
XB_CLONES XB_API
int64_t adc_codes(const float *restrict mu, const float *restrict z, float sigma,
                         int64_t w, double adc_q, int levels, int noisy, uint64_t key,
                         int64_t *bm, const float *restrict table, float *restrict y,
                         float *restrict zb, uint64_t *restrict words) {
    return adc_codes_in(mu, z, sigma, w, adc_q, levels, noisy, key, bm, table, y, zb, words);
}

/* acc += codes * scale: one read's codes into the row's digital sum. */
XB_CLONES XB_API
void add_codes(const float *restrict y, int64_t w, float scale, float *restrict acc) {
    for (int64_t j = 0; j < w; j++) acc[j] += y[j] * scale;
}

/* The reads of a block of rows, w outputs a row (mu + z * sigma, row r at r * w; the
 * spread per output in sig_el, or with sig_el NULL per row in sigma[r]): each row none of
 * whose reads saturates is converted here, its codes times scale added to its row of acc
 * (row stride stride) or, with out (not NULL; outputs with a single read of a single
 * band), written as ((codes * scale) * fac[r]) * col (+= with add). The rows that
 * saturate are listed in sat (ascending) for the caller to convert with bound
 * management; returns how many. */
XB_CLONES XB_API
int64_t adc_rows(const float *restrict mu, const float *restrict z,
                 const float *restrict sig_el, const float *restrict sigma, int64_t rows,
                 int64_t w, float edge, float scale, float *restrict acc, int64_t stride,
                 const float *restrict fac, const float *restrict col, int add,
                 float *restrict out, int64_t *restrict sat) {
    int64_t n_sat = 0, cnt = rows * w;
    int any = 1;
    if (sig_el != NULL) { /* narrow rows: one flat check over the block first */
        any = 0;
        for (int64_t i = 0; i < cnt; i++) any |= fabsf(mu[i] + z[i] * sig_el[i]) >= edge;
        if (!any && out == NULL && stride == w) { /* acc rows contiguous too: one flat pass */
            for (int64_t i = 0; i < cnt; i++) acc[i] += rintf(mu[i] + z[i] * sig_el[i]) * scale;
            return 0;
        }
    }
    for (int64_t r = 0; r < rows; r++) {
        const float *restrict mr = mu + r * w, *restrict zr = z + r * w;
        float sg = sigma[r]; /* what sig_el holds for each of the row's outputs */
        int hit = 0;
        if (any)
            for (int64_t j = 0; j < w; j++) hit |= fabsf(mr[j] + zr[j] * sg) >= edge;
        if (hit) {
            sat[n_sat++] = r;
            continue;
        }
        if (out == NULL) {
            float *restrict ar = acc + r * stride;
            for (int64_t j = 0; j < w; j++) ar[j] += rintf(mr[j] + zr[j] * sg) * scale;
            continue;
        }
        float *restrict o = out + r * w;
        float f = fac[r];
        if (add)
            for (int64_t j = 0; j < w; j++)
                o[j] += ((rintf(mr[j] + zr[j] * sg) * scale) * f) * col[j];
        else
            for (int64_t j = 0; j < w; j++)
                o[j] = ((rintf(mr[j] + zr[j] * sg) * scale) * f) * col[j];
    }
    return n_sat;
}

/* The row's output from its only read: out = ((codes * scale) * fac) * col (+= with add);
 * the same operations as summing into a zeroed acc and scaling it, without the passes. */
XB_CLONES XB_API
void put_codes(const float *restrict y, int64_t w, float scale, float fac,
                      const float *restrict col, int add, float *restrict out) {
    if (add)
        for (int64_t j = 0; j < w; j++) out[j] += ((y[j] * scale) * fac) * col[j];
    else
        for (int64_t j = 0; j < w; j++) out[j] = ((y[j] * scale) * fac) * col[j];
}

/* Each row's read-noise spread in ADC steps, sigma[r] = sqrt(sq[r]) * coef, and (sig_el
 * not NULL) the same for each of its w outputs in sig_el (row r at r * w). */
XB_CLONES XB_API
void row_sigmas(const float *restrict sq, int64_t rows, int64_t w, float coef,
                float *restrict sigma, float *restrict sig_el) {
    for (int64_t r = 0; r < rows; r++) sigma[r] = sqrtf(sq[r]) * coef;
    if (sig_el == NULL) {
        return;
    } else if (w == 1) {
        memcpy(sig_el, sigma, sizeof(float) * (size_t)rows);
    } else if (w == 2) { /* the narrow bands' common case, without a loop per row */
        for (int64_t r = 0; r < rows; r++) sig_el[2 * r] = sig_el[2 * r + 1] = sigma[r];
    } else {
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < w; j++) sig_el[r * w + j] = sigma[r];
    }
}

/* The block's outputs from its sums: out row r = (acc row r * fac[r]) * col (+= with add);
 * rows n apart in both. */
XB_CLONES XB_API
void scale_rows(const float *restrict acc, int64_t rows, int64_t n, const float *restrict fac,
                const float *restrict col, int add, float *restrict out) {
    for (int64_t r = 0; r < rows; r++) {
        const float *restrict ar = acc + r * n;
        float *restrict o = out + r * n;
        float f = fac[r];
        if (add)
            for (int64_t j = 0; j < n; j++) o[j] += (ar[j] * f) * col[j];
        else
            for (int64_t j = 0; j < n; j++) o[j] = (ar[j] * f) * col[j];
    }
}
