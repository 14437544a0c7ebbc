/*
 * The boundary table's vocabulary: every name that crosses between the addon and JS, with its JS type. Which
 * operation passes which of them, in which order, is in layout.c; src/fuse/boundary.ts declares the same
 * table for JS, and test/fuse/boundary.test.ts checks the two against each other, both as written (it
 * parses this file and layout.c: keep one X(...) entry per line) and as built (the addon exports the table as
 * `layout`). JS reads every argument and C reads every reply value by its name's position in the table, so
 * a change made here and in boundary.ts moves both sides at once.
 *
 *   dispatch(op, id, uid, gid, pid, ...args of op)     request (or event: init, done), C -> JS
 *   reply(id, result, ...reply values of op)           answer, JS -> C; result < 0 is -errno (no values)
 */

#ifndef FERRY_FUSE_LAYOUT_H
#define FERRY_FUSE_LAYOUT_H

/*
 * JS types. A string may be null (no name from libfuse); records are arrays of numbers (FF_*_FIELDS);
 * float64[] is a Float64Array (read in place, no element by element conversion).
 */
#define FF_TYPES(X)          \
  X(T_NUMBER, "number")      \
  X(T_STRING, "string")      \
  X(T_BIGINT, "bigint")      \
  X(T_BUFFER, "buffer")      \
  X(T_NUMBERS, "number[]")   \
  X(T_STRINGS, "string[]")   \
  X(T_FLOAT64S, "float64[]") \
  X(T_STAT, "stat")          \
  X(T_STATFS, "statfs")      \
  X(T_LOCK, "lock")

/* Operations: the op code is the position here (the dispatch function's first argument). */
#define FF_OPS(X)                  \
  X(OP_INIT, "init")               \
  X(OP_DONE, "done")               \
  X(OP_LOOKUP, "lookup")           \
  X(OP_GETATTR, "getattr")         \
  X(OP_SETATTR, "setattr")         \
  X(OP_READLINK, "readlink")       \
  X(OP_MKNOD, "mknod")             \
  X(OP_MKDIR, "mkdir")             \
  X(OP_UNLINK, "unlink")           \
  X(OP_RMDIR, "rmdir")             \
  X(OP_SYMLINK, "symlink")         \
  X(OP_RENAME, "rename")           \
  X(OP_LINK, "link")               \
  X(OP_OPEN, "open")               \
  X(OP_READ, "read")               \
  X(OP_WRITE, "write")             \
  X(OP_FLUSH, "flush")             \
  X(OP_RELEASE, "release")         \
  X(OP_FSYNC, "fsync")             \
  X(OP_OPENDIR, "opendir")         \
  X(OP_READDIR, "readdir")         \
  X(OP_RELEASEDIR, "releasedir")   \
  X(OP_FSYNCDIR, "fsyncdir")       \
  X(OP_STATFS, "statfs")           \
  X(OP_SETXATTR, "setxattr")       \
  X(OP_GETXATTR, "getxattr")       \
  X(OP_LISTXATTR, "listxattr")     \
  X(OP_REMOVEXATTR, "removexattr") \
  X(OP_ACCESS, "access")           \
  X(OP_CREATE, "create")           \
  X(OP_GETLK, "getlk")             \
  X(OP_SETLK, "setlk")             \
  X(OP_FLOCK, "flock")             \
  X(OP_FALLOCATE, "fallocate")     \
  X(OP_READDIRPLUS, "readdirplus")

/*
 * Request arguments: the dispatch function's arguments, each read from the request (layout.c's arg_value).
 * Numbers are doubles: inode numbers, sizes and offsets stay below 2^53; the lock owner is a full 64 bits.
 */
#define FF_ARGS(X)                                                                              \
  X(A_OP, "op", T_NUMBER)                   /* the op code (FF_OPS) */                          \
  X(A_ID, "id", T_NUMBER)                   /* the request's id, for reply(); 0 for events */   \
  X(A_UID, "uid", T_NUMBER)                 /* the caller (fuse_req_ctx); 0 for events */       \
  X(A_GID, "gid", T_NUMBER)                                                                     \
  X(A_PID, "pid", T_NUMBER)                                                                     \
  X(A_INO, "ino", T_NUMBER)                 /* the inode operated on */                         \
  X(A_PARENT, "parent", T_NUMBER)           /* the directory that holds name */                 \
  X(A_NAME, "name", T_STRING)                                                                   \
  X(A_NEW_PARENT, "newParent", T_NUMBER)    /* rename's and link's new directory */             \
  X(A_NEW_NAME, "newName", T_STRING)                                                            \
  X(A_TARGET, "target", T_STRING)           /* symlink's target */                              \
  X(A_FH, "fh", T_NUMBER)                   /* the open file's handle, or -1 (FF_NO_FH) */      \
  X(A_FLAGS, "flags", T_NUMBER)             /* open(2) flags; setxattr's XATTR_* flags */       \
  X(A_MASK, "mask", T_NUMBER)               /* access(2)'s mask */                              \
  X(A_DATASYNC, "datasync", T_NUMBER)                                                           \
  X(A_MODE, "mode", T_NUMBER)               /* type and permission bits of a new inode */       \
  X(A_RDEV, "rdev", T_NUMBER)                                                                   \
  X(A_SIZE, "size", T_NUMBER)               /* bytes asked for, or given (write) */             \
  X(A_OFFSET, "offset", T_NUMBER)           /* bytes; readdir: entries */                       \
  X(A_LENGTH, "length", T_NUMBER)           /* fallocate's range */                             \
  X(A_DATA, "data", T_BUFFER)               /* write's bytes, setxattr's value (JS owns it) */  \
  X(A_LOCK_OWNER, "lockOwner", T_BIGINT)    /* the kernel's lock owner of the open file */      \
  X(A_FLOCK_RELEASE, "flockRelease", T_NUMBER) /* 1: release drops the open file's flock */     \
  X(A_FLOCK_OP, "flockOp", T_NUMBER)        /* LOCK_SH/EX/UN, | LOCK_NB */                      \
  X(A_FALLOCATE_MODE, "fallocateMode", T_NUMBER)                                                \
  X(A_SLEEP, "sleep", T_NUMBER)             /* setlk: 1 for F_SETLKW (wait) */                  \
  X(A_LOCK_TYPE, "lockType", T_NUMBER)      /* F_RDLCK, F_WRLCK, F_UNLCK */                     \
  X(A_LOCK_START, "lockStart", T_NUMBER)                                                        \
  X(A_LOCK_LENGTH, "lockLength", T_NUMBER)  /* 0: to the end of the file */                     \
  X(A_LOCK_PID, "lockPid", T_NUMBER)                                                            \
  X(A_TO_SET, "toSet", T_NUMBER)            /* setattr: FUSE_SET_ATTR_* bits of what to change */ \
  X(A_SET_MODE, "setMode", T_NUMBER)                                                            \
  X(A_SET_UID, "setUid", T_NUMBER)                                                              \
  X(A_SET_GID, "setGid", T_NUMBER)                                                              \
  X(A_SET_SIZE, "setSize", T_NUMBER)                                                            \
  X(A_SET_ATIME_MS, "setAtimeMs", T_NUMBER) /* ms since the epoch, fractional */                \
  X(A_SET_MTIME_MS, "setMtimeMs", T_NUMBER)                                                     \
  X(A_PROTO_MAJOR, "protoMajor", T_NUMBER)  /* init: what the kernel offered */                 \
  X(A_PROTO_MINOR, "protoMinor", T_NUMBER)                                                      \
  X(A_CAPABLE, "capable", T_NUMBER)                                                             \
  X(A_WANT, "want", T_NUMBER)                                                                   \
  X(A_MAX_WRITE, "maxWrite", T_NUMBER)                                                          \
  X(A_STATUS, "status", T_NUMBER)           /* done: 0, or 1 if the session ended on an error */

/* Reply values: what JS passes after the result, each read by name (ff_reply_value). */
#define FF_VALUES(X)                                                                            \
  X(V_ATTR, "attr", T_STAT)                 /* the entry's or inode's attributes */             \
  X(V_FH, "fh", T_NUMBER)                   /* the handle the kernel passes back */             \
  X(V_OPEN_FLAGS, "openFlags", T_NUMBER)    /* FF_OPEN_* bits */                                \
  X(V_DATA, "data", T_BUFFER)               /* read: result bytes of it are the answer */       \
  X(V_TARGET, "target", T_STRING)           /* readlink */                                      \
  X(V_NAMES, "names", T_STRINGS)            /* readdir: from offset on; listxattr */            \
  X(V_INOS, "inos", T_NUMBERS)              /* readdir: each name's inode */                    \
  X(V_MODES, "modes", T_NUMBERS)            /* readdir: each name's type bits */                \
  X(V_STATFS, "statfs", T_STATFS)                                                               \
  X(V_VALUE, "value", T_BUFFER)             /* getxattr */                                      \
  X(V_LOCK, "lock", T_LOCK)                 /* getlk: the conflicting lock, or [F_UNLCK] */         \
  X(V_NAME_BYTES, "nameBytes", T_BUFFER)    /* readdirplus: the names from offset on, each ended by NUL */ \
  X(V_ATTRS, "attrs", T_FLOAT64S)           /* readdirplus: each name's stat record, one after another */ \
  X(V_AGE_MS, "ageMs", T_NUMBER)            /* readdirplus: how old the attributes are (ms): the kernel keeps them for the rest of its timeouts */

/* Record fields: a record is an array of numbers in this order. Times are ms since the epoch, fractional. */
#define FF_STAT_FIELDS(X) \
  X(ST_MODE, "mode")      \
  X(ST_UID, "uid")        \
  X(ST_GID, "gid")        \
  X(ST_SIZE, "size")      \
  X(ST_NLINK, "nlink")    \
  X(ST_INO, "ino")        \
  X(ST_RDEV, "rdev")      \
  X(ST_BLKSIZE, "blksize") \
  X(ST_BLOCKS, "blocks")  \
  X(ST_ATIME, "atime")    \
  X(ST_MTIME, "mtime")    \
  X(ST_CTIME, "ctime")

#define FF_STATFS_FIELDS(X) \
  X(SF_BSIZE, "bsize")      \
  X(SF_FRSIZE, "frsize")    \
  X(SF_BLOCKS, "blocks")    \
  X(SF_BFREE, "bfree")      \
  X(SF_BAVAIL, "bavail")    \
  X(SF_FILES, "files")      \
  X(SF_FFREE, "ffree")      \
  X(SF_FAVAIL, "favail")    \
  X(SF_FSID, "fsid")        \
  X(SF_FLAG, "flag")        \
  X(SF_NAMEMAX, "namemax")

/* A lock as getlk answers it (start and length in bytes, length 0: to the end of the file). */
#define FF_LOCK_FIELDS(X) \
  X(LK_TYPE, "type")      \
  X(LK_START, "start")    \
  X(LK_LENGTH, "length")  \
  X(LK_PID, "pid")

#define FF_ENUM_ID(id, ...) id,

enum { FF_TYPES(FF_ENUM_ID) T_COUNT };
enum { FF_OPS(FF_ENUM_ID) OP_COUNT };
/* A_END (0) ends an operation's list in layout.c. */
enum { A_END, FF_ARGS(FF_ENUM_ID) A_COUNT };
enum { V_END, FF_VALUES(FF_ENUM_ID) V_COUNT };
enum { FF_STAT_FIELDS(FF_ENUM_ID) ST_COUNT };
enum { FF_STATFS_FIELDS(FF_ENUM_ID) SF_COUNT };
enum { FF_LOCK_FIELDS(FF_ENUM_ID) LK_COUNT };

/* Most arguments after the header, and most reply values, of any operation. */
#define FF_ARGS_MAX 10
#define FF_VALUES_MAX 3

extern const char *const ff_op_names[OP_COUNT];

#endif
