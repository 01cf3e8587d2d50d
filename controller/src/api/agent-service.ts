import type { Duration } from '../../../build/gen/google/protobuf/duration.ts';
import type * as pb from '../../../build/gen/ingot/v1/agent.ts';
import { type AgentSessions, DEFAULT_AGENT_TOKEN_TTL_MS } from '../conductor/agent-sessions.ts';
import { InvalidArgumentError } from '../domain/errors.ts';
import { NodeHardware } from '../store/entities/agent.ts';
import { Node } from '../store/entities/node.ts';
import { findByRef } from '../store/resource-repository.ts';
import { ADMIN_ONLY } from './auth.ts';
import type { BidiStreamMethod, Handlers, Method } from './rpc.ts';
import { IN_BAND } from './rpc.ts';
import { hardwareToProto } from './task-mappers.ts';

/** Longest agent token lifetime. @default 30 days */
const MAX_AGENT_TOKEN_TTL_MS = 30 * 24 * 3600_000;

/** A Duration in milliseconds; `fallback` when unset. Throws INVALID_ARGUMENT outside (0, max]. */
export function durationMs(d: Duration | undefined, field: string, fallback: number, maxMs: number): number {
  if (!d || (d.seconds === 0 && d.nanos === 0)) return fallback;
  const ms = d.seconds * 1000 + Math.floor(d.nanos / 1e6);
  if (!(ms > 0) || ms > maxMs) {
    throw new InvalidArgumentError([
      { field, description: `must be positive and at most ${Math.round(maxMs / 1000)} seconds` },
    ]);
  }
  return ms;
}

/** AgentService: the agents' Connect stream, agent tokens, connected agents. */
export function agentHandlers(sessions: AgentSessions): Handlers {
  const connect: BidiStreamMethod<pb.ConnectRequest, pb.ConnectResponse> = {
    access: IN_BAND,
    stream: 'bidi',
    handle: (requests, ctx, send) =>
      sessions.serve(
        requests,
        { authority: ctx.authority, peer: ctx.peer, signal: ctx.signal, log: ctx.log },
        send,
      ),
  };
  const createToken: Method<pb.CreateAgentTokenRequest, pb.CreateAgentTokenResponse> = {
    access: ADMIN_ONLY,
    async handle(req, { em }) {
      const ttlMs = durationMs(req.ttl, 'ttl', DEFAULT_AGENT_TOKEN_TTL_MS, MAX_AGENT_TOKEN_TTL_MS);
      const node = await findByRef(em, 'node', Node, req.node);
      const { token, expiresAt } = await sessions.mintToken(em, node.id, ttlMs);
      return { token, nodeId: node.id, expireTime: expiresAt };
    },
  };
  const list: Method<pb.ListAgentsRequest, pb.ListAgentsResponse> = {
    access: ADMIN_ONLY,
    async handle(_req, { em }) {
      const agents = await sessions.connected(em);
      const ids = agents.map((a) => a.nodeId);
      const [nodes, hardware] = await Promise.all([
        em.find(Node, { id: { $in: ids } }, { fields: ['id', 'name'] }),
        em.find(NodeHardware, { nodeId: { $in: ids } }),
      ]);
      const names = new Map(nodes.map((n) => [n.id, n.name]));
      const inventories = new Map(hardware.map((h) => [h.nodeId, h.inventory]));
      return {
        agents: agents.map((a) => {
          const inventory = inventories.get(a.nodeId);
          return {
            nodeId: a.nodeId,
            nodeName: names.get(a.nodeId) ?? '',
            agentVersion: a.agentVersion,
            peer: a.peer,
            connectTime: a.connectedAt,
            heartbeatTime: a.heartbeatAt,
            inventory: inventory ? hardwareToProto(inventory) : undefined,
          };
        }),
      };
    },
  };
  return { Connect: connect, CreateAgentToken: createToken, ListAgents: list } as Handlers;
}
