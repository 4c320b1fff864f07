// The store contract, run against the SQLite backend (memory and file).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import t from 'tap';

import { SqliteStore } from '../../lib/stor/sqlite/index.js';
import { storeContract } from '../lib/store-contract.js';

t.test('SqliteStore :memory:', async (t) => {
    storeContract(t, async () => {
        const store = new SqliteStore({ path: ':memory:' });
        await store.init();
        return store;
    });
});

t.test('SqliteStore in a temp file', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sapi-stor-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    // One file for every subtest: stores are opened and closed in turn.
    const path = join(dir, 'sub', 'sapi.sqlite');
    storeContract(t, async () => {
        const store = new SqliteStore({ path });
        await store.init();
        return store;
    });
});
