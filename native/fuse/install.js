// Builds the addon with node-gyp when libfuse 2's development files are present; otherwise says why and
// exits 0, so installing Ferry never fails for want of them (Ferry then falls back to fuse-native).
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

function skip(why) {
  console.warn(`@ferryfs/fuse: not built (${why}); ferry mount will use fuse-native, with its known gaps.`);
  console.warn('@ferryfs/fuse: to build it: apt-get install libfuse-dev (pkg-config, make, g++), then npm rebuild @ferryfs/fuse');
  process.exit(0);
}

if (process.platform !== 'linux') skip(`platform ${process.platform}`);
const pc = spawnSync('pkg-config', ['--exists', 'fuse'], { stdio: 'ignore' });
if (pc.error !== undefined || pc.status !== 0) skip('pkg-config finds no libfuse 2 (package libfuse-dev)');

// npm puts its bundled node-gyp on PATH for install scripts and names it in npm_config_node_gyp.
// Outside npm, npm's own copy beside this node is tried.
const fs = require('node:fs');
const bundled = path.join(path.dirname(process.execPath), '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js');
const gypJs = process.env.npm_config_node_gyp || (fs.existsSync(bundled) ? bundled : undefined);
const cmd = gypJs ? process.execPath : 'node-gyp';
const args = gypJs ? [gypJs, 'rebuild'] : ['rebuild'];
// Node's own headers, when they are installed beside it, spare node-gyp a download.
const prefix = path.join(path.dirname(process.execPath), '..');
if (!process.env.npm_config_nodedir && fs.existsSync(path.join(prefix, 'include/node/node_api.h'))) args.push(`--nodedir=${prefix}`);
const r = spawnSync(cmd, args, { cwd: __dirname, stdio: 'inherit' });
if (r.error !== undefined || r.status !== 0) skip(`node-gyp failed${r.error ? ': ' + r.error.message : ''}`);
console.log(`@ferryfs/fuse: built ${path.join(__dirname, 'build/Release/ferry_fuse.node')}`);
