// Live rollout progress: a bar redrawn in place on a terminal, plain lines
// (on change, and every HEARTBEAT_MS) otherwise; stall warnings and failed
// instances are printed as they appear; a summary at the end.

import type { Rollout, RolloutItem } from '../rollout/types.js';
import type { Cli } from './common.js';
import { duration, plural } from './table.js';

const BAR = 24;
const HEARTBEAT_MS = 10_000;

export function progressLine(r: Rollout, now = Date.now()): string {
    const c = r.counts;
    const total = r.items.length;
    const done = c.succeeded + c.failed + c.canceled;
    const filled = total === 0 ? BAR : Math.round((done / total) * BAR);
    const bar = `[${'#'.repeat(filled)}${'.'.repeat(BAR - filled)}]`;
    const end = r.finished_at ? Date.parse(r.finished_at) : now;
    return (
        `${bar} ${done}/${total}  pending ${c.pending}  running ${c.running}  succeeded ${c.succeeded}` +
        `  failed ${c.failed}  stalled ${c.stalled}` +
        (c.canceled > 0 ? `  canceled ${c.canceled}` : '') +
        `  avg ${duration(r.average_ms)}  elapsed ${duration(end - Date.parse(r.created_at))}`
    );
}

export class ProgressView {
    private warningsSeen = 0;
    private readonly failedSeen = new Set<string>();
    private lastLine = '';
    private lastPrinted = 0;
    private drawn = false;

    constructor(
        private readonly cli: Cli,
        private readonly tty: boolean,
    ) {}

    update(r: Rollout): void {
        const events: string[] = [];
        for (const w of r.warnings.slice(this.warningsSeen)) {
            events.push(`warning: ${w}`);
        }
        this.warningsSeen = r.warnings.length;
        for (const item of r.items) {
            if (item.state === 'failed' && !this.failedSeen.has(item.instance_uuid)) {
                this.failedSeen.add(item.instance_uuid);
                events.push(`failed: ${failure(item)}`);
            }
        }
        const line = progressLine(r);
        if (this.tty) {
            this.clear();
            for (const e of events) this.cli.out(e);
            this.cli.io.stdout.write(line);
            this.drawn = true;
            return;
        }
        for (const e of events) this.cli.out(e);
        // Plain output: a line when something changed, else a heartbeat.
        const key = line.replace(/ {2}elapsed .*$/, '');
        if (key !== this.lastLine || Date.now() - this.lastPrinted >= HEARTBEAT_MS) {
            this.cli.out(line);
            this.lastLine = key;
            this.lastPrinted = Date.now();
        }
    }

    /** Ends the redrawn line (before other output). */
    clear(): void {
        if (this.tty && this.drawn) {
            this.cli.io.stdout.write('\r\x1b[K');
            this.drawn = false;
        }
    }

    /** Leaves the last bar on screen and moves to a new line. */
    finish(): void {
        if (this.tty && this.drawn) {
            this.cli.io.stdout.write('\n');
            this.drawn = false;
        }
    }
}

/** "instance X on server Y: <error>" (the error alone when it names the instance). */
function failure(item: RolloutItem): string {
    const error = item.error ?? 'unknown error';
    return error.includes(item.instance_uuid) ? error : `instance ${item.instance_uuid} on server ${item.server_uuid}: ${error}`;
}

/** The end-of-rollout report. */
export function summary(r: Rollout): string[] {
    const c = r.counts;
    const took = r.finished_at ? duration(Date.parse(r.finished_at) - Date.parse(r.created_at)) : 'still running';
    const lines = [
        `Rollout ${r.uuid} ${r.state}: ${r.service_name} to image ${r.image_uuid}`,
        `  ${plural(r.items.length, 'instance')}: ${c.succeeded} succeeded, ${c.failed} failed` +
            (c.canceled > 0 ? `, ${c.canceled} canceled` : '') +
            (c.pending + c.running + c.stalled > 0 ? `, ${c.pending + c.running + c.stalled} not finished` : '') +
            `; average ${duration(r.average_ms)}; took ${took}`,
    ];
    const failed = r.items.filter((i) => i.state === 'failed');
    if (failed.length > 0) {
        lines.push('  failed:');
        for (const i of failed) {
            lines.push(`    ${failure(i)}`);
        }
    }
    if (r.warnings.length > 0) {
        lines.push(`  ${plural(r.warnings.length, 'warning')} (see above or \`sapiadm rollout status ${r.uuid}\`)`);
    }
    return lines;
}
