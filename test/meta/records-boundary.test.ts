/**
 * The record boundary: only src/meta/ knows how a metadata record is keyed and shaped (DESIGN §3). Code
 * elsewhere goes through meta/'s typed accessors and functions (meta/records.ts and friends), never through
 * `tx.get('inode', ...)` or by picking changelog ops apart by kind. This test reads every source file outside
 * src/meta/ and fails naming each file:line that touches records by a kind literal.
 */

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { KINDS } from '../../src/meta/engine.js';

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src');
const kinds = KINDS.join('|');
/** Kinds whose names are also ordinary words (a region role 'mirror', a lock type): not matched as case labels. */
const dataKinds = ['inode', 'entry', 'chunk', 'xattr', 'slice', 'delslice', 'counter', 'usage', 'sustained', 'setting'].join('|');

const PATTERNS: Array<[RegExp, string]> = [
  // tx.get('inode', ...), tx.scan<T>('session', ...), engine.txn((tx) => tx.put('setting', ...))
  [new RegExp(`\\.(get|put|del|scan)\\s*(<[^()]*>)?\\(\\s*['"\`](${kinds})['"\`]`), 'engine record access by kind literal'],
  // kind === 'slice', op[0] === 'setting' (changelog ops or snapshot records picked apart by kind)
  [new RegExp(`(\\bkind|\\[0\\])\\s*[!=]==?\\s*['"\`](${kinds})['"\`]`), 'record kind compared by literal'],
  [new RegExp(`['"\`](${kinds})['"\`]\\s*[!=]==?\\s*(\\bkind|[\\w.]+\\[0\\])`), 'record kind compared by literal'],
  // switch (kind) { case 'inode': ... }
  [new RegExp(`\\bcase\\s+['"\`](${dataKinds})['"\`]\\s*:`), 'record kind as a case label'],
];

function* sourceFiles(dir: string): Generator<string> {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) yield* sourceFiles(p);
    else if (/\.(ts|mts|cts)$/.test(e.name)) yield p;
  }
}

/** Every line outside src/meta/ that touches records by kind, as `file:line: what: text`. */
export function recordBoundaryViolations(root = SRC): string[] {
  const out: string[] = [];
  const meta = path.join(root, 'meta') + path.sep;
  for (const file of sourceFiles(root)) {
    if (file.startsWith(meta)) continue;
    const lines = readFileSync(file, 'utf8').split('\n');
    lines.forEach((line, i) => {
      const code = line.replace(/\/\/.*$/, '');
      for (const [re, what] of PATTERNS) {
        if (re.test(code)) {
          out.push(`${path.relative(path.dirname(root), file)}:${i + 1}: ${what}: ${line.trim()}`);
          break;
        }
      }
    });
  }
  return out;
}

test('no code outside src/meta/ addresses engine records by kind', () => {
  const found = recordBoundaryViolations();
  assert.deepEqual(found, [], `records addressed outside src/meta/ (use meta/records.ts accessors):\n${found.join('\n')}`);
});

test('the boundary check sees the forms it forbids', () => {
  // The patterns themselves, on lines of the kinds that used to live outside meta/.
  const hits = (line: string): boolean => PATTERNS.some(([re]) => re.test(line));
  assert.ok(hits(`const f = await tx.get<FormatRec>('setting', '', 'format');`));
  assert.ok(hits(`tx.put('replica', '', this.name, rec);`));
  assert.ok(hits(`engine.txn((tx) => tx.scan('session', ''), { readonly: true })`));
  assert.ok(hits(`if (kind !== 'slice' || value === null) continue;`));
  assert.ok(hits(`if (!keep && op[0] === 'setting' && op[2] === SECRET_KEY) return;`));
  assert.ok(hits(`      case 'inode': {`));
  assert.ok(!hits(`const role = rec.storage === undefined ? 'metadata-only mirror' : 'mirror';`));
});
