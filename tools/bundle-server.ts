// Build step after tsc: write the config validator as code (so a start does
// not compile the config schema), bundle the server (dist/bin/sapi.js and
// everything it imports, node_modules included) into dist/server/, and make
// dist/bin/sapi.js a two-line stub that loads the bundle.
//
// Why: most of a cold start went into finding, reading and compiling several
// hundred small module files (restify's tree alone is a few hundred). One
// bundle is read and compiled at once. Dynamic imports stay separate chunks,
// so what only some configurations need (the Moray client, the downstream
// clients) is still loaded only by them.
//
// Left out of the bundle and loaded from node_modules as before: native
// addons (better-sqlite3) and what the code loads through createRequire (the
// moray client), plus bunyan's optional dtrace-provider.

import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { _ } from 'ajv';
import standalone from 'ajv/dist/standalone/index.js';
import { build } from 'esbuild';

import { configAjv } from '../lib/config-validator.js';
import { configSchema } from '../schemas/config.js';

const DIST = join(dirname(fileURLToPath(import.meta.url)), '..');
const ENTRY = join(DIST, 'bin', 'sapi.js');
const OUT = join(DIST, 'server');

/** Code written for CommonJS inside an ES module bundle still finds `require` and its own paths. */
const BANNER = [
    "import { createRequire as __bundleCreateRequire } from 'node:module';",
    "import { fileURLToPath as __bundleFileUrlToPath } from 'node:url';",
    "import { dirname as __bundleDirname } from 'node:path';",
    'const require = __bundleCreateRequire(import.meta.url);',
    'const __filename = __bundleFileUrlToPath(import.meta.url);',
    'const __dirname = __bundleDirname(__filename);',
].join('\n');

/**
 * The config validator as ajv code, written beside dist/lib/config.js, which
 * loads it instead of compiling the schema at every start. ajv's runtime
 * helpers, which its code loads with require(), become imports.
 */
function writeConfigValidator(): void {
    const ajv = configAjv({ source: true, esm: true, formats: _`configFormats` });
    const imports = ["import { configFormats } from './config-validator.js';"];
    const code = standalone.default(ajv, ajv.compile(configSchema)).replace(/require\("([^"]+)"\)/g, (_m: string, spec: string) => {
        const name = `__runtime${imports.length}`;
        imports.push(`import ${name} from '${spec.endsWith('.js') ? spec : `${spec}.js`}';`);
        return name;
    });
    writeFileSync(join(DIST, 'lib', 'config-validator.generated.js'), `${imports.join('\n')}\n${code}\n`);
}

writeConfigValidator();
rmSync(OUT, { recursive: true, force: true });
const source = readFileSync(ENTRY, 'utf8');
await build({
    entryPoints: { sapi: ENTRY },
    outdir: OUT,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    chunkNames: 'chunks/[name]-[hash]',
    sourcemap: 'linked',
    external: ['better-sqlite3', 'moray', 'dtrace-provider'],
    banner: { js: BANNER },
    logLevel: 'warning',
});

// The stub keeps the path every caller uses (npm start, the SMF manifest).
const shebang = source.startsWith('#!') ? `${source.split('\n', 1)[0]}\n` : '#!/usr/bin/env node\n';
writeFileSync(ENTRY, `${shebang}// The server is bundled (tools/bundle-server.ts): this loads the bundle.\nimport '../server/sapi.js';\n`);
rmSync(`${ENTRY}.map`, { force: true });
chmodSync(ENTRY, 0o755);
