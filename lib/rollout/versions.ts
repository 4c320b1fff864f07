// Agent image versions: compared as semver, and looked up in IMGAPI once
// per plan where CNAPI's server.agents does not give them.

import { createRequire } from 'node:module';

import type { PlanDeps } from './input.js';

const require = createRequire(import.meta.url);
let semverLib: typeof import('semver') | undefined;

/**
 * a vs b as versions: negative, 0 or positive; null when either is not a
 * version (then nothing is concluded from them). Agent images carry semver
 * versions ("1.1.0", "4.8.1-20230505T..."): the build stamp is a
 * prerelease tag and orders builds of one version.
 */
export function compareVersions(a: string | undefined, b: string | undefined): number | null {
    if (!a || !b) {
        return null;
    }
    semverLib ??= require('semver') as typeof import('semver');
    const va = semverLib.valid(a) ?? semverLib.valid(semverLib.coerce(a));
    const vb = semverLib.valid(b) ?? semverLib.valid(semverLib.coerce(b));
    return va && vb ? semverLib.compare(va, vb) : null;
}

/** Image versions, each looked up once per plan (unknown images: undefined). */
export function versionLookup(deps: PlanDeps, reqId: string): (image: string | undefined) => Promise<string | undefined> {
    const known = new Map<string, Promise<string | undefined>>();
    return (image) => {
        if (!image || !deps.imgapi) {
            return Promise.resolve(undefined);
        }
        let v = known.get(image);
        if (!v) {
            v = deps.imgapi.getImage(image, { reqId }).then(
                (img) => img?.version,
                () => undefined,
            );
            known.set(image, v);
        }
        return v;
    };
}
