{
  "targets": [
    {
      "target_name": "ferry_fuse",
      "sources": ["src/ferry_fuse.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "<!@(pkg-config --cflags fuse)"],
      "libraries": ["<!@(pkg-config --libs fuse)"]
    }
  ]
}
