// The deployer interfaces are the model's (lib/model/deployer.ts): this
// folder implements them. Kept so that imports of this path still resolve.

export type * from '../model/deployer.js';
