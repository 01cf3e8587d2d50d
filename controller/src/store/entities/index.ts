import { AgentSessionSchema, AgentTokenSchema, NodeHardwareSchema } from './agent.ts';
import { AggregateMemberSchema, AggregateSchema } from './aggregate.ts';
import { ApiTokenSchema } from './api-token.ts';
import { CaptureSchema } from './capture.ts';
import { FlavorSchema } from './flavor.ts';
import { FlowStepSchema } from './flow-step.ts';
import { HostSchema } from './host.ts';
import { ImageSchema } from './image.ts';
import { InstanceSchema } from './instance.ts';
import { NetworkSchema } from './network.ts';
import { NodeSchema } from './node.ts';
import { ProjectSchema } from './project.ts';
import { SwitchSchema } from './switch.ts';
import { TaskEventSchema, TaskSchema } from './task.ts';

/** Every entity the controller persists, for the ORM's discovery. */
export const ENTITIES = [
  SwitchSchema,
  NodeSchema,
  ProjectSchema,
  FlavorSchema,
  HostSchema,
  AggregateSchema,
  AggregateMemberSchema,
  ApiTokenSchema,
  InstanceSchema,
  FlowStepSchema,
  CaptureSchema,
  NetworkSchema,
  ImageSchema,
  TaskSchema,
  TaskEventSchema,
  AgentTokenSchema,
  AgentSessionSchema,
  NodeHardwareSchema,
];
