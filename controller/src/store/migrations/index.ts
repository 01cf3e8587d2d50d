import { Migration0001Inventory } from './0001-inventory.ts';
import { Migration0002Power } from './0002-power.ts';
import { Migration0003Instances } from './0003-instances.ts';
import { Migration0004Network } from './0004-network.ts';
import { Migration0005Agent } from './0005-agent.ts';
import { Migration0006Provisioning } from './0006-provisioning.ts';
import { Migration0007Capture } from './0007-capture.ts';

/** Every migration, oldest first; applied at start on PGlite and PostgreSQL alike. */
export const MIGRATIONS = [
  { name: '0001-inventory', class: Migration0001Inventory },
  { name: '0002-power', class: Migration0002Power },
  { name: '0003-instances', class: Migration0003Instances },
  { name: '0004-network', class: Migration0004Network },
  { name: '0005-agent', class: Migration0005Agent },
  { name: '0006-provisioning', class: Migration0006Provisioning },
  { name: '0007-capture', class: Migration0007Capture },
];
