/** Reported in Hello; `make agent` stamps the build's git revision through INGOT_AGENT_VERSION at bundle time. */
export const AGENT_VERSION: string = process.env.INGOT_AGENT_BUILD_VERSION ?? '0.1.0-dev';
