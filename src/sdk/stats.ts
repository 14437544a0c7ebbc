/** fs.Stats- and fs.Dirent-shaped views of Ferry attributes. */

import { TYPE_BITS, blockCount, linkCount, type Attr, type FileType } from '../meta/types.js';

/** The type predicates fs.Stats and fs.Dirent share. */
class Typed {
  readonly #type: FileType;

  constructor(type: FileType) {
    this.#type = type;
  }

  isFile(): boolean {
    return this.#type === 'file';
  }
  isDirectory(): boolean {
    return this.#type === 'dir';
  }
  isSymbolicLink(): boolean {
    return this.#type === 'symlink';
  }
  isFIFO(): boolean {
    return this.#type === 'fifo';
  }
  isSocket(): boolean {
    return this.#type === 'socket';
  }
  isBlockDevice(): boolean {
    return this.#type === 'blk';
  }
  isCharacterDevice(): boolean {
    return this.#type === 'chr';
  }
}

export class Stats extends Typed {
  readonly dev: number;
  readonly ino: number;
  /** Type bits and permission bits, as st_mode. */
  readonly mode: number;
  readonly nlink: number;
  readonly uid: number;
  readonly gid: number;
  readonly rdev: number;
  readonly size: number;
  readonly blksize = 4096;
  readonly blocks: number;
  readonly atimeMs: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
  readonly birthtimeMs: number;
  readonly atime: Date;
  readonly mtime: Date;
  readonly ctime: Date;
  readonly birthtime: Date;

  constructor(a: Attr, dev = 0) {
    super(a.type);
    this.dev = dev;
    this.ino = a.ino;
    this.mode = TYPE_BITS[a.type] | a.mode;
    this.nlink = linkCount(a);
    this.uid = a.uid;
    this.gid = a.gid;
    this.rdev = a.rdev;
    this.size = a.length;
    this.blocks = blockCount(a);
    this.atimeMs = a.atime;
    this.mtimeMs = a.mtime;
    this.ctimeMs = a.ctime;
    this.birthtimeMs = a.ctime;
    this.atime = new Date(a.atime);
    this.mtime = new Date(a.mtime);
    this.ctime = new Date(a.ctime);
    this.birthtime = new Date(a.ctime);
  }

}

export class Dirent extends Typed {
  readonly name: string;
  /** The directory that holds the entry (as in Node 20's Dirent). */
  readonly parentPath: string;
  readonly path: string;

  constructor(name: string, parentPath: string, type: FileType) {
    super(type);
    this.name = name;
    this.parentPath = parentPath;
    this.path = parentPath;
  }

}
