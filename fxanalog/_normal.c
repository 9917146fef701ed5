/* Standard normal float32 numbers, fast, for fxanalog._rng.
 *
 * One call draws one chunk of numbers from its own generator state: nine
 * xoshiro256++ generators (Blackman and Vigna, 2019; 256 bits of state,
 * period 2^256 - 1), eight "lanes" and one "fix-up" generator, whose 36
 * words of 64 bits the caller draws from torch's default generator
 * (fxanalog/_rng.py).
 *
 * Distribution: the ziggurat method of _ziggurat.h (256 layers, one 32-bit
 * attempt per number); the rejected attempts are finished with the fix-up
 * generator.
 *
 * The order, which every implementation below follows (so a state gives the
 * same numbers on every CPU): attempt t (t = 0..n-1) is half t / 8 % 2
 * (0: low 32 bits, 1: high) of the (t / 16)-th output of lane t % 8, the
 * lanes advancing together a block of 16 at a time. Rejected attempts are
 * finished with the fix-up generator in increasing t. So the eight lanes
 * can run in SIMD registers (AVX-512: one register, AVX2: two), branch-free,
 * and the rare rejected attempts run after them in plain C. The SIMD passes
 * fetch a layer's K and W with one 64-bit gather from KW.
 *
 * The call takes the 72 words of 32 bits of its state (see seed()).
 * add = 1 writes out[t] + std * z (a float multiply, then an add; built
 * with -ffp-contract=off so no compiler fuses them), add = 0 writes z.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "_ziggurat.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X86_SIMD 1
#else
#define HAVE_X86_SIMD 0
#endif

#define LANES 8
#define BLOCK (2 * LANES)  /* attempts per lane step */
#define SEG_BLOCKS 128     /* blocks per segment: the rejected list (16 KB) fits on any thread stack */

static uint64_t KW[LAYERS]; /* K[i] | bits of W[i] << 32: one 64-bit gather fetches both (SIMD) */

static void build_kw(void) {
    for (int i = 0; i < LAYERS; ++i) {
        uint32_t w_bits;
        memcpy(&w_bits, &W[i], sizeof w_bits);
        KW[i] = (uint64_t)K[i] | ((uint64_t)w_bits << 32);
    }
}

typedef struct {
    uint64_t s[4][LANES]; /* lane states, word-major (one SIMD load a word) */
    uint64_t fix[4];      /* the fix-up generator */
} gen_t;

/* 72 words of 32 bits (as int64 values): generator g (lanes 0-7, fix-up 8)
 * has s_i = w[8g + 2i] | w[8g + 2i + 1] << 32. An all-zero state (chance
 * 2^-256) would never move: its s_0 becomes 1. */
static void seed(gen_t *g, const int64_t *w) {
    for (int k = 0; k <= LANES; ++k) {
        uint64_t s[4];
        for (int i = 0; i < 4; ++i)
            s[i] = ((uint64_t)w[8 * k + 2 * i] & 0xffffffffu) | ((uint64_t)w[8 * k + 2 * i + 1] << 32);
        if ((s[0] | s[1] | s[2] | s[3]) == 0)
            s[0] = 1;
        for (int i = 0; i < 4; ++i) {
            if (k < LANES)
                g->s[i][k] = s[i];
            else
                g->fix[i] = s[i];
        }
    }
}

/* The rejected attempts of a segment: position in out, and u. */
typedef struct {
    int64_t n;
    uint32_t pos[SEG_BLOCKS * BLOCK + BLOCK]; /* + BLOCK: SIMD appends write a whole block */
    uint32_t u[SEG_BLOCKS * BLOCK + BLOCK];
} rejects_t;

/* One lane step in plain C: the 16 attempts of a block. */
static inline void block_words(gen_t *g, uint32_t u[BLOCK]) {
    for (int l = 0; l < LANES; ++l) {
        uint64_t s[4] = {g->s[0][l], g->s[1][l], g->s[2][l], g->s[3][l]};
        uint64_t r = next64(s);
        for (int i = 0; i < 4; ++i)
            g->s[i][l] = s[i];
        u[l] = (uint32_t)r;
        u[l + LANES] = (uint32_t)(r >> 32);
    }
}

/* Pass 1 over nb whole blocks at out: accepted attempts written, rejected
 * ones listed (in add mode their out is left as it is). */
static void fast_scalar(float *out, int64_t nb, gen_t *g, float std, int add, rejects_t *rej) {
    for (int64_t b = 0; b < nb; ++b) {
        uint32_t u[BLOCK];
        block_words(g, u);
        float *o = out + b * BLOCK;
        for (int i = 0; i < BLOCK; ++i) {
            uint32_t layer = u[i] & (LAYERS - 1), j = u[i] >> 9;
            if (j < K[layer]) {
                float z = flip((float)j * W[layer], u[i]);
                o[i] = add ? o[i] + std * z : z;
            } else {
                rej->pos[rej->n] = (uint32_t)(b * BLOCK + i);
                rej->u[rej->n++] = u[i];
            }
        }
    }
}

#if HAVE_X86_SIMD
__attribute__((target("avx512f"))) static void fast_avx512(float *out, int64_t nb, gen_t *g, float std, int add,
                                                           rejects_t *rej) {
    __m512i s0 = _mm512_loadu_si512(g->s[0]), s1 = _mm512_loadu_si512(g->s[1]);
    __m512i s2 = _mm512_loadu_si512(g->s[2]), s3 = _mm512_loadu_si512(g->s[3]);
    const __m512i layer_mask = _mm512_set1_epi32(LAYERS - 1), sign_bit = _mm512_set1_epi32(LAYERS);
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512 stdv = _mm512_set1_ps(std);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (int64_t b = 0; b < nb; ++b) {
        __m512i r = _mm512_add_epi64(_mm512_rol_epi64(_mm512_add_epi64(s0, s3), 23), s0);
        __m512i t = _mm512_slli_epi64(s1, 17);
        s2 = _mm512_xor_si512(s2, s0);
        s3 = _mm512_xor_si512(s3, s1);
        s1 = _mm512_xor_si512(s1, s2);
        s0 = _mm512_xor_si512(s0, s3);
        s2 = _mm512_xor_si512(s2, t);
        s3 = _mm512_rol_epi64(s3, 45);
        __m256i lo = _mm512_cvtepi64_epi32(r), hi = _mm512_cvtepi64_epi32(_mm512_srli_epi64(r, 32));
        __m512i u = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
        __m512i layer = _mm512_and_si512(u, layer_mask), j = _mm512_srli_epi32(u, 9);
        /* K and W of each attempt's layer: two gathers of 8 (K, W) pairs, then even / odd words */
        __m512i g0 = _mm512_i32gather_epi64(_mm512_castsi512_si256(layer), (const void *)KW, 8);
        __m512i g1 = _mm512_i32gather_epi64(_mm512_extracti64x4_epi64(layer, 1), (const void *)KW, 8);
        __m512i k = _mm512_permutex2var_epi32(g0, even, g1);
        __m512 w = _mm512_castsi512_ps(_mm512_permutex2var_epi32(g0, odd, g1));
        __m512 z = _mm512_mul_ps(_mm512_cvtepi32_ps(j), w);
        z = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(z),
                                                 _mm512_slli_epi32(_mm512_and_si512(u, sign_bit), 23)));
        __mmask16 bad = _mm512_cmpge_epu32_mask(j, k);
        float *o = out + b * BLOCK;
        if (add)
            _mm512_mask_storeu_ps(o, (__mmask16)~bad, _mm512_add_ps(_mm512_loadu_ps(o), _mm512_mul_ps(stdv, z)));
        else
            _mm512_storeu_ps(o, z);
        /* append (compress in registers: a compress to memory is slow on some CPUs) */
        __m512i pos = _mm512_add_epi32(iota, _mm512_set1_epi32((int)(b * BLOCK)));
        _mm512_storeu_si512(rej->pos + rej->n, _mm512_maskz_compress_epi32(bad, pos));
        _mm512_storeu_si512(rej->u + rej->n, _mm512_maskz_compress_epi32(bad, u));
        rej->n += __builtin_popcount((unsigned)bad);
    }
    _mm512_storeu_si512(g->s[0], s0);
    _mm512_storeu_si512(g->s[1], s1);
    _mm512_storeu_si512(g->s[2], s2);
    _mm512_storeu_si512(g->s[3], s3);
}

static uint32_t compress8[256][8]; /* AVX2 compress: the set lanes of a mask, first */

static void build_compress8(void) {
    for (int m = 0; m < 256; ++m) {
        int n = 0;
        for (int i = 0; i < 8; ++i)
            if (m & (1 << i))
                compress8[m][n++] = (uint32_t)i;
        while (n < 8)
            compress8[m][n++] = 0;
    }
}

__attribute__((target("avx2"))) static inline __m256i rotl_avx2(__m256i x, int k) {
    return _mm256_or_si256(_mm256_slli_epi64(x, k), _mm256_srli_epi64(x, 64 - k));
}

/* The low (sel = 0) or high (sel = 1) 32-bit words of the 64-bit elements
 * of a then b, in order (shuffle_ps gives elements 0,1,4,5,2,3,6,7). */
__attribute__((target("avx2"))) static inline __m256i halves_avx2(__m256i a, __m256i b, int sel) {
    __m256 fa = _mm256_castsi256_ps(a), fb = _mm256_castsi256_ps(b);
    __m256 m = sel ? _mm256_shuffle_ps(fa, fb, _MM_SHUFFLE(3, 1, 3, 1)) : _mm256_shuffle_ps(fa, fb, _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_permute4x64_epi64(_mm256_castps_si256(m), _MM_SHUFFLE(3, 1, 2, 0));
}

__attribute__((target("avx2"))) static void fast_avx2(float *out, int64_t nb, gen_t *g, float std, int add,
                                                      rejects_t *rej) {
    __m256i s[4][2];
    for (int i = 0; i < 4; ++i) {
        s[i][0] = _mm256_loadu_si256((const __m256i *)g->s[i]);
        s[i][1] = _mm256_loadu_si256((const __m256i *)(g->s[i] + 4));
    }
    const __m256i layer_mask = _mm256_set1_epi32(LAYERS - 1), sign_bit = _mm256_set1_epi32(LAYERS);
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256 stdv = _mm256_set1_ps(std);
    for (int64_t b = 0; b < nb; ++b) {
        __m256i r[2];
        for (int h = 0; h < 2; ++h) { /* lanes 0-3, 4-7 */
            r[h] = _mm256_add_epi64(rotl_avx2(_mm256_add_epi64(s[0][h], s[3][h]), 23), s[0][h]);
            __m256i t = _mm256_slli_epi64(s[1][h], 17);
            s[2][h] = _mm256_xor_si256(s[2][h], s[0][h]);
            s[3][h] = _mm256_xor_si256(s[3][h], s[1][h]);
            s[1][h] = _mm256_xor_si256(s[1][h], s[2][h]);
            s[0][h] = _mm256_xor_si256(s[0][h], s[3][h]);
            s[2][h] = _mm256_xor_si256(s[2][h], t);
            s[3][h] = rotl_avx2(s[3][h], 45);
        }
        __m256i half[2] = {halves_avx2(r[0], r[1], 0), halves_avx2(r[0], r[1], 1)}; /* low, high words */
        for (int h = 0; h < 2; ++h) {
            __m256i u = half[h];
            __m256i layer = _mm256_and_si256(u, layer_mask), j = _mm256_srli_epi32(u, 9);
            __m256i g0 = _mm256_i32gather_epi64((const long long *)KW, _mm256_castsi256_si128(layer), 8);
            __m256i g1 = _mm256_i32gather_epi64((const long long *)KW, _mm256_extracti128_si256(layer, 1), 8);
            __m256i k = halves_avx2(g0, g1, 0);
            __m256 z = _mm256_mul_ps(_mm256_cvtepi32_ps(j), _mm256_castsi256_ps(halves_avx2(g0, g1, 1)));
            z = _mm256_castsi256_ps(_mm256_xor_si256(_mm256_castps_si256(z),
                                                     _mm256_slli_epi32(_mm256_and_si256(u, sign_bit), 23)));
            __m256i ok = _mm256_cmpgt_epi32(k, j); /* both below 2^24: a signed compare */
            float *o = out + b * BLOCK + h * LANES;
            if (add) {
                __m256 old = _mm256_loadu_ps(o);
                _mm256_storeu_ps(o, _mm256_blendv_ps(old, _mm256_add_ps(old, _mm256_mul_ps(stdv, z)),
                                                     _mm256_castsi256_ps(ok)));
            } else {
                _mm256_storeu_ps(o, z);
            }
            unsigned bad = ~(unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(ok)) & 0xffu;
            __m256i idx = _mm256_loadu_si256((const __m256i *)compress8[bad]);
            __m256i pos = _mm256_add_epi32(iota, _mm256_set1_epi32((int)(b * BLOCK + h * LANES)));
            _mm256_storeu_si256((__m256i *)(rej->pos + rej->n), _mm256_permutevar8x32_epi32(pos, idx));
            _mm256_storeu_si256((__m256i *)(rej->u + rej->n), _mm256_permutevar8x32_epi32(u, idx));
            rej->n += __builtin_popcount(bad);
        }
    }
    for (int i = 0; i < 4; ++i) {
        _mm256_storeu_si256((__m256i *)g->s[i], s[i][0]);
        _mm256_storeu_si256((__m256i *)(g->s[i] + 4), s[i][1]);
    }
}
#endif

typedef void (*fast_fn)(float *, int64_t, gen_t *, float, int, rejects_t *);

static const char *const isa_names[] = {"scalar", "avx2", "avx512"};
static const fast_fn isa_fns[] = {
    fast_scalar,
#if HAVE_X86_SIMD
    fast_avx2,
    fast_avx512,
#endif
};
static int isa_count = 1; /* how many of isa_fns this CPU runs */
static int isa = 0;       /* the one in use */

static void detect_isas(void) {
#if HAVE_X86_SIMD
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) {
        isa_count = 2;
        if (__builtin_cpu_supports("avx512f"))
            isa_count = 3;
    }
#endif
    isa = isa_count - 1;
}

static void fill_f32(float *out, int64_t n, const int64_t *words, float std, int add) {
    gen_t g;
    rejects_t rej;
    seed(&g, words);
    fast_fn fast = isa_fns[isa];
    int64_t whole = n / BLOCK;
    for (int64_t b0 = 0; b0 < whole; b0 += SEG_BLOCKS) {
        int64_t nb = whole - b0 < SEG_BLOCKS ? whole - b0 : SEG_BLOCKS;
        float *seg = out + b0 * BLOCK;
        rej.n = 0;
        fast(seg, nb, &g, std, add, &rej);
        for (int64_t r = 0; r < rej.n; ++r) {
            float z = finish(g.fix, rej.u[r]);
            float *o = seg + rej.pos[r];
            *o = add ? *o + std * z : z;
        }
    }
    int64_t m = n - whole * BLOCK; /* a last, partial block: its first m attempts */
    if (m > 0) {
        uint32_t u[BLOCK];
        float *o = out + whole * BLOCK;
        block_words(&g, u);
        for (int64_t i = 0; i < m; ++i) {
            uint32_t layer = u[i] & (LAYERS - 1), j = u[i] >> 9;
            float z = j < K[layer] ? flip((float)j * W[layer], u[i]) : finish(g.fix, u[i]);
            o[i] = add ? o[i] + std * z : z;
        }
    }
}

/* normal_f32(out_address, n, words_address, std, add): n numbers at the
 * float32 address (add: out += std * z; else out = z), from the 72 state
 * words (int64 values in [0, 2^32)) at words_address. Releases the GIL. */
static PyObject *py_normal_f32(PyObject *self, PyObject *args) {
    unsigned long long out, words;
    long long n;
    double std;
    int add;
    if (!PyArg_ParseTuple(args, "KLKdp", &out, &n, &words, &std, &add))
        return NULL;
    if (n < 0) {
        PyErr_Format(PyExc_ValueError, "normal_f32: n must be >= 0, got %lld", n);
        return NULL;
    }
    if (out == 0 || words == 0) {
        PyErr_SetString(PyExc_ValueError, "normal_f32: null address");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    fill_f32((float *)(uintptr_t)out, (int64_t)n, (const int64_t *)(uintptr_t)words, (float)std, add);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* tables() -> (X, f(X), W, K) as tuples, for the tests. */
static PyObject *py_tables(PyObject *self, PyObject *unused) {
    PyObject *x = PyTuple_New(LAYERS + 1), *f = PyTuple_New(LAYERS + 1);
    PyObject *w = PyTuple_New(LAYERS), *k = PyTuple_New(LAYERS);
    if (!x || !f || !w || !k) {
        Py_XDECREF(x);
        Py_XDECREF(f);
        Py_XDECREF(w);
        Py_XDECREF(k);
        return NULL;
    }
    for (int i = 0; i <= LAYERS; ++i) {
        PyTuple_SET_ITEM(x, i, PyFloat_FromDouble(X[i]));
        PyTuple_SET_ITEM(f, i, PyFloat_FromDouble(Fx[i]));
        if (i < LAYERS) {
            PyTuple_SET_ITEM(w, i, PyFloat_FromDouble(W[i]));
            PyTuple_SET_ITEM(k, i, PyLong_FromUnsignedLong(K[i]));
        }
    }
    return Py_BuildValue("(NNNN)", x, f, w, k);
}

/* isas() -> the instruction sets this CPU runs, in order of preference last. */
static PyObject *py_isas(PyObject *self, PyObject *unused) {
    PyObject *t = PyTuple_New(isa_count);
    if (!t)
        return NULL;
    for (int i = 0; i < isa_count; ++i)
        PyTuple_SET_ITEM(t, i, PyUnicode_FromString(isa_names[i]));
    return t;
}

/* isa([name]) -> the instruction set in use; with a name, switch to it
 * first (for tests and benchmarks: every one draws the same numbers). */
static PyObject *py_isa(PyObject *self, PyObject *args) {
    const char *name = NULL;
    if (!PyArg_ParseTuple(args, "|s", &name))
        return NULL;
    if (name) {
        int found = -1;
        for (int i = 0; i < isa_count; ++i)
            if (strcmp(name, isa_names[i]) == 0)
                found = i;
        if (found < 0) {
            PyObject *have = py_isas(self, NULL);
            if (have) {
                PyErr_Format(PyExc_ValueError, "fxanalog._normal: instruction set '%s' not available here; this CPU runs %R",
                             name, have);
                Py_DECREF(have);
            }
            return NULL;
        }
        isa = found;
    }
    return PyUnicode_FromString(isa_names[isa]);
}

static PyMethodDef methods[] = {
    {"normal_f32", py_normal_f32, METH_VARARGS, "Fill (or add std times) float32 standard normals at an address."},
    {"tables", py_tables, METH_NOARGS, "The ziggurat tables (X, f(X), W, K)."},
    {"isas", py_isas, METH_NOARGS, "The instruction sets this CPU runs."},
    {"isa", py_isa, METH_VARARGS, "The instruction set in use; isa(name) switches to it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_normal", "Fast float32 standard normals (ziggurat, xoshiro256++ lanes).", -1, methods};

PyMODINIT_FUNC PyInit__normal(void) {
    build_tables();
    build_kw();
#if HAVE_X86_SIMD
    build_compress8();
#endif
    detect_isas();
    return PyModule_Create(&module);
}
