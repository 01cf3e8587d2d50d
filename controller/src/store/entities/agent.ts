import { defineEntity, p } from '@mikro-orm/core';
import type { HardwareBody } from '../../domain/tasks.ts';

/**
 * A node's agent token. One per node: minting a new one replaces (revokes)
 * the old. Only the token's SHA-256 is stored.
 */
export const AgentTokenSchema = defineEntity({
  name: 'AgentToken',
  tableName: 'agent_token',
  properties: {
    nodeId: p.uuid().primary(),
    tokenHash: p.string().unique('agent_token_token_hash_key'),
    expiresAt: p.datetime(),
    createdAt: p.datetime().onCreate(() => new Date()),
  },
});

export class AgentToken extends AgentTokenSchema.class {}
AgentTokenSchema.setClass(AgentToken);

/**
 * The agent stream a node has open, held as a lease: the controller serving
 * the stream renews `expiresAt` on every heartbeat and deletes the row when
 * the stream ends. A second agent may take the node only after the lease
 * expired, whichever controller it reaches.
 */
export const AgentSessionSchema = defineEntity({
  name: 'AgentSession',
  tableName: 'agent_session',
  properties: {
    nodeId: p.uuid().primary(),
    sessionId: p.uuid(),
    /** The agent process's own random id (Hello.instance_id). */
    instanceId: p.string(),
    agentVersion: p.string(),
    peer: p.string(),
    connectedAt: p.datetime(),
    heartbeatAt: p.datetime(),
    expiresAt: p.datetime(),
  },
});

export class AgentSession extends AgentSessionSchema.class {}
AgentSessionSchema.setClass(AgentSession);

/** The hardware a node's agent last reported (hello or inspect); kept after the agent leaves. */
export const NodeHardwareSchema = defineEntity({
  name: 'NodeHardware',
  tableName: 'node_hardware',
  properties: {
    nodeId: p.uuid().primary(),
    inventory: p.json<HardwareBody>(),
    agentVersion: p.string(),
    updatedAt: p.datetime(),
  },
});

export class NodeHardware extends NodeHardwareSchema.class {}
NodeHardwareSchema.setClass(NodeHardware);
