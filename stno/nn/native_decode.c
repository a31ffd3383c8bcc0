/* The continuous decoder's per-pixel work in one pass (inference on CPU).

   For each target pixel (y, x) of rows [r0, r1) of one frame, with hidden width K:

     upper_k = lerp(P0[iy0(y), ix0(x)]_k, P1[iy0(y), ix1(x)]_k, wx(x)) + col(x)_k
     lower_k = lerp(P2[iy1(y), ix0(x)]_k, P3[iy1(y), ix1(x)]_k, wx(x)) + col(x)_k
     v_k     = lerp(upper_k, lower_k, wy(y)) + row(y)_k
     out[c, y, x] += sum_k Wp[c, k] * gelu(v_k)            for c = 0, 1, 2

   P0..P3 are the features of the LR pixels projected by the lift's four neighbour blocks (float32
   or bfloat16), col and row the coordinate terms, Wp the last layer: the same map as
   ContinuousDecoder._decode_bands (stno/nn/decoder.py), which materialises every step in memory.
   Here the x-pass (upper, lower) is computed once per LR row into two (K, W) buffers, and the
   y-pass, GELU and last layer run over blocks of target pixels of a row with k outermost, so
   every loop is a contiguous vector loop and no per-pixel horizontal sum is needed.

   gelu is the exact (erf) GELU, with erf from a rational approximation (|error| < 4e-7 in
   float32; erf(x) = x P(x^2) / Q(x^2) on |x| <= 3.92, +-1 beyond, where float32 erf is 1 within
   half an ulp). Coefficients: a weighted least-squares fit made for this file.

   Plain C99 (AVX-512 intrinsics where the compiler targets them); compiled at first use by
   stno/nn/native.py (-O3 -march=native -fopenmp-simd -ffp-contract=fast -fno-trapping-math). */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

/* |v| beyond which gelu(v) is v or 0 in float32: 3.92 sqrt(2), where erf(v / sqrt 2) rounds to 1 */
#define GELU_LIMIT 5.5437172f

/* Exact GELU v Phi(v) = 0.5 v + 0.5 v erf(v / sqrt 2), with 0.5 v erf(v / sqrt 2) = v^2 P(v^2) / Q(v^2)
   (the erf fit with its argument and factor folded into the coefficients). */
static inline float gelu(float v) {
    float c = v < -GELU_LIMIT ? -GELU_LIMIT : (v > GELU_LIMIT ? GELU_LIMIT : v);
    float u = c * c;
    float p = 2.263509677e-08f;
    p = p * u + 6.317324994e-06f;
    p = p * u + 1.677393618e-04f;
    p = p * u + 4.670225244e-03f;
    p = p * u + 3.377473353e-02f;
    p = p * u + 3.989422524e-01f;
    float q = 1.191613776e-06f;
    q = q * u + 7.315685969e-05f;
    q = q * u + 1.878386330e-03f;
    q = q * u + 2.859542778e-02f;
    q = q * u + 2.513268284e-01f;
    q = q * u + 1.0f;
    float g = 0.5f * v + u * p / q;
    return v > GELU_LIMIT ? v : (v < -GELU_LIMIT ? 0.0f : g);
}

static inline float bf16_to_float(uint16_t v) {
    uint32_t bits = (uint32_t)v << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* torch.lerp(a, b, t) is a + t (b - a) for t < 0.5 and b - (b - a)(1 - t) otherwise (exact at
   both ends): base + s (b - a) with (base, s) = (a, t) or (b, t - 1). */
#define LERP_FROM(t) ((t) < 0.5f)
#define LERP_STEP(t) ((t) < 0.5f ? (t) : (t) - 1.0f)

/* Target pixels per block of the y-pass (their three sums stay in L1). */
#define BLOCK 128

/* Floats of an LR row buffer beyond its w values (AVX-512 x-pass: it loads 32 floats from the
   first LR column a block of 16 target columns reads; never selected, zeroed once). */
#define ROW_PAD 32

/* One LR row of projection map ``m`` as float: dst[k * stride + i] = proj[m][k][row * w + i]. */
static void load_lr_row(const void *proj, int bf16, int64_t hw, int K, int m, int64_t row,
                        int64_t w, int64_t stride, float *dst) {
    for (int k = 0; k < K; k++) {
        const int64_t src = ((int64_t)m * K + k) * hw + row * w;
        if (bf16) {
            const uint16_t *p = (const uint16_t *)proj + src;
#pragma omp simd
            for (int64_t i = 0; i < w; i++) dst[k * stride + i] = bf16_to_float(p[i]);
        } else {
            memcpy(dst + k * stride, (const float *)proj + src, (size_t)w * sizeof(float));
        }
    }
}

/* The target columns' neighbours, prepared once per call. */
typedef struct {
    const int32_t *ix0, *ix1;      /* (W) LR columns */
    const float *step;             /* (W) lerp step (see LERP_STEP) */
    const unsigned char *first;    /* (W) lerp from the first neighbour (see LERP_FROM) */
    const int32_t *base;           /* (W / 16) first LR column of each block of 16, or -1 */
    const int32_t *rel0, *rel1;    /* (W) ix0 - base, ix1 - base of the column's block */
    const uint16_t *first_mask;    /* (W / 16) ``first`` of a block as bits */
} Columns;

static void x_pass_columns(const float *ak, const float *bk, const Columns *c, const float *ck,
                           float *d, int64_t from, int64_t to) {
#pragma omp simd
    for (int64_t x = from; x < to; x++) {
        float u = ak[c->ix0[x]], v = bk[c->ix1[x]];
        d[x] = (c->first[x] ? u : v) + c->step[x] * (v - u) + ck[x];
    }
}

/* x-pass of one LR row: dst[k][x] = lerp(a[k][ix0[x]], b[k][ix1[x]], wx[x]) + col[k][x], from
   the LR rows a and b (K rows of ``stride`` floats) of two projection maps. With AVX-512, a block
   of 16 target columns whose neighbours lie within 32 LR columns (any upscaling) reads them with
   two loads and a two-register permute instead of a gather. */
static void x_pass(const float *a, const float *b, int K, int64_t stride, const Columns *c,
                   const float *col, int64_t W, float *dst) {
    for (int k = 0; k < K; k++) {
        const float *ak = a + k * stride, *bk = b + k * stride, *ck = col + k * W;
        float *d = dst + k * W;
        int64_t x = 0;
#if defined(__AVX512F__)
        for (; x + 16 <= W; x += 16) {
            const int32_t base = c->base[x / 16];
            if (base < 0) {
                x_pass_columns(ak, bk, c, ck, d, x, x + 16);
                continue;
            }
            const __m512i r0 = _mm512_loadu_si512((const void *)(c->rel0 + x));
            const __m512i r1 = _mm512_loadu_si512((const void *)(c->rel1 + x));
            const __m512 u = _mm512_permutex2var_ps(_mm512_loadu_ps(ak + base), r0,
                                                    _mm512_loadu_ps(ak + base + 16));
            const __m512 v = _mm512_permutex2var_ps(_mm512_loadu_ps(bk + base), r1,
                                                    _mm512_loadu_ps(bk + base + 16));
            const __m512 from = _mm512_mask_blend_ps((__mmask16)c->first_mask[x / 16], v, u);
            const __m512 lerp =
                _mm512_fmadd_ps(_mm512_loadu_ps(c->step + x), _mm512_sub_ps(v, u), from);
            _mm512_storeu_ps(d + x, _mm512_add_ps(lerp, _mm512_loadu_ps(ck + x)));
        }
#endif
        x_pass_columns(ak, bk, c, ck, d, x, W);
    }
}

/* proj: (4, K, h * w) float32 (proj_bf16 = 0) or bfloat16 (1), the LR pixels projected by the
   four neighbour blocks; row_term (H, K); col_term (K, W); iy0, iy1 (H), ix0, ix1 (W): LR indices
   of each target row / column's two neighbours; wy (H), wx (W): the weight of the second
   neighbour; proj_w (3, K); out (3, H, W), accumulated into, rows [r0, r1).
   Returns 0, or -1 when memory runs out (nothing is written then). */
int stno_decode_rows(const void *proj, int proj_bf16, int64_t hw, int K,
                     const int64_t *iy0, const int64_t *iy1, const float *wy,
                     const float *row_term, const int64_t *ix0, const int64_t *ix1,
                     const float *wx, const float *col_term, const float *proj_w, float *out,
                     int64_t H, int64_t W, int64_t w, int64_t r0, int64_t r1) {
    const int64_t stride = w + ROW_PAD, blocks = W / 16 + 1;
    float *upper = calloc((size_t)(2 * K * W + 4 * K * stride + 3 * BLOCK + W), sizeof(float));
    int32_t *ints = malloc(sizeof(int32_t) * (size_t)(4 * W + blocks));
    unsigned char *first = malloc((size_t)W);
    uint16_t *first_mask = calloc((size_t)blocks, sizeof(uint16_t));
    if (!upper || !ints || !first || !first_mask) {
        free(upper);
        free(ints);
        free(first);
        free(first_mask);
        return -1;
    }
    float *lower = upper + K * W, *rows = lower + K * W, *acc = rows + 4 * K * stride;
    float *step = acc + 3 * BLOCK;
    int32_t *c0 = ints, *c1 = c0 + W, *rel0 = c1 + W, *rel1 = rel0 + W, *base = rel1 + W;
    for (int64_t x = 0; x < W; x++) {
        c0[x] = (int32_t)ix0[x];
        c1[x] = (int32_t)ix1[x];
        first[x] = LERP_FROM(wx[x]);
        step[x] = LERP_STEP(wx[x]);
    }
    for (int64_t blk = 0; blk * 16 < W; blk++) {
        const int64_t x0 = blk * 16, x1 = x0 + 16 < W ? x0 + 16 : W;
        int32_t lo = c0[x0], hi = c0[x0];
        for (int64_t x = x0; x < x1; x++) {
            lo = c0[x] < lo ? c0[x] : lo;
            lo = c1[x] < lo ? c1[x] : lo;
            hi = c0[x] > hi ? c0[x] : hi;
            hi = c1[x] > hi ? c1[x] : hi;
            first_mask[blk] |= (uint16_t)(first[x] << (x - x0));
        }
        base[blk] = hi - lo < 32 ? lo : -1;
        for (int64_t x = x0; x < x1; x++) {
            rel0[x] = c0[x] - lo;
            rel1[x] = c1[x] - lo;
        }
    }
    const Columns columns = {c0, c1, step, first, base, rel0, rel1, first_mask};
    int64_t upper_row = -1, lower_row = -1;
    for (int64_t y = r0; y < r1; y++) {
        if (iy0[y] != upper_row) { /* maps 0 and 1 on the upper LR row */
            load_lr_row(proj, proj_bf16, hw, K, 0, iy0[y], w, stride, rows);
            load_lr_row(proj, proj_bf16, hw, K, 1, iy0[y], w, stride, rows + K * stride);
            x_pass(rows, rows + K * stride, K, stride, &columns, col_term, W, upper);
            upper_row = iy0[y];
        }
        if (iy1[y] != lower_row) { /* maps 2 and 3 on the lower LR row */
            load_lr_row(proj, proj_bf16, hw, K, 2, iy1[y], w, stride, rows + 2 * K * stride);
            load_lr_row(proj, proj_bf16, hw, K, 3, iy1[y], w, stride, rows + 3 * K * stride);
            x_pass(rows + 2 * K * stride, rows + 3 * K * stride, K, stride, &columns, col_term,
                   W, lower);
            lower_row = iy1[y];
        }
        const float ty = wy[y], sy = LERP_STEP(ty);
        const float *base = LERP_FROM(ty) ? upper : lower;
        const float *row = row_term + y * K;
        for (int64_t x0 = 0; x0 < W; x0 += BLOCK) {
            const int64_t n = W - x0 < BLOCK ? W - x0 : BLOCK;
            float *s0 = acc, *s1 = acc + BLOCK, *s2 = acc + 2 * BLOCK;
            memset(acc, 0, sizeof(float) * 3 * BLOCK);
            for (int k = 0; k < K; k++) {
                const float *u = upper + k * W + x0, *l = lower + k * W + x0;
                const float *a = base + k * W + x0;
                const float rk = row[k], q0 = proj_w[k], q1 = proj_w[K + k], q2 = proj_w[2 * K + k];
#pragma omp simd
                for (int64_t j = 0; j < n; j++) {
                    float g = gelu(a[j] + sy * (l[j] - u[j]) + rk);
                    s0[j] += q0 * g;
                    s1[j] += q1 * g;
                    s2[j] += q2 * g;
                }
            }
            float *o0 = out + y * W + x0, *o1 = o0 + H * W, *o2 = o1 + H * W;
#pragma omp simd
            for (int64_t j = 0; j < n; j++) {
                o0[j] += s0[j];
                o1[j] += s1[j];
                o2[j] += s2[j];
            }
        }
    }
    free(upper);
    free(ints);
    free(first);
    free(first_mask);
    return 0;
}
