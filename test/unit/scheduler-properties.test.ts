import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type {
  AggregateInfo,
  HostState,
  RequestSpec,
} from '../../controller/src/domain/scheduler/host-state.ts';
import { Scheduler } from '../../controller/src/domain/scheduler/scheduler.ts';
import { aggregate, hypervisor, node, request, SETTINGS } from '../fakes/inventory-builder.ts';

/**
 * Random inventories and requests against an oracle written from the rules
 * themselves (not from the filters): the scheduler must pick exactly the
 * eligible hosts, so isolation holds, nothing is over-committed and "no valid
 * host" means no host was eligible.
 */

const PROJECTS = ['p0', 'p1', 'p2', 'p3'];
const ZONES = ['', 'az-1', 'az-2'];

const aggregatesArb = fc
  .array(
    fc.record({
      owner: fc.constantFrom(undefined, ...PROJECTS),
      zone: fc.constantFrom(...ZONES),
      disk: fc.constantFrom(undefined, 'ssd', 'hdd', 'ssd,hdd'),
    }),
    { minLength: 1, maxLength: 5 },
  )
  .map((specs) =>
    specs.map((s, i) => {
      const metadata: Record<string, string> = {};
      if (s.owner) metadata.project_id = s.owner;
      if (s.disk) metadata.disk = s.disk;
      return aggregate(i === 0 ? 'default' : `agg-${i}`, metadata, s.zone);
    }),
  );

function hostsArb(aggregates: AggregateInfo[]): fc.Arbitrary<HostState[]> {
  const membership = fc.subarray(aggregates, { maxLength: Math.min(2, aggregates.length) });
  const hyper = fc.record({
    vcpus: fc.integer({ min: 1, max: 64 }),
    ramMb: fc.integer({ min: 1024, max: 65536 }),
    diskGb: fc.integer({ min: 10, max: 2000 }),
    usedShare: fc.double({ min: 0, max: 1.2, noNaN: true }),
    aggregates: membership,
  });
  const bare = fc.record({
    vcpus: fc.integer({ min: 1, max: 64 }),
    ramMb: fc.integer({ min: 1024, max: 65536 }),
    diskGb: fc.integer({ min: 10, max: 2000 }),
    aggregates: membership,
    state: fc.constantFrom('available', 'available', 'active', 'cleaning'),
    maintenance: fc.boolean(),
    claimed: fc.boolean(),
  });
  return fc.tuple(fc.array(hyper, { maxLength: 8 }), fc.array(bare, { maxLength: 8 })).map(([hs, ns]) => [
    ...hs.map((h, i) =>
      hypervisor(`h${i}`, {
        vcpus: h.vcpus,
        ramMb: h.ramMb,
        diskGb: h.diskGb,
        usedVcpus: Math.floor(h.vcpus * 16 * h.usedShare),
        usedRamMb: Math.floor(h.ramMb * 1.5 * h.usedShare),
        usedDiskGb: Math.floor(h.diskGb * h.usedShare),
        aggregates: h.aggregates,
      }),
    ),
    ...ns.map((n, i) =>
      node(`n${i}`, {
        vcpus: n.vcpus,
        ramMb: n.ramMb,
        diskGb: n.diskGb,
        aggregates: n.aggregates,
        provisionState: n.state,
        maintenance: n.maintenance,
        instanceId: n.claimed ? 'i-x' : null,
      }),
    ),
  ]);
}

const requestArb = fc.record({
  project: fc.constantFrom(...PROJECTS),
  isolated: fc.boolean(),
  vcpus: fc.integer({ min: 1, max: 32 }),
  ramMb: fc.integer({ min: 256, max: 32768 }),
  diskGb: fc.integer({ min: 1, max: 1000 }),
  bareMetal: fc.boolean(),
  zone: fc.constantFrom(...ZONES),
  disk: fc.constantFrom(undefined, 'ssd', 'hdd'),
});

const world = aggregatesArb.chain((aggregates) =>
  fc.record({ aggregates: fc.constant(aggregates), hosts: hostsArb(aggregates), req: requestArb }),
);

type RequestInput = typeof requestArb extends fc.Arbitrary<infer R> ? R : never;

function toRequest(r: RequestInput, aggregates: AggregateInfo[]): RequestSpec {
  return request(
    {
      project: r.project,
      isolated: r.isolated,
      vcpus: r.vcpus,
      ramMb: r.ramMb,
      diskGb: r.diskGb,
      hints: r.bareMetal ? { compute_type: 'bare_metal' } : {},
      availabilityZone: r.zone,
      extraSpecs: r.disk ? { disk: r.disk } : {},
    },
    aggregates,
  );
}

/** The rules, stated directly. */
function eligible(host: HostState, req: RequestSpec, aggregates: AggregateInfo[]): boolean {
  const owners = host.aggregates.map((a) => a.metadata.project_id).filter(Boolean);
  if (owners.some((o) => o !== req.projectId)) return false;
  const zones = host.aggregates.map((a) => a.availabilityZone).filter(Boolean);
  if (req.availabilityZone && !(zones.length ? zones : ['nova']).includes(req.availabilityZone)) return false;
  const wantDisk = req.flavor.extraSpecs.disk;
  if (wantDisk && !host.aggregates.some((a) => a.metadata.disk?.split(',').includes(wantDisk))) return false;
  const f = req.flavor;
  if (req.bareMetal) {
    return (
      host.kind === 'node' &&
      host.provisionState === 'available' &&
      !host.maintenance &&
      !host.instanceId &&
      host.vcpus >= f.vcpus &&
      host.ramMb >= f.ramMb &&
      host.diskGb >= f.diskGb
    );
  }
  if (host.kind !== 'host') return false;
  const own = aggregates.filter((a) => a.metadata.project_id === req.projectId);
  const home =
    own.length > 0 ? own : req.projectIsolated ? [] : aggregates.filter((a) => a.name === 'default');
  if (!host.aggregates.some((a) => home.some((h) => h.id === a.id))) return false;
  return (
    host.vcpus * 16 - host.usedVcpus >= f.vcpus &&
    host.ramMb * 1.5 - host.usedRamMb >= f.ramMb &&
    host.diskGb - host.usedDiskGb >= f.diskGb
  );
}

const scheduler = new Scheduler(SETTINGS);

describe('scheduler properties', () => {
  it('selects exactly the hosts the rules allow; "no valid host" only when none is allowed', () => {
    fc.assert(
      fc.property(world, ({ aggregates, hosts, req }) => {
        const spec = toRequest(req, aggregates);
        const selection = scheduler.select(hosts, spec, { explain: false });
        const expected = hosts
          .filter((h) => eligible(h, spec, aggregates))
          .map((h) => h.name)
          .sort();
        expect(selection.ranked.map((w) => w.host.name).sort()).toEqual(expected);
        expect(selection.noValidHost === '').toBe(expected.length > 0);
      }),
      { numRuns: 2000 },
    );
  });

  it('ranks only the best `limit` hosts, exactly as the head of the full ranking', () => {
    fc.assert(
      fc.property(world, fc.integer({ min: 1, max: 10 }), ({ aggregates, hosts, req }, limit) => {
        const spec = toRequest(req, aggregates);
        const full = scheduler.select(hosts, spec, { explain: false });
        const head = scheduler.select(hosts, spec, { explain: false, limit });
        expect(head.ranked).toEqual(full.ranked.slice(0, limit));
        expect(head.candidates).toBe(full.ranked.length);
      }),
      { numRuns: 1000 },
    );
  });

  it('keeps isolated projects in their aggregate and everyone else out of it', () => {
    fc.assert(
      fc.property(world, ({ aggregates, hosts, req }) => {
        const spec = toRequest(req, aggregates);
        for (const { host } of scheduler.select(hosts, spec, { explain: false }).ranked) {
          for (const a of host.aggregates) {
            if (a.metadata.project_id) expect(a.metadata.project_id).toBe(spec.projectId);
          }
          if (!spec.bareMetal && spec.projectIsolated) {
            expect(host.aggregates.some((a) => a.metadata.project_id === spec.projectId)).toBe(true);
          }
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('never over-commits while booting until no valid host is left', () => {
    fc.assert(
      fc.property(world, ({ aggregates, hosts, req }) => {
        const spec = toRequest(req, aggregates);
        const start = new Map(hosts.map((h) => [h.id, { ...h }]));
        for (let i = 0; i < 200; i++) {
          const best = scheduler.select(hosts, spec, { explain: false }).ranked[0]?.host;
          if (!best) break;
          if (best.kind === 'node') best.instanceId = `i-${i}`;
          else {
            best.usedVcpus += spec.flavor.vcpus;
            best.usedRamMb += spec.flavor.ramMb;
            best.usedDiskGb += spec.flavor.diskGb;
          }
        }
        for (const h of hosts) {
          const before = start.get(h.id) as HostState;
          if (h.kind === 'host' && h.usedRamMb !== before.usedRamMb) {
            expect(h.usedVcpus).toBeLessThanOrEqual(h.vcpus * 16);
            expect(h.usedRamMb).toBeLessThanOrEqual(h.ramMb * 1.5);
            expect(h.usedDiskGb).toBeLessThanOrEqual(h.diskGb);
          }
          if (h.kind === 'node' && h.instanceId !== before.instanceId) {
            expect(before.instanceId).toBeNull();
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
