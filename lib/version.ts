// The package's name and version ("sapi-ts 3.0.0"), read from package.json:
// one directory above lib/ in a checkout, two above dist/lib/ (or the
// bundle's dist/server/) once built.

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The directory holding package.json (the install's root: /opt/smartdc/sapi in a zone), or null. */
export function packageRoot(): string | null {
    let dir = dirname(fileURLToPath(import.meta.url));
    for (let i = 0; i < 3; i++, dir = dirname(dir)) {
        if (existsSync(join(dir, 'package.json'))) {
            return dir;
        }
    }
    return null;
}

export function packageVersion(): string {
    const root = packageRoot();
    if (root === null) {
        return 'sapi (version unknown)';
    }
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { name?: string; version?: string };
    return `${pkg.name ?? 'sapi'} ${pkg.version ?? 'unknown'}`;
}
