/* The generator and the ziggurat tables shared by fxanalog's C extensions
 * (_normal.c: batched SIMD draws for fxanalog._rng; _pulsed.c: one draw at a
 * time for the pulsed update). Included once per extension; everything is
 * static.
 *
 * Generator: xoshiro256++ (Blackman and Vigna, 2019; 256 bits of state,
 * period 2^256 - 1), next64(s) on a state s[4].
 *
 * Distribution: the ziggurat method of Marsaglia and Tsang (2000) for the
 * half-normal density f(x) = exp(-x^2/2), LAYERS = 256 layers of equal area
 * V, with a random sign. Layers: X[1] = R, X[i+1] = f^-1(f(X[i]) + V/X[i])
 * for i = 1..254, X[256] = 0. Layer i >= 1 is the rectangle
 * [0, X[i]] x [f(X[i]), f(X[i+1])] (area V); layer 0 is the base, the strip
 * below f(R) of width X[0] = V / f(R) (area V), whose part beyond R stands
 * for the tail. R and V are Marsaglia and Tsang's constants for 256 layers.
 *
 * An attempt is one 32-bit word u: bits 0-7 pick the layer, bit 8 is the
 * sign, bits 9-31 (j, 23 bits) place x = j X[layer] / 2^23 in the layer.
 * The bits of the layer and of x are disjoint (the original RNOR reused
 * the layer bits in x; Doornik 2005). If j < K[layer] (x < X[layer+1]), x
 * is under the curve: the number is +-x (98.5% of attempts). Otherwise the
 * attempt is "rejected" and finish() completes it from a generator: the
 * wedge test y < f(x) with a fresh uniform y, Marsaglia's (1964) exact tail
 * algorithm beyond R in the base layer, and a fresh attempt in a new random
 * layer after a failed wedge test. The method is exact: its only
 * approximation is the 2^23 grid of x in a layer.
 */

#ifndef FXANALOG_ZIGGURAT_H
#define FXANALOG_ZIGGURAT_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define LAYERS 256

static const double R = 3.6541528853610088;
static const double V = 4.92867323399e-3;
static const double GRID = 8388608.0; /* 2^23 positions of x in a layer */

static double X[LAYERS + 1];  /* right edges */
static double Fx[LAYERS + 1]; /* f(X[i]) */
static float W[LAYERS];       /* X[i] / 2^23: x = j * W[i] */
static uint32_t K[LAYERS];    /* j < K[i]: x < X[i+1], under the curve */

static void build_tables(void) {
    X[0] = V / exp(-0.5 * R * R);
    X[1] = R;
    for (int i = 1; i < LAYERS - 1; ++i)
        X[i + 1] = sqrt(-2.0 * log(V / X[i] + exp(-0.5 * X[i] * X[i])));
    X[LAYERS] = 0.0;
    for (int i = 0; i <= LAYERS; ++i)
        Fx[i] = exp(-0.5 * X[i] * X[i]);
    for (int i = 0; i < LAYERS; ++i) {
        W[i] = (float)(X[i] / GRID);
        K[i] = (uint32_t)floor(GRID * (X[i + 1] / X[i]));
    }
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t next64(uint64_t *s) {
    const uint64_t result = rotl(s[0] + s[3], 23) + s[0];
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in (0, 1]: 53 bits. */
static inline double open_uniform(uint64_t *s) { return (double)((next64(s) >> 11) + 1) * 0x1.0p-53; }

static inline float flip(float x, uint32_t u) { /* the sign by a bit flip: bit 8 -> bit 31 */
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    bits ^= (u & LAYERS) << 23;
    memcpy(&x, &bits, sizeof x);
    return x;
}

/* The signed number of a rejected attempt u, from the fix-up generator. */
static float finish(uint64_t *s, uint32_t u) {
    uint32_t layer = u & (LAYERS - 1), j = u >> 9;
    for (;;) {
        if (layer == 0) { /* x >= R in the base strip: a tail sample */
            double a, b;
            do {
                a = -log(open_uniform(s)) / R;
                b = -log(open_uniform(s));
            } while (b + b < a * a);
            return flip((float)(R + a), u);
        }
        double x = (double)j * (X[layer] / GRID);
        double y = Fx[layer] + (1.0 - open_uniform(s)) * (Fx[layer + 1] - Fx[layer]);
        if (y < exp(-0.5 * x * x))
            return flip((float)x, u);
        uint32_t v = (uint32_t)(next64(s) >> 32); /* start over: layer and x anew, same sign */
        layer = v & (LAYERS - 1);
        j = v >> 9;
        if (j < K[layer])
            return flip((float)j * W[layer], u);
    }
}

/* One standard normal from state s: the attempt is the high half of one
 * output, finished from s itself when rejected. The rare finish works on a
 * copy, so that a caller's local state never escapes and can stay in
 * registers (one draw then waits for the previous one's few register
 * operations, not for a store and a load of the state). */
static inline __attribute__((always_inline)) float standard_normal(uint64_t *s) {
    const uint32_t u = (uint32_t)(next64(s) >> 32);
    const uint32_t layer = u & (LAYERS - 1), j = u >> 9;
    if (j < K[layer]) return flip((float)j * W[layer], u);
    uint64_t t[4] = {s[0], s[1], s[2], s[3]};
    const float z = finish(t, u);
    s[0] = t[0];
    s[1] = t[1];
    s[2] = t[2];
    s[3] = t[3];
    return z;
}

#endif
