// Leases moved below the model (lib/leases/leases.ts, and the store's
// backends in lib/stor/lease-backend.ts). Kept so that imports of this path
// still resolve.

export * from '../leases/leases.js';
export * from '../stor/lease-backend.js';
