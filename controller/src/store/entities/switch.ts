import { defineEntity, p } from '@mikro-orm/core';
import { identity } from './common.ts';

export const SwitchSchema = defineEntity({
  name: 'Switch',
  tableName: 'switch',
  properties: {
    ...identity,
    name: p.string().unique('switch_name_key'),
    address: p.string(),
    username: p.string(),
    /** Sealed with the controller's secret key (see secrets.ts). */
    passwordSealed: p.text().nullable(),
    driver: p.string(),
    description: p.text(),
    hostKeyFingerprint: p.string(),
    /** SSH private key for key authentication, sealed like the password; null when none. */
    sshPrivateKeySealed: p.text().nullable(),
    /** Driver settings (`syntax`, `netns`, timeouts…) checked by the driver; null means none. */
    driverOptions: p.json<Record<string, string>>().nullable(),
  },
});

export class Switch extends SwitchSchema.class {}
SwitchSchema.setClass(Switch);
