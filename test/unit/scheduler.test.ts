import { describe, expect, it } from 'vitest';
import { Scheduler } from '../../controller/src/domain/scheduler/scheduler.ts';
import { aggregate, hypervisor, node, request, SETTINGS } from '../fakes/inventory-builder.ts';

const scheduler = new Scheduler(SETTINGS);
const names = (sel: ReturnType<Scheduler['select']>) => sel.ranked.map((w) => w.host.name);

/** The seed's placement setup: a default pool, a dedicated pool for project p-secure, and bare metal. */
function seedInventory() {
  const defaultAgg = aggregate('default', {}, 'nova');
  const secureAgg = aggregate('secure-pool', { project_id: 'p-secure' }, 'nova');
  const hosts = [
    hypervisor('compute-1', { aggregates: [defaultAgg] }),
    hypervisor('compute-2', { aggregates: [defaultAgg] }),
    hypervisor('secure-1', { aggregates: [secureAgg] }),
    node('bm-1'),
    node('bm-2', { vcpus: 16, ramMb: 65536 }),
  ];
  return { hosts, aggregates: [defaultAgg, secureAgg] };
}

describe("the seed's three cases", () => {
  const { hosts, aggregates } = seedInventory();

  it('(1) a member of an isolated project lands in its dedicated aggregate', () => {
    const sel = scheduler.select(hosts, request({ project: 'p-secure', isolated: true }, aggregates), {
      explain: false,
    });
    expect(names(sel)).toEqual(['secure-1']);
  });

  it('(2) the same member with compute_type=bare_metal lands on a bare-metal node outside any aggregate', () => {
    const sel = scheduler.select(
      hosts,
      request({ project: 'p-secure', isolated: true, hints: { compute_type: 'bare_metal' } }, aggregates),
      { explain: false },
    );
    expect(names(sel)).toEqual(['bm-1', 'bm-2']);
  });

  it('(3) a project without an aggregate lands in the default aggregate', () => {
    const sel = scheduler.select(hosts, request({ project: 'p-common' }, aggregates), { explain: false });
    expect(names(sel).sort()).toEqual(['compute-1', 'compute-2']);
  });
});

describe('PlacementFilter', () => {
  it('keeps everyone else out of a dedicated aggregate, bare metal included', () => {
    const secureAgg = aggregate('secure-pool', { project_id: 'p-secure' });
    const defaultAgg = aggregate('default');
    const hosts = [
      hypervisor('shared-and-dedicated', { aggregates: [defaultAgg, secureAgg] }),
      node('bm-dedicated', { aggregates: [secureAgg] }),
      node('bm-free'),
    ];
    const aggregates = [defaultAgg, secureAgg];
    expect(names(scheduler.select(hosts, request({}, aggregates), { explain: false }))).toEqual([]);
    const bm = scheduler.select(hosts, request({ hints: { compute_type: 'bare_metal' } }, aggregates), {
      explain: false,
    });
    expect(names(bm)).toEqual(['bm-free']);
    const owner = scheduler.select(
      hosts,
      request({ project: 'p-secure', hints: { compute_type: 'bare_metal' } }, aggregates),
      { explain: false },
    );
    expect(names(owner).sort()).toEqual(['bm-dedicated', 'bm-free']);
  });

  it('never sends an isolated project without an aggregate to the default pool', () => {
    const defaultAgg = aggregate('default');
    const sel = scheduler.select(
      [hypervisor('compute-1', { aggregates: [defaultAgg] })],
      request({ project: 'p-lonely', isolated: true }, [defaultAgg]),
      {
        explain: false,
      },
    );
    expect(sel.ranked).toEqual([]);
    expect(sel.noValidHost).toContain('project p-lonely is isolated but no aggregate is dedicated to it');
  });

  it('uses the configured default aggregate name', () => {
    const pool = aggregate('public');
    const hosts = [hypervisor('c1', { aggregates: [pool] })];
    const custom = new Scheduler({ ...SETTINGS, defaultAggregate: 'public' });
    expect(
      names(custom.select(hosts, request({}, [pool], { defaultAggregate: 'public' }), { explain: false })),
    ).toEqual(['c1']);
    expect(names(scheduler.select(hosts, request({}, [pool]), { explain: false }))).toEqual([]);
  });
});

describe('resource filters', () => {
  it('needs a bare-metal node to cover the flavor by itself', () => {
    const hosts = [node('small', { vcpus: 4, ramMb: 8192 }), node('big', { vcpus: 32, ramMb: 262144 })];
    const sel = scheduler.select(
      hosts,
      request({ vcpus: 8, ramMb: 16384, hints: { compute_type: 'bare_metal' } }, []),
      {
        explain: true,
      },
    );
    expect(names(sel)).toEqual(['big']);
    expect(sel.trace.find((s) => s.filter === 'VcpuFilter')?.rejected).toEqual([
      { host: 'small', reason: 'has 4 vCPUs, the flavor needs 8' },
    ]);
  });

  it('applies overcommit ratios to hypervisor hosts', () => {
    const pool = aggregate('default');
    const host = hypervisor('c1', {
      aggregates: [pool],
      vcpus: 4,
      ramMb: 4096,
      diskGb: 100,
      usedRamMb: 5120,
    });
    // 4096 MiB × 1.5 = 6144 MiB, 5120 used: 1024 left.
    expect(
      names(
        scheduler.select([host], request({ ramMb: 1024, vcpus: 1, diskGb: 1 }, [pool]), { explain: false }),
      ),
    ).toEqual(['c1']);
    const sel = scheduler.select([host], request({ ramMb: 1025, vcpus: 1, diskGb: 1 }, [pool]), {
      explain: false,
    });
    expect(sel.noValidHost).toBe(
      'no valid host: RamFilter rejected the last 1 host(s); closest: c1 (has 1024 MiB RAM free, the flavor needs 1025)',
    );
  });
});

describe('NodeStateFilter', () => {
  it('skips nodes in maintenance, claimed or not available', () => {
    const hosts = [
      node('maint', { maintenance: true }),
      node('claimed', { instanceId: 'i-1' }),
      node('cleaning', { provisionState: 'cleaning' }),
      node('free'),
    ];
    const sel = scheduler.select(hosts, request({ hints: { compute_type: 'bare_metal' } }, []), {
      explain: true,
    });
    expect(names(sel)).toEqual(['free']);
    expect(sel.trace.at(-1)?.rejected.map((r) => r.reason)).toEqual([
      'in maintenance',
      'already claimed by instance i-1',
      'cleaning, not available',
    ]);
  });
});

describe('AggregateInstanceExtraSpecsFilter and AvailabilityZoneFilter', () => {
  const ssd = aggregate('default', { disk: 'ssd,nvme' }, 'az-1');
  const hdd = aggregate('slow', { disk: 'hdd' }, 'az-2');
  const hosts = [hypervisor('fast', { aggregates: [ssd] }), hypervisor('slow', { aggregates: [ssd, hdd] })];

  it('matches scoped and unscoped specs against aggregate metadata sets', () => {
    const want = (spec: Record<string, string>) =>
      names(scheduler.select(hosts, request({ extraSpecs: spec }, [ssd, hdd]), { explain: false })).sort();
    expect(want({ 'aggregate_instance_extra_specs:disk': 'nvme' })).toEqual(['fast', 'slow']);
    expect(want({ disk: 'hdd' })).toEqual(['slow']);
    expect(want({ 'hw:cpu_policy': 'dedicated' })).toEqual(['fast', 'slow']);
    expect(want({ disk: 'tape' })).toEqual([]);
  });

  it('keeps hosts of the asked zone; hosts in no zone are in the default one', () => {
    const zoned = (zone: string) =>
      names(
        scheduler.select(hosts, request({ availabilityZone: zone }, [ssd, hdd]), { explain: false }),
      ).sort();
    expect(zoned('az-2')).toEqual(['slow']);
    expect(zoned('az-1')).toEqual(['fast', 'slow']);
    expect(zoned('')).toEqual(['fast', 'slow']);
    const bm = scheduler.select(
      [node('bm')],
      request({ availabilityZone: 'nova', hints: { compute_type: 'bare_metal' } }, []),
      {
        explain: false,
      },
    );
    expect(names(bm)).toEqual(['bm']);
  });
});

describe('weighers', () => {
  it('gives bare metal the smallest node that fits', () => {
    const hosts = [
      node('huge', { vcpus: 64, ramMb: 524288, diskGb: 4000 }),
      node('exact', { vcpus: 8, ramMb: 16384, diskGb: 500 }),
      node('roomy', { vcpus: 16, ramMb: 65536, diskGb: 1000 }),
    ];
    const sel = scheduler.select(
      hosts,
      request({ vcpus: 8, ramMb: 16384, diskGb: 500, hints: { compute_type: 'bare_metal' } }, []),
      {
        explain: false,
      },
    );
    expect(names(sel)).toEqual(['exact', 'roomy', 'huge']);
  });

  it('spreads VMs by free RAM, or packs them with a negative multiplier', () => {
    const pool = aggregate('default');
    const hosts = [
      hypervisor('busy', { aggregates: [pool], usedRamMb: 100000 }),
      hypervisor('idle', { aggregates: [pool] }),
    ];
    expect(names(scheduler.select(hosts, request({}, [pool]), { explain: false }))).toEqual(['idle', 'busy']);
    const packing = new Scheduler({ ...SETTINGS, ramWeigherMultiplier: -1 });
    expect(names(packing.select(hosts, request({}, [pool]), { explain: false }))).toEqual(['busy', 'idle']);
  });
});

describe('explain', () => {
  it('traces every filter and names the one that emptied the list with the closest misses', () => {
    const { hosts, aggregates } = seedInventory();
    const sel = scheduler.select(
      hosts,
      request({ vcpus: 12, hints: { compute_type: 'bare_metal' } }, aggregates),
      {
        explain: true,
      },
    );
    expect(sel.trace.map((s) => [s.filter, s.hostsIn, s.hostsOut])).toEqual([
      ['PlacementFilter', 5, 2],
      ['VcpuFilter', 2, 1],
      ['RamFilter', 1, 1],
      ['DiskFilter', 1, 1],
      ['AggregateInstanceExtraSpecsFilter', 1, 1],
      ['AvailabilityZoneFilter', 1, 1],
      ['NodeStateFilter', 1, 1],
    ]);
    expect(names(sel)).toEqual(['bm-2']);
    const none = scheduler.select(
      hosts,
      request({ vcpus: 99, hints: { compute_type: 'bare_metal' } }, aggregates),
      {
        explain: false,
      },
    );
    expect(none.noValidHost).toBe(
      'no valid host: VcpuFilter rejected the last 2 host(s); closest: bm-1 (has 8 vCPUs, the flavor needs 99); bm-2 (has 16 vCPUs, the flavor needs 99)',
    );
    expect(none.trace).toEqual([]);
  });

  it('says so when the inventory is empty', () => {
    expect(scheduler.select([], request({}, []), { explain: false }).noValidHost).toBe(
      'no valid host: the inventory has no hosts',
    );
  });

  it('refuses unknown filter names', () => {
    expect(() => new Scheduler({ ...SETTINGS, filters: ['CoreFilter'] })).toThrow(
      /unknown scheduler filter CoreFilter/,
    );
  });
});
