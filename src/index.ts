/** The public API of the ferryfs package. */
export { openVolume, openBucket, type OpenVolumeOptions, type DiskCacheTuning } from './sdk/open.js';
export { Volume, FileHandle, type VolumeInfo, type VolumeStats } from './sdk/volume.js';
export { Stats, Dirent } from './sdk/stats.js';
export { FsError, CorruptBlockError, NoGoodCopyError, UsageError, toErrno, ERRNO } from './errors.js';
export { formatVolume, Meta } from './meta/meta.js';
export { openMetaEngine } from './meta/registry.js';
export { openObjectStore } from './object/registry.js';
export type { ObjectStore } from './object/store.js';
export type { MetaEngine, LogEntry } from './meta/engine.js';
export { CacheGroupMember, type CacheGroupOptions } from './cache/group/member.js';
