/**
 * Bucket replicators' checkpoints (kind `replica`, not logged: they are this primary's progress). Their shape
 * is region/replicate.ts's; this module only keeps them, and moves a replicator's changelog consumer position
 * with its checkpoint, atomically.
 */

import { putConsumerPosition } from './core.js';
import type { MetaEngine, Txn } from './engine.js';
import { replicas } from './records.js';

export async function loadReplicaCheckpoint<T extends object>(engine: MetaEngine, name: string): Promise<T | undefined> {
  return (await engine.txn((tx) => replicas.get(tx, name), { readonly: true })) as T | undefined;
}

/** Every checkpoint, by name. */
export async function listReplicaCheckpoints<T extends object>(engine: MetaEngine): Promise<Array<[string, T]>> {
  return (await engine.txn((tx) => replicas.scan(tx), { readonly: true })) as Array<[string, T]>;
}

/**
 * Writes a checkpoint and sets changelog consumer `consumer` to `position` in the same transaction
 * (registering it again if it was removed).
 */
export async function saveReplicaCheckpoint(engine: MetaEngine, name: string, checkpoint: object, consumer: string, position: number): Promise<void> {
  await engine.txn(async (tx) => {
    replicas.put(tx, name, checkpoint);
    await putConsumerPosition(tx, consumer, position, true);
  });
}

/**
 * Writes a checkpoint inside the caller's transaction, the consumer position left as it is: the replicator
 * records its counters with the slice marks they count (Meta.addSliceCopies' `also`), so a kill loses neither.
 */
export function putReplicaCheckpoint(tx: Txn, name: string, checkpoint: object): void {
  replicas.put(tx, name, checkpoint);
}
