// eslint 10 + typescript-eslint, type-aware: the promise rules matter most
// in a server full of async handlers.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

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
