import { defineEntity, p } from '@mikro-orm/core';
import { identity } from './common.ts';

export const ProjectSchema = defineEntity({
  name: 'Project',
  tableName: 'project',
  properties: {
    ...identity,
    name: p.string().unique('project_name_key'),
    isolated: p.boolean(),
    description: p.text(),
  },
});

export class Project extends ProjectSchema.class {}
ProjectSchema.setClass(Project);
