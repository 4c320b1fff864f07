// eslint 10 + typescript-eslint, type-aware: the promise rules matter most
// in a server full of async handlers. Also the layers of lib/ (below).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * The folders of lib/, lowest first. A folder imports only from folders
 * below it (and from lib/'s own base files: errors, config, fs-errors, …);
 * lib/metrics.ts, lib/server.ts and lib/app.ts stand on top of them all.
 * A store backend (stor/moray, stor/sqlite) is known only to the store
 * setup (stor/index.ts) and the composition root (app.ts).
 * docs/architecture.md draws the same order.
 */
export const LAYERS = ['stor', 'leases', 'model', 'clients', 'deploy', 'rollout', 'endpoints', 'cli'];
const TOP = ['app', 'server', 'metrics'];
/** Folders beside each other that do not import each other (neither is below the other). */
const APART = { clients: ['model', 'leases', 'stor'], endpoints: ['cli'], cli: ['endpoints'] };

export function layerRules() {
    return LAYERS.map((folder, i) => {
        const above = [...LAYERS.slice(i + 1), ...(APART[folder] ?? [])];
        const patterns = [
            {
                regex: `^(\\.\\./)+(${above.join('|')})/`,
                message: `lib/${folder} is below ${above.map((f) => `lib/${f}`).join(', ')}: it must not import them (see docs/architecture.md)`,
            },
            {
                regex: `^(\\.\\./)+(${TOP.join('|')})\\.js$`,
                message: `lib/${folder} must not import lib/${TOP.join('.ts, lib/')}.ts: they stand on top of every folder`,
            },
        ];
        if (folder !== 'stor') {
            patterns.push({
                regex: '^(\\.\\./)+stor/(moray|sqlite)/',
                message: 'a store backend is known only to lib/stor and lib/app.ts: use lib/stor/index.ts or lib/stor/store.ts',
            });
        }
        return { files: [`lib/${folder}/**/*.ts`], rules: { 'no-restricted-imports': ['error', { patterns }] } };
    });
}

export default tseslint.config(
    { ignores: ['dist/', 'node_modules/', 'data/', '.tap/', 'eslint.config.js'] },
    js.configs.recommended,
    ...tseslint.configs.recommendedTypeChecked,
    {
        languageOptions: {
            parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
        },
        rules: {
            '@typescript-eslint/no-floating-promises': 'error',
            '@typescript-eslint/no-misused-promises': 'error',
            '@typescript-eslint/require-await': 'off',
            '@typescript-eslint/no-unsafe-assignment': 'off',
            '@typescript-eslint/no-unsafe-member-access': 'off',
            '@typescript-eslint/no-unsafe-argument': 'off',
            '@typescript-eslint/no-unsafe-call': 'off',
            '@typescript-eslint/no-unsafe-return': 'off',
            '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', ignoreRestSiblings: true }],
            // The server silences Node's Buffer() deprecation warning (its bundled
            // dependencies draw it): SAPI's own code must never need it.
            'no-restricted-syntax': [
                'error',
                { selector: "NewExpression[callee.name='Buffer']", message: 'use Buffer.from or Buffer.alloc' },
                { selector: "CallExpression[callee.name='Buffer']", message: 'use Buffer.from or Buffer.alloc' },
            ],
        },
    },
    ...layerRules(),
    {
        // tap tracks the promise of every t.test() and teardown itself, and
        // teardown callbacks are passed as plain functions.
        files: ['test/**/*.ts'],
        rules: {
            '@typescript-eslint/no-floating-promises': 'off',
            '@typescript-eslint/unbound-method': 'off',
        },
    },
);
