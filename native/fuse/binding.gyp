{
  "targets": [
    {
      "target_name": "ferry_fuse",
      "sources": [
        "src/layout.c",
        "src/registry.c",
        "src/ll_ops.c",
        "src/reply.c",
        "src/dirplus.c",
        "src/reply_threads.c",
        "src/channel.c",
        "src/session.c",
        "src/module.c"
      ],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden", "<!@(pkg-config --cflags fuse)"],
      "libraries": ["<!@(pkg-config --libs fuse)"]
    }
  ]
}
