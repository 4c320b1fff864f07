// The package's name and version ("sapi-ts 3.0.0"), read from package.json:
// one directory above lib/ in a checkout, two above dist/lib/ once built.

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export function packageVersion(): string {
    let dir = dirname(fileURLToPath(import.meta.url));
    for (let i = 0; i < 3; i++, dir = dirname(dir)) {
        const p = join(dir, 'package.json');
        if (existsSync(p)) {
            const pkg = JSON.parse(readFileSync(p, 'utf8')) as { name?: string; version?: string };
            return `${pkg.name ?? 'sapi'} ${pkg.version ?? 'unknown'}`;
        }
    }
    return 'sapi (version unknown)';
}
