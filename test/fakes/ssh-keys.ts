import ssh2 from 'ssh2';

/**
 * An ed25519 key pair whose public half ssh2 can parse back. ssh2 1.17's
 * generateKeyPairSync('ed25519') writes a public key its own parser rejects
 * ("Malformed OpenSSH public key") about once in 250 keys; drawing again is
 * the whole fix, and real switches never see such a key.
 */
export function ed25519KeyPair(): { private: string; public: string } {
  for (;;) {
    const key = ssh2.utils.generateKeyPairSync('ed25519');
    if (!(ssh2.utils.parseKey(key.public) instanceof Error)) return key;
  }
}
