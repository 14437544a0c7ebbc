/** fs.Stats- and fs.Dirent-shaped views of Ferry attributes. */

import { TYPE_BITS, type Attr, type FileType } from '../meta/types.js';

export class Stats {
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
  readonly #type: FileType;

  constructor(a: Attr, dev = 0) {
    this.dev = dev;
    this.ino = a.ino;
    this.mode = TYPE_BITS[a.type] | a.mode;
    this.nlink = a.nlink;
    this.uid = a.uid;
    this.gid = a.gid;
    this.rdev = a.rdev;
    this.size = a.length;
    this.blocks = Math.ceil(a.length / 512);
    this.atimeMs = a.atime;
    this.mtimeMs = a.mtime;
    this.ctimeMs = a.ctime;
    this.birthtimeMs = a.ctime;
    this.atime = new Date(a.atime);
    this.mtime = new Date(a.mtime);
    this.ctime = new Date(a.ctime);
    this.birthtime = new Date(a.ctime);
    this.#type = a.type;
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

export class Dirent {
  readonly name: string;
  /** The directory that holds the entry (as in Node 20's Dirent). */
  readonly parentPath: string;
  readonly path: string;
  readonly #type: FileType;

  constructor(name: string, parentPath: string, type: FileType) {
    this.name = name;
    this.parentPath = parentPath;
    this.path = parentPath;
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
