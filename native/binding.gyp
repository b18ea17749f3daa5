{
  "targets": [
    {
      "target_name": "mmb_blas",
      "sources": ["mmb_blas.c"],
      "cflags": ["-O3", "-std=c11"],
      "libraries": ["-lopenblas"]
    }
  ]
}
