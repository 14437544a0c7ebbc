// The addon, or an Error saying why it cannot be loaded (not built, libfuse missing).
'use strict';
module.exports = require('./build/Release/ferry_fuse.node');
