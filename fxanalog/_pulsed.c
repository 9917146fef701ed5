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
 * on the thread count; within a row the pulses are applied column by column,
 * each cross-point's in batch-row order (the draws go to the pulses in that
 * order). Normals: Box-Muller in double precision (one pair per
 * two pulses of the row's stream).
 *
 * Arithmetic is float32, in the order of fxanalog/devices.py's one_pulse,
 * built with -ffp-contract=off (no fused multiply-adds).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
    int kind, n_params, mult_noise, complex_noise;
    float sd, exp_a, exp_b, A_up, A_down, g_up, g_down, std_add, std_slope;
    const float *params; /* (N, K, n_params): b_max, b_min, scale_up, scale_down, then slopes or exponents */
} device_t;

/* One pulse at a cross-point whose parameters are pr[0..n_params), as devices.one_pulse. */
static inline float one_pulse(const device_t *dv, const float *pr, float w, int down, float xi) {
    const float bmax = pr[0], bmin = pr[1];
    const float sign = down ? -1.0f : 1.0f;
    const float scale = down ? pr[3] : pr[2];
    const float sd = dv->sd;
    switch (dv->kind) {
    case CONSTANT_STEP:
        w = w + sign * scale * (1.0f + sd * xi);
        break;
    case LINEAR_STEP: {
        const float slope = down ? pr[5] : pr[4];
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
        const float gamma = down ? pr[5] : pr[4];
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

/* The pulses of one row, collected in batch-row order, then applied column by
 * column (a stable sort by column keeps each cross-point's batch-row order):
 * the row's weights and parameters are then read in increasing address order,
 * which the hardware prefetcher follows, instead of at scattered columns once
 * per batch row. */
typedef struct {
    int32_t j;
    int16_t n;
    int16_t down;
} event_t;

static void sort_by_column(event_t *ev, event_t *tmp, int64_t E, int64_t K, int32_t *count) {
    if (E < 48) { /* insertion sort, stable */
        for (int64_t a = 1; a < E; a++) {
            event_t v = ev[a];
            int64_t c = a - 1;
            while (c >= 0 && ev[c].j > v.j) {
                ev[c + 1] = ev[c];
                c--;
            }
            ev[c + 1] = v;
        }
        return;
    }
    memset(count, 0, (size_t)(K + 1) * sizeof(int32_t)); /* counting sort, stable */
    for (int64_t a = 0; a < E; a++) count[ev[a].j + 1]++;
    for (int64_t c = 0; c < K; c++) count[c + 1] += count[c];
    for (int64_t a = 0; a < E; a++) tmp[count[ev[a].j]++] = ev[a];
    memcpy(ev, tmp, (size_t)E * sizeof(event_t));
}

static int update_rows(const job_t *jb, const device_t *dv, int64_t row0, int64_t row1) {
    const int64_t K = jb->K, n_out = jb->n_out, n_in = jb->n_in;
    int64_t cap = 1024;
    event_t *ev = malloc((size_t)cap * sizeof(event_t)), *tmp = malloc((size_t)cap * sizeof(event_t));
    int32_t *count = malloc((size_t)(K + 1) * sizeof(int32_t));
    if (!ev || !tmp || !count) {
        free(ev);
        free(tmp);
        free(count);
        return -1;
    }
    for (int64_t i = row0; i < row1; i++) {
        const int64_t o = jb->row_piece[i];
        const int64_t *drow = jb->d_words + i * jb->B * n_in;
        int64_t E = 0;
        for (int64_t b = 0; b < jb->B; b++) {
            const int64_t *dw = drow + b * n_in; /* the error line's word for each input piece */
            int64_t any = 0;
            for (int64_t p = 0; p < n_in; p++) any |= dw[p];
            if (!any) continue;
            const int dneg = jb->d_neg[b * jb->N + i];
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
                    if (E == cap) {
                        cap *= 2;
                        event_t *a = realloc(ev, (size_t)cap * sizeof(event_t));
                        event_t *bb = a ? realloc(tmp, (size_t)cap * sizeof(event_t)) : NULL;
                        if (!a || !bb) {
                            free(a ? a : ev);
                            free(bb ? bb : tmp);
                            free(count);
                            return -1;
                        }
                        ev = a;
                        tmp = bb;
                    }
                    ev[E].j = (int32_t)j;
                    ev[E].n = (int16_t)n;
                    ev[E].down = (int16_t)((dneg == xneg[j]) ^ jb->flip);
                    E++;
                }
            }
        }
        if (!E) continue;
        sort_by_column(ev, tmp, E, K, count);
        rng_t rng;
        seed_rng(&rng, jb->seed, jb->stream0 + (uint64_t)i);
        float *wrow = jb->w + i * K;
        uint8_t *trow = jb->touched + i * K;
        const float *prow = dv->params + i * K * dv->n_params;
        for (int64_t a = 0; a < E;) {
            const int64_t j = ev[a].j;
            const float *pr = prow + j * dv->n_params;
            float w = wrow[j];
            for (; a < E && ev[a].j == j; a++) /* every batch row's pulses at (i, j), in order */
                for (int q = 0; q < ev[a].n; q++)
                    w = one_pulse(dv, pr, w, ev[a].down, dv->sd != 0.0f ? gauss(&rng) : 0.0f);
            wrow[j] = w;
            trow[j] = 1;
        }
    }
    free(ev);
    free(tmp);
    free(count);
    return 0;
}

static const void *ptr(PyObject *seq, Py_ssize_t k) {
    PyObject *item = PyTuple_GET_ITEM(seq, k);
    if (item == Py_None) return NULL;
    return PyLong_AsVoidPtr(item);
}

/* update_rows(pointers: tuple, sizes: tuple, device: tuple, seed, stream0, flip, row0, row1)
 *   pointers: (w, touched, x_words, d_words, x_neg, d_neg, row_piece, col_piece, active_ptr, active_cols, params)
 *   sizes: (N, K, B, n_out, n_in)
 *   device: (kind, n_params, mult_noise, complex_noise, sd, exp_a, exp_b, A_up, A_down, g_up, g_down, std_add,
 *            std_slope) */
static PyObject *py_update_rows(PyObject *self, PyObject *args) {
    PyObject *pointers, *sizes, *device;
    unsigned long long seed, stream0;
    int flip;
    long long row0, row1;
    if (!PyArg_ParseTuple(args, "O!O!O!KKiLL", &PyTuple_Type, &pointers, &PyTuple_Type, &sizes, &PyTuple_Type,
                          &device, &seed, &stream0, &flip, &row0, &row1))
        return NULL;
    if (PyTuple_GET_SIZE(pointers) != 11 || PyTuple_GET_SIZE(sizes) != 5 || PyTuple_GET_SIZE(device) != 13) {
        PyErr_SetString(PyExc_ValueError, "update_rows: expected 11 pointers, 5 sizes and 13 device values");
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
    dv.params = ptr(pointers, 10);
    if (PyErr_Occurred()) return NULL;
    jb.N = PyLong_AsLongLong(PyTuple_GET_ITEM(sizes, 0));
    jb.K = PyLong_AsLongLong(PyTuple_GET_ITEM(sizes, 1));
    jb.B = PyLong_AsLongLong(PyTuple_GET_ITEM(sizes, 2));
    jb.n_out = PyLong_AsLongLong(PyTuple_GET_ITEM(sizes, 3));
    jb.n_in = PyLong_AsLongLong(PyTuple_GET_ITEM(sizes, 4));
    dv.kind = (int)PyLong_AsLong(PyTuple_GET_ITEM(device, 0));
    dv.n_params = (int)PyLong_AsLong(PyTuple_GET_ITEM(device, 1));
    dv.mult_noise = (int)PyLong_AsLong(PyTuple_GET_ITEM(device, 2));
    dv.complex_noise = (int)PyLong_AsLong(PyTuple_GET_ITEM(device, 3));
    float *fields[] = {&dv.sd, &dv.exp_a, &dv.exp_b, &dv.A_up, &dv.A_down, &dv.g_up, &dv.g_down, &dv.std_add,
                       &dv.std_slope};
    for (int k = 0; k < 9; k++) *fields[k] = (float)PyFloat_AsDouble(PyTuple_GET_ITEM(device, 4 + k));
    if (PyErr_Occurred()) return NULL;
    const int needed = (dv.kind == LINEAR_STEP || dv.kind == POW_STEP) ? 6 : 4;
    if (!jb.w || !jb.touched || !jb.x_words || !jb.d_words || !dv.params || dv.n_params < needed || row0 < 0 ||
        row1 > jb.N || row0 > row1) {
        PyErr_SetString(PyExc_ValueError, "update_rows: a needed pointer is missing or the rows are out of range");
        return NULL;
    }
    jb.flip = flip;
    jb.seed = seed;
    jb.stream0 = stream0;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = update_rows(&jb, &dv, row0, row1);
    Py_END_ALLOW_THREADS
    if (status) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"update_rows", py_update_rows, METH_VARARGS, "The pulses of rows [row0, row1) of one tile group (see the file)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pulsed", "Pulsed-update kernels on CPU.", -1, methods};

PyMODINIT_FUNC PyInit__pulsed(void) { return PyModule_Create(&module); }
