import { describe, expect, it } from 'vitest';
import { Node } from '../../build/gen/ingot/v1/inventory.ts';
import { nodeAddRequest, nodeUpdateRequest, nodeView } from '../../tools/bmctl/commands/node.ts';
import { UsageError } from '../../tools/bmctl/errors.ts';

// `--root-disk` on `node add` and `node update`, and root_disk in `node show`; the controller
// validates the path (NODE_FIELDS), so bmctl passes it as given.

const secrets = { readStdin: async () => '', cwd: '/nonexistent' };

describe('a node’s root disk', () => {
  it('node add sends --root-disk with the node, and nothing (the controller’s /dev/sda) without it', async () => {
    const withDisk = await nodeAddRequest([], { ip: '10.0.0.5', rootDisk: '/dev/nvme0n1' }, secrets);
    expect(withDisk.node?.rootDisk).toBe('/dev/nvme0n1');
    expect((await nodeAddRequest([], { ip: '10.0.0.5' }, secrets)).node?.rootDisk).toBe('');
  });

  it('node update sets only root_disk through the field mask; no setting at all is a usage error', () => {
    expect(nodeUpdateRequest('bm1', { rootDisk: '/dev/sdb' })).toEqual({
      node: Node.fromPartial({ id: 'bm1', rootDisk: '/dev/sdb' }),
      updateMask: ['root_disk'],
    });
    expect(() => nodeUpdateRequest('bm1', {})).toThrow(UsageError);
  });

  it('node show prints root_disk; JSON has it by its proto name', () => {
    const node = Node.fromPartial({ name: 'bm1', rootDisk: '/dev/nvme0n1' });
    expect(nodeView().fields(node)).toContainEqual(['root_disk', '/dev/nvme0n1']);
    expect(nodeView().json(node)).toMatchObject({ root_disk: '/dev/nvme0n1' });
  });
});
