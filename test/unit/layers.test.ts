// The layers of lib/ are enforced by the lint (eslint.config.js, run by
// `make check`): a wrong-way import fails, a right-way one passes, and the
// tree as it stands follows them.

import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { ESLint } from 'eslint';
import t from 'tap';
import tseslint from 'typescript-eslint';

// @ts-expect-error: the lint config is JavaScript, without types.
import { layerRules, LAYERS } from '../../eslint.config.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** ESLint with the layer rules alone (no type information needed). */
function linter(): ESLint {
    return new ESLint({
        cwd: ROOT,
        overrideConfigFile: true,
        overrideConfig: [{ files: ['**/*.ts'], languageOptions: { parser: tseslint.parser } }, ...(layerRules as () => object[])()],
    });
}

async function problems(file: string, code: string): Promise<string[]> {
    const [result] = await linter().lintText(code, { filePath: join(ROOT, file) });
    return (result?.messages ?? []).map((m) => m.message);
}

t.test('the folders, lowest first', async (t) => {
    t.same(LAYERS, ['stor', 'leases', 'model', 'clients', 'deploy', 'rollout', 'endpoints', 'cli']);
});

t.test('a wrong-way import fails, naming the layers', async (t) => {
    const wrong: [string, string, RegExp][] = [
        ['lib/stor/fixture.ts', "import type { Instance } from '../model/types.js';", /lib\/stor is below .*lib\/model/],
        ['lib/stor/moray/fixture.ts', "import type { Leases } from '../../leases/leases.js';", /lib\/stor is below lib\/leases/],
        ['lib/model/fixture.ts', "import type { Deployer } from '../deploy/index.js';", /lib\/model is below .*lib\/deploy/],
        ['lib/model/fixture.ts', "import { ChangeFeed } from '../stor/moray/feed.js';", /a store backend is known only to lib\/stor/],
        ['lib/deploy/fixture.ts', "import { RolloutManager } from '../rollout/runner.js';", /lib\/deploy is below .*lib\/rollout/],
        ['lib/clients/fixture.ts', "import type { Instance } from '../model/types.js';", /lib\/clients is below .*lib\/model/],
        ['lib/rollout/fixture.ts', "import { Metrics } from '../metrics.js';", /stand on top of every folder/],
        ['lib/endpoints/fixture.ts', "import { program } from '../cli/program.js';", /lib\/endpoints is below .*lib\/cli/],
    ];
    for (const [file, code, message] of wrong) {
        const found = await problems(file, code);
        t.equal(found.length, 1, `${file}: ${code}`);
        t.match(found[0], message, `${file}: ${code}`);
    }
});

t.test('a right-way import passes', async (t) => {
    const right: [string, string][] = [
        ['lib/model/fixture.ts', "import type { Store } from '../stor/store.js';"],
        ['lib/model/fixture.ts', "import { invalidArgument } from '../errors.js';"],
        ['lib/deploy/fixture.ts', "import type { Deployer } from '../model/deployer.js';"],
        ['lib/rollout/fixture.ts', "import type { Leases } from '../leases/leases.js';"],
        ['lib/stor/moray/fixture.ts', "import { NotFoundError } from '../errors.js';"],
        ['lib/app.ts', "import { ChangeFeed } from './stor/moray/feed.js';"],
    ];
    for (const [file, code] of right) {
        t.same(await problems(file, code), [], `${file}: ${code}`);
    }
});

t.test('every file of lib/ follows the layers', async (t) => {
    const results = await linter().lintFiles(['lib/**/*.ts']);
    const wrong = results.flatMap((r) => r.messages.map((m) => `${r.filePath.slice(ROOT.length + 1)}:${m.line}: ${m.message}`));
    t.same(wrong, []);
    t.ok(results.length > 50, `${results.length} files checked`);
});
