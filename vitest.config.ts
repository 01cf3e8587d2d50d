import { defineConfig } from 'vitest/config';

// `make test` runs this through test/support/run-tests.sh, which starts a throwaway PostgreSQL
// and exports INGOT_TEST_PG_URL. Running `vitest` directly works for tests that need no database.
export default defineConfig({
  // Outside node_modules, so that `npm ci` never races a running suite over it.
  cacheDir: 'build/.vite',
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Child processes rather than worker threads: tests spawn servers, change process.env and use
    // native handles; a forked worker isolates all of that.
    pool: 'forks',
    fileParallelism: true,
    // The machines (developers' and CI's) have 2 cores.
    maxWorkers: 2,
  },
});
