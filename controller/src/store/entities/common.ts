import { p } from '@mikro-orm/core';
import { newId } from '../ids.ts';

/** Columns every inventory object has: a time-ordered UUID id and timestamps. */
export const identity = {
  id: p
    .uuid()
    .primary()
    .onCreate(() => newId()),
  createdAt: p.datetime().onCreate(() => new Date()),
  updatedAt: p
    .datetime()
    .onCreate(() => new Date())
    .onUpdate(() => new Date()),
};

/** Hardware size columns shared by nodes, flavors and hypervisor hosts. */
export const size = {
  ramMb: p.integer(),
  diskGb: p.integer(),
};
