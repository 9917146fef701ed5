/* fxanalog._pulsed: the coincidences and pulses of the pulsed update on CPU.
 *
 * The semantics are those of fxanalog/ops/tile_update_torch.py (docs/training.md):
 * for every cross-point (i, j) of a group's (N, K) tile weights and every batch
 * row b in order, n = popcount(x_word[b][o(i)][j] & d_word[i][b][p(j)]) pulses
 * (bit t of a word: the line fired in slot t; o(i) the output piece of row i,
 * p(j) the input piece of column j), all in one direction (down where d_i and
 * x_j have the same sign, for a positive learning rate), each with its own
 * standard normal draw, the device's step at the current weight, then the clip
 * to the cross-point's bounds. The pulse trains themselves are drawn by the
 * caller (torch), so this file and the Python loop of the torch path apply the
 * same pulses.
 *
 * Work is split by rows: update_rows(.., row0, row1, ..) touches only rows
 * [row0, row1) of w, so callers run disjoint row ranges on several threads
 * (the GIL is released). Each row draws from its own xoshiro256++ stream
 * seeded from (seed, group, row) by splitmix64, so the numbers do not depend
 * on the thread count. Normals: Box-Muller in double precision (one pair per
 * two pulses of the row's stream).
 *
 * Arithmetic is float32, in the order of fxanalog/devices.py's one_pulse,
 * built with -ffp-contract=off (no fused multiply-adds).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>

/* device kinds (fxanalog/devices.py) */
enum { CONSTANT_STEP = 1, LINEAR_STEP = 2, EXP_STEP = 3, POW_STEP = 4 };

typedef struct {
    uint64_t s[4];
    int has_spare;
    double spare;
} rng_t;

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t next64(rng_t *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[0] + s[3], 23) + s[0];
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static void seed_rng(rng_t *r, uint64_t seed, uint64_t stream) {
    uint64_t x = seed ^ (stream * 0xd1342543de82ef95ULL);
    for (int k = 0; k < 4; k++) r->s[k] = splitmix64(&x);
    r->has_spare = 0;
}

static inline double uniform_open(rng_t *r) { /* (0, 1) */
    return ((double)(next64(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static inline float gauss(rng_t *r) {
    if (r->has_spare) {
        r->has_spare = 0;
        return (float)r->spare;
    }
    double u = uniform_open(r), v = uniform_open(r);
    double rad = sqrt(-2.0 * log(u)), ang = 6.283185307179586 * v;
    r->spare = rad * sin(ang);
    r->has_spare = 1;
    return (float)(rad * cos(ang));
}

typedef struct {
    int kind, mult_noise, complex_noise;
    float sd, exp_a, exp_b, A_up, A_down, g_up, g_down, std_add, std_slope;
    const float *b_max, *b_min, *scale_up, *scale_down, *slope_up, *slope_down, *gamma_up, *gamma_down;
} device_t;

/* One pulse at cross-point k (index into the state arrays), as devices.one_pulse. */
static inline float one_pulse(const device_t *dv, int64_t k, float w, int down, float xi) {
    const float bmax = dv->b_max[k], bmin = dv->b_min[k];
    const float sign = down ? -1.0f : 1.0f;
    const float scale = down ? dv->scale_down[k] : dv->scale_up[k];
    const float sd = dv->sd;
    switch (dv->kind) {
    case CONSTANT_STEP:
        w = w + sign * scale * (1.0f + sd * xi);
        break;
    case LINEAR_STEP: {
        const float slope = down ? dv->slope_down[k] : dv->slope_up[k];
        if (dv->mult_noise)
            w = w + sign * (slope * w + scale) * (1.0f + sd * xi);
        else
            w = w + sign * (slope * w + scale * (1.0f + sd * xi));
        break;
    }
    case EXP_STEP: {
        const float span = bmax - bmin;
        if (!(span > 0.0f)) return w; /* a cross-point without range is never updated */
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
        if (span == 0.0f) return w;
        const float gamma = down ? dv->gamma_down[k] : dv->gamma_up[k];
        float frac = down ? (w - bmin) / span : (bmax - w) / span;
        if (frac < 0.0f) frac = 0.0f;
        w = w + sign * scale * powf(frac, gamma) * (1.0f + sd * xi);
        break;
    }
    default:
        return w;
    }
    if (w < bmin) w = bmin;
    if (w > bmax) w = bmax;
    return w;
}

typedef struct {
    float *w;                    /* (N, K), changed */
    uint8_t *touched;            /* (N, K), set where a pulse landed */
    const int64_t *x_words;      /* (B, n_out, K) */
    const int64_t *d_words;      /* (N, B, n_in): row-major per weight row */
    const uint8_t *x_neg;        /* (B, K) */
    const uint8_t *d_neg;        /* (B, N) */
    const int32_t *row_piece;    /* (N,) output piece of each row */
    const int32_t *col_piece;    /* (K,) input piece of each column */
    const int64_t *active_ptr;   /* (B * n_out * n_in + 1,) CSR per (row b, output piece, input piece)
                                    of the columns whose x word is not 0 */
    const int32_t *active_cols;
    int64_t N, K, B, n_out, n_in;
    int flip;                    /* 1 for a negative learning rate */
    uint64_t seed, stream0;      /* row i draws from stream stream0 + i */
} job_t;

static void update_rows(const job_t *jb, const device_t *dv, int64_t row0, int64_t row1) {
    const int64_t N = jb->N, K = jb->K, n_out = jb->n_out, n_in = jb->n_in;
    for (int64_t i = row0; i < row1; i++) {
        rng_t rng;
        seed_rng(&rng, jb->seed, jb->stream0 + (uint64_t)i);
        const int64_t o = jb->row_piece[i];
        float *wrow = jb->w + i * K;
        uint8_t *trow = jb->touched + i * K;
        const int64_t *drow = jb->d_words + i * jb->B * n_in;
        for (int64_t b = 0; b < jb->B; b++) {
            const int64_t *dw = drow + b * n_in; /* the error line's word for each input piece */
            int64_t any = 0;
            for (int64_t p = 0; p < n_in; p++) any |= dw[p];
            if (!any) continue;
            const int dneg = jb->d_neg[b * N + i];
            const int64_t *xw = jb->x_words + (b * n_out + o) * K;
            const uint8_t *xneg = jb->x_neg + b * K;
            const int64_t *seg = jb->active_ptr + (b * n_out + o) * n_in;
            for (int64_t p = 0; p < n_in; p++) {
                const int64_t dword = dw[p];
                if (!dword) continue; /* the error line did not fire for this tile */
                for (int64_t c = seg[p]; c < seg[p + 1]; c++) {
                    const int64_t j = jb->active_cols[c];
                    const int n = __builtin_popcountll((uint64_t)(xw[j] & dword));
                    if (!n) continue;
                    const int down = (dneg == xneg[j]) ^ jb->flip;
                    const int64_t k = i * K + j;
                    float w = wrow[j];
                    for (int q = 0; q < n; q++) w = one_pulse(dv, k, w, down, dv->sd != 0.0f ? gauss(&rng) : 0.0f);
                    wrow[j] = w;
                    trow[j] = 1;
                }
            }
        }
    }
}

static const void *ptr(PyObject *seq, Py_ssize_t k) {
    PyObject *item = PyTuple_GET_ITEM(seq, k);
    if (item == Py_None) return NULL;
    return PyLong_AsVoidPtr(item);
}

/* update_rows(pointers: tuple, sizes: tuple, device: tuple, seed, stream0, flip, row0, row1)
 *   pointers: (w, touched, x_words, d_words, x_neg, d_neg, row_piece, col_piece, active_ptr, active_cols,
 *              b_max, b_min, scale_up, scale_down, slope_up, slope_down, gamma_up, gamma_down)  (ints or None)
 *   sizes: (N, K, B, n_out, n_in)
 *   device: (kind, mult_noise, complex_noise, sd, exp_a, exp_b, A_up, A_down, g_up, g_down, std_add, std_slope) */
static PyObject *py_update_rows(PyObject *self, PyObject *args) {
    PyObject *pointers, *sizes, *device;
    unsigned long long seed, stream0;
    int flip;
    long long row0, row1;
    if (!PyArg_ParseTuple(args, "O!O!O!KKiLL", &PyTuple_Type, &pointers, &PyTuple_Type, &sizes, &PyTuple_Type,
                          &device, &seed, &stream0, &flip, &row0, &row1))
        return NULL;
    if (PyTuple_GET_SIZE(pointers) != 18 || PyTuple_GET_SIZE(sizes) != 5 || PyTuple_GET_SIZE(device) != 12) {
        PyErr_SetString(PyExc_ValueError, "update_rows: expected 18 pointers, 5 sizes and 12 device values");
        return NULL;
    }
    job_t jb;
    device_t dv;
    jb.w = (float *)ptr(pointers, 0);
    jb.touched = (uint8_t *)ptr(pointers, 1);
    jb.x_words = ptr(pointers, 2);
    jb.d_words = ptr(pointers, 3);
    jb.x_neg = ptr(pointers, 4);
    jb.d_neg = ptr(pointers, 5);
    jb.row_piece = ptr(pointers, 6);
    jb.col_piece = ptr(pointers, 7);
    jb.active_ptr = ptr(pointers, 8);
    jb.active_cols = ptr(pointers, 9);
    dv.b_max = ptr(pointers, 10);
    dv.b_min = ptr(pointers, 11);
    dv.scale_up = ptr(pointers, 12);
    dv.scale_down = ptr(pointers, 13);
    dv.slope_up = ptr(pointers, 14);
    dv.slope_down = ptr(pointers, 15);
    dv.gamma_up = ptr(pointers, 16);
    dv.gamma_down = ptr(pointers, 17);
    if (PyErr_Occurred()) return NULL;
    jb.N = PyLong_AsLongLong(PyTuple_GET_ITEM(sizes, 0));
    jb.K = PyLong_AsLongLong(PyTuple_GET_ITEM(sizes, 1));
    jb.B = PyLong_AsLongLong(PyTuple_GET_ITEM(sizes, 2));
    jb.n_out = PyLong_AsLongLong(PyTuple_GET_ITEM(sizes, 3));
    jb.n_in = PyLong_AsLongLong(PyTuple_GET_ITEM(sizes, 4));
    dv.kind = (int)PyLong_AsLong(PyTuple_GET_ITEM(device, 0));
    dv.mult_noise = (int)PyLong_AsLong(PyTuple_GET_ITEM(device, 1));
    dv.complex_noise = (int)PyLong_AsLong(PyTuple_GET_ITEM(device, 2));
    float *fields[] = {&dv.sd, &dv.exp_a, &dv.exp_b, &dv.A_up, &dv.A_down, &dv.g_up, &dv.g_down, &dv.std_add,
                       &dv.std_slope};
    for (int k = 0; k < 9; k++) *fields[k] = (float)PyFloat_AsDouble(PyTuple_GET_ITEM(device, 3 + k));
    if (PyErr_Occurred()) return NULL;
    if (!jb.w || !jb.touched || !jb.x_words || !jb.d_words || !dv.b_max || !dv.b_min || !dv.scale_up ||
        !dv.scale_down || (dv.kind == LINEAR_STEP && (!dv.slope_up || !dv.slope_down)) ||
        (dv.kind == POW_STEP && (!dv.gamma_up || !dv.gamma_down)) || row0 < 0 || row1 > jb.N || row0 > row1) {
        PyErr_SetString(PyExc_ValueError, "update_rows: a needed pointer is missing or the rows are out of range");
        return NULL;
    }
    jb.flip = flip;
    jb.seed = seed;
    jb.stream0 = stream0;
    Py_BEGIN_ALLOW_THREADS
    update_rows(&jb, &dv, row0, row1);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"update_rows", py_update_rows, METH_VARARGS, "The pulses of rows [row0, row1) of one tile group (see the file)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pulsed", "Pulsed-update kernels on CPU.", -1, methods};

PyMODINIT_FUNC PyInit__pulsed(void) { return PyModule_Create(&module); }
