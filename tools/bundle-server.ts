// Build step after tsc: write the config and request validators as code (so
// the server neither compiles a schema nor loads ajv), bundle the server (dist/bin/sapi.js and
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
// addons (better-sqlite3's JavaScript too, unless its addon is where the
// store names it: see sqliteExternal) and what the code loads through
// createRequire (the moray client), plus bunyan's optional dtrace-provider
// when its addon was built (see dtraceProvider).
//
// Deferred (LAZY): a few packages that dependencies require as they load
// but that a start never uses. They too are left out of the bundle; in
// their place the bundle holds a stand-in that loads the real package from
// node_modules the first time anything of it is used.

import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { _ } from 'ajv';
import standalone from 'ajv/dist/standalone/index.js';
import { build, type Plugin } from 'esbuild';

import { configAjv, configSchemaForCode } from '../lib/config-validator.js';
import { requestAjv } from '../lib/model/validate-ajv.js';
import { REQUEST_SCHEMAS } from '../schemas/requests.js';

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
 * ajv's runtime helpers that generated validators may call, and what they
 * call instead (lib/config-formats.ts): ajv's own would bring ajv's whole
 * core into the start.
 */
const AJV_RUNTIME: Record<string, string> = {
    'ajv/dist/runtime/ucs2length': '{ default: charLength }',
};

/** ajv's standalone code, its runtime helpers replaced by AJV_RUNTIME's; any other fails the build. */
function ownRuntime(code: string, what: string): string {
    return code.replace(/require\("([^"]+)"\)/g, (_m: string, spec: string) => {
        const own = AJV_RUNTIME[spec];
        if (own === undefined) {
            throw new Error(`${what} needs ${spec}: the start would load ajv (see AJV_RUNTIME)`);
        }
        return own;
    });
}

/**
 * The config validator as ajv code, written beside dist/lib/config.js, which
 * loads it instead of compiling the schema at every start. It imports only
 * lib/config-formats.ts, which is free of ajv: reading the config loads none
 * of ajv.
 */
function writeConfigValidator(): void {
    // Optimised here, once: smaller code for the start to parse (the same checks).
    const ajv = configAjv({ source: true, esm: true, optimize: true, formats: _`configFormats` });
    const code = ownRuntime(standalone.default(ajv, ajv.compile(configSchemaForCode())), 'the config validator');
    writeFileSync(join(DIST, 'lib', 'config-validator.generated.js'), `import { charLength, configFormats } from './config-formats.js';\n${code}\n`);
}

/**
 * The request validators as ajv code, one per schema of schemas/requests.ts
 * (exported by $id, and together as `validators`), written beside
 * dist/lib/model/validate.js, which loads them instead of ajv. They import
 * only lib/model/validate-formats.ts.
 */
function writeRequestValidators(): void {
    const ajv = requestAjv({ source: true, esm: true, formats: _`requestFormats` });
    const ids = Object.values(REQUEST_SCHEMAS).map((s) => s.$id);
    for (const schema of Object.values(REQUEST_SCHEMAS)) {
        ajv.addSchema(schema);
    }
    const code = ownRuntime(standalone.default(ajv, Object.fromEntries(ids.map((id) => [id, id]))), 'the request validators');
    writeFileSync(
        join(DIST, 'lib', 'model', 'request-validators.generated.js'),
        `import { charLength, requestFormats } from './validate-formats.js';\n${code}\nexport const validators = { ${ids.join(', ')} };\n`,
    );
}

/** Packages required at load by dependencies, used only for what SAPI does rarely or never, and why. */
const LAZY: Record<string, string> = {
    spdy: "restify's server, for its `spdy` option (SAPI serves plain HTTP)",
    mv: 'bunyan, for rotating-file streams (SAPI logs to stdout)',
    formidable: "restify's body parser, for multipart bodies",
    csv: "restify's body parser, for text/csv and text/tsv bodies",
    '@opentelemetry/api': "prom-client's process CPU metric, for exemplars (SAPI enables none)",
};

/**
 * Each LAZY package becomes a stand-in: a function proxy whose every use
 * (a property, a call, `new`) first loads the package (esbuild leaves the
 * stand-in's own require of it to node_modules).
 */
const deferPackages: Plugin = {
    name: 'defer-packages',
    setup(b) {
        const filter = new RegExp(
            `^(${Object.keys(LAZY)
                .map((name) => name.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'))
                .join('|')})$`,
        );
        b.onResolve({ filter }, (args) => (args.namespace === 'lazy' ? { path: args.path, external: true } : { path: args.path, namespace: 'lazy' }));
        b.onLoad({ filter: /.*/, namespace: 'lazy' }, (args) => ({
            resolveDir: DIST,
            loader: 'js',
            contents: [
                `// ${args.path}: required by ${LAZY[args.path] ?? '?'}; loaded on first use.`,
                'let real;',
                `const load = () => (real ??= require(${JSON.stringify(args.path)}));`,
                'module.exports = new Proxy(function () {}, {',
                '    get: (_t, key) => Reflect.get(load(), key),',
                '    has: (_t, key) => Reflect.has(load(), key),',
                '    apply: (_t, self, args) => Reflect.apply(load(), self, args),',
                '    construct: (_t, args) => Reflect.construct(load(), args),',
                '});',
            ].join('\n'),
        }));
    },
};

/**
 * bunyan's optional dtrace-provider: left to node_modules when its addon
 * was built, as before; when it was not (npm runs no install script of it:
 * package.json's allowScripts), in its place a module that throws as a
 * missing one does, which bunyan takes for "no DTrace", as the package
 * itself would have told it after failing to load the addon (which took
 * some ms of every start).
 */
const dtraceProvider: Plugin = {
    name: 'dtrace-provider',
    setup(b) {
        b.onResolve({ filter: /^dtrace-provider$/ }, (args) => {
            let built = false;
            try {
                const dir = dirname(createRequire(join(DIST, 'bin', 'sapi.js')).resolve('dtrace-provider'));
                built = ['Release', 'default', 'Debug'].some((d) => existsSync(join(dir, 'src', 'build', d, 'DTraceProviderBindings.node')));
            } catch {
                // not installed: the same as not built
            }
            return built ? { path: args.path, external: true } : { path: args.path, namespace: 'no-dtrace' };
        });
        b.onLoad({ filter: /.*/, namespace: 'no-dtrace' }, () => ({
            loader: 'js',
            contents: [
                '// dtrace-provider: its addon was not built when the server was bundled (tools/bundle-server.ts).',
                'const err = new Error("Cannot find module \'dtrace-provider\'");',
                "err.code = 'MODULE_NOT_FOUND';",
                'throw err;',
            ].join('\n'),
        }));
    },
};

/**
 * better-sqlite3's JavaScript is bundled when its addon was built where the
 * embedded store names it by path (lib/stor/sqlite/connection.ts:
 * build/Release), so a start does not find and read its dozen files one by
 * one; otherwise it stays in node_modules, where its own search for the
 * addon (the bindings package, which goes by the caller's file) works.
 */
function sqliteExternal(): string[] {
    try {
        const main = createRequire(ENTRY).resolve('better-sqlite3');
        return existsSync(join(dirname(main), '..', 'build', 'Release', 'better_sqlite3.node')) ? [] : ['better-sqlite3'];
    } catch {
        return ['better-sqlite3'];
    }
}

writeConfigValidator();
writeRequestValidators();
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
    external: [...sqliteExternal(), 'moray'],
    banner: { js: BANNER },
    plugins: [deferPackages, dtraceProvider],
    logLevel: 'warning',
});

// The stub keeps the path every caller uses (npm start, the SMF manifest).
const shebang = source.startsWith('#!') ? `${source.split('\n', 1)[0]}\n` : '#!/usr/bin/env node\n';
writeFileSync(ENTRY, `${shebang}// The server is bundled (tools/bundle-server.ts): this loads the bundle.\nimport '../server/sapi.js';\n`);
rmSync(`${ENTRY}.map`, { force: true });
chmodSync(ENTRY, 0o755);
