/* fxanalog._pulsed: the stochastic pulsed update of a tile array on CPU.
 *
 * The semantics are those of fxanalog/ops/tile_update_torch.py (docs/training.md).
 * Everything happens here, in three phases over the float32 weights w
 * (G, N, K) of the tile groups:
 *
 * 0. Update management of every batch row b and tile (output piece o, input
 *    piece p): from the row's largest |x| over the tile's inputs and largest
 *    |d| over its outputs, the train length BL and the factors A (error
 *    lines) and B (input lines), as tile_update_torch.management.
 * 1. Input trains, for every (group g, row b, output piece o): input line j
 *    (of input piece p) fires in slot t < BL when min(1, B |x_j|) > u, one
 *    uniform u per slot. The lines that fired at least once are listed per
 *    (g, b, o, p) with their train as W words (bit t of word w: slot 63 w + t;
 *    bit 63 of word 0: x_j < 0; W = 1 for trains of at most 63 slots),
 *    in column order. Each (g, b, o) draws from its own stream.
 * 2. Rows: for every weight row i (output piece o) and batch row b in order,
 *    and every input piece p, error line i's train (min(1, A |d_i|) > u per
 *    slot) is drawn from the row's stream; where it fired, cross-point (i, j)
 *    of every listed input line j gets popcount(x word & d word) pulses, down
 *    where d_i and x_j have the same sign (for a positive learning rate).
 *    Each pulse: a standard normal draw from the row's stream, the device's
 *    step at the current weight, the clip to the cross-point's bounds.
 *
 * A stack of D devices per cross-point (the devices of a unit cell,
 * docs/training.md "Several devices per weight") shares the trains: every
 * coincidence goes to each device whose route takes it (ROUTE_BOTH: in its
 * direction; ROUTE_UP: only up pulses; ROUTE_DOWN_AS_UP: only down pulses,
 * applied as up pulses, the minus device of a one-sided pair), device by
 * device, each pulse with its own normal draw from the row's stream.
 *
 * Work is split among threads (see parallel()) by (g, b, o) in phase 1 and by
 * weight rows in phase 2; every stream is seeded from (seed, what it draws for) by
 * splitmix64, so the numbers do not depend on the thread count. A
 * cross-point's pulses come in batch-row order, as the semantics require;
 * different cross-points are independent. Given trains (the tests compare
 * this file with the Python loop on the same trains) replace the draws.
 *
 * Random numbers: xoshiro256++; uniforms on torch.rand's float32 grid
 * (k / 2^24), normals by the ziggurat of _ziggurat.h (the one fxanalog._rng
 * uses), one at a time. Pulse arithmetic is float32 in the order of
 * fxanalog/devices.py's apply_pulses, built with -ffp-contract=off.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_ziggurat.h"

/* device kinds (fxanalog/devices.py) */
enum { CONSTANT_STEP = 1, LINEAR_STEP = 2, EXP_STEP = 3, POW_STEP = 4 };

#define NEG_BIT (1ULL << 63)
#define SLOT_BITS (~NEG_BIT)
#define MAX_WORDS 8 /* trains of up to 8 x 63 = 504 slots */

/* -- random numbers (xoshiro256++ and the ziggurat of _ziggurat.h) ------ */

typedef uint64_t rng_t[4];

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The stream of `what` (its own domain, 0 or 1) and `index` under `seed`. */
static void seed_rng(rng_t r, uint64_t seed, uint64_t what, uint64_t index) {
    uint64_t x = seed ^ ((2 * index + what) * 0xd1342543de82ef95ULL);
    for (int k = 0; k < 4; k++) r[k] = splitmix64(&x);
    if ((r[0] | r[1] | r[2] | r[3]) == 0) r[0] = 1; /* the one state that never moves */
}

static inline float uniform24(uint64_t *r) { /* [0, 1) on torch.rand's float32 grid */
    return (float)(next64(r) >> 40) * (1.0f / 16777216.0f);
}

/* -- the device's step ---------------------------------------------------- */

enum { ROUTE_BOTH = 0, ROUTE_UP = 1, ROUTE_DOWN_AS_UP = 2 };
#define MAX_DEVICES 16

typedef struct {
    int kind, n_params, mult_noise, complex_noise, route, reference; /* reference: index of r in pr, or 0 */
    float sd, exp_a, exp_b, A_up, A_down, g_up, g_down, std_add, std_slope;
} device_t;

/* One pulse at a cross-point whose parameters are pr[0..n_params): b_max,
 * b_min, scale_up, scale_down, then slopes or exponents (devices.PULSE_NAMES),
 * then the reference r of a device that has one: the step and the clip act
 * on g = w + r, and w = g - r is returned. */
static inline __attribute__((always_inline)) float one_pulse(const device_t *dv, const float *pr, float w, int down, float xi) {
    const float bmax = pr[0], bmin = pr[1];
    /* down selects by index, not by a branch: it is a coin flip per pulse */
    const float sign = 1.0f - 2.0f * (float)down;
    const float scale = pr[2 + down];
    const float sd = dv->sd;
    const int has_ref = dv->reference != 0; /* a constant 0 where the caller passes one: no code */
    const float ref = has_ref ? pr[dv->reference] : 0.0f;
    if (has_ref) w += ref;
    switch (dv->kind) {
    case CONSTANT_STEP:
        w = w + sign * scale * (1.0f + sd * xi);
        break;
    case LINEAR_STEP: {
        const float slope = pr[4 + down];
        if (dv->mult_noise)
            w = w + sign * (slope * w + scale) * (1.0f + sd * xi);
        else
            w = w + sign * (slope * w + scale * (1.0f + sd * xi));
        break;
    }
    case EXP_STEP: {
        const float span = bmax - bmin;
        if (!(span > 0.0f)) return has_ref ? w - ref : w; /* a cross-point without range is never updated */
        const float z = 2.0f * w / span * dv->exp_a + dv->exp_b;
        float y;
        if (down) {
            y = 1.0f - dv->A_down * expf(-dv->g_down * z);
        } else {
            y = 1.0f - dv->A_up * expf(dv->g_up * z);
        }
        if (y < 0.0f) y = 0.0f;
        const float dw = sign * y * scale;
        if (dv->complex_noise)
            w = w + dw + sd * (fabsf(dw) + dv->std_add + dv->std_slope * fabsf(w)) * xi;
        else
            w = w + dw * (1.0f + sd * xi);
        break;
    }
    case POW_STEP: {
        const float span = bmax - bmin;
        if (span == 0.0f) return has_ref ? w - ref : w;
        const float gamma = pr[4 + down];
        float frac = down ? (w - bmin) / span : (bmax - w) / span;
        if (frac < 0.0f) frac = 0.0f;
        w = w + sign * scale * powf(frac, gamma) * (1.0f + sd * xi);
        break;
    }
    default:
        return has_ref ? w - ref : w;
    }
    if (w < bmin) w = bmin;
    if (w > bmax) w = bmax;
    return has_ref ? w - ref : w;
}

/* -- update management ---------------------------------------------------- */

typedef struct {
    double lr;         /* |learning rate| */
    float dw;          /* the device's weight granularity */
    int desired_bl, fixed_bl, bl_management, update_management;
    float um_grad_scale;
} manage_t;

/* BL, A (error lines) and B (input lines) of one row and tile from the row's
 * largest |x| over the tile's inputs and largest |d| over its outputs, as
 * tile_update_torch.management: float32 operations in the same order, so BL
 * (where ceil(k) lands) is the same to the bit, and A and B to the last bit
 * (torch's float32 sqrt is not always correctly rounded). */
static void manage(const manage_t *m, float x_max, float d_max, int32_t *bl_out, float *a_out, float *b_out) {
    const float lr = (float)m->lr, g = m->dw, max_bl = (float)m->desired_bl;
    float bl, a;
    if (m->fixed_bl || m->bl_management || (double)(g * max_bl) >= m->lr) {
        bl = max_bl;
        a = sqrtf(lr / (g * bl));
    } else {
        bl = ceilf(lr / g);
        if (bl < 1.0f) bl = 1.0f;
        a = 1.0f;
    }
    float b = a;
    if (m->bl_management || m->update_management) {
        const int zero = x_max == 0.0f || d_max == 0.0f;
        float d_val = m->um_grad_scale * d_max;
        const float k = lr * x_max * d_val / g;
        if (m->bl_management) {
            bl = ceilf(k);
            if (bl > max_bl) bl = max_bl;
            a = sqrtf(lr / (g * (bl < 1.0f ? 1.0f : bl)));
            b = a;
        }
        if (m->update_management) {
            if (k > max_bl) d_val = d_val * (max_bl / (k > 0.0f ? k : 1.0f));
            const float safe_d = zero ? 1.0f : d_val, safe_x = zero ? 1.0f : x_max;
            a = a * sqrtf(safe_x / safe_d);
            b = b * sqrtf(safe_d / safe_x);
        }
        if (zero) bl = 0.0f;
    }
    *bl_out = (int32_t)bl;
    *a_out = a;
    *b_out = b;
}

/* -- the update ----------------------------------------------------------- */

typedef struct {
    /* inputs */
    const float *x;         /* (G, B, K) */
    const float *d;         /* (G, B, N) */
    const float *dt;        /* (G, N, B): d transposed, so a weight row reads its error lines in a run; or NULL */
    int32_t *bl;            /* (G, B, n_out, n_in) train lengths, 0: no pulses (phase 0 writes them) */
    float *a;               /* (G, B, n_out, n_in) error-line factors */
    float *bx;              /* (G, B, n_out, n_in) input-line factors */
    const int32_t *in_starts, *out_starts; /* (n_in + 1,), (n_out + 1,) first column / row of each piece */
    const int64_t *x_given; /* (G, B, n_out, K) given input trains, or NULL */
    const int64_t *d_given; /* (G, B, n_in, N) given error trains, or NULL */
    const float *params;    /* (D, G, N, K, n_params) */
    /* phase 1 -> phase 2: the input lines that fired, per (g, b, o) row of K entries */
    int32_t *cols;          /* (G, B, n_out, K) */
    int64_t *words;         /* (G, B, n_out, K, W) */
    int32_t *offsets;       /* (G, B, n_out, n_in + 1) */
    /* outputs */
    float *w;               /* (D, G, N, K) */
    uint8_t *touched;       /* (G, N, K) */
    int64_t G, N, K, B, n_out, n_in, W;
    float res;              /* probability resolution, 0: none */
    int sto_round, flip;    /* flip: a negative learning rate */
    uint64_t seed;
    int n_dev;              /* D */
    device_t dv[MAX_DEVICES];
    manage_t um;
} job_t;

/* max |v[k]| over n floats; a NaN if any is NaN (as torch's amax). On the
 * bits: |v| as an unsigned integer orders as the number does, and every
 * NaN's bits exceed infinity's, so the integer max (which vectorizes) is it. */
static inline float max_abs_run(const float *v, int64_t n) {
    uint32_t m = 0;
    for (int64_t k = 0; k < n; k++) {
        uint32_t b;
        memcpy(&b, v + k, sizeof b);
        b &= 0x7fffffffu;
        m = b > m ? b : m;
    }
    float r;
    memcpy(&r, &m, sizeof r);
    return r;
}

static int management(const job_t *jb, int64_t r0, int64_t r1) { /* rows of (G * B) */
    const int64_t N = jb->N, K = jb->K, n_out = jb->n_out, n_in = jb->n_in;
    float *x_max = malloc((size_t)(n_in + n_out) * sizeof(float)), *d_max = x_max + n_in;
    if (!x_max) return -1;
    for (int64_t gb = r0; gb < r1; gb++) {
        for (int64_t p = 0; p < n_in; p++)
            x_max[p] = max_abs_run(jb->x + gb * K + jb->in_starts[p], jb->in_starts[p + 1] - jb->in_starts[p]);
        for (int64_t o = 0; o < n_out; o++)
            d_max[o] = max_abs_run(jb->d + gb * N + jb->out_starts[o], jb->out_starts[o + 1] - jb->out_starts[o]);
        for (int64_t o = 0; o < n_out; o++)
            for (int64_t p = 0; p < n_in; p++) {
                const int64_t k = (gb * n_out + o) * n_in + p;
                manage(&jb->um, x_max[p], d_max[o], jb->bl + k, jb->a + k, jb->bx + k);
            }
    }
    free(x_max);
    return 0;
}

static inline float probability(const job_t *jb, uint64_t *r, float p) {
    if (jb->res > 0.0f) { /* as tile_update_torch._discretize */
        float q = p / jb->res;
        if (jb->sto_round) q = q + uniform24(r) - 0.5f;
        p = rintf(q) * jb->res;
    }
    return p;
}

/* The train of a line firing with probability p in each of bl slots. */
static inline int count_bits(uint64_t v) { /* few bits are set: one step per bit beats a table or SWAR */
    int n = 0;
    for (; v; v &= v - 1) n++;
    return n;
}

static inline int64_t train(uint64_t *r, float p, int bl) {
    if (!(p > 0.0f)) return 0;
    if (p >= 1.0f) return (int64_t)((1ULL << bl) - 1);
    uint64_t word = 0;
    for (int t = 0; t < bl; t++) word |= (uint64_t)(p > uniform24(r)) << t; /* no branch on the coin */
    return (int64_t)word;
}

/* The W words of a train of bl slots (63 slots a word). Returns whether any slot fired. */
static inline __attribute__((always_inline)) int trains(uint64_t *r, float p, int bl, int64_t W, uint64_t *out) {
    if (W == 1) return (out[0] = (uint64_t)train(r, p, bl)) != 0;
    uint64_t any = 0;
    for (int64_t w = 0; w < W; w++) {
        const int nb = bl - 63 * (int)w;
        out[w] = nb > 0 ? (uint64_t)train(r, p, nb > 63 ? 63 : nb) : 0;
        any |= out[w];
    }
    return any != 0;
}

static int input_trains(const job_t *jb, int64_t r0, int64_t r1) { /* rows r of (G * B * n_out) */
    const int64_t K = jb->K, n_in = jb->n_in, n_out = jb->n_out, W = jb->W;
    uint64_t buf[MAX_WORDS];
    for (int64_t r = r0; r < r1; r++) {
        const int64_t gb = r / n_out, o = r % n_out;
        const float *x = jb->x + gb * K;
        const int64_t *given = jb->x_given ? jb->x_given + r * K : NULL;
        int32_t *cols = jb->cols + r * K, *offsets = jb->offsets + r * (n_in + 1);
        int64_t *words = jb->words + r * K * W;
        rng_t rng;
        seed_rng(rng, jb->seed, 0, (uint64_t)r);
        int64_t count = 0;
        for (int64_t p = 0; p < n_in; p++) {
            offsets[p] = (int32_t)count;
            const int64_t k = (gb * n_out + o) * n_in + p;
            const int bl = jb->bl[k];
            if (bl <= 0) continue;
            const float scale = jb->bx[k];
            if (bl == 1 && W == 1 && !given && !(jb->res > 0.0f)) {
                /* One slot (the common case): train()'s draws without its
                 * loop, the line listed without a branch on its coin. */
                for (int64_t j = jb->in_starts[p]; j < jb->in_starts[p + 1]; j++) {
                    const float pj = scale * fabsf(x[j]);
                    const int fired = pj > 0.0f && (pj >= 1.0f || pj > uniform24(rng));
                    cols[count] = (int32_t)j;
                    words[count] = 1 | (x[j] < 0.0f ? (int64_t)NEG_BIT : 0);
                    count += fired;
                }
                continue;
            }
            for (int64_t j = jb->in_starts[p]; j < jb->in_starts[p + 1]; j++) {
                if (given) {
                    buf[0] = (uint64_t)given[j];
                    if (!buf[0]) continue;
                } else if (!trains(rng, probability(jb, rng, scale * fabsf(x[j])), bl, W, buf)) {
                    continue;
                }
                cols[count] = (int32_t)j;
                for (int64_t w = 0; w < W; w++) words[count * W + w] = (int64_t)buf[w];
                words[count * W] |= x[j] < 0.0f ? (int64_t)NEG_BIT : 0;
                count++;
            }
        }
        offsets[n_in] = (int32_t)count;
    }
    return 0;
}

/* A row's pulses at one cross-point for one batch row. */
typedef struct {
    int32_t j;
    int16_t n, down;
} event_t;

static inline __attribute__((always_inline)) void apply_events(const device_t *dv0, int kind, int reference,
                                                             int routed, int noisy, const event_t *ev, int64_t E,
                                                             float *wrow, uint8_t *trow, const float *prow,
                                                             uint64_t *rng) {
    device_t dv = *dv0;
    dv.kind = kind; /* constants where the caller passes them */
    if (!reference) dv.reference = 0;
    const int np = dv.n_params, route = routed ? dv.route : ROUTE_BOTH;
    uint64_t st[4] = {rng[0], rng[1], rng[2], rng[3]}; /* the stream in registers for the loop */
    for (int64_t a = 0; a < E; a++) {
        int down = ev[a].down;
        if (route != ROUTE_BOTH) { /* one direction only (a one-sided pair) */
            if ((route == ROUTE_UP) == down) continue;
            down = 0;
        }
        const int64_t j = ev[a].j;
        const float *pr = prow + j * np;
        float wv = wrow[j];
        for (int q = 0; q < ev[a].n; q++) wv = one_pulse(&dv, pr, wv, down, noisy ? standard_normal(st) : 0.0f);
        wrow[j] = wv;
        trow[j] = 1;
    }
    memcpy(rng, st, sizeof st);
}

/* The listed pulses of a weight row (in order) on every device of the stack:
 * the same coincidences, each device with its own rule and route. */
static void flush(const job_t *jb, const event_t *ev, int64_t E, float *wrow, uint8_t *trow, const float *prow,
                  uint64_t *rng) {
    const int np = jb->dv[0].n_params;
    const int64_t stack = jb->G * jb->N * jb->K; /* one device's weights */
    for (int dd = 0; dd < jb->n_dev; dd++) {
        const device_t *dev = &jb->dv[dd];
        const int noisy = dev->sd != 0.0f;
        float *wd = wrow + dd * stack;
        const float *pd = prow + dd * stack * np;
        /* one loop per kind: no switch per pulse; a plain device without the route's and reference's code */
        switch (dev->reference || dev->route != ROUTE_BOTH ? -1 : dev->kind) {
        case CONSTANT_STEP:
            apply_events(dev, CONSTANT_STEP, 0, 0, noisy, ev, E, wd, trow, pd, rng);
            break;
        case LINEAR_STEP:
            apply_events(dev, LINEAR_STEP, 0, 0, noisy, ev, E, wd, trow, pd, rng);
            break;
        default:
            apply_events(dev, dev->kind, dev->reference != 0, 1, noisy, ev, E, wd, trow, pd, rng);
        }
    }
}

/* A listed cross-point's parameters (np floats, maybe across two cache
 * lines: both ends) and weight on their way while the row is listed. */
static inline void prefetch_cross_point(const float *prow, const float *wrow, int32_t j, int np) {
    __builtin_prefetch(prow + (int64_t)j * np);
    __builtin_prefetch(prow + (int64_t)j * np + np - 1);
    __builtin_prefetch(wrow + j);
}

/* Each weight row in two passes: first its error trains and coincidences,
 * listed in batch-row order (so each cross-point's pulses stay in order)
 * while the cross-points' weights and parameters are prefetched, then the
 * pulses. The prefetches overlap the cache misses the scattered cross-points
 * of a large tile would otherwise take one after another; a cross-point's
 * parameters (np floats) may straddle two cache lines, so both ends are
 * fetched. Only the lines a row uses are fetched: fetching whole rows ahead
 * was slower for the sparse rows of a transfer and no faster for dense ones. */
static int rows(const job_t *jb, int64_t i0, int64_t i1) { /* rows of (G * N) */
    const int64_t N = jb->N, K = jb->K, B = jb->B, n_out = jb->n_out, n_in = jb->n_in;
    const int np = jb->dv[0].n_params;
    const int64_t W = jb->W;
    uint64_t dword[MAX_WORDS];
    int64_t cap = 4096;
    event_t *ev = malloc((size_t)cap * sizeof(event_t));
    if (!ev) return -1;
    for (int64_t gi = i0; gi < i1; gi++) {
        const int64_t g = gi / N, i = gi % N;
        int64_t o = 0;
        while (i >= jb->out_starts[o + 1]) o++;
        float *wrow = jb->w + gi * K;
        uint8_t *trow = jb->touched + gi * K;
        memset(trow, 0, (size_t)K); /* the mask comes uninitialized: each row clears its own, on its thread */
        const float *prow = jb->params + gi * K * np;
        rng_t rng;
        seed_rng(rng, jb->seed, 1, (uint64_t)gi);
        int64_t E = 0;
        const float *dcol = jb->dt ? jb->dt + gi * B : jb->d + g * B * N + i; /* error line i of every row */
        const int64_t dstride = jb->dt ? 1 : N;
        for (int64_t b = 0; b < B; b++) {
            const int64_t gb = g * B + b;
            const float dv = dcol[b * dstride];
            if (dv == 0.0f && !jb->d_given) continue; /* never fires */
            const int dneg = dv < 0.0f;
            const int64_t r = gb * n_out + o;
            const int32_t *cols = jb->cols + r * K, *offsets = jb->offsets + r * (n_in + 1);
            const int64_t *words = jb->words + r * K * W;
            for (int64_t p = 0; p < n_in; p++) {
                const int64_t k = r * n_in + p;
                const int bl = jb->bl[k];
                if (bl <= 0) continue;
                if (jb->d_given) {
                    dword[0] = (uint64_t)jb->d_given[(gb * n_in + p) * N + i];
                    if (!dword[0]) continue;
                } else if (!trains(rng, probability(jb, rng, jb->a[k] * fabsf(dv)), bl, W, dword)) {
                    continue;
                }
                if (E + (offsets[p + 1] - offsets[p]) > cap) {
                    while (E + (offsets[p + 1] - offsets[p]) > cap) cap *= 2;
                    event_t *grown = realloc(ev, (size_t)cap * sizeof(event_t));
                    if (!grown) {
                        free(ev);
                        return -1;
                    }
                    ev = grown;
                }
                if (bl == 1 && W == 1) { /* one slot: every listed input line meets the error line once */
                    for (int32_t e = offsets[p]; e < offsets[p + 1]; e++) {
                        const int32_t j = cols[e];
                        prefetch_cross_point(prow, wrow, j, np);
                        ev[E++] = (event_t){j, 1, (int16_t)((dneg == (int)((uint64_t)words[e] >> 63)) ^ jb->flip)};
                    }
                    continue;
                }
                const uint64_t d0 = dword[0] & SLOT_BITS;
                for (int32_t e = offsets[p]; e < offsets[p + 1]; e++) {
                    const uint64_t xw = (uint64_t)words[e * W];
                    int n = count_bits(xw & d0);
                    if (W > 1)
                        for (int64_t w = 1; w < W; w++) n += count_bits((uint64_t)words[e * W + w] & dword[w]);
                    if (!n) continue;
                    const int32_t j = cols[e];
                    prefetch_cross_point(prow, wrow, j, np);
                    ev[E++] = (event_t){j, (int16_t)n, (int16_t)((dneg == (int)(xw >> 63)) ^ jb->flip)};
                }
            }
        }
        flush(jb, ev, E, wrow, trow, prow, rng);
    }
    free(ev);
    return 0;
}

/* Run fn on [0, total) split into `threads` contiguous ranges. Built with
 * OpenMP (setup.py tries -fopenmp first), the ranges run on torch's own
 * OpenMP threads: fxanalog imports torch first, so this module binds to the
 * libgomp.so.1 torch loaded, whose worker threads, still spinning after
 * torch's last parallel op, take the work at once (separate threads would
 * have to wait for those cores). Without OpenMP, POSIX threads. */
#ifdef _OPENMP
static int parallel(const job_t *jb, int (*fn)(const job_t *, int64_t, int64_t), int64_t total, int threads) {
    if (threads > total) threads = (int)(total > 0 ? total : 1);
    if (threads <= 1) return fn(jb, 0, total);
    int status = 0;
#pragma omp parallel for num_threads(threads) schedule(static, 1) reduction(| : status)
    for (int t = 0; t < threads; t++) status |= fn(jb, total * t / threads, total * (t + 1) / threads);
    return status;
}
#else
typedef struct {
    const job_t *jb;
    int (*fn)(const job_t *, int64_t, int64_t);
    int64_t r0, r1;
    int status;
} part_t;

static void *run_part(void *arg) {
    part_t *pt = arg;
    pt->status = pt->fn(pt->jb, pt->r0, pt->r1);
    return NULL;
}

static int parallel(const job_t *jb, int (*fn)(const job_t *, int64_t, int64_t), int64_t total, int threads) {
    if (threads > total) threads = (int)(total > 0 ? total : 1);
    if (threads <= 1) return fn(jb, 0, total);
    part_t parts[64];
    pthread_t ids[64];
    if (threads > 64) threads = 64;
    int started = 0, status = 0;
    for (int t = 0; t < threads; t++) parts[t] = (part_t){jb, fn, total * t / threads, total * (t + 1) / threads, 0};
    for (int t = 1; t < threads; t++) {
        if (pthread_create(&ids[t], NULL, run_part, &parts[t]) != 0) break;
        started = t;
    }
    run_part(&parts[0]);
    for (int t = 1; t <= started; t++) pthread_join(ids[t], NULL);
    for (int t = started + 1; t < threads; t++) run_part(&parts[t]); /* the ones no thread could start for */
    for (int t = 0; t < threads; t++) status |= parts[t].status;
    return status;
}
#endif

static const void *ptr(PyObject *seq, Py_ssize_t k) {
    PyObject *item = PyTuple_GET_ITEM(seq, k);
    if (item == Py_None) return NULL;
    return PyLong_AsVoidPtr(item);
}

static int parse_manage(PyObject *t, manage_t *m) {
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 7) {
        PyErr_SetString(PyExc_ValueError, "expected 7 update-management values");
        return -1;
    }
    m->lr = PyFloat_AsDouble(PyTuple_GET_ITEM(t, 0));
    m->dw = (float)PyFloat_AsDouble(PyTuple_GET_ITEM(t, 1));
    m->desired_bl = (int)PyLong_AsLong(PyTuple_GET_ITEM(t, 2));
    m->fixed_bl = PyObject_IsTrue(PyTuple_GET_ITEM(t, 3));
    m->bl_management = PyObject_IsTrue(PyTuple_GET_ITEM(t, 4));
    m->update_management = PyObject_IsTrue(PyTuple_GET_ITEM(t, 5));
    m->um_grad_scale = (float)PyFloat_AsDouble(PyTuple_GET_ITEM(t, 6));
    return PyErr_Occurred() ? -1 : 0;
}

/* update(pointers, sizes, devices, manage, seed, flip, res, sto_round, threads)
 *   pointers: (x, d, bl, a, bx, in_starts, out_starts, x_given, d_given, params, cols, words, offsets, w, touched,
 *             d transposed (G, N, B) or None)
 *   sizes: (G, N, K, B, n_out, n_in, W): W words per train (ceil(longest train / 63), at most 8)
 *   devices: D tuples (kind, n_params, mult_noise, complex_noise, route, reference, sd, exp_a, exp_b, A_up, A_down,
 *            g_up, g_down, std_add, std_slope), one per device of the stack (w (D, G, N, K), params (D, G, N, K, n_params))
 *   manage: (|lr|, dw, desired_bl, fixed_bl, update_bl_management, update_management, um_grad_scale)
 *   bl, a, bx are written (the management of every row and tile) */
static PyObject *py_update(PyObject *self, PyObject *args) {
    PyObject *pointers, *sizes, *devices, *manage_args;
    unsigned long long seed;
    int flip, sto_round, threads;
    double res;
    if (!PyArg_ParseTuple(args, "O!O!O!OKidii", &PyTuple_Type, &pointers, &PyTuple_Type, &sizes, &PyTuple_Type,
                          &devices, &manage_args, &seed, &flip, &res, &sto_round, &threads))
        return NULL;
    const Py_ssize_t n_dev = PyTuple_GET_SIZE(devices);
    if (PyTuple_GET_SIZE(pointers) != 16 || PyTuple_GET_SIZE(sizes) != 7 || n_dev < 1 || n_dev > MAX_DEVICES) {
        PyErr_SetString(PyExc_ValueError, "update: expected 16 pointers, 7 sizes and 1 to 16 devices");
        return NULL;
    }
    job_t jb;
    if (parse_manage(manage_args, &jb.um)) return NULL;
    jb.x = ptr(pointers, 0);
    jb.d = ptr(pointers, 1);
    jb.bl = ptr(pointers, 2);
    jb.a = ptr(pointers, 3);
    jb.bx = ptr(pointers, 4);
    jb.in_starts = ptr(pointers, 5);
    jb.out_starts = ptr(pointers, 6);
    jb.x_given = ptr(pointers, 7);
    jb.d_given = ptr(pointers, 8);
    jb.params = ptr(pointers, 9);
    jb.cols = (int32_t *)ptr(pointers, 10);
    jb.words = (int64_t *)ptr(pointers, 11);
    jb.offsets = (int32_t *)ptr(pointers, 12);
    jb.w = (float *)ptr(pointers, 13);
    jb.touched = (uint8_t *)ptr(pointers, 14);
    jb.dt = ptr(pointers, 15);
    if (PyErr_Occurred()) return NULL;
    int64_t *dims[] = {&jb.G, &jb.N, &jb.K, &jb.B, &jb.n_out, &jb.n_in, &jb.W};
    for (int k = 0; k < 7; k++) *dims[k] = PyLong_AsLongLong(PyTuple_GET_ITEM(sizes, k));
    jb.n_dev = (int)n_dev;
    int bad = 0;
    for (int dd = 0; dd < jb.n_dev; dd++) {
        PyObject *t = PyTuple_GET_ITEM(devices, dd);
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 15) {
            PyErr_SetString(PyExc_ValueError, "update: every device is a tuple of 15 values");
            return NULL;
        }
        device_t *dv = &jb.dv[dd];
        int *ints[] = {&dv->kind, &dv->n_params, &dv->mult_noise, &dv->complex_noise, &dv->route, &dv->reference};
        for (int k = 0; k < 6; k++) *ints[k] = (int)PyLong_AsLong(PyTuple_GET_ITEM(t, k));
        float *fields[] = {&dv->sd, &dv->exp_a, &dv->exp_b, &dv->A_up, &dv->A_down, &dv->g_up, &dv->g_down,
                           &dv->std_add, &dv->std_slope};
        for (int k = 0; k < 9; k++) *fields[k] = (float)PyFloat_AsDouble(PyTuple_GET_ITEM(t, 6 + k));
        if (PyErr_Occurred()) return NULL;
        const int needed = (dv->kind == LINEAR_STEP || dv->kind == POW_STEP) ? 6 : 4;
        bad |= dv->reference < 0 || (dv->reference && dv->reference < needed) || dv->reference >= dv->n_params;
        bad |= dv->n_params < needed || dv->n_params != jb.dv[0].n_params || dv->route < 0 || dv->route > 2;
    }
    if (!jb.x || !jb.d || !jb.bl || !jb.a || !jb.bx || !jb.in_starts || !jb.out_starts || !jb.params || !jb.cols ||
        !jb.words || !jb.offsets || !jb.w || !jb.touched || bad || jb.K > INT32_MAX ||
        jb.W < 1 || jb.W > MAX_WORDS || ((jb.x_given || jb.d_given) && jb.W != 1)) {
        PyErr_SetString(PyExc_ValueError, "update: a needed pointer is missing or a size is out of range");
        return NULL;
    }
    jb.res = (float)res;
    jb.sto_round = sto_round;
    jb.flip = flip;
    jb.seed = seed;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = parallel(&jb, management, jb.G * jb.B, threads);
    if (!status) status = parallel(&jb, input_trains, jb.G * jb.B * jb.n_out, threads);
    if (!status) status = parallel(&jb, rows, jb.G * jb.N, threads);
    Py_END_ALLOW_THREADS
    if (status) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* management(x_max, d_max, n, manage, bl, a, b): the management of n (x_max, d_max)
 * pairs (float32 arrays; bl int32), for the tests against the torch path's. */
static PyObject *py_management(PyObject *self, PyObject *args) {
    PyObject *px, *pd, *manage_args, *pbl, *pa, *pb;
    long long n;
    if (!PyArg_ParseTuple(args, "OOLOOOO", &px, &pd, &n, &manage_args, &pbl, &pa, &pb)) return NULL;
    manage_t m;
    if (parse_manage(manage_args, &m)) return NULL;
    const float *x_max = PyLong_AsVoidPtr(px), *d_max = PyLong_AsVoidPtr(pd);
    int32_t *bl = PyLong_AsVoidPtr(pbl);
    float *a = PyLong_AsVoidPtr(pa), *b = PyLong_AsVoidPtr(pb);
    if (PyErr_Occurred()) return NULL;
    for (long long k = 0; k < n; k++) manage(&m, x_max[k], d_max[k], bl + k, a + k, b + k);
    Py_RETURN_NONE;
}

/* normals(out, n, seed): n standard normals of the kernel's generator (stream 0
 * of `seed`), for the tests of its distribution. */
static PyObject *py_normals(PyObject *self, PyObject *args) {
    PyObject *address;
    long long n;
    unsigned long long seed;
    if (!PyArg_ParseTuple(args, "OLK", &address, &n, &seed)) return NULL;
    float *out = PyLong_AsVoidPtr(address);
    if (PyErr_Occurred()) return NULL;
    rng_t rng;
    seed_rng(rng, seed, 1, 0);
    for (long long k = 0; k < n; k++) out[k] = standard_normal(rng);
    Py_RETURN_NONE;
}

static PyObject *py_openmp(PyObject *self, PyObject *args) {
#ifdef _OPENMP
    Py_RETURN_TRUE;
#else
    Py_RETURN_FALSE;
#endif
}

static PyMethodDef methods[] = {
    {"openmp", py_openmp, METH_NOARGS, "Whether the update runs on OpenMP threads (else POSIX threads)."},
    {"update", py_update, METH_VARARGS, "The stochastic pulsed update of tile groups (see the file)."},
    {"management", py_management, METH_VARARGS, "Update management of (x_max, d_max) pairs, for tests."},
    {"normals", py_normals, METH_VARARGS, "Standard normals of the kernel's generator, for tests."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pulsed", "Pulsed-update kernels on CPU.", -1, methods};

PyMODINIT_FUNC PyInit__pulsed(void) {
    build_tables();
    return PyModule_Create(&module);
}
