// Bundled by tsup and resolved by vitest alike, so the reported version is the package's own.
import driverPackage from '../../package.json' with { type: 'json' };

export const DRIVER_VERSION: string = driverPackage.version;
