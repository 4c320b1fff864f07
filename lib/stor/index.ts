// createStore(config): the one place a backend is chosen.

import type Logger from 'bunyan';

import type { SapiConfig } from '../config.js';
import { SqliteStore } from './sqlite/index.js';
import type { Store } from './store.js';

export async function createStore(config: SapiConfig, log: Logger): Promise<Store> {
    switch (config.store.backend) {
        case 'sqlite': {
            const store = new SqliteStore({ path: config.store.path });
            await store.init();
            log.info({ path: config.store.path }, 'embedded store open');
            return store;
        }
        case 'moray':
            throw new Error('the moray store backend is not available in this build');
    }
}
