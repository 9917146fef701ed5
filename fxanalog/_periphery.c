/* fxanalog._periphery: the DAC and ADC passes of a tile MVM on CPU.
 *
 * The torch path of fxanalog::tile_mvm (fxanalog/ops/tile_mvm_torch.py,
 * docs/tile.md "One tile, one input vector") computes one tile's periphery
 * as a dozen elementwise torch ops around its GEMM. For float32 rows of one
 * input piece it calls these two passes instead, which compute the same
 * numbers (the float32 operations in the same order; built with
 * -ffp-contract=off), each in one sweep over the data:
 *
 * dac: per row r of K inputs, the noise-management scale alpha_r (max|x| of
 *      the row, capped at nm_thres when > 0; or a constant), then the DAC in
 *      input steps: v = clamp(rint((x * (1 / alpha_r)) / dx), -bound, bound)
 *      (no division and no rounding when dx = 0: unquantized). Returns
 *      whether every alpha_r is at least 2^-64 (not NaN): the torch path
 *      handles the other rows (zero, tiny or NaN scales).
 * adc: the ADC's rounding to whole output steps (when quantized), in place,
 *      and max |y| (a NaN if any y is NaN), for bound management's test.
 * scale: the digital tail of a tile that bound management left alone:
 *      out = y * row_r (+ bias_j), row_r = alpha_r * s in float32. With a
 *      bias, y * row_r + bias_j is rounded once (as torch.addcmul with a
 *      fused multiply-add): the product of two floats is exact in double.
 *
 * rint is round half to even, as torch.round: |t| < 2^23 is rounded by
 * adding and subtracting 2^23 (exact in float32 arithmetic), larger values
 * are integers already; NaN and infinities pass. Large passes run on
 * OpenMP threads where the compiler has OpenMP (setup.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_X86_SIMD 1 /* the loops are also built for AVX2, picked at import (__builtin_cpu_supports) */
#else
#define HAVE_X86_SIMD 0
#endif

#define MIN_PARALLEL (1LL << 16) /* elements: smaller passes run on the calling thread */
#define TINY_SCALE 0x1p-64f      /* fxanalog/ops/tile_mvm_torch.py's TINY_SCALE */
#define INLINE static inline __attribute__((always_inline))

INLINE int32_t bits_of(float v) {
    int32_t b;
    memcpy(&b, &v, sizeof b);
    return b;
}

INLINE float from_bits(int32_t b) {
    float r;
    memcpy(&r, &b, sizeof r);
    return r;
}

/* |v|'s bits: as a (non-negative) integer they order as the number does,
 * and every NaN's exceed infinity's (so in a max a NaN wins). */
INLINE int32_t abs_bits(float v) { return bits_of(v) & 0x7fffffff; }

/* Round half to even, branch-free and with integer compares (a float
 * compare may trap, which keeps the compiler from vectorizing a select). */
INLINE float rint_even(float t) {
    const int32_t tb = bits_of(t), ab = tb & 0x7fffffff; /* |t| */
    const float a = from_bits(ab), r = (a + 0x1p23f) - 0x1p23f;
    const int32_t small = -(int32_t)(ab < 0x4b000000); /* |t| < 2^23 (NaN's bits are larger) */
    return from_bits(((bits_of(r) & small) | (ab & ~small)) | (tb & (int32_t)0x80000000u));
}

INLINE float clamp(float t, float bound) { return t < -bound ? -bound : (t > bound ? bound : t); } /* NaN passes */

typedef struct {
    const float *x;
    float *v, *alpha, *y;
    const float *bias;
    int64_t K, N, B;
    int abs_max, rounded;
    float cap, dx, bound, s;
} pass_t;

/* Rows [r0, r1) of the DAC; returns 1 when a scale is below 2^-64 or NaN. */
INLINE int dac_body(const pass_t *p, int64_t r0, int64_t r1) {
    const int64_t K = p->K;
    int bad = 0;
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = p->x + r * K;
        float *vr = p->v + r * K;
        float a = p->cap; /* the constant scale, or the cap of max|x| */
        if (p->abs_max) {
            int32_t m = 0;
            for (int64_t k = 0; k < K; k++) {
                const int32_t b = abs_bits(xr[k]);
                m = b > m ? b : m;
            }
            const float mx = from_bits(m);
            a = (p->cap > 0.0f && mx > p->cap) ? p->cap : mx; /* NaN stays NaN */
        }
        p->alpha[r] = a;
        if (!(a >= TINY_SCALE)) {
            bad = 1;
            continue;
        }
        const float inv = 1.0f / a, dx = p->dx, bound = p->bound;
        if (dx > 0.0f) {
            for (int64_t k = 0; k < K; k++) vr[k] = clamp(rint_even((xr[k] * inv) / dx), bound);
        } else {
            for (int64_t k = 0; k < K; k++) vr[k] = clamp(xr[k] * inv, bound);
        }
    }
    return bad;
}

/* Elements [k0, k1) of the ADC: rounded in place (when quantized); returns max |y|'s bits. */
INLINE int32_t adc_body(const pass_t *p, int64_t k0, int64_t k1) {
    float *y = p->y;
    int32_t m = 0;
    if (p->rounded) {
        for (int64_t k = k0; k < k1; k++) {
            const float t = rint_even(y[k]);
            y[k] = t;
            const int32_t b = abs_bits(t);
            m = b > m ? b : m;
        }
    } else {
        for (int64_t k = k0; k < k1; k++) {
            const int32_t b = abs_bits(y[k]);
            m = b > m ? b : m;
        }
    }
    return m;
}

/* Rows [r0, r1) of the digital tail. */
INLINE int32_t scale_body(const pass_t *p, int64_t r0, int64_t r1) {
    const int64_t N = p->N;
    for (int64_t r = r0; r < r1; r++) {
        float *yr = p->y + r * N;
        const float row = p->alpha[r] * p->s;
        if (p->bias) {
            const float *br = p->bias + (r / p->B) * N;
            for (int64_t j = 0; j < N; j++) yr[j] = (float)((double)yr[j] * (double)row + (double)br[j]);
        } else {
            for (int64_t j = 0; j < N; j++) yr[j] = yr[j] * row;
        }
    }
    return 0;
}

typedef int32_t (*range_fn)(const pass_t *, int64_t, int64_t);

static int32_t dac_default(const pass_t *p, int64_t a, int64_t b) { return dac_body(p, a, b); }
static int32_t adc_default(const pass_t *p, int64_t a, int64_t b) { return adc_body(p, a, b); }
static int32_t scale_default(const pass_t *p, int64_t a, int64_t b) { return scale_body(p, a, b); }
static range_fn dac_fn = dac_default, adc_fn = adc_default, scale_fn = scale_default;

#if HAVE_X86_SIMD
__attribute__((target("avx2"))) static int32_t dac_avx2(const pass_t *p, int64_t a, int64_t b) { return dac_body(p, a, b); }
__attribute__((target("avx2"))) static int32_t adc_avx2(const pass_t *p, int64_t a, int64_t b) { return adc_body(p, a, b); }
__attribute__((target("avx2"))) static int32_t scale_avx2(const pass_t *p, int64_t a, int64_t b) {
    return scale_body(p, a, b);
}
#endif

/* fn over [0, total) in `threads` contiguous ranges (on OpenMP threads when
 * the work is large; without OpenMP one after another); combines the
 * results with max (dac: 1 = a bad row). */
static int32_t run(range_fn fn, const pass_t *p, int64_t total, int64_t elements, int threads) {
    if (threads > total) threads = (int)(total > 0 ? total : 1);
    if (threads <= 1 || elements < MIN_PARALLEL) return fn(p, 0, total);
    int32_t m = 0;
#pragma omp parallel for num_threads(threads) schedule(static, 1) reduction(max : m)
    for (int t = 0; t < threads; t++) {
        const int32_t r = fn(p, total * t / threads, total * (t + 1) / threads);
        m = r > m ? r : m;
    }
    return m;
}

/* dac(x, v, alpha, rows, K, abs_max, scale, dx, bound, threads) -> bool */
static PyObject *py_dac(PyObject *self, PyObject *args) {
    PyObject *px, *pv, *pa;
    long long rows, K;
    int abs_max, threads;
    double scale, dx, bound;
    if (!PyArg_ParseTuple(args, "OOOLLpdddi", &px, &pv, &pa, &rows, &K, &abs_max, &scale, &dx, &bound, &threads))
        return NULL;
    pass_t p = {.x = PyLong_AsVoidPtr(px), .v = PyLong_AsVoidPtr(pv), .alpha = PyLong_AsVoidPtr(pa), .K = K,
                .abs_max = abs_max, .cap = (float)scale, .dx = (float)dx, .bound = (float)bound};
    if (PyErr_Occurred()) return NULL;
    int32_t bad;
    Py_BEGIN_ALLOW_THREADS
    bad = run(dac_fn, &p, rows, rows * K, threads);
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(!bad);
}

/* adc(y, n, rounded, threads) -> max |y| after the rounding */
static PyObject *py_adc(PyObject *self, PyObject *args) {
    PyObject *py;
    long long n;
    int rounded, threads;
    if (!PyArg_ParseTuple(args, "OLpi", &py, &n, &rounded, &threads)) return NULL;
    pass_t p = {.y = PyLong_AsVoidPtr(py), .rounded = rounded};
    if (PyErr_Occurred()) return NULL;
    int32_t m;
    Py_BEGIN_ALLOW_THREADS
    m = run(adc_fn, &p, n, n, threads);
    Py_END_ALLOW_THREADS
    return PyFloat_FromDouble((double)from_bits(m));
}

/* scale(y, alpha, bias, G, B, N, s, threads): y[g, b, :] = y * (alpha[g, b] * s) (+ bias[g, :]), in place */
static PyObject *py_scale(PyObject *self, PyObject *args) {
    PyObject *py, *pa, *pb;
    long long G, B, N;
    double s;
    int threads;
    if (!PyArg_ParseTuple(args, "OOOLLLdi", &py, &pa, &pb, &G, &B, &N, &s, &threads)) return NULL;
    pass_t p = {.y = PyLong_AsVoidPtr(py), .alpha = PyLong_AsVoidPtr(pa),
                .bias = pb == Py_None ? NULL : PyLong_AsVoidPtr(pb), .N = N, .B = B, .s = (float)s};
    if (PyErr_Occurred()) return NULL;
    Py_BEGIN_ALLOW_THREADS
    run(scale_fn, &p, G * B, G * B * N, threads);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"dac", py_dac, METH_VARARGS, "Noise management and the DAC of float32 rows (see the file)."},
    {"adc", py_adc, METH_VARARGS, "The ADC's rounding in place; returns max |y| (see the file)."},
    {"scale", py_scale, METH_VARARGS, "The digital tail: y * alpha * s (+ bias), in place (see the file)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_periphery", "The tile MVM's DAC and ADC passes on CPU.",
                                    -1, methods};

PyMODINIT_FUNC PyInit__periphery(void) {
#if HAVE_X86_SIMD
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) dac_fn = dac_avx2, adc_fn = adc_avx2, scale_fn = scale_avx2;
#endif
    return PyModule_Create(&module);
}
