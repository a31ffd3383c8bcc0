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

   Plain C99; compiled at first use by stno/nn/native.py (-O3 -march=native -fopenmp-simd). */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

/* One LR row of projection map ``m`` as float: dst[k * w + i] = proj[m][k][row * w + i]. */
static void load_lr_row(const void *proj, int bf16, int64_t hw, int K, int m, int64_t row,
                        int64_t w, float *dst) {
    for (int k = 0; k < K; k++) {
        const int64_t src = ((int64_t)m * K + k) * hw + row * w;
        if (bf16) {
            const uint16_t *p = (const uint16_t *)proj + src;
#pragma omp simd
            for (int64_t i = 0; i < w; i++) dst[k * w + i] = bf16_to_float(p[i]);
        } else {
            memcpy(dst + k * w, (const float *)proj + src, (size_t)w * sizeof(float));
        }
    }
}

/* x-pass of one LR row: dst[k][x] = lerp(a[k][ix0[x]], b[k][ix1[x]], wx[x]) + col[k][x], from
   the LR rows a and b (K, w) of two projection maps. */
static void x_pass(const float *a, const float *b, int K, int64_t w, const int32_t *ix0,
                   const int32_t *ix1, const float *step, const unsigned char *from_first,
                   const float *col, int64_t W, float *dst) {
    for (int k = 0; k < K; k++) {
        const float *ak = a + k * w, *bk = b + k * w, *ck = col + k * W;
        float *d = dst + k * W;
#pragma omp simd
        for (int64_t x = 0; x < W; x++) {
            float u = ak[ix0[x]], v = bk[ix1[x]];
            d[x] = (from_first[x] ? u : v) + step[x] * (v - u) + ck[x];
        }
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
    float *upper = malloc(sizeof(float) * (size_t)(2 * K * W + 4 * K * w + 3 * BLOCK + W));
    int32_t *columns = malloc(sizeof(int32_t) * (size_t)(2 * W));
    unsigned char *from_first = malloc((size_t)W);
    if (!upper || !columns || !from_first) {
        free(upper);
        free(columns);
        free(from_first);
        return -1;
    }
    float *lower = upper + K * W, *rows = lower + K * W, *acc = rows + 4 * K * w;
    float *step = acc + 3 * BLOCK;
    int32_t *c0 = columns, *c1 = columns + W;
    for (int64_t x = 0; x < W; x++) {
        c0[x] = (int32_t)ix0[x];
        c1[x] = (int32_t)ix1[x];
        from_first[x] = LERP_FROM(wx[x]);
        step[x] = LERP_STEP(wx[x]);
    }
    int64_t upper_row = -1, lower_row = -1;
    for (int64_t y = r0; y < r1; y++) {
        if (iy0[y] != upper_row) { /* maps 0 and 1 on the upper LR row */
            load_lr_row(proj, proj_bf16, hw, K, 0, iy0[y], w, rows);
            load_lr_row(proj, proj_bf16, hw, K, 1, iy0[y], w, rows + K * w);
            x_pass(rows, rows + K * w, K, w, c0, c1, step, from_first, col_term, W, upper);
            upper_row = iy0[y];
        }
        if (iy1[y] != lower_row) { /* maps 2 and 3 on the lower LR row */
            load_lr_row(proj, proj_bf16, hw, K, 2, iy1[y], w, rows + 2 * K * w);
            load_lr_row(proj, proj_bf16, hw, K, 3, iy1[y], w, rows + 3 * K * w);
            x_pass(rows + 2 * K * w, rows + 3 * K * w, K, w, c0, c1, step, from_first,
                   col_term, W, lower);
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
    free(columns);
    free(from_first);
    return 0;
}
