// Agent image versions compared as the rollout planner compares them:
// semver, where a build stamp ("4.8.1-20230505T...") is a prerelease tag
// that orders builds of one version; a value that is not a version (after
// coercion) concludes nothing. Kept here rather than imported from the
// planner, whose module would load the server's model and store code into
// every `sapiadm check`.

import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
let semverLib: typeof import('semver') | undefined;

/** a vs b: negative, 0 or positive; null when either is missing or not a version. */
export function compareVersions(a: string | undefined, b: string | undefined): number | null {
    if (!a || !b) {
        return null;
    }
    semverLib ??= require('semver') as typeof import('semver');
    const va = semverLib.valid(a) ?? semverLib.valid(semverLib.coerce(a));
    const vb = semverLib.valid(b) ?? semverLib.valid(semverLib.coerce(b));
    return va && vb ? semverLib.compare(va, vb) : null;
}
