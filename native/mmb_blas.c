/*
 * Matrix multiplication and 2-D convolution for mmb's runtime, through OpenBLAS's sgemm.
 *
 * tfjs-backend-wasm runs one thread and reaches ~30 GFLOP/s on a matmul; OpenBLAS reaches
 * ~150 per core. The runtime registers these functions as the wasm backend's BatchMatMul and
 * Conv2D kernels (runtime/native-kernels.ts). Every function reads and writes Float32Arrays
 * that are views of the wasm heap, so no tensor is copied. Convolutions are NHWC with filters
 * [kh, kw, in, out], lowered to one sgemm over an im2col buffer.
 */
#include <cblas.h>
#include <node_api.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(call)                                                       \
  if ((call) != napi_ok) {                                                \
    napi_throw_error(env, NULL, "mmb_blas: bad arguments");               \
    return NULL;                                                          \
  }

static float *floats(napi_env env, napi_value value, size_t *length) {
  napi_typedarray_type type;
  void *data;
  if (napi_get_typedarray_info(env, value, &type, length, &data, NULL, NULL) != napi_ok || type != napi_float32_array) return NULL;
  return (float *)data;
}

/* Reads `count` int32 arguments starting at argv[first]. */
static int ints(napi_env env, napi_value *argv, int first, int count, int *out) {
  for (int i = 0; i < count; i++)
    if (napi_get_value_int32(env, argv[first + i], &out[i]) != napi_ok) return 0;
  return 1;
}

/* gemm(transA, transB, batch, m, n, k, a, strideA, b, strideB, c): c[i] = op(a[i]) · op(b[i]) for each
 * of `batch` matrices; a stride of 0 broadcasts one matrix over the batch. */
static napi_value gemm(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value argv[11];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int d[6];
  if (argc != 11 || !ints(env, argv, 0, 6, d)) { napi_throw_error(env, NULL, "gemm: expected 11 arguments"); return NULL; }
  int strideA, strideB;
  size_t la, lb, lc;
  float *a = floats(env, argv[6], &la), *b = floats(env, argv[8], &lb), *c = floats(env, argv[10], &lc);
  CHECK(napi_get_value_int32(env, argv[7], &strideA));
  CHECK(napi_get_value_int32(env, argv[9], &strideB));
  int transA = d[0], transB = d[1], batch = d[2], m = d[3], n = d[4], k = d[5];
  if (!a || !b || !c || lc < (size_t)batch * m * n || la < (size_t)(batch - 1) * strideA + (size_t)m * k ||
      lb < (size_t)(batch - 1) * strideB + (size_t)k * n) {
    napi_throw_error(env, NULL, "gemm: array too small for the given shape");
    return NULL;
  }
  for (int i = 0; i < batch; i++)
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, m, n, k, 1.0f,
                a + (size_t)i * strideA, transA ? m : k, b + (size_t)i * strideB, transB ? k : n, 0.0f, c + (size_t)i * m * n, n);
  return NULL;
}

typedef struct {
  int n, h, w, cin, kh, kw, cout, sh, sw, top, left, oh, ow;
} Conv;

static int readConv(napi_env env, napi_value *argv, int first, Conv *c) {
  return ints(env, argv, first, 13, &c->n);
}

static size_t rows(const Conv *c) { return (size_t)c->n * c->oh * c->ow; }
static size_t patch(const Conv *c) { return (size_t)c->kh * c->kw * c->cin; }

/* cols[(b, p, q), (i, j, ch)] = x[b, p·sh + i − top, q·sw + j − left, ch], zero outside x. */
static void im2col(const Conv *c, const float *x, float *cols) {
  float *row = cols;
  for (int b = 0; b < c->n; b++)
    for (int p = 0; p < c->oh; p++)
      for (int q = 0; q < c->ow; q++, row += patch(c))
        for (int i = 0; i < c->kh; i++) {
          int y = p * c->sh + i - c->top;
          for (int j = 0; j < c->kw; j++) {
            int xw = q * c->sw + j - c->left;
            float *dst = row + ((size_t)i * c->kw + j) * c->cin;
            /* Loops, not memcpy: a first layer has one or three channels, and a call per pixel costs more than the copy. */
            if (y < 0 || y >= c->h || xw < 0 || xw >= c->w) {
              for (int ch = 0; ch < c->cin; ch++) dst[ch] = 0.0f;
            } else {
              const float *src = x + (((size_t)b * c->h + y) * c->w + xw) * c->cin;
              for (int ch = 0; ch < c->cin; ch++) dst[ch] = src[ch];
            }
          }
        }
}

/* The adjoint of im2col: dx[b, y, x, ch] += cols[(b, p, q), (i, j, ch)]. */
static void col2im(const Conv *c, const float *cols, float *dx) {
  memset(dx, 0, sizeof(float) * (size_t)c->n * c->h * c->w * c->cin);
  const float *row = cols;
  for (int b = 0; b < c->n; b++)
    for (int p = 0; p < c->oh; p++)
      for (int q = 0; q < c->ow; q++, row += patch(c))
        for (int i = 0; i < c->kh; i++) {
          int y = p * c->sh + i - c->top;
          if (y < 0 || y >= c->h) continue;
          for (int j = 0; j < c->kw; j++) {
            int xw = q * c->sw + j - c->left;
            if (xw < 0 || xw >= c->w) continue;
            const float *src = row + ((size_t)i * c->kw + j) * c->cin;
            float *dst = dx + (((size_t)b * c->h + y) * c->w + xw) * c->cin;
            for (int ch = 0; ch < c->cin; ch++) dst[ch] += src[ch];
          }
        }
}

/* A 1×1 convolution with stride 1 and no padding needs no im2col: x is already the column matrix. */
static int pointwise(const Conv *c) {
  return c->kh == 1 && c->kw == 1 && c->sh == 1 && c->sw == 1 && c->top == 0 && c->left == 0;
}

/* The im2col matrix of x (x itself for a pointwise convolution), or NULL when out of memory. */
static float *columns(const Conv *c, float *x) {
  if (pointwise(c)) return x;
  float *cols = malloc(sizeof(float) * rows(c) * patch(c));
  if (cols) im2col(c, x, cols);
  return cols;
}

/* Shared argument handling: three float arrays, then the 13 sizes of the convolution. */
static int convArgs(napi_env env, napi_callback_info info, float **arrays, size_t *lengths, Conv *c) {
  size_t argc = 16;
  napi_value argv[16];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 16) return 0;
  for (int i = 0; i < 3; i++)
    if (!(arrays[i] = floats(env, argv[i], &lengths[i]))) return 0;
  return readConv(env, argv, 3, c);
}

static int sizesMatch(const Conv *c, size_t x, size_t filter, size_t out) {
  return x >= (size_t)c->n * c->h * c->w * c->cin && filter >= patch(c) * c->cout && out >= rows(c) * c->cout;
}

/* conv2d(x, filter, out, ...sizes): out[(b,p,q), o] = Σ cols[(b,p,q), :] · filter[:, o]. */
static napi_value conv2d(napi_env env, napi_callback_info info) {
  float *a[3];
  size_t l[3];
  Conv c;
  if (!convArgs(env, info, a, l, &c) || !sizesMatch(&c, l[0], l[1], l[2])) { napi_throw_error(env, NULL, "conv2d: bad arguments"); return NULL; }
  float *cols = columns(&c, a[0]);
  if (!cols) { napi_throw_error(env, NULL, "conv2d: out of memory"); return NULL; }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows(&c), c.cout, patch(&c), 1.0f, cols, patch(&c), a[1], c.cout, 0.0f, a[2], c.cout);
  if (cols != a[0]) free(cols);
  return NULL;
}

/* conv2dBackpropInput(dy, filter, dx, ...sizes): dx = col2im(dy · filterᵀ). */
static napi_value conv2dBackpropInput(napi_env env, napi_callback_info info) {
  float *a[3];
  size_t l[3];
  Conv c;
  if (!convArgs(env, info, a, l, &c) || !sizesMatch(&c, l[2], l[1], l[0])) { napi_throw_error(env, NULL, "conv2dBackpropInput: bad arguments"); return NULL; }
  if (pointwise(&c)) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows(&c), patch(&c), c.cout, 1.0f, a[0], c.cout, a[1], c.cout, 0.0f, a[2], patch(&c));
    return NULL;
  }
  float *cols = malloc(sizeof(float) * rows(&c) * patch(&c));
  if (!cols) { napi_throw_error(env, NULL, "conv2dBackpropInput: out of memory"); return NULL; }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows(&c), patch(&c), c.cout, 1.0f, a[0], c.cout, a[1], c.cout, 0.0f, cols, patch(&c));
  col2im(&c, cols, a[2]);
  free(cols);
  return NULL;
}

/* conv2dBackpropFilter(x, dy, dfilter, ...sizes): dfilter = colsᵀ · dy. */
static napi_value conv2dBackpropFilter(napi_env env, napi_callback_info info) {
  float *a[3];
  size_t l[3];
  Conv c;
  if (!convArgs(env, info, a, l, &c) || !sizesMatch(&c, l[0], l[2], l[1])) { napi_throw_error(env, NULL, "conv2dBackpropFilter: bad arguments"); return NULL; }
  float *cols = columns(&c, a[0]);
  if (!cols) { napi_throw_error(env, NULL, "conv2dBackpropFilter: out of memory"); return NULL; }
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, patch(&c), c.cout, rows(&c), 1.0f, cols, patch(&c), a[1], c.cout, 0.0f, a[2], c.cout);
  if (cols != a[0]) free(cols);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"gemm", NULL, gemm, NULL, NULL, NULL, napi_default, NULL},
      {"conv2d", NULL, conv2d, NULL, NULL, NULL, napi_default, NULL},
      {"conv2dBackpropInput", NULL, conv2dBackpropInput, NULL, NULL, NULL, napi_default, NULL},
      {"conv2dBackpropFilter", NULL, conv2dBackpropFilter, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
